"""The send path's activities: deliver queued messages (`services.messaging.delivery`), and
settle one as failed when its workflow gives up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from temporalio import activity

from activities.deps import WorkerDeps
from models.db import SessionMaker
from services.messaging import record_failed
from services.messaging.delivery import Delivery, claim_lease
from workflows.contracts import messaging as contract
from workflows.contracts.messaging import DeliverInput, DeliveryResult, RecordFailureInput

logger = logging.getLogger(__name__)

HEARTBEAT_EVERY_SECONDS = 3.0


async def _heartbeat_every(seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        activity.heartbeat()


class MessagingActivities:
    def __init__(self, sessions: SessionMaker, delivery: Delivery) -> None:
        self._sessions = sessions
        self._delivery = delivery

    @activity.defn(name=contract.DELIVER)
    async def deliver(self, request: DeliverInput) -> DeliveryResult:
        """Hand the messages to X once each (looked for at X first after an unknown outcome),
        with the consent and account checks of this moment; one outcome per message."""
        done = 0

        def beat() -> None:
            nonlocal done
            done += 1
            activity.heartbeat(done)

        # Heartbeats while a call to X is under way, so that a killed worker is noticed within
        # the workflow's heartbeat timeout, not its 10-minute attempt timeout.
        alive = asyncio.create_task(_heartbeat_every(HEARTBEAT_EVERY_SECONDS))
        try:
            return await self._delivery.deliver(
                request.merchant_id,
                request.message_ids,
                media=request.media,
                concurrency=request.concurrency,
                beat=beat,
                lease=claim_lease(activity.info().heartbeat_timeout),
            )
        finally:
            alive.cancel()

    @activity.defn(name=contract.RECORD_FAILURE)
    async def record_failure(self, request: RecordFailureInput) -> bool:
        """The message will not be delivered: failed, with the reason, and its slot given back."""
        async with self._sessions() as session, session.begin():
            changed = await record_failed(session, request.message_id, request.reason)
        if changed:
            logger.info(
                "message.failed",
                extra={"message_id": str(request.message_id), "reason": request.reason},
            )
        return changed


def build(deps: WorkerDeps) -> list[Callable[..., Any]]:
    """The messaging activities the worker registers."""
    delivery = Delivery(deps.sessions, deps.x, deps.secrets, deps.settings)
    messaging = MessagingActivities(deps.sessions, delivery)
    return [messaging.deliver, messaging.record_failure]
