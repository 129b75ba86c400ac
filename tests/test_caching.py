"""The cache of what every request reads: a value is loaded once however many ask for it
meanwhile, kept for its lifetime, and forgotten when told it changed."""

from __future__ import annotations

import asyncio

import pytest

from countersign_core.caching import MISSING, FreshValues
from tests.support.waiting import eventually


class Source:
    """What a cache loads from: counts its loads; each load waits until released."""

    def __init__(self) -> None:
        self.loads = 0
        self.release = asyncio.Event()
        self.release.set()

    async def load(self) -> int:
        self.loads += 1
        loaded = self.loads
        await self.release.wait()
        return loaded


async def test_callers_arriving_during_a_load_share_it() -> None:
    cache: FreshValues[str, int] = FreshValues(ttl=60)
    source = Source()
    source.release.clear()
    waiting = [asyncio.create_task(cache.get("p", source.load)) for _ in range(50)]
    await asyncio.sleep(0)  # every caller has asked
    source.release.set()
    assert await asyncio.gather(*waiting) == [1] * 50
    assert source.loads == 1
    assert await cache.get("p", source.load) == 1  # kept
    assert await cache.get("q", source.load) == 2  # each key its own


async def test_a_value_is_loaded_again_once_its_lifetime_is_over() -> None:
    cache: FreshValues[str, int] = FreshValues(ttl=0.05)
    source = Source()
    assert await cache.get("p", source.load) == 1

    async def loaded_again() -> bool:
        return await cache.get("p", source.load) == 2

    await eventually(loaded_again, timeout=5, interval=0.01)


async def test_a_change_during_a_load_keeps_that_load_from_being_kept() -> None:
    cache: FreshValues[str, int] = FreshValues(ttl=60)
    source = Source()
    source.release.clear()
    before_the_change = asyncio.create_task(cache.get("p", source.load))
    await asyncio.sleep(0)
    cache.invalidate("p")  # what it is reading may already be old
    source.release.set()
    assert await before_the_change == 1
    assert await cache.get("p", source.load) == 2
    assert await cache.get("p", source.load) == 2
    cache.invalidate_all()
    assert await cache.get("p", source.load) == 3


async def test_what_keep_refuses_is_handed_out_but_not_kept() -> None:
    cache: FreshValues[str, int] = FreshValues(ttl=60)
    source = Source()
    assert await cache.get("p", source.load, keep=lambda value: value > 1) == 1
    assert await cache.get("p", source.load, keep=lambda value: value > 1) == 2
    assert await cache.get("p", source.load, keep=lambda value: value > 1) == 2


async def test_without_a_lifetime_every_call_loads() -> None:
    cache: FreshValues[str, int] = FreshValues(ttl=0)
    source = Source()
    assert [await cache.get("p", source.load) for _ in range(3)] == [1, 2, 3]


async def test_a_caller_giving_up_does_not_cancel_the_load_of_the_others() -> None:
    cache: FreshValues[str, int] = FreshValues(ttl=60)
    source = Source()
    source.release.clear()
    impatient = asyncio.create_task(cache.get("p", source.load))
    patient = asyncio.create_task(cache.get("p", source.load))
    await asyncio.sleep(0)
    impatient.cancel()
    source.release.set()
    assert await patient == 1
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_a_failed_load_reaches_every_caller_and_nothing_is_kept() -> None:
    cache: FreshValues[str, int] = FreshValues(ttl=60)
    attempts = 0

    async def failing() -> int:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        raise TimeoutError

    results = await asyncio.gather(
        *(cache.get("p", failing) for _ in range(3)), return_exceptions=True
    )
    assert [type(r) for r in results] == [TimeoutError] * 3
    assert attempts == 1
    with pytest.raises(TimeoutError):
        await cache.get("p", failing)
    assert attempts == 2


async def test_the_oldest_values_go_first_when_it_is_full() -> None:
    cache: FreshValues[int, int] = FreshValues(ttl=60, size=2)
    source = Source()
    for key in (1, 2, 3):
        await cache.get(key, source.load)
    assert await cache.get(3, source.load) == 3
    assert await cache.get(2, source.load) == 2
    assert await cache.get(1, source.load) == 4  # forgotten, loaded anew


async def test_fresh_says_what_get_would_answer_from_memory() -> None:
    cache: FreshValues[str, int] = FreshValues(ttl=60)
    source = Source()
    assert cache.fresh("a") is MISSING
    assert await cache.get("a", source.load) == 1
    assert cache.fresh("a") == 1
    cache.invalidate("a")
    assert cache.fresh("a") is MISSING
    never: FreshValues[str, int] = FreshValues(ttl=0)
    await never.get("a", source.load)
    assert never.fresh("a") is MISSING
