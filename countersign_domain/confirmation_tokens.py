"""Confirmation links carry a signed, expiring token naming the signature they confirm.

itsdangerous signs ``[signature id, petition id]`` (and, for an email about a partner's
submission, its id third) with a key derived from the secret key and a salt of its own (a
token made for another purpose never passes here), and stamps the time it was made, so a
link stops working after ``max_age_days``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

SALT = "countersign confirmation v1"


class TokenExpired(Exception):
    """Authentic, but older than the maximum age."""


class TokenInvalid(Exception):
    """Not a token we made: tampered with, cut short, or made with another key."""


@dataclass(frozen=True)
class ConfirmationRef:
    signature_id: int
    petition_id: int
    # The partner's submission this link confirms (with the signature, if pending).
    submission_id: int | None = None

    def payload(self) -> list[int]:
        ids = [self.signature_id, self.petition_id]
        return ids if self.submission_id is None else [*ids, self.submission_id]


class ConfirmationTokens:
    def __init__(
        self, secret_key: str, *, max_age_days: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_age = max_age_days * 86_400
        self._serializer = URLSafeTimedSerializer(
            secret_key,
            salt=SALT,
            signer=_signer_with_clock(clock),
            signer_kwargs={"digest_method": hashlib.sha256},
        )

    def make(self, ref: ConfirmationRef) -> str:
        return self._serializer.dumps(ref.payload())

    def read(self, token: str) -> ConfirmationRef:
        """The signature the token names; raises TokenExpired or TokenInvalid."""
        try:
            payload: Any = self._serializer.loads(token, max_age=self.max_age)
        except SignatureExpired:
            raise TokenExpired from None
        except BadData:
            raise TokenInvalid from None
        if not (
            isinstance(payload, list)
            and len(payload) in (2, 3)
            and all(isinstance(n, int) and not isinstance(n, bool) for n in payload)
        ):
            raise TokenInvalid
        return ConfirmationRef(*payload)


def _signer_with_clock(clock: Callable[[], float]) -> type[TimestampSigner]:
    """A signer that reads the time from ``clock``: the seam that lets tests make a link
    that is already old, instead of waiting days for one to expire."""

    class ClockSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock())

    return ClockSigner
