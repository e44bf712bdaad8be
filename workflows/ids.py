"""Every Temporal name in one place: task queue, workflow ids, search attributes.

Search attributes carry ids only (never names, usernames or message text) so operators can
filter executions in the Web UI without exposing personal data.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

DEFAULT_TASK_QUEUE = "mkt-x"

MERCHANT_ID = SearchAttributeKey.for_keyword("MerchantId")
ACCOUNT_ID = SearchAttributeKey.for_keyword("AccountId")
CAMPAIGN_ID = SearchAttributeKey.for_keyword("CampaignId")
FLOW_ID = SearchAttributeKey.for_keyword("FlowId")
CONTACT_ID = SearchAttributeKey.for_keyword("ContactId")

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[str], ...] = (
    MERCHANT_ID,
    ACCOUNT_ID,
    CAMPAIGN_ID,
    FLOW_ID,
    CONTACT_ID,
)


def account_connect_id(account_id: str) -> str:
    return f"account-connect:{account_id}"


def account_disconnect_id(account_id: str) -> str:
    return f"account-disconnect:{account_id}"


def campaign_id(campaign_id: str) -> str:
    return f"campaign:{campaign_id}"


def campaign_schedule_id(campaign_id: str) -> str:
    """The Temporal Schedule of a recurring campaign (its runs: `campaign:{id}-<time>`)."""
    return f"campaign-schedule:{campaign_id}"


def campaign_attributes(merchant_id: str, campaign_id: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(MERCHANT_ID, merchant_id),
            SearchAttributePair(CAMPAIGN_ID, campaign_id),
        ]
    )


def flow_id(flow_id: str, contact_id: str) -> str:
    return f"flow:{flow_id}:{contact_id}"


def escalation_id(conversation_id: str) -> str:
    return f"escalation:{conversation_id}"


def assistant_id(conversation_id: str) -> str:
    """The auto-reply of one conversation: answers its DMs while it runs."""
    return f"assistant:{conversation_id}"


def send_message_id(message_id: str) -> str:
    return f"message-send:{message_id}"


def message_attributes(merchant_id: str, account_id: str, contact_id: str) -> TypedSearchAttributes:
    """A send: filterable by merchant, account and the contact it goes to."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(MERCHANT_ID, merchant_id),
            SearchAttributePair(ACCOUNT_ID, account_id),
            SearchAttributePair(CONTACT_ID, contact_id),
        ]
    )


# The periodic sweeps (workflows/maintenance.py), run by a Temporal Schedule the worker keeps.
MAINTENANCE_WORKFLOW = "Maintenance"
MAINTENANCE_SCHEDULE = "mktx-maintenance"


def maintenance_schedule_id(task_queue: str) -> str:
    """The worker's maintenance Schedule: one per task queue, `mktx-maintenance` for the default
    one. Its runs are `<schedule id>-<time>`."""
    if task_queue == DEFAULT_TASK_QUEUE:
        return MAINTENANCE_SCHEDULE
    return f"{MAINTENANCE_SCHEDULE}:{task_queue}"


def contact_reply_id(contact_id: str, key: str) -> str:
    """A workflow waiting for one reply of a contact; `key` tells apart waits on the same contact."""
    return f"contact-reply:{contact_id}:{key}"


def contact_attributes(merchant_id: str, contact_id: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(MERCHANT_ID, merchant_id),
            SearchAttributePair(CONTACT_ID, contact_id),
        ]
    )


def account_attributes(merchant_id: str, account_id: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(MERCHANT_ID, merchant_id),
            SearchAttributePair(ACCOUNT_ID, account_id),
        ]
    )


def dev_server_flags() -> list[str]:
    """`temporal server start-dev` flags that register the custom search attributes."""
    flags: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags
