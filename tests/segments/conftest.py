"""A small contact set per test, inserted as rows: four contacts of the test's merchant on two
accounts, and a look-alike contact of another merchant that must never match."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from models.account import XAccount
from models.contact import Contact, ContactSource
from models.db import SessionMaker, utcnow
from tests.conftest import Api


@dataclass(frozen=True)
class Seeded:
    merchant_id: str
    account_ids: tuple[uuid.UUID, uuid.UUID]
    contact_ids: dict[str, uuid.UUID]  # alice, bob, carol, dave
    stranger_id: uuid.UUID  # another merchant's contact

    def names(self, ids: list[str]) -> set[str]:
        by_id = {str(v): k for k, v in self.contact_ids.items()}
        return {by_id.get(i, f"foreign:{i}") for i in ids}


def account_row(merchant_id: str) -> XAccount:
    return XAccount(
        merchant_id=merchant_id,
        twitter_user_id=str(uuid.uuid4().int)[:18],
        username=f"shop_{uuid.uuid4().hex[:8]}",
        display_name="Shop",
        connected_at=utcnow(),
    )


def contact_row(merchant_id: str, account_id: uuid.UUID, **fields: Any) -> Contact:
    return Contact(
        merchant_id=merchant_id,
        account_id=account_id,
        twitter_user_id=str(uuid.uuid4().int)[:18],
        **fields,
    )


async def seed_contacts(sessions: SessionMaker, merchant_id: str) -> Seeded:
    now = utcnow()
    days = lambda n: now - timedelta(days=n)  # noqa: E731
    async with sessions() as session, session.begin():
        first, second = account_row(merchant_id), account_row(merchant_id)
        session.add_all([first, second])
        await session.flush()
        people = {
            "alice": contact_row(
                merchant_id,
                first.id,
                username="alice_shop",
                display_name="Alice Nguyen",
                tags=["vip", "newsletter"],
                attributes={
                    "purchaseCount": 8,
                    "tier": "gold",
                    "interests": ["shoes", "bags"],
                    "city": "Hanoi",
                },
                source=ContactSource.inbound_message,
                conversation_count=3,
                first_interaction_at=days(200),
                last_interaction_at=days(2),
            ),
            "bob": contact_row(
                merchant_id,
                first.id,
                username="bob",
                display_name="Bob Tran",
                tags=["newsletter"],
                attributes={"purchaseCount": 2, "tier": "silver", "note": "VIP soon"},
                source=ContactSource.new_follower,
                conversation_count=1,
                first_interaction_at=days(100),
                last_interaction_at=days(40),
            ),
            "carol": contact_row(
                merchant_id,
                first.id,
                username="Carol_X",
                display_name=None,
                tags=[],
                attributes={"purchaseCount": "many", "tier": "Gold Plus"},
                source=ContactSource.import_,
                opted_out=True,
                opted_out_at=days(1),
                conversation_count=0,
            ),
            "dave": contact_row(
                merchant_id,
                second.id,
                username=None,
                display_name="Dave",
                tags=["vip"],
                attributes={"purchaseCount": 5.5, "interests": ["shoes"]},
                source=ContactSource.manual,
                conversation_count=10,
                first_interaction_at=days(15),
                last_interaction_at=days(10),
            ),
        }
        session.add_all(people.values())
        other = f"other-{uuid.uuid4()}"
        other_account = account_row(other)
        session.add(other_account)
        await session.flush()
        stranger = contact_row(
            other,
            other_account.id,
            username="alice_shop",
            display_name="Alice Nguyen",
            tags=["vip", "newsletter"],
            attributes={"purchaseCount": 8, "tier": "gold"},
            conversation_count=3,
            last_interaction_at=days(2),
        )
        session.add(stranger)
        await session.flush()
        return Seeded(
            merchant_id=merchant_id,
            account_ids=(first.id, second.id),
            contact_ids={name: c.id for name, c in people.items()},
            stranger_id=stranger.id,
        )


@pytest.fixture
async def seeded(sessions: SessionMaker, api: Api) -> Seeded:
    return await seed_contacts(sessions, api.merchant.id)


async def create_segment(
    api: Api, conditions: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    response = await api.post(
        "/segments", json={"name": "Segment", "conditions": conditions, **extra}
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]
