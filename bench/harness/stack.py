"""What a bench runs against, all of its own and all removed at the end, also on Ctrl-C
or an error: servers, a database and a Redis key prefix, and the services as real
processes (tests/support/processes.py), each leading its own process group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
from yarl import URL

from bench.harness.cpu import CpuMeter
from bench.harness.run import BenchError, say, wait_until
from counter_worker.keys import KeyLayout
from countersign_core.connections import create_redis
from countersign_core.migrations import migrate
from countersign_domain.petitions import create_petition
from tests.support.processes import ApiProcess, ServiceProcess, spawn_api, spawn_worker
from tests.support.servers import (
    Servers,
    configured_or_embedded,
    delete_namespace,
    free_port,
    throwaway_database,
)


@dataclass(frozen=True)
class Workspace:
    """What a bench stands on, all of its own: a scratch folder, the servers, a migrated
    database and a Redis key prefix."""

    folder: Path
    servers: Servers
    database_url: str
    layout: KeyLayout

    def service_env(self, *, profile: str = "shortcut", **overrides: str) -> dict[str, str]:
        return service_env(
            self.database_url,
            self.servers.redis,
            self.layout,
            self.folder / "data",
            profile=profile,
            **overrides,
        )


async def workspace(exits: contextlib.AsyncExitStack) -> Workspace:
    """A new workspace, removed when ``exits`` closes: the database dropped, the keys
    deleted, embedded servers stopped, the folder deleted."""
    folder = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="cs-bench-")))
    servers = exits.enter_context(bench_servers(folder / "servers"))
    database_url = await exits.enter_async_context(bench_database(servers))
    layout = await exits.enter_async_context(bench_keys(servers.redis))
    return Workspace(folder, servers, database_url, layout)


@contextmanager
def bench_servers(folder: Path) -> Iterator[Servers]:
    """DATABASE_URL / REDIS_URL (server-level URLs) when both are set, else embedded
    Postgres and Redis under ``folder``."""
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        say("DATABASE_URL / REDIS_URL not both set: starting embedded Postgres and Redis")
    with configured_or_embedded(folder) as servers:
        yield servers


@asynccontextmanager
async def bench_database(servers: Servers) -> AsyncIterator[str]:
    """A migrated database of the bench's own (``cs_bench_*``), dropped afterwards."""
    async with throwaway_database(servers, prefix="cs_bench") as url:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield url


async def open_petition(database_url: str, slug: str) -> int:
    """An open petition whose signatures count at once (no email confirmation)."""
    conn = await asyncpg.connect(database_url)
    try:
        petition = await create_petition(
            conn,
            actor="bench",
            slug=slug,
            title="Benchmark petition",
            goal=1_000_000,
            status="open",
            require_confirmation=False,
        )
    finally:
        await conn.close()
    return petition.id


@asynccontextmanager
async def bench_keys(redis_url: str) -> AsyncIterator[KeyLayout]:
    """A Redis key prefix of the bench's own; its keys (only) are deleted afterwards."""
    layout = KeyLayout(f"cs-bench-{secrets.token_hex(5)}")
    try:
        yield layout
    finally:
        client = create_redis(redis_url)
        try:
            await delete_namespace(client, layout)
        finally:
            await client.aclose()


PROFILES = ("deployed", "shortcut")


def profile_env(profile: str) -> dict[str, str]:
    """The settings that make a profile.

    - deployed: as a deployment runs the API, behind a proxy (the load's X-Forwarded-For
      gives each request an address of its own), with every safeguard at its default:
      per-address limits, the global ceiling, the access log at INFO, metrics served.
    - shortcut: the load's addresses allow-listed, no global ceiling, logs at WARNING,
      no metrics: the service without its safeguards, for comparison.
    """
    if profile == "deployed":
        return {
            "COUNTERSIGN_TRUSTED_PROXIES": "127.0.0.1/32",
            "COUNTERSIGN_LOG_LEVEL": "INFO",
            "COUNTERSIGN_METRICS_PORT": str(free_port()),
            "COUNTERSIGN_WORKER_METRICS_PORT": str(free_port()),
        }
    if profile == "shortcut":
        return {
            "COUNTERSIGN_LOG_LEVEL": "WARNING",
            # Without a trusted proxy every signature comes from 127.0.0.1.
            "COUNTERSIGN_RATE_LIMIT_ALLOW": "127.0.0.0/8",
            "COUNTERSIGN_RATE_LIMIT_GLOBAL": "off",
        }
    raise ValueError(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")


def service_env(
    database_url: str,
    redis_url: str,
    layout: KeyLayout,
    data_dir: Path,
    *,
    profile: str = "shortcut",
    **overrides: str,
) -> dict[str, str]:
    """The services' settings for a bench, in a profile (``profile_env``)."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        # Throwaway: the services need one, nothing outlives the run.
        "COUNTERSIGN_SECRET_KEY": secrets.token_urlsafe(40),
        "COUNTERSIGN_REDIS_PREFIX": layout.prefix,
        "COUNTERSIGN_DATA_DIR": str(data_dir),  # keeps `.countersign/` out of the repo
        **profile_env(profile),
        **overrides,
    }


def stop_at_exit(exits: contextlib.AsyncExitStack, process: ServiceProcess) -> None:
    """Stop ``process`` (SIGTERM, then SIGKILL for its whole group) when ``exits`` closes."""
    exits.push_async_callback(asyncio.to_thread, process.stop, 10)


async def start_api(
    exits: contextlib.AsyncExitStack,
    env: dict[str, str],
    log_dir: Path,
    *,
    workers: int = 1,
    cpu: CpuMeter | None = None,
) -> ApiProcess:
    """``countersign api --workers N`` on a free port (see ``wait_listening``)."""
    command = ("--host", "127.0.0.1", "--workers", str(workers))
    api = spawn_api(env, log_dir / "api.log", free_port(), *command)
    stop_at_exit(exits, api)
    if cpu is not None:
        cpu.label(api.pid, "api")
    return api


async def start_worker(
    exits: contextlib.AsyncExitStack,
    env: dict[str, str],
    log_dir: Path,
    name: str = "counter-worker",
    *,
    cpu: CpuMeter | None = None,
) -> ServiceProcess:
    worker = spawn_worker(env, log_dir / f"{name}.log")
    stop_at_exit(exits, worker)
    if cpu is not None:
        cpu.label(worker.pid, "worker")
    return worker


def alive(*processes: ServiceProcess) -> Callable[[], None]:
    """A check that raises BenchError, with the end of its log, if one has exited."""

    def check() -> None:
        for process in processes:
            try:
                process.check_alive()
            except AssertionError as exc:
                raise BenchError(str(exc)) from None

    return check


async def http_status(session: aiohttp.ClientSession, url: str) -> int | None:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return None


def listeners_on(port: int) -> int | None:
    """Listening TCP sockets on ``port`` (None where /proc/net/tcp is unavailable).

    With SO_REUSEPORT each process has its own listening socket; counting them tells when
    every process is up, so no phase starts with the load on one process only.
    """
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    wanted = f":{port:04X}"
    return sum(1 for line in lines if line.split()[1].endswith(wanted) and line.split()[3] == "0A")


async def wait_listening(
    url: str, processes: int, *, alive: Callable[[], None], timeout: float = 60
) -> float:
    """Until ``url`` answers 200 and ``processes`` processes listen on its port; returns
    the seconds it took."""
    port = URL(url).port
    assert port is not None
    async with aiohttp.ClientSession() as session:

        async def answers() -> bool:
            return await http_status(session, url) == 200

        async def all_listening() -> bool:
            count = listeners_on(port)
            return count is None or count >= processes

        took = await wait_until(answers, timeout=timeout, what=f"GET {url} == 200", alive=alive)
        return took + await wait_until(
            all_listening, timeout=30, what=f"{processes} processes listening", alive=alive
        )
