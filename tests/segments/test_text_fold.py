"""Username / display name `contains` ignore accents like the contacts search: a segment
"display name contains tran" holds Trần. `equals` / `in` stay exact (case aside)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from models.db import SessionMaker
from tests.conftest import Api
from tests.segments.conftest import Seeded, contact_row, create_segment

# Beside the seeded alice ("Alice Nguyen"), bob ("Bob Tran"), carol (no display name, username
# "Carol_X") and dave ("Dave", no username).
EXTRA: dict[str, dict[str, Any]] = {
    "tran_ha": {"username": "tran_ha", "display_name": "Trần Thị Hà"},
    "do_duc": {"username": None, "display_name": "ĐỖ ĐỨC"},
    "zoe": {"username": "deal_100%", "display_name": "Zoë Ångström"},
    "jose": {"username": "José_Ñ", "display_name": None},
}


@pytest.fixture
async def people(seeded: Seeded, sessions: SessionMaker) -> dict[str, uuid.UUID]:
    async with sessions() as session, session.begin():
        rows = {
            name: contact_row(seeded.merchant_id, seeded.account_ids[0], **fields)
            for name, fields in EXTRA.items()
        }
        session.add_all(rows.values())
        await session.flush()
        ids = {name: row.id for name, row in rows.items()}
    return {**seeded.contact_ids, **ids}


def c(field: str, operator: str, value: Any) -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


EVERYONE = {"alice", "bob", "carol", "dave", "tran_ha", "do_duc", "zoe", "jose"}
CASES: list[tuple[dict[str, Any], set[str]]] = [
    (c("displayName", "contains", "tran"), {"bob", "tran_ha"}),
    (c("displayName", "contains", "TRẦN"), {"bob", "tran_ha"}),
    (c("displayName", "contains", "ran th"), {"tran_ha"}),  # anywhere, across words
    (c("displayName", "contains", "thi ha"), {"tran_ha"}),
    (c("displayName", "contains", "duc"), {"do_duc"}),
    (c("displayName", "contains", "đ"), {"dave", "do_duc"}),
    (c("displayName", "contains", "angstrom"), {"zoe"}),
    (c("displayName", "contains", "ZOE"), {"zoe"}),
    (c("displayName", "contains", "nguyễn"), {"alice"}),  # an accented needle, a plain name
    # The complement, contacts without a display name included.
    (c("displayName", "notContains", "tran"), EVERYONE - {"bob", "tran_ha"}),
    (c("username", "contains", "jose"), {"jose"}),
    (c("username", "contains", "É_ñ"), {"jose"}),
    (c("username", "notContains", "jose"), EVERYONE - {"jose"}),
    # LIKE wildcards in the needle are plain characters.
    (c("username", "contains", "0%"), {"zoe"}),
    (c("username", "contains", "a%c"), set()),
    (c("username", "contains", "_"), {"alice", "carol", "tran_ha", "zoe", "jose"}),
    # equals / in: exact, case aside (accents count).
    (c("displayName", "equals", "trần thị hà"), {"tran_ha"}),
    (c("displayName", "equals", "Tran Thi Ha"), set()),
    (c("displayName", "in", ["đỗ đức", "Do Duc"]), {"do_duc"}),
]


def _case_id(case: tuple[dict[str, Any], set[str]]) -> str:
    condition = case[0]
    return f"{condition['field']}-{condition['operator']}-{condition['value']!r}"


@pytest.mark.parametrize(("condition", "expected"), CASES, ids=[_case_id(k) for k in CASES])
async def test_text_contains_ignores_accents_and_case(
    api: Api, people: dict[str, uuid.UUID], condition: dict[str, Any], expected: set[str]
) -> None:
    segment = await create_segment(api, [condition])
    response = await api.post(f"/segments/{segment['id']}/preview", params={"limit": 50})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    by_id = {str(v): k for k, v in people.items()}
    found = {by_id.get(row["id"], f"foreign:{row['id']}") for row in data["preview"]}
    assert found == expected
    assert data["totalMatches"] == len(expected) == segment["contactCount"]
