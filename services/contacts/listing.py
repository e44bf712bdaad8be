"""Listing a merchant's contacts: filters, order, one page and the total, shaped for the indexes.

Two indexes carry it:

- `ix_contacts_merchant_list` btree (merchant_id, last_interaction_at DESC NULLS LAST, id)
  INCLUDE (account_id, tags, search_vector): the list order, with what the filters read. A page
  is a walk along it (index only: the table is read for the page's rows alone), and so is the
  count of a broad filter.
- `ix_contacts_scope_filters` GIN ((ARRAY['m:' || merchant_id, 'a:' || account_id::text]),
  tags, mktx_word_prefixes(search_vector)) (migration 0015): one scan gives exactly the
  merchant's (or account's) rows with the tags and search words asked for, each word an exact
  key (its first letters), however many words.

A walk is quick when matches are frequent and slow when they are rare (a search matching nobody
would walk every contact of the merchant); reading the GIN scan's rows (each one from the table)
is the reverse. Totals are exact up to `services.core.totals.EXACT_TOTAL_LIMIT` and the
planner's estimate above: the estimate decides how the capped count reads — along the walk when
matches are frequent, through the GIN scan otherwise — and the count picks the page's plan.
A single tag's total is not counted at all: the tag counts analytics keeps give it exactly,
whatever its size (services/contacts/tag_counts.py), while they are folded.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, Text, bindparam, cast, false, text
from sqlalchemy import literal_column as sql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from models.contact import Contact
from services.contacts.fields import normalise_tag
from services.contacts.tag_counts import tag_total
from services.core import totals
from services.core.errors import ValidationFailed
from services.core.tenancy import owned_by
from services.core.totals import Total

MAX_FILTER_TAGS = 20
MAX_SEARCH_LENGTH = 100
# Up to this many matches, a page is read from the GIN scan's rows (each read, then sorted);
# above it, from a walk along the list order (an index-only walk of ~take x contacts / matches
# entries). Both stay around a few thousand row reads at worst for 1,000,000 contacts.
GIN_PAGE_LIMIT = 1_000
# When the planner expects at least this share of the merchant's contacts to match, the total
# is counted along the walk (index only, ~0.5 µs an entry: at most EXACT_TOTAL_LIMIT / share
# entries), else through the GIN scan (whose every match is read from the table, ~3 µs each).
WALK_COUNT_SHARE = 0.15

# How a search's words are spelled in SQL, by the plan that runs it (see _WORDS).
Words = Literal["plain", "walk", "gin"]


@dataclass(frozen=True, slots=True)
class ContactFilter:
    account_id: uuid.UUID | None = None
    tags: list[str] = field(default_factory=list)  # contacts having all of them
    search: str = ""  # word prefixes in username or display name

    @property
    def narrows(self) -> bool:
        return bool(self.tags or self.search)

    def conditions(
        self, words: Words = "plain", *, account: bool = True
    ) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if account and self.account_id is not None:
            conditions.append(col(Contact.account_id) == self.account_id)
        if self.tags:
            conditions.append(col(Contact.tags).contains(self.tags))  # tags @> ARRAY[...]
        if self.search:
            conditions.append(search_condition(self.search, words))
        return conditions


def contact_filter(
    account_id: uuid.UUID | None = None, tags: str | None = None, search: str | None = None
) -> ContactFilter:
    """From the query string: `tags=vip, Customer` (comma-separated), `search=jo cust`."""
    term = (search or "").strip()
    if len(term) > MAX_SEARCH_LENGTH:
        raise ValidationFailed("search", f"must be at most {MAX_SEARCH_LENGTH} characters")
    return ContactFilter(account_id=account_id, tags=parse_tag_filter(tags or ""), search=term)


def parse_tag_filter(raw: str) -> list[str]:
    """`vip, Customer` -> ["vip", "customer"]; empty items are ignored, bad ones are a 422."""
    items = [item for item in raw.split(",") if item.strip()]
    if len(items) > MAX_FILTER_TAGS:
        raise ValidationFailed("tags", f"at most {MAX_FILTER_TAGS} tags")
    tags: list[str] = []
    for item in items:
        tag = normalise_tag(item, "tags")
        if tag not in tags:
            tags.append(tag)
    return tags


# The search term is folded like search_vector's words (mktx_fold, migration 0008: "Trần" and
# "TRAN" both look for tran), split into words by PostgreSQL's own parser (the one that built
# search_vector), and each word becomes a quoted prefix lexeme: 'cust':* & 'jo':*
# (mktx_prefix_query, migration 0015). Nothing the caller types is parsed as tsquery syntax. The
# functions are IMMUTABLE: the planner evaluates them on the bound term, and so estimates the
# match from the column statistics. Three spellings of the same match:
# - "plain": what the planner estimates best (the estimates, never run);
# - "walk": checked on each entry of the list index (coalesce() keeps the planner from
#   answering it with a GIN partial match instead, which costs ~0.5 µs per row of every
#   key starting with a word: ~80 ms for `trần thị`);
# - "gin": each word's first letters as one exact key of ix_contacts_scope_filters
#   (mktx_prefix_keys), the whole words checked on the rows it gives.
_WORDS: dict[Words, str] = {
    "plain": "contacts.search_vector @@ mktx_prefix_query(:search)",
    "walk": "coalesce(contacts.search_vector @@ mktx_prefix_query(:search), false)",
    "gin": "mktx_word_prefixes(contacts.search_vector) @> mktx_prefix_keys(:search) "
    "AND coalesce(contacts.search_vector @@ mktx_prefix_query(:search), false)",
}


def search_condition(term: str, words: Words = "plain") -> ColumnElement[bool]:
    if not any(ch.isalnum() for ch in term):
        return false()  # no word to look for: nothing matches
    return text(_WORDS[words]).bindparams(search=term)  # type: ignore[return-value]


# The first column of ix_contacts_scope_filters, spelled exactly as in the index (no bound
# parameters inside) so that the planner matches it. `scope @> ARRAY['m:<merchant>']` holds
# exactly when merchant_id = <merchant>: it is the tenant condition of the GIN plans.
_SCOPE: ColumnElement[Any] = sql(
    "ARRAY['m:' || contacts.merchant_id, 'a:' || contacts.account_id::text]"
)


def _in_scope(merchant_id: str, account_id: uuid.UUID | None) -> ColumnElement[bool]:
    scope = [f"m:{merchant_id}"] + ([f"a:{account_id}"] if account_id is not None else [])
    return _SCOPE.op("@>")(cast(bindparam("scope", scope, type_=ARRAY(Text)), ARRAY(Text)))


_FILTERED_SETTINGS = text(
    "SELECT set_config('work_mem', '32MB', true), "
    "set_config('plan_cache_mode', 'force_custom_plan', true)"
)

_LIST_ORDER = (col(Contact.last_interaction_at).desc().nulls_last(), col(Contact.id))


def _ordered(statement: SelectOfScalar[Contact]) -> SelectOfScalar[Contact]:
    """Newest interaction first; contacts never talked with (e.g. imported) last."""
    return statement.order_by(*_LIST_ORDER)


def walk_ids(merchant_id: str, filters: ContactFilter) -> Select[Any]:
    """The matches' ids in list order, along ix_contacts_merchant_list (index only)."""
    return (
        select(col(Contact.id))
        .where(col(Contact.merchant_id) == merchant_id, *filters.conditions("walk"))
        .order_by(*_LIST_ORDER)
    )


def walk_statement(
    merchant_id: str, filters: ContactFilter, *, skip: int, take: int
) -> SelectOfScalar[Contact]:
    """Along ix_contacts_merchant_list: the page's ids from the index alone (skipped and refused
    rows cost an index entry, not a table read), then those rows."""
    ids = walk_ids(merchant_id, filters).offset(skip).limit(take).subquery("page")
    return _ordered(owned_by(Contact, merchant_id).join(ids, col(Contact.id) == ids.c.id))


def _gin_conditions(merchant_id: str, filters: ContactFilter) -> list[ColumnElement[bool]]:
    """What one ix_contacts_scope_filters scan answers. No `merchant_id = ...` here: it would
    let the planner walk the list index instead, which is what this plan avoids."""
    return [_in_scope(merchant_id, filters.account_id), *filters.conditions("gin", account=False)]


def gin_statement(merchant_id: str, filters: ContactFilter) -> SelectOfScalar[Contact]:
    """The rows of one ix_contacts_scope_filters scan, sorted."""
    return _ordered(select(Contact).where(*_gin_conditions(merchant_id, filters)))


def gin_ids(merchant_id: str, filters: ContactFilter) -> Select[Any]:
    return select(col(Contact.id)).where(*_gin_conditions(merchant_id, filters))


def matches_statement(merchant_id: str, filters: ContactFilter) -> Select[Any]:
    """The matches as the planner estimates them best (for EXPLAIN; never run). With an account,
    the account alone: the planner takes merchant and account for independent conditions and
    would multiply their shares (an account's contacts are all its merchant's). A total says
    the estimate only once the capped count, scoped to the merchant, found more than the
    limit: another merchant's account counts 0, exactly."""
    if filters.account_id is not None:
        return select(col(Contact.id)).where(*filters.conditions("plain"))
    return select(col(Contact.id)).where(
        col(Contact.merchant_id) == merchant_id, *filters.conditions("plain")
    )


async def list_contacts(
    session: AsyncSession, merchant_id: str, filters: ContactFilter, *, skip: int, take: int
) -> tuple[list[Contact], Total]:
    """One page of the merchant's contacts and how many match in all."""
    walk = walk_statement(merchant_id, filters, skip=skip, take=take)
    if not filters.narrows:
        rows = await _rows(session, walk)
        known = totals.known_total(skip, take, len(rows))
        if known is not None:
            return rows, known
        counted = await totals.capped_count(session, walk_ids(merchant_id, filters), ordered=True)
        if counted <= totals.EXACT_TOTAL_LIMIT:
            return rows, Total(counted)
        planned = await totals.estimated_rows(session, matches_statement(merchant_id, filters))
        return rows, totals.settle(counted, planned, seen=skip + len(rows) if rows else 0)
    # For this transaction only: a bitmap of a large match stays exact, so no row is rechecked
    # against the table (with the default 4 MB it turns lossy from ~100,000 matches on); and
    # every statement is planned for its values — the driver prepares a statement run often,
    # and a generic plan knows neither the search words nor how many contacts they match (it
    # counted `john` in ~115 ms instead of ~35 ms).
    await session.execute(_FILTERED_SETTINGS)
    total = await _total(session, merchant_id, filters)
    if not total.is_estimate and total.value <= skip:
        return [], total
    if not total.is_estimate and total.value <= GIN_PAGE_LIMIT:
        return await _rows(
            session, gin_statement(merchant_id, filters).offset(skip).limit(take)
        ), total
    rows = await _rows(session, walk)
    if total.is_estimate and rows:  # a short page is the end of the list: the total is known
        known = totals.known_total(skip, take, len(rows))
        total = known or Total(max(total.value, skip + len(rows)), is_estimate=True)
    return rows, total


async def _total(session: AsyncSession, merchant_id: str, filters: ContactFilter) -> Total:
    """How many contacts match a narrowing filter, by the rule of the module docstring."""
    if len(filters.tags) == 1 and not filters.search:
        kept = await tag_total(session, merchant_id, filters.tags[0], filters.account_id)
        if kept is not None:
            return Total(kept)
    planned = await totals.estimated_rows(session, matches_statement(merchant_id, filters))
    everyone = await totals.estimated_rows(session, matches_statement(merchant_id, ContactFilter()))
    if planned >= WALK_COUNT_SHARE * everyone:
        counted = await totals.capped_count(session, walk_ids(merchant_id, filters), ordered=True)
    else:
        counted = await totals.capped_count(session, gin_ids(merchant_id, filters))
    return totals.settle(counted, planned)


async def _rows(session: AsyncSession, statement: SelectOfScalar[Contact]) -> list[Contact]:
    return list((await session.exec(statement)).all())
