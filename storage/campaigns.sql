-- Campaigns: their rows, status changes, settings, reports (storage/campaigns.py; tables: migrations/0020).

-- name: campaign_page
-- A page of the company's campaigns by name (ticketz's order), each with its list and connection names.
SELECT c.*, l.name AS contact_list_name, w.name AS whatsapp_name, t.name AS tag_name,
       count(*) OVER () AS total
FROM campaigns c
LEFT JOIN contact_lists l ON l.id = c.contact_list_id AND l.company_id = c.company_id
LEFT JOIN whatsapps w ON w.id = c.whatsapp_id AND w.company_id = c.company_id
LEFT JOIN tags t ON t.id = c.tag_id AND t.company_id = c.company_id
WHERE c.company_id = %(company_id)s AND (%(search)s::text IS NULL OR c.name ILIKE %(search)s)
ORDER BY lower(c.name), c.id
LIMIT %(limit)s OFFSET %(offset)s

-- name: campaign_count
SELECT count(*) AS n FROM campaigns
WHERE company_id = %(company_id)s AND (%(search)s::text IS NULL OR name ILIKE %(search)s)

-- name: campaign_all
SELECT c.*, l.name AS contact_list_name, w.name AS whatsapp_name, t.name AS tag_name
FROM campaigns c
LEFT JOIN contact_lists l ON l.id = c.contact_list_id AND l.company_id = c.company_id
LEFT JOIN whatsapps w ON w.id = c.whatsapp_id AND w.company_id = c.company_id
LEFT JOIN tags t ON t.id = c.tag_id AND t.company_id = c.company_id
WHERE c.company_id = %(company_id)s
ORDER BY lower(c.name), c.id
LIMIT %(limit)s

-- name: campaign_show
-- One campaign with the names it shows and the counts of ticketz's report (`valids`: the shippings that are
-- not skipped once it started, else the audience as it is now).
SELECT c.*, l.name AS contact_list_name, w.name AS whatsapp_name, t.name AS tag_name, s.*,
       CASE WHEN s.shippings > 0 THEN s.shippings - s.skipped
            WHEN c.contact_list_id IS NOT NULL THEN (
                SELECT count(*) FROM contact_list_items i
                WHERE i.contact_list_id = c.contact_list_id AND i.is_whatsapp_valid IS NOT FALSE)
            WHEN c.tag_id IS NOT NULL THEN (
                SELECT count(*) FROM contact_tags ct JOIN contacts k ON k.id = ct.contact_id
                WHERE ct.tag_id = c.tag_id AND k.company_id = c.company_id AND NOT k.is_group)
            ELSE 0 END AS valids
FROM campaigns c
LEFT JOIN contact_lists l ON l.id = c.contact_list_id AND l.company_id = c.company_id
LEFT JOIN whatsapps w ON w.id = c.whatsapp_id AND w.company_id = c.company_id
LEFT JOIN tags t ON t.id = c.tag_id AND t.company_id = c.company_id
CROSS JOIN LATERAL (
    SELECT count(*) AS shippings,
           count(*) FILTER (WHERE sh.state = 'skipped') AS skipped,
           count(*) FILTER (WHERE sh.state = 'sent') AS sent,
           count(*) FILTER (WHERE sh.delivered_at IS NOT NULL OR m.ack >= 3) AS delivered,
           count(*) FILTER (WHERE sh.confirmation_requested_at IS NOT NULL) AS confirmation_requested,
           count(*) FILTER (WHERE sh.confirmed_at IS NOT NULL) AS confirmed
    FROM campaign_shippings sh
    LEFT JOIN messages m ON m.id = sh.message_id AND m.company_id = sh.company_id
    WHERE sh.campaign_id = c.id AND sh.company_id = c.company_id
) s
WHERE c.id = %(id)s AND c.company_id = %(company_id)s

-- name: campaign_lock
SELECT * FROM campaigns WHERE id = %(id)s AND company_id = %(company_id)s FOR UPDATE

-- name: campaign_delete
DELETE FROM campaigns WHERE id = %(id)s AND company_id = %(company_id)s RETURNING media_path

-- name: set_media
UPDATE campaigns c SET media_path = %(media_path)s, media_name = %(media_name)s, updated_at = now()
FROM (SELECT id, media_path FROM campaigns WHERE id = %(id)s AND company_id = %(company_id)s FOR UPDATE) old
WHERE c.id = old.id
RETURNING c.id, old.media_path AS replaced_media_path

-- name: owns_whatsapp
SELECT 1 FROM whatsapps WHERE id = %(id)s AND company_id = %(company_id)s

-- name: owns_list
SELECT 1 FROM contact_lists WHERE id = %(id)s AND company_id = %(company_id)s

-- name: owns_tag
SELECT 1 FROM tags WHERE id = %(id)s AND company_id = %(company_id)s

-- name: report
-- zapgate's delivery report of a campaign, from its shippings and their outbox rows' acks (Baileys' scale:
-- 3 delivered, 4 read, 5 played).
SELECT count(*) AS total,
       count(*) FILTER (WHERE sh.state = 'queued') AS queued,
       count(*) FILTER (WHERE sh.state = 'sending') AS sending,
       count(*) FILTER (WHERE sh.state = 'sent') AS sent,
       count(*) FILTER (WHERE sh.delivered_at IS NOT NULL OR sh.read_at IS NOT NULL OR m.ack >= 3) AS delivered,
       count(*) FILTER (WHERE sh.read_at IS NOT NULL OR m.ack >= 4) AS read,
       count(*) FILTER (WHERE sh.state = 'failed') AS failed,
       count(*) FILTER (WHERE sh.state = 'skipped') AS skipped,
       count(*) FILTER (WHERE sh.replied_at IS NOT NULL) AS replied,
       count(*) FILTER (WHERE o.number IS NOT NULL) AS opted_out,
       count(*) FILTER (WHERE sh.confirmation_requested_at IS NOT NULL) AS confirmation_requested,
       count(*) FILTER (WHERE sh.confirmed_at IS NOT NULL) AS confirmed
FROM campaign_shippings sh
LEFT JOIN messages m ON m.id = sh.message_id AND m.company_id = sh.company_id
LEFT JOIN campaign_opt_outs o ON o.company_id = sh.company_id AND o.number = sh.number
WHERE sh.campaign_id = %(id)s AND sh.company_id = %(company_id)s

-- name: report_failures
SELECT coalesce(nullif(error, ''), 'unknown') AS reason, count(*) AS count
FROM campaign_shippings
WHERE campaign_id = %(id)s AND company_id = %(company_id)s AND state = 'failed'
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 50

-- name: shipping_page
-- A page of a campaign's shippings by id; `state` one of the states, or delivered/read/replied/confirmed/
-- optedOut (the report's columns), or null for all.
SELECT sh.*, m.ack, (o.number IS NOT NULL) AS opted_out, count(*) OVER () AS total
FROM campaign_shippings sh
LEFT JOIN messages m ON m.id = sh.message_id AND m.company_id = sh.company_id
LEFT JOIN campaign_opt_outs o ON o.company_id = sh.company_id AND o.number = sh.number
WHERE sh.campaign_id = %(id)s AND sh.company_id = %(company_id)s AND sh.id > %(after)s
  AND (%(state)s::text IS NULL OR sh.state = %(state)s
       OR (%(state)s = 'delivered' AND (sh.delivered_at IS NOT NULL OR sh.read_at IS NOT NULL OR m.ack >= 3))
       OR (%(state)s = 'read' AND (sh.read_at IS NOT NULL OR m.ack >= 4))
       OR (%(state)s = 'replied' AND sh.replied_at IS NOT NULL)
       OR (%(state)s = 'confirmed' AND sh.confirmed_at IS NOT NULL)
       OR (%(state)s = 'optedOut' AND o.number IS NOT NULL))
ORDER BY sh.id
LIMIT %(limit)s OFFSET %(offset)s

-- name: settings_all
SELECT key, value, company_id, created_at, updated_at FROM campaign_settings WHERE company_id = %(company_id)s
ORDER BY key

-- name: setting_upsert
INSERT INTO campaign_settings (company_id, key, value) VALUES (%(company_id)s, %(key)s, %(value)s)
ON CONFLICT (company_id, key) DO UPDATE SET value = excluded.value, updated_at = now()

-- name: has_campaigns
SELECT EXISTS (SELECT 1 FROM campaigns WHERE company_id = %(company_id)s) AS yes

-- name: reply_shippings
-- The contact's recent shippings (sent or asking for a confirmation in the last `days`), newest first, locked:
-- found by the contact or by its number within the company's campaigns.
SELECT sh.*, c.confirmation AS campaign_confirmation, c.status AS campaign_status
FROM campaign_shippings sh
JOIN campaigns c ON c.id = sh.campaign_id AND c.company_id = sh.company_id
WHERE sh.company_id = %(company_id)s AND (sh.contact_id = %(contact_id)s OR sh.number = %(number)s)
  AND c.company_id = %(company_id)s
  AND coalesce(sh.confirmation_requested_at, sh.sent_at) > %(since)s
ORDER BY coalesce(sh.confirmation_requested_at, sh.sent_at) DESC, sh.id DESC
LIMIT 20
FOR UPDATE OF sh

-- name: mark_replied
UPDATE campaign_shippings SET replied_at = %(at)s, updated_at = now()
WHERE company_id = %(company_id)s AND id = ANY(%(ids)s) AND replied_at IS NULL

-- name: mark_confirmed
UPDATE campaign_shippings SET confirmed_at = %(at)s, confirmation = true, updated_at = now()
WHERE company_id = %(company_id)s AND id = %(id)s AND confirmed_at IS NULL
RETURNING id

-- name: opt_out_insert
INSERT INTO campaign_opt_outs (company_id, number, reason) VALUES (%(company_id)s, %(number)s, %(reason)s)
ON CONFLICT DO NOTHING RETURNING number

-- name: contact_opt_out
UPDATE contacts SET opted_out_at = coalesce(opted_out_at, %(at)s)
WHERE company_id = %(company_id)s AND (id = %(contact_id)s OR number = %(number)s)

-- name: skip_opted_out
-- A contact opted out: its shippings not sent yet are skipped by every campaign of the company.
UPDATE campaign_shippings SET state = 'skipped', error = 'opted out', updated_at = now()
WHERE company_id = %(company_id)s AND number = %(number)s AND state = 'queued'
