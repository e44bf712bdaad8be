"""X Activity API (XAA) deliveries, read as the Account Activity events they carry.

XAA posts one event per delivery to the same webhook URL, signed and CRC-checked the same way:
`{"data": {"event_uuid", "filter": {"user_id"}, "event_type", "tag", "payload", "includes"}}`.
Its legacy DM events carry Account Activity's own objects in `payload`
(`direct_message_events` and a `users` map whose entries are `{"data": <v2 user>}`); its follow
events carry `source` and `target` as `{"data": <v2 user>}`; `oauth.revoke` carries
`{date_time, user_id, app_id}` with an empty filter (docs.x.com/x-api/activity/event-payloads).

`account_activity_view` turns a stored XAA event into the Account Activity shape the typed
readers of services/ingestion/events.py know, so both APIs are applied by the same code; the
raw delivery is what is stored.
"""

from __future__ import annotations

from typing import Any

DM_RECEIVED = "dm.received"
DM_SENT = "dm.sent"
DM_READ = "dm.read"
DM_TYPING = "dm.indicate_typing"
FOLLOW = "follow.follow"
UNFOLLOW = "follow.unfollow"
OAUTH_REVOKE = "oauth.revoke"

# The event types a connected account is subscribed to (oauth.revoke needs no subscription:
# X delivers it to the app, with an empty filter).
SUBSCRIBED_EVENT_TYPES = (DM_RECEIVED, DM_SENT, DM_READ, DM_TYPING, FOLLOW, UNFOLLOW)

# The Account Activity list each DM event type's objects travel in.
_DM_LISTS = {
    DM_RECEIVED: "direct_message_events",
    DM_SENT: "direct_message_events",
    DM_READ: "direct_message_mark_read_events",
    DM_TYPING: "direct_message_indicate_typing_events",
}


def is_activity_delivery(body: Any) -> bool:
    data = body.get("data") if isinstance(body, dict) else None
    return isinstance(data, dict) and isinstance(data.get("event_type"), str)


def _data(body: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = body["data"]
    return data


def event_type(body: dict[str, Any]) -> str:
    return str(_data(body)["event_type"])


def event_uuid(body: dict[str, Any]) -> str | None:
    value = _data(body).get("event_uuid")
    return str(value) if value not in (None, "") else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _payload(body: dict[str, Any]) -> dict[str, Any]:
    return _dict(_data(body).get("payload"))


def filtered_user(body: dict[str, Any]) -> Any:
    """The X user the delivery is for: its filter's user, else (oauth.revoke, whose filter is
    empty) the user who revoked."""
    data = _data(body)
    user = (
        (data.get("filter") or {}).get("user_id") if isinstance(data.get("filter"), dict) else None
    )
    if user in (None, "") and data.get("event_type") == OAUTH_REVOKE:
        user = _payload(body).get("user_id")
    return user


def unwrap_user(user: Any) -> Any:
    """XAA's `{"data": {...}}` user, as the user object itself."""
    if isinstance(user, dict) and isinstance(user.get("data"), dict):
        return user["data"]
    return user


def dm_items(body: dict[str, Any]) -> tuple[str, list[Any], dict[str, Any]] | None:
    """For a DM event: the Account Activity list name, its objects and the users they name
    (unwrapped); None for any other event type."""
    name = _DM_LISTS.get(event_type(body))
    if name is None:
        return None
    payload = _payload(body)
    items = payload.get(name)
    if not isinstance(items, list):
        # No published sample of dm.read / dm.indicate_typing: their object may come bare.
        items = [payload] if payload else []
    users = _dict(payload.get("users"))
    return name, items, {k: unwrap_user(v) for k, v in users.items()}


def single_dm(body: dict[str, Any], name: str, item: Any, user_ids: list[str | None]) -> Any:
    """The delivery narrowed to one DM object and the users it names (what is stored)."""
    payload = dict(_payload(body))
    users = _dict(payload.get("users"))
    payload[name] = [item]
    named = {i: users[i] for i in user_ids if i and i in users}
    if named:
        payload["users"] = named
    else:
        payload.pop("users", None)
    return {"data": {**_data(body), "payload": payload}}


def account_activity_view(body: dict[str, Any], for_user_id: str) -> dict[str, Any]:
    """The stored XAA event in the Account Activity shape of one event (what events.py reads)."""
    kind = event_type(body)
    payload = _payload(body)
    dm = dm_items(body)
    if dm is not None:
        name, items, users = dm
        return {"for_user_id": for_user_id, name: items, "users": users}
    if kind in (FOLLOW, UNFOLLOW):
        event = {
            "type": "unfollow" if kind == UNFOLLOW else "follow",
            "source": unwrap_user(payload.get("source")),
            "target": unwrap_user(payload.get("target")),
        }
        return {"for_user_id": for_user_id, "follow_events": [event]}
    if kind == OAUTH_REVOKE:
        revoke = {
            "date_time": payload.get("date_time"),
            "source": {"user_id": payload.get("user_id")},
            "target": {"app_id": payload.get("app_id")},
        }
        return {"for_user_id": for_user_id, "user_event": {"revoke": revoke}}
    return {"for_user_id": for_user_id}
