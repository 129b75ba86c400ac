"""Rate limits kept in Redis: GCRA, one atomic Lua script per limited subject.

A subject is any string (``ip:<hash>:p<petition>``, ``partner:<id>``, ``global``) with one
or more windows, each a Rate: at most ``count`` per ``seconds``, in bursts of up to
``count``. GCRA (the generic cell rate algorithm) keeps a single timestamp per window,
so a limit costs one small key whatever its rate, and it has no window edges for a bot
to time. A window's key is ``<prefix>:{rl:<subject>}:<window>``: a subject's windows
share its hash tag, so the script is legal on Redis Cluster.

A refused request does not use up its subject's allowance. Each subject decides alone,
so a request refused by the global ceiling still counts against its address. Redis not
answering is not a reason to stop taking signatures: the checks are skipped, logged
once, and counted.

Checks are batched (countersign_core.batching): those that arrive while a batch is in
Redis go together in the next one, one pipeline, one script call per subject however
many of the batch's requests count against it. The global ceiling, which every request
counts against, costs one call per batch, not one per request: the script takes the
subject's requests one after the other while there is room, exactly as separate calls
in that order would. Scripts are called by their SHA (EVALSHA), and loaded only when
Redis says it does not know them (NOSCRIPT: a new or restarted Redis).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from countersign_core.batching import Batcher, wait_within
from countersign_core.connections import TRANSIENT_ERRORS, RedisClient
from countersign_core.logs import OutageNotice
from countersign_core.settings import Rate
from petition_api import metrics

log = logging.getLogger("petition_api.ratelimit")

# KEYS: one per window.  ARGV[1]: how many requests to take, one after the other; then,
# per window, its emission interval and its tolerance (ms).
# Takes requests while every window has room (taking one uses room in every window);
# returns {requests taken, ms until the first one not taken would fit (0 if all were)}.
GCRA = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + clock[2] / 1000
local wanted = tonumber(ARGV[1])
local tat = {}
for i, key in ipairs(KEYS) do
  tat[i] = math.max(tonumber(redis.call('GET', key)) or now, now)
end
local taken, wait = 0, 0
while taken < wanted and wait == 0 do
  for i = 1, #KEYS do
    local allowed_at = tat[i] - tonumber(ARGV[2 * i + 1])
    if allowed_at > now and allowed_at - now > wait then wait = allowed_at - now end
  end
  if wait == 0 then
    for i = 1, #KEYS do tat[i] = tat[i] + tonumber(ARGV[2 * i]) end
    taken = taken + 1
  end
end
if taken > 0 then
  for i, key in ipairs(KEYS) do
    redis.call('SET', key, string.format('%.3f', tat[i]), 'PX', math.ceil(tat[i] - now))
  end
end
return {taken, math.ceil(wait)}
"""
GCRA_SHA = hashlib.sha1(GCRA.encode()).hexdigest()  # noqa: S324 (Redis names scripts so)
# The most checks one pipeline carries.
MAX_BATCH = 1000


@dataclass(frozen=True)
class Limit:
    subject: str
    windows: tuple[tuple[str, Rate], ...]
    # What a signature over this limit is marked with (its suspect_reason).
    reason: str


@dataclass(frozen=True)
class Verdict:
    exceeded: str | None  # the reason of the first limit exceeded, or None
    retry_after: float = 0.0  # seconds until that limit has room again


WITHIN_LIMITS = Verdict(None)


def window_key(prefix: str, subject: str, window: str) -> str:
    """The key of one window of a subject, under the service's Redis prefix."""
    return f"{prefix}:{{rl:{subject}}}:{window}"


def _gcra_args(rate: Rate) -> tuple[float, float]:
    interval = rate.seconds * 1000 / rate.count
    return interval, interval * (rate.count - 1)


# A script call's number of keys, then its keys and arguments.
_Call = tuple[int, list[str | int | float]]


@dataclass(frozen=True)
class _Taken:
    """What the script said for one subject of a batch."""

    count: int  # how many of the batch's requests (in order) it took
    wait_ms: int  # for the others


class RateLimiter:
    def __init__(self, redis: RedisClient, prefix: str, *, timeout: float) -> None:
        self._prefix = prefix
        self._timeout = timeout
        self._redis = redis
        self._outage = OutageNotice(log, "rate limits skipped")
        self._batcher: Batcher[Sequence[Limit], Verdict] | None = None

    async def check(self, limits: Sequence[Limit]) -> Verdict:
        """Take one request from every limit with room; the verdict names the first that had
        none."""
        if not limits:
            return WITHIN_LIMITS
        if self._batcher is None:  # made on first use: it needs the running loop
            self._batcher = Batcher(self._check_batch, max_batch=MAX_BATCH)
        try:
            verdict = await wait_within(self._batcher.submit(limits), self._timeout)
        except TRANSIENT_ERRORS as exc:
            metrics.RATE_LIMITS_SKIPPED.inc()
            self._outage.failed(exc)
            return WITHIN_LIMITS
        self._outage.recovered()
        return verdict

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close(timeout=self._timeout)

    async def _check_batch(self, batch: Sequence[Sequence[Limit]]) -> list[Verdict | BaseException]:
        # Each subject once, with how many of the batch's requests count against it.
        wanted: dict[str, tuple[Limit, int]] = {}
        for limits in batch:
            for limit in limits:
                _, count = wanted.get(limit.subject, (limit, 0))
                wanted[limit.subject] = (limit, count + 1)
        try:
            async with asyncio.timeout(self._timeout):
                taken = await self._take(wanted)
        except TRANSIENT_ERRORS as exc:
            return [exc for _ in batch]
        # The n-th request of the batch against a subject was taken if n < what it took.
        seen = dict.fromkeys(wanted, 0)
        verdicts: list[Verdict | BaseException] = []
        for limits in batch:
            verdict = WITHIN_LIMITS
            for limit in limits:
                position, seen[limit.subject] = seen[limit.subject], seen[limit.subject] + 1
                said = taken[limit.subject]
                if position >= said.count and verdict is WITHIN_LIMITS:
                    verdict = Verdict(limit.reason, said.wait_ms / 1000)
            verdicts.append(verdict)
        return verdicts

    async def _take(self, wanted: dict[str, tuple[Limit, int]]) -> dict[str, _Taken]:
        """One script call per subject, in one pipeline; the script loaded only if Redis
        does not know it, and then only the calls it refused run again."""
        calls = {subject: self._call(limit, count) for subject, (limit, count) in wanted.items()}
        results = await self._run(calls)
        if missing := [subject for subject, r in results.items() if isinstance(r, NoScriptError)]:
            await self._redis.script_load(GCRA)
            results.update(await self._run({subject: calls[subject] for subject in missing}))
        taken = {}
        for subject, result in results.items():
            if isinstance(result, BaseException):
                raise result
            count, wait_ms = result
            taken[subject] = _Taken(int(count), int(wait_ms))
        return taken

    def _call(self, limit: Limit, count: int) -> _Call:
        keys = [window_key(self._prefix, limit.subject, name) for name, _ in limit.windows]
        args = [value for _, rate in limit.windows for value in _gcra_args(rate)]
        return len(keys), [*keys, count, *args]

    async def _run(self, calls: dict[str, _Call]) -> dict[str, Any]:
        """Each call's answer: a list [taken, wait], or the error Redis answered it with."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_count, keys_and_args in calls.values():
                pipe.evalsha(GCRA_SHA, key_count, *keys_and_args)
            results = await pipe.execute(raise_on_error=False)
        return dict(zip(calls, results, strict=True))
