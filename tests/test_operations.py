"""Knowing the workers are alive: heartbeats, `countersign status`, the worker's probes,
and the metrics of the API (status) and of the mail sender, with real processes."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import aiohttp
import asyncpg
from prometheus_client import REGISTRY

from counter_worker.worker import CounterWorker
from mail_sender.sender import MailSender
from tests.support.factories import add_signatures
from tests.support.http import scrape
from tests.support.mail import TEMPORARY, SmtpSink, queue_emails
from tests.support.processes import (
    ServiceProcess,
    SpawnApi,
    SpawnWorker,
    countersign,
    spawn_worker,
)
from tests.support.servers import PrivateRedis, free_port
from tests.support.waiting import eventually

Scraped = dict[tuple[str, tuple[tuple[str, str], ...]], float]
FAST_BEATS = {"COUNTERSIGN_HEARTBEAT_INTERVAL": "0.2"}  # stale after 0.6 s without one


def status(database_url: str) -> str:
    result = countersign("status", env={"DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    return result.stdout


def row_of(output: str, process: ServiceProcess) -> str | None:
    """The status line of a process (its name is host:pid:random)."""
    found = [line for line in output.splitlines() if f":{process.pid}:" in line]
    assert len(found) <= 1, output
    return found[0] if found else None


async def test_a_killed_worker_shows_stale_and_a_stopped_one_leaves_no_trace(
    database_url: str,
    spawn: SpawnWorker,
    sender_env: dict[str, str],
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    doomed, survivor = spawn(**FAST_BEATS), spawn(**FAST_BEATS)
    sender = spawn_worker(sender_env, tmp_path / "sender.log", module="mail_sender", **FAST_BEATS)
    try:

        async def all_alive() -> str:
            output = await asyncio.to_thread(status, database_url)
            rows = [row_of(output, process) for process in (doomed, survivor, sender)]
            return output if all(row and row.endswith("alive") for row in rows) else ""

        output = await eventually(all_alive)
        assert (row_of(output, sender) or "").startswith("mail_sender ")
        assert "warning" not in output
        assert "counter events waiting: 0" in output
        assert "emails due: 0" in output

        doomed.kill()  # SIGKILL: no goodbye

        async def doomed_is_stale() -> str:
            output = await asyncio.to_thread(status, database_url)
            return output if (row_of(output, doomed) or "").endswith("STALE") else ""

        output = await eventually(doomed_is_stale)
        assert (row_of(output, survivor) or "").endswith("alive")
        assert (row_of(output, sender) or "").endswith("alive")

        # A clean stop deletes the row: nothing died.
        survivor.signal(signal.SIGTERM)
        assert await asyncio.to_thread(survivor.proc.wait, 20) == 0
        output = await asyncio.to_thread(status, database_url)
        assert row_of(output, survivor) is None
        assert (row_of(output, doomed) or "").endswith("STALE")
        assert "warning: no counter worker is alive" in output
    finally:
        sender.kill()


async def test_status_shows_the_events_and_emails_waiting_and_their_age(
    database_url: str,
    pool: asyncpg.Pool,
    petition_id: int,
    confirming_petition_id: int,
    worker: CounterWorker,
    sender: MailSender,
) -> None:
    await add_signatures(pool, petition_id, 30, countries=("SY",), sources=(None, "partner-a"))
    await queue_emails(pool, confirming_petition_id, 3)
    await pool.execute("UPDATE counter_events SET created_at = now() - interval '95 seconds'")
    await pool.execute("UPDATE email_jobs SET next_attempt_at = now() - interval '3 hours'")

    output = await asyncio.to_thread(status, database_url)
    assert "no counter worker or mail sender has written a heartbeat" in output
    assert "warning: no counter worker is alive" in output
    # One event per source; ages as backdated (plus the seconds the command took).
    assert re.search(r"^counter events waiting: 2 \(oldest: 1m (3[5-9]|[45]\d)s\)$", output, re.M)
    assert re.search(r"^emails due: 3 \(oldest: 3h 0m\)$", output, re.M)

    await worker.drain()
    await sender.drain()
    output = await asyncio.to_thread(status, database_url)
    assert "counter events waiting: 0\n" in output
    assert "emails due: 0\n" in output


async def probe(port: int, path: str) -> int | None:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session,
            session.get(f"http://127.0.0.1:{port}{path}") as response,
        ):
            return response.status
    except aiohttp.ClientError:
        return None  # not listening yet


async def test_the_worker_is_ready_only_while_it_reaches_its_servers(
    spawn: SpawnWorker, private_redis: PrivateRedis
) -> None:
    port = free_port()
    spawn(REDIS_URL=private_redis.url, COUNTERSIGN_WORKER_METRICS_PORT=str(port), **FAST_BEATS)

    async def answers(path: str, status: int) -> bool:
        return await probe(port, path) == status

    await eventually(lambda: answers("/readyz", 200))
    assert await probe(port, "/healthz") == 200

    private_redis.kill()  # the worker lives on, but cannot work: not ready, still alive
    await eventually(lambda: answers("/readyz", 503))
    assert await probe(port, "/healthz") == 200

    private_redis.start()
    await eventually(lambda: answers("/readyz", 200))


async def test_the_api_metrics_report_heartbeats_and_backlogs(
    run_api: SpawnApi, spawn: SpawnWorker, pool: asyncpg.Pool, petition_id: int
) -> None:
    port = free_port()
    # Several processes (multiprocess mode): the status is read where the scrape is served.
    await run_api("--workers", "2", COUNTERSIGN_METRICS_PORT=str(port))
    worker = spawn(**FAST_BEATS)

    def value(found: Scraped, name: str, **labels: str) -> float | None:
        return found.get((name, tuple(sorted(labels.items()))))

    async def worker_alive() -> Scraped:
        found = await scrape(port)
        alive = value(found, "countersign_processes", kind="counter_worker", state="alive")
        return found if alive == 1 else {}

    found = await eventually(worker_alive)
    assert value(found, "countersign_status_readable") == 1
    assert value(found, "countersign_processes", kind="mail_sender", state="alive") == 0
    assert value(found, "countersign_counter_events_waiting") == 0

    worker.kill()
    await add_signatures(pool, petition_id, 10, countries=("FR", "SY"), sources=(None,))

    async def worker_stale() -> Scraped:
        found = await scrape(port)
        stale = value(found, "countersign_processes", kind="counter_worker", state="stale")
        return found if stale == 1 else {}

    found = await eventually(worker_stale)
    assert value(found, "countersign_processes", kind="counter_worker", state="alive") == 0
    assert value(found, "countersign_counter_events_waiting") == 2  # one per country
    assert (value(found, "countersign_counter_events_oldest_age_seconds") or 0) > 0
    [age] = [v for (name, _), v in found.items() if name == "countersign_heartbeat_age_seconds"]
    assert age >= 0.6  # at least the TTL: that is how it went stale


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_the_sender_measures_its_queue_and_counts_what_it_sent(
    pool: asyncpg.Pool, confirming_petition_id: int, sender: MailSender
) -> None:
    await queue_emails(pool, confirming_petition_id, 3)
    await pool.execute("UPDATE email_jobs SET next_attempt_at = now() - interval '60 seconds'")
    sent = sample("countersign_mail_sent_total")

    await sender.measure_queue()
    assert sample("countersign_mail_due") == 3
    assert sample("countersign_mail_oldest_due_age_seconds") >= 60

    await sender.drain()
    await sender.measure_queue()
    assert sample("countersign_mail_sent_total") == sent + 3
    assert sample("countersign_mail_due") == 0
    assert sample("countersign_mail_oldest_due_age_seconds") == 0


async def test_a_running_sender_serves_its_metrics_and_probes(
    pool: asyncpg.Pool,
    confirming_petition_id: int,
    smtp_sink: SmtpSink,
    sender_env: dict[str, str],
    tmp_path: Path,
) -> None:
    port = free_port()
    smtp_sink.refuse = [TEMPORARY, "550 5.1.1 No such user"]  # the first two recipients
    await queue_emails(pool, confirming_petition_id, 4)
    process = spawn_worker(
        sender_env,
        tmp_path / "sender.log",
        module="mail_sender",
        COUNTERSIGN_MAIL_METRICS_PORT=str(port),
        **FAST_BEATS,
    )
    try:

        async def settled() -> Scraped:
            if await probe(port, "/readyz") != 200:
                return {}
            found = await scrape(port)
            done = found.get(("countersign_mail_sent_total", ())) == 3
            return found if done and found.get(("countersign_mail_due", ())) == 0 else {}

        found = await eventually(settled)
        assert found[("countersign_mail_retried_total", ())] == 1  # the 451, then sent
        assert found[("countersign_mail_failed_total", ())] == 1  # the 550
        assert found[("countersign_mail_oldest_due_age_seconds", ())] == 0
        assert len(smtp_sink.received) == 3
        assert await probe(port, "/healthz") == 200
    finally:
        process.kill()
