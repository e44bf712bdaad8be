"""The X sandbox over real HTTP: OAuth 1.0a as X checks it, DMs, limits, faults, webhooks
(the LLM endpoint: test_llm.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from oauthlib.oauth1 import Client as OAuth1Signer

from sandbox.admin import SandboxAdmin, SandboxUser
from sandbox.app import SandboxConfig
from sandbox.oauth import hmac_sha1_signature, signature_base_string
from sandbox.server import RunningSandbox, RunningServer, serve_in_thread, start_sandbox_thread
from sandbox.state import (
    DEMO_BUSINESS_ID,
    DEMO_BUSINESS_TOKEN,
    DEMO_BUSINESS_TOKEN_SECRET,
    DEMO_CUSTOMER_ID,
)

KEY = "sandbox-test-key"
SECRET = "sandbox-test-secret"
WEBHOOK_ID = "sandbox-test-webhook"
CONFIG = SandboxConfig(
    consumer_key=KEY,
    consumer_secret=SECRET,
    webhook_id=WEBHOOK_ID,
    webhook_url="http://127.0.0.1:9/nowhere",
    seed_demo=False,
)


# Fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningSandbox]:
    with start_sandbox_thread(CONFIG) as running:
        yield running


@pytest.fixture
async def admin(emulator: RunningSandbox) -> AsyncIterator[SandboxAdmin]:
    admin = emulator.admin
    yield admin
    await admin.clear_faults()  # faults are global: never leak one into the next test


@pytest.fixture
async def shop(admin: SandboxAdmin) -> SandboxUser:
    return await admin.create_user(f"shop_{uuid.uuid4().hex[:8]}", name="Shop")


@pytest.fixture
async def customer(admin: SandboxAdmin) -> SandboxUser:
    return await admin.create_user(f"cust_{uuid.uuid4().hex[:8]}", name="Customer")


class Receiver:
    """A webhook endpoint that checks X's signature the way the service must."""

    def __init__(self, consumer_secret: str) -> None:
        self.secret = consumer_secret
        self.deliveries: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/webhook")(self.receive)
        self.app.get("/webhook")(self.crc)

    def _sign(self, data: bytes) -> str:
        digest = hmac.new(self.secret.encode(), data, hashlib.sha256).digest()
        return "sha256=" + base64.b64encode(digest).decode()

    async def receive(self, request: Request) -> Response:
        raw = await request.body()
        given = request.headers.get("x-twitter-webhooks-signature", "")
        if not hmac.compare_digest(given, self._sign(raw)):
            return Response(status_code=401)
        self.deliveries.append(json.loads(raw))
        return Response(status_code=200)

    async def crc(self, crc_token: str) -> dict[str, str]:
        return {"response_token": self._sign(crc_token.encode())}


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, RunningServer]]:
    hook = Receiver(SECRET)
    with serve_in_thread(hook.app) as running:
        yield hook, running


# Helpers ------------------------------------------------------------------------------------


def signed(
    method: str,
    url: str,
    user: SandboxUser,
    *,
    consumer_secret: str = SECRET,
    token_secret: str | None = None,
    token: str | None = None,
    body: str | None = None,
) -> dict[str, str]:
    """Headers signed by oauthlib, a reference implementation independent of the sandbox."""
    signer = OAuth1Signer(
        KEY,
        client_secret=consumer_secret,
        resource_owner_key=token or user.access_token,
        resource_owner_secret=token_secret or user.access_token_secret,
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else None
    _, signed_headers, _ = signer.sign(url, http_method=method, body=body, headers=headers)
    return dict(signed_headers)


async def call(
    method: str, url: str, user: SandboxUser, json_body: Any = None, **sign: Any
) -> httpx.Response:
    headers = signed(method, url, user, **sign)
    async with httpx.AsyncClient() as client:
        return await client.request(method, url, headers=headers, json=json_body)


async def send(emulator: RunningSandbox, sender: SandboxUser, to: str, text: str) -> httpx.Response:
    url = f"{emulator.url}/2/dm_conversations/with/{to}/messages"
    return await call("POST", url, sender, {"text": text})


# OAuth 1.0a ---------------------------------------------------------------------------------


def test_signature_matches_xs_documented_example() -> None:
    # developer.x.com "Creating a signature": the published base string and signature.
    params = [
        ("status", "Hello Ladies + Gentlemen, a signed OAuth request!"),
        ("include_entities", "true"),
        ("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
        ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "1318622958"),
        ("oauth_token", "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb"),
        ("oauth_version", "1.0"),
    ]
    base = signature_base_string("POST", "https://api.twitter.com/1.1/statuses/update.json", params)
    assert base.startswith("POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&")
    assert "status%3DHello%2520Ladies%2520%252B%2520Gentlemen" in base
    signature = hmac_sha1_signature(
        base,
        "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
        "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
    )
    assert signature == "hCtSmYh+iHYCEqBWrE7C7hYmtUk="


async def test_a_correctly_signed_request_is_answered(
    emulator: RunningSandbox, shop: SandboxUser
) -> None:
    url = f"{emulator.url}/2/users/me?user.fields=profile_image_url"
    response = await call("GET", url, shop)

    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["id"], data["username"], data["name"]) == (shop.id, shop.username, "Shop")
    assert data["profile_image_url"].startswith("https://")
    assert response.headers["x-rate-limit-limit"] == "75"
    assert response.headers["x-rate-limit-remaining"] == "74"
    assert int(response.headers["x-rate-limit-reset"]) > time.time()


@pytest.mark.parametrize(
    "tamper",
    ["consumer_secret", "token_secret", "unknown_token", "revoked", "query", "replay"],
)
async def test_requests_x_would_refuse_get_401(
    emulator: RunningSandbox, admin: SandboxAdmin, shop: SandboxUser, tamper: str
) -> None:
    url = f"{emulator.url}/2/users/me?user.fields=profile_image_url"
    sent_url = url
    sign: dict[str, Any] = {}
    if tamper == "consumer_secret":
        sign["consumer_secret"] = "not-the-secret"
    elif tamper == "token_secret":
        sign["token_secret"] = "not-the-token-secret"
    elif tamper == "unknown_token":
        sign["token"] = "123-unknown"
    elif tamper == "revoked":
        await admin.revoke(shop.access_token)
    elif tamper == "query":
        sent_url = url.replace("profile_image_url", "created_at")
    headers = signed("GET", url, shop, **sign)

    async with httpx.AsyncClient() as client:
        if tamper == "replay":
            assert (await client.get(sent_url, headers=headers)).status_code == 200
        response = await client.get(sent_url, headers=headers)

    assert response.status_code == 401
    problem = response.json()
    assert problem["title"] == "Unauthorized" and problem["status"] == 401
    assert problem["type"] == "about:blank" and problem["detail"]


async def test_form_body_parameters_are_part_of_the_signature(
    emulator: RunningSandbox, admin: SandboxAdmin, shop: SandboxUser
) -> None:
    url = f"{emulator.url}/1.1/oauth/invalidate_token"
    form = "reason=leaving"
    headers = signed("POST", url, shop, body=form)
    async with httpx.AsyncClient() as client:
        tampered = await client.post(url, headers=headers, content="reason=other")
        accepted = await client.post(url, headers=headers, content=form)

    assert tampered.status_code == 401
    assert accepted.status_code == 200
    assert accepted.json() == {"access_token": shop.access_token}
    # The invalidated token is refused from now on; a fresh one for the same user works.
    me = f"{emulator.url}/2/users/me"
    assert (await call("GET", me, shop)).status_code == 401
    fresh = await admin.new_token(shop.id)
    renewed = SandboxUser(
        shop.id, shop.username, shop.name, fresh.access_token, fresh.access_token_secret
    )
    assert (await call("GET", me, renewed)).status_code == 200


# Direct messages ----------------------------------------------------------------------------


async def test_a_dm_is_created_and_recorded(
    emulator: RunningSandbox, admin: SandboxAdmin, shop: SandboxUser, customer: SandboxUser
) -> None:
    response = await send(emulator, shop, customer.id, "Your order shipped 📦")

    assert response.status_code == 201
    data = response.json()["data"]
    low, high = sorted((shop.id, customer.id), key=int)
    assert data["dm_conversation_id"] == f"{low}-{high}"
    [dm] = await admin.dms(recipient_id=customer.id)
    assert (dm.id, dm.sender_id, dm.text, dm.source) == (
        data["dm_event_id"],
        shop.id,
        "Your order shipped 📦",
        "api",
    )
    assert await admin.dms(sender_id=customer.id) == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [({"text": ""}, "text"), ({}, "text"), ({"text": "x" * 10_001}, "10000")],
)
async def test_invalid_dm_text_is_a_400_problem(
    emulator: RunningSandbox,
    shop: SandboxUser,
    customer: SandboxUser,
    body: dict[str, Any],
    fragment: str,
) -> None:
    url = f"{emulator.url}/2/dm_conversations/with/{customer.id}/messages"
    response = await call("POST", url, shop, body)

    assert response.status_code == 400
    problem = response.json()
    assert problem["title"] == "Invalid Request"
    assert fragment in problem["errors"][0]["message"]


async def test_the_longest_dm_x_allows_is_accepted(
    emulator: RunningSandbox, shop: SandboxUser, customer: SandboxUser
) -> None:
    assert (await send(emulator, shop, customer.id, "y" * 10_000)).status_code == 201


async def test_unknown_recipient_is_400_and_closed_dms_are_403(
    emulator: RunningSandbox, admin: SandboxAdmin, shop: SandboxUser
) -> None:
    closed = await admin.create_user(f"closed_{uuid.uuid4().hex[:8]}", accepts_dms=False)

    unknown = await send(emulator, shop, "999999999", "hi")
    refused = await send(emulator, shop, closed.id, "hi")

    assert unknown.status_code == 400
    assert refused.status_code == 403
    assert "do not accept direct messages" in refused.json()["detail"]
    assert await admin.dms(recipient_id=closed.id) == []


async def test_dm_events_are_listed_newest_first_in_pages(
    emulator: RunningSandbox, admin: SandboxAdmin, shop: SandboxUser, customer: SandboxUser
) -> None:
    other = await admin.create_user(f"other_{uuid.uuid4().hex[:8]}")
    for n in range(3):
        assert (await send(emulator, shop, customer.id, f"to customer {n}")).status_code == 201
    await admin.simulate_dm(customer.id, shop.id, "reply from customer")
    assert (await send(emulator, shop, other.id, "to other")).status_code == 201

    fields = "dm_event.fields=id,text,event_type,created_at,sender_id,dm_conversation_id"
    base = f"{emulator.url}/2/dm_conversations/with/{customer.id}/dm_events?{fields}"
    first = (await call("GET", f"{base}&max_results=3", shop)).json()
    token = first["meta"]["next_token"]
    second = (await call("GET", f"{base}&max_results=3&pagination_token={token}", shop)).json()

    texts = [e["text"] for e in first["data"] + second["data"]]
    assert texts == ["reply from customer", "to customer 2", "to customer 1", "to customer 0"]
    assert first["meta"]["result_count"] == 3 and "next_token" not in second["meta"]
    assert first["data"][0]["sender_id"] == customer.id
    assert first["data"][0]["event_type"] == "MessageCreate"
    everything = (await call("GET", f"{emulator.url}/2/dm_events", shop)).json()
    assert everything["meta"]["result_count"] == 5
    assert set(everything["data"][0]) == {"id", "event_type", "text"}  # X's default fields


# Rate limits and faults ---------------------------------------------------------------------


async def test_rate_limit_windows_count_per_user_and_answer_429(
    emulator: RunningSandbox, admin: SandboxAdmin, shop: SandboxUser, customer: SandboxUser
) -> None:
    await admin.set_rate_limit("dm_send", limit=2, window_seconds=60, user_id=shop.id)

    answers = [await send(emulator, shop, customer.id, f"m{n}") for n in range(3)]
    other = await send(emulator, customer, shop.id, "not limited")

    assert [r.status_code for r in answers] == [201, 201, 429]
    assert [r.headers["x-rate-limit-remaining"] for r in answers] == ["1", "0", "0"]
    assert {r.headers["x-rate-limit-limit"] for r in answers} == {"2"}
    reset = int(answers[2].headers["x-rate-limit-reset"])
    assert time.time() + 55 < reset <= time.time() + 62
    assert answers[2].json()["title"] == "Too Many Requests"
    assert other.status_code == 201 and other.headers["x-rate-limit-limit"] == "200"
    with pytest.raises(httpx.HTTPStatusError):  # a typo must not silently configure nothing
        await admin.set_rate_limit("dm-send", limit=1)


async def test_faults_scoped_to_a_path_prefix(
    emulator: RunningSandbox, admin: SandboxAdmin, shop: SandboxUser, customer: SandboxUser
) -> None:
    await admin.set_faults(error_rate=1.0, error_status=503, path_prefix="/2/dm_conversations")

    failed = await send(emulator, shop, customer.id, "hi")
    me = await call("GET", f"{emulator.url}/2/users/me", shop)
    subscriptions = await admin.subscriptions()  # admin calls are never faulted

    assert failed.status_code == 503 and failed.json()["status"] == 503
    assert me.status_code == 200
    assert WEBHOOK_ID in subscriptions
    logged = await admin.requests(path_prefix="/2/dm_conversations", user_id=shop.id)
    assert [(r.status, r.fault) for r in logged] == [(503, "error503")]
    assert await admin.dms(sender_id=shop.id) == []


async def test_faults_scoped_to_a_user_latency_and_burst_429(
    emulator: RunningSandbox, admin: SandboxAdmin, shop: SandboxUser, customer: SandboxUser
) -> None:
    await admin.set_faults(latency_ms=200, burst429=2, user_id=shop.id, retry_after_seconds=7)
    me = f"{emulator.url}/2/users/me"

    started = time.monotonic()
    first = await call("GET", me, shop)
    elapsed = time.monotonic() - started
    second, third = await call("GET", me, shop), await call("GET", me, shop)
    bystander = await call("GET", me, customer)

    assert elapsed >= 0.2
    assert [first.status_code, second.status_code, third.status_code] == [429, 429, 200]
    assert first.headers["retry-after"] == "7"
    assert 5 <= int(first.headers["x-rate-limit-reset"]) - time.time() <= 8
    assert bystander.status_code == 200


async def test_llm_paths_fail_in_openai_shape(
    emulator: RunningSandbox, admin: SandboxAdmin
) -> None:
    await admin.set_faults(error_rate=1.0, error_status=500, path_prefix="/v1/")
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{emulator.url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"


# App-only endpoints and Account Activity ----------------------------------------------------


async def test_app_only_token_and_webhook_endpoints(
    emulator: RunningSandbox, shop: SandboxUser
) -> None:
    async with httpx.AsyncClient(base_url=emulator.url) as client:
        refused = await client.post(
            "/oauth2/token", auth=(KEY, "wrong"), data={"grant_type": "client_credentials"}
        )
        issued = await client.post(
            "/oauth2/token", auth=(KEY, SECRET), data={"grant_type": "client_credentials"}
        )
        bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
        hooks = await client.get("/2/account_activity/webhooks", headers=bearer)
        anonymous = await client.get("/2/account_activity/webhooks")
        unknown = await client.delete(
            f"/2/account_activity/webhooks/nope/subscriptions/{shop.id}/all", headers=bearer
        )

    assert refused.status_code == 403
    assert refused.json()["errors"][0]["code"] == 99
    assert issued.json()["token_type"] == "bearer"
    assert hooks.json()["data"] == [
        {"id": WEBHOOK_ID, "url": "http://127.0.0.1:9/nowhere", "valid": True}
    ]
    assert anonymous.status_code == 401
    assert unknown.status_code == 404
    user_ctx = f"{emulator.url}/2/account_activity/webhooks/{WEBHOOK_ID}/subscriptions/all"
    assert (await call("POST", user_ctx, shop)).json() == {"data": {"subscribed": True}}
    assert (await call("GET", user_ctx, shop)).json() == {"data": {"subscribed": True}}
    assert (await call("GET", user_ctx.replace(WEBHOOK_ID, "nope"), shop)).status_code == 404


# Webhook deliveries -------------------------------------------------------------------------


async def test_simulated_dm_reaches_the_webhook_signed(
    admin: SandboxAdmin,
    receiver: tuple[Receiver, RunningServer],
    shop: SandboxUser,
    customer: SandboxUser,
) -> None:
    hook, server = receiver
    await admin.set_webhook_url(f"{server.url}/webhook")
    attachment = {"type": "media", "media": {"id_str": "42", "type": "photo"}}

    delivery = await admin.simulate_dm(customer.id, shop.id, "Where is #12345?", [attachment])

    assert delivery.webhook_status == 200 and delivery.error is None
    assert delivery.subscribed is False
    # The receiver is the module's: this test's delivery is the one for this shop.
    [payload] = [d for d in hook.deliveries if d.get("for_user_id") == shop.id]
    assert payload["for_user_id"] == shop.id
    [event] = payload["direct_message_events"]
    assert event["id"] == delivery.event_id and event["type"] == "message_create"
    assert int(event["created_timestamp"]) > 1_600_000_000_000
    create = event["message_create"]
    assert create["sender_id"] == customer.id
    assert create["target"]["recipient_id"] == shop.id
    assert create["message_data"]["text"] == "Where is #12345?"
    assert create["message_data"]["attachment"] == attachment
    sender = payload["users"][customer.id]
    assert sender["screen_name"] == customer.username and sender["name"] == "Customer"
    assert sender["profile_image_url_https"].startswith("https://")
    # It is a real DM event too: X lists it among the shop's DM events.
    [dm] = await admin.dms(sender_id=customer.id)
    assert (dm.id, dm.source) == (delivery.event_id, "simulated")


async def test_simulated_follow_and_crc(
    admin: SandboxAdmin,
    receiver: tuple[Receiver, RunningServer],
    shop: SandboxUser,
    customer: SandboxUser,
) -> None:
    hook, server = receiver
    await admin.set_webhook_url(f"{server.url}/webhook")

    delivery = await admin.simulate_follow(customer.id, shop.id, "unfollow")

    assert delivery.webhook_status == 200
    [payload] = [d for d in hook.deliveries if d.get("for_user_id") == shop.id]
    [event] = payload["follow_events"]
    assert payload["for_user_id"] == shop.id and event["type"] == "unfollow"
    assert event["source"]["id"] == customer.id and event["target"]["screen_name"] == shop.username
    assert await admin.crc_check() is True


async def test_a_webhook_with_another_secret_refuses_the_delivery(
    admin: SandboxAdmin, shop: SandboxUser, customer: SandboxUser
) -> None:
    strict = Receiver("another-apps-secret")
    with serve_in_thread(strict.app) as server:
        await admin.set_webhook_url(f"{server.url}/webhook")
        refused = await admin.simulate_dm(customer.id, shop.id, "hello")
        crc_ok = await admin.crc_check()
    await admin.set_webhook_url("http://127.0.0.1:9/nowhere")
    unreachable = await admin.simulate_dm(customer.id, shop.id, "hello?")

    assert refused.webhook_status == 401 and strict.deliveries == []
    assert crc_ok is False
    assert unreachable.webhook_status is None and unreachable.error


# Seed and reset -----------------------------------------------------------------------------


async def test_reset_keeps_only_the_demo_seed() -> None:
    with start_sandbox_thread(SandboxConfig(consumer_key=KEY, consumer_secret=SECRET)) as seeded:
        admin = seeded.admin
        temp = await admin.create_user("temporary")
        demo = SandboxUser(
            DEMO_BUSINESS_ID,
            "goodgo_shop",
            "GoodGo",
            DEMO_BUSINESS_TOKEN,
            DEMO_BUSINESS_TOKEN_SECRET,
        )
        assert (await send(seeded, demo, DEMO_CUSTOMER_ID, "welcome")).status_code == 201

        await admin.reset()

        assert (await call("GET", f"{seeded.url}/2/users/me", temp)).status_code == 401
        me = await call("GET", f"{seeded.url}/2/users/me", demo)
        assert me.json()["data"]["username"] == "goodgo_shop"
        assert await admin.dms() == []


async def test_the_request_log_holds_no_secrets(
    emulator: RunningSandbox, admin: SandboxAdmin, shop: SandboxUser, customer: SandboxUser
) -> None:
    await send(emulator, shop, customer.id, "hello")
    async with httpx.AsyncClient() as client:
        raw = (await client.get(f"{emulator.url}/_sandbox/requests")).text
    assert shop.id in raw
    assert shop.access_token not in raw and shop.access_token_secret not in raw
    assert SECRET not in raw
