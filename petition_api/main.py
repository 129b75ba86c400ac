"""The API process: ``countersign api`` or ``python -m petition_api``."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from types import FrameType

from aiohttp import web
from prometheus_client import multiprocess

from countersign_core.metrics import MULTIPROCESS_ENV, serve_metrics
from countersign_core.runtime import configure_logging, event_loop_factory, fail
from countersign_core.settings import Settings, SettingsError, load_settings
from countersign_core.status import StatusCollector
from countersign_core.texts import TextCatalog, TextsError
from petition_api.app import create_app

log = logging.getLogger("petition_api")


def serve_one(
    settings: Settings, host: str, port: int, reuse_port: bool = False, metrics: bool = True
) -> None:
    configure_logging(settings.log_level)
    if metrics and settings.metrics.api_port:
        serve_api_metrics(settings, settings.metrics.api_port)
    log.info("listening on http://%s:%d", host, port)
    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        reuse_port=reuse_port,
        # petition_api.observability writes the access log, without client details.
        access_log=None,
        print=None,
        loop=event_loop_factory()(),
        shutdown_timeout=10,
    )


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
