"""The sandbox's own control API under /_sandbox: set up users, inject faults, read what X received."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from sandbox.dm_media_api import inbound_media
from sandbox.state import (
    ENDPOINT_KEYS,
    DMEvent,
    DuplicateUsername,
    FaultConfig,
    LLMRequest,
    SandboxState,
    UnknownUser,
    User,
)
from sandbox.webhooks import (
    ACTIVITY_DM_LISTS,
    activity_dm,
    activity_follow,
    activity_receipt,
    activity_revoke,
    crc_check,
    deliver,
    dm_payload,
    follow_payload,
    receipt_payload,
    revoke_payload,
)
from sandbox.x_api import get_state

PREFIX = "/_sandbox"
SANDBOX_APP_ID = "29820954"  # the app id revocations name (X's sample payloads use this one)

router = APIRouter(prefix=PREFIX)
StateDep = Annotated[SandboxState, Depends(get_state)]


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class UserCreate(CamelModel):
    username: str = Field(min_length=1, max_length=50)
    name: str | None = None
    accepts_dms: bool = True
    profile_image_url: str | None = None


class UserUpdate(CamelModel):
    accepts_dms: bool | None = None


class UserOut(CamelModel):
    id: str
    username: str
    name: str
    profile_image_url: str | None
    accepts_dms: bool


class TokenOut(CamelModel):
    user_id: str
    access_token: str
    access_token_secret: str


class UserWithToken(CamelModel):
    id: str
    username: str
    name: str
    profile_image_url: str | None
    accepts_dms: bool
    access_token: str
    access_token_secret: str


class Faults(CamelModel):
    error_rate: float = Field(0.0, ge=0.0, le=1.0)
    error_status: int = Field(503, ge=400, le=599)
    latency_ms: int = Field(0, ge=0, le=60_000)
    burst429: int = Field(0, ge=0)
    path_prefix: str | None = None
    user_id: str | None = None
    retry_after_seconds: int = Field(60, ge=1)


class LLMScript(CamelModel):
    """The LLM endpoint's next answers: `invalid` completions whose content is not JSON, then
    `replies` (any JSON objects, answered as they are), then the deterministic answers again."""

    invalid: int = Field(0, ge=0, le=1000)
    replies: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)


class LLMRequestOut(BaseModel):
    """A chat completion as it was asked, in OpenAI's field names."""

    model: str | None
    messages: list[dict[str, str]]
    response_format: Any
    temperature: Any
    max_tokens: Any
    at: datetime


class RateLimitIn(CamelModel):
    endpoint: str
    limit: int = Field(ge=0)
    window_seconds: int = Field(15 * 60, ge=1)
    user_id: str | None = None


class MediaOut(CamelModel):
    media_id: str
    media_key: str
    media_type: str
    category: str
    size: int
    sha256: str


class DMOut(CamelModel):
    id: str
    dm_conversation_id: str
    sender_id: str
    recipient_id: str
    text: str
    created_at: datetime
    source: str
    attachments: list[dict[str, Any]] = []
    media: MediaOut | None = None  # the media a DM sent through the API attached


class RequestOut(CamelModel):
    at: datetime
    method: str
    path: str
    status: int
    user_id: str | None
    endpoint: str | None
    fault: str | None


class WebhookIn(CamelModel):
    url: str


# Which API delivers a simulated event: the one the user is subscribed to for it (the X
# Activity API when it has a subscription of that event type, else Account Activity), unless
# the test names one.
EventsApi = Literal["account_activity", "activity"]


class SimulateDM(CamelModel):
    from_user_id: str
    to_user_id: str
    text: str
    # Raw Account Activity attachments (`message_data.attachment`), as a test writes them.
    attachments: list[dict[str, Any]] | None = None
    # Media as X delivers it: the media object, its t.co link in the text and entities, and
    # its files served on X's media hosts (a photo only to the DM's participants).
    media: Literal["image", "gif", "video"] | None = None
    # An answer to quick-reply options: the chosen option's metadata.
    quick_reply_metadata: str | None = Field(None, max_length=1000)
    # Whose subscription the event is delivered for; X also echoes a DM to its sender's webhook.
    for_user_id: str | None = None
    api: EventsApi | None = None


class SimulateFollow(CamelModel):
    from_user_id: str
    to_user_id: str
    type: Literal["follow", "unfollow"] = "follow"
    # The follower's side (`fromUserId` following someone) or the followed one's (default).
    for_user_id: str | None = None
    api: EventsApi | None = None


class SimulateReceipt(CamelModel):
    """`fromUserId` read `toUserId`'s DMs (up to `lastReadEventId`) or is typing to them."""

    from_user_id: str
    to_user_id: str
    type: Literal["read", "typing"] = "read"
    last_read_event_id: str | None = None
    api: EventsApi | None = None


class SimulateRevoke(CamelModel):
    """The user takes the app's access back: X invalidates their tokens and subscriptions."""

    user_id: str
    api: EventsApi | None = None


class DeliveryOut(CamelModel):
    event_id: str
    webhook_url: str
    webhook_status: int | None
    error: str | None
    subscribed: bool
    api: EventsApi = "account_activity"


class CrcOut(CamelModel):
    valid: bool
    status: int | None


def _user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        name=user.name,
        profile_image_url=user.profile_image_url,
        accepts_dms=user.accepts_dms,
    )


def _user(state: SandboxState, user_id: str) -> User:
    try:
        return state.get_user(user_id)
    except UnknownUser:
        raise HTTPException(404, f"no sandbox user {user_id}") from None


def _dm_out(event: DMEvent) -> DMOut:
    return DMOut(
        id=event.id,
        dm_conversation_id=event.dm_conversation_id,
        sender_id=event.sender_id,
        recipient_id=event.recipient_id,
        text=event.text,
        created_at=event.created_at,
        source=event.source,
        attachments=[dict(a) for a in event.attachments],
        media=MediaOut(**vars(event.media)) if event.media else None,
    )


@router.post("/users", status_code=201)
def create_user(body: UserCreate, state: StateDep) -> UserWithToken:
    try:
        user, token = state.create_user(
            body.username, body.name, body.accepts_dms, body.profile_image_url
        )
    except DuplicateUsername:
        raise HTTPException(409, f"username {body.username} is taken") from None
    return UserWithToken(
        **_user_out(user).model_dump(),
        access_token=token.token,
        access_token_secret=token.secret,
    )


@router.get("/users")
def list_users(state: StateDep) -> list[UserOut]:
    return [_user_out(u) for u in state.list_users()]


@router.patch("/users/{user_id}")
def update_user(user_id: str, body: UserUpdate, state: StateDep) -> UserOut:
    _user(state, user_id)
    return _user_out(state.update_user(user_id, body.accepts_dms))


@router.post("/users/{user_id}/tokens", status_code=201)
def new_token(user_id: str, state: StateDep) -> TokenOut:
    _user(state, user_id)
    token = state.new_token(user_id)
    return TokenOut(user_id=user_id, access_token=token.token, access_token_secret=token.secret)


@router.post("/tokens/{access_token}/revoke")
def revoke_token(access_token: str, state: StateDep) -> dict[str, bool]:
    if not state.revoke_token(access_token):
        raise HTTPException(404, "unknown access token")
    return {"revoked": True}


@router.get("/faults")
def get_faults(state: StateDep) -> Faults:
    f = state.faults
    return Faults(
        error_rate=f.error_rate,
        error_status=f.error_status,
        latency_ms=f.latency_ms,
        burst429=f.burst_429,
        path_prefix=f.path_prefix,
        user_id=f.user_id,
        retry_after_seconds=f.retry_after_seconds,
    )


@router.put("/faults")
def set_faults(body: Faults, state: StateDep) -> Faults:
    state.set_faults(
        FaultConfig(
            error_rate=body.error_rate,
            error_status=body.error_status,
            latency_ms=body.latency_ms,
            burst_429=body.burst429,
            path_prefix=body.path_prefix,
            user_id=body.user_id,
            retry_after_seconds=body.retry_after_seconds,
        )
    )
    return body


@router.delete("/faults", status_code=204)
def clear_faults(state: StateDep) -> None:
    """Clear every injected fault, the LLM's script of invalid and scripted answers and the
    24-hour caps included (tests call this after each test)."""
    state.set_faults(FaultConfig())
    state.clear_daily_limits()
    state.set_llm_script(0, [])


@router.get("/llm/script")
def get_llm_script(state: StateDep) -> LLMScript:
    invalid, replies = state.llm_script()
    return LLMScript(invalid=invalid, replies=replies)


@router.put("/llm/script")
def set_llm_script(body: LLMScript, state: StateDep) -> LLMScript:
    state.set_llm_script(body.invalid, body.replies)
    return body


@router.delete("/llm/script", status_code=204)
def clear_llm_script(state: StateDep) -> None:
    state.set_llm_script(0, [])


def _llm_request_out(record: LLMRequest) -> LLMRequestOut:
    return LLMRequestOut(
        model=record.model,
        messages=[dict(m) for m in record.messages],
        response_format=record.response_format,
        temperature=record.temperature,
        max_tokens=record.max_tokens,
        at=record.at,
    )


@router.get("/llm/requests")
def list_llm_requests(state: StateDep) -> list[LLMRequestOut]:
    return [_llm_request_out(r) for r in state.llm_request_log()]


@router.delete("/llm/requests", status_code=204)
def clear_llm_requests(state: StateDep) -> None:
    state.clear_llm_requests()


@router.put("/rate-limits")
def set_rate_limit(body: RateLimitIn, state: StateDep) -> RateLimitIn:
    if body.endpoint not in ENDPOINT_KEYS:
        # A typo would otherwise configure a limit nothing ever consults.
        raise HTTPException(422, f"endpoint must be one of {sorted(ENDPOINT_KEYS)}")
    state.set_rate_limit(body.endpoint, body.limit, body.window_seconds, body.user_id)
    return body


@router.get("/dms")
def list_dms(
    state: StateDep,
    recipient_id: Annotated[str | None, Query(alias="recipientId")] = None,
    sender_id: Annotated[str | None, Query(alias="senderId")] = None,
) -> list[DMOut]:
    return [_dm_out(e) for e in state.find_dms(sender_id, recipient_id)]


@router.get("/requests")
def list_requests(
    state: StateDep,
    path_prefix: Annotated[str | None, Query(alias="pathPrefix")] = None,
    user_id: Annotated[str | None, Query(alias="userId")] = None,
) -> list[RequestOut]:
    return [
        RequestOut(**vars(r))
        for r in state.request_log()
        if (path_prefix is None or r.path.startswith(path_prefix))
        and (user_id is None or r.user_id == user_id)
    ]


@router.get("/subscriptions")
def list_subscriptions(state: StateDep) -> dict[str, list[str]]:
    return state.subscriptions_snapshot()


@router.put("/webhook")
def set_webhook(body: WebhookIn, state: StateDep) -> dict[str, str]:
    state.set_webhook_url(body.url)
    return {"id": state.default_webhook_id, "url": body.url}


@router.post("/webhook/crc")
async def run_crc(state: StateDep) -> CrcOut:
    valid, status = await crc_check(state)
    return CrcOut(valid=valid, status=status)


def _by_activity(state: SandboxState, api: str | None, user_id: str, event_type: str) -> bool:
    if api is not None:
        return api == "activity"
    return state.activity.for_event(user_id, event_type) is not None


def _subscribed(state: SandboxState, activity: bool, user_id: str, event_type: str) -> bool:
    if activity:
        return state.activity.for_event(user_id, event_type) is not None
    return state.is_subscribed(state.default_webhook_id, user_id)


async def _deliver(
    state: SandboxState,
    event_id: str,
    payload: dict[str, Any],
    *,
    activity: bool,
    user_id: str,
    event_type: str,
) -> DeliveryOut:
    subscription = state.activity.for_event(user_id, event_type) if activity else None
    webhook_id = subscription.webhook_id if subscription is not None else None
    delivery = await deliver(state, event_id, payload, webhook_id)
    return DeliveryOut(
        **vars(delivery),
        subscribed=_subscribed(state, activity, user_id, event_type),
        api="activity" if activity else "account_activity",
    )


def _tag(state: SandboxState, user_id: str, event_type: str) -> str | None:
    subscription = state.activity.for_event(user_id, event_type)
    return subscription.tag if subscription is not None else None


@router.post("/simulate/dm")
async def simulate_dm(body: SimulateDM, state: StateDep) -> DeliveryOut:
    sender, recipient = _user(state, body.from_user_id), _user(state, body.to_user_id)
    for_user = body.for_user_id or recipient.id
    _user(state, for_user)
    event_id = state.next_id()
    attachments = tuple(body.attachments or ())
    link = None
    if body.media is not None:
        attachment, link = inbound_media(
            state, event_id, body.media, body.text, frozenset({sender.id, recipient.id})
        )
        attachments = (attachment,)
    quick_reply: dict[str, object] | None = (
        {"type": "options", "metadata": body.quick_reply_metadata}
        if body.quick_reply_metadata is not None
        else None
    )
    event = state.record_dm(
        sender.id,
        recipient.id,
        body.text,
        source="simulated",
        attachments=attachments,
        event_id=event_id,
        media_link=link,
        quick_reply_response=quick_reply,
    )
    event_type = "dm.sent" if for_user == sender.id else "dm.received"
    activity = _by_activity(state, body.api, for_user, event_type)
    if activity:
        tag = _tag(state, for_user, event_type)
        payload = activity_dm(event_type, for_user, event, sender, recipient, tag)
    else:
        payload = dm_payload(for_user, event, sender, recipient)
    return await _deliver(
        state, event.id, payload, activity=activity, user_id=for_user, event_type=event_type
    )


@router.post("/simulate/follow")
async def simulate_follow(body: SimulateFollow, state: StateDep) -> DeliveryOut:
    source, target = _user(state, body.from_user_id), _user(state, body.to_user_id)
    for_user = body.for_user_id or target.id
    event_id = state.next_id()
    event_type = f"follow.{body.type}"
    activity = _by_activity(state, body.api, for_user, event_type)
    if activity:
        tag = _tag(state, for_user, event_type)
        payload = activity_follow(event_type, for_user, source, target, tag)
    else:
        payload = follow_payload(for_user, body.type, source, target, datetime.now(UTC))
    return await _deliver(
        state, event_id, payload, activity=activity, user_id=for_user, event_type=event_type
    )


@router.post("/simulate/receipt")
async def simulate_receipt(body: SimulateReceipt, state: StateDep) -> DeliveryOut:
    reader, owner = _user(state, body.from_user_id), _user(state, body.to_user_id)
    event_type = "dm.read" if body.type == "read" else "dm.indicate_typing"
    extra: dict[str, Any] = {}
    if body.type == "read":
        last = body.last_read_event_id
        if last is None:
            sent = state.find_dms(owner.id, reader.id)
            last = sent[-1].id if sent else None
        if last is not None:
            extra["last_read_event_id"] = last
    activity = _by_activity(state, body.api, owner.id, event_type)
    now = datetime.now(UTC)
    if activity:
        tag = _tag(state, owner.id, event_type)
        payload = activity_receipt(event_type, owner.id, reader, owner, now, tag, **extra)
    else:
        payload = receipt_payload(
            owner.id, ACTIVITY_DM_LISTS[event_type], reader, owner, now, **extra
        )
    return await _deliver(
        state, state.next_id(), payload, activity=activity, user_id=owner.id, event_type=event_type
    )


@router.post("/simulate/revoke")
async def simulate_revoke(body: SimulateRevoke, state: StateDep) -> DeliveryOut:
    user = _user(state, body.user_id)
    activity = (
        body.api == "activity" if body.api is not None else bool(state.activity.of_user(user.id))
    )
    now = datetime.now(UTC)
    if activity:
        payload = activity_revoke(user, SANDBOX_APP_ID, now)
    else:
        payload = revoke_payload(user, SANDBOX_APP_ID, now)
    state.revoke_user(user.id)  # X invalidates the tokens and drops the subscriptions
    delivery = await deliver(state, state.next_id(), payload)
    return DeliveryOut(
        **vars(delivery), subscribed=False, api="activity" if activity else "account_activity"
    )


class DailyLimitIn(CamelModel):
    """A 24-hour cap of an endpoint, per user or for the whole app (`limit` null: off)."""

    endpoint: str
    scope: Literal["user", "app"]
    limit: int | None = Field(None, ge=0)
    user_id: str | None = None  # the user cap of this user only (default: every user's)


@router.put("/daily-limits")
def set_daily_limit(body: DailyLimitIn, state: StateDep) -> DailyLimitIn:
    if body.endpoint not in ENDPOINT_KEYS:
        raise HTTPException(422, f"endpoint must be one of {sorted(ENDPOINT_KEYS)}")
    state.set_daily_limit(body.endpoint, body.scope, body.limit, body.user_id)
    return body


@router.get("/activity-subscriptions")
def list_activity_subscriptions(state: StateDep) -> list[dict[str, Any]]:
    return [s.as_json() for s in state.activity.all()]


@router.post("/reset", status_code=204)
def reset(state: StateDep) -> None:
    state.reset()
