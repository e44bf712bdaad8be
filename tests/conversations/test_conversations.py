"""Conversation Management over HTTP: list, get, close, assign; tenancy and roles."""

from __future__ import annotations

import uuid
from datetime import timedelta

from models.conversation import Conversation, ConversationStatus, MessageDirection
from models.db import SessionMaker, utcnow
from sandbox.admin import SandboxAdmin
from services.core.auth import Role
from tests.conftest import Api
from tests.conversations.inbox import add_message, connect_shop, open_thread


async def test_list_orders_by_latest_activity_with_contact_names_and_filters(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    merchant = api.merchant.id
    shop = await connect_shop(api, x_admin)
    other_shop = await connect_shop(api, x_admin)
    now = utcnow()
    quiet = await open_thread(
        sessions, x_admin, merchant, shop, started_at=now - timedelta(hours=5), name="Quiet One"
    )
    older = await open_thread(
        sessions, x_admin, merchant, shop, last_message_at=now - timedelta(hours=2)
    )
    newest = await open_thread(
        sessions, x_admin, merchant, shop, last_message_at=now - timedelta(minutes=1)
    )
    closed = await open_thread(
        sessions,
        x_admin,
        merchant,
        shop,
        status=ConversationStatus.closed,
        last_message_at=now - timedelta(hours=1),
        assigned_to="agent-7",
    )
    elsewhere = await open_thread(
        sessions, x_admin, merchant, other_shop, last_message_at=now - timedelta(minutes=30)
    )

    body = (await api.get("/conversations", role=Role.viewer)).json()
    assert body["success"] is True
    # Newest activity first; a conversation without messages yet comes last.
    assert [c["id"] for c in body["data"]] == [
        newest.id,
        elsewhere.id,
        closed.id,
        older.id,
        quiet.id,
    ]
    assert body["pagination"] == {
        "page": 1,
        "limit": 20,
        "total": 5,
        "totalPages": 1,
        "totalIsEstimate": False,
    }
    last = body["data"][-1]
    assert last["contact"] == {
        "username": quiet.customer.username,
        "displayName": "Quiet One",
    }
    assert last["contactId"] == quiet.contact_id and last["accountId"] == shop.account_id
    assert last["status"] == "open" and last["channel"] == "direct_message"
    assert last["messageCount"] == 0 and last["lastMessageAt"] is None
    assert set(last) >= {"assignedToUserId", "startedAt", "closedAt", "closeReason"}

    by_account = (await api.get(f"/conversations?accountId={other_shop.account_id}")).json()
    assert [c["id"] for c in by_account["data"]] == [elsewhere.id]
    open_ones = (await api.get("/conversations?status=open")).json()
    assert closed.id not in [c["id"] for c in open_ones["data"]]
    assert open_ones["pagination"]["total"] == 4
    only_closed = (await api.get("/conversations?status=closed")).json()
    assert [c["id"] for c in only_closed["data"]] == [closed.id]
    assigned = (await api.get("/conversations?assignedTo=agent-7")).json()
    assert [c["id"] for c in assigned["data"]] == [closed.id]
    combined = await api.get(f"/conversations?accountId={shop.account_id}&status=open&take=2")
    page = combined.json()
    assert [c["id"] for c in page["data"]] == [newest.id, older.id]
    assert page["pagination"] == {
        "page": 1,
        "limit": 2,
        "total": 3,
        "totalPages": 2,
        "totalIsEstimate": False,
    }
    second = (await api.get(f"/conversations?accountId={shop.account_id}&skip=2&take=2")).json()
    assert [c["id"] for c in second["data"]] == [older.id, quiet.id]

    bad = await api.get("/conversations?status=pending")
    assert bad.status_code == 422 and bad.json()["details"]["field"] == "status"
    bad_account = await api.get("/conversations?accountId=nope")
    assert bad_account.status_code == 422
    assert bad_account.json()["details"]["field"] == "accountId"


async def test_get_returns_messages_oldest_first_or_none(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    merchant = api.merchant.id
    shop = await connect_shop(api, x_admin)
    thread = await open_thread(sessions, x_admin, merchant, shop, name="John Doe")
    now = utcnow()
    # Stored out of order: the answer sorts by when they were sent.
    reply = await add_message(
        sessions,
        merchant,
        shop,
        thread,
        content="Hi! What's your order number?",
        sent_at=now - timedelta(minutes=2),
        direction=MessageDirection.outbound,
        status="sent",
        twitter_message_id="9001",
    )
    question = await add_message(
        sessions,
        merchant,
        shop,
        thread,
        content="Hello, I have a question about my order",
        sent_at=now - timedelta(minutes=5),
        twitter_message_id="9000",
        attachments=[{"type": "image", "url": "https://example.com/a.png"}],
    )

    response = await api.get(f"/conversations/{thread.id}", role=Role.viewer)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["id"] == thread.id and data["contactId"] == thread.contact_id
    assert data["contact"]["displayName"] == "John Doe"
    assert data["messageCount"] == 2
    assert [m["id"] for m in data["messages"]] == [question, reply]
    first, second = data["messages"]
    assert first == {
        "id": question,
        "conversationId": thread.id,
        "direction": "inbound",
        "type": "text",
        "content": "Hello, I have a question about my order",
        "attachments": [{"type": "image", "url": "https://example.com/a.png"}],
        "quickReply": None,
        "isFromBot": False,
        "status": "received",
        "twitterMessageId": "9000",
        "sentAt": first["sentAt"],
        "readAt": None,
        "error": None,
        "sentByUserId": None,
        "campaignId": None,
    }
    assert second["direction"] == "outbound" and second["status"] == "sent"

    without = (await api.get(f"/conversations/{thread.id}?includeMessages=false")).json()
    assert without["data"]["messages"] is None
    assert without["data"]["id"] == thread.id


async def test_close_records_reason_and_refuses_twice(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop = await connect_shop(api, x_admin)
    thread = await open_thread(sessions, x_admin, api.merchant.id, shop)

    closed = await api.put(
        f"/conversations/{thread.id}/close", json={"reason": "resolved"}, role=Role.agent
    )
    assert closed.status_code == 200, closed.text
    data = closed.json()["data"]
    assert data["status"] == "closed" and data["closeReason"] == "resolved"
    assert data["closedAt"] is not None
    async with sessions() as session:
        row = await session.get(Conversation, uuid.UUID(thread.id))
        assert row is not None and row.status == "closed" and row.close_reason == "resolved"

    again = await api.put(f"/conversations/{thread.id}/close")
    assert again.status_code == 400
    assert again.json()["code"] == "INVALID_STATE"

    # The body is optional.
    other = await open_thread(sessions, x_admin, api.merchant.id, shop)
    bare = await api.put(f"/conversations/{other.id}/close")
    assert bare.status_code == 200
    assert bare.json()["data"]["closeReason"] is None
    too_long = await api.put(f"/conversations/{other.id}/close", json={"reason": "x" * 257})
    assert too_long.status_code == 422 and too_long.json()["details"]["field"] == "reason"


async def test_assign_sets_the_user_and_validates_it(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop = await connect_shop(api, x_admin)
    thread = await open_thread(sessions, x_admin, api.merchant.id, shop)

    assigned = await api.post(
        f"/conversations/{thread.id}/assign", json={"userId": "user-uuid-42"}, role=Role.agent
    )
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["data"]["assignedToUserId"] == "user-uuid-42"
    listed = (await api.get("/conversations?assignedTo=user-uuid-42")).json()
    assert [c["id"] for c in listed["data"]] == [thread.id]

    reassigned = await api.post(f"/conversations/{thread.id}/assign", json={"userId": "other"})
    assert reassigned.json()["data"]["assignedToUserId"] == "other"

    for bad in ({}, {"userId": ""}, {"userId": "u" * 129}, {"userId": 7}):
        response = await api.post(f"/conversations/{thread.id}/assign", json=bad)
        assert response.status_code == 422, bad
        assert response.json()["details"]["field"] == "userId"


async def test_another_merchant_sees_nothing(
    api: Api, other_api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop = await connect_shop(api, x_admin)
    thread = await open_thread(sessions, x_admin, api.merchant.id, shop)
    base = f"/conversations/{thread.id}"

    listed = (await other_api.get("/conversations")).json()
    assert listed["data"] == [] and listed["pagination"]["total"] == 0
    by_account = (await other_api.get(f"/conversations?accountId={shop.account_id}")).json()
    assert by_account["data"] == []
    answers = [
        await other_api.get(base),
        await other_api.post(f"{base}/messages", json={"content": "hello"}),
        await other_api.put(f"{base}/close", json={"reason": "spam"}),
        await other_api.post(f"{base}/assign", json={"userId": "intruder"}),
    ]
    for response in answers:
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "RESOURCE_NOT_FOUND"
    assert await x_admin.dms(recipient_id=thread.customer.id) == []
    async with sessions() as session:
        row = await session.get(Conversation, uuid.UUID(thread.id))
        assert row is not None
        assert row.status == "open" and row.assigned_to_user_id is None
        assert row.message_count == 0
    # Unknown ids are 404 too.
    assert (await api.get(f"/conversations/{uuid.uuid4()}")).status_code == 404


async def test_viewers_read_and_agents_act(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop = await connect_shop(api, x_admin)
    thread = await open_thread(sessions, x_admin, api.merchant.id, shop)
    base = f"/conversations/{thread.id}"

    assert (await api.get("/conversations", role=Role.viewer)).status_code == 200
    assert (await api.get(base, role=Role.viewer)).status_code == 200
    refused = [
        await api.post(f"{base}/messages", json={"content": "hi"}, role=Role.viewer),
        await api.put(f"{base}/close", role=Role.viewer),
        await api.post(f"{base}/assign", json={"userId": "me"}, role=Role.viewer),
    ]
    for response in refused:
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "FORBIDDEN"
    assert await x_admin.dms(recipient_id=thread.customer.id) == []

    sent = await api.post(f"{base}/messages", json={"content": "hi"}, role=Role.agent)
    assert sent.status_code == 200, sent.text
    assert sent.json()["data"]["status"] == "sent"
    assigned = await api.post(f"{base}/assign", json={"userId": "me"}, role=Role.agent)
    assert assigned.status_code == 200
    assert (await api.put(f"{base}/close", role=Role.agent)).status_code == 200
    unauthenticated = await api.client.get("/api/v1/mkt-x/conversations")
    assert unauthenticated.status_code == 401
