"""Listing a merchant's contacts: filters, order, one page and the total, shaped for the indexes.

Two indexes (proposed for migration 0003, see `bench/contacts_list.py` PROPOSED_DDL) carry it:

- `ix_contacts_merchant_list` btree (merchant_id, last_interaction_at DESC NULLS LAST, id)
  INCLUDE (account_id, tags, search_vector): the list order, with what the filters read. A page
  is a walk along it (index only: the table is read for the page's rows alone).
- `ix_contacts_scope_filters` GIN ((ARRAY['m:' || merchant_id, 'a:' || account_id::text]),
  tags, search_vector): one scan gives exactly the merchant's (or account's) rows with the tags
  and search words asked for, so a filtered total is counted without touching the table.

A walk is quick when matches are frequent and slow when they are rare (a search matching nobody
would walk every contact of the merchant); reading the GIN scan's rows is the reverse. The
filtered total is counted first, and it picks the page's plan.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, bindparam, cast, false, func, text
from sqlalchemy import literal_column as sql
from sqlalchemy import select as select_values
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from models.contact import Contact
from services.contacts.fields import normalise_tag
from services.core.errors import ValidationFailed
from services.core.tenancy import owned_by

MAX_FILTER_TAGS = 20
MAX_SEARCH_LENGTH = 100
# Up to this many matches, a page is read from the GIN scan's rows (each read, then sorted);
# above it, from a walk along the list order (an index-only walk of ~take x contacts / matches
# entries). Both stay around a few thousand row reads at worst for 1,000,000 contacts.
GIN_PAGE_LIMIT = 1_000


@dataclass(frozen=True, slots=True)
class ContactFilter:
    account_id: uuid.UUID | None = None
    tags: list[str] = field(default_factory=list)  # contacts having all of them
    search: str = ""  # word prefixes in username or display name

    @property
    def narrows(self) -> bool:
        return bool(self.tags or self.search)

    def conditions(self, *, account: bool = True) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if account and self.account_id is not None:
            conditions.append(col(Contact.account_id) == self.account_id)
        if self.tags:
            conditions.append(col(Contact.tags).contains(self.tags))  # tags @> ARRAY[...]
        if self.search:
            conditions.append(search_condition(self.search))
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
# search_vector), and each word becomes a quoted prefix lexeme: 'cust':* & 'jo':*. Nothing the
# caller types is parsed as tsquery syntax. The subquery runs once (an InitPlan), and the GIN
# index answers the match.
_SEARCH_MATCH = text(
    "contacts.search_vector @@ (SELECT to_tsquery('simple', coalesce(string_agg("
    "'''' || replace(replace(lexeme, '\\', '\\\\'), '''', '''''') || ''':*', ' & '), '')) "
    "FROM unnest(to_tsvector('simple', mktx_fold(:search))))"
)


def search_condition(term: str) -> ColumnElement[bool]:
    if not any(ch.isalnum() for ch in term):
        return false()  # no word to look for: nothing matches
    return _SEARCH_MATCH.bindparams(search=term)  # type: ignore[return-value]


# The first column of ix_contacts_scope_filters, spelled exactly as in the index (no bound
# parameters inside) so that the planner matches it. `scope @> ARRAY['m:<merchant>']` holds
# exactly when merchant_id = <merchant>: it is the tenant condition of the GIN plans.
_SCOPE: ColumnElement[Any] = sql(
    "ARRAY['m:' || contacts.merchant_id, 'a:' || contacts.account_id::text]"
)


def _in_scope(merchant_id: str, account_id: uuid.UUID | None) -> ColumnElement[bool]:
    scope = [f"m:{merchant_id}"] + ([f"a:{account_id}"] if account_id is not None else [])
    return _SCOPE.op("@>")(cast(bindparam("scope", scope, type_=ARRAY(Text)), ARRAY(Text)))


def _ordered(statement: SelectOfScalar[Contact]) -> SelectOfScalar[Contact]:
    """Newest interaction first; contacts never talked with (e.g. imported) last."""
    return statement.order_by(col(Contact.last_interaction_at).desc().nulls_last(), col(Contact.id))


def walk_statement(
    merchant_id: str, filters: ContactFilter, *, skip: int, take: int
) -> SelectOfScalar[Contact]:
    """Along ix_contacts_merchant_list: the page's ids from the index alone (skipped and refused
    rows cost an index entry, not a table read), then those rows."""
    ids = (
        select(col(Contact.id))
        .where(col(Contact.merchant_id) == merchant_id, *filters.conditions())
        .order_by(col(Contact.last_interaction_at).desc().nulls_last(), col(Contact.id))
        .offset(skip)
        .limit(take)
        .subquery("page")
    )
    return _ordered(owned_by(Contact, merchant_id).join(ids, col(Contact.id) == ids.c.id))


def gin_statement(merchant_id: str, filters: ContactFilter) -> SelectOfScalar[Contact]:
    """The rows of one ix_contacts_scope_filters scan, sorted. No `merchant_id = ...` here: it
    would let the planner walk the list index instead, which is what this plan avoids."""
    return _ordered(
        select(Contact).where(
            _in_scope(merchant_id, filters.account_id), *filters.conditions(account=False)
        )
    )


def count_statement(merchant_id: str, filters: ContactFilter) -> Select[int]:
    statement = select_values(func.count()).select_from(Contact)
    if filters.narrows:
        return statement.where(
            _in_scope(merchant_id, filters.account_id), *filters.conditions(account=False)
        )
    # Unfiltered: an index-only count over the merchant's btree entries.
    return statement.where(col(Contact.merchant_id) == merchant_id, *filters.conditions())


async def list_contacts(
    session: AsyncSession, merchant_id: str, filters: ContactFilter, *, skip: int, take: int
) -> tuple[list[Contact], int]:
    """One page of the merchant's contacts and how many match in all."""
    walk = walk_statement(merchant_id, filters, skip=skip, take=take)
    if not filters.narrows:
        rows = await _rows(session, walk)
        if len(rows) < take and (rows or skip == 0):
            return rows, skip + len(rows)  # a short page tells the total
        return rows, (await session.execute(count_statement(merchant_id, filters))).scalar_one()
    # Keeps the bitmap of a large match exact, so no row is rechecked against the table (with
    # the default 4 MB it turns lossy from ~100,000 matches on). This transaction only.
    await session.execute(text("SET LOCAL work_mem = '32MB'"))
    total = (await session.execute(count_statement(merchant_id, filters))).scalar_one()
    if total <= skip:
        return [], total
    if total <= GIN_PAGE_LIMIT:
        return await _rows(
            session, gin_statement(merchant_id, filters).offset(skip).limit(take)
        ), total
    return await _rows(session, walk), total


async def _rows(session: AsyncSession, statement: SelectOfScalar[Contact]) -> list[Contact]:
    return list((await session.exec(statement)).all())
