"""What an operator's first mistakes get from the ``countersign`` command: one line in
words, not a class name or a traceback, and nothing created by accident."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from yarl import URL

from countersign.embedded import with_database
from countersign_core.runtime import cancel_and_wait
from tests.support.processes import countersign, spawn_api
from tests.support.servers import PrivatePostgres, Servers, free_port, throwaway_database
from tests.support.values import TEST_SECRET
from tests.support.waiting import eventually


def _one_line(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The single line a refused command printed (checked single, without a traceback)."""
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr.removeprefix("countersign: error: ").rstrip("\n")


@pytest.fixture
async def empty_database(servers: Servers) -> AsyncIterator[str]:
    async with throwaway_database(servers) as url:
        yield url


@pytest.fixture
def unreachable_database() -> str:
    """A database URL on a port nothing listens on."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/countersign"


def test_a_missing_database_is_named(servers: Servers) -> None:
    name = f"cs_missing_{uuid4().hex[:8]}"
    env = {"DATABASE_URL": with_database(servers.postgres, name), "REDIS_URL": servers.redis}
    result = countersign("petition", "list", env=env)
    assert _one_line(result) == f'database "{name}" does not exist'


def test_an_unknown_user_is_named(servers: Servers) -> None:
    url = str(URL(servers.postgres).with_user("nobody_here"))
    result = countersign("token", "list", env={"DATABASE_URL": url, "REDIS_URL": servers.redis})
    assert _one_line(result) == 'role "nobody_here" does not exist'


def test_a_database_never_migrated_says_what_to_run(empty_database: str, servers: Servers) -> None:
    env = {"DATABASE_URL": empty_database, "REDIS_URL": servers.redis}
    result = countersign("petition", "list", env=env)
    assert _one_line(result) == "the database has no tables yet: run `countersign migrate`"


def test_a_server_that_is_not_there(unreachable_database: str, servers: Servers) -> None:
    env = {"DATABASE_URL": unreachable_database, "REDIS_URL": servers.redis}
    port = URL(unreachable_database).port
    assert _one_line(countersign("status", env=env)) == (
        f"cannot connect to the database at 127.0.0.1:{port}: connection refused (is it running?)"
    )


async def test_a_wrong_password_is_said_so(
    private_postgres: PrivatePostgres, servers: Servers
) -> None:
    conn = await asyncpg.connect(private_postgres.url)
    try:
        await conn.execute("CREATE ROLE tester LOGIN PASSWORD 'the-right-one'")
        hba = private_postgres.directory / "pg_hba.conf"
        rules = await asyncio.to_thread(hba.read_text)
        # Before the rules that trust everyone: this role must give its password.
        await asyncio.to_thread(hba.write_text, f"local all tester scram-sha-256\n{rules}")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()
    url = str(URL(private_postgres.url).with_user("tester").with_password("a-wrong-one"))
    env = {"DATABASE_URL": url, "REDIS_URL": servers.redis}
    result = await asyncio.to_thread(countersign, "petition", "list", env=env)
    assert _one_line(result) == 'password authentication failed for user "tester"'
    assert "a-wrong-one" not in result.stderr


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        (["api", "--port", "0"], {"COUNTERSIGN_SECRET_KEY": TEST_SECRET}),
        (["worker"], {}),
        (
            ["mailer"],
            {
                "COUNTERSIGN_SECRET_KEY": TEST_SECRET,
                "SMTP_URL": "smtp://127.0.0.1:2525?starttls=false",
                "COUNTERSIGN_MAIL_FROM": "Petitions <petitions@example.org>",
                "COUNTERSIGN_PUBLIC_URL": "http://127.0.0.1:8080",
            },
        ),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else "",
)
def test_services_with_an_unreachable_database_say_one_line(
    unreachable_database: str, servers: Servers, command: list[str], extra: dict[str, str]
) -> None:
    # It was an 80-line traceback.
    env = {"DATABASE_URL": unreachable_database, "REDIS_URL": servers.redis, **extra}
    assert _one_line(countersign(*command, env=env)).startswith(
        "cannot connect to the database at 127.0.0.1:"
    )


def test_a_worker_on_a_database_never_migrated(empty_database: str, servers: Servers) -> None:
    env = {"DATABASE_URL": empty_database, "REDIS_URL": servers.redis}
    result = countersign("worker", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    # After its log line "worker ... started".
    assert result.stderr.splitlines()[-1] == (
        "countersign: error: the database has no tables yet: run `countersign migrate`"
    )


# -- ports ------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_api_on_a_port_in_use(worker_env: dict[str, str], held_port: int, workers: str) -> None:
    env = {**worker_env, "COUNTERSIGN_SECRET_KEY": TEST_SECRET}
    result = countersign("api", "--port", str(held_port), "--workers", workers, env=env)
    assert _one_line(result) == (
        f"port {held_port} of 127.0.0.1 is in use: stop what uses it, or choose another "
        "port with --port or COUNTERSIGN_PORT"
    )


async def test_the_api_on_port_0_says_where_it_listens(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**worker_env, "COUNTERSIGN_SECRET_KEY": TEST_SECRET}
    api = spawn_api(env, tmp_path / "api.log", 0)
    try:

        async def listening() -> str:
            """Where the API says it listens ("" until it does)."""
            api.check_alive()
            messages = [json.loads(line)["message"] for line in api.log().splitlines()]
            said = [m.removeprefix("listening on ") for m in messages if "listening on " in m]
            return str(said[0]) if said else ""

        api.url = await eventually(listening)
        assert not api.url.endswith(":0")
        await api.wait_ready()
    finally:
        api.stop()


# -- the data folder --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["petition", "list"],
        ["token", "list"],
        ["status"],
        ["migrate", "--check"],
        ["export", "refer-syria-to-icc", "--out", "signatures.csv"],
    ],
    ids=" ".join,
)
def test_without_a_data_folder_or_servers_nothing_is_created(
    tmp_path: Path, command: list[str]
) -> None:
    result = countersign(*command, cwd=tmp_path)
    # (None of these needs Redis: REDIS_URL is not asked for.)
    assert _one_line(result, code=2) == (
        "DATABASE_URL is not set, and there is no data folder "
        f"{tmp_path / '.countersign'} for embedded servers: run this where `countersign dev` "
        "runs (or set COUNTERSIGN_DATA_DIR to its data folder), or set DATABASE_URL and "
        "REDIS_URL"
    )
    assert os.listdir(tmp_path) == []


def test_migrate_makes_the_data_folder_of_embedded_servers() -> None:
    # Not under tmp_path: see the private_postgres fixture (the embedded server's own user
    # must reach its files).
    with tempfile.TemporaryDirectory(prefix="countersign-test-migrate-") as name:
        folder = Path(name)
        migrated = countersign("migrate", cwd=folder)
        assert migrated.returncode == 0, migrated.stderr
        assert migrated.stdout.startswith("applied ")
        assert (folder / ".countersign" / "postgres").is_dir()
        # The other commands use it from then on.
        assert countersign("petition", "list", cwd=folder).stdout == "no petitions\n"


# -- stopping ---------------------------------------------------------------------------------


async def test_cancel_and_wait_cancels_again_a_task_that_lost_a_cancellation() -> None:
    # As Python 3.11's asyncio.wait_for does (CPython gh-86296), through which redis-py
    # connects: the API's live subscription ran on, and an API stopped just after it
    # started never ended.
    cancellations = 0

    async def loses_the_first_cancellation() -> None:
        nonlocal cancellations
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancellations += 1
                if cancellations > 1:
                    raise

    task = asyncio.create_task(loses_the_first_cancellation())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), timeout=5)
    assert task.cancelled()
    assert cancellations == 2
