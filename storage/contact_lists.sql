-- Contact lists and their items (storage/contact_lists.py; the tables: migrations/0019_contact_lists.sql).

-- name: list_page
-- A page of the company's lists by name with how many items each holds; `search` an ILIKE pattern or null.
SELECT l.*, (SELECT count(*) FROM contact_list_items i WHERE i.contact_list_id = l.id) AS contacts_count,
       count(*) OVER () AS total
FROM contact_lists l
WHERE l.company_id = %(company_id)s AND (%(search)s::text IS NULL OR l.name ILIKE %(search)s)
ORDER BY lower(l.name), l.id
LIMIT %(limit)s OFFSET %(offset)s

-- name: list_count
SELECT count(*) AS n FROM contact_lists
WHERE company_id = %(company_id)s AND (%(search)s::text IS NULL OR name ILIKE %(search)s)

-- name: list_all
SELECT l.*, (SELECT count(*) FROM contact_list_items i WHERE i.contact_list_id = l.id) AS contacts_count
FROM contact_lists l
WHERE l.company_id = %(company_id)s
ORDER BY lower(l.name), l.id
LIMIT %(limit)s

-- name: list_show
SELECT l.*, (SELECT count(*) FROM contact_list_items i WHERE i.contact_list_id = l.id) AS contacts_count
FROM contact_lists l
WHERE l.id = %(id)s AND l.company_id = %(company_id)s

-- name: list_lock
-- The list, kept from being deleted (or renamed) until the transaction ends: an import writes into it.
SELECT id FROM contact_lists WHERE id = %(id)s AND company_id = %(company_id)s FOR SHARE

-- name: list_insert
INSERT INTO contact_lists (company_id, name) VALUES (%(company_id)s, %(name)s)
RETURNING *, 0::bigint AS contacts_count

-- name: list_update
UPDATE contact_lists l SET name = %(name)s, updated_at = now()
WHERE l.id = %(id)s AND l.company_id = %(company_id)s
RETURNING l.*, (SELECT count(*) FROM contact_list_items i WHERE i.contact_list_id = l.id) AS contacts_count

-- name: list_delete
-- The list and, by their foreign key, its items.
DELETE FROM contact_lists WHERE id = %(id)s AND company_id = %(company_id)s RETURNING id

-- name: item_page
-- A page of a list's items by name; `search` an ILIKE pattern on the name, or a LIKE pattern of digits on
-- the number (`number_search`), either may be null.
SELECT i.*, count(*) OVER () AS total
FROM contact_list_items i
WHERE i.contact_list_id = %(list_id)s AND i.company_id = %(company_id)s
  AND (%(search)s::text IS NULL OR i.name ILIKE %(search)s OR i.email ILIKE %(search)s
       OR i.number LIKE coalesce(%(number_search)s, %(search)s))
ORDER BY lower(i.name), i.id
LIMIT %(limit)s OFFSET %(offset)s

-- name: item_count
SELECT count(*) AS n FROM contact_list_items i
WHERE i.contact_list_id = %(list_id)s AND i.company_id = %(company_id)s
  AND (%(search)s::text IS NULL OR i.name ILIKE %(search)s OR i.email ILIKE %(search)s
       OR i.number LIKE coalesce(%(number_search)s, %(search)s))

-- name: item_all
-- Every item of the company, or of one list (ticketz's /contact-list-items/list), by name; bounded.
SELECT i.* FROM contact_list_items i
WHERE i.company_id = %(company_id)s AND (%(list_id)s::bigint IS NULL OR i.contact_list_id = %(list_id)s)
ORDER BY lower(i.name), i.id
LIMIT %(limit)s

-- name: item_show
SELECT * FROM contact_list_items WHERE id = %(id)s AND company_id = %(company_id)s

-- name: item_insert
-- A new item; a number the list has already: no row (a Conflict for the API).
INSERT INTO contact_list_items (company_id, contact_list_id, name, number, email)
VALUES (%(company_id)s, %(list_id)s, %(name)s, %(number)s, %(email)s)
ON CONFLICT (contact_list_id, number) DO NOTHING
RETURNING *

-- name: item_update
-- A changed number is not known to be on WhatsApp any more.
UPDATE contact_list_items SET
    name = coalesce(%(name)s, name),
    email = coalesce(%(email)s, email),
    is_whatsapp_valid = CASE WHEN %(number)s::text IS NULL OR %(number)s::text = number THEN is_whatsapp_valid END,
    number = coalesce(%(number)s, number),
    updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING *

-- name: item_delete
DELETE FROM contact_list_items WHERE id = %(id)s AND company_id = %(company_id)s RETURNING id, contact_list_id

-- name: item_merge
-- One batch of an import (numbers unique within it): new numbers are added, known ones take the file's name
-- and e-mail where it has them. Rows are written in number order, so concurrent imports cannot deadlock;
-- `xmax = 0` tells an inserted row from an updated one.
WITH upserted AS (
    INSERT INTO contact_list_items (company_id, contact_list_id, number, name, email)
    SELECT %(company_id)s, %(list_id)s, d.number, d.name, d.email
    FROM unnest(%(numbers)s::text[], %(names)s::text[], %(emails)s::text[]) AS d(number, name, email)
    ORDER BY d.number
    ON CONFLICT (contact_list_id, number) DO UPDATE SET
        name = CASE WHEN excluded.name <> '' THEN excluded.name ELSE contact_list_items.name END,
        email = CASE WHEN excluded.email <> '' THEN excluded.email ELSE contact_list_items.email END,
        updated_at = now()
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS created, count(*) FILTER (WHERE NOT inserted) AS merged FROM upserted

-- name: item_export
-- The next slice of a list's items for an export (keyset on id: each slice one short statement).
SELECT id, name, number, email, is_whatsapp_valid FROM contact_list_items
WHERE contact_list_id = %(list_id)s AND company_id = %(company_id)s AND id > %(after)s
ORDER BY id
LIMIT %(limit)s

-- name: items_recheck
-- Every number of the list is to be checked again.
UPDATE contact_list_items SET is_whatsapp_valid = NULL, updated_at = now()
WHERE contact_list_id = %(list_id)s AND company_id = %(company_id)s AND is_whatsapp_valid IS NOT NULL

-- name: items_unchecked
SELECT id, number FROM contact_list_items
WHERE contact_list_id = %(list_id)s AND company_id = %(company_id)s AND is_whatsapp_valid IS NULL
ORDER BY id
LIMIT %(limit)s

-- name: items_unchecked_count
SELECT count(*) AS n FROM contact_list_items
WHERE contact_list_id = %(list_id)s AND company_id = %(company_id)s AND is_whatsapp_valid IS NULL

-- name: items_set_valid
-- The answers of one check: the items still holding the number that was checked.
UPDATE contact_list_items i SET is_whatsapp_valid = d.valid, updated_at = now()
FROM unnest(%(ids)s::bigint[], %(numbers)s::text[], %(valid)s::boolean[]) AS d(id, number, valid)
WHERE i.id = d.id AND i.number = d.number AND i.company_id = %(company_id)s
RETURNING i.*

-- name: company_connections
-- The company's connections, the default one first (the number check asks through one that is connected).
SELECT id FROM whatsapps WHERE company_id = %(company_id)s ORDER BY is_default DESC, id
