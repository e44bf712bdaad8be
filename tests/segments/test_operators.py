"""Every field and operator against the seeded contacts, through the API (count and preview)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Api
from tests.segments.conftest import Seeded, create_segment

ALL = {"alice", "bob", "carol", "dave"}


def _ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat().replace("+00:00", "Z")


def c(field: str, operator: str, value: Any = None) -> dict[str, Any]:
    condition: dict[str, Any] = {"field": field, "operator": operator}
    if value is not None:
        condition["value"] = value
    return condition


# (condition, the contacts it matches); account ids are filled in by the test.
CASES: list[tuple[dict[str, Any], set[str]]] = [
    # tags
    (c("tags", "contains", "vip"), {"alice", "dave"}),
    (c("tags", "contains", " VIP "), {"alice", "dave"}),  # tags are stored normalised
    (c("tags", "contains", ["vip", "newsletter"]), {"alice"}),
    (c("tags", "notContains", "vip"), {"bob", "carol"}),
    (c("tags", "in", ["newsletter", "nobody"]), {"alice", "bob"}),
    (c("tags", "notIn", ["vip"]), {"bob", "carol"}),
    (c("tags", "exists"), {"alice", "bob", "dave"}),
    (c("tags", "notExists"), {"carol"}),
    # attributes
    (c("attributes.purchaseCount", "equals", 8), {"alice"}),
    (c("attributes.purchaseCount", "equals", 8.0), {"alice"}),
    (c("attributes.tier", "equals", "gold"), {"alice"}),
    (c("attributes.tier", "notEquals", "gold"), {"bob", "carol", "dave"}),
    (c("attributes.tier", "contains", "gold"), {"alice", "carol"}),  # substring, any case
    (c("attributes.note", "contains", "vip"), {"bob"}),
    (c("attributes.interests", "contains", "shoes"), {"alice", "dave"}),  # array element
    (c("attributes.interests", "notContains", "shoes"), {"bob", "carol"}),
    (c("attributes.tier", "in", ["gold", "silver"]), {"alice", "bob"}),
    (c("attributes.tier", "notIn", ["gold"]), {"bob", "carol", "dave"}),
    # carol's purchaseCount is the string "many": no error, no match
    (c("attributes.purchaseCount", "greaterThan", 5), {"alice", "dave"}),
    (c("attributes.purchaseCount", "greaterThanOrEqual", 5.5), {"alice", "dave"}),
    (c("attributes.purchaseCount", "lessThan", 5), {"bob"}),
    (c("attributes.purchaseCount", "lessThanOrEqual", 2), {"bob"}),
    (c("attributes.tier", "greaterThan", 0), set()),  # strings never compare as numbers
    (c("attributes.city", "exists"), {"alice"}),
    (c("attributes.city", "notExists"), {"bob", "carol", "dave"}),
    # username (case-insensitive; "_" is a literal, not a LIKE wildcard)
    (c("username", "equals", "ALICE_SHOP"), {"alice"}),
    (c("username", "notEquals", "bob"), {"alice", "carol", "dave"}),
    (c("username", "contains", "_"), {"alice", "carol"}),
    (c("username", "notContains", "_"), {"bob", "dave"}),
    (c("username", "in", ["bob", "carol_x"]), {"bob", "carol"}),
    (c("username", "notIn", ["bob"]), {"alice", "carol", "dave"}),
    (c("username", "exists"), {"alice", "bob", "carol"}),
    (c("username", "notExists"), {"dave"}),
    # displayName
    (c("displayName", "equals", "dave"), {"dave"}),
    (c("displayName", "notEquals", "dave"), {"alice", "bob", "carol"}),
    (c("displayName", "contains", "NGUYEN"), {"alice"}),
    (c("displayName", "notContains", "tran"), {"alice", "carol", "dave"}),
    (c("displayName", "in", ["Bob Tran", "Dave"]), {"bob", "dave"}),
    (c("displayName", "notIn", ["Bob Tran"]), {"alice", "carol", "dave"}),
    (c("displayName", "exists"), {"alice", "bob", "dave"}),
    (c("displayName", "notExists"), {"carol"}),
    # source
    (c("source", "equals", "import"), {"carol"}),
    (c("source", "notEquals", "import"), {"alice", "bob", "dave"}),
    (c("source", "in", ["new_follower", "manual"]), {"bob", "dave"}),
    (c("source", "notIn", ["inbound_message"]), {"bob", "carol", "dave"}),
    # optedOut
    (c("optedOut", "equals", True), {"carol"}),
    (c("optedOut", "equals", False), {"alice", "bob", "dave"}),
    (c("optedOut", "notEquals", True), {"alice", "bob", "dave"}),
    # firstInteractionAt
    (c("firstInteractionAt", "before", _ago(50)), {"alice", "bob"}),
    (c("firstInteractionAt", "after", _ago(50)), {"dave"}),
    (c("firstInteractionAt", "withinLastDays", 30), {"dave"}),
    (c("firstInteractionAt", "exists"), {"alice", "bob", "dave"}),
    (c("firstInteractionAt", "notExists"), {"carol"}),
    # lastInteractionAt
    (c("lastInteractionAt", "after", _ago(20)), {"alice", "dave"}),
    (c("lastInteractionAt", "before", _ago(20)), {"bob"}),
    (c("lastInteractionAt", "withinLastDays", 30), {"alice", "dave"}),
    (c("lastInteractionAt", "withinLastDays", 5), {"alice"}),
    (c("lastInteractionAt", "exists"), {"alice", "bob", "dave"}),
    (c("lastInteractionAt", "notExists"), {"carol"}),
    # conversationCount
    (c("conversationCount", "equals", 3), {"alice"}),
    (c("conversationCount", "notEquals", 3), {"bob", "carol", "dave"}),
    (c("conversationCount", "greaterThan", 1), {"alice", "dave"}),
    (c("conversationCount", "greaterThanOrEqual", 1), {"alice", "bob", "dave"}),
    (c("conversationCount", "lessThan", 1), {"carol"}),
    (c("conversationCount", "lessThanOrEqual", 3), {"alice", "bob", "carol"}),
    (c("conversationCount", "in", [0, 10]), {"carol", "dave"}),
    (c("conversationCount", "notIn", [0]), {"alice", "bob", "dave"}),
]

ACCOUNT_CASES: list[tuple[str, Any, set[str]]] = [
    ("equals", "second", {"dave"}),
    ("notEquals", "second", {"alice", "bob", "carol"}),
    ("in", ["first"], {"alice", "bob", "carol"}),
    ("notIn", ["first", "second"], set()),
]


async def _matches(api: Api, seeded: Seeded, segment: dict[str, Any]) -> set[str]:
    response = await api.post(f"/segments/{segment['id']}/preview", params={"limit": 50})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    names = seeded.names([row["id"] for row in data["preview"]])
    # the count computed on read, the preview's total and the sample all agree
    assert data["totalMatches"] == len(names) == segment["contactCount"]
    return names


def _case_id(case: tuple[dict[str, Any], set[str]]) -> str:
    condition = case[0]
    return f"{condition['field']}-{condition['operator']}-{condition.get('value')!r}"


@pytest.mark.parametrize(("condition", "expected"), CASES, ids=[_case_id(k) for k in CASES])
async def test_each_field_and_operator(
    api: Api, seeded: Seeded, condition: dict[str, Any], expected: set[str]
) -> None:
    segment = await create_segment(api, [condition])
    assert await _matches(api, seeded, segment) == expected


@pytest.mark.parametrize(("operator", "value", "expected"), ACCOUNT_CASES)
async def test_account_id(
    api: Api, seeded: Seeded, operator: str, value: Any, expected: set[str]
) -> None:
    ids = {"first": str(seeded.account_ids[0]), "second": str(seeded.account_ids[1])}
    resolved = [ids[v] for v in value] if isinstance(value, list) else ids[value]
    segment = await create_segment(api, [c("accountId", operator, resolved)])
    assert await _matches(api, seeded, segment) == expected


async def test_all_conditions_must_hold_by_default(api: Api, seeded: Seeded) -> None:
    conditions = [c("tags", "contains", "vip"), c("attributes.purchaseCount", "greaterThan", 6)]
    segment = await create_segment(api, conditions)
    assert segment["match"] == "all"
    assert await _matches(api, seeded, segment) == {"alice"}


async def test_match_any_needs_one_condition(api: Api, seeded: Seeded) -> None:
    conditions = [c("tags", "contains", "vip"), c("source", "equals", "import")]
    segment = await create_segment(api, conditions, match="any")
    assert segment["match"] == "any"
    assert await _matches(api, seeded, segment) == {"alice", "carol", "dave"}


async def test_spec_example_three_conditions(api: Api, seeded: Seeded) -> None:
    conditions = [
        c("tags", "contains", "vip"),
        c("attributes.purchaseCount", "greaterThan", 5),
        c("lastInteractionAt", "after", _ago(5)),
    ]
    segment = await create_segment(api, conditions)
    assert await _matches(api, seeded, segment) == {"alice"}


async def test_no_conditions_is_every_contact_of_the_merchant(api: Api, seeded: Seeded) -> None:
    segment = await create_segment(api, [])
    assert await _matches(api, seeded, segment) == ALL
