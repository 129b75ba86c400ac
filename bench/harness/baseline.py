"""Baselines measured in the same run as countersign, for ratios: what plain aiohttp does
on this machine, at this moment, with the same load.

- ``POST /sign``: a naive signing app, one INSERT per request (no batching, no checks
  beyond reading the JSON), answering 201 once it committed.
- ``GET /static``: a bare handler answering a fixed JSON body shaped like ``/counts``.

Each process is ``python -m bench.harness.baseline --port P --database-url U``; several
share the port (SO_REUSEPORT), as ``countersign api --workers N`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from aiohttp import web

from bench.harness.cpu import CpuMeter
from bench.harness.stack import alive, stop_at_exit, wait_listening
from countersign_core.runtime import event_loop_factory
from tests.support.processes import spawn_service
from tests.support.servers import free_port

TABLE = """CREATE TABLE IF NOT EXISTS baseline_signatures (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL UNIQUE,
    country text NOT NULL,
    source text,
    created_at timestamptz NOT NULL DEFAULT now()
)"""
INSERT = "INSERT INTO baseline_signatures (name, email, country, source) VALUES ($1, $2, $3, $4)"
POOL_SIZE = 8  # as the API's default COUNTERSIGN_DB_POOL_SIZE
STATIC_BODY = json.dumps(
    {
        "slug": "bench-core",
        "total": 123456,
        "goal": 1000000,
        "countries": [{"code": c, "count": 15432} for c in ("GB", "FR", "DE", "US", "SY")],
        "updated_at": "2025-01-01T12:00:00.000000+00:00",
        "stale": False,
    },
    separators=(",", ":"),
).encode()

POOL = web.AppKey("pool", asyncpg.Pool)


async def sign(request: web.Request) -> web.Response:
    body = await request.json()
    await request.app[POOL].execute(
        INSERT, body["name"], body["email"], body["country"], body.get("source")
    )
    return web.json_response({"status": "counted"}, status=201)


async def static(_request: web.Request) -> web.Response:
    return web.Response(body=STATIC_BODY, content_type="application/json")


def baseline_app(database_url: str) -> web.Application:
    async def pool(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await asyncpg.create_pool(database_url, min_size=POOL_SIZE, max_size=POOL_SIZE)
        yield
        await app[POOL].close()

    app = web.Application()
    app.cleanup_ctx.append(pool)
    app.router.add_post("/sign", sign)
    app.router.add_get("/static", static)
    return app


async def create_table(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(TABLE)
    finally:
        await conn.close()


async def start_baseline(
    exits: contextlib.AsyncExitStack,
    database_url: str,
    log_dir: Path,
    *,
    processes: int,
    cpu: CpuMeter | None = None,
) -> str:
    """``processes`` baseline processes on one port, serving; returns their base URL."""
    await create_table(database_url)
    port = free_port()
    started = []
    for n in range(processes):
        process = spawn_service(
            ["-m", "bench.harness.baseline", "--port", str(port), "--database-url", database_url],
            {},
            log_dir / f"baseline-{n}.log",
        )
        stop_at_exit(exits, process)
        if cpu is not None:
            cpu.label(process.pid, "baseline")
        started.append(process)
    base = f"http://127.0.0.1:{port}"
    await wait_listening(f"{base}/static", processes, alive=alive(*started))
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    web.run_app(
        baseline_app(args.database_url),
        host="127.0.0.1",
        port=args.port,
        reuse_port=True,
        access_log=None,
        print=None,
        loop=event_loop_factory()(),
    )


if __name__ == "__main__":
    main()
