"""Webhook ingestion: the one place where an X event (Account Activity or X Activity API)
becomes domain changes, and what it owes the workflows waiting on its contact becomes durable.

- `payloads`: `ingest_payload`, a verified delivery stored and applied (`batch`: the group
  commit; `apply` and `sql`: one statement per event, which also records its follow-ups).
- `events`: deliveries split into single events with their deduplication keys, and read into
  typed shapes (`activity_api`: X Activity API envelopes as Account Activity events;
  `dm_content`: a DM's text, attachments and quick-reply answer as X sends them).
- `follow_up`: `run_follow_up` (after the answer) and `carry_out_due` (the maintenance step)
  carry out the recorded follow-ups exactly once per event and target (`dispatch`);
  `relay`: `FollowUpRelay`, the deliveries' follow-ups carried out in batches after answers.
- `triggers`: `TriggerRegistry`, the workflows contact events start (built by
  `services.triggers.build_triggers`).
- `reprocess`: `reprocess_due`, events whose application failed applied again later.
- `signatures`: X's webhook signatures and CRC.

Other packages use what this module names.
"""

from services.ingestion.apply import IngestionContext
from services.ingestion.batch import GroupCommit
from services.ingestion.connections import IngestionConnections
from services.ingestion.events import MalformedPayload
from services.ingestion.follow_up import FollowUp, carry_out_due, run_follow_up
from services.ingestion.payloads import IngestResult, ingest_payload
from services.ingestion.relay import FollowUpRelay
from services.ingestion.reprocess import ReprocessReport, reprocess_due
from services.ingestion.signatures import SIGNATURE_HEADER, crc_response_token, signature_is_valid
from services.ingestion.triggers import Trigger, TriggerRegistry, WorkflowStart

__all__ = [
    "SIGNATURE_HEADER",
    "FollowUp",
    "FollowUpRelay",
    "GroupCommit",
    "IngestResult",
    "IngestionConnections",
    "IngestionContext",
    "MalformedPayload",
    "ReprocessReport",
    "Trigger",
    "TriggerRegistry",
    "WorkflowStart",
    "carry_out_due",
    "crc_response_token",
    "ingest_payload",
    "reprocess_due",
    "run_follow_up",
    "signature_is_valid",
]
