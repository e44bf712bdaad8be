"""Campaign recipients export: 100,000 recipients streamed as CSV by one API process.

    .venv/bin/python -m bench.campaign_export     # MKTX_BENCH_EXPORT_RECIPIENTS=20000 for less

PostgreSQL: MKTX_BENCH_DATABASE_URL, else an embedded server under .mkt-x/bench-pg (a fresh
database, migrated, dropped afterwards). Seeded by SQL bulk loading — `INSERT ... SELECT` over
`generate_series`, one statement per table: 100,000 contacts, a campaign with a recipient for
each (90 % delivered, 4 % failed, 3 % skipped, 3 % queued; 7 % of the delivered clicked), a
read receipt webhook event for 40 % of the delivered and an inbound reply (a conversation and
its message) for 10 %, and a second campaign with the first 10,000 of them; then ANALYZE.

The API runs as its own process (uvicorn, `api.app:main_app`); the bench reads
`GET /campaigns/{id}/recipients?format=csv` to the last byte, sampling the API process's RSS
every 5 ms. Figures: time to first and last byte, rows, MiB, and the RSS peak over the
process's RSS before (after a warm-up of one JSON page and one 10,000-row export), for the JSON
first page, the 10,000-row export and the 100,000-row export. Targets: the 100,000-row export
in < 5 s, and flat memory — its RSS growth at most the 10,000-row export's + 16 MiB (a list
built in memory would grow by ~100 MiB). The file's rows are then checked against the
campaign's metrics (the same counts, from the same definitions).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import statistics
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import httpx
import psutil
import sqlalchemy as sa

from api.app import BASE_PATH
from bench._infra import fresh_database
from bench.webhook_ingestion import uvicorn_process
from mktx.settings import Environment, Settings
from models.account import XAccount
from models.campaign import Campaign, CampaignStatus
from models.db import make_engine, make_sessionmaker, utcnow
from services.campaigns.metrics import campaign_metrics
from services.core.auth import Role, issue_token

RECIPIENTS = int(os.environ.get("MKTX_BENCH_EXPORT_RECIPIENTS", "100000"))
SMALL = RECIPIENTS // 10
TARGET_SECONDS = 5.0
FLAT_MARGIN_MIB = 16.0
ROUNDS = 3
REPLY_WINDOW = timedelta(hours=72)

_CONTACTS = """
INSERT INTO contacts (id, merchant_id, account_id, twitter_user_id, username, display_name,
                      tags, attributes, source, opted_out, conversation_count,
                      created_at, updated_at)
SELECT gen_random_uuid(), :merchant, :account, (100000000000000000 + g)::text,
       'buyer_' || g,
       CASE WHEN g % 100 = 0 THEN '=HYPERLINK("http://x.example/' || g || '")'
            ELSE (ARRAY['Nguyễn', 'Trần', 'Lê', 'Phạm'])[1 + g % 4] || ' Thị ' || g END,
       ARRAY['customer'], '{}', 'import', false, 0, now(), now()
FROM generate_series(1, :n) AS g
"""
# The recipients of one campaign: the contacts in username order, numbered g; the state by g.
_RECIPIENTS = """
INSERT INTO campaign_recipients (id, merchant_id, campaign_id, occurrence, contact_id, account_id,
                                 state, dm_event_id, error, attempt_at, sent_at, clicked_at,
                                 created_at)
SELECT gen_random_uuid(), :merchant, :campaign, 1, c.id, :account,
       CASE WHEN g % 100 < 90 THEN 'sent' WHEN g % 100 < 94 THEN 'failed'
            WHEN g % 100 < 97 THEN 'skipped' ELSE 'queued' END,
       CASE WHEN g % 100 < 90 THEN (1900000000000000000 + g)::text END,
       CASE WHEN g % 100 BETWEEN 90 AND 93 THEN 'X refused the DM'
            WHEN g % 100 BETWEEN 94 AND 96 THEN 'opted_out' END,
       CASE WHEN g % 100 < 94 THEN :at + g * interval '10 ms' END,
       CASE WHEN g % 100 < 90 THEN :at + g * interval '10 ms' END,
       CASE WHEN g % 100 < 90 AND g % 7 = 0 THEN :at + g * interval '10 ms' + interval '1 hour' END,
       :at - interval '1 hour'
FROM (SELECT id, row_number() OVER (ORDER BY username) AS g FROM contacts
      WHERE merchant_id = :merchant) AS c
WHERE g <= :n
"""
_READS = """
INSERT INTO webhook_events (id, merchant_id, account_id, for_user_id, event_type, dedup_key,
                            subject_user_id, contact_id, payload, received_at, processed_at,
                            attempts)
SELECT gen_random_uuid(), r.merchant_id, r.account_id, CAST(:shop_user AS text), 'read',
       'read:' || r.id, c.twitter_user_id, c.id,
       jsonb_build_object(
           'for_user_id', CAST(:shop_user AS text),
           'direct_message_mark_read_events', jsonb_build_array(jsonb_build_object(
               'sender_id', c.twitter_user_id, 'last_read_event_id', r.dm_event_id))),
       r.sent_at + interval '5 minutes', r.sent_at + interval '5 minutes', 0
FROM campaign_recipients r JOIN contacts c ON c.id = r.contact_id
WHERE r.campaign_id = :campaign AND r.state = 'sent' AND abs(hashtext(c.username)) % 5 < 2
"""
_CONVERSATIONS = """
INSERT INTO conversations (id, merchant_id, account_id, contact_id, status, channel, started_at,
                           last_message_at, message_count, created_at, updated_at)
SELECT gen_random_uuid(), r.merchant_id, r.account_id, r.contact_id, 'open', 'dm', r.sent_at,
       r.sent_at + interval '1 hour', 1, now(), now()
FROM campaign_recipients r JOIN contacts c ON c.id = r.contact_id
WHERE r.campaign_id = :campaign AND r.state = 'sent' AND abs(hashtext(c.username || 'r')) % 10 = 0
"""
_REPLIES = """
INSERT INTO messages (id, merchant_id, conversation_id, account_id, contact_id, direction, type,
                      content, attachments, is_from_bot, twitter_message_id, sent_at, status,
                      created_at, updated_at)
SELECT gen_random_uuid(), v.merchant_id, v.id, v.account_id, v.contact_id, 'inbound', 'text',
       'How much is it?', '[]', false, (2900000000000000000 + row_number() OVER ())::text,
       v.last_message_at, 'received', now(), now()
FROM conversations v WHERE v.merchant_id = :merchant
"""


@dataclass
class Read:
    seconds: float
    first_byte: float
    body: bytes
    rss_growth_mib: float


class RssPeak:
    """The highest RSS of a process while it is running (a thread sampling every 5 ms)."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> RssPeak:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> int:
    with fresh_database("mktx_bench_export") as url:
        started = time.perf_counter()
        merchant_id, big, small = asyncio.run(_seed(url))
        print(
            f"seeded {RECIPIENTS:,} contacts, campaigns of {RECIPIENTS:,} and {SMALL:,} "
            f"recipients (SQL bulk load + ANALYZE): {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        return _bench(url, merchant_id, big, small)


async def _seed(url: str) -> tuple[str, uuid.UUID, uuid.UUID]:
    engine = make_engine(url, pool_size=2)
    merchant_id = f"bench-export-{uuid.uuid4().hex[:8]}"
    shop = XAccount(
        merchant_id=merchant_id,
        twitter_user_id="900000001",
        username="shop_export",
        display_name="Shop",
        connected_at=utcnow(),
    )
    big = Campaign(merchant_id=merchant_id, name="Tết Sale 2026", status=CampaignStatus.completed)
    small = Campaign(
        merchant_id=merchant_id, name="Tết Sale (first 10%)", status=CampaignStatus.completed
    )
    async with make_sessionmaker(engine)() as session:
        session.add_all([shop, big, small])
        await session.commit()
    at = utcnow() - timedelta(days=2)
    common = {"merchant": merchant_id, "account": shop.id}
    async with engine.begin() as conn:
        await conn.execute(sa.text(_CONTACTS), {**common, "n": RECIPIENTS})
        for campaign, size in ((big, RECIPIENTS), (small, SMALL)):
            await conn.execute(
                sa.text(_RECIPIENTS), {**common, "campaign": campaign.id, "n": size, "at": at}
            )
        await conn.execute(sa.text(_READS), {"campaign": big.id, "shop_user": shop.twitter_user_id})
        await conn.execute(sa.text(_CONVERSATIONS), {"campaign": big.id})
        await conn.execute(sa.text(_REPLIES), {"merchant": merchant_id})
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("ANALYZE"))
    await engine.dispose()
    return merchant_id, big.id, small.id


def _read(client: httpx.Client, path: str, api: psutil.Process, before: int) -> Read:
    with RssPeak(api) as rss:
        started = time.perf_counter()
        first_byte = 0.0
        chunks: list[bytes] = []
        with client.stream("GET", path) as response:
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code} {response.read()[:300]!r}")
            for chunk in response.iter_bytes():
                if not chunks:
                    first_byte = time.perf_counter() - started
                chunks.append(chunk)
        seconds = time.perf_counter() - started
    return Read(seconds, first_byte, b"".join(chunks), (rss.peak - before) / 2**20)


def _bench(url: str, merchant_id: str, big: uuid.UUID, small: uuid.UUID) -> int:
    settings = Settings(_env_file=None, env=Environment.development, database_url=url)  # type: ignore[call-arg]
    token = issue_token(settings, merchant_id=merchant_id, user_id="bench", roles=[Role.viewer])
    env = {
        "MKTX_ENV": "development",
        "MKTX_LOG_LEVEL": "WARNING",
        "MKTX_DATABASE_URL": url,
        "MKTX_RATE_LIMIT_PER_MINUTE": "1000000",
        "MKTX_TEMPORAL_ADDRESS": "127.0.0.1:9",  # never called by these routes
        "MKTX_X_API_BASE_URL": "http://127.0.0.1:9",
    }
    csv_path = f"{BASE_PATH}/campaigns/{{}}/recipients?format=csv"
    json_path = f"{BASE_PATH}/campaigns/{big}/recipients?take=100"
    with (
        uvicorn_process("api.app:main_app", factory=True, env=env) as (api_url, api),
        httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as client,
    ):
        _read(client, json_path, api, 0)  # warm-up: imports, pools, the statements' plans
        _read(client, csv_path.format(small), api, 0)
        before = api.memory_info().rss
        reads: dict[str, list[Read]] = {"json": [], "small": [], "big": []}
        for _ in range(ROUNDS):
            reads["json"].append(_read(client, json_path, api, before))
            reads["small"].append(_read(client, csv_path.format(small), api, before))
            reads["big"].append(_read(client, csv_path.format(big), api, before))
        rss_before = before / 2**20
    agree = asyncio.run(_agrees_with_metrics(url, big, reads["big"][-1].body))
    return _report(reads, rss_before, agree)


async def _agrees_with_metrics(url: str, campaign_id: uuid.UUID, body: bytes) -> bool:
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    states = Counter(row["state"] for row in rows)
    having = Counter(field for row in rows for field, value in row.items() if value)
    engine = make_engine(url, pool_size=1)
    async with make_sessionmaker(engine)() as session:
        metrics = await campaign_metrics(session, campaign_id, reply_window=REPLY_WINDOW)
    await engine.dispose()
    found = {
        "recipients": len(rows),
        "totalSent": having["sentAt"],
        "delivered": having["deliveredAt"],
        "opened": having["openedAt"],
        "clicked": having["clickedAt"],
        "replied": having["repliedAt"],
        "failed": states["failed"],
        "skipped": states["skipped"],
    }
    expected = {
        "recipients": metrics.recipients,
        "totalSent": metrics.total_sent,
        "delivered": metrics.delivered,
        "opened": metrics.opened,
        "clicked": metrics.clicked,
        "replied": metrics.replied,
        "failed": metrics.failed,
        "skipped": metrics.skipped,
    }
    print(f"CSV rows counted: {found}")
    print(f"campaign metrics: {expected}")
    return found == expected and len(rows) == RECIPIENTS


def _report(reads: dict[str, list[Read]], rss_before: float, agree: bool) -> int:
    print()
    print(f"API process RSS before the timed reads: {rss_before:.0f} MiB; {ROUNDS} rounds")
    print(
        f"{'read':<36} {'rows':>8} {'MiB':>6} {'first byte':>11} {'last byte':>10} "
        f"{'RSS growth':>11}"
    )
    labels = {
        "json": "JSON first page (take=100)",
        "small": f"CSV export, {SMALL:,} recipients",
        "big": f"CSV export, {RECIPIENTS:,} recipients",
    }
    growth: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for key, label in labels.items():
        runs = reads[key]
        body = runs[-1].body
        rows = len(json.loads(body)["data"]) if key == "json" else body.count(b"\n") - 1
        seconds[key] = statistics.median(run.seconds for run in runs)
        growth[key] = max(run.rss_growth_mib for run in runs)
        print(
            f"{label:<36} {rows:>8,} {len(body) / 2**20:>6.1f} "
            f"{statistics.median(run.first_byte for run in runs) * 1000:>9.0f}ms "
            f"{seconds[key]:>9.2f}s {growth[key]:>8.1f}MiB"
        )
    fast = seconds["big"] < TARGET_SECONDS
    flat = growth["big"] <= growth["small"] + FLAT_MARGIN_MIB
    print(
        f"targets: {RECIPIENTS:,}-row export to the last byte < {TARGET_SECONDS:.0f} s "
        f"({'ok' if fast else 'MISS'}); RSS growth <= the {SMALL:,}-row export's + "
        f"{FLAT_MARGIN_MIB:.0f} MiB ({'ok' if flat else 'MISS'}); rows agree with the "
        f"metrics ({'ok' if agree else 'MISS'})"
    )
    return 0 if fast and flat and agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
