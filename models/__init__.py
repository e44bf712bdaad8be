"""SQLModel tables and API schemas, one module per domain.

Importing this package registers every table on `SQLModel.metadata` (Alembic reads it).
"""

from models.account import XAccount
from models.ai import AISession, AISettingsRow, Escalation, LLMCall
from models.campaign import Campaign, CampaignRecipient, CampaignTestSend, TrackedLink
from models.contact import Contact, ContactDeletion
from models.conversation import Conversation, Message
from models.flow import AutomationFlow
from models.flow_run import FlowRun, FlowRunStep, FlowVersion
from models.listener import WorkflowListener
from models.quota import SendReservation
from models.rate_limit import RATE_LIMIT_TABLE
from models.segment import Segment
from models.template import Template
from models.webhook_event import ArmedTrigger, EventFollowUp, WebhookEvent

__all__ = [
    "RATE_LIMIT_TABLE",
    "AISession",
    "AISettingsRow",
    "ArmedTrigger",
    "AutomationFlow",
    "Campaign",
    "CampaignRecipient",
    "CampaignTestSend",
    "Contact",
    "ContactDeletion",
    "Escalation",
    "EventFollowUp",
    "FlowRun",
    "FlowRunStep",
    "FlowVersion",
    "LLMCall",
    "Conversation",
    "Message",
    "Segment",
    "SendReservation",
    "Template",
    "TrackedLink",
    "WebhookEvent",
    "WorkflowListener",
    "XAccount",
]
