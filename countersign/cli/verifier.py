"""An independent audit of a petition's signature log, from what the server publishes.

This module and ``countersign.cli.verify`` share nothing with the server but the
hashing module (``countersign_domain.signature_log.merkle``, RFC 9162): the leaf format,
the signed notes and the totals are read here by code of their own, from the README's
description, so that a mistake on one side is not repeated on the other
(tests/test_signature_log.py checks these imports).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from countersign_domain.signature_log import merkle

KINDS = {1: "counted", 2: "invalidated", 3: "restored", 4: "erased", 5: "removed"}
_SIGNATURE_LINE = re.compile(r"^\u2014 (\S+) ([A-Za-z0-9+/]+=*)$")
_HEADER = 1 + 1 + 8 + 32 + 1


class Discrepancy(Exception):
    """What the server published does not add up; the message says where."""


def note_key_id(name: str, algorithm: bytes, public: bytes) -> bytes:
    """A signed-note key id: the first 4 bytes of SHA-256(name || "\\n" || type || key)."""
    return hashlib.sha256(name.encode() + b"\n" + algorithm + public).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """A public key that may sign this log's heads."""

    name: str
    public: bytes

    @property
    def key_id(self) -> bytes:
        return note_key_id(self.name, b"\x01", self.public)

    def signed(self, checkpoint: Checkpoint) -> bool:
        key = Ed25519PublicKey.from_public_bytes(self.public)
        for name, signature in checkpoint.signatures:
            if name != self.name or signature[:4] != self.key_id:
                continue
            try:
                key.verify(signature[4:], checkpoint.body.encode())
            except InvalidSignature:
                return False
            return True
        return False


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head, parsed from its note."""

    note: str
    body: str
    origin: str
    size: int
    root: bytes
    time: int
    counted: int
    signatures: list[tuple[str, bytes]]

    @classmethod
    def parse(cls, note: str) -> Checkpoint:
        body, separator, lines = note.partition("\n\n")
        if not separator or not lines.endswith("\n"):
            raise Discrepancy("a head is not a signed note")
        body += "\n"
        origin, size, root, *extensions = body[:-1].split("\n")
        values = dict(line.split(" ", 1) for line in extensions if " " in line)
        try:
            parsed = cls(
                note,
                body,
                origin,
                _number(size),
                base64.b64decode(root, validate=True),
                _number(values["time"]),
                _number(values["counted"]),
                [_signature(line) for line in lines[:-1].split("\n")],
            )
        except (KeyError, ValueError, binascii.Error):
            raise Discrepancy("a head's checkpoint is malformed") from None
        if len(parsed.root) != merkle.HASH_SIZE:
            raise Discrepancy("a head's root hash is not 32 bytes")
        return parsed


def _number(text: str) -> int:
    if not re.fullmatch(r"0|[1-9][0-9]{0,18}", text):
        raise ValueError(text)
    return int(text)


def _signature(line: str) -> tuple[str, bytes]:
    match = _SIGNATURE_LINE.match(line)
    if not match:
        raise ValueError("not a signature line")
    return match[1], base64.b64decode(match[2], validate=True)


@dataclass(frozen=True)
class Leaf:
    kind: str
    hour: int
    commitment: bytes
    reason_class: str

    @classmethod
    def decode(cls, data: bytes) -> Leaf:
        if len(data) < _HEADER or data[0] != 1 or len(data) != _HEADER + data[_HEADER - 1]:
            raise ValueError("malformed leaf")
        if data[1] not in KINDS or int.from_bytes(data[2:10], "big") % 3600:
            raise ValueError("malformed leaf")
        return cls(
            KINDS[data[1]], int.from_bytes(data[2:10], "big"), data[10:42], data[_HEADER:].decode()
        )


@dataclass
class Totals:
    counted: int = 0
    invalidated: dict[str, int] = field(default_factory=dict)
    erased: int = 0
    removed: int = 0

    def copy(self) -> Totals:
        return Totals(self.counted, dict(self.invalidated), self.erased, self.removed)


@dataclass
class LogAudit:
    """Replays the leaves in order: recomputes the tree, follows each signature's
    commitment through its changes, and adds up the totals. ``sizes`` are the tree sizes
    whose root and totals the caller will compare with signed heads."""

    sizes: set[int]
    # Commitments whose leaves the caller wants listed (receipts): commitment -> indexes.
    watched: dict[bytes, list[int]] = field(default_factory=dict)
    tree: merkle.CompactTree = field(default_factory=merkle.CompactTree)
    totals: Totals = field(default_factory=Totals)
    # Per commitment: None while it counts, else why not ("" for never or erased-like).
    _standing: dict[bytes, str | None] = field(default_factory=dict)
    at_size: dict[int, tuple[bytes, Totals]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, data: bytes) -> None:
        index = self.tree.size
        self.tree.append(merkle.leaf_hash(data))
        try:
            leaf = Leaf.decode(data)
        except (ValueError, UnicodeDecodeError):
            self.problems.append(f"leaf {index} is malformed")
        else:
            self._follow(index, leaf)
        if self.tree.size in self.sizes:
            self.at_size[self.tree.size] = (self.tree.root(), self.totals.copy())

    def _follow(self, index: int, leaf: Leaf) -> None:
        if leaf.commitment in self.watched:
            self.watched[leaf.commitment].append(index)
        before = self._standing.get(leaf.commitment, "")
        counts = before is None
        totals = self.totals
        if leaf.kind == "counted" and not counts and before != "erased":
            totals.counted += 1
            self._standing[leaf.commitment] = None
        elif leaf.kind == "restored" and before == f"invalidated:{leaf.reason_class}":
            totals.counted += 1
            totals.invalidated[leaf.reason_class] -= 1
            if not totals.invalidated[leaf.reason_class]:
                del totals.invalidated[leaf.reason_class]
            self._standing[leaf.commitment] = None
        elif leaf.kind in ("invalidated", "erased", "removed") and counts:
            totals.counted -= 1
            if leaf.kind == "invalidated":
                reason = leaf.reason_class
                totals.invalidated[reason] = totals.invalidated.get(reason, 0) + 1
                self._standing[leaf.commitment] = f"invalidated:{reason}"
            elif leaf.kind == "erased":
                totals.erased += 1
                self._standing[leaf.commitment] = "erased"
            else:
                totals.removed += 1
                self._standing[leaf.commitment] = "removed"
        else:
            self.problems.append(
                f"leaf {index} ({leaf.kind}) does not follow from the earlier leaves of its "
                "signature"
            )
