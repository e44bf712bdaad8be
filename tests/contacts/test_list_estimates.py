"""Totals are exact up to a limit (10,000; lowered here) and the planner's estimate above it,
flagged `totalIsEstimate`, on the contacts list (each way it counts) and on the other lists; a
search of several words finds each word by its prefix, also past the index's key length."""

from __future__ import annotations

from typing import Any

import pytest

from models.account import XAccount
from services.contacts import listing as contact_list
from services.contacts import tag_counts
from services.core import totals
from tests.conftest import Api
from tests.contacts.conftest import import_jsonl, x_user_id

LIMIT = 5


@pytest.fixture
def low_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(totals, "EXACT_TOTAL_LIMIT", LIMIT)


@pytest.fixture(params=["walk", "gin"])
def count_plan(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A filtered total is counted along the list order (broad filters) or through the GIN
    scan (narrow ones): both count the same."""
    monkeypatch.setattr(contact_list, "WALK_COUNT_SHARE", 0.0 if request.param == "walk" else 2.0)
    return str(request.param)


async def _pagination(api: Api, query: str) -> dict[str, Any]:
    response = await api.get(f"/contacts?{query}")
    assert response.status_code == 200, response.text
    pagination: dict[str, Any] = response.json()["pagination"]
    return pagination


@pytest.mark.usefixtures("low_limit")
async def test_contacts_totals_exact_up_to_the_limit_then_estimated(
    api: Api, account: XAccount, count_plan: str
) -> None:
    await import_jsonl(
        api,
        account.id,
        [
            {"twitterUserId": x_user_id(), "username": f"buyer{i}", "tags": ["vip", "customer"]}
            for i in range(8)
        ]
        + [
            {"twitterUserId": x_user_id(), "username": f"lead{i}", "tags": ["lead"]}
            for i in range(LIMIT)
        ],
    )
    exact = await _pagination(api, "tags=lead&take=2")
    assert exact == {
        "page": 1,
        "limit": 2,
        "total": LIMIT,
        "totalPages": 3,
        "totalIsEstimate": False,
    }
    for query in ("tags=vip,customer&take=2", "search=buyer&take=2", "take=2"):
        estimated = await _pagination(api, query)
        assert estimated["totalIsEstimate"] is True, query
        assert estimated["total"] > LIMIT  # never below what was counted
        assert estimated["totalPages"] == -(-estimated["total"] // 2)
    # The last page of an estimated list tells the exact total.
    last = await _pagination(api, "tags=vip,customer&skip=6&take=5")
    assert (last["total"], last["totalIsEstimate"]) == (8, False)
    # Past the end, the estimate stands (the page proves nothing).
    beyond = await _pagination(api, "tags=vip,customer&skip=50&take=5")
    assert beyond["totalIsEstimate"] is True and beyond["total"] > LIMIT


@pytest.mark.usefixtures("low_limit")
async def test_a_single_tags_total_is_exact_at_any_size(
    api: Api, account: XAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    await import_jsonl(
        api,
        account.id,
        [
            {"twitterUserId": x_user_id(), "username": f"gold{i}", "tags": ["gold"]}
            for i in range(9)
        ],
    )
    # From the tag counts analytics keeps (services/contacts/tag_counts.py), past the limit.
    page = await _pagination(api, "tags=gold&take=2")
    assert (page["total"], page["totalIsEstimate"], page["totalPages"]) == (9, False, 5)
    scoped = await _pagination(api, f"tags=GOLD&accountId={account.id}&take=2")
    assert (scoped["total"], scoped["totalIsEstimate"]) == (9, False)
    removed = await api.get("/contacts", params={"tags": "gold", "take": 1})
    contact_id = removed.json()["data"][0]["id"]
    assert (await api.delete(f"/contacts/{contact_id}")).status_code in (200, 204)
    assert (await _pagination(api, "tags=gold&take=2"))["total"] == 8
    # Too many deltas waiting to be folded to sum them: counted instead, by the limit's rule.
    monkeypatch.setattr(tag_counts, "TAG_TOTAL_ROWS", 2)
    counted = await _pagination(api, "tags=gold&take=2")
    assert counted["totalIsEstimate"] is True and counted["total"] > LIMIT


@pytest.mark.usefixtures("low_limit")
async def test_every_list_estimates_alike(api: Api) -> None:
    for i in range(LIMIT + 2):
        created = await api.post(
            "/templates", json={"name": f"Offer {i}", "content": "Hi {{name}}"}
        )
        assert created.status_code == 200, created.text
    page = (await api.get("/templates?take=2")).json()["pagination"]
    assert page["totalIsEstimate"] is True and page["total"] > LIMIT
    short = (await api.get("/templates?take=2&skip=6")).json()["pagination"]
    assert (short["total"], short["totalIsEstimate"]) == (LIMIT + 2, False)


async def test_two_word_and_long_word_searches(
    api: Api, account: XAccount, page_plan: str, count_plan: str
) -> None:
    people = {
        "lan": "Trần Thị Lan",
        "an": "Trần Văn An",
        "trang": "Lê Thị Trang",
        "nv": "Nguyenvanhung Smith",  # words longer than the index's 6-letter keys
        "nt": "Nguyenthihoa Smith",
    }
    await import_jsonl(
        api,
        account.id,
        [
            {"twitterUserId": x_user_id(), "username": key, "displayName": name}
            for key, name in people.items()
        ],
    )

    async def found(term: str) -> set[str]:
        response = await api.get("/contacts", params={"search": term})
        body = response.json()
        assert body["pagination"]["total"] == len(body["data"]), term
        return {row["username"] for row in body["data"]}

    assert await found("trần thị") == {"lan", "trang"}  # Trang's words: le, thi, trang
    assert await found("THI tran lan") == {"lan"}
    assert await found("tran van") == {"an"}
    assert await found("tr th") == {"lan", "trang"}
    assert await found("nguyenvan") == {"nv"}  # past 6 letters: the whole prefix counts
    assert await found("nguyen smith") == {"nv", "nt"}
    assert await found("nguyenthihoa smi") == {"nt"}
    assert await found("trần xyz") == set()
