"""Core benchmark: sign throughput, 201 -> /counts lag at ~1,000 signatures/s, counts reads,
each throughput beside a plain-aiohttp baseline measured in the same run.

Runs the real processes (``countersign api`` and ``counter_worker``) against a throwaway
database and Redis key prefix, drives them with wrk, and prints a summary with targets.
Everything it creates is removed at the end, also on Ctrl-C or an error.

    python -m bench.bench_core [--duration 15] [--api-workers 2] [--workers 1] ...
    python -m bench.bench_core --pgbouncer ...   # then again through PgBouncer, same run

Servers: DATABASE_URL / REDIS_URL (server-level URLs) when set, else embedded ones.
Exit status: 0 when the measurement ran (whether or not targets were met), 1 when the
benchmark itself failed (start-up, errors in the load, lost signatures, wrong counts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.harness.baseline import start_baseline
from bench.harness.cpu import CpuMeter
from bench.harness.run import BenchError, bench_main, beside, percentile, say, wait_until
from bench.harness.stack import (
    alive,
    http_status,
    open_petition,
    start_api,
    start_worker,
    wait_listening,
    workspace,
)
from bench.harness.wrk import DEFAULT_WRK, Wrk, WrkResult
from tests.support.processes import ApiProcess, ServiceProcess
from tests.support.servers import PrivatePgBouncer

SIGN_TARGET = 3_000.0  # signatures/s
READS_TARGET = 10_000.0  # counts reads/s
LAG_P99_TARGET_MS = 250.0

SLUG = "bench-core"
LOAD_COUNTRIES = ("GB", "FR", "DE", "US", "SY", "BR", "IN", "NG")
PROBE_COUNTRY = "AQ"  # never used by the load, so its count moves only with the probes
NAIVE = "naive one-INSERT aiohttp app"
STATIC = "bare aiohttp static JSON"


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
    skip_baseline: bool
    pgbouncer: bool
    pgbouncer_pool: int
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
    add(
        "--skip-baseline",
        action="store_true",
        help=f"measure no baseline ({NAIVE}, {STATIC}) beside sign and reads",
    )
    add(
        "--pgbouncer",
        action="store_true",
        help="after the direct run, the same phases with the services behind PgBouncer "
        "(Debian's, transaction mode, started by the bench) on the same database",
    )
    add("--pgbouncer-pool", type=int, default=20, help="PgBouncer's default_pool_size")
    add("--wrk", default=DEFAULT_WRK, help="path of wrk")
    args = parser.parse_args(argv)
    positive = ("duration", "api_workers", "workers", "connections", "threads", "pgbouncer_pool")
    for name in (*positive, "lag_rate", "lag_connections", "probes", "probe_interval_ms"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads")
    return Config(**vars(args))


def say_cpu(report: str) -> None:
    if report:  # empty without /proc
        say(f"   {report}")


# -- what the phases use -----------------------------------------------------------------


@dataclass
class Stack:
    """What the phases use: config, services, baseline, HTTP session, a connection."""

    cfg: Config
    api: ApiProcess
    services: list[ServiceProcess]
    baseline: str | None  # the baseline apps' base URL
    session: aiohttp.ClientSession
    db: Any  # asyncpg.Connection
    cpu: CpuMeter
    exits: contextlib.AsyncExitStack

    @property
    def sign_url(self) -> str:
        return f"{self.api.url}/v1/petitions/{SLUG}/signatures"

    @property
    def counts_url(self) -> str:
        return f"{self.api.url}/v1/petitions/{SLUG}/counts"

    def check_alive(self) -> None:
        alive(*self.services)()

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

    async def wrk(
        self, url: str, script: str, *, threads: int, conns: int, secs: int, **args: str | float
    ) -> Wrk:
        return await Wrk.start(
            self.exits,
            url,
            script,
            threads=threads,
            connections=conns,
            duration_s=secs,
            wrk=self.cfg.wrk,
            **args,
        )

    async def full_load(self, url: str, script: str, **args: str | float) -> WrkResult:
        """wrk at full speed for the configured duration, threads and connections."""
        cfg = self.cfg
        wrk = await self.wrk(
            url, script, threads=cfg.threads, conns=cfg.connections, secs=cfg.duration, **args
        )
        return await wrk.finish(timeout=cfg.duration + 30)

    async def baseline_load(self, path: str, what: str, script: str, **args: str) -> WrkResult:
        assert self.baseline is not None
        say(f"   baseline, {what}, same wrk load:")
        cpu_before = self.cpu.snapshot()
        result = await self.full_load(self.baseline + path, script, **args)
        say(f"   {result.describe()}")
        say_cpu(self.cpu.report(cpu_before))
        return result


def sign_args(phase: str) -> dict[str, str]:
    """bench/wrk/sign.lua's arguments: a tag no other run or phase uses, the countries."""
    return {"tag": f"{phase}{secrets.token_hex(3)}", "countries": ",".join(LOAD_COUNTRIES)}


# -- phases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignResult:
    wrk: WrkResult
    rows: int
    drain_s: float
    baseline: WrkResult | None

    @property
    def rate(self) -> float:
        return self.wrk.created_rate

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

    def beside_baseline(self) -> str:
        return beside(NAIVE, self.baseline.created_rate, self.rate) if self.baseline else ""


async def sign_phase(stack: Stack) -> tuple[SignResult, list[str]]:
    cfg = stack.cfg
    say(f"\n== sign throughput: wrk -t{cfg.threads} -c{cfg.connections} -d{cfg.duration}s")
    rows_before = await stack.rows()
    cpu_before = stack.cpu.snapshot()
    result = await stack.full_load(stack.sign_url, "sign", **sign_args("s"))
    say(f"   {result.describe()}")
    say_cpu(stack.cpu.report(cpu_before))

    # Requests left in flight when wrk stopped are still being written; give them a moment.
    async def settled() -> bool:
        return await stack.rows() - rows_before >= result.sent

    with contextlib.suppress(BenchError):
        await wait_until(settled, timeout=5, what="in-flight signatures")
    rows = await stack.rows() - rows_before
    drain_s = await wait_converged(stack, timeout=120)
    baseline = None
    if stack.baseline is not None:
        baseline = await stack.baseline_load("/sign", NAIVE, "sign", **sign_args("b"))
    sign = SignResult(result, rows, drain_s, baseline)
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
    if baseline is not None and baseline.errors:
        failures.append(f"sign phase baseline: {baseline.describe()}")
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
        return self.load.created_rate

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
        "paced_sign",
        threads=1,
        conns=cfg.lag_connections,
        secs=cap_s,
        rate=cfg.lag_rate,
        **sign_args("l"),
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


@dataclass(frozen=True)
class ReadsResult:
    wrk: WrkResult
    baseline: WrkResult | None

    def beside_baseline(self) -> str:
        return beside(STATIC, self.baseline.rate, self.wrk.rate) if self.baseline else ""


async def reads_phase(stack: Stack) -> tuple[ReadsResult, list[str]]:
    cfg = stack.cfg
    say(f"\n== counts reads: wrk -t{cfg.threads} -c{cfg.connections} -d{cfg.duration}s")
    cpu_before = stack.cpu.snapshot()
    result = await stack.full_load(stack.counts_url, "read")
    say(f"   {result.describe()}")
    say_cpu(stack.cpu.report(cpu_before))
    baseline = None
    if stack.baseline is not None:
        baseline = await stack.baseline_load("/static", STATIC, "read")
    failures = [f"reads phase: {result.describe()}"] if result.errors else []
    if baseline is not None and baseline.errors:
        failures.append(f"reads phase baseline: {baseline.describe()}")
    return ReadsResult(result, baseline), failures


# -- the run and its summary -----------------------------------------------------------------


@dataclass
class Report:
    cfg: Config
    route: str = "direct"
    sign: SignResult | None = None
    lag: LagResult | None = None
    reads: ReadsResult | None = None
    final_total: int | None = None
    final_rows: int | None = None
    failures: list[str] = field(default_factory=list)


async def run(cfg: Config, reports: list[Report]) -> None:
    async with contextlib.AsyncExitStack() as exits:
        site = await workspace(exits)
        await open_petition(site.database_url, SLUG)
        if cfg.signature_log == "off":
            await without_signature_log(site.database_url)
        say(f"database {site.database_url.rsplit('/', 1)[-1]}, Redis prefix {site.layout.prefix}")
        log = {"COUNTERSIGN_SIGNATURE_LOG": cfg.signature_log}
        routes = {"direct": site.service_env(**log)}
        if cfg.pgbouncer:
            bouncer = PrivatePgBouncer(
                site.servers.postgres,
                pool_size=cfg.pgbouncer_pool,
                min_pool_size=cfg.pgbouncer_pool,
            )
            exits.callback(bouncer.stop)
            say(f"PgBouncer (transaction mode, pool of {cfg.pgbouncer_pool}) on {bouncer.port}")
            routes["through PgBouncer"] = site.service_env(
                DATABASE_URL=bouncer.url(site.database_url.rsplit("/", 1)[-1]),
                DATABASE_DIRECT_URL=site.database_url,
                COUNTERSIGN_DATABASE_POOLER="transaction",
                **log,
            )

        cpu = CpuMeter()
        baseline = None
        if not cfg.skip_baseline:
            baseline = await start_baseline(
                exits, site.database_url, site.folder, processes=cfg.api_workers, cpu=cpu
            )
        session = await exits.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8))
        )
        db = await asyncpg.connect(site.database_url)
        exits.push_async_callback(db.close)
        for route, env in routes.items():
            say(f"\n######## services {route}")
            report = Report(cfg, route)
            reports.append(report)
            async with contextlib.AsyncExitStack() as running:
                logs = site.folder / route.replace(" ", "-")
                logs.mkdir()
                api = await start_api(running, env, logs, workers=cfg.api_workers, cpu=cpu)
                services: list[ServiceProcess] = [api]
                for n in range(cfg.workers):
                    name = f"counter-worker-{n}"
                    services.append(await start_worker(running, env, logs, name, cpu=cpu))
                stack = Stack(cfg, api, services, baseline, session, db, cpu, running)
                await wait_ready(stack)
                await run_phases(stack, report)
        say("\nstopping services and removing the database and Redis keys")


async def without_signature_log(database_url: str) -> None:
    """Signing as it was before the signature log: its triggers off (this database only)."""
    conn = await asyncpg.connect(database_url)
    try:
        for trigger in ("signatures_log_insert", "signatures_log_update", "signatures_log_delete"):
            await conn.execute(f"ALTER TABLE signatures DISABLE TRIGGER {trigger}")
    finally:
        await conn.close()


async def wait_ready(stack: Stack) -> None:
    async def counts_built() -> bool:
        return await http_status(stack.session, stack.counts_url) == 200

    took = await wait_listening(
        f"{stack.api.url}/readyz", stack.cfg.api_workers, alive=stack.check_alive
    )
    took += await wait_until(
        counts_built, timeout=30, what="GET /counts == 200", alive=stack.check_alive
    )
    say(f"services ready in {took:.1f}s (API on {stack.api.url})")


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
        f"countersign core benchmark, Postgres {report.route}: {os.cpu_count()} cores "
        f"(usable {affinity}), {cfg.api_workers} API processes, {cfg.workers} counter "
        f"worker(s), signature log {cfg.signature_log}, "
        f"wrk -t{cfg.threads} -c{cfg.connections} -d{cfg.duration}s, "
        f"load average at the end {os.getloadavg()[0]:.1f}",
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
        if s.baseline is not None:
            lines.append(f"{'':19}beside the {s.beside_baseline()}")
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
        r = report.reads.wrk
        lines.append(
            f"counts reads:      {r.rate:,.0f} req/s (p50 {r.p50_ms:.1f} ms, "
            f"p99 {r.p99_ms:.1f} ms), {r.non_2xx} non-2xx, "
            f"{sum(r.socket_errors.values())} socket errors"
            f"   [target >= {READS_TARGET:,.0f}/s: {verdict(r.rate >= READS_TARGET)}]"
        )
        if report.reads.baseline is not None:
            lines.append(f"{'':19}beside the {report.reads.beside_baseline()}")
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


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    if not Path(cfg.wrk).exists():
        print(f"bench: error: wrk not found at {cfg.wrk}", file=sys.stderr)
        return 1
    reports: list[Report] = []

    async def measure() -> int:
        await run(cfg, reports)
        return 0

    status = bench_main(measure, "bench")
    if status:
        return status
    for report in reports:
        say(summary(report))
    return 1 if any(report.failures for report in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
