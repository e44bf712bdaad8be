"""Sending in a conversation: API → PostgreSQL → SendMessage workflow → X sandbox, with X
refusing, failing, rate-limiting and answering too late."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlmodel import col, select
from temporalio.client import Client

from integrations.x import XClient, XCredentials
from models.account import AccountStatus, XAccount
from models.conversation import (
    Conversation,
    ConversationStatus,
    Message,
    MessageDirection,
    MessageStatus,
)
from models.db import SessionMaker, utcnow
from sandbox.admin import SandboxAdmin
from services.core.auth import Role
from services.inbox import replies
from services.messaging.quota import quota_usage
from tests.conftest import Api
from tests.conversations.inbox import Shop, Thread, connect_shop, open_thread
from workflows import ids
from workflows.contracts.messaging import SendOutcome
from workflows.messaging import SendMessageWorkflow


async def _thread(api: Api, x_admin: SandboxAdmin, sessions: SessionMaker) -> tuple[Shop, Thread]:
    shop = await connect_shop(api, x_admin)
    return shop, await open_thread(sessions, x_admin, api.merchant.id, shop)


def _send_path(thread: Thread) -> str:
    return f"/2/dm_conversations/with/{thread.customer.id}/messages"


async def _messages(sessions: SessionMaker, thread: Thread) -> list[Message]:
    async with sessions() as session:
        rows = await session.exec(
            select(Message)
            .where(col(Message.conversation_id) == uuid.UUID(thread.id))
            .order_by(col(Message.created_at))
        )
        return list(rows.all())


async def _conversation(sessions: SessionMaker, thread: Thread) -> Conversation:
    async with sessions() as session:
        row = await session.get(Conversation, uuid.UUID(thread.id))
        assert row is not None
        return row


async def _wait_for(predicate: Any, timeout: float = 20.0, poll: float = 0.1) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(poll)


async def test_a_reply_reaches_x_and_answers_with_its_id(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    temporal_client: Client,
) -> None:
    shop, thread = await _thread(api, x_admin, sessions)

    response = await api.post(
        f"/conversations/{thread.id}/messages",
        json={"content": "Your order #12345 has been shipped!", "type": "text"},
        role=Role.agent,
    )

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    received = await x_admin.dms(recipient_id=thread.customer.id)
    assert len(received) == 1
    dm = received[0]
    assert dm.sender_id == shop.user.id and dm.text == "Your order #12345 has been shipped!"
    assert data["twitterMessageId"] == dm.id
    assert data["conversationId"] == thread.id
    assert data["direction"] == "outbound" and data["type"] == "text"
    assert data["content"] == "Your order #12345 has been shipped!"
    assert data["status"] == "sent" and data["attachments"] == []
    assert data["sentAt"] is not None and data["sentByUserId"] == api.merchant.user_id

    [row] = await _messages(sessions, thread)
    assert str(row.id) == data["id"] and row.twitter_message_id == dm.id
    assert row.status == "sent" and row.contact_id == uuid.UUID(thread.contact_id)
    conversation = await _conversation(sessions, thread)
    assert conversation.message_count == 1 and conversation.last_message_at is not None
    async with sessions() as session:
        assert await quota_usage(session, uuid.UUID(shop.account_id)) == 1

    shown = (await api.get(f"/conversations/{thread.id}")).json()["data"]
    assert [m["twitterMessageId"] for m in shown["messages"]] == [dm.id]
    assert shown["messageCount"] == 1

    # The send is a workflow operators can find by merchant, account and contact.
    handle = temporal_client.get_workflow_handle_for(
        SendMessageWorkflow.run, ids.send_message_id(data["id"])
    )
    result = await handle.result()
    assert result.outcome == SendOutcome.sent and result.twitter_message_id == dm.id
    description = await handle.describe()
    attributes = description.typed_search_attributes
    assert attributes.get(ids.MERCHANT_ID) == api.merchant.id
    assert attributes.get(ids.ACCOUNT_ID) == shop.account_id
    assert attributes.get(ids.CONTACT_ID) == thread.contact_id


async def test_link_attachments_go_as_links_and_count_toward_the_limit(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    # Images, videos and GIFs are uploaded and attached instead: tests/conversations/test_media_send.py
    _, thread = await _thread(api, x_admin, sessions)
    attachment = {"type": "link", "url": "https://example.com/tracking"}

    response = await api.post(
        f"/conversations/{thread.id}/messages",
        json={"content": "Tracking:", "attachments": [attachment]},
    )

    assert response.status_code == 200, response.text
    assert response.json()["data"]["attachments"] == [attachment]
    [dm] = await x_admin.dms(recipient_id=thread.customer.id)
    assert dm.text == "Tracking:\nhttps://example.com/tracking" and dm.media is None
    bad = await api.post(
        f"/conversations/{thread.id}/messages",
        json={"content": "x", "attachments": [{"type": "image", "url": "not a url"}]},
    )
    assert bad.status_code == 422 and bad.json()["details"]["field"] == "attachments[0].url"


async def test_text_over_10000_characters_is_refused_before_anything_happens(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop, thread = await _thread(api, x_admin, sessions)

    too_long = await api.post(
        f"/conversations/{thread.id}/messages", json={"content": "a" * 10_001}
    )
    assert too_long.status_code == 400
    body = too_long.json()
    assert body["code"] == "VALIDATION_ERROR" and body["details"]["field"] == "content"
    empty = await api.post(f"/conversations/{thread.id}/messages", json={"content": "  "})
    assert empty.status_code == 400 and empty.json()["details"]["field"] == "content"
    missing = await api.post(f"/conversations/{thread.id}/messages", json={})
    assert missing.status_code == 422 and missing.json()["details"]["field"] == "content"
    assert await _messages(sessions, thread) == []
    assert await x_admin.dms(recipient_id=thread.customer.id) == []
    async with sessions() as session:
        assert await quota_usage(session, uuid.UUID(shop.account_id)) == 0

    exactly = await api.post(f"/conversations/{thread.id}/messages", json={"content": "b" * 10_000})
    assert exactly.status_code == 200, exactly.text


async def test_x_refusing_is_a_502_with_xs_reason_and_frees_the_slot(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop, thread = await _thread(api, x_admin, sessions)
    await x_admin.set_accepts_dms(thread.customer.id, False)

    response = await api.post(f"/conversations/{thread.id}/messages", json={"content": "hello"})

    assert response.status_code == 502, response.text
    body = response.json()
    assert body["code"] == "TWITTER_API_ERROR"
    assert "do not accept direct messages" in body["details"]["reason"]
    assert body["details"]["xStatus"] == 403
    [row] = await _messages(sessions, thread)
    assert body["details"]["messageId"] == str(row.id)
    assert row.status == "failed" and row.error and "do not accept direct messages" in row.error
    assert row.twitter_message_id is None
    async with sessions() as session:
        assert await quota_usage(session, uuid.UUID(shop.account_id)) == 0
    shown = (await api.get(f"/conversations/{thread.id}")).json()["data"]["messages"]
    assert shown[0]["status"] == "failed" and "direct messages" in shown[0]["error"]
    assert await x_admin.dms(recipient_id=thread.customer.id) == []


async def test_x_down_briefly_still_delivers_exactly_once(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    _, thread = await _thread(api, x_admin, sessions)
    path = _send_path(thread)
    await x_admin.set_faults(error_rate=1.0, error_status=503, path_prefix=path)

    async def two_failed_attempts() -> bool:
        logged = await x_admin.requests(path_prefix=path)
        return sum(1 for r in logged if r.fault == "error503") >= 2

    async def clear_after_two_attempts() -> None:
        await _wait_for(two_failed_attempts)
        await x_admin.clear_faults()

    clearing = asyncio.create_task(clear_after_two_attempts())
    response = await api.post(f"/conversations/{thread.id}/messages", json={"content": "back?"})
    await clearing

    assert response.status_code == 200, response.text
    received = await x_admin.dms(recipient_id=thread.customer.id)
    assert [dm.text for dm in received] == ["back?"]
    assert response.json()["data"]["twitterMessageId"] == received[0].id
    attempts = await x_admin.requests(path_prefix=path)
    assert [r.status for r in attempts] == [503, 503, 201]


async def test_x_rate_limit_waits_for_the_reset(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    _, thread = await _thread(api, x_admin, sessions)
    path = _send_path(thread)
    await x_admin.set_faults(burst429=1, path_prefix=path, retry_after_seconds=2)

    started = utcnow()
    response = await api.post(f"/conversations/{thread.id}/messages", json={"content": "patience"})

    assert response.status_code == 200, response.text
    attempts = await x_admin.requests(path_prefix=path)
    assert [r.status for r in attempts] == [429, 201]
    assert (attempts[1].at - attempts[0].at).total_seconds() >= 1.0  # waited for X's reset
    assert (utcnow() - started).total_seconds() < 15
    assert len(await x_admin.dms(recipient_id=thread.customer.id)) == 1


async def test_x_down_longer_than_the_wait_answers_202_and_delivers_later(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(replies, "SEND_WAIT_SECONDS", 1.0)
    _, thread = await _thread(api, x_admin, sessions)
    await x_admin.set_faults(error_rate=1.0, error_status=503, path_prefix=_send_path(thread))

    response = await api.post(f"/conversations/{thread.id}/messages", json={"content": "later"})

    assert response.status_code == 202, response.text
    data = response.json()["data"]
    assert data["status"] == "queued" and data["twitterMessageId"] is None
    await x_admin.clear_faults()
    handle = temporal_client.get_workflow_handle_for(
        SendMessageWorkflow.run, ids.send_message_id(data["id"])
    )
    result = await asyncio.wait_for(handle.result(), timeout=30)
    assert result.outcome == SendOutcome.sent
    [dm] = await x_admin.dms(recipient_id=thread.customer.id)
    assert dm.text == "later" and result.twitter_message_id == dm.id
    [row] = await _messages(sessions, thread)
    assert row.status == "sent" and row.twitter_message_id == dm.id


async def test_an_unknown_outcome_is_reconciled_and_an_echo_merged(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    sandbox_x: XClient,
) -> None:
    """X took the DM but its answer was lost (here: a 503 while the DM reaches X by the same
    account): the retry finds it at X instead of sending it again, and the webhook's echo row
    stored meanwhile merges into our message."""
    shop, thread = await _thread(api, x_admin, sessions)
    path = _send_path(thread)
    await x_admin.set_faults(error_rate=1.0, error_status=503, path_prefix=path)
    credentials = XCredentials(shop.user.access_token, shop.user.access_token_secret)

    async def x_takes_it_despite_the_503() -> None:
        async def first_attempt_failed() -> bool:
            return any(r.status == 503 for r in await x_admin.requests(path_prefix=path))

        await _wait_for(first_attempt_failed, poll=0.02)
        await x_admin.clear_faults()
        sent = await asyncio.to_thread(sandbox_x.send_dm, credentials, thread.customer.id, "once")
        # What the webhook ingestion stores for an echo of a send it cannot match yet.
        async with sessions() as session, session.begin():
            session.add(
                Message(
                    merchant_id=api.merchant.id,
                    conversation_id=uuid.UUID(thread.id),
                    account_id=uuid.UUID(shop.account_id),
                    contact_id=uuid.UUID(thread.contact_id),
                    direction=MessageDirection.outbound,
                    content="once",
                    twitter_message_id=sent.dm_event_id,
                    status=MessageStatus.sent,
                    sent_at=utcnow(),
                )
            )
            conversation = await session.get(Conversation, uuid.UUID(thread.id))
            assert conversation is not None
            conversation.message_count += 1

    lost_answer = asyncio.create_task(x_takes_it_despite_the_503())
    response = await api.post(f"/conversations/{thread.id}/messages", json={"content": "once"})
    await lost_answer

    assert response.status_code == 200, response.text
    received = await x_admin.dms(recipient_id=thread.customer.id)
    assert len(received) == 1
    data = response.json()["data"]
    assert data["twitterMessageId"] == received[0].id and data["status"] == "sent"
    [row] = await _messages(sessions, thread)
    assert str(row.id) == data["id"] and row.sent_by_user_id == api.merchant.user_id
    assert (await _conversation(sessions, thread)).message_count == 1
    assert [r.status for r in await x_admin.requests(path_prefix=path)] == [503, 201]


async def test_closed_conversations_and_inactive_accounts_cannot_be_sent_to(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop = await connect_shop(api, x_admin)
    closed = await open_thread(
        sessions, x_admin, api.merchant.id, shop, status=ConversationStatus.closed
    )

    response = await api.post(f"/conversations/{closed.id}/messages", json={"content": "hi"})
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_STATE"
    assert "closed" in response.json()["error"]

    thread = await open_thread(sessions, x_admin, api.merchant.id, shop)
    async with sessions() as session, session.begin():
        account = await session.get(XAccount, uuid.UUID(shop.account_id))
        assert account is not None
        account.status = AccountStatus.error
    refused = await api.post(f"/conversations/{thread.id}/messages", json={"content": "hi"})
    assert refused.status_code == 400
    assert refused.json()["error"] == "account is not active"
    for t in (closed, thread):
        assert await _messages(sessions, t) == []
        assert await x_admin.dms(recipient_id=t.customer.id) == []


async def test_a_revoked_token_fails_the_message_and_flags_the_account(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop, thread = await _thread(api, x_admin, sessions)
    await x_admin.revoke(shop.user.access_token)

    response = await api.post(f"/conversations/{thread.id}/messages", json={"content": "hi"})

    assert response.status_code == 502, response.text
    assert response.json()["code"] == "TWITTER_API_ERROR"
    assert "reconnect" in response.json()["error"]
    [row] = await _messages(sessions, thread)
    assert row.status == "failed"
    account = (await api.get(f"/accounts/{shop.account_id}")).json()["data"]
    assert account["status"] == "error"
    again = await api.post(f"/conversations/{thread.id}/messages", json={"content": "hi"})
    assert again.status_code == 400 and again.json()["error"] == "account is not active"
