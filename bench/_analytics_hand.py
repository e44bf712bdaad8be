"""The analytics bench's yardsticks: each figure of a report, computed by one hand-written
statement from the raw tables (contacts, conversations, messages, campaign recipients, flow
runs, the assistant's tables), as a careful person would write it without rollups.

Waits are found as the definitions say: in each conversation, inbound DMs and replies in order
(`grp` counts the replies so far); a group's first inbound DM found the conversation waiting,
and the reply that closes the group answered it.
"""

from __future__ import annotations

_WAITS = """
thread AS (
    SELECT m.conversation_id, m.id, m.sent_at, m.is_from_bot, m.direction = 'outbound' AS reply
    FROM messages m
    WHERE m.merchant_id = :m AND (m.direction = 'inbound' OR (m.status IN ('sent', 'read')
          AND (m.kind IS NULL OR m.kind IN ('inbox', 'bot'))))
      AND m.conversation_id IN (
          SELECT conversation_id FROM messages WHERE merchant_id = :m
            AND direction = 'inbound' AND sent_at >= :s AND sent_at < :e)
), grouped AS (
    SELECT t.*, count(*) FILTER (WHERE t.reply)
        OVER (PARTITION BY t.conversation_id ORDER BY t.sent_at, t.id) AS grp
    FROM thread t
), firsts AS (
    SELECT g.*, row_number() OVER (PARTITION BY g.conversation_id, g.grp, g.reply
                                   ORDER BY g.sent_at, g.id) AS nth
    FROM grouped g
), waits AS (
    SELECT i.sent_at AS inbound_at, i.conversation_id, r.is_from_bot AS bot,
        round(extract(epoch FROM r.sent_at - i.sent_at) * 1000) AS ms
    FROM firsts i JOIN grouped r ON r.conversation_id = i.conversation_id AND r.reply
        AND r.grp = i.grp + 1
    WHERE NOT i.reply AND i.nth = 1 AND i.sent_at >= :s AND i.sent_at < :e
)"""

OVERVIEW = f"""
WITH {_WAITS}
SELECT
    (SELECT count(*) FROM contacts WHERE merchant_id = :m
        AND least(created_at, first_interaction_at) < :e) AS contacts_total,
    (SELECT count(*) FROM contacts WHERE merchant_id = :m
        AND first_interaction_at >= :s AND first_interaction_at < :e) AS contacts_new,
    (SELECT count(DISTINCT contact_id) FROM messages WHERE merchant_id = :m
        AND direction = 'inbound' AND sent_at >= :s AND sent_at < :e) AS contacts_active,
    (SELECT count(*) FROM conversations WHERE merchant_id = :m
        AND started_at >= :s AND started_at < :e) AS conversations_total,
    (SELECT count(*) FROM conversations WHERE merchant_id = :m AND status = 'closed'
        AND started_at >= :s AND started_at < :e) AS conversations_closed,
    (SELECT count(*) FROM waits) AS answered,
    (SELECT round(avg(ms)) / 1000 FROM waits) AS average,
    (SELECT round(avg(ms) FILTER (WHERE NOT bot)) / 1000 FROM waits) AS human,
    (SELECT round(avg(ms) FILTER (WHERE bot)) / 1000 FROM waits) AS bot,
    (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ms) / 1000 FROM waits) AS median,
    (SELECT percentile_disc(0.9) WITHIN GROUP (ORDER BY ms) / 1000 FROM waits) AS p90,
    (SELECT count(*) FROM campaigns WHERE merchant_id = :m
        AND status IN ('scheduled', 'running', 'paused')) AS campaigns_active,
    (SELECT count(*) FROM campaigns WHERE merchant_id = :m AND status = 'completed'
        AND completed_at >= :s AND completed_at < :e) AS campaigns_completed,
    (SELECT count(*) FROM campaigns k JOIN campaign_recipients r ON r.campaign_id = k.id
     WHERE k.merchant_id = :m AND r.state = 'sent' AND r.sent_at >= :s
       AND r.sent_at < :e) AS campaign_sent,
    (SELECT count(*) FROM automation_flows WHERE merchant_id = :m AND status = 'active')
        AS active_flows,
    (SELECT count(*) FROM automation_flows f JOIN flow_runs r ON r.flow_id = f.id
     WHERE f.merchant_id = :m AND r.started_at >= :s AND r.started_at < :e) AS executions,
    (SELECT count(*) FROM ai_sessions WHERE merchant_id = :m
        AND created_at >= :s AND created_at < :e) AS ai_sessions,
    (SELECT count(*) FROM messages WHERE merchant_id = :m AND direction = 'outbound'
        AND is_from_bot AND status IN ('sent', 'read') AND sent_at >= :s AND sent_at < :e)
        AS bot_replies,
    (SELECT count(*) FROM escalations WHERE merchant_id = :m
        AND escalated_at >= :s AND escalated_at < :e) AS escalations,
    (SELECT count(*) FROM escalations WHERE merchant_id = :m AND breached
        AND escalated_at >= :s AND escalated_at < :e) AS sla_breaches,
    (SELECT coalesce(sum(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)), 0)
     FROM llm_calls WHERE merchant_id = :m AND created_at >= :s AND created_at < :e) AS tokens
"""

# Per local day: conversations started (closed now), DMs each way, the average response time
# by the inbound DM's day; the range's median and p90; per assignee.
CONVERSATIONS = f"""
WITH {_WAITS},
days AS (
    SELECT d::date AS day FROM generate_series(
        CAST(:first_day AS date), CAST(:last_day AS date), interval '1 day') d
),
started AS (
    SELECT (started_at AT TIME ZONE :tz)::date AS day, count(*) AS started,
        count(*) FILTER (WHERE status = 'closed') AS closed
    FROM conversations WHERE merchant_id = :m AND started_at >= :s AND started_at < :e
    GROUP BY 1
),
dms AS (
    SELECT (sent_at AT TIME ZONE :tz)::date AS day,
        count(*) FILTER (WHERE direction = 'inbound') AS inbound,
        count(*) FILTER (WHERE direction = 'outbound') AS outbound
    FROM messages WHERE merchant_id = :m AND sent_at >= :s AND sent_at < :e
      AND (direction = 'inbound' OR status IN ('sent', 'read'))
    GROUP BY 1
),
answered AS (
    SELECT (inbound_at AT TIME ZONE :tz)::date AS day, round(avg(ms)) / 1000 AS average
    FROM waits GROUP BY 1
)
SELECT json_build_object(
    'series', (SELECT json_agg(json_build_object('period', d.day,
        'started', coalesce(s.started, 0), 'closed', coalesce(s.closed, 0),
        'inbound', coalesce(m.inbound, 0), 'outbound', coalesce(m.outbound, 0),
        'average', a.average) ORDER BY d.day)
        FROM days d LEFT JOIN started s USING (day) LEFT JOIN dms m USING (day)
        LEFT JOIN answered a USING (day)),
    'median', (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ms) / 1000 FROM waits),
    'p90', (SELECT percentile_disc(0.9) WITHIN GROUP (ORDER BY ms) / 1000 FROM waits),
    'byAssignee', (SELECT json_agg(x ORDER BY x.conversations DESC, x.assignee) FROM (
        SELECT c.assigned_to_user_id AS assignee, count(*) AS conversations
        FROM conversations c WHERE c.merchant_id = :m AND c.started_at >= :s
          AND c.started_at < :e GROUP BY 1) x)
) AS report
"""

# Per local ISO week: new contacts, active ones (distinct), contacts known at the week's end;
# the range's distinct active contacts; the top tags.
CONTACTS = """
WITH weeks AS (
    SELECT w::date AS week FROM generate_series(
        CAST(:first_day AS date), CAST(:last_day AS date), interval '7 days') w
),
new AS (
    SELECT date_trunc('week', first_interaction_at AT TIME ZONE :tz)::date AS week,
        count(*) AS new
    FROM contacts WHERE merchant_id = :m AND first_interaction_at >= :s
      AND first_interaction_at < :e GROUP BY 1
),
known AS (
    SELECT date_trunc('week', least(created_at, first_interaction_at) AT TIME ZONE :tz)::date
        AS week, count(*) AS known
    FROM contacts WHERE merchant_id = :m AND least(created_at, first_interaction_at) < :e
    GROUP BY 1
),
active AS (
    SELECT date_trunc('week', sent_at AT TIME ZONE :tz)::date AS week,
        count(DISTINCT contact_id) AS active
    FROM messages WHERE merchant_id = :m AND direction = 'inbound'
      AND sent_at >= :s AND sent_at < :e GROUP BY 1
)
SELECT json_build_object(
    'series', (SELECT json_agg(json_build_object('period', w.week,
        'new', coalesce(n.new, 0), 'active', coalesce(a.active, 0),
        'total', (SELECT sum(k.known) FROM known k WHERE k.week <= w.week)) ORDER BY w.week)
        FROM weeks w LEFT JOIN new n USING (week) LEFT JOIN active a USING (week)),
    'active', (SELECT count(DISTINCT contact_id) FROM messages WHERE merchant_id = :m
        AND direction = 'inbound' AND sent_at >= :s AND sent_at < :e),
    'topTags', (SELECT json_agg(t) FROM (
        SELECT tag, count(*) AS count FROM contacts, unnest(tags) tag
        WHERE merchant_id = :m GROUP BY tag ORDER BY 2 DESC, 1 LIMIT 10) t)
) AS report
"""
