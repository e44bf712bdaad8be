"""A campaign's recipients, one row per contact and occurrence: a page of them, or all as CSV.

Each row says what the metrics (metrics.py) count it as, with the same clauses: `sentAt` is set
exactly for totalSent (sent or failed: handed to X), `deliveredAt` for delivered (sent),
`openedAt`, `clickedAt` and `repliedAt` for opened, clicked and replied — the time of the first
read receipt covering the DM (`OPENING_READS`), of the first click, of the first inbound DM
within the reply window (`REPLYING_DMS`). So counting a list's rows by state or by the times
they carry gives the campaign's metrics.

The CSV is streamed from one server-side cursor (one statement, so one consistent snapshot), a
batch of rows at a time: memory stays flat whatever the campaign's size. Cells an application
would read as a formula (starting with = + - @, tab or CR) are prefixed with `'`.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import RowMapping, Select, TextClause, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.campaign import Campaign, CampaignRecipient, CampaignRecipientPublic, RecipientState
from models.db import SessionMaker
from services.campaigns.metrics import OPENING_READS, REPLYING_DMS
from services.core import totals
from services.core.totals import Total

CSV_BATCH = 2_000  # rows fetched from the cursor, and written, at a time
CSV_COLUMNS = [
    "contactId",
    "username",
    "displayName",
    "occurrence",
    "state",
    "skipReason",
    "sentAt",
    "deliveredAt",
    "openedAt",
    "clickedAt",
    "repliedAt",
]
_FIELDS = [
    "contact_id",
    "username",
    "display_name",
    "occurrence",
    "state",
    "skip_reason",
    "sent_at",
    "delivered_at",
    "opened_at",
    "clicked_at",
    "replied_at",
]

# The order follows uq_campaign_recipients_contact (campaign, occurrence, contact): a page is a
# walk along it; erased contacts (NULL) come last, in id order.
_SELECT = f"""
SELECT r.contact_id,
       c.username,
       c.display_name,
       r.occurrence,
       r.state,
       CASE WHEN r.state = 'skipped' THEN r.error END AS skip_reason,
       CASE WHEN r.state IN ('sent', 'failed')
            THEN coalesce(r.sent_at, r.attempt_at, r.created_at) END AS sent_at,
       CASE WHEN r.state = 'sent' THEN coalesce(r.sent_at, r.attempt_at, r.created_at) END
           AS delivered_at,
       CASE WHEN r.state = 'sent'
            THEN coalesce(r.read_at, (SELECT min(w.received_at) {OPENING_READS})) END
           AS opened_at,
       CASE WHEN r.state = 'sent' THEN r.clicked_at END AS clicked_at,
       CASE WHEN r.state = 'sent'
            THEN coalesce(r.replied_at, (SELECT min(m.sent_at) {REPLYING_DMS})) END
           AS replied_at
FROM campaign_recipients r
JOIN x_accounts a ON a.id = r.account_id
LEFT JOIN contacts c ON c.id = r.contact_id
WHERE r.merchant_id = :merchant_id AND r.campaign_id = :campaign_id /* state */
ORDER BY r.occurrence, r.contact_id, r.id
"""


def _rows_statement(state: RecipientState | None, *, page: bool) -> TextClause:
    sql = _SELECT.replace("/* state */", "AND r.state = :state" if state is not None else "")
    return text(sql + ("LIMIT :take OFFSET :skip" if page else ""))


def _params(
    campaign: Campaign, state: RecipientState | None, reply_window: timedelta
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "merchant_id": campaign.merchant_id,
        "campaign_id": campaign.id,
        "reply_window": reply_window,
    }
    if state is not None:
        params["state"] = state.value
    return params


def count_statement(campaign: Campaign, state: RecipientState | None) -> Select[Any]:
    """The rows the list has (the joins add or drop none: the account is required, the
    contact optional)."""
    statement = select(col(CampaignRecipient.id)).where(
        col(CampaignRecipient.merchant_id) == campaign.merchant_id,
        col(CampaignRecipient.campaign_id) == campaign.id,
    )
    if state is not None:
        statement = statement.where(col(CampaignRecipient.state) == state)
    return statement


async def list_recipients(
    session: AsyncSession,
    campaign: Campaign,
    state: RecipientState | None,
    reply_window: timedelta,
    *,
    skip: int,
    take: int,
) -> tuple[list[CampaignRecipientPublic], Total]:
    """One page of the campaign's recipients (of every occurrence), and how many in all."""
    result = await session.execute(
        _rows_statement(state, page=True),
        {**_params(campaign, state, reply_window), "take": take, "skip": skip},
    )
    rows = [CampaignRecipientPublic.model_validate(dict(row._mapping)) for row in result]
    total = totals.known_total(skip, take, len(rows)) or await totals.count_total(
        session, count_statement(campaign, state), seen=skip + len(rows) if rows else 0
    )
    return rows, total


async def csv_lines(
    sessions: SessionMaker,
    campaign: Campaign,
    state: RecipientState | None,
    reply_window: timedelta,
) -> AsyncIterator[str]:
    """The whole list as CSV (a header row, then one line per recipient), a batch at a time,
    from a server-side cursor in a session of its own (the request's is closed by then)."""
    yield _csv_chunk([CSV_COLUMNS])
    async with sessions() as session:
        result = await session.stream(
            _rows_statement(state, page=False), _params(campaign, state, reply_window)
        )
        async for batch in result.mappings().partitions(CSV_BATCH):
            yield _csv_chunk([_csv_row(row) for row in batch])


def _csv_chunk(rows: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A value as a CSV cell: times in ISO 8601 UTC as the JSON list gives them, nothing for
    null, and text a spreadsheet would run as a formula made inert with a leading `'`."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    cell = str(value)
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _csv_row(row: RowMapping) -> list[str]:
    return [csv_cell(row[name]) for name in _FIELDS]


def csv_filename(campaign: Campaign, state: RecipientState | None) -> str:
    """`january-promotion-recipients.csv` (`…-recipients-sent.csv` with a state filter): the
    name in ASCII letters and digits, whatever the campaign is called."""
    folded = unicodedata.normalize("NFKD", campaign.name.replace("đ", "d").replace("Đ", "D"))
    slug = re.sub(r"[^a-z0-9]+", "-", folded.encode("ascii", "ignore").decode().lower())
    slug = slug.strip("-")[:60].strip("-") or f"campaign-{str(campaign.id)[:8]}"
    return f"{slug}-recipients{f'-{state.value}' if state is not None else ''}.csv"
