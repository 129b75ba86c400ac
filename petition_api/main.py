"""The API process: ``countersign api`` or ``python -m petition_api``."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from types import FrameType

from aiohttp import web
from prometheus_client import multiprocess

from countersign_core.connections import connection_trouble
from countersign_core.metrics import MULTIPROCESS_ENV, serve_metrics
from countersign_core.runtime import bound_socket, configure_logging, event_loop_factory, fail
from countersign_core.settings import Settings, SettingsError, load_settings
from countersign_core.status import StatusCollector
from countersign_core.texts import TextCatalog, TextsError
from petition_api.app import create_app

log = logging.getLogger("petition_api")


CHANGE_PORT = "choose another port with --port or COUNTERSIGN_PORT"


def serve_one(
    settings: Settings,
    host: str,
    port: int,
    reuse_port: bool = False,
    metrics: bool = True,
    sock: socket.socket | None = None,
) -> None:
    """Serve on ``sock`` (a bound socket handed over, as ``countersign dev`` does), or on
    host:port. A port in use, or a database that cannot be reached at start, ends the
    process with one line."""
    configure_logging(settings.log_level)
    sock = sock or bound_socket(host, port, change=CHANGE_PORT, reuse_port=reuse_port)
    if metrics and settings.metrics.api_port:
        serve_api_metrics(settings, settings.metrics.api_port)
    address = url_of(sock)
    database_url, redis_url = settings.require_servers()
    try:
        web.run_app(
            create_app(settings),
            sock=sock,
            # petition_api.observability writes the access log, without client details.
            access_log=None,
            # Called once the socket listens: only then is "listening" true.
            print=lambda _: log.info("listening on %s", address),
            loop=event_loop_factory()(),
            shutdown_timeout=10,
        )
    except Exception as exc:
        # The start-up opens the database pool: what fails there is said in words.
        if (trouble := connection_trouble(exc, database_url, redis_url)) is None:
            raise
        fail(trouble, 1)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_api_metrics(settings: Settings, port: int) -> None:
    """The API's metrics, and the status of the workers and senders (read at each scrape)."""
    assert settings.database.url
    status = StatusCollector(
        settings.database.url, transaction_pooler=settings.database.transaction_pooler
    )
    serve_metrics(settings.metrics.host, port, collectors=[status])


def serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    """Serve on host:port; with several workers, each process binds the port with
    SO_REUSEPORT and the kernel spreads connections between them."""
    if workers == 1:
        serve_one(settings, host, port)
        return
    configure_logging(settings.log_level)
    # Each process binds the port itself (SO_REUSEPORT); this one checks first that it can
    # be had, and fixes the port that 0 (any free port) stands for.
    with bound_socket(host, port, change=CHANGE_PORT, reuse_port=True) as probe:
        port = probe.getsockname()[1]
    metrics_dir = None
    if settings.metrics.api_port:
        # Each process writes its samples here; this one serves their sum
        # (countersign_core.metrics).
        metrics_dir = tempfile.mkdtemp(prefix="countersign-metrics-")
        os.environ[MULTIPROCESS_ENV] = metrics_dir  # inherited by the children below
        serve_api_metrics(settings, settings.metrics.api_port)
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=serve_one, args=(settings, host, port, True, False), daemon=False)
        for _ in range(workers)
    ]
    for child in children:
        child.start()

    def stop(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.is_alive() and child.pid:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.join()
        if metrics_dir and child.pid:
            multiprocess.mark_process_dead(child.pid)  # type: ignore[no-untyped-call]
    if metrics_dir:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    sys.exit(max((child.exitcode or 0) for child in children))


def check(settings: Settings) -> None:
    """Raise SettingsError or TextsError unless the API can start with these settings."""
    settings.require_servers()
    settings.require_secret_key()
    TextCatalog.load(settings.texts_dir)


def main() -> None:
    try:
        settings = load_settings()
        check(settings)
    except (SettingsError, TextsError) as exc:
        fail(str(exc))
    serve(settings, settings.api.host, settings.api.port)
