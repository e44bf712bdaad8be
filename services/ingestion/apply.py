"""What one X event (Account Activity or X Activity API) changes — contacts, conversations, messages, read receipts,
the account itself — and what it owes the workflows waiting on its contact, as one SQL
statement (services/ingestion/sql.py) run on the psycopg connection under the pool's SQLAlchemy
one: no ORM and one round trip on the hot path.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, AsyncRawCursor
from psycopg.errors import ForeignKeyViolation
from sqlalchemy.ext.asyncio import AsyncConnection as SAConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from mktx.settings import Settings
from models.contact import ContactSource
from models.db import utcnow
from services.contacts.consent import ConsentKeyword, apply_consent_keyword, consent_keyword
from services.ingestion import sql
from services.ingestion.connections import IngestConnection
from services.ingestion.events import (
    DirectMessage,
    EventType,
    FollowChange,
    IncomingEvent,
    ReadReceipt,
    Revocation,
    XProfile,
    direct_message,
    follow_change,
    read_receipt,
    revocation,
)
from services.ingestion.follow_up import FollowUp
from services.ingestion.triggers import TriggerRegistry
from workflows.contracts.contact_events import ContactEventKind

logger = logging.getLogger(__name__)

FOLLOWS_ATTRIBUTE = "followsAccount"
# A contact created by a concurrent delivery after our snapshot aborts the statement (see
# MESSAGE); the retry sees it.
SNAPSHOT_ATTEMPTS = 3

# The contact event an Account Activity event makes (when it concerns a contact, and but for
# the account's own DMs): the triggers that want that kind are recorded with it.
_CONTACT_EVENT_KINDS = {
    EventType.direct_message: ContactEventKind.message,
    EventType.follow: ContactEventKind.follow,
    EventType.unfollow: ContactEventKind.unfollow,
    EventType.read: ContactEventKind.read,
}


@dataclass(frozen=True)
class IngestionContext:
    """What applying an event depends on besides the event: the settings (consent keywords)
    and the process's triggers (whose names the statements record follow-ups for)."""

    settings: Settings
    triggers: TriggerRegistry


class UnusableEvent(ValueError):
    """The event is stored but cannot be applied as X sent it (missing fields): not retried."""


@dataclass(frozen=True, slots=True)
class Route:
    """The stored raw row, and the connected account it belongs to (None: nobody's)."""

    event_id: uuid.UUID
    merchant_id: str | None
    account_id: uuid.UUID | None


@dataclass
class Applied:
    """One event's outcome: its raw row (None: a duplicate, or already reprocessed) and the
    work for after commit."""

    route: Route | None
    follow_up: FollowUp


@dataclass(frozen=True)
class Plan:
    """An event's statement and parameters, ready to run."""

    event: IncomingEvent
    parsed: Any
    statement: sql.Statement
    params: dict[str, Any]
    keyword: ConsentKeyword | None  # the DM is STOP/START: more writes after the statement

    @property
    def lock_key(self) -> tuple[str, str, str]:
        """Statements run together are ordered by this: the rows they lock (the contact, its
        conversation) are then taken in the same order by every transaction."""
        return (self.event.for_user_id, self.params.get("user_id") or "", self.event.dedup_key)


async def driver_connection(connection: SAConnection) -> AsyncConnection[Any]:
    """The psycopg connection under a SQLAlchemy one (same transaction, same pool slot)."""
    raw = await connection.get_raw_connection()
    driver: AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    return driver


async def fetch_one(
    pg: AsyncConnection[Any], statement: sql.NativeSQL, params: dict[str, Any]
) -> Any:
    async with AsyncRawCursor(pg) as cursor:
        await cursor.execute(statement.text, statement.args(params), prepare=True)
        return await cursor.fetchone()


def event_params(event: IncomingEvent, now: datetime, raw_id: uuid.UUID) -> dict[str, Any]:
    return {
        "raw_id": raw_id,
        "now": now,
        "new_contact_id": None,
        "for_user_id": event.for_user_id,
        "event_type": event.event_type.value,
        "dedup_key": event.dedup_key,
        "subject_user_id": event.subject_user_id,
        "payload": event.payload_json(),
    }


async def ingest_event(
    connection: IngestConnection, context: IngestionContext, event: IncomingEvent, now: datetime
) -> Applied:
    """Store and apply one newly delivered event; committed when this returns."""
    for attempt in range(SNAPSHOT_ATTEMPTS):
        plan = plan_statement(context, event, event_params(event, now, uuid.uuid4()))
        try:
            if plan.keyword is None:  # one statement, its own transaction
                row = await fetch_one(connection.driver, plan.statement.ingest, plan.params)
                return await finish(None, context, plan, row)
            # STOP/START queues a confirmation DM through the ORM: one transaction for all.
            async with (
                connection.transaction() as pooled,
                AsyncSession(bind=pooled, expire_on_commit=False) as session,
            ):
                await session.connection()  # begins the transaction the statement joins
                row = await fetch_one(connection.driver, plan.statement.ingest, plan.params)
                applied = await finish(session, context, plan, row)
                await session.commit()
                return applied
        except ForeignKeyViolation:
            if attempt == SNAPSHOT_ATTEMPTS - 1:
                raise
            logger.debug("webhook.snapshot_retry", extra={"dedup_key": event.dedup_key})
    raise AssertionError("unreachable")


async def reapply_event(
    session: AsyncSession, context: IngestionContext, event: IncomingEvent, event_id: uuid.UUID
) -> Applied:
    """Apply an event stored earlier but not applied, in the session's transaction (the caller
    commits). Claims the raw row: a concurrent reprocessor finds nothing left to do."""
    plan = plan_statement(
        context, event, {"raw_id": event_id, "now": utcnow(), "new_contact_id": None}
    )
    pg = await driver_connection(await session.connection())
    row = await fetch_one(pg, plan.statement.reprocess, plan.params)
    return await finish(session, context, plan, row)


def _parse(event: IncomingEvent) -> Any:
    try:
        if event.event_type is EventType.direct_message:
            return direct_message(event.payload)
        if event.event_type in (EventType.follow, EventType.unfollow):
            return follow_change(event.payload)
        if event.event_type is EventType.read:
            return read_receipt(event.payload)
        if event.event_type is EventType.revoke:
            return revocation(event.payload)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise UnusableEvent(f"{event.event_type.value} event without {exc}") from None
    return None


def plan_statement(context: IngestionContext, event: IncomingEvent, base: dict[str, Any]) -> Plan:
    """The statement that stores and applies the event (raises UnusableEvent first)."""
    kind = _CONTACT_EVENT_KINDS.get(event.event_type)
    triggers = context.triggers.names_for(kind) if kind is not None else []
    return _plan(context.settings, event, {**base, "triggers": triggers})


def _plan(settings: Settings, event: IncomingEvent, base: dict[str, Any]) -> Plan:
    parsed = _parse(event)
    kind = event.event_type
    account = event.for_user_id
    if kind is EventType.direct_message:
        dm: DirectMessage = parsed
        if dm.recipient_id == account and dm.sender_id != account:
            keyword = consent_keyword(settings, dm.text)
            params = _message_params(base, dm, dm.sender, inbound=True)
            return Plan(event, dm, sql.MESSAGE, params, keyword)
        if dm.sender_id == account:
            params = _message_params(base, dm, dm.recipient, inbound=False)
            return Plan(event, dm, sql.MESSAGE, params, None)
    elif kind in (EventType.follow, EventType.unfollow):
        change: FollowChange = parsed
        if change.target.twitter_user_id == account:  # not the account following someone
            params = _contact_params(base, change.source, change.created_at)
            params["attributes"] = json.dumps({FOLLOWS_ATTRIBUTE: change.follows})
            if not change.follows:
                params["new_contact_id"] = None  # an unfollow never creates the contact
            statement = sql.FOLLOW if change.follows else sql.UNFOLLOW
            return Plan(event, change, statement, params, None)
    elif kind is EventType.read:
        receipt: ReadReceipt = parsed
        if receipt.reader_id != account:  # the contact read ours, not the account theirs
            params = {
                **base,
                "user_id": receipt.reader_id,
                "last_read_event_id": receipt.last_read_event_id,
                "at": receipt.created_at,
            }
            return Plan(event, receipt, sql.READ, params, None)
    elif kind is EventType.revoke:
        revoked: Revocation = parsed
        reason = (
            f"the X user revoked this app's access at {revoked.at.isoformat()}; "
            "connect the account again"
        )
        return Plan(event, revoked, sql.REVOKE, {**base, "reason": reason[:512]}, None)
    return Plan(event, parsed, sql.NOTHING, base, None)


def _contact_params(base: dict[str, Any], profile: XProfile, at: datetime) -> dict[str, Any]:
    contact_id = uuid.uuid4()
    return {
        **base,
        "contact_id": contact_id,
        "new_contact_id": contact_id,  # the raw event names the contact it may create
        "user_id": profile.twitter_user_id,
        "username": profile.username,
        "display_name": profile.display_name,
        "profile_image_url": profile.profile_image_url,
        "at": at,
    }


def _message_params(
    base: dict[str, Any], dm: DirectMessage, contact: XProfile, *, inbound: bool
) -> dict[str, Any]:
    return {
        **_contact_params(base, contact, dm.created_at),
        # A contact first met through the merchant's own DM (sent from X's app) was added by
        # hand, not by writing in.
        "source": (ContactSource.inbound_message if inbound else ContactSource.manual).value,
        "echo": not inbound,
        "conversation_id": uuid.uuid4(),
        "message_id": uuid.uuid4(),
        "direction": "inbound" if inbound else "outbound",
        "status": "received" if inbound else "sent",
        "content": dm.text,
        "attachments": json.dumps(dm.attachments),
        "quick_reply": json.dumps(dm.quick_reply) if dm.quick_reply else None,
        "twitter_message_id": dm.id,
    }


async def finish(
    session: AsyncSession | None, context: IngestionContext, plan: Plan, row: Any
) -> Applied:
    """Read the statement's row: the follow-ups it recorded, a consent keyword to apply."""
    follow_up = FollowUp()
    if row is None:
        return Applied(None, follow_up)
    route = Route(row[0], row[1], row[2])
    if route.account_id is None:
        return Applied(route, follow_up)
    result = row[3:]
    if plan.statement is sql.MESSAGE and not plan.params["echo"]:
        message_id, conversation_id, contact_id, recorded = result
        if contact_id is None:
            return Applied(route, follow_up)
        if plan.keyword is not None and session is not None and message_id is not None:
            confirmation = await apply_consent_keyword(
                session,
                context.settings,
                keyword=plan.keyword,
                account_id=route.account_id,
                contact_id=contact_id,
                conversation_id=conversation_id,
                at=plan.params["now"],
            )
            if confirmation is not None:
                follow_up.deliveries.append(confirmation)
        follow_up.add_recorded(recorded)
    elif plan.statement in (sql.FOLLOW, sql.UNFOLLOW, sql.READ):
        follow_up.add_recorded(result[1])
    return Applied(route, follow_up)
