"""Real parts for every test: PostgreSQL, the Temporal dev server, the X sandbox, the API and a
worker, started once per session. Each test owns its data through a fresh merchant id."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from api.app import BASE_PATH, create_app  # noqa: E402
from integrations.x import XClient, x_client_from_settings  # noqa: E402
from migrations.runner import upgrade_database  # noqa: E402
from mktx.logs import configure_logging  # noqa: E402
from mktx.settings import Environment, Settings  # noqa: E402
from models.db import SessionMaker, make_engine, make_sessionmaker  # noqa: E402
from sandbox.admin import SandboxAdmin  # noqa: E402
from sandbox.app import SandboxConfig  # noqa: E402
from sandbox.server import RunningSandbox, serve_in_thread, start_sandbox_thread  # noqa: E402
from services.core.auth import Role, issue_token  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.ids import SEARCH_ATTRIBUTES  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Log as the service does: its handler and formatter, at its default level. A log call builds a
# record only at or above the level, so below INFO a bad `extra=` key passed every test and answered
# 500 in `make dev` (issue 8). Done at import, before pytest attaches its own log handlers to the
# root logger (configure_logging replaces the root's handlers); caplog still sees every record.
configure_logging(Settings.model_fields["log_level"].default)


# PostgreSQL ---------------------------------------------------------------------------------


def _server_url() -> str:
    """MKTX_TEST_DATABASE_URL if set, else an embedded server (pgserver) under .mkt-x/."""
    explicit = os.environ.get("MKTX_TEST_DATABASE_URL")
    if explicit:
        return explicit
    import pgserver

    data = REPO / ".mkt-x" / "test-pg"
    data.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data, cleanup_mode="stop")
    return server.get_uri()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database for this run, migrated to head, dropped at the end."""
    server_url = make_url(_server_url().replace("postgresql://", "postgresql+psycopg://", 1)).set(
        drivername="postgresql+psycopg"
    )
    name = f"mktx_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = server_url.set(database=name).render_as_string(hide_password=False)
    upgrade_database(url)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> SessionMaker:
    return make_sessionmaker(engine)


# Temporal -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


# X sandbox ----------------------------------------------------------------------------------

CONSUMER_KEY = "test-consumer-key"
CONSUMER_SECRET = "test-consumer-secret-0123456789"
WEBHOOK_ID = "test-webhook"


@pytest.fixture(scope="session")
def sandbox() -> Iterator[RunningSandbox]:
    running = start_sandbox_thread(
        SandboxConfig(
            consumer_key=CONSUMER_KEY,
            consumer_secret=CONSUMER_SECRET,
            webhook_id=WEBHOOK_ID,
            webhook_url="http://127.0.0.1:9/unset",  # set once the API listens
            seed_demo=False,
        )
    )
    yield running
    running.stop()


@pytest.fixture
async def x_admin(sandbox: RunningSandbox) -> AsyncIterator[SandboxAdmin]:
    admin = SandboxAdmin(sandbox.url)
    yield admin
    await admin.clear_faults()


# Service ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def settings(
    database_url: str, temporal_env: WorkflowEnvironment, sandbox: RunningSandbox
) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        env=Environment.test,
        database_url=database_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        task_queue=f"mktx-test-{uuid.uuid4().hex[:8]}",
        x_api_base_url=sandbox.url,
        x_consumer_key=SecretStr(CONSUMER_KEY),
        x_consumer_secret=SecretStr(CONSUMER_SECRET),
        x_webhook_id=WEBHOOK_ID,
        x_timeout_seconds=5,
        llm_api_base=f"{sandbox.url}/v1",
        llm_api_key=SecretStr("sandbox"),  # litellm's OpenAI client insists on one
        llm_timeout_seconds=3,
        rate_limit_per_minute=10_000,
    )


@pytest.fixture(scope="session")
async def worker(
    settings: Settings, temporal_client: Client, sessions: SessionMaker
) -> AsyncIterator[None]:
    async with build_worker(temporal_client, settings, sessions):
        yield


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The API app for `settings`, its lifespan run, and a client that calls it in-process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mktx.test") as client:
            yield app, client


@pytest.fixture(scope="session")
async def app_client(settings: Settings, worker: None) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(settings) as (_, client):
        yield client


@pytest.fixture(scope="session")
async def live_api(settings: Settings, worker: None, sandbox: RunningSandbox) -> AsyncIterator[str]:
    """The API listening on a real port, and the sandbox's webhook pointed at it, so that
    simulated X events arrive over HTTP as they would from X."""
    server = serve_in_thread(create_app(settings), lifespan="on")
    await SandboxAdmin(sandbox.url).set_webhook_url(f"{server.url}{BASE_PATH}/webhooks/twitter")
    yield server.url
    server.stop()


@dataclass
class Merchant:
    """A tenant of its own for one test, with tokens for each role."""

    settings: Settings
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    user_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def token(self, role: Role = Role.admin, ttl: int = 600) -> str:
        return issue_token(
            self.settings, merchant_id=self.id, user_id=self.user_id, roles=[role], ttl_seconds=ttl
        )

    def headers(self, role: Role = Role.admin) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role)}"}


@pytest.fixture
def merchant(settings: Settings) -> Merchant:
    return Merchant(settings)


@pytest.fixture
def other_merchant(settings: Settings) -> Merchant:
    return Merchant(settings)


class Api:
    """The API as a client sees it: paths relative to /api/v1/mkt-x, a merchant's token."""

    def __init__(self, client: httpx.AsyncClient, merchant: Merchant) -> None:
        self.client = client
        self.merchant = merchant

    async def request(
        self, method: str, path: str, *, role: Role = Role.admin, **kwargs: Any
    ) -> httpx.Response:
        headers = {**self.merchant.headers(role), **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return await self.client.request(method, BASE_PATH + path, headers=headers, **kwargs)  # type: ignore[arg-type]

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)


@pytest.fixture
def api(app_client: httpx.AsyncClient, merchant: Merchant) -> Api:
    return Api(app_client, merchant)


@pytest.fixture
def other_api(app_client: httpx.AsyncClient, other_merchant: Merchant) -> Api:
    return Api(app_client, other_merchant)


@pytest.fixture(scope="session")
def sandbox_x(settings: Settings) -> XClient:
    """The service's own X client, pointed at the sandbox (to check what X now thinks)."""
    return x_client_from_settings(settings)
