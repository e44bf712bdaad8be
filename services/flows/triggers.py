"""The flows' triggers: which contact events enrol contacts into which active flows.

Registered with ingestion's trigger registry (services/ingestion/triggers.py), so that an
event that should enrol a contact is recorded with the event itself and carried out exactly
once, even when Temporal is away when it arrives. A decision reads; it never acts:

- `flows.new_follower`: someone followed the account (the account following someone is no
  such event: ingestion does not make it a contact event).
- `flows.message_received`: the contact's DM (never our own echo), matched against the flow's
  keywords, case- and accent-insensitively; the opt-out and opt-in keywords never enrol.
- `flows.tag_added`: a tag the contact just gained (services/flows/tags.py records these).

An event enrols the contact into every active flow of the merchant it matches (on the event's
account, or any account); a flow it already ran through (`reentry: never`) or is running
(already on its way) is left out here already, so most repeats cost Temporal nothing. The
follow-ups carried out together (a flood of follows) are decided together (`decide_many`).
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable, Sequence

from sqlalchemy import or_, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from mktx.settings import Settings
from models.db import SessionMaker
from models.flow import AutomationFlow, FlowStatus, KeywordMatch, MessageReceivedConfig
from models.flow_run import FlowVersion
from services.contacts.consent import consent_keyword
from services.flows.runs import reentry_refusals
from services.flows.starts import run_start
from services.flows.tags import TAG_TRIGGER
from services.ingestion.triggers import Trigger, TriggerRegistry, WorkflowStart
from workflows.contracts.contact_events import ContactEvent, ContactEventKind

TRIGGER_PREFIX = "flows."
NEW_FOLLOWER_TRIGGER = "flows.new_follower"
MESSAGE_TRIGGER = "flows.message_received"


def fold(value: str) -> str:
    """Case- and accent-insensitive form: "Café  PROMO" -> "cafe promo"."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.split())


def keywords_match(config: MessageReceivedConfig, message: str) -> bool:
    if not config.keywords:
        return True
    folded = fold(message)
    words = [fold(k) for k in config.keywords]
    if config.match is KeywordMatch.exact:
        return folded in words
    return any(word and word in folded for word in words)


Matches = Callable[[AutomationFlow, ContactEvent], bool]


def _message_matches(flow: AutomationFlow, event: ContactEvent) -> bool:
    config = MessageReceivedConfig.model_validate(flow.trigger.get("config") or {})
    return keywords_match(config, event.text or "")


def _tag_matches(flow: AutomationFlow, event: ContactEvent) -> bool:
    return bool((flow.trigger.get("config") or {}).get("tag") == event.text)


async def decide_for(
    session: AsyncSession,
    settings: Settings,
    trigger_type: str,
    events: Sequence[ContactEvent],
    matches: Matches | None = None,
) -> list[list[WorkflowStart]]:
    """The runs each event starts: one per active flow of this trigger type that takes it and
    that the contact may enter. Many events at once cost a query per merchant and account
    they come from, and one for all their contacts' earlier runs."""
    flows_of: dict[tuple[str, uuid.UUID], list[tuple[AutomationFlow, FlowVersion]]] = {}
    for event in events:
        scope = (event.merchant_id, event.account_id)
        if scope not in flows_of:
            flows_of[scope] = await _active_flows(session, trigger_type, *scope)
    candidates = [
        [
            (flow, version)
            for flow, version in flows_of[(event.merchant_id, event.account_id)]
            if matches is None or matches(flow, event)
        ]
        for event in events
    ]
    refused = await reentry_refusals(
        session,
        [
            (flow, event.contact_id)
            for event, flows in zip(events, candidates, strict=True)
            for flow, _ in flows
        ],
    )
    return [
        [
            run_start(settings, flow, version, event.contact_id, event.account_id, event.event_id)
            for flow, version in flows
            if (flow.id, event.contact_id) not in refused
        ]
        for event, flows in zip(events, candidates, strict=True)
    ]


async def _active_flows(
    session: AsyncSession, trigger_type: str, merchant_id: str, account_id: uuid.UUID
) -> list[tuple[AutomationFlow, FlowVersion]]:
    rows = await session.execute(
        select(AutomationFlow, FlowVersion)
        .join(
            FlowVersion,
            (col(FlowVersion.flow_id) == col(AutomationFlow.id))
            & (col(FlowVersion.version) == col(AutomationFlow.version)),
        )
        .where(
            col(AutomationFlow.merchant_id) == merchant_id,
            col(AutomationFlow.status) == FlowStatus.active,
            col(AutomationFlow.trigger)["type"].astext == trigger_type,
            or_(
                col(AutomationFlow.account_id).is_(None),
                col(AutomationFlow.account_id) == account_id,
            ),
        )
        .order_by(col(AutomationFlow.created_at))
    )
    return list(rows.tuples())


def register_triggers(
    registry: TriggerRegistry, settings: Settings, sessions: SessionMaker
) -> None:
    def trigger(
        name: str, kind: ContactEventKind, trigger_type: str, matches: Matches | None
    ) -> Trigger:
        async def decide_many(events: Sequence[ContactEvent]) -> list[list[WorkflowStart]]:
            # STOP and START are consent, never a flow's keyword.
            asked = [
                i
                for i, event in enumerate(events)
                if kind is not ContactEventKind.message
                or not consent_keyword(settings, event.text or "")
            ]
            decided: list[list[WorkflowStart]] = [[] for _ in events]
            if asked:
                async with sessions() as session:
                    answers = await decide_for(
                        session, settings, trigger_type, [events[i] for i in asked], matches
                    )
                for i, answer in zip(asked, answers, strict=True):
                    decided[i] = answer
            return decided

        async def decide(event: ContactEvent) -> Sequence[WorkflowStart]:
            return (await decide_many([event]))[0]

        return Trigger(name, frozenset({kind}), decide, decide_many)

    registry.register(trigger(NEW_FOLLOWER_TRIGGER, ContactEventKind.follow, "new_follower", None))
    registry.register(
        trigger(MESSAGE_TRIGGER, ContactEventKind.message, "message_received", _message_matches)
    )
    registry.register(trigger(TAG_TRIGGER, ContactEventKind.tag_added, "tag_added", _tag_matches))
