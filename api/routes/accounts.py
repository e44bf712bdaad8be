"""Account Management: connect, list, get, update settings, disconnect."""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from api.deps import AccountAdminDep, ContextDep, ReaderDep, SessionDep, TemporalDep
from api.envelope import Envelope, Page, error_responses, ok
from api.pagination import PageDep
from models.account import (
    AccountConnect,
    AccountDetail,
    AccountPublic,
    AccountSettingsUpdate,
    AccountStatus,
    XAccount,
)
from services.accounts import accounts as account_service
from services.core.errors import ServiceUnavailable
from workflows import ids
from workflows.accounts import (
    AccountConnectInput,
    AccountConnectWorkflow,
    AccountDisconnectInput,
    AccountDisconnectWorkflow,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/accounts", tags=["accounts"])


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
    account = await account_service.connect_account(
        session,
        context.x,
        context.secrets,
        principal.merchant_id,
        body,
        context.settings.x_webhook_id,
    )
    # The workflow reads the row, so the row must be committed before the workflow starts.
    await session.commit()
    try:
        await temporal.start_workflow(
            AccountConnectWorkflow.run,
            AccountConnectInput(
                merchant_id=account.merchant_id,
                account_id=account.id,
                webhook_id=context.settings.x_webhook_id,
            ),
            id=ids.account_connect_id(str(account.id)),
            task_queue=context.settings.task_queue,
            search_attributes=ids.account_attributes(account.merchant_id, str(account.id)),
        )
    except RPCError as exc:
        await session.delete(account)  # nothing half-done: the caller may simply retry
        await session.commit()
        raise ServiceUnavailable("could not start the connect workflow; try again") from exc
    logger.info("account.connected", extra={"account_id": str(account.id)})
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
    """Disconnect an account: unusable at once; a workflow unsubscribes it and revokes its token."""
    previous = (account.status, account.status_reason)
    account_service.mark_disconnected(account)
    await session.commit()
    await _cancel_quietly(temporal.get_workflow_handle(ids.account_connect_id(str(account.id))))
    try:
        await temporal.start_workflow(
            AccountDisconnectWorkflow.run,
            AccountDisconnectInput(
                merchant_id=account.merchant_id,
                account_id=account.id,
                webhook_id=account.webhook_id,
            ),
            id=ids.account_disconnect_id(str(account.id)),
            task_queue=context.settings.task_queue,
            search_attributes=ids.account_attributes(account.merchant_id, str(account.id)),
        )
    except RPCError as exc:
        account.status, account.status_reason = previous
        account.disconnected_at = None
        await session.commit()
        raise ServiceUnavailable("could not start the disconnect workflow; try again") from exc
    logger.info("account.disconnected", extra={"account_id": str(account.id)})
    return ok(None)


async def _cancel_quietly(handle: WorkflowHandle[Client, object]) -> None:
    """A connect workflow still retrying has nothing left to do once the account leaves."""
    with contextlib.suppress(RPCError):  # finished already, or never started
        await handle.cancel()
