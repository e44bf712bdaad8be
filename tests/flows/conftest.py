"""Flow documents for the flow tests: two templates of the test's merchant, and the spec's
example flow built on them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import Api


async def create_template(api: Api, content: str, name: str = "Template") -> str:
    response = await api.post("/templates", json={"name": name, "content": content})
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["id"])


@pytest.fixture
async def template_ids(api: Api) -> tuple[str, str]:
    """A template filled by contact fields alone, and one needing `shop_name` from the node."""
    return (
        await create_template(api, "Hi {{name}}, thanks for following!", "Welcome"),
        await create_template(api, "{{name}}, {{shop_name}} has a gift for you", "Gift"),
    )


def spec_flow(template_ids: tuple[str, str]) -> dict[str, Any]:
    """The spec's example body (Create Automation Flow), on this merchant's templates."""
    first, second = template_ids
    return {
        "name": "Welcome Flow",
        "trigger": {"type": "new_follower", "config": {}},
        "nodes": [
            {
                "id": "node-1",
                "type": "send_message",
                "config": {"templateId": first, "delay": 0},
            },
            {"id": "node-2", "type": "wait", "config": {"duration": 86400}},
            {
                "id": "node-3",
                "type": "send_message",
                "config": {"templateId": second, "delay": 0, "variables": {"shop_name": "Ao"}},
            },
        ],
        "connections": [
            {"fromNodeId": "node-1", "toNodeId": "node-2"},
            {"fromNodeId": "node-2", "toNodeId": "node-3"},
        ],
    }


@pytest.fixture
def flow_body(template_ids: tuple[str, str]) -> dict[str, Any]:
    return copy.deepcopy(spec_flow(template_ids))


async def create_flow(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post("/automation/flows", json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def refused(response: Any, field: str, status: int = 422) -> str:
    """The reason of a refusal naming `field`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == field, body
    return str(body["details"]["reason"])


async def activate(api: Api, flow_id: str) -> dict[str, Any]:
    response = await api.post(f"/automation/flows/{flow_id}/activate")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "active"
    return response.json()["data"]  # type: ignore[no-any-return]


async def executions(api: Api, flow_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await api.get(f"/automation/flows/{flow_id}/executions", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]
