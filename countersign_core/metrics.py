"""Serving Prometheus metrics on their own address, never on the public API port.

The API runs as several processes (``countersign api --workers N``). They use
prometheus-client's multiprocess mode: each process writes its samples to files in one
folder (PROMETHEUS_MULTIPROC_DIR) and the parent serves the sum of all of them on one
port. One scrape target per API instance, counters that add up across processes, and
nothing for Prometheus to know about the number of processes. A single process (one API
worker, or the counter worker) serves its own registry directly.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

log = logging.getLogger("countersign_core.metrics")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_registry() -> CollectorRegistry:
    """This process's registry, or the sum over every process's files in multiprocess mode."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def serve_metrics(host: str, port: int) -> None:
    """Serve ``/metrics`` on host:port from a daemon thread."""
    start_http_server(port, addr=host, registry=metrics_registry())
    log.info("metrics on http://%s:%d/metrics", host, port)
