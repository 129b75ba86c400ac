"""Process plumbing shared by the API and the worker: logging, the event loop, exits."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any, NoReturn, TypeVar

from countersign_core.connections import backend_trouble
from countersign_core.logs import configure_logging

__all__ = [
    "bound_socket",
    "cancel_and_wait",
    "configure_logging",
    "event_loop_factory",
    "fail",
    "in_background",
    "run",
    "run_or_explain",
    "run_until_signalled",
]

T = TypeVar("T")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # not on Windows; the standard loop works, only slower
        return asyncio.new_event_loop
    return uvloop.new_event_loop  # type: ignore[no-any-return,unused-ignore]


def run(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(main)


def run_or_explain(
    main: Coroutine[Any, Any, T], database_url: str, redis_url: str | None = None
) -> T:
    """``run(main)``; a failure of Postgres or Redis that escapes it (out of reach as it
    starts, refusing, not migrated: a service retries what is transient while it runs)
    ends the process with one line saying so, not a traceback."""
    try:
        return run(main)
    except Exception as exc:
        trouble = run(backend_trouble(exc, database_url, redis_url))
        if trouble is None:
            raise
        fail(trouble, 1)


def fail(message: str, code: int = 2) -> NoReturn:
    """Stop the process with one readable line instead of a traceback."""
    print(f"countersign: error: {message}", file=sys.stderr)
    sys.exit(code)


def bound_socket(host: str, port: int, *, change: str, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: one the system picks), not listening yet:
    the server that is handed it listens. A port that cannot be had ends the process with
    one line naming it and, for one in use, ``change``: how to pick another."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as every server does
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} of {host} is in use: stop what uses it, or {change}", 1)
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 1)
    return sock


async def run_until_signalled(
    work: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
    *,
    grace: float,
    log: logging.Logger,
    in_hand: str,
) -> None:
    """Run ``work(stopping)`` until it returns or SIGTERM/SIGINT sets ``stopping``; then
    let it finish what it has in hand, but for at most ``grace`` seconds: what is left
    unfinished is retaken by another process once its lease lapses."""
    stopping = asyncio.Event()

    def stop() -> None:
        log.info("stopping: finishing the %s in hand", in_hand)
        stopping.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    task = asyncio.create_task(work(stopping))
    await asyncio.wait({task, asyncio.create_task(stopping.wait())}, return_when="FIRST_COMPLETED")
    try:
        await asyncio.wait_for(task, grace)
    except TimeoutError:
        log.warning("%s not finished within the shutdown grace; leaving it to its lease", in_hand)


@asynccontextmanager
async def in_background(work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``work`` as a task while the block runs; cancel it when the block ends."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        await cancel_and_wait(task)


async def cancel_and_wait(task: asyncio.Task[Any], *, every: float = 0.1) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again while it runs on.

    One cancellation is not always enough: on Python 3.11, ``asyncio.wait_for`` loses a
    cancellation that arrives just as the call it waits on completes (CPython gh-86296,
    fixed in 3.12), and redis-py connects through it. The task then runs on as if nothing
    happened: an API stopped right after it started never ended."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every)
    with suppress(asyncio.CancelledError):
        await task
