"""Process plumbing shared by the API and the worker: logging, the event loop, exits."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any, NoReturn, TypeVar

from countersign_core.logs import configure_logging

__all__ = [
    "configure_logging",
    "event_loop_factory",
    "fail",
    "in_background",
    "run",
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


def fail(message: str, code: int = 2) -> NoReturn:
    """Stop the process with one readable line instead of a traceback."""
    print(f"countersign: error: {message}", file=sys.stderr)
    sys.exit(code)


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
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
