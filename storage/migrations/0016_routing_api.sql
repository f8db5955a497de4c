-- Version 16 (issue 12, the API of routing). A connection's business hours (setting scheduleType
-- "connection", as the SaaS lineage has them on its connections): any of the three shapes api/schedules.py
-- takes, like a queue's and a company's.
ALTER TABLE whatsapps ADD COLUMN schedules jsonb NOT NULL DEFAULT '[]';

-- A ticket carries its rating (CSAT). `rating` is the ticket's latest
-- `user_ratings` row as `{id, rate, userId, createdAt}`, null while it has none (the contact may rate a
-- ticket again after it was reopened and closed: the last answer is the one shown).
--
-- The views are restated from their latest definitions (tickets_shown: version 8; tickets_json: version
-- 6), each with the rating added at the end, and nothing else changed. They are dropped and created
-- rather than replaced: `t.*` now also expands to the ticket columns of version 14, and a replaced view
-- may not move its existing columns.

DROP VIEW tickets_json;
DROP VIEW tickets_shown;

CREATE VIEW tickets_shown AS
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
                 FROM ticket_tags tt JOIN tags tg ON tg.id = tt.tag_id WHERE tt.ticket_id = t.id), '[]'::json) AS tags,
       (SELECT json_build_object('id', r.id, 'rate', r.rate, 'userId', r.user_id, 'createdAt', api_time(r.created_at))
        FROM user_ratings r WHERE r.ticket_id = t.id AND r.company_id = t.company_id
        ORDER BY r.created_at DESC, r.id DESC LIMIT 1) AS rating
FROM tickets t
JOIN contacts c ON c.id = t.contact_id
JOIN whatsapps w ON w.id = t.whatsapp_id
LEFT JOIN queues q ON q.id = t.queue_id
LEFT JOIN users u ON u.id = t.user_id;

CREATE VIEW tickets_json AS
SELECT v.*,
       json_build_object(
           'id', v.id, 'uuid', v.uuid, 'status', v.status, 'companyId', v.company_id, 'contactId', v.contact_id,
           'whatsappId', v.whatsapp_id, 'queueId', v.queue_id, 'userId', v.user_id, 'isGroup', v.is_group,
           'channel', 'whatsapp',
           'unreadMessages', v.unread_messages, 'lastMessage', v.last_message,
           'lastMessageAt', api_time(v.last_message_at), 'chatbot', v.chatbot, 'createdAt', api_time(v.created_at),
           'updatedAt', api_time(v.updated_at), 'contact', v.contact, 'queue', v.queue, 'user', v."user",
           'whatsapp', v.whatsapp, 'tags', v.tags, 'rating', v.rating) AS json
FROM tickets_shown v;
