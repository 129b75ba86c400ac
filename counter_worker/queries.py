"""SQL of the counter protocol's Postgres side."""

# A hint only: which petition has the oldest unclaimed event. Taking no locks keeps it
# cheap; the claim below is what decides who gets which rows.
NEXT_PETITION = """
SELECT petition_id FROM counter_events WHERE batch_id IS NULL ORDER BY id LIMIT 1
"""

# One statement (one transaction) marks up to $3 unclaimed events of petition $1 as
# batch $2 and returns them summed per (country, source), with how many events and the
# age of the oldest (for the metrics). SKIP LOCKED lets several workers claim disjoint
# batches at the same time. In the same snapshot, the petition's sequence state: what the
# applied-batch sequence must be at least in Redis (the highest number acknowledged), and
# whether Redis was found to have lost batches since the last rebuild (sql/012_scale.sql).
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
       extract(epoch FROM clock_timestamp() - min(created_at))::float8 AS age,
       (SELECT coalesce(max(seq), 0) FROM counter_acks WHERE petition_id = $1) AS acked_seq,
       EXISTS (SELECT FROM counter_divergences WHERE petition_id = $1) AS diverged
FROM claimed GROUP BY country, source
"""

# The claimed batch $2 of petition $1, as CLAIM_BATCH returns it.
BATCH_DELTAS = """
SELECT country, source, sum(delta)::bigint AS delta, count(*)::int AS events,
       extract(epoch FROM clock_timestamp() - min(created_at))::float8 AS age,
       (SELECT coalesce(max(seq), 0) FROM counter_acks WHERE petition_id = $1) AS acked_seq,
       EXISTS (SELECT FROM counter_divergences WHERE petition_id = $1) AS diverged
FROM counter_events WHERE batch_id = $2
GROUP BY country, source
"""

# For the events-waiting gauge; the table holds only what the workers have not drained.
EVENTS_WAITING = "SELECT count(*) FROM counter_events WHERE batch_id IS NULL"

# Acknowledge batch $1 of petition $2, applied in Redis as number $3 of its sequence (0:
# covered by a rebuild, no number of its own): delete its events and record the number.
# A number already recorded for another batch means that Redis handed it out twice, so
# it lost the first: the petition is marked diverged, and the statement says so.
ACK_BATCH = """
WITH acked AS (
    DELETE FROM counter_events WHERE batch_id = $1
), recorded AS (
    INSERT INTO counter_acks (petition_id, seq, batch_id)
    SELECT $2::bigint, $3::bigint, $1::uuid WHERE $3::bigint > 0
    ON CONFLICT (petition_id, seq) DO UPDATE SET seq = EXCLUDED.seq
    RETURNING batch_id
), flagged AS (
    INSERT INTO counter_divergences (petition_id)
    SELECT $2::bigint FROM recorded WHERE batch_id <> $1::uuid
    ON CONFLICT DO NOTHING
)
SELECT EXISTS (SELECT FROM recorded WHERE batch_id <> $1::uuid)
"""

# Numbers far below a petition's highest serve no check any more: a Redis that went
# back that far is behind the highest, which the apply script sees.
TRIM_ACKS = """
DELETE FROM counter_acks AS a
USING (SELECT petition_id, max(seq) AS top FROM counter_acks GROUP BY petition_id) AS t
WHERE a.petition_id = t.petition_id AND a.seq < t.top - $1
"""

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

# Every petition with its sequence state (read before Redis is, so that a batch
# acknowledged meanwhile cannot look lost).
PETITION_SEQUENCES = """
SELECT p.id, coalesce(a.top, 0) AS acked_seq, d.petition_id IS NOT NULL AS diverged
FROM petitions AS p
LEFT JOIN LATERAL (SELECT max(seq) AS top FROM counter_acks WHERE petition_id = p.id) AS a
    ON true
LEFT JOIN counter_divergences AS d ON d.petition_id = p.id
ORDER BY p.id
"""

# The rebuild's snapshot: these run in one REPEATABLE READ transaction.
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

ACKED_SEQ = "SELECT coalesce(max(seq), 0) FROM counter_acks WHERE petition_id = $1"

# A divergence found before this snapshot is settled by the rebuild.
CLEAR_DIVERGENCE = "DELETE FROM counter_divergences WHERE petition_id = $1"
