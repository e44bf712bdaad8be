"""The X API client. Every call goes through tweepy, sent to a configurable base URL.

Synchronous, like tweepy: async callers wrap calls in `asyncio.to_thread`. Errors come out as one
hierarchy (`XError`) whose messages carry X's reason and never a token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import requests
import tweepy

from mktx.settings import Settings

logger = logging.getLogger(__name__)

# tweepy builds every URL on one of these hosts; both are X's production API.
_TWEEPY_HOSTS = ("https://api.twitter.com", "https://api.x.com")
DM_EVENT_FIELDS = ("id", "text", "event_type", "created_at", "sender_id", "dm_conversation_id")
DEFAULT_RETRY_AFTER_SECONDS = 60.0
# Media goes to X in segments of this size (X takes up to 5 MB per APPEND).
MEDIA_SEGMENT_BYTES = 4 * 1024 * 1024
# How long to wait for X to process an uploaded GIF or video before giving up (retryable).
MEDIA_PROCESSING_TIMEOUT_SECONDS = 300.0
MEDIA_DEFAULT_TTL_SECONDS = 24 * 60 * 60


# X's hosts for the media of DMs: ton.twitter.com serves a DM's photos only to requests signed
# for one of its participants; GIFs and videos play from video.twimg.com, previews from pbs.
DM_MEDIA_HOSTS = ("https://ton.twitter.com", "https://video.twimg.com", "https://pbs.twimg.com")
MEDIA_CHUNK_BYTES = 64 * 1024

# The X Activity API events a connected account is subscribed to (oauth.revoke needs no
# subscription: X delivers it to the app).
ACTIVITY_EVENT_TYPES = (
    "dm.received",
    "dm.sent",
    "dm.read",
    "dm.indicate_typing",
    "follow.follow",
    "follow.unfollow",
)
ACTIVITY_TAG = "mkt-x"
ACTIVITY_PAGE_SIZE = 1000


class EventsApi(StrEnum):
    """How X delivers an account's events to the webhook."""

    account_activity = "account_activity"  # one /all subscription per account (deprecated)
    activity = "activity"  # the X Activity API: one subscription per event type and account


# Values ------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class XCredentials:
    """An account's OAuth 1.0a user token pair."""

    access_token: str
    access_token_secret: str

    def __repr__(self) -> str:
        return "XCredentials(access_token=***, access_token_secret=***)"


@dataclass(frozen=True)
class XUser:
    id: str
    username: str
    name: str
    profile_image_url: str | None = None


@dataclass(frozen=True)
class SentDM:
    dm_conversation_id: str
    dm_event_id: str


@dataclass(frozen=True)
class UploadedMedia:
    """Media X holds for the account that uploaded it: attach `media_id` to its DMs until
    `expires_at`."""

    media_id: str
    media_key: str | None
    size: int
    expires_at: datetime


@dataclass(frozen=True)
class DMEvent:
    id: str
    event_type: str
    text: str | None
    sender_id: str | None
    dm_conversation_id: str | None
    created_at: datetime | None


@dataclass
class DMMedia:
    """A DM's media as X streams it: read `chunks`, then `close()`."""

    content_type: str | None
    length: int | None
    chunks: Iterator[bytes]
    close: Callable[[], None]


@dataclass(frozen=True)
class DMEventPage:
    events: list[DMEvent] = field(default_factory=list)
    next_token: str | None = None


# Errors ------------------------------------------------------------------------------------


class XError(Exception):
    """X refused or failed a call. `reason` is X's own text (detail/title), never a credential."""

    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        if self.status is None:
            return f"X unavailable: {self.reason}"
        return f"X answered {self.status}: {self.reason}"


class XUnauthorized(XError):
    """401: X does not accept the credentials (see the two cases below)."""


class XInvalidCredentials(XUnauthorized):
    """401 while checking credentials (get_me, or the app's own key/secret): they are wrong."""


class XTokenRevoked(XUnauthorized):
    """401 on a user-context call with a token that used to work: revoked or expired."""


class XForbidden(XError):
    """403, e.g. the recipient does not accept DMs; `reason` says why."""


class RateLimitScope(StrEnum):
    """Which of X's limits a 429 spent (X states each in its own headers)."""

    window = "window"  # the endpoint's 15-minute window: x-rate-limit-*
    user_day = "user_24h"  # the user's 24-hour cap: x-user-limit-24hour-*
    app_day = "app_24h"  # the app's 24-hour cap, shared by every user: x-app-limit-24hour-*


class XRateLimited(XError):
    """429. Try again at `reset_at` (`retry_after` seconds from when it was raised, at least 1);
    `scope` says which limit is spent."""

    def __init__(
        self,
        status: int,
        reason: str,
        reset_at: datetime,
        retry_after: float,
        scope: RateLimitScope = RateLimitScope.window,
    ) -> None:
        super().__init__(status, reason)
        self.args = (status, reason, reset_at, retry_after, scope)
        self.reset_at = reset_at
        self.retry_after = retry_after
        self.scope = scope


class XUnavailable(XError):
    """5xx, connection refused, timeout, or an answer that cannot be read: worth retrying."""


class XRequestRejected(XError):
    """Any other 4xx (text too long, unknown recipient, ...): retrying the same call won't help."""


class NotDMMedia(ValueError):
    """The URL is not on X's hosts for DM media: the account's credentials never go there."""


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        errors = body.get("errors")
        messages = [
            e.get("message") or e.get("detail")
            for e in (errors if isinstance(errors, list) else [])
            if isinstance(e, dict)
        ]
        texts = [m for m in messages if isinstance(m, str) and m]
        if texts:
            return "; ".join(texts)
        for key in ("detail", "title", "error"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    return response.reason or f"HTTP {response.status_code}"


# Each limit's headers: how many calls it has left and when it resets (epoch seconds).
_LIMIT_HEADERS = (
    (RateLimitScope.app_day, "x-app-limit-24hour-remaining", "x-app-limit-24hour-reset"),
    (RateLimitScope.user_day, "x-user-limit-24hour-remaining", "x-user-limit-24hour-reset"),
    (RateLimitScope.window, "x-rate-limit-remaining", "x-rate-limit-reset"),
)


def _header_number(response: requests.Response, name: str) -> float | None:
    try:
        return float(response.headers[name])
    except (KeyError, ValueError):
        return None


def _rate_limited(response: requests.Response, reason: str) -> XRateLimited:
    """When X takes calls again: the latest reset among the limits its headers say are spent
    (a spent 24-hour cap outlasts the 15-minute window), else the window's reset, else
    Retry-After."""
    now = time.time()
    spent = []
    for scope, remaining_header, reset_header in _LIMIT_HEADERS:
        remaining = _header_number(response, remaining_header)
        reset_at = _header_number(response, reset_header)
        if remaining is not None and remaining <= 0 and reset_at is not None:
            spent.append((reset_at, scope))
    scope = RateLimitScope.window
    reset: float | None = None
    if spent:
        reset, scope = max(spent)
    else:
        reset = _header_number(response, "x-rate-limit-reset")
        if reset is None and (after := _header_number(response, "retry-after")) is not None:
            reset = now + after
    if reset is None:
        reset = now + DEFAULT_RETRY_AFTER_SECONDS
    reset = max(reset, now + 1.0)
    return XRateLimited(429, reason, datetime.fromtimestamp(reset, UTC), reset - now, scope)


def _error_for(response: requests.Response, unauthorized: type[XError]) -> XError:
    status, reason = response.status_code, _reason(response)
    if status == 401:
        return unauthorized(status, reason)
    if status == 403:
        return XForbidden(status, reason)
    if status == 429:
        return _rate_limited(response, reason)
    if status >= 500:
        return XUnavailable(status, reason)
    return XRequestRejected(status, reason)


@contextmanager
def _x_errors(unauthorized: type[XError] = XTokenRevoked) -> Iterator[None]:
    """Translate tweepy/requests failures. `from None`: a traceback shows X's answer, not tweepy's
    exception, whose request carries the OAuth header."""
    try:
        yield
    except tweepy.HTTPException as exc:
        error = _error_for(exc.response, unauthorized)
        logger.debug("x.call_failed", extra={"status": error.status, "reason": error.reason})
        raise error from None
    except requests.RequestException as exc:
        raise XUnavailable(None, type(exc).__name__) from None


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise XUnavailable(response.status_code, "X answered with something that is not JSON")
    return body


def _data(response: requests.Response) -> dict[str, Any]:
    data = _json(response).get("data")
    if not isinstance(data, dict):
        raise XUnavailable(response.status_code, "X's answer has no data")
    return data


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _segment(value: str) -> str:
    return quote(value, safe="")


# Transport ---------------------------------------------------------------------------------


class _RebasedSession(requests.Session):
    """A requests session that sends tweepy's hard-coded host to `base_url`.

    The rewrite happens in `request()`, before the request is prepared and OAuth 1.0a signs it,
    so the signature covers the URL actually sent.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__()
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout

    def rebase(self, url: str) -> str:
        for host in _TWEEPY_HOSTS:
            if url == host or url.startswith(host + "/"):
                return self._base_url + url[len(host) :]
        return url

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)  # tweepy sets none: a stuck socket would hang
        if isinstance(url, bytes):
            url = url.decode()
        if isinstance(method, bytes):
            method = method.decode()
        return super().request(method, self.rebase(url), *args, **kwargs)


# Client ------------------------------------------------------------------------------------


class XClient:
    def __init__(
        self,
        base_url: str,
        consumer_key: str,
        consumer_secret: str,
        timeout: float = 10.0,
        bearer_token: str | None = None,
        events_api: EventsApi = EventsApi.account_activity,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.events_api = events_api
        self._consumer_key = consumer_key
        self._consumer_secret = consumer_secret
        self._configured_bearer = bearer_token
        self._obtained_bearer: str | None = None
        self._bearer_lock = threading.Lock()
        self._session = _RebasedSession(self.base_url, timeout)

    def __repr__(self) -> str:
        return f"XClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    def _tweepy(
        self, creds: XCredentials | None = None, bearer_token: str | None = None
    ) -> tweepy.Client:
        # A tweepy.Client per call: it holds one token pair, and the shared session pools connections.
        client = tweepy.Client(
            bearer_token=bearer_token,
            consumer_key=self._consumer_key,
            consumer_secret=self._consumer_secret,
            access_token=creds.access_token if creds else None,
            access_token_secret=creds.access_token_secret if creds else None,
            return_type=requests.Response,
            wait_on_rate_limit=False,
        )
        client.session = self._session
        return client

    # Users ---------------------------------------------------------------------------------

    def get_me(self, creds: XCredentials) -> XUser:
        with _x_errors(XInvalidCredentials):
            response = self._tweepy(creds).get_me(user_fields=["profile_image_url"], user_auth=True)
        data = _data(response)
        return XUser(
            id=str(data["id"]),
            username=str(data["username"]),
            name=str(data.get("name") or data["username"]),
            profile_image_url=data.get("profile_image_url"),
        )

    # Direct messages -----------------------------------------------------------------------

    def send_dm(
        self,
        creds: XCredentials,
        participant_id: str,
        text: str,
        media_id: str | None = None,
    ) -> SentDM:
        """One DM; `media_id` (from `upload_media`, by the same account) attaches that media.
        With media the text may be empty."""
        with _x_errors():
            response = self._tweepy(creds).create_direct_message(
                participant_id=_segment(participant_id),
                text=text if text or media_id is None else None,
                media_id=media_id,
                user_auth=True,
            )
        data = _data(response)
        return SentDM(str(data["dm_conversation_id"]), str(data["dm_event_id"]))

    # Media ---------------------------------------------------------------------------------

    def upload_media(
        self,
        creds: XCredentials,
        data: bytes,
        media_type: str,
        category: str,
        *,
        shared: bool = True,
    ) -> UploadedMedia:
        """Upload media for the account's DMs through X API v2's chunked upload (initialize,
        append, finalize, then status until X has processed a GIF or video).

        `category` is X's media_category (`dm_image`, `dm_gif`, `dm_video`). `shared`: the id
        can be attached to many DMs of this account (a campaign's card), not only one. X checks
        the type and size; a refusal raises XRequestRejected.
        """
        client = self._tweepy(creds)
        with _x_errors():
            started = client.request(
                "POST",
                "/2/media/upload/initialize",
                json={
                    "media_type": media_type,
                    "total_bytes": len(data),
                    "media_category": category,
                    "shared": shared,
                },
                user_auth=True,
            )
        media_id = str(_data(started)["id"])
        route = f"/2/media/upload/{_segment(media_id)}"
        for index, start in enumerate(range(0, len(data), MEDIA_SEGMENT_BYTES)):
            self._append_segment(creds, route, index, data[start : start + MEDIA_SEGMENT_BYTES])
        with _x_errors():
            finished = client.request("POST", route + "/finalize", user_auth=True)
        media = _data(finished)
        deadline = time.monotonic() + MEDIA_PROCESSING_TIMEOUT_SECONDS
        while (info := media.get("processing_info")) and info.get("state") in (
            "pending",
            "in_progress",
        ):
            wait = max(1.0, float(info.get("check_after_secs") or 1))
            if time.monotonic() + wait > deadline:
                raise XUnavailable(None, "X is still processing the media")
            time.sleep(wait)
            with _x_errors():
                checked = client.request(
                    "GET",
                    "/2/media/upload",
                    params={"command": "STATUS", "media_id": media_id},
                    user_auth=True,
                )
            media = _data(checked)
        if info and info.get("state") == "failed":
            error = info.get("error") if isinstance(info.get("error"), dict) else {}
            reason = error.get("message") or error.get("name") or "X could not process the media"
            raise XRequestRejected(400, str(reason))
        ttl = media.get("expires_after_secs")
        ttl = ttl if isinstance(ttl, int | float) and ttl > 0 else MEDIA_DEFAULT_TTL_SECONDS
        logger.info("x.media_uploaded", extra={"media_id": media_id, "bytes": len(data)})
        return UploadedMedia(
            media_id=media_id,
            media_key=media.get("media_key"),
            size=int(media.get("size") or len(data)),
            expires_at=datetime.now(UTC) + timedelta(seconds=float(ttl)),
        )

    def _append_segment(self, creds: XCredentials, route: str, index: int, chunk: bytes) -> None:
        # tweepy's v2 client sends JSON only, so this multipart call is made here, on the same
        # rebased session, signed by tweepy's OAuth 1.0a handler (a multipart body is not part
        # of the signature, as RFC 5849 says).
        auth = tweepy.OAuth1UserHandler(
            self._consumer_key,
            self._consumer_secret,
            creds.access_token,
            creds.access_token_secret,
        ).apply_auth()
        try:
            response = self._session.post(
                _TWEEPY_HOSTS[0] + route + "/append",
                data={"segment_index": str(index)},
                files={"media": ("media", chunk, "application/octet-stream")},
                auth=auth,
            )
        except requests.RequestException as exc:
            raise XUnavailable(None, type(exc).__name__) from None
        if not response.ok:
            error = _error_for(response, XTokenRevoked)
            logger.debug("x.call_failed", extra={"status": error.status, "reason": error.reason})
            raise error

    def list_dm_events(
        self,
        creds: XCredentials,
        participant_id: str | None = None,
        max_results: int = 100,
        pagination_token: str | None = None,
    ) -> DMEventPage:
        with _x_errors():
            response = self._tweepy(creds).get_direct_message_events(
                participant_id=_segment(participant_id) if participant_id else None,
                dm_event_fields=list(DM_EVENT_FIELDS),
                max_results=max_results,
                pagination_token=pagination_token,
                user_auth=True,
            )
        body = _json(response)
        events = [
            DMEvent(
                id=str(e["id"]),
                event_type=str(e.get("event_type", "MessageCreate")),
                text=e.get("text"),
                sender_id=e.get("sender_id"),
                dm_conversation_id=e.get("dm_conversation_id"),
                created_at=_timestamp(e.get("created_at")),
            )
            for e in body.get("data") or []
        ]
        meta = body.get("meta") or {}
        return DMEventPage(events=events, next_token=meta.get("next_token"))

    # Subscriptions: Account Activity or the X Activity API --------------------------------

    def subscribe_events(self, creds: XCredentials, webhook_id: str) -> None:
        """Have X deliver the account's events to the webhook, by the configured events API.
        Idempotent: what is subscribed already is left as it is."""
        if self.events_api is EventsApi.activity:
            self._subscribe_activity(creds, webhook_id)
            return
        with _x_errors():
            self._tweepy(creds).request(
                "POST", self._subscription_route(webhook_id), user_auth=True
            )

    def events_subscribed(self, creds: XCredentials, webhook_id: str) -> bool:
        if self.events_api is EventsApi.activity:
            user_id = self.get_me(creds).id
            have = {s["event_type"] for s in self._activity_subscriptions(creds, user_id)}
            return have >= set(ACTIVITY_EVENT_TYPES)
        with _x_errors():
            response = self._tweepy(creds).request(
                "GET", self._subscription_route(webhook_id), user_auth=True
            )
        return bool(_data(response).get("subscribed"))

    def unsubscribe_events(self, user_id: str, webhook_id: str) -> None:
        """Stop X delivering the user's events (app-only: the user's token may be gone).
        Idempotent."""
        if self.events_api is EventsApi.activity:
            self._unsubscribe_activity(user_id)
            return
        route = (
            f"/2/account_activity/webhooks/{_segment(webhook_id)}"
            f"/subscriptions/{_segment(user_id)}/all"
        )
        self._app_request("DELETE", route)

    # The names the account activities call (activities/accounts.py).
    def subscribe_account_activity(self, creds: XCredentials, webhook_id: str) -> None:
        self.subscribe_events(creds, webhook_id)

    def is_subscribed(self, creds: XCredentials, webhook_id: str) -> bool:
        return self.events_subscribed(creds, webhook_id)

    def unsubscribe_account_activity(self, user_id: str, webhook_id: str) -> None:
        self.unsubscribe_events(user_id, webhook_id)

    def _subscription_route(self, webhook_id: str) -> str:
        return f"/2/account_activity/webhooks/{_segment(webhook_id)}/subscriptions/all"

    def _subscribe_activity(self, creds: XCredentials, webhook_id: str) -> None:
        """One X Activity API subscription per event type, filtered on the account's user and
        delivered to the webhook; the ones it has already are kept."""
        user_id = self.get_me(creds).id
        have = {
            s.get("event_type")
            for s in self._activity_subscriptions(creds, user_id)
            if s.get("webhook_id") in (None, webhook_id)
        }
        client = self._tweepy(creds)
        for event_type in ACTIVITY_EVENT_TYPES:
            if event_type in have:
                continue
            body = {
                "event_type": event_type,
                "filter": {"user_id": user_id},
                "tag": ACTIVITY_TAG,
                "webhook_id": webhook_id,
            }
            try:
                with _x_errors():
                    client.request("POST", "/2/activity/subscriptions", json=body, user_auth=True)
            except XRequestRejected as exc:
                if exc.status != 409:  # 409: X has it already (a concurrent attempt)
                    raise
        logger.info("x.activity_subscribed", extra={"user_id": user_id})

    def _activity_subscriptions(
        self, creds: XCredentials | None, user_id: str
    ) -> list[dict[str, Any]]:
        """The app's X Activity API subscriptions filtered on this user (user context when
        `creds`, else app-only), every page."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"max_results": ACTIVITY_PAGE_SIZE}
            if token:
                params["pagination_token"] = token
            if creds is not None:
                with _x_errors():
                    response = self._tweepy(creds).request(
                        "GET", "/2/activity/subscriptions", params=params, user_auth=True
                    )
            else:
                response = self._app_request("GET", "/2/activity/subscriptions", params=params)
            body = _json(response)
            for item in body.get("data") or []:
                if isinstance(item, dict) and (item.get("filter") or {}).get("user_id") == user_id:
                    found.append(item)
            token = (body.get("meta") or {}).get("next_token")
            if not token:
                return found

    def _unsubscribe_activity(self, user_id: str) -> None:
        ids = [str(s["subscription_id"]) for s in self._activity_subscriptions(None, user_id)]
        for start in range(0, len(ids), 100):  # X deletes up to 100 per call
            batch = ",".join(ids[start : start + 100])
            self._app_request("DELETE", "/2/activity/subscriptions", params={"ids": batch})
        logger.info("x.activity_unsubscribed", extra={"user_id": user_id, "count": len(ids)})

    # Media of DMs --------------------------------------------------------------------------

    def open_dm_media(self, creds: XCredentials, url: str) -> DMMedia:
        """Stream the media of a DM the account took part in, from X's media hosts, signed
        with the account's OAuth 1.0a credentials as X requires. Raises NotDMMedia for a URL
        that is not on X's media hosts (nothing is sent), XError as X answers."""
        if not url.startswith(tuple(h + "/" for h in DM_MEDIA_HOSTS)):
            raise NotDMMedia(url)
        auth = tweepy.OAuth1UserHandler(
            self._consumer_key,
            self._consumer_secret,
            creds.access_token,
            creds.access_token_secret,
        ).apply_auth()
        try:
            response = self._session.get(self._media_url(url), auth=auth, stream=True)
        except requests.RequestException as exc:
            raise XUnavailable(None, type(exc).__name__) from None
        if not response.ok:
            error = _error_for(response, XTokenRevoked)
            response.close()
            raise error
        length = response.headers.get("content-length")
        return DMMedia(
            content_type=response.headers.get("content-type"),
            length=int(length) if length and length.isdigit() else None,
            chunks=response.iter_content(MEDIA_CHUNK_BYTES),
            close=response.close,
        )

    def _media_url(self, url: str) -> str:
        """X's media hosts are X's own in production; anywhere else (the sandbox) they are
        served on the configured base URL, under the same paths."""
        if self.base_url in _TWEEPY_HOSTS:
            return url
        for host in DM_MEDIA_HOSTS:
            if url.startswith(host + "/"):
                return self.base_url + url[len(host) :]
        return url

    # Tokens --------------------------------------------------------------------------------

    def invalidate_token(self, creds: XCredentials) -> None:
        try:
            with _x_errors():
                self._tweepy(creds).request("POST", "/1.1/oauth/invalidate_token", user_auth=True)
        except XUnauthorized:
            pass  # already invalid: the outcome the caller wanted

    def _app_request(
        self, method: str, route: str, params: dict[str, Any] | None = None
    ) -> requests.Response:
        """An app-only (bearer) call."""
        try:
            return self._bearer_call(method, route, self._app_token(), params)
        except XUnauthorized:
            if self._configured_bearer is not None:
                raise
        # X no longer knows the token we obtained (invalidated, or X restarted): renew it once.
        return self._bearer_call(method, route, self._app_token(renew=True), params)

    def _bearer_call(
        self, method: str, route: str, token: str, params: dict[str, Any] | None = None
    ) -> requests.Response:
        with _x_errors(XInvalidCredentials):
            response: requests.Response = self._tweepy(bearer_token=token).request(
                method, route, params=params, user_auth=False
            )
        return response

    def _app_token(self, renew: bool = False) -> str:
        if self._configured_bearer is not None:
            return self._configured_bearer
        with self._bearer_lock:
            if self._obtained_bearer is None or renew:
                self._obtained_bearer = self._fetch_app_token()
            return self._obtained_bearer

    def _fetch_app_token(self) -> str:
        # tweepy's OAuth2AppHandler posts to a hard-coded host outside any session, so this one
        # call is made here, on the same rebased session. X wants key and secret URL-encoded.
        try:
            response = self._session.post(
                self.base_url + "/oauth2/token",
                auth=(_segment(self._consumer_key), _segment(self._consumer_secret)),
                data={"grant_type": "client_credentials"},
            )
        except requests.RequestException as exc:
            raise XUnavailable(None, type(exc).__name__) from None
        if response.status_code in (401, 403):
            raise XInvalidCredentials(response.status_code, _reason(response))
        if not response.ok:
            raise _error_for(response, XInvalidCredentials)
        token = _json(response).get("access_token")
        if not isinstance(token, str) or not token:
            raise XUnavailable(response.status_code, "X's token answer has no access_token")
        logger.info("x.app_token_obtained")
        return token


def x_client_from_settings(settings: Settings) -> XClient:
    bearer = settings.x_bearer_token
    return XClient(
        base_url=settings.x_api_base_url,
        consumer_key=settings.x_consumer_key.get_secret_value(),
        consumer_secret=settings.x_consumer_secret.get_secret_value(),
        timeout=settings.x_timeout_seconds,
        bearer_token=bearer.get_secret_value() if bearer is not None else None,
        events_api=EventsApi(settings.x_events_api),
    )
