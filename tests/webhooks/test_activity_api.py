"""The X Activity API end to end: an account subscribed per event type, X's deliveries over
HTTP into the API (same URL, signature and CRC as Account Activity), and the media of a DM
streamed back through the conversation with the account's credentials."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from integrations.x import EventsApi, XClient, XCredentials, x_client_from_settings
from mktx.settings import Settings
from models.account import AccountStatus, XAccount
from models.db import SessionMaker
from sandbox.admin import SandboxAdmin, SandboxUser
from tests.conftest import Api
from tests.webhooks.conftest import (
    Shop,
    contacts_of,
    eventually,
    inbound,
    messages_of,
    post_signed,
    raw_events,
)


@pytest.fixture(scope="module")
def activity_x(settings: Settings) -> Iterator[XClient]:
    client = x_client_from_settings(settings.model_copy(update={"x_events_api": "activity"}))
    yield client
    client.close()


def test_the_setting_chooses_how_accounts_are_subscribed(settings: Settings) -> None:
    assert x_client_from_settings(settings).events_api is EventsApi.account_activity
    chosen = settings.model_copy(update={"x_events_api": "activity"})
    assert x_client_from_settings(chosen).events_api is EventsApi.activity


async def test_an_activity_subscribed_account_gets_its_dms_follows_and_revoke(
    live_api: str,
    api: Api,
    shop: Shop,
    customer: SandboxUser,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    activity_x: XClient,
    settings: Settings,
) -> None:
    credentials = XCredentials(shop.user.access_token, shop.user.access_token_secret)
    await asyncio.to_thread(activity_x.subscribe_events, credentials, settings.x_webhook_id)

    delivery = await x_admin.simulate_dm(customer.id, shop.x_id, "my receipt", media="image")
    assert (delivery.api, delivery.webhook_status) == ("activity", 200)
    follow = await x_admin.simulate_follow(customer.id, shop.x_id)
    assert (follow.api, follow.webhook_status) == ("activity", 200)

    (message,) = await messages_of(sessions, shop.account_id)
    assert message.content == "my receipt"
    (attachment,) = message.attachments
    assert attachment["type"] == "image" and attachment["url"].startswith(
        "https://ton.twitter.com/1.1/ton/data/dm/"
    )
    (contact,) = await contacts_of(sessions, shop.account_id)
    assert contact.attributes.get("followsAccount") is True

    # X serves the photo only to the DM's participants: the API fetches it as the shop.
    path = f"/conversations/{message.conversation_id}/messages/{message.id}/attachments/0"
    served = await api.get(path)
    assert served.status_code == 200, served.text
    assert served.headers["content-type"] == "image/jpeg"
    assert served.content.startswith(b"\xff\xd8\xff") and len(served.content) == 2048
    assert (await api.get(path.replace("/0", "/1"))).status_code == 404
    other = await api.get(path.replace(str(message.id), str(contact.id)))
    assert other.status_code == 404

    revoked = await x_admin.simulate_revoke(shop.x_id)
    assert (revoked.api, revoked.webhook_status) == ("activity", 200)

    async def status() -> AccountStatus:
        async with sessions() as session:
            account = await session.get(XAccount, shop.account_id)
            assert account is not None
            return account.status

    assert await eventually(status, lambda s: s == AccountStatus.error) == AccountStatus.error
    kinds = [e.event_type for e in await raw_events(sessions, shop.x_id)]
    assert kinds == ["direct_message", "follow", "revoke"]
    # Its subscriptions went with the app's access.
    mine = [
        s for s in await x_admin.activity_subscriptions() if s["filter"]["user_id"] == shop.x_id
    ]
    assert mine == []


async def test_an_attachment_that_is_not_xs_media_is_not_fetched(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    payload = inbound(
        shop,
        customer,
        "see",
        urls=[{"url": "https://t.co/abcdefghij", "expanded_url": "https://shop.example/a.png"}],
    )
    assert (await post_signed(api.client, payload)).status_code == 200
    (message,) = await messages_of(sessions, shop.account_id)
    assert message.attachments == [{"type": "link", "url": "https://shop.example/a.png"}]
    path = f"/conversations/{message.conversation_id}/messages/{message.id}/attachments/0"
    refused = await api.get(path)
    assert refused.status_code == 404 and refused.json()["code"] == "RESOURCE_NOT_FOUND"


async def test_a_video_and_a_gif_as_x_delivers_them_are_one_attachment_each(
    live_api: str,
    shop: Shop,
    customer: SandboxUser,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
) -> None:
    for kind in ("video", "gif"):
        delivery = await x_admin.simulate_dm(customer.id, shop.x_id, f"a {kind}", media=kind)
        assert (delivery.api, delivery.webhook_status) == ("account_activity", 200)

    video, gif = await messages_of(sessions, shop.account_id)
    assert (video.content, gif.content) == ("a video", "a gif")  # their t.co links left out
    ((clip,), (loop,)) = video.attachments, gif.attachments
    assert clip["type"] == "video" and clip["url"].startswith("https://video.twimg.com/dm_video/")
    assert loop["type"] == "gif" and loop["url"].startswith("https://video.twimg.com/dm_gif/")
    assert clip["url"].endswith(".mp4") and clip["mediaId"] and loop["mediaId"]
