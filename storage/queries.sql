-- Named queries of zapgate. Each block starts with `-- name: <name>`; parameters are %(name)s.
-- Every query on tenant data is scoped by company_id.

-- ─── companies ──────────────────────────────────────────────────────────────────────────

-- name: company_insert
INSERT INTO companies (name, email, phone, document, status, due_date)
VALUES (%(name)s, %(email)s, %(phone)s, %(document)s, %(status)s, %(due_date)s)
RETURNING *

-- name: company_get
SELECT * FROM companies WHERE id = %(id)s

-- name: company_list
SELECT *, count(*) OVER () AS total
FROM companies
WHERE %(search)s::text IS NULL OR name ILIKE %(search)s OR email ILIKE %(search)s
ORDER BY name, id
LIMIT %(limit)s OFFSET %(offset)s

-- name: company_update
UPDATE companies SET
    name = coalesce(%(name)s, name),
    email = coalesce(%(email)s, email),
    phone = coalesce(%(phone)s, phone),
    document = coalesce(%(document)s, document),
    status = coalesce(%(status)s, status),
    due_date = CASE WHEN %(set_due_date)s THEN %(due_date)s ELSE due_date END,
    updated_at = now()
WHERE id = %(id)s
RETURNING *

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
       u.created_at, u.updated_at,
       json_build_object('id', c.id, 'name', c.name, 'status', c.status, 'dueDate', c.due_date) AS company,
       coalesce((SELECT json_agg(json_build_object('id', q.id, 'name', q.name, 'color', q.color)
                                 ORDER BY q.order_queue NULLS LAST, q.name)
                 FROM user_queues uq JOIN queues q ON q.id = uq.queue_id
                 WHERE uq.user_id = u.id AND q.company_id = u.company_id), '[]'::json) AS queues
FROM users u JOIN companies c ON c.id = u.company_id
WHERE u.id = %(id)s AND u.company_id = %(company_id)s

-- name: user_list
SELECT u.id, u.name, u.email, u.profile, u.company_id, u.super, u.all_ticket, u.online, u.whatsapp_id,
       u.created_at, u.updated_at,
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
UPDATE auth_sessions SET revoked_at = now(), revoked_reason = %(reason)s
WHERE user_id = %(user_id)s AND revoked_at IS NULL

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

-- ─── whatsapp connections ───────────────────────────────────────────────────────────────

-- name: whatsapp_insert
INSERT INTO whatsapps (company_id, name, channel, is_default, greeting_message, farewell_message,
                       complation_message, out_of_hours_message, token)
VALUES (%(company_id)s, %(name)s, %(channel)s, %(is_default)s, %(greeting_message)s, %(farewell_message)s,
        %(complation_message)s, %(out_of_hours_message)s, %(token)s)
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
