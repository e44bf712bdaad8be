"""A typed async client for the sandbox's /_sandbox control API, for tests, benchmarks and `mkt-x dev`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx

PREFIX = "/_sandbox"
EventsApi = Literal["account_activity", "activity"]


@dataclass(frozen=True)
class SandboxUser:
    id: str
    username: str
    name: str
    access_token: str
    access_token_secret: str

    def __repr__(self) -> str:  # tokens stay out of test output and logs
        return f"SandboxUser(id={self.id!r}, username={self.username!r})"


@dataclass(frozen=True)
class TokenPair:
    user_id: str
    access_token: str
    access_token_secret: str

    def __repr__(self) -> str:
        return f"TokenPair(user_id={self.user_id!r})"


@dataclass(frozen=True)
class ReceivedMedia:
    """The media a DM attached, as X holds it."""

    media_id: str
    media_key: str
    media_type: str  # content type, e.g. image/png
    category: str  # dm_image, dm_gif or dm_video
    size: int
    sha256: str


@dataclass(frozen=True)
class ReceivedDM:
    id: str
    dm_conversation_id: str
    sender_id: str
    recipient_id: str
    text: str
    created_at: datetime
    source: str  # "api" (sent through X's API) or "simulated"
    media: ReceivedMedia | None = None
    # `message_data.attachment` as X delivers it (media object, URLs on X's media hosts).
    attachments: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class MediaUpload:
    """A media upload X holds (`GET /_sandbox/uploads`)."""

    id: str
    media_key: str
    owner_id: str
    media_type: str
    category: str
    total_bytes: int
    size: int
    sha256: str | None
    shared: bool
    state: str  # uploading, in_progress, succeeded
    dm_uses: int
    created_at: datetime
    expires_at: datetime
    expired: bool


@dataclass(frozen=True)
class LoggedRequest:
    at: datetime
    method: str
    path: str
    status: int
    user_id: str | None
    endpoint: str | None
    fault: str | None


@dataclass(frozen=True)
class WebhookDelivery:
    event_id: str
    webhook_url: str
    webhook_status: int | None  # None: the webhook could not be reached (see error)
    error: str | None
    subscribed: bool  # whether the user the event is for is subscribed to the webhook
    api: str = "account_activity"  # which API delivered it: account_activity or activity


class SandboxAdmin:
    def __init__(self, base_url: str, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout

    async def _call(
        self,
        method: str,
        path: str,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        # A client per call: admin calls are rare, and this survives tests switching event loops.
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self._timeout) as client:
            response = await client.request(method, PREFIX + path, json=json, params=params)
        response.raise_for_status()
        return response.json() if response.content else None

    async def create_user(
        self,
        username: str,
        name: str | None = None,
        accepts_dms: bool = True,
        profile_image_url: str | None = None,
    ) -> SandboxUser:
        body = {
            "username": username,
            "name": name,
            "acceptsDms": accepts_dms,
            "profileImageUrl": profile_image_url,
        }
        data = await self._call("POST", "/users", json=body)
        return SandboxUser(
            id=data["id"],
            username=data["username"],
            name=data["name"],
            access_token=data["accessToken"],
            access_token_secret=data["accessTokenSecret"],
        )

    async def set_accepts_dms(self, user_id: str, accepts_dms: bool) -> None:
        await self._call("PATCH", f"/users/{user_id}", json={"acceptsDms": accepts_dms})

    async def new_token(self, user_id: str) -> TokenPair:
        data = await self._call("POST", f"/users/{user_id}/tokens")
        return TokenPair(data["userId"], data["accessToken"], data["accessTokenSecret"])

    async def revoke(self, access_token: str) -> None:
        await self._call("POST", f"/tokens/{access_token}/revoke")

    async def set_faults(
        self,
        *,
        error_rate: float = 0.0,
        error_status: int = 503,
        latency_ms: int = 0,
        burst429: int = 0,
        path_prefix: str | None = None,
        user_id: str | None = None,
        retry_after_seconds: int = 60,
    ) -> None:
        body = {
            "errorRate": error_rate,
            "errorStatus": error_status,
            "latencyMs": latency_ms,
            "burst429": burst429,
            "pathPrefix": path_prefix,
            "userId": user_id,
            "retryAfterSeconds": retry_after_seconds,
        }
        await self._call("PUT", "/faults", json=body)

    async def clear_faults(self) -> None:
        """Clear every injected fault, the LLM's script (`set_llm_script`) included."""
        await self._call("DELETE", "/faults")

    async def set_llm_script(
        self, invalid: int = 0, replies: list[dict[str, Any]] | None = None
    ) -> None:
        """Script the LLM endpoint's next completions: `invalid` whose content is not JSON, then
        `replies`, each answered exactly (as JSON), then the deterministic answers again.
        Replaces any script left over; `set_llm_script()` clears it."""
        await self._call("PUT", "/llm/script", json={"invalid": invalid, "replies": replies or []})

    async def llm_requests(self) -> list[dict[str, Any]]:
        """The chat completions the LLM endpoint answered, oldest first: `model`, `messages`
        ([{role, content}], content parts joined as text), `response_format`, `temperature`,
        `max_tokens` and `at` (ISO 8601). Requests a fault refused never reach it."""
        rows: list[dict[str, Any]] = await self._call("GET", "/llm/requests")
        return rows

    async def clear_llm_requests(self) -> None:
        await self._call("DELETE", "/llm/requests")

    async def set_rate_limit(
        self, endpoint: str, limit: int, window_seconds: int = 900, user_id: str | None = None
    ) -> None:
        body = {
            "endpoint": endpoint,
            "limit": limit,
            "windowSeconds": window_seconds,
            "userId": user_id,
        }
        await self._call("PUT", "/rate-limits", json=body)

    async def dms(
        self, recipient_id: str | None = None, sender_id: str | None = None
    ) -> list[ReceivedDM]:
        params = {k: v for k, v in (("recipientId", recipient_id), ("senderId", sender_id)) if v}
        rows = await self._call("GET", "/dms", params=params)
        return [
            ReceivedDM(
                id=r["id"],
                dm_conversation_id=r["dmConversationId"],
                sender_id=r["senderId"],
                recipient_id=r["recipientId"],
                text=r["text"],
                created_at=datetime.fromisoformat(r["createdAt"]),
                source=r["source"],
                media=_media(r.get("media")),
                attachments=tuple(r.get("attachments") or ()),
            )
            for r in rows
        ]

    def media_url(
        self,
        name: str,
        media_type: str | None = None,
        size: int | None = None,
        status: int | None = None,
        content_type: str | None = None,
    ) -> str:
        """A URL on the sandbox serving deterministic media (`sandbox.media.sample_media`):
        `size` bytes of `media_type` (default from the name's extension), answered with
        `status` and the Content-Type `content_type` (default: the media type)."""
        query = httpx.QueryParams(
            {
                k: str(v)
                for k, v in (
                    ("type", media_type),
                    ("size", size),
                    ("status", status),
                    ("contentType", content_type),
                )
                if v is not None
            }
        )
        return f"{self.base_url}{PREFIX}/media/{name}" + (f"?{query}" if query else "")

    async def set_media_status(self, name: str, status: int | None) -> None:
        """Make sample media `name` answer `status` (e.g. 503: its host is down) whatever its
        URL asks; None: as its URL asks again."""
        await self._call("PUT", f"/media/{name}/status", json={"status": status})

    async def uploads(self, user_id: str | None = None) -> list[MediaUpload]:
        params = {"userId": user_id} if user_id else None
        rows = await self._call("GET", "/uploads", params=params)
        return [
            MediaUpload(
                id=r["id"],
                media_key=r["mediaKey"],
                owner_id=r["ownerId"],
                media_type=r["mediaType"],
                category=r["category"],
                total_bytes=r["totalBytes"],
                size=r["size"],
                sha256=r["sha256"],
                shared=r["shared"],
                state=r["state"],
                dm_uses=r["dmUses"],
                created_at=datetime.fromisoformat(r["createdAt"]),
                expires_at=datetime.fromisoformat(r["expiresAt"]),
                expired=r["expired"],
            )
            for r in rows
        ]

    async def expire_media(self, media_id: str) -> None:
        """Make an uploaded media id expire now (X's 24 h), so X refuses it."""
        await self._call("POST", f"/uploads/{media_id}/expire")

    async def requests(
        self, path_prefix: str | None = None, user_id: str | None = None
    ) -> list[LoggedRequest]:
        params = {k: v for k, v in (("pathPrefix", path_prefix), ("userId", user_id)) if v}
        rows = await self._call("GET", "/requests", params=params)
        return [
            LoggedRequest(
                at=datetime.fromisoformat(r["at"]),
                method=r["method"],
                path=r["path"],
                status=r["status"],
                user_id=r["userId"],
                endpoint=r["endpoint"],
                fault=r["fault"],
            )
            for r in rows
        ]

    async def subscriptions(self) -> dict[str, list[str]]:
        data: dict[str, list[str]] = await self._call("GET", "/subscriptions")
        return data

    async def set_webhook_url(self, url: str) -> None:
        await self._call("PUT", "/webhook", json={"url": url})

    async def crc_check(self) -> bool:
        """Ask the sandbox to run X's CRC against the webhook; True when it answered correctly."""
        data = await self._call("POST", "/webhook/crc")
        return bool(data["valid"])

    async def simulate_dm(
        self,
        from_user_id: str,
        to_user_id: str,
        text: str,
        attachments: list[dict[str, Any]] | None = None,
        for_user_id: str | None = None,
        *,
        media: Literal["image", "gif", "video"] | None = None,
        quick_reply_metadata: str | None = None,
        api: EventsApi | None = None,
    ) -> WebhookDelivery:
        """A DM delivered to the webhook as X delivers it (`media`: with a photo, GIF or
        video as X attaches them; `api`: by Account Activity or the X Activity API, else by
        the one `for_user_id` is subscribed to)."""
        body = {
            "fromUserId": from_user_id,
            "toUserId": to_user_id,
            "text": text,
            "attachments": attachments,
            "forUserId": for_user_id,
            "media": media,
            "quickReplyMetadata": quick_reply_metadata,
            "api": api,
        }
        return _delivery(await self._call("POST", "/simulate/dm", json=body))

    async def simulate_follow(
        self,
        from_user_id: str,
        to_user_id: str,
        type: Literal["follow", "unfollow"] = "follow",
        *,
        for_user_id: str | None = None,
        api: EventsApi | None = None,
    ) -> WebhookDelivery:
        body = {
            "fromUserId": from_user_id,
            "toUserId": to_user_id,
            "type": type,
            "forUserId": for_user_id,
            "api": api,
        }
        return _delivery(await self._call("POST", "/simulate/follow", json=body))

    async def simulate_receipt(
        self,
        from_user_id: str,
        to_user_id: str,
        type: Literal["read", "typing"] = "read",
        *,
        last_read_event_id: str | None = None,
        api: EventsApi | None = None,
    ) -> WebhookDelivery:
        """`from_user_id` read `to_user_id`'s DMs (the last one, unless named) or is typing."""
        body = {
            "fromUserId": from_user_id,
            "toUserId": to_user_id,
            "type": type,
            "lastReadEventId": last_read_event_id,
            "api": api,
        }
        return _delivery(await self._call("POST", "/simulate/receipt", json=body))

    async def simulate_revoke(
        self, user_id: str, *, api: EventsApi | None = None
    ) -> WebhookDelivery:
        """The user takes the app's access back (tokens and subscriptions go, X tells the app)."""
        body = {"userId": user_id, "api": api}
        return _delivery(await self._call("POST", "/simulate/revoke", json=body))

    async def set_daily_limit(
        self,
        endpoint: str,
        scope: Literal["user", "app"],
        limit: int | None,
        user_id: str | None = None,
    ) -> None:
        """X's 24-hour cap of an endpoint, per user (or one user) or for the app (None: off;
        clear_faults turns them all off)."""
        body = {"endpoint": endpoint, "scope": scope, "limit": limit, "userId": user_id}
        await self._call("PUT", "/daily-limits", json=body)

    async def activity_subscriptions(self) -> list[dict[str, Any]]:
        """The app's X Activity API subscriptions, as X lists them."""
        data: list[dict[str, Any]] = await self._call("GET", "/activity-subscriptions")
        return data

    async def reset(self) -> None:
        await self._call("POST", "/reset")


def _media(data: dict[str, Any] | None) -> ReceivedMedia | None:
    if not data:
        return None
    return ReceivedMedia(
        media_id=data["mediaId"],
        media_key=data["mediaKey"],
        media_type=data["mediaType"],
        category=data["category"],
        size=data["size"],
        sha256=data["sha256"],
    )


def _delivery(data: dict[str, Any]) -> WebhookDelivery:
    return WebhookDelivery(
        event_id=data["eventId"],
        webhook_url=data["webhookUrl"],
        webhook_status=data["webhookStatus"],
        error=data["error"],
        subscribed=data["subscribed"],
        api=data.get("api", "account_activity"),
    )
