"""One known history, built once for every analytics test (a package-scoped merchant):

March 2026 (UTC), all through X webhooks except the bot's reply:

  alice  Mon 03-02 09:00 DM, 09:05 shop reply (5m); 10:00 DM, 10:02 DM, 10:30 reply (30m,
         from 10:00); Wed 04-01 09:00 DM, 09:10 reply (10m). Her conversation is closed.
  bob    Tue 03-03 12:00 DM, 12:00:40 the assistant's reply (40s); Thu 03-05 08:00 DM, never
         answered. His conversation is assigned to agent-7.
  carol  Wed 03-04 15:00 follows the shop (new, never writes).
  dave   Wed 03-04 04:30 DM (Tue 23:30 in New York), 05:30 reply (1h).
  erin   Mon 03-09 09:00 DM, 09:02 reply (2m).
  gina   Tue 03-10 10:00 DM to the second shop, never answered.

Then, today, through the API: frank imported (no interaction), tags (vip: alice and bob; lead:
carol), a campaign to the vip tag (2 DMs), a flow (a DM, then the end) into which carol and
dave are enrolled, and the assistant asked once about erin's conversation, which is then
escalated. Replies in the history are the shop's own DMs as X echoes them (a person typing in
X): they count as human replies, at the time X gives.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from mktx.settings import Settings
from models.conversation import Conversation, Message, MessageDirection, MessageStatus
from models.db import SessionMaker
from models.quota import SendKind
from sandbox.admin import SandboxAdmin, SandboxUser
from sandbox.server import RunningSandbox
from tests.conftest import Api, Merchant
from tests.webhooks.conftest import (
    Shop,
    connect,
    dm_event,
    dm_payload,
    eventually,
    follow_payload,
    inbound,
    post_signed,
    users_of,
    x_user,
)

NY = "America/New_York"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ms(text: str) -> int:
    return int(at(text).timestamp() * 1000)


@dataclass
class History:
    api: Api
    other: Api  # a second merchant, with nothing of its own
    shop: Shop
    second_shop: Shop
    people: dict[str, SandboxUser]
    contact_ids: dict[str, uuid.UUID] = field(default_factory=dict)
    conversation_ids: dict[str, uuid.UUID] = field(default_factory=dict)
    campaign_id: str = ""
    flow_id: str = ""
    today: tuple[str, str] = ("", "")  # a range around now, for what the API did today

    async def report(self, name: str, **params: str) -> dict[str, Any]:
        return await self.report_as(self.api, name, **params)

    async def report_as(self, api: Api, name: str, **params: str) -> dict[str, Any]:
        response = await api.get(f"/analytics/{name}", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True
        return body["data"]  # type: ignore[no-any-return]


async def _deliver(client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
    response = await post_signed(client, payload)
    assert response.status_code == 200, response.text


def _dm(shop: Shop, person: SandboxUser, when: str) -> dict[str, Any]:
    return inbound(shop, person, f"hello at {when}", at_ms=ms(when))


def _reply(shop: Shop, person: SandboxUser, when: str) -> dict[str, Any]:
    """The shop's own DM, as X echoes it: typed in X by a person."""
    return dm_payload(
        shop.x_id,
        dm_event(shop.x_id, person.id, f"reply at {when}", at_ms=ms(when)),
        users=users_of(person, shop.user),
    )


@pytest.fixture(scope="package")
async def history(
    settings: Settings,
    app_client: httpx.AsyncClient,
    sandbox: RunningSandbox,
    sessions: SessionMaker,
) -> AsyncIterator[History]:
    api, other = Api(app_client, Merchant(settings)), Api(app_client, Merchant(settings))
    admin = SandboxAdmin(sandbox.url)
    shop = await connect(api, await x_user(admin, "ashop", name="Analytics Shop"))
    second = await connect(api, await x_user(admin, "ashop2", name="Second Shop"))
    names = ("alice", "bob", "carol", "dave", "erin", "gina", "frank")
    people = {name: await x_user(admin, name, name=name.title()) for name in names}
    h = History(api, other, shop, second, people)
    p = people

    for payload in (
        _dm(shop, p["alice"], "2026-03-02T09:00:00"),
        _reply(shop, p["alice"], "2026-03-02T09:05:00"),
        _dm(shop, p["alice"], "2026-03-02T10:00:00"),
        _dm(shop, p["alice"], "2026-03-02T10:02:00"),
        _reply(shop, p["alice"], "2026-03-02T10:30:00"),
        _dm(shop, p["alice"], "2026-04-01T09:00:00"),
        _reply(shop, p["alice"], "2026-04-01T09:10:00"),
        _dm(shop, p["bob"], "2026-03-03T12:00:00"),
        _dm(shop, p["bob"], "2026-03-05T08:00:00"),
        follow_payload(shop, p["carol"], at_ms=ms("2026-03-04T15:00:00")),
        _dm(shop, p["dave"], "2026-03-04T04:30:00"),
        _reply(shop, p["dave"], "2026-03-04T05:30:00"),
        _dm(shop, p["erin"], "2026-03-09T09:00:00"),
        _reply(shop, p["erin"], "2026-03-09T09:02:00"),
        _dm(second, p["gina"], "2026-03-10T10:00:00"),
    ):
        await _deliver(app_client, payload)

    contacts = (await api.get("/contacts", params={"take": 100})).json()["data"]
    h.contact_ids = {c["username"].split("_")[0]: uuid.UUID(c["id"]) for c in contacts}
    async with sessions() as session:
        rows = await session.execute(
            select(Conversation).where(col(Conversation.merchant_id) == api.merchant.id)
        )
        by_contact = {row.contact_id: row for row in rows.scalars()}
    h.conversation_ids = {
        name: by_contact[cid].id for name, cid in h.contact_ids.items() if cid in by_contact
    }

    # The assistant's reply is written as the send path records one X accepted (is_from_bot,
    # kind bot, sent at X's time): through the API it would be sent now, and the history needs
    # it 40 seconds after bob's DM of March 3.
    bob_conversation = by_contact[h.contact_ids["bob"]]
    async with sessions() as session, session.begin():
        session.add(
            Message(
                merchant_id=api.merchant.id,
                conversation_id=bob_conversation.id,
                account_id=shop.account_id,
                contact_id=h.contact_ids["bob"],
                direction=MessageDirection.outbound,
                content="Your order ships tomorrow.",
                is_from_bot=True,
                kind=SendKind.bot.value,
                status=MessageStatus.sent,
                twitter_message_id=str(uuid.uuid4().int % 10**18),
                sent_at=at("2026-03-03T12:00:40"),
            )
        )

    await _today(h, app_client)
    yield h


async def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def _today(h: History, client: httpx.AsyncClient) -> None:
    api, ids, conversations = h.api, h.contact_ids, h.conversation_ids
    now = datetime.now(UTC)
    h.today = (
        (now - timedelta(days=1)).date().isoformat(),
        (now + timedelta(days=1)).date().isoformat(),
    )
    await _ok(await api.put(f"/conversations/{conversations['alice']}/close", json={}))
    await _ok(
        await api.post(f"/conversations/{conversations['bob']}/assign", json={"userId": "agent-7"})
    )
    frank = h.people["frank"]
    imported = await api.request(
        "POST",
        "/contacts/import",
        params={"accountId": str(h.shop.account_id)},
        content=f"twitterUserId,username\n{frank.id},{frank.username}\n".encode(),
        headers={"content-type": "text/csv"},
    )
    assert (await _ok(imported))["created"] == 1
    for name, tag in (("alice", "vip"), ("bob", "vip"), ("carol", "lead")):
        await _ok(await api.post(f"/contacts/{ids[name]}/tags", json={"tags": [tag]}))

    template = await _ok(
        await api.post("/templates", json={"name": "Deal", "content": "Hi {{name}}, a deal"})
    )
    segment = await _ok(
        await api.post(
            "/segments",
            json={
                "name": "VIP",
                "conditions": [{"field": "tags", "operator": "contains", "value": "vip"}],
            },
        )
    )
    campaign = await _ok(
        await api.post(
            "/campaigns",
            json={"name": "VIP deal", "templateId": template["id"], "segmentIds": [segment["id"]]},
        )
    )
    h.campaign_id = campaign["id"]
    await _ok(await api.post(f"/campaigns/{h.campaign_id}/start"))

    flow = await _ok(
        await api.post(
            "/automation/flows",
            json={
                "name": "Hello flow",
                "trigger": {"type": "manual", "config": {}},
                "nodes": [
                    {
                        "id": "hello",
                        "type": "send_message",
                        "config": {"templateId": template["id"]},
                    },
                    {"id": "done", "type": "end", "config": {}},
                ],
                "connections": [{"fromNodeId": "hello", "toNodeId": "done"}],
            },
        )
    )
    h.flow_id = flow["id"]
    await _ok(await api.post(f"/automation/flows/{h.flow_id}/activate"))
    enrolled = await _ok(
        await api.post(
            f"/automation/flows/{h.flow_id}/enroll",
            json={"contactIds": [str(ids["carol"]), str(ids["dave"])]},
        )
    )
    assert enrolled["enrolled"] == 2

    await _ok(await api.put("/ai/settings", json={"enabled": True}))
    await _ok(
        await api.post(
            f"/ai/conversations/{conversations['erin']}/message",
            json={"message": "Where is my order?"},
        )
    )
    await _ok(
        await api.post(
            f"/ai/conversations/{conversations['erin']}/escalate", json={"reason": "asked"}
        )
    )

    async def campaign_done() -> str:
        return str((await _ok(await api.get(f"/campaigns/{h.campaign_id}")))["status"])

    async def flow_runs() -> list[dict[str, Any]]:
        return await _ok(await api.get(f"/automation/flows/{h.flow_id}/executions"))

    status = await eventually(campaign_done, lambda s: s == "completed", 30)
    assert status == "completed"
    runs = await eventually(flow_runs, lambda rs: all(r["status"] == "completed" for r in rs), 30)
    assert [r["status"] for r in runs] == ["completed", "completed"]
    await asyncio.sleep(0)
