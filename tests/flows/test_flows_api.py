"""Automation Flows definitions over HTTP: the spec's example read back, list and its status
filter, update and delete with their status rules, roles, a template held by an active flow,
and another merchant's flows answering 404."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col

from models.db import SessionMaker
from models.flow import AutomationFlow, FlowStatus
from services.core.auth import Role
from tests.conftest import Api
from tests.flows.conftest import create_flow, refused, spec_flow
from tests.segments.conftest import account_row

PATH = "/automation/flows"


async def set_status(sessions: SessionMaker, flow_id: str, status: FlowStatus) -> None:
    """What activate/deactivate will do; they are not served yet."""
    async with sessions() as session, session.begin():
        await session.execute(
            update(AutomationFlow)
            .where(col(AutomationFlow.id) == uuid.UUID(flow_id))
            .values(status=status)
        )


async def test_the_spec_example_is_created_as_a_draft_and_read_back(
    api: Api, template_ids: tuple[str, str]
) -> None:
    body = spec_flow(template_ids)

    created = await create_flow(api, body)
    got = (await api.get(f"{PATH}/{created['id']}")).json()["data"]

    assert got == created
    uuid.UUID(created["id"])
    assert created["merchantId"] == api.merchant.id
    assert created["name"] == "Welcome Flow"
    assert created["accountId"] is None
    assert created["status"] == "draft"
    assert created["reentry"] == "never"
    assert created["version"] == 0
    assert created["activatedAt"] is None
    assert created["statistics"] == {
        "running": 0,
        "completed": 0,
        "failed": 0,
        "exited": 0,
        "cancelled": 0,
    }
    assert created["trigger"] == {"type": "new_follower", "config": {}}
    assert [n["id"] for n in created["nodes"]] == ["node-1", "node-2", "node-3"]
    # Each config is answered complete: the defaults of its type filled in.
    assert created["nodes"][0]["config"] == {
        "templateId": template_ids[0],
        "delay": 0,
        "variables": {},
        "businessHoursOnly": False,
    }
    assert created["nodes"][1]["config"] == {"duration": 86400}
    assert created["connections"] == [{**c, "branch": None} for c in body["connections"]]
    assert created["createdAt"].endswith(("Z", "+00:00"))


async def test_the_issue_example_with_a_condition_and_every_node_type(
    api: Api, template_ids: tuple[str, str], sessions: SessionMaker
) -> None:
    async with sessions() as session, session.begin():
        account = account_row(api.merchant.id)
        session.add(account)
    welcome, _ = template_ids
    send = {"templateId": welcome, "businessHoursOnly": True}
    body = {
        "name": "Every node",
        "accountId": str(account.id),
        "trigger": {"type": "message_received", "config": {"keywords": ["Giá", "price"]}},
        "reentry": "after_exit",
        "nodes": [
            {"id": "hello", "type": "send_message", "config": send},
            {"id": "ask", "type": "wait_for_reply", "config": {"timeout": 3600}},
            {
                "id": "vip",
                "type": "condition",
                "config": {
                    "conditions": [{"field": "tags", "operator": "contains", "value": "vip"}]
                },
            },
            {"id": "tag", "type": "add_tag", "config": {"tags": [" Hot Lead "]}},
            {"id": "untag", "type": "remove_tag", "config": {"tag": "cold"}},
            {"id": "note", "type": "update_attributes", "config": {"attributes": {"tier": "gold"}}},
            {"id": "agent", "type": "assign_conversation", "config": {"userId": "user-7"}},
            {"id": "done", "type": "end"},
        ],
        "connections": [
            {"fromNodeId": "hello", "toNodeId": "ask"},
            {"fromNodeId": "ask", "toNodeId": "vip", "branch": "replied"},
            {"fromNodeId": "ask", "toNodeId": "untag", "branch": "timeout"},
            {"fromNodeId": "vip", "toNodeId": "tag", "branch": "true"},
            {"fromNodeId": "vip", "toNodeId": "note", "branch": "false"},
            {"fromNodeId": "tag", "toNodeId": "agent"},
            {"fromNodeId": "note", "toNodeId": "done"},
        ],
    }

    created = await create_flow(api, body)

    assert created["accountId"] == str(account.id)
    assert created["reentry"] == "after_exit"
    assert created["trigger"]["config"] == {"keywords": ["Giá", "price"], "match": "contains"}
    configs = {n["id"]: n["config"] for n in created["nodes"]}
    assert configs["tag"] == {"tags": ["hot lead"]}  # normalised as contacts store tags
    assert configs["vip"]["match"] == "all"
    assert configs["done"] == {}
    assert created["connections"][1]["branch"] == "replied"


async def test_list_filters_by_status_and_pages(
    api: Api, template_ids: tuple[str, str], sessions: SessionMaker
) -> None:
    ids = []
    for name in ("First", "Second", "Third"):
        ids.append((await create_flow(api, {**spec_flow(template_ids), "name": name}))["id"])
    await set_status(sessions, ids[1], FlowStatus.inactive)

    everything = (await api.get(PATH, params={"take": 2})).json()
    rest = (await api.get(PATH, params={"take": 2, "skip": 2})).json()
    drafts = (await api.get(PATH, params={"status": "draft"})).json()
    inactive = (await api.get(PATH, params={"status": "inactive"})).json()
    active = (await api.get(PATH, params={"status": "active"})).json()

    assert [f["name"] for f in everything["data"]] == ["Third", "Second"]  # newest first
    assert everything["pagination"] == {
        "page": 1,
        "limit": 2,
        "total": 3,
        "totalPages": 2,
        "totalIsEstimate": False,
    }
    assert [f["name"] for f in rest["data"]] == ["First"]
    assert [f["name"] for f in drafts["data"]] == ["Third", "First"]
    assert [f["id"] for f in inactive["data"]] == [ids[1]]
    assert active["data"] == [] and active["pagination"]["total"] == 0
    refused(await api.get(PATH, params={"status": "paused"}), "status")


async def test_update_of_a_draft_is_checked_and_saved(
    api: Api, template_ids: tuple[str, str]
) -> None:
    flow = await create_flow(api, spec_flow(template_ids))
    path = f"{PATH}/{flow['id']}"
    two_nodes = flow["nodes"][:2]

    # New nodes are checked against the connections kept: node-3 is gone, its connection not.
    refused(await api.put(path, json={"nodes": two_nodes}), "connections[1].toNodeId")
    response = await api.put(
        path,
        json={
            "name": "Updated Welcome Flow",
            "nodes": two_nodes,
            "connections": [{"fromNodeId": "node-1", "toNodeId": "node-2"}],
        },
    )
    got = (await api.get(path)).json()["data"]

    assert response.status_code == 200, response.text
    assert got == response.json()["data"]
    assert got["name"] == "Updated Welcome Flow"
    assert [n["id"] for n in got["nodes"]] == ["node-1", "node-2"]
    assert got["status"] == "draft"
    assert got["trigger"] == flow["trigger"]  # not sent: kept
    assert got["updatedAt"] > flow["updatedAt"]
    refused(await api.put(path, json={"name": None}), "name")


async def test_update_of_an_inactive_flow_is_allowed_of_an_active_one_refused(
    api: Api, template_ids: tuple[str, str], sessions: SessionMaker
) -> None:
    flow = await create_flow(api, spec_flow(template_ids))
    path = f"{PATH}/{flow['id']}"

    await set_status(sessions, flow["id"], FlowStatus.inactive)
    inactive = await api.put(path, json={"reentry": "after_exit"})
    await set_status(sessions, flow["id"], FlowStatus.active)
    active = await api.put(path, json={"name": "Changed"})

    assert inactive.status_code == 200, inactive.text
    assert inactive.json()["data"]["status"] == "inactive"
    assert active.status_code == 400
    assert active.json()["code"] == "INVALID_STATE"
    assert "deactivate" in active.json()["error"]
    assert (await api.get(path)).json()["data"]["name"] == "Welcome Flow"


async def test_delete_removes_a_draft_and_refuses_an_active_flow(
    api: Api, template_ids: tuple[str, str], sessions: SessionMaker
) -> None:
    draft = await create_flow(api, spec_flow(template_ids))
    active = await create_flow(api, spec_flow(template_ids))
    await set_status(sessions, active["id"], FlowStatus.active)

    deleted = await api.delete(f"{PATH}/{draft['id']}")
    refusal = await api.delete(f"{PATH}/{active['id']}")

    assert deleted.status_code == 200 and deleted.json() == {"success": True, "data": None}
    assert (await api.get(f"{PATH}/{draft['id']}")).status_code == 404
    assert refusal.status_code == 400 and refusal.json()["code"] == "INVALID_STATE"
    assert (await api.get(f"{PATH}/{active['id']}")).status_code == 200


async def test_a_template_of_an_active_flow_cannot_be_deleted(
    api: Api, template_ids: tuple[str, str], sessions: SessionMaker
) -> None:
    flow = await create_flow(api, spec_flow(template_ids))
    welcome, gift = template_ids

    while_draft = await api.delete(f"/templates/{gift}")  # a draft holds nothing
    await set_status(sessions, flow["id"], FlowStatus.active)
    while_active = await api.delete(f"/templates/{welcome}")

    assert while_draft.status_code == 200
    assert while_active.status_code == 409, while_active.text
    assert while_active.json()["details"]["usedBy"] == ["flow 'Welcome Flow' (active)"]


async def test_another_merchant_gets_404_on_every_flow_endpoint(
    api: Api, other_api: Api, template_ids: tuple[str, str]
) -> None:
    flow = await create_flow(api, spec_flow(template_ids))
    path = f"{PATH}/{flow['id']}"

    answers = [
        await other_api.get(path),
        await other_api.put(path, json={"name": "Mine"}),
        await other_api.delete(path),
    ]

    assert [r.status_code for r in answers] == [404] * 3
    assert all(r.json()["code"] == "RESOURCE_NOT_FOUND" for r in answers)
    assert (await other_api.get(PATH)).json()["data"] == []
    assert (await api.get(path)).json()["data"]["name"] == "Welcome Flow"


async def test_an_unknown_flow_is_404(api: Api) -> None:
    response = await api.get(f"{PATH}/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json()["details"]["resource"] == "flow"


@pytest.mark.parametrize("role", [Role.viewer, Role.agent])
async def test_only_marketing_may_change_flows(
    api: Api, template_ids: tuple[str, str], role: Role
) -> None:
    body: dict[str, Any] = spec_flow(template_ids)
    flow = await create_flow(api, body)
    path = f"{PATH}/{flow['id']}"

    changes = [
        await api.post(PATH, json=body, role=role),
        await api.put(path, json={"name": "X"}, role=role),
        await api.delete(path, role=role),
    ]
    reads = [await api.get(PATH, role=role), await api.get(path, role=role)]

    assert [r.status_code for r in changes] == [403] * 3
    assert all(r.json()["code"] == "FORBIDDEN" for r in changes)
    assert [r.status_code for r in reads] == [200] * 2
