"""Signed checkpoints: the hub's Ed25519 signature over the size and root of its log.

A checkpoint says "the first ``tree_size`` records of the log of ``origin`` have the Merkle
root ``root``", signed by the hub's audit key. The hash chain alone proves nothing to someone
who can rewrite the whole file; the signature is what an attacker without the key cannot
forge, so truncation, rewriting and forking all show as a checkpoint that no longer matches.

The signed message follows the C2SP ``tlog-checkpoint`` note body (origin line, decimal tree
size, standard base64 root hash, then extension lines), with the time as one extension line::

    ironhub-audit/<hub name>
    <tree size>
    <base64 of the 32-byte root>
    time <milliseconds since the epoch>

each line ending with a newline. Decisions made here:

* ``origin`` is ``ironhub-audit/`` followed by 1 to 255 printable ASCII characters other than
  space, so it can never contain the newline that separates the note's lines.
* The note carries the time in whole milliseconds (at most 2^53 of them, which floats hold
  exactly), so :func:`sign_checkpoint` rounds ``time``
  to the millisecond and a checkpoint whose ``time`` is not a whole number of milliseconds is
  malformed. Otherwise two checkpoint times could share one signature, and an edited ``time``
  might still verify.
* ``signature`` and the header's key are *canonical* standard base64 (padded, and with the
  unused low bits of the last character zero): Python's decoder ignores those bits, which
  would again give one signature several spellings.
* ``key_id`` (the first 16 hex digits of SHA-256 of the raw public key) is a hint, outside the
  signed note, that tells which key to try; it must match the key, and the signature decides.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from typing import Final

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ironhub.audit._merkle import HASH_BYTES
from ironhub.audit._records import DECODE_ERRORS, MAX_SEQ, safe_message
from ironhub.errors import AuditFormatError, AuditIntegrityError, ValidationError

__all__ = [
    "ORIGIN_PREFIX",
    "Checkpoint",
    "checkpoint_line",
    "decode_public_key",
    "encode_public_key",
    "key_id",
    "origin_problem",
    "parse_checkpoint_line",
    "sign_checkpoint",
    "signature_verifies",
    "signed_note",
    "verify_checkpoint",
]

#: Every origin starts with this.
ORIGIN_PREFIX: Final = "ironhub-audit/"

_ORIGIN: Final = re.compile(r"ironhub-audit/[!-~]{1,255}")
_LOWER_HEX_64: Final = re.compile(r"[0-9a-f]{64}")
_KEY_ID: Final = re.compile(r"[0-9a-f]{16}")
_SIGNATURE_BYTES: Final = 64
_PUBLIC_KEY_BYTES: Final = 32
_LINE_PREFIX: Final = b'{"checkpoint":'
#: Latest time a checkpoint may carry: whole milliseconds stay exact in a float up to 2^53.
_MAX_TIME: Final = 2**53 / 1000
_ENCODER: Final = msgspec.json.Encoder()


class Checkpoint(msgspec.Struct, frozen=True):
    """A signed statement of the log's size and Merkle root.

    Attributes:
        origin: ``"ironhub-audit/<hub name>"``.
        tree_size: how many records the root covers.
        root: the Merkle root of those records, lowercase hex.
        time: when it was signed, seconds since the epoch, a whole number of milliseconds.
        key_id: :func:`key_id` of the signing key.
        signature: the Ed25519 signature over :func:`signed_note`, standard base64.
    """

    origin: str
    tree_size: int
    root: str
    time: float
    key_id: str
    signature: str


class _CheckpointLine(msgspec.Struct, frozen=True):
    checkpoint: Checkpoint


_LINE_DECODER: Final = msgspec.json.Decoder(_CheckpointLine)


def origin_problem(origin: object) -> str | None:
    """What is wrong with an origin, or ``None`` if it is well formed."""
    if not isinstance(origin, str) or not _ORIGIN.fullmatch(origin):
        return (
            f"the origin must be {ORIGIN_PREFIX!r} followed by 1 to 255 printable ASCII "
            "characters other than space"
        )
    return None


def _milliseconds(time: float) -> int:
    return round(time * 1000)


def _time_problem(time: object) -> str | None:
    if isinstance(time, bool) or not isinstance(time, int | float):
        return "the time must be a number of seconds"
    if not math.isfinite(time) or not 0 <= time <= _MAX_TIME:
        return "the time must be between 0 and 2^53 milliseconds"
    return None


def _size_problem(tree_size: object) -> str | None:
    if isinstance(tree_size, bool) or not isinstance(tree_size, int):
        return "the tree size must be an integer"
    if not 0 <= tree_size <= MAX_SEQ:
        return "the tree size is out of range"
    return None


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key id of an Ed25519 public key: 16 hex digits of SHA-256 of its raw 32 bytes.

    Raises:
        Nothing.
    """
    return hashlib.sha256(_raw(public_key)).hexdigest()[:16]


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def encode_public_key(public_key: Ed25519PublicKey) -> str:
    """The raw public key in standard base64, as the export header carries it."""
    return base64.b64encode(_raw(public_key)).decode()


def _canonical_base64(text: object, size: int) -> bytes | None:
    """The bytes ``text`` encodes, if it is the one canonical base64 spelling of ``size`` bytes."""
    if not isinstance(text, str):
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(data) != size or base64.b64encode(data).decode() != text:
        return None
    return data


def decode_public_key(text: str) -> Ed25519PublicKey:
    """Read a raw Ed25519 public key in canonical standard base64.

    Raises:
        AuditFormatError: not the canonical base64 of 32 bytes, or not an Ed25519 key.
    """
    data = _canonical_base64(text, _PUBLIC_KEY_BYTES)
    if data is None:
        raise AuditFormatError("the public key is not the canonical base64 of 32 bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(data)
    except ValueError as exc:  # pragma: no cover - OpenSSL accepts any 32 bytes here
        raise AuditFormatError(f"the public key is invalid: {safe_message(exc)}") from None


def signed_note(origin: str, tree_size: int, root: bytes, time: float) -> bytes:
    """The text a checkpoint's signature covers (see the module docstring).

    Args:
        origin: ``"ironhub-audit/<hub name>"``.
        tree_size: the number of records.
        root: their 32-byte Merkle root.
        time: seconds since the epoch; the note carries it rounded to milliseconds.

    Returns:
        The UTF-8 (in fact ASCII) note.

    Raises:
        ValidationError: a malformed origin, size, root or time.
    """
    problem = (
        origin_problem(origin)
        or _size_problem(tree_size)
        or _time_problem(time)
        or (
            None
            if isinstance(root, bytes) and len(root) == HASH_BYTES
            else "the root must be 32 bytes"
        )
    )
    if problem is not None:
        raise ValidationError(problem)
    root_b64 = base64.b64encode(root).decode()
    return f"{origin}\n{tree_size}\n{root_b64}\ntime {_milliseconds(time)}\n".encode()


def sign_checkpoint(
    private_key: Ed25519PrivateKey, *, origin: str, tree_size: int, root: bytes, time: float
) -> Checkpoint:
    """Sign the statement that the first ``tree_size`` records have Merkle root ``root``.

    Args:
        private_key: the hub's audit signing key.
        origin: ``"ironhub-audit/<hub name>"``.
        tree_size: the number of records covered.
        root: their 32-byte Merkle root.
        time: seconds since the epoch (rounded to the millisecond).

    Returns:
        The checkpoint.

    Raises:
        ValidationError: a malformed origin, size, root or time.
    """
    problem = _time_problem(time)
    if problem is not None:
        raise ValidationError(problem)
    quantised = _milliseconds(time) / 1000
    note = signed_note(origin, tree_size, root, quantised)
    return Checkpoint(
        origin=origin,
        tree_size=tree_size,
        root=root.hex(),
        time=quantised,
        key_id=key_id(private_key.public_key()),
        signature=base64.b64encode(private_key.sign(note)).decode(),
    )


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _checkpoint_time_problem(time: object) -> str | None:
    problem = _time_problem(time)
    if problem is None and (not isinstance(time, float) or _milliseconds(time) / 1000 != time):
        problem = "the time must be a float holding a whole number of milliseconds"
    return problem


def _checked_fields(checkpoint: Checkpoint) -> tuple[bytes, bytes]:
    """Check a checkpoint's fields; return its root and signature as bytes.

    Raises:
        AuditFormatError: a malformed field.
    """
    problem = (
        origin_problem(checkpoint.origin)
        or _size_problem(checkpoint.tree_size)
        or _checkpoint_time_problem(checkpoint.time)
        or (
            None
            if _matches(_LOWER_HEX_64, checkpoint.root)
            else "the root is not 64 lowercase hex digits"
        )
        or (None if _matches(_KEY_ID, checkpoint.key_id) else "the key id is not 16 hex digits")
    )
    if problem is None:
        signature = _canonical_base64(checkpoint.signature, _SIGNATURE_BYTES)
        if signature is not None:
            return bytes.fromhex(checkpoint.root), signature
        problem = "the signature is not the canonical base64 of 64 bytes"
    raise AuditFormatError(f"malformed checkpoint: {problem}")


def signature_verifies(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> bool:
    """Whether the checkpoint's signature verifies with ``public_key`` (key id not looked at).

    Raises:
        AuditFormatError: a malformed field.
    """
    root, signature = _checked_fields(checkpoint)
    note = signed_note(checkpoint.origin, checkpoint.tree_size, root, checkpoint.time)
    try:
        public_key.verify(signature, note)
    except InvalidSignature:
        return False
    return True


def verify_checkpoint(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> None:
    """Check a checkpoint's fields, key id and signature.

    This proves the hub signed it; whether it matches the records is for the caller to check
    (:class:`~ironhub.audit.ChainVerifier`, :func:`~ironhub.audit.verify_export`).

    Args:
        checkpoint: the checkpoint.
        public_key: the hub's audit public key, from a trusted source.

    Raises:
        AuditFormatError: a malformed field.
        AuditIntegrityError: it names another key, or the signature does not verify.
    """
    _checked_fields(checkpoint)
    expected = key_id(public_key)
    if checkpoint.key_id != expected:
        raise AuditIntegrityError(
            f"the checkpoint names key id {checkpoint.key_id}, not the verifying key {expected}"
        )
    if not signature_verifies(checkpoint, public_key):
        raise AuditIntegrityError("the checkpoint's signature does not verify")


def checkpoint_line(cp: Checkpoint) -> bytes:
    """The line that stores and exports a checkpoint (without a newline).

    Raises:
        Nothing for a checkpoint from :func:`sign_checkpoint` or :func:`parse_checkpoint_line`.
    """
    return _LINE_PREFIX + _ENCODER.encode(cp) + b"}"


def parse_checkpoint_line(line: bytes) -> Checkpoint:
    """Parse one checkpoint line (without its newline); the signature is not checked here.

    Strict like :func:`~ironhub.audit.parse_line`: the exact prefix, the fields in order, the
    canonical spelling, well-formed values.

    Raises:
        AuditFormatError: the line is malformed or not canonical; the message says how.
    """
    if not line.startswith(_LINE_PREFIX):
        raise AuditFormatError('not a checkpoint line (it must start with {"checkpoint":)')
    try:
        checkpoint = _LINE_DECODER.decode(line).checkpoint
    except DECODE_ERRORS as exc:
        raise AuditFormatError(f"the checkpoint is malformed: {safe_message(exc)}") from None
    if checkpoint_line(checkpoint) != line:
        raise AuditFormatError(
            "the checkpoint is not in canonical form (fields, spacing, number or string spelling)"
        )
    _checked_fields(checkpoint)
    return checkpoint
