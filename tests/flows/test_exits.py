"""Runs leaving a flow while they wait: the contact opts out (STOP), the flow is deactivated, the
contact is erased, the account is disconnected. Each time no further DM goes out. Real
PostgreSQL, the Temporal dev server and worker, signed webhooks and the sandbox's DM log.

The wait between the two sends is short (a few seconds) so that "no further DM" is checked
once the wait would have ended."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from temporalio.client import Client

from mktx.settings import Settings
from models.db import SessionMaker
from sandbox.admin import ReceivedDM, SandboxAdmin, SandboxUser
from services.accounts.accounts import refuse_tokens
from services.flows.exits import exit_unusable_runs
from tests.conftest import Api
from tests.flows.conftest import (
    People,
    activate,
    create_flow,
    executions,
    people,
    settled,
    statistics,
    steps,
)
from tests.webhooks.conftest import eventually, inbound, post_signed

PATH = "/automation/flows"
WAIT = 3  # seconds between the two DMs
FIRST = "Hi Person0, thanks for following!"


def two_dm_flow(template_ids: tuple[str, str], wait: int = WAIT) -> dict[str, Any]:
    """A manual flow: a DM, a wait, a second DM."""
    welcome, gift = template_ids
    return {
        "name": "Two DMs",
        "trigger": {"type": "manual", "config": {}},
        "nodes": [
            {"id": "first", "type": "send_message", "config": {"templateId": welcome}},
            {"id": "pause", "type": "wait", "config": {"duration": wait}},
            {
                "id": "second",
                "type": "send_message",
                "config": {"templateId": gift, "variables": {"shop_name": "Ao"}},
            },
        ],
        "connections": [
            {"fromNodeId": "first", "toNodeId": "pause"},
            {"fromNodeId": "pause", "toNodeId": "second"},
        ],
    }


async def waiting_runs(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    template_ids: tuple[str, str],
    n: int,
    wait: int = WAIT,
) -> tuple[People, dict[str, Any]]:
    """`n` contacts enrolled into an active two-DM flow, each with its first DM and waiting."""
    world = await people(api, x_admin, sessions, n)
    flow = await create_flow(api, two_dm_flow(template_ids, wait))
    await activate(api, flow["id"])
    response = await api.post(f"{PATH}/{flow['id']}/enroll", json={"contactIds": world.contact_ids})
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"enrolled": n, "skipped": []}
    for user in world.users:
        dms = await eventually(lambda u=user: x_admin.dms(recipient_id=u.id), bool, 20)  # type: ignore[misc]
        assert len(dms) == 1, dms
    runs = await eventually(
        lambda: executions(api, flow["id"]),
        lambda rs: len(rs) == n and all(r["currentNodeId"] == "pause" for r in rs),
    )
    assert all(r["status"] == "running" for r in runs), runs
    return world, flow


async def dms_after_the_wait(x_admin: SandboxAdmin, user: SandboxUser) -> list[ReceivedDM]:
    """What the user has received once the wait would have ended (and a little more)."""
    await asyncio.sleep(WAIT + 1.5)
    return await x_admin.dms(recipient_id=user.id)


async def test_stop_during_a_wait_exits_the_run_and_no_further_dm_goes_out(
    api: Api,
    app_client: httpx.AsyncClient,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    template_ids: tuple[str, str],
) -> None:
    world, flow = await waiting_runs(api, x_admin, sessions, template_ids, 1)
    (user,) = world.users

    response = await post_signed(app_client, inbound(world.shop, user, "STOP"))

    assert response.status_code == 200, response.text
    (run,) = await settled(api, flow["id"])
    assert (run["status"], run["exitReason"]) == ("exited", "opted_out")
    assert run["completedAt"] is not None and run["currentNodeId"] == "pause"
    dms = await dms_after_the_wait(x_admin, user)
    assert [dm.text for dm in dms] == [FIRST, settings.opt_out_confirmation]
    assert await steps(api, flow["id"], run["id"]) == [("first", "sent"), ("pause", "exited")]
    stats = await statistics(api, flow["id"])
    assert stats == {"running": 0, "completed": 0, "failed": 0, "exited": 1, "cancelled": 0}


async def test_deactivate_cancels_waiting_runs_at_once_and_no_further_dm_goes_out(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, template_ids: tuple[str, str]
) -> None:
    world, flow = await waiting_runs(api, x_admin, sessions, template_ids, 2)

    response = await api.post(f"{PATH}/{flow['id']}/deactivate")

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "inactive"
    assert data["statistics"] == {
        "running": 0,
        "completed": 0,
        "failed": 0,
        "exited": 0,
        "cancelled": 2,
    }
    runs = await executions(api, flow["id"])  # at once: no waiting for the workflows
    assert [r["status"] for r in runs] == ["cancelled"] * 2
    assert all(r["completedAt"] is not None for r in runs)
    for user in world.users:
        assert [dm.text for dm in await dms_after_the_wait(x_admin, user)] == [
            f"Hi {user.name}, thanks for following!"
        ]
    closed = await eventually(
        lambda: api.get(f"{PATH}/{flow['id']}/executions/{runs[0]['id']}"),
        lambda r: r.json()["data"]["steps"][-1]["finishedAt"] is not None,
    )
    assert [(s["nodeId"], s["outcome"]) for s in closed.json()["data"]["steps"]] == [
        ("first", "sent"),
        ("pause", "cancelled"),
    ]
    assert [r["status"] for r in await executions(api, flow["id"])] == ["cancelled"] * 2


async def test_erasing_a_contact_during_a_wait_removes_its_run_and_no_further_dm_goes_out(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, template_ids: tuple[str, str]
) -> None:
    world, flow = await waiting_runs(api, x_admin, sessions, template_ids, 1)
    (contact,) = world.contact_ids
    (run,) = await executions(api, flow["id"])

    response = await api.delete(f"/contacts/{contact}")

    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    assert await executions(api, flow["id"]) == []
    assert await executions(api, flow["id"], contactId=contact) == []
    gone = await api.get(f"{PATH}/{flow['id']}/executions/{run['id']}")
    assert gone.status_code == 404 and gone.json()["code"] == "RESOURCE_NOT_FOUND"
    assert [dm.text for dm in await dms_after_the_wait(x_admin, world.users[0])] == [FIRST]
    assert await executions(api, flow["id"]) == []
    stats = await statistics(api, flow["id"])
    assert stats == {"running": 0, "completed": 0, "failed": 0, "exited": 0, "cancelled": 0}


async def test_disconnecting_the_account_during_a_wait_exits_the_run_and_no_further_dm(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, template_ids: tuple[str, str]
) -> None:
    world, flow = await waiting_runs(api, x_admin, sessions, template_ids, 1)

    response = await api.delete(f"/accounts/{world.shop.account_id}")

    assert response.status_code == 200, response.text
    (run,) = await settled(api, flow["id"])
    assert (run["status"], run["exitReason"]) == ("exited", "account_unusable")
    assert run["completedAt"] is not None
    assert [dm.text for dm in await dms_after_the_wait(x_admin, world.users[0])] == [FIRST]
    stats = await statistics(api, flow["id"])
    assert stats == {"running": 0, "completed": 0, "failed": 0, "exited": 1, "cancelled": 0}


async def test_a_refused_token_exits_waiting_runs_through_the_maintenance_step(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    temporal_client: Client,
    template_ids: tuple[str, str],
) -> None:
    world, flow = await waiting_runs(api, x_admin, sessions, template_ids, 1, wait=3600)
    async with sessions() as session, session.begin():  # X refused the token (as delivery does)
        await refuse_tokens(session, [world.shop.account_id])

    assert await exit_unusable_runs(sessions, temporal_client) == 1

    (run,) = await executions(api, flow["id"])
    assert (run["status"], run["exitReason"]) == ("exited", "account_unusable")
    # The workflow heard it at once: it ended, an hour before its wait would have.
    handle = temporal_client.get_workflow_handle(f"flow:{flow['id']}:{world.contact_ids[0]}")
    result = await asyncio.wait_for(handle.result(), timeout=20)
    assert result["status"] == "exited"
    assert await steps(api, flow["id"], run["id"]) == [("first", "sent"), ("pause", "exited")]
    assert len(await x_admin.dms(recipient_id=world.users[0].id)) == 1
