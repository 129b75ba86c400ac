"""Printing, errors, waiting and the main wrapper every bench script uses."""

from __future__ import annotations

import asyncio
import math
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from countersign_core.runtime import run
from tests.support.waiting import eventually

REPO = Path(__file__).resolve().parents[2]


class BenchError(Exception):
    """The benchmark could not run or its load went wrong; the message says why."""


def say(message: str) -> None:
    print(message, flush=True)


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    alive: Callable[[], None] = lambda: None,
) -> float:
    """Wait for ``check`` to hold; returns the seconds it took. ``alive`` raises if a
    process we depend on has died, so a crash is reported at once, not at the deadline."""
    started = time.monotonic()

    async def holds() -> bool:
        alive()
        return await check()

    try:
        await eventually(holds, timeout=timeout, interval=interval)
    except AssertionError as exc:
        raise BenchError(f"waiting for {what}: {exc}") from None
    return time.monotonic() - started


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: an observed value, never an interpolation."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(ours: float, baseline: float) -> str:
    """``ours`` as a multiple of ``baseline``: "0.82x"."""
    return f"{ours / baseline:.2f}x" if baseline else "n/a"


def beside(baseline_name: str, baseline_rate: float, rate: float) -> str:
    """A rate per second beside a baseline's, with the ratio."""
    return (
        f"{baseline_name}: {baseline_rate:,.0f}/s; countersign {ratio(rate, baseline_rate)} of it"
    )


def bench_main(main: Callable[[], Coroutine[Any, Any, int]], name: str) -> int:
    """Run ``main`` on the services' event loop and turn its end into an exit status:
    its own (0 ran, 1 a check failed), 1 on BenchError, 130 on Ctrl-C or SIGTERM. Either
    way, what it started was stopped by its own clean-up."""

    async def cancellable() -> int:
        # SIGTERM ends the run like Ctrl-C does: cancel, and let the clean-up run.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await main()

    try:
        return run(cancellable())
    except BenchError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"{name}: interrupted; everything it started was stopped", file=sys.stderr)
        return 130
