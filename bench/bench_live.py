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
import json
import multiprocessing
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from uuid import uuid4

import aiohttp
import asyncpg

from counter_worker.keys import KeyLayout
from countersign.embedded import start_embedded, with_database
from countersign_core.connections import create_redis
from countersign_core.migrations import migrate
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


# -- the servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def bench_database(server_url: str) -> AsyncIterator[str]:
    name = f"cs_bench_{uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    try:
        conn = await asyncpg.connect(url)
        await migrate(conn)
        await conn.execute(
            "INSERT INTO petitions (slug, title, status, require_confirmation)"
            " VALUES ($1, 'Bench', 'open', false)",
            SLUG,
        )
        await conn.close()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def wait_for_counts(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{base}/v1/petitions/{SLUG}/counts") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the API or the worker did not come up")


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


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def bench(args: argparse.Namespace, database_url: str, redis_url: str) -> None:
    layout = KeyLayout(f"bench-{uuid4().hex[:8]}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "COUNTERSIGN_SECRET_KEY": "bench-only-not-a-secret-0123456789abcdef",
        "COUNTERSIGN_REDIS_PREFIX": layout.prefix,
        "COUNTERSIGN_PORT": str(port),
        "COUNTERSIGN_LOG_LEVEL": "WARNING",
    }
    processes = [
        await asyncio.create_subprocess_exec(sys.executable, "-m", module, env=env)
        for module in ("counter_worker", "petition_api")
    ]
    redis = create_redis(redis_url)
    try:
        await wait_for_counts(base)
        context = multiprocessing.get_context("spawn")
        shares = [args.streams // args.clients] * args.clients
        shares[0] += args.streams - sum(shares)
        pipes, clients = [], []
        for share in shares:
            ours, theirs = context.Pipe()
            url = f"{base}/v1/petitions/{SLUG}/live"
            client = context.Process(
                target=stream_client, args=(url, share, args.signatures, theirs)
            )
            client.start()
            pipes.append(ours)
            clients.append(client)
        ready = [await asyncio.to_thread(pipe.recv) for pipe in pipes]
        [(_, subscribers)] = await redis.pubsub_numsub(layout.updates_channel)
        named = [
            c for c in await redis.client_list() if c["name"] == f"countersign-live:{layout.prefix}"
        ]
        print(f"streams open: {args.streams} on one API process, across {args.clients} clients")
        print(
            f"  all open and holding the counts after {max(r['ready_after'] for r in ready):.1f}s"
        )
        print(f"  Redis pub/sub subscribers on the updates channel: {subscribers}")
        print(f"  Redis connections named countersign-live: {len(named)}")

        answered = await sign(base, args.signatures, args.pause)
        results = [await asyncio.to_thread(pipe.recv) for pipe in pipes]
        for client in clients:
            client.join()
    finally:
        for process in processes:
            process.terminate()
            await asyncio.wait_for(process.wait(), 15)
        doomed = [key async for key in redis.scan_iter(match=layout.namespace_pattern())]
        if doomed:
            await redis.delete(*doomed)
        await redis.aclose()

    incomplete = sum(r["incomplete"] for r in results)
    latencies = []
    for total, at in enumerate(answered, start=1):
        everywhere = max(r["latest_first"][total] for r in results)
        latencies.append(everywhere - at)
    print(f"signatures: {args.signatures}, {args.pause:.2f}s apart")
    print("from each 201 to its total on every stream:")
    print(
        f"  p50 {statistics.median(latencies) * 1000:.0f} ms   "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms   "
        f"max {max(latencies) * 1000:.0f} ms"
    )
    print(f"  streams that missed a total or failed: {incomplete}")
    verdict = "met" if percentile(latencies, 0.99) < 1.0 and not incomplete else "NOT met"
    print(f"target (p99 < 1 s on every stream): {verdict}")


async def main_async(args: argparse.Namespace) -> None:
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    with tempfile.TemporaryDirectory() as scratch:
        embedded = None
        if not database_url or not redis_url:
            embedded = start_embedded(Path(scratch), keep=False)
        try:
            server = database_url or embedded.database_url  # type: ignore[union-attr]
            async with bench_database(server) as url:
                await bench(args, url, redis_url or embedded.redis_url)  # type: ignore[union-attr]
        finally:
            if embedded is not None:
                embedded.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--signatures", type=int, default=100)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between signatures")
    args = parser.parse_args()
    limit = raise_open_files_limit(args.streams + 1024)
    if limit < args.streams + 256:
        sys.exit(f"the open-files limit ({limit}) is too low for {args.streams} streams")
    run(main_async(args))


if __name__ == "__main__":
    main()
