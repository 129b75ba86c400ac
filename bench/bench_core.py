"""Core benchmark: sign throughput, 201 -> /counts lag at ~1,000 signatures/s, counts reads.

Runs the real processes (``countersign api`` and ``counter_worker``) against a throwaway
database and Redis key prefix, drives them with wrk, and prints a summary with targets.
Everything it creates is removed at the end, also on Ctrl-C or an error.

    python bench/bench_core.py [--duration 15] [--api-workers 2] [--workers 1] ...

Servers: DATABASE_URL / REDIS_URL (server-level URLs) when set, else embedded ones.
Exit status: 0 when the measurement ran (whether or not targets were met), 1 when the
benchmark itself failed (start-up, errors in the load, lost signatures, wrong counts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any, TextIO

import aiohttp
import asyncpg

from counter_worker.keys import KeyLayout
from countersign.embedded import start_embedded, with_database
from countersign_core.connections import create_redis
from countersign_core.migrations import migrate
from countersign_domain.petitions import create_petition

REPO = Path(__file__).resolve().parent.parent

SIGN_TARGET = 3_000.0  # signatures/s
READS_TARGET = 10_000.0  # counts reads/s
LAG_P99_TARGET_MS = 250.0

LOAD_COUNTRIES = ("GB", "FR", "DE", "US", "SY", "BR", "IN", "NG")
PROBE_COUNTRY = "AQ"  # never used by the load, so its count moves only with the probes
RESULT_MARKER = "BENCH-RESULT"


class BenchError(Exception):
    """The benchmark could not run or its load went wrong; the message says why."""


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    duration: int
    api_workers: int
    workers: int
    connections: int
    threads: int
    lag_rate: int
    lag_connections: int
    probes: int
    probe_interval_ms: float
    skip_sign: bool
    skip_lag: bool
    skip_reads: bool
    signature_log: str
    wrk: str


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        description="Benchmark signing, live-count lag and counts reads of countersign.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--duration", type=int, default=15, help="seconds of the sign and reads phases")
    add("--api-workers", type=int, default=2, help="API processes (countersign api --workers)")
    add("--workers", type=int, default=1, help="counter worker processes")
    add("--connections", type=int, default=64, help="wrk connections, sign and reads phases")
    add("--threads", type=int, default=2, help="wrk threads, sign and reads phases")
    add("--lag-rate", type=int, default=1000, help="background signatures/s in the lag phase")
    add("--lag-connections", type=int, default=32, help="wrk connections of that load")
    add("--probes", type=int, default=500, help="lag probes (at least 200 for a useful p99)")
    add("--probe-interval-ms", type=float, default=20.0, help="time between probe starts")
    add("--skip-sign", action="store_true", help="skip the sign throughput phase")
    add("--skip-lag", action="store_true", help="skip the lag phase")
    add("--skip-reads", action="store_true", help="skip the counts reads phase")
    add(
        "--signature-log",
        choices=("on", "off"),
        default="on",
        help="off: no log triggers on signatures and no appender in the worker",
    )
    add("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk", help="path of wrk")
    args = parser.parse_args(argv)
    positive = ("duration", "api_workers", "workers", "connections", "threads")
    for name in (*positive, "lag_rate", "lag_connections", "probes", "probe_interval_ms"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads")
    return Config(**vars(args))


# -- small helpers ---------------------------------------------------------------------


def say(message: str) -> None:
    print(message, flush=True)


def say_cpu(report: str) -> None:
    if report:  # empty without /proc
        say(f"   {report}")


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    alive: Callable[[], None] = lambda: None,
) -> float:
    """Wait for ``check`` to hold; returns the seconds it took. ``alive`` raises if a
    process we depend on has died, so a crash is reported at once, not at the deadline."""
    start = time.monotonic()
    while True:
        alive()
        if await check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: an observed value, never an interpolation."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listeners_on(port: int) -> int | None:
    """Listening TCP sockets on ``port`` (None where /proc/net/tcp is unavailable).

    With SO_REUSEPORT each API process has its own listening socket; counting them tells
    when every process is up, so no phase starts with the load on one process only.
    """
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    wanted = f":{port:04X}"
    return sum(1 for line in lines if line.split()[1].endswith(wanted) and line.split()[3] == "0A")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def open_log(path: Path) -> TextIO:
    return path.open("w")


def signal_group(pgid: int, signum: signal.Signals) -> None:
    # Each process we start leads its own session, so its group holds it and its children
    # (the API's per-core processes) and nothing else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


# -- CPU accounting (Linux /proc; silently absent elsewhere) ---------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
COMM_LABELS = {"postgres": "postgres", "redis-server": "redis"}


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    busy: float  # CPU seconds of the whole machine
    labelled: dict[str, float]  # CPU seconds of the processes we know, by role
    others: dict[str, float]  # the rest, by command name


@dataclass
class CpuMeter:
    """CPU per role between two snapshots, to show where a phase's CPU went, and whether
    something else on the machine took part of it (which makes a run incomparable)."""

    groups: dict[int, str] = field(default_factory=dict)  # process group id -> label

    def snapshot(self) -> CpuSnapshot | None:
        try:
            labelled, others = self._scan()
            return CpuSnapshot(time.monotonic(), machine_busy_s(), labelled, others)
        except (OSError, ValueError, IndexError):
            return None

    def report(self, before: CpuSnapshot | None) -> str:
        after = self.snapshot()
        if before is None or after is None or after.wall <= before.wall:
            return ""
        wall = after.wall - before.wall
        used = {
            label: (after.labelled.get(label, 0.0) - before.labelled.get(label, 0.0)) / wall
            for label in sorted(set(after.labelled) | set(before.labelled))
        }
        busy = (after.busy - before.busy) / wall
        # Kernel threads, anything not ours, and processes that ended within the phase
        # (autovacuum workers, say): /proc no longer has their CPU time.
        other = max(0.0, busy - sum(used.values()))
        grown = {c: (t - before.others.get(c, 0.0)) / wall for c, t in after.others.items()}
        top = max(grown, key=grown.__getitem__, default="")
        parts = [f"{label} {cores:.2f}" for label, cores in used.items()]
        named = f" (largest: {top} {grown[top]:.2f})" if top and grown[top] >= 0.05 else ""
        parts.append(f"other {other:.2f}{named}")
        return f"cpu, cores busy of {os.cpu_count()}: all {busy:.2f} = " + ", ".join(parts)

    def _scan(self) -> tuple[dict[str, float], dict[str, float]]:
        labelled: dict[str, float] = {}
        others: dict[str, float] = {}
        me = os.getpid()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited meanwhile
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            rest = stat[stat.rindex(")") + 2 :].split()
            # stat(5): after "pid (comm)", pgrp is field 3 and utime/stime fields 12/13.
            pgrp, cpu = int(rest[2]), (int(rest[11]) + int(rest[12])) / CLK_TCK
            label = "bench" if int(entry.name) == me else self.groups.get(pgrp)
            label = label or COMM_LABELS.get(comm)
            bucket, key = (labelled, label) if label else (others, comm)
            bucket[key] = bucket.get(key, 0.0) + cpu
        # wrk has exited (and been reaped) by the time a phase reports, so /proc no longer
        # shows it; its CPU lands in our children's rusage. The services are still running,
        # so between two snapshots that grows by wrk's share only.
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        labelled["wrk"] = children.ru_utime + children.ru_stime
        return labelled, others


def machine_busy_s() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


# -- processes -------------------------------------------------------------------------


@dataclass
class Service:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path

    def check_alive(self) -> None:
        if self.process.returncode is not None:
            raise BenchError(
                f"{self.name} exited with code {self.process.returncode}; its log ends:\n"
                + tail(self.log_path)
            )

    async def stop(self, grace: float = 10.0) -> None:
        signal_group(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), grace)
        # Whatever is left of the group (an API child whose parent died) goes too.
        signal_group(self.process.pid, signal.SIGKILL)
        await self.process.wait()


async def start_service(
    stack: contextlib.AsyncExitStack,
    name: str,
    args: list[str],
    env: dict[str, str],
    log_dir: Path,
    cpu: CpuMeter,
    label: str,
) -> Service:
    log_path = log_dir / f"{name}.log"
    log = open_log(log_path)
    stack.callback(log.close)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    service = Service(name, process, log_path)
    stack.push_async_callback(service.stop)
    cpu.groups[process.pid] = label
    return service


# -- wrk -------------------------------------------------------------------------------

# Shared by every wrk script: thread ids for unique emails, per-thread tallies, and one
# machine-readable result line (wrk's own text output rounds and changes units).
LUA_COMMON = Template(r"""
-- Written by bench/bench_core.py.
local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

calls = 0    -- request() calls; wrk makes one extra on thread 0 to check the script
answers = 0  -- responses seen by response()
created = 0  -- of which 201

function done(summary, latency, requests)
  local calls_all, answers_all, created_all = 0, 0, 0
  for _, t in ipairs(threads) do
    calls_all = calls_all + t:get("calls")
    answers_all = answers_all + t:get("answers")
    created_all = created_all + t:get("created")
  end
  local e = summary.errors
  io.write(string.format(
    '$marker {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"status":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"calls":%d,"answers":%d,"created":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max,
    calls_all, answers_all, created_all))
end
""")

LUA_SIGN = Template(r"""
local countries = {$countries}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
  calls = calls + 1
  -- Unique per request: run tag, wrk thread, per-thread counter.
  local body = string.format(
    '{"name":"Bench Signer","email":"%s-%d-%d@bench.example.org","country":"%s",' ..
    '"source":"bench"}',
    "$tag", tid, calls, countries[math.random(#countries)])
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  answers = answers + 1
  if status == 201 then created = created + 1 end
end
""")

# Open-loop pacing: each delay() call claims the next slot of a fixed schedule, so the
# rate is the target whatever the latency (as long as there are connections to spare).
# LuaJIT's ffi gives a millisecond clock; plain Lua only has whole seconds.
LUA_PACE = Template(r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local interval_ms = $interval_ms
local next_slot = 0

function delay()
  local now = now_ms()
  -- Behind schedule: restart from now instead of bursting to catch up.
  if next_slot < now then next_slot = now end
  local wait = next_slot - now
  next_slot = next_slot + interval_ms
  return math.floor(wait)
end
""")


def sign_lua(tag: str) -> str:
    countries = ", ".join(f'"{code}"' for code in LOAD_COUNTRIES)
    return LUA_COMMON.substitute(marker=RESULT_MARKER) + LUA_SIGN.substitute(
        countries=countries, tag=tag
    )


def paced_sign_lua(tag: str, rate_per_thread: float) -> str:
    return sign_lua(tag) + LUA_PACE.substitute(interval_ms=f"{1000.0 / rate_per_thread:.6f}")


def reads_lua() -> str:
    return LUA_COMMON.substitute(marker=RESULT_MARKER)


@dataclass(frozen=True)
class WrkResult:
    requests: int  # responses received
    duration_s: float
    socket_errors: dict[str, int]
    non_2xx: int  # wrk counts status > 399
    p50_ms: float
    p99_ms: float
    max_ms: float
    sent: int  # requests generated by request() (signing scripts only)
    created: int  # 201 responses (signing scripts only)

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    def describe(self) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in self.socket_errors.items())
        return (
            f"{self.requests} responses in {self.duration_s:.1f}s = {self.rate:,.0f}/s; "
            f"non-2xx {self.non_2xx}; socket errors: {errors}; "
            f"latency p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
            f"max {self.max_ms:.1f} ms"
        )


def parse_wrk(stdout: str, stderr: str) -> WrkResult:
    line = next((ln for ln in stdout.splitlines() if ln.startswith(RESULT_MARKER + " ")), None)
    if line is None:
        raise BenchError(f"wrk printed no result line:\n{stdout}\n{stderr}")
    data = json.loads(line.removeprefix(RESULT_MARKER + " "))
    calls = int(data["calls"])
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=int(data["duration_us"]) / 1e6,
        socket_errors={k: int(data[k]) for k in ("connect", "read", "write", "timeout")},
        non_2xx=int(data["status"]),
        p50_ms=int(data["p50_us"]) / 1000,
        p99_ms=int(data["p99_us"]) / 1000,
        max_ms=int(data["max_us"]) / 1000,
        # wrk calls request() once more than it sends, to check the script's output.
        sent=max(0, calls - 1),
        created=int(data["created"]),
    )


@dataclass
class Wrk:
    """One wrk run in the background; ``finish`` stops it early if asked and parses."""

    process: asyncio.subprocess.Process

    @classmethod
    async def start(
        cls,
        stack: contextlib.AsyncExitStack,
        cfg: Config,
        *,
        url: str,
        lua: str,
        script_dir: Path,
        threads: int,
        connections: int,
        duration_s: int,
    ) -> Wrk:
        script = script_dir / f"wrk-{secrets.token_hex(4)}.lua"
        script.write_text(lua)
        process = await asyncio.create_subprocess_exec(
            cfg.wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration_s}s",
            "--latency",
            "-s",
            str(script),
            url,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        stack.push_async_callback(_kill_if_running, process)
        return cls(process)

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def finish(self, *, interrupt: bool = False, timeout: float = 60.0) -> WrkResult:
        if interrupt and self.running:
            # wrk treats SIGINT as "stop now" and still prints its results.
            self.process.send_signal(signal.SIGINT)
        try:
            out, err = await asyncio.wait_for(self.process.communicate(), timeout)
        except TimeoutError:
            raise BenchError("wrk did not finish in time") from None
        if self.process.returncode != 0:
            raise BenchError(f"wrk failed ({self.process.returncode}): {err.decode()}")
        return parse_wrk(out.decode(), err.decode())


async def _kill_if_running(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        signal_group(process.pid, signal.SIGKILL)
        await process.wait()


# -- servers, database, petition ---------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The throwaway database and key prefix, and how the services reach them."""

    database_url: str
    redis_url: str
    prefix: str
    slug: str
    petition_id: int


async def open_servers(stack: contextlib.AsyncExitStack, tmp: Path) -> tuple[str, str]:
    server_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if server_url and redis_url:
        return server_url, redis_url
    say("DATABASE_URL / REDIS_URL not both set: starting embedded Postgres and Redis")
    embedded = await asyncio.to_thread(start_embedded, tmp / "servers", keep=False)
    stack.callback(embedded.stop)
    return server_url or embedded.database_url, redis_url or embedded.redis_url


async def create_database(stack: contextlib.AsyncExitStack, server_url: str, name: str) -> str:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    stack.push_async_callback(drop_database, server_url, name)
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        # FORCE: a service that failed to stop must not keep our database alive.
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def delete_keys(redis_url: str, prefix: str) -> None:
    """Delete our prefix's keys only: the Redis may be shared."""
    client = create_redis(redis_url)
    try:
        pattern = KeyLayout(prefix).namespace_pattern()
        doomed = [key async for key in client.scan_iter(match=pattern, count=1000)]
        for start in range(0, len(doomed), 500):
            await client.delete(*doomed[start : start + 500])
    finally:
        await client.aclose()


async def prepare_petition(database_url: str) -> tuple[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
        # Signatures that count at once: this bench measures the 201 -> /counts path.
        petition = await create_petition(
            conn,
            slug="bench-core",
            title="Benchmark petition",
            goal=1_000_000,
            status="open",
            require_confirmation=False,
        )
    finally:
        await conn.close()
    return petition.slug, petition.id


async def without_signature_log(database_url: str) -> None:
    """Signing as it was before the signature log: its triggers off (this database only)."""
    conn = await asyncpg.connect(database_url)
    try:
        for trigger in ("signatures_log_insert", "signatures_log_update", "signatures_log_delete"):
            await conn.execute(f"ALTER TABLE signatures DISABLE TRIGGER {trigger}")
    finally:
        await conn.close()


# -- the services ------------------------------------------------------------------------


@dataclass
class Stack:
    """What the phases use: config, services, HTTP session, a database connection."""

    cfg: Config
    target: Target
    base: str
    services: list[Service]
    session: aiohttp.ClientSession
    db: Any  # asyncpg.Connection
    cpu: CpuMeter
    tmp: Path
    exits: contextlib.AsyncExitStack

    @property
    def sign_url(self) -> str:
        return f"{self.base}/v1/petitions/{self.target.slug}/signatures"

    @property
    def counts_url(self) -> str:
        return f"{self.base}/v1/petitions/{self.target.slug}/counts"

    def check_alive(self) -> None:
        for service in self.services:
            service.check_alive()

    async def rows(self) -> int:
        return int(await self.db.fetchval("SELECT count(*) FROM signatures"))

    async def pending_events(self) -> int:
        return int(await self.db.fetchval("SELECT count(*) FROM counter_events"))

    async def counts(self) -> dict[str, Any] | None:
        async with self.session.get(self.counts_url) as response:
            if response.status != 200:
                await response.read()
                return None
            body: dict[str, Any] = await response.json()
            return body

    async def wrk(self, url: str, lua: str, *, threads: int, conns: int, secs: int) -> Wrk:
        return await Wrk.start(
            self.exits,
            self.cfg,
            url=url,
            lua=lua,
            script_dir=self.tmp,
            threads=threads,
            connections=conns,
            duration_s=secs,
        )


def service_env(target: Target, tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": target.database_url,
        "REDIS_URL": target.redis_url,
        # Throwaway: the services need one, nothing outlives the run.
        "COUNTERSIGN_SECRET_KEY": secrets.token_urlsafe(40),
        "COUNTERSIGN_REDIS_PREFIX": target.prefix,
        "COUNTERSIGN_LOG_LEVEL": "WARNING",
        "COUNTERSIGN_DATA_DIR": str(tmp / "data"),  # keeps `.countersign/` out of the repo
        # wrk signs from one address, far faster than any person: measure the service, not
        # its abuse limits (which would hold nearly every signature back as suspect).
        "COUNTERSIGN_RATE_LIMIT_ALLOW": "127.0.0.0/8",
        "COUNTERSIGN_RATE_LIMIT_GLOBAL": "off",
    }


async def start_services(
    exits: contextlib.AsyncExitStack, cfg: Config, target: Target, tmp: Path, cpu: CpuMeter
) -> tuple[list[Service], int]:
    env = {**service_env(target, tmp), "COUNTERSIGN_SIGNATURE_LOG": cfg.signature_log}
    port = free_port()
    api_args = ["-m", "countersign", "api", "--host", "127.0.0.1", "--port", str(port)]
    api_args += ["--workers", str(cfg.api_workers)]
    services = [await start_service(exits, "api", api_args, env, tmp, cpu, "api")]
    for n in range(cfg.workers):
        services.append(
            await start_service(
                exits, f"counter-worker-{n}", ["-m", "counter_worker"], env, tmp, cpu, "worker"
            )
        )
    return services, port


async def http_status(session: aiohttp.ClientSession, url: str) -> int | None:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return None


async def wait_ready(stack: Stack, port: int) -> None:
    async def ready() -> bool:
        return await http_status(stack.session, f"{stack.base}/readyz") == 200

    async def all_listening() -> bool:
        count = listeners_on(port)
        return count is None or count >= stack.cfg.api_workers

    async def counts_built() -> bool:
        return await http_status(stack.session, stack.counts_url) == 200

    took = await wait_until(ready, timeout=60, what="GET /readyz == 200", alive=stack.check_alive)
    took += await wait_until(
        all_listening, timeout=30, what="every API process listening", alive=stack.check_alive
    )
    took += await wait_until(
        counts_built, timeout=30, what="GET /counts == 200", alive=stack.check_alive
    )
    say(f"services ready in {took:.1f}s (API on port {port})")


# -- phases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignResult:
    wrk: WrkResult
    rows: int
    drain_s: float

    @property
    def rate(self) -> float:
        return self.wrk.created / self.wrk.duration_s if self.wrk.duration_s else 0.0

    @property
    def rows_match(self) -> bool:
        # Every 201 must be a row. Requests in flight when wrk stopped are still recorded
        # by the API (the writer finishes a batch whose client hung up), so rows may
        # exceed the 201s by those, and never by more: each request has its own email.
        return self.wrk.created <= self.rows <= self.wrk.sent

    def rows_text(self) -> str:
        return f"rows in Postgres == 201s: {'yes' if self.rows_match else 'NO'}"

    def rows_detail(self) -> str:
        rows, created, sent = self.rows, self.wrk.created, self.wrk.sent
        if not self.rows_match:
            return f"({rows:,} rows, {created:,} 201s, {sent:,} requests sent)"
        in_flight = sent - self.wrk.requests
        return (
            f"({rows:,} rows = {created:,} 201s + {rows - created} of the {in_flight} "
            "requests in flight when wrk stopped)"
        )


async def sign_phase(stack: Stack) -> tuple[SignResult, list[str]]:
    cfg = stack.cfg
    say(f"\n== sign throughput: wrk -t{cfg.threads} -c{cfg.connections} -d{cfg.duration}s")
    rows_before = await stack.rows()
    cpu_before = stack.cpu.snapshot()
    wrk = await stack.wrk(
        stack.sign_url,
        sign_lua(f"s{secrets.token_hex(3)}"),
        threads=cfg.threads,
        conns=cfg.connections,
        secs=cfg.duration,
    )
    result = await wrk.finish(timeout=cfg.duration + 30)
    say(f"   {result.describe()}")
    say_cpu(stack.cpu.report(cpu_before))

    # Requests left in flight when wrk stopped are still being written; give them a moment.
    async def settled() -> bool:
        return await stack.rows() - rows_before >= result.sent

    with contextlib.suppress(BenchError):
        await wait_until(settled, timeout=5, what="in-flight signatures")
    rows = await stack.rows() - rows_before
    drain_s = await wait_converged(stack, timeout=120)
    sign = SignResult(result, rows, drain_s)
    say(f"   {sign.rows_text()} {sign.rows_detail()}")
    say(f"   live counts caught up with Postgres {drain_s:.2f}s after the load stopped")
    failures = []
    if result.errors or result.created != result.requests:
        failures.append(
            f"sign phase: {result.non_2xx} non-2xx, {result.requests - result.created} "
            f"responses not 201, socket errors {result.socket_errors}"
        )
    if not sign.rows_match:
        failures.append(f"sign phase: {sign.rows_text()} {sign.rows_detail()}")
    return sign, failures


async def wait_converged(stack: Stack, timeout: float) -> float:
    """Until no counter event is waiting and /counts' total equals the rows in Postgres."""

    async def converged() -> bool:
        if await stack.pending_events():
            return False
        counts = await stack.counts()
        return counts is not None and counts["total"] == await stack.rows()

    return await wait_until(
        converged,
        timeout=timeout,
        what="/counts to equal Postgres",
        interval=0.02,
        alive=stack.check_alive,
    )


@dataclass(frozen=True)
class LagResult:
    lags_ms: list[float]
    load: WrkResult

    @property
    def achieved_rate(self) -> float:
        return self.load.created / self.load.duration_s if self.load.duration_s else 0.0

    def stat(self, pct: float) -> float:
        return percentile(self.lags_ms, pct) if self.lags_ms else math.nan


def country_count(counts: dict[str, Any] | None, code: str) -> int | None:
    if counts is None:
        return None
    return next((int(c["count"]) for c in counts["countries"] if c["code"] == code), 0)


async def probe_once(stack: Stack, seq: int, expected: int, tag: str) -> float:
    """Sign one probe signature, then poll /counts until it shows; returns the lag in ms."""
    body = {
        "name": "Bench Probe",
        "email": f"probe-{tag}-{seq}@bench.example.org",
        "country": PROBE_COUNTRY,
    }
    async with stack.session.post(stack.sign_url, json=body) as response:
        await response.read()
        if response.status != 201:
            raise BenchError(f"probe signature answered {response.status}")
    answered = time.perf_counter()
    deadline = answered + 10.0
    while True:
        seen = country_count(await stack.counts(), PROBE_COUNTRY)
        if seen is not None and seen >= expected:
            return (time.perf_counter() - answered) * 1000
        if time.perf_counter() > deadline:
            raise BenchError(f"probe {seq} not in /counts after 10s (saw {seen}, want {expected})")
        await asyncio.sleep(0.002)


async def lag_phase(stack: Stack) -> tuple[LagResult, list[str]]:
    cfg = stack.cfg
    say(
        f"\n== lag 201 -> /counts: background load {cfg.lag_rate}/s "
        f"(wrk -t1 -c{cfg.lag_connections}, paced), {cfg.probes} probes"
    )
    start_count = country_count(await stack.counts(), PROBE_COUNTRY) or 0
    cpu_before = stack.cpu.snapshot()
    # wrk runs until the probes are done (then SIGINT); the duration is only a cap.
    cap_s = 30 + math.ceil(cfg.probes * (cfg.probe_interval_ms + 200) / 1000)
    load = await stack.wrk(
        stack.sign_url,
        paced_sign_lua(f"l{secrets.token_hex(3)}", cfg.lag_rate),
        threads=1,
        conns=cfg.lag_connections,
        secs=cap_s,
    )
    await asyncio.sleep(1.0)  # let the load reach its pace before measuring
    lags = await run_probes(stack, load, start_count)
    result = await load.finish(interrupt=True)
    lag = LagResult(lags, result)
    say(f"   load: {result.describe()}")
    say(f"   load achieved {lag.achieved_rate:,.0f} signatures/s (201s over the phase)")
    say(
        f"   lag over {len(lags)} probes: p50 {lag.stat(50):.1f} ms, "
        f"p99 {lag.stat(99):.1f} ms, max {lag.stat(100):.1f} ms"
    )
    say_cpu(stack.cpu.report(cpu_before))
    failures = []
    if result.errors or result.created != result.requests:
        failures.append(f"lag phase load: {result.describe()}")
    if len(lags) < min(200, cfg.probes):
        failures.append(f"lag phase: only {len(lags)} probes completed")
    return lag, failures


async def run_probes(stack: Stack, load: Wrk, start_count: int) -> list[float]:
    cfg = stack.cfg
    tag = secrets.token_hex(3)
    lags: list[float] = []
    for seq in range(cfg.probes):
        if not load.running:
            break  # the load ended (cap reached or crashed): probes would measure idle
        stack.check_alive()
        started = time.perf_counter()
        lags.append(await probe_once(stack, seq, start_count + seq + 1, tag))
        # Probes start every interval; a slow one is followed at once by the next.
        pause = cfg.probe_interval_ms / 1000 - (time.perf_counter() - started)
        await asyncio.sleep(max(0.0, pause))
    return lags


async def reads_phase(stack: Stack) -> tuple[WrkResult, list[str]]:
    cfg = stack.cfg
    say(f"\n== counts reads: wrk -t{cfg.threads} -c{cfg.connections} -d{cfg.duration}s")
    cpu_before = stack.cpu.snapshot()
    wrk = await stack.wrk(
        stack.counts_url,
        reads_lua(),
        threads=cfg.threads,
        conns=cfg.connections,
        secs=cfg.duration,
    )
    result = await wrk.finish(timeout=cfg.duration + 30)
    say(f"   {result.describe()}")
    say_cpu(stack.cpu.report(cpu_before))
    failures = [f"reads phase: {result.describe()}"] if result.errors else []
    return result, failures


# -- the run and its summary -----------------------------------------------------------------


@dataclass
class Report:
    cfg: Config
    sign: SignResult | None = None
    lag: LagResult | None = None
    reads: WrkResult | None = None
    final_total: int | None = None
    final_rows: int | None = None
    failures: list[str] = field(default_factory=list)


async def run(cfg: Config, report: Report) -> None:
    async with contextlib.AsyncExitStack() as exits:
        tmp = Path(tempfile.mkdtemp(prefix="cs-bench-"))
        exits.callback(shutil.rmtree, tmp, ignore_errors=True)
        server_url, redis_url = await open_servers(exits, tmp)
        database = f"cs_bench_{secrets.token_hex(5)}"
        database_url = await create_database(exits, server_url, database)
        slug, petition_id = await prepare_petition(database_url)
        if cfg.signature_log == "off":
            await without_signature_log(database_url)
        prefix = f"cs-bench-{secrets.token_hex(5)}"
        exits.push_async_callback(delete_keys, redis_url, prefix)
        target = Target(database_url, redis_url, prefix, slug, petition_id)
        say(f"database {database}, Redis prefix {prefix}")

        cpu = CpuMeter()
        services, port = await start_services(exits, cfg, target, tmp, cpu)
        session = await exits.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8))
        )
        db = await asyncpg.connect(database_url)
        exits.push_async_callback(db.close)
        stack = Stack(
            cfg, target, f"http://127.0.0.1:{port}", services, session, db, cpu, tmp, exits
        )
        await wait_ready(stack, port)
        await run_phases(stack, report)
        say("\nstopping services and removing the database and Redis keys")


async def run_phases(stack: Stack, report: Report) -> None:
    if not stack.cfg.skip_sign:
        report.sign, failures = await sign_phase(stack)
        report.failures += failures
    if not stack.cfg.skip_lag:
        report.lag, failures = await lag_phase(stack)
        report.failures += failures
    if not stack.cfg.skip_reads:
        report.reads, failures = await reads_phase(stack)
        report.failures += failures
    # The point of the worker: after all that, the live counts equal Postgres exactly.
    try:
        await wait_converged(stack, timeout=60)
    except BenchError as exc:
        report.failures.append(str(exc))
    counts = await stack.counts()
    report.final_total = None if counts is None else int(counts["total"])
    report.final_rows = await stack.rows()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def summary(report: Report) -> str:
    cfg = report.cfg
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    lines = [
        "",
        "=" * 100,
        f"countersign core benchmark: {os.cpu_count()} cores (usable {affinity}), "
        f"{cfg.api_workers} API processes, {cfg.workers} counter worker(s), "
        f"signature log {cfg.signature_log}, "
        f"wrk -t{cfg.threads} -c{cfg.connections} -d{cfg.duration}s",
        "-" * 100,
    ]
    if report.sign:
        s = report.sign
        lines.append(
            f"sign throughput:   {s.rate:,.0f} signatures/s sustained, {s.wrk.errors} errors "
            f"(p50 {s.wrk.p50_ms:.1f} ms, p99 {s.wrk.p99_ms:.1f} ms), {s.rows_text()}"
            f"   [target >= {SIGN_TARGET:,.0f}/s: {verdict(s.rate >= SIGN_TARGET)}]"
        )
        lines.append(f"{'':19}{s.rows_detail()}")
    if report.lag:
        lag = report.lag
        ok = lag.stat(99) < LAG_P99_TARGET_MS
        lines.append(
            f"lag 201->/counts at ~{cfg.lag_rate:,}/s: p50 {lag.stat(50):.1f} ms, "
            f"p99 {lag.stat(99):.1f} ms, max {lag.stat(100):.1f} ms"
            f"   [target p99 < {LAG_P99_TARGET_MS:.0f} ms: {verdict(ok)}]"
        )
        lines.append(
            f"{'':19}({len(lag.lags_ms)} probes; load achieved {lag.achieved_rate:,.0f} "
            f"signatures/s, {lag.load.errors} errors)"
        )
    if report.reads:
        r = report.reads
        lines.append(
            f"counts reads:      {r.rate:,.0f} req/s (p50 {r.p50_ms:.1f} ms, "
            f"p99 {r.p99_ms:.1f} ms), {r.non_2xx} non-2xx, "
            f"{sum(r.socket_errors.values())} socket errors"
            f"   [target >= {READS_TARGET:,.0f}/s: {verdict(r.rate >= READS_TARGET)}]"
        )
    if report.final_rows is not None:
        same = "yes" if report.final_total == report.final_rows else "NO"
        lines.append(
            f"live counts at the end: total {report.final_total} == {report.final_rows} rows "
            f"in Postgres: {same}"
        )
    for failure in report.failures:
        lines.append(f"FAILED: {failure}")
    lines.append("=" * 100)
    return "\n".join(lines)


async def main_async(cfg: Config, report: Report) -> None:
    # SIGTERM ends the run like Ctrl-C does: cancel, and let the cleanup run.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await run(cfg, report)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    if not Path(cfg.wrk).exists():
        print(f"bench: error: wrk not found at {cfg.wrk}", file=sys.stderr)
        return 1
    report = Report(cfg)
    try:
        asyncio.run(main_async(cfg, report))
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; everything it started was stopped", file=sys.stderr)
        return 130
    say(summary(report))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
