"""The Merkle tree of RFC 9162 §2.1 over the audit records, with its proofs.

Every record's hash is the RFC 9162 leaf hash of its canonical body (``_records``), so record
``seq`` is leaf ``seq`` and a checkpoint's root is the Merkle Tree Hash (MTH, §2.1.1) of the
first ``tree_size`` records. From a signed root, an auditor can check that one record is in the
log (an inclusion proof, §2.1.3) and that a later root extends an earlier one without
rewriting history (a consistency proof, §2.1.4), without seeing the other records.

Hashing is SHA-256 with the RFC's domain separation: a leaf is ``SHA-256(0x00 || data)``, an
interior node ``SHA-256(0x01 || left || right)``, and the empty tree ``SHA-256("")``, so a leaf
can never be passed off as a node.

Sizes outside the RFC's definitions, decided here:

* An inclusion proof exists for ``0 <= index < tree_size`` only.
* The RFC defines consistency proofs for ``0 < old_size < new_size``. For ``old_size ==
  new_size`` the proof is empty and the roots must be equal; for ``old_size == 0`` the proof is
  empty and the old root must be the empty tree's hash (every tree extends the empty tree, but
  a root that is not the empty tree's cannot be the root of size 0). Go's
  ``transparency-dev/merkle`` accepts the same cases without checking the size-0 root.

The verifiers follow the RFC's algorithms step by step (§2.1.3.2, §2.1.4.2), check that every
hash is 32 bytes, and raise :class:`~ironhub.errors.AuditIntegrityError` on any mismatch. The
generators take the whole list of leaf hashes, which the audit service holds, and run in O(n).
"""

from __future__ import annotations

import hashlib
from itertools import repeat
from typing import TYPE_CHECKING, Final

from ironhub.errors import AuditIntegrityError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_BYTES",
    "CompleteNodes",
    "TreeBuilder",
    "batch_leaf_hashes",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

#: Size of every hash in the tree (SHA-256).
HASH_BYTES: Final = 32

#: MTH of the empty tree (RFC 9162 §2.1.1): the hash of the empty string.
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"

_sha256 = hashlib.sha256
# Batch hashing copies a hash object already fed the domain prefix, then updates and finishes
# the copies in C-level map() loops: no prefixed copy of each input, and less of OpenSSL's
# per-call set-up (about 10 % faster than hashing prefix + data per item on Python 3.11).
_LEAF_BASE: Final = hashlib.sha256(_LEAF_PREFIX)
_NODE_BASE: Final = hashlib.sha256(_NODE_PREFIX)
_copy = type(_LEAF_BASE).copy
_update = type(_LEAF_BASE).update
_digest = type(_LEAF_BASE).digest


def leaf_hash(data: bytes) -> bytes:
    """The RFC 9162 leaf hash of ``data``: ``SHA-256(0x00 || data)``.

    Raises:
        Nothing.
    """
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 interior node hash: ``SHA-256(0x01 || left || right)``.

    Raises:
        Nothing.
    """
    return _sha256(_NODE_PREFIX + left + right).digest()


def _fold(subtree_roots: Sequence[bytes]) -> bytes:
    """The MTH of a tree given the roots of its complete subtrees, largest (leftmost) first.

    A tree of size ``n = 2^a + 2^b + ...`` (``a > b > ...``) is, by the RFC's split at the
    largest power of two below ``n``, ``H(T_a, H(T_b, ...))``: the complete subtrees folded
    from the right.
    """
    root = subtree_roots[-1]
    for node in reversed(subtree_roots[:-1]):
        root = node_hash(node, root)
    return root


def batch_leaf_hashes(data: list[bytes]) -> list[bytes]:
    """The leaf hashes of many items at once (what :func:`leaf_hash` gives one by one)."""
    hashes = list(map(_copy, repeat(_LEAF_BASE, len(data))))
    any(map(_update, hashes, data))  # update() returns None: any() just runs the loop
    return list(map(_digest, hashes))


def _pair_up(nodes: list[bytes]) -> list[bytes]:
    """The parents of nodes 0 and 1, 2 and 3, ...; an odd last node is left out."""
    hashes = list(map(_copy, repeat(_NODE_BASE, len(nodes) // 2)))
    any(map(_update, hashes, nodes[0::2]))
    any(map(_update, hashes, nodes[1::2]))
    return list(map(_digest, hashes))


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash (RFC 9162 §2.1.1) of a list of leaf hashes.

    Computed level by level, promoting an odd last node unchanged, which yields the same tree
    as the RFC's recursive split. O(n).

    Args:
        leaf_hashes: the leaf hashes (:func:`leaf_hash`), in order.

    Returns:
        The 32-byte root; :data:`EMPTY_ROOT` for no leaves.

    Raises:
        Nothing: every list of leaf hashes has a root.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        parents = _pair_up(level)
        if len(level) % 2:
            parents.append(level[-1])
        level = parents
    return level[0]


def _largest_power_of_two_below(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``): the RFC's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


class TreeBuilder:
    """Builds the Merkle tree of a growing log, one leaf at a time, in O(log n) memory.

    The state is the stack of the roots of the complete subtrees that make up the tree (one per
    set bit of the size, largest first), as in a compact range. Appending a leaf merges equal
    subtrees like a binary counter carries: amortised one node hash per leaf. :meth:`root` folds
    the stack in O(log n).
    """

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves appended."""
        return self._size

    def append(self, leaf_hash: bytes) -> None:
        """Append the leaf hash of the next record.

        Raises:
            ValueError: ``leaf_hash`` is not 32 bytes (a bug in the caller).
        """
        if len(leaf_hash) != HASH_BYTES:
            raise ValueError("a leaf hash is 32 bytes")
        node = leaf_hash
        size = self._size
        while size & 1:
            node = node_hash(self._stack.pop(), node)
            size >>= 1
        self._stack.append(node)
        self._size += 1

    def root(self) -> bytes:
        """The Merkle Tree Hash of the leaves appended so far (:data:`EMPTY_ROOT` if none).

        Raises:
            Nothing.
        """
        return _fold(self._stack) if self._stack else EMPTY_ROOT


class CompleteNodes:
    """Every complete subtree root of a growing tree, for the root at any earlier size.

    Used by the export verifier, which meets the checkpoints only after all the records and
    must then compute the root at each checkpoint's size. Level ``j`` holds, packed as 32-byte
    hashes, the roots of the complete subtrees of ``2^j`` leaves, left to right: about 64 bytes
    per leaf in all. Leaves are added in batches; pairing is done with C-level loops.
    """

    __slots__ = ("_levels", "_pending", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._levels: list[bytearray] = []
        # Per level, the left child still waiting for its right sibling.
        self._pending: list[bytes | None] = []

    @property
    def size(self) -> int:
        """Number of leaves added."""
        return self._size

    def extend(self, leaf_hashes: list[bytes]) -> None:
        """Add the next leaf hashes (each 32 bytes, checked by the caller).

        Raises:
            Nothing.
        """
        self._size += len(leaf_hashes)
        nodes = leaf_hashes
        level = 0
        while nodes:
            if level == len(self._levels):
                self._levels.append(bytearray())
                self._pending.append(None)
            self._levels[level] += b"".join(nodes)
            pending = self._pending[level]
            if pending is not None:
                nodes = [pending, *nodes]
            self._pending[level] = nodes[-1] if len(nodes) % 2 else None
            nodes = _pair_up(nodes)
            level += 1

    def root(self, size: int) -> bytes:
        """The Merkle Tree Hash of the first ``size`` leaves.

        Raises:
            ValueError: ``size`` is negative or larger than the number of leaves added.
        """
        if not 0 <= size <= self._size:
            raise ValueError("size out of range")
        if size == 0:
            return EMPTY_ROOT
        roots = []
        start = 0
        for level in reversed(range(size.bit_length())):
            if size >> level & 1:
                offset = (start >> level) * HASH_BYTES
                roots.append(bytes(self._levels[level][offset : offset + HASH_BYTES]))
                start += 1 << level
        return _fold(roots)


def _subtree_root(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    return root_hash(leaf_hashes[start:end])


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, tree_size: int) -> list[bytes]:
    """The inclusion proof of leaf ``index`` in the tree of the first ``tree_size`` leaves.

    RFC 9162 §2.1.3.1: ``PATH(m, D[n])``, the siblings on the way from the leaf to the root,
    bottom up. O(tree_size): the subtrees whose roots are in the path are disjoint.

    Args:
        leaf_hashes: all leaf hashes the caller holds (at least ``tree_size``).
        index: the leaf's position.
        tree_size: the size of the tree the proof is for.

    Returns:
        The audit path, a list of 32-byte hashes.

    Raises:
        ValueError: not ``0 <= index < tree_size <= len(leaf_hashes)``.
    """
    if not 0 <= index < tree_size <= len(leaf_hashes):
        raise ValueError("need 0 <= index < tree_size <= number of leaves")
    path: list[bytes] = []
    start, end = 0, tree_size
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if index - start < k:
            path.append(_subtree_root(leaf_hashes, start + k, end))
            end = start + k
        else:
            path.append(_subtree_root(leaf_hashes, start, start + k))
            start += k
    path.reverse()
    return path


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """The proof that the tree of ``new_size`` leaves extends the tree of ``old_size`` leaves.

    RFC 9162 §2.1.4.1: ``PROOF(m, D[n]) = SUBPROOF(m, D[n], true)``; empty when ``old_size`` is
    0 or equals ``new_size`` (see the module docstring). O(new_size).

    Args:
        leaf_hashes: all leaf hashes the caller holds (at least ``new_size``).
        old_size: size of the earlier tree.
        new_size: size of the later tree.

    Returns:
        The consistency proof, a list of 32-byte hashes.

    Raises:
        ValueError: not ``0 <= old_size <= new_size <= len(leaf_hashes)``.
    """
    if not 0 <= old_size <= new_size <= len(leaf_hashes):
        raise ValueError("need 0 <= old_size <= new_size <= number of leaves")
    if old_size in {0, new_size}:
        return []
    proof: list[bytes] = []
    # SUBPROOF(m, D[start:end], b), unrolled: each step descends into one half and records the
    # root of the other, so the proof is built top down and reversed at the end.
    m, start, end, whole = old_size, 0, new_size, True
    while m != end - start:
        k = _largest_power_of_two_below(end - start)
        if m <= k:
            proof.append(_subtree_root(leaf_hashes, start + k, end))
            end = start + k
        else:
            proof.append(_subtree_root(leaf_hashes, start, start + k))
            m -= k
            start += k
            whole = False
    if not whole:
        proof.append(_subtree_root(leaf_hashes, start, end))
    proof.reverse()
    return proof


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_BYTES:
        raise AuditIntegrityError(f"{what} is not a 32-byte hash")


def _check_proof(proof: Sequence[bytes]) -> None:
    for element in proof:
        _check_hash(element, "a proof element")


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of size ``tree_size`` with ``root``.

    RFC 9162 §2.1.3.2, step by step.

    Args:
        leaf_hash: the leaf hash of the record (:func:`leaf_hash` of its body).
        index: the record's position.
        tree_size: the size of the tree whose root is ``root``.
        proof: the inclusion proof (:func:`inclusion_proof`).
        root: the trusted root, e.g. from a verified checkpoint.

    Raises:
        AuditIntegrityError: the proof does not prove it (wrong index, size, leaf, root or proof
            element, a proof too long or too short, a hash that is not 32 bytes).
    """
    _check_hash(leaf_hash, "the leaf hash")
    _check_hash(root, "the root")
    _check_proof(proof)
    if not 0 <= index < tree_size:
        raise AuditIntegrityError("inclusion proof: the index is not below the tree size")
    fn, sn = index, tree_size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise AuditIntegrityError("inclusion proof: too many elements")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise AuditIntegrityError("inclusion proof: too few elements")
    if r != root:
        raise AuditIntegrityError("inclusion proof: the computed root does not match")


def _verify_trivial_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """The sizes the RFC leaves out: equal sizes, and the empty old tree.

    Raises:
        AuditIntegrityError: the roots or the proof do not fit those sizes.
    """
    if old_size == new_size:
        if proof or old_root != new_root:
            raise AuditIntegrityError("consistency proof: equal sizes need equal roots, no proof")
    elif proof or old_root != EMPTY_ROOT:
        raise AuditIntegrityError(
            "consistency proof: size 0 needs the empty tree's root and no proof"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree ``(new_size, new_root)`` extends the tree ``(old_size, old_root)``.

    RFC 9162 §2.1.4.2 step by step for ``0 < old_size < new_size``; the other sizes as the
    module docstring says.

    Args:
        old_size: size of the earlier tree.
        new_size: size of the later tree.
        old_root: root of the earlier tree.
        new_root: root of the later tree.
        proof: the consistency proof (:func:`consistency_proof`).

    Raises:
        AuditIntegrityError: the proof does not prove it (sizes in the wrong order, a wrong
            root or proof element, a proof too long or too short, a hash that is not 32 bytes).
    """
    _check_hash(old_root, "the old root")
    _check_hash(new_root, "the new root")
    _check_proof(proof)
    if not 0 <= old_size <= new_size:
        raise AuditIntegrityError("consistency proof: need 0 <= old size <= new size")
    if old_size in {0, new_size}:
        _verify_trivial_consistency(old_size, new_size, old_root, new_root, proof)
        return
    fr, sr = _consistency_roots(old_size, new_size, old_root, proof)
    if fr != old_root or sr != new_root:
        raise AuditIntegrityError("consistency proof: the computed roots do not match")


def _consistency_roots(
    old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """RFC 9162 §2.1.4.2 steps 1 to 7 for ``0 < old_size < new_size``: the two roots.

    Raises:
        AuditIntegrityError: the proof is empty, too long or too short.
    """
    # Step 1.
    if not proof:
        raise AuditIntegrityError("consistency proof: empty")
    path = list(proof)
    # Step 2.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # Steps 3 and 4.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5.
    fr = sr = path[0]
    # Step 6.
    for c in path[1:]:
        if sn == 0:
            raise AuditIntegrityError("consistency proof: too many elements")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # Step 7 (the root comparison is the caller's).
    if sn != 0:
        raise AuditIntegrityError("consistency proof: too few elements")
    return fr, sr
