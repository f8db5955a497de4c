-- Version 14: queues that route (issue 12) — option menus, business hours, auto-assignment, ratings,
-- inactivity rules. The decisions are pure functions (actors/automation/); what they remember is here.
--
-- A queue option is a node of a queue's menu tree: its `option` is what the contact answers ("1"), its
-- `title` what the menu shows, `message` what is sent when it is chosen; `forward_queue_id` moves the
-- ticket to another queue, `exit_chatbot` hands it to a human. A root option has no parent. The queue of
-- a child is its parent's (checked by the API; repeated here so every query is scoped by company).
CREATE TABLE queue_options (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id        bigint NOT NULL,
    queue_id          bigint NOT NULL,
    parent_id         bigint REFERENCES queue_options (id) ON DELETE CASCADE,
    title             text NOT NULL DEFAULT '' CHECK (length(title) <= 255),
    option            text NOT NULL DEFAULT '' CHECK (length(option) <= 32),
    message           text NOT NULL DEFAULT '' CHECK (length(message) <= 10000),
    forward_queue_id  bigint,
    exit_chatbot      boolean NOT NULL DEFAULT false,
    media_path        text CHECK (length(media_path) <= 300),
    media_name        text CHECK (length(media_name) <= 255),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, id),
    FOREIGN KEY (company_id, queue_id) REFERENCES queues (company_id, id) ON DELETE CASCADE,
    FOREIGN KEY (company_id, forward_queue_id) REFERENCES queues (company_id, id) ON DELETE SET NULL (forward_queue_id)
);
CREATE INDEX queue_options_queue_idx ON queue_options (queue_id, parent_id, id);
CREATE INDEX queue_options_parent_idx ON queue_options (parent_id) WHERE parent_id IS NOT NULL;

-- Queues: a greeting's media, and who gets the queue's new tickets. `auto_assign` is off by default;
-- `last_assigned_user_id` is round robin's cursor (the agent served last), a row not a process cache.
ALTER TABLE queues
    ADD COLUMN media_path text CHECK (length(media_path) <= 300),
    ADD COLUMN media_name text CHECK (length(media_name) <= 255),
    ADD COLUMN auto_assign text NOT NULL DEFAULT 'off' CHECK (auto_assign IN ('off', 'round_robin', 'least_busy')),
    ADD COLUMN last_assigned_user_id bigint REFERENCES users (id) ON DELETE SET NULL;

-- The company's business hours (setting scheduleType = company): any of the three shapes the queues take.
ALTER TABLE companies ADD COLUMN schedules jsonb NOT NULL DEFAULT '[]';

-- Connections: the family's texts and limits that routing reads. `max_use_bot_queues`: how many times an
-- unknown answer re-sends the menu before a human takes over; `expires_ticket`: minutes of the contact's
-- silence after which an open ticket is closed with `expires_inactive_message` (0: never).
ALTER TABLE whatsapps
    ADD COLUMN rating_message text NOT NULL DEFAULT '',
    ADD COLUMN transfer_message text NOT NULL DEFAULT '',
    ADD COLUMN expires_ticket integer NOT NULL DEFAULT 0 CHECK (expires_ticket BETWEEN 0 AND 525600),
    ADD COLUMN expires_inactive_message text NOT NULL DEFAULT '',
    ADD COLUMN max_use_bot_queues integer NOT NULL DEFAULT 3 CHECK (max_use_bot_queues BETWEEN 0 AND 100),
    ADD COLUMN time_use_bot_queues integer NOT NULL DEFAULT 0 CHECK (time_use_bot_queues BETWEEN 0 AND 525600);

-- Agents: how many open tickets auto-assignment may give one (NULL: no limit).
ALTER TABLE users ADD COLUMN max_tickets integer CHECK (max_tickets BETWEEN 0 AND 100000);

-- A ticket's automation state (DESIGN §7b: state in rows). `chatbot` and `queue_option_id` are version 1's.
-- `bot_retries`: unknown answers to the current menu; `routed_message_id`: the last inbound message the
-- routing decided on (a redelivered or replayed message is never decided twice); `ooh_until`: the end of
-- the closed period whose out-of-hours message was sent (once per period); `rating_at`: when the rating
-- question was sent (the ticket waits for the answer until `ratingsTimeout`); `assigned_by_bot_at`: when
-- auto-assignment gave the ticket to its agent (re-offered after `tempoRoteador` unless accepted).
ALTER TABLE tickets
    ADD COLUMN bot_retries integer NOT NULL DEFAULT 0,
    ADD COLUMN routed_message_id bigint,
    ADD COLUMN ooh_until timestamptz,
    ADD COLUMN rating_at timestamptz,
    ADD COLUMN assigned_by_bot_at timestamptz,
    ADD CONSTRAINT tickets_queue_option_fk FOREIGN KEY (company_id, queue_option_id)
        REFERENCES queue_options (company_id, id) ON DELETE SET NULL (queue_option_id);
-- The closed tickets that wait for a rating answer: found by (contact, connection) when the contact writes.
CREATE INDEX tickets_rating_wait_idx ON tickets (company_id, contact_id, whatsapp_id) WHERE rating_at IS NOT NULL;

-- Ratings (the family's UserRatings): one per rated close; `rate` 1..5.
CREATE TABLE user_ratings (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id  bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    ticket_id   bigint NOT NULL,
    user_id     bigint REFERENCES users (id) ON DELETE SET NULL,
    rate        smallint NOT NULL CHECK (rate BETWEEN 1 AND 5),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (company_id, ticket_id) REFERENCES tickets (company_id, id) ON DELETE CASCADE
);
CREATE INDEX user_ratings_company_idx ON user_ratings (company_id, created_at DESC);
CREATE INDEX user_ratings_ticket_idx ON user_ratings (ticket_id);

-- Who sent an automated message (DESIGN §7b: sends by automation carry their sender): NULL for the
-- contact's and the agents' messages; 'system' for routing (greetings, menus, out of hours, ratings);
-- later 'flow', 'bot', 'campaign', 'schedule'.
ALTER TABLE messages ADD COLUMN sent_by text CHECK (sent_by IN ('system', 'flow', 'bot', 'campaign', 'schedule'));
