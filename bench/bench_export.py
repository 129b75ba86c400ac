"""Export speed and memory: the API's streamed COPY beside psql's own \\copy.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/bench_export.py

Creates a database of its own (dropped at the end) with ROWS signatures, runs the API as
a subprocess, downloads the export with curl while sampling the API's memory, and runs
psql's \\copy of the same query, alternating REPEAT times. Prints the figures; asserts
nothing (speed is not a test). Needs psql and curl on the PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import asyncpg
import psutil

from countersign.embedded import with_database
from countersign_core.migrations import migrate
from countersign_domain.export import UTF8_BOM, export_query
from countersign_domain.staff import Role, create_token

SECRET = "bench-only-secret-key-0123456789abcdefghij"  # noqa: S105  (a throwaway database)
SLUG = "bench"


@dataclass
class Run:
    seconds: float
    size: int


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args()


async def create_database(server: str, rows: int) -> tuple[str, str, int]:
    """A migrated database with one petition of ``rows`` counted signatures."""
    name = f"cs_bench_export_{uuid4().hex[:10]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(server, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        petition_id: int = await conn.fetchval(
            "INSERT INTO petitions (slug, title, status) VALUES ($1, 'Bench', 'open') RETURNING id",
            SLUG,
        )
        started = time.monotonic()
        # Names in several scripts and lengths, a few countries and sources, a postal code
        # on half the rows, signing times spread over a month.
        await conn.execute(
            """INSERT INTO signatures (petition_id, name, email, email_hash, country, source,
                                       postal_code, created_at)
               SELECT $1,
                      (ARRAY['Amal Haddad', 'أمل حداد', 'Анна Петрова', '王小明',
                             'Marie-Claire Dupont-Lefèvre'])[1 + g % 5] || ' ' || g,
                      'signer' || g || '@example.org', sha256(g::text::bytea),
                      (ARRAY['SY', 'FR', 'RU', 'CN', 'DE', 'US', 'GB', 'LB'])[1 + g % 8],
                      (ARRAY[NULL, 'partner-a', 'newsroom', 'social'])[1 + g % 4],
                      CASE WHEN g % 2 = 0 THEN lpad((g % 99999)::text, 5, '0') END,
                      timestamptz '2025-01-01' + g * interval '2.5 seconds'
               FROM generate_series(1, $2) AS g""",
            petition_id,
            rows,
        )
        await conn.execute("VACUUM ANALYZE signatures")
        print(f"inserted {rows:,} signatures in {time.monotonic() - started:.1f}s", flush=True)
        token = await create_token(conn, actor="bench", name="bench", role=Role.ADMIN)
    finally:
        await conn.close()
    return url, token, petition_id


async def drop_database(server: str, url: str) -> None:
    name = url.rsplit("/", 1)[-1].split("?")[0]
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def psql_copy_command(petition_id: int, path: Path) -> str:
    """The export's query for psql's \\copy, which takes no parameters: the petition id
    and NULL filters are written in (an integer and NULLs, nothing from outside)."""
    values = {"1": str(petition_id), "2": "NULL", "3": "NULL", "4": "NULL", "5": "NULL"}
    query = re.sub(r"\$([1-5])\b", lambda match: values[match.group(1)], export_query(False))
    one_line = " ".join(query.split())  # a backslash command ends at the end of its line
    return f"\\copy ({one_line}) TO '{path}' WITH (FORMAT csv, HEADER true, ENCODING 'UTF8')"


def timed(command: list[str], path: Path) -> Run:
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return Run(time.monotonic() - started, path.stat().st_size)


class RssSampler:
    """The peak resident memory of a process, sampled every 10 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_ready(base: str, api: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.poll() is not None:
            sys.exit("the API exited during start-up")
        probe = subprocess.run(
            ["curl", "-sf", "-o", "/dev/null", f"{base}/readyz"], check=False
        ).returncode
        if probe == 0:
            return
        time.sleep(0.1)
    sys.exit("the API did not become ready")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def mb(size: float) -> str:
    return f"{size / 2**20:.1f} MB"


def main() -> None:
    args = parse_args()
    for tool in ("psql", "curl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed on the PATH")
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    url, token, petition_id = asyncio.run(create_database(server, args.rows))
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "COUNTERSIGN_SECRET_KEY": SECRET,
        "COUNTERSIGN_PORT": str(port),
        "COUNTERSIGN_REDIS_PREFIX": f"cs-bench-{uuid4().hex[:8]}",
        "COUNTERSIGN_LOG_LEVEL": "WARNING",
    }
    api = subprocess.Popen([sys.executable, "-m", "petition_api"], env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, api)
        with tempfile.TemporaryDirectory(prefix="cs-bench-") as folder:
            api_file, psql_file = Path(folder) / "api.csv", Path(folder) / "psql.csv"
            curl = [
                "curl", "-sfS", "-o", str(api_file), "-H", f"Authorization: Bearer {token}",
                f"{base}/v1/admin/petitions/{SLUG}/signatures.csv",
            ]  # fmt: skip
            psql = ["psql", url, "-X", "-q", "-c", psql_copy_command(petition_id, psql_file)]
            baseline = psutil.Process(api.pid).memory_info().rss
            api_runs: list[Run] = []
            psql_runs: list[Run] = []
            with RssSampler(api.pid) as sampler:
                for _ in range(args.repeat):
                    psql_runs.append(timed(psql, psql_file))
                    api_runs.append(timed(curl, api_file))
            identical = api_file.read_bytes() == UTF8_BOM + psql_file.read_bytes()
        report(args.rows, api_runs, psql_runs, baseline, sampler.peak, identical)
    finally:
        api.terminate()
        api.wait(20)
        asyncio.run(drop_database(server, url))


def report(
    rows: int, api: list[Run], psql: list[Run], baseline: int, peak: int, identical: bool
) -> None:
    api_best = min(run.seconds for run in api)
    psql_best = min(run.seconds for run in psql)
    api_median = statistics.median(run.seconds for run in api)
    psql_median = statistics.median(run.seconds for run in psql)
    print(f"rows                 {rows:,}")
    print(f"bytes                API {api[0].size:,} (with a 3-byte BOM), psql {psql[0].size:,}")
    print(f"same bytes           {'yes' if identical else 'NO'} (API file = BOM + psql file)")
    print(f"API (curl)           best {api_best:.2f}s, median {api_median:.2f}s "
          f"({rows / api_best:,.0f} rows/s, {mb(api[0].size / api_best)}/s)")  # fmt: skip
    print(f"psql \\copy           best {psql_best:.2f}s, median {psql_median:.2f}s "
          f"({rows / psql_best:,.0f} rows/s)")  # fmt: skip
    print(f"API / psql           {api_best / psql_best:.2f}x best, "
          f"{api_median / psql_median:.2f}x median (aim: within 2x)")  # fmt: skip
    print(f"API memory           {mb(baseline)} before, peak {mb(peak)}, growth "
          f"{mb(peak - baseline)} (aim: under 150 MB)")  # fmt: skip


if __name__ == "__main__":
    main()
