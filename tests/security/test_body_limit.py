"""Every route refuses a body over 1 MB with 413 in the spec's error envelope, before anything
reads it or asks who is calling (api/body_limit.py): the routes come from the app's route table,
so a new one is covered the day it is added. A body streamed without a Content-Length is cut
off as it passes the limit, wherever it is read (a route, the webhook's fast path)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import BASE_PATH
from api.body_limit import MAX_JSON_BODY_BYTES
from mktx.settings import Environment, Settings
from tests.conftest import Api
from tests.security.routes import Route, the_apps_routes

ROUTES = the_apps_routes(
    Settings(
        _env_file=None,  # type: ignore[call-arg]
        env=Environment.test,
        database_url="postgresql://unused@127.0.0.1:9/unused",
    )
)
# Paths allowed larger bodies, and why (their own limit is tested with them).
LARGER = {
    f"{BASE_PATH}/contacts/import": "CSV / JSON-lines files up to 50 MB (tests/contacts/test_import.py)",
}
OVER = b'{"name": "' + b"a" * MAX_JSON_BODY_BYTES + b'"}'
REASON = f"must be at most {MAX_JSON_BODY_BYTES} bytes"


def _values(route: Route) -> dict[str, str]:
    fill = {"n": "0", "tagName": "vip", "code": "abcdefgh"}
    return {name: fill.get(name, str(uuid.uuid4())) for name in route.params}


def _is_refused(response: httpx.Response) -> None:
    assert response.status_code == 413, (response.status_code, response.text[:300])
    assert response.json() == {
        "success": False,
        "error": f"body: {REASON}",
        "code": "VALIDATION_ERROR",
        "details": {"field": "body", "reason": REASON},
    }


@pytest.mark.parametrize("route", ROUTES, ids=[r.key for r in ROUTES])
async def test_every_route_refuses_a_body_over_1_mb(api: Api, route: Route) -> None:
    response = await api.client.request(
        route.method,
        route.url(_values(route)),
        content=OVER,
        headers={**api.merchant.headers(), "content-type": "application/json"},
    )
    if route.path in LARGER:
        assert response.status_code != 413, response.text[:300]
    else:
        _is_refused(response)


async def test_the_limit_is_weighed_before_the_caller_and_the_path(api: Api) -> None:
    anonymous = await api.client.post(f"{BASE_PATH}/templates", content=OVER)
    _is_refused(anonymous)
    nowhere = await api.client.post(f"{BASE_PATH}/no/such/route", content=OVER)
    _is_refused(nowhere)


async def _chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    yield b'{"name": "'
    sent = 0
    while sent < total:
        yield b"a" * size
        sent += size
    yield b'"}'


@pytest.mark.parametrize(
    "method, path",
    [("POST", "/templates"), ("PUT", "/accounts/{id}"), ("POST", "/webhooks/twitter")],
)
async def test_a_streamed_body_is_cut_off_at_the_limit(api: Api, method: str, path: str) -> None:
    url = BASE_PATH + path.replace("{id}", str(uuid.uuid4()))
    response = await api.client.request(
        method,
        url,
        content=_chunks(MAX_JSON_BODY_BYTES + 1),
        headers={**api.merchant.headers(), "content-type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    _is_refused(response)


async def test_a_body_of_exactly_1_mb_is_read(api: Api) -> None:
    name = "a" * (MAX_JSON_BODY_BYTES - len(b'{"name": "", "content": "x"}'))
    body = ('{"name": "' + name + '", "content": "x"}').encode()
    assert len(body) == MAX_JSON_BODY_BYTES
    response = await api.post(
        "/templates", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text[:300]  # read, then found too long a name
    assert response.json()["details"]["field"] == "name"
