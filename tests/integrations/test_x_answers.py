"""XClient and X's answers as X gives them: the 24-hour limit headers, X Activity API
subscriptions, DM media served only to signed requests, and recorded answers
(tests/fixtures/x/api/)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import pytest
import requests

from integrations.x import (
    ACTIVITY_EVENT_TYPES,
    EventsApi,
    NotDMMedia,
    RateLimitScope,
    XClient,
    XCredentials,
    XForbidden,
    XRateLimited,
    _rate_limited,
)
from sandbox.admin import SandboxAdmin, SandboxUser
from sandbox.server import RunningSandbox
from tests.fixtures.x import load
from tests.integrations.conftest import own_sandbox

KEY = "x-answers-key"
SECRET = "x-answers-secret"
WEBHOOK_ID = "1976325569252868099"
DAY = 24 * 60 * 60

T = TypeVar("T")


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningSandbox]:
    with own_sandbox(KEY, SECRET, WEBHOOK_ID) as running:
        yield running


@pytest.fixture(scope="module")
def x(emulator: RunningSandbox) -> Iterator[XClient]:
    client = XClient(emulator.url, KEY, SECRET, timeout=2.0)
    yield client
    client.close()


@pytest.fixture(scope="module")
def activity_x(emulator: RunningSandbox) -> Iterator[XClient]:
    client = XClient(emulator.url, KEY, SECRET, timeout=2.0, events_api=EventsApi.activity)
    yield client
    client.close()


async def new_user(admin: SandboxAdmin, prefix: str = "u") -> SandboxUser:
    return await admin.create_user(f"{prefix}_{uuid.uuid4().hex[:8]}")


def creds(user: SandboxUser) -> XCredentials:
    return XCredentials(user.access_token, user.access_token_secret)


async def run(call: Callable[..., T], *args: object) -> T:
    return await asyncio.to_thread(call, *args)


def _answer(status: int, headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    return response


# 24-hour limits ---------------------------------------------------------------------------------


def test_a_spent_24_hour_cap_outlasts_the_15_minute_window() -> None:
    now = int(time.time())
    both = _answer(
        429,
        {
            "x-rate-limit-limit": "15",
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": str(now + 600),
            "x-user-limit-24hour-limit": "1440",
            "x-user-limit-24hour-remaining": "0",
            "x-user-limit-24hour-reset": str(now + 20_000),
        },
    )
    limited = _rate_limited(both, "Too Many Requests")
    assert limited.scope is RateLimitScope.user_day
    assert 19_990 <= limited.retry_after <= 20_001

    # The app's cap spent while the user's window has calls left (X answers 429 with the
    # window's headers showing calls remaining).
    app = _answer(
        429,
        {
            "x-rate-limit-remaining": "12",
            "x-rate-limit-reset": str(now + 600),
            "x-app-limit-24hour-limit": "1440",
            "x-app-limit-24hour-remaining": "0",
            "x-app-limit-24hour-reset": str(now + 30_000),
            "x-user-limit-24hour-remaining": "700",
            "x-user-limit-24hour-reset": str(now + 40_000),
        },
    )
    limited = _rate_limited(app, "Too Many Requests")
    assert limited.scope is RateLimitScope.app_day and 29_990 <= limited.retry_after <= 30_001

    window = _answer(429, {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(now + 300)})
    assert _rate_limited(window, "").scope is RateLimitScope.window


async def test_x_states_the_users_24_hour_cap_and_a_spent_one_waits_a_day(
    x: XClient, admin: SandboxAdmin
) -> None:
    shop, customer = await new_user(admin), await new_user(admin)
    await admin.set_daily_limit("dm_send", "user", 2, user_id=shop.id)
    response = await run(
        x._tweepy(creds(shop)).request,
        "POST",
        f"/2/dm_conversations/with/{customer.id}/messages",
        None,
        {"text": "one"},
        True,
    )
    assert response.status_code == 201
    assert response.headers["x-user-limit-24hour-limit"] == "2"
    assert response.headers["x-user-limit-24hour-remaining"] == "1"
    reset = int(response.headers["x-user-limit-24hour-reset"])
    assert DAY - 5 <= reset - time.time() <= DAY + 2
    await run(x.send_dm, creds(shop), customer.id, "two")

    with pytest.raises(XRateLimited) as caught:
        await run(x.send_dm, creds(shop), customer.id, "three")

    assert caught.value.scope is RateLimitScope.user_day
    assert DAY - 10 <= (caught.value.reset_at - datetime.now(UTC)).total_seconds() <= DAY + 2
    other = await new_user(admin)  # another user's cap is untouched
    await run(x.send_dm, creds(other), customer.id, "hello")


async def test_the_apps_24_hour_cap_is_shared_by_every_user(
    x: XClient, admin: SandboxAdmin
) -> None:
    first, second, customer = await new_user(admin), await new_user(admin), await new_user(admin)
    await admin.set_daily_limit("dm_send", "app", 1)
    await run(x.send_dm, creds(first), customer.id, "the app's one DM today")

    with pytest.raises(XRateLimited) as caught:
        await run(x.send_dm, creds(second), customer.id, "and another")

    assert caught.value.scope is RateLimitScope.app_day
    assert caught.value.retry_after > DAY - 10


# X Activity API subscriptions ------------------------------------------------------------------


async def test_activity_subscriptions_per_event_type_for_the_user(
    activity_x: XClient, admin: SandboxAdmin
) -> None:
    shop = await new_user(admin, "shop")
    await run(activity_x.subscribe_events, creds(shop), WEBHOOK_ID)
    await run(activity_x.subscribe_events, creds(shop), WEBHOOK_ID)  # idempotent

    mine = [s for s in await admin.activity_subscriptions() if s["filter"]["user_id"] == shop.id]
    assert sorted(s["event_type"] for s in mine) == sorted(ACTIVITY_EVENT_TYPES)
    assert {s["webhook_id"] for s in mine} == {WEBHOOK_ID} and {s["tag"] for s in mine} == {"mkt-x"}
    assert await run(activity_x.events_subscribed, creds(shop), WEBHOOK_ID)

    await run(activity_x.unsubscribe_events, shop.id, WEBHOOK_ID)
    left = [s for s in await admin.activity_subscriptions() if s["filter"]["user_id"] == shop.id]
    assert left == []
    assert not await run(activity_x.events_subscribed, creds(shop), WEBHOOK_ID)
    assert await admin.subscriptions() == {WEBHOOK_ID: []}  # no Account Activity one meanwhile


async def test_account_activity_remains_the_default(x: XClient, admin: SandboxAdmin) -> None:
    shop = await new_user(admin, "shop")
    await run(x.subscribe_events, creds(shop), WEBHOOK_ID)
    assert shop.id in (await admin.subscriptions())[WEBHOOK_ID]
    assert not [
        s for s in await admin.activity_subscriptions() if s["filter"]["user_id"] == shop.id
    ]
    await run(x.unsubscribe_events, shop.id, WEBHOOK_ID)
    assert shop.id not in (await admin.subscriptions())[WEBHOOK_ID]


# Media of DMs ------------------------------------------------------------------------------------


async def _photo_url(admin: SandboxAdmin, sender: SandboxUser, recipient: SandboxUser) -> str:
    await admin.simulate_dm(sender.id, recipient.id, "receipt", media="image")
    (dm,) = await admin.dms(sender_id=sender.id, recipient_id=recipient.id)
    media = dm.attachments[0]["media"]
    url: str = media["media_url_https"]
    return url


async def test_a_dms_photo_is_served_to_its_participants_signed(
    x: XClient, admin: SandboxAdmin
) -> None:
    customer, shop, stranger = await new_user(admin), await new_user(admin), await new_user(admin)
    url = await _photo_url(admin, customer, shop)
    assert url.startswith("https://ton.twitter.com/1.1/ton/data/dm/")

    media = await run(x.open_dm_media, creds(shop), url)
    try:
        data = b"".join(media.chunks)
    finally:
        media.close()
    assert media.content_type == "image/jpeg" and data.startswith(b"\xff\xd8\xff")
    assert media.length == len(data)

    with pytest.raises(XForbidden):
        await run(x.open_dm_media, creds(stranger), url)
    with pytest.raises(NotDMMedia):  # the account's credentials never go elsewhere
        await run(x.open_dm_media, creds(shop), "https://example.com/1.1/ton/data/dm/1/2/a.jpg")


def test_media_hosts_are_xs_own_in_production() -> None:
    production = XClient("https://api.x.com", KEY, SECRET)
    sandboxed = XClient("http://127.0.0.1:8600", KEY, SECRET)
    url = "https://ton.twitter.com/1.1/ton/data/dm/1/2/a.jpg"
    assert production._media_url(url) == url
    assert sandboxed._media_url(url) == "http://127.0.0.1:8600/1.1/ton/data/dm/1/2/a.jpg"


# Recorded answers --------------------------------------------------------------------------------


async def test_dm_event_pages_carry_xs_tokens(x: XClient, admin: SandboxAdmin) -> None:
    recorded = load("api/dm_events_page.json")["body"]["meta"]
    shop, customer = await new_user(admin), await new_user(admin)
    for text in ("one", "two", "three"):
        await run(x.send_dm, creds(shop), customer.id, text)
    response = await run(
        x._tweepy(creds(shop)).request,
        "GET",
        f"/2/dm_conversations/with/{customer.id}/dm_events",
        {"max_results": 2},
        None,
        True,
    )
    meta = response.json()["meta"]
    assert set(meta) == set(recorded)  # result_count, next_token, previous_token
    assert meta["result_count"] == 2
    for token in (meta["next_token"], recorded["next_token"]):
        assert len(token) >= 16 and set(token) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVZ")

    first = await run(x.list_dm_events, creds(shop), customer.id, 2)
    rest = await run(x.list_dm_events, creds(shop), customer.id, 2, first.next_token)
    assert [e.text for e in first.events + rest.events] == ["three", "two", "one"]
    assert rest.next_token is None

    # previous_token pages back towards the newest events.
    older = await run(
        x._tweepy(creds(shop)).request,
        "GET",
        f"/2/dm_conversations/with/{customer.id}/dm_events",
        {"max_results": 1, "pagination_token": meta["next_token"]},
        None,
        True,
    )
    back = older.json()["meta"]["previous_token"]
    newer = await run(
        x._tweepy(creds(shop)).request,
        "GET",
        f"/2/dm_conversations/with/{customer.id}/dm_events",
        {"max_results": 2, "pagination_token": back},
        None,
        True,
    )
    assert [e["text"] for e in newer.json()["data"]] == ["three", "two"]
