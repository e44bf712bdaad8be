"""Segments: saved contact filters, counted and previewed live, compiled for campaigns."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, false, func, or_, select, text
from sqlmodel.ext.asyncio.session import AsyncSession

from models.segment import (
    Segment,
    SegmentContactSample,
    SegmentCreate,
    SegmentMatch,
    SegmentPreview,
    SegmentPublic,
    SegmentUpdate,
)
from services.core.in_use import UsageChecks
from services.core.tenancy import get_owned, owned_by
from services.segments.sql import CONTACTS, conditions_clause

logger = logging.getLogger(__name__)

_c = CONTACTS.c


# Compilation ----------------------------------------------------------------------------------


def segment_clause(segment: Segment) -> ColumnElement[bool]:
    """The stored conditions of one segment as a WHERE clause over `contacts`."""
    return conditions_clause(segment.conditions, SegmentMatch(segment.match))


def segments_filter(
    merchant_id: str, segments: Sequence[Segment], *, exclude_opted_out: bool = False
) -> ColumnElement[bool]:
    """The merchant's contacts in any of `segments`; no segment at all matches nobody."""
    for segment in segments:
        if segment.merchant_id != merchant_id:  # a caller bug, never a user error
            raise ValueError(f"segment {segment.id} belongs to another merchant")
    matched = or_(*(segment_clause(s) for s in segments)) if segments else false()
    clause = (_c.merchant_id == merchant_id) & matched
    if exclude_opted_out:
        clause = clause & _c.opted_out.is_(False)
    return clause  # type: ignore[no-any-return]


def compile_segment(
    merchant_id: str,
    segments: Sequence[Segment],
    *,
    exclude_opted_out: bool = False,
    columns: Sequence[ColumnElement[Any]] | None = None,
) -> Select[Any]:
    """ONE statement selecting the contacts in the union of `segments`, each contact once.

    The union is a single scan of `contacts` under `(segment 1) OR (segment 2) ...`, so it is
    deduplicated by construction (no UNION/DISTINCT). `columns` defaults to `contacts.id`; a
    campaign snapshots its recipients with
    `insert(Recipient).from_select([...], compile_segment(m, segs, exclude_opted_out=True,
    columns=[literal(campaign_id), CONTACTS.c.id, CONTACTS.c.account_id]))`.
    """
    chosen = list(columns) if columns is not None else [_c.id]
    return select(*chosen).where(
        segments_filter(merchant_id, segments, exclude_opted_out=exclude_opted_out)
    )


def count_statement(segment: Segment) -> Select[Any]:
    return (
        select(func.count())
        .select_from(CONTACTS)
        .where(segments_filter(segment.merchant_id, [segment]))
    )


_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")


async def plan_with_values(session: AsyncSession) -> None:
    """Make PostgreSQL plan this transaction's segment statements with their actual values.

    psycopg prepares a statement once it has run 5 times on a connection, and PostgreSQL may
    then reuse a generic plan that is blind to the values: for a segment it picks the
    merchant-wide index over the tag and date ones and reads 3x the pages (45 ms → 160 ms at
    1,000,000 contacts). A segment's selectivity depends entirely on its values (a 5% tag or
    a 60% one, 7 days or a year), so a fresh plan per execution is worth its ~1 ms. Call it
    before running `compile_segment` statements (a campaign snapshot included)."""
    await session.execute(_CUSTOM_PLANS)


# Reading --------------------------------------------------------------------------------------


async def get_segment(
    session: AsyncSession, merchant_id: str, segment_id: uuid.UUID, *, for_update: bool = False
) -> Segment:
    return await get_owned(
        session, Segment, merchant_id, segment_id, resource="segment", for_update=for_update
    )


def list_statement(merchant_id: str, search: str | None) -> Any:
    statement = owned_by(Segment, merchant_id).order_by(
        Segment.created_at.desc(),  # type: ignore[attr-defined]
        Segment.id,  # type: ignore[arg-type]
    )
    if search:
        statement = statement.where(Segment.name.icontains(search, autoescape=True))  # type: ignore[attr-defined]
    return statement


async def count_contacts(session: AsyncSession, segments: Sequence[Segment]) -> list[int]:
    """Each segment's current contact count, in ONE statement (a scalar subquery per segment,
    each free to use its own indexes), in the order given."""
    if not segments:
        return []
    counts = [count_statement(s).scalar_subquery().label(f"c{i}") for i, s in enumerate(segments)]
    await plan_with_values(session)
    row = (await session.execute(select(*counts))).one()
    return [int(v) for v in row]


async def public(session: AsyncSession, segments: Sequence[Segment]) -> list[SegmentPublic]:
    counts = await count_contacts(session, segments)
    return [_public(s, n) for s, n in zip(segments, counts, strict=True)]


def _public(segment: Segment, contact_count: int) -> SegmentPublic:
    return SegmentPublic.model_validate(
        {
            "id": segment.id,
            "merchant_id": segment.merchant_id,
            "name": segment.name,
            "match": segment.match,
            "conditions": segment.conditions,
            "contact_count": contact_count,
            "created_at": segment.created_at,
            "updated_at": segment.updated_at,
        }
    )


def preview_statement(segment: Segment, limit: int) -> Select[Any]:
    """The `limit` most recently active matches, each row carrying the total number of matches,
    in ONE statement that finds the matches once.

    The matches (id and activity time only) are a MATERIALIZED CTE: counted, and their top
    `limit` joined back for the columns shown. Not `count(*) OVER ()` over the ordered rows:
    the planner costs that as if the LIMIT let it stop early and walks the list index through
    every contact of the merchant (380 ms instead of 50 ms at 1,000,000 contacts)."""
    matches = (
        compile_segment(segment.merchant_id, [segment], columns=[_c.id, _c.last_interaction_at])
        .cte("matches")
        .prefix_with("MATERIALIZED")
    )
    top = (
        select(matches.c.id, matches.c.last_interaction_at)
        .order_by(matches.c.last_interaction_at.desc().nulls_last(), matches.c.id)
        .limit(limit)
        .subquery("top")
    )
    total = select(func.count()).select_from(matches).scalar_subquery()
    return (
        select(
            _c.id,
            _c.username,
            _c.display_name,
            _c.tags,
            _c.attributes,
            total.label("total_matches"),
        )
        .select_from(top.join(CONTACTS, _c.id == top.c.id))
        .where(_c.merchant_id == segment.merchant_id)
        .order_by(top.c.last_interaction_at.desc().nulls_last(), top.c.id)
    )


async def preview(session: AsyncSession, segment: Segment, limit: int) -> SegmentPreview:
    """How many contacts match now, and the `limit` most recently active of them."""
    await plan_with_values(session)
    rows = (await session.execute(preview_statement(segment, limit))).all()
    return SegmentPreview(
        total_matches=rows[0].total_matches if rows else 0,  # no row: nothing matches
        preview=[
            SegmentContactSample(
                id=r.id,
                username=r.username,
                display_name=r.display_name,
                tags=list(r.tags),
                attributes=r.attributes,
            )
            for r in rows
        ],
    )


# Writing --------------------------------------------------------------------------------------


def _stored(conditions: Sequence[Any]) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json", by_alias=True) for c in conditions]


async def create_segment(session: AsyncSession, merchant_id: str, body: SegmentCreate) -> Segment:
    conditions_clause(body.conditions, body.match)  # validates: 422 naming the condition part
    segment = Segment(
        merchant_id=merchant_id,
        name=body.name,
        match=body.match,
        conditions=_stored(body.conditions),
    )
    session.add(segment)
    await session.flush()
    logger.info("segment.created", extra={"segment_id": str(segment.id)})
    return segment


async def update_segment(session: AsyncSession, segment: Segment, body: SegmentUpdate) -> Segment:
    changes = body.model_dump(exclude_unset=True)
    match = SegmentMatch(changes.get("match", segment.match))
    if body.conditions is not None:
        conditions_clause(body.conditions, match)
        segment.conditions = _stored(body.conditions)
    if "name" in changes:
        segment.name = changes["name"]
    segment.match = match
    session.add(segment)
    await session.flush()
    logger.info("segment.updated", extra={"segment_id": str(segment.id)})
    return segment


async def delete_segment(session: AsyncSession, segment: Segment) -> None:
    await ensure_not_in_use(session, segment)
    await session.delete(segment)
    await session.flush()
    logger.info("segment.deleted", extra={"segment_id": str(segment.id)})


# In use by campaigns ----------------------------------------------------------------------------

_usage = UsageChecks[Segment]("segment")
register_usage_check = _usage.register
unregister_usage_check = _usage.unregister
ensure_not_in_use = _usage.ensure_not_in_use
