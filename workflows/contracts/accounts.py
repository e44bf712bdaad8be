"""Contracts of the account lifecycle: `AccountConnectWorkflow` (`account-connect:{accountId}`)
subscribes a freshly connected account to X's Account Activity webhooks; and
`AccountDisconnectWorkflow` (`account-disconnect:{accountId}`) unsubscribes a disconnected one,
revokes its token at X and erases it from the database.

Workflows carry account ids, never tokens: the activities decrypt them from the row. Both
workflows are safe to run again for the same account (subscribing, unsubscribing, revoking and
erasing are idempotent), which is what lets the maintenance schedule start one that was owed.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from pydantic import BaseModel

# Workflow types.
CONNECT_WORKFLOW = "AccountConnect"
DISCONNECT_WORKFLOW = "AccountDisconnect"

# Activity names.
SUBSCRIBE = "account.subscribe_to_account_activity"
MARK_SUBSCRIPTION_FAILED = "account.mark_subscription_failed"
UNSUBSCRIBE = "account.unsubscribe_from_account_activity"
REVOKE_TOKEN = "account.revoke_token"
ERASE_TOKENS = "account.erase_tokens"

# ApplicationError types the activities raise and the workflows match on.
ACCOUNT_NOT_USABLE = "AccountNotUsable"  # disconnected, or its token erased: nothing to do


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


class AccountDisconnectInput(BaseModel):
    merchant_id: str
    account_id: uuid.UUID
    webhook_id: str | None


class AccountDisconnectResult(BaseModel):
    unsubscribed: bool
    token_revoked: bool


class SubscribeInput(BaseModel):
    account_id: uuid.UUID
    webhook_id: str


class UnsubscribeInput(BaseModel):
    account_id: uuid.UUID
    webhook_id: str


class RevokeTokenInput(BaseModel):
    account_id: uuid.UUID


class EraseTokensInput(BaseModel):
    account_id: uuid.UUID


class MarkSubscriptionFailedInput(BaseModel):
    account_id: uuid.UUID
    reason: str
