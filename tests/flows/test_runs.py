"""Running flows over HTTP: real PostgreSQL, the real Temporal dev server and worker, signed
webhooks into the API and the sandbox's DM log as the judge (short waits here; the day-long
ones on the time-skipping server in test_long_waits.py)."""

from __future__ import annotations

from typing import Any

import httpx

from sandbox.admin import SandboxAdmin
from tests.conftest import Api
from tests.flows.conftest import activate, create_flow, executions, spec_flow
from tests.webhooks.conftest import (
    connect,
    eventually,
    follow_payload,
    post_signed,
    x_user,
)


async def test_spec_flow_end_to_end_a_follow_gets_two_dms_and_a_completed_execution(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin, template_ids: tuple[str, str]
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    body: dict[str, Any] = spec_flow(template_ids)
    body["nodes"][1]["config"]["duration"] = 1
    flow = await create_flow(api, body)
    await activate(api, flow["id"])
    fan = await x_user(x_admin, "fan", name="Lan")

    response = await post_signed(app_client, follow_payload(shop, fan))
    assert response.status_code == 200

    dms = await eventually(lambda: x_admin.dms(recipient_id=fan.id), lambda d: len(d) >= 2, 30)
    assert [dm.text for dm in dms] == [
        "Hi Lan, thanks for following!",
        "Lan, Ao has a gift for you",
    ]
    runs = await eventually(
        lambda: executions(api, flow["id"]), lambda r: r and r[0]["status"] == "completed"
    )
    (run,) = runs
    assert run["currentNodeId"] is None and run["completedAt"] is not None
    assert run["flowVersion"] == 1
    detail = (await api.get(f"/automation/flows/{flow['id']}/executions/{run['id']}")).json()[
        "data"
    ]
    assert [(s["nodeId"], s["outcome"]) for s in detail["steps"]] == [
        ("node-1", "sent"),
        ("node-2", "waited"),
        ("node-3", "sent"),
    ]
    assert all(s["finishedAt"] for s in detail["steps"])
    stats = (await api.get(f"/automation/flows/{flow['id']}")).json()["data"]["statistics"]
    assert stats == {"running": 0, "completed": 1, "failed": 0, "exited": 0, "cancelled": 0}
