"""The counter worker's Prometheus metrics (served on COUNTERSIGN_WORKER_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BATCH_EVENTS = Histogram(
    "countersign_worker_batch_events",
    "Counter events per batch applied to Redis.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)

EVENTS_WAITING = Gauge(
    "countersign_worker_events_waiting",
    "Counter events committed in Postgres and not yet claimed by a worker.",
)

COMMIT_TO_REDIS = Histogram(
    "countersign_worker_lag_seconds",
    "Time from a change's commit in Postgres to its delta in Redis "
    "(the oldest event of each batch).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)

REBUILDS = Counter("countersign_worker_rebuilds", "Petition counters rebuilt from Postgres.")

BACKEND_ERRORS = Counter(
    "countersign_worker_backend_errors",
    "Times the worker found Postgres or Redis unavailable and backed off.",
)

LOST_IN_REDIS = Counter(
    "countersign_worker_redis_losses",
    "Times Redis was found to have lost applied batches (a failover, an old snapshot) "
    "and the petition was rebuilt.",
)
