-- Version 6: messages as the Baileys-lineage frontends read them (ticketz's chat page, issue 11).
--
-- Their message bubbles read `dataJson`, the WhatsApp message as Baileys gives it (a WAMessage: key,
-- message, messageTimestamp), and parse it for every message they show (JSON.parse: a missing one blanks
-- the whole page). zapgate builds it when a message is read, from the columns it keeps, rather than
-- storing a copy: nothing to keep in step on edits, deletions, acks or reactions, no second copy of every
-- body, nothing added to the intake; building it costs PostgreSQL a few microseconds a message in the page
-- query (bench.api `messages`). The one fact the columns did not keep is a location's coordinates (the
-- body holds its name or address): they get columns of their own.
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
