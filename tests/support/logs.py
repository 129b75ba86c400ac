"""The process's log handler, captured: what a deployment would write."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from countersign_core.logs import log_handler


@contextmanager
def production_log() -> Iterator[io.StringIO]:
    """The process's one handler (as configure_logging installs it), on the root logger."""
    out = io.StringIO()
    handler = log_handler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)
