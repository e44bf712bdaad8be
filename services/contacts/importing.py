"""Bulk contact import: CSV or JSON lines in, upserts in chunks (one transaction each) out.

A record that cannot be stored is rejected with its reason; the others still land. Importing the
same file twice changes nothing the second time (its records come back as `unchanged`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import islice
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from models.contact import ContactImportResult, ImportRejection
from services.contacts import tag_events
from services.contacts.fields import AttributesRefused, encode_attributes, tag_problem
from services.core.errors import ValidationFailed
from services.core.text import NUL_REASON, first_unstorable

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 50 * 1024 * 1024
CHUNK_SIZE = 5_000
MAX_REPORTED_REJECTIONS = 100

_TWITTER_USER_ID = re.compile(r"^[0-9]{1,32}$")
_USERNAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
MAX_DISPLAY_NAME = 256


class ImportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


_CONTENT_TYPES = {
    "text/csv": ImportFormat.csv,
    "application/csv": ImportFormat.csv,
    "application/x-ndjson": ImportFormat.jsonl,
    "application/jsonl": ImportFormat.jsonl,
    "application/x-jsonlines": ImportFormat.jsonl,
    "application/jsonlines": ImportFormat.jsonl,
}


def import_format(content_type: str | None) -> ImportFormat:
    media_type = (content_type or "").split(";")[0].strip().lower()
    found = _CONTENT_TYPES.get(media_type)
    if found is None:
        raise ValidationFailed(
            "Content-Type",
            "must be text/csv or application/x-ndjson (JSON lines)",
            status=415,
        )
    return found


@dataclass(frozen=True, slots=True)
class ImportRecord:
    row: int
    twitter_user_id: str
    username: str | None
    display_name: str | None
    tags: list[str]
    attributes_json: str  # a JSON object, validated


@dataclass(frozen=True, slots=True)
class Rejected:
    row: int
    reason: str


Parsed = ImportRecord | Rejected


# Parsing ------------------------------------------------------------------------------------

_FIELDS = {"twitteruserid": "twitterUserId", "username": "username"}
_FIELDS |= {"displayname": "displayName", "tags": "tags", "attributes": "attributes"}


def _field_key(name: str) -> str:
    """Header spellings people use: twitterUserId, twitter_user_id, "Twitter User ID"."""
    return re.sub(r"[\s_-]", "", name).lower()


def parse_records(body: bytes, fmt: ImportFormat) -> Iterator[Parsed]:
    """Records of the body, each valid or rejected. Problems with the whole file (encoding,
    CSV header) raise ValidationFailed here, before anything is stored."""
    try:
        content = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed("body", f"must be UTF-8 text (byte {exc.start})") from None
    if "\x00" in content:  # no text column can hold it: the file is not text
        line = content.count("\n", 0, content.index("\x00")) + 1
        raise ValidationFailed("body", f"{NUL_REASON}, found on line {line}")
    records = _csv_records(content) if fmt is ImportFormat.csv else _jsonl_records(content)
    return _unique(records)


def _unique(records: Iterator[Parsed]) -> Iterator[Parsed]:
    # A record's upsert may touch a contact once per statement; later duplicates are refused.
    first_row: dict[str, int] = {}
    for record in records:
        if isinstance(record, ImportRecord):
            seen = first_row.setdefault(record.twitter_user_id, record.row)
            if seen != record.row:
                yield Rejected(record.row, f"twitterUserId repeats row {seen}")
                continue
        yield record


def _csv_records(content: str) -> Iterator[Parsed]:
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        # The first line that is not blank ("" or blank lines only: nothing to import).
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
    except csv.Error as exc:
        raise ValidationFailed("header", f"unreadable CSV: {exc}") from None
    if header is None:
        return iter(())
    columns: list[tuple[str, str]] = []  # (field, attribute key or "")
    for index, name in enumerate(header):
        stripped = name.strip()
        if stripped.lower().startswith("attributes."):
            key = stripped[len("attributes.") :].strip()
            if not key:
                raise ValidationFailed(f"header[{index}]", "attributes. needs a key after it")
            columns.append(("attribute", key))
            continue
        known = _FIELDS.get(_field_key(stripped))
        if known is None:
            raise ValidationFailed(
                f"header[{index}]",
                f"unknown column {stripped!r}: use twitterUserId, username, displayName, "
                "tags, attributes or attributes.<key>",
            )
        columns.append((known, ""))
    if ("twitterUserId", "") not in columns:
        raise ValidationFailed("header", "a twitterUserId column is required")
    return _csv_rows(reader, columns)


def _csv_rows(reader: Any, columns: list[tuple[str, str]]) -> Iterator[Parsed]:
    row_number = 0
    while True:
        try:
            cells: list[str] = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field over the csv module's limit; the rest reads on
            row_number += 1
            yield Rejected(row_number, f"unreadable CSV: {exc}")
            continue
        if not any(cell.strip() for cell in cells):
            continue  # blank lines are not records
        row_number += 1
        yield _csv_record(row_number, cells, columns)


def _csv_record(row: int, cells: list[str], columns: list[tuple[str, str]]) -> Parsed:
    if len(cells) > len(columns):
        return Rejected(row, f"{len(cells)} cells for {len(columns)} columns")
    values: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for (name, key), cell in zip(columns, cells, strict=False):
        if name == "attribute":
            if cell != "":
                attributes[key] = cell
        elif name == "tags":
            values["tags"] = [tag for tag in re.split(r"[;|]", cell) if tag.strip()]
        elif name == "attributes":
            if cell.strip():
                try:
                    values["attributes"] = json.loads(cell)
                except ValueError:
                    return Rejected(row, "attributes: not valid JSON")
        else:
            values[name] = cell
    if attributes:
        base = values.get("attributes", {})
        values["attributes"] = {**base, **attributes} if isinstance(base, dict) else base
    return _record(row, values)


def _jsonl_records(content: str) -> Iterator[Parsed]:
    row_number = 0
    for line in content.splitlines():
        if not line.strip():
            continue
        row_number += 1
        try:
            raw = json.loads(line)
        except ValueError:
            yield Rejected(row_number, "not valid JSON")
            continue
        if not isinstance(raw, dict):
            yield Rejected(row_number, "must be a JSON object")
            continue
        values: dict[str, Any] = {}
        unknown = None
        for name, value in raw.items():
            known = _FIELDS.get(_field_key(str(name)))
            if known is None:
                unknown = name
                break
            values[known] = value
        if unknown is not None:
            yield Rejected(row_number, f"unknown field {str(unknown)[:64]!r}")
            continue
        yield _record(row_number, values)


def _record(row: int, values: dict[str, Any]) -> Parsed:
    # A JSON line's escapes (\u0000, \ud800) decode to text no column can hold.
    unstorable = first_unstorable(values)
    if unstorable is not None:
        place, reason = unstorable
        return Rejected(row, f"{'.'.join(str(part) for part in place)}: {reason}")
    user_id = values.get("twitterUserId")
    if isinstance(user_id, int) and not isinstance(user_id, bool) and user_id >= 0:
        user_id = str(user_id)
    if not isinstance(user_id, str) or not _TWITTER_USER_ID.match(user_id.strip()):
        return Rejected(row, "twitterUserId: required, digits only")
    username = _optional_text(values.get("username"))
    if isinstance(username, str):
        username = username.removeprefix("@")
        if not _USERNAME.match(username):
            return Rejected(row, "username: letters, digits and _ only, at most 64")
    elif username is not None:
        return Rejected(row, "username: must be text")
    display_name = _optional_text(values.get("displayName"))
    if display_name is not None and not isinstance(display_name, str):
        return Rejected(row, "displayName: must be text")
    if display_name is not None:
        display_name = " ".join(display_name.split())
        if len(display_name) > MAX_DISPLAY_NAME or "\x00" in display_name:
            return Rejected(row, f"displayName: at most {MAX_DISPLAY_NAME} characters")
    raw_tags = values.get("tags")
    if raw_tags is None:
        raw_tags = []
    if not isinstance(raw_tags, list):
        return Rejected(row, "tags: must be a list")
    tags: list[str] = []
    for index, raw_tag in enumerate(raw_tags):
        tag, problem = tag_problem(raw_tag)
        if tag is None:
            return Rejected(row, f"tags[{index}]: {problem}")
        if tag not in tags:
            tags.append(tag)
    attributes = values.get("attributes")
    if attributes is None:
        attributes = {}
    try:
        attributes_json = encode_attributes(attributes)
    except AttributesRefused as refused:
        return Rejected(row, f"attributes{refused.field_suffix}: {refused.reason}")
    return ImportRecord(
        row=row,
        twitter_user_id=user_id.strip(),
        username=username or None,
        display_name=display_name or None,
        tags=tags,
        attributes_json=attributes_json,
    )


def _optional_text(value: object) -> object:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


# Storing ------------------------------------------------------------------------------------

# One statement per chunk. New contacts get source "import"; existing ones keep their source and
# gain what the record brings: a username or name where given, tags they lack (appended in the
# record's order), attributes merged like jsonb `||`. A record that would change nothing writes
# nothing (no new row version, no index churn) and is counted as unchanged.
_UPSERT = text(
    """
    INSERT INTO contacts AS c (
        id, merchant_id, created_at, updated_at, account_id, twitter_user_id,
        username, display_name, tags, attributes, source, opted_out, conversation_count
    )
    SELECT gen_random_uuid(), :merchant_id, now(), now(), :account_id, r.twitter_user_id,
           r.username, r.display_name, r.tags, r.attributes, 'import', false, 0
    FROM jsonb_to_recordset(CAST(:records AS jsonb)) AS r(
        twitter_user_id text, username text, display_name text, tags text[], attributes jsonb
    )
    ORDER BY r.twitter_user_id
    ON CONFLICT (account_id, twitter_user_id) DO UPDATE SET
        username = coalesce(excluded.username, c.username),
        display_name = coalesce(excluded.display_name, c.display_name),
        tags = c.tags || ARRAY(
            SELECT t FROM unnest(excluded.tags) WITH ORDINALITY AS u(t, i)
            WHERE t <> ALL (c.tags) ORDER BY i
        ),
        attributes = c.attributes || excluded.attributes,
        updated_at = now()
    WHERE NOT (c.tags @> excluded.tags)
       OR c.attributes IS DISTINCT FROM c.attributes || excluded.attributes
       OR c.username IS DISTINCT FROM coalesce(excluded.username, c.username)
       OR c.display_name IS DISTINCT FROM coalesce(excluded.display_name, c.display_name)
    RETURNING (xmax = 0) AS created, c.id, c.twitter_user_id
    """
)

# The tags the contacts of a chunk had before it, for those that may gain a tag waited for.
_TAGS_BEFORE = text(
    """
    SELECT twitter_user_id, tags FROM contacts
    WHERE account_id = :account_id AND twitter_user_id = ANY(CAST(:users AS text[]))
    FOR UPDATE
    """
)


@dataclass
class _Chunk:
    received: int
    rejected: list[Rejected]
    good: int
    payload: str  # the good records as one JSON array for jsonb_to_recordset
    # The records' tags that someone waits for (tag_events.wanted_tags), by X user id.
    watched: dict[str, list[str]] = field(default_factory=dict)


def _next_chunk(records: Iterator[Parsed], size: int, wanted: frozenset[str]) -> _Chunk:
    rejected: list[Rejected] = []
    parts: list[str] = []
    watched: dict[str, list[str]] = {}
    received = 0
    for item in islice(records, size):
        received += 1
        if isinstance(item, Rejected):
            rejected.append(item)
            continue
        head = json.dumps(
            {
                "twitter_user_id": item.twitter_user_id,
                "username": item.username,
                "display_name": item.display_name,
                "tags": item.tags,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        # The attributes were serialised (and size-checked) once already.
        parts.append(f'{head[:-1]},"attributes":{item.attributes_json}}}')
        if wanted and (tags := [tag for tag in item.tags if tag in wanted]):
            watched[item.twitter_user_id] = tags
    return _Chunk(received, rejected, len(parts), "[" + ",".join(parts) + "]", watched)


@dataclass
class ImportTally:
    received: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[ImportRejection] = field(default_factory=list)
    rejected_count: int = 0
    tag_events: int = 0  # tags gained that a flow waits for (recorded to enrol the contacts)

    def reject(self, rejection: Rejected) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_REPORTED_REJECTIONS:
            self.rejected.append(ImportRejection(row=rejection.row, reason=rejection.reason))

    def result(self) -> ContactImportResult:
        return ContactImportResult(
            received=self.received,
            created=self.created,
            updated=self.updated,
            unchanged=self.unchanged,
            rejected=self.rejected,
            rejected_count=self.rejected_count,
        )


async def import_contacts(
    session: AsyncSession,
    *,
    merchant_id: str,
    account_id: uuid.UUID,
    records: Iterator[Parsed],
    chunk_size: int | None = None,
) -> ContactImportResult:
    """Upsert `records` into the account's contacts, committing after each chunk so a large file
    neither holds locks for long nor is lost entirely to one late failure. The account must
    already have been checked to belong to the merchant."""
    size = chunk_size or CHUNK_SIZE
    tally = ImportTally()
    started = time.perf_counter()
    wanted = frozenset(await tag_events.wanted_tags(session, merchant_id, account_id))
    # Parsing is CPU work: it runs in a thread, one chunk ahead, while PostgreSQL stores the last.
    upcoming = asyncio.ensure_future(asyncio.to_thread(_next_chunk, records, size, wanted))
    try:
        while True:
            chunk = await upcoming
            if not chunk.received:
                break
            upcoming = asyncio.ensure_future(asyncio.to_thread(_next_chunk, records, size, wanted))
            tally.received += chunk.received
            for rejection in chunk.rejected:
                tally.reject(rejection)
            if not chunk.good:
                continue
            before: dict[str, list[str]] = {}
            if chunk.watched:
                found = await session.execute(
                    _TAGS_BEFORE, {"account_id": account_id, "users": list(chunk.watched)}
                )
                before = {row.twitter_user_id: list(row.tags) for row in found}
            rows = (
                await session.execute(
                    _UPSERT,
                    {
                        "merchant_id": merchant_id,
                        "account_id": account_id,
                        "records": chunk.payload,
                    },
                )
            ).all()
            if chunk.watched:
                gained = [
                    (row.id, account_id, [t for t in tags if t not in before.get(user, ())])
                    for row in rows
                    if (tags := chunk.watched.get(user := row.twitter_user_id))
                ]
                tally.tag_events += await tag_events.tags_added(session, merchant_id, gained)
            await session.commit()
            created = sum(1 for row in rows if row.created)
            tally.created += created
            tally.updated += len(rows) - created
            tally.unchanged += chunk.good - len(rows)
    finally:
        if not upcoming.done():
            # Failing mid-way: let the parsing thread finish before the records go away.
            await asyncio.wait([upcoming])
    logger.info(
        "contacts.imported",
        extra={
            "account_id": str(account_id),
            "received": tally.received,
            # Not "created": that is a LogRecord attribute, and logging raises KeyError on it.
            "contacts_created": tally.created,
            "updated": tally.updated,
            "unchanged": tally.unchanged,
            "rejected": tally.rejected_count,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    return tally.result()
