"""Starting the durable delivery of one queued message (`SendMessageWorkflow`, by its type
name from the contracts: this module never imports a workflow)."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from mktx.settings import Settings
from models.conversation import Message
from workflows import ids
from workflows.contracts.messaging import (
    SEND_MESSAGE_WORKFLOW,
    MediaRef,
    SendMessageInput,
    SendMessageResult,
)


async def start_delivery(
    temporal: Client,
    settings: Settings,
    message: Message,
    *,
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    media: dict[str, MediaRef] | None = None,
) -> WorkflowHandle[Any, SendMessageResult]:
    """Start the durable send of a committed message (a second call returns the same run).
    With REJECT_DUPLICATE, a run that has ended is not followed by another: the call raises
    WorkflowAlreadyStartedError (services/messaging/sweep.py). `media`: uploads the caller
    holds, attached instead of uploading again."""
    return await temporal.start_workflow(
        SEND_MESSAGE_WORKFLOW,
        SendMessageInput(merchant_id=message.merchant_id, message_id=message.id, media=media or {}),
        id=ids.send_message_id(str(message.id)),
        task_queue=settings.task_queue,
        search_attributes=ids.message_attributes(
            message.merchant_id, str(message.account_id), str(message.contact_id)
        ),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=id_reuse_policy,
        result_type=SendMessageResult,
    )


def delivery_handle(temporal: Client, message_id: str) -> WorkflowHandle[Any, SendMessageResult]:
    return temporal.get_workflow_handle(
        ids.send_message_id(message_id), result_type=SendMessageResult
    )
