"""The ``countersign`` command and its processes, run as a user would run them."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import click
import pytest
from click.testing import CliRunner
from redis.asyncio import Redis

from counter_worker.counts import read_counts
from counter_worker.keys import KeyLayout
from countersign.cli import main
from petition_api.routes import STAFF, STAFF_PREFIX
from tests.support.counts import assert_converges
from tests.support.factories import add_signatures
from tests.support.processes import COMMAND, SpawnWorker, countersign
from tests.support.servers import Servers, throwaway_database
from tests.support.waiting import eventually


def command_paths(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command of the tree under ``command``, groups included, with its path."""
    yield path, command
    if isinstance(command, click.Group):
        for name, subcommand in sorted(command.commands.items()):
            yield from command_paths(subcommand, (*path, name))


COMMANDS = dict(command_paths(main))
README = (Path(__file__).parent.parent / "README.md").read_text()


def test_the_command_runs_as_a_module() -> None:
    result = countersign("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: python -m countersign [OPTIONS] COMMAND")


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    for option in ("--help", "-h"):
        result = CliRunner().invoke(main, [*path, option], prog_name="countersign")
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"Usage: {' '.join(('countersign', *path))} ")


@pytest.mark.parametrize(
    "path",
    [path for path, command in COMMANDS.items() if path and not isinstance(command, click.Group)],
    ids=" ".join,
)
def test_every_command_is_in_the_readme_table(path: tuple[str, ...]) -> None:
    # A row of the table starts with `countersign GROUP ...`; a subcommand may be named
    # later in the same cell (`petition open S` / `close S`).
    cells = readme_cells(path[0])
    assert any(re.search(rf"[` ]{re.escape(path[-1])}\b", cell) for cell in cells), path


def readme_cells(name: str) -> list[str]:
    """The first cells of the README's command table rows for ``countersign NAME``."""
    return [
        line.split(" | ")[0]
        for line in README.splitlines()
        if line.startswith(f"| `countersign {name}")
    ]


def staff_api_rows() -> dict[tuple[str, str], list[str]]:
    """The README's staff API table: (method, path) -> the row's cells."""
    rows = {}
    for line in README.splitlines():
        if found := re.match(rf"\| `([A-Z]+) ({STAFF_PREFIX}[^`\[]*)", line):
            rows[found[1], found[2]] = [cell.strip() for cell in line.strip("|").split(" | ")]
    return rows


@pytest.mark.parametrize(
    "route",
    [(route.method, STAFF_PREFIX + route.path) for route in STAFF],
    ids=" ".join,
)
def test_every_staff_api_capability_has_a_command_or_a_reason(route: tuple[str, str]) -> None:
    cell = staff_api_rows()[route][2]
    if cell.startswith("none: "):
        assert len(cell) > len("none: as for `ip-hashes`") - 1, cell  # a reason, at least
        return
    first, *others = re.findall(r"`([^`]+)`", cell)
    path = tuple(first.removeprefix("countersign ").split())
    assert path in COMMANDS, first
    for other in others:  # more of the same group: `open`, `close`
        assert (*path[:-1], other) in COMMANDS, other


@pytest.mark.parametrize("name", sorted(main.commands))
def test_the_readme_names_only_options_that_exist(name: str) -> None:
    # A row may name options of any command of its group (`--all` of `release`).
    known = {
        option
        for path, command in COMMANDS.items()
        if path[:1] == (name,)
        for parameter in command.params
        for option in (*parameter.opts, *parameter.secondary_opts)
    }
    named = {
        option for cell in readme_cells(name) for option in re.findall(r"--[a-z][a-z-]*", cell)
    }
    assert named <= known


@pytest.mark.parametrize(
    ("command", "env", "message"),
    [
        (["api"], {}, "DATABASE_URL and REDIS_URL must be set"),
        (["worker"], {"DATABASE_URL": "postgresql://x/y"}, "REDIS_URL must be set"),
        (
            ["api"],
            {"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x"},
            "COUNTERSIGN_SECRET_KEY must be set",
        ),
        (["worker"], {"DATABASE_URL": "mysql://x/y"}, '"DATABASE_URL" invalid'),
        (["api"], {"COUNTERSIGN_PORT": "eighty"}, '"COUNTERSIGN_PORT" invalid'),
        (["api"], {"COUNTERSIGN_SECRET_KEY": "short"}, '"COUNTERSIGN_SECRET_KEY" invalid'),
        (["worker"], {"COUNTERSIGN_WORKER_LEASE_MS": "-1"}, '"COUNTERSIGN_WORKER_LEASE_MS"'),
        (["mailer"], {"DATABASE_URL": "postgresql://x/y"}, "SMTP_URL and COUNTERSIGN_MAIL_FROM"),
        (["mailer"], {"SMTP_URL": "smtp://host?starttls=perhaps"}, '"SMTP_URL" invalid'),
        (["mailer"], {"COUNTERSIGN_MAIL_FROM": "nobody"}, '"COUNTERSIGN_MAIL_FROM" invalid'),
        (
            ["api"],
            {"COUNTERSIGN_PENDING_PURGE_DAYS": "3"},
            "COUNTERSIGN_PENDING_PURGE_DAYS must be at least",
        ),
        (
            ["api"],
            {
                "DATABASE_URL": "postgresql://x/y",
                "REDIS_URL": "redis://x",
                "COUNTERSIGN_SECRET_KEY": "k" * 40,
                "COUNTERSIGN_TEXTS_DIR": "/nonexistent/texts",
            },
            "/nonexistent/texts: no such folder",
        ),
    ],
)
def test_a_bad_setting_stops_the_process_with_one_line(
    command: list[str], env: dict[str, str], message: str
) -> None:
    result = countersign(*command, env=env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("countersign: error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
async def empty_database(servers: Servers) -> AsyncIterator[str]:
    async with throwaway_database(servers) as url:
        yield url


async def test_two_migrations_started_at_once_apply_each_file_once(
    empty_database: str, servers: Servers
) -> None:
    env = {**os.environ, "DATABASE_URL": empty_database, "REDIS_URL": servers.redis}
    procs = [
        await asyncio.create_subprocess_exec(
            *COMMAND, "migrate", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [await proc.communicate() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    conn = await asyncpg.connect(empty_database)
    try:
        names = [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")]
        files = sorted(path.name for path in (Path(__file__).parent.parent / "sql").glob("*.sql"))
        assert sorted(names) == files
    finally:
        await conn.close()
    reports = sorted(out.decode() for out, _ in outputs)
    assert reports[0].startswith("applied 0 migration(s)")


async def test_petition_commands(
    worker_env: dict[str, str], pool: asyncpg.Pool, redis: Redis, layout: KeyLayout
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return countersign(*args, env=worker_env)

    created = run(
        "petition", "create", "--slug", "free-them", "--title", "Free them", "--goal", "500"
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "created petition free-them (draft)"
    row = await pool.fetchrow(
        """SELECT title, goal, status, require_confirmation
           FROM petitions WHERE slug = 'free-them'"""
    )
    assert dict(row) == {
        "title": "Free them",
        "goal": 500,
        "status": "draft",
        "require_confirmation": True,  # by default
    }
    unconfirmed = run("petition", "create", "--slug", "quick", "--title", "Q", "--no-confirmation")
    assert unconfirmed.returncode == 0, unconfirmed.stderr
    assert not await pool.fetchval(
        "SELECT require_confirmation FROM petitions WHERE slug = 'quick'"
    )

    assert run("petition", "open", "free-them").stdout.strip() == "petition free-them is open"
    assert await pool.fetchval("SELECT status FROM petitions WHERE slug = 'free-them'") == "open"
    assert run("petition", "close", "free-them").returncode == 0
    assert await pool.fetchval("SELECT status FROM petitions WHERE slug = 'free-them'") == "closed"

    # Refusals of the rules: status 1 and one line, with the staff API's message and code.
    again = run("petition", "create", "--slug", "free-them", "--title", "Again")
    assert (again.returncode, again.stderr) == (
        1,
        "countersign: error: a petition with this slug exists already (petition_exists)\n",
    )
    bad = run("petition", "create", "--slug", "Not A Slug", "--title", "Bad")
    assert (bad.returncode, bad.stderr) == (
        1,
        "countersign: error: some fields are invalid (validation_failed): slug: Use 1-100 "
        "of a-z, 0-9 and '-', starting with a letter or digit.\n",
    )
    missing = run("petition", "open", "nope")
    assert (missing.returncode, missing.stderr) == (
        1,
        "countersign: error: no such petition (petition_not_found)\n",
    )
    passed = run(
        "petition", "create", "--slug", "late", "--title", "L", "--closes-at", "2001-01-01"
    )
    assert passed.returncode == 1
    assert "(closes_at_passed)" in passed.stderr
    assert await pool.fetchval("SELECT count(*) FROM petitions") == 2

    petition_id = await pool.fetchval("SELECT id FROM petitions WHERE slug = 'free-them'")
    await add_signatures(pool, petition_id, 12)
    rebuilt = run("rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.strip() == "rebuilt the counters of 2 petition(s)"
    counts = await read_counts(redis, layout, petition_id)
    assert counts is not None
    assert counts.total == 12


async def test_purge_pending_command(
    worker_env: dict[str, str], pool: asyncpg.Pool, confirming_petition_id: int
) -> None:
    await add_signatures(pool, confirming_petition_id, 3)
    await pool.execute(
        """UPDATE signatures SET confirmed_at = NULL, created_at = now() - interval '30 days'
           WHERE email IN ('signer1@example.org', 'signer2@example.org')"""
    )
    first = countersign("purge-pending", env=worker_env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "purged 2 pending signature(s)"
    assert await pool.fetchval("SELECT count(*) FROM signatures") == 1
    stricter = countersign("purge-pending", "--days", "40", env=worker_env)
    assert stricter.stdout.strip() == "purged 0 pending signature(s)"


async def test_sigterm_lets_the_worker_finish_its_batch_then_exit_0(
    pool: asyncpg.Pool,
    redis: Redis,
    layout: KeyLayout,
    petition_id: int,
    spawn: SpawnWorker,
) -> None:
    worker = spawn(stop_at="after_claim")

    async def built() -> bool:
        return await read_counts(redis, layout, petition_id) is not None

    await eventually(built)
    await add_signatures(pool, petition_id, 50)
    await worker.wait_stopped()  # a batch claimed and in hand
    worker.signal(signal.SIGTERM)  # delivered when it runs again
    worker.signal(signal.SIGCONT)
    assert await asyncio.to_thread(worker.proc.wait, 20) == 0
    assert "stopped" in worker.log()
    truth = await assert_converges(pool, redis, layout, petition_id, timeout=1)
    assert truth.total == 50
