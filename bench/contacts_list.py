"""Contacts list at 1,000,000 contacts: seeded through the import, then GET /contacts timed.

Its own database (`MKTX_BENCH_DATABASE_URL`, else an embedded PostgreSQL under
.mkt-x/bench-pg), migrated, seeded with five merchants through the import service (the code
path behind POST /contacts/import, CSV parsing included), ANALYZEd. Then pages of the biggest
merchant's contacts are fetched through the API app in-process (httpx ASGITransport): with tag
filters and with search terms, next to baselines measured in the same run (GET /healthz, and the
same page without a filter).

    .venv/bin/python -m bench                          # every benchmark
    .venv/bin/python -c 'import bench.contacts_list as b; b.main()'

    MKTX_BENCH_CONTACTS=200000     a smaller run (default 1,000,000)
    MKTX_BENCH_REUSE=1             time the pages again on the last run's seeded database
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
import random
import statistics
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from api.app import BASE_PATH, create_app
from bench._infra import server, server_url
from migrations.runner import upgrade_database
from mktx.settings import Environment, Settings
from models.account import XAccount
from models.db import make_engine, make_sessionmaker, utcnow
from services.analytics.rebuild import fold_everything
from services.contacts.importing import CHUNK_SIZE, ImportFormat, import_contacts, parse_records
from services.core.auth import Role, issue_token

REPO = Path(__file__).resolve().parent.parent
DATABASE = "mktx_bench_contacts"
TARGET_P95_MS = 50.0
FILE_ROWS = 100_000  # one import request: a ~15 MB CSV file, well under the 50 MB cap
SAMPLES = 200
WARMUP = 20

# Share of all contacts per merchant, and how each merchant's are split over its X accounts.
MERCHANTS: list[tuple[float, list[float]]] = [
    (0.50, [0.6, 0.4]),
    (0.25, [1.0]),
    (0.15, [0.67, 0.33]),
    (0.06, [1.0]),
    (0.04, [1.0]),
]

TAGS: list[tuple[str, float]] = [
    ("customer", 0.60),
    ("hcm", 0.30),
    ("newsletter", 0.25),
    ("hanoi", 0.20),
    ("returning", 0.20),
    ("lead", 0.15),
    ("black-friday-2025", 0.10),
    ("vip", 0.05),
    ("da nang", 0.05),
    ("churn-risk", 0.03),
    ("gold member", 0.02),
    ("wholesale", 0.01),
]
VI_FAMILY = [
    ("Nguyễn", 38),
    ("Trần", 11),
    ("Lê", 9),
    ("Phạm", 7),
    ("Hoàng", 5),
    ("Huỳnh", 4),
    ("Phan", 4),
    ("Vũ", 4),
    ("Võ", 3),
    ("Đặng", 2),
    ("Bùi", 2),
    ("Đỗ", 1),
    ("Hồ", 1),
    ("Ngô", 1),
    ("Dương", 1),
    ("Lý", 1),
]
VI_MIDDLE = ["Văn", "Thị", "Minh", "Ngọc", "Thanh", "Đức", "Hữu", "Quốc", "Thu", "Hoài"]
VI_GIVEN = [
    "An",
    "Anh",
    "Bình",
    "Châu",
    "Chi",
    "Dũng",
    "Duy",
    "Giang",
    "Hà",
    "Hải",
    "Hạnh",
    "Hiếu",
    "Hoa",
    "Hùng",
    "Huy",
    "Khánh",
    "Khoa",
    "Lan",
    "Linh",
    "Long",
    "Mai",
    "Minh",
    "Nam",
    "Nga",
    "Ngọc",
    "Nhung",
    "Phúc",
    "Phương",
    "Quang",
    "Quân",
    "Sơn",
    "Tâm",
    "Thảo",
    "Thủy",
    "Trang",
    "Trung",
    "Tuấn",
    "Tú",
    "Vân",
    "Việt",
    "Vy",
    "Yến",
]
EN_GIVEN = [
    "John",
    "Jane",
    "Michael",
    "Sarah",
    "David",
    "Emily",
    "James",
    "Olivia",
    "Robert",
    "Emma",
    "William",
    "Sophia",
    "Daniel",
    "Mia",
    "Thomas",
    "Grace",
    "Lucas",
    "Chloe",
    "Henry",
    "Zoe",
    "Jack",
    "Lily",
    "Samuel",
    "Ella",
    "Ryan",
    "Nora",
    "Kevin",
    "Amy",
    "Peter",
    "Lucy",
]
EN_FAMILY = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Wilson",
    "Taylor",
    "Anderson",
    "Thomas",
    "Moore",
    "Martin",
    "Lee",
    "Walker",
    "Hall",
    "Young",
    "King",
    "Wright",
    "Lopez",
    "Hill",
    "Scott",
    "Green",
    "Adams",
    "Baker",
]
_ASCII = str.maketrans(
    "àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ"
    "ÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬÈÉẺẼẸÊỀẾỂỄỆÌÍỈĨỊÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢÙÚỦŨỤƯỪỨỬỮỰỲÝỶỸỴĐ",
    "aaaaaaaaaaaaaaaaaeeeeeeeeeeeiiiiiooooooooooooooooouuuuuuuuuuuyyyyyd"
    "AAAAAAAAAAAAAAAAAEEEEEEEEEEEIIIIIOOOOOOOOOOOOOOOOOUUUUUUUUUUUYYYYYD",
)

# The pages timed for the biggest merchant: (label, query string, counts toward the target).
CASES: list[tuple[str, str, bool]] = [
    ("baseline: GET /healthz (no database)", "", False),
    ("baseline: page, no filter", "", False),
    ("tags=vip (5%)", "tags=vip", True),
    ("tags=vip,customer (3%)", "tags=vip,customer", True),
    ("tags=wholesale (1%)", "tags=wholesale", True),
    ("tags=customer (60%)", "tags=customer", True),
    ("tags=vip + accountId", "tags=vip&accountId={account}", True),
    ("search=john", "search=john", True),
    ("search=smith", "search=smith", True),
    ("search=linh", "search=linh", True),
    ("search=trần thị (2 words)", "search=" + quote("trần thị"), True),
    ("search=nguy (~35%)", "search=nguy", True),
    ("search=john + tags=vip", "search=john&tags=vip", True),
    ("search=zzxq (no match)", "search=zzxq", True),
    ("tags=vip, page 50", "tags=vip&skip=980&take=20", True),
]


@dataclass
class Account:
    merchant_id: str
    account_id: uuid.UUID
    contacts: int


def main() -> None:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    total = int(os.environ.get("MKTX_BENCH_CONTACTS", "1000000"))
    pg = server_url()
    reuse = os.environ.get("MKTX_BENCH_REUSE") == "1" and _seeded(pg, total)
    url = _database_url(pg) if reuse else _fresh_database(pg)
    print(f"database: {make_url(url).render_as_string(hide_password=True)}", flush=True)
    upgrade_database(url)  # also a reused database: the migrations added since it was seeded
    asyncio.run(_run(url, total, seed=not reuse))


def _database_url(server_url: str) -> str:
    return server(server_url).set(database=DATABASE).render_as_string(hide_password=False)


def _seeded(server_url: str, total: int) -> bool:
    """MKTX_BENCH_REUSE=1: time the pages again on the last run's data when it is complete."""
    try:
        engine = sa.create_engine(_database_url(server_url))
        with engine.connect() as conn:
            found = conn.execute(sa.text("SELECT count(*) FROM contacts")).scalar_one()
        engine.dispose()
    except sa.exc.SQLAlchemyError:
        return False
    return bool(found == total)


def _fresh_database(server_url: str) -> str:
    base = server(server_url)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()
    return base.set(database=DATABASE).render_as_string(hide_password=False)


async def _run(url: str, total: int, *, seed: bool) -> None:
    engine = make_engine(url, pool_size=4)
    if seed:
        await _seed(engine, total)
    else:
        print("MKTX_BENCH_REUSE=1: timing the contacts of the last run again", flush=True)
    await _fold(engine)
    async with engine.connect() as conn:
        indexes = (
            await conn.execute(
                sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'contacts' ORDER BY 1")
            )
        ).scalars()
        print(f"contacts indexes: {', '.join(indexes)}", flush=True)
        merchant_id, size = (
            await conn.execute(
                sa.text(
                    "SELECT merchant_id, count(*) FROM contacts "
                    "GROUP BY merchant_id ORDER BY 2 DESC LIMIT 1"
                )
            )
        ).one()
        account_id = (
            await conn.execute(
                sa.text(
                    "SELECT account_id FROM contacts WHERE merchant_id = :m "
                    "GROUP BY account_id ORDER BY count(*) DESC LIMIT 1"
                ),
                {"m": merchant_id},
            )
        ).scalar_one()
        select_one = await _time_sql(conn)
    await engine.dispose()
    print(
        f"biggest merchant: {size:,} contacts; {SAMPLES} rounds of sequential requests, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        flush=True,
    )

    # Pages -----------------------------------------------------------------------------------
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        env=Environment.development,
        database_url=url,
        rate_limit_per_minute=10_000_000,
        log_level="WARNING",
    )
    token = issue_token(settings, merchant_id=merchant_id, user_id="bench", roles=[Role.viewer])
    results: list[tuple[str, list[float], int, bool]] = [
        ("baseline: SELECT 1 (database round trip)", select_one, 0, False)
    ]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://bench",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            paths = [
                "/healthz"
                if "healthz" in label
                else f"{BASE_PATH}/contacts?{query}".format(account=account_id)
                for label, query, _ in CASES
            ]
            timings, totals = await _time_requests(client, paths)
            for (label, _, counted), case_timings, found in zip(
                CASES, timings, totals, strict=True
            ):
                results.append((label, case_timings, found, counted))
    _report(results)


async def _seed(engine: Any, total: int) -> None:
    sessions = make_sessionmaker(engine)
    accounts = await _accounts(sessions, total)

    # Through the import service: CSV parsing, validation, chunked upserts.
    rng = random.Random(20260118)
    imported = 0
    import_seconds = 0.0
    first_file_seconds: float | None = None
    next_user_id = 10**17
    for account in accounts:
        remaining = account.contacts
        while remaining:
            rows = min(FILE_ROWS, remaining)
            body = _csv_file(rng, next_user_id, rows)
            next_user_id += rows
            started = time.perf_counter()
            async with sessions() as session:
                result = await import_contacts(
                    session,
                    merchant_id=account.merchant_id,
                    account_id=account.account_id,
                    records=parse_records(body, ImportFormat.csv),
                )
            seconds = time.perf_counter() - started
            if first_file_seconds is None:
                first_file_seconds = seconds
            assert result.created == rows and result.rejected_count == 0, result
            import_seconds += seconds
            imported += rows
            remaining -= rows
            print(
                f"  imported {imported:>9,} contacts  ({rows / seconds:,.0f} rows/s this file)",
                flush=True,
            )
    print(
        f"import: {imported:,} contacts in {import_seconds:.1f} s = "
        f"{imported / import_seconds:,.0f} rows/s (CSV parse + validation + upsert, "
        f"{FILE_ROWS:,}-row files, {CHUNK_SIZE:,}-row transactions); "
        f"first {FILE_ROWS:,}-row file (empty table): {first_file_seconds:.1f} s",
        flush=True,
    )

    # Inbox activity: most contacts have talked with the merchant at some point.
    started = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE contacts SET "
                "last_interaction_at = now() - (abs(hashtext(twitter_user_id)) % 31536000) "
                "* interval '1 second', "
                "first_interaction_at = now() - interval '400 days', "
                "conversation_count = 1 + abs(hashtext(twitter_user_id)) % 4 "
                "WHERE abs(hashtext(twitter_user_id || 'x')) % 10 < 6"
            )
        )
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("VACUUM (ANALYZE) contacts"))
    print(
        f"activity: 60% of contacts given interaction times, then VACUUM ANALYZE: "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )


async def _fold(engine: Any) -> None:
    """Fold the analytics deltas the import's triggers appended, as the maintenance schedule
    does every tick (the single-tag totals read the folded tag counts)."""
    started = time.perf_counter()
    folded = await fold_everything(make_sessionmaker(engine))
    print(
        f"analytics deltas folded (the maintenance schedule's step): {folded:,} rows in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )


async def _accounts(sessions: Any, total: int) -> list[Account]:
    accounts: list[Account] = []
    async with sessions() as session:
        for index, (share, splits) in enumerate(MERCHANTS):
            merchant_id = f"bench-merchant-{index + 1}"
            merchant_total = round(total * share)
            for split_index, split in enumerate(splits):
                row = XAccount(
                    merchant_id=merchant_id,
                    twitter_user_id=str(9_000_000 + index * 10 + split_index),
                    username=f"shop_{index + 1}_{split_index + 1}",
                    display_name=f"Shop {index + 1}",
                    connected_at=utcnow(),
                )
                session.add(row)
                accounts.append(Account(merchant_id, row.id, round(merchant_total * split)))
        await session.commit()
    return accounts


def _csv_file(rng: random.Random, first_user_id: int, rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["twitterUserId", "username", "displayName", "tags", "attributes"])
    for offset in range(rows):
        display, username = _person(rng)
        tags = ";".join(tag for tag, share in TAGS if rng.random() < share)
        attributes = (
            f'{{"purchaseCount":{rng.randint(0, 50)},"totalSpent":{rng.randint(0, 500) * 10_000},'
            f'"lastPurchaseDate":"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",'
            f'"preferredLanguage":"{"vi" if rng.random() < 0.7 else "en"}"'
            + (
                f',"membershipTier":"{rng.choice(["silver", "gold"])}"'
                if rng.random() < 0.2
                else ""
            )
            + "}"
        )
        writer.writerow([first_user_id + offset, username, display, tags, attributes])
    return out.getvalue().encode()


_VI_FAMILY_NAMES = [name for name, _ in VI_FAMILY]
_VI_FAMILY_WEIGHTS = [weight for _, weight in VI_FAMILY]


def _person(rng: random.Random) -> tuple[str, str]:
    number = rng.randint(1, 9999)
    if rng.random() < 0.7:
        family = rng.choices(_VI_FAMILY_NAMES, _VI_FAMILY_WEIGHTS)[0]
        middle, given = rng.choice(VI_MIDDLE), rng.choice(VI_GIVEN)
        display = f"{family} {middle} {given}"
        plain = [part.translate(_ASCII).lower() for part in (family, middle, given)]
        style = rng.random()
        if style < 0.4:
            username = f"{plain[2]}{plain[0]}{number % 100}"
        elif style < 0.7:
            username = f"{plain[0]}_{plain[2]}_{number}"
        else:
            username = "".join(plain) + str(number % 1000)
    else:
        given, family = rng.choice(EN_GIVEN), rng.choice(EN_FAMILY)
        display = f"{given} {family}"
        username = (
            f"{given.lower()}_{family.lower()}{number % 100}"
            if rng.random() < 0.5
            else f"{given.lower()}{family[0].lower()}{number}"
        )
    return display, username[:15]


async def _time_sql(conn: Any) -> list[float]:
    timings = []
    for index in range(WARMUP + SAMPLES):
        started = time.perf_counter()
        await conn.execute(sa.text("SELECT 1"))
        if index >= WARMUP:
            timings.append((time.perf_counter() - started) * 1000)
    return timings


async def _time_requests(
    client: httpx.AsyncClient, paths: list[str]
) -> tuple[list[list[float]], list[int]]:
    """Round robin over the cases, so that whatever else the machine does weighs on all alike."""
    timings: list[list[float]] = [[] for _ in paths]
    totals = [0] * len(paths)
    for round_number in range(WARMUP + SAMPLES):
        for index, path in enumerate(paths):
            started = time.perf_counter()
            response = await client.get(path)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
            if round_number >= WARMUP:
                timings[index].append(elapsed)
            pagination = response.json().get("pagination") or {}
            # An estimated total (above 10,000 matches) is negative here, printed with a ~.
            totals[index] = pagination.get("total", 0) * (
                -1 if pagination.get("totalIsEstimate") else 1
            )
    return timings, totals


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _report(results: list[tuple[str, list[float], int, bool]]) -> None:
    unfiltered = next(t for label, t, _, _ in results if label == "baseline: page, no filter")
    base_p50 = statistics.median(unfiltered)
    print()
    print(f"{'case':<42} {'matches':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'p50/base':>9}")
    misses = []
    for label, timings, total, counted in results:
        p50, p95 = statistics.median(timings), _percentile(timings, 0.95)
        p99 = _percentile(timings, 0.99)
        mark = ""
        if counted:
            mark = "  ok" if p95 < TARGET_P95_MS else "  MISS"
            if p95 >= TARGET_P95_MS:
                misses.append(label)
        matches = f"~{-total:,}" if total < 0 else f"{total:,}"
        print(
            f"{label:<42} {matches:>9} {p50:>8.2f} {p95:>8.2f} {p99:>8.2f} "
            f"{p50 / base_p50:>8.2f}x{mark}"
        )
    print(
        f"target: p95 < {TARGET_P95_MS:.0f} ms for filtered pages; base = the unfiltered page; "
        "~: the total is the planner's estimate (more than 10,000 match)"
    )
    print("all filtered cases met the target" if not misses else f"missed: {', '.join(misses)}")


if __name__ == "__main__":
    main()
