"""Tenant isolation of automation flows: another merchant is told 404 by every flow endpoint for
this merchant's flow, changes nothing by trying, and cannot have its contacts enrolled into
this merchant's flow (nor this merchant theirs)."""

from __future__ import annotations

import uuid
from typing import Any

from models.db import SessionMaker
from sandbox.admin import SandboxAdmin
from tests.conftest import Api
from tests.flows.conftest import activate, create_flow, create_template, executions, people
from tests.webhooks.conftest import eventually

PATH = "/automation/flows"


async def manual_flow(api: Api) -> dict[str, Any]:
    template = await create_template(api, "Hi {{name}}", "Hello")
    return await create_flow(
        api,
        {
            "name": "Mine",
            "trigger": {"type": "manual", "config": {}},
            "nodes": [{"id": "send", "type": "send_message", "config": {"templateId": template}}],
            "connections": [],
        },
    )


async def test_another_merchant_is_denied_every_flow_endpoint_and_changes_nothing(
    api: Api, other_api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    (contact,) = (await people(api, x_admin, sessions)).contact_ids
    (their_contact,) = (await people(other_api, x_admin, sessions)).contact_ids
    flow = await manual_flow(api)
    await activate(api, flow["id"])
    enrolled = await api.post(f"{PATH}/{flow['id']}/enroll", json={"contactIds": [contact]})
    assert enrolled.json()["data"]["enrolled"] == 1, enrolled.text
    (run,) = await eventually(
        lambda: executions(api, flow["id"]), lambda rs: bool(rs) and rs[0]["status"] != "running"
    )
    before = (await api.get(f"{PATH}/{flow['id']}")).json()["data"]
    path = f"{PATH}/{flow['id']}"

    answers = {
        "get": await other_api.get(path),
        "put": await other_api.put(path, json={"name": "Theirs"}),
        "delete": await other_api.delete(path),
        "deactivate": await other_api.post(f"{path}/deactivate"),
        "activate": await other_api.post(f"{path}/activate"),
        "enroll": await other_api.post(f"{path}/enroll", json={"contactIds": [their_contact]}),
        "enroll mine": await other_api.post(f"{path}/enroll", json={"contactIds": [contact]}),
        "executions": await other_api.get(f"{path}/executions"),
        "execution": await other_api.get(f"{path}/executions/{run['id']}"),
    }

    for name, response in answers.items():
        assert response.status_code == 404, (name, response.text)
        body = response.json()
        assert body["success"] is False and body["code"] == "RESOURCE_NOT_FOUND", (name, body)
        assert body["details"]["resource"] == "flow", (name, body)
    assert (await other_api.get(PATH)).json()["data"] == []
    after = (await api.get(path)).json()["data"]
    assert after == before
    assert (after["status"], after["version"], after["name"]) == ("active", 1, "Mine")
    assert await executions(api, flow["id"]) == [run]


async def test_another_merchants_contact_is_not_found_for_my_flow(
    api: Api, other_api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    theirs = await people(other_api, x_admin, sessions)
    (their_user,), (their_contact,) = theirs.users, theirs.contact_ids
    flow = await manual_flow(api)
    await activate(api, flow["id"])
    unknown = str(uuid.uuid4())

    response = await api.post(
        f"{PATH}/{flow['id']}/enroll", json={"contactIds": [their_contact, unknown]}
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "success": True,
        "data": {
            "enrolled": 0,
            "skipped": [
                {"contactId": their_contact, "reason": "not_found"},
                {"contactId": unknown, "reason": "not_found"},
            ],
        },
    }
    assert await executions(api, flow["id"]) == []
    assert await executions(api, flow["id"], contactId=their_contact) == []
    assert await x_admin.dms(recipient_id=their_user.id) == []
