-- Durable timers (storage/timers.py; the table: migrations/0013_timers.sql).
-- Kept apart from queries.sql: these run on a caller's connection inside its own transaction.

-- name: timer_schedule
-- Create the key's live timer, or move it: new due_at and payload, pending again, the next generation (a
-- claim of the previous one can no longer complete), its attempts counted afresh.
INSERT INTO timers (company_id, kind, key, due_at, payload)
VALUES (%(company_id)s, %(kind)s, %(key)s, %(due_at)s, %(payload)s)
ON CONFLICT (company_id, kind, key) WHERE state IN ('pending', 'claimed') DO UPDATE
SET due_at = excluded.due_at, payload = excluded.payload, state = 'pending', generation = timers.generation + 1,
    attempts = 0, claimed_at = NULL, last_error = NULL, updated_at = now()
RETURNING id, company_id, kind, key, due_at, payload, generation, attempts;

-- name: timer_live
SELECT id, company_id, kind, key, due_at, payload, generation, attempts, state
FROM timers
WHERE company_id = %(company_id)s AND kind = %(kind)s AND key = %(key)s AND state IN ('pending', 'claimed');

-- name: timer_cancel
DELETE FROM timers
WHERE company_id = %(company_id)s AND kind = %(kind)s AND key = %(key)s AND state IN ('pending', 'claimed')
RETURNING id;

-- name: timer_complete
UPDATE timers SET state = 'done', done_at = now(), claimed_at = NULL, updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s AND state = 'claimed' AND generation = %(generation)s
RETURNING id;

-- name: timer_complete_many
-- A batch's claims: `ids`, and `claims` = {"<id>": [company_id, generation]}. Found by primary key, checked
-- against the object: no join for the planner to get wrong (a freshly claimed batch is not in the table's
-- statistics yet, and a join of it was planned as a nested loop: quadratic in the batch).
UPDATE timers t SET state = 'done', done_at = now(), claimed_at = NULL, updated_at = now()
WHERE t.id = ANY(%(ids)s::bigint[]) AND t.state = 'claimed'
  AND t.company_id = (%(claims)s::jsonb -> t.id::text ->> 0)::bigint
  AND t.generation = (%(claims)s::jsonb -> t.id::text ->> 1)::integer
RETURNING t.id;

-- name: timer_fail
UPDATE timers SET state = 'failed', done_at = now(), last_error = left(%(error)s, 2000), claimed_at = NULL,
    updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s AND state = 'claimed' AND generation = %(generation)s
RETURNING id;

-- name: timer_claim_due
-- The scheduler's claim: the earliest due pending timers of the given kinds (NULL: all), skipping rows
-- another claim (or a reschedule) holds; each claim counts as an attempt. The ids as an array, not a join:
-- a join of a large batch was planned as a hash over the whole table (a sequential scan per claim).
UPDATE timers SET state = 'claimed', claimed_at = %(now)s, attempts = attempts + 1, updated_at = now()
WHERE id = ANY (ARRAY (
    SELECT id FROM timers
    WHERE state = 'pending' AND due_at <= %(now)s AND (%(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s::text[]))
    ORDER BY due_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
RETURNING id, company_id, kind, key, due_at, payload, generation, attempts;

-- name: timer_next_due
-- What the scheduler sleeps for: the next due timer of its kinds, and the oldest claim (its lease's end).
SELECT (SELECT due_at FROM timers
        WHERE state = 'pending' AND (%(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s::text[]))
        ORDER BY due_at LIMIT 1) AS next_due_at,
       (SELECT min(claimed_at) FROM timers WHERE claimed_at IS NOT NULL AND state = 'claimed') AS oldest_claim_at;

-- name: timer_release
-- Claims handed back (their generation unchanged, so a reschedule meanwhile wins): pending again, due after a
-- backoff when the claim counts as a failed attempt, failed once `max_attempts` are spent; a claim that does
-- not count (the database was away, the scheduler stopped) is not an attempt and fires again at once.
UPDATE timers t
SET state = CASE WHEN %(counted)s AND t.attempts >= %(max_attempts)s THEN 'failed' ELSE 'pending' END,
    due_at = CASE WHEN %(counted)s
                  THEN %(now)s::timestamptz + make_interval(secs => least(%(backoff_max)s::float8,
                           %(backoff_initial)s::float8 * power(2, greatest(t.attempts - 1, 0))))
                  ELSE t.due_at END,
    attempts = CASE WHEN %(counted)s THEN t.attempts ELSE greatest(t.attempts - 1, 0) END,
    done_at = CASE WHEN %(counted)s AND t.attempts >= %(max_attempts)s THEN now() END,
    last_error = coalesce(left(%(error)s::text, 2000), t.last_error),
    claimed_at = NULL,
    updated_at = now()
WHERE t.id = ANY(%(ids)s::bigint[]) AND t.state = 'claimed'
  AND t.company_id = (%(claims)s::jsonb -> t.id::text ->> 0)::bigint
  AND t.generation = (%(claims)s::jsonb -> t.id::text ->> 1)::integer
RETURNING t.id, t.state;

-- name: timer_release_stale
-- Claims made at or before `before` that nobody completed: pending again (due at once), or failed when
-- `max_attempts` (NULL: never) are spent.
UPDATE timers
SET state = CASE WHEN %(max_attempts)s::integer IS NOT NULL AND attempts >= %(max_attempts)s::integer
                 THEN 'failed' ELSE 'pending' END,
    done_at = CASE WHEN %(max_attempts)s::integer IS NOT NULL AND attempts >= %(max_attempts)s::integer
                   THEN now() END,
    last_error = coalesce(%(error)s::text, last_error),
    claimed_at = NULL,
    updated_at = now()
WHERE claimed_at <= %(before)s AND state = 'claimed'
RETURNING id, state;

-- name: timer_count_pending
SELECT count(*) AS pending FROM timers WHERE state = 'pending';

-- name: timer_overview
-- The live timers of every company by kind, for the super admin's runtime view (api/runtime.py): pending, of
-- those already due at `now` (waiting for the scheduler), claimed (handed to an owner), the next due and the
-- oldest claim.
SELECT kind,
       count(*) FILTER (WHERE state = 'pending') AS pending,
       count(*) FILTER (WHERE state = 'pending' AND due_at <= %(now)s) AS due,
       count(*) FILTER (WHERE state = 'claimed') AS claimed,
       min(due_at) FILTER (WHERE state = 'pending') AS next_due_at,
       min(claimed_at) FILTER (WHERE state = 'claimed') AS oldest_claim_at
FROM timers
WHERE state IN ('pending', 'claimed')
GROUP BY kind
ORDER BY kind;

-- name: timer_prune
-- Finished timers older than `before`, a slice at a time (the caller repeats while a full slice went).
DELETE FROM timers
WHERE id IN (SELECT id FROM timers WHERE state IN ('done', 'failed') AND done_at < %(before)s LIMIT %(limit)s);
