-- Version 7: the internal chat — conversations between the agents of one company (ticketz's /chats).
-- Nothing here ever reaches WhatsApp.
--
-- Every table carries company_id, and its foreign keys name (company_id, id) pairs: a chat, a
-- participant and a message can only ever join rows of the same company, whatever the code does.
-- A chat goes with its owner, a participant and their messages with their user (as in the family).
--
-- The list a user reads is "my chats, latest message first": chat_users keeps the time of its chat's
-- last message (written by the same statement that counts the unread messages, on every message), so
-- that list is one index range of chat_users_list_idx, in order.

CREATE TABLE chats (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id       bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    uuid             uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,  -- the frontend's /chats/:uuid links
    title            text NOT NULL DEFAULT '' CHECK (length(title) <= 255),
    owner_id         bigint NOT NULL,
    last_message     text NOT NULL DEFAULT '' CHECK (length(last_message) <= 600),  -- "<sender>: <text>"
    last_message_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, id),
    FOREIGN KEY (company_id, owner_id) REFERENCES users (company_id, id) ON DELETE CASCADE
);

CREATE TABLE chat_users (
    id               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    company_id       bigint NOT NULL,
    chat_id          bigint NOT NULL,
    user_id          bigint NOT NULL,
    unreads          integer NOT NULL DEFAULT 0 CHECK (unreads >= 0),
    -- the chat's last message (or, before any, when this user joined it): the list's order
    last_message_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chat_id, user_id),
    FOREIGN KEY (company_id, chat_id) REFERENCES chats (company_id, id) ON DELETE CASCADE,
    FOREIGN KEY (company_id, user_id) REFERENCES users (company_id, id) ON DELETE CASCADE
);
CREATE INDEX chat_users_list_idx ON chat_users (user_id, last_message_at DESC, chat_id DESC);

CREATE TABLE chat_messages (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id   bigint NOT NULL,
    chat_id      bigint NOT NULL,
    sender_id    bigint NOT NULL,
    message      text NOT NULL DEFAULT '' CHECK (length(message) <= 65536),
    media_url    text CHECK (length(media_url) <= 300),  -- a stored file's path: /media/<token>/<name>
    media_type   text CHECK (length(media_type) <= 64),  -- the mimetype's first part: image, audio, ...
    media_name   text CHECK (length(media_name) <= 255),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (company_id, chat_id) REFERENCES chats (company_id, id) ON DELETE CASCADE,
    FOREIGN KEY (company_id, sender_id) REFERENCES users (company_id, id) ON DELETE CASCADE
);
CREATE INDEX chat_messages_chat_idx ON chat_messages (chat_id, id DESC);
-- the foreign keys' other sides: deleting a user finds their messages and chats without a scan
CREATE INDEX chat_messages_sender_idx ON chat_messages (sender_id);
CREATE INDEX chats_owner_idx ON chats (owner_id);
