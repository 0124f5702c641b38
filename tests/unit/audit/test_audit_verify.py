"""Export verification: every edit, deletion, insertion, reordering and truncation is caught,
and reported at the first bad record position or line (the rules are in ``_verify``)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.audit.auditkit import ORIGIN, AuditKit, Log, nl, rehash

from ironhub import audit
from ironhub.audit._merkle import EMPTY_ROOT
from ironhub.audit._verify import _BLOCK_LINES
from ironhub.errors import AuditFormatError, AuditIntegrityError, ValidationError

RECORDS = 6
SIZES = (4, 6)
FIRST_CHECKPOINT_LINE = RECORDS + 2  # header, then records 0..5 on lines 2..7
CHECKPOINT_PREFIX_BYTES = len(b'{"checkpoint":')


@pytest.fixture(scope="module")
def log(kit: AuditKit) -> Log:
    return kit.log(RECORDS)


@pytest.fixture(scope="module")
def lines(kit: AuditKit, log: Log) -> list[bytes]:
    return kit.export(log, SIZES)


def check(
    report: audit.VerifyReport, position: int | None, line: int | None, context: object = ""
) -> None:
    assert not report.intact, context
    assert report.problem, context
    assert (report.first_bad_position, report.line) == (position, line), (context, report.problem)


def as_file(data: bytes) -> Iterator[bytes]:
    """The lines exactly as iterating a binary file yields them."""
    return iter(io.BytesIO(data))


# --- intact exports -----------------------------------------------------------------------------


@pytest.mark.parametrize("trusted", [True, False])
def test_an_intact_export(kit: AuditKit, log: Log, lines: list[bytes], trusted: bool) -> None:
    report = audit.verify_export(lines, kit.public_key if trusted else None)
    assert report == audit.VerifyReport(
        intact=True,
        records=RECORDS,
        checkpoints=2,
        first_bad_position=None,
        line=None,
        problem=None,
        root=audit.root_hash(log.hashes),
        origin=ORIGIN,
        key_id=audit.key_id(kit.public_key),
    )
    assert audit.verify_export(as_file(b"".join(lines)), kit.public_key).intact


def test_checkpoints_in_any_order_and_repeated(kit: AuditKit, log: Log) -> None:
    lines = kit.export(log, (6, 2, 0, 6, 5))
    report = audit.verify_export(lines, kit.public_key)
    assert report.intact
    assert report.checkpoints == 5


def test_the_empty_log(kit: AuditKit) -> None:
    report = audit.verify_export(kit.export(Log(), (0,)), kit.public_key)
    assert report.intact
    assert (report.records, report.checkpoints, report.root) == (0, 1, EMPTY_ROOT)


BLOCK = _BLOCK_LINES  # the bulk path's block: exports around its multiples


@pytest.mark.parametrize("records", [BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 50])
def test_exports_spanning_several_blocks(kit: AuditKit, records: int) -> None:
    log = kit.log(records)
    lines = kit.export(log, (1, min(BLOCK, records), records))
    report = audit.verify_export(lines, kit.public_key)
    assert report.intact
    assert report.root == audit.root_hash(log.hashes)
    for position in sorted(
        {0, 300, BLOCK - 2, BLOCK - 1, BLOCK, records - 1} & set(range(records))
    ):
        edited = list(lines)
        edited[position + 1] = edited[position + 1].replace(b'"ok"', b'"failed"')
        edited[position + 1] = edited[position + 1].replace(b'"refused"', b'"failed"')
        report = audit.verify_export(edited, kit.public_key)
        check(report, position, position + 2)
        assert report.records == position
        assert report.root == audit.root_hash(log.hashes[:position])


# --- the exhaustive small-log mutation test (issue 4: 100 % detection) ------------------------


def expected_for_edit(line: int, offset: int) -> tuple[int | None, int]:
    """Where an edit at ``offset`` of original line ``line`` must be reported."""
    if line == 1:
        return None, 1
    if line < FIRST_CHECKPOINT_LINE:
        return line - 2, line
    if line == FIRST_CHECKPOINT_LINE and offset < CHECKPOINT_PREFIX_BYTES:
        # No longer starts like a checkpoint: read as a broken record where record 6 would be.
        return RECORDS, line
    return None, line


def line_starts(lines: list[bytes]) -> list[int]:
    starts, total = [], 0
    for line in lines:
        starts.append(total)
        total += len(line)
    return starts


@pytest.mark.parametrize("trusted", [True, False], ids=["given-key", "header-key"])
def test_every_single_byte_edit_is_detected_at_the_right_place(
    kit: AuditKit, lines: list[bytes], trusted: bool
) -> None:
    data = b"".join(lines)
    starts = line_starts(lines)
    key = kit.public_key if trusted else None
    edits = detected = 0
    for index, old in enumerate(data):
        line = max(n for n, start in enumerate(starts, 1) if start <= index)
        expected = expected_for_edit(line, index - starts[line - 1])
        for new in {old ^ 0x01, ord("\n"), ord("0"), 0x00} - {old}:
            edited = data[:index] + bytes([new]) + data[index + 1 :]
            report = audit.verify_export(as_file(edited), key)
            edits += 1
            check(report, *expected, context=(index, new))
            detected += 1
    assert detected == edits
    assert edits > 3 * len(data)


def test_every_record_deletion(kit: AuditKit, log: Log) -> None:
    for index in range(RECORDS):
        kept = log.lines[:index] + log.lines[index + 1 :]
        report = audit.verify_export(kit.export(log, SIZES, record_lines=kept), kit.public_key)
        if index < RECORDS - 1:
            check(report, index, index + 2)
        else:  # the last one: the checkpoint of size 6 says it is missing
            check(report, RECORDS - 1, FIRST_CHECKPOINT_LINE)
        assert report.records == index


def test_every_duplicate_insertion(kit: AuditKit, log: Log) -> None:
    for index in range(RECORDS + 1):
        for source in range(RECORDS):
            changed = [*log.lines[:index], log.lines[source], *log.lines[index:]]
            first = next(
                (n for n, (a, b) in enumerate(zip(changed, log.lines, strict=False)) if a != b),
                RECORDS,
            )
            report = audit.verify_export(
                kit.export(log, SIZES, record_lines=changed), kit.public_key
            )
            check(report, first, first + 2, (index, source))


def test_every_adjacent_swap(kit: AuditKit, log: Log) -> None:
    for index in range(RECORDS - 1):
        swapped = list(log.lines)
        swapped[index], swapped[index + 1] = swapped[index + 1], swapped[index]
        report = audit.verify_export(kit.export(log, SIZES, record_lines=swapped), kit.public_key)
        check(report, index, index + 2)


def test_every_tail_truncation(lines: list[bytes], kit: AuditKit) -> None:
    data = b"".join(lines)
    starts = [*line_starts(lines), len(data)]
    for cut in range(len(data)):
        report = audit.verify_export(as_file(data[:cut]), kit.public_key)
        line = max(n for n, start in enumerate(starts, 1) if start <= cut)
        offset = cut - starts[line - 1]
        if cut == 0:
            expected: tuple[int | None, int] = (None, 1)  # empty: no header
        elif offset == 0 and line - 1 == FIRST_CHECKPOINT_LINE:
            expected = (SIZES[0], SIZES[0] + 2)  # the full checkpoint is gone: 4 and 5 uncovered
        elif offset == 0:
            expected = (0, 2)  # whole lines cut, no checkpoint left: nothing is vouched for
        else:
            expected = expected_for_edit(line, offset)  # a partial line
        check(report, *expected, context=cut)


def test_records_cut_from_the_end_with_the_checkpoints_kept(kit: AuditKit, log: Log) -> None:
    for kept in range(RECORDS):
        report = audit.verify_export(
            kit.export(log, SIZES, record_lines=log.lines[:kept]), kit.public_key
        )
        checkpoint_line = kept + 2 if kept < SIZES[0] else kept + 3
        check(report, kept, checkpoint_line, kept)
        assert "missing" in report.problem  # type: ignore[operator]


# --- what an attacker without the key can do -------------------------------------------------


def test_a_rewritten_history_contradicts_the_checkpoints(kit: AuditKit, log: Log) -> None:
    records = list(log.records)
    records[2] = msgspec.structs.replace(records[2], outcome="ok", reason="-")
    records[2] = msgspec.structs.replace(records[2], actor="mallory")
    forged = rehash(records)
    lines = [
        *nl([audit.export_header(ORIGIN, kit.public_key), *forged.lines]),
        *kit.export(log, SIZES)[-2:],
    ]
    report = audit.verify_export(lines, kit.public_key)
    check(report, None, FIRST_CHECKPOINT_LINE)
    assert "root" in report.problem  # type: ignore[operator]
    assert report.records == RECORDS


def test_deleting_a_record_and_renumbering_is_caught(kit: AuditKit, log: Log) -> None:
    records = [
        msgspec.structs.replace(r, seq=n) for n, r in enumerate(log.records[:2] + log.records[3:])
    ]
    forged = rehash(records)
    lines = [
        *nl([audit.export_header(ORIGIN, kit.public_key), *forged.lines]),
        *kit.export(log, SIZES)[-2:],
    ]
    report = audit.verify_export(lines, kit.public_key)
    check(report, None, FIRST_CHECKPOINT_LINE - 1)  # the size-4 checkpoint, on line 7 now


def test_appended_records_are_not_covered(kit: AuditKit, log: Log) -> None:
    longer = kit.log(RECORDS + 2, start=Log(list(log.bodies), list(log.hashes), list(log.records)))
    lines = kit.export(longer, SIZES)
    report = audit.verify_export(lines, kit.public_key)
    check(report, RECORDS, RECORDS + 2)
    assert "no checkpoint covers" in report.problem  # type: ignore[operator]


def test_without_any_checkpoint_nothing_is_vouched_for(kit: AuditKit, log: Log) -> None:
    report = audit.verify_export(kit.export(log, ()), kit.public_key)
    check(report, 0, 2)
    assert "no checkpoint" in report.problem  # type: ignore[operator]
    assert report.records == RECORDS


def test_the_last_checkpoint_removed(kit: AuditKit, log: Log) -> None:
    report = audit.verify_export(kit.export(log, (4,)), kit.public_key)
    check(report, 4, 6)


def test_a_checkpoint_of_another_key(kit: AuditKit, log: Log, lines: list[bytes]) -> None:
    foreign = kit.checkpoint(log.hashes, RECORDS, key=kit.other_key)
    edited = [*lines, audit.checkpoint_line(foreign) + b"\n"]
    report = audit.verify_export(edited, kit.public_key)
    check(report, None, len(edited))
    assert "signature" in report.problem  # type: ignore[operator]
    # With the key taken from the header, that is indistinguishable from a replaced header key.
    check(audit.verify_export(edited, None), None, 1)


def test_a_checkpoint_naming_another_key_id(kit: AuditKit, log: Log, lines: list[bytes]) -> None:
    checkpoint = kit.checkpoint(log.hashes, RECORDS)
    renamed = msgspec.structs.replace(checkpoint, key_id="0123456789abcdef")
    for key in (kit.public_key, None):
        report = audit.verify_export([*lines, audit.checkpoint_line(renamed) + b"\n"], key)
        check(report, None, len(lines) + 1)
        assert "names the key" in report.problem  # type: ignore[operator]


def test_a_checkpoint_of_another_origin_blames_the_header(kit: AuditKit, log: Log) -> None:
    lines = kit.export(log, SIZES, origin="ironhub-audit/elsewhere")
    lines[0] = audit.export_header(ORIGIN, kit.public_key) + b"\n"
    report = audit.verify_export(lines, kit.public_key)
    check(report, None, 1)
    assert "origin" in report.problem  # type: ignore[operator]


# --- the header ---------------------------------------------------------------------------------


def test_a_header_with_another_key(kit: AuditKit, lines: list[bytes]) -> None:
    edited = [audit.export_header(ORIGIN, kit.other_key.public_key()) + b"\n", *lines[1:]]
    report = audit.verify_export(edited, kit.public_key)
    check(report, None, 1)
    assert "expected key" in report.problem  # type: ignore[operator]
    report = audit.verify_export(edited, None)
    check(report, None, 1)
    assert report.key_id == audit.key_id(kit.other_key.public_key())
    assert report.origin == ORIGIN


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "header is malformed"),
        (b"", "malformed"),
        (b"{}", "malformed"),
        (
            b'{"format":"ironhub-audit-export/2","origin":"ironhub-audit/hub.test","public_key":"K"}',
            "format",
        ),
        (b'{"format": "ironhub-audit-export/1"}', "malformed"),
        (
            b'{"origin":"ironhub-audit/hub.test","format":"ironhub-audit-export/1","public_key":"K"}',
            "canonical",
        ),
        (b'{"format":"ironhub-audit-export/1","origin":"hub.test","public_key":"K"}', "origin"),
        (
            b'{"format":"ironhub-audit-export/1","origin":"ironhub-audit/hub.test","public_key":"AAAA"}',
            "public key",
        ),
        (b'{"format":"ironhub-audit-export/1","origin":"\xff","public_key":"K"}', "malformed"),
    ],
)
def test_bad_headers(kit: AuditKit, lines: list[bytes], header: bytes | None, message: str) -> None:
    # None: the header is missing, the export starts with record 0.
    edited = lines[1:] if header is None else [header + b"\n", *lines[1:]]
    report = audit.verify_export(edited, kit.public_key)
    check(report, None, 1)
    assert message in report.problem  # type: ignore[operator]
    assert report.root is None
    assert report.origin is None


def test_export_header(kit: AuditKit) -> None:
    header = audit.export_header(ORIGIN, kit.public_key)
    assert header.startswith(
        b'{"format":"ironhub-audit-export/1","origin":"ironhub-audit/hub.test",'
    )
    assert audit.EXPORT_FORMAT == "ironhub-audit-export/1"
    with pytest.raises(ValidationError, match="origin"):
        audit.export_header("hub.test", kit.public_key)


# --- framing ------------------------------------------------------------------------------------


def test_an_empty_export() -> None:
    report = audit.verify_export([])
    check(report, None, 1)
    assert report.records == 0
    assert report.root is None


@pytest.mark.parametrize(
    ("where", "position", "line"),
    [(1, None, 1), (3, 1, 3), (FIRST_CHECKPOINT_LINE, None, FIRST_CHECKPOINT_LINE), (9, None, 9)],
)
def test_crlf_is_refused(
    lines: list[bytes], kit: AuditKit, where: int, position: int | None, line: int
) -> None:
    edited = list(lines)
    edited[where - 1] = edited[where - 1][:-1] + b"\r\n"
    check(audit.verify_export(edited, kit.public_key), position, line)
    whole = b"".join(lines).replace(b"\n", b"\r\n")
    check(audit.verify_export(as_file(whole), kit.public_key), None, 1)


def test_blank_lines_and_trailing_garbage(lines: list[bytes], kit: AuditKit) -> None:
    end = len(lines) + 1
    cases = [
        ([*lines[:3], b"\n", *lines[3:]], 2, 4),
        (
            [*lines[: FIRST_CHECKPOINT_LINE - 1], b"\n", *lines[FIRST_CHECKPOINT_LINE - 1 :]],
            RECORDS,
            FIRST_CHECKPOINT_LINE,
        ),
        ([*lines, b"\n"], None, end),
        ([*lines, b"garbage\n"], None, end),
        ([*lines, b"garbage"], None, end),
        ([*lines, lines[1]], None, end),  # a record after the checkpoints
        (list(as_file(b"".join(lines) + b"\n")), None, end),
        ([*lines[:-1], lines[-1][:-1]], None, len(lines)),  # no final newline
        ([*lines[:-1], lines[-1][:-1] + b" \n"], None, len(lines)),
    ]
    for edited, position, line in cases:
        check(audit.verify_export(edited, kit.public_key), position, line, line)


def test_elements_that_are_not_single_lines(lines: list[bytes], kit: AuditKit) -> None:
    # The contract is one line per element; anything else is refused, never misread.
    joined = [lines[0], lines[1] + lines[2], *lines[3:]]
    check(audit.verify_export(joined, kit.public_key), 0, 2)
    comma = [lines[0], lines[1][:-1] + b"," + lines[2], *lines[3:]]
    check(audit.verify_export(comma, kit.public_key), 0, 2)
    split = [lines[0], lines[1][:100], lines[1][100:], *lines[2:]]
    check(audit.verify_export(split, kit.public_key), 0, 2)


def test_io_errors_propagate(lines: list[bytes], kit: AuditKit) -> None:
    def failing() -> Iterator[bytes]:
        yield from lines[:3]
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        audit.verify_export(failing(), kit.public_key)


def test_the_bulk_and_per_line_paths_agree_on_every_refusal(kit: AuditKit, log: Log) -> None:
    # Lines that pass every check but one, each crafted with a matching hash.
    def line_for(body: bytes) -> bytes:
        return audit.record_line(body, audit.record_hash(body))

    body = log.bodies[1]
    crafted = {
        "kind": body.replace(b'"device"', b'"robot"'),
        "outcome": body.replace(b'"ok"', b'"maybe"').replace(b'"refused"', b'"maybe"'),
        "spacing": body.replace(b'"seq":1', b'"seq": 1'),
        "prev": body.replace(log.hashes[0].hex().encode(), b"ab" * 32),
        "seq": body.replace(b'"seq":1', b'"seq":7'),
        "long prev": body.replace(
            log.hashes[0].hex().encode(), b"0" + log.hashes[0].hex().encode()
        ),
    }
    for name, changed in crafted.items():
        assert changed != body, name
        record_lines = [log.lines[0], line_for(changed), *log.lines[2:]]
        report = audit.verify_export(
            kit.export(log, SIZES, record_lines=record_lines), kit.public_key
        )
        check(report, 1, 3, name)
    long_hash = log.lines[1].replace(b'{"hash":"', b'{"hash":"0')
    report = audit.verify_export(
        kit.export(log, SIZES, record_lines=[log.lines[0], long_hash, *log.lines[2:]]),
        kit.public_key,
    )
    check(report, 1, 3)


# --- arbitrary input ---------------------------------------------------------------------------

SMALL = AuditKit().export(AuditKit().log(3), (2, 3))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(SMALL) | st.binary(max_size=80), max_size=8))
def test_arbitrary_lines_give_a_report(lines: list[bytes]) -> None:
    report = audit.verify_export(lines, AuditKit().public_key)
    assert isinstance(report, audit.VerifyReport)
    if report.intact:
        assert lines[: report.records + 1] == SMALL[: report.records + 1]
        assert set(lines[report.records + 1 :]) <= set(SMALL[4:])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_give_a_report(data: bytes) -> None:
    report = audit.verify_export(as_file(data))
    assert not report.intact


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_substitutions_are_detected(data: st.DataObject) -> None:
    original = b"".join(SMALL)
    edits = data.draw(
        st.dictionaries(
            st.integers(0, len(original) - 1), st.integers(0, 255), min_size=1, max_size=6
        )
    )
    edited = bytearray(original)
    for index, value in edits.items():
        edited[index] = value
    report = audit.verify_export(as_file(bytes(edited)), AuditKit().public_key)
    assert report.intact == (bytes(edited) == original)


# --- the live verifier ----------------------------------------------------------------------------


def test_chain_verifier_follows_a_log(kit: AuditKit, log: Log) -> None:
    verifier = audit.ChainVerifier(origin=ORIGIN)
    assert (verifier.size, verifier.last_hash, verifier.root()) == (0, bytes(32), EMPTY_ROOT)
    for n, (digest, body) in enumerate(zip(log.hashes, log.bodies, strict=True)):
        assert verifier.feed(digest, body) == log.records[n]
        if verifier.size == SIZES[0]:
            verifier.check_checkpoint(kit.checkpoint(log.hashes, SIZES[0]), kit.public_key)
    assert verifier.size == RECORDS
    assert verifier.last_hash == log.hashes[-1]
    assert verifier.root() == audit.root_hash(log.hashes)
    verifier.check_checkpoint(kit.checkpoint(log.hashes, RECORDS), kit.public_key)


def test_chain_verifier_refusals_leave_it_unchanged(kit: AuditKit, log: Log) -> None:
    verifier = audit.ChainVerifier()
    verifier.feed(log.hashes[0], log.bodies[0])
    other = kit.log(3, actor="bob")
    cases: list[tuple[bytes, bytes, type[Exception], str]] = [
        (log.hashes[1], log.bodies[1] + b" ", AuditFormatError, "canonical"),
        (log.hashes[2], log.bodies[1], AuditIntegrityError, "hash"),
        (log.hashes[2], log.bodies[2], AuditIntegrityError, "seq 2"),
        (other.hashes[1], other.bodies[1], AuditIntegrityError, "chain"),
    ]
    for digest, body, error, message in cases:
        with pytest.raises(error, match=message) as caught:
            verifier.feed(digest, body)
        assert caught.value.position == 1  # type: ignore[attr-defined]
        assert (verifier.size, verifier.last_hash) == (1, log.hashes[0])
    verifier.feed(log.hashes[1], log.bodies[1])
    assert verifier.size == 2


def test_chain_verifier_checkpoint_refusals(kit: AuditKit, log: Log) -> None:
    verifier = audit.ChainVerifier(origin=ORIGIN)
    for digest, body in zip(log.hashes[:4], log.bodies[:4], strict=True):
        verifier.feed(digest, body)
    with pytest.raises(AuditIntegrityError, match="missing") as caught:
        verifier.check_checkpoint(kit.checkpoint(log.hashes, 6), kit.public_key)
    assert caught.value.position == 4
    with pytest.raises(ValueError, match="tree_size"):
        verifier.check_checkpoint(kit.checkpoint(log.hashes, 3), kit.public_key)
    other = kit.log(4, actor="bob")
    with pytest.raises(AuditIntegrityError, match="root"):
        verifier.check_checkpoint(kit.checkpoint(other.hashes, 4), kit.public_key)
    with pytest.raises(AuditIntegrityError, match="origin"):
        verifier.check_checkpoint(
            kit.checkpoint(log.hashes, 4, origin="ironhub-audit/elsewhere"), kit.public_key
        )
    with pytest.raises(AuditIntegrityError, match="key"):
        verifier.check_checkpoint(kit.checkpoint(log.hashes, 4, key=kit.other_key), kit.public_key)
    # Without an origin to insist on, any origin will do.
    audit.ChainVerifier()
    anywhere = audit.ChainVerifier()
    for digest, body in zip(log.hashes[:4], log.bodies[:4], strict=True):
        anywhere.feed(digest, body)
    anywhere.check_checkpoint(
        kit.checkpoint(log.hashes, 4, origin="ironhub-audit/x"), kit.public_key
    )


@pytest.mark.parametrize(
    "hostile",
    [
        b'"x":' + b"[" * 100_000 + b"]" * 100_000 + b",",  # deeper than msgspec recurses
        b'"x":"\xff\xfe",',  # invalid UTF-8 inside a string
    ],
    ids=["deep-nesting", "bad-utf8"],
)
def test_hostile_json_is_a_verdict_not_a_crash(
    kit: AuditKit, log: Log, lines: list[bytes], hostile: bytes
) -> None:
    record = log.lines[2].replace(b'{"hash":', b"{" + hostile + b'"hash":', 1)
    edited = kit.export(log, SIZES, record_lines=[*log.lines[:2], record, *log.lines[3:]])
    check(audit.verify_export(edited, kit.public_key), 2, 4)
    body = log.bodies[2].replace(b"{", b"{" + hostile, 1)
    crafted = audit.record_line(body, audit.record_hash(body))
    edited = kit.export(log, SIZES, record_lines=[*log.lines[:2], crafted, *log.lines[3:]])
    check(audit.verify_export(edited, kit.public_key), 2, 4)
    header = lines[0].replace(b"{", b"{" + hostile, 1)
    check(audit.verify_export([header, *lines[1:]], kit.public_key), None, 1)
    checkpoint = lines[-1].replace(b'{"checkpoint":{', b'{"checkpoint":{' + hostile, 1)
    check(audit.verify_export([*lines[:-1], checkpoint], kit.public_key), None, len(lines))
    with pytest.raises(AuditFormatError):
        audit.ChainVerifier().feed(audit.record_hash(body), body)
