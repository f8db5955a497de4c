-- Version 6: messages as the Baileys-lineage frontends read them (ticketz's chat page, issue 11).
--
-- Their message bubbles read `dataJson`, the WhatsApp message as Baileys gives it (a WAMessage: key,
-- message, messageTimestamp), and parse it for every message they show (JSON.parse: a missing one blanks
-- the whole page). zapgate builds it when a message is read, from the columns it keeps, rather than
-- storing a copy: nothing to keep in step on edits, deletions, acks or reactions, no second copy of every
-- body, nothing added to the intake; building it costs PostgreSQL a few microseconds a message in the page
-- query. The one fact the columns did not keep is a location's coordinates (the
-- body holds its name or address): they get columns of their own.
--
-- Measured (EXPLAIN ANALYZE, a page of 20 of a ticket's 300 messages): 0.59 ms before this version, 0.69 ms
-- with every message's JSON and dataJson built by api_message_json — about 5 µs a message.
--
-- The Python presenter (api/present_tickets.py) builds the same JSON for the realtime events;
-- tests/integration/test_api_json.py holds the two to each other.

ALTER TABLE messages ADD COLUMN latitude double precision, ADD COLUMN longitude double precision;
ALTER TABLE messages ADD CONSTRAINT messages_location_check
    CHECK ((latitude IS NULL) = (longitude IS NULL) AND latitude BETWEEN -90 AND 90
           AND longitude BETWEEN -180 AND 180);

-- The chat of a contact as a WhatsApp JID (key.remoteJid): a group, a phone number, else a LID.
CREATE FUNCTION api_chat_jid(is_group boolean, number text, lid text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN is_group THEN number || '@g.us'
                WHEN number <> '' THEN number || '@s.whatsapp.net'
                ELSE lid || '@lid' END
$$;

-- `mediaType` as the whole Whaticket family shows it, the kind of the file's mimetype: a voice note is
-- "audio" (every frontend plays only "audio"), a sticker "image". What zapgate stores stays as it is
-- (the outbox sends a voice note as one).
CREATE FUNCTION api_media_type(media_type text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE media_type WHEN 'ptt' THEN 'audio' WHEN 'sticker' THEN 'image' ELSE media_type END
$$;

-- `dataJson`: the message as a Baileys WAMessage, as JSON text. `message` holds one content field by kind:
-- conversation (extendedTextMessage when it quotes one: contextInfo.stanzaId), imageMessage, videoMessage,
-- audioMessage (ptt for voice notes), documentMessage (fileName: the frontends tell a document by it),
-- stickerMessage, locationMessage (degrees; `name` unless the body is only the coordinates), contactMessage.
-- The same keys always (null when unknown), so that the presenter's JSON is the same object.
CREATE FUNCTION api_message_data(chat text, wid text, from_me boolean, media_type text, body text,
                                 media_name text, media_mimetype text, latitude double precision,
                                 longitude double precision, quoted_wid text, at timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT json_build_object(
        'key', json_build_object('remoteJid', chat, 'fromMe', from_me, 'id', wid),
        'message', CASE
            WHEN media_type IN ('image', 'video') THEN json_build_object(media_type || 'Message', json_build_object(
                'caption', body, 'mimetype', media_mimetype,
                'contextInfo', CASE WHEN quoted_wid IS NOT NULL THEN json_build_object('stanzaId', quoted_wid) END))
            WHEN media_type IN ('audio', 'ptt') THEN json_build_object('audioMessage', json_build_object(
                'mimetype', media_mimetype, 'ptt', media_type = 'ptt',
                'contextInfo', CASE WHEN quoted_wid IS NOT NULL THEN json_build_object('stanzaId', quoted_wid) END))
            WHEN media_type = 'document' THEN json_build_object('documentMessage', json_build_object(
                'fileName', media_name, 'mimetype', media_mimetype, 'caption', body,
                'contextInfo', CASE WHEN quoted_wid IS NOT NULL THEN json_build_object('stanzaId', quoted_wid) END))
            WHEN media_type = 'sticker' THEN json_build_object('stickerMessage', json_build_object(
                'mimetype', media_mimetype,
                'contextInfo', CASE WHEN quoted_wid IS NOT NULL THEN json_build_object('stanzaId', quoted_wid) END))
            WHEN media_type = 'location' AND latitude IS NOT NULL THEN json_build_object('locationMessage',
                json_build_object('degreesLatitude', latitude, 'degreesLongitude', longitude,
                                  'name', CASE WHEN body = '' OR body ~ '^[-+0-9.e]+,[-+0-9.e]+$' THEN NULL
                                               ELSE body END,
                'contextInfo', CASE WHEN quoted_wid IS NOT NULL THEN json_build_object('stanzaId', quoted_wid) END))
            WHEN media_type = 'vcard' THEN json_build_object('contactMessage', json_build_object(
                'vcard', body,
                'contextInfo', CASE WHEN quoted_wid IS NOT NULL THEN json_build_object('stanzaId', quoted_wid) END))
            WHEN quoted_wid IS NOT NULL THEN json_build_object('extendedTextMessage', json_build_object(
                'text', body, 'contextInfo', json_build_object('stanzaId', quoted_wid)))
            ELSE json_build_object('conversation', body)
        END,
        'messageTimestamp', floor(extract(epoch FROM at))::bigint)::text
$$;

-- A message as GET /messages/:ticketId lists it (api/present_tickets.MessagePresenter), `m` with the message it
-- quotes, `q` (a NULL row when none), in the chat of contact `chat_*` (the ticket's): the quote with its own
-- `dataJson` and sender, the sender (`contact`: the chat's contact; in a group the participant, whose number
-- is all zapgate keeps of them; none for ours), the reaction as ticketz's `replies`, `dataJson`.
-- PL/pgSQL, so that the page's statement does not carry this expression: that statement is planned at every
-- call, and planning it with the expression inlined cost more than building the JSON of a whole page.
CREATE FUNCTION api_message_json(m messages, q messages, chat_id bigint, chat_name text, chat_number text,
                                 chat_is_group boolean, chat text, base_url text) RETURNS json
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    quoted_wid text := CASE WHEN m.quoted_msg_id <> 0 THEN q.wid END;
BEGIN
    RETURN json_build_object(
           'id', m.id, 'wid', m.wid, 'ticketId', m.ticket_id, 'contactId', m.contact_id, 'companyId', m.company_id,
           'whatsappId', m.whatsapp_id, 'fromMe', m.from_me, 'body', m.body,
           'mediaType', api_media_type(m.media_type),
           'mediaUrl', CASE WHEN m.media_url <> '' THEN base_url || m.media_url END,
           'mediaName', m.media_name, 'mediaMimetype', m.media_mimetype, 'ack', m.ack, 'status', m.status,
           'error', m.error, 'read', m.read, 'quotedMsgId', m.quoted_msg_id,
           'quotedMsg', CASE WHEN quoted_wid IS NOT NULL THEN json_build_object(
               'id', m.quoted_msg_id, 'wid', q.wid, 'body', q.body, 'fromMe', q.from_me,
               'mediaType', api_media_type(q.media_type),
               'mediaUrl', CASE WHEN q.media_url <> '' THEN base_url || q.media_url END,
               'contact', CASE WHEN q.from_me THEN NULL
                               WHEN chat_is_group THEN CASE WHEN q.participant IS NOT NULL THEN
                                   json_build_object('id', NULL, 'name', q.participant, 'number', q.participant) END
                               ELSE json_build_object('id', chat_id, 'name', chat_name, 'number', chat_number) END,
               'dataJson', api_message_data(chat, q.wid, q.from_me, q.media_type, q.body, q.media_name,
                                            q.media_mimetype, q.latitude, q.longitude, NULL,
                                            coalesce(q.wa_timestamp, q.created_at)))
                        END,
           'participant', m.participant, 'reaction', m.reaction,
           'replies', CASE WHEN m.reaction IS NULL THEN '[]'::json
                           ELSE json_build_array(json_build_object('id', m.id || '-reaction', 'mediaType',
                                                                   'reactionMessage', 'body', m.reaction,
                                                                   'contact', NULL)) END,
           'contact', CASE WHEN m.from_me THEN NULL
                           WHEN chat_is_group THEN CASE WHEN m.participant IS NOT NULL THEN
                               json_build_object('id', NULL, 'name', m.participant, 'number', m.participant) END
                           ELSE json_build_object('id', chat_id, 'name', chat_name, 'number', chat_number) END,
           'dataJson', api_message_data(chat, m.wid, m.from_me, m.media_type, m.body, m.media_name,
                                        m.media_mimetype, m.latitude, m.longitude, quoted_wid,
                                        coalesce(m.wa_timestamp, m.created_at)),
           'isEdited', m.is_edited, 'isDeleted', m.is_deleted,
           'isPrivate', m.is_private, 'userId', m.sent_by_user_id, 'createdAt', api_time(m.created_at),
           'updatedAt', api_time(m.updated_at));
END
$$;

-- A ticket as GET /tickets lists it: with `channel` (ticketz's tickets carry their channel; zapgate's
-- connections, sandbox ones too, are all WhatsApp).
CREATE OR REPLACE VIEW tickets_json AS
SELECT v.*,
       json_build_object(
           'id', v.id, 'uuid', v.uuid, 'status', v.status, 'companyId', v.company_id, 'contactId', v.contact_id,
           'whatsappId', v.whatsapp_id, 'queueId', v.queue_id, 'userId', v.user_id, 'isGroup', v.is_group,
           'channel', 'whatsapp',
           'unreadMessages', v.unread_messages, 'lastMessage', v.last_message,
           'lastMessageAt', api_time(v.last_message_at), 'chatbot', v.chatbot, 'createdAt', api_time(v.created_at),
           'updatedAt', api_time(v.updated_at), 'contact', v.contact, 'queue', v.queue, 'user', v."user",
           'whatsapp', v.whatsapp, 'tags', v.tags) AS json
FROM tickets_shown v;
