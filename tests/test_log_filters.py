"""Every logger of the project passes the privacy filters by construction: found by
walking the packages, each one's record keeps its own values and loses any email or
client address. (tests/test_mail.py checks the mail sender's own lines the same way.)"""

from __future__ import annotations

import ast
import asyncio
import importlib
import io
import json
import logging
import pkgutil
import select
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from countersign_core.logs import (
    REQUEST_ID,
    FixedFields,
    is_ours,
    log_handler,
    process_log_handler,
    project_packages,
    redact,
    trusted_info,
)

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
SECRETS = ("amal.haddad@example.org", "203.0.113.9", "2001:db8:7::9")


def shipped_packages() -> list[str]:
    """What the wheel ships, as pyproject.toml says (a source independent of logs.py)."""
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    packages: list[str] = config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    return packages


def project_modules() -> Iterator[str]:
    for package in shipped_packages():
        yield package
        path = importlib.import_module(package).__path__
        for module in pkgutil.walk_packages(path, prefix=f"{package}."):
            if module.name.rpartition(".")[2] != "__main__":  # that one runs the process
                yield module.name


def loggers_created_by(module_name: str) -> set[str]:
    """Names of the loggers a module creates: those it holds, and every
    ``getLogger("...")`` in its source (inside functions too)."""
    module = importlib.import_module(module_name)
    names = {value.name for value in vars(module).values() if isinstance(value, logging.Logger)}
    source = Path(module.__file__ or "").read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "getLogger"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names


def reaches_the_root(logger: logging.Logger) -> bool:
    """Whether the logger's records reach the root logger's handler, where the filters are."""
    current: logging.Logger | None = logger
    while current is not None and current is not logging.getLogger():
        if not current.propagate or current.disabled:
            return False
        current = current.parent
    return True


def through_the_handler(logger: logging.Logger, message: str, *args: object) -> dict[str, str]:
    """A record of this logger, as the process's handler writes it. (Handed to the
    handler itself: the suite's own log check must not see the secrets it carries.)"""
    out = io.StringIO()
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, message, args, None)
    log_handler(out).handle(record)
    line = out.getvalue()
    assert not [secret for secret in SECRETS if secret in line], (logger.name, line)
    parsed: dict[str, str] = json.loads(line)
    return parsed


def test_the_project_packages_are_the_shipped_ones() -> None:
    assert set(shipped_packages()) <= project_packages()


def test_every_logger_of_every_module_keeps_its_values_and_loses_personal_data() -> None:
    found = {name: module for module in project_modules() for name in loggers_created_by(module)}
    assert {"petition_api", "counter_worker", "mail_sender", "countersign_domain.signatures"} <= (
        set(found)
    )
    for name, module in sorted(found.items()):
        logger = logging.getLogger(name)
        assert reaches_the_root(logger), (name, module)
        record = through_the_handler(logger, "job %s of %s from %s and %s", 7, *SECRETS)
        assert record["logger"] == name
        if is_ours(name):
            # Our own messages keep their values: only what looks personal goes.
            assert record["message"] == "job 7 of <email> from <address> and <address>", name
        else:  # a library's logger the project configures: its arguments are dropped
            assert record["message"] == "job <hidden> of <hidden> from <hidden> and <hidden>"


def test_exceptions_keep_their_type_and_frames_never_their_message() -> None:
    try:
        raise ValueError(f"duplicate key {SECRETS[0]}")
    except ValueError:
        out = io.StringIO()
        logger = logging.getLogger("petition_api")
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "signing failed", (), sys.exc_info()
        )
        log_handler(out).handle(record)
    written = json.loads(out.getvalue())
    assert written["error"] == "ValueError"
    assert "test_exceptions_keep_their_type" in written["frames"]
    assert SECRETS[0] not in out.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from 203.0.113.1:443 and [2001:db8::1]:443", "from <address>:443 and [<address>]:443"),
        ("::ffff:203.0.113.7 and 2001:db8:1:2::/64", "<address> and <address>/64"),
        ("mail dup@\uff45xample\uff0eorg and idn@b\u00fccher.example", "mail <email> and <email>"),
        ("postgresql://user:secret@db:5432/cs", "<email>"),
        # What identifies nobody stays: times, versions, the machine's own addresses.
        ("at 12:30:45, v1.2.3.4.5, on 127.0.0.1:8080 and ::", None),
    ],
)
def test_what_is_redacted(text: str, expected: str | None) -> None:
    assert redact(text) == (expected or text)


class Writes(io.StringIO):
    """A stream that remembers each write (a process's stderr, a pipe)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def access_record(n: int) -> logging.LogRecord:
    logger = logging.getLogger("petition_api.access")
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "request", (), None)
    record.__dict__.update({"route": "/v1/petitions/{slug}/counts", "status": 200, "n": n})
    return record


async def test_a_process_writes_a_loop_turn_s_lines_together_whole_and_in_order() -> None:
    out = Writes()
    handler = process_log_handler(out)
    for n in range(100):
        handler.handle(access_record(n))
    assert out.writes == []  # the turn is not over
    await asyncio.sleep(0)
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["n"] for line in lines] == list(range(100))
    # Each write whole lines, none longer than a pipe writes at once (stderr is shared
    # by the API's processes: a longer write could be cut by another process's line).
    assert all(w.endswith("\n") and len(w.encode()) <= select.PIPE_BUF for w in out.writes)
    assert 1 < len(out.writes) <= len(out.getvalue().encode()) // (select.PIPE_BUF // 2)


def test_without_an_event_loop_a_process_writes_each_line_at_once() -> None:
    out = Writes()
    handler = process_log_handler(out)
    handler.handle(access_record(1))
    assert json.loads(out.getvalue())["n"] == 1


@contextmanager
def root_handlers(*handlers: logging.Handler) -> Iterator[None]:
    saved = logging.root.handlers[:]
    logging.root.handlers[:] = handlers
    try:
        yield
    finally:
        logging.root.handlers[:] = saved


def test_a_trusted_line_is_written_as_its_record_would_be() -> None:
    logger = logging.getLogger("petition_api.access")
    fields: dict[str, str | int] = {
        "method": "GET",
        "route": "/v1/petitions/{slug}/counts",
        "status": 200,
    }
    as_record, as_line = io.StringIO(), io.StringIO()
    token = REQUEST_ID.set("0123456789abcdef0123")
    try:
        with root_handlers(log_handler(as_record)):
            trusted_info(logger, "request", **fields)  # another handler: a record
        with root_handlers(process_log_handler(as_line)):
            trusted_info(logger, "request", **fields)  # the process's own: a line
    finally:
        REQUEST_ID.reset(token)
    record, line = json.loads(as_record.getvalue()), json.loads(as_line.getvalue())
    assert record.keys() == line.keys()
    assert {key: value for key, value in line.items() if key != "time"} == {
        key: value for key, value in record.items() if key != "time"
    }
    assert line["request_id"] == "0123456789abcdef0123"


def test_a_trusted_line_goes_as_a_record_where_a_logger_has_handlers_of_its_own() -> None:
    logger = logging.getLogger("petition_api.access")
    own = io.StringIO()
    mine = log_handler(own)
    logger.addHandler(mine)
    try:
        with root_handlers(process_log_handler(io.StringIO())):
            trusted_info(logger, "request", status=200)
    finally:
        logger.removeHandler(mine)
    assert json.loads(own.getvalue())["status"] == 200


def test_a_trusted_line_with_fixed_fields_is_written_as_its_record_would_be() -> None:
    logger = logging.getLogger("petition_api.access")
    fixed = FixedFields(method="GET", route="/v1/petitions/{slug}/counts", status=200)
    varying: dict[str, str | int | float] = {"duration": 0.0123, "note": 'a "quoted" é', "n": 7}
    as_record, as_line = io.StringIO(), io.StringIO()
    with root_handlers(log_handler(as_record)):
        trusted_info(logger, "request", fixed, **varying)
    with root_handlers(process_log_handler(as_line)):
        trusted_info(logger, "request", fixed, **varying)
    record, line = json.loads(as_record.getvalue()), json.loads(as_line.getvalue())
    # The very same text (the same separators, the same escapes), but for the time.
    same_time = as_record.getvalue().replace(record["time"], line["time"])
    assert as_line.getvalue() == same_time
    assert line["request_id"] is None
    assert datetime.fromisoformat(line["time"]).tzinfo is not None
