"""The relay's scheduling (services/ingestion/relay.py): batches, answers first, a bound on how
late. What a batch does (decisions, Temporal calls, marks) is the follow-ups' own tests'; here
`carry_out` records the batches it is given."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from models.webhook_event import FollowUpKind
from services.ingestion import FollowUp, FollowUpRelay
from services.ingestion.dispatch import RecordedFollowUp
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
