-- Scheduled messages (storage/schedules.py). Every statement is scoped by company.

-- name: schedule_page
-- A page of the company's schedules, newest first (ticketz's order), with their contact and user, and the
-- count of all that match (`total`). `search`: an ILIKE pattern on the body or the contact's name.
SELECT s.*,
       json_build_object('id', c.id, 'name', c.name, 'number', c.number) AS contact,
       CASE WHEN u.id IS NULL THEN NULL ELSE json_build_object('id', u.id, 'name', u.name) END AS "user",
       count(*) OVER () AS total
FROM schedules s
JOIN contacts c ON c.id = s.contact_id AND c.company_id = s.company_id
LEFT JOIN users u ON u.id = s.user_id AND u.company_id = s.company_id
WHERE s.company_id = %(company_id)s
  AND (%(contact_id)s::bigint IS NULL OR s.contact_id = %(contact_id)s)
  AND (%(user_id)s::bigint IS NULL OR s.user_id = %(user_id)s)
  AND (%(search)s::text IS NULL OR s.body ILIKE %(search)s OR c.name ILIKE %(search)s)
ORDER BY s.created_at DESC, s.id DESC
LIMIT %(limit)s OFFSET %(offset)s

-- name: schedule_count
SELECT count(*) FROM schedules s
JOIN contacts c ON c.id = s.contact_id AND c.company_id = s.company_id
WHERE s.company_id = %(company_id)s
  AND (%(contact_id)s::bigint IS NULL OR s.contact_id = %(contact_id)s)
  AND (%(user_id)s::bigint IS NULL OR s.user_id = %(user_id)s)
  AND (%(search)s::text IS NULL OR s.body ILIKE %(search)s OR c.name ILIKE %(search)s)

-- name: schedule_show
SELECT s.*,
       json_build_object('id', c.id, 'name', c.name, 'number', c.number) AS contact,
       CASE WHEN u.id IS NULL THEN NULL ELSE json_build_object('id', u.id, 'name', u.name) END AS "user"
FROM schedules s
JOIN contacts c ON c.id = s.contact_id AND c.company_id = s.company_id
LEFT JOIN users u ON u.id = s.user_id AND u.company_id = s.company_id
WHERE s.id = %(id)s AND s.company_id = %(company_id)s

-- name: schedule_lock
SELECT * FROM schedules WHERE id = %(id)s AND company_id = %(company_id)s FOR UPDATE

-- name: schedule_active_count
SELECT count(*) AS active FROM schedules WHERE company_id = %(company_id)s AND status IN ('PENDENTE', 'AGENDADA')

-- name: schedule_insert
INSERT INTO schedules (company_id, contact_id, user_id, whatsapp_id, body, send_at, status, save_message, open_ticket,
                       media_path, media_name, recurrence, recurrence_every, cron, recurrence_count,
                       recurrence_until, skip_to_business_day, anchor_at, nominal_at)
VALUES (%(company_id)s, %(contact_id)s, %(user_id)s, %(whatsapp_id)s, %(body)s, %(send_at)s, 'PENDENTE',
        %(save_message)s, %(open_ticket)s, %(media_path)s, %(media_name)s, %(recurrence)s, %(recurrence_every)s,
        %(cron)s, %(recurrence_count)s, %(recurrence_until)s, %(skip_to_business_day)s, %(anchor_at)s,
        %(nominal_at)s)
RETURNING *

-- name: schedule_armed
-- Its timer is set for `send_at`: AGENDADA, from any state (a PUT that reschedules retries an ERRO).
UPDATE schedules SET status = 'AGENDADA', send_at = %(send_at)s, nominal_at = %(nominal_at)s, last_error = NULL,
                     updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING *

-- name: schedule_sent
-- One occurrence written to the outbox: ENVIADA, counted; `send_at`/`nominal_at` the next occurrence's when
-- there is one (its timer set in the same transaction), else the occurrence just sent.
UPDATE schedules SET status = 'ENVIADA', sent_at = %(sent_at)s, sent_count = sent_count + 1,
                     ticket_id = %(ticket_id)s, whatsapp_id = %(whatsapp_id)s, last_error = NULL,
                     send_at = %(send_at)s, nominal_at = %(nominal_at)s, updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING *

-- name: schedule_rearmed
-- After a recurring one's send was announced as ENVIADA: AGENDADA again for its next occurrence, if nothing
-- changed it meanwhile (still ENVIADA for that occurrence, its timer live).
UPDATE schedules s SET status = 'AGENDADA', updated_at = now()
WHERE s.id = %(id)s AND s.company_id = %(company_id)s AND s.status = 'ENVIADA' AND s.send_at = %(send_at)s
  AND EXISTS (SELECT 1 FROM timers t WHERE t.company_id = s.company_id AND t.kind = 'schedule'
                                       AND t.key = 'schedule:' || s.id AND t.state IN ('pending', 'claimed'))
RETURNING id

-- name: schedule_failed
UPDATE schedules SET status = 'ERRO', last_error = %(error)s, updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING *

-- name: schedule_delete
DELETE FROM schedules WHERE id = %(id)s AND company_id = %(company_id)s RETURNING *

-- name: schedule_set_media
-- The schedule's file; the one it replaces is answered (`replaced`) for the caller to remove once committed.
UPDATE schedules s SET media_path = %(media_path)s, media_name = %(media_name)s, updated_at = now()
FROM (SELECT id, media_path FROM schedules WHERE id = %(id)s AND company_id = %(company_id)s FOR UPDATE) old
WHERE s.id = old.id
RETURNING s.*, old.media_path AS replaced

-- name: schedule_calendar
-- What a company's recurrences are computed with: its zone (setting `timezone`) and its business hours.
SELECT (SELECT value FROM settings WHERE company_id = %(company_id)s AND key = 'timezone') AS timezone,
       (SELECT schedules FROM companies WHERE id = %(company_id)s) AS hours

-- name: schedule_contact
SELECT id, name, number, lid, is_group FROM contacts WHERE id = %(id)s AND company_id = %(company_id)s

-- name: schedule_whatsapp
SELECT id, status FROM whatsapps WHERE id = %(id)s AND company_id = %(company_id)s

-- name: schedule_default_whatsapp
-- The connection of a schedule that names none: the company's default, else the one of the contact's last
-- ticket, else the company's oldest.
SELECT w.id FROM whatsapps w
WHERE w.company_id = %(company_id)s
ORDER BY w.is_default DESC,
         (w.id = (SELECT t.whatsapp_id FROM tickets t WHERE t.company_id = %(company_id)s
                  AND t.contact_id = %(contact_id)s ORDER BY t.updated_at DESC, t.id DESC LIMIT 1)) DESC NULLS LAST,
         w.id
LIMIT 1

-- name: schedule_active_ticket
SELECT id FROM tickets
WHERE company_id = %(company_id)s AND contact_id = %(contact_id)s AND whatsapp_id = %(whatsapp_id)s
  AND status IN ('pending', 'open')
ORDER BY id DESC LIMIT 1

-- name: schedule_ticket_insert
-- A ticket for a scheduled message when the contact has no active one on the connection: open for the
-- schedule's user (openTicket), pending (saveMessage), else closed. An active one that appeared meanwhile
-- is taken instead (tickets_one_active_key).
INSERT INTO tickets (company_id, contact_id, whatsapp_id, user_id, status, is_group)
VALUES (%(company_id)s, %(contact_id)s, %(whatsapp_id)s, %(user_id)s, %(status)s, %(is_group)s)
ON CONFLICT (company_id, contact_id, whatsapp_id) WHERE status IN ('pending', 'open')
DO UPDATE SET updated_at = tickets.updated_at
RETURNING id, status, user_id, queue_id, whatsapp_id, company_id, (xmax = 0) AS inserted

-- name: schedule_ticket_event
INSERT INTO ticket_events (company_id, ticket_id, kind, user_id, queue_id, whatsapp_id)
VALUES (%(company_id)s, %(ticket_id)s, %(kind)s, %(user_id)s, %(queue_id)s, %(whatsapp_id)s)

-- name: schedule_user_name
SELECT name FROM users WHERE id = %(id)s AND company_id = %(company_id)s
