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
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app, multiprocess
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

log = logging.getLogger("countersign_core.metrics")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_registry() -> CollectorRegistry:
    """This process's registry, or the sum over every process's files in multiprocess mode."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


class Probes(Protocol):
    def alive(self) -> bool: ...
    def ready(self) -> bool: ...


def serve_metrics(
    host: str,
    port: int,
    *,
    probes: Probes | None = None,
    collectors: Iterable[Collector] = (),
) -> None:
    """Serve ``/metrics`` (and with ``probes``, ``/healthz`` and ``/readyz``) on host:port
    from a daemon thread. ``collectors`` are computed at each scrape, in that thread."""
    registry = metrics_registry()
    for collector in collectors:
        registry.register(collector)
    app = _with_probes(make_wsgi_app(registry), probes) if probes else make_wsgi_app(registry)

    class Server(ThreadingWSGIServer):
        address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    server = make_server(host, port, app, Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
    log.info("metrics on http://%s:%d/metrics", host, port)


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _with_probes(metrics_app: WsgiApp, probes: Probes) -> WsgiApp:
    checks = {"/healthz": probes.alive, "/readyz": probes.ready}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        check = checks.get(environ.get("PATH_INFO", ""))
        if check is None:
            return metrics_app(environ, start_response)
        ok = check()
        start_response(
            "200 OK" if ok else "503 Service Unavailable",
            [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")],
        )
        return [b"ok\n" if ok else b"unavailable\n"]

    return app


class _Quiet(WSGIRequestHandler):
    """No line per scrape or probe on stderr (prometheus-client's own server is quiet too)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass
