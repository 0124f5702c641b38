"""Fuzz harness for the hub's Azure rules: device topics, subscriptions and twin patches.

Not collected by pytest (tests/unit/test_cloud_vectors.py runs it briefly). Each case takes a
seed from ``tests/vectors/azure_cloud.json`` (publish topics and bodies, subscription filters)
or from the SDK's own topics, mutates it (characters and tokens of the Azure grammar: ``/``,
``+``, ``#``, ``$``, ``%``-escapes, ``?&=``, ids, JSON brackets and constants, invalid UTF-8)
and hands it to one of the pure functions the endpoint calls on device input:

- :func:`ironhub.codec.azure.classify_device_publish` (then, for a reported patch, the body
  through :func:`ironhub.registry.twin.parse_patch`);
- :func:`ironhub.registry.twin.parse_patch` and :func:`~ironhub.registry.twin.patch_reported`,
  with the default limits or small ones;
- :func:`ironhub.codec.azure.check_device_subscribe`.

The contract checked on every case: each function returns or raises ``ValidationError`` or
``AuthorizationError`` (``parse_patch`` only ``ValidationError``); nothing else may escape. What
is accepted is checked against independent oracles:

- an accepted topic has exactly the identity's own shape; a ``$rid`` is 1-128 printable ASCII
  characters, the answer topics built from it never raise, and the SDK's own parsing of the
  answer gives the same rid back; a method status fits in 32 bits;
- an accepted patch is what ``json.loads`` reads from the same bytes, checks again unchanged,
  nests no deeper than the limit, and a twin built from it serialises;
- a filter is accepted exactly when it is one of the identity's four filters, with its kind;
- a malformed authenticated identity is always refused.

Usage (from the repository root)::

    .venv/bin/python tests/fuzz/fuzz_cloud.py [--iterations N] [--seed S] [--max-seconds T]

It prints the number of cases, acceptances per kind and the most common refusals, then every
violation with its input, and exits 1 if there was any. The default is 100000 cases; the same
``--seed`` replays the same cases. ``run()`` is importable for tests.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
import traceback
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from tests.fuzz import mutators
from tests.vectors.load import load_cloud_vectors

from ironhub.codec.azure import (
    SubscriptionKind,
    check_device_subscribe,
    classify_device_publish,
    method_request_topic,
    twin_response_topic,
)
from ironhub.errors import AuthorizationError, ValidationError
from ironhub.registry.twin import Twin, TwinLimits, check_patch, parse_patch, patch_reported

IDENTITIES: tuple[tuple[str, str | None], ...] = (("dev1", None), ("dev1", "mod1"))
#: Authenticated identities that can never be valid: every rule must refuse them.
BAD_IDENTITIES: tuple[tuple[str, str | None], ...] = (
    ("", None),
    ("dev1", ""),
    ("de/v1", None),
    ("+", None),
    ("dev1", "m#"),
    ("a" * 129, None),
    ("-dev", None),
)
LIMITS = (
    TwinLimits(),
    TwinLimits(
        max_section_bytes=256,
        max_tags_bytes=64,
        max_value_bytes=16,
        max_key_bytes=8,
        max_depth=2,
        max_patch_bytes=512,
    ),
)
#: Pieces of the grammar (and of its attacks) that random characters would rarely produce.
TEXT_TOKENS = (
    "/", "+", "#", "$", "%", "%2", "%zz", "%24", "%2F", "%2f", "%3F", "%26", "%3D", "%00",
    "%20", "%C3", "%C3%A9", "%ff", "%E2%82", "?", "&", "=", "$rid=", "%24rid=", "$version=",
    " ", "\x00", "\x7f", "\x85", "\u00e9", "\ud800", "\uffff", "\ufeff", "\u0662", "..", "",
    "devices", "dev1", "dev2", "mod1", "mod2", "DEV1", "modules", "messages", "events",
    "devicebound", "inputs", "$iothub", "twin", "GET", "PATCH", "properties", "reported",
    "desired", "methods", "POST", "res", "200", "-1", "2147483648", "0x1", "_", "%24.on=",
    "%24.cdid=", "%24.cmid=", "%24.mid=", "$.ifid=", "iothub-", "ironhub-stream=", "security",
    "$share/g/", "$SYS/",
)  # fmt: skip
PAYLOAD_TOKENS = (
    b"[", b"]", b"{", b"}", b'"', b"\\", b",", b":", b"null", b"true", b"NaN", b"Infinity",
    b"-Infinity", b"1e400", b"-0", b"1.5", b"9" * 25, b"4503599627370496", b'"a.b"', b'"$x"',
    b'"a b"', b'""', b'"k":', b"\\ud800", b"\\u0000", b"\\u0085", b"\xff", b"\x80",
    b"\xc0\xaf", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\x00", b"[" * 50, b"{" * 20, b" ",
)  # fmt: skip
MAX_TEXT_CHARS = 8192
MAX_PAYLOAD_BYTES = 200_000

_RID_RE = re.compile(r"[\x21-\x7e]{1,128}")
_METHOD_RESPONSE_RE = re.compile(r"\$iothub/methods/res/-?[0-9]{1,10}/")
_IOTHUB_PATHS = {
    "twin-get": "$iothub/twin/GET/",
    "twin-patch-reported": "$iothub/twin/PATCH/properties/reported/",
}


@dataclass
class Report:
    """What a fuzz run found."""

    cases: int = 0
    accepted: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Seeds:
    """The corpora: topics with their bodies, bare bodies, and subscription filters."""

    publishes: tuple[tuple[str, bytes], ...]
    payloads: tuple[bytes, ...]
    filters: tuple[str, ...]


def seeds() -> Seeds:
    """Every vector of azure_cloud.json, plus what the SDK itself sends."""
    vectors = load_cloud_vectors()
    publishes = [(v.topic, v.payload) for v in vectors.publishes]
    publishes += [
        (
            (
                "devices/dev1/messages/events/%24.mid=msg-0001&%24.cid=corr-0001&%24.uid=user-1"
                "&%24.ct=application%2Fjson&%24.ce=utf-8&alert=true&zone%20name=a%2Fb%26c%3Dd"
            ),
            b"{}",
        ),
        (
            "devices/dev1/messages/events/%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1",
            b"",
        ),
        ("devices/dev1/modules/mod1/messages/events/%24.on=alerts", b"x"),
        ("$iothub/twin/PATCH/properties/reported/?$rid=2", b'{"a":{"b":[1,2,{"c":null}]}}'),
        ("$iothub/methods/res/200/?$rid=0123456789abcdef", b'{"result":1}'),
    ]
    payloads = [p for _, p in publishes if p.strip()]
    filters = [v.topic_filter for v in vectors.subscriptions]
    return Seeds(tuple(publishes), tuple(payloads), tuple(filters))


def mutate_text(text: str, rng: random.Random, pool: tuple[str, ...]) -> str:
    """:func:`tests.fuzz.mutators.mutate_text` with this harness's tokens."""
    return mutators.mutate_text(text, rng, pool, tokens=TEXT_TOKENS, max_chars=MAX_TEXT_CHARS)


def mutate_payload(data: bytes, rng: random.Random, pool: tuple[bytes, ...]) -> bytes:
    """:func:`tests.fuzz.mutators.mutate_payload` with this harness's tokens."""
    return mutators.mutate_payload(
        data, rng, pool, tokens=PAYLOAD_TOKENS, max_bytes=MAX_PAYLOAD_BYTES
    )


def _identity(rng: random.Random) -> tuple[str, str | None, bool]:
    if rng.random() < 0.05:
        return (*rng.choice(BAD_IDENTITIES), False)
    return (*rng.choice(IDENTITIES), True)


def _sdk_query(topic: str) -> dict[str, str]:
    # What the SDK's _extract_properties does with an answer topic (azure-iot-mqtt.md §3.3):
    # split at the first '?', every '&', every '='; unquote the values.
    items = topic.split("?", 1)[1].split("&")
    return {item.split("=")[0]: urllib.parse.unquote(item.split("=")[1]) for item in items}


def check_publish(topic: str, payload: bytes, rng: random.Random, report: Report) -> None:
    """classify_device_publish, then parse_patch for an accepted reported patch."""
    device_id, module_id, valid = _identity(rng)
    try:
        classified = classify_device_publish(topic, device_id=device_id, module_id=module_id)
    except (AuthorizationError, ValidationError) as refused:
        report.refusals[f"publish: {refused}"] += 1
        return
    report.accepted[classified.kind] += 1
    problem = _publish_problem(topic, classified, device_id, module_id, valid)
    if problem is not None:
        report.violations.append(f"{problem}: {device_id!r}/{module_id!r} {topic!r}")
        return
    if classified.kind == "twin-patch-reported":
        check_patch_body(payload, rng, report)


def _publish_problem(
    topic: str, classified: Any, device_id: str, module_id: str | None, valid: bool
) -> str | None:
    if not valid:
        return "accepted for a malformed identity"
    if "+" in topic or "#" in topic:
        return "accepted a wildcard"
    if classified.kind == "telemetry":
        own = ["devices", device_id] + (["modules", module_id] if module_id else [])
        levels = topic.split("/")
        if levels[: len(own) + 2] != [*own, "messages", "events"] or len(levels) > len(own) + 3:
            return "telemetry accepted outside the identity's own topic"
        if classified.request_id is not None or classified.status is not None:
            return "telemetry with a request id or status"
        return None
    path = topic.partition("?")[0]
    if classified.kind == "method-response":
        if not _METHOD_RESPONSE_RE.fullmatch(path):
            return "method response accepted on another path"
        if not isinstance(classified.status, int) or not -(2**31) <= classified.status < 2**31:
            return "method status outside int32"
    elif path != _IOTHUB_PATHS.get(classified.kind):
        return "twin request accepted on another path"
    rid = classified.request_id
    if not isinstance(rid, str) or not _RID_RE.fullmatch(rid):
        return "accepted request id breaks the rid rule"
    try:
        answers = (twin_response_topic(200, rid, 1), method_request_topic("m", rid))
    except Exception:
        return f"cannot build an answer for an accepted rid: {traceback.format_exc(limit=-1)}"
    if any(_sdk_query(answer)["$rid"] != rid for answer in answers):
        return "the SDK would read a different rid from the answer"
    return None


def check_patch_body(payload: bytes, rng: random.Random, report: Report) -> None:
    """parse_patch, then patch_reported on a new twin; check what is accepted."""
    limits = rng.choice(LIMITS)
    try:
        patch = parse_patch(payload, limits=limits)
    except ValidationError as refused:
        report.refusals[f"patch: {refused}"] += 1
        return
    except Exception:
        report.violations.append(f"{traceback.format_exc(limit=-1).strip()}: {payload!r}")
        return
    report.accepted["patch"] += 1
    problem = _patch_problem(payload, patch, limits)
    if problem is not None:
        report.violations.append(f"{problem}: {payload[:2000]!r}")
        return
    try:
        twin = patch_reported(Twin.new("dev1", 0.0), patch, limits=limits, now=1.0)
    except ValidationError as refused:
        report.refusals[f"merge: {refused}"] += 1
        return
    except Exception:
        report.violations.append(f"{traceback.format_exc(limit=-1).strip()}: {payload!r}")
        return
    try:
        twin.to_record()
        if json.loads(twin.device_document())["reported"]["$version"] != 2:
            report.violations.append(f"wrong reported version: {payload[:2000]!r}")
    except Exception:
        report.violations.append(f"{traceback.format_exc(limit=-1).strip()}: {payload!r}")


def _depth(value: object) -> int:
    """Container levels below ``value`` (an object directly in the section is level 1)."""
    children: list[object] = []
    if isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, list):
        children = value
    return max((1 + _depth(c) for c in children if isinstance(c, dict | list)), default=0)


def _patch_problem(payload: bytes, patch: dict[str, Any], limits: TwinLimits) -> str | None:
    if len(payload) > limits.max_patch_bytes:
        return "accepted a body over max_patch_bytes"
    try:
        reference = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):
        return "accepted a body json.loads refuses"
    if reference != patch or not isinstance(patch, dict):
        return "accepted patch differs from what json.loads reads"
    if _depth(patch) > limits.max_depth:
        return "accepted a patch nested deeper than max_depth"
    try:
        if check_patch(patch, limits=limits) != patch:
            return "check_patch changes an accepted patch"
    except ValidationError:
        return "check_patch refuses what parse_patch accepted"
    return None


def check_subscribe(topic_filter: str, rng: random.Random, report: Report) -> None:
    """check_device_subscribe against the list of the identity's own filters."""
    device_id, module_id, valid = _identity(rng)
    own = (
        {f"devices/{device_id}/messages/devicebound/#": SubscriptionKind.C2D}
        if module_id is None
        else {f"devices/{device_id}/modules/{module_id}/inputs/#": SubscriptionKind.MODULE_INPUTS}
    )
    own |= {
        "$iothub/twin/res/#": SubscriptionKind.TWIN_RESPONSES,
        "$iothub/twin/PATCH/properties/desired/#": SubscriptionKind.DESIRED,
        "$iothub/methods/POST/#": SubscriptionKind.METHODS,
    }
    expected = own.get(topic_filter) if valid else None
    try:
        kind = check_device_subscribe(topic_filter, device_id=device_id, module_id=module_id)
    except (AuthorizationError, ValidationError) as refused:
        report.refusals[f"subscribe: {refused}"] += 1
        if expected is not None:
            report.violations.append(f"refused an own filter: {topic_filter!r}")
        return
    report.accepted["subscribe"] += 1
    if kind is not expected:
        report.violations.append(
            f"accepted {topic_filter!r} as {kind} for {device_id!r}/{module_id!r}"
        )


def run_case(seeds_: Seeds, rng: random.Random, report: Report) -> None:
    """One case on one of the three targets; escaped exceptions are violations."""
    target = rng.random()
    topic = filter_ = ""
    payload = b""
    try:
        if target < 0.5:
            topic, payload = rng.choice(seeds_.publishes)
            topics = tuple(t for t, _ in seeds_.publishes)
            if rng.random() < 0.8:
                topic = mutate_text(topic, rng, topics)
            if rng.random() < 0.5:
                payload = mutate_payload(payload, rng, seeds_.payloads)
            check_publish(topic, payload, rng, report)
        elif target < 0.75:
            payload = mutate_payload(rng.choice(seeds_.payloads), rng, seeds_.payloads)
            check_patch_body(payload, rng, report)
        else:
            filter_ = rng.choice(seeds_.filters)
            if rng.random() < 0.8:
                filter_ = mutate_text(filter_, rng, seeds_.filters)
            check_subscribe(filter_, rng, report)
    except Exception:
        report.violations.append(
            f"{traceback.format_exc(limit=-1).strip()}\n"
            f"  input: topic={topic!r} filter={filter_!r} payload={payload[:2000]!r}"
        )


def run(iterations: int, seed: int, max_seconds: float | None = None) -> Report:
    """Run ``iterations`` cases (fewer if ``max_seconds`` runs out) and report."""
    rng = random.Random(seed)
    corpora = seeds()
    report = Report()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    for _ in range(iterations):
        if deadline is not None and time.monotonic() > deadline:
            break
        run_case(corpora, rng, report)
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
    accepted = " ".join(f"{kind}={count}" for kind, count in sorted(report.accepted.items()))
    print(f"cases={report.cases} refusals={report.refusals.total()} accepted: {accepted}")
    print(f"violations={len(report.violations)} seed={arguments.seed} seconds={elapsed:.1f}")
    for reason, count in report.refusals.most_common(12):
        print(f"  {count:8d}  {reason}")
    for violation in report.violations:
        print(f"VIOLATION {violation}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
