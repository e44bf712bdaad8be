"""After an ingested event is committed: start queued deliveries, signal the contact's listening
workflows, and run the contact triggers later features hang on ingestion.

A trigger is `async def trigger(event: ContactEvent, context: TriggerContext) -> None`, added with
`register_trigger`; it may start a per-contact workflow with `signal_with_start` (e.g. an
automation flow whose trigger is "new follower"). Every failure here is logged, never raised:
the event is stored already, and Temporal being away must not turn into a lost event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client
from temporalio.common import TypedSearchAttributes, WorkflowIDConflictPolicy

from mktx.settings import Settings
from models.conversation import Message
from models.db import SessionMaker
from services.inbox.listeners import ContactEvent, signal_listeners
from services.messaging.outbound import start_delivery
from workflows.ids import CONTACT_EVENT_SIGNAL

logger = logging.getLogger(__name__)

TemporalSource = Callable[[], Awaitable[Client]]

CONNECT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class TriggerContext:
    temporal: Client
    settings: Settings
    sessions: SessionMaker


ContactTrigger = Callable[[ContactEvent, TriggerContext], Awaitable[None]]

_triggers: list[ContactTrigger] = []


def register_trigger(trigger: ContactTrigger) -> Callable[[], None]:
    """Call `trigger` for every contact event from now on; returns a function that removes it."""
    _triggers.append(trigger)

    def remove() -> None:
        if trigger in _triggers:
            _triggers.remove(trigger)

    return remove


def has_triggers() -> bool:
    return bool(_triggers)


async def signal_with_start(
    client: Client,
    workflow: Any,
    argument: Any,
    *,
    event: ContactEvent,
    workflow_id: str,
    task_queue: str,
    search_attributes: TypedSearchAttributes,
) -> None:
    """Deliver `event` to the workflow `workflow_id`, starting it (with `argument`) if it is
    not running: the way a trigger begins a per-contact workflow without racing itself."""
    await client.start_workflow(
        workflow,
        argument,
        id=workflow_id,
        task_queue=task_queue,
        search_attributes=search_attributes,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal=CONTACT_EVENT_SIGNAL,
        start_signal_args=[event],
    )


@dataclass
class FollowUp:
    """Work for after commit, gathered while events are applied."""

    contact_events: list[tuple[ContactEvent, list[str]]] = field(default_factory=list)
    deliveries: list[Message] = field(default_factory=list)

    @staticmethod
    def wants(listeners: list[str] | None) -> bool:
        """Whether anyone will hear of a contact's event (else it is not even built)."""
        return bool(listeners or _triggers)

    def add_event(self, event: ContactEvent, listeners: list[str] | None) -> None:
        if self.wants(listeners):
            self.contact_events.append((event, list(listeners or ())))

    def extend(self, other: FollowUp) -> None:
        self.contact_events.extend(other.contact_events)
        self.deliveries.extend(other.deliveries)

    def __bool__(self) -> bool:
        return bool(self.contact_events or self.deliveries)


async def run_follow_up(
    follow_up: FollowUp, *, temporal: TemporalSource, sessions: SessionMaker, settings: Settings
) -> None:
    if not follow_up:
        return
    try:
        client = await asyncio.wait_for(temporal(), timeout=CONNECT_TIMEOUT_SECONDS)
    except Exception as exc:  # unreachable: the events are stored; say what was not done
        logger.warning(
            "ingestion.temporal_unreachable",
            extra={
                "error": f"{type(exc).__name__}: {exc}",
                "contact_events": len(follow_up.contact_events),
                "deliveries": [str(m.id) for m in follow_up.deliveries],
            },
        )
        return
    for message in follow_up.deliveries:
        try:
            await start_delivery(client, settings, message)
        except Exception as exc:
            logger.warning(
                "ingestion.delivery_not_started",
                extra={"message_id": str(message.id), "error": f"{type(exc).__name__}: {exc}"},
            )
    context = TriggerContext(temporal=client, settings=settings, sessions=sessions)
    for event, listeners in follow_up.contact_events:
        await signal_listeners(client, sessions, event, listeners)
        for trigger in list(_triggers):
            try:
                await trigger(event, context)
            except Exception:
                logger.exception(
                    "ingestion.trigger_failed",
                    extra={"trigger": getattr(trigger, "__qualname__", repr(trigger))},
                )
