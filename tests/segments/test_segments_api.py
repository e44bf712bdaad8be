"""Segment Management endpoints: shapes, counts kept current, preview, update, delete and 409,
roles, and another merchant's segments answering 404."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from models.contact import Contact
from models.db import SessionMaker, utcnow
from sandbox.admin import SandboxAdmin
from services.core.auth import Role
from tests.campaigns.conftest import make_world
from tests.conftest import Api
from tests.segments.conftest import Seeded, account_row, contact_row, create_segment

VIP = {"field": "tags", "operator": "contains", "value": "vip"}


async def test_create_answers_the_documented_shape(api: Api, seeded: Seeded) -> None:
    segment = await create_segment(api, [VIP])

    uuid.UUID(segment["id"])
    assert segment["merchantId"] == api.merchant.id
    assert segment["name"] == "Segment"
    assert segment["match"] == "all"
    assert segment["conditions"] == [VIP]
    assert segment["contactCount"] == 2
    assert segment["createdAt"].endswith(("Z", "+00:00"))


async def test_contact_count_is_current_when_read(
    api: Api, seeded: Seeded, sessions: SessionMaker
) -> None:
    segment = await create_segment(api, [VIP])
    async with sessions() as session, session.begin():
        session.add(contact_row(seeded.merchant_id, seeded.account_ids[0], tags=["vip"]))
        await session.execute(
            update(Contact)
            .where(Contact.id == seeded.contact_ids["alice"])  # type: ignore[arg-type]
            .values(tags=["newsletter"])
        )

    got = (await api.get(f"/segments/{segment['id']}")).json()["data"]
    listed = (await api.get("/segments")).json()["data"]

    assert got["contactCount"] == 2  # dave and the newcomer; alice lost the tag
    assert [s["contactCount"] for s in listed] == [2]


async def test_list_counts_each_segment_of_the_page(api: Api, seeded: Seeded) -> None:
    await create_segment(api, [VIP])
    await create_segment(api, [{"field": "optedOut", "operator": "equals", "value": True}])
    await create_segment(api, [])

    response = await api.get("/segments", params={"take": 2})
    body = response.json()

    assert response.status_code == 200
    assert body["pagination"] == {
        "page": 1,
        "limit": 2,
        "total": 3,
        "totalPages": 2,
        "totalIsEstimate": False,
    }
    assert [s["contactCount"] for s in body["data"]] == [4, 1]  # newest first
    second = (await api.get("/segments", params={"take": 2, "skip": 2})).json()["data"]
    assert [s["contactCount"] for s in second] == [2]


async def test_list_searches_names(api: Api) -> None:
    for name in ("VIP buyers", "Newsletter", "100% loyal"):
        assert (await api.post("/segments", json={"name": name, "conditions": []})).is_success

    found = (await api.get("/segments", params={"search": "vip"})).json()["data"]
    percent = (await api.get("/segments", params={"search": "%"})).json()["data"]

    assert [s["name"] for s in found] == ["VIP buyers"]
    assert [s["name"] for s in percent] == ["100% loyal"]


async def test_preview_sample_shape_order_and_limit(api: Api, seeded: Seeded) -> None:
    segment = await create_segment(api, [])

    default = (await api.post(f"/segments/{segment['id']}/preview")).json()["data"]
    two = (await api.post(f"/segments/{segment['id']}/preview", params={"limit": 2})).json()

    assert default["totalMatches"] == 4
    # most recently active first; never interacted last
    assert seeded.names([r["id"] for r in default["preview"]]) == {"alice", "bob", "carol", "dave"}
    assert [r["username"] for r in default["preview"]] == ["alice_shop", None, "bob", "Carol_X"]
    assert default["preview"][0] == {
        "id": str(seeded.contact_ids["alice"]),
        "username": "alice_shop",
        "displayName": "Alice Nguyen",
        "tags": ["vip", "newsletter"],
        "attributes": {
            "purchaseCount": 8,
            "tier": "gold",
            "interests": ["shoes", "bags"],
            "city": "Hanoi",
        },
    }
    assert two["data"]["totalMatches"] == 4
    assert len(two["data"]["preview"]) == 2


@pytest.mark.parametrize("limit", [0, 51, "ten"])
async def test_preview_limit_is_bounded(api: Api, limit: Any) -> None:
    segment = await create_segment(api, [])

    response = await api.post(f"/segments/{segment['id']}/preview", params={"limit": limit})

    assert response.status_code == 422
    assert response.json()["details"]["field"] == "limit"


async def test_preview_limit_of_fifty_is_allowed(api: Api, seeded: Seeded) -> None:
    segment = await create_segment(api, [])
    response = await api.post(f"/segments/{segment['id']}/preview", params={"limit": 50})
    assert response.status_code == 200
    assert len(response.json()["data"]["preview"]) == 4


async def test_update_name_match_and_conditions(api: Api, seeded: Seeded) -> None:
    optout = {"field": "optedOut", "operator": "equals", "value": True}
    segment = await create_segment(api, [VIP, optout])
    assert segment["contactCount"] == 0

    renamed = (await api.put(f"/segments/{segment['id']}", json={"name": "Either"})).json()
    anyof = (await api.put(f"/segments/{segment['id']}", json={"match": "any"})).json()
    narrowed = (await api.put(f"/segments/{segment['id']}", json={"conditions": [optout]})).json()

    assert renamed["data"]["name"] == "Either"
    assert renamed["data"]["conditions"] == [VIP, optout]
    assert anyof["data"]["match"] == "any"
    assert anyof["data"]["contactCount"] == 3
    assert narrowed["data"]["conditions"] == [optout]
    assert narrowed["data"]["contactCount"] == 1
    assert narrowed["data"]["name"] == "Either"


async def test_update_refuses_null_for_kept_fields(api: Api) -> None:
    segment = await create_segment(api, [])
    response = await api.put(f"/segments/{segment['id']}", json={"name": None})
    assert response.status_code == 422
    assert response.json()["details"]["field"] == "name"


async def test_delete_then_gone(api: Api) -> None:
    segment = await create_segment(api, [VIP])

    deleted = await api.delete(f"/segments/{segment['id']}")

    assert deleted.status_code == 200
    assert deleted.json() == {"success": True, "data": None}
    assert (await api.get(f"/segments/{segment['id']}")).status_code == 404


async def test_delete_of_a_segment_in_use_is_a_conflict(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    """A scheduled campaign on the segment (the real usage check campaigns register)."""
    world = await make_world(api, x_admin, sessions, recipients=1)
    later = (utcnow() + timedelta(days=10)).isoformat()
    campaign = await world.campaign(name="January Promotion", schedule={"startAt": later})
    assert (await world.start(campaign["id"]))["status"] == "scheduled"
    draft = await world.campaign(name="Not yet")  # a draft uses nothing yet
    free = await create_segment(api, [])
    path = f"/segments/{world.segment_id}"

    response = await api.delete(path)

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "CONFLICT"
    assert body["error"] == "segment is used by campaign 'January Promotion' (scheduled)"
    assert body["details"]["id"] == world.segment_id
    assert body["details"]["usedBy"] == ["campaign 'January Promotion' (scheduled)"]
    assert draft["status"] == "draft"
    assert (await api.get(path)).status_code == 200
    # updating a segment in use stays allowed: each campaign run re-evaluates it
    assert (await api.put(path, json={"name": "New"})).status_code == 200
    assert (await api.get(path)).json()["data"]["name"] == "New"
    assert (await api.delete(f"/segments/{free['id']}")).status_code == 200
    assert (await api.get(f"/segments/{free['id']}")).status_code == 404


async def test_another_merchant_gets_404_everywhere(api: Api, other_api: Api) -> None:
    segment = await create_segment(api, [VIP])
    path = f"/segments/{segment['id']}"

    answers = [
        await other_api.get(path),
        await other_api.put(path, json={"name": "Mine"}),
        await other_api.delete(path),
        await other_api.post(f"{path}/preview"),
    ]

    assert [r.status_code for r in answers] == [404] * 4
    assert all(r.json()["code"] == "RESOURCE_NOT_FOUND" for r in answers)
    assert (await other_api.get("/segments")).json()["data"] == []
    assert (await api.get(path)).json()["data"]["name"] == "Segment"


async def test_an_unknown_segment_is_404(api: Api) -> None:
    response = await api.get(f"/segments/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json()["details"]["resource"] == "segment"


@pytest.mark.parametrize("role", [Role.viewer, Role.agent])
async def test_only_marketing_may_change_segments(api: Api, seeded: Seeded, role: Role) -> None:
    segment = await create_segment(api, [VIP])
    path = f"/segments/{segment['id']}"

    changes = [
        await api.post("/segments", json={"name": "X", "conditions": []}, role=role),
        await api.put(path, json={"name": "X"}, role=role),
        await api.delete(path, role=role),
    ]
    reads = [
        await api.get("/segments", role=role),
        await api.get(path, role=role),
        await api.post(f"{path}/preview", role=role),
    ]

    assert [r.status_code for r in changes] == [403] * 3
    assert all(r.json()["code"] == "FORBIDDEN" for r in changes)
    assert [r.status_code for r in reads] == [200] * 3
    # Nothing changed: no segment added, this one neither renamed nor deleted.
    assert [s["id"] for s in (await api.get("/segments")).json()["data"]] == [segment["id"]]
    assert (await api.get(path)).json()["data"] == reads[1].json()["data"] == segment


async def test_contacts_of_another_merchant_never_count(
    api: Api, other_api: Api, seeded: Seeded, sessions: SessionMaker
) -> None:
    async with sessions() as session, session.begin():
        account = account_row(other_api.merchant.id)
        session.add(account)
        await session.flush()
        session.add(contact_row(other_api.merchant.id, account.id, tags=["vip"]))

    mine = await create_segment(api, [VIP])
    theirs = await create_segment(other_api, [VIP])

    assert mine["contactCount"] == 2
    assert theirs["contactCount"] == 1
