"""`compile_segment` for campaigns: one statement, the union of segments, each contact once,
opted-out contacts left out when asked, never another merchant's contacts."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Select, literal

from models.db import SessionMaker
from models.segment import Segment, SegmentMatch
from services.segments.segments import compile_segment
from services.segments.sql import CONTACTS
from tests.segments.conftest import Seeded


def _segment(merchant_id: str, *conditions: dict[str, object]) -> Segment:
    return Segment(
        merchant_id=merchant_id, name="s", match=SegmentMatch.all, conditions=list(conditions)
    )


async def _run(sessions: SessionMaker, statement: Select[Any]) -> list[tuple[object, ...]]:
    async with sessions() as session:
        return [tuple(row) for row in (await session.execute(statement)).all()]


async def test_union_is_deduplicated(sessions: SessionMaker, seeded: Seeded) -> None:
    vip = _segment(seeded.merchant_id, {"field": "tags", "operator": "contains", "value": "vip"})
    rich = _segment(
        seeded.merchant_id,
        {"field": "attributes.purchaseCount", "operator": "greaterThan", "value": 1},
    )

    rows = await _run(sessions, compile_segment(seeded.merchant_id, [vip, rich]))

    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids))  # alice is in both, listed once
    assert seeded.names([str(i) for i in ids]) == {"alice", "bob", "dave"}


async def test_opted_out_contacts_can_be_left_out(sessions: SessionMaker, seeded: Seeded) -> None:
    everyone = _segment(seeded.merchant_id)

    kept = await _run(sessions, compile_segment(seeded.merchant_id, [everyone]))
    excluded = await _run(
        sessions, compile_segment(seeded.merchant_id, [everyone], exclude_opted_out=True)
    )

    assert seeded.names([str(r[0]) for r in kept]) == {"alice", "bob", "carol", "dave"}
    assert seeded.names([str(r[0]) for r in excluded]) == {"alice", "bob", "dave"}


async def test_columns_for_an_insert_select(sessions: SessionMaker, seeded: Seeded) -> None:
    campaign_id = uuid.uuid4()
    statement = compile_segment(
        seeded.merchant_id,
        [
            _segment(
                seeded.merchant_id,
                {"field": "accountId", "operator": "equals", "value": str(seeded.account_ids[1])},
            )
        ],
        columns=[literal(campaign_id).label("campaign_id"), CONTACTS.c.id, CONTACTS.c.account_id],
    )

    rows = await _run(sessions, statement)

    assert rows == [(campaign_id, seeded.contact_ids["dave"], seeded.account_ids[1])]


async def test_no_segment_matches_nobody(sessions: SessionMaker, seeded: Seeded) -> None:
    assert await _run(sessions, compile_segment(seeded.merchant_id, [])) == []


def test_another_merchants_segment_is_refused() -> None:
    with pytest.raises(ValueError, match="another merchant"):
        compile_segment("m1", [_segment("m2")])
