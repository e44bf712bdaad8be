"""Tenant isolation of automation flows: another merchant is told 404 by every flow endpoint for
this merchant's flow, changes nothing by trying, and cannot have its contacts enrolled into
this merchant's flow (nor this merchant theirs)."""

from __future__ import annotations

import uuid
from typing import Any

from models.contact import Contact
from models.db import SessionMaker
from sandbox.admin import SandboxAdmin, SandboxUser
from tests.conftest import Api
from tests.flows.conftest import activate, create_flow, create_template, executions
from tests.webhooks.conftest import connect, eventually, x_user

PATH = "/automation/flows"


async def contact_of(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> tuple[SandboxUser, str]:
    """A connected shop of the merchant and one sandbox user stored as its contact."""
    shop = await connect(api, await x_user(x_admin, "shop", name="Shop"))
    user = await x_user(x_admin, "fan", name="Fan")
    async with sessions() as session, session.begin():
        contact = Contact(
            merchant_id=api.merchant.id,
            account_id=shop.account_id,
            twitter_user_id=user.id,
            username=user.username,
            display_name=user.name,
        )
        session.add(contact)
    return user, str(contact.id)


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
    _, contact = await contact_of(api, x_admin, sessions)
    _, their_contact = await contact_of(other_api, x_admin, sessions)
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
    their_user, their_contact = await contact_of(other_api, x_admin, sessions)
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
