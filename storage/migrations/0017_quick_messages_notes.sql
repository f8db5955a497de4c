-- Version 17: quick messages as the family's screens use them, and ticket notes (issue 13).
--
-- Quick messages (version 1's table) become each user's: ticketz keeps one set per user (its setting
-- quickMessages = individual, the default, lists only the caller's own), so a shortcode is unique per user
-- of a company, in any case: two agents may each have their "/oi", and nobody is told "already exists"
-- about a message they cannot see. `is_global` is the SaaS lineage's `geral`: a message every colleague
-- lists; it is off unless asked (ticketz's frontend never asks, and its rule then holds as it is).
-- The author is a user of the same company (both columns in the foreign key); when that user is
-- deleted their messages stay, without author, for an admin to keep or delete.

ALTER TABLE quick_messages ALTER COLUMN is_global SET DEFAULT false;
DROP INDEX quick_messages_company_shortcode_key;
CREATE UNIQUE INDEX quick_messages_user_shortcode_key ON quick_messages (company_id, user_id, lower(shortcode));
-- the chat's list in `individual` mode: the caller's own (the index above) and the global ones (this one)
CREATE INDEX quick_messages_global_idx ON quick_messages (company_id, lower(shortcode)) WHERE is_global;
ALTER TABLE quick_messages DROP CONSTRAINT quick_messages_user_id_fkey;
ALTER TABLE quick_messages
    ADD CONSTRAINT quick_messages_user_fkey FOREIGN KEY (company_id, user_id)
        REFERENCES users (company_id, id) ON DELETE SET NULL (user_id),
    ADD CONSTRAINT quick_messages_media_check
        CHECK (length(media_path) <= 300 AND length(media_name) <= 255);

-- Ticket notes: what agents write about a conversation for each other (ticketz's contact drawer), never
-- sent to WhatsApp. Every foreign key holds the company, so a note can only join a ticket, a contact and
-- an author of its own company; it goes with its ticket (and so with its contact), and keeps its text
-- without author when that user is deleted.
CREATE TABLE ticket_notes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id  bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    ticket_id   bigint NOT NULL,
    contact_id  bigint NOT NULL,
    user_id     bigint,
    note        text NOT NULL CHECK (length(note) BETWEEN 1 AND 10000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (company_id, ticket_id) REFERENCES tickets (company_id, id) ON DELETE CASCADE,
    FOREIGN KEY (company_id, contact_id) REFERENCES contacts (company_id, id) ON DELETE CASCADE,
    FOREIGN KEY (company_id, user_id) REFERENCES users (company_id, id) ON DELETE SET NULL (user_id)
);
-- a ticket's notes (the drawer), a contact's (across their tickets), the company's page (newest first);
-- the authors' side of the foreign key (deleting a user finds their notes without a scan)
CREATE INDEX ticket_notes_ticket_idx ON ticket_notes (ticket_id, created_at DESC, id DESC);
CREATE INDEX ticket_notes_contact_idx ON ticket_notes (contact_id, created_at DESC, id DESC);
CREATE INDEX ticket_notes_company_idx ON ticket_notes (company_id, created_at DESC, id DESC);
CREATE INDEX ticket_notes_user_idx ON ticket_notes (user_id);

-- A note as the API shows it: with its author, contact and ticket (ticketz's includes), and its ticket's
-- queue, agent and status (who may see it: the tickets' rule).
CREATE VIEW ticket_notes_shown AS
SELECT n.*, t.queue_id AS ticket_queue_id, t.user_id AS ticket_user_id, t.status AS ticket_status,
       CASE WHEN u.id IS NULL THEN NULL
            ELSE json_build_object('id', u.id, 'name', u.name, 'email', u.email) END AS "user",
       json_build_object('id', c.id, 'name', c.name) AS contact,
       json_build_object('id', t.id, 'status', t.status, 'createdAt', t.created_at) AS ticket
FROM ticket_notes n
JOIN tickets t ON t.id = n.ticket_id
JOIN contacts c ON c.id = n.contact_id
LEFT JOIN users u ON u.id = n.user_id;
