"""In-memory state of the X sandbox: users, tokens, webhooks, DMs, faults and rate-limit windows.

Every mutation goes through `SandboxState` under one lock: the app serves requests from an event
loop while tests and the admin API poke at it, and uvicorn may run handlers in a thread pool.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from sandbox.media import MediaStore, SentMedia
from sandbox.subscriptions import ActivitySubscriptions

# Demo accounts seeded when `seed_demo` is on; `mkt-x dev` prints these so a developer can connect
# the shop account and play the customer without creating anything first.
DEMO_BUSINESS_ID = "1000000001"
DEMO_BUSINESS_USERNAME = "goodgo_shop"
DEMO_BUSINESS_NAME = "GoodGo Shop"
DEMO_BUSINESS_TOKEN = "demo-goodgo-token"
DEMO_BUSINESS_TOKEN_SECRET = "demo-goodgo-secret"
DEMO_CUSTOMER_ID = "2000000001"
DEMO_CUSTOMER_USERNAME = "customer_john"
DEMO_CUSTOMER_NAME = "John Doe"
DEMO_CUSTOMER_TOKEN = "demo-john-token"
DEMO_CUSTOMER_TOKEN_SECRET = "demo-john-secret"

FIFTEEN_MINUTES = 15 * 60
X_EPOCH_MS = 1288834974657
REQUEST_LOG_SIZE = 5000
LLM_REQUEST_LOG_SIZE = 1000

# Endpoint keys used for rate limits (and shown in the request log).
EP_USERS_ME = "users_me"
EP_DM_SEND = "dm_send"
EP_DM_EVENTS = "dm_events"
EP_INVALIDATE_TOKEN = "invalidate_token"
EP_OAUTH2_TOKEN = "oauth2_token"
EP_SUBSCRIPTIONS = "subscriptions"
EP_WEBHOOKS = "webhooks"
EP_MEDIA_UPLOAD = "media_upload"
EP_ACTIVITY = "activity_subscriptions"
EP_DM_MEDIA = "dm_media"
ENDPOINT_KEYS = frozenset(
    {
        EP_ACTIVITY,
        EP_DM_MEDIA,
        EP_MEDIA_UPLOAD,
        EP_USERS_ME,
        EP_DM_SEND,
        EP_DM_EVENTS,
        EP_INVALIDATE_TOKEN,
        EP_OAUTH2_TOKEN,
        EP_SUBSCRIPTIONS,
        EP_WEBHOOKS,
    }
)

# Per-user 15-minute limits for the endpoints we emulate (X's published ones for users/me; the
# DM send keeps the 200 X stated until 2024: X now states 15/15 min, which the benchmarks and
# the tests of campaigns would spend in a blink — set it with PUT /_sandbox/rate-limits).
DEFAULT_LIMITS: dict[str, int] = {EP_DM_SEND: 200, EP_USERS_ME: 75}
DEFAULT_LIMIT = 300
APP_IDENTITY = "app"  # rate-limit identity of app-only (bearer) calls
DAY = 24 * 60 * 60
# X's 24-hour caps of the DM send (docs.x.com/x-api/fundamentals/rate-limits: 1,440/24 h per
# user and per app), applied when a test turns them on (PUT /_sandbox/daily-limits): off by
# default, for the same reason as the 15-minute one.
X_DAILY_DM_LIMIT = 1440
USER_SCOPE = "user"
APP_SCOPE = "app"


@dataclass
class User:
    id: str
    username: str
    name: str
    profile_image_url: str | None
    accepts_dms: bool = True
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class AccessToken:
    token: str
    secret: str = field(repr=False)
    user_id: str
    revoked: bool = False


@dataclass(frozen=True)
class DMEvent:
    id: str
    dm_conversation_id: str
    sender_id: str
    recipient_id: str
    text: str
    created_at: datetime
    source: str  # "api": sent through POST .../messages; "simulated": injected by the admin API
    attachments: tuple[dict[str, object], ...] = ()  # as Account Activity payloads carry them
    media: SentMedia | None = None
    # The t.co link X writes into the text (and entities.urls) of a DM with media.
    media_link: dict[str, object] | None = None
    quick_reply_response: dict[str, object] | None = None

    @property
    def x_text(self) -> str:
        """The text as X shows it: with its media's t.co link."""
        if self.media_link is None:
            return self.text
        return f"{self.text} {self.media_link['url']}"


@dataclass(frozen=True)
class RequestRecord:
    at: datetime
    method: str
    path: str
    status: int
    user_id: str | None
    endpoint: str | None
    fault: str | None


@dataclass(frozen=True)
class FaultConfig:
    error_rate: float = 0.0
    error_status: int = 503
    latency_ms: int = 0
    burst_429: int = 0
    path_prefix: str | None = None
    user_id: str | None = None
    retry_after_seconds: int = 60


@dataclass(frozen=True)
class LLMRequest:
    """A chat completion the LLM endpoint answered, as it was asked (content parts as text)."""

    at: datetime
    model: str | None
    messages: tuple[dict[str, str], ...]  # {"role", "content"}
    response_format: object
    temperature: object
    max_tokens: object


@dataclass(frozen=True)
class LLMScripted:
    """What a scripted completion answers: content that is not JSON, or exactly `reply`."""

    invalid: bool
    reply: dict[str, object] | None = None


@dataclass(frozen=True)
class RateLimitRule:
    limit: int
    window_seconds: int


@dataclass(frozen=True)
class RateLimitStatus:
    limit: int
    remaining: int
    reset: int  # epoch seconds
    exceeded: bool


@dataclass
class _Window:
    started: float
    count: int = 0


@dataclass(frozen=True)
class DailyStatus:
    """One 24-hour cap after a request: `scope` is `user` or `app` (the header names)."""

    scope: str
    status: RateLimitStatus


class UnknownUser(LookupError):
    pass


class DuplicateUsername(ValueError):
    pass


def conversation_id(a: str, b: str) -> str:
    """X names a one-to-one conversation by its two user ids, smaller first."""
    low, high = sorted((a, b), key=int)
    return f"{low}-{high}"


class SandboxState:
    def __init__(
        self,
        consumer_key: str,
        consumer_secret: str,
        webhook_id: str,
        webhook_url: str,
        seed_demo: bool = True,
    ) -> None:
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.default_webhook_id = webhook_id
        self.default_webhook_url = webhook_url
        self.seed_demo = seed_demo
        self._lock = threading.RLock()
        # Snowflake-like ids (ms since X's epoch << 22): numeric strings that grow with time and
        # fit a signed 64-bit column, as real X ids do.
        self._ids = itertools.count((int(time.time() * 1000) - X_EPOCH_MS) << 22)
        self._user_ids = itertools.count(3000000001)
        self.reset()

    # Lifecycle -----------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.users: dict[str, User] = {}
            self.tokens: dict[str, AccessToken] = {}
            self.bearer_tokens: set[str] = set()
            self.webhooks: dict[str, str] = {self.default_webhook_id: self.default_webhook_url}
            self.subscriptions: dict[str, set[str]] = {self.default_webhook_id: set()}
            self.dm_events: list[DMEvent] = []
            self.requests: deque[RequestRecord] = deque(maxlen=REQUEST_LOG_SIZE)
            self.faults = FaultConfig()
            self.rate_rules: dict[tuple[str, str | None], RateLimitRule] = {}
            self._windows: dict[tuple[str, str], _Window] = {}
            self._nonces: dict[tuple[str, str], float] = {}
            self._username_index: set[str] = set()
            self.media = MediaStore(self.next_id)
            self.activity = ActivitySubscriptions(self.next_id)
            # (endpoint, scope, user id or None for every user) -> limit
            self.daily_limits: dict[tuple[str, str, str | None], int] = {}
            self._daily_windows: dict[tuple[str, str], _Window] = {}
            # Media of simulated inbound DMs, by path on X's media hosts: (type, bytes, users).
            self.dm_media_files: dict[str, tuple[str, bytes, frozenset[str]]] = {}
            # Sample media (`/_sandbox/media/{name}`) answering with another status for now.
            self.sample_media_status: dict[str, int] = {}
            # The LLM endpoint's script (see `set_llm_script`) and the completions it was asked.
            self._llm_invalid = 0
            self._llm_replies: deque[dict[str, object]] = deque()
            self.llm_requests: deque[LLMRequest] = deque(maxlen=LLM_REQUEST_LOG_SIZE)
            if self.seed_demo:
                self._seed()

    def _seed(self) -> None:
        for user_id, username, name, token, secret in (
            (
                DEMO_BUSINESS_ID,
                DEMO_BUSINESS_USERNAME,
                DEMO_BUSINESS_NAME,
                DEMO_BUSINESS_TOKEN,
                DEMO_BUSINESS_TOKEN_SECRET,
            ),
            (
                DEMO_CUSTOMER_ID,
                DEMO_CUSTOMER_USERNAME,
                DEMO_CUSTOMER_NAME,
                DEMO_CUSTOMER_TOKEN,
                DEMO_CUSTOMER_TOKEN_SECRET,
            ),
        ):
            self.users[user_id] = User(user_id, username, name, _avatar(username))
            self.tokens[token] = AccessToken(token, secret, user_id)

    # Users and tokens ----------------------------------------------------------------------

    def _usernames(self) -> set[str]:
        """Lower-cased usernames in use (users may also be put into `users` directly)."""
        if len(self._username_index) != len(self.users):
            self._username_index = {u.username.lower() for u in self.users.values()}
        return self._username_index

    def create_user(
        self,
        username: str,
        name: str | None = None,
        accepts_dms: bool = True,
        profile_image_url: str | None = None,
    ) -> tuple[User, AccessToken]:
        with self._lock:
            if username.lower() in self._usernames():
                raise DuplicateUsername(username)
            user_id = str(next(self._user_ids))
            while user_id in self.users:
                user_id = str(next(self._user_ids))
            image = profile_image_url or _avatar(username)
            user = User(user_id, username, name or username, image, accepts_dms)
            self.users[user_id] = user
            self._username_index.add(username.lower())
            return user, self._issue_token(user_id)

    def update_user(self, user_id: str, accepts_dms: bool | None) -> User:
        with self._lock:
            user = self.get_user(user_id)
            if accepts_dms is not None:
                user.accepts_dms = accepts_dms
            return user

    def list_users(self) -> list[User]:
        with self._lock:
            return list(self.users.values())

    def get_user(self, user_id: str) -> User:
        with self._lock:
            try:
                return self.users[user_id]
            except KeyError:
                raise UnknownUser(user_id) from None

    def new_token(self, user_id: str) -> AccessToken:
        with self._lock:
            self.get_user(user_id)
            return self._issue_token(user_id)

    def _issue_token(self, user_id: str) -> AccessToken:
        token = AccessToken(
            f"{user_id}-{secrets.token_urlsafe(24)}", secrets.token_urlsafe(32), user_id
        )
        self.tokens[token.token] = token
        return token

    def find_token(self, token: str) -> AccessToken | None:
        with self._lock:
            return self.tokens.get(token)

    def revoke_token(self, token: str) -> bool:
        with self._lock:
            found = self.tokens.get(token)
            if found is None:
                return False
            found.revoked = True
            return True

    def revoke_user(self, user_id: str) -> None:
        """The user took the app's access back: every token of theirs stops working and their
        subscriptions go (Account Activity: "subscription auto-deleted")."""
        with self._lock:
            for token in self.tokens.values():
                if token.user_id == user_id:
                    token.revoked = True
            for users in self.subscriptions.values():
                users.discard(user_id)
        for subscription in self.activity.of_user(user_id):
            self.activity.delete(subscription.id)

    def issue_bearer_token(self) -> str:
        with self._lock:
            # X hands out the same app token until it is invalidated.
            if not self.bearer_tokens:
                self.bearer_tokens.add("AAAA" + secrets.token_urlsafe(48))
            return next(iter(self.bearer_tokens))

    def invalidate_bearer_tokens(self) -> None:
        with self._lock:
            self.bearer_tokens.clear()

    def bearer_valid(self, token: str) -> bool:
        with self._lock:
            return token in self.bearer_tokens

    def remember_nonce(self, key: str, nonce: str, now: float, ttl: float) -> bool:
        """Record a nonce; False when it was seen within `ttl` (a replayed request)."""
        with self._lock:
            # Insertion order is time order: forget expired nonces from the oldest end, O(1)
            # amortised per request however many are live.
            while self._nonces:
                oldest = next(iter(self._nonces))
                if now - self._nonces[oldest] < ttl:
                    break
                del self._nonces[oldest]
            seen = self._nonces.get((key, nonce))
            if seen is not None and now - seen < ttl:
                return False
            self._nonces.pop((key, nonce), None)  # re-insert at the young end
            self._nonces[(key, nonce)] = now
            return True

    # DMs -----------------------------------------------------------------------------------

    def next_id(self) -> str:
        with self._lock:
            return str(next(self._ids))

    def record_dm(
        self,
        sender_id: str,
        recipient_id: str,
        text: str,
        source: str,
        attachments: tuple[dict[str, object], ...] = (),
        media: SentMedia | None = None,
        *,
        event_id: str | None = None,
        media_link: dict[str, object] | None = None,
        quick_reply_response: dict[str, object] | None = None,
    ) -> DMEvent:
        with self._lock:
            event = DMEvent(
                id=event_id or self.next_id(),
                dm_conversation_id=conversation_id(sender_id, recipient_id),
                sender_id=sender_id,
                recipient_id=recipient_id,
                text=text,
                created_at=datetime.now(UTC),
                source=source,
                attachments=attachments,
                media=media,
                media_link=media_link,
                quick_reply_response=quick_reply_response,
            )
            self.dm_events.append(event)
            return event

    def keep_dm_media(
        self, path: str, content_type: str, data: bytes, participants: frozenset[str]
    ) -> None:
        with self._lock:
            self.dm_media_files[path] = (content_type, data, participants)

    def dm_media_file(self, path: str) -> tuple[str, bytes, frozenset[str]] | None:
        with self._lock:
            return self.dm_media_files.get(path)

    def events_for(self, user_id: str, participant_id: str | None = None) -> list[DMEvent]:
        """The user's DM events (sent or received), newest first."""
        with self._lock:
            events = [
                e
                for e in self.dm_events
                if user_id in (e.sender_id, e.recipient_id)
                and (participant_id is None or participant_id in (e.sender_id, e.recipient_id))
            ]
        return sorted(events, key=lambda e: int(e.id), reverse=True)

    def find_dms(self, sender_id: str | None, recipient_id: str | None) -> list[DMEvent]:
        with self._lock:
            return [
                e
                for e in self.dm_events
                if (sender_id is None or e.sender_id == sender_id)
                and (recipient_id is None or e.recipient_id == recipient_id)
            ]

    # Webhooks ------------------------------------------------------------------------------

    def subscribe(self, webhook_id: str, user_id: str) -> None:
        with self._lock:
            self.subscriptions.setdefault(webhook_id, set()).add(user_id)

    def unsubscribe(self, webhook_id: str, user_id: str) -> None:
        with self._lock:
            self.subscriptions.setdefault(webhook_id, set()).discard(user_id)

    def is_subscribed(self, webhook_id: str, user_id: str) -> bool:
        with self._lock:
            return user_id in self.subscriptions.get(webhook_id, set())

    def subscriptions_snapshot(self) -> dict[str, list[str]]:
        with self._lock:
            return {hook: sorted(users, key=int) for hook, users in self.subscriptions.items()}

    def webhooks_snapshot(self) -> dict[str, str]:
        with self._lock:
            return dict(self.webhooks)

    def set_webhook_url(self, url: str, webhook_id: str | None = None) -> None:
        with self._lock:
            self.webhooks[webhook_id or self.default_webhook_id] = url
            self.subscriptions.setdefault(webhook_id or self.default_webhook_id, set())

    # Faults and rate limits ----------------------------------------------------------------

    def set_faults(self, faults: FaultConfig) -> None:
        with self._lock:
            self.faults = faults

    def take_burst_429(self) -> bool:
        """Consume one of the configured 429 answers; True when this request gets one."""
        with self._lock:
            if self.faults.burst_429 <= 0:
                return False
            self.faults = replace(self.faults, burst_429=self.faults.burst_429 - 1)
            return True

    def set_rate_limit(
        self, endpoint: str, limit: int, window_seconds: int, user_id: str | None = None
    ) -> None:
        with self._lock:
            self.rate_rules[(endpoint, user_id)] = RateLimitRule(limit, window_seconds)
            # A new rule starts fresh windows so a test sees exactly the limit it set.
            for key in [k for k in self._windows if k[1] == endpoint]:
                if user_id is None or key[0] == user_id:
                    del self._windows[key]

    def rule_for(self, endpoint: str, identity: str) -> RateLimitRule:
        with self._lock:
            rule = self.rate_rules.get((endpoint, identity)) or self.rate_rules.get(
                (endpoint, None)
            )
        return rule or RateLimitRule(DEFAULT_LIMITS.get(endpoint, DEFAULT_LIMIT), FIFTEEN_MINUTES)

    def consume(self, endpoint: str, identity: str, now: float | None = None) -> RateLimitStatus:
        """Count one request in the caller's fixed window for this endpoint."""
        now = time.time() if now is None else now
        rule = self.rule_for(endpoint, identity)
        with self._lock:
            window = self._windows.get((identity, endpoint))
            if window is None or now >= window.started + rule.window_seconds:
                window = self._windows[(identity, endpoint)] = _Window(started=now)
            reset = int(window.started + rule.window_seconds) + 1
            if window.count >= rule.limit:
                return RateLimitStatus(rule.limit, 0, reset, exceeded=True)
            window.count += 1
            return RateLimitStatus(rule.limit, rule.limit - window.count, reset, exceeded=False)

    def set_daily_limit(
        self, endpoint: str, scope: str, limit: int | None, user_id: str | None = None
    ) -> None:
        """Turn a 24-hour cap on (or off: None) for the endpoint: each user's (or only
        `user_id`'s) or the app's."""
        key = (endpoint, scope, user_id if scope == USER_SCOPE else None)
        with self._lock:
            if limit is None:
                self.daily_limits.pop(key, None)
            else:
                self.daily_limits[key] = limit
            for window in [k for k in self._daily_windows if k[1] == endpoint]:
                del self._daily_windows[window]

    def clear_daily_limits(self) -> None:
        with self._lock:
            self.daily_limits.clear()
            self._daily_windows.clear()

    def consume_daily(
        self, endpoint: str, user_id: str | None, now: float | None = None
    ) -> list[DailyStatus]:
        """Count one request against the endpoint's 24-hour caps that are on."""
        now = time.time() if now is None else now
        found = []
        with self._lock:
            for scope in (USER_SCOPE, APP_SCOPE):
                if scope == USER_SCOPE:
                    if user_id is None:
                        continue
                    limit = self.daily_limits.get((endpoint, scope, user_id))
                    if limit is None:
                        limit = self.daily_limits.get((endpoint, scope, None))
                else:
                    limit = self.daily_limits.get((endpoint, scope, None))
                if limit is None:
                    continue
                identity = f"{scope}:{user_id if scope == USER_SCOPE else APP_IDENTITY}"
                window = self._daily_windows.get((identity, endpoint))
                if window is None or now >= window.started + DAY:
                    window = self._daily_windows[(identity, endpoint)] = _Window(started=now)
                reset = int(window.started + DAY) + 1
                if window.count >= limit:
                    found.append(DailyStatus(scope, RateLimitStatus(limit, 0, reset, True)))
                    continue
                window.count += 1
                status = RateLimitStatus(limit, limit - window.count, reset, False)
                found.append(DailyStatus(scope, status))
        return found

    # LLM ---------------------------------------------------------------------------------

    def set_llm_script(self, invalid: int, replies: list[dict[str, object]]) -> None:
        """The next `invalid` completions answer content that is not JSON, then the next ones
        answer `replies` in order; the script replaces any left over."""
        with self._lock:
            self._llm_invalid = invalid
            self._llm_replies = deque(replies)

    def llm_script(self) -> tuple[int, list[dict[str, object]]]:
        with self._lock:
            return self._llm_invalid, list(self._llm_replies)

    def take_llm_scripted(self) -> LLMScripted | None:
        """Consume the script's next answer; None when the script is spent."""
        with self._lock:
            if self._llm_invalid > 0:
                self._llm_invalid -= 1
                return LLMScripted(invalid=True)
            if self._llm_replies:
                return LLMScripted(invalid=False, reply=self._llm_replies.popleft())
            return None

    def log_llm_request(self, record: LLMRequest) -> None:
        with self._lock:
            self.llm_requests.append(record)

    def llm_request_log(self) -> list[LLMRequest]:
        with self._lock:
            return list(self.llm_requests)

    def clear_llm_requests(self) -> None:
        with self._lock:
            self.llm_requests.clear()

    def log_request(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def request_log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self.requests)


def _avatar(username: str) -> str:
    return f"https://pbs.twimg.com/profile_images/sandbox/{username}_normal.png"
