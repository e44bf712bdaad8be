"""Deliveries are served by DeliveryFastPath in the app; the documented route serves them the
same way where that layer is not installed."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from api.app import BASE_PATH, build_context
from api.errors import install_error_handlers
from api.routes import webhooks
from mktx.settings import Settings
from models.db import SessionMaker
from sandbox.admin import SandboxUser
from tests.conftest import Api
from tests.webhooks.conftest import Shop, inbound, messages_of, post_signed

WEBHOOK = f"{BASE_PATH}/webhooks/twitter"


async def _answers(client: httpx.AsyncClient, payload: dict[str, Any]) -> list[Any]:
    """A delivery, its duplicate, a forged one and a signed non-JSON body: status and body."""
    answers = [
        await post_signed(client, payload),
        await post_signed(client, payload),
        await post_signed(client, payload, signature="sha256=Zm9yZ2Vk"),
        await post_signed(client, b"{not json"),
    ]
    return [(a.status_code, a.json()) for a in answers]


async def test_the_route_and_the_fast_path_answer_alike(
    api: Api, settings: Settings, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    through_app = await _answers(api.client, inbound(shop, customer, "through the app"))

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(webhooks.router, prefix=BASE_PATH)
    app.state.context = context = build_context(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x.test") as client:
                through_route = await _answers(client, inbound(shop, customer, "through the route"))
    finally:
        await context.engine.dispose()

    assert through_route == through_app
    assert [status for status, _ in through_app] == [200, 200, 401, 422]
    assert through_app[0][1] == {
        "success": True,
        "data": {"received": 1, "stored": 1, "duplicates": 0},
    }
    assert through_app[1][1]["data"]["duplicates"] == 1
    assert through_app[2][1]["code"] == "UNAUTHORIZED"
    assert through_app[3][1]["code"] == "VALIDATION_ERROR"
    assert through_app[3][1]["details"] == {"field": "body", "reason": "malformed JSON"}
    contents = [m.content for m in await messages_of(sessions, shop.account_id)]
    assert contents == ["through the app", "through the route"]


async def test_other_methods_and_paths_pass_through(api: Api) -> None:
    crc = await api.client.get(f"{WEBHOOK}?crc_token=abc")
    assert crc.status_code == 200 and crc.json()["response_token"].startswith("sha256=")
    wrong = await api.client.put(WEBHOOK, content=b"{}")
    assert wrong.status_code == 405 and wrong.json()["code"] == "METHOD_NOT_ALLOWED"
    answered = await api.client.post(WEBHOOK, content=b"{}")
    assert answered.headers["x-request-id"]  # inside the request context like any route


async def test_an_oversized_body_is_refused_before_anything_else(api: Api) -> None:
    huge = b'{"for_user_id": "1", "padding": "' + b"x" * (1024 * 1024) + b'"}'
    refused = await post_signed(api.client, huge)
    assert refused.status_code == 413
    assert refused.json()["code"] == "VALIDATION_ERROR"
    assert refused.json()["details"]["field"] == "body"
