"""Helpers for webhook tests: a connected shop account, signed deliveries, X payload shapes."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from api.app import BASE_PATH
from mktx.settings import Settings
from models.contact import Contact
from models.conversation import Conversation, Message
from models.db import SessionMaker
from models.webhook_event import EventFollowUp, WebhookEvent
from sandbox.admin import SandboxAdmin, SandboxUser
from services.ingestion import IngestionContext, TriggerRegistry
from services.ingestion.signatures import SIGNATURE_HEADER, body_signature
from tests.conftest import CONSUMER_SECRET, Api

WEBHOOK = f"{BASE_PATH}/webhooks/twitter"
T = TypeVar("T")


@dataclass(frozen=True)
class Shop:
    """A merchant's X account, connected through the API."""

    user: SandboxUser
    account_id: uuid.UUID

    @property
    def x_id(self) -> str:
        return self.user.id


def ingestion_of(settings: Settings, triggers: TriggerRegistry | None = None) -> IngestionContext:
    """What ingestion runs with in a process: these settings and triggers (none by default)."""
    return IngestionContext(settings, triggers if triggers is not None else TriggerRegistry())


async def x_user(x_admin: SandboxAdmin, prefix: str = "user", **kwargs: Any) -> SandboxUser:
    return await x_admin.create_user(username=f"{prefix}_{uuid.uuid4().hex[:8]}", **kwargs)


async def connect(api: Api, user: SandboxUser) -> Shop:
    response = await api.post(
        "/accounts",
        json={"oauthToken": user.access_token, "oauthTokenSecret": user.access_token_secret},
    )
    assert response.status_code == 200, response.text
    return Shop(user=user, account_id=uuid.UUID(response.json()["data"]["id"]))


@pytest.fixture
async def shop(api: Api, x_admin: SandboxAdmin) -> Shop:
    return await connect(api, await x_user(x_admin, "shop", name="Shop Official"))


@pytest.fixture
async def customer(x_admin: SandboxAdmin) -> SandboxUser:
    return await x_user(x_admin, "customer", name="Customer Person")


# Payloads ------------------------------------------------------------------------------------


def new_id() -> str:
    return str(random.randrange(10**18, 10**19))


def now_ms() -> int:
    return int(time.time() * 1000)


def v1_user(user_id: str, username: str, name: str, image: str | None = None) -> dict[str, Any]:
    return {
        "id": user_id,
        "name": name,
        "screen_name": username,
        "profile_image_url_https": image or f"https://pbs.example/{username}.jpg",
    }


def users_of(*users: SandboxUser) -> dict[str, Any]:
    return {u.id: v1_user(u.id, u.username, u.name) for u in users}


def dm_event(
    sender: str,
    recipient: str,
    text: str,
    *,
    event_id: str | None = None,
    at_ms: int | None = None,
    attachment: dict[str, Any] | None = None,
    urls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"text": text, "entities": {"urls": urls or []}}
    if attachment is not None:
        data["attachment"] = attachment
    return {
        "type": "message_create",
        "id": event_id or new_id(),
        "created_timestamp": str(at_ms or now_ms()),
        "message_create": {
            "target": {"recipient_id": recipient},
            "sender_id": sender,
            "message_data": data,
        },
    }


def dm_payload(for_user: str, *events: dict[str, Any], users: dict[str, Any]) -> dict[str, Any]:
    return {"for_user_id": for_user, "direct_message_events": list(events), "users": users}


def follow_payload(
    shop: Shop, fan: SandboxUser, kind: str = "follow", *, at_ms: int | None = None
) -> dict[str, Any]:
    """A payload with one follow (or unfollow) of the shop by `fan`, as X delivers it."""
    return {
        "for_user_id": shop.x_id,
        "follow_events": [
            {
                "type": kind,
                "created_timestamp": str(at_ms or now_ms()),
                "source": v1_user(fan.id, fan.username, fan.name),
                "target": v1_user(shop.x_id, shop.user.username, shop.user.name),
            }
        ],
    }


def inbound(shop: Shop, customer: SandboxUser, text: str, **kwargs: Any) -> dict[str, Any]:
    """A payload with one DM from the customer to the shop, as X delivers it to the shop."""
    return dm_payload(
        shop.x_id,
        dm_event(customer.id, shop.x_id, text, **kwargs),
        users=users_of(customer, shop.user),
    )


async def post_signed(
    client: httpx.AsyncClient,
    payload: dict[str, Any] | bytes,
    *,
    secret: str = CONSUMER_SECRET,
    signature: str | None = None,
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"content-type": "application/json"}
    headers[SIGNATURE_HEADER] = signature or body_signature(secret, body)
    return await client.post(WEBHOOK, content=body, headers=headers)


# Reading what happened -----------------------------------------------------------------------


class NeverHappened(AssertionError):
    """What `eventually` waited for did not happen in time."""


async def eventually(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    timeout: float = 15.0,
) -> T:
    """The first value of `probe()` for which `until` holds, probed every 0.1 s; fails the
    test (NeverHappened, with the last value probed) when none has within `timeout` seconds.
    To show that something does *not* happen, wait a settle time and assert, not this."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            shown = repr(value)
            if len(shown) > 2000:
                shown = shown[:2000] + "..."
            raise NeverHappened(f"not so after {timeout:g} s; last value: {shown}")
        await asyncio.sleep(0.1)


async def contacts_of(sessions: SessionMaker, account_id: uuid.UUID) -> list[Contact]:
    async with sessions() as session:
        rows = await session.execute(
            select(Contact)
            .where(col(Contact.account_id) == account_id)
            .order_by(col(Contact.created_at))
        )
        return list(rows.scalars().all())


async def conversations_of(sessions: SessionMaker, account_id: uuid.UUID) -> list[Conversation]:
    async with sessions() as session:
        rows = await session.execute(
            select(Conversation)
            .where(col(Conversation.account_id) == account_id)
            .order_by(col(Conversation.started_at))
        )
        return list(rows.scalars().all())


async def messages_of(sessions: SessionMaker, account_id: uuid.UUID) -> list[Message]:
    async with sessions() as session:
        rows = await session.execute(
            select(Message)
            .where(col(Message.account_id) == account_id)
            .order_by(col(Message.sent_at), col(Message.created_at))
        )
        return list(rows.scalars().all())


async def raw_events(sessions: SessionMaker, for_user_id: str) -> list[WebhookEvent]:
    async with sessions() as session:
        rows = await session.execute(
            select(WebhookEvent)
            .where(col(WebhookEvent.for_user_id) == for_user_id)
            .order_by(col(WebhookEvent.received_at))
        )
        return list(rows.scalars().all())


async def follow_ups_of(sessions: SessionMaker, merchant_id: str) -> list[EventFollowUp]:
    """What the merchant's events owe (or owed) Temporal, oldest first."""
    async with sessions() as session:
        rows = await session.execute(
            select(EventFollowUp)
            .where(col(EventFollowUp.merchant_id) == merchant_id)
            .order_by(col(EventFollowUp.created_at), col(EventFollowUp.id))
        )
        return list(rows.scalars().all())
