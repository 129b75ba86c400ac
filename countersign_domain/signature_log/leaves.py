"""What a leaf of the signature log says, byte for byte, and the commitment it carries.

A leaf records one change to what counts, and nothing personal::

    version      1 byte   0x01
    kind         1 byte   1 counted, 2 invalidated, 3 restored (an invalidation undone),
                          4 erased (at the signer's request), 5 removed (any other reason)
    hour         8 bytes  the change's hour, Unix seconds, big-endian (a multiple of 3600)
    commitment  32 bytes  SHA-256("countersign commitment v1" || signature id, 8 bytes
                          big-endian || the signature's 16-byte receipt secret)
    reason       1 byte   length of the reason class, then that many ASCII bytes: how staff
                          picked the signatures of an invalidation (kinds 2 and 3 only)

Every leaf of one signature carries the same commitment, so the leaves of a signature
can be followed (counted, then invalidated) without saying whose they are. Only a
holder of the secret (the signer's receipt) can open it. The README gives this layout
to verifiers, which decode it with code of their own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum

VERSION = 1
COMMITMENT_DOMAIN = b"countersign commitment v1"
SECRET_SIZE = 16
REASON_CLASS = re.compile(r"^[a-z_+]{0,64}$")
_FIXED = 1 + 1 + 8 + 32 + 1


class Kind(IntEnum):
    COUNTED = 1
    INVALIDATED = 2
    RESTORED = 3
    ERASED = 4
    REMOVED = 5

    @property
    def delta(self) -> int:
        """What this change does to the counted total."""
        return 1 if self in (Kind.COUNTED, Kind.RESTORED) else -1


# The kinds as the log_events table names them.
KIND_NAMES = {kind.name.lower(): kind for kind in Kind}


def commitment(signature_id: int, secret: bytes) -> bytes:
    """The signature's commitment; sql/007_signature_log.sql computes the same."""
    return hashlib.sha256(COMMITMENT_DOMAIN + signature_id.to_bytes(8, "big") + secret).digest()


def on_the_hour(moment: datetime) -> int:
    """Unix seconds of the start of the moment's hour."""
    seconds = int(moment.timestamp())
    return seconds - seconds % 3600


@dataclass(frozen=True)
class Leaf:
    kind: Kind
    hour: int  # Unix seconds, a multiple of 3600
    commitment: bytes
    reason_class: str = ""

    def encode(self) -> bytes:
        reason = self.reason_class.encode("ascii")
        return (
            bytes([VERSION, self.kind])
            + self.hour.to_bytes(8, "big")
            + self.commitment
            + bytes([len(reason)])
            + reason
        )

    @classmethod
    def decode(cls, data: bytes) -> Leaf:
        if len(data) < _FIXED or data[0] != VERSION or len(data) != _FIXED + data[_FIXED - 1]:
            raise ValueError("not a leaf of this log")
        return cls(
            Kind(data[1]),
            int.from_bytes(data[2:10], "big"),
            data[10:42],
            data[_FIXED:].decode("ascii"),
        )

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.hour, UTC)
