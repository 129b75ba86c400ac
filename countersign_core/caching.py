"""A short-lived cache for what every request reads (a petition, its rendered counts),
where a value nobody has is loaded once, however many ask for it meanwhile.

Without that, each request that arrives while a value is being loaded loads it again:
under load, a cache miss becomes a stampede on Postgres or Redis. Hand-rolled: cachetools
has no single flight for coroutines, and a plain dict keeps the hit (every request) to a
dictionary lookup and a clock read.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Missing(enum.Enum):
    """What ``fresh`` says of a key without a fresh value."""

    MISSING = enum.auto()


MISSING = Missing.MISSING


def _always(_value: object) -> bool:
    return True


class FreshValues(Generic[K, V]):
    """Values kept ``ttl`` seconds (0: never kept, each ``get`` loads), at most ``size``
    of them (the oldest go first)."""

    def __init__(self, *, ttl: float, size: int = 10_000) -> None:
        self._ttl = ttl
        self._size = size
        self._values: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}
        # Bumped by every invalidation: a load that began before one is not kept.
        self._invalidations = 0

    async def get(
        self, key: K, load: Callable[[], Awaitable[V]], *, keep: Callable[[V], bool] = _always
    ) -> V:
        """The value of ``key``: kept, being loaded (its load shared), or loaded now by
        ``load``. A value ``keep`` refuses is returned to those waiting, but not kept."""
        if self._ttl <= 0:
            return await load()
        entry = self._values.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        loading = self._loading.get(key)
        if loading is None:
            load_and_keep = self._load(key, load, keep, self._invalidations)
            loading = self._loading[key] = asyncio.ensure_future(load_and_keep)
            # Retrieved even if every waiter gave up: no "never retrieved" warning.
            loading.add_done_callback(_retrieve)
        # Shielded: one waiter giving up (a client hanging up) must not cancel the others'.
        return await asyncio.shield(loading)

    def fresh(self, key: K) -> V | Missing:
        """The kept value of ``key`` if still fresh, else MISSING: the hit of ``get``
        without a coroutine, for callers on a hot path (then ``get`` on a miss)."""
        entry = self._values.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return MISSING

    def invalidate(self, key: K) -> None:
        """Forget ``key``'s value: the next ``get`` loads it anew."""
        self._invalidations += 1
        self._values.pop(key, None)

    def invalidate_all(self) -> None:
        self._invalidations += 1
        self._values.clear()

    async def _load(
        self,
        key: K,
        load: Callable[[], Awaitable[V]],
        keep: Callable[[V], bool],
        invalidations: int,  # as they were when the load was asked for
    ) -> V:
        try:
            value = await load()
        finally:
            del self._loading[key]
        if keep(value) and invalidations == self._invalidations:
            self._values.pop(key, None)  # re-inserted last: the newest
            self._values[key] = (time.monotonic() + self._ttl, value)
            if len(self._values) > self._size:
                del self._values[next(iter(self._values))]
        return value


def _retrieve(future: asyncio.Future[V]) -> None:
    if not future.cancelled():
        future.exception()
