-- Version 8: tags (ticketz's Tags screen, the chat page's tag box, the tickets' tags filter, the kanban).
--
-- Tags and ticket_tags are version 1's; this adds the tags of contacts (ticketz's setting tagsMode =
-- contact | both tags the contact rather than, or as well as, the ticket), an accent-insensitive fold for
-- the tags' search, and shows the tags where the frontends read them: a ticket's `tags` with `kanban`
-- (the board's lanes are the kanban tags), and its contact's `tags` (ticketz's ticket list shows both, and
-- its live filter reads `ticket.contact.tags`).

-- Text folded for an accent- and case-insensitive search: "Ação" and "ACAO" are both "acao". Decomposed
-- (NFD), its combining marks removed, then lowered (lower() alone leaves non-ASCII letters as they are under
-- the C locale). Letters that do not decompose (ß, ø, æ) stay as they are.
CREATE FUNCTION search_fold(text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT lower(regexp_replace(normalize($1, NFD), '[\u0300-\u036f]', '', 'g'))
$$;

-- A contact's tags. The company is repeated so that both foreign keys hold it: a tag of another company
-- can never be attached (the same rule as ticket_tags).
CREATE TABLE contact_tags (
    company_id  bigint NOT NULL,
    contact_id  bigint NOT NULL,
    tag_id      bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, tag_id),
    FOREIGN KEY (company_id, contact_id) REFERENCES contacts (company_id, id) ON DELETE CASCADE,
    FOREIGN KEY (company_id, tag_id) REFERENCES tags (company_id, id) ON DELETE CASCADE
);
-- The tags filter finds the contacts carrying a tag through this (as ticket_tags_tag_idx for tickets).
CREATE INDEX contact_tags_tag_idx ON contact_tags (tag_id, contact_id);

-- A tag as tickets and contacts carry it: {id, name, color, kanban (0 | 1, as ticketz's model)}.
CREATE FUNCTION api_tag_json(tg tags) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT json_build_object('id', tg.id, 'name', tg.name, 'color', tg.color, 'kanban', tg.kanban::int)
$$;

-- The same columns as version 1's view (so the views built on it stay), with the tags' `kanban` and the
-- contact's tags.
CREATE OR REPLACE VIEW tickets_shown AS
SELECT t.*,
       json_build_object('id', c.id, 'name', c.name, 'number', c.number, 'email', c.email, 'lid', c.lid,
                         'profilePicUrl', c.profile_pic_url, 'isGroup', c.is_group, 'companyId', c.company_id,
                         'tags', coalesce((SELECT json_agg(api_tag_json(tg) ORDER BY tg.name, tg.id)
                                           FROM contact_tags ct JOIN tags tg ON tg.id = ct.tag_id
                                           WHERE ct.contact_id = c.id), '[]'::json))
           AS contact,
       CASE WHEN q.id IS NULL THEN NULL
            ELSE json_build_object('id', q.id, 'name', q.name, 'color', q.color) END AS queue,
       CASE WHEN u.id IS NULL THEN NULL ELSE json_build_object('id', u.id, 'name', u.name) END AS "user",
       json_build_object('id', w.id, 'name', w.name, 'channel', w.channel, 'status', w.status) AS whatsapp,
       coalesce((SELECT json_agg(api_tag_json(tg) ORDER BY tg.name, tg.id)
                 FROM ticket_tags tt JOIN tags tg ON tg.id = tt.tag_id WHERE tt.ticket_id = t.id), '[]'::json) AS tags
FROM tickets t
JOIN contacts c ON c.id = t.contact_id
JOIN whatsapps w ON w.id = t.whatsapp_id
LEFT JOIN queues q ON q.id = t.queue_id
LEFT JOIN users u ON u.id = t.user_id;
