"""SQL of the mail sender."""

# One statement claims up to $1 due jobs: their next_attempt_at moves to the end of a
# lease of $2 seconds (a sender that dies holding them loses nothing: they come due
# again then), and each gets its Message-ID at its first claim, kept for every later
# one. SKIP LOCKED lets several senders claim disjoint batches. Jobs with nothing left
# to confirm (confirmed meanwhile, erased, or the petition closed) are closed instead.
CLAIM = """
WITH due AS (
    SELECT j.id,
           s.confirmed_at IS NULL AND s.erased_at IS NULL
           AND countersign_petition_open(p) AS deliverable
    FROM email_jobs j
    JOIN signatures s ON s.id = j.signature_id
    JOIN petitions p ON p.id = s.petition_id
    WHERE j.sent_at IS NULL AND j.failed_at IS NULL AND j.next_attempt_at <= now()
    ORDER BY j.next_attempt_at, j.id
    LIMIT $1
    FOR UPDATE OF j SKIP LOCKED
), closed AS (
    UPDATE email_jobs j SET failed_at = now(), last_error = 'nothing_to_confirm'
    FROM due WHERE j.id = due.id AND NOT due.deliverable
), claimed AS (
    UPDATE email_jobs j
    SET attempts = j.attempts + 1,
        next_attempt_at = now() + make_interval(secs => $2),
        message_id = coalesce(
            j.message_id, '<' || replace(gen_random_uuid()::text, '-', '') || '@' || $3 || '>'
        )
    FROM due WHERE j.id = due.id AND due.deliverable
    RETURNING j.id, j.signature_id, j.language, j.message_id, j.attempts
)
SELECT c.id, c.signature_id, s.petition_id, s.email, coalesce(t.title, p.title) AS title,
       coalesce(t.lang, p.default_lang) AS title_lang, c.language, c.message_id, c.attempts
FROM claimed c
JOIN signatures s ON s.id = c.signature_id
JOIN petitions p ON p.id = s.petition_id
LEFT JOIN petition_translations t ON t.petition_id = p.id AND t.lang = c.language
ORDER BY c.id
"""

# The server accepted the message. Recorded whoever holds the job now: it was sent.
MARK_SENT = "UPDATE email_jobs SET sent_at = now(), last_error = NULL WHERE id = $1"

# Outcomes other than "sent" are recorded only by the holder of the latest claim ($2).
RETRY_LATER = """
UPDATE email_jobs SET next_attempt_at = now() + make_interval(secs => $3), last_error = $4
WHERE id = $1 AND attempts = $2 AND sent_at IS NULL AND failed_at IS NULL
"""

MARK_FAILED = """
UPDATE email_jobs SET failed_at = now(), last_error = $3
WHERE id = $1 AND attempts = $2 AND sent_at IS NULL AND failed_at IS NULL
"""

# Give unsent jobs back at once (stopping, or too little lease left), without counting
# the claim as an attempt.
RELEASE = """
UPDATE email_jobs j SET next_attempt_at = now(), attempts = j.attempts - 1
FROM unnest($1::bigint[], $2::integer[]) AS held(id, attempts)
WHERE j.id = held.id AND j.attempts = held.attempts
  AND j.sent_at IS NULL AND j.failed_at IS NULL
"""
