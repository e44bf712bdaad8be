"""Side effects of the account workflows: X Account Activity subscriptions and token revocation."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, update
from sqlmodel import col
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import WorkerDeps
from activities.x_failures import application_error_from_x
from integrations.x import XClient, XError, XTokenRevoked
from mktx.secrets import SecretBox
from models.account import SubscriptionStatus, XAccount
from models.db import SessionMaker, utcnow
from services.accounts.accounts import AccountNotUsable, load_credentials, refuse_tokens
from workflows.contracts import accounts as contract
from workflows.contracts.accounts import (
    EraseTokensInput,
    MarkSubscriptionFailedInput,
    RevokeTokenInput,
    SubscribeInput,
    UnsubscribeInput,
)

logger = logging.getLogger(__name__)


class AccountActivities:
    def __init__(self, sessions: SessionMaker, x: XClient, secrets: SecretBox) -> None:
        self._sessions = sessions
        self._x = x
        self._secrets = secrets

    @activity.defn(name=contract.SUBSCRIBE)
    async def subscribe_to_account_activity(self, request: SubscribeInput) -> None:
        """Subscribe the account to the webhook, then record it (both steps are idempotent)."""
        async with self._sessions() as session:
            try:
                _, credentials = await load_credentials(
                    session, self._secrets, request.account_id, allow_disconnected=False
                )
            except AccountNotUsable as exc:
                raise ApplicationError(
                    str(exc), type=contract.ACCOUNT_NOT_USABLE, non_retryable=True
                ) from None
        try:
            await asyncio.to_thread(
                self._x.subscribe_account_activity, credentials, request.webhook_id
            )
        except XTokenRevoked as exc:
            await self._mark_token_refused(request.account_id)
            raise application_error_from_x(exc) from None
        except XError as exc:
            raise application_error_from_x(exc) from None
        await self._update_account(
            request.account_id,
            subscription_status=SubscriptionStatus.subscribed,
            webhook_id=request.webhook_id,
        )
        logger.info("account.subscribed", extra={"account_id": str(request.account_id)})

    @activity.defn(name=contract.MARK_SUBSCRIPTION_FAILED)
    async def mark_subscription_failed(self, request: MarkSubscriptionFailedInput) -> None:
        await self._update_account(
            request.account_id,
            subscription_status=SubscriptionStatus.failed,
            # keep a more specific reason recorded by the failing activity
            status_reason=func.coalesce(XAccount.status_reason, request.reason[:512]),
        )

    @activity.defn(name=contract.UNSUBSCRIBE)
    async def unsubscribe_from_account_activity(self, request: UnsubscribeInput) -> None:
        async with self._sessions() as session:
            account = await session.get(XAccount, request.account_id)
            if account is None:
                return
            twitter_user_id = account.twitter_user_id
        try:
            await asyncio.to_thread(
                self._x.unsubscribe_account_activity, twitter_user_id, request.webhook_id
            )
        except XError as exc:
            raise application_error_from_x(exc) from None
        await self._update_account(
            request.account_id, subscription_status=SubscriptionStatus.unsubscribed
        )

    @activity.defn(name=contract.REVOKE_TOKEN)
    async def revoke_token(self, request: RevokeTokenInput) -> bool:
        """Ask X to invalidate the token; False when there was no token left to revoke."""
        async with self._sessions() as session:
            try:
                _, credentials = await load_credentials(
                    session, self._secrets, request.account_id, allow_disconnected=True
                )
            except AccountNotUsable:
                return False
        try:
            await asyncio.to_thread(self._x.invalidate_token, credentials)
        except XError as exc:
            raise application_error_from_x(exc) from None
        return True

    @activity.defn(name=contract.ERASE_TOKENS)
    async def erase_tokens(self, request: EraseTokensInput) -> None:
        await self._update_account(
            request.account_id, oauth_token_encrypted=None, oauth_token_secret_encrypted=None
        )

    async def _update_account(self, account_id: uuid.UUID, **values: Any) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(XAccount)
                .where(col(XAccount.id) == account_id)
                .values(**values, updated_at=utcnow())
            )

    async def _mark_token_refused(self, account_id: uuid.UUID) -> None:
        async with self._sessions() as session, session.begin():
            await refuse_tokens(session, [account_id])


def build(deps: WorkerDeps) -> list[Callable[..., Any]]:
    """The account activities the worker registers."""
    accounts = AccountActivities(deps.sessions, deps.x, deps.secrets)
    return [
        accounts.subscribe_to_account_activity,
        accounts.mark_subscription_failed,
        accounts.unsubscribe_from_account_activity,
        accounts.revoke_token,
        accounts.erase_tokens,
    ]
