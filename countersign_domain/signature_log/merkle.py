"""Merkle tree hashing and proofs of RFC 9162 (Certificate Transparency 2.0), section 2.1.

The same tree as RFC 6962: a leaf hashes as SHA-256(0x00 || leaf), a node as
SHA-256(0x01 || left || right); a tree of n > 1 leaves splits at k, the largest power of
two below n. The empty tree's hash is SHA-256 of nothing.

Written here rather than taken from a library: no maintained Python package implements
RFC 9162's proofs, and the algorithms are a few lines each, checked in the tests against
a naive recomputation of the definitions.

This module is the only code the independent verifier (``countersign verify``) shares
with the server; it imports nothing from the project.

A *node* ``(level, position)`` is the perfect subtree of ``2**level`` leaves starting at
leaf ``position * 2**level``. Every range a proof names decomposes into a few such nodes,
so a server that stores them answers any proof with one lookup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
HASH_SIZE = 32

Node = tuple[int, int]  # (level, position)
Range = tuple[int, int]  # leaves [start, end)


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(size: int) -> int:
    """k: the largest power of two smaller than ``size`` (> 1)."""
    return 1 << ((size - 1).bit_length() - 1)


def fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of a range from the nodes it decomposes into, left to right: the tree of
    a range always joins its last two parts first (its split point is a power of two)."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def range_nodes(start: int, end: int) -> list[Node]:
    """The nodes that range [start, end) of a tree decomposes into, left to right.

    For every range a tree or a proof names, ``start`` is a multiple of a power of two at
    least the range's size, so the largest aligned node that fits is always the left part
    of the RFC's split.
    """
    nodes = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes make the inclusion proof of leaf ``index`` in a tree of
    ``size`` leaves (RFC 9162 2.1.3.1, PATH), in proof order: nearest the leaf first."""
    if not 0 <= index < size:
        raise ValueError("the leaf must be inside the tree")
    ranges = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    return ranges[::-1]


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The ranges whose hashes make the consistency proof from the tree of ``first``
    leaves to the tree of ``second`` (RFC 9162 2.1.4.1, SUBPROOF), in proof order."""
    if not 0 <= first <= second:
        raise ValueError("the first tree cannot be larger than the second")
    if first in (0, second):
        return []
    ranges = []
    start, end, whole = 0, second, True
    while True:
        if first == end - start:
            if not whole:
                ranges.append((start, end))
            break
        k = _split(end - start)
        if first <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            first -= k
            whole = False
    return ranges[::-1]


def proof_nodes(ranges: Sequence[Range]) -> set[Node]:
    """Every node a proof's ranges need: what a server looks up to answer it."""
    return {node for start, end in ranges for node in range_nodes(start, end)}


def proof_hashes(ranges: Sequence[Range], nodes: Mapping[Node, bytes]) -> list[bytes]:
    return [fold([nodes[node] for node in range_nodes(start, end)]) for start, end in ranges]


def peak_nodes(size: int) -> list[Node]:
    """The nodes a tree of ``size`` leaves decomposes into (one per bit of ``size``)."""
    return range_nodes(0, size)


class CompactTree:
    """A tree's right edge: enough to append leaves and compute the root, in O(log n)
    memory. Resume a stored tree from the hashes of its ``peak_nodes``."""

    __slots__ = ("_peaks", "size")

    def __init__(self, size: int = 0, peaks: Sequence[bytes] = ()) -> None:
        if len(peaks) != size.bit_count():
            raise ValueError("a tree of this size has one peak per bit of its size")
        self.size = size
        self._peaks = list(peaks)

    def append(self, leaf_hash: bytes, completed: list[tuple[Node, bytes]] | None = None) -> None:
        """Add a leaf's hash; with ``completed``, also list every node it completes (the
        leaf itself first) there, for a server that stores them."""
        position = self.size
        self.size += 1
        if completed is not None:
            completed.append(((0, position), leaf_hash))
        merged, level = leaf_hash, 0
        # Each trailing zero bit of the new size joins two equal subtrees.
        while not (self.size >> level) & 1:
            merged = node_hash(self._peaks.pop(), merged)
            level += 1
            if completed is not None:
                completed.append(((level, (self.size >> level) - 1), merged))
        self._peaks.append(merged)

    def root(self) -> bytes:
        return fold(self._peaks)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: is the leaf with hash ``leaf`` at ``index`` in the tree of
    ``size`` leaves whose hash is ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, result = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and result == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: does the tree of ``second`` leaves with hash ``second_root``
    extend the tree of ``first`` leaves with hash ``first_root``?"""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree is one node of the second
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(node, fr)
            sr = node_hash(node, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, node)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
