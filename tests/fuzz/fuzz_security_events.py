"""Fuzz harness for the security event parser (src/ironhub/monitor/events.py).

Not collected by pytest (tests/unit/monitor/test_events.py runs it briefly). Each case takes a
seed body from ``tests/vectors/security_events.json``, mutates it, either as bytes (tokens of
the schema: brackets, quotes, escapes, event and field names, bad times, NaN, invalid UTF-8) or,
for a body that parses, as a JSON tree (a member or item replaced by an edge value of some type,
deleted or added, so that the per-field checks are reached), and hands it to
:func:`~ironhub.monitor.events.parse_security_message`; one case in ten builds a
hub record from a pool of properties (some carrying a security-stream marker) and hands it to
:func:`~ironhub.monitor.events.hub_event`.

The contract checked on every case (the parser never refuses, so there is no "or raises"):

- parsing never raises and returns 1 to ``MAX_EVENTS_PER_MESSAGE + 1`` events;
- every event carries the caller's device id, ``received_at``, ``seq`` and ``source``, a kind
  that is a device kind or ``unknown``, a ``problem`` of at most ``MAX_PROBLEM_CHARS``;
- ``problem is None`` only for a known kind with a valid ``time`` and every required field;
- ``fields`` is strict JSON that encodes as UTF-8 (no NaN, no lone surrogate), with no string
  longer than ``MAX_LINE_CHARS``, no control character, no object wider than ``MAX_MEMBERS``,
  no list longer than ``MAX_INVENTORY_ITEMS``, and a bounded number of values;
- a hub record yields ``None`` or a hub event, never a device kind, and ``None`` whenever its
  properties carry a security-stream marker; an ``auth-failed`` device id is a valid identity.

Usage (from the repository root)::

    .venv/bin/python tests/fuzz/fuzz_security_events.py [--iterations N] [--seed S]
        [--max-seconds T]

It prints the number of cases, the kinds produced and the most common problems, then every
violation with its input, and exits 1 if there was any. The same ``--seed`` replays the same
cases. ``run()``, ``check_events()`` and ``load_security_event_vectors()`` are importable for
tests.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import re
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from tests.fuzz import mutators
from tests.vectors.load import VECTORS_DIR, expand_text

from ironhub.codec.azure import split_identity
from ironhub.errors import ValidationError
from ironhub.monitor.events import (
    EVENT_FIELDS,
    MAX_EVENTS_PER_MESSAGE,
    MAX_INVENTORY_ITEMS,
    MAX_LINE_CHARS,
    MAX_MEMBERS,
    MAX_MESSAGE_BYTES,
    MAX_PROBLEM_CHARS,
    UNKNOWN_KIND,
    device_timestamp,
    hub_event,
    parse_security_message,
)
from ironhub.monitor.model import DEVICE_EVENT_KINDS, HUB_EVENT_KINDS, SecurityEvent

#: When the vectors' messages were received: 2026-11-22T12:00:00Z (their "time" is 11:00Z).
RECEIVED_AT = 1_795_348_800.0
DEVICE_ID = "sensor-0042"
SEQ = 77
SOURCE = "192.0.2.10"

_BODY_KEYS = ("json", "text", "hex")
_EXPECT_KEYS = {"kind", "problem"}
_EXPECT_OPTIONAL = {"fields", "device_time", "times"}


@dataclass(frozen=True)
class ExpectedEvent:
    """One expected event of a vector: its kind, and ``None`` or a substring of its problem.

    ``fields`` must be a subset of the event's fields (equal values for the keys it names);
    ``device_time`` is compared when the vector names it (``"device_time": null`` included).
    ``times`` repeats the expectation.
    """

    kind: str
    problem: str | None
    fields: dict[str, Any] | None = None
    device_time: str | None = None
    check_device_time: bool = False
    times: int = 1


@dataclass(frozen=True)
class SecurityEventVector:
    """One case of ``security_events.json`` (format: tests/vectors/README.md)."""

    name: str
    body: bytes
    expect: tuple[ExpectedEvent, ...]
    note: str = ""

    def expected_events(self) -> list[ExpectedEvent]:
        """The expectations with ``times`` expanded, one per event."""
        return [item for item in self.expect for _ in range(item.times)]


def load_security_event_vectors(name: str = "security_events") -> tuple[SecurityEventVector, ...]:
    """Return the vectors of ``<name>.json``, checked against the format.

    Raises:
        ValueError: the file breaks the format.
    """
    path = VECTORS_DIR / (name if name.endswith(".json") else f"{name}.json")
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise ValueError(f"{path.name}: the top level must be a list")
    names: set[str] = set()
    return tuple(_vector(path.name, item, names) for item in raw)


def _vector(file_name: str, item: Any, names: set[str]) -> SecurityEventVector:
    if not isinstance(item, dict):
        raise ValueError(f"{file_name}: every vector must be an object")
    label = f"{file_name}: {item.get('name')!r}"
    if not isinstance(item.get("name"), str) or item["name"] in names:
        raise ValueError(f"{label}: names must be unique strings")
    names.add(item["name"])
    bodies = [key for key in _BODY_KEYS if key in item]
    if len(bodies) != 1:
        raise ValueError(f"{label}: exactly one of json, text and hex")
    if not set(item) <= {"name", "expect", "note", *_BODY_KEYS}:
        raise ValueError(f"{label}: keys are name, expect, note and one of json, text, hex")
    if bodies[0] == "json":
        body = json.dumps(item["json"], ensure_ascii=False).encode("utf-8")
    elif bodies[0] == "text":
        body = expand_text(item["text"], label).encode("utf-8", "surrogatepass")
    else:
        body = bytes.fromhex(item["hex"])
    expect = item.get("expect")
    if not isinstance(expect, list) or not expect:
        raise ValueError(f"{label}: expect must be a non-empty list")
    return SecurityEventVector(
        name=item["name"],
        body=body,
        expect=tuple(_expected(label, entry) for entry in expect),
        note=item.get("note", ""),
    )


def _expected(label: str, entry: Any) -> ExpectedEvent:
    if (
        not isinstance(entry, dict)
        or not set(entry) >= _EXPECT_KEYS
        or not set(entry) <= _EXPECT_KEYS | _EXPECT_OPTIONAL
    ):
        raise ValueError(f"{label}: an expectation has kind, problem and optional fields")
    if entry["kind"] not in DEVICE_EVENT_KINDS | {UNKNOWN_KIND}:
        raise ValueError(f"{label}: kind must be a device event kind or unknown")
    if entry["problem"] is not None and not isinstance(entry["problem"], str):
        raise ValueError(f"{label}: problem must be null or a substring")
    times = entry.get("times", 1)
    if not isinstance(times, int) or isinstance(times, bool) or times < 1:
        raise ValueError(f"{label}: times must be a positive integer")
    fields = entry.get("fields")
    if fields is not None and not isinstance(fields, dict):
        raise ValueError(f"{label}: fields must be an object")
    return ExpectedEvent(
        kind=entry["kind"],
        problem=entry["problem"],
        fields=fields,
        device_time=entry.get("device_time"),
        check_device_time="device_time" in entry,
        times=times,
    )


def mismatch(vector: SecurityEventVector, events: list[SecurityEvent]) -> str | None:
    """Why ``events`` do not meet ``vector``'s expectations, or ``None``."""
    expected = vector.expected_events()
    if len(events) != len(expected):
        return f"{len(events)} events, expected {len(expected)}"
    for index, (event, wanted) in enumerate(zip(events, expected, strict=True)):
        problem = _event_mismatch(event, wanted)
        if problem is not None:
            return f"event {index}: {problem} (got {event!r})"
    return None


def _event_mismatch(event: SecurityEvent, wanted: ExpectedEvent) -> str | None:
    if event.kind != wanted.kind:
        return f"kind {event.kind!r}, expected {wanted.kind!r}"
    if wanted.problem is None and event.problem is not None:
        return "a problem, expected none"
    if wanted.problem is not None and (
        event.problem is None or wanted.problem not in event.problem
    ):
        return f"problem does not contain {wanted.problem!r}"
    for key, value in (wanted.fields or {}).items():
        if key not in event.fields or event.fields[key] != value:
            return f"fields[{key!r}] differs"
    if wanted.check_device_time and event.device_time != wanted.device_time:
        return "device_time differs"
    return None


# --- the oracle --------------------------------------------------------------------------------

_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")
#: The most JSON values an event may hold: a full inventory (packages of 3 strings, drivers of
#: 2, the os of 3) and the undocumented budget. Far below what an unbounded parser would keep
#: of a 256 KiB body of one-character values.
MAX_VALUES_PER_EVENT = 4 * MAX_INVENTORY_ITEMS + 3 * 256 + 8 + 32 + 256 + 64


def _walk(value: object, counts: Counter[str], violations: list[str]) -> None:
    counts["values"] += 1
    if isinstance(value, str):
        if len(value) > MAX_LINE_CHARS or _UNSAFE.search(value):
            violations.append("a string is too long or holds unsafe characters")
    elif isinstance(value, list):
        if len(value) > MAX_INVENTORY_ITEMS:
            violations.append("a list is too long")
        for item in value:
            _walk(item, counts, violations)
    elif isinstance(value, dict):
        if len(value) > MAX_MEMBERS:
            violations.append("an object has too many members")
        for key, item in value.items():
            if not isinstance(key, str):
                violations.append("a key is not a string")
            _walk(key, counts, violations)
            _walk(item, counts, violations)
    elif value is not None and not isinstance(value, bool | int | float):
        violations.append(f"a value of type {type(value).__name__}")


def check_events(events: object, *, source: str | None = SOURCE) -> list[str]:
    """The contract of parse_security_message (module docstring); the violations found."""
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS_PER_MESSAGE + 1:
        return ["not a list of 1 to 101 events"]
    violations: list[str] = []
    for event in events:
        if not isinstance(event, SecurityEvent):
            violations.append("not a SecurityEvent")
            continue
        violations += _event_violations(event, source)
    return violations


def _event_violations(event: SecurityEvent, source: str | None) -> list[str]:
    violations: list[str] = []
    if (event.device_id, event.time, event.seq, event.source) != (
        DEVICE_ID,
        RECEIVED_AT,
        SEQ,
        source,
    ):
        violations.append("device id, time, seq or source not the caller's")
    if event.kind not in DEVICE_EVENT_KINDS | {UNKNOWN_KIND}:
        violations.append(f"kind {event.kind!r}")
    if event.problem is not None and (
        not isinstance(event.problem, str) or not 0 < len(event.problem) <= MAX_PROBLEM_CHARS
    ):
        violations.append("problem is not a short text")
    if event.device_time is not None and len(event.device_time) > 64:
        violations.append("device_time too long")
    if event.problem is None:
        if event.kind == UNKNOWN_KIND:
            violations.append("an unknown event without a problem")
        elif event.device_time is None or device_timestamp(event.device_time) is None:
            violations.append("a well-formed event without a valid time")
        elif any(
            required and name not in event.fields
            for name, required in EVENT_FIELDS[event.kind].items()
        ):
            violations.append("a well-formed event without a required field")
    try:
        json.dumps(event.fields, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        violations.append(f"fields are not strict JSON: {exc}")
    counts: Counter[str] = Counter()
    _walk(dict(event.fields), counts, violations)
    if counts["values"] > MAX_VALUES_PER_EVENT:
        violations.append(f"{counts['values']} values in one event")
    return violations


def check_hub_event(stream: str, properties: tuple[tuple[str, str], ...]) -> list[str]:
    """The contract of hub_event; the violations found."""
    event = hub_event(
        stream=stream, device_id=DEVICE_ID, properties=properties, received_at=RECEIVED_AT, seq=SEQ
    )
    if event is None:
        return []
    violations: list[str] = []
    marked = ("$.ifid", "urn:azureiot:Security:SecurityAgent:1") in properties or (
        "ironhub-stream",
        "security",
    ) in properties
    if marked:
        violations.append("a device security message read as a hub record")
    if event.kind not in HUB_EVENT_KINDS or event.kind == "message":
        violations.append(f"hub kind {event.kind!r}")
    if event.kind == "auth-failed" and event.device_id is not None:
        try:
            split_identity(event.device_id)
        except ValidationError:
            violations.append("auth-failed names an invalid identity")
    if len(event.fields) > MAX_MEMBERS or any(
        len(value) > 256 or _UNSAFE.search(value) for value in event.fields.values()
    ):
        violations.append("hub fields unbounded or unsafe")
    return violations


# --- mutation ------------------------------------------------------------------------------------

#: Pieces of the schema (and of its attacks) that random bytes would rarely produce.
PAYLOAD_TOKENS = (
    b"[", b"]", b"{", b"}", b'"', b"\\", b",", b":", b"null", b"true", b"false", b"NaN",
    b"Infinity", b"-Infinity", b"1e400", b"-0", b"1.5", b"9" * 25, b"65536", b"-1", b'""',
    b'"event":', b'"time":', b'"tamper"', b'"usb"', b'"login"', b'"inventory"',
    b'"antimalware"', b'"ports"', b'"integrity"', b'"auditlog"', b'"camera"', b'"state":',
    b'"opened"', b'"sensor":', b'"action":', b'"vendor":', b'"0x046D"', b'"packages":',
    b'"version":', b'"name":', b'"os":', b'"listening":', b'"port":', b'"protocol":',
    b'"definitions_time":', b'"definitions_age_hours":', b'"last_scan":', b'"detections":',
    b'"expected":', b'"line":', b'"2026-11-22T11:00:00Z"', b'"2026-02-30T00:00:00Z"',
    b'"2026-11-22T11:00:00+24:00"', b'"9999-12-31T23:59:59-23:59"', b'"0001-01-01T00:00:00+23:59"',
    b"\\ud800", b"\\u0000", b"\\n", b"\xff", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80",
    b"\xef\xbb\xbf", b"\x00", b"[" * 10, b"{" * 5, b" ", b"x" * 300,
)  # fmt: skip
MAX_PAYLOAD_BYTES = MAX_MESSAGE_BYTES + 1024

#: Properties hub records carry, and some a device might forge.
PROPERTY_POOL = (
    ("event", "auth-failed"), ("event", "provisioning-refused"), ("event", "connected"),
    ("event", "disconnected"), ("event", "takeover"), ("event", "publish-denied"),
    ("event", "operator-auth-failed"), ("peer", "192.0.2.1"), ("peer", "192.0.2.1:50000"),
    ("peer", "::1:50000"), ("peer", "[::1]:1"), ("peer", "unknown"), ("peer", ":1"),
    ("peer", "host:"), ("peer", "h:\u0661"), ("new_peer", "198.51.100.2:4242"),
    ("old_peer", "192.0.2.1:1"), ("client_id", "sensor-0042"), ("client_id", "dev/mod"),
    ("client_id", "a/b/c"), ("client_id", "bad id\n"), ("client_id", "x" * 300),
    ("client_id", ""), ("reason", "bad-credentials"), ("reason", "storage-unavailable"),
    ("$.ifid", "urn:azureiot:Security:SecurityAgent:1"), ("ironhub-stream", "security"),
    ("ironhub-stream", "telemetry"), ("\ud800", "\x00"),
)  # fmt: skip
STREAMS = ("security", "lifecycle", "telemetry", "feedback")


#: Values a structural mutation puts in place of a member or item: every JSON type, and the
#: edge values of the schema's checks.
VALUE_POOL: tuple[Any, ...] = (
    None, True, False, 0, -1, 1.5, 65535, 65536, 10**19, "", "x", "x" * 300, "a\nb", "\ud800",
    "\u0000", "0x046D", "zz", "ab" * 32, "AB" * 32, "2026-11-22T11:00:00Z",
    "2026-11-22T11:00:00", "opened", "tcp", "sctp", [], {}, [1, "a"], {"name": "n"},
    {"name": "n", "version": "1"}, [{"name": "n", "version": "1"}],
    [{"protocol": "udp", "port": 53}], {"k": {"k": {"k": {"k": {}}}}},
)  # fmt: skip
MEMBER_NAMES = tuple(
    {name for fields in EVENT_FIELDS.values() for name in fields} | {"event", "time", "x"}
)


def _pool_value(rng: random.Random) -> Any:
    # A copy: the pool's lists and objects must not be shared with (and grown by) a document.
    return copy.deepcopy(rng.choice(VALUE_POOL))


def mutate_document(document: Any, rng: random.Random) -> Any:
    """Replace, delete or add one member or item somewhere in a parsed body (in place)."""
    containers: list[Any] = []
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict | list) and len(containers) < 512:
            containers.append(value)
            stack.extend(value.values() if isinstance(value, dict) else value)
    if not containers:
        return _pool_value(rng)
    target = rng.choice(containers)
    operation = rng.random()
    if isinstance(target, dict):
        name = rng.choice(list(target) or list(MEMBER_NAMES))
        if operation < 0.2:
            target.pop(name, None)
        elif operation < 0.4:
            target[rng.choice(MEMBER_NAMES)] = _pool_value(rng)
        else:
            target[name] = _pool_value(rng)
    elif target and operation < 0.5:
        target[rng.randrange(len(target))] = _pool_value(rng)
    elif target and operation < 0.7:
        del target[rng.randrange(len(target))]
    else:
        target.append(_pool_value(rng))
    return document


def mutate_structure(data: bytes, rng: random.Random) -> bytes:
    """A structural mutation of a body that parses as JSON; other bodies are returned as is."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return data
    for _ in range(rng.choice(mutators.OPERATION_COUNTS)):
        document = mutate_document(document, rng)
    return json.dumps(document, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")


def seeds() -> tuple[bytes, ...]:
    """The bodies of every vector; the large ones trimmed so that mutations stay cheap."""
    return tuple(vector.body[:8192] for vector in load_security_event_vectors())


def mutate_payload(data: bytes, rng: random.Random, pool: tuple[bytes, ...]) -> bytes:
    """:func:`tests.fuzz.mutators.mutate_payload` with this harness's tokens."""
    return mutators.mutate_payload(
        data, rng, pool, tokens=PAYLOAD_TOKENS, max_bytes=MAX_PAYLOAD_BYTES
    )


@dataclass
class Report:
    """What a fuzz run found."""

    cases: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)


def run_case(corpus: tuple[bytes, ...], rng: random.Random, report: Report) -> None:
    """One case on the parser or on hub_event; escaped exceptions are violations."""
    data = b""
    properties: tuple[tuple[str, str], ...] = ()
    try:
        if rng.random() < 0.1:
            properties = tuple(rng.choice(PROPERTY_POOL) for _ in range(rng.randint(0, 6)))
            stream = rng.choice(STREAMS)
            found = check_hub_event(stream, properties)
            report.kinds["hub-record"] += 1
        else:
            data = rng.choice(corpus)
            operation = rng.random()
            if operation < 0.45:
                data = mutate_structure(data, rng)
            elif operation < 0.9:
                data = mutate_payload(data, rng, corpus)
            source = rng.choice((SOURCE, None))
            events = parse_security_message(
                device_id=DEVICE_ID, payload=data, received_at=RECEIVED_AT, seq=SEQ, source=source
            )
            found = check_events(events, source=source)
            for event in events:
                report.kinds[event.kind] += 1
                if event.problem is not None:
                    report.problems[event.problem.split(";")[0][:60]] += 1
        report.violations += [f"{v}\n  input: {data[:2000]!r} {properties!r}" for v in found]
    except Exception:
        report.violations.append(
            f"{traceback.format_exc(limit=-1).strip()}\n  input: {data[:2000]!r} {properties!r}"
        )


def run(iterations: int, seed: int, max_seconds: float | None = None) -> Report:
    """Run ``iterations`` cases (fewer if ``max_seconds`` runs out) and report."""
    rng = random.Random(seed)
    corpus = seeds()
    report = Report()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    for _ in range(iterations):
        if deadline is not None and time.monotonic() > deadline:
            break
        run_case(corpus, rng, report)
        report.cases += 1
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=None)
    arguments = parser.parse_args(argv)
    started = time.monotonic()
    report = run(arguments.iterations, arguments.seed, arguments.max_seconds)
    elapsed = time.monotonic() - started
    kinds = " ".join(f"{kind}={count}" for kind, count in sorted(report.kinds.items()))
    print(f"cases={report.cases} kinds: {kinds}")
    print(f"violations={len(report.violations)} seed={arguments.seed} seconds={elapsed:.1f}")
    for problem, count in report.problems.most_common(12):
        print(f"  {count:8d}  {problem}")
    for violation in report.violations:
        print(f"VIOLATION {violation}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
