-- Version 23: outbound webhooks (issue 18, point 1) — a company's HTTP endpoints told of its changes.
--
-- `webhooks`: one endpoint of a company: its URL, the events it takes, its Standard Webhooks secret
-- (`whsec_…`, shown to the admin once), `enabled`, and why it was disabled when zapgate did it
-- (`disabled_reason`: failing for WEBHOOK_DISABLE_AFTER). `failing_since`: the first failed attempt
-- since its last success.
--
-- `webhook_deliveries`: the outbox. One row per (event, endpoint), written by the triggers below IN THE
-- TRANSACTION OF THE CHANGE, whatever code path made it (the intake's batched statement, an ack, an
-- agent's update, a session's status, a campaign's progress): a change that commits has its deliveries,
-- one that rolls back has none. The delivery actor (actors/webhooks.py) posts them: `uid` is the stable
-- `webhook-id`, `order_key` ('ticket:ID') keeps one conversation's deliveries in order (the next waits
-- for the previous to be delivered or failed), `next_attempt_at` is both the retry time and the lease of
-- an attempt in flight (a process killed mid-post leaves the row due again once its lease passes).
--
-- The triggers are statement-level with transition tables: one INSERT ... SELECT per statement (a group
-- commit's batch of 500 messages is one multi-row insert), and when no enabled webhook anywhere takes the
-- event, one probe of the small `webhooks` table and nothing else.

CREATE TABLE webhooks (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id       bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    url              text NOT NULL CHECK (length(url) BETWEEN 1 AND 2000),
    events           text[] NOT NULL CHECK (cardinality(events) BETWEEN 1 AND 50),
    enabled          boolean NOT NULL DEFAULT true,
    description      text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    secret           text NOT NULL,
    failing_since    timestamptz,
    disabled_reason  text CHECK (length(disabled_reason) <= 1000),
    disabled_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, id)
);
CREATE INDEX webhooks_company_idx ON webhooks (company_id, id);
CREATE INDEX webhooks_enabled_idx ON webhooks (company_id) WHERE enabled;

CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid              uuid NOT NULL DEFAULT gen_random_uuid(),
    company_id       bigint NOT NULL,
    webhook_id       bigint NOT NULL,
    event            text NOT NULL,
    order_key        text,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text CHECK (length(last_error) <= 1000),
    last_response    text CHECK (length(last_response) <= 1000),
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    FOREIGN KEY (company_id, webhook_id) REFERENCES webhooks (company_id, id) ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (webhook_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_order_idx ON webhook_deliveries (webhook_id, order_key, id)
    WHERE status = 'pending' AND order_key IS NOT NULL;
CREATE INDEX webhook_deliveries_list_idx ON webhook_deliveries (webhook_id, id DESC);
CREATE INDEX webhook_deliveries_finished_idx ON webhook_deliveries (finished_at) WHERE status <> 'pending';

-- ─── what each event carries (`data`), camelCase as the API ───────────────────────────────────────

CREATE FUNCTION webhook_message_data(m messages) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', m.id, 'wid', m.wid, 'ticketId', m.ticket_id, 'contactId', m.contact_id, 'whatsappId', m.whatsapp_id,
        'companyId', m.company_id, 'fromMe', m.from_me, 'body', m.body, 'mediaType', m.media_type,
        'mediaUrl', m.media_url, 'mediaName', m.media_name, 'ack', m.ack, 'status', m.status, 'read', m.read,
        'reaction', m.reaction, 'isEdited', m.is_edited, 'isDeleted', m.is_deleted, 'isPrivate', m.is_private,
        'participant', m.participant, 'sentBy', m.sent_by, 'userId', m.sent_by_user_id,
        'latitude', m.latitude, 'longitude', m.longitude,
        'createdAt', m.created_at, 'updatedAt', m.updated_at)
$$;

CREATE FUNCTION webhook_ticket_data(t tickets) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', t.id, 'uuid', t.uuid, 'companyId', t.company_id, 'contactId', t.contact_id,
        'whatsappId', t.whatsapp_id, 'queueId', t.queue_id, 'userId', t.user_id, 'status', t.status,
        'isGroup', t.is_group, 'unreadMessages', t.unread_messages, 'lastMessage', t.last_message,
        'createdAt', t.created_at, 'updatedAt', t.updated_at)
$$;

CREATE FUNCTION webhook_contact_data(c contacts) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', c.id, 'companyId', c.company_id, 'name', c.name, 'number', c.number, 'lid', c.lid,
        'email', c.email, 'profilePicUrl', c.profile_pic_url, 'isGroup', c.is_group, 'disableBot', c.disable_bot,
        'optedOutAt', c.opted_out_at, 'updatedAt', c.updated_at)
$$;

-- the endpoints of `company` that take `event` now; the trigger functions' one probe when none anywhere does
CREATE FUNCTION webhooks_taking(event text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM webhooks WHERE enabled AND event = ANY (events))
$$;

-- ─── the triggers ────────────────────────────────────────────────────────────────────────────────

CREATE FUNCTION webhooks_messages_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT webhooks_taking('message.created') THEN RETURN NULL; END IF;
    INSERT INTO webhook_deliveries (company_id, webhook_id, event, order_key, payload)
    SELECT w.company_id, w.id, 'message.created', 'ticket:' || n.ticket_id,
           jsonb_build_object('type', 'message.created', 'timestamp', now(), 'data', webhook_message_data(n))
    FROM new_rows n JOIN webhooks w ON w.company_id = n.company_id AND w.enabled AND 'message.created' = ANY (w.events)
    ORDER BY n.id, w.id;
    RETURN NULL;
END $$;
CREATE TRIGGER webhooks_messages_inserted AFTER INSERT ON messages REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks_messages_inserted();

-- ack, edit, delete, reaction, the send's outcome (status, wid) of an outbound message; `changes` names them
CREATE FUNCTION webhooks_messages_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT webhooks_taking('message.updated') THEN RETURN NULL; END IF;
    INSERT INTO webhook_deliveries (company_id, webhook_id, event, order_key, payload)
    SELECT w.company_id, w.id, 'message.updated', 'ticket:' || n.ticket_id,
           jsonb_build_object('type', 'message.updated', 'timestamp', now(), 'data',
               webhook_message_data(n) || jsonb_build_object('changes', to_jsonb(array_remove(ARRAY[
                   CASE WHEN o.ack IS DISTINCT FROM n.ack THEN 'ack' END,
                   CASE WHEN o.body IS DISTINCT FROM n.body THEN 'body' END,
                   CASE WHEN o.reaction IS DISTINCT FROM n.reaction THEN 'reaction' END,
                   CASE WHEN o.is_deleted IS DISTINCT FROM n.is_deleted THEN 'isDeleted' END,
                   CASE WHEN o.status IS DISTINCT FROM n.status THEN 'status' END,
                   CASE WHEN o.wid IS DISTINCT FROM n.wid THEN 'wid' END], NULL))))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    JOIN webhooks w ON w.company_id = n.company_id AND w.enabled AND 'message.updated' = ANY (w.events)
    WHERE (o.ack, o.body, o.reaction, o.is_deleted, o.status, o.wid)
          IS DISTINCT FROM (n.ack, n.body, n.reaction, n.is_deleted, n.status, n.wid)
    ORDER BY n.id, w.id;
    RETURN NULL;
END $$;
CREATE TRIGGER webhooks_messages_updated AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks_messages_updated();

CREATE FUNCTION webhooks_tickets_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT webhooks_taking('ticket.created') THEN RETURN NULL; END IF;
    INSERT INTO webhook_deliveries (company_id, webhook_id, event, order_key, payload)
    SELECT w.company_id, w.id, 'ticket.created', 'ticket:' || n.id,
           jsonb_build_object('type', 'ticket.created', 'timestamp', now(), 'data', webhook_ticket_data(n))
    FROM new_rows n JOIN webhooks w ON w.company_id = n.company_id AND w.enabled AND 'ticket.created' = ANY (w.events)
    ORDER BY n.id, w.id;
    RETURN NULL;
END $$;
CREATE TRIGGER webhooks_tickets_inserted AFTER INSERT ON tickets REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks_tickets_inserted();

-- status, agent, queue, connection, contact: not the counters every message moves (message.created says that)
CREATE FUNCTION webhooks_tickets_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT webhooks_taking('ticket.updated') THEN RETURN NULL; END IF;
    INSERT INTO webhook_deliveries (company_id, webhook_id, event, order_key, payload)
    SELECT w.company_id, w.id, 'ticket.updated', 'ticket:' || n.id,
           jsonb_build_object('type', 'ticket.updated', 'timestamp', now(), 'data',
               webhook_ticket_data(n) || jsonb_build_object('previous', jsonb_build_object(
                   'status', o.status, 'userId', o.user_id, 'queueId', o.queue_id, 'whatsappId', o.whatsapp_id,
                   'contactId', o.contact_id)))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    JOIN webhooks w ON w.company_id = n.company_id AND w.enabled AND 'ticket.updated' = ANY (w.events)
    WHERE (o.status, o.user_id, o.queue_id, o.whatsapp_id, o.contact_id)
          IS DISTINCT FROM (n.status, n.user_id, n.queue_id, n.whatsapp_id, n.contact_id)
    ORDER BY n.id, w.id;
    RETURN NULL;
END $$;
CREATE TRIGGER webhooks_tickets_updated AFTER UPDATE ON tickets
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks_tickets_updated();

CREATE FUNCTION webhooks_contacts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT webhooks_taking('contact.updated') THEN RETURN NULL; END IF;
    INSERT INTO webhook_deliveries (company_id, webhook_id, event, order_key, payload)
    SELECT w.company_id, w.id, 'contact.updated', 'contact:' || n.id,
           jsonb_build_object('type', 'contact.updated', 'timestamp', now(), 'data', webhook_contact_data(n))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    JOIN webhooks w ON w.company_id = n.company_id AND w.enabled AND 'contact.updated' = ANY (w.events)
    WHERE (o.name, o.number, o.lid, o.email, o.profile_pic_url, o.disable_bot, o.opted_out_at)
          IS DISTINCT FROM (n.name, n.number, n.lid, n.email, n.profile_pic_url, n.disable_bot, n.opted_out_at)
    ORDER BY n.id, w.id;
    RETURN NULL;
END $$;
CREATE TRIGGER webhooks_contacts_updated AFTER UPDATE ON contacts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks_contacts_updated();

CREATE FUNCTION webhooks_whatsapps_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT webhooks_taking('session.status') THEN RETURN NULL; END IF;
    INSERT INTO webhook_deliveries (company_id, webhook_id, event, order_key, payload)
    SELECT w.company_id, w.id, 'session.status', 'whatsapp:' || n.id,
           jsonb_build_object('type', 'session.status', 'timestamp', now(), 'data', jsonb_build_object(
               'whatsappId', n.id, 'companyId', n.company_id, 'name', n.name, 'channel', n.channel,
               'status', n.status, 'previousStatus', o.status, 'number', n.number,
               'lastDisconnectReason', n.last_disconnect_reason))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    JOIN webhooks w ON w.company_id = n.company_id AND w.enabled AND 'session.status' = ANY (w.events)
    WHERE o.status IS DISTINCT FROM n.status
    ORDER BY n.id, w.id;
    RETURN NULL;
END $$;
CREATE TRIGGER webhooks_whatsapps_updated AFTER UPDATE ON whatsapps
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks_whatsapps_updated();

CREATE FUNCTION webhooks_campaigns_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT webhooks_taking('campaign.updated') THEN RETURN NULL; END IF;
    INSERT INTO webhook_deliveries (company_id, webhook_id, event, order_key, payload)
    SELECT w.company_id, w.id, 'campaign.updated', 'campaign:' || n.id,
           jsonb_build_object('type', 'campaign.updated', 'timestamp', now(), 'data', jsonb_build_object(
               'id', n.id, 'companyId', n.company_id, 'name', n.name, 'status', n.status,
               'previousStatus', o.status, 'whatsappId', n.whatsapp_id, 'scheduledAt', n.scheduled_at,
               'startedAt', n.started_at, 'completedAt', n.completed_at, 'pausedAt', n.paused_at,
               'pauseReason', n.pause_reason))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    JOIN webhooks w ON w.company_id = n.company_id AND w.enabled AND 'campaign.updated' = ANY (w.events)
    WHERE (o.status, o.paused_at, o.completed_at, o.started_at)
          IS DISTINCT FROM (n.status, n.paused_at, n.completed_at, n.started_at)
    ORDER BY n.id, w.id;
    RETURN NULL;
END $$;
CREATE TRIGGER webhooks_campaigns_updated AFTER UPDATE ON campaigns
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks_campaigns_updated();

-- a campaign's progress: one contact of it reached an outcome (sent, failed, skipped) or was delivered/read/replied
CREATE FUNCTION webhooks_shippings_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT webhooks_taking('campaign.progress') THEN RETURN NULL; END IF;
    INSERT INTO webhook_deliveries (company_id, webhook_id, event, order_key, payload)
    SELECT w.company_id, w.id, 'campaign.progress', 'campaign:' || n.campaign_id,
           jsonb_build_object('type', 'campaign.progress', 'timestamp', now(), 'data', jsonb_build_object(
               'campaignId', n.campaign_id, 'shippingId', n.id, 'companyId', n.company_id, 'number', n.number,
               'contactId', n.contact_id, 'state', n.state, 'error', n.error, 'sentAt', n.sent_at,
               'deliveredAt', n.delivered_at, 'readAt', n.read_at, 'repliedAt', n.replied_at,
               'confirmedAt', n.confirmed_at))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    JOIN webhooks w ON w.company_id = n.company_id AND w.enabled AND 'campaign.progress' = ANY (w.events)
    WHERE ((o.state IS DISTINCT FROM n.state AND n.state IN ('sent', 'failed', 'skipped'))
           OR (o.delivered_at, o.read_at, o.replied_at, o.confirmed_at)
              IS DISTINCT FROM (n.delivered_at, n.read_at, n.replied_at, n.confirmed_at))
    ORDER BY n.id, w.id;
    RETURN NULL;
END $$;
CREATE TRIGGER webhooks_shippings_updated AFTER UPDATE ON campaign_shippings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks_shippings_updated();

CREATE FUNCTION webhooks_schedules_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT webhooks_taking('schedule.updated') THEN RETURN NULL; END IF;
    INSERT INTO webhook_deliveries (company_id, webhook_id, event, order_key, payload)
    SELECT w.company_id, w.id, 'schedule.updated', 'schedule:' || n.id,
           jsonb_build_object('type', 'schedule.updated', 'timestamp', now(), 'data', jsonb_build_object(
               'id', n.id, 'companyId', n.company_id, 'contactId', n.contact_id, 'ticketId', n.ticket_id,
               'whatsappId', n.whatsapp_id, 'status', n.status, 'previousStatus', o.status,
               'sendAt', n.send_at, 'sentAt', n.sent_at, 'sentCount', n.sent_count, 'lastError', n.last_error))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    JOIN webhooks w ON w.company_id = n.company_id AND w.enabled AND 'schedule.updated' = ANY (w.events)
    WHERE (o.status, o.sent_count, o.send_at) IS DISTINCT FROM (n.status, n.sent_count, n.send_at)
    ORDER BY n.id, w.id;
    RETURN NULL;
END $$;
CREATE TRIGGER webhooks_schedules_updated AFTER UPDATE ON schedules
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks_schedules_updated();
