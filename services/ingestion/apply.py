"""What one Account Activity event changes — contacts, conversations, messages, read receipts,
the account itself — as one SQL statement (services/ingestion/sql.py) run on the psycopg
connection under the pool's SQLAlchemy one: no ORM and one round trip on the hot path.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.errors import ForeignKeyViolation
from sqlalchemy.ext.asyncio import AsyncConnection as SAConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from mktx.settings import Settings
from models.contact import ContactSource
from models.db import utcnow
from services.contacts.consent import ConsentKeyword, apply_consent_keyword, consent_keyword
from services.inbox.listeners import ContactEvent, ContactEventKind
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

logger = logging.getLogger(__name__)

FOLLOWS_ATTRIBUTE = "followsAccount"
# A contact created by a concurrent delivery after our snapshot aborts the statement (see
# MESSAGE); the retry sees it.
SNAPSHOT_ATTEMPTS = 3


MAX_ERROR = 2048


def describe_failure(exc: BaseException) -> str:
    """How a failure is recorded on the stored event (bounded)."""
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR]


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


async def fetch_one(pg: AsyncConnection[Any], statement: Any, params: dict[str, Any]) -> Any:
    async with pg.cursor() as cursor:
        await cursor.execute(statement, params, prepare=True)
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
    connection: IngestConnection, settings: Settings, event: IncomingEvent, now: datetime
) -> Applied:
    """Store and apply one newly delivered event; committed when this returns."""
    for attempt in range(SNAPSHOT_ATTEMPTS):
        plan = plan_statement(settings, event, event_params(event, now, uuid.uuid4()))
        try:
            if plan.keyword is None:  # one statement, its own transaction
                row = await fetch_one(connection.driver, plan.statement.ingest, plan.params)
                return await finish(None, settings, plan, row)
            # STOP/START queues a confirmation DM through the ORM: one transaction for all.
            async with (
                connection.transaction() as pooled,
                AsyncSession(bind=pooled, expire_on_commit=False) as session,
            ):
                await session.connection()  # begins the transaction the statement joins
                row = await fetch_one(connection.driver, plan.statement.ingest, plan.params)
                applied = await finish(session, settings, plan, row)
                await session.commit()
                return applied
        except ForeignKeyViolation:
            if attempt == SNAPSHOT_ATTEMPTS - 1:
                raise
            logger.debug("webhook.snapshot_retry", extra={"dedup_key": event.dedup_key})
    raise AssertionError("unreachable")


async def reapply_event(
    session: AsyncSession, settings: Settings, event: IncomingEvent, event_id: uuid.UUID
) -> Applied:
    """Apply an event stored earlier but not applied, in the session's transaction (the caller
    commits). Claims the raw row: a concurrent reprocessor finds nothing left to do."""
    plan = plan_statement(
        settings, event, {"raw_id": event_id, "now": utcnow(), "new_contact_id": None}
    )
    pg = await driver_connection(await session.connection())
    row = await fetch_one(pg, plan.statement.reprocess, plan.params)
    return await finish(session, settings, plan, row)


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


def plan_statement(settings: Settings, event: IncomingEvent, base: dict[str, Any]) -> Plan:
    """The statement that stores and applies the event (raises UnusableEvent first)."""
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
        "twitter_message_id": dm.id,
    }


async def finish(session: AsyncSession | None, settings: Settings, plan: Plan, row: Any) -> Applied:
    """Read the statement's row: contact events to announce, a consent keyword to apply."""
    follow_up = FollowUp()
    if row is None:
        return Applied(None, follow_up)
    route = Route(row[0], row[1], row[2])
    if route.account_id is None:
        return Applied(route, follow_up)
    context = {"merchant_id": route.merchant_id, "account_id": route.account_id}
    result = row[3:]
    if plan.statement is sql.MESSAGE and not plan.params["echo"]:
        message_id, conversation_id, contact_id, _, listeners = result
        if contact_id is None:
            return Applied(route, follow_up)
        dm: DirectMessage = plan.parsed
        if plan.keyword is not None and session is not None and message_id is not None:
            confirmation = await apply_consent_keyword(
                session,
                settings,
                keyword=plan.keyword,
                account_id=route.account_id,
                contact_id=contact_id,
                conversation_id=conversation_id,
                at=plan.params["now"],
            )
            if confirmation is not None:
                follow_up.deliveries.append(confirmation)
        if follow_up.wants(listeners):
            event = _contact_event(
                context, ContactEventKind.message, contact_id, dm.created_at, message_id, dm.text
            )
            follow_up.add_event(event, listeners)
    elif (
        plan.statement in (sql.FOLLOW, sql.UNFOLLOW, sql.READ)
        and result[0] is not None
        and follow_up.wants(result[1])
    ):
        kinds = {
            sql.FOLLOW.name: ContactEventKind.follow,
            sql.UNFOLLOW.name: ContactEventKind.unfollow,
            sql.READ.name: ContactEventKind.read,
        }
        at = plan.parsed.created_at
        event = _contact_event(context, kinds[plan.statement.name], result[0], at)
        follow_up.add_event(event, result[1])
    return Applied(route, follow_up)


def _contact_event(
    context: dict[str, Any],
    kind: ContactEventKind,
    contact_id: uuid.UUID,
    at: datetime,
    message_id: uuid.UUID | None = None,
    content: str | None = None,
) -> ContactEvent:
    return ContactEvent(
        kind=kind,
        merchant_id=context["merchant_id"],
        account_id=context["account_id"],
        contact_id=contact_id,
        message_id=message_id,
        text=content,
        occurred_at=at,
    )
