"""X's deliveries, split into single events and read into typed shapes.

Account Activity batches events of one user into one payload; each is stored as its own
self-contained payload (`{"for_user_id", "<kind>_events": [event], "users": {only the users it
names}}`) so that it can be applied, reprocessed and erased on its own — a contact's profile
never lingers in another contact's raw event. An X Activity API delivery is one event already
(services/ingestion/activity_api.py); it is stored as delivered (narrowed to the DM and users
it names) and read through its Account Activity view, so both APIs apply the same way and an
event both deliver (switching from one to the other) has the same deduplication key.

A payload without `for_user_id` (the API specification's own example) is routed by the users
its events name: a DM by its recipient, else its sender (an echo), being a connected account
(`routing_candidates`, resolved by the caller).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from services.ingestion import activity_api, dm_content

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
    """The body is not an X delivery at all (X's own are never refused)."""


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


def routing_candidates(body: Any) -> list[str]:
    """For an Account Activity payload without `for_user_id`: the X users its events name, in
    the order they route it (a DM's recipient before its sender, a follow's target before its
    source). Empty when the payload says whom it is for (or is not Account Activity)."""
    if not isinstance(body, dict) or activity_api.is_activity_delivery(body):
        return []
    if _user_id(body.get("for_user_id")) is not None or isinstance(body.get("user_event"), dict):
        return []
    found: list[str] = []
    for name, value in body.items():
        if isinstance(value, list) and name.endswith("_events"):
            for item in value:
                for user in _participants(name, item):
                    if user is not None and user not in found:
                        found.append(user)
    return found


def _participants(name: str, item: Any) -> tuple[str | None, ...]:
    """The users an event names, the one it is addressed to first."""
    event = item if isinstance(item, dict) else {}
    if name == "direct_message_events":
        create = event.get("message_create") or {}
        recipient = (create.get("target") or {}).get("recipient_id")
        return _user_id(recipient), _user_id(create.get("sender_id"))
    if name in ("direct_message_mark_read_events", "direct_message_indicate_typing_events"):
        recipient = (event.get("target") or {}).get("recipient_id")
        return _user_id(recipient), _user_id(event.get("sender_id"))
    if name == "follow_events":
        return _user_id((event.get("target") or {}).get("id")), _user_id(
            (event.get("source") or {}).get("id")
        )
    return ()


def split_payload(body: Any, connected: frozenset[str] = frozenset()) -> list[IncomingEvent]:
    """One IncomingEvent per event in the delivery, each with its deduplication key.

    `connected`: which of `routing_candidates(body)` are connected accounts (a payload without
    `for_user_id` is routed to them)."""
    if not isinstance(body, dict):
        raise MalformedPayload("the body must be a JSON object")
    if activity_api.is_activity_delivery(body):
        return _split_activity(body)
    user_event = body.get("user_event")
    revoke = user_event.get("revoke") if isinstance(user_event, dict) else None
    for_user_id = _user_id(body.get("for_user_id"))
    if for_user_id is None and isinstance(revoke, dict):
        # X sends revocations without for_user_id: the user is the revoke's source.
        for_user_id = _user_id((revoke.get("source") or {}).get("user_id"))
    if for_user_id is None and not routing_candidates(body):
        raise MalformedPayload("for_user_id is missing or not an X user id")
    users: dict[str, Any] = body["users"] if isinstance(body.get("users"), dict) else {}
    events: list[IncomingEvent] = []
    for name, value in body.items():
        if name == "user_event" and isinstance(revoke, dict) and for_user_id is not None:
            events.append(_revoke(for_user_id, value, revoke))
        elif isinstance(value, list) and name.endswith("_events"):
            for item in value:
                owner = for_user_id or _route(name, item, connected)
                if owner is not None:
                    events.append(_one(owner, name, item, users))
    return events


def _route(name: str, item: Any, connected: frozenset[str]) -> str | None:
    """Whom an event of a payload without for_user_id is for: the first of its users who is a
    connected account, else the one it is addressed to (stored for nobody)."""
    participants = [p for p in _participants(name, item) if p is not None]
    return next(
        (p for p in participants if p in connected), participants[0] if participants else None
    )


def _split_activity(body: dict[str, Any]) -> list[IncomingEvent]:
    for_user_id = _user_id(activity_api.filtered_user(body)) or ""
    kind = activity_api.event_type(body)
    uuid_key = _key("xaa", for_user_id, activity_api.event_uuid(body) or _digest(body))
    dm = activity_api.dm_items(body)
    if dm is not None:
        name, items, users = dm
        events = []
        for item in items:
            # The same key Account Activity gives the same DM, read or typing indicator.
            event = _one(for_user_id, name, item, users)
            ids = [for_user_id, event.subject_user_id]
            stored = activity_api.single_dm(body, name, item, ids)
            events.append(
                IncomingEvent(
                    for_user_id, event.event_type, event.dedup_key, event.subject_user_id, stored
                )
            )
        return events
    view = activity_api.account_activity_view(body, for_user_id)
    if kind in (activity_api.FOLLOW, activity_api.UNFOLLOW):
        event = _one(for_user_id, "follow_events", view["follow_events"][0], {})
        return [IncomingEvent(for_user_id, event.event_type, uuid_key, event.subject_user_id, body)]
    if kind == activity_api.OAUTH_REVOKE:
        revoke = view["user_event"]["revoke"]
        event = _revoke(for_user_id, view["user_event"], revoke)
        return [IncomingEvent(for_user_id, EventType.revoke, event.dedup_key, None, body)]
    # Any other event type a subscription may bring (post.create, profile.update.*, ...).
    return [IncomingEvent(for_user_id, EventType.other, uuid_key, None, body)]


def stored_view(payload: dict[str, Any], for_user_id: str = "") -> dict[str, Any]:
    """A stored event in the Account Activity shape the readers below take."""
    if activity_api.is_activity_delivery(payload):
        return activity_api.account_activity_view(payload, for_user_id)
    return payload


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
    quick_reply: dict[str, str] | None  # the option a quick reply's answer chose
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
    payload = stored_view(payload)
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
        text=dm_content.text(data),
        attachments=dm_content.attachments(data),
        quick_reply=dm_content.quick_reply(data),
        created_at=timestamp(event.get("created_timestamp")),
        sender=profile(sender, users.get(sender)),
        recipient=profile(recipient, users.get(recipient)),
    )


def follow_change(payload: dict[str, Any]) -> FollowChange:
    event = stored_view(payload)["follow_events"][0]
    source, target = event["source"], event["target"]
    return FollowChange(
        follows=event.get("type") != "unfollow",
        source=profile(str(source.get("id_str") or source["id"]), source),
        target=profile(str(target.get("id_str") or target["id"]), target),
        created_at=timestamp(event.get("created_timestamp")),
    )


def read_receipt(payload: dict[str, Any]) -> ReadReceipt:
    event = stored_view(payload)["direct_message_mark_read_events"][0]
    last = event.get("last_read_event_id")
    return ReadReceipt(
        reader_id=str(event["sender_id"]),
        last_read_event_id=str(last) if last else None,
        created_at=timestamp(event.get("created_timestamp")),
    )


def revocation(payload: dict[str, Any]) -> Revocation:
    revoke = stored_view(payload)["user_event"]["revoke"]
    at = revoke.get("date_time")
    try:
        moment = datetime.fromisoformat(str(at)) if at else datetime.now(UTC)
    except ValueError:
        moment = datetime.now(UTC)
    return Revocation(user_id=str(revoke["source"]["user_id"]), at=moment)
