"""X's challenge-response check and the payload signature: only X gets anything stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import httpx
from sqlalchemy import func, select
from sqlmodel import col

from api.app import BASE_PATH
from models.db import SessionMaker
from models.webhook_event import WebhookEvent
from sandbox.admin import SandboxAdmin, SandboxUser
from services.ingestion.signatures import SIGNATURE_HEADER, body_signature
from tests.conftest import CONSUMER_SECRET, Api
from tests.webhooks.conftest import Shop, inbound, new_id, post_signed


def expected_token(crc_token: str) -> str:
    digest = hmac.new(CONSUMER_SECRET.encode(), crc_token.encode(), hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


async def test_crc_is_answered_on_both_paths(api: Api) -> None:
    for path in ("/webhooks/verify", "/webhooks/twitter"):
        response = await api.client.get(BASE_PATH + path, params={"crc_token": "challenge-123"})
        assert response.status_code == 200, response.text
        # Exactly what X expects: no envelope around it.
        assert response.json() == {"response_token": expected_token("challenge-123")}


async def test_crc_without_token_is_a_422_in_the_envelope(api: Api) -> None:
    for path in ("/webhooks/verify", "/webhooks/twitter"):
        response = await api.client.get(BASE_PATH + path)
        assert response.status_code == 422
        body = response.json()
        assert body["success"] is False
        assert body["code"] == "VALIDATION_ERROR"
        assert body["details"]["field"] == "crc_token"


async def test_the_sandbox_crc_check_passes_against_the_live_api(
    live_api: str, x_admin: SandboxAdmin
) -> None:
    assert await x_admin.crc_check() is True


async def _stored(sessions: SessionMaker, event_id: str) -> int:
    async with sessions() as session:
        count = await session.execute(
            select(func.count())
            .select_from(WebhookEvent)
            .where(col(WebhookEvent.dedup_key).contains(event_id))
        )
        return int(count.scalar_one())


async def test_unsigned_and_forged_deliveries_are_refused_and_nothing_is_stored(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    event_id = new_id()
    body = json.dumps(inbound(shop, customer, "hi", event_id=event_id)).encode()
    url = BASE_PATH + "/webhooks/twitter"
    attempts: list[dict[str, str]] = [
        {},  # unsigned
        {SIGNATURE_HEADER: ""},
        {SIGNATURE_HEADER: body_signature("not-the-consumer-secret", body)},  # forged
        {SIGNATURE_HEADER: body_signature(CONSUMER_SECRET, body + b" ")},  # another body
        {SIGNATURE_HEADER: body_signature(CONSUMER_SECRET, body).removeprefix("sha256=")},
    ]
    for headers in attempts:
        response = await api.client.post(
            url, content=body, headers={"content-type": "application/json", **headers}
        )
        assert response.status_code == 401, headers
        assert response.json()["success"] is False
        assert response.json()["code"] == "UNAUTHORIZED"
    assert await _stored(sessions, event_id) == 0

    # The same bytes, signed by X: accepted.
    signed = await post_signed(api.client, body)
    assert signed.status_code == 200, signed.text
    assert await _stored(sessions, event_id) == 1


async def test_the_signature_covers_the_raw_bytes_not_the_parsed_json(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    event_id = new_id()
    payload = inbound(shop, customer, "hi", event_id=event_id)
    compact = json.dumps(payload, separators=(",", ":")).encode()
    spaced = json.dumps(payload, indent=2).encode()  # same JSON, other bytes
    response = await api.client.post(
        BASE_PATH + "/webhooks/twitter",
        content=spaced,
        headers={SIGNATURE_HEADER: body_signature(CONSUMER_SECRET, compact)},
    )
    assert response.status_code == 401
    assert await _stored(sessions, event_id) == 0


async def test_signed_garbage_is_a_422(api: Api, app_client: httpx.AsyncClient) -> None:
    for body in (b"{not json", b"[1, 2]", b'{"direct_message_events": []}'):
        response = await post_signed(app_client, body)
        assert response.status_code == 422, body
        assert response.json()["code"] == "VALIDATION_ERROR"
