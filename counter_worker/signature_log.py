"""The signature log's appender, run by the counter worker as a task of its own.

It polls ``log_events`` at the worker's poll interval and appends what waits, in
batches (countersign_domain/signature_log/appender.py); the signing request never waits
on it. Several workers share the petitions through row locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from countersign_core.connections import TRANSIENT_ERRORS
from countersign_core.settings import Settings
from countersign_domain.signature_log.appender import LogAppender
from countersign_domain.signature_log.heads import LogKey, load_log_key

log = logging.getLogger("counter_worker.signature_log")

Work = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def log_key(settings: Settings) -> LogKey | None:
    """The key heads are signed with; None when the log is off. Raises SigningKeyError."""
    if not settings.worker.signature_log:
        return None
    return load_log_key(settings.worker.log_signing_key, settings.dev.data_dir)


def appender_for(
    settings: Settings,
    pool: asyncpg.Pool,
    key: LogKey,
    on_step: Callable[[str], None] | None = None,
) -> LogAppender:
    """The appender; ``on_step`` is called with "log_before_commit" inside each append
    transaction (tests stop the worker there)."""
    before_commit = (lambda: on_step("log_before_commit")) if on_step else None
    return LogAppender(
        pool, key, batch_size=settings.worker.batch_size, before_commit=before_commit
    )


async def run_appender(appender: LogAppender, stopping: asyncio.Event, interval: float) -> None:
    """Append until ``stopping`` is set; the batch in hand is finished first."""
    backoff = 0.1
    registered = False
    while not stopping.is_set():
        try:
            if not registered:
                await appender.register_key()
                registered = True
            await appender.drain()
            backoff = 0.1
            delay = interval
        except TRANSIENT_ERRORS as exc:
            log.warning("server unavailable (%s); retrying in %.1fs", type(exc).__name__, backoff)
            delay, backoff = backoff, min(backoff * 2, 5.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)


def with_signature_log(work: Work, appender: LogAppender | None, interval: float) -> Work:
    """``work`` and, beside it, the appender (when the log is on)."""
    if appender is None:
        return work

    async def both(stopping: asyncio.Event) -> None:
        tasks = [
            asyncio.ensure_future(work(stopping)),
            asyncio.ensure_future(run_appender(appender, stopping, interval)),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            # One failed (a database not migrated, say): the other must not be left running
            # mid-query when the process ends.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    return both
