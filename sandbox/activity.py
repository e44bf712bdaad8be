"""The X Activity API's subscriptions on their real paths (`/2/activity/subscriptions`); the
deliveries consult them (sandbox/subscriptions.py keeps them).

Shapes follow docs.x.com (x-api/activity/quickstart, the OpenAPI document's
CreateActivitySubscriptionRequest): a subscription is `{subscription_id, event_type, filter:
{user_id}, tag?, webhook_id?, created_at, updated_at}`. Private events (DMs) may be subscribed
only for a user who authorized the app: with that user's OAuth 1.0a token, filtered on that
user. A second subscription of the same event type and user is refused with 409 (X's exact
answer to a duplicate is not documented).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from sandbox.oauth import AuthError, verify_bearer, verify_oauth1
from sandbox.paging import decode_page_token, page_token
from sandbox.problems import XProblem, invalid_request
from sandbox.state import APP_IDENTITY, EP_ACTIVITY, SandboxState
from sandbox.subscriptions import DuplicateSubscription
from sandbox.x_api import StateDep, json_body, rate_limit

# The event types of the OpenAPI document's enum (those the sandbox can deliver are marked in
# sandbox/webhooks.py); `oauth.revoke` is not subscribable: X delivers it to the app.
EVENT_TYPES = frozenset(
    {
        "profile.update.bio",
        "profile.update.profile_picture",
        "profile.update.banner_picture",
        "profile.update.screenname",
        "profile.update.geo",
        "profile.update.url",
        "profile.update.verified_badge",
        "profile.update.affiliate_badge",
        "profile.update.handle",
        "news.new",
        "follow.follow",
        "follow.unfollow",
        "spaces.start",
        "spaces.end",
        "broadcast.start",
        "broadcast.end",
        "broadcast.chat",
        "chat.received",
        "chat.sent",
        "chat.conversation.join",
        "dm.sent",
        "dm.received",
        "dm.indicate_typing",
        "dm.read",
        "post.create",
        "post.delete",
        "post.mention.create",
        "post.reply.create",
        "post.quote.create",
        "post.repost.create",
        "like.create",
        "mute.mute",
        "mute.unmute",
        "block.block",
        "block.unblock",
    }
)
# Events about a user's private life: only that user's own token may subscribe to them.
PRIVATE_PREFIXES = ("dm.", "chat.", "like.", "mute.", "block.", "post.mention", "post.reply")
PAGE_SIZE_MAX = 1000


# The endpoints ------------------------------------------------------------------------------

router = APIRouter()


async def _caller(request: Request, state: StateDep) -> str | None:
    """The user of an OAuth 1.0a call, or None for the app's bearer token."""
    request.state.endpoint = EP_ACTIVITY
    header = request.headers.get("authorization", "")
    if header.lower().startswith("oauth "):
        context = await verify_oauth1(request, state)
        request.state.user_id = context.user_id
        rate_limit(request, state, EP_ACTIVITY, context.user_id)
        return context.user_id
    verify_bearer(request, state)
    rate_limit(request, state, EP_ACTIVITY, APP_IDENTITY)
    return None


CallerDep = Annotated[str | None, Depends(_caller)]


def _app_only(caller: str | None) -> None:
    if caller is not None:
        raise AuthError("This endpoint requires the app's bearer token", status=403)


def _meta(state: SandboxState) -> dict[str, Any]:
    return {"total_subscriptions": state.activity.count()}


def _string(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 200:
        raise invalid_request(f"{name}: must be a string of 1 to 200 characters", name)
    return value


@router.post("/2/activity/subscriptions")
async def create_subscription(request: Request, state: StateDep, caller: CallerDep) -> Any:
    body = await json_body(request)
    extra = set(body) - {"event_type", "filter", "tag", "webhook_id"}
    if extra:
        raise invalid_request(f"unknown fields: {', '.join(sorted(extra))}", sorted(extra)[0])
    event_type = _string(body, "event_type", required=True)
    if event_type not in EVENT_TYPES:
        raise invalid_request(f"event_type: {event_type} is not an event type", "event_type")
    filter_ = body.get("filter")
    user_id = filter_.get("user_id") if isinstance(filter_, dict) else None
    if not isinstance(user_id, str) or not user_id.isdigit():
        raise invalid_request("filter.user_id: must be a user id", "filter")
    if event_type.startswith(PRIVATE_PREFIXES) and caller != user_id:
        raise XProblem(
            403,
            f"{event_type} is a private event: only {user_id}'s own token may subscribe to it",
            title="Forbidden",
        )
    webhook_id = _string(body, "webhook_id")
    if webhook_id is not None and webhook_id not in state.webhooks_snapshot():
        raise invalid_request(
            f"webhook_id: [{webhook_id}] is not a webhook of this app", "webhook_id"
        )
    try:
        item = state.activity.create(event_type, user_id, _string(body, "tag"), webhook_id)
    except DuplicateSubscription:
        raise XProblem(
            409,
            f"A subscription for {event_type} on user {user_id} already exists",
            title="Conflict",
        ) from None
    return {"data": item.as_json(), "meta": _meta(state)}


@router.get("/2/activity/subscriptions")
def list_subscriptions(
    state: StateDep,
    caller: CallerDep,
    max_results: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = 100,
    pagination_token: str | None = None,
) -> Any:
    items = state.activity.all()
    if pagination_token:
        after = decode_page_token(pagination_token)
        items = [s for s in items if int(s.id) > after]
    page, rest = items[:max_results], items[max_results:]
    answer: dict[str, Any] = {"data": [s.as_json() for s in page], "meta": _meta(state)}
    answer["meta"]["result_count"] = len(page)
    if rest:
        answer["meta"]["next_token"] = page_token(int(page[-1].id))
    return answer


@router.put("/2/activity/subscriptions/{subscription_id}")
async def update_subscription(
    subscription_id: str, request: Request, state: StateDep, caller: CallerDep
) -> Any:
    _app_only(caller)
    body = await json_body(request)
    values = {k: _string(body, k) for k in ("tag", "webhook_id") if k in body}
    item = state.activity.update(subscription_id, **values)
    if item is None:
        raise XProblem(404, f"Could not find subscription with id: [{subscription_id}]")
    return {"data": item.as_json(), "meta": _meta(state)}


@router.delete("/2/activity/subscriptions/{subscription_id}")
def delete_subscription(subscription_id: str, state: StateDep, caller: CallerDep) -> Any:
    _app_only(caller)
    if not state.activity.delete(subscription_id):
        raise XProblem(404, f"Could not find subscription with id: [{subscription_id}]")
    return {"data": {"deleted": True}, "meta": _meta(state)}


@router.delete("/2/activity/subscriptions")
def delete_subscriptions(
    state: StateDep, caller: CallerDep, ids: Annotated[str, Query(min_length=1)]
) -> Any:
    _app_only(caller)
    wanted = [i for i in ids.split(",") if i]
    if not 1 <= len(wanted) <= 100 or not all(i.isdigit() and len(i) <= 19 for i in wanted):
        raise invalid_request("ids: 1 to 100 subscription ids", "ids")
    data, errors = [], []
    for subscription_id in wanted:
        if state.activity.delete(subscription_id):
            data.append({"subscription_id": subscription_id, "deleted": True})
        else:
            errors.append(
                {
                    "subscription_id": subscription_id,
                    "reason": "not_found",
                    "message": f"Could not find subscription with id: [{subscription_id}]",
                }
            )
    answer: dict[str, Any] = {"data": data, "meta": _meta(state)}
    if errors:
        answer["errors"] = errors
    return answer
