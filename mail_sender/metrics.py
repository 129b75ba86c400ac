"""The mail sender's Prometheus metrics (served on COUNTERSIGN_MAIL_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SENT = Counter("countersign_mail_sent", "Emails the SMTP server accepted.")

RETRIED = Counter(
    "countersign_mail_retried",
    "Send attempts that failed for now (4xx replies, lost connections) and will be retried.",
)

FAILED = Counter(
    "countersign_mail_failed",
    "Email jobs given up: refused for good (5xx) or out of attempts.",
)

DUE = Gauge("countersign_mail_due", "Email jobs due to be sent now (the queue's depth).")

OLDEST_DUE_AGE = Gauge(
    "countersign_mail_oldest_due_age_seconds",
    "How long the longest-waiting due email job has been due (0 when none).",
)

HELD_BACK = Gauge(
    "countersign_mail_held_back",
    "Emails held back, by reason: suspect (a suspect signature's, until staff release it), "
    "address_ceiling (its recipient had as many as COUNTERSIGN_MAIL_LIMIT_ADDRESS allows), "
    "global_ceiling (due, while COUNTERSIGN_MAIL_LIMIT_GLOBAL is reached).",
    ["reason"],
)
