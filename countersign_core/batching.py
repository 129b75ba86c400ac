"""Micro-batching: calls that arrive while a batch is in hand are handled together by the
next one, in one round trip to a server.

Under light load a batch is a single call and waits for nothing; under load, the round
trips (and their fixed cost) per call fall as the batches grow by themselves. The
signature writer batches INSERTs this way, the rate limiter its Redis scripts.
Hand-rolled: it is a queue and a loop, and each user decides what a batch's failure
means for each of its calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger("countersign_core.batching")

T = TypeVar("T")
R = TypeVar("R")

# What handles a batch: one outcome per item, in order, each a result or the exception
# that item's caller gets.
BatchHandler = Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]


async def wait_within(future: asyncio.Future[R], timeout: float | None) -> R:
    """``future``'s outcome, or TimeoutError after ``timeout`` seconds (None: no limit);
    as ``asyncio.timeout`` around ``asyncio.shield``: the caller giving up (a timeout, a
    cancellation) never cancels ``future``, whose outcome is retrieved anyway. Each
    signature waits on two batches: one timer and one waiter each, not a Timeout context
    and a shield, is a few microseconds less per request."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[R] = loop.create_future()

    def settle(done: asyncio.Future[R]) -> None:
        if done.cancelled():
            if not waiter.done():
                waiter.cancel()
            return
        error = done.exception()  # retrieved, whoever still waits
        if waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(done.result())

    def expire() -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError())

    future.add_done_callback(settle)
    timer = loop.call_later(timeout, expire) if timeout is not None else None
    try:
        return await waiter
    finally:
        if timer is not None:
            timer.cancel()


class Batcher(Generic[T, R]):
    def __init__(self, handle: BatchHandler[T, R], *, max_batch: int, tasks: int = 1) -> None:
        self._handle = handle
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._run()) for _ in range(tasks)]

    def submit(self, item: T) -> asyncio.Future[R]:
        """The outcome of ``item``, once a batch has handled it. Callers that may give up
        waiting await it shielded: a caller leaving must not cancel its batch."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return future

    def queued(self) -> int:
        return self._queue.qsize()

    async def close(self, timeout: float) -> int:
        """Handle what is queued, for at most ``timeout`` seconds, then stop. Returns how
        many items were left unhandled."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        left = self._queue.qsize()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return left

    async def _run(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < self._max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                outcomes = await self._handle([item for item, _ in batch])
            except Exception as exc:  # a handler's bug must not stop every later batch
                log.error("a batch of %d failed with %s", len(batch), type(exc).__name__)
                outcomes = [exc] * len(batch)
            finally:
                for _ in batch:
                    queue.task_done()
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
