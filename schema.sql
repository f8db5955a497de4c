-- zapgate schema, version 1 (applied by `zapgate migrate`; later changes come as
-- storage/migrations/NNNN_name.sql, applied in order and recorded in schema_migrations).
-- Every tenant row carries company_id; every child table repeats it so that a query can be
-- scoped by company without a join. Timestamps are timestamptz.

CREATE TABLE companies (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    email       text CHECK (length(email) <= 255),
    phone       text CHECK (length(phone) <= 64),
    document    text CHECK (length(document) <= 64),
    status      boolean NOT NULL DEFAULT true,
    due_date    date,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX companies_name_key ON companies (lower(name));

CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id     bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    email          text NOT NULL CHECK (length(email) BETWEEN 3 AND 255),
    password_hash  text NOT NULL,
    profile        text NOT NULL DEFAULT 'user' CHECK (profile IN ('admin', 'user')),
    super          boolean NOT NULL DEFAULT false,
    all_ticket     text NOT NULL DEFAULT 'disable' CHECK (all_ticket IN ('enable', 'disable')),
    online         boolean NOT NULL DEFAULT false,
    last_seen_at   timestamptz,
    whatsapp_id    bigint,  -- default connection of the user; FK added after whatsapps
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, id)
);
-- Emails are unique across the installation: login is by email alone.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_company_name_idx ON users (company_id, lower(name), id);

-- A login: one row per successful sign-in; refresh tokens rotate inside it.
CREATE TABLE auth_sessions (
    id            uuid PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    company_id    bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    current_jti   uuid NOT NULL,
    previous_jti  uuid,         -- the token rotated last: still honoured for a few seconds (parallel refreshes)
    rotated_at    timestamptz,
    user_agent    text,
    ip            text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    refreshed_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    revoked_reason text
);
CREATE INDEX auth_sessions_user_idx ON auth_sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX auth_sessions_expires_idx ON auth_sessions (expires_at);

CREATE TABLE settings (
    company_id  bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 100),
    value       text NOT NULL DEFAULT '' CHECK (length(value) <= 10000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, key)
);

CREATE TABLE queues (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id        bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    color             text NOT NULL DEFAULT '#7C7C7C' CHECK (length(color) <= 32),
    greeting_message  text NOT NULL DEFAULT '',
    out_of_hours_message text NOT NULL DEFAULT '',
    schedules         jsonb NOT NULL DEFAULT '[]',
    order_queue       integer,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, id)
);
CREATE UNIQUE INDEX queues_company_name_key ON queues (company_id, lower(name));

CREATE TABLE user_queues (
    company_id  bigint NOT NULL,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    queue_id    bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, queue_id),
    FOREIGN KEY (company_id, queue_id) REFERENCES queues (company_id, id) ON DELETE CASCADE
);
CREATE INDEX user_queues_queue_idx ON user_queues (queue_id);

CREATE TABLE whatsapps (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id        bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    channel           text NOT NULL DEFAULT 'whatsapp' CHECK (channel IN ('whatsapp', 'sandbox')),
    status            text NOT NULL DEFAULT 'DISCONNECTED'
                      CHECK (status IN ('OPENING', 'qrcode', 'PAIRING', 'CONNECTED', 'DISCONNECTED', 'TIMEOUT')),
    qrcode            text NOT NULL DEFAULT '',
    pairing_code      text,
    number            text NOT NULL DEFAULT '',
    retries           integer NOT NULL DEFAULT 0,
    last_disconnect_at timestamptz,
    last_disconnect_reason text,
    is_default        boolean NOT NULL DEFAULT false,
    greeting_message  text NOT NULL DEFAULT '',
    farewell_message  text NOT NULL DEFAULT '',
    complation_message text NOT NULL DEFAULT '',
    out_of_hours_message text NOT NULL DEFAULT '',
    token             text,  -- the per-connection API token for /api/messages/send
    session_data      jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, id)
);
CREATE UNIQUE INDEX whatsapps_company_name_key ON whatsapps (company_id, lower(name));
CREATE UNIQUE INDEX whatsapps_token_key ON whatsapps (token) WHERE token IS NOT NULL;
CREATE UNIQUE INDEX whatsapps_default_key ON whatsapps (company_id) WHERE is_default;

ALTER TABLE users ADD CONSTRAINT users_whatsapp_fk
    FOREIGN KEY (company_id, whatsapp_id) REFERENCES whatsapps (company_id, id) ON DELETE SET NULL (whatsapp_id);

CREATE TABLE whatsapp_queues (
    company_id   bigint NOT NULL,
    whatsapp_id  bigint NOT NULL,
    queue_id     bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (whatsapp_id, queue_id),
    FOREIGN KEY (company_id, whatsapp_id) REFERENCES whatsapps (company_id, id) ON DELETE CASCADE,
    FOREIGN KEY (company_id, queue_id) REFERENCES queues (company_id, id) ON DELETE CASCADE
);
CREATE INDEX whatsapp_queues_queue_idx ON whatsapp_queues (queue_id);

CREATE TABLE contacts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id       bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name             text NOT NULL DEFAULT '' CHECK (length(name) <= 255),
    name_set_by_agent boolean NOT NULL DEFAULT false,
    number           text NOT NULL DEFAULT '' CHECK (length(number) <= 64),
    lid              text CHECK (length(lid) <= 128),
    email            text NOT NULL DEFAULT '' CHECK (length(email) <= 255),
    profile_pic_url  text NOT NULL DEFAULT '',
    is_group         boolean NOT NULL DEFAULT false,
    disable_bot      boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, id)
);
CREATE UNIQUE INDEX contacts_company_number_key ON contacts (company_id, number) WHERE number <> '';
CREATE UNIQUE INDEX contacts_company_lid_key ON contacts (company_id, lid) WHERE lid IS NOT NULL;
CREATE INDEX contacts_company_name_idx ON contacts (company_id, lower(name), id);

CREATE TABLE contact_custom_fields (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id  bigint NOT NULL,
    contact_id  bigint NOT NULL,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    value       text NOT NULL DEFAULT '' CHECK (length(value) <= 10000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (company_id, contact_id) REFERENCES contacts (company_id, id) ON DELETE CASCADE,
    UNIQUE (contact_id, name)
);

CREATE TABLE tickets (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uuid             uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    company_id       bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    contact_id       bigint NOT NULL,
    whatsapp_id      bigint NOT NULL,
    queue_id         bigint,
    user_id          bigint,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'open', 'closed')),
    is_group         boolean NOT NULL DEFAULT false,
    unread_messages  integer NOT NULL DEFAULT 0 CHECK (unread_messages >= 0),
    last_message     text NOT NULL DEFAULT '',
    last_message_at  timestamptz NOT NULL DEFAULT now(),  -- the ordering timestamp of the lists
    chatbot          boolean NOT NULL DEFAULT false,
    queue_option_id  bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, id),
    FOREIGN KEY (company_id, contact_id) REFERENCES contacts (company_id, id) ON DELETE CASCADE,
    FOREIGN KEY (company_id, whatsapp_id) REFERENCES whatsapps (company_id, id) ON DELETE CASCADE,
    FOREIGN KEY (company_id, queue_id) REFERENCES queues (company_id, id) ON DELETE SET NULL (queue_id),
    FOREIGN KEY (company_id, user_id) REFERENCES users (company_id, id) ON DELETE SET NULL (user_id)
);
-- One active (pending or open) ticket per contact and connection: the race-free find-or-create.
CREATE UNIQUE INDEX tickets_one_active_key ON tickets (company_id, contact_id, whatsapp_id)
    WHERE status IN ('pending', 'open');
-- The hot lists: by status (and queue / user), newest activity first, keyset-paginated.
CREATE INDEX tickets_status_idx ON tickets (company_id, status, last_message_at DESC, id DESC);
CREATE INDEX tickets_queue_idx ON tickets (company_id, queue_id, status, last_message_at DESC, id DESC);
CREATE INDEX tickets_user_idx ON tickets (company_id, user_id, status, last_message_at DESC, id DESC);
CREATE INDEX tickets_unread_idx ON tickets (company_id, last_message_at DESC) WHERE unread_messages > 0;
CREATE INDEX tickets_contact_idx ON tickets (contact_id);
CREATE INDEX tickets_updated_idx ON tickets (company_id, updated_at);

-- History of a ticket's life, for reports (the original's TicketTraking).
CREATE TABLE ticket_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id   bigint NOT NULL,
    ticket_id    bigint NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('created', 'accepted', 'transferred', 'closed', 'reopened')),
    user_id      bigint REFERENCES users (id) ON DELETE SET NULL,
    queue_id     bigint,
    whatsapp_id  bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (company_id, ticket_id) REFERENCES tickets (company_id, id) ON DELETE CASCADE
);
CREATE INDEX ticket_events_ticket_idx ON ticket_events (ticket_id, created_at);
CREATE INDEX ticket_events_company_idx ON ticket_events (company_id, created_at);

CREATE TABLE messages (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id       bigint NOT NULL,
    whatsapp_id      bigint NOT NULL,
    ticket_id        bigint NOT NULL,
    contact_id       bigint,
    wid              text,  -- the WhatsApp message id; null while an outbound message is pending
    from_me          boolean NOT NULL DEFAULT false,
    body             text NOT NULL DEFAULT '',
    media_type       text NOT NULL DEFAULT 'chat',
    media_url        text,
    media_name       text,
    media_mimetype   text,
    ack              smallint NOT NULL DEFAULT 0,  -- 0 pending, 1 sent, 2 delivered, 3 read, 4 played, -1 failed
    status           text NOT NULL DEFAULT 'received'
                     CHECK (status IN ('received', 'pending', 'sent', 'failed')),
    error            text,
    read             boolean NOT NULL DEFAULT false,
    quoted_msg_id    bigint REFERENCES messages (id) ON DELETE SET NULL,
    participant      text,  -- the sender inside a group
    reaction         text,
    is_edited        boolean NOT NULL DEFAULT false,
    edit_history     jsonb NOT NULL DEFAULT '[]',
    is_deleted       boolean NOT NULL DEFAULT false,
    sent_by_user_id  bigint REFERENCES users (id) ON DELETE SET NULL,
    wa_timestamp     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (company_id, ticket_id) REFERENCES tickets (company_id, id) ON DELETE CASCADE,
    FOREIGN KEY (company_id, whatsapp_id) REFERENCES whatsapps (company_id, id) ON DELETE CASCADE
);
-- Idempotent intake: one row per WhatsApp message and connection.
CREATE UNIQUE INDEX messages_whatsapp_wid_key ON messages (whatsapp_id, wid) WHERE wid IS NOT NULL;
CREATE INDEX messages_ticket_idx ON messages (ticket_id, created_at DESC, id DESC);
CREATE INDEX messages_contact_idx ON messages (contact_id, created_at DESC);
CREATE INDEX messages_outbox_idx ON messages (whatsapp_id, id) WHERE status = 'pending';

CREATE TABLE tags (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id  bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    color       text NOT NULL DEFAULT '#A4CCCC' CHECK (length(color) <= 32),
    kanban      boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, id)
);
CREATE UNIQUE INDEX tags_company_name_key ON tags (company_id, lower(name));

CREATE TABLE ticket_tags (
    company_id  bigint NOT NULL,
    ticket_id   bigint NOT NULL,
    tag_id      bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ticket_id, tag_id),
    FOREIGN KEY (company_id, ticket_id) REFERENCES tickets (company_id, id) ON DELETE CASCADE,
    FOREIGN KEY (company_id, tag_id) REFERENCES tags (company_id, id) ON DELETE CASCADE
);
CREATE INDEX ticket_tags_tag_idx ON ticket_tags (tag_id, ticket_id);

CREATE TABLE quick_messages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id  bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    user_id     bigint REFERENCES users (id) ON DELETE SET NULL,
    shortcode   text NOT NULL CHECK (length(shortcode) BETWEEN 1 AND 255),
    message     text NOT NULL DEFAULT '' CHECK (length(message) <= 10000),
    media_path  text,
    media_name  text,
    is_global   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX quick_messages_company_shortcode_key ON quick_messages (company_id, lower(shortcode));

-- A ticket as the API shows it: with its contact, queue, user, connection and tags as JSON.
-- The single definition behind `ticket_show` and `tickets_list` (storage/queries.sql).
CREATE VIEW tickets_shown AS
SELECT t.*,
       json_build_object('id', c.id, 'name', c.name, 'number', c.number, 'email', c.email, 'lid', c.lid,
                         'profilePicUrl', c.profile_pic_url, 'isGroup', c.is_group, 'companyId', c.company_id)
           AS contact,
       CASE WHEN q.id IS NULL THEN NULL
            ELSE json_build_object('id', q.id, 'name', q.name, 'color', q.color) END AS queue,
       CASE WHEN u.id IS NULL THEN NULL ELSE json_build_object('id', u.id, 'name', u.name) END AS "user",
       json_build_object('id', w.id, 'name', w.name, 'channel', w.channel, 'status', w.status) AS whatsapp,
       coalesce((SELECT json_agg(json_build_object('id', tg.id, 'name', tg.name, 'color', tg.color) ORDER BY tg.name)
                 FROM ticket_tags tt JOIN tags tg ON tg.id = tt.tag_id WHERE tt.ticket_id = t.id), '[]'::json) AS tags
FROM tickets t
JOIN contacts c ON c.id = t.contact_id
JOIN whatsapps w ON w.id = t.whatsapp_id
LEFT JOIN queues q ON q.id = t.queue_id
LEFT JOIN users u ON u.id = t.user_id;
