"""The rollups' definition over a window of time, and the rebuild of revision 0016.

Frozen with the revision (migrations/versions/0016_analytics.py): a later change is a new
revision, not an edit here.
"""

from __future__ import annotations

# What the rollups hold, computed from the raw tables (and the facts) for one merchant and a
# window of time: the rebuild uses it for all time, the readers for a range's ragged edges
# (bounds that are not on a quarter hour), so that both are the same definition.
COUNTS_BETWEEN = """
CREATE FUNCTION mktx_analytics_counts_between(p_merchant varchar, p_from timestamptz,
                                              p_to timestamptz)
RETURNS TABLE (merchant_id varchar, account_id uuid, slot timestamptz,
    contacts_known bigint, contacts_new bigint, new_inbound_message bigint,
    new_follower bigint, new_import bigint, new_manual bigint, new_other bigint,
    conversations_started bigint, conversations_closed bigint, inbound bigint,
    outbound bigint, bot_replies bigint, human_answered bigint, human_ms bigint,
    bot_answered bigint, bot_ms bigint, campaign_sent bigint, flow_runs bigint,
    ai_sessions bigint, escalations bigint, sla_breaches bigint, llm_calls bigint,
    prompt_tokens bigint, completion_tokens bigint, cost numeric)
LANGUAGE sql STABLE AS $$
WITH ev (merchant_id, account_id, slot, metric, value) AS (
    SELECT c.merchant_id, c.account_id, mktx_slot(least(c.created_at, c.first_interaction_at)),
        'contacts_known', 1::numeric
    FROM contacts c
    WHERE c.merchant_id = p_merchant AND least(c.created_at, c.first_interaction_at) >= p_from
      AND least(c.created_at, c.first_interaction_at) < p_to
    UNION ALL
    SELECT c.merchant_id, c.account_id, mktx_slot(c.first_interaction_at), x.metric, 1
    FROM contacts c, LATERAL (VALUES ('contacts_new'), (CASE
        WHEN c.source IN ('inbound_message', 'import', 'manual') THEN 'new_' || c.source
        WHEN c.source = 'new_follower' THEN 'new_follower' ELSE 'new_other' END)) x (metric)
    WHERE c.merchant_id = p_merchant AND c.first_interaction_at >= p_from
      AND c.first_interaction_at < p_to
    UNION ALL
    SELECT v.merchant_id, v.account_id, mktx_slot(v.started_at), x.metric, 1
    FROM conversations v, LATERAL (VALUES ('conversations_started'),
        (CASE WHEN v.status = 'closed' THEN 'conversations_closed' END)) x (metric)
    WHERE v.merchant_id = p_merchant AND v.started_at >= p_from AND v.started_at < p_to
      AND x.metric IS NOT NULL
    UNION ALL
    SELECT m.merchant_id, m.account_id, mktx_slot(m.sent_at), x.metric, 1
    FROM x_accounts a JOIN messages m ON m.merchant_id = a.merchant_id AND m.account_id = a.id,
    LATERAL (VALUES (m.direction::text),
        (CASE WHEN m.direction = 'outbound' AND m.is_from_bot THEN 'bot_replies' END)) x (metric)
    WHERE a.merchant_id = p_merchant AND m.sent_at >= p_from AND m.sent_at < p_to
      AND (m.direction = 'inbound' OR m.status IN ('sent', 'read')) AND x.metric IS NOT NULL
    UNION ALL
    SELECT w.merchant_id, w.account_id, mktx_slot(w.inbound_at), x.metric, x.value
    FROM analytics_waits w, LATERAL (VALUES
        (CASE WHEN w.by_bot THEN 'bot_answered' ELSE 'human_answered' END, 1::numeric),
        (CASE WHEN w.by_bot THEN 'bot_ms' ELSE 'human_ms' END, w.ms::numeric)) x (metric, value)
    WHERE w.merchant_id = p_merchant AND w.inbound_at >= p_from AND w.inbound_at < p_to
    UNION ALL
    SELECT r.merchant_id, r.account_id, mktx_slot(r.sent_at), 'campaign_sent', 1
    FROM campaigns k JOIN campaign_recipients r ON r.campaign_id = k.id
    WHERE k.merchant_id = p_merchant AND r.state = 'sent' AND r.sent_at >= p_from
      AND r.sent_at < p_to
    UNION ALL
    SELECT r.merchant_id, r.account_id, mktx_slot(r.started_at), 'flow_runs', 1
    FROM automation_flows f JOIN flow_runs r ON r.flow_id = f.id
    WHERE f.merchant_id = p_merchant AND r.started_at >= p_from AND r.started_at < p_to
    UNION ALL
    SELECT l.merchant_id, NULL, mktx_slot(l.created_at), x.metric, x.value
    FROM llm_calls l, LATERAL (VALUES ('llm_calls', 1::numeric),
        ('prompt_tokens', coalesce(l.prompt_tokens, 0)::numeric),
        ('completion_tokens', coalesce(l.completion_tokens, 0)::numeric),
        ('cost', coalesce(l.cost::numeric, 0))) x (metric, value)
    WHERE l.merchant_id = p_merchant AND l.created_at >= p_from AND l.created_at < p_to
    UNION ALL
    SELECT e.merchant_id, NULL, mktx_slot(e.escalated_at), x.metric, 1
    FROM escalations e, LATERAL (VALUES ('escalations'),
        (CASE WHEN e.breached THEN 'sla_breaches' END)) x (metric)
    WHERE e.merchant_id = p_merchant AND e.escalated_at >= p_from AND e.escalated_at < p_to
      AND x.metric IS NOT NULL
    UNION ALL
    SELECT s.merchant_id, NULL, mktx_slot(s.created_at), 'ai_sessions', 1
    FROM ai_sessions s
    WHERE s.merchant_id = p_merchant AND s.created_at >= p_from AND s.created_at < p_to
)
SELECT ev.merchant_id, ev.account_id, ev.slot,
    coalesce(sum(value) FILTER (WHERE metric = 'contacts_known'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'contacts_new'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'new_inbound_message'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'new_follower'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'new_import'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'new_manual'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'new_other'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'conversations_started'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'conversations_closed'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'inbound'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'outbound'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'bot_replies'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'human_answered'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'human_ms'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'bot_answered'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'bot_ms'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'campaign_sent'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'flow_runs'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'ai_sessions'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'escalations'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'sla_breaches'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'llm_calls'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'prompt_tokens'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'completion_tokens'), 0)::bigint,
    coalesce(sum(value) FILTER (WHERE metric = 'cost'), 0)
FROM ev GROUP BY 1, 2, 3
$$;

CREATE FUNCTION mktx_analytics_assignees_between(p_merchant varchar, p_from timestamptz,
                                                 p_to timestamptz)
RETURNS TABLE (merchant_id varchar, account_id uuid, slot timestamptz, assignee varchar,
    conversations bigint, human_answered bigint, human_ms bigint, bot_answered bigint,
    bot_ms bigint)
LANGUAGE sql STABLE AS $$
SELECT x.merchant_id, x.account_id, x.slot, x.assignee, sum(x.c)::bigint, sum(x.ha)::bigint,
    sum(x.hm)::bigint, sum(x.ba)::bigint, sum(x.bm)::bigint
FROM (
    SELECT v.merchant_id, v.account_id, mktx_slot(v.started_at) AS slot,
        v.assigned_to_user_id AS assignee, 1 AS c, 0 AS ha, 0 AS hm, 0 AS ba, 0 AS bm
    FROM conversations v
    WHERE v.merchant_id = p_merchant AND v.started_at >= p_from AND v.started_at < p_to
    UNION ALL
    SELECT w.merchant_id, w.account_id, mktx_slot(w.inbound_at), w.assignee, 0,
        (NOT w.by_bot)::int, w.ms * (NOT w.by_bot)::int, w.by_bot::int, w.ms * w.by_bot::int
    FROM analytics_waits w
    WHERE w.merchant_id = p_merchant AND w.inbound_at >= p_from AND w.inbound_at < p_to
) x
GROUP BY 1, 2, 3, 4
$$;
"""


# Everything of one merchant (or of all, NULL) recomputed from the raw tables, the tables
# locked meanwhile so that no trigger adds to what is being recounted.
REBUILD = """
CREATE FUNCTION mktx_analytics_rebuild(p_merchant varchar) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m varchar;
    was text := current_setting('mktx.analytics', true);
    origin CONSTANT uuid := '00000000-0000-0000-0000-000000000000';
BEGIN
    LOCK TABLE analytics_contact_days, analytics_waits, analytics_counts, analytics_assignees,
        analytics_wait_bins, analytics_returns, analytics_tags IN EXCLUSIVE MODE;
    PERFORM set_config('mktx.analytics', 'off', true);
    IF p_merchant IS NULL THEN
        TRUNCATE analytics_contact_days, analytics_waits, analytics_counts, analytics_assignees,
            analytics_wait_bins, analytics_returns, analytics_tags;
    END IF;
    FOR m IN SELECT p_merchant WHERE p_merchant IS NOT NULL
             UNION SELECT DISTINCT a.merchant_id FROM x_accounts a WHERE p_merchant IS NULL LOOP
        DELETE FROM analytics_contact_days WHERE merchant_id = m;
        DELETE FROM analytics_waits WHERE merchant_id = m;
        DELETE FROM analytics_counts WHERE merchant_id = m;
        DELETE FROM analytics_assignees WHERE merchant_id = m;
        DELETE FROM analytics_wait_bins WHERE merchant_id = m;
        DELETE FROM analytics_returns WHERE merchant_id = m;
        DELETE FROM analytics_tags WHERE merchant_id = m;

        INSERT INTO analytics_contact_days (contact_id, day, merchant_id, account_id, first_at,
            last_at, previous_day, previous_last_at)
        SELECT d.contact_id, d.day, d.merchant_id, d.account_id, d.first_at, d.last_at,
            coalesce(lag(d.day) OVER w, '-infinity'), lag(d.last_at) OVER w
        FROM (SELECT x.contact_id, mktx_utc_day(x.sent_at) AS day, x.merchant_id, x.account_id,
                     min(x.sent_at) AS first_at, max(x.sent_at) AS last_at
              FROM messages x WHERE x.merchant_id = m AND x.direction = 'inbound'
              GROUP BY 1, 2, 3, 4) d
        WINDOW w AS (PARTITION BY d.contact_id ORDER BY d.day)
        ORDER BY d.day, d.first_at;  -- as DMs arrive: a day's rows close together

        INSERT INTO analytics_waits (inbound_message_id, conversation_id, merchant_id, account_id,
            assignee, inbound_at, replied_at, by_bot)
        SELECT n.inbound_message_id, v.id, v.merchant_id, v.account_id, v.assigned_to_user_id,
            n.inbound_at, n.replied_at, n.by_bot
        FROM conversations v, LATERAL mktx_analytics_conversation_waits(v.id, '-infinity', origin) n
        WHERE v.merchant_id = m
        ORDER BY n.inbound_at;

        INSERT INTO analytics_counts SELECT c.merchant_id, c.account_id, c.slot, true,
            c.contacts_known, c.contacts_new, c.new_inbound_message, c.new_follower,
            c.new_import, c.new_manual, c.new_other, c.conversations_started,
            c.conversations_closed, c.inbound, c.outbound, c.bot_replies, c.human_answered,
            c.human_ms, c.bot_answered, c.bot_ms, c.campaign_sent, c.flow_runs, c.ai_sessions,
            c.escalations, c.sla_breaches, c.llm_calls, c.prompt_tokens, c.completion_tokens,
            c.cost
        FROM mktx_analytics_counts_between(m, '-infinity', 'infinity') c
        ORDER BY c.slot;
        INSERT INTO analytics_assignees SELECT a.merchant_id, a.account_id, a.slot, a.assignee,
            true, a.conversations, a.human_answered, a.human_ms, a.bot_answered, a.bot_ms
        FROM mktx_analytics_assignees_between(m, '-infinity', 'infinity') a
        ORDER BY a.slot;
        INSERT INTO analytics_wait_bins
        SELECT w.merchant_id, w.account_id, mktx_utc_day(w.inbound_at), w.bin, true, count(*)
        FROM analytics_waits w WHERE w.merchant_id = m GROUP BY 1, 2, 3, 4 ORDER BY 3;
        INSERT INTO analytics_returns
        SELECT d.merchant_id, d.account_id, d.day, d.previous_day, true, count(*)
        FROM analytics_contact_days d WHERE d.merchant_id = m GROUP BY 1, 2, 3, 4 ORDER BY 3;
        INSERT INTO analytics_tags
        SELECT c.merchant_id, c.account_id, t.tag, true, count(*)
        FROM contacts c, unnest(c.tags) t (tag) WHERE c.merchant_id = m GROUP BY 1, 2, 3;
    END LOOP;
    PERFORM set_config('mktx.analytics', coalesce(was, ''), true);
END
$$;
"""
