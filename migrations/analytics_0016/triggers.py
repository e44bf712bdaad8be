"""The triggers of revision 0016: each change of a counted row as signed deltas.

Frozen with the revision (migrations/versions/0016_analytics.py): a later change is a new
revision, not an edit here.
"""

from __future__ import annotations

# Each trigger turns the change of one row into signed deltas: the old row's contribution
# subtracted, the new one's added (OLD is NULL on INSERT, NEW on DELETE).
TRIGGERS = """
CREATE FUNCTION mktx_analytics_messages() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    grown boolean;
    later_day boolean;
    answered_later boolean;
BEGIN
    IF TG_OP = 'INSERT' AND NEW.direction = 'inbound' THEN
        -- The usual event, on ingestion's path, in one statement: a DM received is counted, and
        -- its contact's day grows when it is the day's latest DM. A later active day of the
        -- contact, or a reply already after this DM (both only when events come out of
        -- order), then need their own work; a DM after everything else answers nothing yet.
        WITH counted AS (
            INSERT INTO analytics_counts (merchant_id, account_id, slot, inbound)
            VALUES (NEW.merchant_id, NEW.account_id, mktx_slot(NEW.sent_at), 1)
        ), grew AS (
            UPDATE analytics_contact_days a SET last_at = NEW.sent_at
            WHERE a.contact_id = NEW.contact_id AND a.day = mktx_utc_day(NEW.sent_at)
              AND a.last_at < NEW.sent_at
            RETURNING a.day
        )
        SELECT EXISTS (SELECT 1 FROM grew),
            EXISTS (SELECT 1 FROM analytics_contact_days b
                    WHERE b.contact_id = NEW.contact_id AND b.day > mktx_utc_day(NEW.sent_at)),
            EXISTS (SELECT 1 FROM messages r
                    WHERE r.conversation_id = NEW.conversation_id AND r.sent_at >= NEW.sent_at
                      AND (r.sent_at, r.id) > (NEW.sent_at, NEW.id)
                      AND mktx_is_reply(r.direction, r.status, r.kind))
        INTO grown, later_day, answered_later;
        IF NOT grown THEN  -- the day's first DM, or not its latest
            PERFORM mktx_analytics_contact_day_add(NEW.merchant_id, NEW.account_id,
                                                   NEW.contact_id, NEW.sent_at);
        ELSIF later_day THEN
            UPDATE analytics_contact_days a SET previous_last_at = NEW.sent_at
            WHERE a.contact_id = NEW.contact_id
              AND a.day = (SELECT min(b.day) FROM analytics_contact_days b
                           WHERE b.contact_id = NEW.contact_id
                             AND b.day > mktx_utc_day(NEW.sent_at));
        END IF;
        IF answered_later THEN
            PERFORM mktx_analytics_waits_from(NEW.conversation_id, NEW.sent_at, NEW.id);
        END IF;
        RETURN NULL;
    END IF;
    INSERT INTO analytics_counts (merchant_id, account_id, slot, inbound, outbound, bot_replies)
    SELECT r.merchant_id, r.account_id, mktx_slot(r.sent_at),
        sum(r.sign * (r.direction = 'inbound')::int),
        sum(r.sign * (r.direction = 'outbound')::int),
        sum(r.sign * (r.direction = 'outbound' AND r.is_from_bot)::int)
    FROM (SELECT OLD.merchant_id, OLD.account_id, OLD.sent_at, OLD.direction, OLD.is_from_bot,
                 -1 AS sign
          WHERE TG_OP <> 'INSERT' AND (OLD.direction = 'inbound' OR OLD.status IN ('sent', 'read'))
          UNION ALL
          SELECT NEW.merchant_id, NEW.account_id, NEW.sent_at, NEW.direction, NEW.is_from_bot, 1
          WHERE TG_OP <> 'DELETE' AND (NEW.direction = 'inbound' OR NEW.status IN ('sent', 'read'))
         ) r
    GROUP BY 1, 2, 3
    HAVING sum(r.sign * (r.direction = 'inbound')::int) <> 0
        OR sum(r.sign * (r.direction = 'outbound')::int) <> 0;

    IF TG_OP <> 'INSERT' AND OLD.direction = 'inbound' THEN
        PERFORM mktx_analytics_contact_day_refresh(OLD.merchant_id, OLD.contact_id,
                                                   mktx_utc_day(OLD.sent_at));
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.direction = 'inbound' THEN
        PERFORM mktx_analytics_contact_day_add(NEW.merchant_id, NEW.account_id, NEW.contact_id,
                                               NEW.sent_at);
    END IF;

    IF TG_OP <> 'INSERT' AND (OLD.direction = 'inbound'
                              OR mktx_is_reply(OLD.direction, OLD.status, OLD.kind)) THEN
        PERFORM mktx_analytics_waits_from(OLD.conversation_id, OLD.sent_at, OLD.id);
    END IF;
    IF TG_OP <> 'DELETE' AND (NEW.direction = 'inbound'
                              OR mktx_is_reply(NEW.direction, NEW.status, NEW.kind)) THEN
        PERFORM mktx_analytics_waits_from(NEW.conversation_id, NEW.sent_at, NEW.id);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER mktx_analytics_messages_insert AFTER INSERT ON messages FOR EACH ROW
    WHEN ((NEW.direction = 'inbound' OR NEW.status IN ('sent', 'read')) AND current_setting('mktx.analytics', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION mktx_analytics_messages();
CREATE TRIGGER mktx_analytics_messages_update AFTER UPDATE ON messages FOR EACH ROW
    WHEN (((OLD.status IN ('sent', 'read')) IS DISTINCT FROM (NEW.status IN ('sent', 'read'))
           OR OLD.sent_at IS DISTINCT FROM NEW.sent_at
           OR OLD.conversation_id IS DISTINCT FROM NEW.conversation_id)
          AND current_setting('mktx.analytics', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION mktx_analytics_messages();
CREATE TRIGGER mktx_analytics_messages_delete AFTER DELETE ON messages FOR EACH ROW
    WHEN ((OLD.direction = 'inbound' OR OLD.status IN ('sent', 'read')) AND current_setting('mktx.analytics', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION mktx_analytics_messages();

-- Contacts are known from their first interaction or their creation, whichever came first.
CREATE FUNCTION mktx_analytics_contacts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.tags = '{}'
       AND mktx_slot(NEW.first_interaction_at) = mktx_slot(NEW.created_at) THEN
        -- A contact met by a webhook (known and new at once), without tags.
        INSERT INTO analytics_counts (merchant_id, account_id, slot, contacts_known, contacts_new,
            new_inbound_message, new_follower, new_import, new_manual, new_other)
        VALUES (NEW.merchant_id, NEW.account_id, mktx_slot(NEW.created_at), 1, 1,
            (NEW.source = 'inbound_message')::int, (NEW.source = 'new_follower')::int,
            (NEW.source = 'import')::int, (NEW.source = 'manual')::int,
            (NEW.source NOT IN ('inbound_message', 'new_follower', 'import', 'manual'))::int);
        RETURN NULL;
    END IF;
    INSERT INTO analytics_counts (merchant_id, account_id, slot, contacts_known, contacts_new,
        new_inbound_message, new_follower, new_import, new_manual, new_other)
    SELECT r.merchant_id, r.account_id, r.slot, sum(r.sign * r.known), sum(r.sign * r.new),
        sum(r.sign * r.new * (r.source = 'inbound_message')::int),
        sum(r.sign * r.new * (r.source = 'new_follower')::int),
        sum(r.sign * r.new * (r.source = 'import')::int),
        sum(r.sign * r.new * (r.source = 'manual')::int),
        sum(r.sign * r.new * (r.source NOT IN ('inbound_message', 'new_follower', 'import',
                                               'manual'))::int)
    FROM (SELECT OLD.merchant_id, OLD.account_id, OLD.source, -1 AS sign, x.slot, x.known, x.new
          FROM (VALUES (mktx_slot(least(OLD.created_at, OLD.first_interaction_at)), 1, 0),
                       (mktx_slot(OLD.first_interaction_at), 0, 1)) x (slot, known, new)
          WHERE TG_OP <> 'INSERT'
          UNION ALL
          SELECT NEW.merchant_id, NEW.account_id, NEW.source, 1, x.slot, x.known, x.new
          FROM (VALUES (mktx_slot(least(NEW.created_at, NEW.first_interaction_at)), 1, 0),
                       (mktx_slot(NEW.first_interaction_at), 0, 1)) x (slot, known, new)
          WHERE TG_OP <> 'DELETE') r
    WHERE r.slot IS NOT NULL
    GROUP BY r.merchant_id, r.account_id, r.slot
    HAVING sum(r.sign * r.known) <> 0 OR sum(r.sign * r.new) <> 0
        OR count(DISTINCT r.source) > 1;  -- the same slot, another source

    INSERT INTO analytics_tags (merchant_id, account_id, tag, contacts)
    SELECT r.merchant_id, r.account_id, r.tag, sum(r.sign)
    FROM (SELECT OLD.merchant_id, OLD.account_id, t AS tag, -1 AS sign
          FROM unnest(OLD.tags) t WHERE TG_OP <> 'INSERT'
          UNION ALL
          SELECT NEW.merchant_id, NEW.account_id, t, 1
          FROM unnest(NEW.tags) t WHERE TG_OP <> 'DELETE') r
    GROUP BY 1, 2, 3 HAVING sum(r.sign) <> 0;
    RETURN NULL;
END
$$;
CREATE TRIGGER mktx_analytics_contacts_change AFTER INSERT OR DELETE ON contacts FOR EACH ROW
    WHEN (current_setting('mktx.analytics', true) IS DISTINCT FROM 'off') EXECUTE FUNCTION mktx_analytics_contacts();
CREATE TRIGGER mktx_analytics_contacts_update AFTER UPDATE ON contacts FOR EACH ROW
    WHEN ((OLD.first_interaction_at, OLD.created_at, OLD.source, OLD.tags, OLD.account_id)
          IS DISTINCT FROM
          (NEW.first_interaction_at, NEW.created_at, NEW.source, NEW.tags, NEW.account_id)
          AND current_setting('mktx.analytics', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION mktx_analytics_contacts();

-- Conversations count where they started, with their status now; an assignment moves the
-- conversation and its waits to the new assignee.
CREATE FUNCTION mktx_analytics_conversations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN  -- a conversation begins (ingestion, the send path)
        INSERT INTO analytics_counts (merchant_id, account_id, slot, conversations_started,
            conversations_closed)
        VALUES (NEW.merchant_id, NEW.account_id, mktx_slot(NEW.started_at), 1,
            (NEW.status = 'closed')::int);
        INSERT INTO analytics_assignees (merchant_id, account_id, slot, assignee, conversations)
        VALUES (NEW.merchant_id, NEW.account_id, mktx_slot(NEW.started_at),
            NEW.assigned_to_user_id, 1);
        RETURN NULL;
    END IF;
    INSERT INTO analytics_counts (merchant_id, account_id, slot, conversations_started,
        conversations_closed)
    SELECT r.merchant_id, r.account_id, mktx_slot(r.started_at), sum(r.sign),
        sum(r.sign * (r.status = 'closed')::int)
    FROM (SELECT OLD.merchant_id, OLD.account_id, OLD.started_at, OLD.status, -1 AS sign
          WHERE TG_OP <> 'INSERT'
          UNION ALL
          SELECT NEW.merchant_id, NEW.account_id, NEW.started_at, NEW.status, 1
          WHERE TG_OP <> 'DELETE') r
    GROUP BY 1, 2, 3
    HAVING sum(r.sign) <> 0 OR sum(r.sign * (r.status = 'closed')::int) <> 0;

    INSERT INTO analytics_assignees (merchant_id, account_id, slot, assignee, conversations)
    SELECT r.merchant_id, r.account_id, mktx_slot(r.started_at), r.assignee, sum(r.sign)
    FROM (SELECT OLD.merchant_id, OLD.account_id, OLD.started_at,
                 OLD.assigned_to_user_id AS assignee, -1 AS sign
          WHERE TG_OP <> 'INSERT'
          UNION ALL
          SELECT NEW.merchant_id, NEW.account_id, NEW.started_at, NEW.assigned_to_user_id, 1
          WHERE TG_OP <> 'DELETE') r
    GROUP BY 1, 2, 3, 4 HAVING sum(r.sign) <> 0;

    IF TG_OP = 'UPDATE' AND OLD.assigned_to_user_id IS DISTINCT FROM NEW.assigned_to_user_id THEN
        UPDATE analytics_waits SET assignee = NEW.assigned_to_user_id
        WHERE conversation_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER mktx_analytics_conversations_change AFTER INSERT OR DELETE ON conversations
    FOR EACH ROW WHEN (current_setting('mktx.analytics', true) IS DISTINCT FROM 'off') EXECUTE FUNCTION mktx_analytics_conversations();
CREATE TRIGGER mktx_analytics_conversations_update AFTER UPDATE ON conversations FOR EACH ROW
    WHEN ((OLD.status, OLD.started_at, OLD.assigned_to_user_id, OLD.account_id)
          IS DISTINCT FROM (NEW.status, NEW.started_at, NEW.assigned_to_user_id, NEW.account_id)
          AND current_setting('mktx.analytics', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION mktx_analytics_conversations();

CREATE FUNCTION mktx_analytics_waits() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        INSERT INTO analytics_counts (merchant_id, account_id, slot, human_answered, human_ms,
            bot_answered, bot_ms)
        SELECT r.merchant_id, r.account_id, mktx_slot(r.inbound_at),
            r.sign * (NOT r.by_bot)::int, r.sign * r.ms * (NOT r.by_bot)::int,
            r.sign * r.by_bot::int, r.sign * r.ms * r.by_bot::int
        FROM (SELECT OLD.*, -1 AS sign WHERE TG_OP = 'DELETE'
              UNION ALL SELECT NEW.*, 1 WHERE TG_OP = 'INSERT') r;
        INSERT INTO analytics_wait_bins (merchant_id, account_id, day, bin, waits)
        SELECT r.merchant_id, r.account_id, mktx_utc_day(r.inbound_at), r.bin, r.sign
        FROM (SELECT OLD.*, -1 AS sign WHERE TG_OP = 'DELETE'
              UNION ALL SELECT NEW.*, 1 WHERE TG_OP = 'INSERT') r;
    END IF;
    INSERT INTO analytics_assignees (merchant_id, account_id, slot, assignee, human_answered,
        human_ms, bot_answered, bot_ms)
    SELECT r.merchant_id, r.account_id, mktx_slot(r.inbound_at), r.assignee,
        r.sign * (NOT r.by_bot)::int, r.sign * r.ms * (NOT r.by_bot)::int,
        r.sign * r.by_bot::int, r.sign * r.ms * r.by_bot::int
    FROM (SELECT OLD.*, -1 AS sign WHERE TG_OP <> 'INSERT'
          UNION ALL SELECT NEW.*, 1 WHERE TG_OP <> 'DELETE') r;
    RETURN NULL;
END
$$;
CREATE TRIGGER mktx_analytics_waits_change AFTER INSERT OR DELETE ON analytics_waits
    FOR EACH ROW WHEN (current_setting('mktx.analytics', true) IS DISTINCT FROM 'off') EXECUTE FUNCTION mktx_analytics_waits();
CREATE TRIGGER mktx_analytics_waits_update AFTER UPDATE ON analytics_waits FOR EACH ROW
    WHEN (OLD.assignee IS DISTINCT FROM NEW.assignee AND current_setting('mktx.analytics', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION mktx_analytics_waits();

CREATE FUNCTION mktx_analytics_contact_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_returns (merchant_id, account_id, day, previous_day, contacts)
    SELECT OLD.merchant_id, OLD.account_id, OLD.day, OLD.previous_day, -1 WHERE TG_OP <> 'INSERT'
    UNION ALL
    SELECT NEW.merchant_id, NEW.account_id, NEW.day, NEW.previous_day, 1 WHERE TG_OP <> 'DELETE';
    RETURN NULL;
END
$$;
CREATE TRIGGER mktx_analytics_contact_days_change AFTER INSERT OR DELETE
    ON analytics_contact_days FOR EACH ROW WHEN (current_setting('mktx.analytics', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION mktx_analytics_contact_days();
CREATE TRIGGER mktx_analytics_contact_days_update AFTER UPDATE ON analytics_contact_days
    FOR EACH ROW WHEN (OLD.previous_day IS DISTINCT FROM NEW.previous_day AND current_setting('mktx.analytics', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION mktx_analytics_contact_days();

-- Campaign DMs X accepted, flow runs, and the assistant's figures (merchant-wide: the
-- assistant is configured per merchant, and a cascaded delete could not name the account).
CREATE FUNCTION mktx_analytics_others() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'campaign_recipients' THEN
        INSERT INTO analytics_counts (merchant_id, account_id, slot, campaign_sent)
        SELECT r.m, r.a, mktx_slot(r.at), sum(r.s) FROM (
            SELECT OLD.merchant_id AS m, OLD.account_id AS a, OLD.sent_at AS at, -1 AS s
            WHERE TG_OP <> 'INSERT' AND OLD.state = 'sent' AND OLD.sent_at IS NOT NULL
            UNION ALL SELECT NEW.merchant_id, NEW.account_id, NEW.sent_at, 1
            WHERE TG_OP <> 'DELETE' AND NEW.state = 'sent' AND NEW.sent_at IS NOT NULL) r
        GROUP BY 1, 2, 3 HAVING sum(r.s) <> 0;
    ELSIF TG_TABLE_NAME = 'flow_runs' THEN
        INSERT INTO analytics_counts (merchant_id, account_id, slot, flow_runs)
        SELECT r.m, r.a, mktx_slot(r.at), sum(r.s) FROM (
            SELECT OLD.merchant_id AS m, OLD.account_id AS a, OLD.started_at AS at, -1 AS s
            WHERE TG_OP <> 'INSERT'
            UNION ALL SELECT NEW.merchant_id, NEW.account_id, NEW.started_at, 1
            WHERE TG_OP <> 'DELETE') r
        GROUP BY 1, 2, 3 HAVING sum(r.s) <> 0;
    ELSIF TG_TABLE_NAME = 'llm_calls' THEN
        INSERT INTO analytics_counts (merchant_id, slot, llm_calls, prompt_tokens,
            completion_tokens, cost)
        SELECT r.m, mktx_slot(r.at), r.s, r.s * coalesce(r.p, 0), r.s * coalesce(r.c, 0),
            r.s * coalesce(r.cost::numeric, 0) FROM (
            SELECT OLD.merchant_id AS m, OLD.created_at AS at, OLD.prompt_tokens AS p,
                OLD.completion_tokens AS c, OLD.cost AS cost, -1 AS s WHERE TG_OP = 'DELETE'
            UNION ALL SELECT NEW.merchant_id, NEW.created_at, NEW.prompt_tokens,
                NEW.completion_tokens, NEW.cost, 1 WHERE TG_OP = 'INSERT') r;
    ELSIF TG_TABLE_NAME = 'escalations' THEN
        INSERT INTO analytics_counts (merchant_id, slot, escalations, sla_breaches)
        SELECT r.m, mktx_slot(r.at), sum(r.s), sum(r.s * r.b::int) FROM (
            SELECT OLD.merchant_id AS m, OLD.escalated_at AS at, OLD.breached AS b, -1 AS s
            WHERE TG_OP <> 'INSERT'
            UNION ALL SELECT NEW.merchant_id, NEW.escalated_at, NEW.breached, 1
            WHERE TG_OP <> 'DELETE') r
        GROUP BY 1, 2 HAVING sum(r.s) <> 0 OR sum(r.s * r.b::int) <> 0;
    ELSIF TG_TABLE_NAME = 'ai_sessions' THEN
        INSERT INTO analytics_counts (merchant_id, slot, ai_sessions)
        SELECT r.m, mktx_slot(r.at), r.s FROM (
            SELECT OLD.merchant_id AS m, OLD.created_at AS at, -1 AS s WHERE TG_OP = 'DELETE'
            UNION ALL SELECT NEW.merchant_id, NEW.created_at, 1 WHERE TG_OP = 'INSERT') r;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER mktx_analytics_recipients_change AFTER INSERT OR DELETE ON campaign_recipients
    FOR EACH ROW WHEN (current_setting('mktx.analytics', true) IS DISTINCT FROM 'off') EXECUTE FUNCTION mktx_analytics_others();
CREATE TRIGGER mktx_analytics_recipients_update AFTER UPDATE ON campaign_recipients FOR EACH ROW
    WHEN ((OLD.state, OLD.sent_at) IS DISTINCT FROM (NEW.state, NEW.sent_at)
          AND (OLD.state = 'sent' OR NEW.state = 'sent') AND current_setting('mktx.analytics', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION mktx_analytics_others();
CREATE TRIGGER mktx_analytics_flow_runs AFTER INSERT OR DELETE OR UPDATE OF started_at
    ON flow_runs FOR EACH ROW WHEN (current_setting('mktx.analytics', true) IS DISTINCT FROM 'off') EXECUTE FUNCTION mktx_analytics_others();
CREATE TRIGGER mktx_analytics_llm_calls AFTER INSERT OR DELETE ON llm_calls
    FOR EACH ROW WHEN (current_setting('mktx.analytics', true) IS DISTINCT FROM 'off') EXECUTE FUNCTION mktx_analytics_others();
CREATE TRIGGER mktx_analytics_escalations AFTER INSERT OR DELETE OR UPDATE OF breached, escalated_at
    ON escalations FOR EACH ROW WHEN (current_setting('mktx.analytics', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION mktx_analytics_others();
CREATE TRIGGER mktx_analytics_ai_sessions AFTER INSERT OR DELETE ON ai_sessions
    FOR EACH ROW WHEN (current_setting('mktx.analytics', true) IS DISTINCT FROM 'off') EXECUTE FUNCTION mktx_analytics_others();
"""
