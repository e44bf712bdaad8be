"""The three workloads of the fault matrix, set up through the API where a merchant would use
it (account, template, segment, campaign, flow, enrolment) and straight in SQL where the API
would only be slow (thousands of contacts), plus the load generator of the webhook flood.

Recipients' X ids are numbers of the test's own range, so the sandbox's DM log of a stack
holds nothing but the workload's DMs."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import text
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from sandbox.admin import SandboxUser
from sandbox.state import User
from services.ingestion.signatures import SIGNATURE_HEADER, body_signature
from tests.faults.stack import CONSUMER_SECRET, FaultStack
from workflows import ids
from workflows.campaign import CampaignInput, CampaignWorkflow

WEBHOOK = "/api/v1/mkt-x/webhooks/twitter"
FIRST_PERSON = 7_000_000_000
EVENTS_PER_DELIVERY = 2
KEYWORD_CUSTOMERS = 60


def people(count: int) -> list[User]:
    return [User(str(FIRST_PERSON + i), f"reader_{i}", f"Reader {i}", None) for i in range(count)]


async def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, f"{response.request.url}: {response.text}"
    return response.json()["data"]


async def connect_shop(stack: FaultStack) -> tuple[SandboxUser, str]:
    """A shop's X account connected through the API, as a merchant does."""
    shop = await stack.x_admin.create_user(f"shop_{uuid.uuid4().hex[:6]}", name="Fault Shop")
    account = await ok(
        await stack.api.post(
            "/accounts",
            json={"oauthToken": shop.access_token, "oauthTokenSecret": shop.access_token_secret},
        )
    )
    return shop, str(account["id"])


async def seed_contacts(
    stack: FaultStack, account_id: str, users: list[User], tag: str
) -> list[uuid.UUID]:
    """The users as the shop's contacts, in one statement."""
    async with stack.sessions() as session, session.begin():
        rows = await session.execute(
            text(
                """
                INSERT INTO contacts (id, merchant_id, created_at, updated_at, account_id,
                    twitter_user_id, username, display_name, tags, attributes, source, opted_out,
                    conversation_count)
                SELECT gen_random_uuid(), :m, now(), now(), :a, u.id, u.username, u.name,
                    ARRAY[CAST(:tag AS text)], '{}'::jsonb, 'manual', false, 0
                FROM unnest(CAST(:ids AS text[]), CAST(:usernames AS text[]),
                            CAST(:names AS text[])) AS u(id, username, name)
                RETURNING id
                """
            ),
            {
                "m": stack.api.merchant.id,
                "a": uuid.UUID(account_id),
                "tag": tag,
                "ids": [u.id for u in users],
                "usernames": [u.username for u in users],
                "names": [u.name for u in users],
            },
        )
        return [row[0] for row in rows.all()]


async def template(stack: FaultStack, content: str) -> str:
    body = {"name": f"T {uuid.uuid4().hex[:6]}", "content": content}
    return str((await ok(await stack.api.post("/templates", json=body)))["id"])


async def scalar(stack: FaultStack, sql: str, **params: Any) -> Any:
    async with stack.sessions() as session:
        return (await session.execute(text(sql), params)).scalar_one()


async def rows(stack: FaultStack, sql: str, **params: Any) -> list[Any]:
    async with stack.sessions() as session:
        return list((await session.execute(text(sql), params)).all())


# The campaign -------------------------------------------------------------------------------

CAMPAIGN_TEXT = "Hi {{name}}, the fault sale starts now"


async def start_campaign(stack: FaultStack, tag: str, heartbeat_seconds: int | None = None) -> str:
    segment = await ok(
        await stack.api.post(
            "/segments",
            json={
                "name": "Fault matrix",
                "conditions": [{"field": "tags", "operator": "contains", "value": tag}],
            },
        )
    )
    campaign = await ok(
        await stack.api.post(
            "/campaigns",
            json={
                "name": "Fault sale",
                "type": "promotional",
                "templateId": await template(stack, CAMPAIGN_TEXT),
                "segmentIds": [segment["id"]],
            },
        )
    )
    if heartbeat_seconds is None:
        await ok(await stack.api.post(f"/campaigns/{campaign['id']}/start"))
        return str(campaign["id"])
    # Started as the API starts it (status `running`, then its workflow), with a shorter
    # heartbeat: the retry of a batch whose attempt was lost leaves that attempt's claimed DMs
    # alone for two heartbeat timeouts (services/messaging/delivery.py, claim_lease) — 30 s
    # by default, 8 s here (its floor) — and then looks for them at X. The same knob the campaign
    # exactly-once test turns; the wait itself is not what the matrix measures.
    async with stack.sessions() as session, session.begin():
        await session.execute(
            text("UPDATE campaigns SET status = 'running' WHERE id = CAST(:c AS uuid)"),
            {"c": campaign["id"]},
        )
    client = await Client.connect(stack.temporal.address, data_converter=pydantic_data_converter)
    await client.start_workflow(
        CampaignWorkflow.run,
        CampaignInput(
            merchant_id=stack.api.merchant.id,
            campaign_id=uuid.UUID(campaign["id"]),
            heartbeat_seconds=heartbeat_seconds,
        ),
        id=ids.campaign_id(str(campaign["id"])),
        task_queue=stack.settings.task_queue,
    )
    return str(campaign["id"])


# The flow -----------------------------------------------------------------------------------

FLOW_FIRST = "Hi {{name}}, step one"
FLOW_SECOND = "{{name}}, step two"
FLOW_STEPS = [("first", "sent"), ("pause", "waited"), ("second", "sent"), ("done", "ended")]


async def start_flow(stack: FaultStack, contact_ids: list[uuid.UUID], wait_seconds: int) -> str:
    """A manual flow — a DM, a short wait, a DM — activated and every contact enrolled."""
    first = await template(stack, FLOW_FIRST)
    second = await template(stack, FLOW_SECOND)
    flow = await ok(
        await stack.api.post(
            "/automation/flows",
            json={
                "name": "Fault flow",
                "trigger": {"type": "manual", "config": {}},
                "nodes": [
                    {"id": "first", "type": "send_message", "config": {"templateId": first}},
                    {"id": "pause", "type": "wait", "config": {"duration": wait_seconds}},
                    {"id": "second", "type": "send_message", "config": {"templateId": second}},
                    {"id": "done", "type": "end", "config": {}},
                ],
                "connections": [
                    {"fromNodeId": "first", "toNodeId": "pause"},
                    {"fromNodeId": "pause", "toNodeId": "second"},
                    {"fromNodeId": "second", "toNodeId": "done"},
                ],
            },
        )
    )
    await ok(await stack.api.post(f"/automation/flows/{flow['id']}/activate"))
    enrolled = await ok(
        await stack.api.post(
            f"/automation/flows/{flow['id']}/enroll",
            json={"contactIds": [str(c) for c in contact_ids]},
            timeout=60,
        )
    )
    assert (enrolled["enrolled"], enrolled["skipped"]) == (len(contact_ids), []), enrolled
    return str(flow["id"])


async def keyword_flow(stack: FaultStack, keyword: str) -> str:
    """An active flow started by an inbound DM containing `keyword`: one DM back, once per
    contact (re-entry `never`), so each start an event owed Temporal shows in the DM log."""
    reply = await template(stack, "{{name}}, your gift code is on its way")
    flow = await ok(
        await stack.api.post(
            "/automation/flows",
            json={
                "name": "Gift flow",
                "trigger": {"type": "message_received", "config": {"keywords": [keyword]}},
                "nodes": [
                    {"id": "reply", "type": "send_message", "config": {"templateId": reply}},
                    {"id": "done", "type": "end", "config": {}},
                ],
                "connections": [{"fromNodeId": "reply", "toNodeId": "done"}],
            },
        )
    )
    await ok(await stack.api.post(f"/automation/flows/{flow['id']}/activate"))
    return str(flow["id"])


# The webhook flood --------------------------------------------------------------------------


def signed_dm_deliveries(
    shop: SandboxUser, customers: list[User], events: int, keyword_rounds: set[int], keyword: str
) -> list[tuple[list[str], bytes, str]]:
    """`events` DMs from the customers in turn, two to a delivery (X batches the events of an
    account), signed as X signs them: (event ids, body, signature). In the rounds of
    `keyword_rounds` the DMs of the first KEYWORD_CUSTOMERS customers hold the keyword (each
    of them triggers the keyword flow twice: it must run once)."""
    deliveries = []
    base_ms = int(time.time() * 1000)
    for first in range(0, events, EVENTS_PER_DELIVERY):
        dms: list[dict[str, Any]] = []
        users = {shop.id: {"id": shop.id, "name": shop.name, "screen_name": shop.username}}
        for i in range(first, min(first + EVENTS_PER_DELIVERY, events)):
            index = i % len(customers)
            customer = customers[index]
            triggers = i // len(customers) in keyword_rounds and index < KEYWORD_CUSTOMERS
            words = f"I would like a {keyword}" if triggers else "where is my order"
            dms.append(
                {
                    "type": "message_create",
                    "id": str(10**18 + i),
                    "created_timestamp": str(base_ms + i),
                    "message_create": {
                        "target": {"recipient_id": shop.id},
                        "sender_id": customer.id,
                        "message_data": {"text": f"{words} (#{i})", "entities": {"urls": []}},
                    },
                }
            )
            users[customer.id] = {
                "id": customer.id,
                "name": customer.name,
                "screen_name": customer.username,
            }
        payload = {"for_user_id": shop.id, "direct_message_events": dms, "users": users}
        body = json.dumps(payload, separators=(",", ":")).encode()
        ids = [str(dm["id"]) for dm in dms]
        deliveries.append((ids, body, body_signature(CONSUMER_SECRET, body)))
    return deliveries


@dataclass
class Flood:
    """What X saw: each delivery's answers in order (by its first event's id)."""

    answers: dict[str, list[int | str]] = field(default_factory=dict)
    receipts: dict[str, dict[str, int]] = field(default_factory=dict)  # the 200's body
    sent: int = 0  # deliveries taken by the load generator's lanes so far
    done: int = 0  # deliveries answered 200 (or finally otherwise)

    def statuses(self) -> Counter[int | str]:
        return Counter(a for answers in self.answers.values() for a in answers)


RETRY_SECONDS = 0.3


async def flood(
    base_url: str,
    deliveries: list[tuple[list[str], bytes, str]],
    result: Flood,
    concurrency: int = 24,
) -> None:
    """Deliver each as X does: again, after a pause, while it is answered 503 or the
    connection fails (refused while the API is down, reset when it dies mid-request), until
    a 200; anything else is the final answer (and fails the test)."""
    queue = list(reversed(deliveries))

    async def one(client: httpx.AsyncClient, event_ids: list[str], body: bytes, sig: str) -> None:
        answers = result.answers.setdefault(event_ids[0], [])
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sig}
        while True:
            try:
                response = await client.post(WEBHOOK, content=body, headers=headers)
            except httpx.TransportError as exc:
                answers.append(type(exc).__name__)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            answers.append(response.status_code)
            if response.status_code == 503:
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if response.status_code == 200:
                result.receipts[event_ids[0]] = response.json()["data"]
            return

    async def lane() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=base_url, trust_env=False, timeout=15, limits=limits
        ) as client:
            while queue:
                event_ids, body, signature = queue.pop()
                result.sent += 1
                await one(client, event_ids, body, signature)
                result.done += 1

    await asyncio.gather(*(lane() for _ in range(concurrency)))
