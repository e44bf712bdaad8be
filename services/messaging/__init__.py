"""Messaging: the one send path every DM takes, and what it needs.

- `queue`: `queue_messages` (the checks of the moment, the quota slot, the outbound message in
  the contact's conversation) and `queue_outbound` (one DM, refusals as API errors).
- `delivery`: `Delivery.deliver` hands queued messages to X: claim with the checks again,
  reconcile (`reconcile`), media (`media.MediaUploads`), send, record (`records`).
- `runs`: `start_delivery`, the durable delivery of one message (SendMessageWorkflow).
- `quota`: the per-account send ledger; `sweep`: restarts deliveries left queued.

Other packages use what this module names.
"""

from services.messaging.queue import (
    MARKETING_KINDS,
    ContactOptedOut,
    OutgoingDM,
    Queued,
    Refusal,
    Refused,
    attached_media,
    dm_text,
    queue_messages,
    queue_outbound,
    quota_error,
    refusal,
)
from services.messaging.records import record_failed
from services.messaging.runs import delivery_handle, start_delivery

__all__ = [
    "MARKETING_KINDS",
    "ContactOptedOut",
    "OutgoingDM",
    "Queued",
    "Refusal",
    "Refused",
    "attached_media",
    "delivery_handle",
    "dm_text",
    "queue_messages",
    "queue_outbound",
    "quota_error",
    "record_failed",
    "refusal",
    "start_delivery",
]
