"""Segment conditions → one SQL boolean expression over `contacts`, validated as it is built.

Each field has a kind, each kind a set of operators and value types. Negative operators
(`notEquals`, `notContains`, `notIn`, `notExists`) are the exact complement of their positive
twin: a contact without the value (no username, attribute absent) matches them.

Index use: tags go through `@>` / `&&` (GIN `ix_contacts_tags`); attribute equality, `in` and
`exists` through `@>` / `?` (GIN `ix_contacts_attributes`); dates through the btree
`(merchant_id, last_interaction_at)`. Numeric attribute comparisons extract the number only
from jsonb numbers (`jsonb_typeof = 'number'`), so a string or object stored under the same
key never raises a cast error: it simply does not match.

Username and display name compare case-insensitively; `contains` / `notContains` also ignore
accents, like the contacts search ("tran" finds "Trần"): both sides go through `mktx_fold`
(migration 0008). A substring test, which no index serves, folded or not.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Interval,
    Numeric,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    not_,
    or_,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.types import String, Text

from models.contact import Contact, ContactSource
from models.segment import SegmentCondition, SegmentMatch, SegmentOperator
from services.contacts.fields import tag_problem
from services.core.errors import ValidationFailed

Op = SegmentOperator
Clause = ColumnElement[bool]

CONTACTS = Contact.__table__  # type: ignore[attr-defined]
_c = CONTACTS.c

ATTRIBUTE_PREFIX = "attributes."
MAX_ATTRIBUTE_KEY = 64  # as contacts store them
MAX_LIST = 500
MAX_STRING = 256
MAX_DAYS = 36_500


class FieldKind(StrEnum):
    tags = "tags"
    attribute = "attribute"
    text = "text"
    source = "source"
    account = "account"
    flag = "flag"
    date = "date"
    counter = "counter"


_FIELDS: dict[str, tuple[FieldKind, Any]] = {
    "tags": (FieldKind.tags, _c.tags),
    "username": (FieldKind.text, _c.username),
    "displayName": (FieldKind.text, _c.display_name),
    "source": (FieldKind.source, _c.source),
    "accountId": (FieldKind.account, _c.account_id),
    "optedOut": (FieldKind.flag, _c.opted_out),
    "firstInteractionAt": (FieldKind.date, _c.first_interaction_at),
    "lastInteractionAt": (FieldKind.date, _c.last_interaction_at),
    "conversationCount": (FieldKind.counter, _c.conversation_count),
}

_COMPARISONS = (
    Op.greater_than,
    Op.greater_than_or_equal,
    Op.less_than,
    Op.less_than_or_equal,
)
_PRESENCE = (Op.exists, Op.not_exists)
_MEMBERSHIP = (Op.in_, Op.not_in)

OPERATORS: dict[FieldKind, tuple[Op, ...]] = {
    FieldKind.tags: (Op.contains, Op.not_contains, *_MEMBERSHIP, *_PRESENCE),
    FieldKind.attribute: (
        Op.equals,
        Op.not_equals,
        Op.contains,
        Op.not_contains,
        *_MEMBERSHIP,
        *_COMPARISONS,
        *_PRESENCE,
    ),
    FieldKind.text: (
        Op.equals,
        Op.not_equals,
        Op.contains,
        Op.not_contains,
        *_MEMBERSHIP,
        *_PRESENCE,
    ),
    FieldKind.source: (Op.equals, Op.not_equals, *_MEMBERSHIP),
    FieldKind.account: (Op.equals, Op.not_equals, *_MEMBERSHIP),
    FieldKind.flag: (Op.equals, Op.not_equals),
    FieldKind.date: (Op.before, Op.after, Op.within_last_days, *_PRESENCE),
    FieldKind.counter: (Op.equals, Op.not_equals, *_COMPARISONS, *_MEMBERSHIP),
}

FIELD_NAMES = (*_FIELDS, "attributes.<key>")


# Values ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _At:
    """Where a condition sits in the request, to name what is wrong with it."""

    index: int

    def name(self, part: str) -> str:
        return f"conditions[{self.index}].{part}"

    def bad_value(self, reason: str) -> ValidationFailed:
        return ValidationFailed(self.name("value"), reason)


def _string(at: _At, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_STRING:
        raise at.bad_value(f"must be a string of 1 to {MAX_STRING} characters")
    return value


def _tag(at: _At, value: Any) -> str:
    # Normalised as contacts store them: a condition on "VIP " means the tag "vip".
    tag, problem = tag_problem(_string(at, value))
    if tag is None:
        raise at.bad_value(problem or "invalid tag")
    return tag


def _number(at: _At, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise at.bad_value("must be a number")
    return Decimal(str(value))


def _scalar(at: _At, value: Any) -> str | int | float | bool:
    if isinstance(value, bool | int | float) and not (
        isinstance(value, float) and not math.isfinite(value)
    ):
        return value
    if isinstance(value, str) and len(value) <= MAX_STRING:
        return value
    raise at.bad_value(f"must be a string (up to {MAX_STRING} characters), a number or a boolean")


def _boolean(at: _At, value: Any) -> bool:
    if not isinstance(value, bool):
        raise at.bad_value("must be true or false")
    return value


def _account(at: _At, value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(value) if isinstance(value, str) else uuid.UUID("")
    except ValueError:
        raise at.bad_value("must be an account id (UUID)") from None


def _source(at: _At, value: Any) -> str:
    allowed = [s.value for s in ContactSource]
    if not isinstance(value, str) or value not in allowed:
        raise at.bad_value(f"must be one of {', '.join(allowed)}")
    return value


def _datetime(at: _At, value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise at.bad_value("must be an ISO 8601 date-time such as 2026-01-01T00:00:00Z")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _days(at: _At, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DAYS:
        raise at.bad_value(f"must be a whole number of days from 1 to {MAX_DAYS}")
    return value


def _list(at: _At, value: Any, item: Callable[[_At, Any], Any]) -> list[Any]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
        raise at.bad_value(f"must be a list of 1 to {MAX_LIST} values")
    return [item(at, v) for v in value]


def _absent(at: _At, value: Any) -> None:
    if value is not None:
        raise at.bad_value("takes no value")


# Clauses per field kind -------------------------------------------------------------------------


def _negate(clause: Clause, *, nullable: bool) -> Clause:
    """The complement: where the positive clause can be NULL (value absent), NULL counts as false."""
    return not_(func.coalesce(clause, false())) if nullable else not_(clause)


def _tag_array(values: list[str]) -> ColumnElement[Any]:
    # Typed like the column (varchar[]) so the planner picks the GIN index.
    return cast(literal(values, ARRAY(String)), ARRAY(String))


def _tags(at: _At, op: Op, value: Any) -> Clause:
    column = _c.tags
    if op in _PRESENCE:
        _absent(at, value)
        has = func.cardinality(column) > 0
        return has if op is Op.exists else not_(has)
    if op in (Op.contains, Op.not_contains):
        # One tag, or a list that must all be present.
        values = _list(at, value, _tag) if isinstance(value, list) else [_tag(at, value)]
        clause = column.op("@>")(_tag_array(values))
    else:
        clause = column.op("&&")(_tag_array(_list(at, value, _tag)))
    return clause if op in (Op.contains, Op.in_) else not_(clause)


def _attribute(key: str, at: _At, op: Op, value: Any) -> Clause:
    attributes = _c.attributes
    element = attributes[key]

    def has(v: Any) -> Clause:
        return attributes.op("@>")(literal({key: v}, JSONB))  # type: ignore[no-any-return]

    if op in _PRESENCE:
        _absent(at, value)
        exists = attributes.op("?")(literal(key, String))
        return exists if op is Op.exists else not_(exists)  # type: ignore[no-any-return]
    if op in (Op.equals, Op.not_equals):
        clause = has(_scalar(at, value))
        return clause if op is Op.equals else not_(clause)
    if op in _MEMBERSHIP:
        clause = or_(*(has(v) for v in _list(at, value, _scalar)))
        return clause if op is Op.in_ else not_(clause)
    if op in (Op.contains, Op.not_contains):
        needle = _scalar(at, value)
        clause = has([needle])  # an array holding the value
        if isinstance(needle, str):
            # ... or a string value holding it (case-insensitive).
            in_text = and_(
                func.jsonb_typeof(element) == "string",
                element.astext.icontains(needle, autoescape=True),
            )
            clause = or_(clause, in_text)
        return clause if op is Op.contains else _negate(clause, nullable=True)
    # Comparisons: numbers only; anything else stored under the key is NULL here.
    number = case(
        (func.jsonb_typeof(element) == "number", element.astext.cast(Numeric)), else_=None
    )
    return _compare(number, op, _number(at, value))


def _compare(expression: Any, op: Op, value: Any) -> Clause:
    if op is Op.greater_than:
        return expression > value  # type: ignore[no-any-return]
    if op is Op.greater_than_or_equal:
        return expression >= value  # type: ignore[no-any-return]
    if op is Op.less_than:
        return expression < value  # type: ignore[no-any-return]
    return expression <= value  # type: ignore[no-any-return]


def _text(column: Any, at: _At, op: Op, value: Any) -> Clause:
    if op in _PRESENCE:
        _absent(at, value)
        return column.is_not(None) if op is Op.exists else column.is_(None)  # type: ignore[no-any-return]
    lowered = func.lower(column)  # usernames and names compare case-insensitively
    if op in (Op.equals, Op.not_equals):
        clause = lowered == _string(at, value).lower()
    elif op in _MEMBERSHIP:
        clause = lowered.in_([v.lower() for v in _list(at, value, _string)])
    else:
        clause = _folded_contains(column, _string(at, value))
    positive = op in (Op.equals, Op.in_, Op.contains)
    return clause if positive else _negate(clause, nullable=True)


def _folded(value: Any) -> ColumnElement[str]:
    """mktx_fold (migration 0008), as the contacts search folds: lowercase, accents off."""
    return func.mktx_fold(value, type_=Text)


def _folded_contains(column: Any, needle: str) -> Clause:
    """The needle anywhere in the value, case and accents ignored ("tran" finds "Trần"), both
    sides folded by the database. `%` and `_` in the needle are literal characters (the
    escapes are ASCII, which folding keeps)."""
    escaped = needle.replace("/", "//").replace("%", "/%").replace("_", "/_")
    pattern = literal("%", Text) + _folded(literal(escaped, Text)) + literal("%", Text)
    return _folded(column).like(pattern, escape="/")


def _exact(column: Any, parse: Callable[[_At, Any], Any], at: _At, op: Op, value: Any) -> Clause:
    """equals / notEquals / in / notIn on a NOT NULL column."""
    if op in (Op.equals, Op.not_equals):
        clause = column == parse(at, value)
        return clause if op is Op.equals else not_(clause)  # type: ignore[no-any-return]
    clause = column.in_(_list(at, value, parse))
    return clause if op is Op.in_ else not_(clause)  # type: ignore[no-any-return]


def _date(column: Any, at: _At, op: Op, value: Any) -> Clause:
    if op in _PRESENCE:
        _absent(at, value)
        return column.is_not(None) if op is Op.exists else column.is_(None)  # type: ignore[no-any-return]
    if op is Op.within_last_days:
        # now() of the statement: a campaign snapshot and a count agree on "the last N days".
        since = func.now() - literal(timedelta(days=_days(at, value)), Interval)
        return column >= since  # type: ignore[no-any-return]
    moment = _datetime(at, value)
    return column < moment if op is Op.before else column > moment  # type: ignore[no-any-return]


def _count(column: Any, at: _At, op: Op, value: Any) -> Clause:
    if op in (Op.equals, Op.not_equals, *_MEMBERSHIP):
        return _exact(column, _number, at, op, value)
    return _compare(column, op, _number(at, value))


# Conditions → one expression ------------------------------------------------------------------


def _resolve(at: _At, field: str) -> tuple[FieldKind, Any]:
    if field.startswith(ATTRIBUTE_PREFIX):
        key = field.removeprefix(ATTRIBUTE_PREFIX)
        if not key.strip() or len(key) > MAX_ATTRIBUTE_KEY:
            raise ValidationFailed(
                at.name("field"),
                f"'{field}': name an attribute key of 1 to {MAX_ATTRIBUTE_KEY} characters",
            )
        return FieldKind.attribute, key
    if field not in _FIELDS:
        raise ValidationFailed(
            at.name("field"), f"unknown field '{field}'; use one of {', '.join(FIELD_NAMES)}"
        )
    return _FIELDS[field]


def condition_clause(index: int, condition: SegmentCondition) -> Clause:
    """One condition as SQL, or ValidationFailed naming `conditions[index].<part>`."""
    at = _At(index)
    kind, target = _resolve(at, condition.field)
    op = condition.operator
    if op not in OPERATORS[kind]:
        allowed = ", ".join(o.value for o in OPERATORS[kind])
        raise ValidationFailed(
            at.name("operator"),
            f"'{op.value}' does not apply to {condition.field}; use one of {allowed}",
        )
    value = condition.value
    if op not in _PRESENCE and value is None:
        raise at.bad_value(f"is required for {op.value}")
    match kind:
        case FieldKind.tags:
            return _tags(at, op, value)
        case FieldKind.attribute:
            return _attribute(target, at, op, value)
        case FieldKind.text:
            return _text(target, at, op, value)
        case FieldKind.source:
            return _exact(target, _source, at, op, value)
        case FieldKind.account:
            return _exact(target, _account, at, op, value)
        case FieldKind.flag:
            return _exact(target, _boolean, at, op, value)
        case FieldKind.date:
            return _date(target, at, op, value)
        case FieldKind.counter:
            return _count(target, at, op, value)


def conditions_clause(
    conditions: Sequence[SegmentCondition | Mapping[str, Any]], match: SegmentMatch
) -> Clause:
    """All conditions (AND) or any of them (OR); no condition at all matches every contact."""
    clauses = [
        condition_clause(
            i, c if isinstance(c, SegmentCondition) else SegmentCondition.model_validate(c)
        )
        for i, c in enumerate(conditions)
    ]
    if not clauses:
        return true()
    return or_(*clauses) if match is SegmentMatch.any else and_(*clauses)
