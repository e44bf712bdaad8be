"""Connect and disconnect own their recovery: with Temporal away a disconnect answers 503 and
leaves the account as it was; a connect or disconnect whose workflow was never started (the
process died after its commit) is started by the maintenance schedule, once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from temporalio.client import Client

from integrations.x import XClient
from mktx.secrets import SecretBox
from mktx.settings import Settings
from models.account import AccountConnect, XAccount
from models.db import SessionMaker, utcnow
from sandbox.admin import SandboxAdmin, SandboxUser
from services.accounts import accounts as account_service
from tests.conftest import Api, Merchant
from tests.stoppable_temporal import OWED_ONLY, PAST_GRACE, OwnStack, own_stack
from workflows import ids
from workflows.accounts import AccountConnectWorkflow, AccountDisconnectWorkflow
from workflows.contracts.accounts import ConnectOutcome
from workflows.maintenance import MaintenanceResult, MaintenanceWorkflow


async def _x_user(x_admin: SandboxAdmin) -> SandboxUser:
    return await x_admin.create_user(username=f"shop_{uuid.uuid4().hex[:8]}")


async def _connect(api: Api, user: SandboxUser) -> dict[str, Any]:
    response = await api.post(
        "/accounts",
        json={"oauthToken": user.access_token, "oauthTokenSecret": user.access_token_secret},
    )
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


async def _row(sessions: SessionMaker, account_id: uuid.UUID | str) -> XAccount:
    async with sessions() as session:
        row = await session.get(XAccount, uuid.UUID(str(account_id)))
        assert row is not None
        return row


async def _date_back(sessions: SessionMaker, account_id: uuid.UUID, **columns: Any) -> None:
    past = utcnow() - PAST_GRACE
    async with sessions() as session, session.begin():
        await session.execute(
            update(XAccount)
            .where(XAccount.id == account_id)  # type: ignore[arg-type]
            .values(**{column: past for column in columns})
        )


async def _maintenance(client: Client, settings: Settings) -> MaintenanceResult:
    return await client.execute_workflow(
        MaintenanceWorkflow.run,
        OWED_ONLY,
        id=f"maintenance-test-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
    )


@pytest.fixture
async def stack(
    settings: Settings, sessions: SessionMaker, merchant: Merchant, tmp_path: Path
) -> AsyncIterator[OwnStack]:
    async with own_stack(settings, sessions, merchant, tmp_path) as stack:
        yield stack


async def test_disconnect_and_connect_answer_503_and_keep_nothing_while_temporal_is_stopped(
    stack: OwnStack, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    account = await _connect(stack.api, await _x_user(x_admin))
    connect = stack.client.get_workflow_handle_for(
        AccountConnectWorkflow.run, ids.account_connect_id(account["id"])
    )
    assert (await asyncio.wait_for(connect.result(), 60)).outcome == ConnectOutcome.subscribed
    await stack.stop_temporal()

    response = await stack.api.delete(f"/accounts/{account['id']}")

    assert response.status_code == 503, response.text
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
    row = await _row(sessions, account["id"])
    assert row.status == "active" and row.disconnected_at is None
    assert row.oauth_token_encrypted is not None
    # A connect meanwhile: 503 too, nothing kept.
    newcomer = await _x_user(x_admin)
    refused = await stack.api.post(
        "/accounts",
        json={
            "oauthToken": newcomer.access_token,
            "oauthTokenSecret": newcomer.access_token_secret,
        },
    )
    assert refused.status_code == 503, refused.text
    listed = (await stack.api.get("/accounts")).json()["data"]
    assert [a["id"] for a in listed] == [account["id"]]
    # Nothing is owed: a maintenance run once Temporal is back starts no disconnect.
    await stack.start_temporal()
    await _date_back(sessions, row.id, connected_at=True)
    result = await stack.maintenance()
    assert result.owed_starts is not None and result.owed_starts.account_disconnects.errors == 0
    assert (await _row(sessions, account["id"])).status == "active"


@pytest.mark.usefixtures("worker")
async def test_a_connect_whose_workflow_never_started_is_subscribed_by_maintenance(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
    sandbox_x: XClient,
) -> None:
    user = await _x_user(x_admin)
    # What a request that died right after its commit leaves: the row, pending, no workflow.
    async with sessions() as session:
        account = await account_service.add_account(
            session,
            sandbox_x,
            SecretBox.from_settings(settings),
            api.merchant.id,
            AccountConnect(
                oauth_token=user.access_token, oauth_token_secret=user.access_token_secret
            ),
            settings.x_webhook_id,
        )
        await session.commit()
    await _date_back(sessions, account.id, connected_at=True)

    result = await _maintenance(temporal_client, settings)

    assert result.owed_starts is not None and result.owed_starts.account_connects.started >= 1
    handle = temporal_client.get_workflow_handle_for(
        AccountConnectWorkflow.run, ids.account_connect_id(str(account.id))
    )
    assert (await asyncio.wait_for(handle.result(), 60)).outcome == ConnectOutcome.subscribed
    assert (await _row(sessions, account.id)).subscription_status == "subscribed"
    assert user.id in (await x_admin.subscriptions()).get(settings.x_webhook_id, [])
    run_id = (await handle.describe()).run_id
    await _maintenance(temporal_client, settings)
    assert (await handle.describe()).run_id == run_id  # subscribed: nothing more is owed


@pytest.mark.usefixtures("worker")
async def test_a_disconnect_whose_workflow_never_started_is_finished_by_maintenance(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
) -> None:
    user = await _x_user(x_admin)
    account = await _connect(api, user)
    connect = temporal_client.get_workflow_handle_for(
        AccountConnectWorkflow.run, ids.account_connect_id(account["id"])
    )
    await asyncio.wait_for(connect.result(), 60)
    # What a disconnect that died right after its commit leaves: unusable, its token kept.
    async with sessions() as session:
        row = await account_service.get_account(session, api.merchant.id, uuid.UUID(account["id"]))
        account_service.mark_disconnected(row)
        await session.commit()
    await _date_back(sessions, row.id, disconnected_at=True)

    result = await _maintenance(temporal_client, settings)

    assert result.owed_starts is not None
    assert result.owed_starts.account_disconnects.started >= 1
    handle = temporal_client.get_workflow_handle_for(
        AccountDisconnectWorkflow.run, ids.account_disconnect_id(account["id"])
    )
    outcome = await asyncio.wait_for(handle.result(), 60)
    assert outcome.unsubscribed and outcome.token_revoked
    erased = await _row(sessions, account["id"])
    assert erased.oauth_token_encrypted is None and erased.oauth_token_secret_encrypted is None
    assert user.id not in (await x_admin.subscriptions()).get(settings.x_webhook_id, [])
    run_id = (await handle.describe()).run_id
    await _maintenance(temporal_client, settings)
    assert (await handle.describe()).run_id == run_id  # erased: nothing more is owed
