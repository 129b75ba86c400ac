"""Abuse checks on a signature: rate limits and disposable addresses.

A signature over a limit is stored with ``suspect_reason`` set, so it does not count
until staff release it, and the signer gets the usual answer: a bot learns nothing.
With COUNTERSIGN_RATE_LIMIT_MODE=reject it gets 429 and ``Retry-After`` instead. A
disposable address is only ever marked, never refused.
"""

from __future__ import annotations

import math

from disposable_email_domains import blocklist

from countersign_core.settings import LimitsConfig
from countersign_domain.errors import RateLimited
from countersign_domain.ip_keys import DailyIpKeys
from countersign_domain.signatures import canonical_domain
from petition_api.client_address import IPAddress, limit_subject
from petition_api.ratelimit import Limit, RateLimiter

# suspect_reason values.
OVER_ADDRESS_LIMIT = "rate_limit_address"
OVER_PARTNER_LIMIT = "rate_limit_partner"
OVER_GLOBAL_LIMIT = "rate_limit_global"
DISPOSABLE_EMAIL = "disposable_email"


def is_disposable(email: str) -> bool:
    """Whether the address is at a known throwaway-mail domain (or a subdomain of one),
    however its domain is spelled (case, full-width letters, Unicode or ASCII form)."""
    labels = canonical_domain(email.rpartition("@")[2].strip()).split(".")
    return any(".".join(labels[i:]) in blocklist for i in range(len(labels) - 1))


class AbuseChecks:
    def __init__(self, config: LimitsConfig, limiter: RateLimiter, ip_keys: DailyIpKeys) -> None:
        self._config = config
        self._limiter = limiter
        self._ip_keys = ip_keys
        self._address_windows = tuple(
            (window, rate)
            for window, rate in (
                ("burst", config.ip_burst),
                ("sustained", config.ip_sustained),
            )
            if rate is not None
        )
        # The same for every signature: made once.
        self._global = (
            None
            if config.overall is None
            else Limit("global", (("rate", config.overall),), OVER_GLOBAL_LIMIT)
        )

    async def limits(
        self, petition_id: int, client: IPAddress | None, partner: str | None
    ) -> list[Limit]:
        """The limits one signature counts against. ``partner`` is the partner key's id
        when the request carries one."""
        config = self._config
        limits = []
        if (
            client is not None
            and self._address_windows
            and not any(client in network for network in config.allow)
        ):
            # Keyed by the day's key: no address is written to Redis, and once the day's
            # key is destroyed nobody can tell which address a key was for.
            today = await self._ip_keys.today()
            subject = f"ip:{today.rate_limit_subject(limit_subject(client))}:p{petition_id}"
            limits.append(Limit(subject, self._address_windows, OVER_ADDRESS_LIMIT))
        if partner is not None and config.partner is not None:
            windows = (("rate", config.partner),)
            limits.append(Limit(f"partner:{partner}", windows, OVER_PARTNER_LIMIT))
        if self._global is not None:
            limits.append(self._global)
        return limits

    async def assess(
        self, *, petition_id: int, client: IPAddress | None, email: str, partner: str | None = None
    ) -> str | None:
        """The signature's suspect reason, or None. Raises 429 in reject mode."""
        verdict = await self._limiter.check(await self.limits(petition_id, client, partner))
        if verdict.exceeded is not None:
            if self._config.mode == "reject":
                raise RateLimited(
                    "too many signatures from here; try again later",
                    headers={"Retry-After": str(max(1, math.ceil(verdict.retry_after)))},
                )
            return verdict.exceeded
        if is_disposable(email):
            return DISPOSABLE_EMAIL
        return None
