"""Audit records: building, the canonical body and line, and strict parsing."""

from __future__ import annotations

import enum
import hashlib
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironhub import audit
from ironhub.audit._records import LINE_MIDDLE, LINE_PREFIX
from ironhub.errors import AuditError, AuditFormatError, AuditIntegrityError, ValidationError

FIELDS: dict[str, Any] = {
    "seq": 0,
    "time": 1767225600.25,
    "actor_kind": "operator",
    "actor": "alice",
    "action": "device-create",
    "target": "thermostat-1",
    "outcome": "ok",
    "source": "192.0.2.7",
    "reason": "-",
    "prev": bytes(32),
}


def build(**overrides: Any) -> tuple[audit.AuditRecord, bytes, bytes]:
    return audit.build_record(**{**FIELDS, **overrides})


def test_the_canonical_body_and_line() -> None:
    record, body, digest = build()
    assert body == (
        b'{"seq":0,"time":1767225600.25,"actor_kind":"operator","actor":"alice",'
        b'"action":"device-create","target":"thermostat-1","outcome":"ok",'
        b'"source":"192.0.2.7","reason":"-","prev":"' + b"0" * 64 + b'"}'
    )
    assert body == audit.encode_record(record) == msgspec.json.encode(record)
    assert digest == hashlib.sha256(b"\x00" + body).digest() == audit.record_hash(body)
    line = audit.record_line(body, digest)
    assert line == b'{"hash":"' + digest.hex().encode() + b'","record":' + body + b"}"
    assert audit.parse_line(line) == (digest, record, body)
    assert record.prev == audit.GENESIS
    assert list(audit.AuditRecord.__struct_fields__) == [
        "seq",
        "time",
        "actor_kind",
        "actor",
        "action",
        "target",
        "outcome",
        "source",
        "reason",
        "prev",
    ]


def test_the_next_record_chains_on_the_previous_hash() -> None:
    _, _, first = build()
    record, _, _ = build(seq=1, prev=first)
    assert record.prev == first.hex()


def test_an_int_time_becomes_a_float_and_a_str_enum_a_plain_str() -> None:
    class Kind(enum.StrEnum):
        DEVICE = "device"

    record, body, _ = build(time=5, actor_kind=Kind.DEVICE)
    assert record.time == 5.0
    assert type(record.time) is float
    assert type(record.actor_kind) is str
    assert b'"time":5.0,' in body


def test_control_characters_and_unicode_are_kept_escaped() -> None:
    record, body, digest = build(actor="ev\nil\x1b[31m", target="ünïcødé", reason='"\\')
    assert b"\n" not in body
    assert audit.parse_line(audit.record_line(body, digest))[1] == record


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"actor_kind": "robot"}, "actor_kind"),
        ({"outcome": "maybe"}, "outcome"),
        ({"actor": ""}, "length"),
        ({"reason": "x" * (audit.MAX_FIELD_CHARS + 1)}, "length"),
        ({"seq": -1}, ">= 0"),
        ({"seq": 2**63}, "<="),
        ({"seq": 2**70}, "<="),
        ({"seq": True}, "int"),
        ({"seq": 1.0}, "int"),
        ({"time": -0.5}, ">= 0"),
        ({"time": float("nan")}, "float"),
        ({"time": float("inf")}, "float"),
        ({"time": True}, "number"),
        ({"time": "5"}, "number"),
        ({"actor": 5}, "str"),
        ({"target": None}, "str"),
        ({"source": "\ud800"}, "invalid audit record"),
        ({"action": object()}, "invalid audit record"),
        ({"prev": bytes(31)}, "32-byte"),
        ({"prev": "00" * 32}, "32-byte"),
        ({"prev": b"\x01" * 32}, "genesis"),
    ],
)
def test_invalid_fields_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        build(**overrides)


def test_the_longest_field_is_accepted() -> None:
    record, _, _ = build(reason="x" * audit.MAX_FIELD_CHARS, seq=2**63 - 1, prev=b"\x01" * 32)
    assert len(record.reason) == audit.MAX_FIELD_CHARS


def test_record_line_refuses_a_short_hash() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        audit.record_line(b"{}", b"short")


VALID = audit.record_line(*build()[1:])
BODY = build()[1]
HEX = build()[2].hex().encode()


def with_body(body: bytes) -> bytes:
    """A line whose hash matches ``body``, whatever the body is."""
    return LINE_PREFIX + audit.record_hash(body).hex().encode() + LINE_MIDDLE + body + b"}"


@pytest.mark.parametrize(
    ("line", "error", "message"),
    [
        (b"", AuditFormatError, "not a record line"),
        (b'{"hash": "' + HEX + b'","record":' + BODY + b"}", AuditFormatError, "not a record"),
        (LINE_PREFIX + HEX.upper() + LINE_MIDDLE + BODY + b"}", AuditFormatError, "lowercase"),
        (LINE_PREFIX + HEX[:-1] + LINE_MIDDLE + BODY + b"}", AuditFormatError, "lowercase"),
        (LINE_PREFIX + HEX + b'","rec":' + BODY + b"}", AuditFormatError, '"record":'),
        (LINE_PREFIX + HEX + LINE_MIDDLE + BODY, AuditFormatError, "truncated"),
        (LINE_PREFIX + HEX + LINE_MIDDLE + BODY + b"}\n", AuditFormatError, "end with }"),
        (LINE_PREFIX + HEX + LINE_MIDDLE + BODY + b"} ", AuditFormatError, "end with }"),
        (LINE_PREFIX + HEX + LINE_MIDDLE + b"}", AuditFormatError, "malformed"),
        (with_body(BODY.replace(b'"ok"', b'"yes"')), AuditFormatError, "outcome"),
        (with_body(BODY.replace(b'"operator"', b'"robot"')), AuditFormatError, "actor_kind"),
        (with_body(BODY.replace(b'"prev":"0', b'"prev":"A')), AuditFormatError, "prev"),
        (with_body(BODY.replace(b'"prev":"0', b'"prev":"1')), AuditFormatError, "genesis"),
        (with_body(BODY.replace(b'"alice"', b'""')), AuditFormatError, "length"),
        (with_body(BODY.replace(b"25,", b"250,")), AuditFormatError, "canonical"),
        (with_body(BODY.replace(b'"seq":0', b'"seq": 0')), AuditFormatError, "canonical"),
        (with_body(BODY.replace(b'"alice"', b'"\\u0061lice"')), AuditFormatError, "canonical"),
        (with_body(BODY.replace(b"}", b',"extra":1}')), AuditFormatError, "canonical"),
        (with_body(BODY.replace(b'"seq":0,', b"")), AuditFormatError, "missing"),
        (with_body(BODY.replace(b'"seq":0', b'"seq":"0"')), AuditFormatError, "int"),
        (with_body(BODY.replace(b'"seq":0', b'"seq":-1')), AuditFormatError, ">= 0"),
        (with_body(BODY.replace(b"1767225600.25", b"1e400")), AuditFormatError, "range"),
        (with_body(BODY.replace(b"1767225600.25", b"1767225600")), AuditFormatError, "canon"),
        (with_body(b"[1]"), AuditFormatError, "malformed"),
        (with_body(b"\xff"), AuditFormatError, "malformed"),
        (VALID.replace(b'"alice"', b'"alicf"'), AuditIntegrityError, "hash does not match"),
        (
            VALID.replace(HEX[:2], b"ff" if HEX[:2] != b"ff" else b"00", 1),
            AuditIntegrityError,
            "hash",
        ),
    ],
)
def test_strict_parsing(line: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        audit.parse_line(line)
    assert type(caught.value) is error
    assert caught.value.position is None  # type: ignore[attr-defined]


def test_error_messages_never_echo_foreign_bytes() -> None:
    hostile = with_body(b'{"seq":0,"\x1b[2J' + b"x" * 500 + b'":1}')
    with pytest.raises(AuditFormatError) as caught:
        audit.parse_line(hostile)
    text = str(caught.value)
    assert "\x1b" not in text
    assert len(text) < 300


text = st.text(min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    seq=st.integers(0, 2**63 - 1),
    time=st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    actor_kind=st.sampled_from(sorted(audit.ACTOR_KINDS)),
    outcome=st.sampled_from(sorted(audit.OUTCOMES)),
    actor=text,
    action=text,
    target=text,
    source=text,
    reason=text,
    prev=st.binary(min_size=32, max_size=32),
)
def test_every_valid_record_round_trips(prev: bytes, seq: int, **fields: Any) -> None:
    if seq == 0:
        prev = bytes(32)
    record, body, digest = audit.build_record(seq=seq, prev=prev, **fields)
    assert audit.parse_line(audit.record_line(body, digest)) == (digest, record, body)
    assert audit.encode_record(record) == body


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400) | st.builds(lambda tail: VALID[:84] + tail, st.binary()))
def test_arbitrary_bytes_parse_or_raise_an_audit_error(line: bytes) -> None:
    try:
        audit.parse_line(line)
    except AuditError:
        pass
