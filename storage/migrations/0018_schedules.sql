-- Version 18 (issue 13, point 4): scheduled messages, one-off or recurring.
--
-- A schedule is a message to a contact at a time; its wait is a durable timer (kind 'schedule', key
-- 'schedule:<id>', storage/timers.py). `status` is the family's, exactly (their screens show it):
--   PENDENTE  stored, its timer not set yet (only inside the transaction that creates it, or a row
--             written by something other than the API)
--   AGENDADA  a durable timer waits for `send_at`
--   ENVIADA   its message was written to the conversation's outbox, in the transaction that completed the
--             timer (it goes out now, or when the connection is back); a recurring one is AGENDADA again
--             once its next occurrence is armed
--   ERRO      it could not be sent: `last_error` says why; a PUT that reschedules it retries it
-- Recurrence (actors/automation/recurrence.py): `recurrence` none | minutes | days | weeks | months | cron,
-- every `recurrence_every` of them or the `cron` expression, at most `recurrence_count` sends in all and none
-- after `recurrence_until`; `skip_to_business_day` moves an occurrence that falls on a day the company's
-- business hours are closed to the same time of its next open day. `anchor_at` is the series' first
-- occurrence as asked (its local time of day and day of month are kept: Jan 31 + 1 month is Feb 28, then
-- Mar 31), `nominal_at` the occurrence `send_at` stands for before any business-day skip; `sent_count`
-- the sends made.
CREATE TABLE schedules (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id            bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    contact_id            bigint NOT NULL,
    ticket_id             bigint,
    user_id               bigint,
    whatsapp_id           bigint,
    body                  text NOT NULL DEFAULT '' CHECK (length(body) <= 10000),
    send_at               timestamptz NOT NULL,
    sent_at               timestamptz,
    status                text NOT NULL DEFAULT 'PENDENTE'
                          CHECK (status IN ('PENDENTE', 'AGENDADA', 'ENVIADA', 'ERRO')),
    last_error            text CHECK (length(last_error) <= 1000),
    save_message          boolean NOT NULL DEFAULT false,
    open_ticket           boolean NOT NULL DEFAULT false,
    media_path            text CHECK (length(media_path) <= 300),
    media_name            text CHECK (length(media_name) <= 255),
    recurrence            text NOT NULL DEFAULT 'none'
                          CHECK (recurrence IN ('none', 'minutes', 'days', 'weeks', 'months', 'cron')),
    recurrence_every      integer NOT NULL DEFAULT 1 CHECK (recurrence_every BETWEEN 1 AND 525600),
    cron                  text CHECK (length(cron) <= 255),
    recurrence_count      integer CHECK (recurrence_count BETWEEN 1 AND 100000),
    recurrence_until      timestamptz,
    skip_to_business_day  boolean NOT NULL DEFAULT false,
    sent_count            integer NOT NULL DEFAULT 0 CHECK (sent_count >= 0),
    anchor_at             timestamptz NOT NULL,
    nominal_at            timestamptz NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, id),
    CHECK (recurrence <> 'cron' OR cron IS NOT NULL),
    FOREIGN KEY (company_id, contact_id) REFERENCES contacts (company_id, id) ON DELETE CASCADE,
    FOREIGN KEY (company_id, ticket_id) REFERENCES tickets (company_id, id) ON DELETE SET NULL (ticket_id),
    FOREIGN KEY (company_id, user_id) REFERENCES users (company_id, id) ON DELETE SET NULL (user_id),
    FOREIGN KEY (company_id, whatsapp_id) REFERENCES whatsapps (company_id, id) ON DELETE SET NULL (whatsapp_id)
);
-- the list (newest first, as ticketz), and its filters
CREATE INDEX schedules_company_idx ON schedules (company_id, created_at DESC, id DESC);
CREATE INDEX schedules_contact_idx ON schedules (company_id, contact_id);
CREATE INDEX schedules_user_idx ON schedules (company_id, user_id);
-- the foreign keys' other sides (a deleted ticket or connection clears its schedules' reference)
CREATE INDEX schedules_ticket_idx ON schedules (ticket_id) WHERE ticket_id IS NOT NULL;
CREATE INDEX schedules_whatsapp_idx ON schedules (whatsapp_id) WHERE whatsapp_id IS NOT NULL;
