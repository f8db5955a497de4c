-- Version 9: a message's `ack` on the Whaticket family's scale.
--
-- Until now zapgate stored whatsapp-web.js's acks (0 pending, 1 sent, 2 delivered, 3 read, 4 played). The
-- backends it replaces (ticketz, whaticket-saas) run on Baileys and store its WAMessageStatus (1 pending,
-- 2 server ack, 3 delivered, 4 read, 5 played; -1 for a failed send), and their frontends draw that scale:
-- ticketz drew a pending message as a warning, a sent one as a clock, a read one as grey ticks.
--
-- Only our messages move, each one step up (-1, failed, stays). Not:
-- - a contact's message: 0 before and after (the family stores `msg.status || 0`, and Baileys gives no status
--   to a message it received);
-- - a private note: already 2, the number the Gold lineage's backends store for their notes.
-- One statement: the migrator runs it once (its version is recorded in the same transaction).
--
-- Mixed versions are not supported: zapgate runs as one process, or as nodes of one version. A process of the
-- previous version still running after this migration would write the old numbers (a new message 0, a sent
-- one 1, receipts one step short), and nothing tells them apart afterwards. Upgrade by stopping every
-- process, then starting the new version (the first to start migrates). A process of the previous version
-- refuses to start on the newer schema.

UPDATE messages SET ack = ack + 1 WHERE from_me AND NOT is_private AND ack >= 0;

COMMENT ON COLUMN messages.ack IS
    'the Whaticket family''s (Baileys) scale: -1 failed, 0 a contact''s message, 1 pending, 2 sent, 3 delivered, '
    '4 read, 5 played; a private note 2';
