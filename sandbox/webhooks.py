"""X's webhook deliveries: Account Activity's payloads and the X Activity API's envelopes, the
signature header, and the POST itself.

Shapes as X documents and delivers them (tests/fixtures/x/ holds the samples with their
sources): Account Activity batches a user's events as `{"for_user_id", "<kind>_events": [...],
"users": {id: v1.1 user}}`; the X Activity API posts one event per delivery as `{"data":
{"event_uuid", "filter": {"user_id"}, "event_type", "tag", "payload"}}`, its legacy DM events
carrying Account Activity's objects in `payload` with users as `{id: {"data": v2 user}}`.
"""

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


def v2_user(user: User) -> dict[str, Any]:
    """A user as the X Activity API carries it (API v2 fields)."""
    data: dict[str, Any] = {
        "id": user.id,
        "name": user.name,
        "username": user.username,
        "created_at": user.created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "protected": False,
        "verified": False,
    }
    if user.profile_image_url:
        data["profile_image_url"] = user.profile_image_url
    return data


def _dm_object(event: DMEvent) -> dict[str, Any]:
    urls = [event.media_link] if event.media_link is not None else []
    message_data: dict[str, Any] = {
        "text": event.x_text,
        "entities": {"hashtags": [], "symbols": [], "user_mentions": [], "urls": urls},
    }
    if event.attachments:
        message_data["attachment"] = event.attachments[0]
    if event.quick_reply_response is not None:
        message_data["quick_reply_response"] = event.quick_reply_response
    return {
        "type": "message_create",
        "id": event.id,
        "created_timestamp": _millis(event.created_at),
        "message_create": {
            "target": {"recipient_id": event.recipient_id},
            "sender_id": event.sender_id,
            "message_data": message_data,
        },
    }


def dm_payload(for_user_id: str, event: DMEvent, sender: User, recipient: User) -> dict[str, Any]:
    return {
        "for_user_id": for_user_id,
        "direct_message_events": [_dm_object(event)],
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


def _receipt(sender: User, recipient: User, at: datetime, **extra: Any) -> Any:
    """A read receipt (`last_read_event_id`) or typing indicator of `sender` to `recipient`."""
    return {
        "created_timestamp": _millis(at),
        "sender_id": sender.id,
        "target": {"recipient_id": recipient.id},
        **extra,
    }


def receipt_payload(
    for_user_id: str, kind: str, sender: User, recipient: User, at: datetime, **extra: Any
) -> dict[str, Any]:
    """`kind`: `direct_message_mark_read_events` or `direct_message_indicate_typing_events`."""
    return {
        "for_user_id": for_user_id,
        kind: [_receipt(sender, recipient, at, **extra)],
        "users": {sender.id: v1_user(sender), recipient.id: v1_user(recipient)},
    }


def revoke_payload(user: User, app_id: str, at: datetime) -> dict[str, Any]:
    """Account Activity's revocation: no for_user_id, the user is the revoke's source."""
    return {
        "user_event": {
            "revoke": {
                "date_time": at.isoformat(timespec="seconds"),
                "target": {"app_id": app_id},
                "source": {"user_id": user.id},
            }
        }
    }


# The X Activity API ------------------------------------------------------------------------

# The Account Activity list each legacy DM event type of the X Activity API carries.
ACTIVITY_DM_LISTS = {
    "dm.received": "direct_message_events",
    "dm.sent": "direct_message_events",
    "dm.read": "direct_message_mark_read_events",
    "dm.indicate_typing": "direct_message_indicate_typing_events",
}
# The event types the sandbox delivers.
DELIVERED_ACTIVITY_TYPES = frozenset(
    {*ACTIVITY_DM_LISTS, "follow.follow", "follow.unfollow", "oauth.revoke"}
)


def activity_envelope(
    event_type: str, user_id: str | None, payload: dict[str, Any], tag: str | None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_uuid": str(secrets.randbelow(2**63)),
        "filter": {"user_id": user_id} if user_id else {},
        "event_type": event_type,
    }
    if tag is not None:
        data["tag"] = tag
    data["payload"] = payload
    return {"data": data}


def _v2_users(*users: User) -> dict[str, Any]:
    return {u.id: {"data": v2_user(u)} for u in users}


def activity_dm(
    event_type: str, user_id: str, event: DMEvent, sender: User, recipient: User, tag: str | None
) -> dict[str, Any]:
    """dm.received (for the recipient) or dm.sent (for the sender)."""
    payload = {"direct_message_events": [_dm_object(event)], "users": _v2_users(sender, recipient)}
    return activity_envelope(event_type, user_id, payload, tag)


def activity_receipt(
    event_type: str,
    user_id: str,
    sender: User,
    recipient: User,
    at: datetime,
    tag: str | None,
    **extra: Any,
) -> dict[str, Any]:
    """dm.read or dm.indicate_typing (no published sample: Account Activity's object, in the
    list of the same name, as dm.sent and dm.received carry theirs)."""
    kind = ACTIVITY_DM_LISTS[event_type]
    payload = {
        kind: [_receipt(sender, recipient, at, **extra)],
        "users": _v2_users(sender, recipient),
    }
    return activity_envelope(event_type, user_id, payload, tag)


def activity_follow(
    event_type: str, user_id: str, source: User, target: User, tag: str | None
) -> dict[str, Any]:
    payload = {"source": {"data": v2_user(source)}, "target": {"data": v2_user(target)}}
    return activity_envelope(event_type, user_id, payload, tag)


def activity_revoke(user: User, app_id: str, at: datetime) -> dict[str, Any]:
    payload = {
        "date_time": at.isoformat(timespec="seconds"),
        "user_id": user.id,
        "app_id": app_id,
    }
    return activity_envelope("oauth.revoke", None, payload, None)


@dataclass(frozen=True)
class Delivery:
    event_id: str
    webhook_url: str
    webhook_status: int | None
    error: str | None = None


async def deliver(
    state: SandboxState, event_id: str, payload: dict[str, Any], webhook_id: str | None = None
) -> Delivery:
    """POST a signed payload to the webhook (the default one unless named), as X does."""
    hooks = state.webhooks_snapshot()
    url = hooks.get(webhook_id or state.default_webhook_id) or hooks[state.default_webhook_id]
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
