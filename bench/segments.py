"""Segment count and preview at 1,000,000 contacts, through the API next to hand-written SQL.

Its own database (`mktx_bench_segments` on `MKTX_BENCH_DATABASE_URL`, else on an embedded
PostgreSQL under .mkt-x/bench-pg), migrated, seeded with `INSERT ... SELECT generate_series`
(1,000,000 contacts for the measured merchant on two X accounts, 100,000 for another merchant),
VACUUM ANALYZEd. A segment with three conditions (a tag, a numeric attribute, a date) is
created through the API; then, alternating request and query so both see the same cache:

- `GET /segments/{id}` (its `contactCount`) next to the same COUNT written by hand;
- `POST /segments/{id}/preview?limit=10` next to the same sample-with-total query by hand.

The API runs in-process (httpx ASGITransport: routing, auth, rate limiter, envelope, JSON) on
its own engine; the direct SQL runs on another engine of the same pool size. Targets: API
p95 < 300 ms and API p95 <= 1.5x the direct SQL p95. A broad segment (~25% of contacts) is
shown too, for information.

    .venv/bin/python -m bench                                  # every benchmark
    .venv/bin/python -c 'import bench.segments as b; b.main()'  # this one
    MKTX_BENCH_SEGMENT_CONTACTS=200000 ...                     # a smaller run
    MKTX_BENCH_SEGMENT_REUSE=1 ...                             # keep the contacts an earlier run seeded
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import BASE_PATH, create_app
from bench._infra import server, server_url
from migrations.runner import upgrade_database
from mktx.settings import Environment, Settings
from models.account import XAccount
from models.db import make_engine, make_sessionmaker, utcnow
from services.core.auth import Role, issue_token

REPO = Path(__file__).resolve().parent.parent
DATABASE = "mktx_bench_segments"
TARGET_P95_MS = 300.0
TARGET_RATIO = 1.5
SAMPLES = 100
WARMUP = 10
CHUNK = 250_000

# Tags by the share of contacts holding them (independent draws from a hash of the row number).
SEED_SQL = """
INSERT INTO contacts (
    id, merchant_id, created_at, updated_at, account_id, twitter_user_id, username,
    display_name, tags, attributes, source, opted_out, conversation_count,
    first_interaction_at, last_interaction_at
)
SELECT
    gen_random_uuid(), :merchant_id, now(), now(),
    CASE WHEN g % 3 = 0 THEN CAST(:second_account AS uuid) ELSE CAST(:first_account AS uuid) END,
    (100000000000 + g)::text,
    'customer_' || g,
    'Customer ' || g,
    array_remove(ARRAY[
        CASE WHEN h1 % 100 < 5 THEN 'vip' END,
        CASE WHEN (h1 / 100) % 100 < 60 THEN 'customer' END,
        CASE WHEN (h1 / 10000) % 100 < 25 THEN 'newsletter' END,
        CASE WHEN (h1 / 1000000) % 100 < 20 THEN 'hanoi' END
    ], NULL)::varchar[],
    jsonb_build_object(
        -- 1% hold a string where the number usually is: comparisons must skip them quietly
        'purchaseCount', CASE WHEN h2 % 100 = 0 THEN to_jsonb('many'::text)
                              ELSE to_jsonb(h2 % 21) END,
        'tier', (ARRAY['bronze', 'silver', 'gold'])[1 + (h2 / 100) % 3],
        'city', (ARRAY['Hanoi', 'HCMC', 'Da Nang', 'Hue'])[1 + (h2 / 1000) % 4]
    ),
    (ARRAY['inbound_message', 'new_follower', 'import', 'manual'])[1 + h3 % 4],
    h3 % 50 = 0,
    h3 % 7,
    CASE WHEN h3 % 10 = 0 THEN NULL ELSE now() - interval '400 days' END,
    CASE WHEN h3 % 10 = 0 THEN NULL ELSE now() - (h3 % 31536000) * interval '1 second' END
FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint)) AS g,
LATERAL (
    SELECT hashint8(g)::bigint + 2147483648 AS h1,
           hashint8(g + 7919)::bigint + 2147483648 AS h2,
           hashint8(g + 104729)::bigint + 2147483648 AS h3
) AS r
"""


@dataclass(frozen=True)
class Shape:
    """One segment: its API conditions, and the parameters of the hand-written twin."""

    tag: str
    operator: str  # greaterThan / greaterThanOrEqual on attributes.purchaseCount
    count: int
    days: int  # lastInteractionAt after this many days ago (a fixed instant for the run)

    def conditions(self, now: datetime) -> list[dict[str, Any]]:
        since = (now - timedelta(days=self.days)).isoformat()
        return [
            {"field": "tags", "operator": "contains", "value": self.tag},
            {"field": "attributes.purchaseCount", "operator": self.operator, "value": self.count},
            {"field": "lastInteractionAt", "operator": "after", "value": since},
        ]

    def hand_params(self, merchant_id: str, now: datetime) -> dict[str, Any]:
        return {
            "merchant_id": merchant_id,
            "tag": self.tag,
            "count": self.count,
            "since": now - timedelta(days=self.days),
        }

    @property
    def sql_operator(self) -> str:
        return ">" if self.operator == "greaterThan" else ">="


# The three-condition segment of the target, and a broad one (~20% of contacts) for information.
SHAPES = {
    "narrow": Shape(tag="vip", operator="greaterThan", count=5, days=90),
    "broad": Shape(tag="customer", operator="greaterThanOrEqual", count=3, days=180),
}

# The same filters as a person would write them (the numeric guard included: 1% are strings).
HAND_WHERE = """
    merchant_id = :merchant_id
    AND tags @> ARRAY[:tag]::varchar[]
    AND CASE WHEN jsonb_typeof(attributes -> 'purchaseCount') = 'number'
             THEN (attributes ->> 'purchaseCount')::numeric END {op} :count
    AND last_interaction_at > :since
"""
HAND_COUNT = "SELECT count(*) FROM contacts WHERE " + HAND_WHERE
# The preview: the ten most recently active matches, each row carrying the total (the matches
# found once, counted, their top ten joined back for the columns shown).
HAND_PREVIEW = (
    "WITH m AS MATERIALIZED (SELECT id, last_interaction_at FROM contacts WHERE "
    + HAND_WHERE
    + ") SELECT c.id, c.username, c.display_name, c.tags, c.attributes, "
    "(SELECT count(*) FROM m) AS total "
    "FROM (SELECT id, last_interaction_at FROM m "
    "ORDER BY last_interaction_at DESC NULLS LAST, id LIMIT 10) top "
    "JOIN contacts c ON c.id = top.id ORDER BY top.last_interaction_at DESC NULLS LAST, top.id"
)


@dataclass(frozen=True)
class Case:
    label: str
    api: list[float]
    sql: list[float]
    matches: int
    targeted: bool


def main() -> None:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    total = int(os.environ.get("MKTX_BENCH_SEGMENT_CONTACTS", "1000000"))
    reuse = os.environ.get("MKTX_BENCH_SEGMENT_REUSE") == "1"
    url = _fresh_database(server_url(), reuse=reuse)
    print(f"database: {make_url(url).render_as_string(hide_password=True)}", flush=True)
    upgrade_database(url)
    asyncio.run(_run(url, total, reuse=reuse))


def _fresh_database(server_url: str, *, reuse: bool) -> str:
    """The bench's own database, recreated (or kept as the last run seeded it, with reuse)."""
    base = server(server_url)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": DATABASE}
        ).first()
        if not (reuse and exists):
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()
    return base.set(database=DATABASE).render_as_string(hide_password=False)


async def _run(url: str, total: int, *, reuse: bool) -> None:
    engine = make_engine(url, pool_size=4)
    merchant_id = await _seeded_merchant(engine, total) if reuse else None
    if merchant_id is None:
        merchant_id = f"bench-{uuid.uuid4()}"
        await _seed(engine, merchant_id, total)
    else:
        print(f"reusing the {total:,} contacts seeded by an earlier run", flush=True)

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        env=Environment.development,
        database_url=url,
        database_pool_size=4,
        rate_limit_per_minute=10_000_000,
        log_level="WARNING",
    )
    token = issue_token(settings, merchant_id=merchant_id, user_id="bench", roles=[Role.admin])
    cases: list[Case] = []
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://bench",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        ) as client:
            now = datetime.now(UTC)
            for name, shape in SHAPES.items():
                created = await client.post(
                    f"{BASE_PATH}/segments",
                    json={"name": name, "conditions": shape.conditions(now)},
                )
                created.raise_for_status()
                segment_id = created.json()["data"]["id"]
                cases += await _measure(
                    client,
                    engine,
                    name,
                    segment_id,
                    shape.hand_params(merchant_id, now),
                    shape.sql_operator,
                )
            await _explain(engine, merchant_id, SHAPES["narrow"].conditions(now))
    await engine.dispose()
    _report(cases, total)


async def _seeded_merchant(engine: AsyncEngine, total: int) -> str | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text(
                    "SELECT merchant_id FROM contacts GROUP BY merchant_id "
                    "HAVING count(*) = :total LIMIT 1"
                ),
                {"total": total},
            )
        ).first()
    return None if row is None else str(row[0])


async def _seed(engine: AsyncEngine, merchant_id: str, total: int) -> None:
    started = time.perf_counter()
    sessions = make_sessionmaker(engine)
    other = f"bench-other-{uuid.uuid4()}"
    async with sessions() as session, session.begin():
        accounts = [_account(merchant_id, n) for n in (1, 2)] + [_account(other, 3)]
        session.add_all(accounts)
    plan = [(merchant_id, accounts[0].id, accounts[1].id, total)]
    plan.append((other, accounts[2].id, accounts[2].id, max(total // 10, 1)))
    offset = 0
    for owner, first, second, count in plan:
        for start in range(offset + 1, offset + count + 1, CHUNK):
            stop = min(start + CHUNK - 1, offset + count)
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(SEED_SQL),
                    {
                        "merchant_id": owner,
                        "first_account": first,
                        "second_account": second,
                        "start": start,
                        "stop": stop,
                    },
                )
            print(f"  seeded {stop:>9,} contacts", flush=True)
        offset += count
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("VACUUM (ANALYZE) contacts"))
    print(
        f"seed: {offset:,} contacts (INSERT ... SELECT generate_series) + VACUUM ANALYZE in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )


def _account(merchant_id: str, n: int) -> XAccount:
    return XAccount(
        merchant_id=merchant_id,
        twitter_user_id=f"{n}{uuid.uuid4().int % 10**12}",
        username=f"bench_shop_{n}",
        display_name=f"Bench shop {n}",
        connected_at=utcnow(),
    )


async def _measure(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    name: str,
    segment_id: str,
    bound: dict[str, Any],
    op: str,
) -> list[Case]:
    count_sql = sa.text(HAND_COUNT.format(op=op))
    preview_sql = sa.text(HAND_PREVIEW.format(op=op))
    segment_path = f"{BASE_PATH}/segments/{segment_id}"
    found: dict[str, int] = {}

    async def api_count() -> None:
        response = await client.get(segment_path)
        response.raise_for_status()
        found["api"] = response.json()["data"]["contactCount"]

    async def api_preview() -> None:
        response = await client.post(f"{segment_path}/preview", params={"limit": 10})
        response.raise_for_status()
        data = response.json()["data"]
        assert len(data["preview"]) == min(10, data["totalMatches"])
        found["preview"] = data["totalMatches"]

    async with engine.connect() as conn:
        # Planned with its values each time, like the API's statements (see
        # services.segments.plan_with_values): a careful hand does the same.
        await conn.execute(sa.text("SET plan_cache_mode = force_custom_plan"))

        async def sql_count() -> None:
            found["sql"] = (await conn.execute(count_sql, bound)).scalar_one()

        async def sql_preview() -> None:
            rows = (await conn.execute(preview_sql, bound)).all()
            found["sql_preview"] = rows[0].total if rows else 0

        count_api, count_sql_ms = await _alternate(api_count, sql_count)
        preview_api, preview_sql_ms = await _alternate(api_preview, sql_preview)

    if not found["api"] == found["sql"] == found["preview"] == found["sql_preview"]:
        raise RuntimeError(f"{name}: the API and the hand-written SQL disagree: {found}")
    targeted = name == "narrow"
    return [
        Case(
            f"{name}: count (GET /segments/{{id}})", count_api, count_sql_ms, found["api"], targeted
        ),
        Case(f"{name}: preview limit=10", preview_api, preview_sql_ms, found["api"], targeted),
    ]


async def _alternate(
    api: Callable[[], Awaitable[None]], sql: Callable[[], Awaitable[None]]
) -> tuple[list[float], list[float]]:
    """Request, query, request, query...: both see the same cache state and machine load."""
    api_ms: list[float] = []
    sql_ms: list[float] = []
    for index in range(WARMUP + SAMPLES):
        for call, into in ((api, api_ms), (sql, sql_ms)):
            started = time.perf_counter()
            await call()
            if index >= WARMUP:
                into.append((time.perf_counter() - started) * 1000)
    return api_ms, sql_ms


async def _explain(engine: AsyncEngine, merchant_id: str, conditions: list[dict[str, Any]]) -> None:
    """Show which indexes the compiled statement uses (the API's own SQL, not the hand one)."""
    from models.segment import Segment, SegmentMatch
    from services.segments.segments import count_statement

    segment = Segment(
        merchant_id=merchant_id, name="x", match=SegmentMatch.all, conditions=conditions
    )
    async with engine.connect() as conn:
        compiled = count_statement(segment).compile(
            dialect=conn.dialect, compile_kwargs={"render_postcompile": True}
        )
        rows = (await conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params)).all()
    print("\nplan of the compiled narrow segment count:")
    for (line,) in rows:
        print(f"  {line}")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _report(cases: list[Case], total: int) -> None:
    print(
        f"\n{total:,} contacts for the merchant; {SAMPLES} samples per row after {WARMUP} warm-up"
    )
    header = (
        f"{'case':<36} {'matches':>8} {'API p50':>8} {'API p95':>8} "
        f"{'SQL p50':>8} {'SQL p95':>8} {'p95 x':>6}"
    )
    print(header)
    misses = []
    for case in cases:
        api50, api95 = statistics.median(case.api), _percentile(case.api, 0.95)
        sql50, sql95 = statistics.median(case.sql), _percentile(case.sql, 0.95)
        ratio = api95 / sql95
        mark = ""
        if case.targeted:
            met = api95 < TARGET_P95_MS and ratio <= TARGET_RATIO
            mark = "  ok" if met else "  MISS"
            if not met:
                misses.append(case.label)
        print(
            f"{case.label:<36} {case.matches:>8,} {api50:>8.1f} {api95:>8.1f} "
            f"{sql50:>8.1f} {sql95:>8.1f} {ratio:>5.2f}x{mark}"
        )
    print(
        f"target (narrow segment: a tag, a numeric attribute, a date): API p95 < "
        f"{TARGET_P95_MS:.0f} ms and <= {TARGET_RATIO}x the direct SQL p95 (times in ms)"
    )
    print("target met" if not misses else f"missed: {', '.join(misses)}")


if __name__ == "__main__":
    main()
