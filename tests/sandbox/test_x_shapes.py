"""The sandbox speaks as X does: its deliveries have the shapes of X's recorded and documented
payloads (tests/fixtures/x/), by Account Activity and by the X Activity API, and its X Activity
API subscriptions follow X's rules."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from sandbox.admin import SandboxAdmin, SandboxUser
from sandbox.server import RunningSandbox, RunningServer, serve_in_thread, start_sandbox_thread
from tests.fixtures.x import load
from tests.sandbox.test_sandbox import CONFIG, SECRET, Receiver, call

TCO = re.compile(r"^https://t\.co/\w{10}$")


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningSandbox]:
    with start_sandbox_thread(CONFIG) as running:
        yield running


@pytest.fixture(scope="module")
def receiver(emulator: RunningSandbox) -> Iterator[tuple[Receiver, RunningServer]]:
    hook = Receiver(SECRET)
    with serve_in_thread(hook.app) as running:
        yield hook, running


@pytest.fixture
async def admin(
    emulator: RunningSandbox, receiver: tuple[Receiver, RunningServer]
) -> AsyncIterator[SandboxAdmin]:
    admin = emulator.admin
    await admin.set_webhook_url(f"{receiver[1].url}/webhook")
    receiver[0].deliveries.clear()
    yield admin
    await admin.clear_faults()


@pytest.fixture
async def shop(admin: SandboxAdmin) -> SandboxUser:
    return await admin.create_user(f"shop_{uuid.uuid4().hex[:8]}", name="Shop")


@pytest.fixture
async def customer(admin: SandboxAdmin) -> SandboxUser:
    return await admin.create_user(f"cust_{uuid.uuid4().hex[:8]}", name="Customer")


def _keys(value: Any) -> Any:
    """The shape of a JSON value: its keys (recursively), lists by their first item."""
    if isinstance(value, dict):
        return {k: _keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keys(value[0])] if value else []
    return type(value).__name__


def _last(receiver: tuple[Receiver, RunningServer]) -> dict[str, Any]:
    return receiver[0].deliveries[-1]


async def _subscribe(emulator: RunningSandbox, user: SandboxUser, event_type: str) -> Any:
    body = {"event_type": event_type, "filter": {"user_id": user.id}, "tag": "t"}
    return await call("POST", f"{emulator.url}/2/activity/subscriptions", user, body)


# Account Activity ---------------------------------------------------------------------------


async def test_a_gif_dm_is_delivered_as_x_delivers_one(
    admin: SandboxAdmin,
    receiver: tuple[Receiver, RunningServer],
    shop: SandboxUser,
    customer: SandboxUser,
) -> None:
    await admin.simulate_dm(customer.id, shop.id, "look", media="gif")

    recorded = load("account_activity/dm_gif.json")["direct_message_events"][0]
    event = _last(receiver)["direct_message_events"][0]
    data, recorded_data = (
        event["message_create"]["message_data"],
        recorded["message_create"]["message_data"],
    )
    media, recorded_media = data["attachment"]["media"], recorded_data["attachment"]["media"]
    assert set(media) == set(recorded_media)
    assert _keys(media["video_info"]) == _keys(recorded_media["video_info"])
    assert media["type"] == "animated_gif" and data["attachment"]["type"] == "media"
    assert media["media_url_https"].startswith("https://pbs.twimg.com/dm_gif_preview/")
    assert media["video_info"]["variants"][0]["url"].startswith("https://video.twimg.com/dm_gif/")
    # Its t.co link ends the text and is the one URL entity, expanded to the media's page.
    (link,) = data["entities"]["urls"]
    assert TCO.match(link["url"]) and data["text"] == f"look {link['url']}"
    assert link["expanded_url"] == f"https://twitter.com/messages/media/{event['id']}"
    assert media["url"] == link["url"] and media["expanded_url"] == link["expanded_url"]
    assert set(link) == set(recorded_data["entities"]["urls"][0])


async def test_a_photo_dm_points_at_ton_and_quick_replies_are_answered(
    admin: SandboxAdmin,
    receiver: tuple[Receiver, RunningServer],
    shop: SandboxUser,
    customer: SandboxUser,
) -> None:
    await admin.simulate_dm(customer.id, shop.id, "", media="image")
    recorded = load("account_activity/dm_photo.json")["direct_message_events"][0]
    event = _last(receiver)["direct_message_events"][0]
    media = event["message_create"]["message_data"]["attachment"]["media"]
    assert set(media) == set(recorded["message_create"]["message_data"]["attachment"]["media"])
    assert media["type"] == "photo"
    assert media["media_url_https"].startswith(
        f"https://ton.twitter.com/1.1/ton/data/dm/{event['id']}/"
    )

    await admin.simulate_dm(customer.id, shop.id, "Blue Bird", quick_reply_metadata="external_id_2")
    answer = _last(receiver)["direct_message_events"][0]["message_create"]["message_data"]
    recorded_qr = load("account_activity/dm_quick_reply.json")["direct_message_events"][0]
    assert (
        answer["quick_reply_response"]
        == recorded_qr["message_create"]["message_data"]["quick_reply_response"]
    )


async def test_receipts_typing_and_revocations_have_xs_shapes(
    admin: SandboxAdmin,
    receiver: tuple[Receiver, RunningServer],
    shop: SandboxUser,
    customer: SandboxUser,
) -> None:
    await admin.simulate_dm(shop.id, customer.id, "hi", for_user_id=shop.id)
    await admin.simulate_receipt(customer.id, shop.id, "read")
    read = _last(receiver)
    recorded = load("account_activity/dm_read.json")
    assert set(read) == set(recorded)
    assert _keys(read["direct_message_mark_read_events"]) == _keys(
        recorded["direct_message_mark_read_events"]
    )
    (dm,) = await admin.dms(sender_id=shop.id)
    assert read["direct_message_mark_read_events"][0]["last_read_event_id"] == dm.id

    await admin.simulate_receipt(customer.id, shop.id, "typing")
    typing, recorded = _last(receiver), load("account_activity/dm_typing.json")
    assert _keys(typing["direct_message_indicate_typing_events"]) == _keys(
        recorded["direct_message_indicate_typing_events"]
    )

    delivery = await admin.simulate_revoke(shop.id)
    assert delivery.api == "account_activity"
    revoke = _last(receiver)
    assert _keys(revoke) == _keys(load("account_activity/user_event_revoke.json"))
    assert revoke["user_event"]["revoke"]["source"]["user_id"] == shop.id
    assert (await admin.crc_check()) is True


# X Activity API ---------------------------------------------------------------------------


async def test_subscribed_users_events_come_as_activity_envelopes(
    emulator: RunningSandbox,
    admin: SandboxAdmin,
    receiver: tuple[Receiver, RunningServer],
    shop: SandboxUser,
    customer: SandboxUser,
) -> None:
    for event_type in ("dm.received", "dm.sent", "follow.follow", "dm.read"):
        assert (await _subscribe(emulator, shop, event_type)).status_code == 200

    delivery = await admin.simulate_dm(customer.id, shop.id, "hello!")
    assert (delivery.api, delivery.subscribed) == ("activity", True)
    received, recorded = _last(receiver), load("activity/dm_received.json")
    assert set(received["data"]) == set(recorded["data"]) - {"includes"}
    assert received["data"]["filter"] == {"user_id": shop.id}
    assert (received["data"]["event_type"], received["data"]["tag"]) == ("dm.received", "t")
    event = received["data"]["payload"]["direct_message_events"][0]
    recorded_event = recorded["data"]["payload"]["direct_message_events"][0]
    assert _keys(event) == _keys(recorded_event)
    user = received["data"]["payload"]["users"][customer.id]
    assert set(user) == {"data"} and user["data"]["username"] == customer.username

    await admin.simulate_dm(shop.id, customer.id, "thanks", for_user_id=shop.id)
    assert _last(receiver)["data"]["event_type"] == "dm.sent"

    await admin.simulate_follow(customer.id, shop.id)
    followed, recorded = _last(receiver), load("activity/follow_follow.json")
    assert followed["data"]["event_type"] == "follow.follow"
    assert (
        set(followed["data"]["payload"]) == set(recorded["data"]["payload"]) == {"source", "target"}
    )
    assert followed["data"]["payload"]["target"]["data"]["id"] == shop.id

    await admin.simulate_receipt(customer.id, shop.id, "read")
    read = _last(receiver)["data"]
    assert read["event_type"] == "dm.read"
    assert read["payload"]["direct_message_mark_read_events"][0]["sender_id"] == customer.id

    # Typing: not subscribed to by XAA, so Account Activity delivers it.
    delivery = await admin.simulate_receipt(customer.id, shop.id, "typing")
    assert delivery.api == "account_activity"

    await admin.simulate_revoke(shop.id)
    revoke, recorded = _last(receiver), load("activity/oauth_revoke.json")
    assert _keys(revoke) == _keys(recorded) and revoke["data"]["filter"] == {}
    assert revoke["data"]["payload"]["user_id"] == shop.id
    assert not [
        s for s in await admin.activity_subscriptions() if s["filter"]["user_id"] == shop.id
    ]


async def test_activity_subscriptions_follow_xs_rules(
    emulator: RunningSandbox, admin: SandboxAdmin, shop: SandboxUser, customer: SandboxUser
) -> None:
    created = await _subscribe(emulator, shop, "dm.received")
    assert created.status_code == 200
    data = created.json()["data"]
    assert set(data) == {
        "subscription_id",
        "event_type",
        "filter",
        "tag",
        "created_at",
        "updated_at",
    }
    assert (await _subscribe(emulator, shop, "dm.received")).status_code == 409
    # A private event of another user: refused.
    url = f"{emulator.url}/2/activity/subscriptions"
    others = {"event_type": "dm.received", "filter": {"user_id": customer.id}}
    assert (await call("POST", url, shop, others)).status_code == 403
    unknown = {"event_type": "dm.everything", "filter": {"user_id": shop.id}}
    assert (await call("POST", url, shop, unknown)).status_code == 400
    not_a_hook = {"event_type": "dm.sent", "filter": {"user_id": shop.id}, "webhook_id": "9"}
    assert (await call("POST", url, shop, not_a_hook)).status_code == 400

    listed = (await call("GET", f"{url}?max_results=1", shop)).json()
    assert listed["meta"]["result_count"] == 1 and listed["meta"]["total_subscriptions"] >= 1

    async with httpx.AsyncClient() as client:
        token = await client.post(
            f"{emulator.url}/oauth2/token",
            auth=(CONFIG.consumer_key, CONFIG.consumer_secret),
            data={"grant_type": "client_credentials"},
        )
        bearer = {"authorization": f"Bearer {token.json()['access_token']}"}
        gone = await client.delete(f"{url}?ids={data['subscription_id']},1", headers=bearer)
    assert gone.status_code == 200
    assert gone.json()["data"] == [{"subscription_id": data["subscription_id"], "deleted": True}]
    assert gone.json()["errors"][0]["reason"] == "not_found"
    # Deleting is the app's business, not a user's.
    assert (await call("DELETE", f"{url}/{data['subscription_id']}", shop)).status_code == 403
