-- Quick messages (storage/quick_messages.py; the table: schema.sql and migrations/0017_quick_messages_notes.sql).
-- Every statement is scoped by company. `everything`: every message of the company; otherwise the caller's
-- own and the global ones. `search` is a LIKE pattern matched on the shortcode and the message without
-- accents or case (search_fold, migration 0008), or null; `owner` narrows to one user's messages, or null.

-- name: quick_message_page
SELECT qm.*, count(*) OVER () AS total
FROM quick_messages qm
WHERE qm.company_id = %(company_id)s
  AND (%(everything)s OR qm.user_id = %(user_id)s OR qm.is_global)
  AND (%(owner)s::bigint IS NULL OR qm.user_id = %(owner)s::bigint)
  AND (%(search)s::text IS NULL OR search_fold(qm.shortcode) LIKE search_fold(%(search)s::text)
       OR search_fold(qm.message) LIKE search_fold(%(search)s::text))
ORDER BY lower(qm.shortcode), qm.id
LIMIT %(limit)s OFFSET %(offset)s

-- name: quick_message_count
SELECT count(*) AS n
FROM quick_messages qm
WHERE qm.company_id = %(company_id)s
  AND (%(everything)s OR qm.user_id = %(user_id)s OR qm.is_global)
  AND (%(owner)s::bigint IS NULL OR qm.user_id = %(owner)s::bigint)
  AND (%(search)s::text IS NULL OR search_fold(qm.shortcode) LIKE search_fold(%(search)s::text)
       OR search_fold(qm.message) LIKE search_fold(%(search)s::text))

-- name: quick_message_show
SELECT * FROM quick_messages WHERE id = %(id)s AND company_id = %(company_id)s

-- name: quick_message_insert
INSERT INTO quick_messages (company_id, user_id, shortcode, message, is_global)
VALUES (%(company_id)s, %(user_id)s, %(shortcode)s, %(message)s, %(is_global)s)
RETURNING *

-- name: quick_message_update
-- The fields given (null: unchanged); the author stays who they are, whoever edits.
UPDATE quick_messages SET
    shortcode = coalesce(%(shortcode)s, shortcode),
    message = coalesce(%(message)s, message),
    is_global = coalesce(%(is_global)s, is_global),
    updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING *

-- name: quick_message_delete
DELETE FROM quick_messages WHERE id = %(id)s AND company_id = %(company_id)s RETURNING media_path

-- name: quick_message_set_media
-- A message's file (or none), and the one it replaces (to be removed once this is committed).
WITH old AS (SELECT id, media_path FROM quick_messages
             WHERE id = %(id)s AND company_id = %(company_id)s FOR NO KEY UPDATE)
UPDATE quick_messages qm SET media_path = %(media_path)s, media_name = %(media_name)s, updated_at = now()
FROM old WHERE qm.id = old.id
RETURNING qm.*, old.media_path AS replaced_media_path

-- name: message_variables
-- What the variables of an agent's message are made of (actors/automation/render.py `variables`): the
-- ticket's contact, its custom fields and queue, the sender's name (else the ticket's agent's) and the
-- company's time zone (null: the setting's default).
SELECT c.name AS contact_name, c.email AS contact_email, c.number AS contact_number, q.name AS queue_name,
       coalesce((SELECT u.name FROM users u WHERE u.id = %(user_id)s AND u.company_id = t.company_id), tu.name)
           AS user_name,
       (SELECT s.value FROM settings s WHERE s.company_id = t.company_id AND s.key = 'timezone') AS timezone,
       coalesce((SELECT json_object_agg(f.name, f.value) FROM contact_custom_fields f
                 WHERE f.contact_id = t.contact_id AND f.company_id = t.company_id), '{}'::json) AS custom_fields
FROM tickets t
JOIN contacts c ON c.id = t.contact_id
LEFT JOIN queues q ON q.id = t.queue_id
LEFT JOIN users tu ON tu.id = t.user_id
WHERE t.id = %(ticket_id)s AND t.company_id = %(company_id)s
