"""What activities are built from: one set of dependencies per worker process."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client

from integrations.x import XClient
from mktx.secrets import SecretBox
from mktx.settings import Settings
from models.db import SessionMaker


@dataclass(frozen=True)
class WorkerDeps:
    settings: Settings
    sessions: SessionMaker
    x: XClient
    secrets: SecretBox
    temporal: Client
