"""Durable account lifecycle: subscribe a new account to X webhooks; revoke one that leaves."""

from __future__ import annotations

import uuid
from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.retry import DB_RETRY, x_retry

with workflow.unsafe.imports_passed_through():
    from activities.accounts import (
        AccountActivities,
        EraseTokensInput,
        MarkSubscriptionFailedInput,
        RevokeTokenInput,
        SubscribeInput,
        UnsubscribeInput,
    )

X_RETRY = x_retry()
CALL_TIMEOUT = timedelta(seconds=30)


class ConnectOutcome(StrEnum):
    subscribed = "subscribed"
    abandoned = "abandoned"  # the account was disconnected before X could be reached
    failed = "failed"  # X refused for good (e.g. the token was revoked meanwhile)


class AccountConnectInput(BaseModel):
    merchant_id: str
    account_id: uuid.UUID
    webhook_id: str


class AccountConnectResult(BaseModel):
    outcome: ConnectOutcome
    reason: str | None = None


@workflow.defn(name="AccountConnect")
class AccountConnectWorkflow:
    """Subscribes a freshly connected account to Account Activity webhooks, retrying while X is
    down. Id: `account-connect:{accountId}`."""

    def __init__(self) -> None:
        self._outcome: ConnectOutcome | None = None

    @workflow.run
    async def run(self, request: AccountConnectInput) -> AccountConnectResult:
        try:
            await workflow.execute_activity_method(
                AccountActivities.subscribe_to_account_activity,
                SubscribeInput(account_id=request.account_id, webhook_id=request.webhook_id),
                start_to_close_timeout=CALL_TIMEOUT,
                retry_policy=X_RETRY,
            )
        except ActivityError as err:
            cause = err.cause
            kind = cause.type if isinstance(cause, ApplicationError) else None
            reason = str(cause) if cause else str(err)
            if kind == "AccountNotUsable":
                self._outcome = ConnectOutcome.abandoned
                return AccountConnectResult(outcome=self._outcome, reason=reason)
            await workflow.execute_activity_method(
                AccountActivities.mark_subscription_failed,
                MarkSubscriptionFailedInput(account_id=request.account_id, reason=reason),
                start_to_close_timeout=CALL_TIMEOUT,
                retry_policy=DB_RETRY,
            )
            self._outcome = ConnectOutcome.failed
            return AccountConnectResult(outcome=self._outcome, reason=reason)
        self._outcome = ConnectOutcome.subscribed
        return AccountConnectResult(outcome=self._outcome)

    @workflow.query
    def outcome(self) -> ConnectOutcome | None:
        return self._outcome


class AccountDisconnectInput(BaseModel):
    merchant_id: str
    account_id: uuid.UUID
    webhook_id: str | None


class AccountDisconnectResult(BaseModel):
    unsubscribed: bool
    token_revoked: bool


# Give X a day to come back; after that the token is erased unrevoked rather than kept.
REVOKE_DEADLINE = timedelta(hours=24)


@workflow.defn(name="AccountDisconnect")
class AccountDisconnectWorkflow:
    """Unsubscribes a disconnected account, invalidates its token at X and erases it from the
    database. Id: `account-disconnect:{accountId}`."""

    @workflow.run
    async def run(self, request: AccountDisconnectInput) -> AccountDisconnectResult:
        unsubscribed = False
        if request.webhook_id:
            try:
                await workflow.execute_activity_method(
                    AccountActivities.unsubscribe_from_account_activity,
                    UnsubscribeInput(account_id=request.account_id, webhook_id=request.webhook_id),
                    start_to_close_timeout=CALL_TIMEOUT,
                    schedule_to_close_timeout=REVOKE_DEADLINE,
                    retry_policy=X_RETRY,
                )
                unsubscribed = True
            except ActivityError as err:
                workflow.logger.warning("account.unsubscribe_failed", extra={"error": str(err)})
        token_revoked = False
        try:
            token_revoked = await workflow.execute_activity_method(
                AccountActivities.revoke_token,
                RevokeTokenInput(account_id=request.account_id),
                start_to_close_timeout=CALL_TIMEOUT,
                schedule_to_close_timeout=REVOKE_DEADLINE,
                retry_policy=X_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("account.revoke_failed", extra={"error": str(err)})
        await workflow.execute_activity_method(
            AccountActivities.erase_tokens,
            EraseTokensInput(account_id=request.account_id),
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        return AccountDisconnectResult(unsubscribed=unsubscribed, token_revoked=token_revoked)


WORKFLOWS = [AccountConnectWorkflow, AccountDisconnectWorkflow]
