"""Audit records: their canonical body, their hash, and the line that carries both.

A record is a :class:`AuditRecord`. Its *body* is ``msgspec.json.encode(record)``: compact
JSON with the fields in declaration order, floats in shortest round-trip form, strings as
UTF-8 with only the quote, the backslash and control characters escaped. That encoding is the
canonical form: a parser accepts a body only if re-encoding the decoded record gives back the
same bytes, so a record has exactly one spelling and its hash is a function of its content.

The record's hash is the RFC 9162 leaf hash of its body, ``SHA-256(0x00 || body)``, so the
hash chain (each record's ``prev`` is the previous record's hash) and the Merkle tree of the
checkpoints share one hash per record. A record line, as stored and exported, is::

    {"hash":"<64 lowercase hex>","record":<body>}

Every byte of it sits at a fixed offset from the start (the hash, the body from byte 84) or
from the end (``prev`` is the last field), which the export verifier's bulk path relies on.

Field rules, decided here and enforced when building and when parsing:

* ``seq`` is ``0 <= seq < 2^63``; ``time`` a finite float ``>= 0`` (seconds since the epoch,
  passed in: this package reads no clock); an int ``time`` given to :func:`build_record` is
  converted to float (``5`` would otherwise encode as ``5`` and parse back as ``5.0``).
* ``actor_kind`` is in :data:`ACTOR_KINDS`, ``outcome`` in :data:`OUTCOMES`.
* The other strings hold 1 to :data:`MAX_FIELD_CHARS` characters (``"-"`` stands for
  nothing). Any Unicode text is allowed, control characters included (JSON escapes them, so no
  field can break a line); refusing them would let whoever controls, say, a user name in a
  failed login keep that event out of the log. Displaying fields safely is the reader's job.
  Lone surrogates cannot be encoded and are refused.
* ``prev`` is 64 lowercase hex digits, :data:`GENESIS` for record 0.

Callers must truncate long values themselves (a truncated value is better than a missing
event) and must never put a secret in any field.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal, get_args

import msgspec

from ironhub.audit._merkle import HASH_BYTES, leaf_hash
from ironhub.errors import AuditFormatError, AuditIntegrityError, ValidationError

__all__ = [
    "ACTOR_KINDS",
    "BODY_OFFSET",
    "DECODE_ERRORS",
    "GENESIS",
    "LINE_MIDDLE",
    "LINE_PREFIX",
    "MAX_FIELD_CHARS",
    "MAX_SEQ",
    "OUTCOMES",
    "AuditRecord",
    "BulkRecord",
    "RecordLine",
    "build_record",
    "check_body",
    "check_link",
    "encode_record",
    "parse_line",
    "record_hash",
    "record_line",
    "safe_message",
]

#: ``prev`` of record 0.
GENESIS: Final = "0" * 64

_ActorKind = Literal["operator", "device", "hub"]
_Outcome = Literal["ok", "refused", "failed"]

#: Who acts: an operator (or API token), a device, or the hub itself.
ACTOR_KINDS: Final = frozenset(get_args(_ActorKind))

#: How it ended.
OUTCOMES: Final = frozenset(get_args(_Outcome))

#: Most characters in one string field.
MAX_FIELD_CHARS: Final = 1024

#: Largest ``seq`` (and checkpoint tree size): SQLite's largest integer.
MAX_SEQ: Final = 2**63 - 1

_Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
_Time = Annotated[float, msgspec.Meta(ge=0)]
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_FIELD_CHARS)]
_Hex64 = Annotated[str, msgspec.Meta(min_length=64, max_length=64)]


class AuditRecord(msgspec.Struct, frozen=True, gc=False):
    """One event of the audit log. The field order is the canonical order of the body.

    Attributes:
        seq: the position in the log, from 0; also the record's Merkle leaf index.
        time: seconds since the epoch.
        actor_kind: ``"operator"``, ``"device"`` or ``"hub"``.
        actor: operator or token name, device identity, or ``"hub"``.
        action: what was done, e.g. ``"device-create"``, ``"operator-login"``.
        target: what it was done to (``"-"`` if nothing).
        outcome: ``"ok"``, ``"refused"`` or ``"failed"``.
        source: source address (``"-"`` if none).
        reason: short machine-readable reason (``"-"`` if none); never a secret.
        prev: lowercase hex hash of record ``seq - 1``; :data:`GENESIS` for record 0.
    """

    seq: _Seq
    time: _Time
    actor_kind: _Text
    actor: _Text
    action: _Text
    target: _Text
    outcome: _Text
    source: _Text
    reason: _Text
    prev: _Hex64


class BulkRecord(msgspec.Struct, frozen=True, gc=False):
    """:class:`AuditRecord`'s twin for bulk decoding: the same fields in the same order.

    The actor kind and outcome are literals, which msgspec checks in C while decoding (faster
    than decoding strings and checking them afterwards). It encodes exactly like
    :class:`AuditRecord`; a test keeps the two in step.
    """

    seq: _Seq
    time: _Time
    actor_kind: _ActorKind
    actor: _Text
    action: _Text
    target: _Text
    outcome: _Outcome
    source: _Text
    reason: _Text
    prev: _Hex64


class RecordLine(msgspec.Struct, frozen=True, gc=False):
    """A record line as JSON: the schema the export verifier decodes in bulk."""

    hash: _Hex64
    record: BulkRecord


#: A record line starts with these bytes, then the hash in hex, then :data:`LINE_MIDDLE`.
LINE_PREFIX: Final = b'{"hash":"'
LINE_MIDDLE: Final = b'","record":'
#: Where the body starts in a record line.
BODY_OFFSET: Final = len(LINE_PREFIX) + 2 * HASH_BYTES + len(LINE_MIDDLE)

_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(AuditRecord)
_LOWER_HEX_64: Final = re.compile(r"[0-9a-f]{64}")
_LOWER_HEX_64_BYTES: Final = re.compile(rb"[0-9a-f]{64}")
_MAX_MESSAGE_CHARS: Final = 200

#: What msgspec's JSON decoder raises on hostile input: malformed or mistyped JSON, invalid
#: UTF-8 inside a string, and nesting deeper than it recurses (in a skipped unknown field).
DECODE_ERRORS: Final = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def safe_message(exc: Exception) -> str:
    """A foreign exception's message, cut short and reduced to printable ASCII.

    msgspec's messages name our own fields and byte offsets, but an error read from an export
    ends up on an operator's terminal, so nothing else is let through.
    """
    text = str(exc)[:_MAX_MESSAGE_CHARS]
    return "".join(char if " " <= char <= "~" else "?" for char in text)


def encode_record(record: AuditRecord) -> bytes:
    """The canonical body of ``record``.

    Raises:
        Nothing for a record from :func:`build_record` or :func:`parse_line`.
    """
    return _ENCODER.encode(record)


def record_hash(body: bytes) -> bytes:
    """The hash of a record body: its RFC 9162 leaf hash, ``SHA-256(0x00 || body)``.

    Raises:
        Nothing.
    """
    return leaf_hash(body)


def _field_problem(record: AuditRecord) -> str | None:
    """What is wrong with a record that decoded, beyond its types and lengths, if anything."""
    if record.actor_kind not in ACTOR_KINDS:
        return "actor_kind must be one of " + ", ".join(sorted(ACTOR_KINDS))
    if record.outcome not in OUTCOMES:
        return "outcome must be one of " + ", ".join(sorted(OUTCOMES))
    if not _LOWER_HEX_64.fullmatch(record.prev):
        return "prev must be 64 lowercase hex digits"
    if record.seq == 0 and record.prev != GENESIS:
        return "record 0 must have the genesis prev (64 zeros)"
    return None


def build_record(
    *,
    seq: int,
    time: float,
    actor_kind: str,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    source: str,
    reason: str,
    prev: bytes,
) -> tuple[AuditRecord, bytes, bytes]:
    """Build and validate the next record of the log.

    Args:
        seq: its position (the number of records before it).
        time: seconds since the epoch, from the caller's clock.
        actor_kind: one of :data:`ACTOR_KINDS`.
        actor: who acted.
        action: what was done.
        target: what it was done to, or ``"-"``.
        outcome: one of :data:`OUTCOMES`.
        source: the source address, or ``"-"``.
        reason: a short machine reason, or ``"-"``; never a secret.
        prev: the 32-byte hash of record ``seq - 1``; 32 zero bytes for record 0.

    Returns:
        ``(record, body, hash)``: the record, its canonical body and its hash.

    Raises:
        ValidationError: a field breaks the rules in the module docstring (too long, empty,
            of the wrong type, an unknown actor kind or outcome, a lone surrogate...).
    """
    if not isinstance(prev, bytes) or len(prev) != HASH_BYTES:
        raise ValidationError("prev must be the 32-byte hash of the previous record")
    if isinstance(time, bool) or not isinstance(time, int | float):
        raise ValidationError("time must be a number of seconds since the epoch")
    draft = AuditRecord(
        seq=seq,
        time=float(time),
        actor_kind=actor_kind,
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        source=source,
        reason=reason,
        prev=prev.hex(),
    )
    # msgspec validates on decoding only, so the draft is encoded and decoded again: one set of
    # rules (the struct's) for records built here and records read back. Decoding also turns
    # str subclasses into plain str and refuses NaN and infinities (they encode as null).
    try:
        record = _DECODER.decode(_ENCODER.encode(draft))
    except (
        msgspec.MsgspecError,
        UnicodeEncodeError,
        TypeError,
        OverflowError,
        RecursionError,
    ) as exc:
        raise ValidationError(f"invalid audit record: {safe_message(exc)}") from None
    problem = _field_problem(record)
    if problem is not None:
        raise ValidationError(f"invalid audit record: {problem}")
    body = _ENCODER.encode(record)
    return record, body, record_hash(body)


def record_line(body: bytes, hash: bytes) -> bytes:  # noqa: A002 - the name the API documents
    """The line that stores and exports a record (without a newline).

    Args:
        body: the canonical body, from :func:`build_record`.
        hash: its hash, from :func:`build_record`.

    Raises:
        ValueError: ``hash`` is not 32 bytes (a bug in the caller).
    """
    if len(hash) != HASH_BYTES:
        raise ValueError("a record hash is 32 bytes")
    return LINE_PREFIX + hash.hex().encode() + LINE_MIDDLE + body + b"}"


def check_body(hash: bytes, body: bytes) -> AuditRecord:  # noqa: A002 - as in record_line
    """Decode a record body and check it is canonical, valid, and hashes to ``hash``.

    Raises:
        AuditFormatError: the body is not a canonical, valid record.
        AuditIntegrityError: the body does not hash to ``hash``.
    """
    try:
        record = _DECODER.decode(body)
    except DECODE_ERRORS as exc:
        raise AuditFormatError(f"the record is malformed: {safe_message(exc)}") from None
    if _ENCODER.encode(record) != body:
        raise AuditFormatError(
            "the record is not in canonical form (fields, spacing, number or string spelling)"
        )
    problem = _field_problem(record)
    if problem is not None:
        raise AuditFormatError(f"the record is malformed: {problem}")
    if record_hash(body) != hash:
        raise AuditIntegrityError("the record's hash does not match its content")
    return record


def check_link(record: AuditRecord, position: int, prev: str) -> None:
    """Check that ``record`` is the record at ``position`` and chains to the one before.

    Args:
        record: a record that passed :func:`check_body`.
        position: where it was found.
        prev: the hex hash of the record before it (:data:`GENESIS` at position 0).

    Raises:
        AuditIntegrityError: the seq is not the position (records missing, inserted or
            reordered), or prev is not the previous record's hash.
    """
    if record.seq != position:
        raise AuditIntegrityError(
            f"position {position} holds the record with seq {record.seq}: "
            "records were removed, inserted or reordered"
        )
    if record.prev != prev:
        raise AuditIntegrityError(
            f"record {position} does not chain to the record before it "
            "(its prev is not that record's hash)"
        )


def parse_line(line: bytes) -> tuple[bytes, AuditRecord, bytes]:
    """Parse and check one record line (without its newline).

    Strict: the exact prefix, 64 lowercase hex digits, a body that decodes to a valid
    :class:`AuditRecord` and is canonical, and a hash that matches the body.

    Args:
        line: the line.

    Returns:
        ``(hash, record, body)``, the hash as 32 raw bytes.

    Raises:
        AuditFormatError: the line or its body is malformed or not canonical; the message
            names what is wrong.
        AuditIntegrityError: the hash does not match the body.
    """
    if not line.startswith(LINE_PREFIX):
        raise AuditFormatError('not a record line (it must start with {"hash":")')
    hex_hash = line[len(LINE_PREFIX) : len(LINE_PREFIX) + 2 * HASH_BYTES]
    if not _LOWER_HEX_64_BYTES.fullmatch(hex_hash):
        raise AuditFormatError("the record line's hash is not 64 lowercase hex digits")
    if line[BODY_OFFSET - len(LINE_MIDDLE) : BODY_OFFSET] != LINE_MIDDLE:
        raise AuditFormatError('the record line has no ,"record": after its hash')
    if not line.endswith(b"}"):
        raise AuditFormatError("the record line does not end with }")
    body = line[BODY_OFFSET:-1]
    hash_ = bytes.fromhex(hex_hash.decode())
    return hash_, check_body(hash_, body), body
