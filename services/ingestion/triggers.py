"""Triggers: workflows that contact events start (an automation flow enrolling a new follower).

A trigger's decision is data: from a `ContactEvent` it returns the `WorkflowStart` to
signal-with-start (workflow type, id, task queue, input, search attributes), or None. That is
what makes it durable. Ingestion records "this event goes through trigger T" in the same
statement that stores the event (one outbox row per event and trigger whose `kinds` include
the event's kind); whoever carries the row out (the API right after its answer, else the
maintenance schedule) asks T for its decision, calls Temporal, and writes the decision into the
row, from where any later attempt replays it as it is. Only events of a kind some trigger wants
get such a row: with no trigger registered, triggers cost ingestion nothing; with one, every
event of its kinds, of every merchant, costs a row and a question (answer None fast where the
merchant has nothing to start), so a trigger wants only the kinds it acts on.

The registry is built once per process by `build_triggers`, in the API's lifespan and when the
worker builds its activities, from the same code: both then know the same names. Nothing in
production registers a trigger yet. A domain that does (the automation flows will) keeps its
triggers in its own package and registers them from here:

    # services/flows/triggers.py
    def register_triggers(registry: TriggerRegistry, settings: Settings) -> None:
        async def enrol(event: ContactEvent) -> WorkflowStart | None:
            flow = ...  # the merchant's live flow started by a new follower, if any
            return WorkflowStart.of(
                FLOW_WORKFLOW,
                ids.flow_id(str(flow.id), str(event.contact_id)),
                FlowInput(flow_id=flow.id, version=flow.version, contact_id=event.contact_id),
                task_queue=settings.task_queue,
                search_attributes=ids.contact_attributes(event.merchant_id, str(event.contact_id)),
            )

        new_follower = frozenset({ContactEventKind.follow})
        registry.register(Trigger("flows.new_follower", new_follower, enrol))

    # below, in build_triggers:  flows.register_triggers(registry, settings)

The started workflow declares `@workflow.signal(name=CONTACT_EVENT_SIGNAL)`: it receives the
event as its first signal. A trigger's name is recorded in the outbox, so keep it stable; a row
recorded under a name no process knows any more is retried, then settled with that error.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import pydantic_core
from pydantic import BaseModel, JsonValue
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)

from mktx.settings import Settings
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


Decide = Callable[[ContactEvent], Awaitable[WorkflowStart | None]]


@dataclass(frozen=True)
class Trigger:
    """`decide` is asked about each event whose kind is in `kinds`, until it answers: its
    answer is recorded with the event's follow-up and replayed from then on. It may read what
    it needs; it must not act (acting is what carrying out its answer does, exactly once)."""

    name: str  # recorded with each event it is asked about: stable, unique
    kinds: frozenset[ContactEventKind]
    decide: Decide


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


def build_triggers(settings: Settings) -> TriggerRegistry:
    """Every domain's triggers (see the module docstring for how a domain adds its own)."""
    registry = TriggerRegistry()
    # One line per domain with triggers, e.g. `flows.register_triggers(registry, settings)`.
    return registry
