"""Process plumbing shared by the API and the worker: logging, the event loop, exits."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

from countersign.logs import configure_logging

__all__ = ["configure_logging", "event_loop_factory", "fail", "run"]

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
