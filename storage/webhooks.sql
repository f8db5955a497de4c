-- Webhooks and their deliveries (storage/webhooks.py; the tables and triggers: migrations/0023_webhooks.sql).

-- name: webhook_page
SELECT w.*, count(*) OVER () AS total FROM webhooks w
WHERE w.company_id = %(company_id)s
ORDER BY w.id
LIMIT %(limit)s OFFSET %(offset)s

-- name: webhook_count
SELECT count(*) AS n FROM webhooks WHERE company_id = %(company_id)s

-- name: webhook_show
SELECT * FROM webhooks WHERE id = %(id)s AND company_id = %(company_id)s

-- name: webhook_insert
INSERT INTO webhooks (company_id, url, events, enabled, description, secret)
VALUES (%(company_id)s, %(url)s, %(events)s, %(enabled)s, %(description)s, %(secret)s)
RETURNING *

-- name: webhook_update
-- Enabling an endpoint clears why it was disabled and its failing streak (the admin says it works again).
UPDATE webhooks SET url = coalesce(%(url)s, url), events = coalesce(%(events)s, events),
    description = coalesce(%(description)s, description), enabled = coalesce(%(enabled)s, enabled),
    disabled_reason = CASE WHEN %(enabled)s IS TRUE THEN NULL ELSE disabled_reason END,
    disabled_at = CASE WHEN %(enabled)s IS TRUE THEN NULL ELSE disabled_at END,
    failing_since = CASE WHEN %(enabled)s IS TRUE THEN NULL ELSE failing_since END,
    updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING *

-- name: webhook_set_secret
UPDATE webhooks SET secret = %(secret)s, updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING *

-- name: webhook_delete
DELETE FROM webhooks WHERE id = %(id)s AND company_id = %(company_id)s RETURNING id

-- name: delivery_test
-- `POST /webhooks/:id/test`: a delivery like the others, of the event webhook.test, through the same actor.
INSERT INTO webhook_deliveries (company_id, webhook_id, event, payload)
SELECT company_id, id, 'webhook.test',
       jsonb_build_object('type', 'webhook.test', 'timestamp', now(),
                          'data', jsonb_build_object('webhookId', id, 'companyId', company_id))
FROM webhooks WHERE id = %(id)s AND company_id = %(company_id)s
RETURNING *

-- name: delivery_page
SELECT d.*, count(*) OVER () AS total FROM webhook_deliveries d
WHERE d.webhook_id = %(webhook_id)s AND d.company_id = %(company_id)s
  AND (%(status)s::text IS NULL OR d.status = %(status)s)
ORDER BY d.id DESC
LIMIT %(limit)s OFFSET %(offset)s

-- name: delivery_count
SELECT count(*) AS n FROM webhook_deliveries
WHERE webhook_id = %(webhook_id)s AND company_id = %(company_id)s
  AND (%(status)s::text IS NULL OR status = %(status)s)

-- name: delivery_defer_followers
-- Due rows that wait behind the first pending delivery of their order key (its conversation's) take its
-- time, at least `defer` seconds on: the claims stop reading them until then, so an endpoint that is down
-- with a backlog costs one read of it per retry, not per poll. (A success or a give-up makes them due again.)
-- Endpoints in `full` are skipped (the claim does not read them either).
UPDATE webhook_deliveries f SET next_attempt_at = greatest(h.head_at, now() + make_interval(secs => %(defer)s))
FROM (SELECT d.id, (SELECT e.next_attempt_at FROM webhook_deliveries e
                    WHERE e.webhook_id = d.webhook_id AND e.order_key = d.order_key AND e.status = 'pending'
                      AND e.id < d.id
                    ORDER BY e.id LIMIT 1) AS head_at
      FROM webhooks w CROSS JOIN LATERAL (
          SELECT d.id, d.webhook_id, d.order_key FROM webhook_deliveries d
          WHERE d.webhook_id = w.id AND d.status = 'pending' AND d.next_attempt_at <= now()
            AND d.order_key IS NOT NULL
          ORDER BY d.next_attempt_at LIMIT %(limit)s) d
      WHERE w.enabled AND NOT (w.id = ANY (%(full)s::bigint[]))) h
WHERE f.id = h.id AND h.head_at IS NOT NULL

-- name: delivery_candidates
-- Due deliveries of the enabled endpoints not in `full`, at most `per_endpoint` of each, each the first
-- pending one of its order key (a conversation's next waits for the previous), locked for this claim.
SELECT d.id, d.uid, d.company_id, d.webhook_id, d.event, d.payload, d.attempts, d.order_key,
       extract(epoch FROM now() - d.created_at)::float8 AS age, w.url, w.secret
FROM webhooks w CROSS JOIN LATERAL (
    SELECT d.* FROM webhook_deliveries d
    WHERE d.webhook_id = w.id AND d.status = 'pending' AND d.next_attempt_at <= now()
      AND (d.order_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM webhook_deliveries e
            WHERE e.webhook_id = d.webhook_id AND e.order_key = d.order_key AND e.status = 'pending'
              AND e.id < d.id))
    ORDER BY d.next_attempt_at, d.id
    LIMIT %(per_endpoint)s
    FOR UPDATE SKIP LOCKED) d
WHERE w.enabled AND NOT (w.id = ANY (%(full)s::bigint[]))
ORDER BY d.next_attempt_at, d.id
LIMIT %(limit)s

-- name: delivery_lease
-- The claimed attempt: counted, and leased until `lease` seconds from now (a process killed mid-post
-- leaves it due again then).
UPDATE webhook_deliveries SET attempts = attempts + 1, last_attempt_at = now(),
    next_attempt_at = now() + make_interval(secs => %(lease)s)
WHERE id = ANY (%(ids)s::bigint[])

-- name: delivery_succeeded
UPDATE webhook_deliveries SET status = 'delivered', finished_at = now(), last_status_code = %(code)s,
    last_response = %(response)s, last_error = NULL
WHERE id = %(id)s AND status = 'pending'

-- name: delivery_release_followers
-- The first pending delivery of an order key is done (delivered or failed): the next ones are due now.
UPDATE webhook_deliveries SET next_attempt_at = now()
WHERE webhook_id = %(webhook_id)s AND order_key = %(order_key)s AND status = 'pending' AND attempts = 0
  AND next_attempt_at > now()

-- name: webhook_succeeded
UPDATE webhooks SET failing_since = NULL WHERE id = %(id)s AND failing_since IS NOT NULL

-- name: delivery_retry
-- A failed attempt: due again at `delay` seconds from now, or failed for good when `give_up`.
UPDATE webhook_deliveries SET last_status_code = %(code)s, last_response = %(response)s, last_error = %(error)s,
    status = CASE WHEN %(give_up)s THEN 'failed' ELSE 'pending' END,
    finished_at = CASE WHEN %(give_up)s THEN now() END,
    next_attempt_at = now() + make_interval(secs => %(delay)s)
WHERE id = %(id)s AND status = 'pending'

-- name: webhook_failed
-- The endpoint's failing streak: begun at its first failure since a success; past `disable_after` seconds
-- it is disabled, with the reason its admins see (returned: the row when this disabled it).
UPDATE webhooks SET
    failing_since = coalesce(failing_since, now()),
    enabled = CASE WHEN failing_since < now() - make_interval(secs => %(disable_after)s) THEN false ELSE enabled END,
    disabled_at = CASE WHEN failing_since < now() - make_interval(secs => %(disable_after)s) THEN now()
                       ELSE disabled_at END,
    disabled_reason = CASE WHEN failing_since < now() - make_interval(secs => %(disable_after)s)
                           THEN %(reason)s ELSE disabled_reason END
WHERE id = %(id)s AND enabled
RETURNING id, company_id, enabled, disabled_reason

-- name: deliveries_prune
-- Finished deliveries past their keeping time, a bounded slice at a time.
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries WHERE status <> 'pending'
      AND finished_at < now() - make_interval(secs => %(keep)s) LIMIT %(limit)s)
