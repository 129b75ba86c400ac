"""The API process: ``countersign api`` or ``python -m petition_api``."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
from types import FrameType

from aiohttp import web

from countersign.runtime import configure_logging, event_loop_factory, fail
from countersign.settings import Settings, SettingsError, load_settings
from countersign.texts import TextCatalog, TextsError
from petition_api.app import create_app
from petition_api.confirmation import AccessLogger

log = logging.getLogger("petition_api")

# No client address, user agent or referrer: those identify signers.
ACCESS_LOG_FORMAT = '"%r" %s %b %Tfs'


def serve_one(settings: Settings, host: str, port: int, reuse_port: bool = False) -> None:
    configure_logging(settings.log_level)
    log.info("listening on http://%s:%d", host, port)
    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        reuse_port=reuse_port,
        access_log_format=ACCESS_LOG_FORMAT,
        access_log_class=AccessLogger,
        print=None,
        loop=event_loop_factory()(),
        shutdown_timeout=10,
    )


def serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    """Serve on host:port; with several workers, each process binds the port with
    SO_REUSEPORT and the kernel spreads connections between them."""
    if workers == 1:
        serve_one(settings, host, port)
        return
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=serve_one, args=(settings, host, port, True), daemon=False)
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
    serve(settings, settings.host, settings.port)
