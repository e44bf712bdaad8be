"""Each node type over HTTP, on the real Temporal dev server and worker: a contact (made by an
inbound DM, which also opens its conversation) is enrolled into a manual flow through the
enroll endpoint; the sandbox's DM log, the execution's steps and the contacts and
conversations APIs show what each node did. Waits are a second or two."""

from __future__ import annotations

from typing import Any

import httpx

from sandbox.admin import SandboxAdmin, SandboxUser
from tests.conftest import Api
from tests.flows.conftest import activate, create_flow, create_template, executions
from tests.webhooks.conftest import Shop, connect, eventually, inbound, post_signed, x_user

TIMEOUT = 30.0
MANUAL = {"type": "manual", "config": {}}


def send(node_id: str, template_id: str, **config: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "send_message",
        "config": {"templateId": template_id, **config},
    }


def link(source: str, target: str, branch: str | None = None) -> dict[str, Any]:
    connection = {"fromNodeId": source, "toNodeId": target}
    if branch is not None:
        connection["branch"] = branch
    return connection


def chain(*node_ids: str) -> list[dict[str, Any]]:
    return [link(a, b) for a, b in zip(node_ids, node_ids[1:], strict=False)]


async def manual_flow(
    api: Api, nodes: list[dict[str, Any]], connections: list[dict[str, Any]]
) -> dict[str, Any]:
    flow = await create_flow(
        api, {"name": "Nodes", "trigger": MANUAL, "nodes": nodes, "connections": connections}
    )
    await activate(api, flow["id"])
    return flow


class Fan:
    """A contact of a connected shop, made by its first inbound DM (its conversation is open)."""

    def __init__(self, shop: Shop, user: SandboxUser, contact_id: str) -> None:
        self.shop, self.user, self.contact_id = shop, user, contact_id


async def write(app_client: httpx.AsyncClient, shop: Shop, user: SandboxUser, text: str) -> None:
    response = await post_signed(app_client, inbound(shop, user, text))
    assert response.status_code == 200, response.text


async def a_fan(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin, name: str = "Lan"
) -> Fan:
    shop = await connect(api, await x_user(x_admin, "shop"))
    user = await x_user(x_admin, "fan", name=name)
    await write(app_client, shop, user, "hi")
    response = await api.get("/contacts", params={"search": user.username})
    assert response.status_code == 200, response.text
    (contact,) = [c for c in response.json()["data"] if c["twitterUserId"] == user.id]
    return Fan(shop, user, str(contact["id"]))


async def enroll(api: Api, flow: dict[str, Any], fan: Fan) -> None:
    response = await api.post(
        f"/automation/flows/{flow['id']}/enroll", json={"contactIds": [fan.contact_id]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"enrolled": 1, "skipped": []}


async def the_run(api: Api, flow: dict[str, Any]) -> dict[str, Any]:
    """The flow's one run, once it has ended (or the timeout passed), with its steps."""
    runs = await eventually(
        lambda: executions(api, flow["id"]),
        lambda r: len(r) == 1 and r[0]["status"] != "running",
        TIMEOUT,
    )
    (run,) = runs
    response = await api.get(f"/automation/flows/{flow['id']}/executions/{run['id']}")
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def outcomes(run: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["nodeId"], s["outcome"]) for s in run["steps"]]


def step(run: dict[str, Any], node_id: str) -> dict[str, Any]:
    (found,) = [s for s in run["steps"] if s["nodeId"] == node_id]
    return found  # type: ignore[no-any-return]


async def dms_to(x_admin: SandboxAdmin, fan: Fan, count: int = 1) -> list[str]:
    dms = await eventually(
        lambda: x_admin.dms(recipient_id=fan.user.id), lambda d: len(d) >= count, TIMEOUT
    )
    return [dm.text for dm in dms]


async def contact(api: Api, fan: Fan) -> dict[str, Any]:
    response = await api.get(f"/contacts/{fan.contact_id}")
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


# send_message ---------------------------------------------------------------------------------


async def test_send_message_fills_the_template_with_the_contact_and_the_node_variables(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    fan = await a_fan(api, app_client, x_admin)
    template = await create_template(api, "{{name}}, {{shop_name}} has {{off}}% off for you")
    flow = await manual_flow(
        api, [send("send", template, variables={"shop_name": "Ao", "off": 20})], []
    )

    await enroll(api, flow, fan)

    assert await dms_to(x_admin, fan) == ["Lan, Ao has 20% off for you"]
    run = await the_run(api, flow)
    assert run["status"] == "completed" and run["currentNodeId"] is None
    assert outcomes(run) == [("send", "sent")]
    sent = step(run, "send")
    assert sent["type"] == "send_message" and sent["finishedAt"] is not None
    assert sent["detail"]["messageId"] and sent["detail"]["dmEventId"]


async def test_send_message_with_a_delay_sends_after_it(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    fan = await a_fan(api, app_client, x_admin)
    template = await create_template(api, "Later, {{name}}")
    flow = await manual_flow(api, [send("send", template, delay=1)], [])
    assert flow["nodes"][0]["config"]["delay"] == 1

    await enroll(api, flow, fan)

    assert await dms_to(x_admin, fan) == ["Later, Lan"]
    run = await the_run(api, flow)
    assert run["status"] == "completed"
    assert outcomes(run) == [("send", "sent")]


async def test_send_message_with_a_variable_without_value_fails_the_run(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    fan = await a_fan(api, app_client, x_admin)
    # attributes.<key> is a contact field, so the flow is accepted; this contact has no city.
    template = await create_template(api, "Hello {{name}} from {{attributes.city}}")
    flow = await manual_flow(api, [send("send", template)], [])

    await enroll(api, flow, fan)

    run = await the_run(api, flow)
    assert run["status"] == "failed"
    assert run["currentNodeId"] == "send"
    failed = step(run, "send")
    assert failed["outcome"] == "failed" and failed["finishedAt"] is not None
    assert "attributes.city" in failed["detail"]["reason"]
    assert await x_admin.dms(recipient_id=fan.user.id) == []
    stats = (await api.get(f"/automation/flows/{flow['id']}")).json()["data"]["statistics"]
    assert stats["failed"] == 1 and stats["completed"] == 0


# wait -----------------------------------------------------------------------------------------


async def test_wait_holds_the_run_then_goes_on(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    fan = await a_fan(api, app_client, x_admin)
    template = await create_template(api, "After the wait, {{name}}")
    flow = await manual_flow(
        api,
        [{"id": "wait", "type": "wait", "config": {"duration": 1}}, send("send", template)],
        chain("wait", "send"),
    )

    await enroll(api, flow, fan)

    assert await dms_to(x_admin, fan) == ["After the wait, Lan"]
    run = await the_run(api, flow)
    assert run["status"] == "completed"
    assert outcomes(run) == [("wait", "waited"), ("send", "sent")]
    assert step(run, "wait")["type"] == "wait"


# condition ------------------------------------------------------------------------------------


async def condition_flow(api: Api) -> dict[str, Any]:
    vip = await create_template(api, "VIP offer for {{name}}")
    regular = await create_template(api, "Regular offer for {{name}}")
    return await manual_flow(
        api,
        [
            {
                "id": "is-vip",
                "type": "condition",
                "config": {
                    "conditions": [{"field": "tags", "operator": "contains", "value": "vip"}]
                },
            },
            send("vip", vip),
            send("regular", regular),
        ],
        [link("is-vip", "vip", "true"), link("is-vip", "regular", "false")],
    )


async def test_condition_true_takes_the_true_branch(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    fan = await a_fan(api, app_client, x_admin)
    tagged = await api.post(f"/contacts/{fan.contact_id}/tags", json={"tags": ["vip"]})
    assert tagged.status_code == 200, tagged.text
    flow = await condition_flow(api)

    await enroll(api, flow, fan)

    assert await dms_to(x_admin, fan) == ["VIP offer for Lan"]
    run = await the_run(api, flow)
    assert run["status"] == "completed"
    assert outcomes(run) == [("is-vip", "true"), ("vip", "sent")]


async def test_condition_false_takes_the_false_branch(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    fan = await a_fan(api, app_client, x_admin)
    tagged = await api.post(f"/contacts/{fan.contact_id}/tags", json={"tags": ["regular"]})
    assert tagged.status_code == 200, tagged.text
    flow = await condition_flow(api)

    await enroll(api, flow, fan)

    assert await dms_to(x_admin, fan) == ["Regular offer for Lan"]
    run = await the_run(api, flow)
    assert run["status"] == "completed"
    assert outcomes(run) == [("is-vip", "false"), ("regular", "sent")]


# wait_for_reply -------------------------------------------------------------------------------


async def reply_flow(api: Api, timeout: int) -> dict[str, Any]:
    thanks = await create_template(api, "Thanks for your answer, {{name}}")
    missed = await create_template(api, "We missed you, {{name}}")
    return await manual_flow(
        api,
        [
            {"id": "listen", "type": "wait_for_reply", "config": {"timeout": timeout}},
            send("thanks", thanks),
            send("missed", missed),
        ],
        [link("listen", "thanks", "replied"), link("listen", "missed", "timeout")],
    )


async def test_wait_for_reply_a_reply_takes_the_replied_branch_at_once(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    fan = await a_fan(api, app_client, x_admin)
    flow = await reply_flow(api, timeout=600)  # the run could only end through a reply

    await enroll(api, flow, fan)
    waiting = await eventually(
        lambda: executions(api, flow["id"]),
        lambda r: bool(r) and r[0]["currentNodeId"] == "listen",
        TIMEOUT,
    )
    assert waiting[0]["status"] == "running"
    await write(app_client, fan.shop, fan.user, "yes please!")

    assert await dms_to(x_admin, fan) == ["Thanks for your answer, Lan"]
    run = await the_run(api, flow)
    assert run["status"] == "completed"
    assert outcomes(run) == [("listen", "replied"), ("thanks", "sent")]


async def test_wait_for_reply_without_reply_takes_the_timeout_branch(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    fan = await a_fan(api, app_client, x_admin)
    flow = await reply_flow(api, timeout=1)

    await enroll(api, flow, fan)

    assert await dms_to(x_admin, fan) == ["We missed you, Lan"]
    run = await the_run(api, flow)
    assert run["status"] == "completed"
    assert outcomes(run) == [("listen", "timeout"), ("missed", "sent")]


# Contact and conversation nodes ---------------------------------------------------------------


async def test_add_tag_tags_the_contact(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    fan = await a_fan(api, app_client, x_admin)
    flow = await manual_flow(
        api, [{"id": "tag", "type": "add_tag", "config": {"tags": ["VIP", "Buyer "]}}], []
    )

    await enroll(api, flow, fan)

    run = await the_run(api, flow)
    assert run["status"] == "completed"
    assert outcomes(run) == [("tag", "done")]
    assert step(run, "tag")["detail"]["added"] == ["vip", "buyer"]
    assert (await contact(api, fan))["tags"] == ["vip", "buyer"]


async def test_remove_tag_untags_the_contact(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    fan = await a_fan(api, app_client, x_admin)
    tagged = await api.post(f"/contacts/{fan.contact_id}/tags", json={"tags": ["lead", "vip"]})
    assert tagged.status_code == 200, tagged.text
    flow = await manual_flow(
        api, [{"id": "untag", "type": "remove_tag", "config": {"tag": "Lead"}}], []
    )

    await enroll(api, flow, fan)

    run = await the_run(api, flow)
    assert run["status"] == "completed"
    assert outcomes(run) == [("untag", "done")]
    assert step(run, "untag")["detail"]["removed"] == ["lead"]
    assert (await contact(api, fan))["tags"] == ["vip"]


async def test_update_attributes_merges_into_the_contacts_attributes(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    fan = await a_fan(api, app_client, x_admin)
    before = await api.put(f"/contacts/{fan.contact_id}", json={"attributes": {"plan": "free"}})
    assert before.status_code == 200, before.text
    flow = await manual_flow(
        api,
        [
            {
                "id": "update",
                "type": "update_attributes",
                "config": {"attributes": {"city": "Hanoi", "plan": "pro"}},
            }
        ],
        [],
    )

    await enroll(api, flow, fan)

    run = await the_run(api, flow)
    assert run["status"] == "completed"
    assert outcomes(run) == [("update", "done")]
    assert (await contact(api, fan))["attributes"] == {"plan": "pro", "city": "Hanoi"}


async def test_assign_conversation_assigns_the_contacts_open_conversation(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    fan = await a_fan(api, app_client, x_admin)  # its DM opened the conversation
    flow = await manual_flow(
        api, [{"id": "assign", "type": "assign_conversation", "config": {"userId": "agent-7"}}], []
    )

    await enroll(api, flow, fan)

    run = await the_run(api, flow)
    assert run["status"] == "completed"
    assert outcomes(run) == [("assign", "done")]
    listed = await api.get(
        "/conversations", params={"accountId": str(fan.shop.account_id), "status": "open"}
    )
    assert listed.status_code == 200, listed.text
    (conversation,) = listed.json()["data"]
    assert conversation["contactId"] == fan.contact_id
    assert conversation["assignedToUserId"] == "agent-7"
    assert step(run, "assign")["detail"]["conversationId"] == conversation["id"]
    mine = await api.get("/conversations", params={"assignedTo": "agent-7"})
    assert [c["id"] for c in mine.json()["data"]] == [conversation["id"]]


async def test_assign_conversation_without_an_open_conversation_is_skipped(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    fan = await a_fan(api, app_client, x_admin)
    listed = await api.get("/conversations", params={"accountId": str(fan.shop.account_id)})
    (conversation,) = listed.json()["data"]
    closed = await api.put(f"/conversations/{conversation['id']}/close", json={})
    assert closed.status_code == 200, closed.text
    flow = await manual_flow(
        api,
        [
            {"id": "assign", "type": "assign_conversation", "config": {"userId": "agent-7"}},
            {"id": "tag", "type": "add_tag", "config": {"tags": ["after"]}},
        ],
        chain("assign", "tag"),
    )

    await enroll(api, flow, fan)

    run = await the_run(api, flow)
    assert run["status"] == "completed"
    assert outcomes(run) == [("assign", "skipped"), ("tag", "done")]
    assert step(run, "assign")["detail"]["reason"]
    after = (await api.get(f"/conversations/{conversation['id']}")).json()["data"]
    assert after["status"] == "closed" and after["assignedToUserId"] is None


async def test_end_ends_the_run_completed(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    fan = await a_fan(api, app_client, x_admin)
    flow = await manual_flow(
        api,
        [
            {"id": "tag", "type": "add_tag", "config": {"tags": ["seen"]}},
            {"id": "end", "type": "end", "config": {}},
        ],
        chain("tag", "end"),
    )

    await enroll(api, flow, fan)

    run = await the_run(api, flow)
    assert run["status"] == "completed"
    assert run["currentNodeId"] is None and run["completedAt"] is not None
    assert outcomes(run) == [("tag", "done"), ("end", "ended")]
    assert all(s["finishedAt"] for s in run["steps"])
