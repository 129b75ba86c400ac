"""Signature log benchmark: `countersign verify` on 1,000,000 leaves, and signing with the
log on and off.

1. Fills a throwaway database with N counted signatures (default 1,000,000), lets the
   worker's appender turn them into leaves and signed heads, starts a real API process,
   and times `countersign verify` (its own process, over HTTP: it downloads every leaf
   and head, recomputes the tree and the totals, checks every signature). Target: under
   a minute. It also times the verifier's recomputation alone, on leaves read straight
   from Postgres, to show where the time goes.
2. Unless --no-sign: runs bench_core's sign phase with the log off, then on, then off
   and on again (alternating, so that other load on the machine falls on both alike),
   and prints the signing throughput of each.

    python -m bench.bench_log_verify [--leaves 1000000] [--no-sign]

Servers: DATABASE_URL / REDIS_URL when set, else embedded ones. Exit status 1 if the
verifier found a discrepancy or could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench import bench_core
from bench.harness.run import BenchError, bench_main, say
from bench.harness.stack import alive, open_petition, start_api, wait_listening, workspace
from countersign.cli.verifier import LogAudit
from countersign_core.connections import create_pg_pool
from countersign_domain.signature_log.appender import LogAppender
from countersign_domain.signature_log.heads import LogKey
from tests.support.processes import countersign

VERIFY_TARGET_S = 60.0
SLUG = "bench-log"
CHUNK = 100_000  # signatures per INSERT

FILL = """
INSERT INTO signatures (petition_id, name, email, email_hash, country)
SELECT $1, 'Bench Signer', 'signer' || g || '@example.org', sha256(int8send(g)),
       (ARRAY['SY', 'FR', 'RU', 'US', 'DE'])[1 + g % 5]
FROM generate_series($2::bigint, $3::bigint) AS g
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000, help="leaves per append")
    parser.add_argument("--no-sign", action="store_true", help="skip the signing comparison")
    parser.add_argument("--sign-duration", type=int, default=10, help="seconds per sign run")
    return parser.parse_args(argv)


async def fill(database_url: str, leaves: int, batch: int) -> float:
    """N counted signatures, appended as leaves; returns the seconds the appending took."""
    petition = await open_petition(database_url, SLUG)
    pool = await create_pg_pool(database_url, max_size=2)
    try:
        started = time.monotonic()
        for start in range(1, leaves + 1, CHUNK):
            await pool.execute(FILL, petition, start, min(start + CHUNK - 1, leaves))
        say(f"{leaves:,} signatures written in {time.monotonic() - started:.1f}s")
        appender = LogAppender(pool, LogKey(Ed25519PrivateKey.generate()), batch_size=batch)
        await appender.register_key()
        started = time.monotonic()
        appended = await appender.drain()
        took = time.monotonic() - started
        say(f"{appended:,} leaves appended and signed by the worker's appender in {took:.1f}s")
        return took
    finally:
        await pool.close()


async def recompute_only(database_url: str) -> float:
    """The verifier's recomputation alone, on the leaves read from Postgres."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT leaf FROM log_leaves ORDER BY leaf_index")
    finally:
        await conn.close()
    started = time.monotonic()
    audit = LogAudit({len(rows)})
    for row in rows:
        audit.add(row["leaf"])
    took = time.monotonic() - started
    if audit.problems or audit.totals.counted != len(rows):
        raise BenchError(f"the recomputation disagrees: {audit.problems[:3]}")
    return took


async def verify_over_http(
    exits: contextlib.AsyncExitStack, env: dict[str, str], log_dir: Path
) -> tuple[float, str]:
    api = await start_api(exits, env, log_dir)
    await wait_listening(f"{api.url}/readyz", 1, alive=alive(api))
    started = time.monotonic()
    result = await asyncio.to_thread(countersign, "verify", f"{api.url}/v1/petitions/{SLUG}")
    took = time.monotonic() - started
    text = result.stdout + result.stderr
    if result.returncode != 0:
        raise BenchError(f"countersign verify failed:\n{text}")
    return took, text


async def verify_phase(leaves: int, batch: int) -> list[str]:
    async with contextlib.AsyncExitStack() as exits:
        site = await workspace(exits)
        append_s = await fill(site.database_url, leaves, batch)
        recompute_s = await recompute_only(site.database_url)
        say(f"the verifier's recomputation alone: {recompute_s:.1f}s")
        verify_s, output = await verify_over_http(exits, site.service_env(), site.folder)
        say(output.rstrip())
        ok = verify_s < VERIFY_TARGET_S
        return [
            f"appending {leaves:,} leaves (worker, batches of {batch:,}): {append_s:.1f}s",
            f"the verifier's recomputation alone: {recompute_s:.1f}s",
            f"countersign verify over HTTP, {leaves:,} leaves: {verify_s:.1f}s"
            f"   [target < {VERIFY_TARGET_S:.0f}s: {'PASS' if ok else 'MISS'}]",
        ]


async def sign_rate(signature_log: str, duration: int) -> float:
    """bench_core's sign phase alone (no lag, reads or baseline), with the log on or off."""
    args = ["--skip-lag", "--skip-reads", "--skip-baseline", "--duration", str(duration)]
    cfg = bench_core.parse_args([*args, "--signature-log", signature_log])
    reports: list[bench_core.Report] = []
    await bench_core.run(cfg, reports)
    [report] = reports
    if report.failures or report.sign is None:
        raise BenchError(f"bench_core --signature-log {signature_log}: {report.failures}")
    return report.sign.rounds.rate


async def sign_phase(duration: int) -> list[str]:
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for signature_log in ("off", "on", "off", "on"):
        rate = await sign_rate(signature_log, duration)
        say(f"signing with the log {signature_log}: {rate:,.0f} signatures/s")
        rates[signature_log].append(rate)
    off, on = (sum(rates[k]) / len(rates[k]) for k in ("off", "on"))
    return [
        f"signing, log off: {' / '.join(f'{r:,.0f}' for r in rates['off'])} signatures/s "
        f"(mean {off:,.0f})",
        f"signing, log on:  {' / '.join(f'{r:,.0f}' for r in rates['on'])} signatures/s "
        f"(mean {on:,.0f}, {100 * (on - off) / off:+.1f}%)",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lines: list[str] = []

    async def measure() -> int:
        lines.extend(await verify_phase(args.leaves, args.batch))
        if not args.no_sign:
            lines.extend(await sign_phase(args.sign_duration))
        return 0

    status = bench_main(measure, "bench_log_verify")
    if status:
        return status
    say("\n" + "=" * 100 + "\n" + "\n".join(lines) + "\n" + "=" * 100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
