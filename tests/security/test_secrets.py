"""No secret leaves the service in a log line or an API answer.

A full flow — X accounts connected (and one refused), X's CRC check, signed and forged webhook
deliveries, an agent's reply, the assistant's answers (asked for, and automatic), a token X
revokes mid-way, a disconnect — with every log record of the process (API, in-process worker,
Temporal SDK, libraries) written by the service's own JSON formatter at DEBUG, and every
answer the API gave (headers and body) kept. Then none of them may hold: an OAuth token or
token secret, the X consumer secret, the JWT secret, the Fernet key, or a bearer token."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from mktx.logs import JsonFormatter
from mktx.settings import Settings
from sandbox.admin import SandboxAdmin, SandboxUser
from services.core.auth import Role
from tests.assistant.conftest import SHOP_INTENTS, ai_on
from tests.conftest import CONSUMER_SECRET, Api
from tests.webhooks.conftest import WEBHOOK, connect, eventually, inbound, post_signed, x_user


class JsonLines(logging.Handler):
    """Every record, as the service writes it to stderr."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def json_logs() -> Iterator[JsonLines]:
    root = logging.getLogger()
    handler, level = JsonLines(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@dataclass
class Answers:
    """Every answer the API gave while the test ran: status line, headers and body."""

    texts: list[str] = field(default_factory=list)
    bearer_tokens: set[str] = field(default_factory=set)  # what the test sent as credentials

    async def note(self, request: httpx.Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            self.bearer_tokens.add(token)

    async def keep(self, response: httpx.Response) -> None:
        await response.aread()
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.texts.append(
            f"{response.status_code} {response.request.url}\n{headers}\n{response.text}"
        )


@pytest.fixture
def answers(app_client: httpx.AsyncClient) -> Iterator[Answers]:
    kept = Answers()
    hooks = app_client.event_hooks
    app_client.event_hooks = {
        "request": [*hooks["request"], kept.note],
        "response": [*hooks["response"], kept.keep],
    }
    try:
        yield kept
    finally:
        app_client.event_hooks = hooks


def found_in(secrets: dict[str, str], texts: list[str]) -> dict[str, str]:
    """Which secrets appear where (the first text each is in, cut short)."""
    return {
        name: next(text for text in texts if secret in text)[:400]
        for name, secret in secrets.items()
        if any(secret in text for text in texts)
    }


def test_the_search_finds_a_secret_where_it_is() -> None:
    assert found_in({"t": "s3cr3t"}, ["a", "x s3cr3t y"]) == {"t": "x s3cr3t y"}
    assert found_in({"t": "s3cr3t"}, ["a", "b"]) == {}


async def _dms_to(x_admin: SandboxAdmin, customer: SandboxUser, count: int) -> None:
    await eventually(lambda: x_admin.dms(recipient_id=customer.id), lambda d: len(d) >= count, 20)


async def test_no_secret_in_any_log_line_or_answer(
    api: Api,
    x_admin: SandboxAdmin,
    settings: Settings,
    json_logs: JsonLines,
    answers: Answers,
) -> None:
    shop_user = await x_user(x_admin, "shop", name="Shop")
    spare_user = await x_user(x_admin, "spare", name="Spare")
    refused_user = await x_user(x_admin, "refused")
    customer = await x_user(x_admin, "cust", name="Customer")
    await x_admin.revoke(refused_user.access_token)

    # Accounts: two connected, one X refuses.
    shop = await connect(api, shop_user)
    spare = await connect(api, spare_user)
    refused = await api.post(
        "/accounts",
        json={
            "oauthToken": refused_user.access_token,
            "oauthTokenSecret": refused_user.access_token_secret,
        },
    )
    assert refused.status_code == 400, refused.text
    assert (await api.get(f"/accounts/{shop.account_id}")).status_code == 200

    # X's CRC check, a forged delivery, and the customer's DM.
    crc = await api.client.get(WEBHOOK, params={"crc_token": "challenge-" + uuid.uuid4().hex})
    assert crc.status_code == 200 and crc.json()["response_token"].startswith("sha256=")
    forged = await post_signed(
        api.client, inbound(shop, customer, "hi"), secret="not-the-consumer-secret"
    )
    assert forged.status_code == 401
    delivered = await post_signed(api.client, inbound(shop, customer, "where is my order #4242?"))
    assert delivered.status_code == 200, delivered.text
    conversations = (await api.get("/conversations")).json()["data"]
    conversation_id = conversations[0]["id"]

    # An agent's reply, the assistant asked for an answer, then answering by itself.
    reply = await api.post(
        f"/conversations/{conversation_id}/messages",
        json={"content": "Let me look"},
        role=Role.agent,
    )
    assert reply.status_code in (200, 202), reply.text
    await _dms_to(x_admin, customer, 1)
    await ai_on(api, intents=SHOP_INTENTS)
    asked = await api.post(
        f"/ai/conversations/{conversation_id}/message", json={"message": "where is #4242?"}
    )
    assert asked.status_code == 200, asked.text
    auto = await api.put(f"/accounts/{spare.account_id}", json={"autoReplyEnabled": True})
    assert auto.status_code == 200, auto.text
    fan = await x_user(x_admin, "fan", name="Fan")
    assert (
        await post_signed(api.client, inbound(spare, fan, "is the shop open?"))
    ).status_code == 200
    await _dms_to(x_admin, fan, 1)

    # X revokes the shop's token: the next reply meets a 401 from X.
    await x_admin.revoke(shop_user.access_token)
    late = await api.post(f"/conversations/{conversation_id}/messages", json={"content": "Sorry"})
    assert (late.status_code, late.json()["code"]) == (502, "TWITTER_API_ERROR"), late.text

    async def status(account_id: uuid.UUID) -> str:
        return str((await api.get(f"/accounts/{account_id}")).json()["data"]["status"])

    await eventually(lambda: status(shop.account_id), lambda s: s == "error", 30)

    # The spare account is disconnected (its token is invalidated at X).
    assert (await api.delete(f"/accounts/{spare.account_id}")).status_code == 200

    await eventually(lambda: status(spare.account_id), lambda s: s == "inactive", 30)

    secrets = {
        f"{name} {part}": value
        for name, user in (("shop", shop_user), ("spare", spare_user), ("refused", refused_user))
        for part, value in (
            ("oauth token", user.access_token),
            ("oauth token secret", user.access_token_secret),
        )
    }
    assert settings.jwt_secret is not None
    secrets |= {
        "X consumer secret": CONSUMER_SECRET,
        "JWT secret": settings.jwt_secret.get_secret_value(),
        "Fernet key": settings.encryption_key.get_secret_value(),
    }
    secrets |= {f"bearer token {i}": t for i, t in enumerate(sorted(answers.bearer_tokens))}
    # The capture saw the whole flow: requests, the worker's activities, X's refusals.
    logged = "\n".join(json_logs.lines)
    for event in ('"event": "request"', "temporalio", "webhook.signature_refused"):
        assert event in logged, f"no {event} logged: the capture missed part of the flow"
    assert len(answers.texts) >= 15 and len(answers.bearer_tokens) >= 3
    assert found_in(secrets, json_logs.lines) == {}
    assert found_in(secrets, answers.texts) == {}
