"""Every rule of a flow document, one test each, over HTTP: the answer is 422
`VALIDATION_ERROR` and `details.field` names the place as the caller wrote it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Api
from tests.flows.conftest import create_template, refused, spec_flow


def node(node_id: str, type: str = "wait", **config: Any) -> dict[str, Any]:
    if type == "wait" and not config:
        config = {"duration": 60}
    return {"id": node_id, "type": type, "config": config}


def link(source: str, target: str, branch: str | None = None) -> dict[str, Any]:
    connection = {"fromNodeId": source, "toNodeId": target}
    return connection if branch is None else {**connection, "branch": branch}


def flow(nodes: list[dict[str, Any]], connections: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "Flow",
        "trigger": {"type": "manual"},
        "nodes": nodes,
        "connections": connections,
    }


CONDITION = {
    "match": "all",
    "conditions": [{"field": "tags", "operator": "contains", "value": "vip"}],
}


async def post(api: Api, body: dict[str, Any]) -> Any:
    return await api.post("/automation/flows", json=body)


async def test_node_ids_are_unique(api: Api) -> None:
    body = flow([node("a"), node("b"), node("a")], [link("a", "b")])
    assert "already the id of nodes[0]" in refused(await post(api, body), "nodes[2].id")


async def test_a_connection_starts_at_an_existing_node(api: Api) -> None:
    body = flow([node("a"), node("b")], [link("a", "b"), link("ghost", "b")])
    assert "'ghost'" in refused(await post(api, body), "connections[1].fromNodeId")


async def test_a_connection_ends_at_an_existing_node(api: Api) -> None:
    body = flow([node("a"), node("b")], [link("a", "b"), link("b", "ghost")])
    assert "'ghost'" in refused(await post(api, body), "connections[1].toNodeId")


async def test_exactly_one_entry_node(api: Api) -> None:
    body = flow([node("a"), node("b"), node("c")], [link("a", "b")])
    assert "exactly one entry node" in refused(await post(api, body), "nodes[2]")


async def test_a_flow_without_an_entry_node_is_refused(api: Api) -> None:
    body = flow([node("a"), node("b")], [link("a", "b"), link("b", "a")])
    assert "no entry node" in refused(await post(api, body), "connections")


async def test_every_node_is_reachable_from_the_entry(api: Api) -> None:
    # c and d each have an incoming connection (from one another), yet no path from a.
    body = flow(
        [node("a"), node("b"), node("c"), node("d")],
        [link("a", "b"), link("c", "d"), link("d", "c")],
    )
    assert "cannot be reached" in refused(await post(api, body), "nodes[2]")


async def test_no_cycle(api: Api) -> None:
    body = flow([node("a"), node("b"), node("c")], [link("a", "b"), link("b", "c"), link("c", "b")])
    assert "cycle" in refused(await post(api, body), "connections[2].toNodeId")


async def test_a_condition_needs_its_false_branch(api: Api) -> None:
    body = flow([node("if", "condition", **CONDITION), node("yes")], [link("if", "yes", "true")])
    assert "'false'" in refused(await post(api, body), "nodes[0]")


async def test_a_condition_has_one_connection_per_branch(api: Api) -> None:
    body = flow(
        [node("if", "condition", **CONDITION), node("yes"), node("also"), node("no")],
        [link("if", "yes", "true"), link("if", "also", "true"), link("if", "no", "false")],
    )
    assert "already has its 'true'" in refused(await post(api, body), "connections[1].branch")


async def test_a_condition_branch_is_true_or_false(api: Api) -> None:
    body = flow(
        [node("if", "condition", **CONDITION), node("yes"), node("no")],
        [link("if", "yes", "true"), link("if", "no", "replied")],
    )
    assert "'true' or 'false'" in refused(await post(api, body), "connections[1].branch")


async def test_a_wait_for_reply_needs_replied_and_timeout(api: Api) -> None:
    body = flow(
        [node("ask", "wait_for_reply", timeout=3600), node("thanks")],
        [link("ask", "thanks", "replied")],
    )
    assert "'timeout'" in refused(await post(api, body), "nodes[0]")


async def test_a_wait_for_reply_branch_is_replied_or_timeout(api: Api) -> None:
    body = flow(
        [node("ask", "wait_for_reply", timeout=3600), node("thanks"), node("nudge")],
        [link("ask", "thanks"), link("ask", "nudge", "timeout")],
    )
    assert "'replied' or 'timeout'" in refused(await post(api, body), "connections[0].branch")


async def test_other_nodes_have_at_most_one_outgoing_connection(api: Api) -> None:
    body = flow([node("a"), node("b"), node("c")], [link("a", "b"), link("a", "c")])
    assert "at most one" in refused(await post(api, body), "connections[1].fromNodeId")


async def test_other_nodes_have_no_branch(api: Api) -> None:
    body = flow([node("a"), node("b")], [link("a", "b", "true")])
    assert "leave the branch out" in refused(await post(api, body), "connections[0].branch")


async def test_nothing_follows_an_end_node(api: Api) -> None:
    body = flow([node("stop", "end"), node("b")], [link("stop", "b")])
    assert "end node" in refused(await post(api, body), "connections[0].fromNodeId")


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (node("n", "send_message", delay=0), "nodes[1].config.templateId"),
        (
            node("n", "send_message", templateId=str(uuid.uuid4()), delay=-1),
            "nodes[1].config.delay",
        ),
        (node("n", "send_message", templateId="nope"), "nodes[1].config.templateId"),
        (node("n", "wait", duration=0), "nodes[1].config.duration"),
        (node("n", "wait", duration=31_536_001), "nodes[1].config.duration"),
        (
            node("n", "condition", conditions=[{"field": "tags", "operator": "near"}]),
            "nodes[1].config.conditions[0].operator",
        ),
        (
            node("n", "condition", conditions=[{"field": "shoeSize", "operator": "equals"}]),
            "nodes[1].config.conditions[0].field",
        ),
        (node("n", "condition", conditions=[], match="all"), "nodes[1].config.conditions"),
        (
            node("n", "condition", conditions=CONDITION["conditions"], match="most"),
            "nodes[1].config.match",
        ),
        (node("n", "wait_for_reply", timeout=0), "nodes[1].config.timeout"),
        (node("n", "add_tag", tags=[]), "nodes[1].config.tags"),
        (node("n", "add_tag", tags=["ok", "!!"]), "nodes[1].config.tags[1]"),
        (node("n", "remove_tag"), "nodes[1].config.tag"),
        (node("n", "update_attributes", attributes={}), "nodes[1].config.attributes"),
        (node("n", "update_attributes", attributes={" ": 1}), "nodes[1].config.attributes"),
        (node("n", "assign_conversation", userId=""), "nodes[1].config.userId"),
        (node("n", "end", reason="done"), "nodes[1].config.reason"),
        (node("n", "jump"), "nodes[1].type"),
    ],
)
async def test_each_node_config_fits_its_type(api: Api, bad: dict[str, Any], field: str) -> None:
    # The node under test ends the flow unless it branches: then no connection leaves it and
    # its config is refused before the missing branches are.
    refused(await post(api, flow([node("first"), bad], [link("first", "n")])), field)


@pytest.mark.parametrize(
    ("trigger", "field"),
    [
        ({"type": "message_received", "config": {"match": "fuzzy"}}, "trigger.config.match"),
        ({"type": "message_received", "config": {"keywords": [" "]}}, "trigger.config.keywords[0]"),
        ({"type": "tag_added", "config": {}}, "trigger.config.tag"),
        ({"type": "tag_added", "config": {"tag": "#"}}, "trigger.config.tag"),
        ({"type": "new_follower", "config": {"accountId": "x"}}, "trigger.config.accountId"),
        ({"type": "birthday", "config": {}}, "trigger.type"),
    ],
)
async def test_the_trigger_config_fits_its_type(
    api: Api, trigger: dict[str, Any], field: str
) -> None:
    refused(await post(api, {**flow([node("a")], []), "trigger": trigger}), field)


@pytest.mark.parametrize(
    ("where", "field"),
    [
        (lambda b: b.update(colour="blue"), "colour"),
        (lambda b: b["nodes"][0].update(label="first"), "nodes[0].label"),
        (lambda b: b["connections"][0].update(weight=1), "connections[0].weight"),
        (lambda b: b["trigger"].update(when="now"), "trigger.when"),
    ],
)
async def test_unknown_fields_are_refused(api: Api, where: Any, field: str) -> None:
    body = flow([node("a"), node("b")], [link("a", "b")])
    where(body)
    refused(await post(api, body), field)


async def test_an_unknown_field_inside_a_config_is_refused(
    api: Api, flow_body: dict[str, Any]
) -> None:
    flow_body["nodes"][0]["config"]["priority"] = "high"
    refused(await post(api, flow_body), "nodes[0].config.priority")


async def test_a_template_must_exist(api: Api, flow_body: dict[str, Any]) -> None:
    flow_body["nodes"][2]["config"]["templateId"] = str(uuid.uuid4())
    assert "no template" in refused(await post(api, flow_body), "nodes[2].config.templateId")


async def test_a_template_must_be_the_merchants_own(
    api: Api, other_api: Api, flow_body: dict[str, Any]
) -> None:
    foreign = await create_template(other_api, "Hi {{name}}")
    flow_body["nodes"][0]["config"]["templateId"] = foreign
    refused(await post(api, flow_body), "nodes[0].config.templateId")


async def test_template_variables_are_covered(api: Api, template_ids: tuple[str, str]) -> None:
    body = spec_flow(template_ids)
    del body["nodes"][2]["config"]["variables"]  # shop_name is no contact field

    reason = refused(await post(api, body), "nodes[2].config.variables.shop_name")

    assert "{{shop_name}}" in reason


async def test_contact_fields_cover_template_variables(api: Api) -> None:
    template = await create_template(api, "{{displayName}} ({{username}}): {{attributes.tier}}")
    body = flow([node("a", "send_message", templateId=template)], [])
    assert (await post(api, body)).status_code == 200


async def test_the_account_must_be_the_merchants_own(api: Api) -> None:
    body = {**flow([node("a")], []), "accountId": str(uuid.uuid4())}
    refused(await post(api, body), "accountId")
