"""SQL of the mail sender."""

# Serialises claims across every sender, so that two of them never both take the last
# room under the global ceiling. Any constant works; it only has to be the same everywhere.
CLAIM_LOCK = 0x6D61696C  # "mail"

# Emails sent within the last $1 seconds, and those in flight (claimed, not yet recorded:
# a dead sender's stay so until retaken, since they may have gone).
SENT_OR_IN_FLIGHT = """
SELECT (SELECT count(*) FROM email_jobs WHERE sent_at > now() - make_interval(secs => $1))
     + (SELECT count(*) FROM email_jobs
        WHERE claimed_at IS NOT NULL AND sent_at IS NULL AND failed_at IS NULL)
"""

# One statement claims up to $1 due jobs: their next_attempt_at moves to the end of a
# lease of $2 seconds (a sender that dies holding them loses nothing: they come due
# again then), and each gets its Message-ID at its first claim, kept for every later
# one. SKIP LOCKED lets several senders claim disjoint batches. Held jobs (a suspect's)
# are never due. Jobs with nothing left to do are closed instead: a confirmation whose
# signature (or the partner's submission it is about) was confirmed meanwhile, erased or
# invalidated, or whose petition closed; a staff sign-in link used, expired, or whose
# account was removed.
#
# The per-address ceiling (confirmations): at most $4 emails (NULL: no ceiling) to one
# recipient address, every petition together, within $5 seconds, counting those sent and
# in flight. A job beyond it waits (``address_ceiling``) until the oldest of them leaves
# the window. The address's signatures are found through the (petition_id, email_hash)
# unique index, one look-up per petition. (Over the ceiling within this batch alone, the
# window starts now.)
CLAIM = """
WITH due AS (
    SELECT j.id, j.kind, j.next_attempt_at, s.email_hash,
           CASE j.kind
               WHEN 'confirmation' THEN
                   s.erased_at IS NULL AND s.invalidated_at IS NULL
                   AND countersign_petition_open(p)
                   AND CASE WHEN j.submission_id IS NULL THEN s.confirmed_at IS NULL
                            ELSE ps.confirmed_at IS NULL END
               ELSE l.used_at IS NULL AND l.expires_at > now() AND a.removed_at IS NULL
           END AS deliverable
    FROM email_jobs j
    LEFT JOIN signatures s ON s.id = j.signature_id
    LEFT JOIN petitions p ON p.id = s.petition_id
    LEFT JOIN partner_submissions ps ON ps.id = j.submission_id
    LEFT JOIN staff_sign_in_links l ON l.id = j.sign_in_link_id
    LEFT JOIN staff_accounts a ON a.id = l.account_id
    WHERE j.sent_at IS NULL AND j.failed_at IS NULL AND NOT j.held
      AND j.next_attempt_at <= now()
    ORDER BY j.next_attempt_at, j.id
    LIMIT $1
    FOR UPDATE OF j SKIP LOCKED
), recipients AS (
    SELECT r.email_hash, count(j.id) AS used,
           min(coalesce(j.sent_at, now())) AS oldest
    FROM (SELECT DISTINCT email_hash FROM due
          WHERE deliverable AND email_hash IS NOT NULL AND $4::integer IS NOT NULL) r
    CROSS JOIN petitions p
    JOIN signatures s ON s.petition_id = p.id AND s.email_hash = r.email_hash
    JOIN email_jobs j ON j.signature_id = s.id
    WHERE j.sent_at > now() - make_interval(secs => $5)
       OR (j.claimed_at IS NOT NULL AND j.sent_at IS NULL AND j.failed_at IS NULL)
    GROUP BY r.email_hash
), ranked AS (
    SELECT d.id, r.oldest,
           d.email_hash IS NOT NULL
           AND coalesce(r.used, 0)
               + row_number() OVER (PARTITION BY d.email_hash ORDER BY d.next_attempt_at, d.id)
               > $4 AS over_ceiling
    FROM due d LEFT JOIN recipients r USING (email_hash)
    WHERE d.deliverable
), closed AS (
    UPDATE email_jobs j
    SET failed_at = now(),
        last_error = CASE due.kind WHEN 'confirmation' THEN 'nothing_to_confirm'
                                   ELSE 'link_unusable' END
    FROM due WHERE j.id = due.id AND NOT due.deliverable
), postponed AS (
    UPDATE email_jobs j
    SET next_attempt_at = coalesce(ranked.oldest, now()) + make_interval(secs => $5),
        last_error = 'address_ceiling'
    FROM ranked WHERE j.id = ranked.id AND ranked.over_ceiling
), claimed AS (
    UPDATE email_jobs j
    SET attempts = j.attempts + 1,
        next_attempt_at = now() + make_interval(secs => $2),
        claimed_at = now(),
        message_id = coalesce(
            j.message_id, '<' || replace(gen_random_uuid()::text, '-', '') || '@' || $3 || '>'
        )
    FROM ranked WHERE j.id = ranked.id AND ranked.over_ceiling IS NOT TRUE
    RETURNING j.id, j.kind, j.signature_id, j.submission_id, j.sign_in_link_id, j.language,
              j.message_id, j.attempts
)
SELECT c.id, c.kind, c.signature_id, c.submission_id, s.petition_id,
       coalesce(s.email, a.email) AS email, coalesce(t.title, p.title) AS title,
       coalesce(t.lang, p.default_lang) AS title_lang, p.data_controller, p.privacy_policy_url,
       l.nonce AS sign_in_nonce, c.language, c.message_id, c.attempts
FROM claimed c
LEFT JOIN signatures s ON s.id = c.signature_id
LEFT JOIN petitions p ON p.id = s.petition_id
LEFT JOIN petition_translations t ON t.petition_id = p.id AND t.lang = c.language
LEFT JOIN staff_sign_in_links l ON l.id = c.sign_in_link_id
LEFT JOIN staff_accounts a ON a.id = l.account_id
ORDER BY c.id
"""

# The server accepted the message. Recorded whoever holds the job now: it was sent.
MARK_SENT = "UPDATE email_jobs SET sent_at = now(), last_error = NULL WHERE id = $1"

# Outcomes other than "sent" are recorded only by the holder of the latest claim ($2).
RETRY_LATER = """
UPDATE email_jobs
SET next_attempt_at = now() + make_interval(secs => $3), last_error = $4, claimed_at = NULL
WHERE id = $1 AND attempts = $2 AND sent_at IS NULL AND failed_at IS NULL
"""

MARK_FAILED = """
UPDATE email_jobs SET failed_at = now(), last_error = $3
WHERE id = $1 AND attempts = $2 AND sent_at IS NULL AND failed_at IS NULL
"""

# Give unsent jobs back at once (stopping, or too little lease left), without counting
# the claim as an attempt.
RELEASE = """
UPDATE email_jobs j SET next_attempt_at = now(), attempts = j.attempts - 1, claimed_at = NULL
FROM unnest($1::bigint[], $2::integer[]) AS held(id, attempts)
WHERE j.id = held.id AND j.attempts = held.attempts
  AND j.sent_at IS NULL AND j.failed_at IS NULL
"""

# Emails held back, by reason: a suspect's (until staff release it), and those waiting
# for room under the per-address ceiling (the predicate is email_jobs_held_back's).
HELD_BACK = """
SELECT count(*) FILTER (WHERE held) AS suspect,
       count(*) FILTER (WHERE NOT held AND last_error = 'address_ceiling'
                        AND next_attempt_at > now()) AS address_ceiling
FROM email_jobs
WHERE sent_at IS NULL AND failed_at IS NULL AND (held OR last_error = 'address_ceiling')
"""
