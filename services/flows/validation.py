"""The rules of a flow document, checked at create and update (and, later, at activation).

A document that passes is a graph a run can walk from start to end without a question left
open: node ids are unique; every connection joins two nodes of the flow; exactly one node (the
entry) has no incoming connection and every node is reachable from it; there is no cycle, so
every run ends; a `condition` leaves by exactly one `true` and one `false` connection, a
`wait_for_reply` by one `replied` and one `timeout`, an `end` by none, and any other node by at
most one, without a branch; the trigger's and each node's `config` hold what their type reads;
each template exists, belongs to the merchant, and has a value for every variable — from the
contact (`name`, `username`, `displayName`, `attributes.<key>`) or from the node's `variables`.

The first rule broken is answered as `ValidationFailed` (422 `VALIDATION_ERROR`) whose field
names the place as the caller wrote it: `nodes[2].config.templateId`, `connections[1].toNodeId`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from models.account import XAccount
from models.flow import (
    BRANCHES,
    NODE_CONFIGS,
    TRIGGER_CONFIGS,
    AddTagConfig,
    ConditionConfig,
    FlowConnection,
    FlowNode,
    FlowTrigger,
    NodeType,
    RemoveTagConfig,
    SendMessageConfig,
    TagAddedConfig,
    UpdateAttributesConfig,
)
from models.template import Template
from services.contacts.fields import check_attributes, normalise_tag, normalise_tags
from services.core.errors import ValidationFailed
from services.segments.sql import conditions_clause
from services.templates.templates import ATTRIBUTE_PREFIX, BUILT_INS


@dataclass(frozen=True, slots=True)
class CheckedFlow:
    """A document that passed every rule, as it is stored: camelCase JSON, each config complete
    (its defaults filled in) and normalised (tags as contacts store them)."""

    trigger: dict[str, Any]
    nodes: list[dict[str, Any]]
    connections: list[dict[str, Any]]


async def check_flow(
    session: AsyncSession,
    merchant_id: str,
    *,
    account_id: uuid.UUID | None,
    trigger: FlowTrigger,
    nodes: Sequence[FlowNode],
    connections: Sequence[FlowConnection],
) -> CheckedFlow:
    """Every rule of the module docstring, the document's own first, then what it refers to."""
    trigger_config = _trigger_config(trigger)
    configs = [_node_config(i, node) for i, node in enumerate(nodes)]
    check_graph(nodes, connections)
    if account_id is not None:
        await _check_account(session, merchant_id, account_id)
    sends = [(i, c) for i, c in enumerate(configs) if isinstance(c, SendMessageConfig)]
    await _check_templates(session, merchant_id, sends)
    return CheckedFlow(
        trigger={"type": trigger.type.value, "config": _json(trigger_config)},
        nodes=[
            {"id": node.id, "type": node.type.value, "config": _json(config)}
            for node, config in zip(nodes, configs, strict=True)
        ],
        connections=[
            c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in connections
        ],
    )


# Configs --------------------------------------------------------------------------------------


def _json(config: BaseModel) -> dict[str, Any]:
    return config.model_dump(mode="json", by_alias=True)


def _parse(model: type[BaseModel], raw: Mapping[str, Any], where: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        place = where
        for part in error["loc"]:
            place += f"[{part}]" if isinstance(part, int) else f".{part}"
        reason = str(error["msg"]).removeprefix("Value error, ")
        raise ValidationFailed(place, reason) from None


def _within(where: str, refused: ValidationFailed) -> ValidationFailed:
    """A refusal by a shared check (segments, contact fields), named inside the flow."""
    details = refused.details or {}
    return ValidationFailed(f"{where}.{details.get('field', '')}", details.get("reason", ""))


def _trigger_config(trigger: FlowTrigger) -> BaseModel:
    where = "trigger.config"
    config = _parse(TRIGGER_CONFIGS[trigger.type], trigger.config, where)
    if isinstance(config, TagAddedConfig):
        config.tag = normalise_tag(config.tag, f"{where}.tag")
    return config  # type: ignore[no-any-return]


def _node_config(index: int, node: FlowNode) -> BaseModel:
    where = f"nodes[{index}].config"
    config = _parse(NODE_CONFIGS[node.type], node.config, where)
    # Normalised as contacts store them: a node adding "VIP " adds the tag "vip".
    if isinstance(config, AddTagConfig):
        config.tags = normalise_tags(config.tags, f"{where}.tags")
    elif isinstance(config, RemoveTagConfig):
        config.tag = normalise_tag(config.tag, f"{where}.tag")
    elif isinstance(config, UpdateAttributesConfig):
        check_attributes(config.attributes, f"{where}.attributes")
    elif isinstance(config, ConditionConfig):
        # The segment compiler is the one judge of a condition; it builds SQL, touching nothing.
        try:
            conditions_clause(config.conditions, config.match)
        except ValidationFailed as refused:
            raise _within(where, refused) from None
    return config  # type: ignore[no-any-return]


# The graph ------------------------------------------------------------------------------------


def check_graph(nodes: Sequence[FlowNode], connections: Sequence[FlowConnection]) -> None:
    """The structural rules, on ids alone (no database): see the module docstring."""
    index_of: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node.id in index_of:
            raise ValidationFailed(
                f"nodes[{i}].id", f"'{node.id}' is already the id of nodes[{index_of[node.id]}]"
            )
        index_of[node.id] = i
    outgoing: dict[str, list[int]] = {node.id: [] for node in nodes}
    incoming: dict[str, int] = {node.id: 0 for node in nodes}
    for k, connection in enumerate(connections):
        for end, node_id in (
            ("fromNodeId", connection.from_node_id),
            ("toNodeId", connection.to_node_id),
        ):
            if node_id not in index_of:
                raise ValidationFailed(f"connections[{k}].{end}", f"no node has the id '{node_id}'")
        outgoing[connection.from_node_id].append(k)
        incoming[connection.to_node_id] += 1
    for i, node in enumerate(nodes):
        _check_exits(i, node, outgoing[node.id], connections)
    entry = _entry(nodes, incoming)
    _check_reachable(nodes, connections, entry, outgoing)
    _check_acyclic(connections, nodes[entry].id, outgoing)


def _check_exits(
    index: int, node: FlowNode, exits: list[int], connections: Sequence[FlowConnection]
) -> None:
    branches = BRANCHES.get(node.type)
    if branches is None:
        for k in exits:
            if connections[k].branch is not None:
                raise ValidationFailed(
                    f"connections[{k}].branch",
                    f"only condition and wait_for_reply nodes branch; '{node.id}' is a "
                    f"{node.type} node: leave the branch out",
                )
        if node.type is NodeType.end and exits:
            raise ValidationFailed(
                f"connections[{exits[0]}].fromNodeId",
                f"'{node.id}' is an end node: nothing follows it",
            )
        if len(exits) > 1:
            raise ValidationFailed(
                f"connections[{exits[1]}].fromNodeId",
                f"'{node.id}' already leads on (connections[{exits[0]}]): a {node.type} node has "
                "at most one outgoing connection",
            )
        return
    wanted = " and one ".join(f"'{b}'" for b in branches)
    seen: dict[str, int] = {}
    for k in exits:
        branch = connections[k].branch
        if branch not in branches:
            raise ValidationFailed(
                f"connections[{k}].branch",
                f"a connection out of the {node.type} node '{node.id}' needs a branch: "
                + " or ".join(f"'{b}'" for b in branches),
            )
        if branch in seen:
            raise ValidationFailed(
                f"connections[{k}].branch",
                f"'{node.id}' already has its '{branch}' connection (connections[{seen[branch]}])",
            )
        seen[branch] = k
    for branch in branches:
        if branch not in seen:
            raise ValidationFailed(
                f"nodes[{index}]",
                f"a {node.type} node needs one {wanted} connection; '{node.id}' has no "
                f"'{branch}' one",
            )


def _entry(nodes: Sequence[FlowNode], incoming: Mapping[str, int]) -> int:
    entries = [i for i, node in enumerate(nodes) if incoming[node.id] == 0]
    if not entries:
        raise ValidationFailed(
            "connections", "every node has an incoming connection: the flow has no entry node"
        )
    if len(entries) > 1:
        first, second = nodes[entries[0]].id, nodes[entries[1]].id
        raise ValidationFailed(
            f"nodes[{entries[1]}]",
            f"'{second}' has no incoming connection, nor has '{first}': a flow has exactly one "
            "entry node",
        )
    return entries[0]


def _check_reachable(
    nodes: Sequence[FlowNode],
    connections: Sequence[FlowConnection],
    entry: int,
    outgoing: Mapping[str, list[int]],
) -> None:
    reached = {nodes[entry].id}
    frontier = [nodes[entry].id]
    while frontier:
        for k in outgoing[frontier.pop()]:
            target = connections[k].to_node_id
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    for i, node in enumerate(nodes):
        if node.id not in reached:
            raise ValidationFailed(
                f"nodes[{i}]",
                f"'{node.id}' cannot be reached from the entry node '{nodes[entry].id}'",
            )


def _check_acyclic(
    connections: Sequence[FlowConnection], entry_id: str, outgoing: Mapping[str, list[int]]
) -> None:
    """Depth-first from the entry (every node is reachable by now): a connection back to a node
    still on the path closes a cycle."""
    on_path: set[str] = set()
    done: set[str] = set()
    # (node, its outgoing connections not yet followed), the current path as a stack.
    stack: list[tuple[str, list[int]]] = [(entry_id, list(outgoing[entry_id]))]
    on_path.add(entry_id)
    while stack:
        node_id, pending = stack[-1]
        if not pending:
            stack.pop()
            on_path.discard(node_id)
            done.add(node_id)
            continue
        k = pending.pop(0)
        target = connections[k].to_node_id
        if target in on_path:
            raise ValidationFailed(
                f"connections[{k}].toNodeId",
                f"'{connections[k].from_node_id}' → '{target}' closes a cycle: a run must end",
            )
        if target not in done:
            on_path.add(target)
            stack.append((target, list(outgoing[target])))


# What the document refers to ------------------------------------------------------------------


async def _check_account(session: AsyncSession, merchant_id: str, account_id: uuid.UUID) -> None:
    found = await session.execute(
        select(col(XAccount.id)).where(
            col(XAccount.id) == account_id, col(XAccount.merchant_id) == merchant_id
        )
    )
    if found.first() is None:
        raise ValidationFailed("accountId", f"no connected account {account_id}")


def _covered(name: str, given: Mapping[str, Any]) -> bool:
    # A contact field may still be empty for one contact: that run's step fails then, naming it.
    return name in BUILT_INS or name.startswith(ATTRIBUTE_PREFIX) or name in given


async def _check_templates(
    session: AsyncSession, merchant_id: str, sends: Sequence[tuple[int, SendMessageConfig]]
) -> None:
    """Each send's template is the merchant's, with a value for each variable; one query."""
    if not sends:
        return
    rows = await session.execute(
        select(col(Template.id), col(Template.variables)).where(
            col(Template.id).in_({config.template_id for _, config in sends}),
            col(Template.merchant_id) == merchant_id,
        )
    )
    variables = {row.id: list(row.variables) for row in rows}
    for index, config in sends:
        where = f"nodes[{index}].config"
        if config.template_id not in variables:
            raise ValidationFailed(f"{where}.templateId", f"no template {config.template_id}")
        for name in variables[config.template_id]:
            if not _covered(name, config.variables):
                raise ValidationFailed(
                    f"{where}.variables.{name}",
                    f"the template uses {{{{{name}}}}}, which no contact field fills "
                    "(name, username, displayName, attributes.<key>): give it a value here",
                )
