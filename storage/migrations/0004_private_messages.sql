-- Version 4: private messages (an agent's internal note, `isPrivate` in POST /messages/:ticketId).
--
-- A private message is stored, listed and shown to the company's agents, and never reaches WhatsApp. It
-- has a status of its own, 'private', rather than 'sent': the outbox is every row whose status is
-- 'pending', so a note can never be picked up by it (nor by a retry or a restart), and no code that
-- handles 'sent' rows (receipts, edits and deletions sent to WhatsApp) mistakes it for a message that
-- reached the contact. It never gets a WhatsApp id, so no receipt, reaction, edit or revoke from the
-- network can target it. The check below keeps the three facts together.

ALTER TABLE messages ADD COLUMN is_private boolean NOT NULL DEFAULT false;

ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
    CHECK (status IN ('received', 'pending', 'sent', 'failed', 'private'));
ALTER TABLE messages ADD CONSTRAINT messages_private_check
    CHECK (is_private = (status = 'private') AND (NOT is_private OR (from_me AND wid IS NULL)));
