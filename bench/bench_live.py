"""Live counts under load: thousands of open streams on ONE API process, and for each
signature the time from its 201 to the new total arriving on EVERY stream.

    python -m bench.bench_live [--streams 5000] [--signatures 100] [--clients 2]

A real API process and a real counter worker (subprocesses), streams opened by client
processes. Uses DATABASE_URL / REDIS_URL, or embedded servers when they are unset;
creates its own database and Redis key prefix and removes them afterwards. Prints the
number of streams, the Redis pub/sub subscribers they cost, and p50/p99/max latency.
Target: p99 under one second with 5,000 streams.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import resource
import statistics
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from bench.harness.run import bench_main, percentile, say
from bench.harness.stack import (
    alive,
    open_petition,
    start_api,
    start_worker,
    wait_listening,
    workspace,
)
from counter_worker.keys import KeyLayout
from countersign_core.connections import RedisClient, create_redis
from countersign_core.runtime import run

SLUG = "bench-live"
OPEN_CONCURRENCY = 100


def raise_open_files_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        soft = min(needed, hard) if hard != resource.RLIM_INFINITY else needed
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


# -- the client processes -------------------------------------------------------------------


def stream_client(url: str, streams: int, final_total: int, pipe: Connection) -> None:
    """Open ``streams`` live streams; report when all have their first event, then the
    latest first-arrival time of each total 1..final_total over all of them."""
    pipe.send(run(_stream_client(url, streams, final_total, pipe)))


async def _stream_client(
    url: str, streams: int, final_total: int, pipe: Connection
) -> dict[str, object]:
    opening = asyncio.Semaphore(OPEN_CONCURRENCY)
    opened = asyncio.Event()
    ready = 0
    started = time.monotonic()
    # first[T]: the latest moment, over all streams, at which a stream first held >= T.
    latest_first = [0.0] * (final_total + 1)
    missing = 0

    async def follow(session: aiohttp.ClientSession) -> None:
        nonlocal ready, missing
        seen = 0  # every total up to this one has been seen on this stream
        first_event = True
        async with opening:
            response = await session.get(url, timeout=aiohttp.ClientTimeout(total=None))
        async with response:
            async for raw in response.content:
                if not raw.startswith(b"data:"):
                    continue
                now = time.monotonic()
                total = json.loads(raw[5:])["total"]
                if first_event:
                    first_event = False
                    ready += 1
                    if ready == streams:
                        opened.set()
                while seen < min(total, final_total):
                    seen += 1
                    latest_first[seen] = max(latest_first[seen], now)
                if seen >= final_total:
                    return
        missing += 1

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(follow(session)) for _ in range(streams)]
        await asyncio.wait_for(opened.wait(), timeout=300)
        pipe.send({"ready_after": time.monotonic() - started})
        done, pending = await asyncio.wait(tasks, timeout=120)
        for task in pending:
            task.cancel()
        failed = sum(1 for task in done if task.exception() is not None)
    return {
        "latest_first": latest_first,
        "incomplete": missing + failed + len(pending),
    }


# -- the measurement ------------------------------------------------------------------------


async def sign(base: str, signatures: int, pause: float) -> list[float]:
    """Sign one by one; the moment each 201 arrived."""
    answered = []
    async with aiohttp.ClientSession() as session:
        for i in range(signatures):
            body = {"name": "Bench Signer", "email": f"bench{i}@example.org", "country": "FR"}
            async with session.post(f"{base}/v1/petitions/{SLUG}/signatures", json=body) as r:
                assert r.status == 201, await r.text()
            answered.append(time.monotonic())
            await asyncio.sleep(pause)
    return answered


async def bench(args: argparse.Namespace) -> int:
    async with contextlib.AsyncExitStack() as exits:
        site = await workspace(exits)
        await open_petition(site.database_url, SLUG)
        worker = await start_worker(exits, site.service_env(), site.folder)
        api = await start_api(exits, site.service_env(), site.folder)
        redis = create_redis(site.servers.redis)
        exits.push_async_callback(redis.aclose)
        await wait_listening(f"{api.url}/v1/petitions/{SLUG}/counts", 1, alive=alive(api, worker))
        answered, results = await measure(args, api.url, site.layout, redis)

    incomplete = sum(r["incomplete"] for r in results)
    latencies = []
    for total, at in enumerate(answered, start=1):
        everywhere = max(r["latest_first"][total] for r in results)
        latencies.append(everywhere - at)
    p99 = percentile(latencies, 99)
    say(f"signatures: {args.signatures}, {args.pause:.2f}s apart")
    say("from each 201 to its total on every stream:")
    say(
        f"  p50 {statistics.median(latencies) * 1000:.0f} ms   "
        f"p99 {p99 * 1000:.0f} ms   "
        f"max {max(latencies) * 1000:.0f} ms"
    )
    say(f"  streams that missed a total or failed: {incomplete}")
    verdict = "met" if p99 < 1.0 and not incomplete else "NOT met"
    say(f"target (p99 < 1 s on every stream): {verdict}")
    return 0


async def measure(
    args: argparse.Namespace, base: str, layout: KeyLayout, redis: RedisClient
) -> tuple[list[float], list[dict[str, Any]]]:
    """Open the streams in client processes, then sign; the moment of each 201, and what
    each client process saw."""
    context = multiprocessing.get_context("spawn")
    shares = [args.streams // args.clients] * args.clients
    shares[0] += args.streams - sum(shares)
    pipes, clients = [], []
    for share in shares:
        ours, theirs = context.Pipe()
        url = f"{base}/v1/petitions/{SLUG}/live"
        client = context.Process(target=stream_client, args=(url, share, args.signatures, theirs))
        client.start()
        pipes.append(ours)
        clients.append(client)
    ready = [await asyncio.to_thread(pipe.recv) for pipe in pipes]
    [(_, subscribers)] = await redis.pubsub_numsub(layout.updates_channel)
    named = [
        c for c in await redis.client_list() if c["name"] == f"countersign-live:{layout.prefix}"
    ]
    say(f"streams open: {args.streams} on one API process, across {args.clients} clients")
    say(f"  all open and holding the counts after {max(r['ready_after'] for r in ready):.1f}s")
    say(f"  Redis pub/sub subscribers on the updates channel: {subscribers}")
    say(f"  Redis connections named countersign-live: {len(named)}")

    answered = await sign(base, args.signatures, args.pause)
    results = [await asyncio.to_thread(pipe.recv) for pipe in pipes]
    for client in clients:
        client.join()
    return answered, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--signatures", type=int, default=100)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between signatures")
    args = parser.parse_args()
    limit = raise_open_files_limit(args.streams + 1024)
    if limit < args.streams + 256:
        sys.exit(f"the open-files limit ({limit}) is too low for {args.streams} streams")
    return bench_main(lambda: bench(args), "bench_live")


if __name__ == "__main__":
    sys.exit(main())
