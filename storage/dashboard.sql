-- The dashboard's and reports' queries (issue 17). Counters are per UTC hour (migration 0021); `since` is
-- the first hour's start and `until` excluded, both whole UTC hours for counters. The `*_raw` twins compute
-- the same figures from ticket_events: for zones whose offset is not whole hours, and as the benchmark's
-- reference.

-- name: hours_counters
SELECT hour, created, accepted, transferred, closed
FROM dashboard_hours
WHERE company_id = %(company_id)s AND hour >= %(since)s AND hour < %(until)s

-- name: hours_raw
-- per quarter hour: any zone's hour (:00, :30, :45 offsets) is a union of quarters
SELECT date_bin('15 minutes', created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS hour,
       count(*) FILTER (WHERE kind = 'created')::int AS created,
       count(*) FILTER (WHERE kind = 'accepted')::int AS accepted,
       count(*) FILTER (WHERE kind = 'transferred')::int AS transferred,
       count(*) FILTER (WHERE kind = 'closed')::int AS closed
FROM ticket_events
WHERE company_id = %(company_id)s AND created_at >= %(since)s AND created_at < %(until)s
  AND kind IN ('created', 'accepted', 'transferred', 'closed')
GROUP BY 1

-- name: statistics
SELECT sum(wait_s) / nullif(sum(wait_n), 0) AS avg_wait, sum(service_s) / nullif(sum(service_n), 0) AS avg_service,
       coalesce(sum(closed), 0)::int AS closed,
       (SELECT count(*) FROM contacts c WHERE c.company_id = %(company_id)s AND c.created_at >= %(since)s
                                          AND c.created_at < %(until)s)::int AS new_contacts
FROM dashboard_hours
WHERE company_id = %(company_id)s AND hour >= %(since)s AND hour < %(until)s

-- name: statistics_raw
SELECT avg(wait_s) AS avg_wait, avg(service_s) AS avg_service,
       count(*) FILTER (WHERE kind = 'closed')::int AS closed,
       (SELECT count(*) FROM contacts c WHERE c.company_id = %(company_id)s AND c.created_at >= %(since)s
                                          AND c.created_at < %(until)s)::int AS new_contacts
FROM ticket_events
WHERE company_id = %(company_id)s AND created_at >= %(since)s AND created_at < %(until)s
  AND kind IN ('accepted', 'closed')

-- name: status_tickets
SELECT t.status, t.queue_id, count(*)::int AS count, q.name AS queue_name, q.color AS queue_color
FROM tickets t LEFT JOIN queues q ON q.id = t.queue_id AND q.company_id = t.company_id
WHERE t.company_id = %(company_id)s AND t.status IN ('open', 'pending')
  AND (NOT %(no_groups)s OR NOT t.is_group)
GROUP BY t.status, t.queue_id, q.name, q.color
ORDER BY t.status, t.queue_id NULLS FIRST

-- name: status_users
SELECT u.id, u.name, u.online,
       (SELECT count(*) FROM tickets t WHERE t.company_id = u.company_id AND t.user_id = u.id
                                         AND t.status = 'open')::int AS open_count
FROM users u WHERE u.company_id = %(company_id)s
ORDER BY lower(u.name), u.id

-- name: tickets_now
SELECT count(*) FILTER (WHERE status = 'open')::int AS open, count(*) FILTER (WHERE status = 'pending')::int AS pending
FROM tickets WHERE company_id = %(company_id)s AND status IN ('open', 'pending')

-- name: new_leads
-- contacts whose first ticket was created in the period (the SaaS dashboard's "leads")
SELECT count(*)::int AS leads FROM contacts c
WHERE c.company_id = %(company_id)s AND c.created_at >= %(since)s AND c.created_at < %(until)s
  AND EXISTS (SELECT FROM tickets t WHERE t.contact_id = c.id AND t.company_id = c.company_id)

-- name: heatmap
SELECT hour, created FROM dashboard_hours
WHERE company_id = %(company_id)s AND hour >= %(since)s AND hour < %(until)s AND created > 0

-- name: csat
SELECT rate, count(*)::int AS n FROM user_ratings
WHERE company_id = %(company_id)s AND created_at >= %(since)s AND created_at < %(until)s
GROUP BY rate ORDER BY rate
