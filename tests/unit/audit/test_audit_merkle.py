"""RFC 9162 §2.1: tree hashes, inclusion and consistency proofs, against independent checks.

Two independent references: the known-answer vectors of Go's transparency-dev/merkle (the
RFC 6962 reference leaves, ``testonly/constants.go`` and ``proof/verify_test.go``), and a
straightforward recursive transcription, written here, of the RFC's definitions: MTH (§2.1.1),
PATH (§2.1.3.1) and SUBPROOF (§2.1.4.1), plus root reconstruction from a proof that follows the
recursive tree structure rather than the RFC's bit-twiddling verifier algorithms.
"""

from __future__ import annotations

import hashlib
from functools import cache

import pytest

from ironhub import audit
from ironhub.audit._merkle import EMPTY_ROOT, CompleteNodes
from ironhub.errors import AuditIntegrityError

# --- the independent reference ------------------------------------------------------------


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_leaf(data: bytes) -> bytes:
    return sha(b"\x00" + data)


def ref_node(left: bytes, right: bytes) -> bytes:
    return sha(b"\x01" + left + right)


def split(n: int) -> int:
    """The largest power of two smaller than n (n > 1), by counting up."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaves: tuple[bytes, ...]) -> bytes:
    if not leaves:
        return sha(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return ref_node(ref_mth(leaves[:k]), ref_mth(leaves[k:]))


def ref_path(m: int, leaves: tuple[bytes, ...]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = split(len(leaves))
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: tuple[bytes, ...], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [ref_mth(leaves)]
    k = split(n)
    if m <= k:
        return [*ref_subproof(m, leaves[:k], whole), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


def ref_root_from_path(m: int, n: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """Rebuild the root from a leaf and its path by following the tree's shape."""
    if n == 1:
        return leaf if not path else None
    if not path:
        return None
    k = split(n)
    if m < k:
        inner = ref_root_from_path(m, k, leaf, path[:-1])
        return None if inner is None else ref_node(inner, path[-1])
    inner = ref_root_from_path(m - k, n - k, leaf, path[:-1])
    return None if inner is None else ref_node(path[-1], inner)


def ref_consistent(m: int, n: int, old: bytes, new: bytes, proof: list[bytes]) -> bool:
    """Rebuild both roots from a consistency proof by following SUBPROOF's recursion."""
    remaining = list(proof)

    def roots(m: int, n: int, whole: bool) -> tuple[bytes, bytes]:
        if m == n:
            if whole:
                return old, old
            h = remaining.pop()
            return h, h
        k = split(n)
        sibling = remaining.pop()
        if m <= k:
            first, second = roots(m, k, whole)
            return first, ref_node(second, sibling)
        first, second = roots(m - k, n - k, False)
        return ref_node(sibling, first), ref_node(sibling, second)

    try:
        first, second = roots(m, n, True)
    except IndexError:
        return False
    return not remaining and first == old and second == new


N = 40
LEAVES = tuple(ref_leaf(f"record {i}".encode()) for i in range(N))


@cache
def ref_root(size: int) -> bytes:
    return ref_mth(LEAVES[:size])


def agrees_inclusion(leaf: bytes, m: int, n: int, path: list[bytes], root: bytes) -> bool:
    """Our verifier's verdict; asserted equal to the reference's."""
    try:
        audit.verify_inclusion(leaf, m, n, path, root)
    except AuditIntegrityError:
        ours = False
    else:
        ours = True
    reference = 0 <= m < n and ref_root_from_path(m, n, leaf, path) == root
    assert ours == reference, (m, n)
    return ours


def agrees_consistency(m: int, n: int, old: bytes, new: bytes, proof: list[bytes]) -> bool:
    try:
        audit.verify_consistency(m, n, old, new, proof)
    except AuditIntegrityError:
        ours = False
    else:
        ours = True
    assert 0 < m < n
    assert ours == ref_consistent(m, n, old, new, proof), (m, n)
    return ours


def flipped(proof: list[bytes], index: int) -> list[bytes]:
    element = bytearray(proof[index])
    element[0] ^= 0x08
    return [*proof[:index], bytes(element), *proof[index + 1 :]]


# --- known answers: transparency-dev/merkle ----------------------------------------------------

# RFC 6962 reference leaves and roots, transparency-dev/merkle testonly/constants.go.
GO_LEAVES = [
    bytes.fromhex(h)
    for h in (
        *("", "00", "10", "2021", "3031", "40414243", "5051525354555657"),
        "606162636465666768696a6b6c6d6e6f",
    )
]
GO_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
H = bytes.fromhex
# (0-based index, tree size, proof), proof/verify_test.go (which numbers leaves from 1).
GO_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [H("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            H("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
GO_CONSISTENCY = [
    (
        1,
        8,
        [
            H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            H("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]
GO_LEAF_HASHES = [audit.leaf_hash(data) for data in GO_LEAVES]


def test_known_roots() -> None:
    assert audit.root_hash([]) == GO_ROOTS[0] == EMPTY_ROOT
    for size in range(1, 9):
        assert audit.root_hash(GO_LEAF_HASHES[:size]) == GO_ROOTS[size]


@pytest.mark.parametrize(("index", "size", "proof"), GO_INCLUSION)
def test_known_inclusion_proofs(index: int, size: int, proof: list[bytes]) -> None:
    assert audit.inclusion_proof(GO_LEAF_HASHES, index, size) == proof
    audit.verify_inclusion(GO_LEAF_HASHES[index], index, size, proof, GO_ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), GO_CONSISTENCY)
def test_known_consistency_proofs(old: int, new: int, proof: list[bytes]) -> None:
    assert audit.consistency_proof(GO_LEAF_HASHES, old, new) == proof
    audit.verify_consistency(old, new, GO_ROOTS[old], GO_ROOTS[new], proof)


# --- every size up to 40, against the reference --------------------------------------------------


def test_hashes_match_the_definitions() -> None:
    assert audit.leaf_hash(b"x") == sha(b"\x00x")
    assert audit.node_hash(b"l", b"r") == sha(b"\x01lr")
    assert audit.record_hash(b"x") == audit.leaf_hash(b"x")


def test_roots_match_the_reference_at_every_size() -> None:
    builder = audit.TreeBuilder()
    nodes = CompleteNodes()
    assert builder.root() == ref_root(0)
    assert builder.size == nodes.size == 0
    for size in range(1, N + 1):
        builder.append(LEAVES[size - 1])
        nodes.extend([LEAVES[size - 1]])
        assert builder.size == nodes.size == size
        assert audit.root_hash(LEAVES[:size]) == builder.root() == ref_root(size)
    for size in range(N + 1):
        assert nodes.root(size) == ref_root(size)


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 8, 13])
def test_complete_nodes_in_batches(batch: int) -> None:
    nodes = CompleteNodes()
    for start in range(0, N, batch):
        nodes.extend(list(LEAVES[start : start + batch]))
    assert [nodes.root(size) for size in range(N + 1)] == [ref_root(s) for s in range(N + 1)]
    with pytest.raises(ValueError, match="out of range"):
        nodes.root(N + 1)
    with pytest.raises(ValueError, match="out of range"):
        nodes.root(-1)


def test_tree_builder_refuses_a_short_leaf() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        audit.TreeBuilder().append(b"short")


def test_every_inclusion_proof_up_to_40() -> None:
    for size in range(1, N + 1):
        root = ref_root(size)
        for index in range(size):
            proof = audit.inclusion_proof(LEAVES, index, size)
            assert proof == ref_path(index, LEAVES[:size])
            assert ref_root_from_path(index, size, LEAVES[index], proof) == root
            audit.verify_inclusion(LEAVES[index], index, size, proof, root)
            assert agrees_inclusion(LEAVES[index], index, size, proof, root)


def test_wrong_inclusion_inputs_are_refused() -> None:
    refused = 0
    for size in range(1, N + 1):
        root = ref_root(size)
        for index in range(size):
            proof = audit.inclusion_proof(LEAVES, index, size)
            leaf = LEAVES[index]
            must_fail = [
                (leaf, index, size * 2, proof, root),  # wrong size: one level too few
                (leaf, size, size, proof, root),  # index out of range
                (leaf, -1, size, proof, root),
                (leaf, index, size, proof, ref_root(size - 1)),  # wrong root
                (LEAVES[(index + 1) % N], index, size, proof, root),  # wrong leaf
                (leaf, index, size, [*proof, root], root),  # an element too many
                (leaf, index, size, [root, *proof], root),
            ]
            if index ^ 1 < size:
                must_fail.append((leaf, index ^ 1, size, proof, root))  # wrong index
            if proof:
                must_fail.append((leaf, index, size, proof[:-1], root))  # one too few
                must_fail += [
                    (leaf, index, size, flipped(proof, i), root) for i in range(len(proof))
                ]
            for case in must_fail:
                with pytest.raises(AuditIntegrityError):
                    audit.verify_inclusion(*case)
                refused += 1
            # Neighbouring sizes and indexes: whatever we decide, the reference decides too.
            for wrong_size in (size - 1, size + 1, size // 2):
                agrees_inclusion(leaf, index, wrong_size, proof, root)
            for wrong_index in (index - 1, index + 1, index ^ 2):
                agrees_inclusion(leaf, wrong_index, size, proof, root)
    assert refused > 5000


def test_every_consistency_proof_up_to_40() -> None:
    for new in range(N + 1):
        for old in range(new + 1):
            proof = audit.consistency_proof(LEAVES, old, new)
            expected = ref_subproof(old, LEAVES[:new], True) if 0 < old < new else []
            assert proof == expected
            audit.verify_consistency(old, new, ref_root(old), ref_root(new), proof)
            if 0 < old < new:
                assert ref_consistent(old, new, ref_root(old), ref_root(new), proof)


def test_wrong_consistency_inputs_are_refused() -> None:
    refused = 0
    for new in range(2, N + 1):
        for old in range(1, new):
            proof = audit.consistency_proof(LEAVES, old, new)
            r1, r2 = ref_root(old), ref_root(new)
            must_fail = [
                (old, new * 2, r1, r2, proof),
                (old, new, r2, r2, proof) if r1 != r2 else None,
                (old, new, r1, r1, proof),
                (old, new, r2, r1, proof),  # swapped
                (new, old, r2, r1, proof),  # time travel
                (old, new, r1, r2, []),
                (old, new, r1, r2, [*proof, r2]),
                (old, new, r1, r2, [EMPTY_ROOT, *proof]),
                (old, new, r1, r2, proof[:-1]),
                *((old, new, r1, r2, flipped(proof, i)) for i in range(len(proof))),
            ]
            for case in must_fail:
                if case is None:
                    continue
                with pytest.raises(AuditIntegrityError):
                    audit.verify_consistency(*case)
                refused += 1
            for wrong_old in (old - 1, old + 1):
                if 0 < wrong_old < new:
                    agrees_consistency(wrong_old, new, r1, r2, proof)
            for wrong_new in (new - 1, new + 1):
                if old < wrong_new:
                    agrees_consistency(old, wrong_new, r1, r2, proof)
    assert refused > 5000


def test_the_sizes_the_rfc_leaves_out() -> None:
    root = ref_root(5)
    audit.verify_consistency(5, 5, root, root, [])
    audit.verify_consistency(0, 5, EMPTY_ROOT, root, [])
    audit.verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    for case in [
        (5, 5, root, ref_root(4), []),  # equal sizes, different roots
        (5, 5, root, root, [root]),  # equal sizes, a proof
        (0, 5, root, root, []),  # size 0 with a root that is not the empty tree's
        (0, 5, EMPTY_ROOT, root, [root]),  # size 0 with a proof
        (-1, 5, root, root, []),
        (6, 5, root, root, []),
    ]:
        with pytest.raises(AuditIntegrityError):
            audit.verify_consistency(*case)
    assert audit.consistency_proof(LEAVES, 0, 5) == []
    assert audit.consistency_proof(LEAVES, 5, 5) == []


def test_hashes_of_the_wrong_length_are_refused() -> None:
    leaf, root = LEAVES[0], ref_root(2)
    proof = audit.inclusion_proof(LEAVES, 0, 2)
    for case in [
        (leaf[:31], 0, 2, proof, root),
        (leaf, 0, 2, proof, root + b"\x00"),
        (leaf, 0, 2, [proof[0][:31]], root),
        (leaf, 0, 2, ["not bytes"], root),
    ]:
        with pytest.raises(AuditIntegrityError, match="32-byte"):
            audit.verify_inclusion(*case)  # type: ignore[arg-type]
    with pytest.raises(AuditIntegrityError, match="32-byte"):
        audit.verify_consistency(1, 2, leaf[:1], root, proof)
    with pytest.raises(AuditIntegrityError, match="32-byte"):
        audit.verify_consistency(1, 2, leaf, root[:1], proof)


@pytest.mark.parametrize(("index", "size"), [(-1, 3), (3, 3), (0, 0), (0, N + 1)], ids=str)
def test_inclusion_proof_arguments_are_checked(index: int, size: int) -> None:
    with pytest.raises(ValueError, match="index"):
        audit.inclusion_proof(LEAVES, index, size)


@pytest.mark.parametrize(("old", "new"), [(-1, 3), (4, 3), (0, N + 1)])
def test_consistency_proof_arguments_are_checked(old: int, new: int) -> None:
    with pytest.raises(ValueError, match="old_size"):
        audit.consistency_proof(LEAVES, old, new)
