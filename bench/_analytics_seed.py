"""The analytics bench's data: one merchant's 180 days, loaded by SQL `INSERT ... SELECT
generate_series` in chunks, with the analytics triggers off (`SET mktx.analytics = 'off'`, and
`session_replication_role = replica` when the bench's role may: no per-row foreign key check),
then `mktx_analytics_rebuild` computes the facts and rollups from it, as the rebuild command
does, and `VACUUM ANALYZE`.

Per contact `g` (ids are made of the merchant and `g`, so later tables need no join, and grow with `g`): one
conversation of five messages, in one of four shapes (I inbound, H an agent's reply, E a reply
typed in X, B the assistant's, C a campaign DM, which answers nothing):

    IHIBI   IIHIE   IBHII   IHICI

A person answers in 30 s to 4 h, the assistant in 2 to 12 s, a contact writes again after a
minute to two days. 85 % of conversations are closed, 60 % assigned to one of ten agents.
Campaigns get `contacts / 100` recipients each; flows `contacts / 100` runs of three steps;
each reply of the assistant has its model call, each conversation it answered its AI session,
one in 25 of those an escalation (a fifth of them breached).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

CHUNK = 200_000
DAYS = 180
SHAPES = "ARRAY['IHIBI', 'IIHIE', 'IBHII', 'IHICI']"

_FUNCTIONS = """
CREATE OR REPLACE FUNCTION bench_u(g bigint, k int) RETURNS float8 LANGUAGE sql IMMUTABLE
AS $$ SELECT ((hashint8(g * 8 + k)::bigint + 2147483648) % 1000000) / 1e6 $$;
-- Ids that grow with the row number: the primary keys' indexes are appended to, not sprayed.
CREATE OR REPLACE FUNCTION bench_id(prefix text, n bigint) RETURNS uuid LANGUAGE sql IMMUTABLE
AS $$ SELECT (left(md5(prefix), 12) || lpad(to_hex(n), 20, '0'))::uuid $$;
CREATE OR REPLACE FUNCTION bench_delay(code text, u float8) RETURNS interval LANGUAGE sql IMMUTABLE
AS $$ SELECT date_trunc('milliseconds', CASE code
    WHEN 'H' THEN 30 * power(480, u) WHEN 'E' THEN 30 * power(480, u)
    WHEN 'B' THEN 2 + 10 * u WHEN 'C' THEN 3600 * power(24, u)
    ELSE 60 * power(2880, u) END * interval '1 second') $$;
"""

# Each contact's first interaction, spread over the first 177 days (its thread may run on).
_T0 = """(CAST(:origin AS timestamptz) + (g - 1) * (:span / :total) * interval '1 second'
          + date_trunc('milliseconds', bench_u(g, 0) * interval '1 hour'))"""
_IDS = """bench_id(CAST(:merchant AS varchar) || '/contact', g)"""

CONTACTS = f"""
INSERT INTO contacts (id, merchant_id, created_at, updated_at, account_id, twitter_user_id,
    username, display_name, tags, attributes, source, opted_out, conversation_count,
    first_interaction_at, last_interaction_at)
SELECT {_IDS}, CAST(:merchant AS varchar), t0, t0,
    CASE WHEN g % 5 = 0 THEN CAST(:second AS uuid) ELSE CAST(:first AS uuid) END,
    (100000000000 + g)::text, 'customer_' || g, 'Customer ' || g,
    array_remove(ARRAY[CASE WHEN bench_u(g, 6) < 0.05 THEN 'vip' END,
        CASE WHEN bench_u(g, 7) < 0.6 THEN 'customer' END,
        CASE WHEN bench_u(g, 6) > 0.8 THEN 'hanoi' END], NULL)::varchar[],
    '{{}}'::jsonb, CASE WHEN bench_u(g, 7) > 0.85 THEN 'new_follower' ELSE 'inbound_message' END,
    false, 1, t0, t0 + interval '2 days'
FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint)) AS g,
LATERAL (SELECT {_T0} AS t0) t
"""

CONVERSATIONS = f"""
INSERT INTO conversations (id, merchant_id, created_at, updated_at, account_id, contact_id,
    status, channel, assigned_to_user_id, started_at, last_message_at, closed_at, message_count)
SELECT bench_id(CAST(:merchant AS varchar) || '/conversation', g), CAST(:merchant AS varchar), t0, t0,
    CASE WHEN g % 5 = 0 THEN CAST(:second AS uuid) ELSE CAST(:first AS uuid) END, {_IDS},
    CASE WHEN bench_u(g, 5) < 0.85 THEN 'closed' ELSE 'open' END, 'direct_message',
    CASE WHEN bench_u(g, 4) < 0.6 THEN 'agent-' || (g % 10) END,
    t0, t0 + interval '1 day', CASE WHEN bench_u(g, 5) < 0.85 THEN t0 + interval '3 days' END, 5
FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint)) AS g,
LATERAL (SELECT {_T0} AS t0) t
"""

MESSAGES = f"""
INSERT INTO messages (id, merchant_id, created_at, updated_at, conversation_id, account_id,
    contact_id, direction, type, content, attachments, is_from_bot, twitter_message_id, sent_at,
    status, kind, sent_by_user_id)
SELECT bench_id(CAST(:merchant AS varchar) || '/message', g * 8 + s.n), CAST(:merchant AS varchar), s.at, s.at,
    bench_id(CAST(:merchant AS varchar) || '/conversation', g),
    CASE WHEN g % 5 = 0 THEN CAST(:second AS uuid) ELSE CAST(:first AS uuid) END, {_IDS},
    CASE WHEN s.code = 'I' THEN 'inbound' ELSE 'outbound' END, 'text', 'hello', '[]'::jsonb,
    s.code = 'B', (g * 10 + s.n)::text, s.at,
    CASE WHEN s.code = 'I' THEN 'received' ELSE 'sent' END,
    CASE s.code WHEN 'H' THEN 'inbox' WHEN 'B' THEN 'bot' WHEN 'C' THEN 'campaign' END,
    CASE WHEN s.code = 'H' THEN 'agent-' || (g % 10) END
FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint)) AS g,
LATERAL (SELECT ({SHAPES})[1 + g % 4] AS shape, {_T0} AS t0) p,
LATERAL (SELECT
    bench_delay(substr(shape, 2, 1), bench_u(g, 1)) AS d2,
    bench_delay(substr(shape, 3, 1), bench_u(g, 2)) AS d3,
    bench_delay(substr(shape, 4, 1), bench_u(g, 3)) AS d4,
    bench_delay(substr(shape, 5, 1), bench_u(g, 4)) AS d5) d,
LATERAL (VALUES (1, substr(shape, 1, 1), t0), (2, substr(shape, 2, 1), t0 + d2),
    (3, substr(shape, 3, 1), t0 + d2 + d3), (4, substr(shape, 4, 1), t0 + d2 + d3 + d4),
    (5, substr(shape, 5, 1), t0 + d2 + d3 + d4 + d5)) s (n, code, at)
"""

# The assistant's traces, from its replies.
AI = """
INSERT INTO llm_calls (id, merchant_id, conversation_id, model, prompt_tokens,
    completion_tokens, cost, latency_ms, outcome, created_at)
SELECT gen_random_uuid(), merchant_id, conversation_id, 'openai/gpt-4o-mini',
    300 + (hashtext(id::text) & 255), 40 + (hashtext(id::text) & 63), 0.00012, 900, 'ok',
    sent_at - interval '1 second'
FROM messages WHERE merchant_id = CAST(:merchant AS varchar) AND is_from_bot;
INSERT INTO ai_sessions (id, merchant_id, created_at, updated_at, conversation_id, context,
    slots, bot_paused)
SELECT gen_random_uuid(), min(merchant_id), min(sent_at), min(sent_at), conversation_id, '[]', '{}',
    false
FROM messages WHERE merchant_id = CAST(:merchant AS varchar) AND is_from_bot GROUP BY conversation_id;
INSERT INTO escalations (id, merchant_id, created_at, updated_at, conversation_id, status,
    reason, escalated_at, sla_due_at, breached, handoff_sent, resolved_at, resolution)
SELECT gen_random_uuid(), merchant_id, created_at, created_at, conversation_id, 'resolved',
    'low_confidence', created_at + interval '1 minute', created_at + interval '31 minutes',
    hashtext(conversation_id::text) % 5 = 0, true, created_at + interval '20 minutes',
    'agent_replied'
FROM ai_sessions WHERE merchant_id = CAST(:merchant AS varchar) AND hashtext(conversation_id::text) % 25 = 0;
"""

CAMPAIGNS = """
INSERT INTO campaigns (id, merchant_id, created_at, updated_at, name, type, status, segment_ids,
    variables, occurrences, started_at, completed_at)
SELECT bench_id(CAST(:merchant AS varchar) || '/campaign', c), CAST(:merchant AS varchar), at, at, 'Campaign ' || c,
    'promotional', CASE WHEN c <= 45 THEN 'completed' WHEN c <= 48 THEN 'paused' ELSE 'running' END,
    '{}', '{}', 1, at, CASE WHEN c <= 45 THEN at + interval '1 day' END
FROM generate_series(1, 50) AS c,
LATERAL (SELECT CAST(:origin AS timestamptz) + (c - 1) * interval '3.5 days' AS at) t;
INSERT INTO campaign_recipients (id, merchant_id, campaign_id, occurrence, contact_id,
    account_id, state, dm_event_id, error, sent_at, created_at)
SELECT gen_random_uuid(), CAST(:merchant AS varchar), bench_id(CAST(:merchant AS varchar) || '/campaign', c), 1,
    bench_id(CAST(:merchant AS varchar) || '/contact', g),
    CASE WHEN g % 5 = 0 THEN CAST(:second AS uuid) ELSE CAST(:first AS uuid) END,
    CASE WHEN u < 0.95 THEN 'sent' WHEN u < 0.98 THEN 'failed' ELSE 'skipped' END,
    CASE WHEN u < 0.95 THEN (c * 10000000 + r)::text END,
    CASE WHEN u >= 0.98 THEN 'opted_out' END,
    CASE WHEN u < 0.98 THEN at + r * interval '2 seconds' END, at
FROM generate_series(1, 50) AS c,
LATERAL (SELECT CAST(:origin AS timestamptz) + (c - 1) * interval '3.5 days' AS at) t,
generate_series(0, CAST(:recipients AS bigint) - 1) AS r,
LATERAL (SELECT ((c * 7919 + r * 104729) % :total) + 1 AS g, bench_u(r, c) AS u) x;
"""

FLOWS = """
INSERT INTO automation_flows (id, merchant_id, created_at, updated_at, name, status, trigger,
    nodes, connections, reentry, version, activated_at)
SELECT bench_id(CAST(:merchant AS varchar) || '/flow', f), CAST(:merchant AS varchar), :origin, :origin, 'Flow ' || f,
    CASE WHEN f <= 15 THEN 'active' ELSE 'inactive' END, '{"type": "manual", "config": {}}',
    '[{"id": "hello", "type": "send_message", "config": {}},
      {"id": "wait", "type": "wait", "config": {"duration": 3600}},
      {"id": "done", "type": "end", "config": {}}]',
    '[]', 'never', 1, :origin
FROM generate_series(1, 20) AS f;
INSERT INTO flow_runs (id, merchant_id, flow_id, flow_version, contact_id, account_id,
    workflow_id, status, started_at, completed_at)
SELECT bench_id(CAST(:merchant AS varchar) || '/run', f::bigint * 1000000000 + i), CAST(:merchant AS varchar),
    bench_id(CAST(:merchant AS varchar) || '/flow', f), 1, bench_id(CAST(:merchant AS varchar) || '/contact', g),
    CASE WHEN g % 5 = 0 THEN CAST(:second AS uuid) ELSE CAST(:first AS uuid) END,
    'flow:' || f || ':' || g,
    CASE WHEN u < 0.8 THEN 'completed' WHEN u < 0.9 THEN 'exited' ELSE 'running' END,
    at, CASE WHEN u < 0.9 THEN at + interval '1 hour' END
FROM generate_series(1, 20) AS f, generate_series(0, CAST(:runs AS bigint) - 1) AS i,
LATERAL (SELECT ((f * 15485863 + i * 7919) % :total) + 1 AS g, bench_u(i, f) AS u,
    CAST(:origin AS timestamptz) + i * (:span / :runs) * interval '1 second' AS at) x;
INSERT INTO flow_run_steps (id, run_id, seq, node_id, type, outcome, detail, started_at,
    finished_at)
SELECT gen_random_uuid(), r.id, s.seq, s.node, s.type, s.outcome, '{}', r.started_at,
    r.started_at
FROM flow_runs r,
LATERAL (VALUES (1, 'hello', 'send_message', 'sent'), (2, 'wait', 'wait', 'waited'),
    (3, 'done', 'end', 'ended')) s (seq, node, type, outcome)
WHERE r.merchant_id = CAST(:merchant AS varchar) AND (s.seq < 3 OR r.status = 'completed');
"""


async def seed(
    engine: AsyncEngine,
    merchant_id: str,
    accounts: tuple[str, str],
    total: int,
    origin: datetime,
) -> float:
    """Seconds it took to load one merchant (triggers off)."""
    started = time.perf_counter()
    span = (DAYS - 3) * 86400.0
    common = {
        "merchant": merchant_id,
        "first": accounts[0],
        "second": accounts[1],
        "origin": origin,
        "span": span,
        "total": total,
        "recipients": max(total // 100, 1),
        "runs": max(total // 100, 1),
    }
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("SET mktx.analytics = 'off'"))
        # The rows are consistent by construction: a superuser loads them without the foreign
        # keys' per-row checks (replica mode skips every trigger); others load them checked.
        try:
            await conn.execute(sa.text("SET session_replication_role = replica"))
        except sa.exc.DBAPIError:
            print("  (not a superuser: loading with the foreign keys checked)", flush=True)
        for statement in _FUNCTIONS.split(";\n"):
            if statement.strip():
                await conn.execute(sa.text(statement))
        for name, sql in (
            ("contacts", CONTACTS),
            ("conversations", CONVERSATIONS),
            ("messages", MESSAGES),
        ):
            began = time.perf_counter()
            for start in range(1, total + 1, CHUNK):
                stop = min(start + CHUNK - 1, total)
                await conn.execute(sa.text(sql), {**common, "start": start, "stop": stop})
            print(f"  {merchant_id}: {name} {time.perf_counter() - began:.0f} s", flush=True)
        for name, block in (("assistant", AI), ("campaigns", CAMPAIGNS), ("flows", FLOWS)):
            began = time.perf_counter()
            for statement in block.split(";\n"):
                if statement.strip():
                    await conn.execute(sa.text(statement), common)
            print(f"  {merchant_id}: {name} {time.perf_counter() - began:.0f} s", flush=True)
    return time.perf_counter() - started


async def rebuild(engine: AsyncEngine, merchants: list[str]) -> float:
    started = time.perf_counter()
    async with engine.begin() as conn:
        for merchant_id in merchants:
            await conn.execute(sa.text("SELECT mktx_analytics_rebuild(:m)"), {"m": merchant_id})
    return time.perf_counter() - started


async def vacuum(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("VACUUM (ANALYZE)"))


def origin_of(now: datetime) -> datetime:
    """Midnight UTC, DAYS days ago."""
    day = (now - timedelta(days=DAYS)).date()
    return datetime(day.year, day.month, day.day, tzinfo=now.tzinfo)
