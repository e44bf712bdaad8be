"""Every domain's triggers in one registry per process: the API's (ingestion records and
carries out what they decide) and the worker's (the maintenance schedule carries out what is
left) are built here from the same code, so both know the same names."""

from __future__ import annotations

from mktx.settings import Settings
from models.db import SessionMaker
from services.assistant.auto_reply import register_triggers as register_assistant_triggers
from services.flows.triggers import register_triggers as register_flow_triggers
from services.ingestion.triggers import TriggerRegistry


def build_triggers(settings: Settings, sessions: SessionMaker) -> TriggerRegistry:
    registry = TriggerRegistry()
    register_flow_triggers(registry, settings, sessions)
    register_assistant_triggers(registry, settings, sessions)
    return registry
