"""`GET` / `PUT /ai/settings`: the defaults, changes field by field, validation, roles, tenants."""

from __future__ import annotations

from typing import Any

import pytest

from services.core.auth import Role
from tests.assistant.conftest import SHOP_INTENTS
from tests.conftest import Api

DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "model": "openai/mktx-sandbox",
    "temperature": 0.7,
    "maxTokens": 500,
    "autoEscalationThreshold": 0.6,
    "systemPrompt": "",
    "intents": [],
    "knowledgeBase": [],
    "updatedAt": None,
}


def assert_defaults(data: dict[str, Any]) -> None:
    escalation = data.pop("escalation")
    assert data == DEFAULTS
    assert escalation["slaMinutes"] == 30
    assert escalation["assignTo"] is None
    assert isinstance(escalation["handoffMessage"], str) and escalation["handoffMessage"].strip()
    assert set(escalation) == {"slaMinutes", "assignTo", "handoffMessage"}


async def test_get_without_a_put_answers_the_defaults(api: Api) -> None:
    response = await api.get("/ai/settings")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert_defaults(body["data"])


async def test_put_changes_only_the_fields_it_names(api: Api) -> None:
    handoff = (await api.get("/ai/settings")).json()["data"]["escalation"]["handoffMessage"]
    first = await api.put(
        "/ai/settings",
        json={
            "enabled": True,
            "temperature": 0.2,
            "intents": SHOP_INTENTS,
            "escalation": {"slaMinutes": 45, "assignTo": "user-7"},
        },
    )
    assert first.status_code == 200, first.text
    assert first.json()["data"]["updatedAt"] is not None

    second = await api.put(
        "/ai/settings",
        json={"maxTokens": 800, "systemPrompt": "Be brief.", "escalation": {"slaMinutes": 90}},
    )
    assert second.status_code == 200, second.text
    expected = {
        **DEFAULTS,
        "enabled": True,
        "temperature": 0.2,
        "maxTokens": 800,
        "systemPrompt": "Be brief.",
        "intents": SHOP_INTENTS,
        "escalation": {"slaMinutes": 90, "assignTo": "user-7", "handoffMessage": handoff},
    }
    data = second.json()["data"]
    assert data.pop("updatedAt") is not None
    assert data == {k: v for k, v in expected.items() if k != "updatedAt"}

    again = (await api.get("/ai/settings")).json()["data"]
    again.pop("updatedAt")
    assert again == data


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"maxTokens": 0}, "maxTokens"),
        ({"maxTokens": 5000}, "maxTokens"),
        ({"autoEscalationThreshold": 1.5}, "autoEscalationThreshold"),
        ({"systemPrompt": "x" * 10_001}, "systemPrompt"),
        ({"intents": [{"name": "Order-Status", "description": "d"}]}, "intents[0].name"),
        (
            {"intents": [{"name": "store_hours"}, {"name": "store_hours"}]},
            "intents",
        ),
        (
            {"knowledgeBase": [{"question": f"q{i}", "answer": "a"} for i in range(201)]},
            "knowledgeBase",
        ),
        ({"escalation": {"slaMinutes": 0}}, "escalation.slaMinutes"),
        ({"escalation": {"slaMinutes": 10_081}}, "escalation.slaMinutes"),
        ({"colour": "blue"}, "colour"),
    ],
    ids=[
        "temperature-2.5",
        "maxTokens-0",
        "maxTokens-5000",
        "threshold-1.5",
        "systemPrompt-too-long",
        "intent-not-snake-case",
        "intent-duplicate",
        "knowledgeBase-201",
        "slaMinutes-0",
        "slaMinutes-10081",
        "unknown-field",
    ],
)
async def test_an_invalid_field_is_422_naming_it(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = await api.put("/ai/settings", json={"enabled": True, **body})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["success"] is False
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["field"] == field
    assert field in error["error"]
    # Nothing was stored.
    assert_defaults((await api.get("/ai/settings")).json()["data"])


async def test_a_viewer_reads_but_cannot_change(api: Api) -> None:
    response = await api.get("/ai/settings", role=Role.viewer)
    assert response.status_code == 200, response.text
    assert_defaults(response.json()["data"])

    refused = await api.put("/ai/settings", json={"enabled": True}, role=Role.viewer)
    assert refused.status_code == 403, refused.text
    assert refused.json()["success"] is False
    assert refused.json()["code"] == "FORBIDDEN"
    assert (await api.get("/ai/settings")).json()["data"]["enabled"] is False


async def test_settings_are_per_merchant(api: Api, other_api: Api) -> None:
    changed = await api.put(
        "/ai/settings", json={"enabled": True, "systemPrompt": "Acme only.", "maxTokens": 64}
    )
    assert changed.status_code == 200, changed.text

    theirs = await other_api.get("/ai/settings")
    assert theirs.status_code == 200, theirs.text
    assert_defaults(theirs.json()["data"])
    mine = (await api.get("/ai/settings")).json()["data"]
    assert (mine["enabled"], mine["systemPrompt"], mine["maxTokens"]) == (True, "Acme only.", 64)
