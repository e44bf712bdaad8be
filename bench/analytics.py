"""Analytics at 1,000,000 contacts: the reports through the API next to hand-written SQL.

Its own database (`mktx_bench_analytics` on `MKTX_BENCH_DATABASE_URL`, else on the embedded
PostgreSQL under .mkt-x/bench-pg), migrated, then loaded by SQL bulk loading — `INSERT ...
SELECT generate_series` in chunks of 200,000, the analytics triggers off — with one merchant's
180 days: 1,000,000 contacts on two X accounts, 1,000,000 conversations, 5,000,000 messages, 50
campaigns (10,000 recipients each), 20 flows (10,000 runs each), the assistant's model calls,
sessions and escalations; and a second merchant a tenth that size. `mktx_analytics_rebuild`
(what `mkt-x analytics-rebuild` runs) then computes the rollups, and VACUUM ANALYZE
(bench/_analytics_seed.py says what the data looks like).

In the merchant's time zone (Asia/Ho_Chi_Minh, +07:00: local days are not UTC days), request
and hand-written query alternate so both see the same cache:

- `GET /analytics/overview` over 30 and over 180 days;
- `GET /analytics/conversations` by day over 90 days;
- `GET /analytics/contacts` by week over 180 days;

each next to the single statement computing the same figures from the raw tables
(bench/_analytics_hand.py), whose answer must equal the API's. Targets: overview p95 < 250 ms,
the series p95 < 400 ms, and each at most 1.2x its hand-written query (the rollups make them
faster than it). `main()` returns 1 when a target is missed.

    .venv/bin/python -m bench.analytics
    MKTX_BENCH_ANALYTICS_CONTACTS=100000   a smaller run (messages, campaigns' recipients and
                                           flow runs scale with it)
    MKTX_BENCH_ANALYTICS_REUSE=1           keep the data an earlier run loaded
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import BASE_PATH, create_app
from bench import _analytics_hand as hand
from bench import _analytics_seed as seed
from bench._infra import server, server_url
from migrations.runner import upgrade_database
from mktx.settings import Environment, Settings
from models.account import XAccount
from models.db import make_engine, make_sessionmaker, utcnow
from services.core.auth import Role, issue_token

DATABASE = "mktx_bench_analytics"
ZONE = "Asia/Ho_Chi_Minh"
OVERVIEW_P95_MS = 250.0
SERIES_P95_MS = 400.0
TARGET_RATIO = 1.2
API_SAMPLES = 42
SQL_SAMPLES = 3  # the hand-written statements take seconds each at this size
MERCHANT = "bench-analytics"
OTHER = "bench-analytics-other"


@dataclass(frozen=True)
class Case:
    label: str
    api: list[float]
    sql: list[float]
    target_ms: float


def main() -> int:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    total = int(os.environ.get("MKTX_BENCH_ANALYTICS_CONTACTS", "1000000"))
    reuse = os.environ.get("MKTX_BENCH_ANALYTICS_REUSE") == "1"
    url, fresh = _database(server_url(), reuse=reuse)
    print(f"database: {make_url(url).render_as_string(hide_password=True)}", flush=True)
    upgrade_database(url)
    return asyncio.run(_run(url, total, seed_it=fresh))


def _database(pg: str, *, reuse: bool) -> tuple[str, bool]:
    """The bench's database: recreated, or kept as the last run loaded it (reuse)."""
    base = server(pg)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": DATABASE}
        ).first()
        fresh = not (reuse and exists)
        if fresh:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()
    return base.set(database=DATABASE).render_as_string(hide_password=False), fresh


async def _run(url: str, total: int, *, seed_it: bool) -> int:
    engine = make_engine(url, pool_size=4)
    now = utcnow()
    if seed_it:
        await _load(engine, total, now)
    else:
        print("reusing the data an earlier run loaded", flush=True)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        env=Environment.development,
        database_url=url,
        database_pool_size=4,
        rate_limit_per_minute=10_000_000,
        log_level="WARNING",
    )
    token = issue_token(settings, merchant_id=MERCHANT, user_id="bench", roles=[Role.admin])
    app = create_app(settings)
    cases: list[Case] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://bench",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        ) as client:
            today = datetime.now(ZoneInfo(ZONE)).date()
            for days in (30, 180):
                cases.append(await _overview(client, engine, today, days))
            cases.append(await _conversations(client, engine, today, 90))
            cases.append(await _contacts(client, engine, today, 180))
    await engine.dispose()
    return _report(cases, total)


async def _load(engine: AsyncEngine, total: int, now: datetime) -> None:
    sessions = make_sessionmaker(engine)
    accounts = [
        _account(MERCHANT, 1),
        _account(MERCHANT, 2),
        _account(OTHER, 3),
        _account(OTHER, 4),
    ]
    async with sessions() as session, session.begin():
        session.add_all(accounts)
    origin = seed.origin_of(now)
    loaded = await seed.seed(
        engine, MERCHANT, (str(accounts[0].id), str(accounts[1].id)), total, origin
    )
    loaded += await seed.seed(
        engine, OTHER, (str(accounts[2].id), str(accounts[3].id)), max(total // 10, 10), origin
    )
    print(f"load (INSERT ... SELECT generate_series, triggers off): {loaded:.0f} s", flush=True)
    rebuilt = await seed.rebuild(engine, [MERCHANT, OTHER])
    print(f"rebuild (mktx_analytics_rebuild, both merchants): {rebuilt:.0f} s", flush=True)
    started = time.perf_counter()
    await seed.vacuum(engine)
    print(f"VACUUM ANALYZE: {time.perf_counter() - started:.0f} s", flush=True)


def _account(merchant_id: str, n: int) -> XAccount:
    return XAccount(
        merchant_id=merchant_id,
        twitter_user_id=f"{n}{uuid.uuid4().int % 10**12}",
        username=f"bench_shop_{n}",
        display_name=f"Bench shop {n}",
        connected_at=utcnow(),
    )


def _bounds(today: date, days: int) -> tuple[dict[str, str], dict[str, Any]]:
    """The report's parameters (the last `days` days, today included) and the hand query's."""
    first = today - timedelta(days=days - 1)
    zone = ZoneInfo(ZONE)
    start = datetime.combine(first, datetime.min.time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    params = {"startDate": first.isoformat(), "endDate": today.isoformat(), "timezone": ZONE}
    return params, {"m": MERCHANT, "s": start, "e": end.astimezone(UTC), "tz": ZONE}


async def _get(client: httpx.AsyncClient, report: str, params: dict[str, str]) -> dict[str, Any]:
    response = await client.get(f"{BASE_PATH}/analytics/{report}", params=params)
    response.raise_for_status()
    data: dict[str, Any] = response.json()["data"]
    return data


async def _overview(client: httpx.AsyncClient, engine: AsyncEngine, today: date, days: int) -> Case:
    params, bound = _bounds(today, days)
    found: dict[str, Any] = {}

    async def api() -> None:
        found["api"] = await _get(client, "overview", params)

    async def sql(conn: Any) -> None:
        found["sql"] = (await conn.execute(sa.text(hand.OVERVIEW), bound)).one()._mapping

    api_ms, sql_ms = await _alternate(engine, api, sql)
    got, want = found["api"], found["sql"]
    c = got["conversations"]
    pairs = {
        "contacts": (
            got["contacts"],
            {
                "total": want["contacts_total"],
                "new": want["contacts_new"],
                "active": want["contacts_active"],
            },
        ),
        "conversations": (
            (c["total"], c["closed"], c["answered"]),
            (want["conversations_total"], want["conversations_closed"], want["answered"]),
        ),
        "response": (
            (
                c["averageResponseSeconds"],
                c["humanResponseSeconds"],
                c["botResponseSeconds"],
                c["medianResponseSeconds"],
                c["p90ResponseSeconds"],
            ),
            tuple(_float(want[k]) for k in ("average", "human", "bot", "median", "p90")),
        ),
        "campaigns": (
            got["campaigns"],
            {
                "active": want["campaigns_active"],
                "completed": want["campaigns_completed"],
                "totalMessagesSent": want["campaign_sent"],
            },
        ),
        "automation": (
            got["automation"],
            {"activeFlows": want["active_flows"], "totalExecutions": want["executions"]},
        ),
        "ai": (
            (
                got["ai"]["conversations"],
                got["ai"]["botReplies"],
                got["ai"]["escalations"],
                got["ai"]["slaBreaches"],
                got["ai"]["tokens"],
            ),
            (
                want["ai_sessions"],
                want["bot_replies"],
                want["escalations"],
                want["sla_breaches"],
                want["tokens"],
            ),
        ),
    }
    _agree(f"overview {days} d", pairs)
    return Case(f"overview, {days} days", api_ms, sql_ms, OVERVIEW_P95_MS)


async def _conversations(
    client: httpx.AsyncClient, engine: AsyncEngine, today: date, days: int
) -> Case:
    params, bound = _bounds(today, days)
    bound |= {"first_day": today - timedelta(days=days - 1), "last_day": today}
    found: dict[str, Any] = {}

    async def api() -> None:
        found["api"] = await _get(client, "conversations", {**params, "groupBy": "day"})

    async def sql(conn: Any) -> None:
        found["sql"] = (await conn.execute(sa.text(hand.CONVERSATIONS), bound)).scalar_one()

    api_ms, sql_ms = await _alternate(engine, api, sql)
    got, want = found["api"], found["sql"]
    series = [
        (
            p["period"],
            p["started"],
            p["closed"],
            p["inbound"],
            p["outbound"],
            p["averageResponseSeconds"],
        )
        for p in got["series"]
    ]
    expected = [
        (p["period"], p["started"], p["closed"], p["inbound"], p["outbound"], _float(p["average"]))
        for p in want["series"]
    ]
    assignees = {a["userId"]: a["conversations"] for a in got["byAssignee"]}
    _agree(
        f"conversations {days} d",
        {
            "series": (series, expected),
            "percentiles": (
                (got["totals"]["medianResponseSeconds"], got["totals"]["p90ResponseSeconds"]),
                (_float(want["median"]), _float(want["p90"])),
            ),
            "byAssignee": (
                assignees,
                {a["assignee"]: a["conversations"] for a in want["byAssignee"] or []},
            ),
        },
    )
    return Case(f"conversations by day, {days} days", api_ms, sql_ms, SERIES_P95_MS)


async def _contacts(client: httpx.AsyncClient, engine: AsyncEngine, today: date, days: int) -> Case:
    params, bound = _bounds(today, days)
    first = today - timedelta(days=days - 1)
    bound |= {"first_day": first - timedelta(days=first.weekday()), "last_day": today}
    found: dict[str, Any] = {}

    async def api() -> None:
        found["api"] = await _get(client, "contacts", {**params, "groupBy": "week"})

    async def sql(conn: Any) -> None:
        found["sql"] = (await conn.execute(sa.text(hand.CONTACTS), bound)).scalar_one()

    api_ms, sql_ms = await _alternate(engine, api, sql)
    got, want = found["api"], found["sql"]
    _agree(
        f"contacts {days} d",
        {
            "series": (
                [(p["period"], p["new"], p["active"], p["total"]) for p in got["series"]],
                [
                    (p["period"], p["new"], p["active"], int(p["total"] or 0))
                    for p in want["series"]
                ],
            ),
            "active": (got["totals"]["active"], want["active"]),
            "topTags": (got["topTags"], want["topTags"]),
        },
    )
    return Case(f"contacts by week, {days} days", api_ms, sql_ms, SERIES_P95_MS)


def _float(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def _agree(label: str, pairs: dict[str, tuple[Any, Any]]) -> None:
    for name, (api, sql) in pairs.items():
        if api != sql:
            raise RuntimeError(
                f"{label}: the API and the hand-written SQL disagree on {name}:\n  API {api}\n  SQL {sql}"
            )


async def _alternate(
    engine: AsyncEngine, api: Callable[[], Awaitable[None]], sql: Callable[[Any], Awaitable[None]]
) -> tuple[list[float], list[float]]:
    """A block of requests, one query, another block...: both meet the same cache; one
    warm-up of each first."""
    api_ms: list[float] = []
    sql_ms: list[float] = []
    per_query = API_SAMPLES // SQL_SAMPLES
    async with engine.connect() as conn:
        await api()
        await sql(conn)
        for _ in range(SQL_SAMPLES):
            for _ in range(per_query):
                started = time.perf_counter()
                await api()
                api_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await sql(conn)
            sql_ms.append((time.perf_counter() - started) * 1000)
            await conn.rollback()
    return api_ms, sql_ms


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _report(cases: list[Case], total: int) -> int:
    print(
        f"\n{total:,} contacts, {5 * total:,} messages; {API_SAMPLES} requests and {SQL_SAMPLES} hand-written queries per row (times in ms, {ZONE})"
    )
    print(
        f"{'case':<34} {'API p50':>8} {'API p95':>8} {'SQL p50':>9} {'SQL p95':>9} {'p95 x':>7}  target"
    )
    missed = []
    for case in cases:
        api50, api95 = statistics.median(case.api), _percentile(case.api, 0.95)
        sql50, sql95 = statistics.median(case.sql), _percentile(case.sql, 0.95)
        ratio = api95 / sql95
        met = api95 < case.target_ms and ratio <= TARGET_RATIO
        if not met:
            missed.append(case.label)
        print(
            f"{case.label:<34} {api50:>8.1f} {api95:>8.1f} {sql50:>9.1f} {sql95:>9.1f} {ratio:>6.3f}x  < {case.target_ms:.0f} ms, <= {TARGET_RATIO}x {'ok' if met else 'MISS'}"
        )
    print("targets met" if not missed else f"missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
