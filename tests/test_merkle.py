"""The hashing module (RFC 9162 section 2.1): the published RFC 6962 test vectors, and
every tree, proof and verification against a naive recomputation of the definitions."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from countersign_domain.signature_log import merkle

# The reference leaves and roots of the Certificate Transparency test data (sizes 0..8).
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
CONSISTENCY = {
    (2, 8): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}


# -- the definitions, written naively (RFC 9162 2.1.1, 2.1.3.1, 2.1.4.1) --------------------


def mth(hashes: list[bytes]) -> bytes:
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(hashes[:k]) + mth(hashes[k:])).digest()


def naive_path(m: int, hashes: list[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    if m < k:
        return [*naive_path(m, hashes[:k]), mth(hashes[k:])]
    return [*naive_path(m - k, hashes[k:]), mth(hashes[:k])]


def naive_subproof(m: int, hashes: list[bytes], whole: bool) -> list[bytes]:
    if m == len(hashes):
        return [] if whole else [mth(hashes)]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    if m <= k:
        return [*naive_subproof(m, hashes[:k], whole), mth(hashes[k:])]
    return [*naive_subproof(m - k, hashes[k:], False), mth(hashes[:k])]


def stored_nodes(hashes: list[bytes]) -> dict[merkle.Node, bytes]:
    """What a server stores: every complete subtree of the tree."""
    nodes: dict[merkle.Node, bytes] = {}
    tree = merkle.CompactTree()
    completed: list[tuple[merkle.Node, bytes]] = []
    for leaf in hashes:
        tree.append(leaf, completed)
    nodes.update(completed)
    return nodes


def served_inclusion(index: int, hashes: list[bytes]) -> list[bytes]:
    ranges = merkle.inclusion_ranges(index, len(hashes))
    return merkle.proof_hashes(ranges, stored_nodes(hashes))


def served_consistency(first: int, hashes: list[bytes]) -> list[bytes]:
    ranges = merkle.consistency_ranges(first, len(hashes))
    return merkle.proof_hashes(ranges, stored_nodes(hashes))


def leaf_hashes(n: int, salt: int = 0) -> list[bytes]:
    return [merkle.leaf_hash(f"{salt}:{i}".encode()) for i in range(n)]


# -- the published vectors -------------------------------------------------------------------


def test_the_rfc_6962_reference_roots() -> None:
    hashes = [merkle.leaf_hash(leaf) for leaf in LEAVES]
    tree = merkle.CompactTree()
    assert tree.root().hex() == ROOTS[0]
    for size, leaf in enumerate(hashes, start=1):
        tree.append(leaf)
        assert tree.root().hex() == ROOTS[size]


def test_the_reference_proofs_are_served_and_verify() -> None:
    hashes = [merkle.leaf_hash(leaf) for leaf in LEAVES]
    root = bytes.fromhex(ROOTS[8])
    for (index, size), proof in INCLUSION.items():
        assert [h.hex() for h in served_inclusion(index, hashes[:size])] == proof
        path = [bytes.fromhex(h) for h in proof]
        assert merkle.verify_inclusion(hashes[index], index, size, path, root)
    for (first, second), proof in CONSISTENCY.items():
        assert [h.hex() for h in served_consistency(first, hashes[:second])] == proof
        path = [bytes.fromhex(h) for h in proof]
        first_root = bytes.fromhex(ROOTS[first])
        assert merkle.verify_consistency(first, second, first_root, root, path)


# -- every tree and proof against the naive definitions ------------------------------------

SIZES = st.integers(min_value=1, max_value=140)


@settings(max_examples=150, deadline=None, database=None)
@given(size=SIZES, salt=st.integers(0, 1000))
def test_the_compact_tree_and_stored_nodes_give_the_definitions_root(size: int, salt: int) -> None:
    hashes = leaf_hashes(size, salt)
    tree = merkle.CompactTree()
    for leaf in hashes:
        tree.append(leaf)
    assert tree.root() == mth(hashes)
    nodes = stored_nodes(hashes)
    # A tree resumed from its stored peaks goes on exactly as the original.
    peaks = merkle.peak_nodes(size)
    resumed = merkle.CompactTree(size, [nodes[node] for node in peaks])
    extra = merkle.leaf_hash(b"one more")
    tree.append(extra)
    resumed.append(extra)
    assert resumed.root() == tree.root() == mth([*hashes, extra])


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.data(), size=SIZES)
def test_inclusion_proofs_are_the_definitions_and_only_the_truth_verifies(
    data: st.DataObject, size: int
) -> None:
    hashes = leaf_hashes(size)
    root = mth(hashes)
    index = data.draw(st.integers(0, size - 1))
    proof = served_inclusion(index, hashes)
    assert proof == naive_path(index, hashes)
    assert merkle.verify_inclusion(hashes[index], index, size, proof, root)
    other = data.draw(st.integers(0, size - 1))
    if other != index:
        assert not merkle.verify_inclusion(hashes[other], index, size, proof, root)
        assert not merkle.verify_inclusion(hashes[index], other, size, proof, root)
    assert not merkle.verify_inclusion(hashes[index], index, size, [*proof, root], root)
    if proof:
        assert not merkle.verify_inclusion(hashes[index], index, size, proof[:-1], root)
        flipped = [*proof[:-1], bytes([proof[-1][0] ^ 1]) + proof[-1][1:]]
        assert not merkle.verify_inclusion(hashes[index], index, size, flipped, root)


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.data(), second=SIZES)
def test_consistency_proofs_are_the_definitions_and_catch_a_rewritten_history(
    data: st.DataObject, second: int
) -> None:
    hashes = leaf_hashes(second)
    first = data.draw(st.integers(1, second))
    first_root, second_root = mth(hashes[:first]), mth(hashes)
    proof = served_consistency(first, hashes)
    assert proof == (naive_subproof(first, hashes, True) if first < second else [])
    assert merkle.verify_consistency(first, second, first_root, second_root, proof)

    # A log that changed one of the first tree's leaves has another root at that size,
    # and no proof links it to the saved head.
    changed = data.draw(st.integers(0, first - 1))
    forked = [*hashes[:changed], merkle.leaf_hash(b"rewritten"), *hashes[changed + 1 :]]
    forked_proof = served_consistency(first, forked)
    assert not merkle.verify_consistency(first, second, first_root, mth(forked), forked_proof)
    if proof:
        assert not merkle.verify_consistency(first, second, first_root, second_root, proof[:-1])
        wrong = [bytes(32), *proof[1:]]
        assert not merkle.verify_consistency(first, second, first_root, second_root, wrong)


def test_edge_sizes() -> None:
    hashes = leaf_hashes(5)
    root = mth(hashes)
    assert merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, root, [])
    assert not merkle.verify_consistency(0, 5, root, root, [])
    assert merkle.verify_consistency(5, 5, root, root, [])
    assert not merkle.verify_consistency(5, 5, root, merkle.EMPTY_ROOT, [])
    assert not merkle.verify_consistency(5, 3, root, root, [])
    assert not merkle.verify_inclusion(hashes[0], 5, 5, [], root)
    assert merkle.verify_inclusion(hashes[0], 0, 1, [], hashes[0])
