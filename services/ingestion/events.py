"""Account Activity payloads, split into single events and read into typed shapes.

X batches events of one user into one payload; each is stored as its own self-contained payload
(`{"for_user_id", "<kind>_events": [event], "users": {only the users it names}}`) so that it can
be applied, reprocessed and erased on its own — a contact's profile never lingers in another
contact's raw event.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

MAX_USER_ID = 32  # column width of for_user_id / subject_user_id
MAX_DEDUP_KEY = 256


class EventType(StrEnum):
    direct_message = "direct_message"
    follow = "follow"
    unfollow = "unfollow"
    read = "read"
    typing = "typing"
    favorite = "favorite"
    tweet = "tweet"
    revoke = "revoke"
    other = "other"


# Stored and acknowledged, nothing else to do.
PASSIVE_TYPES = frozenset({EventType.typing, EventType.favorite, EventType.tweet, EventType.other})


class MalformedPayload(ValueError):
    """The body is not an Account Activity payload at all (X's own are never refused)."""


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    for_user_id: str
    event_type: EventType
    dedup_key: str
    subject_user_id: str | None  # the other X user the event is about (for GDPR erasure)
    payload: dict[str, Any]

    def payload_json(self) -> str:
        return payload_json(self.payload)


def payload_json(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    # PostgreSQL's jsonb refuses \u0000; a NUL in a DM is noise, not content.
    return text.replace("\\u0000", "") if "\\u0000" in text else text


def _user_id(value: Any) -> str | None:
    text = str(value) if value is not None and value != "" else None
    return text if text is not None and len(text) <= MAX_USER_ID else None


def _key(*parts: Any) -> str:
    key = ":".join(str(p) for p in parts)
    if len(key) <= MAX_DEDUP_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _digest(event: Any) -> str:
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _other(for_user_id: str, *ids: str | None) -> str | None:
    return next((i for i in ids if i and i != for_user_id), None)


def split_payload(body: Any) -> list[IncomingEvent]:
    """One IncomingEvent per event in the payload, each with its deduplication key."""
    if not isinstance(body, dict):
        raise MalformedPayload("the body must be a JSON object")
    user_event = body.get("user_event")
    revoke = user_event.get("revoke") if isinstance(user_event, dict) else None
    for_user_id = _user_id(body.get("for_user_id"))
    if for_user_id is None and isinstance(revoke, dict):
        # X sends revocations without for_user_id: the user is the revoke's source.
        for_user_id = _user_id((revoke.get("source") or {}).get("user_id"))
    if for_user_id is None:
        raise MalformedPayload("for_user_id is missing or not an X user id")
    users: dict[str, Any] = body["users"] if isinstance(body.get("users"), dict) else {}
    events: list[IncomingEvent] = []
    for name, value in body.items():
        if name == "user_event" and isinstance(revoke, dict):
            events.append(_revoke(for_user_id, value, revoke))
        elif isinstance(value, list) and name.endswith("_events"):
            for item in value:
                events.append(_one(for_user_id, name, item, users))
    return events


def _single(
    for_user_id: str, name: str, item: Any, users: dict[str, Any], *ids: str | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"for_user_id": for_user_id, name: [item]}
    named = {i: users[i] for i in ids if i and i in users}
    if named:
        payload["users"] = named
    return payload


def _one(for_user_id: str, name: str, item: Any, users: dict[str, Any]) -> IncomingEvent:
    event = item if isinstance(item, dict) else {}
    if name == "direct_message_events" and event.get("type", "message_create") == "message_create":
        create = event.get("message_create") or {}
        sender = _user_id(create.get("sender_id"))
        recipient = _user_id((create.get("target") or {}).get("recipient_id"))
        event_id = event.get("id")
        key = (
            _key("dm", for_user_id, event_id)
            if event_id
            else _key("dm", for_user_id, "sha", _digest(item))
        )
        return IncomingEvent(
            for_user_id,
            EventType.direct_message,
            key,
            _other(for_user_id, sender, recipient),
            _single(for_user_id, name, item, users, sender, recipient),
        )
    if name == "follow_events":
        kind = EventType.unfollow if event.get("type") == "unfollow" else EventType.follow
        source = _user_id((event.get("source") or {}).get("id"))
        target = _user_id((event.get("target") or {}).get("id"))
        key = _key("follow", for_user_id, kind, source, target, event.get("created_timestamp"))
        return IncomingEvent(
            for_user_id,
            kind,
            key,
            _other(for_user_id, source, target),
            _single(for_user_id, name, item, users),
        )
    if name in ("direct_message_mark_read_events", "direct_message_indicate_typing_events"):
        reader = _user_id(event.get("sender_id"))
        other = _user_id((event.get("target") or {}).get("recipient_id"))
        if name == "direct_message_mark_read_events":
            kind = EventType.read
            key = _key("read", for_user_id, reader, event.get("last_read_event_id"))
        else:
            kind = EventType.typing
            key = _key("typing", for_user_id, reader, event.get("created_timestamp"))
        return IncomingEvent(
            for_user_id,
            kind,
            key,
            _other(for_user_id, reader, other),
            _single(for_user_id, name, item, users, reader),
        )
    if name == "favorite_events":
        user = _user_id(
            (event.get("user") or {}).get("id_str") or (event.get("user") or {}).get("id")
        )
        event_id = event.get("id") or _digest(item)
        return IncomingEvent(
            for_user_id,
            EventType.favorite,
            _key("favorite", for_user_id, event_id),
            _other(for_user_id, user),
            _single(for_user_id, name, item, users),
        )
    if name == "tweet_create_events":
        user = _user_id(
            (event.get("user") or {}).get("id_str") or (event.get("user") or {}).get("id")
        )
        tweet_id = event.get("id_str") or event.get("id") or _digest(item)
        return IncomingEvent(
            for_user_id,
            EventType.tweet,
            _key("tweet", for_user_id, tweet_id),
            _other(for_user_id, user),
            _single(for_user_id, name, item, users),
        )
    # Anything else X may add (block_events, mute_events, tweet_delete_events, ...): kept raw.
    return IncomingEvent(
        for_user_id,
        EventType.other,
        _key(name.removesuffix("_events"), for_user_id, _digest(item)),
        None,
        _single(for_user_id, name, item, users),
    )


def _revoke(for_user_id: str, user_event: Any, revoke: dict[str, Any]) -> IncomingEvent:
    return IncomingEvent(
        for_user_id,
        EventType.revoke,
        _key("revoke", for_user_id, revoke.get("date_time") or _digest(revoke)),
        None,
        {"for_user_id": for_user_id, "user_event": user_event},
    )


# Typed views of a stored single-event payload -------------------------------------------------


@dataclass(frozen=True, slots=True)
class XProfile:
    twitter_user_id: str
    username: str | None
    display_name: str | None
    profile_image_url: str | None


@dataclass(frozen=True, slots=True)
class DirectMessage:
    id: str
    sender_id: str
    recipient_id: str
    text: str
    attachments: list[dict[str, Any]]
    created_at: datetime
    sender: XProfile
    recipient: XProfile


@dataclass(frozen=True, slots=True)
class FollowChange:
    follows: bool
    source: XProfile
    target: XProfile
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReadReceipt:
    reader_id: str
    last_read_event_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Revocation:
    user_id: str
    at: datetime


def timestamp(value: Any, default: datetime | None = None) -> datetime:
    """X's `created_timestamp` (milliseconds since the epoch, as a string)."""
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return default or datetime.now(UTC)


def _clean(value: Any, limit: int) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    value = value.replace("\x00", "")
    return value[:limit] or None


def profile(user_id: str, user: Any) -> XProfile:
    """A v1.1 user object (or whatever X sent) as a contact's profile fields."""
    data = user if isinstance(user, dict) else {}
    image = data.get("profile_image_url_https") or data.get("profile_image_url")
    return XProfile(
        twitter_user_id=user_id,
        username=_clean(data.get("screen_name") or data.get("username"), 64),
        display_name=_clean(data.get("name"), 256),
        profile_image_url=image if isinstance(image, str) and len(image) <= 1024 else None,
    )


def direct_message(payload: dict[str, Any]) -> DirectMessage:
    event = payload["direct_message_events"][0]
    create = event["message_create"]
    sender = str(create["sender_id"])
    recipient = str(create["target"]["recipient_id"])
    data = create.get("message_data") or {}
    users = payload.get("users") or {}
    return DirectMessage(
        id=str(event["id"]),
        sender_id=sender,
        recipient_id=recipient,
        text=(data.get("text") or "").replace("\x00", ""),
        attachments=attachments(data),
        created_at=timestamp(event.get("created_timestamp")),
        sender=profile(sender, users.get(sender)),
        recipient=profile(recipient, users.get(recipient)),
    )


def attachments(message_data: dict[str, Any]) -> list[dict[str, Any]]:
    """`message_data.attachment` and linked URLs as `[{"type", "url", ...}]`."""
    found: list[dict[str, Any]] = []
    attachment = message_data.get("attachment")
    if isinstance(attachment, dict):
        media = attachment.get("media") if isinstance(attachment.get("media"), dict) else None
        source = media or attachment
        url = (
            source.get("media_url_https")
            or source.get("media_url")
            or source.get("url")
            or source.get("expanded_url")
        )
        item: dict[str, Any] = {
            "type": str(source.get("type") or attachment.get("type") or "media")
        }
        if url:
            item["url"] = str(url)
        media_id = source.get("id_str") or source.get("id")
        if media_id:
            item["mediaId"] = str(media_id)
        found.append(item)
    entities = message_data.get("entities") or {}
    for link in entities.get("urls") or []:
        if isinstance(link, dict) and (link.get("expanded_url") or link.get("url")):
            found.append({"type": "url", "url": str(link.get("expanded_url") or link["url"])})
    return found


def follow_change(payload: dict[str, Any]) -> FollowChange:
    event = payload["follow_events"][0]
    source, target = event["source"], event["target"]
    return FollowChange(
        follows=event.get("type") != "unfollow",
        source=profile(str(source.get("id_str") or source["id"]), source),
        target=profile(str(target.get("id_str") or target["id"]), target),
        created_at=timestamp(event.get("created_timestamp")),
    )


def read_receipt(payload: dict[str, Any]) -> ReadReceipt:
    event = payload["direct_message_mark_read_events"][0]
    last = event.get("last_read_event_id")
    return ReadReceipt(
        reader_id=str(event["sender_id"]),
        last_read_event_id=str(last) if last else None,
        created_at=timestamp(event.get("created_timestamp")),
    )


def revocation(payload: dict[str, Any]) -> Revocation:
    revoke = payload["user_event"]["revoke"]
    at = revoke.get("date_time")
    try:
        moment = datetime.fromisoformat(str(at)) if at else datetime.now(UTC)
    except ValueError:
        moment = datetime.now(UTC)
    return Revocation(user_id=str(revoke["source"]["user_id"]), at=moment)
