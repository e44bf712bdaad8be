"""Account Activity events become contacts, conversations and messages — once each."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import delete, update
from sqlmodel import col

from api.app import BASE_PATH, create_app
from mktx.settings import Settings
from models.conversation import Conversation, Message, MessageDirection
from models.db import SessionMaker, utcnow
from models.webhook_event import WebhookEvent
from sandbox.admin import SandboxAdmin, SandboxUser
from services.ingestion import reprocess_due
from tests.conftest import Api
from tests.webhooks.conftest import (
    Shop,
    contacts_of,
    conversations_of,
    dm_event,
    dm_payload,
    inbound,
    ingestion_of,
    messages_of,
    new_id,
    now_ms,
    post_signed,
    raw_events,
    users_of,
    x_user,
)


async def test_an_inbound_dm_makes_a_contact_a_conversation_and_a_message(
    live_api: str,
    api: Api,
    shop: Shop,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
) -> None:
    customer = await x_user(x_admin, "jane", name="Jane Customer")
    attachment = {
        "type": "media",
        "media": {
            "id_str": "777",
            "type": "photo",
            "media_url_https": "https://pbs.example/media/777.jpg",
        },
    }
    delivery = await x_admin.simulate_dm(
        customer.id, shop.x_id, "Hello, where is my order?", attachments=[attachment]
    )
    assert delivery.webhook_status == 200, delivery

    listed = await api.get("/contacts", params={"accountId": str(shop.account_id)})
    assert listed.status_code == 200, listed.text
    (contact,) = listed.json()["data"]
    assert contact["twitterUserId"] == customer.id
    assert contact["username"] == customer.username
    assert contact["displayName"] == "Jane Customer"
    assert contact["source"] == "inbound_message"
    assert contact["optedOut"] is False
    assert contact["conversationCount"] == 1
    assert contact["firstInteractionAt"] is not None
    assert contact["firstInteractionAt"] == contact["lastInteractionAt"]

    conversations = await api.get("/conversations", params={"accountId": str(shop.account_id)})
    (conversation,) = conversations.json()["data"]
    assert conversation["status"] == "open"
    assert conversation["contactId"] == contact["id"]
    detail = await api.get(
        f"/conversations/{conversation['id']}", params={"includeMessages": "true"}
    )
    (message,) = detail.json()["data"]["messages"]
    assert message["direction"] == "inbound"
    assert message["status"] == "received"
    assert message["content"] == "Hello, where is my order?"
    assert message["twitterMessageId"] == delivery.event_id
    assert message["attachments"] == [  # X's `photo` in the words of outbound attachments
        {"type": "image", "url": "https://pbs.example/media/777.jpg", "mediaId": "777"}
    ]

    (raw,) = await raw_events(sessions, shop.x_id)
    assert raw.merchant_id == api.merchant.id
    assert raw.account_id == shop.account_id
    assert raw.event_type == "direct_message"
    assert raw.subject_user_id == customer.id
    assert raw.processed_at is not None and raw.error is None
    assert raw.contact_id == uuid.UUID(contact["id"])  # GDPR erasure finds it by this link
    assert raw.payload["direct_message_events"][0]["id"] == delivery.event_id


async def test_a_second_dm_reuses_the_conversation_and_refreshes_the_profile(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    first_at = now_ms() - 60_000
    assert (
        await post_signed(api.client, inbound(shop, customer, "one", at_ms=first_at))
    ).status_code == 200
    renamed = {customer.id: {"id": customer.id, "screen_name": "renamed", "name": "New Name"}}
    second = dm_payload(
        shop.x_id,
        dm_event(
            customer.id,
            shop.x_id,
            "two",
            urls=[{"url": "https://t.co/x", "expanded_url": "https://shop.example/item/1"}],
        ),
        users=renamed,
    )
    assert (await post_signed(api.client, second)).status_code == 200

    (contact,) = await contacts_of(sessions, shop.account_id)
    assert contact.username == "renamed" and contact.display_name == "New Name"
    assert contact.first_interaction_at == datetime.fromtimestamp(first_at / 1000, UTC)
    assert contact.last_interaction_at is not None
    assert contact.last_interaction_at > contact.first_interaction_at
    assert contact.conversation_count == 1
    (conversation,) = await conversations_of(sessions, shop.account_id)
    assert conversation.message_count == 2
    assert conversation.last_message_at == contact.last_interaction_at
    messages = await messages_of(sessions, shop.account_id)
    assert [m.content for m in messages] == ["one", "two"]
    assert messages[1].attachments == [{"type": "link", "url": "https://shop.example/item/1"}]


async def test_a_dm_after_the_conversation_closed_opens_a_new_one(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    assert (await post_signed(api.client, inbound(shop, customer, "first"))).status_code == 200
    async with sessions() as session:
        await session.execute(
            update(Conversation)
            .where(col(Conversation.account_id) == shop.account_id)
            .values(status="closed", closed_at=utcnow())
        )
        await session.commit()
    assert (await post_signed(api.client, inbound(shop, customer, "again"))).status_code == 200

    conversations = await conversations_of(sessions, shop.account_id)
    assert [c.status for c in conversations] == ["closed", "open"]
    assert [c.message_count for c in conversations] == [1, 1]
    (contact,) = await contacts_of(sessions, shop.account_id)
    assert contact.conversation_count == 2


async def test_the_same_event_delivered_three_times_lands_once(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    payload = inbound(shop, customer, "only once please")
    answers = [await post_signed(api.client, payload) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["data"]["duplicates"] for a in answers] == [0, 1, 1]

    assert len(await contacts_of(sessions, shop.account_id)) == 1
    assert len(await messages_of(sessions, shop.account_id)) == 1
    (conversation,) = await conversations_of(sessions, shop.account_id)
    assert conversation.message_count == 1
    assert len(await raw_events(sessions, shop.x_id)) == 1


async def test_concurrent_first_messages_of_a_contact_share_one_contact_and_conversation(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    payloads = [inbound(shop, customer, f"burst {i}") for i in range(12)]
    duplicate = payloads[0]
    answers = await asyncio.gather(
        *(post_signed(api.client, p) for p in [*payloads, duplicate, duplicate])
    )
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]

    (contact,) = await contacts_of(sessions, shop.account_id)
    assert contact.conversation_count == 1
    (conversation,) = await conversations_of(sessions, shop.account_id)
    assert conversation.message_count == 12
    assert len(await messages_of(sessions, shop.account_id)) == 12


async def test_one_payload_with_several_events_stores_each_once(
    api: Api, shop: Shop, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    alice, bob = await x_user(x_admin, "alice"), await x_user(x_admin, "bob")
    payload: dict[str, Any] = dm_payload(
        shop.x_id,
        dm_event(alice.id, shop.x_id, "from alice"),
        dm_event(bob.id, shop.x_id, "from bob"),
        users=users_of(alice, bob, shop.user),
    )
    ts = str(now_ms())
    payload["direct_message_indicate_typing_events"] = [
        {"created_timestamp": ts, "sender_id": alice.id, "target": {"recipient_id": shop.x_id}}
    ]
    payload["favorite_events"] = [{"id": new_id(), "created_at": "now", "user": {"id_str": bob.id}}]
    payload["tweet_create_events"] = [{"id_str": new_id(), "user": {"id_str": alice.id}}]
    payload["block_events"] = [{"type": "block", "source": {"id": shop.x_id}}]

    first = await post_signed(api.client, payload)
    assert first.json()["data"] == {"received": 6, "stored": 6, "duplicates": 0}
    again = await post_signed(api.client, payload)
    assert again.json()["data"] == {"received": 6, "stored": 0, "duplicates": 6}

    rows = await raw_events(sessions, shop.x_id)
    assert sorted(r.event_type for r in rows) == [
        "direct_message",
        "direct_message",
        "favorite",
        "other",
        "tweet",
        "typing",
    ]
    assert all(r.processed_at is not None and r.error is None for r in rows)
    # Each raw event keeps only the users it names: Bob's profile is not in Alice's event.
    alice_dm = next(
        r for r in rows if r.subject_user_id == alice.id and r.event_type == "direct_message"
    )
    assert set(alice_dm.payload["users"]) == {alice.id, shop.x_id}
    assert sorted(c.username or "" for c in await contacts_of(sessions, shop.account_id)) == sorted(
        [alice.username, bob.username]
    )


async def test_an_event_for_an_unknown_account_is_acknowledged_but_makes_no_contact(
    api: Api, customer: SandboxUser, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    stranger = await x_user(x_admin, "not_connected")
    payload = dm_payload(
        stranger.id, dm_event(customer.id, stranger.id, "hello?"), users=users_of(customer)
    )
    response = await post_signed(api.client, payload)
    assert response.status_code == 200
    assert response.json()["data"]["stored"] == 1
    (raw,) = await raw_events(sessions, stranger.id)
    assert raw.merchant_id is None and raw.account_id is None and raw.processed_at is not None
    listed = await api.get("/contacts")
    assert listed.json()["pagination"]["total"] == 0


async def _sent_message(
    sessions: SessionMaker, shop: Shop, conversation: Conversation, text: str, **values: Any
) -> Message:
    message = Message(
        merchant_id=conversation.merchant_id,
        conversation_id=conversation.id,
        account_id=shop.account_id,
        contact_id=conversation.contact_id,
        direction=MessageDirection.outbound,
        content=text,
        **values,
    )
    async with sessions() as session:
        session.add(message)
        await session.execute(
            update(Conversation)
            .where(col(Conversation.id) == conversation.id)
            .values(message_count=col(Conversation.message_count) + 1)
        )
        await session.commit()
    return message


async def test_an_echo_of_our_own_message_settles_it_and_adds_nothing(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    await post_signed(api.client, inbound(shop, customer, "hi shop"))
    (conversation,) = await conversations_of(sessions, shop.account_id)
    x_id = new_id()
    await _sent_message(
        sessions, shop, conversation, "hi Jane", status="queued", twitter_message_id=x_id
    )

    echo = dm_payload(
        shop.x_id,
        dm_event(shop.x_id, customer.id, "hi Jane", event_id=x_id),
        users=users_of(customer, shop.user),
    )
    for _ in range(2):
        assert (await post_signed(api.client, echo)).status_code == 200

    messages = await messages_of(sessions, shop.account_id)
    assert [(m.direction, m.status, m.content) for m in messages] == [
        ("inbound", "received", "hi shop"),
        ("outbound", "sent", "hi Jane"),
    ]
    (conversation,) = await conversations_of(sessions, shop.account_id)
    assert conversation.message_count == 2


async def test_an_echo_of_a_dm_sent_from_x_itself_is_recorded_as_outbound(
    live_api: str,
    api: Api,
    shop: Shop,
    customer: SandboxUser,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
) -> None:
    # The merchant wrote from X's own app: X echoes it to the account's webhook.
    delivery = await x_admin.simulate_dm(
        shop.x_id, customer.id, "sent from the X app", for_user_id=shop.x_id
    )
    assert delivery.webhook_status == 200

    (message,) = await messages_of(sessions, shop.account_id)
    assert message.direction == "outbound" and message.status == "sent"
    assert message.twitter_message_id == delivery.event_id
    assert message.content == "sent from the X app"
    (contact,) = await contacts_of(sessions, shop.account_id)
    assert contact.twitter_user_id == customer.id  # the recipient, never the account itself
    assert contact.source == "manual"
    inbound_count = sum(
        1 for m in await messages_of(sessions, shop.account_id) if m.direction == "inbound"
    )
    assert inbound_count == 0


async def test_follow_and_unfollow(
    live_api: str, api: Api, shop: Shop, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    fan = await x_user(x_admin, "fan", name="Big Fan")
    delivery = await x_admin.simulate_follow(fan.id, shop.x_id, "follow")
    assert delivery.webhook_status == 200

    listed = await api.get("/contacts", params={"accountId": str(shop.account_id)})
    (contact,) = listed.json()["data"]
    assert contact["twitterUserId"] == fan.id
    assert contact["source"] == "new_follower"
    assert contact["displayName"] == "Big Fan"
    assert contact["attributes"] == {"followsAccount": True}
    assert contact["conversationCount"] == 0

    assert (await x_admin.simulate_follow(fan.id, shop.x_id, "unfollow")).webhook_status == 200
    (row,) = await contacts_of(sessions, shop.account_id)
    assert row.attributes == {"followsAccount": False}  # still a contact: nothing destructive

    # A stranger's unfollow makes no contact; the account following someone makes none either.
    stranger = await x_user(x_admin, "stranger")
    assert (await x_admin.simulate_follow(stranger.id, shop.x_id, "unfollow")).webhook_status == 200
    followed = await x_user(x_admin, "followed")
    own_follow = {
        "for_user_id": shop.x_id,  # X tells both sides; this is the account's copy
        "follow_events": [
            {
                "type": "follow",
                "created_timestamp": str(now_ms()),
                "source": {"id": shop.x_id, "screen_name": shop.user.username},
                "target": {"id": followed.id, "screen_name": followed.username},
            }
        ],
    }
    assert (await post_signed(api.client, own_follow)).status_code == 200
    assert len(await contacts_of(sessions, shop.account_id)) == 1
    raws = await raw_events(sessions, shop.x_id)
    assert [r.event_type for r in raws] == ["follow", "unfollow", "unfollow", "follow"]
    assert [r.contact_id for r in raws] == [row.id, row.id, None, None]


async def test_a_read_receipt_marks_our_messages_read_up_to_the_one_read(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    await post_signed(api.client, inbound(shop, customer, "hello"))
    (conversation,) = await conversations_of(sessions, shop.account_id)
    base = utcnow()
    ids = [new_id() for _ in range(3)]
    for i, x_id in enumerate(ids):
        await _sent_message(
            sessions,
            shop,
            conversation,
            f"answer {i}",
            status="sent",
            twitter_message_id=x_id,
            sent_at=base + timedelta(seconds=i),
        )
    read_at_ms = now_ms()
    receipt = {
        "for_user_id": shop.x_id,
        "direct_message_mark_read_events": [
            {
                "created_timestamp": str(read_at_ms),
                "sender_id": customer.id,
                "target": {"recipient_id": shop.x_id},
                "last_read_event_id": ids[1],
            }
        ],
        "users": users_of(customer),
    }
    for _ in range(2):
        assert (await post_signed(api.client, receipt)).status_code == 200

    outbound = [
        m for m in await messages_of(sessions, shop.account_id) if m.direction == "outbound"
    ]
    assert [m.status for m in outbound] == ["read", "read", "sent"]
    assert outbound[0].read_at == datetime.fromtimestamp(read_at_ms / 1000, UTC)
    assert outbound[2].read_at is None
    inbound_message = next(
        m for m in await messages_of(sessions, shop.account_id) if m.direction == "inbound"
    )
    assert inbound_message.status == "received"


async def test_a_revoke_puts_the_account_in_error_and_sends_are_refused(
    api: Api, shop: Shop, customer: SandboxUser
) -> None:
    await post_signed(api.client, inbound(shop, customer, "hello"))
    conversations = await api.get("/conversations", params={"accountId": str(shop.account_id)})
    conversation_id = conversations.json()["data"][0]["id"]

    revoke = {
        "user_event": {
            "revoke": {
                "date_time": "2026-11-24T10:00:00+00:00",
                "target": {"app_id": "12345"},
                "source": {"user_id": shop.x_id},
            }
        }
    }
    assert (await post_signed(api.client, revoke)).status_code == 200

    account = (await api.get(f"/accounts/{shop.account_id}")).json()["data"]
    assert account["status"] == "error"
    assert "revoked" in account["statusReason"]

    refused = await api.post(
        f"/conversations/{conversation_id}/messages", json={"content": "are you there?"}
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "INVALID_STATE"


async def test_with_the_database_down_the_answer_is_503_and_the_retry_lands_once(
    api: Api, shop: Shop, customer: SandboxUser, settings: Settings, sessions: SessionMaker
) -> None:
    payload = inbound(shop, customer, "are you open today?")
    down = settings.model_copy(
        update={"database_url": "postgresql+psycopg://mktx:mktx@127.0.0.1:1/mktx"}
    )
    app = create_app(down)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://down.test") as client:
            response = await post_signed(client, payload)
    assert response.status_code == 503, response.text
    assert response.json()["success"] is False
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"

    # X retries against a database that is back: stored once, however often it retries.
    for _ in range(2):
        assert (await post_signed(api.client, payload)).status_code == 200
    (message,) = await messages_of(sessions, shop.account_id)
    assert message.content == "are you open today?"
    assert len(await raw_events(sessions, shop.x_id)) == 1


async def test_a_failed_apply_keeps_the_raw_event_and_reprocessing_applies_it(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker, settings: Settings
) -> None:
    await post_signed(api.client, inbound(shop, customer, "hello"))
    (conversation,) = await conversations_of(sessions, shop.account_id)
    # Another message already holds the X id the next event carries: applying it fails.
    x_id = new_id()
    blocker = await _sent_message(
        sessions, shop, conversation, "x", status="sent", twitter_message_id=x_id
    )
    response = await post_signed(api.client, inbound(shop, customer, "late", event_id=x_id))
    assert response.status_code == 200  # acknowledged: the raw event is kept
    raw = next(r for r in await raw_events(sessions, shop.x_id) if x_id in r.dedup_key)
    assert raw.processed_at is None and raw.error is not None
    assert "late" not in [m.content for m in await messages_of(sessions, shop.account_id)]

    async with sessions() as session:
        await session.execute(delete(Message).where(col(Message.id) == blocker.id))
        # Its retry is due (ingestion backs it off a few seconds: see test_reprocess_backoff).
        await session.execute(
            update(WebhookEvent)
            .where(col(WebhookEvent.id) == raw.id)
            .values(next_attempt_at=utcnow())
        )
        await session.commit()
    assert (await reprocess_due(sessions, ingestion_of(settings))).applied >= 1

    late = [m for m in await messages_of(sessions, shop.account_id) if m.content == "late"]
    assert len(late) == 1 and late[0].direction == "inbound"
    async with sessions() as session:
        refreshed = await session.get(WebhookEvent, raw.id)
        assert refreshed is not None
        assert refreshed.processed_at is not None and refreshed.error is None
    await reprocess_due(sessions, ingestion_of(settings))  # once applied, never applied again
    again = [m for m in await messages_of(sessions, shop.account_id) if m.content == "late"]
    assert len(again) == 1


async def test_an_unusable_event_is_stored_with_its_error_and_not_retried(
    api: Api, shop: Shop, sessions: SessionMaker
) -> None:
    broken = {
        "for_user_id": shop.x_id,
        "direct_message_events": [{"id": new_id(), "type": "message_create"}],
    }
    response = await post_signed(api.client, broken)
    assert response.status_code == 200
    (raw,) = await raw_events(sessions, shop.x_id)
    assert raw.error is not None and "message_create" in raw.error
    assert raw.processed_at is not None  # settled: X will not send it any better


async def test_another_merchant_sees_none_of_it(
    api: Api, other_api: Api, shop: Shop, customer: SandboxUser
) -> None:
    await post_signed(api.client, inbound(shop, customer, "private"))
    (contact,) = (await api.get("/contacts")).json()["data"]
    (conversation,) = (await api.get("/conversations")).json()["data"]

    assert (await other_api.get("/contacts")).json()["pagination"]["total"] == 0
    assert (await other_api.get("/conversations")).json()["pagination"]["total"] == 0
    assert (await other_api.get(f"/contacts/{contact['id']}")).status_code == 404
    assert (await other_api.get(f"/conversations/{conversation['id']}")).status_code == 404


async def test_the_webhook_needs_no_bearer_token(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get(BASE_PATH + "/webhooks/verify", params={"crc_token": "x"})
    assert response.status_code == 200
    # The API's other routes still demand one.
    assert (await app_client.get(BASE_PATH + "/contacts")).status_code == 401


async def test_erasing_a_contact_erases_its_raw_events(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    await post_signed(api.client, inbound(shop, customer, "delete me later"))
    receipt = {
        "for_user_id": shop.x_id,
        "direct_message_mark_read_events": [
            {
                "created_timestamp": str(now_ms()),
                "sender_id": customer.id,
                "target": {"recipient_id": shop.x_id},
                "last_read_event_id": new_id(),
            }
        ],
    }
    await post_signed(api.client, receipt)
    assert len(await raw_events(sessions, shop.x_id)) == 2
    (contact,) = (await api.get("/contacts")).json()["data"]

    assert (await api.delete(f"/contacts/{contact['id']}")).status_code == 200
    assert await raw_events(sessions, shop.x_id) == []
