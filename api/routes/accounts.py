"""Account Management: connect, list, get, update settings, disconnect."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.deps import AccountAdminDep, ContextDep, ReaderDep, SessionDep, TemporalDep
from api.envelope import Envelope, Page, error_responses, ok
from api.pagination import PageDep
from api.storable import StorableTextRoute
from models.account import (
    AccountConnect,
    AccountDetail,
    AccountPublic,
    AccountSettingsUpdate,
    AccountStatus,
    XAccount,
)
from services.accounts import accounts as account_service
from services.accounts import lifecycle
from services.flows import exits as flow_exits
from workflows.contracts.flows import ExitReason, FlowStop, RunStatus

router = APIRouter(prefix="/accounts", tags=["accounts"], route_class=StorableTextRoute)


async def load_account(
    principal: ReaderDep,
    session: SessionDep,
    account_id: Annotated[uuid.UUID, Path(alias="accountId")],
) -> XAccount:
    return await account_service.get_account(session, principal.merchant_id, account_id)


AccountDep = Annotated[XAccount, Depends(load_account)]


@router.post(
    "",
    response_model=Envelope[AccountPublic],
    responses=error_responses(400, 401, 403, 409, 422, 429, 502, 503),
)
async def connect_account(
    body: AccountConnect,
    principal: AccountAdminDep,
    session: SessionDep,
    context: ContextDep,
    temporal: TemporalDep,
) -> Envelope[AccountPublic]:
    """Connect an X account with its OAuth 1.0a token; a workflow subscribes it to webhooks."""
    account = await lifecycle.connect(
        session,
        temporal,
        context.x,
        context.secrets,
        context.settings,
        principal.merchant_id,
        body,
    )
    return ok(AccountPublic.model_validate(account))


@router.get("", response_model=Page[AccountPublic], responses=error_responses(401, 403, 422))
async def list_accounts(
    principal: ReaderDep,
    session: SessionDep,
    page: PageDep,
    status: Annotated[AccountStatus | None, Query(description="active, inactive or error")] = None,
) -> Page[AccountPublic]:
    """List the merchant's connected X accounts."""
    statement = account_service.accounts_listing(principal.merchant_id, status)
    rows, total = await page.fetch(session, statement)
    return page.page([AccountPublic.model_validate(row) for row in rows], total)


@router.get(
    "/{accountId}", response_model=Envelope[AccountDetail], responses=error_responses(401, 404)
)
async def get_account(account: AccountDep, session: SessionDep) -> Envelope[AccountDetail]:
    """One account with its statistics."""
    statistics = await account_service.account_statistics(session, account)
    public = AccountPublic.model_validate(account)
    return ok(AccountDetail(**public.model_dump(), statistics=statistics))


@router.put(
    "/{accountId}",
    response_model=Envelope[AccountPublic],
    responses=error_responses(400, 401, 403, 404, 422),
)
async def update_account(
    body: AccountSettingsUpdate, principal: AccountAdminDep, account: AccountDep
) -> Envelope[AccountPublic]:
    """Update auto-reply and business hours."""
    account_service.apply_settings(account, body)
    return ok(AccountPublic.model_validate(account))


@router.delete(
    "/{accountId}", response_model=Envelope[None], responses=error_responses(400, 401, 403, 404)
)
async def disconnect_account(
    principal: AccountAdminDep,
    account: AccountDep,
    session: SessionDep,
    context: ContextDep,
    temporal: TemporalDep,
) -> Envelope[None]:
    """Disconnect an account: unusable at once; a workflow unsubscribes it and revokes its token.
    Its contacts' flow runs exit (`account_unusable`)."""
    await lifecycle.disconnect(session, temporal, context.settings, account)
    workflow_ids = await flow_exits.exit_account_runs(session, account.id)
    await session.commit()
    stop = FlowStop(status=RunStatus.exited, exit_reason=ExitReason.account_unusable)
    await flow_exits.stop_soon(context.temporal.client, workflow_ids, stop)
    return ok(None)
