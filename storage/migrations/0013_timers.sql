-- Version 13: durable timers (DESIGN §7b "Every wait is a durable timer"; issue 12, point 1).
--
-- A timer is a row: what fires (`kind`: which owner's handler gets it, `key`: what it is about, e.g.
-- 'ticket:42:inactivity', `payload`), when (`due_at`), and where it is in its life:
--   pending → claimed (the scheduler handed it to its owner) → done (the owner's effect committed)
--                                                             → failed (given up, `last_error` says why)
-- A key has at most one live (pending or claimed) timer per company and kind: scheduling it again moves
-- that one (new due_at and payload, back to pending) and bumps `generation`, so an owner still handling
-- the old claim cannot complete it any more (storage/timers.py). A cancelled timer is deleted.
-- `attempts` counts the claims of this generation; `claimed_at` is set while claimed; `done_at` is when it
-- became done or failed (the housekeeper deletes those rows a week later).
CREATE TABLE timers (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id  bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    due_at      timestamptz NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}',
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'claimed', 'done', 'failed')),
    generation  integer NOT NULL DEFAULT 1,
    attempts    integer NOT NULL DEFAULT 0,
    claimed_at  timestamptz,
    done_at     timestamptz,
    last_error  text CHECK (length(last_error) <= 2000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- one live timer per key: schedule's ON CONFLICT target
CREATE UNIQUE INDEX timers_live_key ON timers (company_id, kind, key) WHERE state IN ('pending', 'claimed');
-- the scheduler's claim and its sleep (min(due_at) of pending rows)
CREATE INDEX timers_due_idx ON timers (due_at) WHERE state = 'pending';
-- claims past their lease, and the oldest claim (when the next lease check is due): `claimed_at` is set
-- only while a timer is claimed. Not a partial index on state = 'claimed': the planner took it for the
-- completions (`state = 'claimed'` among their conditions) and walked every entry done rows had left in it.
CREATE INDEX timers_claimed_idx ON timers (claimed_at) WHERE claimed_at IS NOT NULL;
-- the housekeeper's prune of finished rows
CREATE INDEX timers_finished_idx ON timers (done_at) WHERE state IN ('done', 'failed');
