"""Contact Management over HTTP: list filters, details with engagement, edits, tags, attributes,
a contact's conversations, roles and tenancy."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from models.account import AccountStatus, XAccount
from models.conversation import ConversationStatus, MessageDirection, MessageStatus
from models.db import SessionMaker, utcnow
from services.contacts.contacts import format_duration
from services.core.auth import Role
from tests.conftest import Api
from tests.contacts.conftest import (
    Line,
    add_conversation,
    import_jsonl,
    make_account,
    make_contact,
    minutes,
    x_user_id,
)

IN, OUT = MessageDirection.inbound, MessageDirection.outbound

CONTACT_KEYS = {
    "id",
    "accountId",
    "twitterUserId",
    "username",
    "displayName",
    "profileImageUrl",
    "tags",
    "attributes",
    "source",
    "optedOut",
    "optedOutAt",
    "conversationCount",
    "firstInteractionAt",
    "lastInteractionAt",
    "createdAt",
}


def _names(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["username"] for item in response.json()["data"]}


async def test_list_filters_by_account_all_tags_and_word_prefix_search(
    api: Api, account: XAccount, sessions: SessionMaker, page_plan: str
) -> None:
    second = await make_account(sessions, api.merchant.id)
    await import_jsonl(
        api,
        account.id,
        [
            {
                "twitterUserId": x_user_id(),
                "username": "customer_john",
                "displayName": "John Doe",
                "tags": ["vip", "customer"],
                "attributes": {"purchaseCount": 5, "totalSpent": 1250000},
            },
            {
                "twitterUserId": x_user_id(),
                "username": "jane_smith",
                "displayName": "Jane Customer",
                "tags": ["customer"],
            },
            {
                "twitterUserId": x_user_id(),
                "username": "bob",
                "displayName": "Bob",
                "tags": ["vip"],
            },
        ],
    )
    await import_jsonl(
        api,
        second.id,
        [
            {
                "twitterUserId": x_user_id(),
                "username": "johnny_b",
                "displayName": "Nguyễn Văn An",
                "tags": ["customer", "vip", "hanoi"],
            }
        ],
    )

    everything = await api.get("/contacts")
    assert _names(everything) == {"customer_john", "jane_smith", "bob", "johnny_b"}
    john = next(i for i in everything.json()["data"] if i["username"] == "customer_john")
    assert set(john) == CONTACT_KEYS
    assert john["accountId"] == str(account.id)
    assert john["displayName"] == "John Doe"
    assert john["tags"] == ["vip", "customer"]
    assert john["attributes"] == {"purchaseCount": 5, "totalSpent": 1250000}
    assert john["source"] == "import"
    assert john["optedOut"] is False and john["conversationCount"] == 0

    assert _names(await api.get(f"/contacts?accountId={account.id}")) == {
        "customer_john",
        "jane_smith",
        "bob",
    }
    # tags: contacts having ALL of them, any case, any spacing.
    assert _names(await api.get("/contacts?tags=vip,customer")) == {"customer_john", "johnny_b"}
    assert _names(await api.get("/contacts?tags= VIP , Customer")) == {"customer_john", "johnny_b"}
    assert _names(await api.get(f"/contacts?tags=vip,customer&accountId={second.id}")) == {
        "johnny_b"
    }
    assert _names(await api.get("/contacts?tags=vip,customer,hanoi")) == {"johnny_b"}
    assert _names(await api.get("/contacts?tags=nobody-has-this")) == set()

    # search: word prefixes of username or display name, case-insensitive, all words required.
    assert _names(await api.get("/contacts?search=john")) == {"customer_john", "johnny_b"}
    assert _names(await api.get("/contacts?search=JOHN")) == {"customer_john", "johnny_b"}
    assert _names(await api.get("/contacts?search=cust")) == {"customer_john", "jane_smith"}
    assert _names(await api.get("/contacts?search=john doe")) == {"customer_john"}
    assert _names(await api.get("/contacts?search=customer_john")) == {"customer_john"}
    assert _names(await api.get("/contacts?search=nguy")) == {"johnny_b"}
    assert _names(await api.get("/contacts?search=ohn")) == set()  # prefixes, not infixes
    assert _names(await api.get("/contacts?search=cust&tags=vip")) == {"customer_john"}
    # Whatever is typed is a search term, never query syntax.
    for hostile in ["john' & !", "a:* | b", "\\'; DROP TABLE contacts; --", "!!!", "(", "'"]:
        response = await api.get("/contacts", params={"search": hostile})
        assert response.status_code == 200, (hostile, response.text)
    assert _names(await api.get("/contacts", params={"search": "john' & !"})) == {
        "customer_john",
        "johnny_b",
    }

    bad = await api.get("/contacts", params={"tags": "vip,semi;colon"})
    assert bad.status_code == 422
    assert bad.json()["details"]["field"] == "tags"
    too_long = await api.get("/contacts", params={"search": "x" * 101})
    assert too_long.status_code == 422 and too_long.json()["details"]["field"] == "search"


async def test_list_order_and_pagination(
    api: Api, account: XAccount, sessions: SessionMaker
) -> None:
    quiet = await make_contact(api, account.id, username="quiet")
    older = await make_contact(api, account.id, username="older")
    recent = await make_contact(api, account.id, username="recent")
    now = utcnow()
    await add_conversation(sessions, older, api.merchant.id, [Line(IN, now - timedelta(days=2))])
    await add_conversation(sessions, recent, api.merchant.id, [Line(IN, now - timedelta(hours=1))])

    first = await api.get("/contacts?take=2")
    body = first.json()
    assert [i["username"] for i in body["data"]] == ["recent", "older"]
    assert body["pagination"] == {
        "page": 1,
        "limit": 2,
        "total": 3,
        "totalPages": 2,
        "totalIsEstimate": False,
    }
    second = (await api.get("/contacts?skip=2&take=2")).json()
    assert [i["id"] for i in second["data"]] == [quiet["id"]]
    assert second["pagination"]["page"] == 2
    assert (await api.get("/contacts?take=101")).status_code == 422


async def test_details_count_messages_and_average_the_wait_for_a_reply(
    api: Api, account: XAccount, sessions: SessionMaker
) -> None:
    contact = await make_contact(api, account.id, username="waiter")
    t0 = utcnow() - timedelta(days=1)
    # Waited 5m (the follow-up does not restart the clock), then 6m.
    await add_conversation(
        sessions,
        contact,
        api.merchant.id,
        [
            Line(IN, t0),
            Line(IN, minutes(t0, 1)),
            Line(OUT, minutes(t0, 5)),
            Line(IN, minutes(t0, 20)),
            Line(OUT, minutes(t0, 26)),
        ],
        status=ConversationStatus.closed,
    )
    # Waited 5m30s: a failed send reached nobody; the last message is not answered yet.
    s0 = utcnow() - timedelta(hours=2)
    await add_conversation(
        sessions,
        contact,
        api.merchant.id,
        [
            Line(IN, s0),
            Line(OUT, minutes(s0, 1), status=MessageStatus.failed),
            Line(OUT, minutes(s0, 5.5), status=MessageStatus.read),
            Line(IN, minutes(s0, 30)),
        ],
    )
    response = await api.get(f"/contacts/{contact['id']}", role=Role.viewer)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(data) == CONTACT_KEYS | {"engagement"}
    assert data["engagement"] == {
        "messagesSent": 3,
        "messagesReceived": 5,
        "averageResponseTime": "5m 30s",  # (300 + 360 + 330) / 3
        "averageResponseSeconds": 330.0,
    }
    assert data["conversationCount"] == 2

    silent = await make_contact(api, account.id, username="silent")
    engagement = (await api.get(f"/contacts/{silent['id']}")).json()["data"]["engagement"]
    assert engagement == {
        "messagesSent": 0,
        "messagesReceived": 0,
        "averageResponseTime": None,
        "averageResponseSeconds": None,
    }


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (45, "45s"),
        (59.6, "1m"),
        (330, "5m 30s"),
        (3600, "1h"),
        (7500, "2h 5m"),
        (97_200, "1d 3h"),
        (90_061, "1d 1h"),
    ],
)
def test_response_time_format(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


async def test_update_renames_and_merges_attributes(api: Api, account: XAccount) -> None:
    contact = await make_contact(
        api,
        account.id,
        username="merge_me",
        displayName="John Doe",
        attributes={"purchaseCount": 5, "preferredLanguage": "vi"},
    )
    response = await api.put(
        f"/contacts/{contact['id']}",
        role=Role.agent,
        json={
            "displayName": "John Doe (VIP)",
            "attributes": {"preferredLanguage": "en", "notes": "Premium customer"},
        },
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["displayName"] == "John Doe (VIP)"
    assert data["attributes"] == {
        "purchaseCount": 5,
        "preferredLanguage": "en",
        "notes": "Premium customer",
    }
    # The rename is searchable at once (the search vector follows the name).
    assert _names(await api.get("/contacts?search=vip")) == {"merge_me"}
    detail = (await api.get(f"/contacts/{contact['id']}")).json()["data"]
    assert detail["attributes"] == data["attributes"]

    only_attributes = await api.put(
        f"/contacts/{contact['id']}", json={"attributes": {"nested": {"a": [1, 2]}}}
    )
    assert only_attributes.json()["data"]["displayName"] == "John Doe (VIP)"
    assert only_attributes.json()["data"]["attributes"]["nested"] == {"a": [1, 2]}

    for body, field in [
        ({"displayName": "x", "username": "hijack"}, "username"),
        ({}, "body"),
        ({"attributes": []}, "attributes"),
        ({"displayName": "x" * 257}, "displayName"),
        ({"attributes": {"k" * 65: 1}}, "attributes.kkkk"),
        ({"attributes": {"big": "x" * 17_000}}, "attributes"),
    ]:
        refused = await api.put(f"/contacts/{contact['id']}", json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["code"] == "VALIDATION_ERROR"
        assert refused.json()["details"]["field"].startswith(field), refused.json()


async def test_tags_are_normalised_deduplicated_and_removable(api: Api, account: XAccount) -> None:
    contact = await make_contact(api, account.id, tags=["customer"])
    path = f"/contacts/{contact['id']}/tags"

    added = await api.post(
        path, role=Role.agent, json={"tags": [" VIP ", "vip", "Gold   Member", "customer"]}
    )
    assert added.status_code == 200, added.text
    assert added.json()["data"]["tags"] == ["customer", "vip", "gold member"]
    again = await api.post(path, json={"tags": ["premium", "VIP"]})
    assert again.json()["data"]["tags"] == ["customer", "vip", "gold member", "premium"]

    for tags, field in [
        ([""], "tags[0]"),
        (["ok", "   "], "tags[1]"),
        (["ok", "bad,comma"], "tags[1]"),
        (["x" * 51], "tags[0]"),
        ([], "tags"),
        ("vip", "tags"),
    ]:
        refused = await api.post(path, json={"tags": tags})
        assert refused.status_code == 422, (tags, refused.text)
        assert refused.json()["details"]["field"] == field, refused.json()

    removed = await api.delete(f"{path}/VIP", role=Role.agent)
    assert removed.status_code == 200, removed.text
    assert removed.json()["data"]["tags"] == ["customer", "gold member", "premium"]
    spaced = await api.delete(f"{path}/Gold%20Member")
    assert spaced.json()["data"]["tags"] == ["customer", "premium"]

    absent = await api.delete(f"{path}/vip")
    assert absent.status_code == 404
    assert absent.json()["code"] == "RESOURCE_NOT_FOUND"
    stored = (await api.get(f"/contacts/{contact['id']}")).json()["data"]
    assert stored["tags"] == ["customer", "premium"]


async def test_attributes_are_replaced_wholesale(api: Api, account: XAccount) -> None:
    contact = await make_contact(api, account.id, attributes={"old": True, "purchaseCount": 5})
    path = f"/contacts/{contact['id']}/attributes"
    replaced = await api.put(
        path,
        role=Role.agent,
        json={
            "attributes": {
                "purchaseCount": 6,
                "totalSpent": 1500000,
                "lastPurchaseDate": "2026-01-18",
                "membershipTier": "gold",
            }
        },
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["data"]["attributes"] == {
        "purchaseCount": 6,
        "totalSpent": 1500000,
        "lastPurchaseDate": "2026-01-18",
        "membershipTier": "gold",
    }
    emptied = await api.put(path, json={"attributes": {}})
    assert emptied.json()["data"]["attributes"] == {}

    for body, field in [
        ({"attributes": {"": 1}}, "attributes"),
        ({"attributes": {"  ": 1}}, "attributes"),
        ({"attributes": "x"}, "attributes"),
        ({}, "attributes"),
        ({"attributes": {"a": 1}, "extra": 1}, "extra"),
        ({"attributes": {"big": ["x" * 1000] * 17}}, "attributes"),
    ]:
        refused = await api.put(path, json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["details"]["field"] == field, refused.json()


async def test_a_contacts_conversations(
    api: Api, account: XAccount, sessions: SessionMaker
) -> None:
    contact = await make_contact(api, account.id)
    other = await make_contact(api, account.id)
    now = utcnow()
    closed = await add_conversation(
        sessions,
        contact,
        api.merchant.id,
        [Line(IN, now - timedelta(days=3)), Line(OUT, now - timedelta(days=3, minutes=-2))],
        status=ConversationStatus.closed,
    )
    opened = await add_conversation(sessions, contact, api.merchant.id, [Line(IN, now)])
    await add_conversation(sessions, other, api.merchant.id, [Line(IN, now)])

    listed = await api.get(f"/contacts/{contact['id']}/conversations", role=Role.viewer)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [c["id"] for c in body["data"]] == [str(opened.id), str(closed.id)]
    assert body["pagination"] == {
        "page": 1,
        "limit": 20,
        "total": 2,
        "totalPages": 1,
        "totalIsEstimate": False,
    }
    item = body["data"][1]
    assert item["contactId"] == contact["id"]
    assert item["accountId"] == str(account.id)
    assert item["status"] == "closed"
    assert item["messageCount"] == 2
    assert {"startedAt", "lastMessageAt"} <= set(item)

    only_open = (await api.get(f"/contacts/{contact['id']}/conversations?status=open")).json()
    assert [c["id"] for c in only_open["data"]] == [str(opened.id)]
    paged = (await api.get(f"/contacts/{contact['id']}/conversations?take=1&skip=1")).json()
    assert [c["id"] for c in paged["data"]] == [str(closed.id)]
    bad = await api.get(f"/contacts/{contact['id']}/conversations?status=archived")
    assert bad.status_code == 422


def _changes(contact_id: str, account_id: uuid.UUID) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("PUT", f"/contacts/{contact_id}", {"json": {"displayName": "x"}}),
        ("POST", f"/contacts/{contact_id}/tags", {"json": {"tags": ["x"]}}),
        ("DELETE", f"/contacts/{contact_id}/tags/vip", {}),
        ("PUT", f"/contacts/{contact_id}/attributes", {"json": {"attributes": {}}}),
        ("DELETE", f"/contacts/{contact_id}", {}),
        (
            "POST",
            f"/contacts/import?accountId={account_id}",
            {"content": b"twitterUserId\n1\n", "headers": {"Content-Type": "text/csv"}},
        ),
    ]


def _reads(contact_id: str) -> list[str]:
    return [
        "/contacts",
        f"/contacts/{contact_id}",
        f"/contacts/{contact_id}/conversations",
    ]


async def test_viewers_read_and_agents_change(api: Api, account: XAccount) -> None:
    contact = await make_contact(api, account.id, tags=["vip"], attributes={"tier": "gold"})
    path = f"/contacts/{contact['id']}"
    for read in _reads(contact["id"]):
        assert (await api.get(read, role=Role.viewer)).status_code == 200, read
    shown = (await api.get(path)).json()["data"]
    assert (shown["tags"], shown["attributes"]) == (["vip"], {"tier": "gold"})
    listed = (await api.get(f"/contacts?accountId={account.id}")).json()

    for method, change, kwargs in _changes(contact["id"], account.id):
        refused = await api.request(method, change, role=Role.viewer, **kwargs)
        assert refused.status_code == 403, (method, change, refused.text)
        assert refused.json()["code"] == "FORBIDDEN"
    # The viewer changed nothing: not the contact, nor the account's contacts (no import).
    assert (await api.get(path)).json()["data"] == shown
    assert (await api.get(f"/contacts?accountId={account.id}")).json() == listed

    # The agent's changes happen, each as the agent then reads it.
    put, tag, untag, attributes, erase, bulk = _changes(contact["id"], account.id)

    async def as_agent(change: tuple[str, str, dict[str, Any]]) -> dict[str, Any] | None:
        method, where, kwargs = change
        allowed = await api.request(method, where, role=Role.agent, **kwargs)
        assert allowed.status_code == 200, (method, where, allowed.text)
        after = await api.get(path, role=Role.agent)
        return after.json()["data"] if after.status_code == 200 else None  # type: ignore[no-any-return]

    assert (await as_agent(put) or {})["displayName"] == "x"
    assert set((await as_agent(tag) or {})["tags"]) == {"vip", "x"}
    assert (await as_agent(untag) or {})["tags"] == ["x"]
    assert (await as_agent(attributes) or {})["attributes"] == {}
    assert await as_agent(erase) is None  # erased: 404
    await as_agent(bulk)
    found = (await api.get(f"/contacts?accountId={account.id}", role=Role.agent)).json()["data"]
    assert [c["twitterUserId"] for c in found] == ["1"]


async def test_another_merchant_finds_nothing(api: Api, other_api: Api, account: XAccount) -> None:
    contact = await make_contact(api, account.id, username="private_person", tags=["vip"])
    for path in _reads(contact["id"])[1:]:
        hidden = await other_api.get(path)
        assert hidden.status_code == 404, (path, hidden.text)
        assert hidden.json()["code"] == "RESOURCE_NOT_FOUND"
    for method, path, kwargs in _changes(contact["id"], account.id):
        hidden = await other_api.request(method, path, **kwargs)
        assert hidden.status_code == 404, (method, path, hidden.text)
    listed = (await other_api.get(f"/contacts?accountId={account.id}&search=private")).json()
    assert listed["data"] == [] and listed["pagination"]["total"] == 0
    # Nothing changed for the owner.
    still = (await api.get(f"/contacts/{contact['id']}")).json()["data"]
    assert still["tags"] == ["vip"] and still["username"] == "private_person"


async def test_contacts_of_a_disconnected_account_stay_readable(
    api: Api, account: XAccount, sessions: SessionMaker
) -> None:
    contact = await make_contact(api, account.id, username="loyal")
    async with sessions() as session:
        row = await session.get(XAccount, account.id)
        assert row is not None
        row.status = AccountStatus.inactive
        row.disconnected_at = utcnow()
        await session.commit()
    assert _names(await api.get(f"/contacts?accountId={account.id}")) == {"loyal"}
    assert (await api.get(f"/contacts/{contact['id']}")).status_code == 200
    assert (await api.get(f"/contacts/{contact['id']}/conversations")).status_code == 200


async def test_unknown_or_malformed_ids(api: Api) -> None:
    missing = await api.get(f"/contacts/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["code"] == "RESOURCE_NOT_FOUND"
    malformed = await api.get("/contacts/not-a-uuid")
    assert malformed.status_code == 422
    assert malformed.json()["details"]["field"] == "contactId"


async def test_totals_count_only_this_merchants_matches(
    api: Api, other_api: Api, account: XAccount, sessions: SessionMaker, page_plan: str
) -> None:
    second = await make_account(sessions, api.merchant.id)
    foreign = await make_account(sessions, other_api.merchant.id)
    shared = {"tags": ["vip", "customer"], "displayName": "Minh Counted"}
    await import_jsonl(
        api, account.id, [{"twitterUserId": x_user_id(), **shared} for _ in range(3)]
    )
    await import_jsonl(api, second.id, [{"twitterUserId": x_user_id(), **shared} for _ in range(2)])
    await import_jsonl(
        other_api, foreign.id, [{"twitterUserId": x_user_id(), **shared} for _ in range(4)]
    )

    async def total(query: str) -> int:
        response = await api.get(f"/contacts?take=1&{query}")
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]) == 1
        return int(response.json()["pagination"]["total"])

    assert await total("tags=vip") == 5
    assert await total("tags=vip,customer") == 5
    assert await total("search=minh") == 5
    assert await total("search=counted&tags=vip") == 5
    assert await total(f"tags=vip&accountId={second.id}") == 2
    assert await total(f"search=minh&accountId={account.id}") == 3
    assert await total("") == 5
    # Past the end: an empty page still reports the total.
    beyond = (await api.get("/contacts?tags=vip&skip=40")).json()
    assert beyond["data"] == [] and beyond["pagination"]["total"] == 5
