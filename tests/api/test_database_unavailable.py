"""When the database cannot serve a request — every pooled connection busy past the pool's
timeout, or the server unreachable — the API answers 503 in the envelope with `Retry-After`,
never a 500, and serves again as soon as the database does."""

from __future__ import annotations

from api.app import BASE_PATH
from mktx.settings import Settings
from tests.conftest import Merchant, serving


async def test_a_request_finding_every_connection_busy_is_answered_503_then_served(
    settings: Settings, worker: None
) -> None:
    own = settings.model_copy(update={"database_pool_size": 1, "database_pool_timeout": 0.5})
    merchant = Merchant(own)
    async with serving(own) as (app, client):
        engine = app.state.context.engine
        # The pool's one connection and its one overflow, held by someone else.
        async with engine.connect() as first, engine.connect() as second:
            assert first is not second
            busy = await client.get(BASE_PATH + "/contacts", headers=merchant.headers())
        served = await client.get(BASE_PATH + "/contacts", headers=merchant.headers())

    assert busy.status_code == 503, busy.text
    assert busy.headers["Retry-After"] == "2"
    assert busy.json() == {
        "success": False,
        "error": "every database connection is busy; retry shortly",
        "code": "SERVICE_UNAVAILABLE",
    }
    assert served.status_code == 200, served.text
    assert served.json()["data"] == []


async def test_an_unreachable_database_is_answered_503(settings: Settings, worker: None) -> None:
    # A port nothing listens on: every connection attempt is refused.
    own = settings.model_copy(
        update={"database_url": "postgresql+psycopg://postgres@127.0.0.1:9/mktx"}
    )
    merchant = Merchant(own)
    async with serving(own) as (_, client):
        read = await client.get(BASE_PATH + "/contacts", headers=merchant.headers())
        write = await client.post(
            BASE_PATH + "/templates",
            headers=merchant.headers(),
            json={"name": "Welcome", "content": "Hi"},
        )

    for answer in (read, write):
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "2"
        body = answer.json()
        assert body["code"] == "SERVICE_UNAVAILABLE"
        assert body["error"] == "the database is unavailable; retry shortly"
