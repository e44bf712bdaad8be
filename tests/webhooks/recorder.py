"""A workflow for tests that keeps every contact event it is signalled: what a trigger starts,
and the proof of how many times an event reached it."""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

from workflows.contracts.contact_events import CONTACT_EVENT_SIGNAL, ContactEvent

RECORDER_WORKFLOW = "TestContactEventRecorder"


class RecorderInput(BaseModel):
    contact_id: uuid.UUID
    timeout_seconds: float = 120


@workflow.defn(name=RECORDER_WORKFLOW)
class ContactEventRecorder:
    """Runs until told to stop (or its timeout), answering what it heard."""

    def __init__(self) -> None:
        self._events: list[ContactEvent] = []
        self._stopped = False

    @workflow.run
    async def run(self, request: RecorderInput) -> list[ContactEvent]:
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._stopped, timeout=timedelta(seconds=request.timeout_seconds)
            )
        return self._events

    @workflow.signal(name=CONTACT_EVENT_SIGNAL)
    def contact_event(self, event: ContactEvent) -> None:
        self._events.append(event)

    @workflow.signal
    def stop(self) -> None:
        self._stopped = True

    @workflow.query
    def events(self) -> list[ContactEvent]:
        return self._events
