"""The SQL of webhook ingestion: one statement per event, written with `%(name)s` parameters
and run with PostgreSQL's own (`NativeSQL`).

Each statement opens with a `raw` CTE, in one of two forms:
- INGEST: insert the raw event, routed to the connected account of `for_user_id`. On a
  duplicate delivery it inserts nothing, and so nothing downstream happens either: the unique
  dedup key is the gate.
- REPROCESS: claim a stored event that was not applied yet (an UPDATE, so two reprocessors
  never apply it twice).
Both mark the raw row processed and link it to its contact (the one the event creates gets
the id proposed in `new_contact_id`): the statement applies the event atomically, so "stored
and processed" is true together or not at all. Each statement returns one row
`(raw id, merchant id, account id, ...)`, or none for a duplicate.

The statement of an event that concerns a known contact also records, in the same
transaction, what the event owes the workflows waiting on that contact (`_follow_ups`).

One statement, sent in autocommit, is one round trip: what lets one API process keep up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, LiteralString, cast

from services.ingestion.retries import RECORDED_HOLD, interval_sql

_INGEST_HEAD: LiteralString = """
WITH raw AS (
    INSERT INTO webhook_events (
        id, merchant_id, account_id, for_user_id, event_type, dedup_key, subject_user_id,
        contact_id, payload, received_at, processed_at, error)
    SELECT %(raw_id)s, a.merchant_id, a.id, %(for_user_id)s::varchar, %(event_type)s, %(dedup_key)s,
        %(subject_user_id)s::varchar,
        CASE WHEN a.id IS NOT NULL THEN coalesce(
            (SELECT k.id FROM contacts k
             WHERE k.account_id = a.id AND k.twitter_user_id = %(subject_user_id)s::varchar),
            %(new_contact_id)s::uuid) END,
        %(payload)s::jsonb, %(now)s, %(now)s, NULL
    FROM (SELECT 1) AS one
    LEFT JOIN x_accounts a ON a.twitter_user_id = %(for_user_id)s::varchar AND a.disconnected_at IS NULL
    ON CONFLICT (dedup_key) DO NOTHING
    RETURNING id, merchant_id, account_id
)"""

_REPROCESS_HEAD: LiteralString = """
WITH raw AS (
    UPDATE webhook_events w SET processed_at = %(now)s, error = NULL,
        contact_id = coalesce(w.contact_id, (
            SELECT k.id FROM contacts k
            WHERE k.account_id = w.account_id AND k.twitter_user_id = w.subject_user_id),
            %(new_contact_id)s::uuid)
    WHERE w.id = %(raw_id)s AND w.processed_at IS NULL
    RETURNING w.id, w.merchant_id, w.account_id
)"""

# An event that could not be applied, kept with its error (processed_at NULL: to reprocess,
# unless `settled`: X sent something unusable). That was attempt 1; the next is due after the
# first backoff of services/ingestion/reprocess.py (FIRST_RETRY, 5 seconds).
STORE_FAILED_SQL: LiteralString = """
INSERT INTO webhook_events (
    id, merchant_id, account_id, for_user_id, event_type, dedup_key, subject_user_id,
    payload, received_at, processed_at, error, attempts, next_attempt_at)
SELECT %(raw_id)s, a.merchant_id, a.id, %(for_user_id)s::varchar, %(event_type)s, %(dedup_key)s,
    %(subject_user_id)s::varchar, %(payload)s::jsonb, %(now)s,
    CASE WHEN a.id IS NULL OR %(settled)s THEN %(now)s::timestamptz END, %(error)s, 1,
    CASE WHEN a.id IS NOT NULL AND NOT %(settled)s
        THEN %(now)s::timestamptz + interval '5 seconds' END
FROM (SELECT 1) AS one
LEFT JOIN x_accounts a ON a.twitter_user_id = %(for_user_id)s::varchar AND a.disconnected_at IS NULL
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id, merchant_id, account_id
"""


# What a follow-up's first holder (the API that records it) is given before others may take it.
_RECORDED_HOLD = cast(LiteralString, interval_sql(RECORDED_HOLD))


def _follow_ups(
    kind: LiteralString,
    sources: LiteralString,
    message_id: LiteralString = "NULL::uuid",
    text: LiteralString = "NULL::text",
    where: LiteralString = "true",
) -> LiteralString:
    """The CTE that records what the event owes (models.webhook_event.EventFollowUp), in the
    statement that stores it: a signal to each live listener of the contact, and a start for
    each trigger that wants this kind of event (`triggers`: their names, usually none) and is
    armed for the event's merchant (models.webhook_event.ArmedTrigger).

    `sources` (filtered by `where`) yields one row when the event concerns a known contact,
    none otherwise: so a duplicate delivery, which stores nothing, records nothing either. The
    payload is the ContactEvent of workflows/contracts/contact_events.py, field for field.

    The rows are inserted by `mktx_record_follow_ups` (migrations/versions/0010_follow_ups.py),
    called only when there is something to record, rather than by an INSERT here: PostgreSQL
    opens and locks a data-modifying CTE's table and every index of it on each execution, even
    when it inserts nothing (some 30 µs, 6 % of an event's database time). So an event that
    owes nothing costs what it did before the outbox: one index probe for listeners. The
    statement returns the rows recorded as `_FOLLOW_UPS_COLUMN` (JSON; NULL when none)."""
    return (
        """,
follow_up AS (
    SELECT mktx_record_follow_ups(raw.id, raw.merchant_id, t.kinds, t.targets,
        jsonb_build_object('kind', '"""
        + kind
        + """', 'event_id', raw.id, 'merchant_id', raw.merchant_id,
            'account_id', raw.account_id, 'contact_id', contact.id, 'message_id', """
        + message_id
        + """,
            'text', """
        + text
        + """, 'occurred_at', %(at)s::timestamptz),
        %(now)s, %(now)s::timestamptz + """
        + _RECORDED_HOLD
        + """) AS recorded
    FROM """
        + sources
        + """, LATERAL (
        SELECT array_agg(o.kind), array_agg(o.target) FROM (
            SELECT 'signal' AS kind, l.workflow_id AS target FROM workflow_listeners l
            WHERE l.merchant_id = raw.merchant_id AND l.contact_id = contact.id
                AND l.expires_at > %(now)s
            UNION ALL SELECT 'start', a.trigger FROM armed_triggers a
            WHERE a.merchant_id = raw.merchant_id AND a.trigger = ANY(%(triggers)s::varchar[])
        ) AS o
    ) AS t (kinds, targets)
    WHERE t.kinds IS NOT NULL AND """
        + where
        + """
)"""
    )


_FOLLOW_UPS_COLUMN: LiteralString = "(SELECT recorded FROM follow_up)"

_CONTACT_COLUMNS: LiteralString = """
    id, merchant_id, created_at, updated_at, account_id, twitter_user_id, username,
    display_name, profile_image_url, tags, attributes, source, opted_out,
    conversation_count, first_interaction_at, last_interaction_at"""

_PROFILE_REFRESH: LiteralString = """
    username = coalesce(excluded.username, c.username),
    display_name = coalesce(excluded.display_name, c.display_name),
    profile_image_url = coalesce(excluded.profile_image_url, c.profile_image_url),
    first_interaction_at = coalesce(c.first_interaction_at, excluded.first_interaction_at),
    last_interaction_at = greatest(c.last_interaction_at, excluded.last_interaction_at),
    updated_at = excluded.updated_at"""

# A DM, inbound or an echo of the account's own. An echo of a message we sent settles that
# message; any other DM is recorded in the contact's open conversation (a new one if none).
#
# The conversation is upserted on the "one open conversation per contact" index before the
# contact, so whatever this statement's snapshot missed, concurrent messages of a contact share
# one conversation and the contact's conversation_count grows only when ours was the one
# opened. A contact created concurrently after the snapshot makes the conversation point to
# the contact id we proposed, which then does not exist: the foreign key aborts the whole
# statement and the caller retries with a fresh snapshot.
_MESSAGE_BODY: LiteralString = (
    """,
known AS (
    SELECT c.id FROM contacts c JOIN raw ON c.account_id = raw.account_id
    WHERE c.twitter_user_id = %(user_id)s::varchar
),
settled AS (
    UPDATE messages m SET
        status = CASE WHEN m.status = 'queued' THEN 'sent' ELSE m.status END,
        updated_at = %(now)s
    FROM raw
    WHERE %(echo)s AND m.account_id = raw.account_id
      AND m.twitter_message_id = %(twitter_message_id)s::varchar
    RETURNING m.id
),
todo AS (
    SELECT raw.merchant_id, raw.account_id FROM raw
    WHERE raw.account_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM settled)
),
conversation AS (
    INSERT INTO conversations AS o (
        id, merchant_id, created_at, updated_at, account_id, contact_id, status, channel,
        started_at, last_message_at, message_count)
    SELECT %(conversation_id)s, todo.merchant_id, %(now)s, %(now)s, todo.account_id,
        coalesce((SELECT id FROM known), %(contact_id)s), 'open', 'direct_message',
        %(at)s, %(at)s, 1
    FROM todo
    ON CONFLICT (contact_id) WHERE status = 'open' DO UPDATE SET
        message_count = o.message_count + 1,
        last_message_at = greatest(o.last_message_at, excluded.last_message_at),
        updated_at = excluded.updated_at
    RETURNING o.id
),
contact AS (
    INSERT INTO contacts AS c ("""
    + _CONTACT_COLUMNS
    + """)
    SELECT %(contact_id)s, todo.merchant_id, %(now)s, %(now)s, todo.account_id, %(user_id)s::varchar,
        %(username)s, %(display_name)s, %(profile_image_url)s, '{}', '{}'::jsonb,
        %(source)s, false, 1, %(at)s, %(at)s
    FROM todo
    ON CONFLICT (account_id, twitter_user_id) DO UPDATE SET"""
    + _PROFILE_REFRESH
    + """,
        conversation_count = c.conversation_count
            + (SELECT count(*) FROM conversation WHERE id = %(conversation_id)s)
    RETURNING c.id
),
message AS (
    INSERT INTO messages (
        id, merchant_id, created_at, updated_at, conversation_id, account_id, contact_id,
        direction, type, content, attachments, quick_reply, is_from_bot, twitter_message_id,
        sent_at, status)
    SELECT %(message_id)s, todo.merchant_id, %(now)s, %(now)s, conversation.id,
        todo.account_id, contact.id, %(direction)s, 'text', %(content)s,
        %(attachments)s::jsonb, %(quick_reply)s::jsonb, false, %(twitter_message_id)s::varchar,
        %(at)s, %(status)s
    FROM todo, conversation, contact
    RETURNING id, conversation_id
)"""
    + _follow_ups(
        "message",
        "raw, contact, message",
        message_id="message.id",
        text="%(content)s::text",
        where="NOT %(echo)s",
    )
    + """
SELECT raw.id, raw.merchant_id, raw.account_id,
    message.id, message.conversation_id, contact.id, """
    + _FOLLOW_UPS_COLUMN
    + """
FROM raw LEFT JOIN message ON true LEFT JOIN contact ON true
"""
)

# A new follower becomes a contact (or an existing one is marked as following).
_FOLLOW_BODY: LiteralString = (
    """,
contact AS (
    INSERT INTO contacts AS c ("""
    + _CONTACT_COLUMNS
    + """)
    SELECT %(contact_id)s, raw.merchant_id, %(now)s, %(now)s, raw.account_id, %(user_id)s::varchar,
        %(username)s, %(display_name)s, %(profile_image_url)s, '{}', %(attributes)s::jsonb,
        'new_follower', false, 0, %(at)s, %(at)s
    FROM raw WHERE raw.account_id IS NOT NULL
    ON CONFLICT (account_id, twitter_user_id) DO UPDATE SET"""
    + _PROFILE_REFRESH
    + """,
        attributes = c.attributes || excluded.attributes
    RETURNING c.id
)"""
    + _follow_ups("follow", "raw, contact")
    + """
SELECT raw.id, raw.merchant_id, raw.account_id, contact.id, """
    + _FOLLOW_UPS_COLUMN
    + """
FROM raw LEFT JOIN contact ON true
"""
)

# Unfollowing only flips the flag, and makes no contact of a stranger.
_UNFOLLOW_BODY: LiteralString = (
    """,
contact AS (
    UPDATE contacts c SET attributes = c.attributes || %(attributes)s::jsonb,
        updated_at = %(now)s
    FROM raw
    WHERE c.account_id = raw.account_id AND c.twitter_user_id = %(user_id)s::varchar
    RETURNING c.id
)"""
    + _follow_ups("unfollow", "raw, contact")
    + """
SELECT raw.id, raw.merchant_id, raw.account_id, contact.id, """
    + _FOLLOW_UPS_COLUMN
    + """
FROM raw LEFT JOIN contact ON true
"""
)

# Our messages the contact has now seen: up to the one X names, else up to the receipt's time.
_READ_BODY: LiteralString = (
    """,
contact AS (
    SELECT c.id FROM contacts c JOIN raw ON c.account_id = raw.account_id
    WHERE c.twitter_user_id = %(user_id)s::varchar
),
up_to AS (
    SELECT coalesce(
        (SELECT m.sent_at FROM messages m JOIN raw ON m.account_id = raw.account_id
         WHERE m.twitter_message_id = %(last_read_event_id)s::varchar),
        %(at)s::timestamptz) AS sent_at
),
marked AS (
    UPDATE messages m SET status = 'read', read_at = %(at)s, updated_at = %(now)s
    FROM raw, contact, up_to
    WHERE m.merchant_id = raw.merchant_id AND m.contact_id = contact.id
      AND m.account_id = raw.account_id AND m.direction = 'outbound' AND m.status = 'sent'
      AND m.sent_at <= up_to.sent_at
    RETURNING m.id
)"""
    + _follow_ups("read", "raw, contact")
    + """
SELECT raw.id, raw.merchant_id, raw.account_id, contact.id, """
    + _FOLLOW_UPS_COLUMN
    + """, (SELECT count(*) FROM marked)
FROM raw LEFT JOIN contact ON true
"""
)

# The user took the app's access back: the account stops sending until reconnected.
_REVOKE_BODY: LiteralString = """,
account AS (
    UPDATE x_accounts a SET status = 'error', status_reason = %(reason)s, updated_at = %(now)s
    FROM raw
    WHERE a.id = raw.account_id AND a.disconnected_at IS NULL
    RETURNING a.id
)
SELECT raw.id, raw.merchant_id, raw.account_id, account.id
FROM raw LEFT JOIN account ON true
"""

# Typing indicators, likes, tweets, ...: stored, nothing to apply.
_NOTHING_BODY: LiteralString = """
SELECT raw.id, raw.merchant_id, raw.account_id FROM raw
"""


def _compact(statement: LiteralString) -> LiteralString:
    """One space for every run of whitespace (the SQL has no literal that minds)."""
    return cast(LiteralString, " ".join(statement.split()))


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True, slots=True)
class NativeSQL:
    """A statement in PostgreSQL's own placeholders (`$1`, `$2`, ...), converted once from
    `%(name)s`, and the parameter names in their order. Run through a raw cursor, it goes to
    the server as it is: psycopg converts named placeholders on every run of a statement over
    4 kB (some 0.2 ms of CPU for the message statement, a third of what an event costs), and
    the statements here are run for every event."""

    text: bytes
    names: tuple[str, ...]

    @classmethod
    def of(cls, statement: LiteralString) -> NativeSQL:
        numbers: dict[str, int] = {}

        def number(match: re.Match[str]) -> str:
            return f"${numbers.setdefault(match.group(1), len(numbers) + 1)}"

        text = _PLACEHOLDER.sub(number, _compact(statement))
        if "%" in text:  # psycopg would have read it as a placeholder (or `%%`): so do not we
            raise ValueError(f"a % that is not a %(name)s placeholder in: {text[:80]}...")
        return cls(text.encode(), tuple(numbers))

    def args(self, params: dict[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]


class Statement:
    """One ingestion statement, in its ingest and reprocess forms."""

    def __init__(self, name: str, body: LiteralString) -> None:
        self.name = name
        self.ingest = NativeSQL.of(_INGEST_HEAD + body)
        self.reprocess = NativeSQL.of(_REPROCESS_HEAD + body)


MESSAGE = Statement("message", _MESSAGE_BODY)
FOLLOW = Statement("follow", _FOLLOW_BODY)
UNFOLLOW = Statement("unfollow", _UNFOLLOW_BODY)
READ = Statement("read", _READ_BODY)
REVOKE = Statement("revoke", _REVOKE_BODY)
NOTHING = Statement("nothing", _NOTHING_BODY)
STORE_FAILED = NativeSQL.of(STORE_FAILED_SQL)

# Which of these X users are connected accounts: routes a payload without for_user_id (the API
# specification's own example) to the one its events are for.
CONNECTED_USERS = NativeSQL.of(
    """
SELECT coalesce(array_agg(twitter_user_id), '{}') FROM x_accounts
WHERE twitter_user_id = ANY(%(user_ids)s::varchar[]) AND disconnected_at IS NULL
"""
)
