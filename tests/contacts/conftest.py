"""Contacts tests: an X account row per test merchant, contacts made through the import, and
conversation/message rows written directly where a test needs a history."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from models.account import XAccount
from models.contact import Contact
from models.conversation import (
    Conversation,
    ConversationStatus,
    Message,
    MessageDirection,
    MessageStatus,
)
from models.db import SessionMaker, utcnow
from services.contacts import listing as contact_list
from tests.conftest import Api, Merchant


def x_user_id() -> str:
    return str(random.randint(10**17, 10**19 - 1))


async def make_account(sessions: SessionMaker, merchant_id: str) -> XAccount:
    account = XAccount(
        merchant_id=merchant_id,
        twitter_user_id=x_user_id(),
        username=f"shop_{uuid.uuid4().hex[:8]}",
        display_name="Shop",
        connected_at=utcnow(),
    )
    async with sessions() as session:
        session.add(account)
        await session.commit()
    return account


@pytest.fixture
async def account(sessions: SessionMaker, merchant: Merchant) -> XAccount:
    return await make_account(sessions, merchant.id)


async def import_jsonl(
    api: Api, account_id: uuid.UUID | str, records: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    body = "\n".join(json.dumps(record) for record in records)
    response = await api.post(
        f"/contacts/import?accountId={account_id}",
        content=body.encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["data"]
    return result


async def make_contact(api: Api, account_id: uuid.UUID | str, **fields: Any) -> dict[str, Any]:
    """One contact through the import; returns it as GET /contacts/{id} shows it."""
    record = {"twitterUserId": x_user_id(), **fields}
    await import_jsonl(api, account_id, [record])
    found = await api.get(f"/contacts?accountId={account_id}&take=100")
    for item in found.json()["data"]:
        if item["twitterUserId"] == record["twitterUserId"]:
            return item  # type: ignore[no-any-return]
    raise AssertionError("imported contact not listed")


@dataclass
class Line:
    direction: MessageDirection
    at: datetime
    status: MessageStatus | None = None
    text: str = "hello"


async def add_conversation(
    sessions: SessionMaker,
    contact: dict[str, Any],
    merchant_id: str,
    lines: Sequence[Line],
    *,
    status: ConversationStatus = ConversationStatus.open,
) -> Conversation:
    """A conversation with the given messages; counters kept the way ingestion keeps them."""
    contact_id = uuid.UUID(contact["id"])
    account_id = uuid.UUID(contact["accountId"])
    conversation = Conversation(
        merchant_id=merchant_id,
        account_id=account_id,
        contact_id=contact_id,
        status=status,
        started_at=lines[0].at if lines else utcnow(),
        last_message_at=lines[-1].at if lines else None,
        closed_at=utcnow() if status is ConversationStatus.closed else None,
        message_count=len(lines),
    )
    async with sessions() as session:
        session.add(conversation)
        await session.flush()
        for line in lines:
            inbound = line.direction is MessageDirection.inbound
            session.add(
                Message(
                    merchant_id=merchant_id,
                    conversation_id=conversation.id,
                    account_id=account_id,
                    contact_id=contact_id,
                    direction=line.direction,
                    content=line.text,
                    sent_at=line.at,
                    status=line.status
                    or (MessageStatus.received if inbound else MessageStatus.sent),
                    twitter_message_id=x_user_id(),
                )
            )
        row = await session.get(Contact, contact_id)
        assert row is not None
        row.conversation_count += 1
        row.last_interaction_at = (
            max(row.last_interaction_at or lines[-1].at, lines[-1].at)
            if lines
            else row.last_interaction_at
        )
        await session.commit()
    return conversation


def minutes(base: datetime, value: float) -> datetime:
    return base + timedelta(minutes=value)


def in_out_thread(text: str) -> list[Line]:
    """The contact writes `text`, the merchant answers a minute later."""
    start = utcnow() - timedelta(hours=1)
    return [
        Line(MessageDirection.inbound, start, text=text),
        Line(MessageDirection.outbound, minutes(start, 1), text=f"re: {text}"),
    ]


@pytest.fixture(params=["gin", "walk"])
def page_plan(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Filtered pages come from a GIN scan (few matches) or a walk along the list order (many):
    both must give the same answers."""
    if request.param == "walk":
        monkeypatch.setattr(contact_list, "GIN_PAGE_LIMIT", -1)
    return str(request.param)
