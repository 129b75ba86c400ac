"""SQL of the counter protocol's Postgres side."""

# A hint only: which petition has the oldest unclaimed event. Taking no locks keeps it
# cheap; the claim below is what decides who gets which rows.
NEXT_PETITION = """
SELECT petition_id FROM counter_events WHERE batch_id IS NULL ORDER BY id LIMIT 1
"""

# One statement (one transaction) marks up to $3 unclaimed events of petition $1 as
# batch $2 and returns them summed per (country, source), with how many events and the
# age of the oldest (for the metrics). SKIP LOCKED lets several workers claim disjoint
# batches at the same time.
CLAIM_BATCH = """
WITH picked AS (
    SELECT id FROM counter_events
    WHERE batch_id IS NULL AND petition_id = $1
    ORDER BY id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE counter_events AS e SET batch_id = $2, claimed_at = now()
    FROM picked WHERE e.id = picked.id
    RETURNING e.country, e.source, e.delta, e.created_at
)
SELECT country, source, sum(delta)::bigint AS delta, count(*)::int AS events,
       extract(epoch FROM clock_timestamp() - min(created_at))::float8 AS age
FROM claimed GROUP BY country, source
"""

BATCH_DELTAS = """
SELECT country, source, sum(delta)::bigint AS delta, count(*)::int AS events,
       extract(epoch FROM clock_timestamp() - min(created_at))::float8 AS age
FROM counter_events WHERE batch_id = $1
GROUP BY country, source
"""

# For the events-waiting gauge; the table holds only what the workers have not drained.
EVENTS_WAITING = "SELECT count(*) FROM counter_events WHERE batch_id IS NULL"

ACK_BATCH = "DELETE FROM counter_events WHERE batch_id = $1"

# Batches whose claim is older than the lease: their worker may be dead or frozen.
# Whether one is really abandoned is decided in Redis, by taking its lease.
STALE_BATCHES = """
SELECT batch_id::text, min(petition_id) AS petition_id
FROM counter_events
WHERE batch_id IS NOT NULL AND claimed_at < now() - make_interval(secs => $1)
GROUP BY batch_id
LIMIT 100
"""

EXISTING_BATCHES = """
SELECT DISTINCT batch_id::text FROM counter_events WHERE batch_id = ANY($1::uuid[])
"""

PETITION_IDS = "SELECT id FROM petitions ORDER BY id"

# The rebuild's snapshot: these three run in one REPEATABLE READ transaction.
COUNTED_SIGNATURES = """
SELECT country, coalesce(source, '') AS source, count(*) AS n
FROM signatures
WHERE petition_id = $1 AND counted
GROUP BY 1, 2
"""

CLAIM_ALL_UNCLAIMED = """
UPDATE counter_events SET batch_id = $2, claimed_at = now()
WHERE petition_id = $1 AND batch_id IS NULL
"""

BATCHES_IN_FLIGHT = """
SELECT DISTINCT batch_id::text FROM counter_events
WHERE petition_id = $1 AND batch_id IS NOT NULL AND batch_id <> $2
"""
