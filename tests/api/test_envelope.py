"""Every answer is the spec's envelope: framework errors, validation, crashes."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from api.app import create_app
from mktx.settings import Settings
from tests.conftest import Api


async def test_unknown_route_is_404_envelope(api: Api) -> None:
    response = await api.get("/no-such-thing")
    assert response.status_code == 404
    body = response.json()
    assert body["success"] is False
    assert body["code"] == "RESOURCE_NOT_FOUND"
    assert "/api/v1/mkt-x/no-such-thing" in body["error"]
    assert response.headers["X-Request-ID"]


async def test_wrong_method_is_405_envelope(api: Api) -> None:
    response = await api.request("PATCH", "/accounts")
    assert response.status_code == 405
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"
    assert "allow" in response.headers


async def test_malformed_json_is_422_naming_the_body(api: Api) -> None:
    response = await api.post(
        "/accounts", content=b'{"oauthToken": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == "body"
    assert "malformed JSON" in body["details"]["reason"]


async def test_missing_field_is_named_in_camel_case(api: Api) -> None:
    response = await api.post("/accounts", json={"oauthToken": "abc"})
    assert response.status_code == 422
    body = response.json()
    assert body["details"]["field"] == "oauthTokenSecret"
    assert body["error"].startswith("oauthTokenSecret")


async def test_unknown_field_is_refused(api: Api) -> None:
    response = await api.post(
        "/accounts", json={"oauthToken": "a", "oauthTokenSecret": "b", "oauth_tokne": "c"}
    )
    assert response.status_code == 422
    assert response.json()["details"]["field"] == "oauth_tokne"


@pytest.mark.parametrize(
    ("query", "field"),
    [("take=0", "take"), ("take=101", "take"), ("skip=-1", "skip"), ("take=abc", "take")],
)
async def test_pagination_out_of_range_is_422(api: Api, query: str, field: str) -> None:
    response = await api.get(f"/accounts?{query}")
    assert response.status_code == 422
    assert response.json()["details"]["field"] == field


async def test_request_id_is_echoed_when_safe(api: Api) -> None:
    response = await api.get("/accounts", headers={"X-Request-ID": "req-12345678"})
    assert response.headers["X-Request-ID"] == "req-12345678"
    response = await api.get("/accounts", headers={"X-Request-ID": "bad id\twith tabs"})
    assert response.headers["X-Request-ID"] != "bad id\twith tabs"


async def test_unexpected_error_is_500_without_internals(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("SELECT oauth_token_encrypted FROM x_accounts -- leaked?")

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/boom")

    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "INTERNAL_ERROR"
    assert body["success"] is False
    request_id = response.headers["X-Request-ID"]
    assert body["details"]["requestId"] == request_id
    assert "SELECT" not in response.text and "Traceback" not in response.text
    logged = [r for r in caplog.records if r.getMessage() == "request.unhandled_error"]
    assert logged and logged[0].exc_info is not None


async def test_docs_and_openapi_are_served(api: Api) -> None:
    docs = await api.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = (await api.client.get("/openapi.json")).json()
    assert "/api/v1/mkt-x/accounts" in schema["paths"]


async def test_postman_collection_lists_every_route(api: Api) -> None:
    response = await api.client.get("/api/v1/mkt-x/postman-collection.json")
    assert response.status_code == 200
    collection = response.json()
    assert collection["info"]["schema"].endswith("/v2.1.0/collection.json")
    variables = {v["key"]: v["value"] for v in collection["variable"]}
    # baseUrl is the origin and the paths carry the base path: never both (issue 12).
    assert variables["baseUrl"] == "http://mktx.test"
    items = [item for folder in collection["item"] for item in folder["item"]]
    requests = {
        (item["request"]["method"], "/" + "/".join(item["request"]["url"]["path"]))
        for item in items
        if isinstance(item["request"]["url"], dict)
    }
    schema = (await api.client.get("/openapi.json")).json()
    for path, operations in schema["paths"].items():
        postman_path = re.sub(r"\{(\w+)\}", r":\1", path)
        for method in operations:
            assert (method.upper(), postman_path) in requests, f"{method} {path}"
    assert len({item["name"] for item in items}) == len(items), "request names are unique"
    for item in items:
        url = item["request"]["url"]
        raw = url if isinstance(url, str) else url["raw"]
        assert "/api/v1/mkt-x/api/v1/mkt-x" not in raw and "mkt-x/api" not in raw
        if isinstance(url, dict):  # every path variable comes from a collection variable
            for variable in url.get("variable", []):
                assert re.fullmatch(r"\{\{\w+\}\}", variable["value"]), (item["name"], variable)
                assert variable["value"].strip("{}") in variables, variable
        tests = [e for e in item["event"] if e["listen"] == "test"]
        assert tests and "pm.response.code" in "\n".join(tests[0]["script"]["exec"])
    connect = next(item["request"] for item in items if item["name"].startswith("Connect"))
    assert json.loads(connect["body"]["raw"]) == {
        "oauthToken": "{{xOauthToken}}",
        "oauthTokenSecret": "{{xOauthTokenSecret}}",
    }
    assert collection["item"][-1]["name"] == "cleanup"
    assert [i["request"]["method"] for i in collection["item"][-1]["item"]] == ["DELETE"] * 5


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.client.get("/healthz")).json()["data"] == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["data"] == {"database": "ok", "temporal": "ok"}


async def test_readiness_is_503_when_temporal_is_unreachable(settings: Settings) -> None:
    broken = settings.model_copy(update={"temporal_address": "127.0.0.1:9"})
    app = create_app(broken)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "SERVICE_UNAVAILABLE"
    assert body["details"]["checks"]["database"] == "ok"
    assert body["details"]["checks"]["temporal"].startswith("unavailable")
