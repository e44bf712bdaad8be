"""Another merchant's resources answer 404, never 403 and never their data (the identity
contract of DESIGN.md), on every route of the app's route table.

Merchant A builds one of everything (an account, a contact with a tag, its conversation and
messages, a template, a segment, a campaign, a flow with a run); merchant B, an admin, then
calls every route whose path holds an id with A's ids (and a body that would be valid), and
must get 404 RESOURCE_NOT_FOUND each time. The matrix is generated from the route table: a new
route with an id is in it the day it is added, and a new route without one fails this test
until it is listed in `WITHOUT_IDS` with the reason it cannot leak. B's lists are read too,
with A's ids as their filters: none of A's ids may appear in anything B is answered. Last,
A finds everything as it was."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from mktx.settings import Settings
from sandbox.admin import SandboxAdmin
from tests.conftest import Api
from tests.security.routes import the_apps_routes
from tests.webhooks.conftest import connect, eventually, inbound, post_signed, x_user

P = "/api/v1/mkt-x"

# Routes with ids that are not a merchant's resources, and why.
PUBLIC_WITH_IDS = {
    "GET /r/{code}": "a tracked link's public redirect: customers click it on X, without a token; "
    "the code is a random token that names no merchant, and the answer is only the target URL",
}

# Routes without an id in the path, and why they cannot hand one merchant another's data.
_OWN = "acts on the caller's own merchant only (the token's merchantId), taking no id"
_LIST = "lists the caller's own rows (tenant-scoped query); read below with A's ids as filters"
WITHOUT_IDS = {
    "GET /healthz": "liveness probe: no data",
    "GET /readyz": "readiness probe: no data",
    "GET /metrics": "Prometheus metrics: process figures, no tenant data, loopback or token",
    f"GET {P}/postman-collection.json": "the public API description",
    f"POST {P}/accounts": _OWN + " (connects an X account to it)",
    f"GET {P}/accounts": _LIST,
    f"GET {P}/contacts": _LIST,
    f"POST {P}/contacts/import": "its accountId (query) is loaded as the caller's or 404: "
    "tested below",
    f"GET {P}/conversations": _LIST,
    f"GET {P}/webhooks/verify": "X's CRC check: answers an HMAC of the challenge, no data",
    f"GET {P}/webhooks/twitter": "X's CRC check: answers an HMAC of the challenge, no data",
    f"POST {P}/webhooks/twitter": "X's deliveries, authenticated by the consumer secret's "
    "signature, applied to the merchant that connected the X account",
    f"POST {P}/templates": _OWN,
    f"GET {P}/templates": _LIST,
    f"POST {P}/segments": _OWN,
    f"GET {P}/segments": _LIST,
    f"POST {P}/campaigns": _OWN + " (its templateId and segmentIds are loaded as the caller's)",
    f"GET {P}/campaigns": _LIST,
    f"POST {P}/automation/flows": _OWN + " (its templates are loaded as the caller's)",
    f"GET {P}/automation/flows": _LIST,
    f"GET {P}/ai/settings": _OWN,
    f"PUT {P}/ai/settings": _OWN,
    f"GET {P}/analytics/overview": _LIST,
    f"GET {P}/analytics/contacts": _LIST,
    f"GET {P}/analytics/conversations": _LIST,
    f"GET {P}/analytics/campaigns": _LIST,
    f"GET {P}/analytics/automation": _LIST,
}

# What B sends where a route wants a body: valid, so that only ownership can refuse it.
BODIES: dict[str, Any] = {
    f"PUT {P}/accounts/{{accountId}}": {"autoReplyEnabled": True},
    f"PUT {P}/contacts/{{contactId}}": {"displayName": "Taken over"},
    f"POST {P}/contacts/{{contactId}}/tags": {"tags": ["stolen"]},
    f"PUT {P}/contacts/{{contactId}}/attributes": {"attributes": {"owner": "B"}},
    f"POST {P}/conversations/{{conversationId}}/messages": {"content": "hello from B"},
    f"PUT {P}/conversations/{{conversationId}}/close": {"reason": "B closed it"},
    f"POST {P}/conversations/{{conversationId}}/assign": {"userId": "b-agent"},
    f"PUT {P}/templates/{{templateId}}": {"name": "Taken over"},
    f"POST {P}/templates/{{templateId}}/preview": {"variables": {}},
    f"PUT {P}/segments/{{segmentId}}": {"name": "Taken over"},
    f"PUT {P}/campaigns/{{campaignId}}": {"name": "Taken over"},
    f"POST {P}/campaigns/{{campaignId}}/test": {"contactIds": []},  # A's contact, filled in
    f"PUT {P}/automation/flows/{{flowId}}": {"name": "Taken over"},
    f"POST {P}/automation/flows/{{flowId}}/enroll": {"contactIds": []},  # A's contact
    f"POST {P}/ai/conversations/{{conversationId}}/message": {"message": "hi"},
    f"POST {P}/ai/conversations/{{conversationId}}/escalate": {"reason": "B wants it"},
}
NEEDS_A_CONTACT = {
    f"POST {P}/campaigns/{{campaignId}}/test",
    f"POST {P}/automation/flows/{{flowId}}/enroll",
}


@dataclass
class World:
    """Merchant A's things, by the path parameter that names each."""

    ids: dict[str, str]
    # What A reads of each, to find it unchanged at the end.
    witnesses: list[str]


async def _data(api: Api, path: str, **kwargs: Any) -> Any:
    response = await api.get(path, **kwargs)
    assert response.status_code == 200, (path, response.text)
    return response.json()["data"]


async def _created(api: Api, path: str, body: dict[str, Any]) -> str:
    response = await api.post(path, json=body)
    assert response.status_code == 200, (path, response.text)
    return str(response.json()["data"]["id"])


async def _world(api: Api, x_admin: SandboxAdmin) -> World:
    shop = await connect(api, await x_user(x_admin, "shop"))
    customer = await x_user(x_admin, "customer")
    answer = await post_signed(api.client, inbound(shop, customer, "Is my order on its way?"))
    assert answer.status_code == 200, answer.text
    (contact,) = await _data(api, "/contacts", params={"accountId": str(shop.account_id)})
    tagged = await api.post(f"/contacts/{contact['id']}/tags", json={"tags": ["vip"]})
    assert tagged.status_code == 200, tagged.text
    (conversation,) = await _data(api, "/conversations")
    detail = await _data(api, f"/conversations/{conversation['id']}?includeMessages=true")
    template = await _created(api, "/templates", {"name": "Hello", "content": "Hi {{name}}"})
    segment = await _created(
        api,
        "/segments",
        {"name": "VIP", "conditions": [{"field": "tags", "operator": "contains", "value": "vip"}]},
    )
    campaign = await _created(
        api,
        "/campaigns",
        {"name": "Sale", "type": "promotional", "templateId": template, "segmentIds": [segment]},
    )
    flow = await _created(
        api,
        "/automation/flows",
        {
            "name": "Patience",
            "trigger": {"type": "manual", "config": {}},
            "nodes": [{"id": "pause", "type": "wait", "config": {"duration": 86400}}],
            "connections": [],
        },
    )
    assert (await api.post(f"/automation/flows/{flow}/activate")).status_code == 200
    enrolled = await api.post(
        f"/automation/flows/{flow}/enroll", json={"contactIds": [contact["id"]]}
    )
    assert enrolled.status_code == 200 and enrolled.json()["data"]["enrolled"] == 1, enrolled.text
    (execution,) = await eventually(
        lambda: _data(api, f"/automation/flows/{flow}/executions"), lambda runs: len(runs) == 1
    )
    ids = {
        "accountId": str(shop.account_id),
        "contactId": contact["id"],
        "tagName": "vip",
        "conversationId": conversation["id"],
        "messageId": detail["messages"][0]["id"],
        "n": "0",
        "templateId": template,
        "segmentId": segment,
        "campaignId": campaign,
        "flowId": flow,
        "executionId": execution["id"],
    }
    witnesses = [
        f"/accounts/{ids['accountId']}",
        f"/contacts/{ids['contactId']}",
        f"/conversations/{ids['conversationId']}?includeMessages=true",
        f"/templates/{template}",
        f"/segments/{segment}",
        f"/campaigns/{campaign}",
        f"/automation/flows/{flow}",
        f"/automation/flows/{flow}/executions/{ids['executionId']}",
        f"/ai/conversations/{ids['conversationId']}/context",
    ]
    return World(ids, witnesses)


def _leaks(world: World, response: httpx.Response) -> list[str]:
    """A's ids (not those B put in the path itself) that B's answer shows."""
    shown = response.text
    path = str(response.request.url)
    return [
        value
        for name, value in world.ids.items()
        if name not in ("n", "tagName") and value in shown and value not in path
    ]


def _code(response: httpx.Response) -> str | None:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    return response.json().get("code")  # type: ignore[no-any-return]


async def test_another_merchant_gets_404_on_every_route_with_an_id(
    api: Api, other_api: Api, x_admin: SandboxAdmin, settings: Settings
) -> None:
    table = the_apps_routes(settings)
    with_ids = [r for r in table if r.params and r.key not in PUBLIC_WITH_IDS]
    without = [r for r in table if not r.params]
    unlisted = [r.key for r in without if r.key not in WITHOUT_IDS]
    assert not unlisted, (
        f"new routes without an id: say in WITHOUT_IDS why they are safe: {unlisted}"
    )
    stale = (set(WITHOUT_IDS) - {r.key for r in without}) | (
        set(PUBLIC_WITH_IDS) - {r.key for r in table}
    )
    assert not stale, f"exceptions naming routes that are gone: {stale}"
    unbodied = [r.key for r in with_ids if r.takes_body and r.key not in BODIES]
    assert not unbodied, f"new routes with a body: give BODIES a valid one: {unbodied}"

    world = await _world(api, x_admin)
    before = {path: await _data(api, path) for path in world.witnesses}
    # B uses the assistant too: only the ownership of A's conversation may refuse B's calls.
    assert (await other_api.put("/ai/settings", json={"enabled": True})).status_code == 200
    answered: dict[str, tuple[int, str | None]] = {}
    leaks: dict[str, list[str]] = {}
    for route in with_ids:
        body = BODIES.get(route.key)
        if route.key in NEEDS_A_CONTACT:
            body = {**body, "contactIds": [world.ids["contactId"]]}
        path = route.url(world.ids).removeprefix(P)
        kwargs = {"json": body} if body is not None else {}
        response = await other_api.request(route.method, path, **kwargs)
        answered[route.key] = (response.status_code, _code(response))
        if _leaks(world, response):
            leaks[route.key] = _leaks(world, response)

    wrong = {k: v for k, v in answered.items() if v != (404, "RESOURCE_NOT_FOUND")}
    assert not wrong, f"answered other than 404 RESOURCE_NOT_FOUND: {wrong}"
    assert not leaks, f"A's ids in B's answers: {leaks}"
    assert len(answered) == len(with_ids) >= 40  # the whole matrix ran

    # B's own lists and reports, filtered by A's ids (where they take such a filter), and every
    # other GET without an id, show none of A's ids.
    filters = {name: world.ids[name] for name in ("accountId", "contactId", "campaignId", "flowId")}
    for route in without:
        if route.method == "GET":
            response = await other_api.client.get(
                route.path, params=filters, headers=other_api.merchant.headers()
            )
            assert response.status_code < 500, (route.key, response.text)
            assert not _leaks(world, response), (route.key, _leaks(world, response))
    imported = await other_api.post(
        f"/contacts/import?accountId={world.ids['accountId']}",
        content=b"twitterUserId\n1\n",
        headers={"Content-Type": "text/csv"},
    )
    assert (imported.status_code, _code(imported)) == (404, "RESOURCE_NOT_FOUND"), imported.text

    # Nothing B tried changed anything of A's.
    after = {path: await _data(api, path) for path in world.witnesses}
    assert after == before
