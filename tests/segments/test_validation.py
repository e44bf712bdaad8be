"""Bad segments are refused with 422 VALIDATION_ERROR naming the exact part that is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api

GOOD = {"field": "tags", "operator": "contains", "value": "vip"}

# (condition, the field named in details, a word the reason must hold)
CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"field": "email", "operator": "equals", "value": "x"}, "conditions[0].field", "email"),
    ({"field": "attributes.", "operator": "exists"}, "conditions[0].field", "attribute key"),
    ({"field": "tags", "operator": "like", "value": "x"}, "conditions[0].operator", "equals"),
    ({"field": "tags", "operator": "before", "value": "x"}, "conditions[0].operator", "before"),
    ({"field": "tags", "operator": "equals", "value": "x"}, "conditions[0].operator", "contains"),
    (
        {"field": "optedOut", "operator": "greaterThan", "value": 1},
        "conditions[0].operator",
        "optedOut",
    ),
    (
        {"field": "lastInteractionAt", "operator": "greaterThan", "value": 1},
        "conditions[0].operator",
        "before",
    ),
    (
        {"field": "username", "operator": "withinLastDays", "value": 3},
        "conditions[0].operator",
        "withinLastDays",
    ),
    ({"field": "tags", "operator": "contains", "value": 5}, "conditions[0].value", "string"),
    ({"field": "tags", "operator": "contains", "value": "  "}, "conditions[0].value", "empty"),
    ({"field": "tags", "operator": "in", "value": "vip"}, "conditions[0].value", "list"),
    ({"field": "tags", "operator": "in", "value": []}, "conditions[0].value", "list"),
    ({"field": "tags", "operator": "contains"}, "conditions[0].value", "required"),
    ({"field": "tags", "operator": "exists", "value": True}, "conditions[0].value", "no value"),
    (
        {"field": "attributes.purchaseCount", "operator": "greaterThan", "value": "5"},
        "conditions[0].value",
        "number",
    ),
    (
        {"field": "attributes.purchaseCount", "operator": "greaterThan", "value": True},
        "conditions[0].value",
        "number",
    ),
    (
        {"field": "attributes.tier", "operator": "equals", "value": {"a": 1}},
        "conditions[0].value",
        "string",
    ),
    (
        {"field": "attributes.tier", "operator": "in", "value": ["gold", ["x"]]},
        "conditions[0].value",
        "string",
    ),
    (
        {"field": "conversationCount", "operator": "equals", "value": "3"},
        "conditions[0].value",
        "number",
    ),
    (
        {"field": "lastInteractionAt", "operator": "after", "value": "yesterday"},
        "conditions[0].value",
        "ISO 8601",
    ),
    (
        {"field": "lastInteractionAt", "operator": "withinLastDays", "value": 0},
        "conditions[0].value",
        "days",
    ),
    (
        {"field": "lastInteractionAt", "operator": "withinLastDays", "value": 1.5},
        "conditions[0].value",
        "days",
    ),
    ({"field": "optedOut", "operator": "equals", "value": "yes"}, "conditions[0].value", "true"),
    ({"field": "accountId", "operator": "equals", "value": "nope"}, "conditions[0].value", "UUID"),
    (
        {"field": "source", "operator": "equals", "value": "twitter"},
        "conditions[0].value",
        "import",
    ),
    ({"field": "username", "operator": "equals", "value": 42}, "conditions[0].value", "string"),
]


@pytest.mark.parametrize(("condition", "field", "word"), CASES)
async def test_bad_condition_is_named(
    api: Api, condition: dict[str, Any], field: str, word: str
) -> None:
    response = await api.post("/segments", json={"name": "Bad", "conditions": [condition]})

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == field
    assert word in body["details"]["reason"]


async def test_the_index_of_the_bad_condition_is_named(api: Api) -> None:
    bad = {"field": "tags", "operator": "greaterThan", "value": 1}
    response = await api.post("/segments", json={"name": "Bad", "conditions": [GOOD, bad]})

    assert response.status_code == 422
    assert response.json()["details"]["field"] == "conditions[1].operator"


async def test_unknown_match_and_missing_name(api: Api) -> None:
    response = await api.post(
        "/segments", json={"name": "Bad", "match": "some", "conditions": [GOOD]}
    )
    assert response.status_code == 422
    assert response.json()["details"]["field"] == "match"

    response = await api.post("/segments", json={"conditions": [GOOD]})
    assert response.status_code == 422
    assert response.json()["details"]["field"] == "name"


async def test_update_validates_conditions_too(api: Api) -> None:
    created = (await api.post("/segments", json={"name": "S", "conditions": [GOOD]})).json()
    bad = {"field": "username", "operator": "contains", "value": ["a"]}

    response = await api.put(f"/segments/{created['data']['id']}", json={"conditions": [bad]})

    assert response.status_code == 422
    assert response.json()["details"]["field"] == "conditions[0].value"
    after = (await api.get(f"/segments/{created['data']['id']}")).json()["data"]
    assert after["conditions"] == [GOOD]
