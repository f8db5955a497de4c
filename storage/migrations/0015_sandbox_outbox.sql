-- Version 15: the sandbox's outbox (issue 12, point 9). The sandbox plays WhatsApp's servers, which do not
-- forget what they accepted: every message zapgate sent through a sandbox connection is a row here,
-- committed before the send is answered, so "sent exactly once, across a kill -9" can be counted.
--
-- One row per (connection, WhatsApp message id): WhatsApp keeps one message per id, so a send repeating
-- an id already accepted is not a second message; it only counts in `attempts` and `duplicates`. A send
-- that failed (`ack` 'failed') is replaced by a retry under its id. `seq` orders the rows (a retry that
-- replaces a failed row takes a new one). The sandbox is per installation and knows no companies
-- (connection ids are unique); its rows go with their connection.
CREATE TABLE sandbox_outbox (
    connection_id  bigint NOT NULL REFERENCES whatsapps (id) ON DELETE CASCADE,
    message_id     text NOT NULL CHECK (length(message_id) BETWEEN 1 AND 128),
    seq            bigserial NOT NULL,
    recipient      text NOT NULL,
    kind           text NOT NULL CHECK (length(kind) <= 32),
    body           text,
    caption        text,
    filename       text,
    mimetype       text,
    size           bigint,
    quoted_id      text,
    target_id      text,  -- a reaction's, edit's or revoke's message
    emoji          text,  -- a reaction's
    reaction       text,  -- the reaction we put on this message, if any
    deleted        boolean NOT NULL DEFAULT false,
    edited         boolean NOT NULL DEFAULT false,
    ack            text NOT NULL CHECK (ack IN ('failed', 'sent', 'delivered', 'read', 'played')),
    error          text,
    sent_at        timestamptz NOT NULL,
    attempts       integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),   -- sends that carried this id
    duplicates     integer NOT NULL DEFAULT 0 CHECK (duplicates >= 0), -- ... repeating one already accepted
    PRIMARY KEY (connection_id, message_id)
);
CREATE INDEX sandbox_outbox_order_idx ON sandbox_outbox (connection_id, seq);
