"""The API's Prometheus metrics, defined once so any module can import and update them.

Served by countersign_core.metrics on COUNTERSIGN_METRICS_PORT, not on the API's own port.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUEST_DURATION = Histogram(
    "countersign_http_request_duration_seconds",
    "Time to answer a request, by route (its pattern, never the raw path) and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# Live count streams (server-sent events) open now: up when one opens, down when it ends
# (petition_api/live_hub.py, LiveHub.watch).
LIVE_STREAMS_OPEN = Gauge(
    "countersign_live_streams_open",
    "Live count streams open.",
    multiprocess_mode="livesum",
)

RATE_LIMITS_SKIPPED = Counter(
    "countersign_rate_limits_skipped",
    "Signatures taken without rate limit checks because Redis did not answer.",
)

COUNTS_SERVED_STALE = Counter(
    "countersign_counts_served_stale",
    "Count reads answered from the last known figures because Redis did not have them.",
)
