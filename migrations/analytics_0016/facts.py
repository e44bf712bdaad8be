"""The two fact tables' upkeep: a conversation's waits, a contact's active days.

Frozen with the revision (migrations/versions/0016_analytics.py): a later change is a new
revision, not an edit here.
"""

from __future__ import annotations

# The waits of one conversation after a position (a reply, or the start): messages in order
# of (sent_at, id); each reply closes a group; the first inbound DM of a group found the
# conversation waiting, and the reply closing the group answered it.
WAITS = """
CREATE FUNCTION mktx_analytics_conversation_waits(c uuid, after_at timestamptz, after_id uuid)
RETURNS TABLE (inbound_message_id uuid, inbound_at timestamptz, replied_at timestamptz,
               by_bot boolean)
LANGUAGE sql STABLE AS $$
WITH thread AS (
    SELECT m.id, m.sent_at, m.is_from_bot, m.direction = 'outbound' AS reply
    FROM messages m
    WHERE m.conversation_id = c AND m.sent_at >= after_at AND (m.sent_at, m.id) > (after_at, after_id)
      AND (m.direction = 'inbound' OR mktx_is_reply(m.direction, m.status, m.kind))
), grouped AS (
    SELECT *, count(*) FILTER (WHERE reply) OVER (ORDER BY sent_at, id) AS grp FROM thread
), starts AS (
    SELECT DISTINCT ON (grp) grp, id, sent_at FROM grouped WHERE NOT reply
    ORDER BY grp, sent_at, id
)
SELECT s.id, s.sent_at, r.sent_at, r.is_from_bot
FROM starts s JOIN grouped r ON r.reply AND r.grp = s.grp + 1
$$;

-- A change at (p_at, p_id) can only alter the waits after the last reply before it: those are
-- recomputed, and only the facts that differ are deleted and inserted.
CREATE FUNCTION mktx_analytics_waits_from(c uuid, p_at timestamptz, p_id uuid)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r_at timestamptz;
    r_id uuid;
BEGIN
    SELECT m.sent_at, m.id INTO r_at, r_id FROM messages m
    WHERE m.conversation_id = c AND m.sent_at <= p_at AND (m.sent_at, m.id) < (p_at, p_id)
      AND mktx_is_reply(m.direction, m.status, m.kind)
    ORDER BY m.sent_at DESC, m.id DESC LIMIT 1;
    IF r_at IS NULL THEN
        r_at := '-infinity';
        r_id := '00000000-0000-0000-0000-000000000000';
    END IF;
    DELETE FROM analytics_waits w
    WHERE w.conversation_id = c AND w.inbound_at >= r_at
      AND (w.inbound_at, w.inbound_message_id) > (r_at, r_id)
      AND (w.inbound_message_id, w.replied_at, w.by_bot) NOT IN (
          SELECT n.inbound_message_id, n.replied_at, n.by_bot
          FROM mktx_analytics_conversation_waits(c, r_at, r_id) n);
    INSERT INTO analytics_waits (inbound_message_id, conversation_id, merchant_id, account_id,
        assignee, inbound_at, replied_at, by_bot)
    SELECT n.inbound_message_id, c, v.merchant_id, v.account_id, v.assigned_to_user_id,
        n.inbound_at, n.replied_at, n.by_bot
    FROM mktx_analytics_conversation_waits(c, r_at, r_id) n JOIN conversations v ON v.id = c
    ON CONFLICT (inbound_message_id) DO NOTHING;
END
$$;
"""


CONTACT_DAYS = """
-- An inbound DM at `at`: its day's row grows (or is born, after the contact's previous active
-- day), and the next active day, if any, learns of it.
CREATE FUNCTION mktx_analytics_contact_day_add(m varchar, acc uuid, c uuid, at timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    d date := mktx_utc_day(at);
    p_day date;
    p_last timestamptz;
    cur_last timestamptz;
BEGIN
    -- In order, a later DM of the day: the row's last DM moves (a HOT update), and a later
    -- active day, were there one, learns it.
    UPDATE analytics_contact_days a SET last_at = at
    WHERE a.contact_id = c AND a.day = d AND a.last_at < at;
    IF FOUND THEN
        UPDATE analytics_contact_days a SET previous_last_at = at
        WHERE a.contact_id = c
          AND a.day = (SELECT min(b.day) FROM analytics_contact_days b
                       WHERE b.contact_id = c AND b.day > d);
        RETURN;
    END IF;
    SELECT a.day, a.last_at INTO p_day, p_last FROM analytics_contact_days a
    WHERE a.contact_id = c AND a.day < d ORDER BY a.day DESC LIMIT 1;
    INSERT INTO analytics_contact_days AS a (contact_id, day, merchant_id, account_id, first_at,
        last_at, previous_day, previous_last_at)
    VALUES (c, d, m, acc, at, at, coalesce(p_day, '-infinity'), p_last)
    ON CONFLICT (contact_id, day) DO UPDATE SET
        first_at = least(a.first_at, excluded.first_at),
        last_at = greatest(a.last_at, excluded.last_at)
    WHERE excluded.first_at < a.first_at OR excluded.last_at > a.last_at
    RETURNING a.last_at INTO cur_last;
    IF FOUND THEN
        UPDATE analytics_contact_days a SET previous_day = d, previous_last_at = cur_last
        WHERE a.contact_id = c
          AND a.day = (SELECT min(b.day) FROM analytics_contact_days b
                       WHERE b.contact_id = c AND b.day > d)
          AND (a.previous_day, a.previous_last_at) IS DISTINCT FROM (d, cur_last);
    END IF;
END
$$;

-- An inbound DM went (erasure): the day's row is recomputed from what remains.
CREATE FUNCTION mktx_analytics_contact_day_refresh(m varchar, c uuid, d date)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    f timestamptz;
    l timestamptz;
    p_day date;
    p_last timestamptz;
BEGIN
    SELECT min(x.sent_at), max(x.sent_at) INTO f, l FROM messages x
    WHERE x.merchant_id = m AND x.contact_id = c AND x.direction = 'inbound'
      AND mktx_utc_day(x.sent_at) = d;
    IF f IS NULL THEN
        DELETE FROM analytics_contact_days a WHERE a.contact_id = c AND a.day = d
        RETURNING a.previous_day, a.previous_last_at INTO p_day, p_last;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    ELSE
        UPDATE analytics_contact_days a SET first_at = f, last_at = l
        WHERE a.contact_id = c AND a.day = d;
        p_day := d;
        p_last := l;
    END IF;
    UPDATE analytics_contact_days a SET previous_day = p_day, previous_last_at = p_last
    WHERE a.contact_id = c
      AND a.day = (SELECT min(b.day) FROM analytics_contact_days b
                   WHERE b.contact_id = c AND b.day > d)
      AND (a.previous_day, a.previous_last_at) IS DISTINCT FROM (p_day, p_last);
END
$$;
"""
