"""Automation flows: the flow document (trigger, nodes, connections), its table, and the shapes
the API reads and writes.

A flow is stored as the caller's document, checked and normalised: `trigger`, `nodes` and
`connections` are JSONB holding exactly what `FlowTrigger`, `FlowNode` and `FlowConnection`
dump (camelCase), each node's `config` as its type's config model dumps it. The envelope of a
node or trigger (`id`, `type`, `config`) is checked when the body is parsed; the `config` itself
is checked against its type by `services/flows/validation.py`, so that a refusal names the place
as the caller wrote it (`nodes[2].config.templateId`): a pydantic tagged union would name the tag
too (`nodes[2].send_message.config...`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field as PydanticField
from pydantic import StringConstraints
from sqlalchemy import Column, DateTime, ForeignKey, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from models.camel import CamelModel, CamelUpdate
from models.db import TenantRow
from models.segment import MAX_CONDITIONS, SegmentCondition, SegmentMatch

MAX_NODES = 200
MAX_CONNECTIONS = 2 * MAX_NODES  # a branching node has two outgoing connections
# The longest durable wait a node may ask for: one year. A longer one is a mistake, not a plan.
MAX_WAIT_SECONDS = 31_536_000
MAX_KEYWORDS = 50
NODE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class FlowStatus(StrEnum):
    draft = "draft"  # created, never activated (or edited since: see `version`)
    active = "active"  # triggers enrol contacts; the definition may not change
    inactive = "inactive"  # deactivated: no new enrolments; editable again


class FlowReentry(StrEnum):
    never = "never"  # a contact runs through the flow at most once, ever
    after_exit = "after_exit"  # again, once its previous run has ended


class TriggerType(StrEnum):
    new_follower = "new_follower"
    message_received = "message_received"
    tag_added = "tag_added"
    manual = "manual"  # contacts are enrolled only through the enroll endpoint


class NodeType(StrEnum):
    send_message = "send_message"
    wait = "wait"
    condition = "condition"
    wait_for_reply = "wait_for_reply"
    add_tag = "add_tag"
    remove_tag = "remove_tag"
    update_attributes = "update_attributes"
    assign_conversation = "assign_conversation"
    end = "end"


class ConnectionBranch(StrEnum):
    true = "true"  # condition held
    false = "false"  # condition did not hold
    replied = "replied"  # wait_for_reply: the contact sent a DM
    timeout = "timeout"  # wait_for_reply: the timeout passed first


class KeywordMatch(StrEnum):
    contains = "contains"  # the DM contains a keyword (whole words not required)
    exact = "exact"  # the whole DM, trimmed, is a keyword


class AutomationFlow(TenantRow, table=True):
    __tablename__ = "automation_flows"
    __table_args__ = (
        Index("ix_automation_flows_merchant_created", "merchant_id", "created_at"),
        # The status filter of the list, and (later) the active flows a trigger looks up.
        Index("ix_automation_flows_merchant_status", "merchant_id", "status", "created_at"),
    )

    name: str = Field(max_length=200)
    # NULL: events of any of the merchant's accounts trigger it. An account that goes takes its
    # flows with it: widening them to every account (SET NULL) would message strangers' audiences.
    account_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("x_accounts.id", ondelete="CASCADE"))
    )
    status: FlowStatus = Field(default=FlowStatus.draft, sa_type=String(16))  # type: ignore[call-overload]
    trigger: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    nodes: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    connections: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    reentry: FlowReentry = Field(default=FlowReentry.never, sa_type=String(16))  # type: ignore[call-overload]
    # The snapshot number runs carry: 0 until the first activation, +1 at each one.
    version: int = 0
    activated_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]


# Node and trigger configs, one model per type ------------------------------------------------

TemplateValue = str | int | float | bool


class SendMessageConfig(CamelModel):
    template_id: uuid.UUID
    delay: int = PydanticField(
        default=0, ge=0, le=MAX_WAIT_SECONDS, description="seconds to wait before sending"
    )
    # Values for template variables that are not contact fields (e.g. shop_name).
    variables: dict[str, TemplateValue] = {}
    business_hours_only: bool = PydanticField(
        default=False, description="wait until the account's business hours are open"
    )


class WaitConfig(CamelModel):
    duration: int = PydanticField(ge=1, le=MAX_WAIT_SECONDS, description="seconds")


class ConditionConfig(CamelModel):
    """Evaluated against the contact when the run reaches the node, as a segment would be."""

    match: SegmentMatch = SegmentMatch.all
    conditions: list[SegmentCondition] = PydanticField(min_length=1, max_length=MAX_CONDITIONS)


class WaitForReplyConfig(CamelModel):
    timeout: int = PydanticField(ge=1, le=MAX_WAIT_SECONDS, description="seconds")


class AddTagConfig(CamelModel):
    tags: list[str] = PydanticField(min_length=1, max_length=50)


class RemoveTagConfig(CamelModel):
    tag: str


class UpdateAttributesConfig(CamelModel):
    attributes: dict[str, Any] = PydanticField(min_length=1)


class AssignConversationConfig(CamelModel):
    user_id: str = PydanticField(min_length=1, max_length=128)


class EmptyConfig(CamelModel):
    """`end`, `new_follower` and `manual` take no settings: `{}`."""


Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class MessageReceivedConfig(CamelModel):
    # Empty: every inbound DM (the opt-out and opt-in keywords never trigger a flow).
    keywords: list[Keyword] = PydanticField(default=[], max_length=MAX_KEYWORDS)
    match: KeywordMatch = KeywordMatch.contains


class TagAddedConfig(CamelModel):
    tag: str


NODE_CONFIGS: dict[NodeType, type[CamelModel]] = {
    NodeType.send_message: SendMessageConfig,
    NodeType.wait: WaitConfig,
    NodeType.condition: ConditionConfig,
    NodeType.wait_for_reply: WaitForReplyConfig,
    NodeType.add_tag: AddTagConfig,
    NodeType.remove_tag: RemoveTagConfig,
    NodeType.update_attributes: UpdateAttributesConfig,
    NodeType.assign_conversation: AssignConversationConfig,
    NodeType.end: EmptyConfig,
}

TRIGGER_CONFIGS: dict[TriggerType, type[CamelModel]] = {
    TriggerType.new_follower: EmptyConfig,
    TriggerType.message_received: MessageReceivedConfig,
    TriggerType.tag_added: TagAddedConfig,
    TriggerType.manual: EmptyConfig,
}

# The outgoing connections a node must have, by branch; a type absent here has at most one
# outgoing connection, without a branch.
BRANCHES: dict[NodeType, tuple[ConnectionBranch, ConnectionBranch]] = {
    NodeType.condition: (ConnectionBranch.true, ConnectionBranch.false),
    NodeType.wait_for_reply: (ConnectionBranch.replied, ConnectionBranch.timeout),
}


# The document --------------------------------------------------------------------------------

_CONFIG_DOC = (
    "settings of the type, checked against it: send_message {templateId, delay, variables, "
    "businessHoursOnly}, wait {duration}, condition {conditions, match}, wait_for_reply "
    "{timeout}, add_tag {tags}, remove_tag {tag}, update_attributes {attributes}, "
    "assign_conversation {userId}, end {}"
)


class FlowTrigger(CamelModel):
    type: TriggerType
    config: dict[str, Any] = PydanticField(
        default={},
        description="new_follower {}, message_received {keywords, match: contains|exact}, "
        "tag_added {tag}, manual {}",
    )


class FlowNode(CamelModel):
    id: str = PydanticField(pattern=NODE_ID_PATTERN, description="unique within the flow")
    type: NodeType
    config: dict[str, Any] = PydanticField(default={}, description=_CONFIG_DOC)


class FlowConnection(CamelModel):
    from_node_id: str = PydanticField(min_length=1, max_length=64)
    to_node_id: str = PydanticField(min_length=1, max_length=64)
    # Required out of condition (true/false) and wait_for_reply (replied/timeout), else absent.
    branch: ConnectionBranch | None = None


class FlowCreate(CamelModel):
    name: str = PydanticField(min_length=1, max_length=200)
    account_id: uuid.UUID | None = None
    trigger: FlowTrigger
    nodes: list[FlowNode] = PydanticField(min_length=1, max_length=MAX_NODES)
    connections: list[FlowConnection] = PydanticField(default=[], max_length=MAX_CONNECTIONS)
    reentry: FlowReentry = FlowReentry.never


class FlowUpdate(CamelUpdate):
    """The fields sent replace the stored ones; the resulting document is checked whole."""

    not_null = frozenset({"name", "trigger", "nodes", "connections", "reentry"})

    name: str | None = PydanticField(default=None, min_length=1, max_length=200)
    account_id: uuid.UUID | None = None  # null: any of the merchant's accounts
    trigger: FlowTrigger | None = None
    nodes: list[FlowNode] | None = PydanticField(default=None, min_length=1, max_length=MAX_NODES)
    connections: list[FlowConnection] | None = PydanticField(
        default=None, max_length=MAX_CONNECTIONS
    )
    reentry: FlowReentry | None = None


class FlowStatistics(CamelModel):
    """Runs of the flow by status."""

    running: int = 0
    completed: int = 0
    failed: int = 0
    exited: int = 0
    cancelled: int = 0


class FlowPublic(CamelModel):
    id: uuid.UUID
    merchant_id: str
    name: str
    account_id: uuid.UUID | None
    status: FlowStatus
    trigger: FlowTrigger
    nodes: list[FlowNode]
    connections: list[FlowConnection]
    reentry: FlowReentry
    version: int
    statistics: FlowStatistics
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None
