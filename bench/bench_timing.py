"""Timing benchmark: can the sign answer's time tell whether an address had signed?

An attacker probes an address by signing it and timing the answer. This signs, one
request at a time as a prober would, pairs of addresses: one that never signed, one that
had (on a petition that requires confirmation: pending, or confirmed), in a random order
within each pair, against the real API and counter worker. It prints each kind's median
and 90th percentile, and the difference of the medians with a 95% bootstrap interval
(resampling the pairs): an interval that holds 0 is a difference the pairs cannot tell
from noise.

    python -m bench.bench_timing [--pairs 500]

Servers: DATABASE_URL / REDIS_URL (server-level URLs) when set, else embedded ones. The
script creates and drops its own ``cs_bench_*`` database and Redis key prefix.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import time
from dataclasses import dataclass

import aiohttp
import asyncpg

from bench.harness.run import BenchError, bench_main, percentile, say
from bench.harness.stack import open_petition, start_api, start_worker, wait_listening, workspace
from countersign_domain.petitions import create_petition

COUNTING = "counts-at-once"
CONFIRMING = "requires-confirmation"


@dataclass(frozen=True)
class Config:
    pairs: int
    warmup: int
    seed: int


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_timing",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--pairs", type=int, default=500, help="pairs per comparison")
    parser.add_argument("--warmup", type=int, default=100, help="requests before measuring")
    parser.add_argument("--seed", type=int, default=20240501, help="the pairs' order")
    args = parser.parse_args(argv)
    if args.pairs < 10:
        parser.error("--pairs must be at least 10")
    return Config(args.pairs, args.warmup, args.seed)


@dataclass(frozen=True)
class Comparison:
    petition: str
    had: str  # what the "had signed" address had done: pending, confirmed, signed
    new: list[float]  # seconds
    signed: list[float]


class Prober:
    def __init__(self, session: aiohttp.ClientSession, api: str) -> None:
        self.session = session
        self.api = api
        self._numbers = iter(range(10**9))

    def address(self) -> str:
        return f"probe{next(self._numbers)}@example.org"

    async def sign(self, slug: str, email: str) -> float:
        """One signature; the seconds from sending it to the end of the answer."""
        body = {"name": "Timing Probe", "email": email, "country": "FR"}
        url = f"{self.api}/v1/petitions/{slug}/signatures"
        started = time.perf_counter()
        async with self.session.post(url, json=body) as response:
            await response.read()
            took = time.perf_counter() - started
        if response.status not in (201, 202):
            raise BenchError(f"signing answered {response.status}")
        return took


async def compare(
    prober: Prober, db: asyncpg.Connection, slug: str, had: str, cfg: Config, rng: random.Random
) -> Comparison:
    """``cfg.pairs`` pairs: a new address, and one that signed (and, for ``confirmed``,
    confirmed) beforehand, outside the timed requests."""
    earlier = [prober.address() for _ in range(cfg.pairs)]
    for email in earlier:
        await prober.sign(slug, email)
    if had == "confirmed":
        await db.execute(
            "UPDATE signatures SET confirmed_at = now() WHERE email = ANY($1)", earlier
        )
    new: list[float] = []
    signed: list[float] = []
    for email in earlier:
        fresh = prober.address()
        if rng.random() < 0.5:
            new.append(await prober.sign(slug, fresh))
            signed.append(await prober.sign(slug, email))
        else:
            signed.append(await prober.sign(slug, email))
            new.append(await prober.sign(slug, fresh))
    return Comparison(slug, had, new, signed)


def bootstrap_interval(
    new: list[float], signed: list[float], rng: random.Random, rounds: int = 2000
) -> tuple[float, float]:
    """95% interval of median(new) - median(signed), resampling the pairs."""
    pairs = list(zip(new, signed, strict=True))
    differences = []
    for _ in range(rounds):
        sample = [rng.choice(pairs) for _ in pairs]
        differences.append(
            statistics.median(a for a, _ in sample) - statistics.median(b for _, b in sample)
        )
    return percentile(differences, 2.5), percentile(differences, 97.5)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:6.2f} ms"


def report(comparisons: list[Comparison], rng: random.Random) -> str:
    lines = ["", "=" * 92, "sign answer times, one request at a time (median / p90)", "-" * 92]
    for c in comparisons:
        low, high = bootstrap_interval(c.new, c.signed, rng)
        difference = statistics.median(c.new) - statistics.median(c.signed)
        lines.append(
            f"{c.petition:<22} new {ms(statistics.median(c.new))} / {ms(percentile(c.new, 90))}"
            f"   had signed ({c.had:<9}) {ms(statistics.median(c.signed))} / "
            f"{ms(percentile(c.signed, 90))}"
        )
        lines.append(
            f"{'':<22} {len(c.new)} pairs; median difference {difference * 1000:+.2f} ms, "
            f"95% interval [{low * 1000:+.2f}, {high * 1000:+.2f}] ms"
        )
    lines.append("=" * 92)
    return "\n".join(lines)


async def run(cfg: Config) -> list[Comparison]:
    rng = random.Random(cfg.seed)
    async with contextlib.AsyncExitStack() as exits:
        site = await workspace(exits)
        await open_petition(site.database_url, COUNTING)
        db = await asyncpg.connect(site.database_url)
        exits.push_async_callback(db.close)
        await create_petition(
            db, actor="bench", slug=CONFIRMING, title="Benchmark petition", status="open"
        )
        env, logs = site.service_env(), site.folder
        api = await start_api(exits, env, logs)
        worker = await start_worker(exits, env, logs)

        def alive() -> None:
            for process in (api, worker):
                try:
                    process.check_alive()
                except AssertionError as exc:
                    raise BenchError(str(exc)) from None

        await wait_listening(f"{api.url}/readyz", 1, alive=alive)
        session = await exits.enter_async_context(aiohttp.ClientSession())
        prober = Prober(session, api.url)
        for _ in range(cfg.warmup):
            await prober.sign(COUNTING, prober.address())
            await prober.sign(CONFIRMING, prober.address())
        say(f"measuring {cfg.pairs} pairs per comparison, one request at a time")
        comparisons = []
        for slug, had in ((COUNTING, "signed"), (CONFIRMING, "pending"), (CONFIRMING, "confirmed")):
            comparisons.append(await compare(prober, db, slug, had, cfg, rng))
            alive()
        say(report(comparisons, rng))
        return comparisons


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)

    async def measure() -> int:
        await run(cfg)
        return 0

    return bench_main(measure, "bench_timing")


if __name__ == "__main__":
    sys.exit(main())
