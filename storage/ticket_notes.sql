-- Ticket notes (storage/ticket_notes.py; the table and the view ticket_notes_shown:
-- migrations/0017_quick_messages_notes.sql). Every statement is scoped by company. A note is listed to those
-- who may see its ticket, the tickets' rule (storage/tickets.py Viewer) over the ticket's queue and agent: an
-- admin, the ticket's agent, a user of its queue, anyone with `all_ticket` for a ticket without queue.

-- name: ticket_note_insert
INSERT INTO ticket_notes (company_id, ticket_id, contact_id, user_id, note)
VALUES (%(company_id)s, %(ticket_id)s, %(contact_id)s, %(user_id)s, %(note)s)
RETURNING id

-- name: ticket_note_show
SELECT * FROM ticket_notes_shown WHERE id = %(id)s AND company_id = %(company_id)s

-- name: ticket_note_list
-- The notes of one ticket (`ticket_id`), of one contact's tickets (`contact_id`), or both, that the viewer
-- may see, newest first.
SELECT * FROM ticket_notes_shown n
WHERE n.company_id = %(company_id)s
  AND (%(ticket_id)s::bigint IS NULL OR n.ticket_id = %(ticket_id)s::bigint)
  AND (%(contact_id)s::bigint IS NULL OR n.contact_id = %(contact_id)s::bigint)
  AND (%(is_admin)s OR n.ticket_user_id = %(user_id)s OR n.ticket_queue_id = ANY(%(queue_ids)s::bigint[])
       OR (n.ticket_queue_id IS NULL AND %(all_ticket)s))
ORDER BY n.created_at DESC, n.id DESC
LIMIT %(limit)s

-- name: ticket_note_page
-- A page of the company's notes that the viewer may see, newest first; `search`: a LIKE pattern matched on
-- the text without accents or case (search_fold), or null.
SELECT *, count(*) OVER () AS total FROM ticket_notes_shown n
WHERE n.company_id = %(company_id)s
  AND (%(search)s::text IS NULL OR search_fold(n.note) LIKE search_fold(%(search)s::text))
  AND (%(is_admin)s OR n.ticket_user_id = %(user_id)s OR n.ticket_queue_id = ANY(%(queue_ids)s::bigint[])
       OR (n.ticket_queue_id IS NULL AND %(all_ticket)s))
ORDER BY n.created_at DESC, n.id DESC
LIMIT %(limit)s OFFSET %(offset)s

-- name: ticket_note_count
SELECT count(*) AS n FROM ticket_notes_shown n
WHERE n.company_id = %(company_id)s
  AND (%(search)s::text IS NULL OR search_fold(n.note) LIKE search_fold(%(search)s::text))
  AND (%(is_admin)s OR n.ticket_user_id = %(user_id)s OR n.ticket_queue_id = ANY(%(queue_ids)s::bigint[])
       OR (n.ticket_queue_id IS NULL AND %(all_ticket)s))

-- name: ticket_note_update
UPDATE ticket_notes SET note = %(note)s, updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING id

-- name: ticket_note_delete
DELETE FROM ticket_notes WHERE id = %(id)s AND company_id = %(company_id)s RETURNING id
