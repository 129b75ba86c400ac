"""Helpers for the staff API tests: tokens, signatures with chosen fields, CSV reading,
an API process."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from countersign_domain.export import UTF8_BOM
from countersign_domain.signatures import Hasher
from tests.support import eventually

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]

SLUG = "refer-syria-to-icc"
ADMIN = "/v1/admin"


@dataclass(frozen=True)
class StaffTokens:
    admin: str
    exporter: str


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def insert_signature(
    pool: asyncpg.Pool,
    hasher: Hasher,
    petition_id: int,
    *,
    name: str = "Test Signer",
    email: str,
    country: str = "SY",
    source: str | None = None,
    postal_code: str | None = None,
    ip: str | None = None,
    created_at: datetime | None = None,
) -> int:
    """One signature with exactly these fields, hashed as the sign endpoint hashes them."""
    signature_id: int = await pool.fetchval(
        """INSERT INTO signatures (petition_id, name, email, email_hash, country, source,
                                   postal_code, ip_hash, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, now())) RETURNING id""",
        petition_id,
        name,
        email,
        hasher.email(email),
        country,
        source,
        postal_code,
        hasher.ip(ip) if ip else None,
        created_at,
    )
    return signature_id


@dataclass(frozen=True)
class ApiProcess:
    base: str
    pid: int


@asynccontextmanager
async def running_api(env: dict[str, str], log_path: Path) -> AsyncIterator[ApiProcess]:
    """A real ``python -m petition_api`` process (production settings: aiohttp does not
    cancel handlers when a client leaves), ready to serve."""
    port = free_port()
    api = spawn_api({**env, "COUNTERSIGN_PORT": str(port)}, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                if api.poll() is not None:
                    raise AssertionError(f"the API exited:\n{read_log(log_path)}")
                try:
                    async with session.get(f"{base}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await eventually(ready, timeout=30)
        yield ApiProcess(base, api.pid)
    finally:
        api.terminate()
        await asyncio.to_thread(api.wait, 20)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def spawn_api(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "petition_api"],
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def read_log(log_path: Path) -> str:
    return log_path.read_text(errors="replace")


def read_csv(body: bytes) -> list[dict[str, str]]:
    """The export as rows keyed by the header; it must be UTF-8 with a byte-order mark."""
    assert body.startswith(UTF8_BOM)
    return list(csv.DictReader(io.StringIO(body[len(UTF8_BOM) :].decode("utf-8"), newline="")))


def csv_header(body: bytes) -> list[str]:
    return next(csv.reader(io.StringIO(body[len(UTF8_BOM) :].decode("utf-8"), newline="")))
