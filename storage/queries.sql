-- Named queries of zapgate. Each block starts with `-- name: <name>`; parameters are %(name)s.
-- Every query on tenant data is scoped by company_id.

-- ─── companies ──────────────────────────────────────────────────────────────────────────

-- name: company_insert
-- Without a plan, the default one (an unlimited plan unless the super admin changed it).
INSERT INTO companies (name, email, phone, document, status, due_date, plan_id, recurrence)
VALUES (%(name)s, %(email)s, %(phone)s, %(document)s, %(status)s, %(due_date)s,
        coalesce(%(plan_id)s, default_plan_id()), coalesce(%(recurrence)s, 'MENSAL'))
RETURNING *

-- name: company_get
-- `plan` is the plan's row as JSON (api/present.py `plan` shows it).
SELECT c.*, row_to_json(p) AS plan FROM companies c JOIN plans p ON p.id = c.plan_id WHERE c.id = %(id)s

-- name: company_list
SELECT c.*, row_to_json(p) AS plan, count(*) OVER () AS total
FROM companies c JOIN plans p ON p.id = c.plan_id
WHERE %(search)s::text IS NULL OR c.name ILIKE %(search)s OR c.email ILIKE %(search)s
ORDER BY c.name, c.id
LIMIT %(limit)s OFFSET %(offset)s

-- name: company_list_all
-- Every company with its plan and stored settings (the SaaS Companies screen reads `settings`).
SELECT c.*, row_to_json(p) AS plan,
       coalesce((SELECT json_agg(json_build_object('key', s.key, 'value', s.value) ORDER BY s.key)
                 FROM settings s WHERE s.company_id = c.id), '[]'::json) AS settings
FROM companies c JOIN plans p ON p.id = c.plan_id
ORDER BY c.name, c.id
LIMIT 10000

-- name: company_update
UPDATE companies SET
    name = coalesce(%(name)s, name),
    email = coalesce(%(email)s, email),
    phone = coalesce(%(phone)s, phone),
    document = coalesce(%(document)s, document),
    status = coalesce(%(status)s, status),
    due_date = CASE WHEN %(set_due_date)s THEN %(due_date)s ELSE due_date END,
    plan_id = coalesce(%(plan_id)s, plan_id),
    recurrence = coalesce(%(recurrence)s, recurrence),
    updated_at = now()
WHERE id = %(id)s
RETURNING *

-- name: company_set_schedules
UPDATE companies SET schedules = %(schedules)s, updated_at = now() WHERE id = %(id)s RETURNING id

-- name: company_delete
DELETE FROM companies WHERE id = %(id)s

-- name: company_count
SELECT count(*) AS n FROM companies

-- name: company_count_search
SELECT count(*) AS n FROM companies
WHERE %(search)s::text IS NULL OR name ILIKE %(search)s OR email ILIKE %(search)s

-- ─── users ──────────────────────────────────────────────────────────────────────────────

-- name: user_insert
INSERT INTO users (company_id, name, email, password_hash, profile, super, all_ticket, whatsapp_id)
VALUES (%(company_id)s, %(name)s, lower(%(email)s), %(password_hash)s, %(profile)s, %(super)s,
        %(all_ticket)s, %(whatsapp_id)s)
RETURNING id

-- name: user_by_email
SELECT u.*, c.status AS company_status
FROM users u JOIN companies c ON c.id = u.company_id
WHERE lower(u.email) = lower(%(email)s)

-- name: user_by_id
SELECT u.*, c.status AS company_status
FROM users u JOIN companies c ON c.id = u.company_id
WHERE u.id = %(id)s

-- name: user_show
-- One user with its company and queues, as the API shows it; scoped by company.
SELECT u.id, u.name, u.email, u.profile, u.company_id, u.super, u.all_ticket, u.online, u.whatsapp_id,
       u.max_tickets, u.created_at, u.updated_at,
       -- dueDate: the last day the company is let in (its due date plus the grace), 9999-12-31 when it has
       -- none: the SaaS frontends let a user in only when this is a date in the future (README, "Plans")
       json_build_object('id', c.id, 'name', c.name, 'status', c.status, 'planId', c.plan_id,
                         'recurrence', c.recurrence, 'email', c.email,
                         'dueDate', coalesce(c.due_date + coalesce(
                             (SELECT CASE WHEN value ~ '^[0-9]+$' AND length(value) <= 5 THEN value::int END
                              FROM platform_settings WHERE key = 'gracePeriod'), 0), DATE '9999-12-31')) AS company,
       coalesce((SELECT json_agg(json_build_object('id', q.id, 'name', q.name, 'color', q.color)
                                 ORDER BY q.order_queue NULLS LAST, q.name)
                 FROM user_queues uq JOIN queues q ON q.id = uq.queue_id
                 WHERE uq.user_id = u.id AND q.company_id = u.company_id), '[]'::json) AS queues
FROM users u JOIN companies c ON c.id = u.company_id
WHERE u.id = %(id)s AND u.company_id = %(company_id)s

-- name: user_list
SELECT u.id, u.name, u.email, u.profile, u.company_id, u.super, u.all_ticket, u.online, u.whatsapp_id,
       u.max_tickets, u.created_at, u.updated_at,
       coalesce((SELECT json_agg(json_build_object('id', q.id, 'name', q.name, 'color', q.color)
                                 ORDER BY q.order_queue NULLS LAST, q.name)
                 FROM user_queues uq JOIN queues q ON q.id = uq.queue_id
                 WHERE uq.user_id = u.id), '[]'::json) AS queues,
       count(*) OVER () AS total
FROM users u
WHERE u.company_id = %(company_id)s
  AND (%(search)s::text IS NULL OR u.name ILIKE %(search)s OR u.email ILIKE %(search)s)
ORDER BY lower(u.name), u.id
LIMIT %(limit)s OFFSET %(offset)s

-- name: user_count
SELECT count(*) AS n FROM users u
WHERE u.company_id = %(company_id)s
  AND (%(search)s::text IS NULL OR u.name ILIKE %(search)s OR u.email ILIKE %(search)s)

-- name: user_update
UPDATE users SET
    name = coalesce(%(name)s, name),
    email = coalesce(lower(%(email)s), email),
    profile = coalesce(%(profile)s, profile),
    all_ticket = coalesce(%(all_ticket)s, all_ticket),
    super = coalesce(%(super)s, super),
    whatsapp_id = CASE WHEN %(set_whatsapp_id)s THEN %(whatsapp_id)s ELSE whatsapp_id END,
    max_tickets = CASE WHEN %(set_max_tickets)s THEN %(max_tickets)s ELSE max_tickets END,
    updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING id

-- name: user_set_password
UPDATE users SET password_hash = %(password_hash)s, password_changed_at = now(), updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s

-- name: user_delete
DELETE FROM users WHERE id = %(id)s AND company_id = %(company_id)s

-- name: user_set_online
UPDATE users SET online = %(online)s, last_seen_at = now() WHERE id = %(id)s

-- name: users_set_offline
-- At the start of a single process (api/presence.py): no socket survived the restart. Every company.
UPDATE users SET online = false WHERE online

-- name: user_queues_clear
DELETE FROM user_queues WHERE user_id = %(user_id)s AND company_id = %(company_id)s

-- name: user_queues_add
INSERT INTO user_queues (company_id, user_id, queue_id)
SELECT %(company_id)s, %(user_id)s, q.id FROM queues q
WHERE q.company_id = %(company_id)s AND q.id = ANY(%(queue_ids)s)

-- name: company_admin_count
SELECT count(*) AS n FROM users WHERE company_id = %(company_id)s AND profile = 'admin'

-- ─── auth sessions (logins and their rotating refresh tokens) ───────────────────────────

-- name: auth_session_insert
INSERT INTO auth_sessions (id, user_id, company_id, current_jti, user_agent, ip, expires_at)
VALUES (%(id)s, %(user_id)s, %(company_id)s, %(jti)s, %(user_agent)s, %(ip)s,
        now() + make_interval(secs => %(ttl)s))

-- name: auth_session_get
SELECT *, (rotated_at > now() - make_interval(secs => %(grace)s)) AS in_grace
FROM auth_sessions WHERE id = %(id)s FOR UPDATE

-- name: auth_session_rotate
UPDATE auth_sessions SET current_jti = %(new_jti)s, previous_jti = current_jti, rotated_at = now(),
    refreshed_at = now(),
    expires_at = now() + make_interval(secs => %(ttl)s)
WHERE id = %(id)s AND current_jti = %(jti)s AND revoked_at IS NULL AND expires_at > now()
RETURNING id

-- name: auth_session_revoke
UPDATE auth_sessions SET revoked_at = now(), revoked_reason = %(reason)s
WHERE id = %(id)s AND revoked_at IS NULL

-- name: auth_sessions_revoke_user
-- Every live login of the user but %(keep)s (the login that changed its own password; NULL: none spared).
UPDATE auth_sessions SET revoked_at = now(), revoked_reason = %(reason)s
WHERE user_id = %(user_id)s AND company_id = %(company_id)s AND revoked_at IS NULL
  AND id IS DISTINCT FROM %(keep)s::uuid
RETURNING id

-- name: auth_session_live
SELECT EXISTS (SELECT 1 FROM auth_sessions WHERE id = %(id)s AND revoked_at IS NULL AND expires_at > now()) AS live

-- name: auth_sessions_live
SELECT id FROM auth_sessions WHERE id = ANY(%(ids)s::uuid[]) AND revoked_at IS NULL AND expires_at > now()

-- name: auth_sessions_purge
DELETE FROM auth_sessions
WHERE expires_at < now() - interval '30 days' OR revoked_at < now() - interval '30 days'

-- ─── settings ───────────────────────────────────────────────────────────────────────────

-- name: settings_list
SELECT key, value, created_at, updated_at FROM settings WHERE company_id = %(company_id)s ORDER BY key

-- name: settings_seed
INSERT INTO settings (company_id, key, value)
SELECT %(company_id)s, k, v FROM unnest(%(keys)s::text[], %(values)s::text[]) AS d(k, v)
ON CONFLICT (company_id, key) DO NOTHING

-- name: setting_upsert
INSERT INTO settings (company_id, key, value) VALUES (%(company_id)s, %(key)s, %(value)s)
ON CONFLICT (company_id, key) DO UPDATE SET value = excluded.value, updated_at = now()
RETURNING key, value, created_at, updated_at

-- name: setting_get
SELECT value FROM settings WHERE company_id = %(company_id)s AND key = %(key)s

-- name: platform_settings_list
SELECT key, value, created_at, updated_at FROM platform_settings ORDER BY key

-- name: platform_setting_get
SELECT value FROM platform_settings WHERE key = %(key)s

-- name: platform_setting_upsert
INSERT INTO platform_settings (key, value) VALUES (%(key)s, %(value)s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()
RETURNING key, value, created_at, updated_at

-- ─── whatsapp connections ───────────────────────────────────────────────────────────────

-- name: whatsapp_insert
INSERT INTO whatsapps (company_id, name, channel, is_default, greeting_message, farewell_message,
                       complation_message, out_of_hours_message, token, rating_message, transfer_message,
                       expires_ticket, expires_inactive_message, max_use_bot_queues, time_use_bot_queues, schedules)
VALUES (%(company_id)s, %(name)s, %(channel)s, %(is_default)s, %(greeting_message)s, %(farewell_message)s,
        %(complation_message)s, %(out_of_hours_message)s, %(token)s, %(rating_message)s, %(transfer_message)s,
        %(expires_ticket)s, %(expires_inactive_message)s, %(max_use_bot_queues)s, %(time_use_bot_queues)s,
        %(schedules)s)
RETURNING id

-- name: whatsapp_show
SELECT w.*,
       coalesce((SELECT json_agg(json_build_object('id', q.id, 'name', q.name, 'color', q.color,
                                                   'greetingMessage', q.greeting_message)
                                 ORDER BY q.order_queue NULLS LAST, q.name)
                 FROM whatsapp_queues wq JOIN queues q ON q.id = wq.queue_id
                 WHERE wq.whatsapp_id = w.id AND q.company_id = w.company_id), '[]'::json) AS queues
FROM whatsapps w
WHERE w.id = %(id)s AND w.company_id = %(company_id)s

-- name: whatsapp_list
SELECT w.*,
       coalesce((SELECT json_agg(json_build_object('id', q.id, 'name', q.name, 'color', q.color)
                                 ORDER BY q.order_queue NULLS LAST, q.name)
                 FROM whatsapp_queues wq JOIN queues q ON q.id = wq.queue_id
                 WHERE wq.whatsapp_id = w.id), '[]'::json) AS queues
FROM whatsapps w
WHERE w.company_id = %(company_id)s
ORDER BY lower(w.name), w.id

-- name: whatsapp_count
SELECT count(*) AS n FROM whatsapps WHERE company_id = %(company_id)s

-- name: whatsapp_update
UPDATE whatsapps SET
    name = coalesce(%(name)s, name),
    is_default = coalesce(%(is_default)s, is_default),
    greeting_message = coalesce(%(greeting_message)s, greeting_message),
    farewell_message = coalesce(%(farewell_message)s, farewell_message),
    complation_message = coalesce(%(complation_message)s, complation_message),
    out_of_hours_message = coalesce(%(out_of_hours_message)s, out_of_hours_message),
    token = coalesce(%(token)s, token),
    rating_message = coalesce(%(rating_message)s, rating_message),
    transfer_message = coalesce(%(transfer_message)s, transfer_message),
    expires_ticket = coalesce(%(expires_ticket)s, expires_ticket),
    expires_inactive_message = coalesce(%(expires_inactive_message)s, expires_inactive_message),
    max_use_bot_queues = coalesce(%(max_use_bot_queues)s, max_use_bot_queues),
    time_use_bot_queues = coalesce(%(time_use_bot_queues)s, time_use_bot_queues),
    schedules = coalesce(%(schedules)s, schedules),
    updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING id

-- name: whatsapp_clear_default
UPDATE whatsapps SET is_default = false, updated_at = now()
WHERE company_id = %(company_id)s AND is_default AND id <> %(id)s

-- name: whatsapp_delete
DELETE FROM whatsapps WHERE id = %(id)s AND company_id = %(company_id)s

-- name: whatsapp_queues_clear
DELETE FROM whatsapp_queues WHERE whatsapp_id = %(whatsapp_id)s AND company_id = %(company_id)s

-- name: whatsapp_queues_add
INSERT INTO whatsapp_queues (company_id, whatsapp_id, queue_id)
SELECT %(company_id)s, %(whatsapp_id)s, q.id FROM queues q
WHERE q.company_id = %(company_id)s AND q.id = ANY(%(queue_ids)s)

-- name: whatsapp_by_id
-- The session actors' view of a connection (not scoped: the actor was started for this id).
SELECT id, company_id, name, channel, status, number, retries, session_data FROM whatsapps WHERE id = %(id)s

-- name: whatsapp_set_status
UPDATE whatsapps SET
    status = %(status)s,
    qrcode = coalesce(%(qrcode)s, qrcode),
    pairing_code = CASE WHEN %(set_pairing_code)s THEN %(pairing_code)s ELSE pairing_code END,
    retries = coalesce(%(retries)s, retries),
    number = coalesce(%(number)s, number),
    last_disconnect_at = CASE WHEN %(disconnect_reason)s::text IS NULL THEN last_disconnect_at ELSE now() END,
    last_disconnect_reason = coalesce(%(disconnect_reason)s, last_disconnect_reason),
    updated_at = now()
WHERE id = %(id)s
RETURNING id, company_id

-- name: whatsapp_set_device
UPDATE whatsapps SET session_data = %(device)s, updated_at = now() WHERE id = %(id)s

-- name: whatsapps_to_restore
-- Connections that were connected (or reconnecting) when the process stopped.
SELECT id, company_id FROM whatsapps WHERE status IN ('CONNECTED', 'OPENING') ORDER BY id

-- ─── the sandbox's outbox (schema version 15; gateway/whatsapp/sandbox_outbox.py) ─────────
-- The simulated WhatsApp's record of what it accepted, per installation: keyed by connection id (unique),
-- reached through /sandbox/:id only once the connection was found in the caller's company.

-- name: sandbox_outbox_repeat
-- A send under an id already accepted: counted, not a second message; the first one is the answer.
UPDATE sandbox_outbox SET attempts = attempts + 1, duplicates = duplicates + 1
WHERE connection_id = %(connection_id)s AND message_id = %(message_id)s AND ack <> 'failed'
RETURNING *

-- name: sandbox_outbox_put
-- A new message, or a retry of one that failed (it replaces it, last in order). Nothing returned: the id
-- was accepted before (sandbox_outbox_repeat then counts this send).
INSERT INTO sandbox_outbox (connection_id, message_id, recipient, kind, body, caption, filename, mimetype, size,
                            quoted_id, target_id, emoji, ack, error, sent_at)
VALUES (%(connection_id)s, %(message_id)s, %(recipient)s, %(kind)s, %(body)s, %(caption)s, %(filename)s,
        %(mimetype)s, %(size)s, %(quoted_id)s, %(target_id)s, %(emoji)s, %(ack)s, %(error)s, %(sent_at)s)
ON CONFLICT (connection_id, message_id) DO UPDATE SET
    seq = excluded.seq, recipient = excluded.recipient, kind = excluded.kind, body = excluded.body,
    caption = excluded.caption, filename = excluded.filename, mimetype = excluded.mimetype, size = excluded.size,
    quoted_id = excluded.quoted_id, target_id = excluded.target_id, emoji = excluded.emoji, reaction = NULL,
    deleted = false, edited = false, ack = excluded.ack, error = excluded.error, sent_at = excluded.sent_at,
    attempts = sandbox_outbox.attempts + 1
WHERE sandbox_outbox.ack = 'failed'
RETURNING seq

-- name: sandbox_outbox_change_target
-- What an edit, a revoke or a reaction does to the message it targets (when the outbox has it).
UPDATE sandbox_outbox SET
    body = CASE WHEN %(edit)s THEN %(body)s::text ELSE body END,
    edited = edited OR %(edit)s,
    deleted = deleted OR %(revoke)s,
    reaction = CASE WHEN %(react)s THEN %(reaction)s::text ELSE reaction END
WHERE connection_id = %(connection_id)s AND message_id = %(target_id)s

-- name: sandbox_outbox_prune
-- Keep a connection's newest `offset` + 1 messages.
DELETE FROM sandbox_outbox
WHERE connection_id = %(connection_id)s AND seq < (
    SELECT seq FROM sandbox_outbox WHERE connection_id = %(connection_id)s ORDER BY seq DESC
    OFFSET %(offset)s LIMIT 1)

-- name: sandbox_outbox_list
-- A connection's newest `limit` messages (or the one with `message_id`), oldest first.
SELECT * FROM (
    SELECT * FROM sandbox_outbox
    WHERE connection_id = %(connection_id)s AND (%(message_id)s::text IS NULL OR message_id = %(message_id)s)
    ORDER BY seq DESC LIMIT %(limit)s) newest
ORDER BY seq

-- name: sandbox_outbox_count
SELECT count(*) AS n FROM sandbox_outbox WHERE connection_id = %(connection_id)s

-- name: sandbox_outbox_acks
SELECT message_id, recipient, kind, ack FROM sandbox_outbox
WHERE connection_id = %(connection_id)s AND message_id = ANY(%(message_ids)s::text[])

-- name: sandbox_outbox_raise_acks
-- Receipts given: each message's ack goes up to its new one (never down; a failed send has none).
UPDATE sandbox_outbox o SET ack = v.ack
FROM unnest(%(message_ids)s::text[], %(acks)s::text[]) AS v (message_id, ack)
WHERE o.connection_id = %(connection_id)s AND o.message_id = v.message_id AND o.ack <> 'failed'
  AND array_position(ARRAY['sent', 'delivered', 'read', 'played'], v.ack)
      > array_position(ARRAY['sent', 'delivered', 'read', 'played'], o.ack)

-- name: sandbox_outbox_awaiting_receipts
-- Messages whose recipient's phone has not read them yet (their receipts are due again after a restart).
SELECT message_id FROM sandbox_outbox
WHERE connection_id = %(connection_id)s AND ack IN ('sent', 'delivered') AND kind NOT IN ('reaction', 'edit', 'revoke')
ORDER BY seq DESC LIMIT %(limit)s

-- name: sandbox_outbox_forget
DELETE FROM sandbox_outbox WHERE connection_id = %(connection_id)s

-- name: sandbox_outbox_restore
-- An entry of a journal written before version 15 (its outbox was in the data dir): kept unless its
-- connection is gone or the id is here already.
INSERT INTO sandbox_outbox (connection_id, message_id, recipient, kind, body, caption, filename, mimetype, size,
                            quoted_id, target_id, emoji, reaction, deleted, edited, ack, error, sent_at)
SELECT %(connection_id)s::bigint, %(message_id)s::text, %(recipient)s::text, %(kind)s::text, %(body)s::text,
       %(caption)s::text, %(filename)s::text, %(mimetype)s::text, %(size)s::bigint, %(quoted_id)s::text,
       %(target_id)s::text, %(emoji)s::text, %(reaction)s::text, %(deleted)s::boolean, %(edited)s::boolean,
       %(ack)s::text, %(error)s::text, %(sent_at)s::timestamptz
WHERE EXISTS (SELECT 1 FROM whatsapps WHERE id = %(connection_id)s::bigint)
ON CONFLICT (connection_id, message_id) DO NOTHING

-- ─── conversations: intake (TicketActors, through the group-commit writer) ─────────────

-- name: contact_by_lid
SELECT * FROM contacts WHERE company_id = %(company_id)s AND lid = %(lid)s

-- name: contact_set_number
UPDATE contacts SET number = %(number)s, updated_at = now()
WHERE id = %(id)s AND number = ''
  AND NOT EXISTS (SELECT 1 FROM contacts o WHERE o.company_id = %(company_id)s AND o.number = %(number)s)
RETURNING *

-- name: contact_upsert_by_number
-- A push name never overwrites a name an agent set; a known LID is kept.
INSERT INTO contacts (company_id, name, number, lid, is_group)
VALUES (%(company_id)s, %(name)s, %(number)s, %(lid)s, %(is_group)s)
ON CONFLICT (company_id, number) WHERE number <> '' DO UPDATE SET
    name = CASE WHEN contacts.name_set_by_agent OR excluded.name = '' OR excluded.name = contacts.name
                THEN contacts.name ELSE excluded.name END,
    lid = coalesce(contacts.lid, excluded.lid),
    updated_at = CASE WHEN (NOT contacts.name_set_by_agent AND excluded.name <> '' AND excluded.name <> contacts.name)
                        OR (contacts.lid IS NULL AND excluded.lid IS NOT NULL) THEN now() ELSE contacts.updated_at END
RETURNING *, (xmax = 0) AS inserted, (updated_at = now()) AS touched

-- name: contact_upsert_by_lid
INSERT INTO contacts (company_id, name, number, lid, is_group)
VALUES (%(company_id)s, %(name)s, '', %(lid)s, false)
ON CONFLICT (company_id, lid) WHERE lid IS NOT NULL DO UPDATE SET
    name = CASE WHEN contacts.name_set_by_agent OR excluded.name = '' THEN contacts.name ELSE excluded.name END,
    updated_at = now()
RETURNING *, (xmax = 0) AS inserted, (updated_at = now()) AS touched

-- name: ticket_find_or_create
-- The open or pending ticket of this contact on this connection, or a new pending one: race-free on
-- the partial unique index tickets_one_active_key.
INSERT INTO tickets (company_id, contact_id, whatsapp_id, status, is_group, last_message_at)
VALUES (%(company_id)s, %(contact_id)s, %(whatsapp_id)s, 'pending', %(is_group)s, %(at)s)
ON CONFLICT (company_id, contact_id, whatsapp_id) WHERE status IN ('pending', 'open')
DO UPDATE SET updated_at = tickets.updated_at
RETURNING *, (xmax = 0) AS inserted

-- name: ticket_event_insert
INSERT INTO ticket_events (company_id, ticket_id, kind, user_id, queue_id, whatsapp_id)
VALUES (%(company_id)s, %(ticket_id)s, %(kind)s, %(user_id)s, %(queue_id)s, %(whatsapp_id)s)

-- name: message_insert
INSERT INTO messages (company_id, whatsapp_id, ticket_id, contact_id, wid, from_me, body, media_type, media_url,
                      media_name, media_mimetype, ack, status, quoted_msg_id, participant, wa_timestamp, read,
                      sent_by_user_id, latitude, longitude)
VALUES (%(company_id)s, %(whatsapp_id)s, %(ticket_id)s, %(contact_id)s, %(wid)s, %(from_me)s, %(body)s,
        %(media_type)s, %(media_url)s, %(media_name)s, %(media_mimetype)s, %(ack)s, %(status)s,
        (SELECT m.id FROM messages m
            WHERE m.whatsapp_id = %(whatsapp_id)s AND m.wid = %(quoted_wid)s AND m.company_id = %(company_id)s),
        %(participant)s, %(wa_timestamp)s, %(read)s, %(sent_by_user_id)s, %(latitude)s, %(longitude)s)
ON CONFLICT (whatsapp_id, wid) WHERE wid IS NOT NULL DO NOTHING
RETURNING *

-- name: message_exists
SELECT 1 AS found FROM messages WHERE whatsapp_id = %(whatsapp_id)s AND wid = %(wid)s

-- name: ticket_after_message
UPDATE tickets SET
    unread_messages = unread_messages + %(unread)s,
    last_message = %(last_message)s,
    last_message_at = greatest(last_message_at, %(at)s),
    updated_at = now()
WHERE id = %(id)s AND status IN ('pending', 'open')
RETURNING *

-- Changes that arrive from WhatsApp apply only within the chat they come from (the actor's): the chat is
-- its contact, found by number or LID (`numbers`, `lids`: user parts; `is_group`), so a contact can never
-- touch another chat's messages. A statement that matches nothing is a change to ignore (the caller logs it).

-- name: message_react
-- A reaction, from the contact or from us (another device), to any message of this chat; one reaction a
-- message (the last one), as the frontends show it.
UPDATE messages m SET reaction = nullif(%(reaction)s, ''), updated_at = now()
WHERE m.whatsapp_id = %(whatsapp_id)s AND m.wid = %(wid)s AND m.company_id = %(company_id)s
  AND m.contact_id IN (SELECT c.id FROM contacts c
                       WHERE c.company_id = %(company_id)s AND c.is_group = %(is_group)s
                         AND ((c.number = ANY(%(numbers)s::text[]) AND c.number <> '')
                              OR c.lid = ANY(%(lids)s::text[])))
RETURNING m.*

-- name: message_edit
-- An edit by the message's sender only: `from_me` (our other device) edits our messages; a contact edits
-- theirs, and in a group only the participant who wrote it (`participants`: the sender's user parts).
UPDATE messages m SET
    edit_history = m.edit_history || jsonb_build_array(jsonb_build_object('body', m.body, 'at', now())),
    body = %(body)s, is_edited = true, updated_at = now()
WHERE m.whatsapp_id = %(whatsapp_id)s AND m.wid = %(wid)s AND m.company_id = %(company_id)s
  AND m.from_me = %(from_me)s
  AND (%(from_me)s OR NOT %(is_group)s OR m.participant = ANY(%(participants)s::text[]))
  AND m.contact_id IN (SELECT c.id FROM contacts c
                       WHERE c.company_id = %(company_id)s AND c.is_group = %(is_group)s
                         AND ((c.number = ANY(%(numbers)s::text[]) AND c.number <> '')
                              OR c.lid = ANY(%(lids)s::text[])))
RETURNING m.*

-- name: message_revoke
-- A deletion for everyone, by the message's sender only (as message_edit).
UPDATE messages m SET is_deleted = true, updated_at = now()
WHERE m.whatsapp_id = %(whatsapp_id)s AND m.wid = %(wid)s AND m.company_id = %(company_id)s
  AND m.from_me = %(from_me)s
  AND (%(from_me)s OR NOT %(is_group)s OR m.participant = ANY(%(participants)s::text[]))
  AND m.contact_id IN (SELECT c.id FROM contacts c
                       WHERE c.company_id = %(company_id)s AND c.is_group = %(is_group)s
                         AND ((c.number = ANY(%(numbers)s::text[]) AND c.number <> '')
                              OR c.lid = ANY(%(lids)s::text[])))
RETURNING m.*

-- name: message_ack
-- Receipts for our messages of this chat. Acks (the family's scale: 3 delivered, 4 read, 5 played) only move
-- forward (a late "delivered" never undoes "read"); -1 (failed) is final. A row per message of ours in the
-- chat among `wids` (`target`: its WhatsApp id), with the updated message's columns, all NULL when its ack
-- did not move; the ids without a row are not our messages of this chat (ignored).
WITH ours AS (
    SELECT m.id, m.wid FROM messages m
    WHERE m.whatsapp_id = %(whatsapp_id)s AND m.wid = ANY(%(wids)s::text[]) AND m.company_id = %(company_id)s
      AND m.from_me
      AND m.contact_id IN (SELECT c.id FROM contacts c
                       WHERE c.company_id = %(company_id)s AND c.is_group = %(is_group)s
                         AND ((c.number = ANY(%(numbers)s::text[]) AND c.number <> '')
                              OR c.lid = ANY(%(lids)s::text[])))
), moved AS (
    UPDATE messages m SET ack = %(ack)s, updated_at = now()
    FROM ours
    WHERE m.id = ours.id AND m.ack >= 0 AND m.ack < %(ack)s
    RETURNING m.*
)
SELECT ours.wid AS target, moved.* FROM ours LEFT JOIN moved ON moved.id = ours.id

-- name: message_ack_many
-- message_ack for the receipts of many chats of one connection at once (the conversations that have no actor
-- running: actors/receipts.py): a row per (WhatsApp id, ack, the chat's number or LID, group?); each id counts
-- only for our message to that chat's contact; the highest ack wins. A row per message of ours (`target`), with
-- the updated message's columns, all NULL when its ack did not move, and `matched`: how many of the rows asked
-- for were ours (the others are not our messages of their chats: ignored).
WITH wanted AS (
    SELECT * FROM unnest(%(wids)s::text[], %(acks)s::int[], %(numbers)s::text[], %(lids)s::text[],
                         %(groups)s::boolean[]) AS w(wid, ack, number, lid, is_group)
), matched AS (
    SELECT m.id, m.wid, w.ack
    FROM wanted w
    JOIN messages m ON m.whatsapp_id = %(whatsapp_id)s AND m.wid = w.wid AND m.company_id = %(company_id)s AND m.from_me
    JOIN contacts c ON c.id = m.contact_id AND c.company_id = %(company_id)s AND c.is_group = w.is_group
                   AND ((c.number = w.number AND c.number <> '') OR c.lid = w.lid)
), ours AS (
    SELECT DISTINCT ON (id) id, wid, ack FROM matched ORDER BY id, ack DESC
), moved AS (
    UPDATE messages m SET ack = ours.ack, updated_at = now()
    FROM ours
    WHERE m.id = ours.id AND m.ack >= 0 AND m.ack < ours.ack
    RETURNING m.*
)
SELECT ours.wid AS target, (SELECT count(*) FROM matched)::int AS matched, moved.*
FROM ours LEFT JOIN moved ON moved.id = ours.id

-- name: message_edit_own
-- An agent edits a message sent from here (after WhatsApp took the edit).
UPDATE messages SET
    edit_history = edit_history || jsonb_build_array(jsonb_build_object('body', body, 'at', now())),
    body = %(body)s, is_edited = true, updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s AND from_me
RETURNING *

-- name: message_react_own
-- An agent reacts to a message of the ticket (after WhatsApp took the reaction): one reaction a message, the
-- last one, as message_react keeps a contact's ('' removes it).
UPDATE messages SET reaction = nullif(%(reaction)s, ''), updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING *

-- name: message_revoke_own
-- An agent deletes a message sent from here (after WhatsApp took the deletion, unless it is private).
UPDATE messages SET is_deleted = true, updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s AND from_me
RETURNING *

-- ─── tickets and messages as the API shows them ─────────────────────────────────────────

-- name: ticket_show
SELECT * FROM tickets_shown WHERE id = %(id)s AND company_id = %(company_id)s

-- name: tickets_show
-- ticket_show for several tickets (`ids`).
SELECT * FROM tickets_shown WHERE id = ANY(%(ids)s::bigint[]) AND company_id = %(company_id)s

-- name: ticket_by_uuid
SELECT id FROM tickets WHERE uuid = %(uuid)s AND company_id = %(company_id)s

-- name: contact_extra_info
-- A contact's custom fields as the ticket page's contact drawer shows them (extraInfo).
SELECT id, name, value FROM contact_custom_fields
WHERE contact_id = %(contact_id)s AND company_id = %(company_id)s
ORDER BY id

-- name: contact_get
SELECT * FROM contacts WHERE id = %(id)s AND company_id = %(company_id)s

-- name: message_show
-- A message with what the API shows of the message it quotes (quoted_*: api/present_tickets.py).
SELECT m.*, q.wid AS quoted_wid, q.body AS quoted_body, q.from_me AS quoted_from_me, q.media_type AS quoted_media_type,
       q.media_url AS quoted_media_url, q.media_name AS quoted_media_name, q.media_mimetype AS quoted_media_mimetype,
       q.latitude AS quoted_latitude, q.longitude AS quoted_longitude, q.participant AS quoted_participant,
       coalesce(q.wa_timestamp, q.created_at) AS quoted_at
FROM messages m LEFT JOIN messages q ON q.id = m.quoted_msg_id
WHERE m.id = %(id)s AND m.company_id = %(company_id)s

-- name: messages_page
-- The newest messages of a ticket first (the API reverses each page to chronological order), as message_show
-- shows them.
SELECT m.*, q.wid AS quoted_wid, q.body AS quoted_body, q.from_me AS quoted_from_me, q.media_type AS quoted_media_type,
       q.media_url AS quoted_media_url, q.media_name AS quoted_media_name, q.media_mimetype AS quoted_media_mimetype,
       q.latitude AS quoted_latitude, q.longitude AS quoted_longitude, q.participant AS quoted_participant,
       coalesce(q.wa_timestamp, q.created_at) AS quoted_at
FROM messages m LEFT JOIN messages q ON q.id = m.quoted_msg_id
WHERE m.ticket_id = %(ticket_id)s AND m.company_id = %(company_id)s
ORDER BY m.created_at DESC, m.id DESC
LIMIT %(limit)s OFFSET %(offset)s

-- name: messages_count
SELECT count(*) AS n FROM messages WHERE ticket_id = %(ticket_id)s AND company_id = %(company_id)s

-- name: ticket_show_json
-- A ticket as ticket_show shows it, with its JSON as the API answers it (tickets_json, schema version 2).
SELECT v.id, v.company_id, v.contact_id, v.whatsapp_id, v.queue_id, v.user_id, v.status, v.is_group, v.contact,
       v.json::text AS json
FROM tickets_json v
WHERE v.id = %(id)s AND v.company_id = %(company_id)s

-- name: messages_page_json
-- A page of a ticket's messages as GET /messages/:ticketId answers them (api_message_json, schema version 6, as
-- JSON text): the newest `limit` after `offset` — and, with `before_id` and its `before_at` (ticketz's
-- `nextId`: message_cursor), older than that message — in chronological order; in one snapshot, the rows in
-- the page, whether older ones remain (`more`), the oldest one's id (the next `nextId`) and the ticket's count
-- of messages. `base_url` prefixes the media links; `contact_*` is the ticket's contact (its chat, and the
-- sender of what it wrote), as the route read it with the ticket. The chat and the cursor come as parameters
-- rather than subqueries: this statement is planned at every call, and each join planned costs more than the
-- rows it reads.
WITH page AS MATERIALIZED (
    SELECT m, q, m.created_at, m.id
    FROM messages m LEFT JOIN messages q ON q.id = m.quoted_msg_id
    WHERE m.ticket_id = %(ticket_id)s AND m.company_id = %(company_id)s
      AND (%(before_id)s::bigint IS NULL
           OR (m.created_at, m.id) < (%(before_at)s::timestamptz, %(before_id)s::bigint))
    ORDER BY m.created_at DESC, m.id DESC
    LIMIT %(limit)s + 1 OFFSET %(offset)s
), shown AS (
    SELECT * FROM page ORDER BY created_at DESC, id DESC LIMIT %(limit)s
)
SELECT coalesce((SELECT json_agg(api_message_json(
                            p.m, p.q, %(contact_id)s::bigint, %(contact_name)s::text, %(contact_number)s::text,
                            %(contact_is_group)s::boolean,
                            api_chat_jid(%(contact_is_group)s::boolean, %(contact_number)s::text, %(contact_lid)s::text),
                            %(base_url)s::text)
                        ORDER BY p.created_at, p.id)
                 FROM shown p), '[]')::text AS messages,
       (SELECT count(*) FROM shown) AS shown,
       (SELECT count(*) FROM page) > %(limit)s AS more,
       (SELECT id FROM shown ORDER BY created_at, id LIMIT 1) AS oldest_id,
       (SELECT count(*) FROM messages WHERE ticket_id = %(ticket_id)s AND company_id = %(company_id)s) AS count

-- name: message_cursor
-- Where an older page ends (ticketz's `nextId`): that message of the ticket's time; no row if it is none of its.
SELECT created_at FROM messages WHERE id = %(id)s AND ticket_id = %(ticket_id)s AND company_id = %(company_id)s

-- name: outbox_message_insert
-- An agent's message: 'pending' (the outbox, ack 1 pending), or 'private' (`is_private`: an internal note, never
-- sent; ack 2, what the Gold lineage's backends store for their notes: one tick, with the team).
-- `wid` is chosen before the write (the id WhatsApp will get): a write retried after a lost COMMIT finds
-- its row (no second message), and a send retried after a crash goes out under the same id.
INSERT INTO messages (company_id, whatsapp_id, ticket_id, contact_id, wid, from_me, body, media_type, media_url,
                      media_name, media_mimetype, ack, status, quoted_msg_id, sent_by_user_id, read, is_private,
                      sent_by)
VALUES (%(company_id)s, %(whatsapp_id)s, %(ticket_id)s, %(contact_id)s, %(wid)s, true, %(body)s, %(media_type)s,
        %(media_url)s, %(media_name)s, %(media_mimetype)s, CASE WHEN %(is_private)s THEN 2 ELSE 1 END,
        CASE WHEN %(is_private)s THEN 'private' ELSE 'pending' END, %(quoted_msg_id)s, %(user_id)s, true,
        %(is_private)s, %(sent_by)s)
ON CONFLICT (whatsapp_id, wid) WHERE wid IS NOT NULL DO NOTHING
RETURNING *

-- name: message_by_wid
SELECT * FROM messages WHERE whatsapp_id = %(whatsapp_id)s AND wid = %(wid)s AND company_id = %(company_id)s

-- name: outbox_sent
-- WhatsApp's server took it: ack 2 (a receipt that came first, 3 or more, stays).
UPDATE messages SET wid = %(wid)s, status = 'sent', ack = greatest(ack, 2), wa_timestamp = %(at)s, error = NULL,
                    updated_at = now()
WHERE id = %(id)s
RETURNING *

-- name: outbox_failed
-- -1, as the family stores a send that failed (with `error`).
UPDATE messages SET status = 'failed', ack = -1, error = %(error)s, updated_at = now()
WHERE id = %(id)s
RETURNING *

-- name: outbox_pending
-- What is still to send: never a private message (its status is 'private'; NOT is_private says it again).
SELECT id, ticket_id FROM messages
WHERE whatsapp_id = %(whatsapp_id)s AND status = 'pending' AND NOT is_private ORDER BY id

-- name: outbox_pending_for_ticket
SELECT * FROM messages WHERE ticket_id = %(ticket_id)s AND status = 'pending' AND NOT is_private ORDER BY id

-- name: ticket_read
-- Opening a ticket reads it, in one statement: its unread count to 0 (`changed` when it was not), its
-- unread messages marked read (`wids`: those that have a WhatsApp id, for the read receipts).
WITH ticket AS (
    UPDATE tickets SET unread_messages = 0
    WHERE id = %(id)s AND company_id = %(company_id)s AND unread_messages > 0
    RETURNING id
), unread AS (
    UPDATE messages SET read = true
    WHERE ticket_id = %(id)s AND company_id = %(company_id)s AND NOT read
    RETURNING wid
)
SELECT EXISTS (SELECT FROM ticket) AS changed,
       array(SELECT wid FROM unread WHERE wid <> '') AS wids

-- ─── queues ─────────────────────────────────────────────────────────────────────────────

-- name: queue_insert
INSERT INTO queues (company_id, name, color, greeting_message, out_of_hours_message, order_queue, schedules,
                    auto_assign)
VALUES (%(company_id)s, %(name)s, %(color)s, %(greeting_message)s, %(out_of_hours_message)s, %(order_queue)s,
        %(schedules)s, %(auto_assign)s)
RETURNING *

-- name: queue_show
SELECT * FROM queues WHERE id = %(id)s AND company_id = %(company_id)s

-- name: queue_list
SELECT * FROM queues WHERE company_id = %(company_id)s
ORDER BY order_queue NULLS LAST, lower(name), id

-- name: queue_update
UPDATE queues SET
    name = coalesce(%(name)s, name),
    color = coalesce(%(color)s, color),
    greeting_message = coalesce(%(greeting_message)s, greeting_message),
    out_of_hours_message = coalesce(%(out_of_hours_message)s, out_of_hours_message),
    schedules = coalesce(%(schedules)s, schedules),
    order_queue = CASE WHEN %(set_order_queue)s THEN %(order_queue)s ELSE order_queue END,
    auto_assign = coalesce(%(auto_assign)s, auto_assign),
    updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING *

-- name: queue_delete
-- Tickets of the queue keep existing with queue_id null; user and connection links go (foreign keys), its
-- options too: the stored files of the queue and its options come back, to be removed once committed.
WITH options AS (SELECT media_path FROM queue_options
                 WHERE company_id = %(company_id)s AND queue_id = %(id)s AND media_path IS NOT NULL),
     deleted AS (DELETE FROM queues WHERE id = %(id)s AND company_id = %(company_id)s RETURNING media_path)
SELECT (SELECT media_path FROM deleted) AS media_path, EXISTS (SELECT FROM deleted) AS deleted,
       array(SELECT media_path FROM options) AS option_media

-- name: queue_set_media
-- A queue's greeting file (or none), and the one it replaces (to be removed once this is committed).
WITH old AS (SELECT id, media_path FROM queues WHERE id = %(id)s AND company_id = %(company_id)s FOR NO KEY UPDATE)
UPDATE queues q SET media_path = %(media_path)s, media_name = %(media_name)s, updated_at = now()
FROM old WHERE q.id = old.id
RETURNING q.*, old.media_path AS replaced_media_path

-- name: queue_lock
-- Taken before a queue's option tree changes (storage/queue_options.py): one change of a tree at a time.
-- NO KEY UPDATE: tickets referencing the queue (FOR KEY SHARE) are not held up.
SELECT id FROM queues WHERE id = %(id)s AND company_id = %(company_id)s FOR NO KEY UPDATE

-- ─── queue options (the menu tree of a queue) ───────────────────────────────────────────

-- name: queue_option_list
SELECT * FROM queue_options
WHERE company_id = %(company_id)s
  AND (%(queue_id)s::bigint IS NULL OR queue_id = %(queue_id)s)
  AND (%(parent_id)s::bigint IS NULL OR parent_id = %(parent_id)s)
  AND (NOT %(roots)s OR parent_id IS NULL)
  AND (%(id)s::bigint IS NULL OR id = %(id)s)
ORDER BY id
LIMIT %(limit)s

-- name: queue_options_of_queues
SELECT * FROM queue_options WHERE company_id = %(company_id)s AND queue_id = ANY(%(queue_ids)s)
ORDER BY queue_id, id

-- name: queue_option_show
SELECT * FROM queue_options WHERE id = %(id)s AND company_id = %(company_id)s

-- name: queue_option_depth
-- The level of an option in its tree (a root is 1), walking up its parents.
WITH RECURSIVE up AS (
    SELECT id, parent_id, 1 AS depth FROM queue_options WHERE id = %(id)s AND company_id = %(company_id)s
    UNION ALL
    SELECT p.id, p.parent_id, up.depth + 1
    FROM queue_options p JOIN up ON p.id = up.parent_id
    WHERE p.company_id = %(company_id)s AND up.depth < 100
)
SELECT coalesce(max(depth), 0) AS depth FROM up

-- name: queue_option_subtree
-- An option and everything under it, with its level below the option (0: the option itself).
WITH RECURSIVE down AS (
    SELECT id, media_path, 0 AS level FROM queue_options WHERE id = %(id)s AND company_id = %(company_id)s
    UNION ALL
    SELECT c.id, c.media_path, down.level + 1
    FROM queue_options c JOIN down ON c.parent_id = down.id
    WHERE c.company_id = %(company_id)s AND down.level < 100
)
SELECT id, media_path, level FROM down

-- name: queue_option_counts
-- The options under a parent (NULL: the queue's first level), and in the whole queue.
SELECT count(*) FILTER (WHERE parent_id IS NOT DISTINCT FROM %(parent_id)s::bigint) AS siblings,
       count(*) AS in_queue
FROM queue_options WHERE company_id = %(company_id)s AND queue_id = %(queue_id)s

-- name: queue_option_insert
INSERT INTO queue_options (company_id, queue_id, parent_id, title, option, message, forward_queue_id, exit_chatbot)
VALUES (%(company_id)s, %(queue_id)s, %(parent_id)s, %(title)s, %(option)s, %(message)s, %(forward_queue_id)s,
        %(exit_chatbot)s)
RETURNING *

-- name: queue_option_update
UPDATE queue_options SET
    queue_id = %(queue_id)s, parent_id = %(parent_id)s, title = %(title)s, option = %(option)s,
    message = %(message)s, forward_queue_id = %(forward_queue_id)s, exit_chatbot = %(exit_chatbot)s,
    updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING *

-- name: queue_options_set_queue
-- A subtree moved to another queue.
UPDATE queue_options SET queue_id = %(queue_id)s, updated_at = now()
WHERE company_id = %(company_id)s AND id = ANY(%(ids)s)

-- name: queue_option_delete
-- Its sub-options go with it (the parent_id foreign key cascades).
DELETE FROM queue_options WHERE id = %(id)s AND company_id = %(company_id)s

-- name: queue_option_set_media
-- An option's file (or none), and the one it replaces (to be removed once this is committed).
WITH old AS (SELECT id, media_path FROM queue_options
             WHERE id = %(id)s AND company_id = %(company_id)s FOR NO KEY UPDATE)
UPDATE queue_options o SET media_path = %(media_path)s, media_name = %(media_name)s, updated_at = now()
FROM old WHERE o.id = old.id
RETURNING o.*, old.media_path AS replaced_media_path

-- ─── contacts ───────────────────────────────────────────────────────────────────────────

-- name: contact_insert
INSERT INTO contacts (company_id, name, name_set_by_agent, number, email)
VALUES (%(company_id)s, %(name)s, true, %(number)s, %(email)s)
RETURNING id

-- name: contact_find_or_insert
-- The company's contact with this number, made when there is none (`created`). A row inserted concurrently
-- by another transaction is invisible to this statement's snapshot: no row then, and the caller asks again.
WITH new AS (
    INSERT INTO contacts (company_id, name, name_set_by_agent, number, email)
    VALUES (%(company_id)s, %(name)s, true, %(number)s, '')
    ON CONFLICT (company_id, number) WHERE number <> '' DO NOTHING
    RETURNING id
)
SELECT id, true AS created FROM new
UNION ALL
SELECT id, false FROM contacts
WHERE company_id = %(company_id)s AND number = %(number)s AND NOT EXISTS (SELECT 1 FROM new)

-- name: contact_show
-- One contact with its custom fields (extraInfo) and tags; scoped by company.
SELECT c.*,
       coalesce((SELECT json_agg(json_build_object('id', f.id, 'name', f.name, 'value', f.value) ORDER BY f.id)
                 FROM contact_custom_fields f
                 WHERE f.contact_id = c.id AND f.company_id = c.company_id), '[]'::json) AS extra_info,
       coalesce((SELECT json_agg(api_tag_json(tg) ORDER BY tg.name, tg.id)
                 FROM contact_tags ct JOIN tags tg ON tg.id = ct.tag_id
                 WHERE ct.contact_id = c.id), '[]'::json) AS tags
FROM contacts c
WHERE c.id = %(id)s AND c.company_id = %(company_id)s

-- name: contact_list
-- A page of contacts by name (served by contacts_company_name_idx); `search` is an ILIKE pattern on the
-- name and on the values of the custom fields (`needle`: the search's text, whose three-character pieces
-- find the fields through contact_custom_fields_value_grams_idx, version 19), `number_search` a LIKE
-- pattern of digits on the number (either may be null).
SELECT c.*,
       coalesce((SELECT json_agg(json_build_object('id', f.id, 'name', f.name, 'value', f.value) ORDER BY f.id)
                 FROM contact_custom_fields f
                 WHERE f.contact_id = c.id AND f.company_id = c.company_id), '[]'::json) AS extra_info,
       coalesce((SELECT json_agg(api_tag_json(tg) ORDER BY tg.name, tg.id)
                 FROM contact_tags ct JOIN tags tg ON tg.id = ct.tag_id
                 WHERE ct.contact_id = c.id), '[]'::json) AS tags,
       count(*) OVER () AS total
FROM contacts c
WHERE c.company_id = %(company_id)s
  AND (%(search)s::text IS NULL OR lower(c.name) LIKE lower(%(search)s)
       OR c.number LIKE coalesce(%(number_search)s, %(search)s)
       OR c.id IN (SELECT f.contact_id FROM contact_custom_fields f
                   WHERE f.company_id = %(company_id)s AND lower(f.value) LIKE lower(%(search)s)
                     AND (length(%(needle)s::text) < 3
                          OR search_grams(lower(f.value)) @> search_grams(lower(%(needle)s::text)))))
ORDER BY lower(c.name), c.id
LIMIT %(limit)s OFFSET %(offset)s

-- name: contact_count
SELECT count(*) AS n FROM contacts c
WHERE c.company_id = %(company_id)s
  AND (%(search)s::text IS NULL OR lower(c.name) LIKE lower(%(search)s)
       OR c.number LIKE coalesce(%(number_search)s, %(search)s)
       OR c.id IN (SELECT f.contact_id FROM contact_custom_fields f
                   WHERE f.company_id = %(company_id)s AND lower(f.value) LIKE lower(%(search)s)
                     AND (length(%(needle)s::text) < 3
                          OR search_grams(lower(f.value)) @> search_grams(lower(%(needle)s::text)))))

-- name: contact_update
-- A name that differs from the stored one is the agent's: a WhatsApp push name never replaces it.
UPDATE contacts SET
    name_set_by_agent = name_set_by_agent OR (%(name)s::text IS NOT NULL AND %(name)s::text <> name),
    name = coalesce(%(name)s, name),
    number = coalesce(%(number)s, number),
    email = coalesce(%(email)s, email),
    updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING id

-- name: contact_delete
DELETE FROM contacts WHERE id = %(id)s AND company_id = %(company_id)s

-- name: contact_fields_prune
DELETE FROM contact_custom_fields
WHERE contact_id = %(contact_id)s AND company_id = %(company_id)s AND NOT (name = ANY(%(names)s::text[]))

-- name: contact_fields_upsert
-- Fields are matched by name, so an unchanged field keeps its id.
INSERT INTO contact_custom_fields (company_id, contact_id, name, value)
SELECT %(company_id)s, %(contact_id)s, n, v FROM unnest(%(names)s::text[], %(values)s::text[]) AS d(n, v)
ON CONFLICT (contact_id, name) DO UPDATE SET value = excluded.value, updated_at = now()
WHERE contact_custom_fields.value IS DISTINCT FROM excluded.value

-- name: contact_import_merge
-- One batch of an import (storage/imports.py; numbers unique within it): upsert the contacts by number and
-- set the custom fields the file gives (`field_numbers`/`field_names`/`field_values`, one triple per field;
-- a field the file leaves out is kept). A new contact takes the file's name (or its number when the file has
-- none). An existing one takes the file's name only while its name was not chosen by an agent (a push name,
-- or an earlier import without a name), and the file's email when it has one. Rows are locked in number
-- order, so concurrent imports cannot deadlock; `xmax = 0` tells an inserted row from an updated one.
WITH upserted AS (
    INSERT INTO contacts (company_id, name, name_set_by_agent, number, email)
    SELECT %(company_id)s, CASE WHEN d.name = '' THEN d.number ELSE d.name END, d.name <> '', d.number, d.email
    FROM unnest(%(numbers)s::text[], %(names)s::text[], %(emails)s::text[]) AS d(number, name, email)
    ORDER BY d.number
    ON CONFLICT (company_id, number) WHERE number <> '' DO UPDATE SET
        name = CASE WHEN contacts.name_set_by_agent OR NOT excluded.name_set_by_agent THEN contacts.name
                    ELSE excluded.name END,
        name_set_by_agent = contacts.name_set_by_agent OR excluded.name_set_by_agent,
        email = CASE WHEN excluded.email <> '' THEN excluded.email ELSE contacts.email END,
        updated_at = now()
    RETURNING id, number, (xmax = 0) AS inserted
),
fields AS (
    INSERT INTO contact_custom_fields (company_id, contact_id, name, value)
    SELECT %(company_id)s, u.id, f.name, f.value
    FROM unnest(%(field_numbers)s::text[], %(field_names)s::text[], %(field_values)s::text[])
         AS f(number, name, value)
    JOIN upserted u ON u.number = f.number
    ORDER BY u.id, f.name
    ON CONFLICT (contact_id, name) DO UPDATE SET value = excluded.value, updated_at = now()
    WHERE contact_custom_fields.value IS DISTINCT FROM excluded.value
)
SELECT count(*) FILTER (WHERE inserted) AS created, count(*) FILTER (WHERE NOT inserted) AS merged FROM upserted

-- name: contact_export
-- The next slice of the company's contacts for an export (keyset on id), with their custom fields as a list
-- of name and value pairs; groups are left out (they are no phone numbers), as ticketz's export leaves them.
SELECT c.id, c.name, c.number, c.email,
       coalesce((SELECT json_agg(json_build_object('name', f.name, 'value', f.value) ORDER BY f.id)
                 FROM contact_custom_fields f
                 WHERE f.contact_id = c.id AND f.company_id = c.company_id), '[]'::json) AS extra_info
FROM contacts c
WHERE c.company_id = %(company_id)s AND NOT c.is_group AND c.number <> '' AND c.id > %(after)s
ORDER BY c.id
LIMIT %(limit)s

-- ─── tags (schema version 8) ───────────────────────────────────────────────────────────

-- name: tag_page
-- A page of the company's tags by name, with how many tickets and contacts carry each; `search` is a LIKE
-- pattern matched accent- and case-insensitively (search_fold), or null.
SELECT tg.*,
       (SELECT count(*) FROM ticket_tags tt WHERE tt.tag_id = tg.id) AS tickets_count,
       (SELECT count(*) FROM contact_tags ct WHERE ct.tag_id = tg.id) AS contacts_count,
       count(*) OVER () AS total
FROM tags tg
WHERE tg.company_id = %(company_id)s
  AND (%(search)s::text IS NULL OR search_fold(tg.name) LIKE search_fold(%(search)s::text))
ORDER BY search_fold(tg.name), tg.id
LIMIT %(limit)s OFFSET %(offset)s

-- name: tag_count
SELECT count(*) AS n FROM tags tg
WHERE tg.company_id = %(company_id)s
  AND (%(search)s::text IS NULL OR search_fold(tg.name) LIKE search_fold(%(search)s::text))

-- name: tag_all
-- Every tag of the company (the tag pickers), by name; `search` as in tag_page, on the name or the colour;
-- `kanban_only`: the kanban's lanes.
SELECT * FROM tags tg
WHERE tg.company_id = %(company_id)s
  AND (%(search)s::text IS NULL OR search_fold(tg.name) LIKE search_fold(%(search)s::text)
       OR lower(tg.color) LIKE lower(%(search)s::text))
  AND (NOT %(kanban_only)s OR tg.kanban)
ORDER BY search_fold(tg.name), tg.id
LIMIT %(limit)s

-- name: tag_show
SELECT tg.*,
       (SELECT count(*) FROM ticket_tags tt WHERE tt.tag_id = tg.id) AS tickets_count,
       (SELECT count(*) FROM contact_tags ct WHERE ct.tag_id = tg.id) AS contacts_count
FROM tags tg
WHERE tg.id = %(id)s AND tg.company_id = %(company_id)s

-- name: tag_by_name
SELECT * FROM tags WHERE company_id = %(company_id)s AND lower(name) = lower(%(name)s)

-- name: tag_insert_new
-- A new tag; no row when the company has one of that name (any case): storage/tags.py then looks at it.
INSERT INTO tags (company_id, name, color, kanban)
VALUES (%(company_id)s, %(name)s, %(color)s, %(kanban)s)
ON CONFLICT (company_id, lower(name)) DO NOTHING
RETURNING *, 0::bigint AS tickets_count, 0::bigint AS contacts_count

-- name: tag_update
UPDATE tags tg SET
    name = coalesce(%(name)s, tg.name),
    color = coalesce(%(color)s, tg.color),
    kanban = coalesce(%(kanban)s, tg.kanban),
    updated_at = now()
WHERE tg.id = %(id)s AND tg.company_id = %(company_id)s
RETURNING tg.*,
          (SELECT count(*) FROM ticket_tags tt WHERE tt.tag_id = tg.id) AS tickets_count,
          (SELECT count(*) FROM contact_tags ct WHERE ct.tag_id = tg.id) AS contacts_count

-- name: tag_delete
-- The tag and, by its foreign keys, its place on every ticket and contact.
DELETE FROM tags WHERE id = %(id)s AND company_id = %(company_id)s

-- name: tags_reach
-- At most how many tickets carry every one of `tag_ids`, directly or through their contact, reading no more
-- than `cap` + 1 entries of each tag's index: the rarest tag's tickets plus the rarest tag's contacts (a
-- contact's tickets counted once: a bound good enough to choose a plan by, storage/ticket_lists.py).
SELECT coalesce((SELECT min(n) FROM unnest(%(tag_ids)s::bigint[]) AS tag(id),
                 LATERAL (SELECT count(*) AS n FROM (SELECT 1 FROM ticket_tags tt WHERE tt.tag_id = tag.id
                                                     LIMIT %(cap)s + 1) x) c), 0)
     + coalesce((SELECT min(n) FROM unnest(%(tag_ids)s::bigint[]) AS tag(id),
                 LATERAL (SELECT count(*) AS n FROM (SELECT 1 FROM contact_tags ct WHERE ct.tag_id = tag.id
                                                     LIMIT %(cap)s + 1) y) c), 0) AS n

-- name: ticket_lock
-- The ticket's row locked for the transaction: changes of one ticket's tags apply one after the other.
SELECT id FROM tickets WHERE id = %(ticket_id)s AND company_id = %(company_id)s FOR NO KEY UPDATE

-- name: contact_lock
SELECT id FROM contacts WHERE id = %(contact_id)s AND company_id = %(company_id)s FOR NO KEY UPDATE

-- name: ticket_tags_set
-- The ticket's tags become exactly `tag_ids` (of the company: `found` says how many of them are; the API
-- rolls back unless all are).
WITH wanted AS (SELECT id FROM tags WHERE company_id = %(company_id)s AND id = ANY(%(tag_ids)s::bigint[])),
removed AS (
    DELETE FROM ticket_tags
    WHERE ticket_id = %(ticket_id)s AND company_id = %(company_id)s AND tag_id NOT IN (SELECT id FROM wanted)
),
added AS (
    INSERT INTO ticket_tags (company_id, ticket_id, tag_id)
    SELECT %(company_id)s, %(ticket_id)s, id FROM wanted
    ON CONFLICT DO NOTHING
)
SELECT count(*) AS found FROM wanted

-- name: contact_tags_set
WITH wanted AS (SELECT id FROM tags WHERE company_id = %(company_id)s AND id = ANY(%(tag_ids)s::bigint[])),
removed AS (
    DELETE FROM contact_tags
    WHERE contact_id = %(contact_id)s AND company_id = %(company_id)s AND tag_id NOT IN (SELECT id FROM wanted)
),
added AS (
    INSERT INTO contact_tags (company_id, contact_id, tag_id)
    SELECT %(company_id)s, %(contact_id)s, id FROM wanted
    ON CONFLICT DO NOTHING
)
SELECT count(*) AS found FROM wanted

-- name: ticket_tag_add
-- Put a tag on a ticket; a kanban tag takes the place of the ticket's other kanban tags (a card moved to
-- another lane), in this one statement. `found` is 0 when the tag is not the company's (nothing written).
WITH tag AS (SELECT id, kanban FROM tags WHERE id = %(tag_id)s AND company_id = %(company_id)s),
swapped AS (
    DELETE FROM ticket_tags tt USING tags other, tag
    WHERE tt.ticket_id = %(ticket_id)s AND tt.company_id = %(company_id)s AND other.id = tt.tag_id
      AND other.kanban AND tag.kanban AND tt.tag_id <> tag.id
    RETURNING tt.tag_id
),
added AS (
    INSERT INTO ticket_tags (company_id, ticket_id, tag_id)
    SELECT %(company_id)s, %(ticket_id)s, id FROM tag
    ON CONFLICT DO NOTHING
    RETURNING tag_id
)
SELECT (SELECT count(*) FROM tag) AS found, (SELECT count(*) FROM added) AS added,
       coalesce((SELECT array_agg(tag_id ORDER BY tag_id) FROM swapped), ARRAY[]::bigint[]) AS removed

-- name: ticket_tag_remove
DELETE FROM ticket_tags
WHERE ticket_id = %(ticket_id)s AND tag_id = %(tag_id)s AND company_id = %(company_id)s

-- name: ticket_tags_clear
DELETE FROM ticket_tags WHERE ticket_id = %(ticket_id)s AND company_id = %(company_id)s

-- ─── message API ────────────────────────────────────────────────────────────────────────

-- name: ticket_accept_by_sender
UPDATE tickets SET status = 'open', user_id = %(user_id)s, updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s AND status = 'pending'
RETURNING id

-- name: whatsapp_by_token
SELECT id, company_id, name, status FROM whatsapps WHERE token = %(token)s

-- name: default_whatsapp
SELECT id FROM whatsapps WHERE company_id = %(company_id)s ORDER BY is_default DESC, id LIMIT 1

-- ─── tickets API ────────────────────────────────────────────────────────────────────────

-- name: tickets_page
-- One page of a ticket list as the API answers it (storage/ticket_lists.py builds the dynamic parts with pypika
-- from the list's filters, once per shape): the CTE `page` holds (id, last_message_at) of the page's
-- tickets and one more (it tells whether there is more), parameterised, from the ticket indexes alone;
-- only the page's tickets are joined and turned into JSON (tickets_json, schema version 2), as text that
-- the API passes on without decoding it; with where the page ends (the next cursor). The count is here for
-- a search (it counts the set the page was taken from, `matched`), else NULL and a statement of its own.
-- Placeholders: the CTEs, the page size, the count query.
WITH /*ctes*/,
shown AS (SELECT id, last_message_at FROM page ORDER BY last_message_at DESC, id DESC LIMIT /*limit*/)
SELECT coalesce((SELECT json_agg(j.json ORDER BY s.last_message_at DESC, s.id DESC)
                 FROM shown s JOIN tickets_json j ON j.id = s.id), '[]')::text AS tickets,
       (SELECT count(*) FROM page) AS fetched,
       (SELECT last_message_at FROM shown ORDER BY last_message_at, id LIMIT 1) AS last_at,
       (SELECT id FROM shown ORDER BY last_message_at, id LIMIT 1) AS last_id,
       (/*count*/) AS count

-- name: ticket_viewer
-- What a user may see of the tickets: their queues, and whether queue-less tickets too (all_ticket).
SELECT u.id, u.all_ticket,
       array(SELECT uq.queue_id FROM user_queues uq
             WHERE uq.user_id = u.id AND uq.company_id = u.company_id ORDER BY uq.queue_id) AS queue_ids
FROM users u
WHERE u.id = %(user_id)s AND u.company_id = %(company_id)s

-- name: ticket_for_change
-- The ticket an agent changes, as it is now, with its owner's name (for a 409 that names who has it). Not
-- locked: the change is written by ticket_set_assignment only if the ticket is still as read here.
SELECT t.*, u.name AS user_name
FROM tickets t LEFT JOIN users u ON u.id = t.user_id AND u.company_id = t.company_id
WHERE t.id = %(id)s AND t.company_id = %(company_id)s

-- name: ticket_other_active
-- The contact's active (pending or open) ticket on that connection, other than ticket `id` (0: any).
SELECT id FROM tickets
WHERE company_id = %(company_id)s AND contact_id = %(contact_id)s AND whatsapp_id = %(whatsapp_id)s
  AND status IN ('pending', 'open') AND id <> %(id)s

-- name: ticket_insert_by_agent
-- An agent starts a conversation: nothing is inserted when the contact already has an active ticket on
-- that connection (race-free on tickets_one_active_key).
INSERT INTO tickets (company_id, contact_id, whatsapp_id, queue_id, user_id, status, is_group)
VALUES (%(company_id)s, %(contact_id)s, %(whatsapp_id)s, %(queue_id)s, %(user_id)s, %(status)s, %(is_group)s)
ON CONFLICT (company_id, contact_id, whatsapp_id) WHERE status IN ('pending', 'open') DO NOTHING
RETURNING *

-- name: ticket_set_assignment
-- Apply a planned change only if the ticket is still as it was planned on (`from_*`): an accept writes
-- only while the ticket is pending, so of two agents accepting at once exactly one gets a row back; the
-- other gets none, writes nothing, and plans again on what is there now. No lock held in between.
UPDATE tickets SET status = %(status)s, user_id = %(user_id)s, queue_id = %(queue_id)s, updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
  AND status = %(from_status)s AND user_id IS NOT DISTINCT FROM %(from_user_id)s
  AND queue_id IS NOT DISTINCT FROM %(from_queue_id)s
RETURNING *

-- name: ticket_delete
DELETE FROM tickets WHERE id = %(id)s AND company_id = %(company_id)s RETURNING id

-- name: ticket_user_exists
SELECT id FROM users WHERE id = %(id)s AND company_id = %(company_id)s

-- name: ticket_queue_exists
SELECT id FROM queues WHERE id = %(id)s AND company_id = %(company_id)s

-- name: ticket_default_whatsapp
-- The connection a new ticket goes to when none is named (storage.tickets.default_whatsapp decides).
SELECT id, is_default, status = 'CONNECTED' AS connected FROM whatsapps WHERE company_id = %(company_id)s
ORDER BY status = 'CONNECTED' DESC, is_default DESC, id LIMIT 2

-- ─── intake fast path ───────────────────────────────────────────────────────────────────

-- name: message_intake_batch
-- message_intake_active for a whole group commit in one statement: the parameters are arrays, element k of
-- each describing message k. Same rules: the tickets are locked and must still be pending or open, each
-- message is stored once per (whatsapp_id, wid), the counters move only for what was stored — summed per
-- ticket, the last message by arrival (two chats of one contact, a phone number and a LID, can share a
-- ticket). A row per stored message, with `n` (its 1-based position in the arrays) and its ticket's new values
-- as ticket_*; a message without a row was a duplicate, or its ticket is no longer active.
WITH input AS (
    SELECT *
    FROM unnest(%(company_id)s::bigint[], %(whatsapp_id)s::bigint[], %(ticket_id)s::bigint[],
                %(contact_id)s::bigint[], %(wid)s::text[], %(from_me)s::boolean[], %(body)s::text[],
                %(media_type)s::text[], %(media_url)s::text[], %(media_name)s::text[], %(media_mimetype)s::text[],
                %(ack)s::smallint[], %(status)s::text[], %(quoted_wid)s::text[], %(participant)s::text[],
                %(wa_timestamp)s::timestamptz[], %(read)s::boolean[], %(sent_by_user_id)s::bigint[],
                %(unread)s::int[], %(last_message)s::text[], %(latitude)s::float8[], %(longitude)s::float8[])
         WITH ORDINALITY AS i(company_id, whatsapp_id, ticket_id, contact_id, wid, from_me, body, media_type,
                              media_url, media_name, media_mimetype, ack, status, quoted_wid, participant,
                              wa_timestamp, read, sent_by_user_id, unread, last_message, latitude, longitude, n)
), active AS (
    SELECT id, company_id FROM tickets
    WHERE (id, company_id) IN (SELECT ticket_id, company_id FROM input) AND status IN ('pending', 'open')
    ORDER BY id
    FOR UPDATE
), stored AS (
    INSERT INTO messages (company_id, whatsapp_id, ticket_id, contact_id, wid, from_me, body, media_type, media_url,
                          media_name, media_mimetype, ack, status, quoted_msg_id, participant, wa_timestamp, read,
                          sent_by_user_id, latitude, longitude)
    SELECT i.company_id, i.whatsapp_id, i.ticket_id, i.contact_id, i.wid, i.from_me, i.body, i.media_type,
           i.media_url, i.media_name, i.media_mimetype, i.ack, i.status,
           (SELECT m.id FROM messages m
            WHERE m.whatsapp_id = i.whatsapp_id AND m.wid = i.quoted_wid AND m.company_id = i.company_id),
           i.participant, i.wa_timestamp, i.read, i.sent_by_user_id, i.latitude, i.longitude
    FROM input i JOIN active ON active.id = i.ticket_id AND active.company_id = i.company_id
    ORDER BY i.n
    ON CONFLICT (whatsapp_id, wid) WHERE wid IS NOT NULL DO NOTHING
    RETURNING id, company_id, whatsapp_id, ticket_id, contact_id, wid, from_me, body, media_type, media_url,
              media_name, media_mimetype, ack, status, error, read, quoted_msg_id, participant, reaction, is_edited,
              is_deleted, sent_by_user_id, wa_timestamp, latitude, longitude, created_at, updated_at
), counted AS (
    SELECT i.ticket_id, sum(i.unread) AS unread, (array_agg(i.last_message ORDER BY i.n DESC))[1] AS last_message,
           max(i.wa_timestamp) AS at
    FROM stored s JOIN input i ON i.whatsapp_id = s.whatsapp_id AND i.wid = s.wid
    GROUP BY i.ticket_id
), ticket AS (
    UPDATE tickets t SET
        unread_messages = t.unread_messages + c.unread,
        last_message = c.last_message,
        last_message_at = greatest(t.last_message_at, c.at),
        updated_at = now()
    FROM counted c
    WHERE t.id = c.ticket_id
    RETURNING t.id, t.status, t.unread_messages, t.last_message, t.last_message_at, t.updated_at, t.queue_id,
              t.user_id
)
SELECT i.n, s.*, t.status AS ticket_status, t.unread_messages AS ticket_unread_messages,
       t.last_message AS ticket_last_message, t.last_message_at AS ticket_last_message_at,
       t.updated_at AS ticket_updated_at, t.queue_id AS ticket_queue_id, t.user_id AS ticket_user_id
FROM stored s
JOIN input i ON i.whatsapp_id = s.whatsapp_id AND i.wid = s.wid
JOIN ticket t ON t.id = s.ticket_id;

-- name: message_intake_active
-- One incoming message into the ticket its actor holds as active, in one statement (the group-commit writer
-- runs a flush's worth of them as one executemany). The ticket is locked and must still be pending or open
-- (a ticket closed meanwhile is never written to); the message is stored once per (whatsapp_id, wid); the
-- ticket's counters move only when it was stored. The row: the message, and the ticket's new values as
-- ticket_*. No row: a duplicate, or the ticket is no longer active (conversations.intake_write tells which).
WITH active AS (
    SELECT id FROM tickets
    WHERE id = %(ticket_id)s AND company_id = %(company_id)s AND status IN ('pending', 'open')
    FOR UPDATE
), stored AS (
    INSERT INTO messages (company_id, whatsapp_id, ticket_id, contact_id, wid, from_me, body, media_type, media_url,
                          media_name, media_mimetype, ack, status, quoted_msg_id, participant, wa_timestamp, read,
                          sent_by_user_id, latitude, longitude)
    SELECT %(company_id)s, %(whatsapp_id)s, active.id, %(contact_id)s, %(wid)s, %(from_me)s, %(body)s,
           %(media_type)s, %(media_url)s, %(media_name)s, %(media_mimetype)s, %(ack)s, %(status)s,
           (SELECT m.id FROM messages m
            WHERE m.whatsapp_id = %(whatsapp_id)s AND m.wid = %(quoted_wid)s AND m.company_id = %(company_id)s),
           %(participant)s, %(wa_timestamp)s, %(read)s, %(sent_by_user_id)s, %(latitude)s, %(longitude)s
    FROM active
    ON CONFLICT (whatsapp_id, wid) WHERE wid IS NOT NULL DO NOTHING
    -- every column but edit_history: a new message's is empty, and decoding its JSON would cost the most
    RETURNING id, company_id, whatsapp_id, ticket_id, contact_id, wid, from_me, body, media_type, media_url,
              media_name, media_mimetype, ack, status, error, read, quoted_msg_id, participant, reaction, is_edited,
              is_deleted, sent_by_user_id, wa_timestamp, latitude, longitude, created_at, updated_at
), ticket AS (
    -- the row is locked by `active`, so it is still pending or open here
    UPDATE tickets t SET
        unread_messages = t.unread_messages + %(unread)s,
        last_message = %(last_message)s,
        last_message_at = greatest(t.last_message_at, %(wa_timestamp)s),
        updated_at = now()
    FROM stored
    WHERE t.id = stored.ticket_id
    RETURNING t.status, t.unread_messages, t.last_message, t.last_message_at, t.updated_at, t.queue_id, t.user_id
)
SELECT stored.*, ticket.status AS ticket_status, ticket.unread_messages AS ticket_unread_messages,
       ticket.last_message AS ticket_last_message, ticket.last_message_at AS ticket_last_message_at,
       ticket.updated_at AS ticket_updated_at, ticket.queue_id AS ticket_queue_id, ticket.user_id AS ticket_user_id
FROM stored CROSS JOIN ticket

-- ─── announcements (the super admin's notices to every company) ─────────────────────────
-- `everything`: the caller is a super admin, who also sees the drafts (status false).

-- name: announcement_insert
INSERT INTO announcements (company_id, priority, title, text, status)
VALUES (%(company_id)s, %(priority)s, %(title)s, %(text)s, %(status)s)
RETURNING *

-- name: announcement_get
SELECT * FROM announcements WHERE id = %(id)s AND (%(everything)s OR status)

-- name: announcement_page
SELECT *, count(*) OVER () AS total
FROM announcements
WHERE (%(everything)s OR status) AND (%(search)s::text IS NULL OR title ILIKE %(search)s)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s

-- name: announcement_count
SELECT count(*) AS n FROM announcements
WHERE (%(everything)s OR status) AND (%(search)s::text IS NULL OR title ILIKE %(search)s)

-- name: announcement_list
SELECT a.*, CASE WHEN c.id IS NULL THEN NULL ELSE json_build_object('id', c.id, 'name', c.name) END AS company
FROM announcements a LEFT JOIN companies c ON c.id = a.company_id
WHERE (%(everything)s OR a.status) AND (%(company_id)s::bigint IS NULL OR a.company_id = %(company_id)s)
ORDER BY a.created_at DESC, a.id DESC
LIMIT %(limit)s

-- name: announcement_update
UPDATE announcements SET
    priority = coalesce(%(priority)s, priority),
    title = coalesce(%(title)s, title),
    text = coalesce(%(text)s, text),
    status = coalesce(%(status)s, status),
    updated_at = now()
WHERE id = %(id)s
RETURNING *

-- name: announcement_set_media
-- the new file (or none), and the one it replaces (to be removed once this is committed)
WITH old AS (SELECT id, media_path FROM announcements WHERE id = %(id)s FOR UPDATE)
UPDATE announcements a SET media_path = %(media_path)s, media_name = %(media_name)s, updated_at = now()
FROM old WHERE a.id = old.id
RETURNING a.*, old.media_path AS replaced_media_path

-- name: announcement_delete
DELETE FROM announcements WHERE id = %(id)s RETURNING id, media_path

-- ─── helps (the super admin's help videos for every company) ─────────────────────────────

-- name: help_insert
INSERT INTO helps (title, description, video, link)
VALUES (%(title)s, %(description)s, %(video)s, %(link)s)
RETURNING *

-- name: help_get
SELECT * FROM helps WHERE id = %(id)s

-- name: help_page
SELECT *, count(*) OVER () AS total
FROM helps
WHERE %(search)s::text IS NULL OR title ILIKE %(search)s
ORDER BY lower(title), id
LIMIT %(limit)s OFFSET %(offset)s

-- name: help_count
SELECT count(*) AS n FROM helps WHERE %(search)s::text IS NULL OR title ILIKE %(search)s

-- name: help_all
SELECT * FROM helps ORDER BY lower(title), id LIMIT %(limit)s

-- name: help_update
UPDATE helps SET
    title = coalesce(%(title)s, title),
    description = coalesce(%(description)s, description),
    video = coalesce(%(video)s, video),
    link = coalesce(%(link)s, link),
    updated_at = now()
WHERE id = %(id)s
RETURNING *

-- name: help_delete
DELETE FROM helps WHERE id = %(id)s

-- ─── internal chat (the agents of one company; never sent to WhatsApp) ──────────────────

-- name: chat_access
-- A chat of the company by id or uuid, and whether the user takes part in it.
SELECT c.id, c.owner_id,
       EXISTS (SELECT 1 FROM chat_users cu WHERE cu.chat_id = c.id AND cu.user_id = %(user_id)s) AS joined
FROM chats c
WHERE c.company_id = %(company_id)s AND (c.id = %(id)s::bigint OR c.uuid = %(uuid)s::uuid)

-- name: chat_show
-- One chat as ticketz shows it: its owner, and its participants each with their user and unread count.
SELECT c.id, c.uuid, c.title, c.owner_id, c.last_message, c.company_id, c.created_at, c.updated_at,
       json_build_object('id', o.id, 'name', o.name) AS owner,
       coalesce((SELECT json_agg(json_build_object(
                            'id', cu.id, 'chatId', cu.chat_id, 'userId', cu.user_id, 'unreads', cu.unreads,
                            'createdAt', cu.created_at, 'updatedAt', cu.updated_at,
                            'user', json_build_object('id', u.id, 'name', u.name)) ORDER BY cu.id)
                 FROM chat_users cu JOIN users u ON u.id = cu.user_id
                 WHERE cu.chat_id = c.id), '[]'::json) AS users
FROM chats c JOIN users o ON o.id = c.owner_id
WHERE c.id = %(id)s AND c.company_id = %(company_id)s

-- name: chat_page
-- The chats a user takes part in, latest message first (an index range of chat_users_list_idx).
SELECT c.id, c.uuid, c.title, c.owner_id, c.last_message, c.company_id, c.created_at, c.updated_at,
       json_build_object('id', o.id, 'name', o.name) AS owner,
       coalesce((SELECT json_agg(json_build_object(
                            'id', cu.id, 'chatId', cu.chat_id, 'userId', cu.user_id, 'unreads', cu.unreads,
                            'createdAt', cu.created_at, 'updatedAt', cu.updated_at,
                            'user', json_build_object('id', u.id, 'name', u.name)) ORDER BY cu.id)
                 FROM chat_users cu JOIN users u ON u.id = cu.user_id
                 WHERE cu.chat_id = c.id), '[]'::json) AS users,
       count(*) OVER () AS total
FROM chat_users me
JOIN chats c ON c.id = me.chat_id AND c.company_id = me.company_id
JOIN users o ON o.id = c.owner_id
WHERE me.user_id = %(user_id)s AND me.company_id = %(company_id)s
ORDER BY me.last_message_at DESC, me.chat_id DESC
LIMIT %(limit)s OFFSET %(offset)s

-- name: chat_count
SELECT count(*) AS n FROM chat_users WHERE user_id = %(user_id)s AND company_id = %(company_id)s

-- name: chat_company_users
-- Which of these ids are users of the company (the others cannot take part).
SELECT id FROM users WHERE company_id = %(company_id)s AND id = ANY(%(user_ids)s)

-- name: chat_insert
INSERT INTO chats (company_id, owner_id, title) VALUES (%(company_id)s, %(owner_id)s, %(title)s)
RETURNING id

-- name: chat_update_title
UPDATE chats SET title = coalesce(%(title)s, title), updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING id, owner_id

-- name: chat_users_remove_others
-- Participants no longer listed leave (their unread counts go with them); who left.
DELETE FROM chat_users
WHERE chat_id = %(chat_id)s AND company_id = %(company_id)s AND user_id <> ALL(%(user_ids)s)
RETURNING user_id

-- name: chat_users_add
-- New participants join (those already in keep their unread counts); users of another company never do.
INSERT INTO chat_users (company_id, chat_id, user_id, last_message_at)
SELECT c.company_id, c.id, u.id, coalesce(c.last_message_at, now())
FROM chats c JOIN users u ON u.company_id = c.company_id AND u.id = ANY(%(user_ids)s)
WHERE c.id = %(chat_id)s AND c.company_id = %(company_id)s
ON CONFLICT (chat_id, user_id) DO NOTHING

-- name: chat_participants
SELECT user_id FROM chat_users WHERE chat_id = %(chat_id)s AND company_id = %(company_id)s ORDER BY user_id

-- name: chat_media
SELECT media_url FROM chat_messages
WHERE chat_id = %(chat_id)s AND company_id = %(company_id)s AND media_url IS NOT NULL

-- name: chat_delete
DELETE FROM chats WHERE id = %(id)s AND company_id = %(company_id)s RETURNING id

-- name: chat_touch
-- A message is coming: the chat's last message, if the sender takes part in it. Taken first, so that
-- concurrent messages of one chat queue on its row: its last message is the one with the highest id.
UPDATE chats c SET
    last_message = left((SELECT u.name FROM users u WHERE u.id = %(sender_id)s AND u.company_id = c.company_id)
                         || ': ' || %(text)s, 600),
    last_message_at = now(), updated_at = now()
WHERE c.id = %(chat_id)s AND c.company_id = %(company_id)s
  AND EXISTS (SELECT 1 FROM chat_users cu WHERE cu.chat_id = c.id AND cu.user_id = %(sender_id)s)
RETURNING c.id

-- name: chat_message_insert
WITH m AS (
    INSERT INTO chat_messages (company_id, chat_id, sender_id, message, media_url, media_type, media_name)
    VALUES (%(company_id)s, %(chat_id)s, %(sender_id)s, %(message)s, %(media_url)s, %(media_type)s,
            %(media_name)s)
    RETURNING *
)
SELECT m.*, json_build_object('id', u.id, 'name', u.name) AS sender FROM m JOIN users u ON u.id = m.sender_id

-- name: chat_users_count_message
-- Everyone but the sender has `count` more unread messages; the sender has read the chat.
UPDATE chat_users SET
    unreads = CASE WHEN user_id = %(sender_id)s THEN 0 ELSE unreads + %(count)s END,
    last_message_at = now(), updated_at = now()
WHERE chat_id = %(chat_id)s AND company_id = %(company_id)s

-- name: chat_read
UPDATE chat_users SET unreads = 0, updated_at = now()
WHERE chat_id = %(chat_id)s AND user_id = %(user_id)s AND company_id = %(company_id)s
RETURNING id

-- name: chat_message_page
-- A page of a chat's messages, newest first (the API shows each page oldest first).
SELECT m.*, json_build_object('id', u.id, 'name', u.name) AS sender, count(*) OVER () AS total
FROM chat_messages m JOIN users u ON u.id = m.sender_id
WHERE m.chat_id = %(chat_id)s AND m.company_id = %(company_id)s
ORDER BY m.id DESC
LIMIT %(limit)s OFFSET %(offset)s

-- name: chat_message_count
SELECT count(*) AS n FROM chat_messages WHERE chat_id = %(chat_id)s AND company_id = %(company_id)s

-- ─── file lists (the SaaS lineage's /files: named lists of uploaded files) ───────────────

-- name: file_page
-- A page of the company's file lists by name; `search` an ILIKE pattern on the name.
SELECT f.*, count(*) OVER () AS total
FROM files f
WHERE f.company_id = %(company_id)s AND (%(search)s::text IS NULL OR f.name ILIKE %(search)s)
ORDER BY lower(f.name), f.id
LIMIT %(limit)s OFFSET %(offset)s

-- name: file_count
SELECT count(*) AS n FROM files
WHERE company_id = %(company_id)s AND (%(search)s::text IS NULL OR name ILIKE %(search)s)

-- name: file_all
SELECT f.* FROM files f
WHERE f.company_id = %(company_id)s AND (%(search)s::text IS NULL OR f.name ILIKE %(search)s)
ORDER BY lower(f.name), f.id
LIMIT %(limit)s

-- name: file_show
-- One file list with its options (rows as JSON, in the order the form sent them).
SELECT f.*,
       coalesce((SELECT json_agg(o ORDER BY o.position, o.id) FROM files_options o WHERE o.file_id = f.id),
                '[]'::json) AS options
FROM files f
WHERE f.id = %(id)s AND f.company_id = %(company_id)s

-- name: file_lock
SELECT id FROM files WHERE id = %(id)s AND company_id = %(company_id)s FOR UPDATE

-- name: file_insert
INSERT INTO files (company_id, name, message) VALUES (%(company_id)s, %(name)s, %(message)s)
RETURNING id

-- name: file_update
UPDATE files SET name = coalesce(%(name)s, name), message = coalesce(%(message)s, message), updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s

-- name: file_delete
DELETE FROM files WHERE id = %(id)s AND company_id = %(company_id)s

-- name: file_delete_all
DELETE FROM files WHERE company_id = %(company_id)s

-- name: file_lock_company
SELECT id FROM files WHERE company_id = %(company_id)s FOR UPDATE

-- name: file_media_of_company
-- The stored files of every option of the company's lists (to remove once the lists are gone).
SELECT o.media_url FROM files_options o JOIN files f ON f.id = o.file_id
WHERE f.company_id = %(company_id)s AND o.media_url IS NOT NULL

-- name: file_option_ids
SELECT id, media_url FROM files_options WHERE file_id = %(file_id)s FOR UPDATE

-- name: file_option_insert
INSERT INTO files_options (file_id, position, name) VALUES (%(file_id)s, %(position)s, %(name)s)

-- name: file_option_rename
UPDATE files_options SET name = %(name)s, position = %(position)s, updated_at = now()
WHERE id = %(id)s AND file_id = %(file_id)s

-- name: file_option_delete
DELETE FROM files_options WHERE id = %(id)s AND file_id = %(file_id)s

-- name: file_option_set_media
-- The option's new file; the row carries `replaced_media_url`, the file it no longer uses.
WITH old AS (SELECT id, media_url FROM files_options WHERE id = %(id)s AND file_id = %(file_id)s FOR UPDATE)
UPDATE files_options o SET path = %(path)s, media_type = %(media_type)s, media_url = %(media_url)s,
                           name = coalesce(%(name)s, o.name), updated_at = now()
FROM old WHERE o.id = old.id
RETURNING o.id, old.media_url AS replaced_media_url
-- ─── plans, subscriptions, invoices ─────────────────────────────────────────────────────

-- name: plan_insert
INSERT INTO plans (name, users, connections, queues, value, recurrence, is_public, use_campaigns, use_schedules,
                   use_internal_chat, use_external_api, use_kanban, use_open_ai, use_integrations)
VALUES (%(name)s, %(users)s, %(connections)s, %(queues)s, %(value)s, %(recurrence)s, %(is_public)s,
        %(use_campaigns)s, %(use_schedules)s, %(use_internal_chat)s, %(use_external_api)s, %(use_kanban)s,
        %(use_open_ai)s, %(use_integrations)s)
RETURNING *

-- name: plan_ensure_default
-- The default plan, should an installation have none (the schema creates it; it cannot be deleted).
INSERT INTO plans (name, is_default) SELECT 'Unlimited', true WHERE NOT EXISTS (SELECT 1 FROM plans WHERE is_default)
ON CONFLICT DO NOTHING

-- name: plan_get
SELECT * FROM plans WHERE id = %(id)s

-- name: plan_list
SELECT *, count(*) OVER () AS total FROM plans
WHERE %(search)s::text IS NULL OR name ILIKE %(search)s
ORDER BY name, id
LIMIT %(limit)s OFFSET %(offset)s

-- name: plan_count_search
SELECT count(*) AS n FROM plans WHERE %(search)s::text IS NULL OR name ILIKE %(search)s

-- name: plan_all
SELECT * FROM plans WHERE is_public OR NOT %(public_only)s ORDER BY name, id LIMIT 1000

-- name: plan_update
UPDATE plans SET
    name = coalesce(%(name)s, name),
    users = coalesce(%(users)s, users),
    connections = coalesce(%(connections)s, connections),
    queues = coalesce(%(queues)s, queues),
    value = coalesce(%(value)s, value),
    recurrence = coalesce(%(recurrence)s, recurrence),
    is_public = coalesce(%(is_public)s, is_public),
    use_campaigns = coalesce(%(use_campaigns)s, use_campaigns),
    use_schedules = coalesce(%(use_schedules)s, use_schedules),
    use_internal_chat = coalesce(%(use_internal_chat)s, use_internal_chat),
    use_external_api = coalesce(%(use_external_api)s, use_external_api),
    use_kanban = coalesce(%(use_kanban)s, use_kanban),
    use_open_ai = coalesce(%(use_open_ai)s, use_open_ai),
    use_integrations = coalesce(%(use_integrations)s, use_integrations),
    updated_at = now()
WHERE id = %(id)s
RETURNING *

-- name: plan_delete
DELETE FROM plans WHERE id = %(id)s AND NOT is_default

-- name: company_limits_lock
-- A company's caps (0: none), its row locked until the transaction ends: creations of one company's users,
-- connections or queues take turns, so two at once cannot both pass the count. NO KEY UPDATE: the foreign
-- keys of the company's other writes (messages, tickets) still go through meanwhile. `connectionLimit`,
-- when set (not 0), is the super admin's override of the plan's connections for this one company.
SELECT p.users, p.queues,
       coalesce(nullif((SELECT CASE WHEN s.value ~ '^[0-9]+$' AND length(s.value) <= 9 THEN s.value::int END
                        FROM settings s WHERE s.company_id = c.id AND s.key = 'connectionLimit'), 0),
                p.connections) AS connections
FROM companies c JOIN plans p ON p.id = c.plan_id
WHERE c.id = %(company_id)s
FOR NO KEY UPDATE OF c

-- name: company_users_count
SELECT count(*) AS n FROM users WHERE company_id = %(company_id)s

-- name: company_queues_count
SELECT count(*) AS n FROM queues WHERE company_id = %(company_id)s

-- name: company_access
-- What every request of a company is checked against: its due date (with the installation's grace, in
-- days) and its plan's features.
SELECT c.id, c.status, c.due_date, p.use_campaigns, p.use_schedules, p.use_internal_chat, p.use_external_api,
       p.use_kanban, p.use_open_ai, p.use_integrations,
       coalesce((SELECT CASE WHEN value ~ '^[0-9]+$' AND length(value) <= 5 THEN value::int END
                 FROM platform_settings WHERE key = 'gracePeriod'), 0) AS grace_days
FROM companies c JOIN plans p ON p.id = c.plan_id
WHERE c.id = %(id)s

-- name: invoice_list
SELECT *, count(*) OVER () AS total FROM invoices
WHERE (%(company_id)s::bigint IS NULL OR company_id = %(company_id)s)
  AND (%(search)s::text IS NULL OR detail ILIKE %(search)s)
ORDER BY id
LIMIT %(limit)s OFFSET %(offset)s

-- name: invoice_count_search
SELECT count(*) AS n FROM invoices
WHERE (%(company_id)s::bigint IS NULL OR company_id = %(company_id)s)
  AND (%(search)s::text IS NULL OR detail ILIKE %(search)s)

-- name: invoice_get
SELECT * FROM invoices WHERE id = %(id)s AND (%(company_id)s::bigint IS NULL OR company_id = %(company_id)s)

-- name: invoice_lock
SELECT * FROM invoices WHERE id = %(id)s FOR UPDATE

-- name: invoice_set_status
UPDATE invoices SET status = %(status)s,
    paid_at = CASE WHEN %(status)s = 'paid' THEN now() ELSE NULL END,
    updated_at = now()
WHERE id = %(id)s
RETURNING *

-- name: company_extend_due_date
-- An invoice paid: the company's due date moves to the invoice's plus the recurrence (never back).
UPDATE companies SET
    due_date = greatest(due_date, (%(from)s::date + make_interval(months => CASE recurrence
        WHEN 'BIMESTRAL' THEN 2 WHEN 'TRIMESTRAL' THEN 3 WHEN 'SEMESTRAL' THEN 6 WHEN 'ANUAL' THEN 12
        ELSE 1 END))::date),
    updated_at = now()
WHERE id = %(company_id)s
RETURNING due_date

-- name: invoices_create_due
-- The daily sweep: an invoice for every active company whose due date is within `days_ahead` days (or
-- past), from its plan's name and value; one per due date, so running it again adds nothing. Free plans
-- (value 0) get none.
INSERT INTO invoices (company_id, detail, value, due_date)
SELECT c.id, p.name, p.value, c.due_date
FROM companies c JOIN plans p ON p.id = c.plan_id
WHERE c.due_date IS NOT NULL AND c.status AND p.value > 0 AND c.due_date <= current_date + %(days_ahead)s::int
ON CONFLICT (company_id, due_date) DO NOTHING
RETURNING id, company_id

-- ─── ratings (the contacts' CSAT answers, the family's UserRatings) ─────────────────────

-- name: rating_page
-- A page of a company's ratings, newest first, with the ticket (its queue now), the contact and the agent;
-- `total` and `average` are over every rating matching the filters.
SELECT r.*,
       CASE WHEN u.id IS NULL THEN NULL ELSE json_build_object('id', u.id, 'name', u.name) END AS "user",
       json_build_object('id', t.id, 'uuid', t.uuid, 'status', t.status, 'queueId', t.queue_id,
                         'whatsappId', t.whatsapp_id,
                         'contact', json_build_object('id', c.id, 'name', c.name, 'number', c.number)) AS ticket,
       CASE WHEN q.id IS NULL THEN NULL ELSE json_build_object('id', q.id, 'name', q.name, 'color', q.color) END
           AS queue,
       count(*) OVER () AS total, avg(r.rate) OVER () AS average
FROM user_ratings r
JOIN tickets t ON t.id = r.ticket_id AND t.company_id = r.company_id
JOIN contacts c ON c.id = t.contact_id AND c.company_id = t.company_id
LEFT JOIN users u ON u.id = r.user_id AND u.company_id = r.company_id
LEFT JOIN queues q ON q.id = t.queue_id AND q.company_id = t.company_id
WHERE r.company_id = %(company_id)s
  AND (%(user_id)s::bigint IS NULL OR r.user_id = %(user_id)s)
  AND (%(queue_id)s::bigint IS NULL OR t.queue_id = %(queue_id)s)
  AND (%(rate)s::int IS NULL OR r.rate = %(rate)s)
  AND (%(since)s::timestamptz IS NULL OR r.created_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR r.created_at < %(until)s)
ORDER BY r.created_at DESC, r.id DESC
LIMIT %(limit)s OFFSET %(offset)s

-- name: rating_count
-- rating_page's totals, for a page past the end.
SELECT count(*) AS total, avg(r.rate) AS average
FROM user_ratings r JOIN tickets t ON t.id = r.ticket_id AND t.company_id = r.company_id
WHERE r.company_id = %(company_id)s
  AND (%(user_id)s::bigint IS NULL OR r.user_id = %(user_id)s)
  AND (%(queue_id)s::bigint IS NULL OR t.queue_id = %(queue_id)s)
  AND (%(rate)s::int IS NULL OR r.rate = %(rate)s)
  AND (%(since)s::timestamptz IS NULL OR r.created_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR r.created_at < %(until)s)
