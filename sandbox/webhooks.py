"""Account Activity deliveries: X's payload shapes, its signature header, and the POST itself."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from sandbox.state import DMEvent, SandboxState, User

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-twitter-webhooks-signature"
DELIVERY_TIMEOUT_SECONDS = 10.0


def sign(consumer_secret: str, payload: bytes) -> str:
    """The value of `x-twitter-webhooks-signature` for a raw body."""
    digest = hmac.new(consumer_secret.encode(), payload, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def crc_response_token(consumer_secret: str, crc_token: str) -> str:
    return sign(consumer_secret, crc_token.encode())


def _millis(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def v1_user(user: User) -> dict[str, Any]:
    """A user as Account Activity payloads carry it (v1.1 shape, string ids)."""
    image = user.profile_image_url or ""
    return {
        "id": user.id,
        "created_timestamp": _millis(user.created_at),
        "name": user.name,
        "screen_name": user.username,
        "protected": False,
        "verified": False,
        "followers_count": 0,
        "friends_count": 0,
        "statuses_count": 0,
        "profile_image_url": image.replace("https://", "http://", 1),
        "profile_image_url_https": image,
    }


def dm_payload(for_user_id: str, event: DMEvent, sender: User, recipient: User) -> dict[str, Any]:
    message_data: dict[str, Any] = {
        "text": event.text,
        "entities": {"hashtags": [], "symbols": [], "user_mentions": [], "urls": []},
    }
    if event.attachments:
        message_data["attachment"] = event.attachments[0]
    return {
        "for_user_id": for_user_id,
        "direct_message_events": [
            {
                "type": "message_create",
                "id": event.id,
                "created_timestamp": _millis(event.created_at),
                "message_create": {
                    "target": {"recipient_id": event.recipient_id},
                    "sender_id": event.sender_id,
                    "message_data": message_data,
                },
            }
        ],
        "users": {sender.id: v1_user(sender), recipient.id: v1_user(recipient)},
    }


def follow_payload(
    for_user_id: str, kind: str, source: User, target: User, at: datetime
) -> dict[str, Any]:
    return {
        "for_user_id": for_user_id,
        "follow_events": [
            {
                "type": kind,
                "created_timestamp": _millis(at),
                "target": v1_user(target),
                "source": v1_user(source),
            }
        ],
    }


@dataclass(frozen=True)
class Delivery:
    event_id: str
    webhook_url: str
    webhook_status: int | None
    error: str | None = None


async def deliver(state: SandboxState, event_id: str, payload: dict[str, Any]) -> Delivery:
    """POST a signed payload to the default webhook, as X's delivery does."""
    url = state.webhooks_snapshot()[state.default_webhook_id]
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "content-type": "application/json; charset=utf-8",
        SIGNATURE_HEADER: sign(state.consumer_secret, body),
        "user-agent": "Twitter-Webhooks/sandbox",
    }
    try:
        async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_SECONDS) as client:
            response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        logger.warning(
            "sandbox.webhook_failed", extra={"event_id": event_id, "error": type(exc).__name__}
        )
        return Delivery(event_id, url, None, f"{type(exc).__name__}: {exc}")
    logger.info(
        "sandbox.webhook_delivered",
        extra={"event_id": event_id, "status": response.status_code},
    )
    return Delivery(event_id, url, response.status_code)


async def crc_check(state: SandboxState, url: str | None = None) -> tuple[bool, int | None]:
    """Run X's challenge-response check against the webhook; (valid, HTTP status)."""
    target = url or state.webhooks_snapshot()[state.default_webhook_id]
    crc_token = secrets.token_urlsafe(24)
    try:
        async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_SECONDS) as client:
            response = await client.get(target, params={"crc_token": crc_token})
    except httpx.HTTPError:
        return False, None
    try:
        body = response.json()
    except ValueError:
        body = None
    answered = body.get("response_token") if isinstance(body, dict) else None
    if response.status_code != 200 or not isinstance(answered, str):
        return False, response.status_code
    expected = crc_response_token(state.consumer_secret, crc_token)
    return hmac.compare_digest(answered.encode(), expected.encode()), response.status_code
