"""Verifying the audit log: a whole export, or a live log one record at a time.

Export format
=============

An export is UTF-8 JSON lines, each ending with exactly one newline (LF; the last line too),
and nothing else: no blank line, no CR, nothing after the last newline::

    line 1        the header (below)
    lines 2..n+1  the n record lines, record ``seq`` on line ``seq + 2`` (``_records``)
    then          one or more checkpoint lines, in any order among themselves (``_checkpoint``)

The header is ``{"format":"ironhub-audit-export/1","origin":"<origin>","public_key":"<key>"}``
with the origin of the checkpoints and the raw Ed25519 public key in standard base64.

The header is in canonical form too (exactly as :func:`export_header` writes it). The
exporter writes at least one checkpoint covering every record; the verifier demands one.

Theory of operation (:func:`verify_export`)
===========================================

Like python-tuf's ``TrustedMetadataSet``, the verifier holds every rule and only ever sees
bytes. It reads the lines once, in order, in three states, and stops at the first problem::

    HEADER --line 1 ok--> RECORDS --a line starting {"checkpoint":--> CHECKPOINTS --end--> coverage

* HEADER: the header must parse and be canonical. Given a ``public_key``, the header must
  name that key; without one, the header's own key is used ("self-asserted": the verdict then
  proves only that the export is consistent with *some* key, whose id the report gives for
  comparison with the hub's).
* RECORDS: each line must be a valid, canonical record line whose hash matches its body, whose
  ``seq`` is its position and whose ``prev`` is the previous line's hash. A line that is not a
  record line and does not start like a checkpoint line is read as a broken record.
* CHECKPOINTS: each checkpoint must parse, be signed by the key, name the header's origin,
  cover no more records than there are, and carry the root of the records it covers.
* Finally some checkpoint must cover every record.

Because every line carries its own hash, a record is judged on its own line first: an edit in
record ``i`` is reported at ``i``, not at ``i + 1`` where the chain would break.

Where a problem is reported (``first_bad_position`` / ``line``):

* a record line that is malformed, not canonical, wrongly hashed, out of place (removed,
  inserted, swapped: the seq check) or unchained: its position and its line;
* a checkpoint covering more records than the export holds (tail truncation): position = the
  number of records present, on the checkpoint's line;
* records beyond every checkpoint, or no checkpoint at all (the checkpoints were cut off): the
  first uncovered position (0 if there is no checkpoint) and the line it is (or would be) on;
* a malformed or badly signed checkpoint, or one whose root does not match: its line, no
  position (a rewritten history cannot be pinned to one record);
* the header: line 1, no position. The header is not signed, so it is blamed when the signed
  checkpoints contradict it: a checkpoint with a valid signature but another origin, and, with
  a self-asserted key, a checkpoint whose signature fails *and* that names another key id (a
  key edited in the header; an edit to the checkpoint alone leaves one of the two right);
* a truncated last line (no final newline): that line, with the record's position if it is a
  record line.

Performance: records are read in blocks of 1024 lines by a bulk path that checks a whole block
with a handful of C-level passes (one msgspec decode and encode of the block as JSON lines,
``map`` over hashlib); only a block that fails goes through the per-line path, which finds
and words the problem. Memory: 64 bytes per record, for the roots at any checkpoint size
(``CompleteNodes``).

Exceptions raised while iterating ``lines`` (an ``OSError`` from a file) propagate: an I/O
failure is not a verdict on the log.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from itertools import chain, islice
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Final

import msgspec

from ironhub.audit._checkpoint import (
    Checkpoint,
    decode_public_key,
    encode_public_key,
    key_id,
    origin_problem,
    parse_checkpoint_line,
    signature_verifies,
    verify_checkpoint,
)
from ironhub.audit._merkle import HASH_BYTES, CompleteNodes, TreeBuilder, batch_leaf_hashes
from ironhub.audit._records import (
    BODY_OFFSET,
    DECODE_ERRORS,
    LINE_PREFIX,
    AuditRecord,
    RecordLine,
    check_body,
    check_link,
    parse_line,
    safe_message,
)
from ironhub.errors import AuditFormatError, AuditIntegrityError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["EXPORT_FORMAT", "ChainVerifier", "VerifyReport", "export_header", "verify_export"]

#: The ``format`` of the export header.
EXPORT_FORMAT: Final = "ironhub-audit-export/1"

_BLOCK_LINES: Final = 1024
_CHECKPOINT_PREFIX: Final = b'{"checkpoint":'
_NEWLINE: Final = b"\n"
_HEX_BYTES: Final = 2 * HASH_BYTES


class _Header(msgspec.Struct, frozen=True):
    format: str
    origin: str
    public_key: str


_ENCODER: Final = msgspec.json.Encoder()
_HEADER_DECODER: Final = msgspec.json.Decoder(_Header)
_LINES_DECODER: Final = msgspec.json.Decoder(RecordLine)

# Slices of a record line *with* its newline, at the offsets the canonical form fixes:
# '{"hash":"' HASH '","record":' BODY '}\n', where BODY ends with '"prev":"' PREV '"}'.
_HEAD: Final = itemgetter(slice(0, len(LINE_PREFIX)))
_HEX_HASH: Final = itemgetter(slice(len(LINE_PREFIX), len(LINE_PREFIX) + _HEX_BYTES))
_BODY: Final = itemgetter(slice(BODY_OFFSET, -2))
_PREV: Final = itemgetter(slice(-4 - _HEX_BYTES, -4))
_SEQ: Final = attrgetter("record.seq")


def export_header(origin: str, public_key: Ed25519PublicKey) -> bytes:
    """The first line of an export (without a newline).

    Args:
        origin: ``"ironhub-audit/<hub name>"``, as in the checkpoints.
        public_key: the hub's audit public key.

    Raises:
        ValidationError: a malformed origin.
    """
    problem = origin_problem(origin)
    if problem is not None:
        raise ValidationError(problem)
    header = _Header(format=EXPORT_FORMAT, origin=origin, public_key=encode_public_key(public_key))
    return _ENCODER.encode(header)


@dataclass(frozen=True)
class VerifyReport:
    """The verdict on an export.

    Attributes:
        intact: every record, checkpoint and the header verified, and a checkpoint covers
            every record. Nothing below is vouched for unless this is true.
        records: how many records verified (all of them if intact; otherwise those before
            the problem).
        checkpoints: how many checkpoints verified.
        first_bad_position: the position of the first record that is wrong or missing, when
            the problem can be pinned to one (see the module docstring).
        line: the 1-based line where the problem shows.
        problem: what is wrong, as a sentence; it never holds key material or secrets.
        root: the Merkle root of the ``records`` records that verified; ``None`` if the
            header did not.
        origin: the export's origin, once the header has been read.
        key_id: the id of the key the checkpoints were checked against (given, or taken from
            the header: compare it with the hub's when no key was given).
    """

    intact: bool
    records: int
    checkpoints: int
    first_bad_position: int | None
    line: int | None
    problem: str | None
    root: bytes | None
    origin: str | None = None
    key_id: str | None = None


@dataclass(frozen=True)
class _Trust:
    """What the header established."""

    origin: str
    key: Ed25519PublicKey
    key_id: str
    self_asserted: bool


def _content(raw: bytes, *, line: int, position: int | None) -> bytes:
    """A line without its newline.

    Raises:
        AuditFormatError: it has no newline at its end (the export was cut short).
    """
    if not raw.endswith(_NEWLINE):
        raise AuditFormatError(
            f"line {line} does not end with a newline: the export is truncated",
            position=position,
            line=line,
        )
    return raw[:-1]


def _canonical_block(block: list[bytes]) -> list[RecordLine] | None:
    """Decode a block of record lines in one go, if it is canonical line for line."""
    data = b"".join(block)
    try:
        decoded = _LINES_DECODER.decode_lines(data)
    except DECODE_ERRORS:
        return None
    if len(decoded) != len(block) or _ENCODER.encode_lines(decoded) != data:
        return None
    return decoded


def _verify_block_fast(block: list[bytes], start: int, prev: bytes) -> list[bytes] | None:
    """Check a block of record lines in bulk; their hashes, or ``None`` if anything is off.

    The caller has checked that every line starts with ``{"hash":"``. This path accepts
    exactly what the per-line path accepts:

    * the block decodes as newline-delimited :class:`~ironhub.audit._records.RecordLine`
      values (whose schema checks every field, actor kinds and outcomes included), as many
      as there are lines, and re-encodes, each value followed by one newline, to exactly the
      same bytes: so the block is canonical record lines, each ending with its only newline;
    * each line given starts with ``{"hash":"``, which in canonical JSON can only open a
      record line (quotes inside strings are escaped), so the lines given and the lines
      decoded coincide;
    * the hash and ``prev`` strings hold 64 characters (the schema) and must equal 64-byte
      lowercase hex (below), so they sit at their fixed offsets, and so does the body;
    * then each line's hash must be the hash of its body, each ``prev`` the hash before it,
      and each ``seq`` its position.

    Raises:
        Nothing: ``None`` sends the block to the per-line path.
    """
    decoded = _canonical_block(block)
    if decoded is None:
        return None
    hashes = batch_leaf_hashes(list(map(_BODY, block)))
    claimed = b"".join(map(_HEX_HASH, block))
    if (
        binascii.hexlify(b"".join(hashes)) != claimed
        or b"".join(map(_PREV, block)) != prev.hex().encode() + claimed[:-_HEX_BYTES]
        or list(map(_SEQ, decoded)) != list(range(start, start + len(block)))
    ):
        return None
    return hashes


class _ExportVerification:
    """The state of one :func:`verify_export` run (see the module docstring)."""

    def __init__(self, public_key: Ed25519PublicKey | None) -> None:
        self._given_key = public_key
        self._trust: _Trust | None = None
        self._nodes = CompleteNodes()
        self._prev = bytes(HASH_BYTES)
        self._checkpoints = 0
        self._covered = 0

    @property
    def _records(self) -> int:
        return self._nodes.size

    def report(self, error: AuditIntegrityError | None) -> VerifyReport:
        trust = self._trust
        return VerifyReport(
            intact=error is None,
            records=self._records,
            checkpoints=self._checkpoints,
            first_bad_position=None if error is None else error.position,
            line=None if error is None else error.line,
            problem=None if error is None else str(error),
            root=None if trust is None else self._nodes.root(self._records),
            origin=None if trust is None else trust.origin,
            key_id=None if trust is None else trust.key_id,
        )

    def run(self, lines: Iterator[bytes]) -> None:
        """Verify the export; return if intact.

        Raises:
            AuditIntegrityError: the first problem, with its position and line.
        """
        first = next(lines, None)
        if first is None:
            raise AuditFormatError("the export is empty: it has no header", line=1)
        trust = self._read_header(_content(first, line=1, position=None))
        self._trust = trust
        while block := list(islice(lines, _BLOCK_LINES)):
            records = len(block)
            if b"".join(map(_HEAD, block)) != LINE_PREFIX * records:
                records = list(map(LINE_PREFIX.__eq__, map(_HEAD, block))).index(False)
            if records:
                self._read_records(block if records == len(block) else block[:records])
            if records < len(block):
                head = block[records]
                if not head.startswith(_CHECKPOINT_PREFIX):
                    line = self._records + 2
                    _content(head, line=line, position=self._records)
                    raise AuditFormatError(
                        f"line {line} is neither a record nor a checkpoint",
                        position=self._records,
                        line=line,
                    )
                self._read_checkpoints(chain(block[records:], lines), trust)
                break
        self._check_coverage()

    def _read_header(self, content: bytes) -> _Trust:
        try:
            header = _HEADER_DECODER.decode(content)
        except DECODE_ERRORS as exc:
            raise AuditFormatError(
                f"line 1: the header is malformed: {safe_message(exc)}", line=1
            ) from None
        problem = None
        if _ENCODER.encode(header) != content:
            problem = "the header is not in canonical form"
        elif header.format != EXPORT_FORMAT:
            problem = f"the header is not of the format {EXPORT_FORMAT}"
        else:
            problem = origin_problem(header.origin)
        if problem is not None:
            raise AuditFormatError(f"line 1: {problem}", line=1)
        try:
            key = decode_public_key(header.public_key)
        except AuditFormatError as exc:
            raise AuditFormatError(f"line 1: {exc}", line=1) from None
        given = self._given_key
        if given is not None and encode_public_key(given) != header.public_key:
            raise AuditIntegrityError(
                f"line 1: the export's header names the key {key_id(key)}, "
                f"not the expected key {key_id(given)}",
                line=1,
            )
        return _Trust(
            origin=header.origin, key=key, key_id=key_id(key), self_asserted=given is None
        )

    def _accept(self, hashes: list[bytes]) -> None:
        self._nodes.extend(hashes)
        self._prev = hashes[-1]

    def _read_records(self, block: list[bytes]) -> None:
        hashes = _verify_block_fast(block, self._records, self._prev)
        if hashes is None:
            self._read_records_slowly(block)
        else:
            self._accept(hashes)

    def _read_records_slowly(self, block: list[bytes]) -> None:
        # The bulk path refuses exactly what this path refuses, so this loop always stops at a
        # bad line; if it ever did not, every line passed the per-line rules and is accepted.
        for raw in block:  # pragma: no branch
            position = self._records
            line = position + 2
            content = _content(raw, line=line, position=position)
            try:
                hash_, record, _ = parse_line(content)
                check_link(record, position, self._prev.hex())
            except AuditIntegrityError as exc:
                raise type(exc)(
                    f"line {line} (record {position}): {exc}", position=position, line=line
                ) from None
            self._accept([hash_])

    def _read_checkpoints(self, lines: Iterable[bytes], trust: _Trust) -> None:
        line = self._records + 2
        for raw in lines:
            content = _content(raw, line=line, position=None)
            try:
                checkpoint = parse_checkpoint_line(content)
            except AuditFormatError as exc:
                raise AuditFormatError(f"line {line}: {exc}", line=line) from None
            self._check_checkpoint(checkpoint, line, trust)
            line += 1

    def _check_checkpoint(self, checkpoint: Checkpoint, line: int, trust: _Trust) -> None:
        signed = signature_verifies(checkpoint, trust.key)
        named = checkpoint.key_id == trust.key_id
        if not signed and not named and trust.self_asserted:
            raise AuditIntegrityError(
                f"line 1: the key in the header ({trust.key_id}) did not sign the checkpoint "
                f"on line {line}, which names the key {checkpoint.key_id}: the header's key "
                "was replaced, or the checkpoint is foreign",
                line=1,
            )
        if not signed:
            raise AuditIntegrityError(
                f"line {line}: the checkpoint's signature does not verify with the key "
                f"{trust.key_id}",
                line=line,
            )
        if not named:
            raise AuditIntegrityError(
                f"line {line}: the checkpoint names the key {checkpoint.key_id}, "
                f"but the key {trust.key_id} signed it",
                line=line,
            )
        if checkpoint.origin != trust.origin:
            raise AuditIntegrityError(
                f"line 1: the header's origin is not {checkpoint.origin}, the origin signed "
                f"in the checkpoint on line {line}",
                line=1,
            )
        if checkpoint.tree_size > self._records:
            raise AuditIntegrityError(
                f"line {line}: the checkpoint covers {checkpoint.tree_size} records but the "
                f"export holds {self._records}: records from position {self._records} on "
                "are missing",
                position=self._records,
                line=line,
            )
        if self._nodes.root(checkpoint.tree_size).hex() != checkpoint.root:
            raise AuditIntegrityError(
                f"line {line}: the first {checkpoint.tree_size} records do not have the root "
                "this checkpoint signs: records were altered, removed, inserted or rewritten",
                line=line,
            )
        self._checkpoints += 1
        self._covered = max(self._covered, checkpoint.tree_size)

    def _check_coverage(self) -> None:
        if self._checkpoints and self._covered == self._records:
            return
        position = self._covered
        line = position + 2
        if not self._checkpoints:
            problem = (
                f"line {line}: the export has no checkpoint, so nothing vouches for its "
                "records: it was truncated, or never signed"
            )
        else:
            problem = (
                f"line {line}: no checkpoint covers the records from position {position} on: "
                "they were appended, or the last checkpoint was cut off"
            )
        raise AuditIntegrityError(problem, position=position, line=line)


def verify_export(
    lines: Iterable[bytes], public_key: Ed25519PublicKey | None = None
) -> VerifyReport:
    """Verify an audit export (see the module docstring for the rules).

    Args:
        lines: the export's lines, each *with* its newline, as iterating a file opened in
            binary mode yields them (or ``data.splitlines(keepends=True)``).
        public_key: the hub's audit public key from a trusted source. ``None`` uses the key
            in the export's header, which only proves the export consistent with itself; the
            report's ``key_id`` is then the one to compare with the hub's.

    Returns:
        The verdict. Every problem of the export is reported in it, never raised.

    Raises:
        Nothing of its own; an exception from iterating ``lines`` (an ``OSError`` reading a
        file) propagates, as an I/O failure is not a verdict.
    """
    verification = _ExportVerification(public_key)
    try:
        verification.run(iter(lines))
    except AuditIntegrityError as exc:
        return verification.report(exc)
    return verification.report(None)


class ChainVerifier:
    """Verifies a log record by record, as the audit service reads it back or appends to it.

    It holds the next position, the last hash and a :class:`~ironhub.audit.TreeBuilder` (O(log
    n) memory), so :attr:`size` and :attr:`last_hash` are what the next record's ``seq`` and
    ``prev`` must be.
    """

    __slots__ = ("_last", "_origin", "_tree")

    def __init__(self, *, origin: str | None = None) -> None:
        """Start at the empty log.

        Args:
            origin: when given, checkpoints must carry this origin.
        """
        self._origin = origin
        self._tree = TreeBuilder()
        self._last = bytes(HASH_BYTES)

    @property
    def size(self) -> int:
        """How many records were fed: the ``seq`` of the next one."""
        return self._tree.size

    @property
    def last_hash(self) -> bytes:
        """The hash of the last record fed (32 zero bytes, the genesis ``prev``, if none)."""
        return self._last

    def root(self) -> bytes:
        """The Merkle root of the records fed.

        Raises:
            Nothing.
        """
        return self._tree.root()

    def feed(self, hash: bytes, body: bytes) -> AuditRecord:  # noqa: A002 - the documented name
        """Check the next record, as stored: its hash and its canonical body.

        Args:
            hash: the stored 32-byte hash.
            body: the stored canonical body.

        Returns:
            The decoded record.

        Raises:
            AuditFormatError: the body is not a canonical, valid record.
            AuditIntegrityError: the hash does not match, the seq is not :attr:`size`, or prev
                is not :attr:`last_hash`. ``position`` is :attr:`size`. The verifier is left
                unchanged.
        """
        position = self.size
        try:
            record = check_body(hash, body)
            check_link(record, position, self._last.hex())
        except AuditIntegrityError as exc:
            raise type(exc)(f"record {position}: {exc}", position=position) from None
        self._tree.append(hash)
        self._last = hash
        return record

    def check_checkpoint(self, checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> None:
        """Check that ``checkpoint`` is signed by ``public_key`` and matches the records fed.

        Feed exactly ``checkpoint.tree_size`` records first: the verifier keeps only the
        current root.

        Raises:
            AuditFormatError: a malformed checkpoint.
            AuditIntegrityError: a bad signature or key id, another origin, more records than
                were fed (``position`` = :attr:`size`: the records from there are missing), or
                a root that does not match.
            ValueError: fewer records than were fed (check it earlier; a bug in the caller).
        """
        verify_checkpoint(checkpoint, public_key)
        if self._origin is not None and checkpoint.origin != self._origin:
            raise AuditIntegrityError(
                f"the checkpoint is for the origin {checkpoint.origin}, not {self._origin}"
            )
        size = self.size
        if checkpoint.tree_size > size:
            raise AuditIntegrityError(
                f"the checkpoint covers {checkpoint.tree_size} records but there are {size}: "
                f"records from position {size} on are missing",
                position=size,
            )
        if checkpoint.tree_size < size:
            raise ValueError("check a checkpoint right after feeding its tree_size records")
        if self._tree.root().hex() != checkpoint.root:
            raise AuditIntegrityError(
                "the records do not have the root the checkpoint signs: "
                "records were altered, removed, inserted or rewritten"
            )
