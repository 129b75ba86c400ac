"""Keys of the client address hashes: random, one per UTC day, destroyed after a window.

A stored IP hash (and the name of a client's rate limit keys in Redis) is
``HMAC(day key, HMAC(secret-derived key, address))``. The day key is 32 random bytes,
never derived from the secret key, kept only in Postgres (``ip_hash_keys``) and in the
memory of the processes that use it that day. While it exists, the API hashes the
day's clients with it, and equal hashes group one address's signatures of that day
(the staff's ip-hashes search, invalidation by ip_hash). Once the counter worker
destroys it, ``COUNTERSIGN_IP_HASH_RETENTION_DAYS`` after its day began, nobody, not even
whoever holds the secret key and a dump of the database, can compute the hash of any
address for that day: the day's stored hashes still tell which of its signatures came
from one address, but no longer which address. The inner, secret-keyed HMAC keeps a
database dump alone (without the secret key) from testing addresses within the window.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg

from countersign_core.connections import within
from countersign_domain.signatures import Hasher

# Two statements: the second one's snapshot sees the row of whoever inserted it first.
INSERT_KEY = "INSERT INTO ip_hash_keys (day, key) VALUES ($1, $2) ON CONFLICT (day) DO NOTHING"
SELECT_KEY = "SELECT key FROM ip_hash_keys WHERE day = $1"

# Overwritten, not deleted: the row records when the day's key went.
DESTROY_EXPIRED_KEYS = """
UPDATE ip_hash_keys SET key = NULL, destroyed_at = now()
WHERE key IS NOT NULL AND day <= (now() AT TIME ZONE 'UTC')::date - $1::integer
RETURNING day
"""


def utc_today() -> date:
    return datetime.now(UTC).date()


def new_key() -> bytes:
    return secrets.token_bytes(32)


class KeyDestroyed(Exception):
    """The key of a day still in use is gone: this machine's clock is wrong."""


@dataclass(frozen=True)
class DayKey:
    day: date
    key: bytes
    hasher: Hasher

    def _seal(self, unsealed: bytes) -> bytes:
        return hmac.digest(self.key, unsealed, hashlib.sha256)

    def ip(self, address: str) -> bytes:
        """The IP hash stored with a signature of this day."""
        return self._seal(self.hasher.ip(address))

    def rate_limit_subject(self, subject: str) -> str:
        """What names a client's rate limit keys in Redis this day."""
        return self._seal(self.hasher.rate_limit_subject(subject)).hex()[:32]


async def key_of(conn: asyncpg.Pool | asyncpg.Connection, day: date) -> bytes:
    """The day's key, created if it has none yet."""
    await conn.execute(INSERT_KEY, day, new_key())
    key: bytes | None = await conn.fetchval(SELECT_KEY, day)
    if key is None:
        raise KeyDestroyed(f"the IP hash key of {day} was destroyed")
    return key


class DailyIpKeys:
    """Today's key, read (or created) once a day and kept in memory."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        hasher: Hasher,
        *,
        timeout: float | None = None,
        clock: Callable[[], date] = utc_today,
    ) -> None:
        self._pool = pool
        self._hasher = hasher
        self._timeout = timeout
        self._clock = clock
        self._current: DayKey | None = None
        # One read at a time: the requests that arrive while the day's key is read (at
        # start, at midnight) wait for it instead of each reading it.
        self._reading = asyncio.Lock()

    async def today(self) -> DayKey:
        day = self._clock()
        current = self._current
        if current is not None and current.day == day:
            return current
        async with self._reading:
            if self._current is None or self._current.day != day:
                key = await within(self._timeout, key_of(self._pool, day))
                self._current = DayKey(day, key, self._hasher)
            return self._current


async def destroy_expired_keys(
    conn: asyncpg.Pool | asyncpg.Connection, retention_days: int
) -> list[date]:
    """Destroy the keys of days that began ``retention_days`` ago or earlier; returns
    those days. Then VACUUM, so that the old row versions holding them go too."""
    destroyed = [row["day"] for row in await conn.fetch(DESTROY_EXPIRED_KEYS, retention_days)]
    if destroyed:
        await conn.execute("VACUUM ip_hash_keys")
    return destroyed
