"""Template Management endpoints: placeholders checked against `variables`, types, preview,
update/delete and their 409, roles, and another merchant's templates answering 404."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from models.db import SessionMaker, utcnow
from sandbox.admin import SandboxAdmin
from services.core.auth import Role
from tests.campaigns.conftest import make_world
from tests.conftest import Api

WELCOME = {
    "name": "Welcome Message",
    "type": "text",
    "content": "Hi {{name}}, welcome to {{shop_name}}! Use code {{discount_code}} for 10% off "
    "your first order.",
    "variables": ["name", "shop_name", "discount_code"],
}
QUICK = {
    "name": "Feedback",
    "type": "quick_reply",
    "content": "How was your order, {{name}}?",
    "options": [{"label": "Great", "value": "great"}, {"label": "Not good"}],
}
CARD = {
    "name": "Arrivals",
    "type": "card",
    "content": "New arrivals for {{attributes.tier}} members",
    "card": {"linkUrl": "https://shop.example/new", "mediaUrl": "https://cdn.example/a.jpg"},
}


async def _create(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post("/templates", json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _error(response: Any, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    return body  # type: ignore[no-any-return]


async def test_create_answers_the_documented_shape(api: Api) -> None:
    template = await _create(api, WELCOME)

    uuid.UUID(template["id"])
    assert template["merchantId"] == api.merchant.id
    assert {k: template[k] for k in WELCOME} == WELCOME
    assert template["options"] is None and template["card"] is None
    assert template["createdAt"].endswith(("Z", "+00:00"))
    assert (await api.get(f"/templates/{template['id']}")).json()["data"] == template


async def test_variables_default_to_the_placeholders_used(api: Api) -> None:
    template = await _create(
        api, {"name": "t", "content": "Hi {{ name }}, {{attributes.tier}} and {{name}} again"}
    )
    assert template["type"] == "text"
    assert template["variables"] == ["name", "attributes.tier"]


@pytest.mark.parametrize(
    ("variables", "word"),
    [
        (["name", "shop_name", "discount_code", "extra"], "'extra' is listed but not used"),
        (["name", "shop_name"], "'discount_code' is used in the template but not listed"),
        (["name", "name", "shop_name", "discount_code"], "'name' is listed twice"),
        ([], "'name' is used"),
    ],
)
async def test_variables_must_list_exactly_the_placeholders(
    api: Api, variables: list[str], word: str
) -> None:
    body = _error(await api.post("/templates", json={**WELCOME, "variables": variables}))
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == "variables"
    assert word in body["details"]["reason"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": "Hi {{first name}}"}, "content"),
        ({"content": "Hi {{name"}, "content"),
        ({"content": ""}, "content"),
        ({"content": "x" * 10_001}, "content"),
        ({"name": ""}, "name"),
        ({"type": "carousel"}, "type"),
        ({"options": [{"label": "Yes"}]}, "options"),  # a text template has none
        ({"card": {"linkUrl": "https://a.example"}}, "card"),
        ({"type": "quick_reply"}, "options"),
        ({"type": "quick_reply", "options": []}, "options"),
        ({"type": "quick_reply", "options": [{"label": ""}]}, "options[0].label"),
        ({"type": "quick_reply", "options": [{"label": "{{oops"}]}, "options[0].label"),
        ({"type": "card"}, "card"),
        ({"type": "card", "card": {"linkUrl": "javascript:alert(1)"}}, "card.linkUrl"),
        ({"type": "card", "card": {"mediaUrl": "https://a.example/x.png"}}, "card.linkUrl"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_bad_templates_are_named(api: Api, body: dict[str, Any], field: str) -> None:
    base = {"name": "t", "content": "Hello"}
    response = _error(await api.post("/templates", json={**base, **body}))
    assert response["details"]["field"] == field


async def test_quick_reply_placeholders_in_options_count(api: Api) -> None:
    template = await _create(
        api, {**QUICK, "options": [{"label": "Visit {{shop}}"}, {"label": "No"}]}
    )
    assert template["variables"] == ["name", "shop"]
    assert template["options"] == [
        {"label": "Visit {{shop}}", "value": None},
        {"label": "No", "value": None},
    ]


async def test_preview_renders_the_spec_example(api: Api) -> None:
    template = await _create(api, WELCOME)
    sample = {"name": "John", "shop_name": "GoodGo Shop", "discount_code": "WELCOME10"}

    response = await api.post(f"/templates/{template['id']}/preview", json={"variables": sample})

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "data": {
            "rendered": "Hi John, welcome to GoodGo Shop! Use code WELCOME10 for 10% off your "
            "first order.",
            "mediaUrl": None,
        },
    }


async def test_preview_of_quick_reply_and_card(api: Api) -> None:
    quick = await _create(api, QUICK)
    card = await _create(api, CARD)

    q = await api.post(f"/templates/{quick['id']}/preview", json={"variables": {"name": "Ann"}})
    k = await api.post(
        f"/templates/{card['id']}/preview", json={"variables": {"attributes.tier": "gold"}}
    )

    assert q.json()["data"]["rendered"] == "How was your order, Ann?\n\n1. Great\n2. Not good"
    assert k.json()["data"] == {
        "rendered": "New arrivals for gold members\n\nhttps://shop.example/new",
        "mediaUrl": "https://cdn.example/a.jpg",
    }


async def test_preview_names_a_missing_sample_value(api: Api) -> None:
    template = await _create(api, WELCOME)

    response = await api.post(
        f"/templates/{template['id']}/preview", json={"variables": {"name": "John"}}
    )
    empty = await api.post(f"/templates/{template['id']}/preview")

    body = _error(response)
    assert body["details"]["field"] == "variables.shop_name"
    assert "shop_name" in body["error"]
    assert _error(empty)["details"]["field"] == "variables.name"


async def test_list_filters_by_type_and_name_with_pagination(api: Api) -> None:
    await _create(api, WELCOME)
    await _create(api, QUICK)
    await _create(api, CARD)
    await _create(api, {**WELCOME, "name": "Welcome back"})

    quick = (await api.get("/templates", params={"type": "quick_reply"})).json()
    welcome = (await api.get("/templates", params={"search": "WELCOME"})).json()
    page = (await api.get("/templates", params={"take": 3, "skip": 3})).json()
    bad = await api.get("/templates", params={"type": "carousel"})

    assert [t["name"] for t in quick["data"]] == ["Feedback"]
    assert [t["name"] for t in welcome["data"]] == ["Welcome back", "Welcome Message"]
    assert page["pagination"] == {
        "page": 2,
        "limit": 3,
        "total": 4,
        "totalPages": 2,
        "totalIsEstimate": False,
    }
    assert [t["name"] for t in page["data"]] == ["Welcome Message"]
    assert _error(bad)["details"]["field"] == "type"


async def test_update_content_re_reads_the_placeholders(api: Api) -> None:
    template = await _create(api, WELCOME)
    path = f"/templates/{template['id']}"

    # the spec's example: new name and content, variables not sent
    updated = await api.put(path, json={"name": "Updated Welcome", "content": "Hello {{name}}!"})
    stray = await api.put(path, json={"content": "Hi {{name}}", "variables": ["name", "code"]})

    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["variables"] == ["name"]
    assert updated.json()["data"]["name"] == "Updated Welcome"
    assert _error(stray)["details"] == {
        "field": "variables",
        "reason": "'code' is listed but not used in the template",
    }
    assert (await api.get(path)).json()["data"]["content"] == "Hello {{name}}!"


async def test_update_type_drops_what_the_new_type_does_not_use(api: Api) -> None:
    template = await _create(api, QUICK)
    path = f"/templates/{template['id']}"

    to_text = (await api.put(path, json={"type": "text"})).json()["data"]
    to_card = await api.put(path, json={"type": "card"})

    assert to_text["type"] == "text"
    assert to_text["options"] is None
    assert _error(to_card)["details"]["field"] == "card"
    with_card = await api.put(
        path, json={"type": "card", "card": {"linkUrl": "https://shop.example"}}
    )
    assert with_card.json()["data"]["card"] == {
        "linkUrl": "https://shop.example",
        "mediaUrl": None,
    }


async def test_update_refuses_null_for_kept_fields(api: Api) -> None:
    template = await _create(api, WELCOME)
    response = await api.put(f"/templates/{template['id']}", json={"content": None})
    assert _error(response)["details"]["field"] == "content"


async def test_delete_then_gone(api: Api) -> None:
    template = await _create(api, WELCOME)

    response = await api.delete(f"/templates/{template['id']}")

    assert response.json() == {"success": True, "data": None}
    assert (await api.get(f"/templates/{template['id']}")).status_code == 404


async def test_update_and_delete_of_a_template_in_use_conflict(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    """A scheduled campaign and an active flow on the template (the real usage checks)."""
    world = await make_world(api, x_admin, sessions, recipients=1)
    later = (utcnow() + timedelta(days=10)).isoformat()
    campaign = await world.campaign(name="January Promotion", schedule={"startAt": later})
    assert (await world.start(campaign["id"]))["status"] == "scheduled"
    flow = await api.post(
        "/automation/flows",
        json={
            "name": "Welcome",
            "trigger": {"type": "manual", "config": {}},
            "nodes": [
                {
                    "id": "hello",
                    "type": "send_message",
                    "config": {"templateId": world.template_id, "variables": {"shop": "Ao"}},
                }
            ],
            "connections": [],
        },
    )
    assert flow.status_code == 200, flow.text
    flow_id = flow.json()["data"]["id"]
    assert (await api.post(f"/automation/flows/{flow_id}/activate")).status_code == 200
    free = await _create(api, QUICK)
    path = f"/templates/{world.template_id}"
    before = (await api.get(path)).json()["data"]

    updated = _error(await api.put(path, json={"name": "Renamed"}), 409)
    deleted = _error(await api.delete(path), 409)

    users = ["campaign 'January Promotion' (scheduled)", "flow 'Welcome' (active)"]
    for body in (updated, deleted):
        assert body["code"] == "CONFLICT"
        assert body["details"]["id"] == world.template_id
        assert sorted(body["details"]["usedBy"]) == users
        assert all(user in body["error"] for user in users)
    assert (await api.get(path)).json()["data"] == before
    assert (await api.put(f"/templates/{free['id']}", json={"name": "x"})).status_code == 200
    assert (await api.delete(f"/templates/{free['id']}")).status_code == 200

    # The flow let go of it: only the campaign holds it now.
    assert (await api.post(f"/automation/flows/{flow_id}/deactivate")).status_code == 200
    still = _error(await api.put(path, json={"name": "Renamed"}), 409)
    assert still["details"]["usedBy"] == users[:1]


async def test_another_merchant_gets_404_everywhere(api: Api, other_api: Api) -> None:
    template = await _create(api, WELCOME)
    path = f"/templates/{template['id']}"

    answers = [
        await other_api.get(path),
        await other_api.put(path, json={"name": "Mine"}),
        await other_api.delete(path),
        await other_api.post(f"{path}/preview", json={"variables": {}}),
    ]

    assert [r.status_code for r in answers] == [404] * 4
    assert all(r.json()["code"] == "RESOURCE_NOT_FOUND" for r in answers)
    assert (await other_api.get("/templates")).json()["data"] == []
    assert (await api.get(path)).json()["data"]["name"] == "Welcome Message"


@pytest.mark.parametrize("role", [Role.viewer, Role.agent])
async def test_only_marketing_may_change_templates(api: Api, role: Role) -> None:
    template = await _create(api, WELCOME)
    path = f"/templates/{template['id']}"
    sample = {"variables": {"name": "a", "shop_name": "b", "discount_code": "c"}}

    changes = [
        await api.post("/templates", json=WELCOME, role=role),
        await api.put(path, json={"name": "x"}, role=role),
        await api.delete(path, role=role),
    ]
    reads = [
        await api.get("/templates", role=role),
        await api.get(path, role=role),
        await api.post(f"{path}/preview", json=sample, role=role),
    ]

    assert [r.status_code for r in changes] == [403] * 3
    assert all(r.json()["code"] == "FORBIDDEN" for r in changes)
    assert [r.status_code for r in reads] == [200] * 3
    # Nothing changed: no template added, this one neither renamed nor deleted.
    assert [t["id"] for t in (await api.get("/templates")).json()["data"]] == [template["id"]]
    assert (await api.get(path)).json()["data"] == template
