"""Listener registration for workflows that wait on a contact (see services/inbox/listeners.py).
Payloads and names: workflows/contracts/listeners.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import WorkerDeps
from models.db import SessionMaker
from services.core.errors import NotFound
from services.inbox.listeners import register_listener, unregister_listener
from workflows.contracts.listeners import (
    CONTACT_NOT_FOUND,
    REGISTER_LISTENER,
    UNREGISTER_LISTENER,
    RegisterListenerInput,
    UnregisterListenerInput,
)


class ListenerActivities:
    def __init__(self, sessions: SessionMaker) -> None:
        self._sessions = sessions

    @activity.defn(name=REGISTER_LISTENER)
    async def register(self, request: RegisterListenerInput) -> None:
        """Listen to the contact; a contact that is gone (or another merchant's) is final."""
        async with self._sessions() as session, session.begin():
            try:
                await register_listener(
                    session,
                    merchant_id=request.merchant_id,
                    contact_id=request.contact_id,
                    workflow_id=request.workflow_id,
                    expires_at=request.expires_at,
                )
            except NotFound:
                raise ApplicationError(
                    f"contact {request.contact_id} not found",
                    type=CONTACT_NOT_FOUND,
                    non_retryable=True,
                ) from None

    @activity.defn(name=UNREGISTER_LISTENER)
    async def unregister(self, request: UnregisterListenerInput) -> int:
        async with self._sessions() as session, session.begin():
            return await unregister_listener(
                session, workflow_id=request.workflow_id, contact_id=request.contact_id
            )


def build(deps: WorkerDeps) -> list[Callable[..., Any]]:
    """The listener activities the worker registers."""
    listeners = ListenerActivities(deps.sessions)
    return [listeners.register, listeners.unregister]
