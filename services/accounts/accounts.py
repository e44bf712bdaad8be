"""Connecting, configuring and disconnecting X accounts."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from integrations.x import XClient, XCredentials, XError
from mktx.secrets import SecretBox
from models.account import (
    AccountConnect,
    AccountSettingsUpdate,
    AccountStatistics,
    AccountStatus,
    SubscriptionStatus,
    XAccount,
)
from models.contact import Contact
from models.conversation import Conversation, Message
from models.db import utcnow
from services.core.errors import Duplicate, InvalidState
from services.core.tenancy import get_owned, owned_by
from services.core.x_errors import api_error_from_x

logger = logging.getLogger(__name__)


class AccountNotUsable(Exception):
    """The account was disconnected or its token erased; work for it stops."""


async def get_account(
    session: AsyncSession, merchant_id: str, account_id: uuid.UUID, *, for_update: bool = False
) -> XAccount:
    return await get_owned(
        session, XAccount, merchant_id, account_id, resource="account", for_update=for_update
    )


def accounts_listing(merchant_id: str, status: AccountStatus | None) -> SelectOfScalar[XAccount]:
    """The merchant's accounts, newest connection first (a stable order for paging)."""
    statement = owned_by(XAccount, merchant_id).order_by(
        col(XAccount.connected_at).desc(), col(XAccount.id)
    )
    if status is not None:
        statement = statement.where(col(XAccount.status) == status)
    return statement


async def add_account(
    session: AsyncSession,
    x: XClient,
    secrets: SecretBox,
    merchant_id: str,
    request: AccountConnect,
    webhook_id: str,
) -> XAccount:
    """Verify the token with X and add the account, `pending` its subscription (flushed, not
    committed: `lifecycle.connect` commits it and starts the workflow that subscribes it)."""
    credentials = XCredentials(request.oauth_token, request.oauth_token_secret)
    try:
        user = await asyncio.to_thread(x.get_me, credentials)
    except XError as exc:
        raise api_error_from_x(exc) from None

    duplicate = Duplicate(
        "this X account is already connected",
        details={"field": "oauthToken", "twitterUserId": user.id, "username": user.username},
    )
    already = await session.exec(
        select(XAccount.id).where(  # type: ignore[call-overload]
            XAccount.twitter_user_id == user.id,
            XAccount.disconnected_at.is_(None),  # type: ignore[union-attr]
        )
    )
    if already.first() is not None:
        raise duplicate

    account = XAccount(
        merchant_id=merchant_id,
        twitter_user_id=user.id,
        username=user.username,
        display_name=user.name,
        profile_image_url=user.profile_image_url,
        status=AccountStatus.active,
        oauth_token_encrypted=secrets.seal(request.oauth_token),
        oauth_token_secret_encrypted=secrets.seal(request.oauth_token_secret),
        webhook_id=webhook_id,
        subscription_status=SubscriptionStatus.pending,
        connected_at=utcnow(),
    )
    session.add(account)
    try:
        await session.flush()
    except IntegrityError:  # connected concurrently by another request
        raise duplicate from None
    return account


def apply_settings(account: XAccount, update: AccountSettingsUpdate) -> XAccount:
    if account.status is AccountStatus.inactive or account.disconnected_at is not None:
        raise InvalidState("a disconnected account cannot be changed; connect it again")
    changes = update.model_dump(exclude_unset=True, mode="json")
    if "auto_reply_enabled" in changes and changes["auto_reply_enabled"] is not None:
        account.auto_reply_enabled = changes["auto_reply_enabled"]
    if "business_hours" in changes:
        account.business_hours = changes["business_hours"]  # None clears them
    account.updated_at = utcnow()
    return account


def mark_disconnected(account: XAccount) -> None:
    """The account stops being usable at once; the disconnect workflow revokes its token."""
    if account.disconnected_at is not None:
        raise InvalidState("account is already disconnected")
    account.status = AccountStatus.inactive
    account.status_reason = "disconnected by the merchant"
    account.disconnected_at = utcnow()
    account.updated_at = account.disconnected_at


async def account_statistics(session: AsyncSession, account: XAccount) -> AccountStatistics:
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    merchant, account_id = account.merchant_id, account.id

    def count(model: type[Contact | Conversation | Message], *where: Any) -> Any:
        return (
            select(func.count())
            .select_from(model)
            .where(col(model.merchant_id) == merchant, col(model.account_id) == account_id, *where)
            .scalar_subquery()
        )

    statement = select(
        count(Contact),
        count(Conversation),
        count(Message, col(Message.sent_at) >= month_start),
    )
    row = (await session.execute(statement)).one()
    return AccountStatistics(
        total_contacts=row[0], total_conversations=row[1], messages_this_month=row[2]
    )


async def load_credentials(
    session: AsyncSession, secrets: SecretBox, account_id: uuid.UUID, *, allow_disconnected: bool
) -> tuple[XAccount, XCredentials]:
    """Decrypt an account's token for a call to X (workflows carry ids, never secrets)."""
    account = await session.get(XAccount, account_id)
    if account is None or account.oauth_token_encrypted is None:
        raise AccountNotUsable(f"account {account_id} has no usable token")
    if account.disconnected_at is not None and not allow_disconnected:
        raise AccountNotUsable(f"account {account_id} is disconnected")
    assert account.oauth_token_secret_encrypted is not None
    return account, XCredentials(
        secrets.open(account.oauth_token_encrypted),
        secrets.open(account.oauth_token_secret_encrypted),
    )


TOKEN_REFUSED = (
    "X no longer accepts this account's token (revoked or expired); connect the account again"
)


async def refuse_tokens(session: AsyncSession, account_ids: Sequence[uuid.UUID]) -> None:
    """The one handler of "X refused the token": the account is `error` until reconnected."""
    if not account_ids:
        return
    await session.execute(
        update(XAccount)
        .where(col(XAccount.id).in_(list(account_ids)))
        .values(status=AccountStatus.error, status_reason=TOKEN_REFUSED, updated_at=utcnow())
    )
    for account_id in account_ids:
        logger.warning("account.token_refused", extra={"account_id": str(account_id)})
