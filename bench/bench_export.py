"""Export speed and memory: the API's streamed COPY beside psql's own \\copy.

    python -m bench.bench_export [--rows 1000000] [--repeat 3]

Creates a database of its own (dropped at the end) with ROWS signatures, runs the API as
a subprocess, downloads the export with curl while sampling the API's memory, and runs
psql's \\copy of the same query, alternating REPEAT times. Prints the figures; asserts
nothing (speed is not a test). Needs psql and curl on the PATH. Servers: DATABASE_URL /
REDIS_URL when set, else embedded ones.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil

from bench.harness.run import bench_main, ratio, say
from bench.harness.stack import (
    alive,
    start_api,
    wait_listening,
    workspace,
)
from countersign_domain.export import UTF8_BOM, export_query
from countersign_domain.staff import Role, create_token

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


async def fill(url: str, rows: int) -> tuple[str, int]:
    """One petition of ``rows`` counted signatures; an admin token and the petition's id."""
    conn = await asyncpg.connect(url)
    try:
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
        say(f"inserted {rows:,} signatures in {time.monotonic() - started:.1f}s")
        token = await create_token(conn, actor="bench", name="bench", role=Role.ADMIN)
    finally:
        await conn.close()
    return token, petition_id


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


def mb(size: float) -> str:
    return f"{size / 2**20:.1f} MB"


async def bench(args: argparse.Namespace) -> int:
    async with contextlib.AsyncExitStack() as exits:
        site = await workspace(exits)
        url, tmp = site.database_url, site.folder
        token, petition_id = await fill(url, args.rows)
        api = await start_api(exits, site.service_env(), tmp)
        await wait_listening(f"{api.url}/readyz", 1, alive=alive(api))
        api_file, psql_file = tmp / "api.csv", tmp / "psql.csv"
        curl = [
            "curl", "-sfS", "-o", str(api_file), "-H", f"Authorization: Bearer {token}",
            f"{api.url}/v1/admin/petitions/{SLUG}/signatures.csv",
        ]  # fmt: skip
        psql = ["psql", url, "-X", "-q", "-c", psql_copy_command(petition_id, psql_file)]
        baseline = psutil.Process(api.pid).memory_info().rss
        api_runs: list[Run] = []
        psql_runs: list[Run] = []
        with RssSampler(api.pid) as sampler:
            for _ in range(args.repeat):
                psql_runs.append(await asyncio.to_thread(timed, psql, psql_file))
                api_runs.append(await asyncio.to_thread(timed, curl, api_file))
        identical = api_file.read_bytes() == UTF8_BOM + psql_file.read_bytes()
    report(args.rows, api_runs, psql_runs, baseline, sampler.peak, identical)
    return 0


def main() -> int:
    args = parse_args()
    for tool in ("psql", "curl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed on the PATH")
    return bench_main(lambda: bench(args), "bench_export")


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
    print(f"API / psql           {ratio(api_best, psql_best)} best, "
          f"{ratio(api_median, psql_median)} median (aim: within 2x)")  # fmt: skip
    print(f"API memory           {mb(baseline)} before, peak {mb(peak)}, growth "
          f"{mb(peak - baseline)} (aim: under 150 MB)")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
