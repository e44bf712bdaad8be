"""The campaign endpoints: shapes, every status transition and its errors, roles, tenancy, and
409s on templates and segments in use."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col

from models.db import SessionMaker, utcnow
from models.template import Template
from sandbox.admin import SandboxAdmin
from services.core.auth import Role
from tests.campaigns.conftest import make_world
from tests.conftest import Api

pytestmark = pytest.mark.usefixtures("worker")


async def test_create_get_update_and_validation(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=1)
    start = (utcnow() + timedelta(days=3)).replace(microsecond=0)
    campaign = await world.campaign(schedule={"startAt": start.isoformat(), "endAt": None})
    assert campaign["merchantId"] == api.merchant.id
    assert campaign["status"] == "draft"
    assert campaign["segmentIds"] == [world.segment_id]
    assert campaign["metrics"] == {
        "totalSent": 0,
        "delivered": 0,
        "opened": 0,
        "clicked": 0,
        "replied": 0,
        "failed": 0,
    }
    got = await api.get(f"/campaigns/{campaign['id']}")
    assert got.json()["data"]["schedule"]["startAt"].startswith(start.strftime("%Y-%m-%dT%H:%M"))

    renamed = await api.put(f"/campaigns/{campaign['id']}", json={"name": "January"})
    assert renamed.status_code == 200 and renamed.json()["data"]["name"] == "January"

    bad = await api.post("/campaigns", json={"name": "x", "segmentIds": [str(uuid.uuid4())]})
    assert bad.status_code == 422 and bad.json()["details"]["field"] == "segmentIds[0]"
    bad = await api.post("/campaigns", json={"name": "x", "templateId": str(uuid.uuid4())})
    assert bad.status_code == 422 and bad.json()["details"]["field"] == "templateId"
    bad = await api.post(
        "/campaigns",
        json={
            "name": "x",
            "schedule": {"startAt": "2026-01-02T00:00:00Z", "endAt": "2026-01-01T00:00:00Z"},
        },
    )
    assert bad.status_code == 422
    bad = await api.post(
        "/campaigns", json={"name": "x", "schedule": {"recurrence": {"frequency": "weekly"}}}
    )
    assert bad.status_code == 422

    listed = await api.get("/campaigns", params={"type": "promotional"})
    assert [c["id"] for c in listed.json()["data"]] == [campaign["id"]]
    assert (await api.get("/campaigns", params={"type": "engagement"})).json()["data"] == []


async def test_status_transitions_and_their_errors(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=1)
    no_segment = await world.campaign(segmentIds=[])
    response = await api.post(f"/campaigns/{no_segment['id']}/start")
    assert response.status_code == 400 and "segment" in response.json()["error"]

    no_template = await world.campaign(templateId=None)
    response = await api.post(f"/campaigns/{no_template['id']}/start")
    assert response.status_code == 400 and "template" in response.json()["error"]

    # A template that no longer holds (its stored variables disagree with its content).
    broken = await api.post("/templates", json={"name": "b", "content": "Hi {{name}}"})
    async with sessions() as session, session.begin():
        await session.execute(
            update(Template)
            .where(col(Template.id) == uuid.UUID(broken.json()["data"]["id"]))
            .values(variables=["name", "stray"])
        )
    invalid = await world.campaign(templateId=broken.json()["data"]["id"])
    response = await api.post(f"/campaigns/{invalid['id']}/start")
    assert response.status_code == 400 and "invalid" in response.json()["error"]

    later = (utcnow() + timedelta(days=10)).isoformat()
    campaign = await world.campaign(schedule={"startAt": later})
    for action in ("pause", "resume"):
        response = await api.post(f"/campaigns/{campaign['id']}/{action}")
        assert response.status_code == 400
        assert response.json()["details"]["status"] == "draft"
    assert (await world.start(campaign["id"]))["status"] == "scheduled"
    second = await api.post(f"/campaigns/{campaign['id']}/start")
    assert second.status_code == 409
    response = await api.post(f"/campaigns/{campaign['id']}/pause")
    assert response.status_code == 400 and response.json()["details"]["status"] == "scheduled"
    # Scheduled: still updatable, and its template and segment are in use.
    assert (await api.put(f"/campaigns/{campaign['id']}", json={"name": "n"})).status_code == 200
    assert (await api.delete(f"/templates/{world.template_id}")).status_code == 409
    assert (
        await api.put(f"/templates/{world.template_id}", json={"content": "Yo {{name}}"})
    ).status_code == 409
    assert (await api.delete(f"/segments/{world.segment_id}")).status_code == 409

    now = await world.campaign()
    await world.start(now["id"])
    await world.wait_status(now["id"], "completed")
    for action in ("pause", "resume"):
        response = await api.post(f"/campaigns/{now['id']}/{action}")
        assert response.status_code == 400
        assert "completed" in response.json()["error"]
    response = await api.post(f"/campaigns/{now['id']}/start")
    assert response.status_code == 400 and response.json()["details"]["status"] == "completed"
    response = await api.put(f"/campaigns/{now['id']}", json={"name": "late"})
    assert response.status_code == 400 and "completed" in response.json()["error"]


async def test_roles_and_another_merchant(
    api: Api, other_api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=1)
    campaign = await world.campaign()
    cid = campaign["id"]
    assert (await api.get(f"/campaigns/{cid}", role=Role.viewer)).status_code == 200
    assert (await api.get(f"/campaigns/{cid}/metrics", role=Role.viewer)).status_code == 200
    for method, path, body in [
        ("POST", "/campaigns", {"name": "v"}),
        ("PUT", f"/campaigns/{cid}", {"name": "v"}),
        ("POST", f"/campaigns/{cid}/start", None),
        ("POST", f"/campaigns/{cid}/pause", None),
        ("POST", f"/campaigns/{cid}/resume", None),
        ("POST", f"/campaigns/{cid}/test", {"contactIds": [str(world.contact_ids[0])]}),
    ]:
        response = await api.request(method, path, json=body, role=Role.viewer)
        assert response.status_code == 403, (method, path)

    for method, path, body in [
        ("GET", f"/campaigns/{cid}", None),
        ("PUT", f"/campaigns/{cid}", {"name": "mine"}),
        ("POST", f"/campaigns/{cid}/start", None),
        ("POST", f"/campaigns/{cid}/pause", None),
        ("POST", f"/campaigns/{cid}/resume", None),
        ("GET", f"/campaigns/{cid}/metrics", None),
        ("POST", f"/campaigns/{cid}/test", {"contactIds": [str(world.contact_ids[0])]}),
    ]:
        response = await other_api.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
    assert (await other_api.get("/campaigns")).json()["data"] == []
    # Another merchant's template or segment is not usable either.
    theirs = await other_api.post("/campaigns", json={"name": "x", "templateId": world.template_id})
    assert theirs.status_code == 422
    assert (await world.status(cid)) == "draft"
