"""The OpenAPI document is what the API answers: schemathesis over every operation (a short
budget here, longer in `make fuzz`), and the inputs it cannot send (NUL, lone surrogates) or
that it found answered with a 500 once, each sent on purpose."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from api.app import BASE_PATH
from api.pagination import MAX_SKIP
from sandbox.admin import SandboxAdmin
from services.core.auth import Role
from tests.api import conformance
from tests.conftest import Api, Merchant
from tests.webhooks.conftest import connect, inbound, post_signed, x_user


async def _seed(api: Api, x_admin: SandboxAdmin) -> None:
    """Something for the ids of every resource to point at: a connected account, a contact
    with an open conversation (an inbound DM), a few imported contacts."""
    shop = await connect(api, await x_user(x_admin, "shop", name="Shop"))
    customer = await x_user(x_admin, "customer", name="Customer")
    delivered = await post_signed(api.client, inbound(shop, customer, "hello"))
    assert delivered.status_code == 200, delivered.text
    lines = "\n".join(
        json.dumps({"twitterUserId": str(10**17 + n), "username": f"fan{n}", "tags": ["vip"]})
        for n in range(3)
    )
    imported = await api.post(
        f"/contacts/import?accountId={shop.account_id}",
        content=lines.encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert imported.status_code == 200, imported.text


async def test_schemathesis_finds_no_failure(
    live_api: str, api: Api, merchant: Merchant, x_admin: SandboxAdmin
) -> None:
    await _seed(api, x_admin)
    seconds = conformance.fuzz_seconds()
    long = seconds is not None
    # In a thread: the worker serving the API's workflows runs on this event loop.
    report = await asyncio.to_thread(
        conformance.run,
        live_api,
        merchant.token(Role.admin, ttl=3600),
        seconds or conformance.CONFORMANCE_SECONDS,
        long=long,
    )
    print(report.summary())
    assert report.cases > 0, report.details()
    assert not report.findings and not report.errors, report.details()


# What schemathesis does not send, or found once --------------------------------------------


def _field(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR", body
    return str(body["details"]["field"])


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/templates", {"name": "a\x00b", "content": "hi"}, "name"),
        ("/segments", {"name": "vip\x00", "conditions": []}, "name"),
        ("/templates", {"name": "n", "content": "hi", "variables": ["a\x00"]}, "variables[0]"),
        ("/ai/settings", {"systemPrompt": "\x00"}, "systemPrompt"),
    ],
)
async def test_nul_in_a_body_is_a_422_naming_the_field(
    api: Api, path: str, body: dict[str, Any], field: str
) -> None:
    method = api.put if path == "/ai/settings" else api.post
    assert _field(await method(path, json=body)) == field


async def test_lone_surrogates_in_a_body_are_a_422(api: Api) -> None:
    # JSON's escapes reach Python as lone surrogates, which no UTF-8 can hold.
    raw = b'{"name": "ok", "conditions": [], "x\\udc00": 1}'
    response = await api.post(
        "/segments", content=raw, headers={"Content-Type": "application/json"}
    )
    assert _field(response) == "x\\udc00"  # shown escaped
    contact = str(uuid.uuid4())
    raw = b'{"attributes": {"note": "\\ud800"}}'
    response = await api.put(
        f"/contacts/{contact}/attributes", content=raw, headers={"Content-Type": "application/json"}
    )
    assert _field(response) == "attributes.note"


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/templates", "search"),
        ("/segments", "search"),
        ("/contacts", "search"),
        ("/contacts", "tags"),
        ("/conversations", "assignedTo"),
        ("/analytics/contacts", "timezone"),
    ],
)
async def test_nul_in_a_query_parameter_is_a_422_naming_it(api: Api, path: str, param: str) -> None:
    assert _field(await api.get(path, params={param: "ab\x00"})) == param


@pytest.mark.parametrize(
    "path", ["/accounts", "/contacts", "/templates", "/segments", "/campaigns", "/conversations"]
)
async def test_skip_is_bounded_on_every_list(api: Api, path: str) -> None:
    assert _field(await api.get(path, params={"skip": str(2**64)})) == "skip"
    assert (await api.get(path, params={"skip": str(MAX_SKIP)})).status_code == 200


async def test_imports_refuse_nul_and_take_an_empty_file(api: Api, x_admin: SandboxAdmin) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    path = f"/contacts/import?accountId={shop.account_id}"
    for body, content_type in (
        (b"twitterUserId,displayName\n1,Jo\x00\n", "text/csv"),
        (b'{"twitterUserId": "1", "displayName": "Jo\x00"}', "application/x-ndjson"),
    ):
        refused = await api.post(path, content=body, headers={"Content-Type": content_type})
        assert _field(refused) == "body"
    # Escaped in a JSON line, the NUL and the surrogate are the record's: that row is rejected.
    escaped = b'{"twitterUserId": "1", "displayName": "\\u0000"}\n'
    escaped += b'{"twitterUserId": "2", "attributes": {"a": "\\ud800"}}'
    result = await api.post(path, content=escaped, headers={"Content-Type": "application/x-ndjson"})
    assert result.status_code == 200, result.text
    assert [row["row"] for row in result.json()["data"]["rejected"]] == [1, 2]
    for empty in (b"", b"\n"):
        answer = await api.post(path, content=empty, headers={"Content-Type": "text/csv"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["received"] == 0


async def test_unparsable_bodies_are_a_422_naming_the_body(api: Api) -> None:
    for raw in (b"\xff\xfe{", b"{", b"\x1a\x80"):
        response = await api.post(
            "/templates", content=raw, headers={"Content-Type": "application/json"}
        )
        assert _field(response) == "body"


async def test_options_and_405_name_every_method_of_the_path(api: Api) -> None:
    template = str(uuid.uuid4())
    for path, methods in (
        ("/templates", "GET, OPTIONS, POST"),
        (f"/templates/{template}", "DELETE, GET, OPTIONS, PUT"),
        ("/contacts/import", "OPTIONS, POST"),
    ):
        options = await api.request("OPTIONS", path)
        assert options.status_code == 204 and options.headers["allow"] == methods, path
        refused = await api.request("PATCH", path)
        assert refused.status_code == 405 and refused.headers["allow"] == methods, path
        assert refused.json()["code"] == "METHOD_NOT_ALLOWED"
    # The literal path is a resource of its own, not a malformed contact id.
    assert (await api.put("/contacts/import", json={})).status_code == 405


async def test_null_for_a_setting_that_cannot_be_null_is_a_422(api: Api) -> None:
    for body in ({"knowledgeBase": None}, {"enabled": None}, {"escalation": {"slaMinutes": None}}):
        assert _field(await api.put("/ai/settings", json=body)).startswith(next(iter(body)))


def test_the_document_declares_what_every_route_answers(app_document: dict[str, Any]) -> None:
    for path, item in app_document["paths"].items():
        for method, operation in item.items():
            answers = set(operation["responses"])
            assert "500" in answers, (method, path)
            if operation.get("security"):
                assert {"401", "429"} <= answers, (method, path)
            if "{" in path:
                assert {"404", "422"} <= answers, (method, path)
            if "requestBody" in operation:
                assert {"413", "422"} <= answers, (method, path)
    skip = next(
        p
        for p in app_document["paths"][f"{BASE_PATH}/templates"]["get"]["parameters"]
        if p["name"] == "skip"
    )
    assert skip["schema"]["maximum"] == MAX_SKIP
    links = app_document["paths"][f"{BASE_PATH}/templates"]["post"]["responses"]["200"]["links"]
    targets = {link["operationId"] for link in links.values()}
    assert len(targets) == 4  # get, put, delete, preview
    assert all(
        link["parameters"] == {"templateId": "$response.body#/data/id"} for link in links.values()
    )


@pytest.fixture
async def app_document(app_client: httpx.AsyncClient) -> dict[str, Any]:
    response = await app_client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document
