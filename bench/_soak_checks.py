"""What the soak's work left behind, read after the load: the database's state (campaign, flow
runs, follow-ups, answers) while the drain waits, then the sandbox's DM log, the outside truth
of what was sent, counted per recipient: each campaign recipient and each flow contact exactly
one DM, each customer's DM one answer."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench._soak_report import Check
from bench._soak_world import (
    CAMPAIGN_MARK,
    CUSTOMER_BASE,
    ENROLLED_BASE,
    FOLLOWER_BASE,
    RECIPIENT_BASE,
    WELCOME_MARK,
    Merchant,
    Setup,
)
from sandbox.admin import SandboxAdmin

RANGE = 100_000_000  # the width of each id range of _soak_world
# What each kind of recipient must have been sent (the assistant's answers vary).
MARKS = {RECIPIENT_BASE: CAMPAIGN_MARK, FOLLOWER_BASE: WELCOME_MARK, ENROLLED_BASE: WELCOME_MARK}


@dataclass(frozen=True)
class State:
    campaign: str
    campaign_sent: int  # the campaign's DMs X took
    runs: dict[str, int]  # flow runs by status
    run_contacts: int  # distinct contacts with a run
    follow_ups_due: int
    unapplied: int  # webhook events not applied
    queued: int  # outbound messages not yet handed to X
    answers: int  # outbound messages sent to the assistant's customers
    llm_calls: int

    def line(self) -> str:
        return (
            f"campaign {self.campaign} ({self.campaign_sent} sent); flow runs {self.runs} "
            f"({self.run_contacts} contacts); follow-ups due {self.follow_ups_due}; webhook "
            f"events unapplied {self.unapplied}; outbound queued {self.queued}; assistant "
            f"answers sent {self.answers} ({self.llm_calls} model calls)"
        )

    def settled(self, expected_runs: int) -> bool:
        return (
            self.campaign in ("completed", "failed", "cancelled")
            and sum(self.runs.values()) >= expected_runs
            and self.runs.get("running", 0) == 0
            and self.follow_ups_due == 0
            and self.queued == 0
        )


def state(url: str, merchant: Merchant, setup: Setup) -> State:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            campaign = conn.execute(
                sa.text("SELECT status FROM campaigns WHERE id = :c"), {"c": setup.campaign_id}
            ).scalar_one()
            campaign_sent = conn.execute(
                sa.text(
                    "SELECT count(*) FROM messages WHERE campaign_id = :c "
                    "AND status IN ('sent', 'read')"
                ),
                {"c": setup.campaign_id},
            ).scalar_one()
            runs = dict(
                conn.execute(
                    sa.text(
                        "SELECT status, count(*) FROM flow_runs WHERE flow_id = :f GROUP BY status"
                    ),
                    {"f": setup.flow_id},
                ).all()
            )
            row = conn.execute(
                sa.text(
                    """
                    SELECT
                        (SELECT count(DISTINCT contact_id) FROM flow_runs WHERE flow_id = :f),
                        (SELECT count(*) FROM event_follow_ups
                            WHERE merchant_id = :m AND done_at IS NULL),
                        (SELECT count(*) FROM webhook_events WHERE processed_at IS NULL),
                        (SELECT count(*) FROM messages
                            WHERE merchant_id = :m AND status = 'queued'),
                        (SELECT count(*) FROM messages m JOIN contacts c ON c.id = m.contact_id
                            WHERE m.merchant_id = :m AND m.direction = 'outbound'
                            AND m.status IN ('sent', 'read')
                            AND c.twitter_user_id LIKE :customers),
                        (SELECT count(*) FROM llm_calls WHERE merchant_id = :m)
                    """
                ),
                {
                    "f": setup.flow_id,
                    "m": merchant.merchant_id,
                    "customers": str(CUSTOMER_BASE)[:2] + "%",
                },
            ).one()
    finally:
        engine.dispose()
    return State(
        str(campaign),
        int(campaign_sent),
        {str(k): int(v) for k, v in runs.items()},
        *map(int, row),
    )


async def drain(
    url: str,
    merchant: Merchant,
    setup: Setup,
    expected_runs: int,
    expected_answers: int,
    timeout: float,
) -> tuple[State, float]:
    """Until the campaign has ended, every flow run has settled, nothing is owed or queued and
    the answers stopped coming (all of them, or none for 20 s): the state, and the seconds
    waited (`timeout` when it was reached)."""
    started = time.monotonic()
    last_answers, still_since = -1, time.monotonic()
    shown = 0.0
    while True:
        now = await asyncio.to_thread(state, url, merchant, setup)
        if now.answers != last_answers:
            last_answers, still_since = now.answers, time.monotonic()
        answered = now.answers >= expected_answers or time.monotonic() - still_since > 20
        waited = time.monotonic() - started
        if (now.settled(expected_runs) and answered) or waited > timeout:
            return now, waited
        if waited >= shown + 30:  # how it goes, so a stall shows from a slow finish
            shown = waited
            print(f"  drain {waited:4.0f}s: {now.line()}", flush=True)
        await asyncio.sleep(2)


def _kind(recipient_id: str) -> int:
    return int(recipient_id) // RANGE * RANGE if recipient_id.isdigit() else 0


async def dm_checks(
    sandbox_url: str,
    merchant: Merchant,
    recipients: int,
    flow_must: set[str],
    flow_maybe: set[str],
    answers_owed: tuple[int, int],
) -> list[Check]:
    """From the sandbox's DM log of the shop: exactly one DM per campaign recipient, exactly one
    per flow contact whose follow or enrolment was accepted (at most one for those whose
    request got no answer, none for anyone else), an answer per customer DM accepted
    (`answers_owed`: accepted, and unanswered that may have been taken)."""
    dms = await SandboxAdmin(sandbox_url, timeout=120).dms(sender_id=merchant.shop_x_id)
    by_kind: dict[int, Counter[str]] = {}
    times: dict[str, list[str]] = {}
    stray = 0
    for dm in dms:
        times.setdefault(dm.recipient_id, []).append(f"{dm.created_at:%H:%M:%S.%f}"[:12])
        kind = _kind(dm.recipient_id)
        mark = MARKS.get(kind)
        if mark is not None and mark not in dm.text:
            stray += 1
            continue
        by_kind.setdefault(kind, Counter())[dm.recipient_id] += 1
    campaign = by_kind.get(RECIPIENT_BASE, Counter())
    flows = by_kind.get(FOLLOWER_BASE, Counter()) + by_kind.get(ENROLLED_BASE, Counter())
    answers = sum(by_kind.get(CUSTOMER_BASE, Counter()).values())

    twice = sum(1 for n in campaign.values() if n > 1)
    c_shown = f"{len(campaign)}/{recipients}" + (f", {twice} twice+" if twice else "")
    f_twice = sum(1 for n in flows.values() if n > 1)
    missing = len(flow_must - set(flows))
    unowed = len(set(flows) - flow_must - flow_maybe)
    f_shown = f"{len(flow_must & set(flows))}/{len(flow_must)}" + "".join(
        f", {n} {what}"
        for n, what in ((f_twice, "twice+"), (unowed, "not owed"), (len(flow_maybe), "unknown"))
        if n
    )
    doubled = [r for r, n in (campaign + flows).items() if n > 1][:3]
    for recipient in doubled:  # the evidence of a double send: when X took each copy
        print(f"  sent more than once to {recipient}: at {', '.join(times[recipient])}")
    ok, unknown = answers_owed
    a_target = f"= {ok}" if not unknown else f"{ok}..{ok + unknown}"
    return [
        Check(
            "campaign DMs, once each",
            c_shown,
            f"= {recipients}",
            len(campaign) == recipients and twice == 0,
        ),
        Check(
            "flow DMs, once per contact",
            f_shown,
            f"= {len(flow_must)}",
            missing == 0 and f_twice == 0 and unowed == 0,
        ),
        Check(
            "assistant answers (sandbox)",
            f"{answers}/{ok}",
            a_target,
            ok <= answers <= ok + unknown,
        ),
        Check("DMs with an unexpected text", str(stray), "= 0", stray == 0),
    ]


# Lines of the Temporal SDK's core (plain text) that say a worker fell behind.
CORE_SIGNS = {
    "Workflow task duration exceeded": "workflow tasks over 5 s",
    "Task not found when completing": "workflow tasks timed out (redone)",
}


def log_errors(paths: list[Path]) -> dict[str, Counter[str]]:
    """By log: its errors (JSON level error or critical, by event), the failures logged with
    an exception (by its last line: what failed), and the SDK's signs of a worker behind."""
    found: dict[str, Counter[str]] = {}
    for path in paths:
        counter: Counter[str] = Counter()
        for line in path.read_text(errors="replace").splitlines() if path.exists() else ():
            if not line.startswith("{"):
                counter.update(what for sign, what in CORE_SIGNS.items() if sign in line)
                if "level=ERROR" in line:  # Temporal's server: its message, then its error
                    msg = line.partition(" msg=")[2].partition('" ')[0]
                    error = line.partition(' error="')[2].partition('"')[0]
                    counter[f"{msg[1:60]}: {error[:50]}"] += 1
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("exception"):
                last = record["exception"].strip().splitlines()[-1]
                where = record.get("temporal_activity", {}).get("activity_type")
                counter[f"{where or str(record.get('event', ''))[:40]}: {last[:110]}"] += 1
            elif record.get("level") in ("error", "critical"):
                counter[str(record.get("event", ""))[:80]] += 1
        found[path.name] = counter
    return found


async def stuck_runs(url: str, setup: Setup, client: Client, limit: int = 5) -> list[str]:
    """What the flow runs still `running` after the drain are doing, in the database and in
    Temporal (the workflow's status, its pending activities and timers): where a run stuck."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    """
                    SELECT workflow_id, current_node_id, started_at FROM flow_runs
                    WHERE flow_id = :f AND status = 'running' ORDER BY started_at LIMIT :n
                    """
                ),
                {"f": setup.flow_id, "n": limit},
            ).all()
    finally:
        engine.dispose()
    found = []
    for workflow_id, node, started_at in rows:
        try:
            described = await client.get_workflow_handle(workflow_id).describe()
            raw = described.raw_description
            history = await client.get_workflow_handle(workflow_id).fetch_history()
            last = [EventType.Name(e.event_type)[11:] for e in history.events[-4:]]
            shown = (
                f"Temporal {described.status.name if described.status else '?'}, "
                f"{described.history_length} events, pending activities "
                f"{[a.activity_type.name for a in raw.pending_activities]}, last events {last}"
            )
        except Exception as exc:  # the run's workflow may not exist at all: say so
            shown = f"Temporal: {type(exc).__name__} {exc}"
        found.append(f"{workflow_id} at node {node} since {started_at:%H:%M:%S}: {shown}")
    return found
