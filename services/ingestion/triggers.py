"""Triggers: workflows that contact events start (an automation flow enrolling a new follower).

A trigger's decision is data: from a `ContactEvent` it returns the `WorkflowStart` to
signal-with-start (workflow type, id, task queue, input, search attributes), or None. That is
what makes it durable. Ingestion records "this event goes through trigger T" in the same
statement that stores the event (one outbox row per event and trigger whose `kinds` include
the event's kind); whoever carries the row out (the API right after its answer, else the
maintenance schedule) asks T for its decision, calls Temporal, and writes the decision into the
row, from where any later attempt replays it as it is. Only events of a kind some trigger wants, of a
merchant the trigger is armed for (`arm_triggers`, models.webhook_event.ArmedTrigger), get such
a row: a merchant with nothing to start pays one index probe per event.

The registry is built once per process by `services.triggers.build_triggers`, in the API's
lifespan and when the worker builds its activities, from the same code: both then know the same
names. A domain with triggers keeps them in its own package (services/flows/triggers.py) and
registers them from there.

The started workflow declares `@workflow.signal(name=CONTACT_EVENT_SIGNAL)`: it receives the
event as its first signal. A trigger's name is recorded in the outbox, so keep it stable; a row
recorded under a name no process knows any more is retried, then settled with that error.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import pydantic_core
from pydantic import BaseModel, JsonValue
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)

from workflows.contracts.contact_events import ContactEvent, ContactEventKind


class WorkflowStart(BaseModel):
    """Signal-with-start `workflow_id` with the event: started (as `workflow` with `input`)
    if it is not running. A running one just gets the event.

    `id_reuse_policy` says what a closed run of that id means. The default, REJECT_DUPLICATE,
    makes a conflict mean "already done", which keeps one event from ever starting two runs
    (a retry whose first call Temporal accepted, after that run has ended). A trigger that
    must start again after an earlier run (a contact enrolled anew) puts what tells the runs
    apart into the id, or chooses ALLOW_DUPLICATE and accepts that rare second run."""

    workflow: str  # the workflow type name, from its contracts module
    workflow_id: str
    task_queue: str
    input: JsonValue  # the input model as the pydantic data converter writes it
    search_attributes: dict[str, str] = {}  # Keyword attributes (workflows/ids.py): ids only
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.REJECT_DUPLICATE

    @classmethod
    def of(
        cls,
        workflow: str,
        workflow_id: str,
        input: BaseModel,
        *,
        task_queue: str,
        search_attributes: TypedSearchAttributes = TypedSearchAttributes.empty,
        id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.REJECT_DUPLICATE,
    ) -> WorkflowStart:
        keywords: dict[str, str] = {}
        for pair in search_attributes:
            if not isinstance(pair.value, str):
                raise TypeError(f"search attribute {pair.key.name} is not a Keyword")
            keywords[pair.key.name] = pair.value
        return cls(
            workflow=workflow,
            workflow_id=workflow_id,
            task_queue=task_queue,
            input=json.loads(pydantic_core.to_json(input)),
            search_attributes=keywords,
            id_reuse_policy=id_reuse_policy,
        )

    def typed_search_attributes(self) -> TypedSearchAttributes:
        return TypedSearchAttributes(
            [
                SearchAttributePair(SearchAttributeKey.for_keyword(name), value)
                for name, value in self.search_attributes.items()
            ]
        )


# One start, several (an event that enrols the contact into two flows), or none.
Decide = Callable[[ContactEvent], Awaitable[WorkflowStart | Sequence[WorkflowStart] | None]]
# The decisions for many events at once, in their order.
DecideMany = Callable[[Sequence[ContactEvent]], Awaitable[Sequence[Sequence[WorkflowStart]]]]


@dataclass(frozen=True)
class Trigger:
    """`decide` is asked about each event whose kind is in `kinds`, until it answers: its
    answer is recorded with the event's follow-up and replayed from then on. It may read what
    it needs; it must not act (acting is what carrying out its answer does, exactly once).
    `decide_many`, when given, answers for many events at once as `decide` would one by one
    (follow-ups carried out together are asked together: a flood costs a few queries)."""

    name: str  # recorded with each event it is asked about: stable, unique
    kinds: frozenset[ContactEventKind]
    decide: Decide
    decide_many: DecideMany | None = None


class TriggerRegistry:
    """The triggers of this process, by name and by the kinds of event they want."""

    def __init__(self, triggers: Iterable[Trigger] = ()) -> None:
        self._by_name: dict[str, Trigger] = {}
        self._names_by_kind: dict[ContactEventKind, list[str]] = {k: [] for k in ContactEventKind}
        for trigger in triggers:
            self.register(trigger)

    def register(self, trigger: Trigger) -> None:
        if trigger.name in self._by_name:
            raise ValueError(f"a trigger named {trigger.name!r} is registered already")
        if not trigger.kinds:
            raise ValueError(f"trigger {trigger.name!r} wants no kind of event")
        self._by_name[trigger.name] = trigger
        for kind in trigger.kinds:
            self._names_by_kind[kind].append(trigger.name)

    def names_for(self, kind: ContactEventKind) -> list[str]:
        """Names of the triggers that want events of this kind (the statement records them)."""
        return list(self._names_by_kind[kind])

    def get(self, name: str) -> Trigger | None:
        return self._by_name.get(name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"TriggerRegistry({sorted(self._by_name)!r})"


async def lock_armed_triggers(session: AsyncSession, merchant_id: str) -> None:
    """Until the transaction ends, the merchant's armed triggers are this transaction's to
    change (taken again by `arm_triggers`: take it first when deciding what to arm)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('armed_triggers:' || :merchant_id))"),
        {"merchant_id": merchant_id},
    )


async def arm_triggers(
    session: AsyncSession, merchant_id: str, *, prefix: str, armed: Iterable[str]
) -> None:
    """Set which of a domain's triggers (the names starting with `prefix`) are armed for the
    merchant: exactly `armed`. Serialised per merchant (`lock_armed_triggers`), so that two
    changes at once cannot leave a trigger disarmed that one of them needs, provided each
    takes the lock before reading the state it decides from."""
    names = sorted(set(armed))
    await lock_armed_triggers(session, merchant_id)
    await session.execute(
        text(
            "DELETE FROM armed_triggers WHERE merchant_id = :merchant_id"
            " AND starts_with(trigger, :prefix) AND NOT trigger = ANY(CAST(:names AS varchar[]))"
        ),
        {"merchant_id": merchant_id, "prefix": prefix, "names": names},
    )
    await session.execute(
        text(
            "INSERT INTO armed_triggers (merchant_id, trigger)"
            " SELECT :merchant_id, unnest(CAST(:names AS varchar[])) ON CONFLICT DO NOTHING"
        ),
        {"merchant_id": merchant_id, "names": names},
    )
