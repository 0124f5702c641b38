"""Signed checkpoints: the note, signing, verification, and the strict checkpoint line."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.audit.auditkit import ORIGIN, AuditKit

from ironhub import audit
from ironhub.audit._checkpoint import decode_public_key
from ironhub.errors import AuditError, AuditFormatError, AuditIntegrityError, ValidationError

ROOT = hashlib.sha256(b"root").digest()


def sign(kit: AuditKit, **overrides: Any) -> audit.Checkpoint:
    fields = {"origin": ORIGIN, "tree_size": 7, "root": ROOT, "time": 1767225600.1234}
    return audit.sign_checkpoint(kit.key, **{**fields, **overrides})


def test_the_signed_note() -> None:
    note = audit.signed_note(ORIGIN, 7, ROOT, 1767225600.1234)
    root_b64 = base64.b64encode(ROOT).decode()
    assert note == f"{ORIGIN}\n7\n{root_b64}\ntime 1767225600123\n".encode()


def test_sign_and_verify(kit: AuditKit) -> None:
    checkpoint = sign(kit)
    assert checkpoint.origin == ORIGIN
    assert checkpoint.tree_size == 7
    assert checkpoint.root == ROOT.hex()
    assert checkpoint.time == 1767225600.123  # whole milliseconds
    raw = kit.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert checkpoint.key_id == hashlib.sha256(raw).hexdigest()[:16] == audit.key_id(kit.public_key)
    signature = base64.b64decode(checkpoint.signature)
    note = audit.signed_note(ORIGIN, 7, ROOT, checkpoint.time)
    kit.public_key.verify(signature, note)
    audit.verify_checkpoint(checkpoint, kit.public_key)


def test_the_checkpoint_line_round_trips(kit: AuditKit) -> None:
    checkpoint = sign(kit)
    line = audit.checkpoint_line(checkpoint)
    assert line == b'{"checkpoint":' + msgspec.json.encode(checkpoint) + b"}"
    assert line.startswith(b'{"checkpoint":{"origin":"ironhub-audit/hub.test","tree_size":7,')
    assert audit.parse_checkpoint_line(line) == checkpoint


def test_time_zero_and_an_empty_tree(kit: AuditKit) -> None:
    checkpoint = sign(kit, tree_size=0, root=audit.root_hash([]), time=0)
    assert checkpoint.time == 0.0
    audit.verify_checkpoint(checkpoint, kit.public_key)
    assert audit.parse_checkpoint_line(audit.checkpoint_line(checkpoint)) == checkpoint


def test_another_key_is_refused(kit: AuditKit) -> None:
    checkpoint = sign(kit)
    other = kit.other_key.public_key()
    with pytest.raises(AuditIntegrityError, match="names key id"):
        audit.verify_checkpoint(checkpoint, other)
    forged = msgspec.structs.replace(checkpoint, key_id=audit.key_id(other))
    with pytest.raises(AuditIntegrityError, match="signature does not verify"):
        audit.verify_checkpoint(forged, other)


@pytest.mark.parametrize(
    "change",
    [
        {"tree_size": 8},
        {"root": hashlib.sha256(b"other").hexdigest()},
        {"time": 1767225600.124},
        {"origin": "ironhub-audit/other"},
    ],
)
def test_every_signed_field_is_covered(kit: AuditKit, change: dict[str, Any]) -> None:
    checkpoint = msgspec.structs.replace(sign(kit), **change)
    with pytest.raises(AuditIntegrityError, match="signature"):
        audit.verify_checkpoint(checkpoint, kit.public_key)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"origin": "hub.test"}, "origin"),
        ({"origin": "ironhub-audit/"}, "origin"),
        ({"origin": "ironhub-audit/a b"}, "origin"),
        ({"origin": "ironhub-audit/a\n7"}, "origin"),
        ({"origin": "ironhub-audit/" + "x" * 256}, "origin"),
        ({"tree_size": -1}, "tree size"),
        ({"tree_size": 2**63}, "tree size"),
        ({"tree_size": True}, "tree size"),
        ({"tree_size": 7.0}, "tree size"),
        ({"time": 1767225600.1234}, "milliseconds"),
        ({"time": 1767225600}, "milliseconds"),
        ({"time": -1.0}, "time"),
        ({"time": float("nan")}, "time"),
        ({"time": 2.0**53}, "time"),
        ({"time": "1"}, "time"),
        ({"root": "AB" * 32}, "root"),
        ({"root": "ab" * 31}, "root"),
        ({"root": b"\x00" * 32}, "root"),
        ({"key_id": "ABCDEF0123456789"}, "key id"),
        ({"key_id": "abc"}, "key id"),
        ({"signature": "AAAA"}, "signature"),
        ({"signature": "!" * 88}, "signature"),
        ({"signature": None}, "signature"),
    ],
)
def test_malformed_fields_are_refused(kit: AuditKit, change: dict[str, Any], message: str) -> None:
    checkpoint = msgspec.structs.replace(sign(kit), **change)
    with pytest.raises(AuditFormatError, match=message):
        audit.verify_checkpoint(checkpoint, kit.public_key)


def test_a_non_canonical_signature_spelling_is_refused(kit: AuditKit) -> None:
    checkpoint = sign(kit)
    # 64 bytes are 86 base64 characters and "==": the last character carries 4 unused bits.
    text = checkpoint.signature
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(text[85])
    sibling = alphabet[last ^ 1]
    spelled = text[:85] + sibling + text[86:]
    assert base64.b64decode(spelled) == base64.b64decode(text)
    with pytest.raises(AuditFormatError, match="canonical base64"):
        audit.verify_checkpoint(
            msgspec.structs.replace(checkpoint, signature=spelled), kit.public_key
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"origin": "nope"}, "origin"),
        ({"tree_size": -1}, "tree size"),
        ({"root": b"\x00" * 31}, "root"),
        ({"time": float("inf")}, "time"),
        ({"time": -1}, "time"),
        ({"time": False}, "time"),
    ],
)
def test_signing_refuses_bad_arguments(kit: AuditKit, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        sign(kit, **kwargs)
    fields = {"origin": ORIGIN, "tree_size": 7, "root": ROOT, "time": 1.0, **kwargs}
    with pytest.raises(ValidationError, match=message):
        audit.signed_note(**fields)


LINE = audit.checkpoint_line(sign(AuditKit()))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"", "not a checkpoint line"),
        (LINE[1:], "not a checkpoint line"),
        (LINE[:-1], "malformed"),
        (LINE + b"\n", "canonical"),
        (LINE.replace(b'"tree_size":7', b'"tree_size": 7'), "canonical"),
        (LINE.replace(b'"tree_size":7', b'"tree_size":7.0'), "int"),
        (LINE.replace(b"1767225600.123", b"1767225600123e-3"), "canonical"),
        (LINE.replace(b'"origin":"ironhub-audit/hub.test",', b""), "missing"),
        (LINE.replace(b'"tree_size":7', b'"tree_size":-7'), "tree size"),
        (LINE.replace(b"}}", b',"x":1}}'), "canonical"),
        (LINE.replace(b'"checkpoint":', b'"checkpoint":', 1) + b"x", "malformed"),
    ],
)
def test_strict_checkpoint_lines(line: bytes, message: str) -> None:
    with pytest.raises(AuditFormatError, match=message):
        audit.parse_checkpoint_line(line)


def test_public_keys_are_read_in_canonical_base64(kit: AuditKit) -> None:
    raw = kit.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    text = base64.b64encode(raw).decode()
    assert audit.key_id(decode_public_key(text)) == audit.key_id(kit.public_key)
    for bad in ["", text[:-1], text + "=", "!" * 44, base64.b64encode(raw[:31]).decode()]:
        with pytest.raises(AuditFormatError, match="public key"):
            decode_public_key(bad)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | st.builds(lambda tail: LINE[:40] + tail, st.binary()))
def test_arbitrary_bytes_parse_or_raise_an_audit_error(line: bytes) -> None:
    try:
        audit.parse_checkpoint_line(line)
    except AuditError:
        pass
