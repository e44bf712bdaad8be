"""The relay's scheduling (services/ingestion/relay.py): batches, answers first, a bound on how
late, floods; and a batch's order per contact (services/ingestion/follow_up.py). What a batch does (decisions, Temporal calls, marks) is the follow-ups' own tests'; here
`carry_out` records the batches it is given."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import cast

import pytest
from temporalio.client import Client

from models.webhook_event import FollowUpKind
from services.ingestion import FollowUp, FollowUpRelay, TriggerRegistry
from services.ingestion import follow_up as follow_up_module
from services.ingestion.dispatch import Attempt, Outcome, RecordedFollowUp
from workflows.contracts.contact_events import ContactEvent, ContactEventKind


def follow_up() -> FollowUp:
    event = ContactEvent(
        kind=ContactEventKind.follow,
        merchant_id="m",
        account_id=uuid.uuid4(),
        contact_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
    )
    recorded = RecordedFollowUp(id=uuid.uuid4(), kind=FollowUpKind.start, target="t", event=event)
    return FollowUp(recorded=[recorded])


class Recorder:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.at: list[float] = []

    async def __call__(self, batch: FollowUp) -> None:
        self.batches.append(len(batch.recorded))
        self.at.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.01)


async def test_follow_ups_handed_over_while_a_batch_runs_go_together_in_the_next() -> None:
    recorder = Recorder()
    relay = FollowUpRelay(recorder, batch=5)
    for _ in range(12):
        relay.submit(follow_up())
    assert await relay.drain(timeout=5)
    assert recorder.batches == [5, 5, 2]
    assert relay.pending == 0


async def test_a_batch_waits_for_the_answers_in_flight() -> None:
    recorder = Recorder()
    relay = FollowUpRelay(recorder, max_defer=5.0)
    with relay.answering():
        relay.submit(follow_up())
        relay.submit(follow_up())
        await asyncio.sleep(0.2)
        assert recorder.batches == []  # still answering: nothing carried out yet
    assert await relay.drain(timeout=5)
    assert recorder.batches == [2]


async def test_answers_never_hold_a_batch_longer_than_max_defer() -> None:
    recorder = Recorder()
    relay = FollowUpRelay(recorder, max_defer=0.3)
    loop = asyncio.get_running_loop()
    with relay.answering():  # a flood that does not stop
        handed_over = loop.time()
        relay.submit(follow_up())
        assert await relay.drain(timeout=5)
    assert recorder.batches == [1]
    assert 0.25 <= recorder.at[0] - handed_over < 2.0


async def test_nothing_handed_over_nothing_carried_out() -> None:
    recorder = Recorder()
    relay = FollowUpRelay(recorder)
    relay.submit(FollowUp())
    assert await relay.drain(timeout=1)
    assert recorder.batches == []


async def answers(relay: FollowUpRelay, seconds: float, *, each: float, gap: float) -> None:
    """Answers made one after the other for `seconds`, each taking `each`, `gap` apart (0: a
    flood, as fast as the loop turns)."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    while loop.time() < ends:
        with relay.answering():
            await asyncio.sleep(each)
        await asyncio.sleep(gap)


async def test_a_flood_holds_the_batches_until_it_passes() -> None:
    recorder = Recorder()
    relay = FollowUpRelay(recorder, max_defer=0.2, flood_defer=5.0)
    loop = asyncio.get_running_loop()
    flood = asyncio.create_task(answers(relay, 1.0, each=0, gap=0))
    await asyncio.sleep(0.2)
    relay.submit(follow_up())
    await asyncio.sleep(0.5)
    assert recorder.batches == []  # past max_defer, but the flood goes on
    await flood
    stopped = loop.time()
    assert await relay.drain(timeout=5)
    assert recorder.batches == [1]
    assert recorder.at[0] - stopped < 0.5  # soon after it passed


async def test_a_flood_never_holds_a_batch_longer_than_flood_defer() -> None:
    recorder = Recorder()
    relay = FollowUpRelay(recorder, max_defer=0.1, flood_defer=0.5)
    loop = asyncio.get_running_loop()
    flood = asyncio.create_task(answers(relay, 2.0, each=0, gap=0))
    await asyncio.sleep(0.2)
    handed_over = loop.time()
    relay.submit(follow_up())
    await flood
    assert recorder.batches == [1]
    assert 0.45 <= recorder.at[0] - handed_over < 1.5


async def test_a_steady_stream_of_answers_is_no_flood() -> None:
    recorder = Recorder()
    relay = FollowUpRelay(recorder, max_defer=5.0, flood_defer=5.0)
    loop = asyncio.get_running_loop()
    stream = asyncio.create_task(answers(relay, 1.0, each=0.01, gap=0.01))  # 50 a second
    await asyncio.sleep(0.2)
    handed_over = loop.time()
    relay.submit(follow_up())
    await stream
    assert recorder.batches == [1]
    assert recorder.at[0] - handed_over < 0.3  # in a lull between two answers


async def test_one_contacts_follow_ups_are_carried_out_in_the_order_of_their_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two DMs of one contact reach its workflows in the order they were sent (the first call
    taking longer than the second must not let the second overtake it); different contacts
    still go together."""
    first, second = follow_up().recorded[0], follow_up().recorded[0]
    second.event = second.event.model_copy(update={"contact_id": first.event.contact_id})
    other = follow_up().recorded[0]
    log: list[tuple[str, uuid.UUID]] = []

    async def carry_out_one(client: object, triggers: object, row: RecordedFollowUp) -> Attempt:
        log.append(("start", row.id))
        await asyncio.sleep(0.2 if row is first else 0.01)
        log.append(("end", row.id))
        return Attempt(outcome=Outcome.signalled)

    async def decide_together(triggers: object, rows: object) -> None:
        return None

    monkeypatch.setattr(follow_up_module, "carry_out_one", carry_out_one)
    monkeypatch.setattr(follow_up_module, "_decide_together", decide_together)
    attempts = await follow_up_module._carry_out(
        cast(Client, None), TriggerRegistry(), [first, second, other]
    )

    assert log.index(("end", first.id)) < log.index(("start", second.id))  # not overtaken
    assert log.index(("start", other.id)) < log.index(("end", first.id))  # others: together
    assert {row.id for row, _ in attempts} == {first.id, second.id, other.id}
