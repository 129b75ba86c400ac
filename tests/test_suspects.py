"""``countersign suspects``: staff review of signatures the abuse checks held back."""

from __future__ import annotations

import subprocess

import asyncpg
import pytest
from redis.asyncio import Redis

from counter_worker.keys import KeyLayout
from counter_worker.worker import CounterWorker
from tests.support.counts import assert_converges
from tests.support.factories import SLUG, add_signatures
from tests.support.processes import countersign


async def add_suspects(pool: asyncpg.Pool, petition_id: int, *reasons: str) -> list[int]:
    ids = []
    for i, reason in enumerate(reasons):
        ids.append(
            await pool.fetchval(
                """INSERT INTO signatures (petition_id, name, email, email_hash, country, source,
                                           suspect_reason)
                   VALUES ($1, $2, $3::text, sha256(convert_to($3, 'UTF8')), 'FR', 'partner-a', $4)
                   RETURNING id""",
                petition_id,
                f"Suspect Person {i}",
                f"suspect{i}@example.org",
                reason,
            )
        )
    return ids


async def test_list_release_and_invalidate_move_the_counts(
    worker_env: dict[str, str],
    pool: asyncpg.Pool,
    redis: Redis,
    layout: KeyLayout,
    worker: CounterWorker,
    petition_id: int,
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return countersign("suspects", *args, env=worker_env)

    await add_signatures(pool, petition_id, 2)
    first, second, third = await add_suspects(
        pool, petition_id, "rate_limit_address", "disposable_email", "rate_limit_global"
    )
    await worker.drain()
    assert (await assert_converges(pool, redis, layout, petition_id)).total == 2

    listed = run("list", "--petition", SLUG)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split("\t") == ["id", "created_at", "country", "source", "reason"]
    assert [row.split("\t")[0] for row in rows] == [str(first), str(second), str(third)]
    assert rows[1].split("\t")[2:] == ["FR", "partner-a", "disposable_email"]
    # Nobody's name or address unless asked for.
    assert "Suspect Person" not in listed.stdout
    assert "@" not in listed.stdout
    assert "3 suspect(s) awaiting review" in listed.stderr
    with_contact = run("list", "--petition", SLUG, "--with-contact")
    assert "Suspect Person 0\tsuspect0@example.org" in with_contact.stdout

    released = run("release", str(first))
    assert released.stdout.strip() == "released 1 signature(s)"
    await worker.drain()
    assert (await assert_converges(pool, redis, layout, petition_id)).total == 3

    invalidated = run("invalidate", str(second), "--reason", "bot farm")
    assert invalidated.stdout.strip() == "invalidated 1 signature(s)"
    row = await pool.fetchrow(
        "SELECT invalid_reason, invalidated_at FROM signatures WHERE id = $1", second
    )
    assert row["invalid_reason"] == "bot farm"
    assert row["invalidated_at"] is not None
    remaining = run("list", "--petition", SLUG).stdout.splitlines()[1:]
    assert [line.split("\t")[0] for line in remaining] == [str(third)]

    assert run("release", "--all", "--petition", SLUG).stdout.strip() == "released 1 signature(s)"
    await worker.drain()
    truth = await assert_converges(pool, redis, layout, petition_id)
    assert truth.total == 4  # two clean, two released; the invalidated one never counts

    again = run("release", str(first), str(second))
    assert again.stdout.strip() == "released 0 signature(s)"
    assert f"not awaiting review: {first}, {second}" in again.stderr


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["release"], 2, "give signature ids, or --all with --petition"),
        (["invalidate", "1", "--all", "--petition", SLUG], 2, "give signature ids, or --all"),
        (["release", "--all"], 2, "--all needs --petition"),
        (["list", "--petition", "no-such-petition"], 1, "no such petition (petition_not_found)"),
    ],
)
async def test_mistakes_are_one_line_errors(
    worker_env: dict[str, str], petition_id: int, args: list[str], status: int, message: str
) -> None:
    result = countersign("suspects", *args, env=worker_env)
    assert result.returncode == status
    assert message in result.stderr
    assert "Traceback" not in result.stderr
