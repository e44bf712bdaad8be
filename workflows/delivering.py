"""Delivering one queued DM from inside a workflow: ask the one send path (`message.deliver`),
sleep while X is down or rate-limiting, and come back with the settled outcome. Used by the
message sends and by the automation flows' send steps. Media uploaded by one attempt is kept for
the next (a 512 MB video is not uploaded again because X answered 503)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.contracts.messaging import (
    DELIVER,
    DeliverInput,
    DeliveryResult,
    MediaRef,
    MessageOutcome,
    OutcomeState,
)

# One attempt: a look at X's DM events, a media upload (up to 512 MB of video), the send.
ATTEMPT_TIMEOUT = timedelta(minutes=10)
MIN_PAUSE = timedelta(seconds=1)
# The longest sleep between attempts when X names no time: the next look is never far off.
MAX_PAUSE = timedelta(minutes=15)
NAMED_RESETS_PATCH = "delivery-named-resets"
# The activity's own failures (the database away); X's answers come back as outcomes.
DELIVER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=60),
)


@dataclass
class Delivered:
    """The settled outcome (sent, failed, skipped or held), or None when the deadline passed
    first; and the media uploads held at the end, by account id."""

    outcome: MessageOutcome | None
    media: dict[str, MediaRef] = field(default_factory=dict)


async def deliver_settled(
    merchant_id: str,
    message_id: uuid.UUID,
    *,
    media: dict[str, MediaRef] | None = None,
    heartbeat_seconds: int = 10,
    deadline: datetime | None = None,
) -> Delivered:
    """Deliver until the outcome is settled or the `deadline` passes (then the outcome is
    None, and the DM is still queued)."""
    held: dict[str, MediaRef] = dict(media or {})
    while True:
        left = deadline - workflow.now() if deadline is not None else None
        if left is not None and left <= timedelta(0):
            return Delivered(None, held)
        try:
            result = await workflow.execute_activity(
                DELIVER,
                DeliverInput(merchant_id=merchant_id, message_ids=[message_id], media=held),
                result_type=DeliveryResult,
                start_to_close_timeout=ATTEMPT_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=heartbeat_seconds),
                schedule_to_close_timeout=left,
                retry_policy=DELIVER_RETRY,
            )
        except ActivityError:  # only once the deadline ends the retries
            return Delivered(None, held)
        for account_id in result.media_dropped:
            held.pop(account_id, None)
        held.update(result.media)
        outcome = result.outcomes[0]
        if outcome.state is not OutcomeState.pending:
            return Delivered(outcome, held)
        until = result.wait_until or workflow.now()
        if deadline is not None:
            until = min(until, deadline)
        pause = max(until - workflow.now(), MIN_PAUSE)
        # A reset X named (a spent 24 h cap) is slept out whole; a guess is looked at again
        # within MAX_PAUSE. Runs whose history began before this keep the cap everywhere.
        named = result.wait_until is not None and workflow.patched(NAMED_RESETS_PATCH)
        await workflow.sleep(pause if named else min(pause, MAX_PAUSE))
