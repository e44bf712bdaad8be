"""Connecting and disconnecting an X account: one call each, owning its commit and recovery.

Invariant: an account whose row says a lifecycle workflow is due has that workflow, or will
have it within a maintenance pass. A connected account still `pending` its subscription has
its connect workflow (`account-connect:{id}`); a disconnected account still holding a token
has its disconnect workflow (`account-disconnect:{id}`), which erases the token last.

The row is committed before its workflow starts, since the workflow reads it. When Temporal
refuses the start, the request is undone and answered 503 (nothing half-done: the caller
simply tries again). When the process dies between the commit and the start, or the undo
does not land, the row still says what is due, and `start_owed` (the maintenance schedule)
starts it. Nothing runs twice at once: Temporal keeps one open execution per workflow id, and
both workflows may run again for the same account (subscribing, revoking and erasing are
idempotent), so a start found done is simply done.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from integrations.x import XClient
from mktx.secrets import SecretBox
from mktx.settings import Settings
from models.account import AccountConnect, SubscriptionStatus, XAccount
from models.db import SessionMaker, utcnow
from services.accounts import accounts
from services.core.errors import ServiceUnavailable
from services.core.owed_starts import start_each
from workflows import ids
from workflows.contracts import accounts as contract
from workflows.contracts.accounts import AccountConnectInput, AccountDisconnectInput
from workflows.contracts.owed_starts import StartsReport

logger = logging.getLogger(__name__)


async def connect(
    session: AsyncSession,
    temporal: Client,
    x: XClient,
    secrets: SecretBox,
    settings: Settings,
    merchant_id: str,
    request: AccountConnect,
) -> XAccount:
    """Verify the token with X, add the account and start the workflow that subscribes it to
    Account Activity; 503 with nothing kept when Temporal refuses the start."""
    account = await accounts.add_account(
        session, x, secrets, merchant_id, request, settings.x_webhook_id
    )
    await session.commit()
    try:
        await _start_connect(temporal, settings, account)
    except RPCError as exc:
        await session.delete(account)
        await session.commit()
        raise ServiceUnavailable("could not start the connect workflow; try again") from exc
    logger.info("account.connected", extra={"account_id": str(account.id)})
    return account


async def disconnect(
    session: AsyncSession, temporal: Client, settings: Settings, account: XAccount
) -> None:
    """Make the account unusable at once and start the workflow that unsubscribes it and
    revokes its token; 503 with the account as it was when Temporal refuses the start."""
    previous = (account.status, account.status_reason, account.updated_at)
    accounts.mark_disconnected(account)
    await session.commit()
    try:
        await _start_disconnect(temporal, settings, account)
    except RPCError as exc:
        account.status, account.status_reason, account.updated_at = previous
        account.disconnected_at = None
        await session.commit()
        raise ServiceUnavailable("could not start the disconnect workflow; try again") from exc
    logger.info("account.disconnected", extra={"account_id": str(account.id)})


async def start_owed(
    sessions: SessionMaker, temporal: Client, settings: Settings, *, grace: timedelta, limit: int
) -> tuple[StartsReport, StartsReport]:
    """Start the connect and disconnect workflows of accounts whose row has said for longer
    than `grace` that one is due (see the module), oldest first, up to `limit` of each."""
    before = utcnow() - grace
    owned_token = col(XAccount.oauth_token_encrypted).is_not(None)
    subscribing = (
        select(XAccount)
        .where(
            col(XAccount.subscription_status) == SubscriptionStatus.pending,
            col(XAccount.disconnected_at).is_(None),
            owned_token,
            col(XAccount.connected_at) <= before,
        )
        .order_by(col(XAccount.connected_at))
        .limit(limit)
    )
    revoking = (
        select(XAccount)
        .where(
            col(XAccount.disconnected_at).is_not(None),
            owned_token,
            col(XAccount.disconnected_at) <= before,
        )
        .order_by(col(XAccount.disconnected_at))
        .limit(limit)
    )
    async with sessions() as session:
        to_connect = list((await session.exec(subscribing)).all())
        to_disconnect = list((await session.exec(revoking)).all())
    return (
        await start_each(
            to_connect,
            lambda a: _start_connect(temporal, settings, a),
            event="account",
            describe=lambda a: {"account_id": str(a.id), "workflow": "connect"},
        ),
        await start_each(
            to_disconnect,
            lambda a: _start_disconnect(temporal, settings, a),
            event="account",
            describe=lambda a: {"account_id": str(a.id), "workflow": "disconnect"},
        ),
    )


async def _start_connect(temporal: Client, settings: Settings, account: XAccount) -> bool:
    """Start the account's connect workflow; False when one is already running."""
    return await _start(
        temporal,
        settings,
        account,
        contract.CONNECT_WORKFLOW,
        AccountConnectInput(
            merchant_id=account.merchant_id,
            account_id=account.id,
            webhook_id=account.webhook_id or settings.x_webhook_id,
        ),
        ids.account_connect_id(str(account.id)),
    )


async def _start_disconnect(temporal: Client, settings: Settings, account: XAccount) -> bool:
    """Start the account's disconnect workflow, then stop its connect workflow if that is still
    retrying (nothing is left for it to do: it would give up at its next attempt anyway);
    False when a disconnect workflow is already running."""
    started = await _start(
        temporal,
        settings,
        account,
        contract.DISCONNECT_WORKFLOW,
        AccountDisconnectInput(
            merchant_id=account.merchant_id,
            account_id=account.id,
            webhook_id=account.webhook_id,
        ),
        ids.account_disconnect_id(str(account.id)),
    )
    if started:
        connect = temporal.get_workflow_handle(ids.account_connect_id(str(account.id)))
        with contextlib.suppress(RPCError):  # finished already, or never started
            await connect.cancel()
    return started


async def _start(
    temporal: Client,
    settings: Settings,
    account: XAccount,
    workflow: str,
    request: AccountConnectInput | AccountDisconnectInput,
    workflow_id: str,
) -> bool:
    """One open execution per workflow id (a second start while it runs is refused: False);
    one that has ended may run again, which both account workflows allow."""
    try:
        await temporal.start_workflow(
            workflow,
            request,
            id=workflow_id,
            task_queue=settings.task_queue,
            search_attributes=ids.account_attributes(account.merchant_id, str(account.id)),
        )
    except WorkflowAlreadyStartedError:
        return False
    return True
