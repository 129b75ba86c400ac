"""Prometheus metrics: what is counted, how it is labelled, where it is served."""

from __future__ import annotations

import aiohttp
import asyncpg
from prometheus_client import REGISTRY

from counter_worker.worker import CounterWorker
from countersign_core.settings import load_settings
from tests.support.factories import SLUG, add_signatures, signer
from tests.support.http import SIGN, Client, scrape
from tests.support.processes import SpawnApi, SpawnWorker
from tests.support.servers import free_port
from tests.support.waiting import eventually


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def signatures(outcome: str, reason: str = "") -> float:
    return sample("countersign_signatures_total", outcome=outcome, reason=reason)


async def test_signature_outcomes(client: Client, pool: asyncpg.Pool) -> None:
    cases = [
        (signer(email="new@example.org"), ("accepted", "")),
        (signer(email="NEW@example.org"), ("duplicate", "")),
        (signer(email="x@mailinator.com"), ("suspect", "disposable_email")),
        (signer(country="XX"), ("rejected", "validation_failed")),
        (signer(email="bot@example.org", website="http://spam"), ("rejected", "honeypot")),
    ]
    for body, (outcome, reason) in cases:
        before = signatures(outcome, reason)
        await client.post(SIGN, json=body)
        assert signatures(outcome, reason) == before + 1, (outcome, reason)

    await pool.execute("UPDATE petitions SET status = 'closed'")
    before = signatures("rejected", "petition_closed")

    async def closed() -> bool:  # once the API's petition cache has expired
        await client.post(SIGN, json=signer(email="late@example.org"))
        return signatures("rejected", "petition_closed") > before

    await eventually(closed, timeout=10)


def duration_count(method: str, route: str, status: str) -> float:
    return sample(
        "countersign_http_request_duration_seconds_count",
        method=method,
        route=route,
        status=status,
    )


async def test_latency_is_labelled_by_route_pattern_never_by_path(client: Client) -> None:
    expectations = [
        ("GET", f"/v1/petitions/{SLUG}", "/v1/petitions/{slug}", "200"),
        ("GET", "/v1/petitions/someone-else", "/v1/petitions/{slug}", "404"),
        (
            "GET",
            "/v1/petitions/x/counts?email=amal@example.org",
            "/v1/petitions/{slug}/counts",
            "404",
        ),
        ("GET", "/amal@example.org", "unmatched", "404"),
        ("PROPFIND", "/healthz", "unmatched", "405"),
    ]
    for method, path, route, status in expectations:
        label = method if method != "PROPFIND" else "other"  # rarer methods share one label
        before = duration_count(label, route, status)
        await client.request(method, path)
        assert duration_count(label, route, status) == before + 1, path
    labels = [
        value
        for family in REGISTRY.collect()
        if family.name == "countersign_http_request_duration_seconds"
        for s in family.samples
        for value in s.labels.values()
    ]
    assert labels
    assert not [value for value in labels if "@" in value or "someone-else" in value]


async def test_the_worker_measures_batches_and_lag(
    pool: asyncpg.Pool, worker: CounterWorker, petition_id: int
) -> None:
    await worker.drain()
    batches = sample("countersign_worker_batch_events_count")
    events = sample("countersign_worker_batch_events_sum")
    lags = sample("countersign_worker_lag_seconds_count")
    await add_signatures(pool, petition_id, 30, countries=("FR",), sources=(None,))
    await add_signatures(pool, petition_id, 20, countries=("SY",), sources=(None,))
    await worker.drain()
    assert sample("countersign_worker_batch_events_count") == batches + 1
    assert sample("countersign_worker_batch_events_sum") == events + 2  # two statements
    assert sample("countersign_worker_lag_seconds_count") == lags + 1
    assert sample("countersign_worker_lag_seconds_sum") > 0


def test_metrics_are_off_and_local_unless_configured() -> None:
    defaults = load_settings().metrics
    assert defaults.api_port is None
    assert defaults.worker_port is None
    assert defaults.host == "127.0.0.1"


async def test_every_api_process_adds_up_on_one_port_and_the_worker_has_its_own(
    run_api: SpawnApi, spawn: SpawnWorker, petition_id: int
) -> None:
    port, worker_port = free_port(), free_port()
    api = await run_api("--workers", "2", COUNTERSIGN_METRICS_PORT=str(port))
    worker = spawn(COUNTERSIGN_WORKER_METRICS_PORT=str(worker_port))

    async def worker_started() -> bool:
        return "rebuilt petition" in worker.log()

    await eventually(worker_started)  # so that what follows reaches it as batches
    for i in range(24):
        # A connection each, so that the kernel spreads them over both processes.
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
            session.post(f"{api.url}{SIGN}", json=signer(email=f"m{i}@example.org")) as response,
        ):
            assert response.status == 201
    accepted = ("countersign_signatures_total", (("outcome", "accepted"), ("reason", "")))
    assert (await scrape(port))[accepted] == 24
    pids = {
        line.split('"process": ')[1].split(",")[0]
        for line in api.log().splitlines()
        if '"route": "/v1/petitions/{slug}/signatures"' in line
    }
    assert len(pids) == 2  # the 24 were shared, and the sum covers both
    assert ("countersign_live_streams_open", ()) in await scrape(port)

    # Not on the public port.
    async with aiohttp.ClientSession() as session, session.get(f"{api.url}/metrics") as response:
        assert response.status == 404

    async def worker_caught_up() -> bool:
        try:
            found = await scrape(worker_port)
        except aiohttp.ClientConnectionError:
            return False  # not serving yet
        return (
            found.get(("countersign_worker_batch_events_sum", ()), 0) >= 1
            and found.get(("countersign_worker_lag_seconds_count", ()), 0) >= 1
            and found.get(("countersign_worker_events_waiting", ())) == 0
        )

    await eventually(worker_caught_up)
