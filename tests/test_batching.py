"""Waiting on a batch's outcome: within a time limit, and without the caller's leaving
touching the batch (what asyncio.timeout around asyncio.shield did)."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from countersign_core.batching import wait_within


async def test_the_outcome_is_the_futures() -> None:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()
    loop.call_soon(future.set_result, 7)
    assert await wait_within(future, 5.0) == 7
    failing: asyncio.Future[int] = loop.create_future()
    loop.call_soon(failing.set_exception, OSError("down"))
    with pytest.raises(OSError, match="down"):
        await wait_within(failing, None)


async def test_a_timeout_leaves_the_future_alone() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await wait_within(future, 0.05)
    assert 0.05 <= time.monotonic() - started < 2
    assert not future.done()  # the batch goes on
    future.set_result(1)


async def test_a_caller_cancelled_leaves_the_future_alone_and_its_error_retrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(wait_within(future, 5.0))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not future.done()
    future.set_exception(OSError("down"))  # nobody waits now: retrieved all the same
    await asyncio.sleep(0)
    del future
    gc.collect()
    assert "never retrieved" not in caplog.text
