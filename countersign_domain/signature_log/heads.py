"""Signed tree heads: C2SP checkpoints in signed notes, with an Ed25519 key.

A head is a checkpoint (https://c2sp.org/tlog-checkpoint)::

    countersign/<key fingerprint>/<petition slug>     the origin: which log
    <tree size>
    <root hash, base64>
    time <Unix seconds>                               extension lines of this log
    counted <the counted total the leaves give>

signed as a note (https://c2sp.org/signed-note): the text, a blank line, and
``— <key name> <base64(key id || Ed25519 signature of the text)>``, the key id being the
first 4 bytes of SHA-256(key name || "\\n" || 0x01 || public key). Witnesses co-sign
the same text (https://c2sp.org/tlog-cosignature); see the README.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger("countersign_domain.signature_log")

ED25519 = b"\x01"  # the signed-note signature type of Ed25519
KEY_FILE = "log-signing-key.pem"


class SigningKeyError(Exception):
    """The configured signing key cannot be read; the message says why (never the key)."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class LogKey:
    """The log's Ed25519 key, and the names the notes give it."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.name = f"countersign/{hashlib.sha256(self.public).hexdigest()[:16]}"
        self.key_id = hashlib.sha256(self.name.encode() + b"\n" + ED25519 + self.public).digest()[
            :4
        ]

    @property
    def vkey(self) -> str:
        """The verifier key in the signed-note form: ``name+id+base64(type || key)``."""
        return f"{self.name}+{self.key_id.hex()}+{b64(ED25519 + self.public)}"

    def origin(self, slug: str) -> str:
        return f"{self.name}/{slug}"

    def sign_note(self, text: str) -> str:
        signature = self._private.sign(text.encode())
        return f"{text}\n\u2014 {self.name} {b64(self.key_id + signature)}\n"


@dataclass(frozen=True)
class TreeHead:
    origin: str
    tree_size: int
    root_hash: bytes
    timestamp: int  # Unix seconds
    counted: int

    def checkpoint(self) -> str:
        return (
            f"{self.origin}\n{self.tree_size}\n{b64(self.root_hash)}\n"
            f"time {self.timestamp}\ncounted {self.counted}\n"
        )


def parse_signing_key(text: str) -> Ed25519PrivateKey:
    """A PEM private key (``openssl genpkey -algorithm ed25519``) or the base64 of a
    32-byte Ed25519 seed."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise SigningKeyError("the log signing key must be an Ed25519 key")
            return key
        seed = base64.b64decode(text, validate=True)
    except (ValueError, TypeError, binascii.Error):
        raise SigningKeyError("the log signing key is neither PEM nor base64") from None
    if len(seed) != 32:
        raise SigningKeyError("a base64 log signing key must hold 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def load_log_key(configured: str | None, data_dir: Path) -> LogKey:
    """The configured key; without one, the key kept in the data folder, made on first
    use (for `countersign dev` and the tests: a deployment sets its own)."""
    if configured:
        return LogKey(parse_signing_key(configured))
    path = data_dir / KEY_FILE
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written aside, then linked into place: of two processes starting at once, one
        # link wins, and neither ever reads a half-written file.
        draft = data_dir / f".{KEY_FILE}.{os.getpid()}"
        draft.write_bytes(pem)
        draft.chmod(0o600)
        try:
            os.link(draft, path)
            log.warning(
                "no COUNTERSIGN_LOG_SIGNING_KEY: made a log signing key in the data folder; "
                "a deployment must set its own"
            )
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return LogKey(parse_signing_key(path.read_text()))
