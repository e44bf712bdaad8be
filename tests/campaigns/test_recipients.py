"""GET /campaigns/{id}/recipients: each recipient's state and times, as a page or as CSV, agreeing
with the campaign's metrics. The history is written as the send path and ingestion leave it:
recipient rows settled in each state, read receipts stored as X delivers them, inbound DMs."""

from __future__ import annotations

import csv
import io
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models.account import XAccount
from models.campaign import Campaign, CampaignRecipient, CampaignStatus, RecipientState
from models.contact import Contact
from models.conversation import Conversation, Message, MessageDirection, MessageStatus
from models.db import SessionMaker
from models.webhook_event import WebhookEvent
from tests.conftest import Api

SENT_AT = datetime(2026, 1, 20, 10, 0, tzinfo=UTC)
HEADER = (
    "contactId,username,displayName,occurrence,state,skipReason,sentAt,deliveredAt,openedAt,"
    "clickedAt,repliedAt"
)


def _x_id() -> str:
    return str(random.randint(10**17, 10**19 - 1))


@dataclass
class History:
    campaign_id: uuid.UUID
    contacts: dict[str, uuid.UUID]  # username -> contact id


async def _history(sessions: SessionMaker, merchant_id: str) -> History:
    """Six recipients: alice (delivered, opened, clicked, replied), =bob (delivered; read only
    older DMs, answered after the reply window), carol (failed), dave (skipped: opted out),
    erin (queued), and one erased contact (delivered)."""
    shop = XAccount(
        merchant_id=merchant_id,
        twitter_user_id=_x_id(),
        username=f"shop_{uuid.uuid4().hex[:6]}",
        display_name="Shop",
        connected_at=SENT_AT - timedelta(days=30),
    )
    people = {
        "alice": "Alice Nguyễn",
        "=bob": '=HYPERLINK("http://x")',
        "carol": "+84 Carol",
        "dave": '@dave, "the" one',
        "erin": "-Erin",
    }
    campaign = Campaign(
        merchant_id=merchant_id, name="Tết Sale: 20% off!", status=CampaignStatus.completed
    )
    async with sessions() as session, session.begin():
        session.add_all([shop, campaign])
        await session.flush()
        contacts = {
            name: Contact(
                merchant_id=merchant_id,
                account_id=shop.id,
                twitter_user_id=_x_id(),
                username=name,
                display_name=display,
            )
            for name, display in people.items()
        }
        session.add_all(contacts.values())
        await session.flush()

        def recipient(contact: Contact | None, state: RecipientState, **fields: Any) -> None:
            session.add(
                CampaignRecipient(
                    merchant_id=merchant_id,
                    campaign_id=campaign.id,
                    contact_id=contact.id if contact else None,
                    account_id=shop.id,
                    state=state,
                    created_at=SENT_AT - timedelta(hours=1),
                    **fields,
                )
            )

        sent = {"attempt_at": SENT_AT, "sent_at": SENT_AT}
        recipient(
            contacts["alice"],
            RecipientState.sent,
            dm_event_id="1000",
            clicked_at=SENT_AT + timedelta(minutes=30),
            **sent,
        )
        recipient(contacts["=bob"], RecipientState.sent, dm_event_id="1001", **sent)
        recipient(contacts["carol"], RecipientState.failed, attempt_at=SENT_AT, error="refused")
        recipient(contacts["dave"], RecipientState.skipped, error="opted_out")
        recipient(contacts["erin"], RecipientState.queued)
        recipient(None, RecipientState.sent, dm_event_id="1005", **sent)  # erased since

        def read(contact: Contact, last_read: str, at: datetime) -> None:
            session.add(
                WebhookEvent(
                    merchant_id=merchant_id,
                    account_id=shop.id,
                    for_user_id=shop.twitter_user_id,
                    event_type="read",
                    dedup_key=f"read:{uuid.uuid4()}",
                    subject_user_id=contact.twitter_user_id,
                    contact_id=contact.id,
                    payload={
                        "for_user_id": shop.twitter_user_id,
                        "direct_message_mark_read_events": [
                            {"sender_id": contact.twitter_user_id, "last_read_event_id": last_read}
                        ],
                    },
                    received_at=at,
                    processed_at=at,
                )
            )

        read(contacts["alice"], "1000", SENT_AT + timedelta(minutes=5))
        read(contacts["alice"], "1003", SENT_AT + timedelta(minutes=50))  # a later read
        read(contacts["=bob"], "999", SENT_AT + timedelta(minutes=5))  # older DMs only

        for name, after in (("alice", timedelta(hours=2)), ("=bob", timedelta(hours=100))):
            conversation = Conversation(
                merchant_id=merchant_id,
                account_id=shop.id,
                contact_id=contacts[name].id,
                started_at=SENT_AT,
            )
            session.add(conversation)
            await session.flush()
            session.add(
                Message(
                    merchant_id=merchant_id,
                    conversation_id=conversation.id,
                    account_id=shop.id,
                    contact_id=contacts[name].id,
                    direction=MessageDirection.inbound,
                    content="how much?",
                    sent_at=SENT_AT + after,
                    status=MessageStatus.received,
                    twitter_message_id=_x_id(),
                )
            )
    return History(campaign.id, {name: contact.id for name, contact in contacts.items()})


@pytest.fixture
async def history(api: Api, sessions: SessionMaker) -> History:
    return await _history(sessions, api.merchant.id)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def test_states_and_times_agree_with_the_metrics(api: Api, history: History) -> None:
    path = f"/campaigns/{history.campaign_id}"
    listed = await api.get(f"{path}/recipients?take=100")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    rows = body["data"]
    assert body["pagination"] == {
        "page": 1,
        "limit": 100,
        "total": 6,
        "totalPages": 1,
        "totalIsEstimate": False,
    }
    by_name = {row["username"]: row for row in rows}
    assert by_name["alice"] == {
        "contactId": str(history.contacts["alice"]),
        "username": "alice",
        "displayName": "Alice Nguyễn",
        "occurrence": 1,
        "state": "sent",
        "skipReason": None,
        "sentAt": _iso(SENT_AT),
        "deliveredAt": _iso(SENT_AT),
        "openedAt": _iso(SENT_AT + timedelta(minutes=5)),  # the first read covering the DM
        "clickedAt": _iso(SENT_AT + timedelta(minutes=30)),
        "repliedAt": _iso(SENT_AT + timedelta(hours=2)),
    }
    bob = by_name["=bob"]
    assert (bob["state"], bob["openedAt"], bob["repliedAt"]) == ("sent", None, None)
    carol = by_name["carol"]
    assert (carol["sentAt"], carol["deliveredAt"]) == (_iso(SENT_AT), None)
    assert (by_name["dave"]["state"], by_name["dave"]["skipReason"]) == ("skipped", "opted_out")
    assert by_name["erin"]["state"] == "queued" and by_name["erin"]["sentAt"] is None
    erased = by_name[None]
    assert erased["contactId"] is None and erased["deliveredAt"] == _iso(SENT_AT)

    metrics = (await api.get(f"{path}/metrics")).json()["data"]

    def having(field: str) -> int:
        return sum(1 for row in rows if row[field] is not None)

    def in_state(*states: str) -> int:
        return sum(1 for row in rows if row["state"] in states)

    assert metrics["totalSent"] == having("sentAt") == in_state("sent", "failed") == 4
    assert metrics["delivered"] == having("deliveredAt") == in_state("sent") == 3
    assert metrics["opened"] == having("openedAt") == 1
    assert metrics["clicked"] == having("clickedAt") == 1
    assert metrics["replied"] == having("repliedAt") == 1
    assert metrics["failed"] == in_state("failed") == 1
    assert metrics["skipped"] == in_state("skipped") == 1
    assert metrics["queued"] == in_state("queued", "sending") == 1
    assert metrics["recipients"] == len(rows)


async def test_state_filter_and_pagination(api: Api, history: History) -> None:
    path = f"/campaigns/{history.campaign_id}/recipients"
    sent = (await api.get(f"{path}?state=sent")).json()
    assert {row["username"] for row in sent["data"]} == {"alice", "=bob", None}
    assert sent["pagination"]["total"] == 3
    assert (await api.get(f"{path}?state=failed")).json()["data"][0]["username"] == "carol"
    assert (await api.get(f"{path}?state=sending")).json()["pagination"]["total"] == 0

    pages = [(await api.get(f"{path}?take=4&skip={skip}")).json() for skip in (0, 4, 8)]
    assert [len(page["data"]) for page in pages] == [4, 2, 0]
    assert pages[0]["pagination"] == {
        "page": 1,
        "limit": 4,
        "total": 6,
        "totalPages": 2,
        "totalIsEstimate": False,
    }
    assert pages[1]["pagination"]["page"] == 2 and pages[2]["pagination"]["total"] == 6
    everyone = [row["contactId"] for page in pages for row in page["data"]]
    whole = [row["contactId"] for row in (await api.get(path)).json()["data"]]
    assert everyone == whole and len(set(everyone)) == 6  # a stable order, no row twice


async def test_bad_filters_are_422_in_the_envelope(api: Api, history: History) -> None:
    path = f"/campaigns/{history.campaign_id}/recipients"
    for query in ("state=delivered", "format=xlsx", "take=0"):
        response = await api.get(f"{path}?{query}")
        assert response.status_code == 422, query
        body = response.json()
        assert body["success"] is False and body["code"] == "VALIDATION_ERROR"


async def test_csv_streams_the_whole_list(api: Api, history: History) -> None:
    path = f"/campaigns/{history.campaign_id}/recipients"
    response = await api.get(f"{path}?format=csv&take=1")  # take does not cut the file
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert (
        response.headers["content-disposition"]
        == 'attachment; filename="tet-sale-20-off-recipients.csv"'
    )
    ids = history.contacts
    # The list's order: occurrence, then contact id (an erased contact last).
    order = sorted(ids, key=lambda name: ids[name]) + [None]
    t0, t5, t30, t120 = (_iso(SENT_AT + timedelta(minutes=m)) for m in (0, 5, 30, 120))
    lines = {
        "alice": f"{ids['alice']},alice,Alice Nguyễn,1,sent,,{t0},{t0},{t5},{t30},{t120}",
        "=bob": f'{ids["=bob"]},\'=bob,"\'=HYPERLINK(""http://x"")",1,sent,,{t0},{t0},,,',
        "carol": f"{ids['carol']},carol,'+84 Carol,1,failed,,{t0},,,,",
        "dave": f'{ids["dave"]},dave,"\'@dave, ""the"" one",1,skipped,opted_out,,,,,',
        "erin": f"{ids['erin']},erin,'-Erin,1,queued,,,,,,",
        None: f",,,1,sent,,{t0},{t0},,,",
    }
    expected = "".join(line + "\r\n" for line in [HEADER, *(lines[name] for name in order)])
    assert response.text == expected
    # A spreadsheet reads the same cells back, the formulas inert.
    parsed = list(csv.DictReader(io.StringIO(response.text)))
    assert {row["displayName"] for row in parsed} >= {'\'=HYPERLINK("http://x")', "'-Erin"}

    by_accept = await api.get(path, headers={"Accept": "text/csv"})
    assert by_accept.text == expected
    assert (await api.get(f"{path}?format=json", headers={"Accept": "text/csv"})).json()["success"]
    failed = await api.get(f"{path}?state=failed", headers={"Accept": "text/csv"})
    assert failed.headers["content-disposition"].endswith('-recipients-failed.csv"')
    assert failed.text == f"{HEADER}\r\n{lines['carol']}\r\n"


async def test_another_merchants_campaign_is_not_found(
    api: Api, other_api: Api, history: History
) -> None:
    path = f"/campaigns/{history.campaign_id}/recipients"
    for query in ("", "?format=csv"):
        response = await other_api.get(path + query)
        assert response.status_code == 404, query
        assert response.json()["code"] == "RESOURCE_NOT_FOUND"
    unknown = await api.get(f"/campaigns/{uuid.uuid4()}/recipients?format=csv")
    assert unknown.status_code == 404
