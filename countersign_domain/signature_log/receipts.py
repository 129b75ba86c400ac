"""Receipts: what a signer keeps to check, at any time, that their signature is in the
log and counts.

A receipt is ``<petition slug>.<signature id>.<secret>`` (the secret in unpadded
base64url): enough to recompute the signature's commitment and find its leaves, and
useless to anyone who does not hold it, since nothing else links a leaf to a signature.
The server keeps the secret so that it can show the receipt again and check it; erasure
destroys it (sql/007_signature_log.sql), after which the server opens nothing.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from dataclasses import dataclass

import asyncpg

from countersign_domain.signature_log import store
from countersign_domain.signature_log.leaves import SECRET_SIZE, Leaf, commitment
from countersign_domain.signature_log.problems import InvalidReceipt

CODE = r"^[a-z0-9][a-z0-9-]{0,99}\.[1-9][0-9]{0,18}\.[A-Za-z0-9_-]{22}$"
_CODE = re.compile(CODE)
_BIGINT_MAX = 2**63 - 1

# The signature's secret, if the petition is public and the signature not erased.
RECEIPT_ROW = """
SELECT s.petition_id, s.receipt_secret
FROM signatures s JOIN petitions p ON p.id = s.petition_id
WHERE s.id = $1 AND p.slug = $2 AND p.status <> 'draft'
"""


def receipt_code(slug: str, signature_id: int, secret: bytes) -> str:
    """The receipt a signer keeps (what ``Receipt.parse`` reads back)."""
    encoded = base64.urlsafe_b64encode(secret).decode().rstrip("=")
    return f"{slug}.{signature_id}.{encoded}"


@dataclass(frozen=True)
class Receipt:
    slug: str
    signature_id: int
    secret: bytes

    @property
    def code(self) -> str:
        return receipt_code(self.slug, self.signature_id, self.secret)

    @property
    def commitment(self) -> bytes:
        return commitment(self.signature_id, self.secret)

    @classmethod
    def parse(cls, code: str) -> Receipt:
        """Raises InvalidReceipt for anything that is not a well-formed receipt."""
        if not _CODE.fullmatch(code):
            raise InvalidReceipt
        slug, signature, secret = code.split(".")
        try:
            raw = base64.urlsafe_b64decode(secret + "==")
        except (ValueError, binascii.Error):
            raise InvalidReceipt from None
        if int(signature) > _BIGINT_MAX or len(raw) != SECRET_SIZE:
            raise InvalidReceipt
        return cls(slug, int(signature), raw)


@dataclass(frozen=True)
class OpenedReceipt:
    petition_id: int
    leaves: list[tuple[int, Leaf]]  # (index, leaf), in log order

    @property
    def counts(self) -> bool:
        """Whether the signature counts, by its last leaf."""
        return bool(self.leaves) and self.leaves[-1][1].kind.delta > 0


async def open_receipt(
    conn: asyncpg.Pool | asyncpg.Connection, receipt: Receipt
) -> OpenedReceipt | None:
    """The receipt's leaves; None unless the server holds this very secret for this
    signature of this petition (one answer for every other case, so a receipt cannot be
    used to learn whether some signature exists)."""
    row = await conn.fetchrow(RECEIPT_ROW, receipt.signature_id, receipt.slug)
    if row is None or row["receipt_secret"] is None:
        return None
    if not hmac.compare_digest(row["receipt_secret"], receipt.secret):
        return None
    return OpenedReceipt(
        row["petition_id"], await store.leaves_of(conn, row["petition_id"], receipt.commitment)
    )
