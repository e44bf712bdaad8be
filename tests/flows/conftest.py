"""For the flow tests: flow documents (two templates of the test's merchant, and the spec's
example flow built on them), the people they run for (a connected shop and sandbox users stored
as its contacts), reading a flow's executions over the API, and the time-skipping server."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from mktx.settings import Settings
from models.contact import Contact
from models.db import SessionMaker
from sandbox.admin import SandboxAdmin, SandboxUser
from tests.conftest import Api
from tests.time_skipping import SkippingTemporal, time_skipping_worker
from tests.webhooks.conftest import Shop, connect, eventually, x_user
from worker import ACTIVITY_BUILDERS, ALL_WORKFLOWS


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


async def settled(api: Api, flow_id: str, count: int = 1, **params: Any) -> list[dict[str, Any]]:
    """The flow's executions once `count` of them are no longer running."""
    return await eventually(
        lambda: executions(api, flow_id, **params),
        lambda runs: sum(r["status"] != "running" for r in runs) >= count,
        30,
    )


async def steps(api: Api, flow_id: str, execution_id: str) -> list[tuple[str, str | None]]:
    """The (node, outcome) of each step of the execution, in order."""
    response = await api.get(f"/automation/flows/{flow_id}/executions/{execution_id}")
    assert response.status_code == 200, response.text
    return [(s["nodeId"], s["outcome"]) for s in response.json()["data"]["steps"]]


async def statistics(api: Api, flow_id: str) -> dict[str, int]:
    response = await api.get(f"/automation/flows/{flow_id}")
    assert response.status_code == 200, response.text
    return response.json()["data"]["statistics"]  # type: ignore[no-any-return]


# People ------------------------------------------------------------------------------------


async def add_contacts(
    sessions: SessionMaker,
    api: Api,
    shop: Shop,
    users: list[SandboxUser],
    tags: list[str] | None = None,
) -> list[uuid.UUID]:
    """The users as contacts of the shop's account (as follows would have made them)."""
    ids: list[uuid.UUID] = []
    async with sessions() as session, session.begin():
        for user in users:
            contact = Contact(
                merchant_id=api.merchant.id,
                account_id=shop.account_id,
                twitter_user_id=user.id,
                username=user.username,
                display_name=user.name,
                tags=list(tags or []),
            )
            session.add(contact)
            ids.append(contact.id)
    return ids


async def add_contact(sessions: SessionMaker, api: Api, shop: Shop, user: SandboxUser) -> uuid.UUID:
    (contact_id,) = await add_contacts(sessions, api, shop, [user])
    return contact_id


@dataclass
class People:
    """A connected shop and sandbox users stored as its contacts."""

    shop: Shop
    users: list[SandboxUser]
    contact_ids: list[str]


async def people(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    n: int = 1,
    tags: list[str] | None = None,
) -> People:
    """A connected shop of the merchant and `n` sandbox users (Person0, Person1, ...) stored as
    its contacts, with `tags`."""
    shop = await connect(api, await x_user(x_admin, "shop", name="Shop"))
    users = [await x_user(x_admin, f"p{i}", name=f"Person{i}") for i in range(n)]
    ids = await add_contacts(sessions, api, shop, users, tags)
    return People(shop, users, [str(i) for i in ids])


# Time skipping ---------------------------------------------------------------------------


@pytest.fixture
async def flow_skipping(
    settings: Settings, sessions: SessionMaker
) -> AsyncIterator[SkippingTemporal]:
    """Temporal's time-skipping test server and a worker with every workflow and activity (as
    `worker.build_worker` registers them) on a queue of its own, which the activities' own
    starts (a tag's trigger) use too."""
    queue = f"flow-skip-{uuid.uuid4().hex[:8]}"
    async with time_skipping_worker(
        settings,
        sessions,
        task_queue=queue,
        workflows=ALL_WORKFLOWS,
        activity_builders=ACTIVITY_BUILDERS,
        settings_update={"task_queue": queue},
    ) as skipping:
        yield skipping
