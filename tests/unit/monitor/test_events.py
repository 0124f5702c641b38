"""The security event schema and its parser (src/ironhub/monitor/events.py; issue 6).

Every case of tests/vectors/security_events.json runs here; tests/fuzz/fuzz_security_events.py
mutates them, and a short run of it runs here too. The JSON examples of docs/security-events.md
are parsed as well, so the documentation cannot drift from the parser.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ironhub.config import AZURE_MAX_MESSAGE_BYTES
from ironhub.monitor import events, model
from ironhub.monitor.events import (
    EVENT_FIELDS,
    MAX_EVENTS_PER_MESSAGE,
    MAX_EXTRA_VALUES,
    MAX_LIST_ITEMS,
    MAX_MEMBERS,
    MAX_MESSAGE_BYTES,
    MAX_PROBLEM_CHARS,
    MAX_STRING_CHARS,
    TAMPER_ALARM_STATES,
    TAMPER_STATES,
    UNKNOWN_KIND,
    device_timestamp,
    hub_event,
    message_event,
    parse_security_message,
    peer_host,
)
from ironhub.monitor.model import (
    DEVICE_EVENT_KINDS,
    HUB_EVENT_KINDS,
    Finding,
    SecurityEvent,
    Severity,
)

if TYPE_CHECKING:
    from types import ModuleType

HARNESS: ModuleType = importlib.import_module("tests.fuzz.fuzz_security_events")
VECTORS = HARNESS.load_security_event_vectors()
DOCS = Path(__file__).resolve().parents[3] / "docs" / "security-events.md"

T = "2026-11-22T11:00:00Z"
NOW = HARNESS.RECEIVED_AT  # 2026-11-22T12:00:00Z


def parse(body: object, *, source: str | None = None) -> list[SecurityEvent]:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_security_message(
        device_id="dev1", payload=payload, received_at=NOW, seq=9, source=source
    )


def one(body: object) -> SecurityEvent:
    result = parse(body)
    assert len(result) == 1
    return result[0]


def tamper(**extra: Any) -> dict[str, Any]:
    return {"event": "tamper", "time": T, "sensor": "lid", "state": "opened", **extra}


# --- the vectors ------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda vector: vector.name)
def test_vector(vector: Any) -> None:
    result = parse_security_message(
        device_id=HARNESS.DEVICE_ID,
        payload=vector.body,
        received_at=HARNESS.RECEIVED_AT,
        seq=HARNESS.SEQ,
        source=HARNESS.SOURCE,
    )
    assert HARNESS.mismatch(vector, result) is None
    assert HARNESS.check_events(result) == []


def test_the_vectors_cover_every_type_valid_and_invalid() -> None:
    assert len(VECTORS) >= 40
    valid: set[str] = set()
    flagged: set[str] = set()
    for vector in VECTORS:
        for expected in vector.expect:
            (valid if expected.problem is None else flagged).add(expected.kind)
    assert valid == DEVICE_EVENT_KINDS
    assert flagged == DEVICE_EVENT_KINDS | {UNKNOWN_KIND}


def test_the_vector_loader_checks_the_format(tmp_path: Path) -> None:
    def load(content: object) -> Any:
        path = tmp_path / "v.json"
        path.write_text(json.dumps(content), encoding="utf-8")
        return HARNESS.load_security_event_vectors(str(path))

    good = {"name": "a", "json": {}, "expect": [{"kind": "unknown", "problem": "x"}]}
    assert len(load([good])) == 1
    hexed = load([{"name": "h", "hex": "7b7d", "expect": [{"kind": "unknown", "problem": None}]}])
    assert hexed[0].body == b"{}"
    bad_files: list[object] = [
        {},
        [1],
        [good, good],
        [{"name": "a", "expect": good["expect"]}],
        [{**good, "text": "x"}],
        [{**good, "extra": 1}],
        [{**good, "expect": []}],
        [{**good, "expect": [1]}],
        [{**good, "expect": [{"kind": "usb"}]}],
        [{**good, "expect": [{"kind": "message", "problem": None}]}],
        [{**good, "expect": [{"kind": "usb", "problem": 1}]}],
        [{**good, "expect": [{"kind": "usb", "problem": None, "times": 0}]}],
        [{**good, "expect": [{"kind": "usb", "problem": None, "times": True}]}],
        [{**good, "expect": [{"kind": "usb", "problem": None, "fields": []}]}],
    ]
    for content in bad_files:
        with pytest.raises(ValueError):
            load(content)


def test_the_mismatch_oracle_reports_differences() -> None:
    vector = HARNESS.SecurityEventVector(
        name="x",
        body=b"",
        expect=(HARNESS.ExpectedEvent("tamper", None, {"state": "opened"}, T, True),),
    )
    good = SecurityEvent("tamper", "d", NOW, T, {"state": "opened"})
    assert HARNESS.mismatch(vector, [good]) is None
    assert HARNESS.mismatch(vector, []) is not None
    assert HARNESS.mismatch(vector, [SecurityEvent("usb", "d", NOW, T)]) is not None
    assert HARNESS.mismatch(vector, [SecurityEvent("tamper", "d", NOW, T, problem="p")])
    assert HARNESS.mismatch(vector, [SecurityEvent("tamper", "d", NOW, T, {"state": "x"})])
    assert HARNESS.mismatch(vector, [SecurityEvent("tamper", "d", NOW, None, {"state": "opened"})])
    flagged = HARNESS.SecurityEventVector(
        name="y", body=b"", expect=(HARNESS.ExpectedEvent("tamper", "bad"),)
    )
    assert HARNESS.mismatch(flagged, [good]) is not None


# --- the documentation --------------------------------------------------------------------------


def _doc_examples() -> list[str]:
    return re.findall(r"```json\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_every_documented_example_is_well_formed() -> None:
    examples = _doc_examples()
    kinds: set[str] = set()
    for example in examples:
        result = parse(example.encode())
        assert [event.problem for event in result] == [None] * len(result), example
        kinds.update(event.kind for event in result)
    assert kinds == DEVICE_EVENT_KINDS


def test_the_documentation_names_every_field() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for kind, fields in EVENT_FIELDS.items():
        section = text.split(f"### `{kind}`", 1)[1].split("\n### ", 1)[0]
        for name, required in fields.items():
            row = re.search(rf"^\| `{name}` \|(.*)$", section, flags=re.MULTILINE)
            assert row is not None, (kind, name)
            # The type cell; what follows a colon describes the members of a record.
            kind_cell = row.group(1).split("|", 1)[0].split(":", 1)[0]
            assert ("**req**" in kind_cell) == required, (kind, name)


def test_limits_match_the_hub() -> None:
    assert MAX_MESSAGE_BYTES == AZURE_MAX_MESSAGE_BYTES
    assert set(EVENT_FIELDS) == DEVICE_EVENT_KINDS
    assert set(TAMPER_STATES) > TAMPER_ALARM_STATES


@pytest.mark.parametrize("module", [events, model])
def test_public_api_is_exported(module: ModuleType) -> None:
    for name in module.__all__:
        assert hasattr(module, name), name
        assert not name.startswith("_")


def test_model_values() -> None:
    assert not DEVICE_EVENT_KINDS & HUB_EVENT_KINDS
    assert UNKNOWN_KIND not in DEVICE_EVENT_KINDS | HUB_EVENT_KINDS
    assert [s.value for s in Severity] == ["low", "medium", "high", "critical"]
    finding = Finding("tamper", "tamper", Severity.HIGH, "d", "the lid opened", time=1.0)
    assert finding.evidence == ()
    assert finding.details == {}
    assert SecurityEvent("connected", "d", 1.0).fields == {}


# --- the parser ---------------------------------------------------------------------------------


def test_every_event_carries_the_callers_context() -> None:
    result = parse([tamper(), 1], source="192.0.2.1")
    assert [(e.device_id, e.time, e.seq, e.source) for e in result] == [
        ("dev1", NOW, 9, "192.0.2.1")
    ] * 2
    assert result[0].device_time == T


def test_the_hundred_and_first_event_is_flagged_not_read() -> None:
    body = [tamper()] * MAX_EVENTS_PER_MESSAGE + [{"event": "camera"}] * 5
    result = parse(body)
    assert len(result) == MAX_EVENTS_PER_MESSAGE + 1
    assert result[-1].kind == UNKNOWN_KIND
    assert result[-1].problem is not None
    assert "105 events" in result[-1].problem


def test_well_formed_events_round_trip_their_fields() -> None:
    event = one(tamper(part="battery"))
    assert event.problem is None
    assert event.fields == {"sensor": "lid", "state": "opened", "part": "battery"}


def test_unknown_type_keeps_its_members() -> None:
    event = one({"event": "camera", "time": T, "lens": "covered", "n": 1})
    assert event.kind == UNKNOWN_KIND
    assert event.fields == {"event": "camera", "lens": "covered", "n": 1}
    assert event.device_time == T
    assert event.problem == 'unknown event type "camera"'


def test_unknown_type_name_is_quoted_and_cleaned() -> None:
    event = one({"event": 'x"\n\u00e9', "time": T})
    assert event.problem == 'unknown event type "x\\"\\ufffd\\u00e9"'
    assert event.fields["event"] == 'x"\ufffd\u00e9'


def test_missing_required_and_bad_optional_fields_are_left_out() -> None:
    event = one({"event": "usb", "time": T, "vendor": 5, "class": ["x"]})
    assert event.kind == "usb"
    assert event.fields == {}
    assert event.problem is not None
    assert "missing 'action'" in event.problem
    assert "'vendor' must be 4 hexadecimal digits" in event.problem
    assert "'class' must be a non-empty string" in event.problem


def test_records_and_lists_of_the_wrong_shape() -> None:
    event = one({"event": "inventory", "time": T, "packages": ["openssl"], "drivers": "none"})
    assert event.fields == {"packages": []}
    assert event.problem is not None
    assert "'packages[0]' must be an object" in event.problem
    assert "'drivers' must be a list" in event.problem


def test_a_given_age_is_not_overwritten() -> None:
    event = one(
        {
            "event": "antimalware",
            "time": T,
            "engine": "e",
            "enabled": True,
            "definitions_time": "2026-11-20T12:00:00Z",
            "definitions_age_hours": 1.5,
        }
    )
    assert event.problem is None
    assert event.fields["definitions_age_hours"] == 1.5
    assert "last_scan_age_hours" not in event.fields


def test_derived_ages_use_the_hub_clock() -> None:
    event = one(
        {
            "event": "antimalware",
            "time": T,
            "engine": "e",
            "enabled": False,
            "definitions_time": "2026-11-20T12:00:00+00:00",
            "last_scan": "2026-11-22T13:00:00+02:00",
        }
    )
    assert event.fields["definitions_age_hours"] == 48.0
    assert event.fields["last_scan_age_hours"] == 1.0


def test_undocumented_members_are_bounded() -> None:
    body = tamper(ext=list(range(300)), more="y")
    event = one(body)
    assert event.problem is not None
    assert f"more than {MAX_LIST_ITEMS} items" in event.problem
    assert f"more than {MAX_EXTRA_VALUES} values" in event.problem
    # The list and its items used the whole budget: "more" did not fit.
    assert len(event.fields["ext"]) == MAX_EXTRA_VALUES - 1
    assert "more" not in event.fields


def test_undocumented_objects_are_bounded_and_cleaned() -> None:
    nested = {f"k{i}": i for i in range(MAX_MEMBERS + 5)}
    event = one(tamper(ext=nested, **{"bad\u0000key": 1}))
    assert len(event.fields["ext"]) == MAX_MEMBERS
    assert event.fields["bad\ufffdkey"] == 1
    assert event.problem is not None
    assert f"more than {MAX_MEMBERS} members" in event.problem
    assert "an undocumented member name holds control characters" in event.problem


def test_clipped_member_names_that_collide_keep_the_first() -> None:
    long_a = "a" * 100 + "1"
    long_b = "a" * 100 + "2"
    event = one(tamper(**{long_a: 1, long_b: 2}))
    assert event.fields["a" * 64] == 1
    assert event.problem is not None
    assert "clipped to 64 characters" in event.problem


def test_the_unknown_events_name_counts_against_the_member_budget() -> None:
    members = {f"m{i}": i for i in range(MAX_MEMBERS)}
    event = one({"event": "camera", "time": T, **members})
    assert len(event.fields) == MAX_MEMBERS
    assert event.fields["event"] == "camera"


def test_a_repeated_reason_counts_once() -> None:
    event = one(tamper(a="x" * 300, b="y" * 300))
    assert event.problem == f"an undocumented member was clipped to {MAX_STRING_CHARS} characters"


def test_problems_are_summarised_and_bounded() -> None:
    packages = [{"name": f"p{i}"} for i in range(40)]
    event = one({"event": "inventory", "time": T, "packages": packages})
    assert event.problem is not None
    # 40 distinct reasons: three shown, the rest counted (16 kept, 24 counted past them).
    assert event.problem.endswith("(and 37 more)")
    assert event.fields == {"packages": []}


def test_a_long_problem_is_clipped() -> None:
    event = one({"event": "\u4e00" * 200, "time": "bad", "x": "y" * 300})
    assert event.problem is not None
    assert len(event.problem) == MAX_PROBLEM_CHARS
    assert event.problem.endswith("\u2026")


def test_a_malformed_device_time_is_kept_clipped() -> None:
    event = one(tamper(time="x\n" * 100))
    assert event.device_time == "x\ufffd" * 32
    assert event.problem is not None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1970-01-01T00:00:00Z", 0.0),
        ("2026-11-22T12:00:00Z", NOW),
        ("2026-11-22T13:30:00+01:30", NOW),
        ("2026-11-22T12:00:00.250000-00:00", NOW + 0.25),
        ("2026-11-22T12:00:00.123456789Z", NOW + 0.123456),
        ("9999-12-31T23:59:59-23:59", 253_402_387_139.0),
        ("0001-01-01T00:00:00+23:59", -62_135_683_140.0),
    ],
)
def test_device_timestamp_accepts(text: str, seconds: float) -> None:
    assert device_timestamp(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-11-22",
        "2026-11-22T12:00:00",
        "2026-11-22T12:00Z",
        "2026-11-22 12:00:00Z",
        "2026-11-22t12:00:00Z",
        "2026-11-22T12:00:00z",
        "2026-11-22T12:00:00+0100",
        "2026-11-22T12:00:00+24:00",
        "2026-11-22T24:00:00Z",
        "2026-12-31T23:59:60Z",
        "2026-02-30T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "2026-W47-7T12:00:00Z",
        "2026-11-22T12:00:00.1234567890Z",
        "\u0662026-11-22T12:00:00Z",
        "2026-11-22T12:00:00Z" + " " * 100,
    ],
)
def test_device_timestamp_refuses(text: str) -> None:
    assert device_timestamp(text) is None


# --- hub records --------------------------------------------------------------------------------


def hub(
    stream: str, *properties: tuple[str, str], device_id: str | None = None
) -> SecurityEvent | None:
    return hub_event(
        stream=stream, device_id=device_id, properties=properties, received_at=NOW, seq=4
    )


def test_auth_failed_names_a_valid_claimed_identity() -> None:
    event = hub(
        "security",
        ("event", "auth-failed"),
        ("peer", "192.0.2.1"),
        ("reason", "bad-credentials"),
        ("client_id", "dev1/mod1"),
    )
    assert event == SecurityEvent(
        kind="auth-failed",
        device_id="dev1/mod1",
        time=NOW,
        fields={
            "event": "auth-failed",
            "peer": "192.0.2.1",
            "reason": "bad-credentials",
            "client_id": "dev1/mod1",
        },
        source="192.0.2.1",
        seq=4,
    )


@pytest.mark.parametrize("client_id", ["bad id", "a/b/c", "", "+", None])
def test_auth_failed_with_an_invalid_or_no_claim_names_nobody(client_id: str | None) -> None:
    properties = [("event", "auth-failed"), ("peer", "::1")]
    if client_id is not None:
        properties.append(("client_id", client_id))
    event = hub("security", *properties)
    assert event is not None
    assert event.kind == "auth-failed"
    assert event.device_id is None
    assert event.source == "::1"


def test_provisioning_refusals_are_auth_failures() -> None:
    event = hub(
        "security",
        ("event", "provisioning-refused"),
        ("peer", "unknown"),
        ("reason", "bad-signature"),
        ("client_id", "sensor-0042"),
    )
    assert event is not None
    assert (event.kind, event.device_id, event.source) == ("auth-failed", "sensor-0042", None)
    assert event.fields["event"] == "provisioning-refused"


def test_lifecycle_records() -> None:
    connected = hub("lifecycle", ("event", "connected"), ("peer", "::1:50000"), device_id="dev1")
    assert connected is not None
    assert (connected.kind, connected.device_id, connected.source) == ("connected", "dev1", "::1")
    gone = hub("lifecycle", ("event", "disconnected"), ("peer", "unknown"), device_id="dev1")
    assert gone is not None
    assert (gone.kind, gone.source) == ("disconnected", None)
    taken = hub(
        "lifecycle",
        ("event", "takeover"),
        ("old_peer", "192.0.2.1:1"),
        ("new_peer", "198.51.100.7:2"),
        device_id="dev1",
    )
    assert taken is not None
    assert (taken.kind, taken.source) == ("takeover", "198.51.100.7")
    assert peer_host(taken.fields["old_peer"]) == "192.0.2.1"
    bare = hub("lifecycle", ("event", "connected"), device_id="dev1")
    assert bare is not None
    assert bare.source is None


@pytest.mark.parametrize(
    ("stream", "properties"),
    [
        ("security", (("event", "publish-denied"), ("peer", "h"))),
        ("security", (("event", "operator-auth-failed"), ("peer", "h"))),
        ("security", (("event", "connected"), ("peer", "h:1"))),
        ("lifecycle", (("event", "auth-failed"), ("client_id", "dev1"))),
        ("telemetry", (("event", "auth-failed"), ("client_id", "dev1"))),
        ("feedback", (("event", "c2d-feedback"),)),
        ("security", ()),
        # A device's own security message forging a hub record.
        (
            "security",
            (("event", "auth-failed"), ("client_id", "victim"), ("ironhub-stream", "security")),
        ),
        (
            "lifecycle",
            (("$.ifid", "urn:azureiot:Security:SecurityAgent:1"), ("event", "takeover")),
        ),
    ],
)
def test_other_records_are_not_events(stream: str, properties: tuple[tuple[str, str], ...]) -> None:
    assert hub(stream, *properties, device_id="dev1") is None


def test_hub_record_properties_are_bounded_and_cleaned() -> None:
    properties = [("event", "auth-failed"), ("event", "connected"), ("peer", "h\n")]
    properties += [(f"p{i}", "v" * 1000) for i in range(50)]
    event = hub("security", *properties)
    assert event is not None
    assert event.fields["event"] == "auth-failed"  # the first occurrence wins
    assert event.source == "h\ufffd"
    assert len(event.fields) == MAX_MEMBERS
    assert all(len(value) <= MAX_STRING_CHARS for value in event.fields.values())


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("192.0.2.1:8883", "192.0.2.1"),
        ("::1:50000", "::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[]:1", None),
        ("unknown", None),
        (":1", None),
        ("host:", None),
        ("host:\u0661", None),
        ("host:x", None),
    ],
)
def test_peer_host(peer: str, host: str | None) -> None:
    assert peer_host(peer) == host


def test_message_event() -> None:
    assert message_event(device_id="dev1", size=512, received_at=NOW, seq=3) == SecurityEvent(
        kind="message", device_id="dev1", time=NOW, fields={"bytes": 512}, seq=3
    )
    assert "message" in HUB_EVENT_KINDS


# --- the fuzz harness (tests/fuzz/fuzz_security_events.py), briefly ----------------------------


def test_a_short_fuzz_run_finds_no_violation() -> None:
    report = HARNESS.run(iterations=3000, seed=11)
    assert report.cases == 3000
    assert report.violations == []
    for kind in (*DEVICE_EVENT_KINDS, UNKNOWN_KIND, "hub-record"):
        assert report.kinds[kind] > 0, kind


def test_the_same_fuzz_seed_replays_the_same_cases() -> None:
    first = HARNESS.run(iterations=300, seed=5)
    second = HARNESS.run(iterations=300, seed=5)
    assert (first.kinds, first.problems) == (second.kinds, second.problems)


def test_fuzz_main_prints_a_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert HARNESS.main(["--iterations", "50", "--seed", "1", "--max-seconds", "60"]) == 0
    output = capsys.readouterr().out
    assert "cases=50" in output
    assert "violations=0" in output


def test_the_harness_oracles_catch_violations() -> None:
    ok = SecurityEvent(
        "tamper",
        HARNESS.DEVICE_ID,
        HARNESS.RECEIVED_AT,
        T,
        {"sensor": "s", "state": "opened"},
        HARNESS.SOURCE,
        HARNESS.SEQ,
    )
    assert HARNESS.check_events([ok]) == []
    forged = [
        [],
        "x",
        [1],
        [SecurityEvent("tamper", "other", 0.0)],
        [SecurityEvent("message", HARNESS.DEVICE_ID, HARNESS.RECEIVED_AT, seq=HARNESS.SEQ)],
        [replace(ok, kind=UNKNOWN_KIND)],
        [replace(ok, device_time=None)],
        [replace(ok, device_time="x" * 65, problem="p")],
        [replace(ok, problem="")],
        [replace(ok, fields={"sensor": "s"})],
        [replace(ok, fields={**ok.fields, "x": float("nan")})],
        [replace(ok, fields={**ok.fields, "x": "\ud800"})],
        [replace(ok, fields={**ok.fields, "x": {1: 2}})],
        [replace(ok, fields={**ok.fields, "x": b"raw"})],
        [replace(ok, fields={**ok.fields, "x": [0] * 5000})],
        [
            replace(
                ok, fields={**ok.fields, "x": dict.fromkeys("abcdefghijklmnopqrstuvwxyz0123456789")}
            )
        ],
        [replace(ok, fields={**ok.fields, "x": [[0] * 4000] * 5})],
    ]
    for events_ in forged:
        assert HARNESS.check_events(events_) != [], events_
    assert HARNESS.check_hub_event("security", (("event", "connected"),)) == []
    assert HARNESS.check_hub_event("security", (("event", "auth-failed"),)) == []

    assert HARNESS.check_hub_event("telemetry", (("event", "auth-failed"),)) == []


def test_the_hub_oracle_catches_violations(monkeypatch: pytest.MonkeyPatch) -> None:
    forged = [
        SecurityEvent("tamper", "dev1", NOW),
        SecurityEvent("message", "dev1", NOW),
        SecurityEvent("auth-failed", "bad id", NOW),
        SecurityEvent("auth-failed", None, NOW, fields={"x": "\n"}),
        SecurityEvent("auth-failed", None, NOW, fields={"x": "y" * 300}),
        SecurityEvent("auth-failed", None, NOW, fields={str(i): "" for i in range(40)}),
    ]
    for event in forged:
        monkeypatch.setattr(HARNESS, "hub_event", lambda event=event, **_: event)
        assert HARNESS.check_hub_event("security", ()) != [], event
    monkeypatch.setattr(HARNESS, "hub_event", lambda **_: SecurityEvent("auth-failed", "d", NOW))
    assert HARNESS.check_hub_event("security", ()) == []
    assert HARNESS.check_hub_event("security", (("ironhub-stream", "security"),)) != []
