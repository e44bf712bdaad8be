"""X's own payloads (tests/fixtures/x/, with their sources) replayed into the webhook: Account
Activity and X Activity API deliveries as X documents and delivers them, the API
specification's own example, media and quick replies."""

from __future__ import annotations

from typing import Any

from mktx.settings import Settings
from models.account import AccountStatus, XAccount
from models.db import SessionMaker, utcnow
from models.webhook_event import WebhookEvent
from sandbox.admin import SandboxUser
from services.ingestion import reprocess_due
from services.ingestion.events import split_payload
from tests.conftest import Api
from tests.fixtures.x import replay
from tests.webhooks.conftest import (
    Shop,
    contacts_of,
    ingestion_of,
    messages_of,
    post_signed,
    raw_events,
)


async def _deliver(api: Api, payload: Any) -> dict[str, Any]:
    response = await post_signed(api.client, payload)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def _messages_json(api: Api, shop: Shop) -> list[dict[str, Any]]:
    (conversation,) = (
        await api.get("/conversations", params={"accountId": str(shop.account_id)})
    ).json()["data"]
    detail = await api.get(f"/conversations/{conversation['id']}")
    messages: list[dict[str, Any]] = detail.json()["data"]["messages"]
    return messages


async def _status(sessions: SessionMaker, shop: Shop) -> XAccount:
    async with sessions() as session:
        account = await session.get(XAccount, shop.account_id)
        assert account is not None
        return account


# Account Activity -----------------------------------------------------------------------------


async def test_xs_documented_dm_becomes_a_contact_and_a_message(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    payload = replay(
        "account_activity/dm_text.json", {"4337869213": shop.x_id, "3001969357": customer.id}
    )
    assert await _deliver(api, payload) == {"received": 1, "stored": 1, "duplicates": 0}
    assert await _deliver(api, payload) == {"received": 1, "stored": 0, "duplicates": 1}

    (contact,) = await contacts_of(sessions, shop.account_id)
    assert (contact.username, contact.display_name) == ("furiouscamper", "Jordan Brinks")
    assert contact.profile_image_url == (
        "https://pbs.twimg.com/profile_images/851526626785480705/cW4WTi7C_normal.jpg"
    )
    (message,) = await messages_of(sessions, shop.account_id)
    assert (message.direction, message.content) == ("inbound", "Hello World!")
    assert message.twitter_message_id == "954491830116155396" and message.attachments == []


async def test_a_photo_dm_is_one_image_attachment_and_its_link_leaves_the_text(
    api: Api, shop: Shop, customer: SandboxUser
) -> None:
    ids = {"7472512": shop.x_id, "1140620289006551040": customer.id}
    await _deliver(api, replay("account_activity/dm_photo.json", ids))

    (message,) = await _messages_json(api, shop)
    assert message["content"] == ""  # the text was only the photo's t.co link
    assert message["attachments"] == [
        {
            "type": "image",
            "url": "https://ton.twitter.com/1.1/ton/data/dm/1218168691763924998/"
            "1218168684226711552/7WY9gUyS.jpg",
            "mediaId": "1218168684226711552",
        }
    ]
    assert message["quickReply"] is None


async def test_a_gif_dm_is_one_gif_attachment_that_plays(
    api: Api, shop: Shop, customer: SandboxUser
) -> None:
    ids = {"7472512": shop.x_id, "1140620289006551040": customer.id}
    payload = replay("account_activity/dm_gif.json", ids)
    data = payload["direct_message_events"][0]["message_create"]["message_data"]
    data["text"] = "Look at this https://t.co/EqgUwK77ad"  # as X writes text before its link
    await _deliver(api, payload)

    (message,) = await _messages_json(api, shop)
    assert message["content"] == "Look at this"
    # Not the bogus twitter.com/messages/media link, nor the still preview: the GIF itself.
    assert message["attachments"] == [
        {
            "type": "gif",
            "url": "https://video.twimg.com/dm_gif/1218022642336325632/"
            "UF-L2NL0RH3sLnu8V99AR2WbIYKXyy3OhL4E0YEw6cK-LcJ92Q.mp4",
            "mediaId": "1218022642336325632",
        }
    ]


async def test_a_quick_reply_answer_is_kept_on_the_message(
    api: Api, shop: Shop, customer: SandboxUser
) -> None:
    ids = {"1234858592": shop.x_id, "3805104374": customer.id}
    await _deliver(api, replay("account_activity/dm_quick_reply.json", ids))

    (message,) = await _messages_json(api, shop)
    assert message["content"] == "Blue Bird"
    assert message["quickReply"] == {"type": "options", "metadata": "external_id_2"}


async def test_read_receipts_typing_and_revocations_as_x_documents_them(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    await _deliver(
        api,
        replay(
            "account_activity/dm_text.json", {"4337869213": shop.x_id, "3001969357": customer.id}
        ),
    )
    echo = replay(
        "activity/dm_sent.json", {"1111111111111111111": shop.x_id, "2244994945": customer.id}
    )
    await _deliver(api, echo)
    ours = next(
        m for m in await messages_of(sessions, shop.account_id) if m.direction == "outbound"
    )
    assert ours.status == "sent" and ours.content == "Thanks for the update!"

    # The customer read it (X's sample names another DM: ours stands in for it).
    read = replay(
        "account_activity/dm_read.json",
        {
            "4337869213": shop.x_id,
            "3001969357": shop.x_id,
            "199566737": customer.id,
            "963085315333238788": ours.twitter_message_id or "",
        },
    )
    typing = replay(
        "account_activity/dm_typing.json",
        {"4337869213": shop.x_id, "3001969357": shop.x_id, "3284025577": customer.id},
    )
    assert (await _deliver(api, read))["stored"] == 1
    assert (await _deliver(api, typing))["stored"] == 1
    ours = next(
        m for m in await messages_of(sessions, shop.account_id) if m.direction == "outbound"
    )
    assert ours.status == "read" and ours.read_at is not None

    revoked = replay("account_activity/user_event_revoke.json", {"63046977": shop.x_id})
    assert (await _deliver(api, revoked))["stored"] == 1
    account = await _status(sessions, shop)
    assert account.status == AccountStatus.error
    assert account.status_reason is not None and "revoked" in account.status_reason
    kinds = [e.event_type for e in await raw_events(sessions, shop.x_id)]
    assert kinds == ["direct_message", "direct_message", "read", "typing", "revoke"]


async def test_event_types_only_stored_are_acknowledged(
    api: Api, shop: Shop, sessions: SessionMaker
) -> None:
    deleted = replay("account_activity/tweet_delete.json", {"930524282358325248": shop.x_id})
    assert await _deliver(api, deleted) == {"received": 1, "stored": 1, "duplicates": 0}
    post = replay("activity/post_delete.json", {"1111111111111111111": shop.x_id})
    assert await _deliver(api, post) == {"received": 1, "stored": 1, "duplicates": 0}
    assert await _deliver(api, post) == {"received": 1, "stored": 0, "duplicates": 1}
    assert [e.event_type for e in await raw_events(sessions, shop.x_id)] == ["other", "other"]


# The specification's own example (no for_user_id) -----------------------------------------------


async def test_the_specs_example_is_routed_by_its_recipient_being_connected(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    payload = replay(
        "spec/api_md_direct_message.json", {"123456789": shop.x_id, "987654321": customer.id}
    )
    assert await _deliver(api, payload) == {"received": 1, "stored": 1, "duplicates": 0}

    (contact,) = await contacts_of(sessions, shop.account_id)
    assert (contact.twitter_user_id, contact.username) == (customer.id, "customer_john")
    (message,) = await messages_of(sessions, shop.account_id)
    assert (message.direction, message.content) == ("inbound", "Hello!")
    (raw,) = await raw_events(sessions, shop.x_id)
    assert raw.account_id == shop.account_id


async def test_without_for_user_id_a_connected_sender_makes_it_an_echo(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    # The shop wrote to the customer (the event id differs from the recipient's id here).
    payload = replay(
        "spec/api_md_direct_message.json", {"987654321": shop.x_id, "123456789": customer.id}
    )
    payload["direct_message_events"][0]["id"] = "1585800613253812228"
    await _deliver(api, payload)

    (message,) = await messages_of(sessions, shop.account_id)
    assert (message.direction, message.status, message.content) == ("outbound", "sent", "Hello!")


async def test_without_for_user_id_nobody_connected_is_stored_for_nobody(
    api: Api, customer: SandboxUser, sessions: SessionMaker
) -> None:
    stranger = str(int(customer.id) + 7_000_000_000)
    payload = replay(
        "spec/api_md_direct_message.json", {"123456789": stranger, "987654321": customer.id}
    )
    assert await _deliver(api, payload) == {"received": 1, "stored": 1, "duplicates": 0}
    (raw,) = await raw_events(sessions, stranger)
    assert raw.account_id is None and raw.merchant_id is None


async def test_a_body_that_is_no_delivery_at_all_is_still_refused(api: Api) -> None:
    bodies: list[dict[str, Any]] = [
        {"users": {}},
        {"direct_message_events": "nope"},
        {"data": {"payload": {}}},
    ]
    for body in bodies:
        response = await post_signed(api.client, body)
        assert response.status_code == 422, body


# The X Activity API ------------------------------------------------------------------------------


async def test_activity_dm_received_is_applied_once_by_its_dm(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    ids = {"1111111111111111111": shop.x_id, "2222222222222222222": customer.id}
    delivery = replay("activity/dm_received.json", ids)
    assert await _deliver(api, delivery) == {"received": 1, "stored": 1, "duplicates": 0}
    assert (await _deliver(api, delivery))["duplicates"] == 1  # X's retry: same event_uuid
    # The same DM delivered again under another event_uuid, or by Account Activity, is the
    # same event (its DM id): switching APIs never doubles a message.
    delivery["data"]["event_uuid"] = "42"
    assert (await _deliver(api, delivery))["duplicates"] == 1

    (contact,) = await contacts_of(sessions, shop.account_id)
    assert (contact.username, contact.display_name) == ("OtherUser", "OtherUser")
    assert contact.profile_image_url == (
        "https://pbs.twimg.com/profile_images/0000000000000000001/example_normal.jpg"
    )
    (message,) = await messages_of(sessions, shop.account_id)
    assert (message.direction, message.content) == ("inbound", "hello!")
    (raw,) = await raw_events(sessions, shop.x_id)
    # Stored as delivered, narrowed to the users the DM names.
    assert raw.payload["data"]["event_type"] == "dm.received"
    assert set(raw.payload["data"]["payload"]["users"]) == {shop.x_id, customer.id}
    assert raw.subject_user_id == customer.id


async def test_activity_dm_sent_is_the_accounts_own_dm(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    ids = {"1111111111111111111": shop.x_id, "2244994945": customer.id}
    await _deliver(api, replay("activity/dm_sent.json", ids))
    (contact,) = await contacts_of(sessions, shop.account_id)
    assert (contact.username, contact.source) == ("XDevelopers", "manual")
    (message,) = await messages_of(sessions, shop.account_id)
    assert (message.direction, message.status) == ("outbound", "sent")


async def test_activity_follows_a_new_follower_counts_the_account_following_does_not(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    # X's sample: the filtered user follows someone. The shop following a customer: nothing.
    ids = {"1111111111111111111": shop.x_id, "4444444444444444444": customer.id}
    assert (await _deliver(api, replay("activity/follow_follow.json", ids)))["stored"] == 1
    assert await contacts_of(sessions, shop.account_id) == []

    # The same event for the followed user's subscription: the shop has a new follower.
    ids = {"1111111111111111111": customer.id, "4444444444444444444": shop.x_id}
    followed = replay("activity/follow_follow.json", ids)
    followed["data"]["filter"]["user_id"] = shop.x_id
    followed["data"]["event_uuid"] = "7953119945885597316"  # another subscription's delivery
    assert (await _deliver(api, followed))["stored"] == 1
    (fan,) = await contacts_of(sessions, shop.account_id)
    assert (fan.twitter_user_id, fan.username, fan.source) == (
        customer.id,
        "ExampleUser",
        "new_follower",
    )
    assert fan.attributes["followsAccount"] is True

    unfollowed = replay("activity/follow_unfollow.json", ids)
    unfollowed["data"]["filter"]["user_id"] = shop.x_id
    assert (await _deliver(api, unfollowed))["stored"] == 1
    (fan,) = await contacts_of(sessions, shop.account_id)
    assert fan.attributes["followsAccount"] is False
    kinds = [e.event_type for e in await raw_events(sessions, shop.x_id)]
    assert kinds == ["follow", "follow", "unfollow"]


async def test_activity_oauth_revoke_is_routed_by_its_user(
    api: Api, shop: Shop, sessions: SessionMaker
) -> None:
    revoked = replay("activity/oauth_revoke.json", {"1111111111111111111": shop.x_id})
    assert await _deliver(api, revoked) == {"received": 1, "stored": 1, "duplicates": 0}
    assert (await _status(sessions, shop)).status == AccountStatus.error
    (raw,) = await raw_events(sessions, shop.x_id)
    assert raw.event_type == "revoke" and raw.account_id == shop.account_id


async def test_an_activity_event_stored_unapplied_is_applied_by_reprocessing(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker, settings: Settings
) -> None:
    ids = {"1111111111111111111": shop.x_id, "2222222222222222222": customer.id}
    (event,) = split_payload(replay("activity/dm_received.json", ids))
    async with sessions() as session:
        session.add(
            WebhookEvent(
                merchant_id=api.merchant.id,
                account_id=shop.account_id,
                for_user_id=event.for_user_id,
                event_type=event.event_type.value,
                dedup_key=event.dedup_key,
                subject_user_id=event.subject_user_id,
                payload=event.payload,
                next_attempt_at=utcnow(),
            )
        )
        await session.commit()

    assert (await reprocess_due(sessions, ingestion_of(settings))).applied >= 1
    (message,) = await messages_of(sessions, shop.account_id)
    assert (message.direction, message.content) == ("inbound", "hello!")
