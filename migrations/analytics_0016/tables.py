"""The helpers, tables and indexes of revision 0016, and what its downgrade drops.

Frozen with the revision (migrations/versions/0016_analytics.py): a later change is a new
revision, not an edit here.
"""

from __future__ import annotations

HELPERS = """
CREATE FUNCTION mktx_slot(ts timestamptz) RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT date_bin('15 minutes', ts, timestamptz '2000-01-01 00:00:00+00') $$;

CREATE FUNCTION mktx_utc_day(ts timestamptz) RETURNS date LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (ts AT TIME ZONE 'UTC')::date $$;

-- A reply ends a wait: an outbound DM X accepted, written by a person (the inbox, or typed in
-- X's own app: no kind) or by the assistant. Campaign, flow and system DMs are not answers.
CREATE FUNCTION mktx_is_reply(direction varchar, status varchar, kind varchar) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT direction = 'outbound' AND status IN ('sent', 'read')
             AND (kind IS NULL OR kind IN ('inbox', 'bot')) $$;

-- Log-scale bins of response times (10 % wide): percentiles find their bin here, then the exact
-- value among the waits of that bin (services/analytics/response_times.py).
CREATE FUNCTION mktx_wait_bin(ms bigint) RETURNS smallint LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT floor(ln(1 + greatest(ms, 0) / 1000.0) / ln(1.1))::smallint $$;
"""


COUNTERS = """
    contacts_known bigint NOT NULL DEFAULT 0, contacts_new bigint NOT NULL DEFAULT 0,
    new_inbound_message bigint NOT NULL DEFAULT 0, new_follower bigint NOT NULL DEFAULT 0,
    new_import bigint NOT NULL DEFAULT 0, new_manual bigint NOT NULL DEFAULT 0,
    new_other bigint NOT NULL DEFAULT 0,
    conversations_started bigint NOT NULL DEFAULT 0,
    conversations_closed bigint NOT NULL DEFAULT 0,
    inbound bigint NOT NULL DEFAULT 0, outbound bigint NOT NULL DEFAULT 0,
    bot_replies bigint NOT NULL DEFAULT 0,
    human_answered bigint NOT NULL DEFAULT 0, human_ms bigint NOT NULL DEFAULT 0,
    bot_answered bigint NOT NULL DEFAULT 0, bot_ms bigint NOT NULL DEFAULT 0,
    campaign_sent bigint NOT NULL DEFAULT 0, flow_runs bigint NOT NULL DEFAULT 0,
    ai_sessions bigint NOT NULL DEFAULT 0, escalations bigint NOT NULL DEFAULT 0,
    sla_breaches bigint NOT NULL DEFAULT 0, llm_calls bigint NOT NULL DEFAULT 0,
    prompt_tokens bigint NOT NULL DEFAULT 0, completion_tokens bigint NOT NULL DEFAULT 0,
    cost numeric NOT NULL DEFAULT 0"""


TABLES = f"""
CREATE TABLE analytics_contact_days (
    contact_id uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    day date NOT NULL,
    merchant_id varchar(128) NOT NULL,
    account_id uuid NOT NULL,
    first_at timestamptz NOT NULL,
    last_at timestamptz NOT NULL,
    previous_day date NOT NULL DEFAULT '-infinity',  -- the contact's active day before this one
    previous_last_at timestamptz,
    PRIMARY KEY (contact_id, day)
) WITH (fillfactor = 80);  -- last_at moves with each DM of the day: room for HOT updates
CREATE INDEX ix_analytics_contact_days_day ON analytics_contact_days (merchant_id, day);
CREATE INDEX ix_analytics_contact_days_previous
    ON analytics_contact_days (merchant_id, previous_day, day) INCLUDE (previous_last_at, account_id);

CREATE TABLE analytics_waits (
    inbound_message_id uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    merchant_id varchar(128) NOT NULL,
    account_id uuid NOT NULL,
    assignee varchar(128),  -- the conversation's assignee now
    inbound_at timestamptz NOT NULL,
    replied_at timestamptz NOT NULL,
    by_bot boolean NOT NULL,
    ms bigint GENERATED ALWAYS AS (
        round(extract(epoch FROM replied_at - inbound_at) * 1000)::bigint) STORED,
    bin smallint GENERATED ALWAYS AS (mktx_wait_bin(
        round(extract(epoch FROM replied_at - inbound_at) * 1000)::bigint)) STORED
);
CREATE INDEX ix_analytics_waits_conversation ON analytics_waits (conversation_id, inbound_at);
CREATE INDEX ix_analytics_waits_at ON analytics_waits (merchant_id, inbound_at)
    INCLUDE (account_id, ms, bin);
CREATE INDEX ix_analytics_waits_bin ON analytics_waits (merchant_id, bin, ms)
    INCLUDE (inbound_at, account_id);

CREATE TABLE analytics_counts (
    merchant_id varchar(128) NOT NULL, account_id uuid, slot timestamptz NOT NULL,
    folded boolean NOT NULL DEFAULT false,{COUNTERS}
);
CREATE INDEX ix_analytics_counts_slot ON analytics_counts (merchant_id, slot);
CREATE INDEX ix_analytics_counts_unfolded ON analytics_counts (merchant_id) WHERE NOT folded;

CREATE TABLE analytics_assignees (
    merchant_id varchar(128) NOT NULL, account_id uuid, slot timestamptz NOT NULL,
    assignee varchar(128), folded boolean NOT NULL DEFAULT false,
    conversations bigint NOT NULL DEFAULT 0,
    human_answered bigint NOT NULL DEFAULT 0, human_ms bigint NOT NULL DEFAULT 0,
    bot_answered bigint NOT NULL DEFAULT 0, bot_ms bigint NOT NULL DEFAULT 0
);
CREATE INDEX ix_analytics_assignees_slot ON analytics_assignees (merchant_id, slot);
CREATE INDEX ix_analytics_assignees_unfolded ON analytics_assignees (merchant_id)
    WHERE NOT folded;

CREATE TABLE analytics_wait_bins (
    merchant_id varchar(128) NOT NULL, account_id uuid NOT NULL, day date NOT NULL,
    bin smallint NOT NULL, folded boolean NOT NULL DEFAULT false, waits bigint NOT NULL
);
CREATE INDEX ix_analytics_wait_bins_day ON analytics_wait_bins (merchant_id, day);
CREATE INDEX ix_analytics_wait_bins_unfolded ON analytics_wait_bins (merchant_id)
    WHERE NOT folded;

CREATE TABLE analytics_returns (
    merchant_id varchar(128) NOT NULL, account_id uuid NOT NULL, day date NOT NULL,
    previous_day date NOT NULL, folded boolean NOT NULL DEFAULT false, contacts bigint NOT NULL
);
CREATE INDEX ix_analytics_returns_day ON analytics_returns (merchant_id, day);
CREATE INDEX ix_analytics_returns_unfolded ON analytics_returns (merchant_id) WHERE NOT folded;

CREATE TABLE analytics_tags (
    merchant_id varchar(128) NOT NULL, account_id uuid NOT NULL, tag varchar NOT NULL,
    folded boolean NOT NULL DEFAULT false, contacts bigint NOT NULL
);
CREATE INDEX ix_analytics_tags_merchant ON analytics_tags (merchant_id, tag);
CREATE INDEX ix_analytics_tags_unfolded ON analytics_tags (merchant_id) WHERE NOT folded;

-- The assistant's sessions per merchant and time (the edges of a range: see the rollups).
CREATE INDEX ix_ai_sessions_merchant_created ON ai_sessions (merchant_id, created_at);
"""


DROP = """
DROP TRIGGER IF EXISTS mktx_analytics_messages_insert ON messages;
DROP TRIGGER IF EXISTS mktx_analytics_messages_update ON messages;
DROP TRIGGER IF EXISTS mktx_analytics_messages_delete ON messages;
DROP TRIGGER IF EXISTS mktx_analytics_contacts_change ON contacts;
DROP TRIGGER IF EXISTS mktx_analytics_contacts_update ON contacts;
DROP TRIGGER IF EXISTS mktx_analytics_conversations_change ON conversations;
DROP TRIGGER IF EXISTS mktx_analytics_conversations_update ON conversations;
DROP TRIGGER IF EXISTS mktx_analytics_recipients_change ON campaign_recipients;
DROP TRIGGER IF EXISTS mktx_analytics_recipients_update ON campaign_recipients;
DROP TRIGGER IF EXISTS mktx_analytics_flow_runs ON flow_runs;
DROP TRIGGER IF EXISTS mktx_analytics_llm_calls ON llm_calls;
DROP TRIGGER IF EXISTS mktx_analytics_escalations ON escalations;
DROP TRIGGER IF EXISTS mktx_analytics_ai_sessions ON ai_sessions;
DROP TABLE IF EXISTS analytics_contact_days, analytics_waits, analytics_counts,
    analytics_assignees, analytics_wait_bins, analytics_returns, analytics_tags CASCADE;
DROP INDEX IF EXISTS ix_ai_sessions_merchant_created;
DROP FUNCTION IF EXISTS mktx_analytics_rebuild(varchar),
    mktx_analytics_counts_between(varchar, timestamptz, timestamptz),
    mktx_analytics_assignees_between(varchar, timestamptz, timestamptz),
    mktx_analytics_messages(), mktx_analytics_contacts(), mktx_analytics_conversations(),
    mktx_analytics_waits(), mktx_analytics_contact_days(), mktx_analytics_others(),
    mktx_analytics_waits_from(uuid, timestamptz, uuid),
    mktx_analytics_conversation_waits(uuid, timestamptz, uuid),
    mktx_analytics_contact_day_add(varchar, uuid, uuid, timestamptz),
    mktx_analytics_contact_day_refresh(varchar, uuid, date),
    mktx_wait_bin(bigint), mktx_is_reply(varchar, varchar, varchar),
    mktx_utc_day(timestamptz), mktx_slot(timestamptz);
"""
