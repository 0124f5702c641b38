"""Fuzz harness for the DPS wire codec (src/ironhub/codec/dps.py).

Not collected by pytest (tests/unit/codec/test_dps.py runs it briefly). Each case takes a seed
from ``tests/vectors/dps.json`` (usernames, request topics, register bodies) or from what the
SDK and the service themselves produce (answer topics, the §5.4 token), mutates it (characters
and tokens of the DPS grammar: ``/``, ``$``, ``+``, ``#``, ``%``-escapes, ``?&=``, ids, JSON
brackets and constants, invalid UTF-8) and hands it to the pure function the provisioning
endpoint (or ironhub's own DPS client) calls on it:

- :func:`~ironhub.codec.dps.parse_dps_username` (with the vector's ClientId, or a mutated one);
- :func:`~ironhub.codec.dps.parse_dps_request`;
- :func:`~ironhub.codec.dps.parse_register_body`;
- :func:`~ironhub.codec.dps.parse_response_topic` (the client side);
- :func:`~ironhub.codec.sas.parse_sas_token` then :func:`~ironhub.codec.dps.verify_dps_token`.

The contract checked on every case: each function returns or raises ``ValidationError`` or
``AuthenticationError``; nothing else may escape. What is accepted is checked against
independent oracles:

- an accepted username has the routing shape (``is_dps_username``), its registration id is the
  ClientId and matches Azure's alphabet, first and last character rules;
- an accepted request has one of the two paths, a rid of 1-128 printable ASCII characters, an
  operation id of ``[A-Za-z0-9._-]{1,128}`` exactly for polls; the answer built for it never
  raises, and the SDK's own reading of the answer (split at ``$``, third piece) and
  ``parse_response_topic`` give the same status and rid back; a poll rebuilt with
  ``status_topic`` parses to the same request;
- an accepted body is at most 96 KiB, is what the standard ``json.loads`` reads (an object
  naming the registration), nests at most 16 deep, and its ``payload_json`` is the payload
  without the extension fields it carried;
- an accepted answer topic has a status from 100 to 599 and a rule-abiding rid;
- an accepted token names exactly the expected resource and lies within its time window.

Usage (from the repository root)::

    .venv/bin/python tests/fuzz/fuzz_dps.py [--iterations N] [--seed S] [--max-seconds T]

It prints the number of cases, acceptances per target and the most common refusals, then every
violation with its input, and exits 1 if there was any. The same ``--seed`` replays the same
cases. ``run()`` and ``load_dps_vectors()`` are importable for tests.
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
from tests.vectors.load import VECTORS_DIR, expand_text

from ironhub.codec.azure import is_dps_username
from ironhub.codec.dps import (
    MAX_DPS_JSON_DEPTH,
    MAX_DPS_MESSAGE_BYTES,
    RegisterRequest,
    StatusRequest,
    derive_device_key,
    dps_resource_uri,
    parse_dps_request,
    parse_dps_username,
    parse_register_body,
    parse_response_topic,
    response_topic,
    status_topic,
    verify_dps_token,
)
from ironhub.codec.sas import generate_sas_token, parse_sas_token
from ironhub.errors import AuthenticationError, ValidationError

#: The kinds of dps.json, and the outcomes.
KINDS = ("username", "topic", "register-body")
OUTCOMES = ("ok", "error")

_REQUIRED = {"name", "kind", "expect"}
_OPTIONAL = {"ref", "note"}
_BY_KIND = {
    "username": ({"input", "client_id"}, set()),
    "topic": ({"input"}, {"rid", "operation_id"}),
    "register-body": ({"registration_id"}, {"input", "hex"}),
}


@dataclass(frozen=True)
class DpsVector:
    """One case of ``dps.json`` (format: tests/vectors/README.md, "dps.json").

    ``data`` is text for usernames and topics and bytes for register bodies.
    """

    name: str
    kind: str
    data: str | bytes
    expect: str
    client_id: str | None = None
    registration_id: str | None = None
    rid: str | None = None
    operation_id: str | None = None
    note: str = ""

    @property
    def text(self) -> str:
        """The input of a username or topic vector."""
        assert isinstance(self.data, str)
        return self.data

    @property
    def body(self) -> bytes:
        """The input of a register-body vector."""
        assert isinstance(self.data, bytes)
        return self.data


def load_dps_vectors(name: str = "dps") -> tuple[DpsVector, ...]:
    """Return the vectors of ``<name>.json``, checked against the format.

    Raises:
        ValueError: the file breaks the format.
    """
    path = VECTORS_DIR / (name if name.endswith(".json") else f"{name}.json")
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise ValueError(f"{path.name}: the top level must be a list")
    names: set[str] = set()
    vectors = [_vector(path.name, item, names) for item in raw]
    return tuple(vectors)


def _vector(file_name: str, item: Any, names: set[str]) -> DpsVector:
    if not isinstance(item, dict):
        raise ValueError(f"{file_name}: every vector must be an object")
    label = f"{file_name}: {item.get('name')!r}"
    if not isinstance(item.get("name"), str) or item["name"] in names:
        raise ValueError(f"{label}: names must be unique strings")
    names.add(item["name"])
    kind = item.get("kind")
    if kind not in _BY_KIND:
        raise ValueError(f"{label}: kind must be one of {KINDS}")
    required, optional = _BY_KIND[kind]
    keys = set(item)
    if not keys >= _REQUIRED | required or not keys <= _REQUIRED | required | optional | _OPTIONAL:
        raise ValueError(f"{label}: keys must be {sorted(_REQUIRED | required)} plus optional ones")
    if item["expect"] not in OUTCOMES:
        raise ValueError(f"{label}: expect must be ok or error")
    if kind == "register-body":
        if ("input" in item) == ("hex" in item):
            raise ValueError(f"{label}: exactly one of input and hex")
        data: str | bytes = (
            bytes.fromhex(item["hex"])
            if "hex" in item
            else expand_text(item["input"], label).encode("utf-8")
        )
    else:
        data = expand_text(item["input"], label)
    if ("rid" in item or "operation_id" in item) and item["expect"] != "ok":
        raise ValueError(f"{label}: rid and operation_id go with expect=ok")
    return DpsVector(
        name=item["name"],
        kind=kind,
        data=data,
        expect=item["expect"],
        client_id=expand_text(item["client_id"], label) if "client_id" in item else None,
        registration_id=item.get("registration_id"),
        rid=item.get("rid"),
        operation_id=item.get("operation_id"),
        note=item.get("note", ""),
    )


# --- mutation ------------------------------------------------------------------------------------

#: Pieces of the grammar (and of its attacks) that random characters would rarely produce.
TEXT_TOKENS = (
    "/", "+", "#", "$", "%", "%2", "%zz", "%24", "%2F", "%2f", "%3F", "%26", "%3D", "%00",
    "%20", "%C3", "%C3%A9", "%ff", "%E2%82", "?", "&", "=", "$rid=", "%24rid=", "operationId=",
    "&operationId=", "api-version=", "&ClientVersion=", "retry-after=", "&retry-after=", " ",
    "\x00", "\x7f", "\x85", "\u00e9", "\ud800", "\uffff", "\ufeff", "\u0662", "..", "", "-",
    ".", ":", "@", "_", "$dps", "registrations", "PUT", "GET", "res", "iotdps-register",
    "iotdps-get-operationstatus", "0ne000ABCDE", "sensor-0042", "Sensor-0042", "200", "202",
    "429", "-1", "0x1", "4.abc", "$iothub", "$version=",
)  # fmt: skip
PAYLOAD_TOKENS = (
    b"[", b"]", b"{", b"}", b'"', b"\\", b",", b":", b"null", b"true", b"NaN", b"Infinity",
    b"-Infinity", b"1e400", b"-0", b"1.5", b"9" * 25, b'"registrationId":', b'"payload":',
    b'"csr":', b'"claimToken":', b'"tpm":', b'"sensor-0042"', b'"Sensor-0042"', b'""', b'"k":',
    b"\\ud800", b"\\u0000", b"\xff", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xef\xbb\xbf",
    b"\x00", b"[" * 20, b"{" * 10, b" ",
)  # fmt: skip
MAX_TEXT_CHARS = 8192
MAX_PAYLOAD_BYTES = 2 * MAX_DPS_MESSAGE_BYTES

#: The registration and credentials of the token target (azure-iot-mqtt.md §5.4).
ID_SCOPE = "0ne000ABCDE"
REGISTRATION_ID = "sensor-0042"
GROUP_KEY = b"enrollment-group-secret-32bytes!"
TOKEN_SE = 1_767_225_600
TOKEN_NOW = TOKEN_SE - 3600.0

_RID_RE = re.compile(r"[\x21-\x7e]{1,128}")
_OPERATION_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_REGISTRATION_ID_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._:-]{0,126}[A-Za-z0-9-])?")
_REQUEST_PATHS = {
    RegisterRequest: "$dps/registrations/PUT/iotdps-register/",
    StatusRequest: "$dps/registrations/GET/iotdps-get-operationstatus/",
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
    """The corpora of the five targets."""

    usernames: tuple[tuple[str, str], ...]
    topics: tuple[str, ...]
    bodies: tuple[tuple[bytes, str], ...]
    answers: tuple[str, ...]
    tokens: tuple[str, ...]


def seeds() -> Seeds:
    """Every vector of dps.json, plus what the service and the SDK themselves produce."""
    vectors = load_dps_vectors()
    usernames = [(v.text, v.client_id or "") for v in vectors if v.kind == "username"]
    topics = [v.text for v in vectors if v.kind == "topic"]
    # The 96 KiB vectors are seeds like any other; the bomb is the only one trimmed, so that
    # mutations stay cheap.
    bodies = [
        (v.body[:4096] if v.name == "body-depth-bomb" else v.body, v.registration_id or "")
        for v in vectors
        if v.kind == "register-body"
    ]
    answers = [
        response_topic(202, "6f1c0b5e-2d4a-4f5b-9c1e-1a2b3c4d5e6f", retry_after=3),
        response_topic(200, "a$b/c?d&e=f"),
        response_topic(429, "1", retry_after=2),
        "$dps/registrations/res/202/?$rid=1&retry-after=1",
        "$dps/registrations/res/401/?$rid=x&extra=ignored",
    ]
    key = derive_device_key(GROUP_KEY, REGISTRATION_ID)
    uri = dps_resource_uri(ID_SCOPE, REGISTRATION_ID)
    tokens = [
        generate_sas_token(uri, key, TOKEN_SE),
        generate_sas_token(uri, key, TOKEN_SE, key_name="registration"),
        generate_sas_token(uri.lower(), key, TOKEN_SE),
    ]
    return Seeds(tuple(usernames), tuple(topics), tuple(bodies), tuple(answers), tuple(tokens))


def mutate_text(text: str, rng: random.Random, pool: tuple[str, ...]) -> str:
    """:func:`tests.fuzz.mutators.mutate_text` with this harness's tokens."""
    return mutators.mutate_text(text, rng, pool, tokens=TEXT_TOKENS, max_chars=MAX_TEXT_CHARS)


def mutate_payload(data: bytes, rng: random.Random, pool: tuple[bytes, ...]) -> bytes:
    """:func:`tests.fuzz.mutators.mutate_payload` with this harness's tokens."""
    return mutators.mutate_payload(
        data, rng, pool, tokens=PAYLOAD_TOKENS, max_bytes=MAX_PAYLOAD_BYTES
    )


# --- the SDK's reading of an answer (azure-iot-mqtt.md §5.3; mqtt_topic_provisioning.py) -------


def sdk_read_answer(topic: str) -> tuple[int, dict[str, str]]:
    """What azure-iot-device 2.14 reads from a DPS answer topic: (status, properties)."""
    pieces = topic.split("$")
    status = int(urllib.parse.unquote(pieces[1].split("/")[3]), 10)
    properties: dict[str, str] = {}
    for entry in pieces[2].split("&"):
        pair = entry.split("=")
        key = urllib.parse.unquote(pair[0])
        if properties.get(key):
            raise ValueError("Duplicate keys in DPS response topic")
        properties[key] = urllib.parse.unquote(pair[1])
    return status, properties


# --- the targets and their oracles ---------------------------------------------------------------


def check_username(username: str, client_id: str, report: Report) -> None:
    """parse_dps_username; an accepted username has the routing shape and a valid id."""
    try:
        parsed = parse_dps_username(username, client_id=client_id)
    except ValidationError as refused:
        report.refusals[f"username: {refused}"] += 1
        return
    report.accepted["username"] += 1
    problem = None
    if not is_dps_username(username):
        problem = "accepted a username the listener would not route to DPS"
    elif parsed.registration_id != client_id:
        problem = "accepted a registration id that is not the ClientId"
    elif not _REGISTRATION_ID_RE.fullmatch(parsed.registration_id):
        problem = "accepted a registration id outside Azure's rule"
    elif not username.startswith(
        f"{parsed.id_scope}/registrations/{parsed.registration_id}/api-version="
    ):
        problem = "parsed fields do not spell the username"
    if problem is not None:
        report.violations.append(f"{problem}: {username!r} client_id={client_id!r}")


def check_request(topic: str, report: Report) -> None:
    """parse_dps_request, then the answer built for it and the SDK's reading of that answer."""
    try:
        request = parse_dps_request(topic)
    except ValidationError as refused:
        report.refusals[f"topic: {refused}"] += 1
        return
    report.accepted[type(request).__name__] += 1
    problem = _request_problem(topic, request)
    if problem is not None:
        report.violations.append(f"{problem}: {topic!r}")


def _request_problem(topic: str, request: RegisterRequest | StatusRequest) -> str | None:
    if not topic.startswith(f"{_REQUEST_PATHS[type(request)]}?") or "+" in topic or "#" in topic:
        return "accepted a request on another path or with a wildcard"
    if not _RID_RE.fullmatch(request.request_id):
        return "accepted a rid outside the rid rule"
    try:
        answer = response_topic(202, request.request_id, retry_after=2)
    except Exception:
        return f"cannot answer an accepted rid: {traceback.format_exc(limit=-1)}"
    if answer.count("$") != 2:
        return "the answer holds another '$' (the SDK splits at every '$')"
    if sdk_read_answer(answer) != (202, {"rid": request.request_id, "retry-after": "2"}):
        return "the SDK would read another status or rid from the answer"
    if parse_response_topic(answer) != (202, request.request_id, 2):
        return "parse_response_topic reads another status or rid from the answer"
    if isinstance(request, StatusRequest):
        if not _OPERATION_ID_RE.fullmatch(request.operation_id):
            return "accepted an operation id outside its rule"
        if parse_dps_request(status_topic(request.request_id, request.operation_id)) != request:
            return "status_topic does not rebuild the accepted poll"
    return None


def _depth(value: object) -> int:
    """Container levels of ``value``, the value itself counting as 1 when it is a container."""
    if isinstance(value, dict):
        return 1 + max((_depth(child) for child in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(child) for child in value), default=0)
    return 0


def check_body(body: bytes, registration_id: str, report: Report) -> None:
    """parse_register_body against the standard JSON reader."""
    try:
        parsed = parse_register_body(body, registration_id=registration_id)
    except ValidationError as refused:
        report.refusals[f"body: {refused}"] += 1
        return
    report.accepted["register-body"] += 1
    problem = _body_problem(body, registration_id, parsed)
    if problem is not None:
        report.violations.append(f"{problem}: {body[:2000]!r}")


def _body_problem(body: bytes, registration_id: str, parsed: Any) -> str | None:
    if len(body) > MAX_DPS_MESSAGE_BYTES:
        return "accepted a body over 96 KiB"
    try:
        reference = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return "accepted a body json.loads refuses"
    if not isinstance(reference, dict) or reference.get("registrationId") != registration_id:
        return "accepted a body that is not an object naming the registration"
    if _depth(reference) > MAX_DPS_JSON_DEPTH:
        return "accepted a body nested too deep"
    payload = reference.get("payload")
    if isinstance(payload, dict):
        for key in ("csr", "claimToken"):
            if key in payload:
                if key in reference:
                    return f"accepted {key} twice"
                reference[key] = payload.pop(key)
    if parsed.csr != reference.get("csr") or parsed.claim_token != reference.get("claimToken"):
        return "csr or claimToken differs from the body's"
    if (parsed.payload_json is None) != (payload is None):
        return "payload_json is None exactly when the payload is null or absent"
    if payload is not None and json.loads(parsed.payload_json) != payload:
        return "payload_json is not the payload"
    return None


def check_answer(topic: str, report: Report) -> None:
    """parse_response_topic, the client side."""
    try:
        status, rid, retry_after = parse_response_topic(topic)
    except ValidationError as refused:
        report.refusals[f"answer: {refused}"] += 1
        return
    report.accepted["answer"] += 1
    if not 100 <= status <= 599 or not _RID_RE.fullmatch(rid):
        report.violations.append(f"accepted an answer with a bad status or rid: {topic!r}")
    elif retry_after is not None and retry_after < 0:
        report.violations.append(f"accepted a negative retry-after: {topic!r}")


def check_token(password: str, report: Report) -> None:
    """parse_sas_token and verify_dps_token with the §5.4 registration's derived key."""
    key = derive_device_key(GROUP_KEY, REGISTRATION_ID)
    try:
        token = parse_sas_token(password)
        verify_dps_token(
            token, id_scope=ID_SCOPE, registration_id=REGISTRATION_ID, keys=[key], now=TOKEN_NOW
        )
    except AuthenticationError as refused:
        report.refusals[f"token: {refused.reason}"] += 1
        return
    report.accepted["token"] += 1
    if urllib.parse.unquote(token.sr) != dps_resource_uri(ID_SCOPE, REGISTRATION_ID):
        report.violations.append(f"accepted a token for another resource: {password!r}")
    elif token.se < TOKEN_NOW:
        report.violations.append(f"accepted an expired token: {password!r}")
    elif token.skn not in (None, "registration"):
        report.violations.append(f"accepted a token with a foreign key name: {password!r}")


def run_case(seeds_: Seeds, rng: random.Random, report: Report) -> None:
    """One case on one of the five targets; escaped exceptions are violations."""
    target = rng.random()
    text = ""
    data = b""
    try:
        if target < 0.2:
            text, client_id = rng.choice(seeds_.usernames)
            pool = tuple(u for u, _ in seeds_.usernames)
            if rng.random() < 0.85:
                text = mutate_text(text, rng, pool)
            if rng.random() < 0.1:
                client_id = mutate_text(client_id, rng, pool)
            check_username(text, client_id, report)
        elif target < 0.45:
            text = rng.choice(seeds_.topics)
            if rng.random() < 0.85:
                text = mutate_text(text, rng, seeds_.topics)
            check_request(text, report)
        elif target < 0.75:
            data, registration_id = rng.choice(seeds_.bodies)
            if rng.random() < 0.85:
                data = mutate_payload(data, rng, tuple(b for b, _ in seeds_.bodies))
            check_body(data, registration_id, report)
        elif target < 0.9:
            text = rng.choice(seeds_.answers)
            if rng.random() < 0.85:
                text = mutate_text(text, rng, seeds_.answers)
            check_answer(text, report)
        else:
            text = rng.choice(seeds_.tokens)
            if rng.random() < 0.85:
                text = mutate_text(text, rng, seeds_.tokens)
            check_token(text, report)
    except Exception:
        report.violations.append(
            f"{traceback.format_exc(limit=-1).strip()}\n  input: text={text!r} data={data[:2000]!r}"
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
