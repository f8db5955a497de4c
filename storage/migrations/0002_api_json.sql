-- Version 2: the JSON of the hot reads built by PostgreSQL.
--
-- GET /tickets and GET /messages/:ticketId answer JSON that PostgreSQL builds (storage/queries.sql:
-- tickets_page, messages_page_json) and zapgate passes through without decoding it. The shapes are the
-- presenters' (api/present_tickets.py); tests/integration/test_api_json.py holds the two to each other.

-- A timestamp as the API writes it everywhere: Python's datetime.isoformat() of the value in the session's
-- time zone (microseconds only when there are some: 2025-01-02T03:04:05+00:00, 2025-01-02T03:04:05.120000+00:00).
CREATE FUNCTION api_time(ts timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(ts, CASE WHEN to_char(ts, 'US') = '000000' THEN 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM'
                            ELSE 'YYYY-MM-DD"T"HH24:MI:SS.USTZH:TZM' END)
$$;

-- A ticket as GET /tickets lists it (api/present_tickets.ticket), next to the tickets_shown columns.
CREATE VIEW tickets_json AS
SELECT v.*,
       json_build_object(
           'id', v.id, 'uuid', v.uuid, 'status', v.status, 'companyId', v.company_id, 'contactId', v.contact_id,
           'whatsappId', v.whatsapp_id, 'queueId', v.queue_id, 'userId', v.user_id, 'isGroup', v.is_group,
           'unreadMessages', v.unread_messages, 'lastMessage', v.last_message,
           'lastMessageAt', api_time(v.last_message_at), 'chatbot', v.chatbot, 'createdAt', api_time(v.created_at),
           'updatedAt', api_time(v.updated_at), 'contact', v.contact, 'queue', v.queue, 'user', v."user",
           'whatsapp', v.whatsapp, 'tags', v.tags) AS json
FROM tickets_shown v;
