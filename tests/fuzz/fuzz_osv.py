"""Fuzz harness for the OSV advisory parser and matcher (src/ironhub/monitor/advisories.py).

Not collected by pytest (tests/unit/monitor/test_osv_fuzz_harness.py runs it briefly). Each case
takes a seed: every vector of ``tests/vectors/osv_advisories.json``, a few valid advisories of
real shapes (Debian, Ubuntu, PyPI, npm, Go, Alpine, Maven, a withdrawn one), a JSON list of them
and small ZIP archives built from them. It then mutates the seed

- as bytes (tokens of the format: brackets, quotes, escapes, OSV member names, event types,
  edge versions and times, NaN, long integers, invalid UTF-8, a byte order mark, ZIP magic),
- as a JSON tree (OSV-aware edits: an event's version or type, events added, dropped or
  shuffled, a range's type, listed versions, ids, aliases, times, severities, ecosystems and
  names replaced by edge values, lists grown to their bound or just past it; or any member or
  item replaced by a value of any type),
- or as a ZIP archive (members mutated and renamed, stored or deflated, headers patched to lie
  about sizes, CRCs, flags or methods, a name emptied),

and hands the bytes to :func:`~ironhub.monitor.advisories.parse_feed` under a (sometimes
hostile) file name.

The contract checked on every case:

- ``parse_feed`` returns a :class:`FeedBatch` or raises :class:`AdvisoryError`, nothing else;
  a refusal's message and every refused entry and reason are printable ASCII of bounded
  length (the input is quoted, clipped and escaped, never echoed);
- accepted JSON is strict JSON that the standard reader reads (no byte order mark, no
  duplicate key, no NaN or Infinity, no integer over ``MAX_INTEGER_DIGITS`` digits, nesting
  within ``MAX_JSON_DEPTH``, within the size bounds); every entry of a feed is either an
  accepted advisory, a superseded copy or a refusal, and a JSON list's batch is exactly the
  fold of :func:`parse_advisory` over its items (the latest ``modified`` of an id wins, the
  later copy on a tie);
- every accepted :class:`Advisory` is within the module's bounds (ids and aliases, the
  fixed-width ``modified``, summary, severity, affected packages, ranges, events, versions)
  and round-trips through ``advisory_to_json``/``advisory_from_json`` (and through JSON text)
  equal;
- ``AdvisoryIndex(batch.advisories)`` builds; ``AdvisoryIndex.match`` and
  ``match_inventory``/``scan_inventory`` with a few fuzzed inventories (versions from the
  advisories, their neighbours, edge and garbage versions, items that cannot be matched,
  sometimes more than ``MAX_MATCHES`` matching ones) never raise, return at most
  ``MAX_MATCHES`` matches, sorted, one per advisory; each match is what an independent
  evaluation of OSV's rules (written here with the public :func:`compare` alone) finds, with
  a ``fixed`` version above the installed one;
- :func:`compare` is reflexive, antisymmetric and transitive (a sorted sample stays sorted
  pairwise), and agrees with :func:`version_key`, for the versions each case met.

Usage (from the repository root)::

    .venv/bin/python tests/fuzz/fuzz_osv.py [--iterations N] [--seed S] [--max-seconds T]

It prints the number of cases, what was accepted and the most common refusals, then every
violation with its input, and exits 1 if there was any. The same ``--seed`` replays the same
cases. ``run()``, ``load_osv_vectors()`` and ``OsvVector.data`` are importable for tests.
"""

from __future__ import annotations

import argparse
import copy
import io
import itertools
import json
import random
import re
import struct
import sys
import time
import traceback
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cmp_to_key
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from tests.fuzz import mutators
from tests.vectors.load import VECTORS_DIR, expand_text

from ironhub.monitor.advisories import (
    EVENT_TYPES,
    MAX_ADVISORY_BYTES,
    MAX_AFFECTED,
    MAX_ALIASES,
    MAX_EVENTS,
    MAX_FEED_JSON_BYTES,
    MAX_ID_CHARS,
    MAX_INTEGER_DIGITS,
    MAX_INVENTORY_PACKAGES,
    MAX_JSON_DEPTH,
    MAX_MATCHES,
    MAX_RANGES,
    MAX_SEVERITY_ITEMS,
    MAX_STRING_CHARS,
    MAX_SUMMARY_CHARS,
    MAX_VERSIONS,
    SEVERITIES,
    Advisory,
    AdvisoryError,
    AdvisoryIndex,
    FeedBatch,
    Match,
    Range,
    advisory_from_json,
    advisory_to_json,
    comparator_for,
    compare,
    compare_semver,
    match_inventory,
    parse_advisory,
    parse_feed,
    scan_inventory,
    version_key,
)

# --- the vectors -------------------------------------------------------------------------------

_VECTOR_KEYS = {"name", "input", "hex", "text", "expect", "reason_contains", "severity", "note"}
_INPUT_KEYS = ("input", "hex", "text")


@dataclass(frozen=True)
class OsvVector:
    """One case of ``osv_advisories.json`` (format: tests/unit/monitor/test_advisories.py).

    ``data`` is the file's bytes: ``input`` as compact JSON, ``hex`` decoded, or ``text``
    expanded and encoded as UTF-8 (lone surrogates kept). ``reason`` is ``reason_contains``.
    """

    name: str
    data: bytes
    expect: str
    reason: str | None = None
    severity: str | None = None
    note: str = ""


def load_osv_vectors(name: str = "osv_advisories") -> tuple[OsvVector, ...]:
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


def _vector(file_name: str, item: Any, names: set[str]) -> OsvVector:
    if not isinstance(item, dict):
        raise ValueError(f"{file_name}: every vector must be an object")
    label = f"{file_name}: {item.get('name')!r}"
    if not isinstance(item.get("name"), str) or item["name"] in names:
        raise ValueError(f"{label}: names must be unique strings")
    names.add(item["name"])
    if not set(item) <= _VECTOR_KEYS or sum(key in item for key in _INPUT_KEYS) != 1:
        raise ValueError(f"{label}: exactly one of input, hex and text, and known keys only")
    if item.get("expect") not in ("accepted", "refused"):
        raise ValueError(f"{label}: expect must be accepted or refused")
    if ("reason_contains" in item) != (item["expect"] == "refused"):
        raise ValueError(f"{label}: reason_contains goes with refused, and only with it")
    if "hex" in item:
        data = bytes.fromhex(item["hex"])
    elif "text" in item:
        data = expand_text(item["text"], label).encode("utf-8", "surrogatepass")
    else:
        data = json.dumps(item["input"]).encode("utf-8")
    return OsvVector(
        name=item["name"],
        data=data,
        expect=item["expect"],
        reason=item.get("reason_contains"),
        severity=item.get("severity"),
        note=item.get("note", ""),
    )


# --- valid advisories of real shapes ---------------------------------------------------------

T = "2024-05-01T10:00:00Z"
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


def _range(kind: str, *events: tuple[str, str]) -> dict[str, Any]:
    return {"type": kind, "events": [{event: version} for event, version in events]}


VALID_ADVISORIES: tuple[dict[str, Any], ...] = (
    {
        "schema_version": "1.6.0",
        "id": "DSA-5532-1",
        "summary": "openssl - security update",
        "modified": "2024-01-10T12:34:56.123456Z",
        "published": "2023-10-24T00:00:00Z",
        "affected": [
            {
                "package": {"ecosystem": "Debian:12", "name": "openssl"},
                "ranges": [_range("ECOSYSTEM", ("introduced", "0"), ("fixed", "3.0.11-1~deb12u2"))],
                "versions": ["3.0.9-1", "3.0.11-1~deb12u1"],
            },
            {
                "package": {"ecosystem": "Debian:11", "name": "openssl"},
                "ranges": [_range("ECOSYSTEM", ("introduced", "0"), ("fixed", "1.1.1w-0+deb11u1"))],
            },
            {
                "package": {"ecosystem": "Debian", "name": "libssl3"},
                "ranges": [
                    _range("ECOSYSTEM", ("introduced", "1:3.0.0"), ("last_affected", "1:3.0.2-1"))
                ],
            },
        ],
    },
    {
        "id": "UBUNTU-CVE-2024-1",
        "modified": "2024-03-01T00:00:00+01:00",
        "details": "curl\nmore",
        "severity": [{"type": "Ubuntu", "score": "medium"}],
        "affected": [
            {
                "package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "curl"},
                "ranges": [
                    _range("ECOSYSTEM", ("introduced", "0"), ("fixed", "7.81.0-1ubuntu1.16"))
                ],
            }
        ],
    },
    {
        "schema_version": "1.4.0",
        "id": "GHSA-j8r2-6x86-q33q",
        "modified": "2024-02-16T08:11:14Z",
        "aliases": ["CVE-2023-32681", "PYSEC-2023-74"],
        "summary": "Unintended leak of Proxy-Authorization header in requests",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N"}],
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "requests"},
                "ranges": [
                    _range("ECOSYSTEM", ("introduced", "2.3.0"), ("fixed", "2.31.0")),
                    _range("ECOSYSTEM", ("introduced", "3.0.0a1"), ("fixed", "3.0.0rc2")),
                ],
                "versions": ["2.3.0", "2.30.0", "1!1.0.post1"],
            },
            {
                "package": {"ecosystem": "PyPI", "name": "Foo.Bar_baz"},
                "ranges": [_range("ECOSYSTEM", ("introduced", "0"), ("limit", "2.0.dev0"))],
            },
        ],
        "database_specific": {"severity": "MODERATE"},
    },
    {
        "id": "GHSA-c2qf-rxjj-qqgw",
        "modified": "2023-11-07T05:03:24Z",
        "summary": "semver vulnerable to Regular Expression Denial of Service",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:L"}],
        "affected": [
            {
                "package": {"ecosystem": "npm", "name": "semver"},
                "ranges": [
                    _range("SEMVER", ("introduced", "7.0.0"), ("fixed", "7.5.2")),
                    _range("SEMVER", ("introduced", "6.0.0"), ("fixed", "6.3.1")),
                    _range("SEMVER", ("introduced", "0"), ("fixed", "5.7.2")),
                    _range("SEMVER", ("introduced", "8.0.0"), ("last_affected", "8.1.0")),
                ],
            },
            {
                "package": {"ecosystem": "npm", "name": "@scope/pkg"},
                "versions": ["1.0.0-alpha.1", "1.0.0"],
            },
        ],
    },
    {
        "schema_version": "1.3.1",
        "id": "GO-2022-0969",
        "modified": "2023-06-12T18:45:41Z",
        "aliases": ["CVE-2022-27664", "GHSA-69cg-p879-7622"],
        "severity": [{"type": "CVSS_V3", "score": CRITICAL}],
        "affected": [
            {
                "package": {"name": "stdlib", "ecosystem": "Go"},
                "ranges": [
                    _range(
                        "SEMVER",
                        ("introduced", "0"),
                        ("fixed", "1.18.6"),
                        ("introduced", "1.19.0"),
                        ("fixed", "1.19.1"),
                    )
                ],
            },
            {
                "package": {"name": "golang.org/x/net", "ecosystem": "Go"},
                "ranges": [
                    _range(
                        "SEMVER", ("introduced", "0"), ("fixed", "0.0.0-20220906165146-f3363e06")
                    ),
                    {
                        "type": "GIT",
                        "repo": "https://go.googlesource.com/net",
                        "events": [{"introduced": "0"}, {"fixed": "f3363e06e74c"}],
                    },
                ],
                "versions": ["v0.0.0-20220101000000-abcdef", "0.1.0"],
            },
        ],
    },
    {
        "id": "ALPINE-CVE-2024-2",
        "modified": "2024-04-01T00:00:00.5Z",
        "affected": [
            {
                "package": {"ecosystem": "Alpine:v3.19", "name": "busybox"},
                "ranges": [_range("ECOSYSTEM", ("introduced", "0"), ("fixed", "1.36.1-r16"))],
            },
            {
                "package": {"ecosystem": "Alpine", "name": "musl"},
                "ranges": [
                    _range("ECOSYSTEM", ("introduced", "1.2.3_rc1"), ("fixed", "1.2.4a_p1"))
                ],
            },
        ],
    },
    {
        "id": "GHSA-mvn0-0000-0000",
        "modified": "2024-05-01T10:00:00Z",
        "database_specific": {"severity": "HIGH"},
        "affected": [
            {
                "package": {"ecosystem": "Maven", "name": "org.example:lib"},
                "ranges": [
                    _range("ECOSYSTEM", ("introduced", "1.0"), ("fixed", "1.0.1")),
                    _range("SEMVER", ("introduced", "0"), ("fixed", "1.0.0")),
                ],
            }
        ],
    },
    {"id": "GHSA-wdrn-0000-0000", "modified": T, "withdrawn": T},
)


def _zip(members: list[tuple[str, bytes]], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are meant
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in members:
                info = zipfile.ZipInfo(name, date_time=(2024, 5, 1, 10, 0, 0))
                info.compress_type = compression
                archive.writestr(info, content)
    return buffer.getvalue()


def _as_bytes(document: object) -> bytes:
    return json.dumps(document).encode("utf-8")


def seeds() -> tuple[bytes, ...]:
    """Every vector, the valid advisories, a JSON list of them and a few ZIP archives."""
    valid = [_as_bytes(document) for document in VALID_ADVISORIES]
    members = [(f"{d['id']}.json", b) for d, b in zip(VALID_ADVISORIES, valid, strict=True)]
    older = {**VALID_ADVISORIES[2], "modified": "2020-01-01T00:00:00Z"}
    archives = [
        _zip(members),
        _zip(members[:3], compression=zipfile.ZIP_STORED),
        _zip(
            [
                *members[2:5],
                ("README.md", b"# OSV"),
                ("nested/", b""),
                ("old.json", _as_bytes(older)),
            ]
        ),
        _zip([("broken.json", b"{"), ("list.json", _as_bytes(VALID_ADVISORIES[:2]))]),
    ]
    return (
        *(vector.data for vector in load_osv_vectors()),
        *valid,
        _as_bytes([*VALID_ADVISORIES, {"id": "broken"}]),
        *archives,
    )


# --- mutation ------------------------------------------------------------------------------------

#: Versions that sit on the edges of the five orders' grammars (and of none).
EDGE_VERSIONS = (
    "0", "0.0.0", "1", "1.0", "1.0.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-0", "1.0.0-rc.1",
    "1.0.0+build.1", "1.0.0-alpha+b", "v1.2.3", "V1.2.3", "01.2.3", "1.2.3.4", "1..2", "1.",
    ".1", "1:2.3-4", "2:1.0~rc1-1+deb12u1", "1.0~", "~", "~~1", "0:0", ":1", "1:", "-1", "1-",
    "1.0-", "a:1.0", "1!2.0", "1.0.post1", "1.0-1", "1.0.dev0", "1.0a1", "1.0rc1.dev2",
    "1.0+local.7", " 1.0 ", "1.0_rc1-r2", "1.2a_p1~abc-r3", "1.2_alpha_beta", "3.0.11-1~deb12u2",
    "7.81.0-1ubuntu1.16", "0.0.0-20220906165146-f3363e06", "*", "9" * 30, "1." * 120 + "1",
    "a" * 256, "a" * 257, "\u0661.\u0662", "\uff11.0", "1.0\u00e9", "x", "zz-top", "1e5",
    "0x10", "NaN", "1.0\t", "1.0/2", "1.0 2", "v", "vv1.0", "1.0.0-", "1.0.0-.", "1.0.0-01",
    "1.0.0-a..b",
)  # fmt: skip
VERSION_TOKENS = (
    "0", "1", "9", "10", ".", "-", "+", "~", ":", "_", "v", "rc", "alpha", "beta", "a", "b",
    "post", "dev", "!", "-r", "_p", "*", "00", "99999999999999999999", "\u0661", "\x00", " ",
)  # fmt: skip
IDS = (
    "GHSA-xxxx-yyyy-zzzz", "A", "a" * 128, "a" * 129, "-A", ".A", "A B", "A/B", "A\n", "",
    "DSA-5555-1", "RHSA-2024:1234", "PYSEC-2021-1+x", "\u0130D", "CVE-2024-0001",
    "GHSA-vec0-0000-0000", "DSA-5532-1", "A" * 10_000, 12, None, [], {},
)  # fmt: skip
TIMES = (
    "2024-05-01T10:00:00Z", "2024-05-01t10:00:00z", "2024-05-01T10:00:00.123456789Z",
    "2024-05-01T10:00:00.1Z", "2024-05-01T10:00:00+14:00", "2024-05-01T10:00:00-23:59",
    "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:01", "0001-01-01T00:00:00-00:01",
    "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-00:01", "9999-12-31T23:59:59+00:01",
    "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2024-05-01T24:00:00Z",
    "2024-05-01T23:59:60Z", "2024-05-01", "2024-05-01T10:00:00", "2024-05-01 10:00:00Z",
    "2024-05-01T10:00:00+99:99", "\uff12024-05-01T10:00:00Z", "0000-01-01T00:00:00Z",
    "2024-05-01T10:00:00.Z", "2024-13-01T10:00:00Z", "2024-05-01T10:00:00.1234567891Z", "",
    1714557600, None,
)  # fmt: skip
SEVERITY_ITEMS: tuple[Any, ...] = (
    {"type": "CVSS_V3", "score": CRITICAL},
    {"type": "CVSS_V3", "score": "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"},
    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"},
    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:H/UI:R/S:U/C:L/I:N/A:N/E:P/MAV:A"},
    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H"},
    {"type": "CVSS_V3", "score": "CVSS:3.1/"},
    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/"},
    {"type": "CVSS_V3", "score": "cvss:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/X" * 8},
    {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"},
    {"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"},
    {"type": "Ubuntu", "score": "negligible"},
    {"type": "Ubuntu", "score": "HIGH"},
    {"type": "CVSS_V3"},
    {"type": 1, "score": "x"},
    {"score": "x"},
    "CVSS_V3",
)
DATABASE_SPECIFIC: tuple[Any, ...] = (
    {"severity": "CRITICAL"}, {"severity": "moderate"}, {"severity": "Low"},
    {"severity": "unknown"}, {"severity": 5}, {"severity": None}, {}, [], "x", None,
)  # fmt: skip
ECOSYSTEMS = (
    "Debian", "Debian:12", "debian:12", "DEBIAN", "Debian:", ":", "Debian:12:extra",
    "Ubuntu:22.04:LTS", "Ubuntu", "PyPI", "pypi", "npm", "NPM", "Go", "go", "crates.io", "Hex",
    "Alpine:v3.19", "alpine", "Wolfi", "Maven", "Packagist", "Photon OS:5.0", "SwiftURL",
    "UnknownEco", "x" * 256, "x" * 257, "Debian\n", "", "\u0130", "\ufb03", 7, None,
)  # fmt: skip
NAMES = (
    "openssl", "requests", "Foo.Bar_baz", "foo-bar-baz", "FOO__BAR..BAZ", "stdlib",
    "golang.org/x/net", "@scope/pkg", "semver", "curl", "n" * 256, "n" * 257, "a\x00", "",
    " ", "\u0130", "\ud800", 1, None,
)  # fmt: skip
RANGE_TYPES = ("ECOSYSTEM", "SEMVER", "GIT", "", "semver", "Ecosystem", "UNKNOWN", None, 1)
EVENT_KINDS = (*EVENT_TYPES, "Introduced", "fixed ", "", "affected", "repo")
FEED_NAMES = (
    "all.zip", "osv.json", "", "x" * 200, "bad\nname\x00.json", "\ud800.json", "\u202e.json",
    '"quoted".json', "\u00e9" * 70,
)  # fmt: skip

#: Values a structural mutation puts in place of a member or item: every JSON type, and the
#: edge values of the format's checks.
VALUE_POOL: tuple[Any, ...] = (
    None, True, False, 0, -1, 1.5, 10**19, 10**21, "", "x", "x" * 300, "a\nb", "\ud800",
    "\u0000", "0", "1.0.0", "*", "GIT", "SEMVER", "ECOSYSTEM", T, [], {}, [1, "a"],
    {"introduced": "0"}, {"fixed": "1.0"}, {"limit": "*"}, {"last_affected": "2"},
    {"ecosystem": "npm", "name": "p"}, [{"introduced": "0"}], {"type": "SEMVER", "events": []},
    {"k": {"k": {"k": {"k": {"k": {"k": {"k": {"k": {"k": {"k": {"k": {"k": {}}}}}}}}}}}}},
)  # fmt: skip
MEMBER_NAMES = (
    "id", "modified", "published", "withdrawn", "aliases", "related", "summary", "details",
    "severity", "affected", "package", "ecosystem", "name", "purl", "ranges", "type", "events",
    "versions", "database_specific", "ecosystem_specific", "schema_version", "repo",
    *EVENT_TYPES, "x",
)  # fmt: skip

#: Pieces of the format (and of its attacks) that random bytes would rarely produce.
PAYLOAD_TOKENS = (
    b"[", b"]", b"{", b"}", b'"', b"\\", b",", b":", b"null", b"true", b"false", b"NaN",
    b"Infinity", b"-Infinity", b"1e400", b"-0", b"1.5", b"9" * 21, b"9" * 20, b'""',
    b'"id":', b'"modified":', b'"withdrawn":', b'"affected":', b'"package":', b'"ranges":',
    b'"events":', b'"versions":', b'"severity":', b'"aliases":', b'"type":', b'"SEMVER"',
    b'"ECOSYSTEM"', b'"GIT"', b'"introduced":', b'"fixed":', b'"last_affected":', b'"limit":',
    b'"0"', b'"*"', b'"1.0.0"', b'"v1.2.3"', b'"1:2.3-4~rc1"', b'"ecosystem":', b'"name":',
    b'"Debian:12"', b'"PyPI"', b'"npm"', b'"Go"', b'"2024-05-01T10:00:00Z"',
    b'"2024-02-30T00:00:00Z"', b'"9999-12-31T23:59:59-00:01"', b"\\ud800", b"\\u0000", b"\\n",
    b"\xff", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\x00", b"PK\x03\x04",
    b"PK\x01\x02", b"PK\x05\x06", b"[" * 17, b"{" * 9, b" ", b"x" * 300,
)  # fmt: skip
MAX_PAYLOAD_BYTES = 2 * MAX_ADVISORY_BYTES + 65_536
MAX_TEXT_CHARS = 300


def mutate_payload(data: bytes, rng: random.Random, pool: tuple[bytes, ...]) -> bytes:
    """:func:`tests.fuzz.mutators.mutate_payload` with this harness's tokens."""
    return mutators.mutate_payload(
        data, rng, pool, tokens=PAYLOAD_TOKENS, max_bytes=MAX_PAYLOAD_BYTES
    )


def mutate_version(text: str, rng: random.Random) -> str:
    """A neighbour of a version (:func:`tests.fuzz.mutators.mutate_text`, version tokens)."""
    return mutators.mutate_text(
        text, rng, EDGE_VERSIONS, tokens=VERSION_TOKENS, max_chars=MAX_TEXT_CHARS
    )


def _pool(rng: random.Random, pool: tuple[Any, ...]) -> Any:
    # A copy: the pools' lists and objects must not be shared with (and grown by) a document.
    return copy.deepcopy(rng.choice(pool))


def _version(rng: random.Random, near: list[str]) -> Any:
    roll = rng.random()
    if near and roll < 0.4:
        return rng.choice(near)
    if near and roll < 0.75:
        return mutate_version(rng.choice(near), rng)
    if roll < 0.97:
        return rng.choice(EDGE_VERSIONS)
    return _pool(rng, VALUE_POOL)


def _containers(document: Any) -> list[Any]:
    found: list[Any] = []
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict | list) and len(found) < 512:
            found.append(value)
            stack.extend(value.values() if isinstance(value, dict) else value)
    return found


def mutate_document(document: Any, rng: random.Random) -> Any:
    """Replace, delete or add one member or item anywhere in a parsed document (in place)."""
    containers = _containers(document)
    if not containers:
        return _pool(rng, VALUE_POOL)
    target = rng.choice(containers)
    operation = rng.random()
    if isinstance(target, dict):
        name = rng.choice(list(target) or list(MEMBER_NAMES))
        if operation < 0.2:
            target.pop(name, None)
        elif operation < 0.4:
            target[rng.choice(MEMBER_NAMES)] = _pool(rng, VALUE_POOL)
        else:
            target[name] = _pool(rng, VALUE_POOL)
    elif target and operation < 0.5:
        target[rng.randrange(len(target))] = _pool(rng, VALUE_POOL)
    elif target and operation < 0.7:
        del target[rng.randrange(len(target))]
    else:
        target.append(_pool(rng, VALUE_POOL))
    return document


def _dicts(value: Any, key: str) -> list[Any]:
    items = value.get(key) if isinstance(value, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _lists(value: Any, key: str) -> list[list[Any]]:
    items = value.get(key) if isinstance(value, dict) else None
    return [items] if isinstance(items, list) else []


def _shape(advisory: dict[str, Any]) -> tuple[list[Any], list[Any], list[list[Any]], list[Any]]:
    """The affected entries, ranges, event lists and packages of an advisory."""
    affected = _dicts(advisory, "affected")
    ranges = [r for entry in affected for r in _dicts(entry, "ranges")]
    events = [e for r in ranges for e in _lists(r, "events")]
    packages = [entry["package"] for entry in affected if isinstance(entry.get("package"), dict)]
    return affected, ranges, events, packages


def _versions_of(advisory: dict[str, Any]) -> list[str]:
    affected, _, events, _ = _shape(advisory)
    found = [v for ev in events for e in ev if isinstance(e, dict) for v in e.values()]
    found += [v for entry in affected for vs in _lists(entry, "versions") for v in vs]
    return [v for v in found if isinstance(v, str)][:64]


_BOUNDS = {
    "affected": MAX_AFFECTED,
    "ranges": MAX_RANGES,
    "events": MAX_EVENTS,
    "versions": MAX_VERSIONS,
    "aliases": MAX_ALIASES,
    "severity": MAX_SEVERITY_ITEMS,
}


def _grow(advisory: dict[str, Any], rng: random.Random) -> None:
    """Grow one list of the advisory to its bound, or one past it (or far past, for aliases)."""
    affected, ranges, _, _ = _shape(advisory)
    key = rng.choice(tuple(_BOUNDS))
    holders: list[tuple[dict[str, Any], str]] = {
        "affected": [(advisory, "affected")],
        "ranges": [(entry, "ranges") for entry in affected],
        "events": [(r, "events") for r in ranges],
        "versions": [(entry, "versions") for entry in affected],
        "aliases": [(advisory, "aliases")],
        "severity": [(advisory, "severity"), *((entry, "severity") for entry in affected)],
    }[key]
    if not holders:
        return
    holder, member = rng.choice(holders)
    size = _BOUNDS[key] + rng.choice((0, 0, 1, 40 if key == "aliases" else 1))
    current = holder.get(member)
    if key == "versions":
        holder[member] = [f"{n}.0.{rng.randrange(9)}" for n in range(size)]
    elif key == "aliases":
        holder[member] = [f"CVE-2024-{n:05d}" for n in range(size)]
    elif key == "events":
        holder[member] = [{"introduced": "0"}] + [
            {rng.choice(EVENT_TYPES): f"{n}.0.0"} for n in range(size - 1)
        ]
    elif isinstance(current, list) and current:
        holder[member] = [copy.deepcopy(current[n % len(current)]) for n in range(size)]
    elif key == "severity":
        holder[member] = [_pool(rng, SEVERITY_ITEMS) for _ in range(size)]


def mutate_advisory(advisory: dict[str, Any], rng: random.Random) -> None:
    """One OSV-aware edit of an advisory (in place): the deep checks stay reachable."""
    affected, ranges, events, packages = _shape(advisory)
    near = _versions_of(advisory)
    operation = rng.randrange(14)
    flat = [(ev, i) for ev in events for i in range(len(ev))]
    if operation == 0 and flat:  # an event's version
        ev, i = rng.choice(flat)
        kind = next(iter(ev[i]), "introduced") if isinstance(ev[i], dict) else "fixed"
        ev[i] = {kind: _version(rng, near)}
    elif operation == 1 and flat:  # an event's type, or two of them
        ev, i = rng.choice(flat)
        version = _version(rng, near)
        ev[i] = {rng.choice(EVENT_KINDS): version}
        if rng.random() < 0.1:
            ev[i][rng.choice(EVENT_KINDS)] = version
    elif operation == 2 and events:  # events added, dropped or shuffled
        ev = rng.choice(events)
        roll = rng.random()
        if roll < 0.5:
            ev.insert(rng.randint(0, len(ev)), {rng.choice(EVENT_TYPES): _version(rng, near)})
        elif roll < 0.75 and ev:
            del ev[rng.randrange(len(ev))]
        else:
            rng.shuffle(ev)
    elif operation == 3 and ranges:  # a range's type, or a copy of it as another type
        chosen = rng.choice(ranges)
        if rng.random() < 0.5:
            chosen["type"] = rng.choice(RANGE_TYPES)
        else:
            holder = rng.choice(affected)
            copied = {**copy.deepcopy(chosen), "type": rng.choice(RANGE_TYPES[:3])}
            if isinstance(holder.get("ranges"), list):
                holder["ranges"].append(copied)
            else:
                holder["ranges"] = [copied]
    elif operation == 4 and affected:  # listed versions
        entry = rng.choice(affected)
        versions = entry.get("versions")
        if isinstance(versions, list) and versions and rng.random() < 0.5:
            versions[rng.randrange(len(versions))] = _version(rng, near)
        else:
            entry["versions"] = [_version(rng, near) for _ in range(rng.randint(0, 4))]
        if rng.random() < 0.2:
            entry.pop("ranges", None)
    elif operation == 5:
        advisory["id"] = _pool(rng, IDS)
    elif operation == 6:
        advisory[rng.choice(("modified", "modified", "published", "withdrawn"))] = _pool(rng, TIMES)
    elif operation == 7:
        advisory["aliases"] = [_pool(rng, IDS) for _ in range(rng.randint(0, 4))]
        if rng.random() < 0.3:
            advisory["aliases"].append(advisory.get("id"))
    elif operation == 8:
        holder = rng.choice([advisory, *affected])
        holder["severity"] = [_pool(rng, SEVERITY_ITEMS) for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.5:
            advisory["database_specific"] = _pool(rng, DATABASE_SPECIFIC)
    elif operation == 9 and packages:  # an ecosystem, a name or a purl
        package = rng.choice(packages)
        member = rng.choice(("ecosystem", "ecosystem", "name", "name", "purl"))
        package[member] = _pool(rng, ECOSYSTEMS if member == "ecosystem" else NAMES)
    elif operation == 10 and affected:  # an entry copied under another ecosystem, or dropped
        if rng.random() < 0.6:
            entry = copy.deepcopy(rng.choice(affected))
            if isinstance(entry.get("package"), dict):
                entry["package"]["ecosystem"] = _pool(rng, ECOSYSTEMS)
            advisory["affected"].append(entry)
        else:
            advisory["affected"].remove(rng.choice(affected))
    elif operation == 11:
        member = rng.choice(("summary", "details"))
        advisory[member] = rng.choice(
            ("", " \n ", "a\x00b\x85c\u2028d", "\ud800", "line\nnext", "s" * 300, "\t" * 5, 3)
        )
    elif operation == 12 and rng.random() < 0.3:
        _grow(advisory, rng)
    else:
        mutate_document(advisory, rng)


def mutate_structure(data: bytes, rng: random.Random) -> bytes:
    """A tree mutation of a seed that parses as JSON; other seeds get a byte mutation."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return mutate_payload(data, rng, (data,))
    for _ in range(rng.choice(mutators.OPERATION_COUNTS)):
        advisories = [document] if isinstance(document, dict) else []
        if isinstance(document, list):
            advisories = [item for item in document if isinstance(item, dict)]
        if advisories and rng.random() < 0.85:
            mutate_advisory(rng.choice(advisories), rng)
        else:
            document = mutate_document(document, rng)
    if rng.random() < 0.1:  # a list feed, the document among others
        others = [copy.deepcopy(rng.choice(VALID_ADVISORIES)) for _ in range(rng.randint(0, 3))]
        document = [*others, document] if rng.random() < 0.5 else [document, *others]
    indent = rng.choice((None, None, 1))
    try:
        text = json.dumps(document, ensure_ascii=rng.random() < 0.5, indent=indent)
    except RecursionError:
        return data
    return text.encode("utf-8", "surrogatepass")


def patch_member(
    data: bytes, index: int, *, size: int | None = None, crc: int | None = None,
    flags: int | None = None, method: int | None = None, empty_name: bool = False,
) -> bytes:  # fmt: skip
    """Rewrite a member's declared size, CRC, flags or method in both of its headers, or
    empty its name in the central directory (its first byte becomes an ignored extra field)."""
    patched = bytearray(data)
    centrals = [m.start() for m in re.finditer(re.escape(b"PK\x01\x02"), data)]
    if not centrals:
        return data
    central = centrals[index % len(centrals)]
    if central + 46 > len(data):
        return data
    local = struct.unpack_from("<I", data, central + 42)[0]
    for value, at_central, at_local, layout in (
        (size, 24, 22, "<I"),
        (crc, 16, 14, "<I"),
        (flags, 8, 6, "<H"),
        (method, 10, 8, "<H"),
    ):
        if value is not None:
            struct.pack_into(layout, patched, central + at_central, value)
            if local + at_local + struct.calcsize(layout) <= len(patched):
                struct.pack_into(layout, patched, local + at_local, value)
    if empty_name:
        name_length, extra_length = struct.unpack_from("<HH", data, central + 28)
        if name_length:
            struct.pack_into("<HH", patched, central + 28, 0, extra_length + name_length)
    return bytes(patched)


_MEMBER_NAMES = (
    "a.json", "b.json", "a.json", "README.md", "nested/", "../../etc/x.json", "x" * 200 + ".json",
    "bad\nname.json", "\u00e9.json", ".json", "JSON", "a.JSON", "a.json/",
)  # fmt: skip


def mutate_zip(json_seeds: tuple[bytes, ...], rng: random.Random) -> bytes:
    """A ZIP archive of a few (mutated) JSON members, its headers sometimes patched."""
    members = []
    for _ in range(rng.randint(0, 5)):
        content = rng.choice(json_seeds)
        if len(content) > 65_536:
            content = content[:4096]
        roll = rng.random()
        if roll < 0.5:
            content = mutate_structure(content, rng)
        elif roll < 0.7:
            content = mutate_payload(content, rng, json_seeds)
        members.append((rng.choice(_MEMBER_NAMES), content))
    compression = rng.choice((zipfile.ZIP_DEFLATED, zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED))
    data = _zip(members, compression=compression)
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        index = rng.randrange(max(1, len(members)))
        which = rng.randrange(5)
        if which == 0:
            data = patch_member(data, index, size=rng.choice((0, 1, 99, 2**30 + 1, 2**32 - 1)))
        elif which == 1:
            data = patch_member(data, index, crc=rng.randrange(2**32))
        elif which == 2:
            data = patch_member(data, index, flags=rng.choice((0x1, 0x8, 0x40, 0x800, 0xFFFF)))
        elif which == 3:
            data = patch_member(data, index, method=rng.choice((0, 8, 9, 12, 14, 99, 0xFFFF)))
        else:
            data = patch_member(data, index, empty_name=True)
    return data


# --- the reference: OSV's rules, with the public compare() alone ------------------------------

# The OSV ecosystems (schema, "Defined ecosystems"): known names match whatever their case.
_KNOWN = {
    name.lower(): name
    for name in (
        "AlmaLinux", "Alpaquita", "Alpine", "Android", "Bioconductor", "Bitnami", "Chainguard",
        "ConanCenter", "CRAN", "crates.io", "Debian", "GHC", "GitHub Actions", "Go", "Hackage",
        "Hex", "Julia", "Kubernetes", "Linux", "Mageia", "Maven", "MinimOS", "npm", "NuGet",
        "opam", "openEuler", "openSUSE", "OSS-Fuzz", "Packagist", "Photon OS", "Pub", "PyPI",
        "Red Hat", "Rocky Linux", "RubyGems", "SUSE", "SwiftURL", "Ubuntu", "VSCode", "Wolfi",
    )
}  # fmt: skip
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+\-]*")
_MODIFIED_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SEVERITY_ORDER = {name: rank for rank, name in enumerate(SEVERITIES)}
#: The longest refusal message: two quoted names (64 characters, each escaped to at most 6)
#: and the words around them.
MAX_REASON_CHARS = 1024


def canonical(ecosystem: str) -> str:
    """An ecosystem with a known base name spelt canonically."""
    base, colon, release = ecosystem.partition(":")
    return f"{_KNOWN.get(base.lower(), base)}{colon}{release}"


def _name_key(base: str, name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower() if base == "PyPI" else name  # PEP 503


def _event_order(
    order: Callable[[str, str], int],
) -> Callable[[tuple[str, str], tuple[str, str]], int]:
    rank = {"introduced": 0, "last_affected": 1, "fixed": 2}

    def cmp(left: tuple[str, str], right: tuple[str, str]) -> int:
        left_start, right_start = left == ("introduced", "0"), right == ("introduced", "0")
        if left_start or right_start:
            return right_start - left_start if left_start != right_start else 0
        return order(left[1], right[1]) or (rank[left[0]] > rank[right[0]]) - (
            rank[left[0]] < rank[right[0]]
        )

    return cmp


def reference_range(range_: Range, ecosystem: str, version: str) -> tuple[bool, list[str]]:
    """Whether the range contains ``version`` by OSV's evaluation, and the fixes above it that
    are lowest in the range's order (several when they compare equal)."""

    def order(left: str, right: str) -> int:
        return (
            compare_semver(left, right)
            if range_.kind == "SEMVER"
            else compare(ecosystem, left, right)
        )

    events = sorted(
        (event for event in range_.events if event[0] != "limit"),
        key=cmp_to_key(_event_order(order)),
    )
    above = [v for kind, v in events if kind == "fixed" and order(version, v) < 0]
    lowest = [v for v in above if all(order(v, other) <= 0 for other in above)]
    limits = [v for kind, v in range_.events if kind == "limit"]
    unbounded = not limits or any("*" in limit for limit in limits)
    if not unbounded and not any(order(version, limit) < 0 for limit in limits):
        return False, lowest
    vulnerable = False
    for kind, bound in events:
        if (kind, bound) == ("introduced", "0"):
            vulnerable = True
        elif kind == "introduced":
            vulnerable = vulnerable or order(version, bound) >= 0
        elif kind == "fixed":
            vulnerable = vulnerable and order(version, bound) < 0
        else:  # last_affected: inclusive
            vulnerable = vulnerable and order(version, bound) <= 0
    return vulnerable, lowest


def reference_match(
    advisories: tuple[Advisory, ...], ecosystem: str, name: str, version: str
) -> dict[str, list[list[str]]]:
    """The advisories that cover an installed package, each with its groups of candidate
    fixes: the module must report one of them, no greater (in the ecosystem's order) than some
    candidate of every group."""
    found: dict[str, list[list[str]]] = {}
    if not all(0 < len(text) <= MAX_STRING_CHARS for text in (ecosystem, name, version)):
        return found
    ecosystem = canonical(ecosystem)
    base = ecosystem.partition(":")[0]
    for advisory in advisories:
        if advisory.withdrawn:
            continue
        for package in advisory.affected:
            own = canonical(package.ecosystem)
            own_base = own.partition(":")[0]
            if own_base != base or _name_key(base, package.name) != _name_key(base, name):
                continue
            if ":" in own and own != ecosystem:
                continue
            results = [reference_range(r, own, version) for r in package.ranges]
            groups = [lowest for contained, lowest in results if contained]
            if not groups:
                semver = comparator_for(own) is compare_semver
                listed = version in package.versions or (
                    semver and version[:1] == "v" and version[1:] in package.versions
                )
                if not listed:
                    continue
                groups = [lowest for _, lowest in results]
            found.setdefault(advisory.id, []).extend(group for group in groups if group)
    return found


# --- the oracle ------------------------------------------------------------------------------


def _clean_text(text: object, limit: int) -> bool:
    return isinstance(text, str) and 0 < len(text) <= limit and not _UNSAFE.search(text)


def _printable_ascii(text: object, limit: int) -> bool:
    return (
        isinstance(text, str) and 0 < len(text) <= limit and text.isascii() and text.isprintable()
    )


def advisory_violations(advisory: object) -> list[str]:
    """The module's bounds, and the stored form's round trip, for one accepted advisory."""
    if not isinstance(advisory, Advisory):
        return [f"an accepted advisory of type {type(advisory).__name__}"]
    found = []
    if not (len(advisory.id) <= MAX_ID_CHARS and _ID_RE.fullmatch(advisory.id)):
        found.append(f"id {advisory.id[:80]!r} out of bounds")
    if not _MODIFIED_RE.fullmatch(advisory.modified):
        found.append(f"modified {advisory.modified!r} is not fixed-width UTC")
    if len(advisory.summary) > MAX_SUMMARY_CHARS or _UNSAFE.search(advisory.summary):
        found.append("summary too long or unsafe")
    if len(advisory.aliases) > MAX_ALIASES or advisory.id in advisory.aliases:
        found.append("too many aliases, or the id among them")
    if len(set(advisory.aliases)) != len(advisory.aliases) or not all(
        len(alias) <= MAX_ID_CHARS and _ID_RE.fullmatch(alias) for alias in advisory.aliases
    ):
        found.append("an alias out of bounds or repeated")
    if advisory.severity not in SEVERITIES or not isinstance(advisory.withdrawn, bool):
        found.append(f"severity {advisory.severity!r} or withdrawn {advisory.withdrawn!r}")
    if (not advisory.affected and not advisory.withdrawn) or len(advisory.affected) > MAX_AFFECTED:
        found.append(f"{len(advisory.affected)} affected packages")
    for package in advisory.affected:
        if not (
            _clean_text(package.ecosystem, MAX_STRING_CHARS)
            and _clean_text(package.name, MAX_STRING_CHARS)
        ):
            found.append("a package's ecosystem or name out of bounds")
        if canonical(package.ecosystem) != package.ecosystem:
            found.append(f"ecosystem {package.ecosystem!r} not canonical")
        if not (package.ranges or package.versions) or len(package.ranges) > MAX_RANGES:
            found.append("a package with nothing to match, or too many ranges")
        if len(package.versions) > MAX_VERSIONS or not all(
            _clean_text(v, MAX_STRING_CHARS) for v in package.versions
        ):
            found.append("listed versions out of bounds")
        for range_ in package.ranges:
            if (
                range_.kind not in ("ECOSYSTEM", "SEMVER")
                or not 0 < len(range_.events) <= MAX_EVENTS
                or not any(kind == "introduced" for kind, _ in range_.events)
                or not all(
                    kind in EVENT_TYPES and _clean_text(v, MAX_STRING_CHARS)
                    for kind, v in range_.events
                )
            ):
                found.append(f"a range out of bounds: {range_!r}"[:300])
    stored = advisory_to_json(advisory)
    try:
        text = json.dumps(stored, allow_nan=False, ensure_ascii=False).encode("utf-8")
        back = advisory_from_json(json.loads(text))
    except (AdvisoryError, ValueError, TypeError, UnicodeEncodeError) as exc:
        return [*found, f"the stored form does not read back: {exc!r}"[:400]]
    if back != advisory:
        found.append("the stored form reads back different")
    elif advisory_to_json(back) != stored:
        found.append("the stored form of the read-back copy differs")
    return found


class _StrictJsonError(ValueError):
    pass


def _strict_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({key for key, _ in pairs}) != len(pairs):
        raise _StrictJsonError("duplicate key")
    return dict(pairs)


def _strict_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _StrictJsonError("long integer")
    return int(literal)


def _strict_float(literal: str) -> float:
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        raise _StrictJsonError("infinite float")
    return value


def _refuse_constant(literal: str) -> float:
    raise _StrictJsonError(literal)


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(child) for child in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(child) for child in value), default=0)
    return 0


def json_feed_violations(data: bytes, batch: FeedBatch) -> list[str]:
    """An accepted JSON feed: strict JSON, its bounds, and the batch as the fold of its items."""
    if data.startswith(b"\xef\xbb\xbf"):
        return ["accepted a byte order mark"]
    try:
        document = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_strict_pairs,
            parse_int=_strict_int,
            parse_float=_strict_float,
            parse_constant=_refuse_constant,
        )
    except (ValueError, RecursionError) as exc:
        return [f"accepted what a strict JSON reader refuses: {exc!r}"[:300]]
    is_list = isinstance(document, list)
    if not is_list and not isinstance(document, dict):
        return [f"accepted a top-level {type(document).__name__}"]
    if len(data) > (MAX_FEED_JSON_BYTES if is_list else MAX_ADVISORY_BYTES):
        return [f"accepted {len(data)} bytes"]
    if _depth(document) > MAX_JSON_DEPTH + is_list:
        return [f"accepted a nesting of {_depth(document)}"]
    items = document if is_list else [document]
    latest: dict[str, Advisory] = {}
    refused = accepted = 0
    for item in items:
        try:
            advisory = parse_advisory(item)
        except AdvisoryError:
            refused += 1
            continue
        accepted += 1
        if advisory.id not in latest or latest[advisory.id].modified <= advisory.modified:
            latest[advisory.id] = advisory
    if (len(batch.refused), batch.superseded) != (refused, accepted - len(latest)):
        return ["the batch's refusals or superseded copies are not its items'"]
    if batch.advisories != tuple(latest.values()):
        return ["the batch's advisories are not the latest copy of each id, in order"]
    return []


def zip_feed_violations(data: bytes, batch: FeedBatch) -> list[str]:
    """An accepted ZIP feed: every member is accepted, superseded or refused."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = len(archive.infolist())
    except Exception as exc:  # any failure of the reference is the finding
        return [f"accepted an archive zipfile cannot list: {exc!r}"[:300]]
    counted = len(batch.advisories) + batch.superseded + len(batch.refused)
    return [] if counted == members else [f"{members} members, {counted} entries accounted for"]


def batch_violations(data: bytes, batch: object) -> list[str]:
    """What an accepted feed must be (module docstring)."""
    if not isinstance(batch, FeedBatch):
        return [f"parse_feed returned a {type(batch).__name__}"]
    found: list[str] = []
    ids = [advisory.id for advisory in batch.advisories if isinstance(advisory, Advisory)]
    if len(set(ids)) != len(batch.advisories):
        found.append("an id twice in one batch")
    for entry, reason in batch.refused:
        if not (
            _printable_ascii(entry, MAX_REASON_CHARS) and _printable_ascii(reason, MAX_REASON_CHARS)
        ):
            found.append(
                f"a refused entry or reason unbounded or unsafe: {entry!r:.200} {reason!r:.200}"
            )
    for advisory in batch.advisories:
        found += advisory_violations(advisory)
    if found:
        return found
    if data.startswith(b"PK\x03\x04"):
        return zip_feed_violations(data, batch)
    return json_feed_violations(data, batch)


def _sorted_matches(matches: list[Match]) -> bool:
    keys = [
        (_SEVERITY_ORDER[m.severity], m.advisory_id, m.package, m.ecosystem, m.installed_version)
        for m in matches
    ]
    return keys == sorted(keys)


def match_violations(
    index: AdvisoryIndex,
    advisories: tuple[Advisory, ...],
    ecosystem: str,
    name: str,
    version: str,
) -> list[str]:
    """``AdvisoryIndex.match`` for one installed package, against the reference."""
    matches = index.match(ecosystem, name, version)
    where = f"match({ecosystem[:80]!r}, {name[:80]!r}, {version[:80]!r})"
    if not isinstance(matches, list) or not all(isinstance(m, Match) for m in matches):
        return [f"{where} is not a list of Match"]
    expected = reference_match(advisories, ecosystem, name, version)
    got = [m.advisory_id for m in matches]
    if len(set(got)) != len(got) or not _sorted_matches(matches):
        return [f"{where}: matches repeated or not sorted: {got}"]
    if set(got) != set(expected):
        return [f"{where}: matched {sorted(got)}, OSV's rules give {sorted(expected)}"]
    found = []
    for match in matches:
        groups = expected[match.advisory_id]
        if (match.package, match.installed_version, match.ecosystem) != (
            name,
            version,
            canonical(ecosystem),
        ):
            found.append(f"{where}: the match names another package, version or ecosystem")
        if match.fixed is None:
            if groups:
                found.append(f"{where}: no fix for {match.advisory_id}, expected one of {groups}")
        elif not any(match.fixed in group for group in groups) or not all(
            any(compare(ecosystem, match.fixed, other) <= 0 for other in group) for group in groups
        ):
            found.append(f"{where}: fix {match.fixed!r} for {match.advisory_id}, not of {groups}")
    return found


def inventory_violations(
    index: AdvisoryIndex, advisories: tuple[Advisory, ...], inventory: list[object]
) -> list[str]:
    """``scan_inventory`` and ``match_inventory`` against ``AdvisoryIndex.match``."""
    scan = scan_inventory(index, inventory)
    matches = match_inventory(index, inventory)
    if len(matches) > MAX_MATCHES or len(scan.matches) > MAX_MATCHES:
        return [f"{len(matches)} matches, over MAX_MATCHES"]
    if list(scan.matches) != matches or not _sorted_matches(matches):
        return ["match_inventory differs from scan_inventory, or is not sorted"]
    expected: dict[tuple[str, str, str, str], Match] = {}
    skipped = 0
    for count, item in enumerate(inventory):
        fields = None
        if isinstance(item, dict) and count < MAX_INVENTORY_PACKAGES:
            values = (item.get("ecosystem"), item.get("name"), item.get("version"))
            if all(isinstance(v, str) and 0 < len(v) <= MAX_STRING_CHARS for v in values):
                fields = values
        if fields is None:
            skipped += 1
            continue
        for match in index.match(*fields):
            key = (match.advisory_id, match.ecosystem, match.package, match.installed_version)
            expected.setdefault(key, match)
    if scan.skipped != skipped or len(scan.matches) + scan.omitted != len(expected):
        counts = f"{len(scan.matches)}+{scan.omitted} matches, {scan.skipped} skipped"
        return [f"scan counts {counts}; expected {len(expected)} and {skipped}"]
    if not all(
        expected.get((m.advisory_id, m.ecosystem, m.package, m.installed_version)) == m
        for m in matches
    ):
        return ["an inventory match that AdvisoryIndex.match does not give"]
    return []


def order_violations(ecosystem: str, versions: list[str]) -> list[str]:
    """compare(): reflexive, antisymmetric, transitive on a sorted sample, like version_key."""
    found = []
    for left, right in itertools.combinations_with_replacement(versions, 2):
        result = compare(ecosystem, left, right)
        if result not in (-1, 0, 1) or compare(ecosystem, right, left) != -result:
            found.append(
                f"compare({ecosystem!r}, {left!r}, {right!r}) = {result}, not antisymmetric"
            )
        elif left == right and result != 0:
            found.append(f"compare({ecosystem!r}, {left!r}, {left!r}) = {result}")
        else:
            left_key, right_key = version_key(ecosystem, left), version_key(ecosystem, right)
            if (left_key > right_key) - (left_key < right_key) != result:
                found.append(
                    f"version_key({ecosystem!r}) disagrees with compare on {left!r}, {right!r}"
                )
    if not found:
        ordered = sorted(versions, key=cmp_to_key(lambda a, b: compare(ecosystem, a, b)))
        for i, j in itertools.combinations(range(len(ordered)), 2):
            if compare(ecosystem, ordered[i], ordered[j]) > 0:
                found.append(f"compare({ecosystem!r}) is not transitive on {ordered!r}"[:400])
                break
    return found[:3]


# --- inventories --------------------------------------------------------------------------------

_JUNK_ITEMS: tuple[object, ...] = (
    None, "openssl", 7, [], {}, {"name": "p", "version": "1"}, {"ecosystem": "npm", "name": "p"},
    {"ecosystem": "npm", "name": "p", "version": 1}, {"ecosystem": "", "name": "p", "version": "1"},
    {"ecosystem": "npm", "name": "p" * 257, "version": "1"},
    {"ecosystem": "npm", "name": "p", "version": "1" * 257},
)  # fmt: skip


def _ecosystem_variants(ecosystem: str, rng: random.Random) -> str:
    base, _, release = ecosystem.partition(":")
    return rng.choice(
        (
            ecosystem,
            ecosystem,
            ecosystem.lower(),
            ecosystem.upper(),
            base,
            f"{base}:{release or '12'}",
            f"{base}:other",
            f"{base}x",
            rng.choice(ECOSYSTEMS[:25]),
        )
    )


def _name_variants(name: str, rng: random.Random) -> str:
    return rng.choice(
        (name, name, name.upper(), name.replace("-", "_"), name.replace(".", "-_."), f"{name}x")
    )


def inventories(
    advisories: tuple[Advisory, ...], rng: random.Random
) -> tuple[list[list[object]], list[tuple[str, list[str]]]]:
    """A few inventories aimed at the batch's packages, and the versions met per ecosystem."""
    targets = [(p.ecosystem, p.name, p) for a in advisories for p in a.affected][:24]
    if not targets:
        targets = [(rng.choice(ECOSYSTEMS[:20]), rng.choice(NAMES[:10]), None)]
    met: dict[str, list[str]] = {}
    result: list[list[object]] = []
    for _ in range(rng.randint(1, 3)):
        inventory: list[object] = []
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.1:
                inventory.append(copy.deepcopy(rng.choice(_JUNK_ITEMS)))
                continue
            ecosystem, name, package = rng.choice(targets)
            near = [] if package is None else [
                *package.versions, *(v for r in package.ranges for _, v in r.events)
            ]  # fmt: skip
            version = _version(rng, near[:64])
            if isinstance(version, str) and rng.random() < 0.1:
                version = f"v{version}"
            item = {
                "ecosystem": _ecosystem_variants(ecosystem, rng),
                "name": _name_variants(name, rng),
                "version": version,
            }
            inventory.append(item)
            if isinstance(version, str):
                met.setdefault(canonical(ecosystem).partition(":")[0], []).extend(near[:6])
                met[canonical(ecosystem).partition(":")[0]].append(version)
        result.append(inventory)
    if rng.random() < 0.05:  # more matching items than MAX_MATCHES
        ecosystem, name, _ = rng.choice(targets)
        result.append(
            [
                {"ecosystem": ecosystem, "name": name, "version": f"zz{n}"}
                for n in range(MAX_MATCHES + rng.randint(1, 80))
            ]
        )
    return result, list(met.items())


# --- the cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """The seeds, those of them that are not ZIP archives, and the valid advisories."""

    seeds: tuple[bytes, ...]
    json_seeds: tuple[bytes, ...]
    valid: tuple[bytes, ...]


@dataclass
class Report:
    """What a fuzz run found."""

    cases: int = 0
    accepted: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"(?:\u2026)?')


def _reason_key(reason: str) -> str:
    return _QUOTED.sub('"..."', reason)[:70]


def check_feed(data: bytes, name: str, rng: random.Random, report: Report) -> list[str]:
    """parse_feed on one input, then the batch, the index, inventories and orders."""
    try:
        batch = parse_feed(data, name=name)
    except AdvisoryError as refused:
        message = str(refused)
        report.refusals[_reason_key(message)] += 1
        if not _printable_ascii(message, MAX_REASON_CHARS):
            return [f"a refusal's message is unbounded or unsafe: {message[:300]!r}"]
        return []
    found = batch_violations(data, batch)
    if found:
        return found
    report.accepted["zip" if data.startswith(b"PK\x03\x04") else "json"] += 1
    report.accepted["advisory"] += len(batch.advisories)
    report.accepted["withdrawn"] += sum(a.withdrawn for a in batch.advisories)
    for _, reason in batch.refused:
        report.refusals[f"entry: {_reason_key(reason)}"] += 1
    index = AdvisoryIndex(batch.advisories)
    if len(index) != sum(not a.withdrawn for a in batch.advisories):
        found.append("the index does not file exactly the advisories in force")
    inventories_, met = inventories(batch.advisories, rng)
    for inventory in inventories_:
        found += inventory_violations(index, batch.advisories, inventory)
        for item in inventory[:40]:
            if isinstance(item, dict) and all(
                isinstance(item.get(k), str) for k in ("ecosystem", "name", "version")
            ):
                fields = (item["ecosystem"], item["name"], item["version"])
                found += match_violations(index, batch.advisories, *fields)
                report.accepted["match"] += len(index.match(*fields))
    for base, versions in met[:3]:
        sample = rng.sample(versions, min(len(versions), 10))
        found += order_violations(base, sample)
    return found


def run_case(corpus: Corpus, rng: random.Random, report: Report) -> None:
    """One case; an exception other than AdvisoryError is a violation."""
    data = b""
    name = "feed.json"
    try:
        roll = rng.random()
        if roll < 0.4:
            # Half of the tree mutations start from a valid advisory, so that many cases
            # reach the index and the matcher.
            pool = corpus.valid if rng.random() < 0.5 else corpus.json_seeds
            data = mutate_structure(rng.choice(pool), rng)
        elif roll < 0.7:
            data = mutate_payload(rng.choice(corpus.seeds), rng, corpus.seeds)
        elif roll < 0.9:
            data = mutate_zip(corpus.json_seeds, rng)
        else:
            data = rng.choice(corpus.seeds)
        if rng.random() < 0.1:
            name = rng.choice(FEED_NAMES)
        found = check_feed(data, name, rng, report)
        report.violations += [f"{v}\n  input: {data[:2000]!r} name={name!r}" for v in found]
    except Exception:
        report.violations.append(
            f"{traceback.format_exc(limit=-3).strip()}\n  input: {data[:2000]!r} name={name!r}"
        )


def run(iterations: int, seed: int, max_seconds: float | None = None) -> Report:
    """Run ``iterations`` cases (fewer if ``max_seconds`` runs out) and report."""
    rng = random.Random(seed)
    all_seeds = seeds()
    json_seeds = tuple(s for s in all_seeds if not s.startswith(b"PK\x03\x04"))
    corpus = Corpus(all_seeds, json_seeds, tuple(map(_as_bytes, VALID_ADVISORIES)))
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
