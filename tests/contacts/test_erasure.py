"""GDPR erasure: the contact and every row naming it go, running workflows for it stop, and an
audit record without personal data remains."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlmodel import col
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from api.app import create_app
from mktx.settings import Settings
from models.account import XAccount
from models.contact import ContactDeletion
from models.db import SessionMaker, utcnow
from models.listener import WorkflowListener
from models.webhook_event import WebhookEvent
from sandbox.admin import SandboxAdmin
from services.core.auth import Role
from tests.conftest import Api, Merchant
from tests.contacts.conftest import add_conversation, in_out_thread, make_contact
from tests.webhooks.conftest import connect, x_user
from workflows import ids


async def _tables_naming(sessions: SessionMaker, needle: str) -> list[str]:
    """Every table in the database whose rows, as text, contain `needle`."""
    async with sessions() as session:
        tables = (
            await session.execute(
                text(
                    "SELECT quote_ident(table_name) FROM information_schema.tables "
                    "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                )
            )
        ).scalars()
        found = []
        for table in list(tables):
            hit = await session.execute(
                text(f"SELECT 1 FROM {table} AS t WHERE t::text LIKE :needle LIMIT 1"),
                {"needle": f"%{needle}%"},
            )
            if hit.first() is not None:
                found.append(table)
        return found


async def _event(sessions: SessionMaker, **fields: Any) -> WebhookEvent:
    defaults: dict[str, Any] = {
        "for_user_id": "1",
        "event_type": "direct_message_events",
        "dedup_key": f"test:{uuid.uuid4()}",
        "payload": {"note": "raw"},
    }
    event = WebhookEvent(**(defaults | fields))
    async with sessions() as session:
        session.add(event)
        await session.commit()
    return event


async def _start_waiting_workflow(
    client: Client, workflow_id: str, *, contact_id: str | None = None
) -> None:
    """A workflow that stays Running: no worker polls its task queue."""
    attributes = (
        TypedSearchAttributes([SearchAttributePair(ids.CONTACT_ID, contact_id)])
        if contact_id
        else None
    )
    await client.start_workflow(
        "ContactErasureProbe",
        id=workflow_id,
        task_queue=f"nobody-polls-{uuid.uuid4().hex[:8]}",
        search_attributes=attributes,
    )


async def _visible(client: Client, query: str) -> None:
    for _ in range(100):  # the visibility store is eventually consistent
        if [wf async for wf in client.list_workflows(query)]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not visible: {query}")


async def test_erasure_leaves_no_row_naming_the_contact(
    api: Api, account: XAccount, sessions: SessionMaker, temporal_client: Client
) -> None:
    username = f"erase_{uuid.uuid4().hex[:10]}"
    contact = await make_contact(
        api,
        account.id,
        username=username,
        displayName="Erin Erasable",
        tags=["vip"],
        attributes={"email": f"{username}@example.com"},
    )
    user_id = contact["twitterUserId"]
    contact_id = contact["id"]
    bystander = await make_contact(api, account.id, username="bystander")

    await add_conversation(sessions, contact, api.merchant.id, in_out_thread(f"hi from {username}"))
    await add_conversation(sessions, bystander, api.merchant.id, in_out_thread("hello"))
    linked = await _event(
        sessions,
        merchant_id=api.merchant.id,
        account_id=account.id,
        contact_id=uuid.UUID(contact_id),
        subject_user_id=user_id,
        payload={"users": {user_id: {"screen_name": username}}},
    )
    unlinked = await _event(  # e.g. an unfollow stored without a contact link
        sessions,
        merchant_id=api.merchant.id,
        account_id=account.id,
        subject_user_id=user_id,
        event_type="follow_events",
        payload={"source": {"id": user_id, "screen_name": username}},
    )
    kept = await _event(
        sessions,
        merchant_id=api.merchant.id,
        account_id=account.id,
        contact_id=uuid.UUID(bystander["id"]),
        subject_user_id=bystander["twitterUserId"],
    )

    listener_workflow = f"contact-erasure-listener-{uuid.uuid4()}"
    searched_workflow = f"contact-erasure-search-{uuid.uuid4()}"
    await _start_waiting_workflow(temporal_client, listener_workflow)
    await _start_waiting_workflow(temporal_client, searched_workflow, contact_id=contact_id)
    async with sessions() as session:
        session.add(
            WorkflowListener(
                merchant_id=api.merchant.id,
                contact_id=uuid.UUID(contact_id),
                workflow_id=listener_workflow,
                expires_at=utcnow(),
            )
        )
        await session.commit()
    await _visible(temporal_client, f'ContactId = "{contact_id}" AND ExecutionStatus = "Running"')

    assert set(await _tables_naming(sessions, username)) >= {"contacts", "messages"}
    assert "webhook_events" in await _tables_naming(sessions, user_id)

    response = await api.delete(f"/contacts/{contact_id}", role=Role.agent)
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {
        "contactId": contact_id,
        "removed": {
            "messages": 2,
            "conversations": 1,
            "workflowListeners": 1,
            "webhookEvents": 2,
        },
        "workflowsStopped": 2,
    }

    for needle in (username, user_id, "Erin Erasable"):
        assert await _tables_naming(sessions, needle) == [], needle
    assert (await api.get(f"/contacts/{contact_id}")).status_code == 404
    assert (await api.delete(f"/contacts/{contact_id}")).status_code == 404
    async with sessions() as session:
        assert await session.get(WebhookEvent, linked.id) is None
        assert await session.get(WebhookEvent, unlinked.id) is None
        assert await session.get(WebhookEvent, kept.id) is not None
        audit = (
            await session.execute(
                select(ContactDeletion).where(col(ContactDeletion.merchant_id) == api.merchant.id)
            )
        ).scalar_one()
    assert audit.contact_id == uuid.UUID(contact_id)
    assert audit.account_id == account.id
    assert audit.deleted_by_user_id == api.merchant.user_id
    assert audit.removed["messages"] == 2

    for workflow_id in (listener_workflow, searched_workflow):
        described = await temporal_client.get_workflow_handle(workflow_id).describe()
        assert described.status == WorkflowExecutionStatus.TERMINATED, workflow_id

    # The bystander and its history are untouched.
    other = (await api.get(f"/contacts/{bystander['id']}")).json()["data"]
    assert other["engagement"]["messagesReceived"] == 1


@pytest.fixture
async def api_without_temporal(settings: Settings, merchant: Merchant) -> AsyncIterator[Api]:
    """The API with Temporal unreachable (nothing listens on its address)."""
    app = create_app(settings.model_copy(update={"temporal_address": "127.0.0.1:9"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mktx.test") as client:
            yield Api(client, merchant)


async def test_erasure_stands_when_temporal_is_unreachable(
    api: Api, api_without_temporal: Api, account: XAccount, sessions: SessionMaker
) -> None:
    contact = await make_contact(api, account.id, username=f"gone_{uuid.uuid4().hex[:8]}")
    response = await api_without_temporal.delete(f"/contacts/{contact['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["workflowsStopped"] == 0
    assert (await api.get(f"/contacts/{contact['id']}")).status_code == 404
    assert await _tables_naming(sessions, contact["username"]) == []


async def test_erasure_after_real_deliveries_and_a_reply(
    live_api: str,
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    temporal_client: Client,
) -> None:
    """The contact made by X's own webhook deliveries (a DM, a follow, an echo) and a reply."""
    shop = await connect(api, await x_user(x_admin, "shop", name="Shop Official"))
    person = await x_user(x_admin, "erin", name="Erin Erasable")
    text = f"my order {uuid.uuid4().hex[:8]} has not arrived"
    assert (await x_admin.simulate_dm(person.id, shop.x_id, text)).webhook_status == 200
    assert (await x_admin.simulate_follow(person.id, shop.x_id, "follow")).webhook_status == 200
    (contact,) = (await api.get("/contacts", params={"accountId": str(shop.account_id)})).json()[
        "data"
    ]
    conversation = (await api.get(f"/contacts/{contact['id']}/conversations")).json()["data"][0]
    sent = await api.post(
        f"/conversations/{conversation['id']}/messages",
        role=Role.agent,
        json={"content": f"Sorry {person.name}, we are on it"},
    )
    assert sent.status_code in (200, 202), sent.text
    # A message the shop wrote from X's own app: X echoes it to the shop's webhook.
    echo = await x_admin.simulate_dm(
        shop.x_id, person.id, f"{person.name}, your parcel left today", for_user_id=shop.x_id
    )
    assert echo.webhook_status == 200
    for needle in (person.username, person.id, text):
        assert await _tables_naming(sessions, needle), needle

    response = await api.delete(f"/contacts/{contact['id']}")
    assert response.status_code == 200, response.text
    removed = response.json()["data"]["removed"]
    assert removed["messages"] == 3 and removed["conversations"] == 1
    assert removed["webhookEvents"] == 3

    for needle in (person.username, person.id, person.name, text):
        assert await _tables_naming(sessions, needle) == [], needle
    listed = await api.get("/contacts", params={"accountId": str(shop.account_id)})
    assert listed.json()["data"] == []
