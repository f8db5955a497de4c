-- Version 21: dashboard, reports and service statistics (issue 17).
--
-- 1. `ticket_events` gets the kinds the figures need: `queued` (the ticket entered a queue: the bot's menu,
--    a forward), `assigned` (the bot gave it to an agent), `rated` (the contact answered the rating
--    question) and `first_reply` (the first message of an agent in a cycle: since its creation or reopening).
--    Each row also carries the durations measured at that moment (seconds), so a percentile is a plain
--    aggregate over events and the family's TicketTraking times derive from them:
--      accepted    → wait_s        since the cycle's start or its last `queued` (ticketz: startedAt - queuedAt)
--      first_reply → first_reply_s since the cycle's start (created / reopened): first response time
--      closed      → resolution_s  since the cycle's start; service_s since the cycle's last `accepted`
--                                  (ticketz: finishedAt - startedAt; NULL when nobody accepted it)
--      rated       → rate          the answer, 1..5
--    A "cycle" starts at a `created` or `reopened` event; "before" means earlier by (created_at, id).
-- 2. `dashboard_counters`: per company, UTC hour, user and queue (0 for none), how many events of each kind
--    and the sums of the durations, maintained by the event's insert (the trigger below, in the same
--    transaction as the change). Hours are UTC: any zone whose offset is whole hours re-buckets them
--    exactly (local midnight is a UTC hour boundary, DST included); zones with :30/:45 offsets are answered
--    from the events themselves (storage/dashboard.py). Coarser copies the dashboard reads, kept by the same
--    insert: `dashboard_user_hours` (no queue), `dashboard_hours` (the company's hours: a 30-day series is
--    720 rows) and `dashboard_user_days` (an agent's UTC days: a period is its whole UTC days plus at most
--    two partial days of hours).
-- 3. Backfill: a `created` event for tickets without one, a `closed` event for closed tickets without one,
--    `rated` events from user_ratings, `first_reply` events from the agents' messages; then every event gets
--    its durations and is counted by the same functions the trigger uses.
-- 4. Every counted event is announced after its commit by NOTIFY zapgate_dashboard '<company id>'
--    (actors/dashboard_push.py turns that into ticketz's `counter` event for admins, at most once a second).

ALTER TABLE ticket_events DROP CONSTRAINT ticket_events_kind_check;
ALTER TABLE ticket_events ADD CONSTRAINT ticket_events_kind_check CHECK (kind IN (
    'created', 'queued', 'accepted', 'assigned', 'transferred', 'closed', 'reopened', 'rated', 'first_reply'));
ALTER TABLE ticket_events
    ADD COLUMN wait_s        double precision,
    ADD COLUMN first_reply_s double precision,
    ADD COLUMN resolution_s  double precision,
    ADD COLUMN service_s     double precision,
    ADD COLUMN rate          smallint CHECK (rate BETWEEN 1 AND 5);
CREATE INDEX ticket_events_company_kind_idx ON ticket_events (company_id, kind, created_at);
-- the dashboard's "new contacts"
CREATE INDEX contacts_company_created_idx ON contacts (company_id, created_at);

CREATE TABLE dashboard_counters (
    company_id     bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    hour           timestamptz NOT NULL,  -- the UTC hour's start
    user_id        bigint NOT NULL DEFAULT 0,  -- 0: none
    queue_id       bigint NOT NULL DEFAULT 0,  -- 0: none
    created        integer NOT NULL DEFAULT 0,
    queued         integer NOT NULL DEFAULT 0,
    accepted       integer NOT NULL DEFAULT 0,
    assigned       integer NOT NULL DEFAULT 0,
    transferred    integer NOT NULL DEFAULT 0,
    closed         integer NOT NULL DEFAULT 0,
    reopened       integer NOT NULL DEFAULT 0,
    rated          integer NOT NULL DEFAULT 0,
    first_replies  integer NOT NULL DEFAULT 0,
    wait_n         integer NOT NULL DEFAULT 0,
    wait_s         double precision NOT NULL DEFAULT 0,
    first_reply_s  double precision NOT NULL DEFAULT 0,
    resolution_n   integer NOT NULL DEFAULT 0,
    resolution_s   double precision NOT NULL DEFAULT 0,
    service_n      integer NOT NULL DEFAULT 0,
    service_s      double precision NOT NULL DEFAULT 0,
    rating_sum     integer NOT NULL DEFAULT 0,
    PRIMARY KEY (company_id, hour, user_id, queue_id)
);
CREATE TABLE dashboard_user_hours (LIKE dashboard_counters INCLUDING DEFAULTS);
ALTER TABLE dashboard_user_hours DROP COLUMN queue_id;
ALTER TABLE dashboard_user_hours ADD PRIMARY KEY (company_id, hour, user_id),
    ADD FOREIGN KEY (company_id) REFERENCES companies (id) ON DELETE CASCADE;
-- the company's hours (the dashboard's series: 720 rows for 30 days) and each agent's UTC days (a period's
-- whole UTC days come from here, its first and last hours from dashboard_user_hours: ~agents × 31 rows)
CREATE TABLE dashboard_hours (LIKE dashboard_user_hours INCLUDING DEFAULTS);
ALTER TABLE dashboard_hours DROP COLUMN user_id;
ALTER TABLE dashboard_hours ADD PRIMARY KEY (company_id, hour),
    ADD FOREIGN KEY (company_id) REFERENCES companies (id) ON DELETE CASCADE;
CREATE TABLE dashboard_user_days (LIKE dashboard_user_hours INCLUDING DEFAULTS);
ALTER TABLE dashboard_user_days DROP COLUMN hour;
ALTER TABLE dashboard_user_days ADD COLUMN day date NOT NULL;  -- the UTC day
ALTER TABLE dashboard_user_days ADD PRIMARY KEY (company_id, day, user_id),
    ADD FOREIGN KEY (company_id) REFERENCES companies (id) ON DELETE CASCADE;

-- The durations of an event, from the events of its ticket before it.
CREATE FUNCTION ticket_event_measure(e ticket_events) RETURNS ticket_events LANGUAGE plpgsql STABLE AS $$
DECLARE
    cycle_at timestamptz;
    wait_from timestamptz;
    accepted_at timestamptz;
BEGIN
    IF e.kind NOT IN ('accepted', 'first_reply', 'closed') THEN
        RETURN e;
    END IF;
    SELECT p.created_at INTO cycle_at FROM ticket_events p
    WHERE p.ticket_id = e.ticket_id AND p.company_id = e.company_id AND p.kind IN ('created', 'reopened')
      AND (p.created_at, p.id) < (e.created_at, e.id)
    ORDER BY p.created_at DESC, p.id DESC LIMIT 1;
    IF e.kind = 'accepted' THEN
        SELECT p.created_at INTO wait_from FROM ticket_events p
        WHERE p.ticket_id = e.ticket_id AND p.company_id = e.company_id AND p.kind IN ('created', 'reopened', 'queued')
          AND (p.created_at, p.id) < (e.created_at, e.id)
        ORDER BY p.created_at DESC, p.id DESC LIMIT 1;
        e.wait_s := extract(epoch FROM e.created_at - wait_from);
    ELSIF e.kind = 'first_reply' THEN
        e.first_reply_s := extract(epoch FROM e.created_at - cycle_at);
    ELSE
        e.resolution_s := extract(epoch FROM e.created_at - cycle_at);
        SELECT p.created_at INTO accepted_at FROM ticket_events p
        WHERE p.ticket_id = e.ticket_id AND p.company_id = e.company_id AND p.kind = 'accepted'
          AND (p.created_at, p.id) < (e.created_at, e.id) AND p.created_at >= cycle_at
        ORDER BY p.created_at DESC, p.id DESC LIMIT 1;
        e.service_s := extract(epoch FROM e.created_at - accepted_at);
    END IF;
    RETURN e;
END $$;

-- Add one event to the counters (the four tables).
CREATE FUNCTION dashboard_count(e ticket_events) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    h timestamptz := date_trunc('hour', e.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    one integer[] := ARRAY[(e.kind = 'created')::int, (e.kind = 'queued')::int, (e.kind = 'accepted')::int,
                           (e.kind = 'assigned')::int, (e.kind = 'transferred')::int, (e.kind = 'closed')::int,
                           (e.kind = 'reopened')::int, (e.kind = 'rated')::int, (e.kind = 'first_reply')::int,
                           (e.wait_s IS NOT NULL)::int, (e.resolution_s IS NOT NULL)::int,
                           (e.service_s IS NOT NULL)::int, coalesce(e.rate, 0)];
BEGIN
    INSERT INTO dashboard_counters AS c (company_id, hour, user_id, queue_id, created, queued, accepted, assigned,
                                         transferred, closed, reopened, rated, first_replies, wait_n, wait_s,
                                         first_reply_s, resolution_n, resolution_s, service_n, service_s, rating_sum)
    VALUES (e.company_id, h, coalesce(e.user_id, 0), coalesce(e.queue_id, 0), one[1], one[2], one[3], one[4],
            one[5], one[6], one[7], one[8], one[9], one[10], coalesce(e.wait_s, 0), coalesce(e.first_reply_s, 0),
            one[11], coalesce(e.resolution_s, 0), one[12], coalesce(e.service_s, 0), one[13])
    ON CONFLICT (company_id, hour, user_id, queue_id) DO UPDATE SET
        created = c.created + excluded.created, queued = c.queued + excluded.queued,
        accepted = c.accepted + excluded.accepted, assigned = c.assigned + excluded.assigned,
        transferred = c.transferred + excluded.transferred, closed = c.closed + excluded.closed,
        reopened = c.reopened + excluded.reopened, rated = c.rated + excluded.rated,
        first_replies = c.first_replies + excluded.first_replies, wait_n = c.wait_n + excluded.wait_n,
        wait_s = c.wait_s + excluded.wait_s, first_reply_s = c.first_reply_s + excluded.first_reply_s,
        resolution_n = c.resolution_n + excluded.resolution_n, resolution_s = c.resolution_s + excluded.resolution_s,
        service_n = c.service_n + excluded.service_n, service_s = c.service_s + excluded.service_s,
        rating_sum = c.rating_sum + excluded.rating_sum;
    INSERT INTO dashboard_user_hours AS c (company_id, hour, user_id, created, queued, accepted, assigned,
                                           transferred, closed, reopened, rated, first_replies, wait_n, wait_s,
                                           first_reply_s, resolution_n, resolution_s, service_n, service_s, rating_sum)
    VALUES (e.company_id, h, coalesce(e.user_id, 0), one[1], one[2], one[3], one[4],
            one[5], one[6], one[7], one[8], one[9], one[10], coalesce(e.wait_s, 0), coalesce(e.first_reply_s, 0),
            one[11], coalesce(e.resolution_s, 0), one[12], coalesce(e.service_s, 0), one[13])
    ON CONFLICT (company_id, hour, user_id) DO UPDATE SET
        created = c.created + excluded.created, queued = c.queued + excluded.queued,
        accepted = c.accepted + excluded.accepted, assigned = c.assigned + excluded.assigned,
        transferred = c.transferred + excluded.transferred, closed = c.closed + excluded.closed,
        reopened = c.reopened + excluded.reopened, rated = c.rated + excluded.rated,
        first_replies = c.first_replies + excluded.first_replies, wait_n = c.wait_n + excluded.wait_n,
        wait_s = c.wait_s + excluded.wait_s, first_reply_s = c.first_reply_s + excluded.first_reply_s,
        resolution_n = c.resolution_n + excluded.resolution_n, resolution_s = c.resolution_s + excluded.resolution_s,
        service_n = c.service_n + excluded.service_n, service_s = c.service_s + excluded.service_s,
        rating_sum = c.rating_sum + excluded.rating_sum;
    INSERT INTO dashboard_hours AS c (company_id, hour, created, queued, accepted, assigned,
                                           transferred, closed, reopened, rated, first_replies, wait_n, wait_s,
                                           first_reply_s, resolution_n, resolution_s, service_n, service_s, rating_sum)
    VALUES (e.company_id, h, one[1], one[2], one[3], one[4],
            one[5], one[6], one[7], one[8], one[9], one[10], coalesce(e.wait_s, 0), coalesce(e.first_reply_s, 0),
            one[11], coalesce(e.resolution_s, 0), one[12], coalesce(e.service_s, 0), one[13])
    ON CONFLICT (company_id, hour) DO UPDATE SET
        created = c.created + excluded.created, queued = c.queued + excluded.queued,
        accepted = c.accepted + excluded.accepted, assigned = c.assigned + excluded.assigned,
        transferred = c.transferred + excluded.transferred, closed = c.closed + excluded.closed,
        reopened = c.reopened + excluded.reopened, rated = c.rated + excluded.rated,
        first_replies = c.first_replies + excluded.first_replies, wait_n = c.wait_n + excluded.wait_n,
        wait_s = c.wait_s + excluded.wait_s, first_reply_s = c.first_reply_s + excluded.first_reply_s,
        resolution_n = c.resolution_n + excluded.resolution_n, resolution_s = c.resolution_s + excluded.resolution_s,
        service_n = c.service_n + excluded.service_n, service_s = c.service_s + excluded.service_s,
        rating_sum = c.rating_sum + excluded.rating_sum;
    INSERT INTO dashboard_user_days AS c (company_id, day, user_id, created, queued, accepted, assigned,
                                           transferred, closed, reopened, rated, first_replies, wait_n, wait_s,
                                           first_reply_s, resolution_n, resolution_s, service_n, service_s, rating_sum)
    VALUES (e.company_id, (e.created_at AT TIME ZONE 'UTC')::date, coalesce(e.user_id, 0), one[1], one[2], one[3], one[4],
            one[5], one[6], one[7], one[8], one[9], one[10], coalesce(e.wait_s, 0), coalesce(e.first_reply_s, 0),
            one[11], coalesce(e.resolution_s, 0), one[12], coalesce(e.service_s, 0), one[13])
    ON CONFLICT (company_id, day, user_id) DO UPDATE SET
        created = c.created + excluded.created, queued = c.queued + excluded.queued,
        accepted = c.accepted + excluded.accepted, assigned = c.assigned + excluded.assigned,
        transferred = c.transferred + excluded.transferred, closed = c.closed + excluded.closed,
        reopened = c.reopened + excluded.reopened, rated = c.rated + excluded.rated,
        first_replies = c.first_replies + excluded.first_replies, wait_n = c.wait_n + excluded.wait_n,
        wait_s = c.wait_s + excluded.wait_s, first_reply_s = c.first_reply_s + excluded.first_reply_s,
        resolution_n = c.resolution_n + excluded.resolution_n, resolution_s = c.resolution_s + excluded.resolution_s,
        service_n = c.service_n + excluded.service_n, service_s = c.service_s + excluded.service_s,
        rating_sum = c.rating_sum + excluded.rating_sum;
END $$;

-- ── backfill (before the trigger: these rows are measured and counted below, with the older ones) ──
INSERT INTO ticket_events (company_id, ticket_id, kind, user_id, queue_id, whatsapp_id, created_at)
SELECT t.company_id, t.id, 'created', NULL, t.queue_id, t.whatsapp_id, t.created_at
FROM tickets t
WHERE NOT EXISTS (SELECT FROM ticket_events e WHERE e.ticket_id = t.id AND e.kind = 'created');

INSERT INTO ticket_events (company_id, ticket_id, kind, user_id, queue_id, whatsapp_id, created_at)
SELECT t.company_id, t.id, 'closed', t.user_id, t.queue_id, t.whatsapp_id, t.updated_at
FROM tickets t
WHERE t.status = 'closed' AND NOT EXISTS (SELECT FROM ticket_events e WHERE e.ticket_id = t.id AND e.kind = 'closed');

INSERT INTO ticket_events (company_id, ticket_id, kind, user_id, queue_id, whatsapp_id, rate, created_at)
SELECT r.company_id, r.ticket_id, 'rated', r.user_id, t.queue_id, t.whatsapp_id, r.rate, r.created_at
FROM user_ratings r JOIN tickets t ON t.id = r.ticket_id AND t.company_id = r.company_id;

-- the first agent message of each cycle (an agent's: from_me, sent by a user, not by an automation)
INSERT INTO ticket_events (company_id, ticket_id, kind, user_id, queue_id, whatsapp_id, created_at)
SELECT c.company_id, c.ticket_id, 'first_reply', m.sent_by_user_id, c.queue_id, c.whatsapp_id, m.created_at
FROM (SELECT e.*, lead(e.created_at) OVER (PARTITION BY e.ticket_id ORDER BY e.created_at, e.id) AS next_at
      FROM ticket_events e WHERE e.kind IN ('created', 'reopened')) c
CROSS JOIN LATERAL (
    SELECT m.sent_by_user_id, m.created_at FROM messages m
    WHERE m.ticket_id = c.ticket_id AND m.company_id = c.company_id AND m.from_me AND m.sent_by_user_id IS NOT NULL
      AND m.sent_by IS NULL AND NOT m.is_private AND m.created_at >= c.created_at AND (c.next_at IS NULL OR m.created_at < c.next_at)
    ORDER BY m.created_at, m.id LIMIT 1) m;

UPDATE ticket_events e SET wait_s = m.wait_s, first_reply_s = m.first_reply_s, resolution_s = m.resolution_s,
                           service_s = m.service_s
FROM ticket_events o CROSS JOIN LATERAL ticket_event_measure(o) m
WHERE o.id = e.id AND e.kind IN ('accepted', 'first_reply', 'closed');

SELECT dashboard_count(e) FROM ticket_events e ORDER BY e.id;

-- ── from now on: measured, counted and announced by the insert itself ──
CREATE FUNCTION ticket_events_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW := ticket_event_measure(NEW);
    IF NEW.kind = 'rated' AND NEW.rate IS NULL THEN  -- the rating the same transaction wrote
        NEW.rate := (SELECT r.rate FROM user_ratings r WHERE r.ticket_id = NEW.ticket_id
                     AND r.company_id = NEW.company_id ORDER BY r.id DESC LIMIT 1);
    END IF;
    PERFORM dashboard_count(NEW);
    PERFORM pg_notify('zapgate_dashboard', NEW.company_id::text);  -- one per company and transaction
    RETURN NEW;
END $$;
CREATE TRIGGER ticket_events_count BEFORE INSERT ON ticket_events
    FOR EACH ROW EXECUTE FUNCTION ticket_events_count();

-- An agent's first message in a cycle is a `first_reply` event, whoever inserts it (the API, a quick reply).
-- Not an automation's text sent for them (sent_by set: the farewell 'system', a schedule 'schedule'), nor an
-- internal note (is_private). (Before this version the farewell carried no sent_by: the backfill may take an
-- old farewell for a reply when it was the agent's only message.)
CREATE FUNCTION messages_first_reply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cycle_at timestamptz;
BEGIN
    SELECT p.created_at INTO cycle_at FROM ticket_events p
    WHERE p.ticket_id = NEW.ticket_id AND p.company_id = NEW.company_id AND p.kind IN ('created', 'reopened')
    ORDER BY p.created_at DESC, p.id DESC LIMIT 1;
    IF NOT EXISTS (SELECT FROM ticket_events p WHERE p.ticket_id = NEW.ticket_id AND p.company_id = NEW.company_id
                   AND p.kind = 'first_reply' AND p.created_at >= coalesce(cycle_at, '-infinity')) THEN
        INSERT INTO ticket_events (company_id, ticket_id, kind, user_id, queue_id, whatsapp_id)
        SELECT t.company_id, t.id, 'first_reply', NEW.sent_by_user_id, t.queue_id, t.whatsapp_id
        FROM tickets t WHERE t.id = NEW.ticket_id AND t.company_id = NEW.company_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_first_reply AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.from_me AND NEW.sent_by_user_id IS NOT NULL AND NEW.sent_by IS NULL AND NOT NEW.is_private)
    EXECUTE FUNCTION messages_first_reply();
