"""Contact import over HTTP: CSV and JSON lines, rejected rows with reasons, merging into existing
contacts, idempotent re-import, and the guards around the body."""

from __future__ import annotations

import csv
import io
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from models.account import XAccount
from models.contact import Contact, ContactSource
from models.db import SessionMaker
from services.contacts import importing as contact_import
from services.core.auth import Role
from tests.conftest import Api
from tests.contacts.conftest import import_jsonl, make_account, x_user_id


async def _post(api: Api, account_id: Any, body: bytes | str, content_type: str) -> Any:
    return await api.post(
        f"/contacts/import?accountId={account_id}",
        content=body.encode() if isinstance(body, str) else body,
        headers={"Content-Type": content_type},
    )


async def _contacts(sessions: SessionMaker, account_id: uuid.UUID) -> dict[str, Contact]:
    async with sessions() as session:
        rows = (
            (await session.execute(select(Contact).where(col(Contact.account_id) == account_id)))
            .scalars()
            .all()
        )
    return {row.twitter_user_id: row for row in rows}


async def test_csv_import_creates_contacts_and_rejects_bad_rows(
    api: Api, account: XAccount, sessions: SessionMaker
) -> None:
    ids = [x_user_id() for _ in range(3)]
    body = (
        "twitterUserId,username,displayName,tags,attributes,attributes.city\n"
        f'{ids[0]},@customer_john,"Doe, John",VIP; customer,"{{""purchaseCount"": 5}}",Hà Nội\n'
        f"{ids[1]},jane,Jane,newsletter|customer,,\n"
        f"{ids[2]},,,,,\n"
        "\n"
        "12ab,bad_id,,,,\n"
        f"{x_user_id()},bad name!,,,,\n"
        f"{x_user_id()},,,bad;tag!,,\n"
        f'{x_user_id()},,,,"{{not json",\n'
        f"{ids[0]},again,,,,\n"
        f"{x_user_id()},a,b,c,{{}},d,extra\n"
        ",no_id,,,,\n"
    )
    response = await _post(api, account.id, body, "text/csv; charset=utf-8")
    assert response.status_code == 200, response.text
    result = response.json()["data"]
    assert result["received"] == 10
    assert (result["created"], result["updated"], result["unchanged"]) == (3, 0, 0)
    assert result["rejectedCount"] == 7
    assert [r["row"] for r in result["rejected"]] == [4, 5, 6, 7, 8, 9, 10]
    reasons = {r["row"]: r["reason"] for r in result["rejected"]}
    assert reasons[4].startswith("twitterUserId")
    assert reasons[5].startswith("username")
    assert reasons[6].startswith("tags[1]")
    assert reasons[7].startswith("attributes")
    assert reasons[8] == "twitterUserId repeats row 1"
    assert "cells" in reasons[9]
    assert reasons[10].startswith("twitterUserId")

    stored = await _contacts(sessions, account.id)
    assert set(stored) == set(ids)
    john = stored[ids[0]]
    assert john.username == "customer_john"
    assert john.display_name == "Doe, John"
    assert john.tags == ["vip", "customer"]
    assert john.attributes == {"purchaseCount": 5, "city": "Hà Nội"}
    assert john.source == ContactSource.import_
    assert john.merchant_id == api.merchant.id
    assert stored[ids[1]].tags == ["newsletter", "customer"]
    bare = stored[ids[2]]
    assert (bare.username, bare.display_name, bare.tags, bare.attributes) == (None, None, [], {})

    found = (await api.get("/contacts?search=doe&tags=vip")).json()["data"]
    assert [c["twitterUserId"] for c in found] == [ids[0]]


async def test_jsonl_import_and_merge_into_existing_contacts(
    api: Api, account: XAccount, sessions: SessionMaker
) -> None:
    existing_id = x_user_id()
    async with sessions() as session:
        session.add(
            Contact(
                merchant_id=api.merchant.id,
                account_id=account.id,
                twitter_user_id=existing_id,
                username="from_dm",
                display_name="Came By DM",
                tags=["customer"],
                attributes={"lang": "vi", "purchaseCount": 1},
                source=ContactSource.inbound_message,
            )
        )
        await session.commit()
    new_id = x_user_id()
    lines = [
        json.dumps(
            {
                "twitterUserId": int(existing_id),
                "tags": ["VIP", "customer"],
                "attributes": {"purchaseCount": 2, "tier": "gold"},
            }
        ),
        json.dumps(
            {
                "twitterUserId": new_id,
                "username": "new_one",
                "displayName": "New  One",
                "tags": ["lead"],
                "attributes": {"nested": {"a": [1, 2]}},
            }
        ),
        "",
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"twitterUserId": x_user_id(), "email": "x@example.com"}),
        json.dumps({"twitterUserId": x_user_id(), "tags": "vip"}),
        json.dumps({"twitterUserId": x_user_id(), "attributes": {"": 1}}),
    ]
    response = await _post(api, account.id, "\n".join(lines), "application/x-ndjson")
    assert response.status_code == 200, response.text
    result = response.json()["data"]
    assert (result["created"], result["updated"], result["rejectedCount"]) == (1, 1, 5)
    reasons = {r["row"]: r["reason"] for r in result["rejected"]}
    assert reasons == {
        3: "not valid JSON",
        4: "must be a JSON object",
        5: "unknown field 'email'",
        6: "tags: must be a list",
        7: "attributes: keys must be non-empty strings",
    }

    stored = await _contacts(sessions, account.id)
    merged = stored[existing_id]
    assert merged.source == ContactSource.inbound_message  # an import does not rewrite history
    assert merged.username == "from_dm" and merged.display_name == "Came By DM"
    assert merged.tags == ["customer", "vip"]
    assert merged.attributes == {"lang": "vi", "purchaseCount": 2, "tier": "gold"}
    fresh = stored[new_id]
    assert fresh.display_name == "New One"
    assert fresh.attributes == {"nested": {"a": [1, 2]}}

    same_again = await _post(api, account.id, "\n".join(lines), "application/jsonl")
    again = same_again.json()["data"]
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)


def _csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=["twitterUserId", "username", "displayName", "tags", "attributes.tier"]
    )
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


async def test_a_few_thousand_rows_and_an_idempotent_reimport(
    api: Api, account: XAccount, sessions: SessionMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(contact_import, "CHUNK_SIZE", 1_000)  # several chunks, several commits
    rows = [
        {
            "twitterUserId": str(10**15 + n),
            "username": f"user_{n}",
            "displayName": f"User {n}",
            "tags": "customer;vip" if n % 10 == 0 else "customer",
            "attributes.tier": "gold" if n % 3 == 0 else "",
        }
        for n in range(3_500)
    ]
    first = (await _post(api, account.id, _csv(rows), "text/csv")).json()["data"]
    assert (first["created"], first["updated"], first["unchanged"]) == (3_500, 0, 0)
    assert first["rejectedCount"] == 0 and first["rejected"] == []

    again = (await _post(api, account.id, _csv(rows), "text/csv")).json()["data"]
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3_500)

    for n in range(0, 3_500, 7):
        rows[n]["tags"] = "customer;returning"
    rows.append(
        {"twitterUserId": "1", "username": "", "displayName": "", "tags": "", "attributes.tier": ""}
    )
    changed = (await _post(api, account.id, _csv(rows), "text/csv")).json()["data"]
    assert (changed["created"], changed["updated"], changed["unchanged"]) == (1, 500, 3_000)

    async with sessions() as session:
        count = (
            await session.execute(
                select(func.count())
                .select_from(Contact)
                .where(col(Contact.account_id) == account.id)
            )
        ).scalar_one()
        returning = (
            await session.execute(
                select(func.count())
                .select_from(Contact)
                .where(
                    col(Contact.account_id) == account.id,
                    col(Contact.tags).contains(["returning"]),
                )
            )
        ).scalar_one()
    assert (count, returning) == (3_501, 500)
    listed = (await api.get(f"/contacts?accountId={account.id}&tags=vip,customer")).json()
    assert listed["pagination"]["total"] == 350
    # Tags only ever grow through an import: n=0 had vip, and keeps it next to "returning".
    zero = (await _contacts(sessions, account.id))[str(10**15)]
    assert zero.tags == ["customer", "vip", "returning"]
    assert zero.attributes == {"tier": "gold"}


async def test_the_guards_around_an_import(
    api: Api,
    other_api: Api,
    account: XAccount,
    sessions: SessionMaker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    csv_body = f"twitterUserId\n{x_user_id()}\n"
    foreign = await make_account(sessions, other_api.merchant.id)
    for account_id in (foreign.id, uuid.uuid4()):
        missing = await _post(api, account_id, csv_body, "text/csv")
        assert missing.status_code == 404, missing.text
        assert missing.json()["code"] == "RESOURCE_NOT_FOUND"
    assert (await api.post("/contacts/import", content=csv_body)).status_code == 422

    wrong_type = await _post(api, account.id, csv_body, "application/json")
    assert wrong_type.status_code == 415
    assert wrong_type.json()["details"]["field"] == "Content-Type"

    for body, field in [
        ("twitter_user_id,Display Name,e-mail\n1,a,b\n", "header[2]"),
        ("username\nbob\n", "header"),
        ("twitterUserId,attributes.\n1,x\n", "header[1]"),
    ]:
        refused = await _post(api, account.id, body, "text/csv")
        assert refused.status_code == 422, refused.text
        assert refused.json()["details"]["field"] == field
    not_utf8 = await _post(
        api, account.id, "twitterUserId,displayName\n1,Jos\xe9\n".encode("latin-1"), "text/csv"
    )
    assert not_utf8.status_code == 422 and not_utf8.json()["details"]["field"] == "body"

    empty = (await _post(api, account.id, "", "text/csv")).json()["data"]
    assert empty["received"] == 0 and empty["created"] == 0

    monkeypatch.setattr(contact_import, "MAX_BODY_BYTES", 1024 * 1024)
    too_big = await _post(api, account.id, "twitterUserId\n" + "1\n" * 600_000, "text/csv")
    assert too_big.status_code == 413, too_big.text
    assert too_big.json()["details"]["field"] == "body"

    viewer = await api.post(
        f"/contacts/import?accountId={account.id}",
        role=Role.viewer,
        content=csv_body.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert viewer.status_code == 403
    assert await import_jsonl(api, account.id, []) == {
        "received": 0,
        "created": 0,
        "updated": 0,
        "unchanged": 0,
        "rejected": [],
        "rejectedCount": 0,
    }


async def test_an_oversized_csv_field_rejects_its_row_only(api: Api, account: XAccount) -> None:
    ids = [x_user_id(), x_user_id()]
    body = f"twitterUserId,displayName\n{ids[0]},{'x' * 200_000}\n{ids[1]},Fine\n"
    result = (await _post(api, account.id, body, "text/csv")).json()["data"]
    assert result["created"] == 1
    assert result["rejected"][0]["row"] == 1
    assert result["rejected"][0]["reason"].startswith("unreadable CSV")


async def test_rejections_are_capped_but_counted(api: Api, account: XAccount) -> None:
    body = "twitterUserId\n" + "".join(f"bad{n}\n" for n in range(250)) + f"{x_user_id()}\n"
    result = (await _post(api, account.id, body, "text/csv")).json()["data"]
    assert result["created"] == 1
    assert result["rejectedCount"] == 250
    assert len(result["rejected"]) == contact_import.MAX_REPORTED_REJECTIONS
    assert result["rejected"][0] == {"row": 1, "reason": "twitterUserId: required, digits only"}
