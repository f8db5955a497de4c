-- Version 20: campaigns (issue 14) — bulk sends that never send twice. Written first so the campaign core
-- and its API/report are built in parallel on one schema.
--
-- A campaign is the company's: a connection, an audience (a contact list, or every contact with a tag),
-- up to five message variants rotated per contact, optional confirmation messages, an optional file, and
-- a status exactly as the family's frontends show it: INATIVA (draft), PROGRAMADA (scheduled),
-- EM_ANDAMENTO (running), CANCELADA, FINALIZADA. `paused_at`/`pause_reason` is zapgate's pause (by a user,
-- a disconnect, the circuit breaker): the status stays EM_ANDAMENTO while paused, as the frontends know no
-- other status.
CREATE TABLE campaigns (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id             bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name                   text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    status                 text NOT NULL DEFAULT 'INATIVA'
                           CHECK (status IN ('INATIVA', 'PROGRAMADA', 'EM_ANDAMENTO', 'CANCELADA', 'FINALIZADA')),
    whatsapp_id            bigint,
    contact_list_id        bigint,
    tag_id                 bigint,
    message1               text NOT NULL DEFAULT '' CHECK (length(message1) <= 10000),
    message2               text NOT NULL DEFAULT '' CHECK (length(message2) <= 10000),
    message3               text NOT NULL DEFAULT '' CHECK (length(message3) <= 10000),
    message4               text NOT NULL DEFAULT '' CHECK (length(message4) <= 10000),
    message5               text NOT NULL DEFAULT '' CHECK (length(message5) <= 10000),
    confirmation           boolean NOT NULL DEFAULT false,
    confirmation_message1  text NOT NULL DEFAULT '' CHECK (length(confirmation_message1) <= 10000),
    confirmation_message2  text NOT NULL DEFAULT '' CHECK (length(confirmation_message2) <= 10000),
    confirmation_message3  text NOT NULL DEFAULT '' CHECK (length(confirmation_message3) <= 10000),
    confirmation_message4  text NOT NULL DEFAULT '' CHECK (length(confirmation_message4) <= 10000),
    confirmation_message5  text NOT NULL DEFAULT '' CHECK (length(confirmation_message5) <= 10000),
    media_path             text CHECK (length(media_path) <= 300),
    media_name             text CHECK (length(media_name) <= 255),
    scheduled_at           timestamptz,
    started_at             timestamptz,
    completed_at           timestamptz,
    paused_at              timestamptz,
    pause_reason           text CHECK (length(pause_reason) <= 500),
    created_by             bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, id),
    FOREIGN KEY (company_id, whatsapp_id) REFERENCES whatsapps (company_id, id) ON DELETE SET NULL (whatsapp_id),
    FOREIGN KEY (company_id, contact_list_id) REFERENCES contact_lists (company_id, id)
        ON DELETE SET NULL (contact_list_id),
    FOREIGN KEY (company_id, tag_id) REFERENCES tags (company_id, id) ON DELETE SET NULL (tag_id)
);
CREATE INDEX campaigns_company_idx ON campaigns (company_id, id DESC);
CREATE INDEX campaigns_runnable_idx ON campaigns (status, scheduled_at) WHERE status IN ('PROGRAMADA', 'EM_ANDAMENTO');

-- One row per contact of a running campaign, created when it starts (de-duplicated by number): its
-- progress is these rows, so a restart continues where it stopped. `state`: queued → sending → sent |
-- failed | skipped (opted out, no WhatsApp, cancelled). `wid` is the WhatsApp id the send goes out with,
-- derived from (campaign, number): a resend after a crash is the same message, which WhatsApp (and the
-- sandbox) keep once. `message_id` is the outbox row (messages) written in the claim's transaction.
-- The family's CampaignShipping fields are kept by name: number, message, confirmation_message,
-- confirmation, delivered_at, confirmation_requested_at, confirmed_at, contact (the list item).
CREATE TABLE campaign_shippings (
    id                         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id                 bigint NOT NULL,
    campaign_id                bigint NOT NULL,
    number                     text NOT NULL CHECK (length(number) BETWEEN 1 AND 64),
    name                       text NOT NULL DEFAULT '' CHECK (length(name) <= 255),
    contact_list_item_id       bigint REFERENCES contact_list_items (id) ON DELETE SET NULL,
    contact_id                 bigint,  -- the contact the message went to (created if needed at send time)
    variant                    smallint NOT NULL DEFAULT 1 CHECK (variant BETWEEN 1 AND 5),
    state                      text NOT NULL DEFAULT 'queued'
                               CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'skipped')),
    message                    text NOT NULL DEFAULT '',
    confirmation               boolean NOT NULL DEFAULT false,
    confirmation_message       text NOT NULL DEFAULT '',
    wid                        text,
    message_id                 bigint,
    error                      text CHECK (length(error) <= 500),
    attempts                   integer NOT NULL DEFAULT 0,
    sent_at                    timestamptz,
    delivered_at               timestamptz,
    read_at                    timestamptz,
    replied_at                 timestamptz,
    confirmation_requested_at  timestamptz,
    confirmed_at               timestamptz,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, number),
    FOREIGN KEY (company_id, campaign_id) REFERENCES campaigns (company_id, id) ON DELETE CASCADE
);
CREATE INDEX campaign_shippings_queue_idx ON campaign_shippings (campaign_id, id) WHERE state IN ('queued', 'sending');
CREATE INDEX campaign_shippings_wid_idx ON campaign_shippings (wid) WHERE wid IS NOT NULL;
CREATE INDEX campaign_shippings_contact_idx ON campaign_shippings (company_id, contact_id)
    WHERE contact_id IS NOT NULL;

-- The family's campaign settings (`GET/POST /campaign-settings`): key/value rows per company
-- (messageInterval, longerIntervalAfter, greaterInterval, variables, and zapgate's pacing keys).
CREATE TABLE campaign_settings (
    company_id  bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 100),
    value       text NOT NULL DEFAULT '' CHECK (length(value) <= 100000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, key)
);

-- Opt-out: a contact who answered a stop word; skipped by every later campaign of the company.
ALTER TABLE contacts ADD COLUMN opted_out_at timestamptz;
CREATE TABLE campaign_opt_outs (
    company_id  bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    number      text NOT NULL CHECK (length(number) BETWEEN 1 AND 64),
    reason      text NOT NULL DEFAULT '' CHECK (length(reason) <= 255),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, number)
);

-- Sends per connection per day, for the daily cap and the warm-up ramp (the company's zone's day).
CREATE TABLE connection_send_days (
    company_id   bigint NOT NULL,
    whatsapp_id  bigint NOT NULL,
    day          date NOT NULL,
    sent         integer NOT NULL DEFAULT 0,
    PRIMARY KEY (whatsapp_id, day),
    FOREIGN KEY (company_id, whatsapp_id) REFERENCES whatsapps (company_id, id) ON DELETE CASCADE
);
