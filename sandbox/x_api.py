"""The X API endpoints the service uses, on their real paths, with X's auth, limits and errors."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import JSONResponse

from sandbox.dm_media import media_object, tco_link
from sandbox.media import MediaRejected
from sandbox.oauth import AuthError, UserContext, verify_app_basic, verify_bearer, verify_oauth1
from sandbox.paging import decode_page_token, page_token
from sandbox.problems import XProblem, invalid_request
from sandbox.state import (
    APP_IDENTITY,
    EP_DM_EVENTS,
    EP_DM_SEND,
    EP_INVALIDATE_TOKEN,
    EP_OAUTH2_TOKEN,
    EP_SUBSCRIPTIONS,
    EP_USERS_ME,
    EP_WEBHOOKS,
    DMEvent,
    SandboxState,
    UnknownUser,
    User,
)

MAX_DM_LENGTH = 10_000
DEFAULT_DM_EVENT_FIELDS = ("id", "event_type", "text")

router = APIRouter()


def get_state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


StateDep = Annotated[SandboxState, Depends(get_state)]


def rate_limit(request: Request, state: SandboxState, endpoint: str, identity: str) -> None:
    """Count the request in the caller's 15-minute window and in the endpoint's 24-hour caps
    that are on (the user's, the app's), with X's headers for each; 429 when one is spent."""
    status = state.consume(endpoint, identity)
    # The app middleware copies these onto whatever answer the request ends with.
    headers = request.state.rate_headers = {
        "x-rate-limit-limit": str(status.limit),
        "x-rate-limit-remaining": str(status.remaining),
        "x-rate-limit-reset": str(status.reset),
    }
    if status.exceeded:
        raise XProblem(429, "Too Many Requests")
    user = None if identity == APP_IDENTITY else identity
    spent = False
    for daily in state.consume_daily(endpoint, user):
        prefix = f"x-{daily.scope}-limit-24hour"
        headers[f"{prefix}-limit"] = str(daily.status.limit)
        headers[f"{prefix}-remaining"] = str(daily.status.remaining)
        headers[f"{prefix}-reset"] = str(daily.status.reset)
        spent = spent or daily.status.exceeded
    if spent:
        raise XProblem(429, "Too Many Requests")


def user_context(endpoint: str) -> Callable[[Request, SandboxState], Awaitable[UserContext]]:
    """Dependency: OAuth 1.0a user context, then the user's window for `endpoint`."""

    async def dependency(request: Request, state: StateDep) -> UserContext:
        request.state.endpoint = endpoint
        context = await verify_oauth1(request, state)
        request.state.user_id = context.user_id
        rate_limit(request, state, endpoint, context.user_id)
        return context

    return dependency


def app_only(endpoint: str) -> Callable[[Request, SandboxState], None]:
    """Dependency: an app-only bearer token from /oauth2/token."""

    def dependency(request: Request, state: StateDep) -> None:
        request.state.endpoint = endpoint
        verify_bearer(request, state)
        rate_limit(request, state, endpoint, APP_IDENTITY)

    return dependency


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise invalid_request("Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid_request("Request body must be a JSON object")
    return body


def _fields(raw: str | None) -> set[str]:
    return {f.strip() for f in (raw or "").split(",") if f.strip()}


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _user_json(user: User, fields: set[str]) -> dict[str, Any]:
    data: dict[str, Any] = {"id": user.id, "name": user.name, "username": user.username}
    if "profile_image_url" in fields and user.profile_image_url:
        data["profile_image_url"] = user.profile_image_url
    if "created_at" in fields:
        data["created_at"] = _iso(user.created_at)
    if "protected" in fields:
        data["protected"] = False
    return data


def _event_json(event: DMEvent, fields: set[str]) -> dict[str, Any]:
    every: dict[str, Any] = {
        "id": event.id,
        "event_type": "MessageCreate",
        "text": event.x_text,
        "created_at": _iso(event.created_at),
        "sender_id": event.sender_id,
        "dm_conversation_id": event.dm_conversation_id,
        "participant_ids": [event.sender_id, event.recipient_id],
    }
    if event.media is not None:
        every["attachments"] = {"media_keys": [event.media.media_key]}
    wanted = set(DEFAULT_DM_EVENT_FIELDS) | fields
    return {k: v for k, v in every.items() if k in wanted}


def _webhook_or_404(state: SandboxState, webhook_id: str) -> None:
    if webhook_id not in state.webhooks_snapshot():
        raise XProblem(
            404, f"Could not find webhook with id: [{webhook_id}]", title="Not Found Error"
        )


# Users -------------------------------------------------------------------------------------


@router.get("/2/users/me")
def users_me(
    state: StateDep,
    context: Annotated[UserContext, Depends(user_context(EP_USERS_ME))],
    user_fields: Annotated[str | None, Query(alias="user.fields")] = None,
) -> dict[str, Any]:
    return {"data": _user_json(state.get_user(context.user_id), _fields(user_fields))}


# Direct messages ---------------------------------------------------------------------------


@router.post("/2/dm_conversations/with/{participant_id}/messages", status_code=201)
async def send_dm(
    participant_id: str,
    request: Request,
    state: StateDep,
    context: Annotated[UserContext, Depends(user_context(EP_DM_SEND))],
) -> dict[str, Any]:
    body = await json_body(request)
    media_id = _attached_media_id(body.get("attachments"))
    text = body.get("text")
    # X: text is required unless the message attaches media.
    if media_id is not None and text is None:
        text = ""
    if not isinstance(text, str) or (media_id is None and not text.strip()):
        raise invalid_request("text: must be a non-empty string", "text")
    if len(text) > MAX_DM_LENGTH:
        raise invalid_request(
            f"text: must be at most {MAX_DM_LENGTH} characters, got {len(text)}", "text"
        )
    try:
        recipient = state.get_user(participant_id)
    except UnknownUser:
        raise invalid_request(
            f"participant_id: Could not find user with id: [{participant_id}]", "participant_id"
        ) from None
    if not recipient.accepts_dms:
        raise XProblem(
            403,
            "You cannot send messages to this user: they do not accept direct messages from you.",
        )
    upload = None
    if media_id is not None:
        try:
            upload = state.media.take_for_dm(context.user_id, media_id, time.time())
        except MediaRejected as exc:
            raise invalid_request(exc.message, exc.parameter) from None
    event_id = state.next_id()
    attachments: tuple[dict[str, object], ...] = ()
    link = None
    if upload is not None:
        link = tco_link(event_id, text)
        media, _ = media_object(event_id, upload.id, upload.kind, link)
        attachments = ({"type": "media", "media": {**media, "media_key": upload.key}},)
    event = state.record_dm(
        context.user_id,
        participant_id,
        text,
        source="api",
        attachments=attachments,
        media=upload.as_sent() if upload else None,
        event_id=event_id,
        media_link=link,
    )
    return {"data": {"dm_conversation_id": event.dm_conversation_id, "dm_event_id": event.id}}


def _attached_media_id(attachments: Any) -> str | None:
    """X takes one attachment per DM: `[{"media_id": "..."}]`."""
    if attachments is None:
        return None
    if (
        not isinstance(attachments, list)
        or len(attachments) != 1
        or not isinstance(attachments[0], dict)
        or not isinstance(attachments[0].get("media_id"), str)
        or not attachments[0]["media_id"]
    ):
        raise invalid_request(
            'attachments: must be one object {"media_id": "<id>"} (a DM attaches one media)',
            "attachments",
        )
    return str(attachments[0]["media_id"])


def _page_of_events(
    events: list[DMEvent],
    fields: str | None,
    max_results: int,
    pagination_token: str | None,
) -> dict[str, Any]:
    """A page of events, newest first, with X's meta: `next_token` (older events) and
    `previous_token` (newer ones). Each token is an id cursor and a direction, not an offset:
    events arriving between pages neither repeat nor vanish."""
    if not 1 <= max_results <= 100:
        raise invalid_request("max_results: must be between 1 and 100", "max_results")
    older = events
    if pagination_token:
        cursor = decode_page_token(pagination_token)
        pivot, newer = cursor >> 1, cursor & 1
        if newer:
            above = [e for e in events if int(e.id) > pivot]
            page = above[-max_results:]
            older = page + [e for e in events if int(e.id) <= pivot]
        else:
            older = [e for e in events if int(e.id) < pivot]
    page, rest = older[:max_results], older[max_results:]
    wanted = _fields(fields)
    answer: dict[str, Any] = {"meta": {"result_count": len(page)}}
    if page:
        answer["data"] = [_event_json(e, wanted) for e in page]
        # As X answers (a recorded answer: tweepy's cassettes/test_manage_and_lookup_direct_
        # messages.yaml), a page with events names the pages on both sides.
        answer["meta"]["previous_token"] = page_token(int(page[0].id) << 1 | 1)
    if rest:
        answer["meta"]["next_token"] = page_token(int(page[-1].id) << 1)
    return answer


@router.get("/2/dm_events")
def dm_events(
    state: StateDep,
    context: Annotated[UserContext, Depends(user_context(EP_DM_EVENTS))],
    fields: Annotated[str | None, Query(alias="dm_event.fields")] = None,
    max_results: int = 100,
    pagination_token: str | None = None,
) -> dict[str, Any]:
    events = state.events_for(context.user_id)
    return _page_of_events(events, fields, max_results, pagination_token)


@router.get("/2/dm_conversations/with/{participant_id}/dm_events")
def conversation_dm_events(
    participant_id: str,
    state: StateDep,
    context: Annotated[UserContext, Depends(user_context(EP_DM_EVENTS))],
    fields: Annotated[str | None, Query(alias="dm_event.fields")] = None,
    max_results: int = 100,
    pagination_token: str | None = None,
) -> dict[str, Any]:
    events = state.events_for(context.user_id, participant_id)
    return _page_of_events(events, fields, max_results, pagination_token)


# Tokens ------------------------------------------------------------------------------------


@router.post("/1.1/oauth/invalidate_token")
def invalidate_token(
    state: StateDep,
    context: Annotated[UserContext, Depends(user_context(EP_INVALIDATE_TOKEN))],
) -> dict[str, Any]:
    state.revoke_token(context.access_token)
    return {"access_token": context.access_token}


@router.post("/oauth2/token")
async def oauth2_token(request: Request, state: StateDep) -> JSONResponse:
    request.state.endpoint = EP_OAUTH2_TOKEN
    try:
        verify_app_basic(request, state)
    except AuthError as exc:
        # v1.1 endpoints answer with the old error list, not a v2 problem.
        body = {
            "errors": [{"code": 99, "message": exc.detail, "label": "authenticity_token_error"}]
        }
        return JSONResponse(body, status_code=exc.status)
    rate_limit(request, state, EP_OAUTH2_TOKEN, APP_IDENTITY)
    form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
    if form.get("grant_type") != "client_credentials":
        body = {"errors": [{"code": 170, "message": "Missing required parameter: grant_type"}]}
        return JSONResponse(body, status_code=400)
    return JSONResponse({"token_type": "bearer", "access_token": state.issue_bearer_token()})


# Account Activity --------------------------------------------------------------------------


@router.post("/2/account_activity/webhooks/{webhook_id}/subscriptions/all")
def subscribe(
    webhook_id: str,
    state: StateDep,
    context: Annotated[UserContext, Depends(user_context(EP_SUBSCRIPTIONS))],
) -> dict[str, Any]:
    _webhook_or_404(state, webhook_id)
    state.subscribe(webhook_id, context.user_id)
    return {"data": {"subscribed": True}}


@router.get("/2/account_activity/webhooks/{webhook_id}/subscriptions/all")
def subscription_status(
    webhook_id: str,
    state: StateDep,
    context: Annotated[UserContext, Depends(user_context(EP_SUBSCRIPTIONS))],
) -> dict[str, Any]:
    _webhook_or_404(state, webhook_id)
    return {"data": {"subscribed": state.is_subscribed(webhook_id, context.user_id)}}


@router.delete(
    "/2/account_activity/webhooks/{webhook_id}/subscriptions/{user_id}/all",
    dependencies=[Depends(app_only(EP_SUBSCRIPTIONS))],
)
def unsubscribe(webhook_id: str, user_id: str, state: StateDep) -> dict[str, Any]:
    _webhook_or_404(state, webhook_id)
    state.unsubscribe(webhook_id, user_id)
    return {"data": {"subscribed": False}}


@router.get("/2/account_activity/webhooks", dependencies=[Depends(app_only(EP_WEBHOOKS))])
def list_webhooks(state: StateDep) -> dict[str, Any]:
    hooks = [
        {"id": i, "url": url, "valid": True} for i, url in sorted(state.webhooks_snapshot().items())
    ]
    return {"data": hooks, "meta": {"result_count": len(hooks)}}
