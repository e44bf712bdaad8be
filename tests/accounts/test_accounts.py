"""Account Management end to end: API → PostgreSQL → Temporal workflow → X sandbox."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlmodel import col
from temporalio.client import Client

from integrations.x import XClient, XCredentials, XInvalidCredentials
from mktx.logs import JsonFormatter
from mktx.secrets import SecretBox
from mktx.settings import Settings
from models.account import XAccount
from models.contact import Contact
from models.conversation import Conversation, Message
from models.db import SessionMaker, utcnow
from sandbox.admin import SandboxAdmin, SandboxUser
from services.core.auth import Role
from tests.conftest import Api
from workflows import ids
from workflows.accounts import AccountConnectWorkflow, AccountDisconnectWorkflow
from workflows.contracts import accounts as accounts_contract
from workflows.contracts.accounts import AccountConnectResult, ConnectOutcome


async def _x_user(x_admin: SandboxAdmin, **kwargs: Any) -> SandboxUser:
    return await x_admin.create_user(username=f"shop_{uuid.uuid4().hex[:8]}", **kwargs)


async def _connect(api: Api, user: SandboxUser) -> dict[str, Any]:
    response = await api.post(
        "/accounts",
        json={"oauthToken": user.access_token, "oauthTokenSecret": user.access_token_secret},
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def _connect_result(client: Client, account_id: str) -> AccountConnectResult:
    handle = client.get_workflow_handle_for(
        AccountConnectWorkflow.run, ids.account_connect_id(account_id)
    )
    return await asyncio.wait_for(handle.result(), timeout=60)


async def _row(sessions: SessionMaker, account_id: str) -> XAccount:
    async with sessions() as session:
        row = await session.get(XAccount, uuid.UUID(account_id))
        assert row is not None
        return row


async def test_connect_returns_the_documented_shape_and_subscribes(
    api: Api,
    x_admin: SandboxAdmin,
    temporal_client: Client,
    sessions: SessionMaker,
    settings: Settings,
) -> None:
    user = await _x_user(x_admin, name="GoodGo Official")

    account = await _connect(api, user)

    assert account["merchantId"] == api.merchant.id
    assert account["twitterUserId"] == user.id
    assert account["username"] == user.username
    assert account["displayName"] == "GoodGo Official"
    assert account["status"] == "active"
    assert account["connectedAt"].endswith(("Z", "+00:00"))
    uuid.UUID(account["id"])
    for secret in (user.access_token, user.access_token_secret):
        assert secret not in str(account)

    result = await _connect_result(temporal_client, account["id"])
    assert result.outcome == ConnectOutcome.subscribed
    assert user.id in (await x_admin.subscriptions())[settings.x_webhook_id]

    row = await _row(sessions, account["id"])
    assert row.subscription_status == "subscribed"
    # Tokens are stored encrypted, and only the configured key opens them.
    assert row.oauth_token_encrypted and user.access_token not in row.oauth_token_encrypted
    assert SecretBox.from_settings(settings).open(row.oauth_token_encrypted) == user.access_token

    detail = (await api.get(f"/accounts/{account['id']}")).json()["data"]
    assert detail["subscriptionStatus"] == "subscribed"
    assert detail["webhookId"] == settings.x_webhook_id
    assert detail["statistics"] == {
        "totalContacts": 0,
        "totalConversations": 0,
        "messagesThisMonth": 0,
    }
    assert "oauthToken" not in detail and "oauthTokenEncrypted" not in detail


async def test_the_workflow_is_filterable_by_merchant_in_temporal(
    api: Api, x_admin: SandboxAdmin, temporal_client: Client
) -> None:
    account = await _connect(api, await _x_user(x_admin))
    await _connect_result(temporal_client, account["id"])
    query = f'MerchantId = "{api.merchant.id}" AND AccountId = "{account["id"]}"'
    for _ in range(50):  # the visibility store is eventually consistent
        found = [wf.id async for wf in temporal_client.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.2)
    assert found == [ids.account_connect_id(account["id"])]


async def test_credentials_x_rejects_are_400_and_store_nothing(
    api: Api, x_admin: SandboxAdmin
) -> None:
    user = await _x_user(x_admin)
    response = await api.post(
        "/accounts", json={"oauthToken": user.access_token, "oauthTokenSecret": "wrong"}
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == "oauthToken"
    assert (await api.get("/accounts")).json()["pagination"]["total"] == 0


async def test_a_revoked_token_cannot_connect(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    user = await _x_user(x_admin)
    await x_admin.revoke(user.access_token)
    response = await api.post(
        "/accounts",
        json={"oauthToken": user.access_token, "oauthTokenSecret": user.access_token_secret},
    )
    assert response.status_code == 400
    body = response.json()
    assert (body["success"], body["code"]) == (False, "VALIDATION_ERROR")
    assert body["details"]["field"] == "oauthToken"
    # Nothing kept: no account to list, no row, no subscription at X.
    assert (await api.get("/accounts")).json()["pagination"]["total"] == 0
    async with sessions() as session:
        rows = await session.execute(
            select(func.count()).where(col(XAccount.merchant_id) == api.merchant.id)
        )
        assert rows.scalar_one() == 0
    assert all(user.id not in users for users in (await x_admin.subscriptions()).values())


async def test_an_x_account_connects_once_across_merchants(
    api: Api, other_api: Api, x_admin: SandboxAdmin
) -> None:
    user = await _x_user(x_admin)
    await _connect(api, user)
    body = {"oauthToken": user.access_token, "oauthTokenSecret": user.access_token_secret}
    for client in (api, other_api):
        response = await client.post("/accounts", json=body)
        assert response.status_code == 409
        assert response.json()["code"] == "DUPLICATE_RESOURCE"


async def test_list_filters_by_status_and_paginates(
    api: Api, x_admin: SandboxAdmin, temporal_client: Client
) -> None:
    first = await _connect(api, await _x_user(x_admin))
    second = await _connect(api, await _x_user(x_admin))
    await _connect_result(temporal_client, first["id"])
    assert (await api.delete(f"/accounts/{first['id']}")).status_code == 200

    everything = (await api.get("/accounts")).json()
    assert {a["id"] for a in everything["data"]} == {first["id"], second["id"]}
    active = (await api.get("/accounts?status=active")).json()
    assert [a["id"] for a in active["data"]] == [second["id"]]
    inactive = (await api.get("/accounts?status=inactive")).json()
    assert [a["id"] for a in inactive["data"]] == [first["id"]]
    page = (await api.get("/accounts?skip=1&take=1")).json()
    assert page["pagination"] == {
        "page": 2,
        "limit": 1,
        "total": 2,
        "totalPages": 2,
        "totalIsEstimate": False,
    }
    assert len(page["data"]) == 1
    bad = await api.get("/accounts?status=sleeping")
    assert bad.status_code == 422 and bad.json()["details"]["field"] == "status"


async def test_statistics_count_the_accounts_rows(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    account = await _connect(api, await _x_user(x_admin))
    account_id = uuid.UUID(account["id"])
    merchant = api.merchant.id
    async with sessions() as session, session.begin():
        contact = Contact(merchant_id=merchant, account_id=account_id, twitter_user_id="42")
        session.add(contact)
        await session.flush()
        conversation = Conversation(
            merchant_id=merchant, account_id=account_id, contact_id=contact.id
        )
        session.add(conversation)
        await session.flush()
        last_year = utcnow() - timedelta(days=400)  # not this month, whatever today is
        await session.execute(
            insert(Message),
            [
                dict(
                    id=uuid.uuid4(),
                    merchant_id=merchant,
                    conversation_id=conversation.id,
                    account_id=account_id,
                    contact_id=contact.id,
                    direction="inbound",
                    content=f"hello {i}",
                    sent_at=last_year if i == 0 else utcnow(),
                    created_at=utcnow(),
                    updated_at=utcnow(),
                    type="text",
                    attachments=[],
                    is_from_bot=False,
                    status="received",
                )
                for i in range(3)
            ],
        )
    detail = (await api.get(f"/accounts/{account['id']}")).json()["data"]
    assert detail["statistics"] == {
        "totalContacts": 1,
        "totalConversations": 1,
        "messagesThisMonth": 2,
    }


async def test_update_settings(api: Api, x_admin: SandboxAdmin) -> None:
    account = await _connect(api, await _x_user(x_admin))
    hours = {
        "enabled": True,
        "timezone": "Asia/Ho_Chi_Minh",
        "schedule": {
            "monday": {"start": "09:00", "end": "18:00"},
            "tuesday": {"start": "09:00", "end": "18:00"},
        },
    }
    response = await api.put(
        f"/accounts/{account['id']}", json={"autoReplyEnabled": True, "businessHours": hours}
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["autoReplyEnabled"] is True
    assert data["businessHours"] == hours

    # A partial update leaves the rest alone.
    response = await api.put(f"/accounts/{account['id']}", json={"autoReplyEnabled": False})
    fetched = (await api.get(f"/accounts/{account['id']}")).json()["data"]
    assert fetched["autoReplyEnabled"] is False
    assert fetched["businessHours"] == hours


@pytest.mark.parametrize(
    ("hours", "field"),
    [
        ({"timezone": "Mars/Olympus", "schedule": {}}, "businessHours.timezone"),
        (
            {"timezone": "UTC", "schedule": {"monday": {"start": "25:00", "end": "26:00"}}},
            "businessHours.schedule.monday.start",
        ),
        (
            {"timezone": "UTC", "schedule": {"monday": {"start": "9:00", "end": "18:00"}}},
            "businessHours.schedule.monday.start",
        ),
        (
            {"timezone": "UTC", "schedule": {"monday": {"start": "18:00", "end": "09:00"}}},
            "businessHours.schedule.monday",
        ),
        (
            {"timezone": "UTC", "schedule": {"funday": {"start": "09:00", "end": "18:00"}}},
            "businessHours.schedule.funday",
        ),
        ({"schedule": {}}, "businessHours.timezone"),
    ],
)
async def test_bad_settings_are_422_naming_the_field(
    api: Api, x_admin: SandboxAdmin, hours: dict[str, Any], field: str
) -> None:
    account = await _connect(api, await _x_user(x_admin))
    response = await api.put(f"/accounts/{account['id']}", json={"businessHours": hours})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == field, body


async def test_disconnect_revokes_the_token_and_erases_it(
    api: Api,
    x_admin: SandboxAdmin,
    temporal_client: Client,
    sessions: SessionMaker,
    settings: Settings,
    sandbox_x: XClient,
) -> None:
    user = await _x_user(x_admin)
    account = await _connect(api, user)
    await _connect_result(temporal_client, account["id"])

    response = await api.delete(f"/accounts/{account['id']}")
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": None}

    # Unusable at once: the row says so before the workflow has run.
    detail = (await api.get(f"/accounts/{account['id']}")).json()["data"]
    assert detail["status"] == "inactive"
    assert detail["disconnectedAt"] is not None

    handle = temporal_client.get_workflow_handle_for(
        AccountDisconnectWorkflow.run, ids.account_disconnect_id(account["id"])
    )
    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.unsubscribed and result.token_revoked
    assert user.id not in (await x_admin.subscriptions()).get(settings.x_webhook_id, [])
    with pytest.raises(XInvalidCredentials):
        sandbox_x.get_me(XCredentials(user.access_token, user.access_token_secret))
    row = await _row(sessions, account["id"])
    assert row.oauth_token_encrypted is None and row.oauth_token_secret_encrypted is None
    assert row.subscription_status == "unsubscribed"

    again = await api.delete(f"/accounts/{account['id']}")
    assert again.status_code == 400 and again.json()["code"] == "INVALID_STATE"
    changed = await api.put(f"/accounts/{account['id']}", json={"autoReplyEnabled": True})
    assert changed.status_code == 400

    # The same X account can be connected again with a fresh token.
    fresh = await x_admin.new_token(user.id)
    reconnected = await api.post(
        "/accounts",
        json={"oauthToken": fresh.access_token, "oauthTokenSecret": fresh.access_token_secret},
    )
    assert reconnected.status_code == 200
    assert reconnected.json()["data"]["id"] != account["id"]


async def test_another_merchant_sees_nothing(
    api: Api, other_api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    account = await _connect(api, await _x_user(x_admin))
    path = f"/accounts/{account['id']}"

    attempts = [
        await other_api.get(path),
        await other_api.put(path, json={"autoReplyEnabled": True}),
        await other_api.delete(path),
    ]
    for response in attempts:
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "RESOURCE_NOT_FOUND"
        assert account["username"] not in response.text
    assert (await other_api.get("/accounts")).json()["data"] == []

    row = await _row(sessions, account["id"])
    assert row.status == "active" and row.auto_reply_enabled is False


async def test_unknown_account_is_404(api: Api) -> None:
    response = await api.get(f"/accounts/{uuid.uuid4()}")
    assert response.status_code == 404
    malformed = await api.get("/accounts/not-a-uuid")
    assert malformed.status_code == 422
    assert malformed.json()["details"]["field"] == "accountId"


async def test_connect_survives_x_being_down(
    api: Api, x_admin: SandboxAdmin, temporal_client: Client, sessions: SessionMaker
) -> None:
    user = await _x_user(x_admin)
    await x_admin.set_faults(error_rate=1.0, error_status=503, path_prefix="/2/account_activity")

    account = await _connect(api, user)
    assert account["subscriptionStatus"] == "pending"

    # Wait until the workflow has hit the outage at least twice, then bring X back.
    for _ in range(100):
        attempts = await x_admin.requests(path_prefix="/2/account_activity", user_id=user.id)
        if len(attempts) >= 2:
            break
        await asyncio.sleep(0.1)
    assert len(attempts) >= 2 and all(r.status == 503 for r in attempts)
    assert (await _row(sessions, account["id"])).subscription_status == "pending"
    await x_admin.clear_faults()

    result = await _connect_result(temporal_client, account["id"])
    assert result.outcome == ConnectOutcome.subscribed
    assert (await _row(sessions, account["id"])).subscription_status == "subscribed"


async def test_token_revoked_before_subscribing_marks_the_account(
    api: Api, x_admin: SandboxAdmin, temporal_client: Client, sessions: SessionMaker
) -> None:
    user = await _x_user(x_admin)
    await x_admin.set_faults(error_rate=1.0, error_status=503, path_prefix="/2/account_activity")
    account = await _connect(api, user)
    await x_admin.revoke(user.access_token)
    await x_admin.clear_faults()

    result = await _connect_result(temporal_client, account["id"])

    assert result.outcome == ConnectOutcome.failed
    detail = (await api.get(f"/accounts/{account['id']}")).json()["data"]
    assert detail["status"] == "error"
    assert detail["subscriptionStatus"] == "failed"
    assert "token" in detail["statusReason"]


async def test_tokens_are_never_logged(
    api: Api, x_admin: SandboxAdmin, temporal_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = await _x_user(x_admin)
    account = await _connect(api, user)
    await _connect_result(temporal_client, account["id"])
    await api.delete(f"/accounts/{account['id']}")
    handle = temporal_client.get_workflow_handle(ids.account_disconnect_id(account["id"]))
    await asyncio.wait_for(handle.result(), timeout=60)
    # Each record as the service writes it, and everything it carries.
    logged = "\n".join(f"{JsonFormatter().format(r)} {r.__dict__}" for r in caplog.records)
    assert user.access_token not in logged
    assert user.access_token_secret not in logged
    # ... and the capture did see what handled the tokens: the two requests, and the worker
    # running the connect and disconnect workflows' activities.
    requests = {(r.__dict__.get("method"), r.__dict__.get("path")) for r in caplog.records}
    assert ("POST", "/api/v1/mkt-x/accounts") in requests
    assert ("DELETE", f"/api/v1/mkt-x/accounts/{account['id']}") in requests
    worker = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("temporalio"))
    assert accounts_contract.SUBSCRIBE in worker and accounts_contract.REVOKE_TOKEN in worker


async def test_viewer_reads_but_cannot_disconnect(api: Api, x_admin: SandboxAdmin) -> None:
    account = await _connect(api, await _x_user(x_admin))
    assert (await api.get(f"/accounts/{account['id']}", role=Role.viewer)).status_code == 200
    response = await api.delete(f"/accounts/{account['id']}", role=Role.viewer)
    assert response.status_code == 403
    assert (await api.get(f"/accounts/{account['id']}")).json()["data"]["status"] == "active"


async def test_connect_answers_503_and_keeps_nothing_when_temporal_is_down(
    settings: Settings, x_admin: SandboxAdmin, merchant: Any
) -> None:
    import httpx

    from api.app import create_app

    app = create_app(settings.model_copy(update={"temporal_address": "127.0.0.1:9"}))
    user = await _x_user(x_admin)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post(
                "/api/v1/mkt-x/accounts",
                headers=merchant.headers(),
                json={
                    "oauthToken": user.access_token,
                    "oauthTokenSecret": user.access_token_secret,
                },
            )
            assert response.status_code == 503
            assert response.json()["code"] == "SERVICE_UNAVAILABLE"
            listed = await client.get("/api/v1/mkt-x/accounts", headers=merchant.headers())
            assert listed.json()["data"] == []
