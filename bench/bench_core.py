"""Core benchmark: sign throughput, 201 -> /counts lag at ~1,000 signatures/s, counts reads,
each throughput beside a plain-aiohttp baseline measured in the same run, in turns.

Runs the real processes (``countersign api`` and ``counter_worker``) against a throwaway
database and Redis key prefix, configured as deployed (``--profile deployed``: behind a
trusted proxy, a client address per request, every safeguard on) or with the abuse
limits, access log and metrics out of the way (``--profile shortcut``), drives them with
wrk, and prints a summary with the goals. Everything it creates is removed at the end,
also on Ctrl-C or an error.

    python -m bench.bench_core [--profile deployed] [--duration 10] [--rounds 3] ...
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
from bench.harness.run import BenchError, bench_main, percentile, say, wait_until
from bench.harness.stack import (
    PROFILES,
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

# Goals (issue 11): ratios to the baselines measured in the same run, and latencies.
SIGN_RATIO_GOAL = 2.0  # signatures/s, times the naive app's
READS_RATIO_GOAL = 0.8  # counts reads/s, times the bare static JSON's
LAG_P99_GOAL_MS = 100.0  # 201 -> visible in /counts, at ~1,000 signatures/s
PACED_P99_GOAL_MS = 50.0  # signing latency at ~1,000 signatures/s

SLUG = "bench-core"
LOAD_COUNTRIES = ("GB", "FR", "DE", "US", "SY", "BR", "IN", "NG")
PROBE_COUNTRY = "AQ"  # never used by the load, so its count moves only with the probes
NAIVE = "naive one-INSERT aiohttp app"
STATIC = "bare aiohttp static JSON"


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    profile: str
    duration: int
    rounds: int
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
    setting: list[str]


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        description="Benchmark signing, live-count lag and counts reads of countersign.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--profile",
        choices=PROFILES,
        default="deployed",
        help="deployed: behind a trusted proxy, a client address per request, abuse limits, "
        "global ceiling, access log at INFO, metrics; shortcut: load allow-listed, no global "
        "ceiling, logs at WARNING, no metrics",
    )
    add("--duration", type=int, default=10, help="seconds of each sign and reads round")
    add(
        "--rounds",
        type=int,
        default=3,
        help="sign and reads rounds, each countersign then its baseline (alternating order)",
    )
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
    add(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the services for this run, over the profile's (repeatable)",
    )
    args = parser.parse_args(argv)
    if any("=" not in setting for setting in args.setting):
        parser.error("--setting takes NAME=VALUE")
    positive = (
        "duration",
        "rounds",
        "api_workers",
        "workers",
        "connections",
        "threads",
        "pgbouncer_pool",
    )
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

    async def counted_rows(self) -> int:
        """Rows that count: not the ones held for review (over the global ceiling, say)."""
        return int(await self.db.fetchval("SELECT count(*) FROM signatures WHERE counted"))

    async def held_rows(self) -> dict[str, int]:
        """Rows held for review, by reason (the rate limits' reasons, disposable...)."""
        rows = await self.db.fetch(
            "SELECT suspect_reason, count(*) AS n FROM signatures "
            "WHERE suspect_reason IS NOT NULL GROUP BY 1 ORDER BY 1"
        )
        return {row["suspect_reason"]: int(row["n"]) for row in rows}

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
    """bench/wrk/sign.lua's arguments: a tag no other run or phase uses, the countries, and
    where its client addresses start (each phase its own, as far as chance goes)."""
    return {
        "tag": f"{phase}{secrets.token_hex(3)}",
        "countries": ",".join(LOAD_COUNTRIES),
        "addresses": str(secrets.randbelow(1 << 24)),
    }


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


@dataclass(frozen=True)
class Round:
    """One round: countersign's load, and the baseline's, one right after the other."""

    ours: WrkResult
    baseline: WrkResult | None
    sign: bool  # a sign round (rates are 201s/s), else a reads round (answers/s)

    @property
    def rate(self) -> float:
        return self.ours.created_rate if self.sign else self.ours.rate

    @property
    def baseline_rate(self) -> float | None:
        if self.baseline is None:
            return None
        return self.baseline.created_rate if self.sign else self.baseline.rate

    @property
    def ratio(self) -> float | None:
        base = self.baseline_rate
        return self.rate / base if base else None


@dataclass(frozen=True)
class Rounds:
    rounds: list[Round]

    @property
    def rate(self) -> float:
        return median([r.rate for r in self.rounds])

    @property
    def baseline_rate(self) -> float | None:
        rates = [r.baseline_rate for r in self.rounds if r.baseline_rate is not None]
        return median(rates) if rates else None

    @property
    def ratio(self) -> float | None:
        ratios = [r.ratio for r in self.rounds if r.ratio is not None]
        return median(ratios) if ratios else None

    @property
    def middle(self) -> WrkResult:
        """countersign's run of the median rate (its latencies are the ones shown)."""
        ordered = sorted(self.rounds, key=lambda r: r.rate)
        return ordered[len(ordered) // 2].ours

    @property
    def errors(self) -> int:
        return sum(r.ours.errors for r in self.rounds)

    def beside_baseline(self, name: str) -> str:
        if self.baseline_rate is None or self.ratio is None:
            return ""
        each = ", ".join(f"{r.ratio:.2f}x" for r in self.rounds if r.ratio is not None)
        return (
            f"{name}: {self.baseline_rate:,.0f}/s (median); countersign "
            f"{self.ratio:.2f}x of it (median of the rounds: {each})"
        )


async def measure_rounds(
    stack: Stack, path: str, script: str, baseline_path: str, *, sign: bool, phase: str
) -> list[Round]:
    """``--rounds`` rounds of countersign and its baseline, alternating which goes first,
    so that neither always runs on a machine just warmed up (or just busied) by the other."""
    cfg = stack.cfg

    def args() -> dict[str, str]:
        return sign_args(phase) if sign else {}

    async def baseline() -> WrkResult:
        return await stack.baseline_load(baseline_path, NAIVE if sign else STATIC, script, **args())

    rounds = []
    for n in range(cfg.rounds):
        say(f"   round {n + 1} of {cfg.rounds}:")
        theirs = await baseline() if stack.baseline is not None and n % 2 else None
        cpu_before = stack.cpu.snapshot()
        ours = await stack.full_load(path, script, **args())
        say(f"   countersign: {ours.describe()}")
        say_cpu(stack.cpu.report(cpu_before))
        if stack.baseline is not None and not n % 2:
            theirs = await baseline()
        rounds.append(Round(ours, theirs, sign))
    return rounds


# -- phases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignResult:
    rounds: Rounds
    sent: int  # requests sent, over every round
    created: int  # 201s, over every round
    rows: int  # rows written meanwhile
    held: dict[str, int]  # of which held for review, by reason
    drain_s: float

    @property
    def rows_match(self) -> bool:
        # Every 201 must be a row. Requests in flight when wrk stopped are still recorded
        # by the API (the writer finishes a batch whose client hung up), so rows may
        # exceed the 201s by those, and never by more: each request has its own email.
        return self.created <= self.rows <= self.sent

    def rows_text(self) -> str:
        return f"rows in Postgres == 201s: {'yes' if self.rows_match else 'NO'}"

    def rows_detail(self) -> str:
        rows, created, sent = self.rows, self.created, self.sent
        if not self.rows_match:
            return f"({rows:,} rows, {created:,} 201s, {sent:,} requests sent)"
        in_flight = sent - sum(r.ours.requests for r in self.rounds.rounds)
        return (
            f"({rows:,} rows = {created:,} 201s + {rows - created} of the {in_flight} "
            "requests in flight when wrk stopped)"
        )

    def held_text(self) -> str:
        if not self.held:
            return "none held for review"
        return "held for review: " + ", ".join(f"{n:,} {why}" for why, n in self.held.items())


async def sign_phase(stack: Stack) -> tuple[SignResult, list[str]]:
    cfg = stack.cfg
    say(
        f"\n== sign throughput: {cfg.rounds} rounds of wrk -t{cfg.threads} -c{cfg.connections} "
        f"-d{cfg.duration}s"
    )
    rows_before = await stack.rows()
    held_before = await stack.held_rows()
    rounds = await measure_rounds(stack, stack.sign_url, "sign", "/sign", sign=True, phase="s")
    sent = sum(r.ours.sent for r in rounds)

    # Requests left in flight when wrk stopped are still being written; give them a moment.
    async def settled() -> bool:
        return await stack.rows() - rows_before >= sent

    with contextlib.suppress(BenchError):
        await wait_until(settled, timeout=5, what="in-flight signatures")
    rows = await stack.rows() - rows_before
    held = {
        why: n - held_before.get(why, 0)
        for why, n in (await stack.held_rows()).items()
        if n > held_before.get(why, 0)
    }
    drain_s = await wait_converged(stack, timeout=120)
    created = sum(r.ours.created for r in rounds)
    sign = SignResult(Rounds(rounds), sent, created, rows, held, drain_s)
    say(f"   {sign.rows_text()} {sign.rows_detail()}; {sign.held_text()}")
    say(f"   live counts caught up with Postgres {drain_s:.2f}s after the load stopped")
    failures = []
    for n, r in enumerate(rounds, start=1):
        if r.ours.errors or r.ours.created != r.ours.requests:
            failures.append(
                f"sign round {n}: {r.ours.non_2xx} non-2xx, {r.ours.requests - r.ours.created} "
                f"responses not 201, socket errors {r.ours.socket_errors}"
            )
        if r.baseline is not None and r.baseline.errors:
            failures.append(f"sign round {n} baseline: {r.baseline.describe()}")
    if not sign.rows_match:
        failures.append(f"sign phase: {sign.rows_text()} {sign.rows_detail()}")
    return sign, failures


async def wait_converged(stack: Stack, timeout: float) -> float:
    """Until no counter event is waiting and /counts' total equals the rows that count."""

    async def converged() -> bool:
        if await stack.pending_events():
            return False
        counts = await stack.counts()
        return counts is not None and counts["total"] == await stack.counted_rows()

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
    # A client address of its own (believed in the deployed profile, ignored otherwise).
    address = f"10.255.{seq // 256 % 256}.{seq % 256}"
    headers = {"X-Forwarded-For": address}
    async with stack.session.post(stack.sign_url, json=body, headers=headers) as response:
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


async def reads_phase(stack: Stack) -> tuple[Rounds, list[str]]:
    cfg = stack.cfg
    say(
        f"\n== counts reads: {cfg.rounds} rounds of wrk -t{cfg.threads} -c{cfg.connections} "
        f"-d{cfg.duration}s"
    )
    rounds = await measure_rounds(stack, stack.counts_url, "read", "/static", sign=False, phase="r")
    failures = []
    for n, r in enumerate(rounds, start=1):
        if r.ours.errors:
            failures.append(f"reads round {n}: {r.ours.describe()}")
        if r.baseline is not None and r.baseline.errors:
            failures.append(f"reads round {n} baseline: {r.baseline.describe()}")
    return Rounds(rounds), failures


# -- the run and its summary -----------------------------------------------------------------


@dataclass
class Report:
    cfg: Config
    route: str = "direct"
    sign: SignResult | None = None
    lag: LagResult | None = None
    reads: Rounds | None = None
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
        settings = dict(setting.split("=", 1) for setting in cfg.setting)
        settings["COUNTERSIGN_SIGNATURE_LOG"] = cfg.signature_log
        routes = {"direct": site.service_env(profile=cfg.profile, **settings)}
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
                profile=cfg.profile,
                **settings,
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
    report.final_rows = await stack.counted_rows()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def goal(ok: bool, text: str) -> str:
    return f"   [goal {text}: {'PASS' if ok else 'MISS'}]"


def summary(report: Report) -> str:
    cfg = report.cfg
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "",
        "=" * 100,
        f"countersign core benchmark, profile {cfg.profile}, Postgres {report.route}: "
        f"{os.cpu_count()} cores (usable {affinity}, load average now {load}), "
        f"{cfg.api_workers} API processes, {cfg.workers} counter worker(s), signature log "
        f"{cfg.signature_log}, {cfg.rounds} rounds of wrk -t{cfg.threads} "
        f"-c{cfg.connections} -d{cfg.duration}s"
        + "".join(f", {setting}" for setting in cfg.setting),
        "-" * 100,
    ]
    if report.sign:
        s, ours = report.sign, report.sign.rounds.middle
        lines.append(
            f"sign throughput:   {s.rounds.rate:,.0f} signatures/s (median round), "
            f"{s.rounds.errors} errors (p50 {ours.p50_ms:.1f} ms, p99 {ours.p99_ms:.1f} ms), "
            f"{s.rows_text()}"
        )
        lines.append(f"{'':19}{s.rows_detail()}; {s.held_text()}")
        if (ratio_ := s.rounds.ratio) is not None:
            lines.append(
                f"{'':19}beside the {s.rounds.beside_baseline(NAIVE)}"
                + goal(ratio_ >= SIGN_RATIO_GOAL, f">= {SIGN_RATIO_GOAL:.1f}x")
            )
    if report.lag:
        lag = report.lag
        lines.append(
            f"lag 201->/counts at ~{cfg.lag_rate:,}/s: p50 {lag.stat(50):.1f} ms, "
            f"p99 {lag.stat(99):.1f} ms, max {lag.stat(100):.1f} ms"
            + goal(lag.stat(99) <= LAG_P99_GOAL_MS, f"p99 <= {LAG_P99_GOAL_MS:.0f} ms")
        )
        lines.append(
            f"{'':19}signing at that rate: p50 {lag.load.p50_ms:.1f} ms, "
            f"p99 {lag.load.p99_ms:.1f} ms"
            + goal(lag.load.p99_ms <= PACED_P99_GOAL_MS, f"p99 <= {PACED_P99_GOAL_MS:.0f} ms")
        )
        lines.append(
            f"{'':19}({len(lag.lags_ms)} probes; load achieved {lag.achieved_rate:,.0f} "
            f"signatures/s, {lag.load.errors} errors)"
        )
    if report.reads:
        r = report.reads.middle
        lines.append(
            f"counts reads:      {report.reads.rate:,.0f} req/s (median round; p50 "
            f"{r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms), {report.reads.errors} errors"
        )
        if (ratio_ := report.reads.ratio) is not None:
            lines.append(
                f"{'':19}beside the {report.reads.beside_baseline(STATIC)}"
                + goal(ratio_ >= READS_RATIO_GOAL, f">= {READS_RATIO_GOAL:.1f}x")
            )
    if report.final_rows is not None:
        same = "yes" if report.final_total == report.final_rows else "NO"
        lines.append(
            f"live counts at the end: total {report.final_total} == {report.final_rows} "
            f"counted rows in Postgres: {same}"
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
