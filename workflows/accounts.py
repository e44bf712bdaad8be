"""Durable account lifecycle: subscribe a new account to X webhooks; revoke one that leaves.

The payloads, activity names and error types are in workflows/contracts/accounts.py; this
module is deterministic code and imports nothing that does I/O.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.contracts.accounts import (
    ACCOUNT_NOT_USABLE,
    CONNECT_WORKFLOW,
    DISCONNECT_WORKFLOW,
    ERASE_TOKENS,
    MARK_SUBSCRIPTION_FAILED,
    REVOKE_TOKEN,
    SUBSCRIBE,
    UNSUBSCRIBE,
    AccountConnectInput,
    AccountConnectResult,
    AccountDisconnectInput,
    AccountDisconnectResult,
    ConnectOutcome,
    EraseTokensInput,
    MarkSubscriptionFailedInput,
    RevokeTokenInput,
    SubscribeInput,
    UnsubscribeInput,
)
from workflows.retry import DB_RETRY, x_retry

X_RETRY = x_retry()
CALL_TIMEOUT = timedelta(seconds=30)
# Give X a day to come back; after that the token is erased unrevoked rather than kept.
REVOKE_DEADLINE = timedelta(hours=24)


@workflow.defn(name=CONNECT_WORKFLOW)
class AccountConnectWorkflow:
    """Subscribes a freshly connected account to Account Activity webhooks, retrying while X is
    down. Id: `account-connect:{accountId}`."""

    def __init__(self) -> None:
        self._outcome: ConnectOutcome | None = None

    @workflow.run
    async def run(self, request: AccountConnectInput) -> AccountConnectResult:
        try:
            await workflow.execute_activity(
                SUBSCRIBE,
                SubscribeInput(account_id=request.account_id, webhook_id=request.webhook_id),
                start_to_close_timeout=CALL_TIMEOUT,
                retry_policy=X_RETRY,
            )
        except ActivityError as err:
            cause = err.cause
            kind = cause.type if isinstance(cause, ApplicationError) else None
            reason = str(cause) if cause else str(err)
            if kind == ACCOUNT_NOT_USABLE:
                self._outcome = ConnectOutcome.abandoned
                return AccountConnectResult(outcome=self._outcome, reason=reason)
            await workflow.execute_activity(
                MARK_SUBSCRIPTION_FAILED,
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


@workflow.defn(name=DISCONNECT_WORKFLOW)
class AccountDisconnectWorkflow:
    """Unsubscribes a disconnected account, invalidates its token at X and erases it from the
    database, whatever X says: the token is never kept. Id: `account-disconnect:{accountId}`."""

    @workflow.run
    async def run(self, request: AccountDisconnectInput) -> AccountDisconnectResult:
        unsubscribed = False
        if request.webhook_id:
            try:
                await workflow.execute_activity(
                    UNSUBSCRIBE,
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
            token_revoked = await workflow.execute_activity(
                REVOKE_TOKEN,
                RevokeTokenInput(account_id=request.account_id),
                result_type=bool,
                start_to_close_timeout=CALL_TIMEOUT,
                schedule_to_close_timeout=REVOKE_DEADLINE,
                retry_policy=X_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("account.revoke_failed", extra={"error": str(err)})
        await workflow.execute_activity(
            ERASE_TOKENS,
            EraseTokensInput(account_id=request.account_id),
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        return AccountDisconnectResult(unsubscribed=unsubscribed, token_revoked=token_revoked)


WORKFLOWS = [AccountConnectWorkflow, AccountDisconnectWorkflow]
