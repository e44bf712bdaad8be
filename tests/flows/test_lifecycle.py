"""A flow's lifecycle over HTTP: activation and its versions, deactivation, update and delete
rules, manual enrolment and its skip reasons, re-entry, and the executions list and detail. Real
PostgreSQL, the Temporal dev server and worker, the sandbox's DM log (short waits only)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlmodel import col

from models.db import SessionMaker
from models.flow_run import FlowRun, FlowVersion
from sandbox.admin import SandboxAdmin
from tests.conftest import Api
from tests.flows.conftest import activate, create_flow, executions, people, settled, statistics
from tests.webhooks.conftest import eventually, inbound, post_signed

PATH = "/automation/flows"


def send_flow(template_id: str, *, wait: int | None = None, **fields: Any) -> dict[str, Any]:
    """A manual flow sending one DM, then (with `wait`) waiting that long before it ends."""
    nodes: list[dict[str, Any]] = [
        {"id": "send", "type": "send_message", "config": {"templateId": template_id}}
    ]
    connections: list[dict[str, Any]] = []
    if wait is not None:
        nodes.append({"id": "wait", "type": "wait", "config": {"duration": wait}})
        connections.append({"fromNodeId": "send", "toNodeId": "wait"})
    return {
        "name": "Manual",
        "trigger": {"type": "manual", "config": {}},
        "nodes": nodes,
        "connections": connections,
        **fields,
    }


async def enroll(api: Api, flow_id: str, *contact_ids: str) -> httpx.Response:
    return await api.post(f"{PATH}/{flow_id}/enroll", json={"contactIds": list(contact_ids)})


async def enrolled(api: Api, flow_id: str, *contact_ids: str) -> dict[str, Any]:
    response = await enroll(api, flow_id, *contact_ids)
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    return response.json()["data"]  # type: ignore[no-any-return]


def refused_state(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["success"] is False and body["code"] == "INVALID_STATE", body
    assert body["error"]
    return body  # type: ignore[no-any-return]


# Activation and deactivation --------------------------------------------------------------------


async def test_activate_makes_the_flow_active_as_version_1(
    api: Api, template_ids: tuple[str, str]
) -> None:
    flow = await create_flow(api, send_flow(template_ids[0]))
    assert (flow["status"], flow["version"], flow["activatedAt"]) == ("draft", 0, None)

    response = await api.post(f"{PATH}/{flow['id']}/activate")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert data["status"] == "active" and data["version"] == 1
    assert data["activatedAt"] is not None
    got = (await api.get(f"{PATH}/{flow['id']}")).json()["data"]
    assert (got["status"], got["version"], got["activatedAt"]) == ("active", 1, data["activatedAt"])


async def test_activating_an_active_flow_is_refused(
    api: Api, template_ids: tuple[str, str]
) -> None:
    flow = await create_flow(api, send_flow(template_ids[0]))
    await activate(api, flow["id"])

    refused_state(await api.post(f"{PATH}/{flow['id']}/activate"))

    got = (await api.get(f"{PATH}/{flow['id']}")).json()["data"]
    assert (got["status"], got["version"]) == ("active", 1)


async def test_deactivating_a_draft_is_refused(api: Api, template_ids: tuple[str, str]) -> None:
    flow = await create_flow(api, send_flow(template_ids[0]))

    refused_state(await api.post(f"{PATH}/{flow['id']}/deactivate"))

    assert (await api.get(f"{PATH}/{flow['id']}")).json()["data"]["status"] == "draft"


async def test_an_active_flow_cannot_be_updated_and_stays_as_it_was(
    api: Api, template_ids: tuple[str, str]
) -> None:
    flow = await create_flow(api, send_flow(template_ids[0]))
    active = await activate(api, flow["id"])

    body = refused_state(
        await api.put(f"{PATH}/{flow['id']}", json={"name": "Changed", "reentry": "after_exit"})
    )

    assert "deactivate" in body["error"]
    got = (await api.get(f"{PATH}/{flow['id']}")).json()["data"]
    assert got["name"] == "Manual" and got["reentry"] == "never"
    assert got["updatedAt"] == active["updatedAt"] and got["version"] == 1


async def test_after_deactivate_the_flow_can_be_edited_and_activates_as_version_2(
    api: Api, template_ids: tuple[str, str]
) -> None:
    flow = await create_flow(api, send_flow(template_ids[0]))
    await activate(api, flow["id"])

    deactivated = await api.post(f"{PATH}/{flow['id']}/deactivate")
    updated = await api.put(f"{PATH}/{flow['id']}", json={"name": "Second edition"})
    again = await activate(api, flow["id"])

    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json()["data"]["status"] == "inactive"
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["name"] == "Second edition"
    assert updated.json()["data"]["status"] == "inactive"
    assert again["version"] == 2 and again["name"] == "Second edition"


async def test_runs_keep_the_version_they_started_with(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, template_ids: tuple[str, str]
) -> None:
    welcome, gift = template_ids
    world = await people(api, x_admin, sessions, 2)
    first, second = world.contact_ids
    flow = await create_flow(api, send_flow(welcome))
    await activate(api, flow["id"])
    assert (await enrolled(api, flow["id"], first))["enrolled"] == 1
    await settled(api, flow["id"])

    await api.post(f"{PATH}/{flow['id']}/deactivate")
    edit = send_flow(gift)
    edit["nodes"][0]["config"]["variables"] = {"shop_name": "Ao"}
    assert (await api.put(f"{PATH}/{flow['id']}", json={"nodes": edit["nodes"]})).status_code == 200
    assert (await activate(api, flow["id"]))["version"] == 2
    assert (await enrolled(api, flow["id"], second))["enrolled"] == 1
    runs = await settled(api, flow["id"], 2)

    by_contact = {r["contactId"]: r for r in runs}
    assert by_contact[first]["flowVersion"] == 1 and by_contact[first]["status"] == "completed"
    assert by_contact[second]["flowVersion"] == 2 and by_contact[second]["status"] == "completed"
    first_dms = await x_admin.dms(recipient_id=world.users[0].id)
    second_dms = await x_admin.dms(recipient_id=world.users[1].id)
    assert [dm.text for dm in first_dms] == ["Hi Person0, thanks for following!"]
    assert [dm.text for dm in second_dms] == ["Person1, Ao has a gift for you"]


# Delete -----------------------------------------------------------------------------------------


async def test_an_active_flow_cannot_be_deleted(api: Api, template_ids: tuple[str, str]) -> None:
    flow = await create_flow(api, send_flow(template_ids[0]))
    await activate(api, flow["id"])

    body = refused_state(await api.delete(f"{PATH}/{flow['id']}"))

    assert "deactivate" in body["error"]
    assert (await api.get(f"{PATH}/{flow['id']}")).json()["data"]["status"] == "active"


async def test_deleting_an_inactive_flow_removes_it_and_its_executions(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, template_ids: tuple[str, str]
) -> None:
    world = await people(api, x_admin, sessions, 1)
    flow = await create_flow(api, send_flow(template_ids[0]))
    await activate(api, flow["id"])
    await enrolled(api, flow["id"], *world.contact_ids)
    (run,) = await settled(api, flow["id"])
    await api.post(f"{PATH}/{flow['id']}/deactivate")

    deleted = await api.delete(f"{PATH}/{flow['id']}")

    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"success": True, "data": None}
    for path in (
        f"{PATH}/{flow['id']}",
        f"{PATH}/{flow['id']}/executions",
        f"{PATH}/{flow['id']}/executions/{run['id']}",
    ):
        gone = await api.get(path)
        assert gone.status_code == 404, (path, gone.text)
        assert gone.json()["success"] is False and gone.json()["code"] == "RESOURCE_NOT_FOUND"
    async with sessions() as session:
        flow_id = uuid.UUID(flow["id"])
        runs = await session.scalar(
            select(func.count()).select_from(FlowRun).where(col(FlowRun.flow_id) == flow_id)
        )
        versions = await session.scalar(
            select(func.count()).select_from(FlowVersion).where(col(FlowVersion.flow_id) == flow_id)
        )
    assert (runs, versions) == (0, 0)


async def test_a_template_used_by_an_active_flow_cannot_be_deleted(
    api: Api, template_ids: tuple[str, str]
) -> None:
    welcome, _ = template_ids
    flow = await create_flow(api, send_flow(welcome))
    await activate(api, flow["id"])

    while_active = await api.delete(f"/templates/{welcome}")
    await api.post(f"{PATH}/{flow['id']}/deactivate")
    once_inactive = await api.delete(f"/templates/{welcome}")

    assert while_active.status_code == 409, while_active.text
    assert while_active.json()["success"] is False
    assert while_active.json()["details"]["usedBy"] == ["flow 'Manual' (active)"]
    assert once_inactive.status_code == 200, once_inactive.text


# Enrolment --------------------------------------------------------------------------------------


async def test_enroll_counts_the_enrolled_and_names_why_others_were_skipped(
    api: Api,
    app_client: httpx.AsyncClient,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    template_ids: tuple[str, str],
) -> None:
    world = await people(api, x_admin, sessions, 2)
    good, stopped = world.contact_ids
    response = await post_signed(app_client, inbound(world.shop, world.users[1], "STOP"))
    assert response.status_code == 200, response.text
    contact = await eventually(
        lambda: api.get(f"/contacts/{stopped}"), lambda r: r.json()["data"]["optedOut"] is True
    )
    assert contact.json()["data"]["optedOut"] is True
    flow = await create_flow(api, send_flow(template_ids[0]))
    await activate(api, flow["id"])
    unknown = str(uuid.uuid4())

    result = await enrolled(api, flow["id"], good, unknown, stopped)

    assert result["enrolled"] == 1
    assert sorted(result["skipped"], key=lambda s: s["reason"]) == [
        {"contactId": unknown, "reason": "not_found"},
        {"contactId": stopped, "reason": "opted_out"},
    ]
    (run,) = await settled(api, flow["id"])
    assert run["contactId"] == good and run["status"] == "completed"


async def test_a_draft_flow_enrols_nobody(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, template_ids: tuple[str, str]
) -> None:
    world = await people(api, x_admin, sessions, 1)
    flow = await create_flow(api, send_flow(template_ids[0]))

    body = refused_state(await enroll(api, flow["id"], *world.contact_ids))

    assert "activate" in body["error"]
    assert await executions(api, flow["id"]) == []


async def test_enroll_takes_at_most_1000_contacts(api: Api, template_ids: tuple[str, str]) -> None:
    flow = await create_flow(api, send_flow(template_ids[0]))
    await activate(api, flow["id"])

    response = await enroll(api, flow["id"], *(str(uuid.uuid4()) for _ in range(1001)))

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False and body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == "contactIds", body
    assert await executions(api, flow["id"]) == []


# Re-entry ---------------------------------------------------------------------------------------


async def test_reentry_never_a_contact_who_went_through_is_not_enrolled_again(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, template_ids: tuple[str, str]
) -> None:
    world = await people(api, x_admin, sessions, 1)
    (contact,) = world.contact_ids
    flow = await create_flow(api, send_flow(template_ids[0]))
    assert flow["reentry"] == "never"
    await activate(api, flow["id"])
    await enrolled(api, flow["id"], contact)
    await settled(api, flow["id"])

    again = await enrolled(api, flow["id"], contact)

    assert again == {"enrolled": 0, "skipped": [{"contactId": contact, "reason": "already_ran"}]}
    runs = await executions(api, flow["id"])
    assert [r["status"] for r in runs] == ["completed"]
    assert len(await x_admin.dms(recipient_id=world.users[0].id)) == 1


async def test_reentry_after_exit_runs_again_once_the_run_ended_never_two_at_once(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, template_ids: tuple[str, str]
) -> None:
    world = await people(api, x_admin, sessions, 1)
    (contact,) = world.contact_ids
    flow = await create_flow(api, send_flow(template_ids[0], wait=2, reentry="after_exit"))
    await activate(api, flow["id"])
    assert (await enrolled(api, flow["id"], contact))["enrolled"] == 1

    while_running = await enrolled(api, flow["id"], contact)
    await settled(api, flow["id"])
    after_exit = await enrolled(api, flow["id"], contact)
    runs = await settled(api, flow["id"], 2)

    assert while_running == {
        "enrolled": 0,
        "skipped": [{"contactId": contact, "reason": "already_enrolled"}],
    }
    assert after_exit == {"enrolled": 1, "skipped": []}
    assert [(r["contactId"], r["status"]) for r in runs] == [(contact, "completed")] * 2
    assert runs[0]["id"] != runs[1]["id"]
    dms = await x_admin.dms(recipient_id=world.users[0].id)
    assert [dm.text for dm in dms] == ["Hi Person0, thanks for following!"] * 2


# Executions -------------------------------------------------------------------------------------


def fast_or_slow_flow() -> dict[str, Any]:
    """Contacts tagged `fast` end at once; the others wait 30 s."""
    return {
        "name": "Fast or slow",
        "trigger": {"type": "manual", "config": {}},
        "nodes": [
            {
                "id": "check",
                "type": "condition",
                "config": {
                    "match": "all",
                    "conditions": [{"field": "tags", "operator": "contains", "value": "fast"}],
                },
            },
            {"id": "done", "type": "end", "config": {}},
            {"id": "linger", "type": "wait", "config": {"duration": 30}},
        ],
        "connections": [
            {"fromNodeId": "check", "toNodeId": "done", "branch": "true"},
            {"fromNodeId": "check", "toNodeId": "linger", "branch": "false"},
        ],
    }


async def test_executions_filter_by_status_and_contact_and_page(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    fast = await people(api, x_admin, sessions, 2, tags=["fast"])
    slow = await people(api, x_admin, sessions, 1)
    flow = await create_flow(api, fast_or_slow_flow())
    await activate(api, flow["id"])
    assert (await enrolled(api, flow["id"], *fast.contact_ids, *slow.contact_ids))["enrolled"] == 3
    await settled(api, flow["id"], 2)
    await eventually(
        lambda: executions(api, flow["id"], status="running"),
        lambda r: bool(r) and r[0]["currentNodeId"] == "linger",
    )

    completed = await executions(api, flow["id"], status="completed")
    running = await executions(api, flow["id"], status="running")
    failed = await executions(api, flow["id"], status="failed")
    one = await executions(api, flow["id"], contactId=fast.contact_ids[0])
    first_page = await api.get(f"{PATH}/{flow['id']}/executions", params={"take": 2})
    second_page = await api.get(f"{PATH}/{flow['id']}/executions", params={"skip": 2, "take": 2})
    bad_status = await api.get(f"{PATH}/{flow['id']}/executions", params={"status": "paused"})

    assert sorted(r["contactId"] for r in completed) == sorted(fast.contact_ids)
    assert all(r["currentNodeId"] is None and r["completedAt"] for r in completed)
    assert [(r["contactId"], r["currentNodeId"]) for r in running] == [
        (slow.contact_ids[0], "linger")
    ]
    assert running[0]["completedAt"] is None and running[0]["exitReason"] is None
    assert failed == []
    assert [r["contactId"] for r in one] == [fast.contact_ids[0]]
    assert one[0]["flowId"] == flow["id"] and one[0]["flowVersion"] == 1
    pages = [first_page.json(), second_page.json()]
    assert [len(p["data"]) for p in pages] == [2, 1]
    assert pages[0]["pagination"]["total"] == 3 and pages[1]["pagination"]["total"] == 3
    ids = {r["id"] for p in pages for r in p["data"]}
    assert len(ids) == 3
    assert bad_status.status_code == 422 and bad_status.json()["code"] == "VALIDATION_ERROR"
    stats = await statistics(api, flow["id"])
    assert stats == {"running": 1, "completed": 2, "failed": 0, "exited": 0, "cancelled": 0}
    await api.post(f"{PATH}/{flow['id']}/deactivate")  # the waiting run goes


async def test_an_execution_detail_lists_its_steps(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, template_ids: tuple[str, str]
) -> None:
    world = await people(api, x_admin, sessions, 1)
    flow = await create_flow(api, send_flow(template_ids[0], wait=1))
    await activate(api, flow["id"])
    await enrolled(api, flow["id"], *world.contact_ids)
    (run,) = await settled(api, flow["id"])

    response = await api.get(f"{PATH}/{flow['id']}/executions/{run['id']}")
    unknown = await api.get(f"{PATH}/{flow['id']}/executions/{uuid.uuid4()}")

    assert response.status_code == 200, response.text
    detail = response.json()["data"]
    assert {k: v for k, v in detail.items() if k != "steps"} == run
    assert [(s["nodeId"], s["type"], s["outcome"]) for s in detail["steps"]] == [
        ("send", "send_message", "sent"),
        ("wait", "wait", "waited"),
    ]
    assert all(s["startedAt"] and s["finishedAt"] for s in detail["steps"])
    (dm,) = await x_admin.dms(recipient_id=world.users[0].id)
    assert detail["steps"][0]["detail"]["dmEventId"] == dm.id
    assert detail["steps"][0]["detail"]["messageId"]
    assert unknown.status_code == 404 and unknown.json()["code"] == "RESOURCE_NOT_FOUND"
