"""The ``countersign`` command and its processes, run as a user would run them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
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
from tests.support.counts import assert_converges
from tests.support.factories import add_signatures
from tests.support.mail import confirmation_link, parse
from tests.support.processes import COMMAND, SETTING_VARIABLES, SpawnWorker, countersign
from tests.support.servers import Servers, free_port, throwaway_database
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


# -- countersign dev ------------------------------------------------------------------------


def _http(
    method: str, url: str, body: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310  (a loopback http URL)
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _page(method: str, url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)  # noqa: S310  (a loopback http URL)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_dev_runs_the_pair_and_keeps_data_across_a_restart(
    tmp_path: Path, database_url: str, servers: Servers, layout: KeyLayout
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in SETTING_VARIABLES}
    env |= {
        "COUNTERSIGN_PORT": str(port),
        "COUNTERSIGN_DEMO_PORT": str(free_port()),
        "COUNTERSIGN_REDIS_PREFIX": layout.prefix,
    }
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        # From a file: dev hands its children the URL it read, and not the file as well.
        (tmp_path / "database_url").write_text(database_url + "\n", encoding="utf-8")
        env |= {"DATABASE_URL_FILE": str(tmp_path / "database_url"), "REDIS_URL": servers.redis}
    base = f"http://127.0.0.1:{port}/v1/petitions/refer-syria-to-icc"

    async def start() -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *COMMAND, "dev", env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert proc.stdout is not None
        seen = ""
        while "Press Ctrl-C to stop." not in seen:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=90)
            assert line, f"dev exited early:\n{seen}"
            seen += line.decode()
        assert f"live counts   {base}/counts" in seen
        assert "emails        caught locally" in seen
        return proc

    async def total_is(expected: int) -> bool:
        status, body = await asyncio.to_thread(_http, "GET", f"{base}/counts")
        return status == 200 and body["total"] == expected

    async def stop(proc: asyncio.subprocess.Process) -> str:
        proc.send_signal(signal.SIGINT)
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, output.decode()
        assert "countersign: stopped." in output.decode()
        return output.decode()

    first = await start()
    try:
        status, petition = await asyncio.to_thread(_http, "GET", base)
        assert status == 200
        assert petition["goal"] == 100000
        assert "Russian" in str(petition["target"])
        signer = {"name": "Amal Haddad", "email": "amal@example.org", "country": "SY"}
        signed = await asyncio.to_thread(_http, "POST", f"{base}/signatures", signer)
        assert signed == (202, {"status": "pending_confirmation"})  # the demo asks to confirm
        # The email is caught locally, and its confirmation link printed for the user.
        assert first.stdout is not None
        line = ""
        while "confirmation link" not in line:
            line = (await asyncio.wait_for(first.stdout.readline(), timeout=30)).decode()
            assert "amal" not in line  # no address in the output
        [link] = re.findall(r"(http://\S+/confirm/\S+)", line)
        assert link.startswith(f"http://127.0.0.1:{port}/confirm/")
        assert (await asyncio.to_thread(_page, "GET", link))[0] == 200
        status, page = await asyncio.to_thread(_page, "POST", link)
        assert (status, "your signature is confirmed" in page) == (200, True)
        await eventually(lambda: total_is(1))
    finally:
        output = await stop(first)
    # The access log shows the GET and the POST by route, not the token: it confirms a
    # signature, whoever holds it.
    token = link.rsplit("/", 1)[1]
    access = [
        entry
        for entry in map(_json_or_none, output.splitlines())
        if entry and entry.get("logger") == "petition_api.access"
    ]
    confirmations = [
        entry["status"]
        for entry in access
        if entry.get("method") == "POST" and entry.get("route") == "/confirm/{token}"
    ]
    assert confirmations == [200]
    assert token not in output
    [email] = (tmp_path / ".countersign" / "mail").glob("*.eml")
    assert confirmation_link(parse(email.read_bytes())) == link
    if not os.environ.get("DATABASE_URL"):
        assert (tmp_path / ".countersign" / "postgres").is_dir()

    second = await start()
    try:
        await eventually(lambda: total_is(1))
    finally:
        await stop(second)


def _json_or_none(line: str) -> dict[str, object] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None
