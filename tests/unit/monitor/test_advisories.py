"""OSV advisories: parsing, version orders, matching (src/ironhub/monitor/advisories.py; issue 6).

The hostile documents live in tests/vectors/osv_advisories.json, a JSON list of vectors:

* ``name``: unique, kebab-case;
* the input, exactly one of ``input`` (the OSV document as a JSON value, sent as compact
  JSON), ``hex`` (raw bytes) or ``text`` (raw text: a string, or a list of strings and
  ``{"repeat": s, "times": n}`` parts, as in tests/vectors/README.md's text fields), the last
  two for what a JSON value cannot carry (duplicate keys, NaN, bad UTF-8, 2 MiB strings);
* ``expect``: ``accepted`` (the batch holds one advisory) or ``refused`` (the whole input
  raises ``AdvisoryError``, or the batch refuses its only entry);
* ``reason_contains``: with ``refused``, a substring of the reason;
* optional ``severity`` (with ``accepted``) and ``note``.

ZIP bombs are built here, in code. Every vector is also mutated by a small seeded fuzz loop:
any bytes give a ``FeedBatch`` or raise ``AdvisoryError``, nothing else.
"""

from __future__ import annotations

import io
import itertools
import json
import random
import struct
import zipfile
import zlib
from dataclasses import replace
from functools import cmp_to_key
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_purity import forbidden_imports
from tests.vectors.load import expand_text

from ironhub.errors import IronhubError
from ironhub.monitor import advisories
from ironhub.monitor.advisories import (
    MAX_ADVISORY_BYTES,
    SEVERITIES,
    Advisory,
    AdvisoryError,
    AdvisoryIndex,
    AffectedPackage,
    FeedBatch,
    Match,
    Range,
    advisory_from_json,
    advisory_to_json,
    comparator_for,
    compare,
    compare_apk,
    compare_dpkg,
    compare_generic,
    compare_pep440,
    compare_semver,
    cvss3_base_score,
    match_inventory,
    parse_advisory,
    parse_feed,
    scan_inventory,
    version_key,
)

VECTORS_FILE = Path(__file__).resolve().parents[2] / "vectors" / "osv_advisories.json"
SOURCE = Path(advisories.__file__)
T = "2024-05-01T10:00:00Z"

# --- real-world-shaped examples -------------------------------------------------------------

DSA = {
    "schema_version": "1.6.0",
    "id": "DSA-5532-1",
    "summary": "openssl - security update",
    "details": "Several vulnerabilities were discovered in OpenSSL.",
    "modified": "2024-01-10T12:34:56.123456Z",
    "published": "2023-10-24T00:00:00Z",
    "related": ["CVE-2023-5363"],
    "affected": [
        {
            "package": {
                "ecosystem": "Debian:12",
                "name": "openssl",
                "purl": "pkg:deb/debian/openssl?arch=source",
            },
            "ranges": [
                {
                    "type": "ECOSYSTEM",
                    "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}],
                }
            ],
            "versions": ["3.0.9-1", "3.0.11-1~deb12u1"],
            "database_specific": {"source": "https://security-tracker.debian.org/"},
        },
        {
            "package": {"ecosystem": "Debian:11", "name": "openssl"},
            "ranges": [
                {
                    "type": "ECOSYSTEM",
                    "events": [{"introduced": "0"}, {"fixed": "1.1.1w-0+deb11u1"}],
                }
            ],
        },
    ],
}

GHSA = {
    "schema_version": "1.4.0",
    "id": "GHSA-j8r2-6x86-q33q",
    "modified": "2024-02-16T08:11:14Z",
    "published": "2023-05-22T20:24:41Z",
    "aliases": ["CVE-2023-32681", "PYSEC-2023-74"],
    "summary": "Unintended leak of Proxy-Authorization header in requests",
    "details": "### Impact\n\nSince Requests 2.3.0, ...",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N"}],
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "requests"},
            "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "2.3.0"}, {"fixed": "2.31.0"}]}
            ],
            "database_specific": {"source": "https://github.com/advisories/GHSA-j8r2-6x86-q33q"},
        }
    ],
    "references": [{"type": "WEB", "url": "https://github.com/psf/requests/"}],
    "database_specific": {"cwe_ids": ["CWE-200"], "severity": "MODERATE", "github_reviewed": True},
}

GO = {
    "schema_version": "1.3.1",
    "id": "GO-2022-0969",
    "modified": "2023-06-12T18:45:41Z",
    "published": "2022-09-12T20:23:06Z",
    "aliases": ["CVE-2022-27664", "GHSA-69cg-p879-7622"],
    "summary": "Denial of service in net/http and golang.org/x/net/http2",
    "details": "HTTP/2 server connections can hang forever waiting for a clean shutdown.",
    "affected": [
        {
            "package": {"name": "stdlib", "ecosystem": "Go"},
            "ranges": [
                {
                    "type": "SEMVER",
                    "events": [
                        {"introduced": "0"},
                        {"fixed": "1.18.6"},
                        {"introduced": "1.19.0"},
                        {"fixed": "1.19.1"},
                    ],
                }
            ],
            "ecosystem_specific": {"imports": [{"path": "net/http", "symbols": ["Server.Serve"]}]},
        },
        {
            "package": {"name": "golang.org/x/net", "ecosystem": "Go"},
            "ranges": [
                {
                    "type": "SEMVER",
                    "events": [{"introduced": "0"}, {"fixed": "0.0.0-20220906165146-f3363e06e74c"}],
                }
            ],
        },
        {
            "package": {"name": "golang.org/x/net", "ecosystem": "Go"},
            "ranges": [
                {
                    "type": "GIT",
                    "repo": "https://go.googlesource.com/net",
                    "events": [{"introduced": "0"}],
                }
            ],
        },
    ],
    "database_specific": {"url": "https://pkg.go.dev/vuln/GO-2022-0969"},
}

NPM = {
    "id": "GHSA-c2qf-rxjj-qqgw",
    "modified": "2023-11-07T05:03:24Z",
    "summary": "semver vulnerable to Regular Expression Denial of Service",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:L"}],
    "affected": [
        {
            "package": {"ecosystem": "npm", "name": "semver"},
            "ranges": [
                {"type": "SEMVER", "events": [{"introduced": "7.0.0"}, {"fixed": "7.5.2"}]},
                {"type": "SEMVER", "events": [{"introduced": "6.0.0"}, {"fixed": "6.3.1"}]},
                {"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "5.7.2"}]},
            ],
        }
    ],
    "database_specific": {"severity": "MODERATE"},
}


def osv(**over: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "GHSA-test-0000-0000",
        "modified": T,
        "affected": [
            {
                "package": {"ecosystem": "npm", "name": "left-pad"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.3.0"}]}],
            }
        ],
    }
    document.update(over)
    return document


def package(
    ecosystem: str,
    name: str,
    *events: tuple[str, str],
    kind: str = "ECOSYSTEM",
    versions: tuple[str, ...] = (),
) -> dict[str, Any]:
    entry: dict[str, Any] = {"package": {"ecosystem": ecosystem, "name": name}}
    if events:
        entry["ranges"] = [{"type": kind, "events": [{k: v} for k, v in events]}]
    if versions:
        entry["versions"] = list(versions)
    return entry


def advisory(
    advisory_id: str = "GHSA-test-0000-0000", *affected: dict[str, Any], **over: Any
) -> Advisory:
    return parse_advisory(osv(id=advisory_id, affected=list(affected) or osv()["affected"], **over))


def as_bytes(document: object) -> bytes:
    return json.dumps(document).encode()


# --- module surface ---------------------------------------------------------------------------


def test_the_module_is_pure() -> None:
    assert forbidden_imports(SOURCE.read_text(encoding="utf-8")) == []


def test_all_names_the_public_surface() -> None:
    assert sorted(set(advisories.__all__)) == sorted(advisories.__all__)
    for name in advisories.__all__:
        assert hasattr(advisories, name), name
    public = {
        n
        for n, v in vars(advisories).items()
        if not n.startswith("_") and getattr(v, "__module__", None) == advisories.__name__
    }
    assert public <= set(advisories.__all__)


def test_advisory_error_is_an_ironhub_error_and_a_value_error() -> None:
    assert issubclass(AdvisoryError, IronhubError)
    assert issubclass(AdvisoryError, ValueError)


# --- the vectors ------------------------------------------------------------------------------


def load_vectors() -> list[dict[str, Any]]:
    vectors = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    assert isinstance(vectors, list)
    names: set[str] = set()
    for vector in vectors:
        assert set(vector) <= {
            "name",
            "input",
            "hex",
            "text",
            "expect",
            "reason_contains",
            "severity",
            "note",
        }
        assert vector["name"] not in names
        names.add(vector["name"])
        assert sum(key in vector for key in ("input", "hex", "text")) == 1
        assert vector["expect"] in ("accepted", "refused")
        assert ("reason_contains" in vector) == (vector["expect"] == "refused")
    return vectors


VECTORS = load_vectors()


def vector_bytes(vector: dict[str, Any]) -> bytes:
    if "hex" in vector:
        return bytes.fromhex(vector["hex"])
    if "text" in vector:
        return expand_text(vector["text"], vector["name"]).encode("utf-8", "surrogatepass")
    return as_bytes(vector["input"])


def test_there_are_enough_vectors() -> None:
    assert len(VECTORS) >= 40
    assert sum(v["expect"] == "accepted" for v in VECTORS) >= 5


@pytest.mark.parametrize("vector", VECTORS, ids=lambda vector: vector["name"])
def test_vector(vector: dict[str, Any]) -> None:
    data = vector_bytes(vector)
    if vector["expect"] == "accepted":
        batch = parse_feed(data, name="vector.json")
        assert batch.refused == ()
        assert len(batch.advisories) == 1
        if "severity" in vector:
            assert batch.advisories[0].severity == vector["severity"]
        return
    try:
        batch = parse_feed(data, name="vector.json")
    except AdvisoryError as exc:
        reason = str(exc)
    else:
        assert batch.advisories == ()
        assert len(batch.refused) == 1
        reason = batch.refused[0][1]
    assert vector["reason_contains"] in reason
    # A reason never carries more than a clipped name of the input.
    assert len(reason) < 200


def test_fuzzed_vectors_give_a_batch_or_an_advisory_error() -> None:
    rng = random.Random(20240501)
    seeds = [vector_bytes(v) for v in VECTORS if len(vector_bytes(v)) < 4096]
    for seed in seeds:
        for _ in range(25):
            data = bytearray(seed)
            for _ in range(rng.randint(1, 4)):
                position = rng.randrange(len(data))
                action = rng.randrange(3)
                if action == 0:
                    data[position] = rng.randrange(256)
                elif action == 1:
                    data.insert(position, rng.choice(b'[]{}",:0\\'))
                else:
                    del data[position:]
                    data += b"x"
            try:
                assert isinstance(parse_feed(bytes(data), name="fuzz"), FeedBatch)
            except AdvisoryError:
                pass


# --- real-world shapes -----------------------------------------------------------------------


def test_a_debian_security_advisory() -> None:
    parsed = parse_advisory(DSA)
    assert parsed.id == "DSA-5532-1"
    assert parsed.modified == "2024-01-10T12:34:56.123456Z"
    assert parsed.summary == "openssl - security update"
    assert parsed.aliases == ()
    assert parsed.severity == "unknown"
    assert not parsed.withdrawn
    assert [(p.ecosystem, p.name) for p in parsed.affected] == [
        ("Debian:12", "openssl"),
        ("Debian:11", "openssl"),
    ]
    assert parsed.affected[0].versions == frozenset({"3.0.9-1", "3.0.11-1~deb12u1"})
    assert parsed.affected[0].ranges == (
        Range("ECOSYSTEM", (("introduced", "0"), ("fixed", "3.0.11-1~deb12u2"))),
    )
    index = AdvisoryIndex([parsed])
    [match] = index.match("Debian:12", "openssl", "3.0.11-1~deb12u1")
    assert match == Match(
        "DSA-5532-1",
        (),
        "unknown",
        "openssl - security update",
        "openssl",
        "3.0.11-1~deb12u1",
        "3.0.11-1~deb12u2",
        "Debian:12",
    )
    assert index.match("Debian:12", "openssl", "3.0.11-1~deb12u2") == []
    assert index.match("Debian:12", "openssl", "3.0.15-1~deb12u1") == []
    [old] = index.match("Debian:11", "openssl", "1.1.1n-0+deb11u5")
    assert old.fixed == "1.1.1w-0+deb11u1"
    assert index.match("Debian:13", "openssl", "3.0.9-1") == []
    assert index.match("Debian", "openssl", "3.0.9-1") == []


def test_a_github_advisory_for_pypi() -> None:
    parsed = parse_advisory(GHSA)
    assert parsed.aliases == ("CVE-2023-32681", "PYSEC-2023-74")
    assert parsed.severity == "medium"  # 6.1 from the vector; the text says MODERATE too
    index = AdvisoryIndex([parsed])
    [match] = index.match("PyPI", "Requests", "2.28.1")
    assert match.fixed == "2.31.0"
    assert match.package == "Requests"
    assert index.match("pypi", "requests", "2.3.0")[0].installed_version == "2.3.0"
    assert index.match("PyPI", "requests", "2.31.0") == []
    assert index.match("PyPI", "requests", "2.2.1") == []
    assert index.match("npm", "requests", "2.28.1") == []


def test_a_go_advisory() -> None:
    parsed = parse_advisory(GO)
    assert len(parsed.affected) == 2  # the GIT-only entry is dropped
    assert parsed.summary.startswith("Denial of service")
    index = AdvisoryIndex([parsed])
    assert index.match("Go", "stdlib", "v1.19.0")[0].fixed == "1.19.1"
    assert index.match("Go", "stdlib", "1.18.5")[0].fixed == "1.18.6"
    assert index.match("Go", "stdlib", "v1.18.6") == []
    assert index.match("Go", "stdlib", "1.19.1") == []
    [net] = index.match("Go", "golang.org/x/net", "v0.0.0-20220722155237-a158d28d115b")
    assert net.fixed == "0.0.0-20220906165146-f3363e06e74c"
    assert index.match("Go", "golang.org/x/net", "v0.1.0") == []


def test_an_npm_advisory_with_several_ranges() -> None:
    index = AdvisoryIndex([parse_advisory(NPM)])
    assert index.match("npm", "semver", "7.5.1")[0].fixed == "7.5.2"
    assert index.match("npm", "semver", "6.3.0")[0].fixed == "6.3.1"
    assert index.match("npm", "semver", "5.0.0")[0].fixed == "5.7.2"
    assert index.match("npm", "semver", "7.5.2") == []
    assert index.match("npm", "semver", "6.3.1") == []
    assert index.match("npm", "Semver", "5.0.0") == []  # npm names are case-sensitive
    assert index.match("npm", "semver", "5.0.0")[0].severity == "medium"


# --- parsing details --------------------------------------------------------------------------


def test_modified_is_normalised_to_fixed_width_utc() -> None:
    assert advisory(modified="2024-05-01T12:00:00+02:00").modified == "2024-05-01T10:00:00.000000Z"
    assert (
        advisory(modified="2024-05-01t10:00:00.123456789z").modified
        == "2024-05-01T10:00:00.123456Z"
    )
    # String order is time order, as the importer compares them.
    early, late = (
        advisory(modified="2024-05-01T10:00:00.5Z"),
        advisory(modified="2024-05-01T10:00:01Z"),
    )
    assert early.modified < late.modified


def test_summary_falls_back_to_the_first_line_of_details_and_is_cleaned() -> None:
    assert advisory(details="\n\n  First   line \nsecond").summary == "First line"
    assert advisory(summary="  ", details="Details").summary == "Details"
    assert advisory().summary == ""
    assert advisory(summary="a\x1b[31mb").summary == "a\ufffd[31mb"
    long = advisory(summary="x" * 1000).summary
    assert len(long) == 256
    assert long.endswith("\u2026")


def test_aliases_are_clipped_deduplicated_and_exclude_the_id() -> None:
    many = [f"CVE-2024-{n:04d}" for n in range(40)]
    assert advisory(aliases=many).aliases == tuple(many[:32])
    assert advisory(aliases=["CVE-1", "CVE-1", "GHSA-test-0000-0000"]).aliases == ("CVE-1",)


def test_withdrawn_advisories_are_kept_and_never_match() -> None:
    parsed = advisory(withdrawn="2024-06-01T00:00:00Z")
    assert parsed.withdrawn
    assert parsed.affected
    assert len(AdvisoryIndex([parsed])) == 0
    bare = parse_advisory({"id": "GHSA-gone", "modified": T, "withdrawn": T})
    assert bare.affected == ()
    assert (
        parse_advisory({"id": "GHSA-gone", "modified": T, "withdrawn": T, "affected": []}).affected
        == ()
    )


def test_affected_entries_without_package_or_without_matchable_ranges_are_dropped() -> None:
    parsed = advisory(
        "GHSA-test-0000-0000",
        {"ranges": [{"type": "GIT", "repo": "r", "events": [{"introduced": "0"}]}]},
        {
            "package": {"ecosystem": "npm", "name": "a"},
            "ranges": [{"type": "GIT", "repo": "r", "events": [{"introduced": "0"}]}],
        },
        {
            "package": {"ecosystem": "npm", "name": "b"},
            "ranges": [{"type": "CALVER", "events": [{"introduced": "0"}]}],
        },
        {"package": {"ecosystem": "npm", "name": "c"}},
        package("npm", "d", versions=("1.0.0",)),
    )
    assert [p.name for p in parsed.affected] == ["d"]


def test_nothing_matchable_reasons() -> None:
    with pytest.raises(AdvisoryError, match="only GIT ranges"):
        advisory(
            "GHSA-x", {"ranges": [{"type": "GIT", "repo": "r", "events": [{"introduced": "0"}]}]}
        )
    with pytest.raises(AdvisoryError, match="no package with an ECOSYSTEM or SEMVER range"):
        advisory("GHSA-x", {"package": {"ecosystem": "npm", "name": "c"}})
    with pytest.raises(AdvisoryError, match="no package with"):
        advisory("GHSA-x", {"ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}]})


def test_known_ecosystems_are_canonicalised() -> None:
    parsed = advisory("GHSA-x", package("debian:12", "openssl", ("introduced", "0")))
    assert parsed.affected[0].ecosystem == "Debian:12"
    unknown = advisory("GHSA-x", package("MyDistro:1", "openssl", ("introduced", "0")))
    assert unknown.affected[0].ecosystem == "MyDistro:1"


def test_the_refusal_never_echoes_long_input() -> None:
    with pytest.raises(AdvisoryError) as caught:
        parse_feed(b"x" * 10_000, name="n" * 500 + "\n")
    assert len(str(caught.value)) < 120
    assert "\n" not in str(caught.value)
    assert "\\u2026" in str(caught.value)  # clipped, JSON-quoted


# --- severity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5),
        ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 8.8),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
        ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H", 8.1),
        ("CVSS:3.1/AV:P/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 6.8),
        ("CVSS:3.1/AV:A/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 8.8),
        ("CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H", 7.2),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:N/I:H/A:N", 6.5),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N", 3.1),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N", 5.3),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:C/C:H/I:H/A:H", 9.0),
        ("CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.0),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N", 6.1),
        ("CVSS:3.1/AV:N/AC:L/PR:H/UI:R/S:C/C:L/I:L/A:N", 4.8),
        ("CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:C/C:L/I:L/A:N", 5.5),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:N/I:N/A:N", 0.0),
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.0/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4),
        # Metric order does not matter; temporal and environmental metrics do not count.
        ("CVSS:3.1/S:U/AV:N/AC:L/PR:N/UI:N/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C/MAV:L/CR:H", 9.8),
    ],
)
def test_cvss3_base_score(vector: str, score: float) -> None:
    assert cvss3_base_score(vector) == score


@pytest.mark.parametrize(
    "vector",
    [
        "",
        "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P",
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",  # a base metric missing
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/A:L",  # twice
        "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",  # a bad value
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/ZZ:X",  # an unknown metric
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:",  # an empty value
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/",  # a trailing slash
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P" + "/E:P" * 100,  # too long
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:Z",
    ],
)
def test_malformed_cvss_vectors_have_no_score(vector: str) -> None:
    assert cvss3_base_score(vector) is None


def test_roundup_per_version() -> None:
    # v3.1 Appendix A: the integer method avoids the floating-point artefact v3.0 suffers.
    assert advisories._roundup_30(4.000000000000001) == 4.1
    assert advisories._roundup_31(4.000000000000001) == 4.0
    assert advisories._roundup_31(4.02) == 4.1
    assert advisories._roundup_31(4.0) == 4.0


@pytest.mark.parametrize(
    ("score", "severity"),
    [
        (10.0, "critical"),
        (9.0, "critical"),
        (8.9, "high"),
        (7.0, "high"),
        (6.9, "medium"),
        (4.0, "medium"),
        (3.9, "low"),
        (0.1, "low"),
        (0.0, "low"),
    ],
)
def test_score_severity_boundaries(score: float, severity: str) -> None:
    assert advisories._score_severity(score) == severity


CRITICAL = {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}
LOW = {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N"}
BROKEN = {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N"}


@pytest.mark.parametrize(
    ("over", "package_severity", "expected"),
    [
        ({"severity": [CRITICAL]}, None, "critical"),
        ({"severity": [LOW, CRITICAL]}, None, "critical"),  # the highest score
        (
            {"severity": [LOW], "database_specific": {"severity": "CRITICAL"}},
            None,
            "low",
        ),  # CVSS first
        ({"severity": [BROKEN], "database_specific": {"severity": "HIGH"}}, None, "high"),
        ({"severity": [{"type": "CVSS_V4", "score": "CVSS:4.0/AV:N"}]}, None, "unknown"),
        ({}, [CRITICAL], "critical"),  # per-package vectors when the advisory has none
        ({"severity": [BROKEN]}, [LOW], "low"),
        ({"database_specific": {"severity": "MODERATE"}}, None, "medium"),
        ({"database_specific": {"severity": "medium"}}, None, "medium"),
        ({"database_specific": {"severity": "LOW"}}, None, "low"),
        ({"database_specific": {"severity": "severe"}}, None, "unknown"),
        ({"database_specific": {"severity": 9}}, None, "unknown"),
        ({"severity": [{"type": "Ubuntu", "score": "negligible"}]}, None, "low"),
        ({}, [{"type": "Ubuntu", "score": "High"}], "high"),
        ({"severity": [{"type": "Ubuntu", "score": "untriaged"}]}, None, "unknown"),
        (
            {
                "database_specific": {"severity": "LOW"},
                "severity": [{"type": "Ubuntu", "score": "high"}],
            },
            None,
            "low",
        ),
        ({}, None, "unknown"),
    ],
)
def test_severity_sources(
    over: dict[str, Any], package_severity: list[dict[str, str]] | None, expected: str
) -> None:
    entry = package("npm", "x", ("introduced", "0"))
    if package_severity is not None:
        entry["severity"] = package_severity
    assert advisory("GHSA-x", entry, **over).severity == expected


# --- version orders ---------------------------------------------------------------------------


# An ecosystem of each order, for version_key.
ECOSYSTEM_OF: dict[advisories.Comparator, str] = {
    compare_dpkg: "Debian",
    compare_pep440: "PyPI",
    compare_apk: "Alpine",
    compare_semver: "npm",
    compare_generic: "Maven",
}


def ordered(comparator: advisories.Comparator, *chain: str) -> None:
    """Assert that each version of ``chain`` is older than the next (and the reverse), by the
    comparator and by the sort key."""
    ecosystem = ECOSYSTEM_OF[comparator]
    for older, newer in itertools.pairwise(chain):
        assert comparator(older, newer) == -1, (older, newer)
        assert comparator(newer, older) == 1, (newer, older)
        assert version_key(ecosystem, older) < version_key(ecosystem, newer), (older, newer)


def same(comparator: advisories.Comparator, left: str, right: str) -> None:
    assert comparator(left, right) == 0, (left, right)
    assert comparator(right, left) == 0, (right, left)
    ecosystem = ECOSYSTEM_OF[comparator]
    assert version_key(ecosystem, left) == version_key(ecosystem, right), (left, right)


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        # The examples of the issue.
        ("1.0~rc1", "1.0", -1),
        ("1:0.9", "2.0", 1),
        ("1.0-1", "1.0-1+deb12u1", -1),
        ("3.0.14-1~deb12u2", "3.0.15-1~deb12u1", -1),
        ("2.30-1ubuntu1", "2.30-1", 1),
        # dpkg's own test suite (lib/dpkg/t/t-version.c and the --compare-versions cases).
        ("1.0", "1.0", 0),
        ("0:1.0", "1.0", 0),
        ("1.0", "1.0-0", 0),
        ("1.0-0", "1.0-", None),
        ("1:1.0", "2:0.9", -1),
        ("1.0", "1.1", -1),
        ("1.0", "1.0a", -1),
        ("1.0a", "1.0+", -1),  # letters before non-letters
        ("1.0.1", "1.0a", 1),
        ("1.0~", "1.0", -1),
        ("1.0~~", "1.0~", -1),
        ("1.0~~a", "1.0~", -1),
        ("1.0~", "1.0~a", -1),
        ("1.0+", "1.0", 1),
        ("1.0-1", "1.0-2", -1),
        ("1.0-1.1", "1.0-1", 1),
        ("1.0-1", "1.0-1~", 1),
        ("1.01", "1.1", 0),  # digit parts are numbers
        ("1.10", "1.9", 1),
        ("1.0-1ubuntu0.1", "1.0-1ubuntu1", -1),
        ("2:1.0", "1:9.9", 1),
        ("1:1.0:2-3", "1:1.0:1-3", 1),  # colons in upstream need an epoch
        ("1.0-a-1", "1.0-a-2", -1),  # the revision is after the last hyphen
        ("1.2.3" + "0" * 200, "1.2.4", 1),  # long numbers without int()
        ("0.0.0", "0", 1),
        ("7.88.1-10+deb12u5", "7.88.1-10+deb12u10", -1),
        # Versions that run out go on with empty parts, even where the first part is empty.
        ("1.0", "1.0.0", -1),
        ("1.0-0", "1.0-00", 0),
        ("1.0", "1.0-0~1", 1),  # revision "" is "0", and "0~1" < "0"
        ("0~1", "0", -1),
        ("00~1", "0", -1),
        ("0:0", "0", 0),
        ("0~", "0~~", 1),
        ("~", "0", -1),
        ("a", "0", 1),  # letters after the end of a part
        ("1.0-a", "1.0", 1),
        ("1.0-~", "1.0", -1),
        ("1.0.~", "1.0", 1),  # "." is past the end, whatever follows
    ],
)
def test_dpkg_order(left: str, right: str, expected: int | None) -> None:
    left_key, right_key = version_key("Debian", left), version_key("Debian", right)
    if expected is None:  # "1.0-" is refused by dpkg: invalid sorts first
        assert compare_dpkg(left, right) == 1
        assert left_key > right_key
        return
    assert compare_dpkg(left, right) == expected
    assert compare_dpkg(right, left) == -expected
    assert (left_key > right_key) - (left_key < right_key) == expected


@pytest.mark.parametrize(
    "text", ["", "a:1.0", ":1.0", "1.0 beta", "1.0-", "1.0:2", "1.0_1", "é1.0", "1" * 257]
)
def test_dpkg_invalid_versions_sort_first(text: str) -> None:
    assert compare_dpkg(text, "0~") == -1
    assert compare_dpkg("0~", text) == 1
    assert compare_dpkg(text, text) == 0


def test_invalid_versions_order_among_themselves() -> None:
    assert compare_dpkg("a:2", "a:10") == -1  # the generic rule
    assert compare_dpkg("a:01", "a:1") == -1  # then code points
    assert compare_semver("zzz", "aaa") == 1
    assert compare_semver("x" * 300, "x" * 299) == 1


def test_semver_order() -> None:
    ordered(
        compare_semver,
        "0.0.1",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "1.10.0",
        "2.0.0",
        "10.0.0",
    )
    same(compare_semver, "1.0.0+build.1", "1.0.0")
    same(compare_semver, "v1.2.3", "1.2.3")
    same(compare_semver, "1.2", "1.2.0")
    same(compare_semver, "1", "1.0.0")
    ordered(compare_semver, "1.0.0-1", "1.0.0-a")  # numeric identifiers first
    ordered(
        compare_semver,
        "0.0.0-20220722155237-a158d28d115b",
        "0.0.0-20220906165146-f3363e06e74c",
        "0.0.0",
    )
    # Not SemVer: invalid, before every valid version.
    ordered(compare_semver, "01.2.3", "0.0.0")
    ordered(compare_semver, "1.2.3.4", "0.0.0-a")
    ordered(compare_semver, "", "0.0.0")


def test_pep440_order() -> None:
    ordered(
        compare_pep440,
        "0.9",
        "1.0.dev0",
        "1.0.dev1",
        "1.0a1.dev0",
        "1.0a1",
        "1.0a1.post1",
        "1.0a2",
        "1.0b1",
        "1.0rc1",
        "1.0rc2.post1",
        "1.0",
        "1.0+abc",
        "1.0+abc.5",
        "1.0+abc.10",
        "1.0+5",
        "1.0.post1.dev0",
        "1.0.post1",
        "1.0.post2",
        "1.0.1",
        "1.1.dev1",
        "2.0",
        "1!0.1",
    )
    for left, right in [
        ("1.0", "1.0.0"),
        ("1.0rc1", "1.0c1"),
        ("1.0rc1", "1.0pre1"),
        ("1.0rc1", "1.0preview1"),
        ("1.0-1", "1.0.post1"),
        ("1.0.rev1", "1.0.post1"),
        ("1.0r", "1.0.post0"),
        ("1.0alpha1", "1.0a1"),
        ("1.0beta", "1.0b0"),
        ("1.0.DEV", "1.0.dev0"),
        ("v1.0", "1.0"),
        (" 1.0 ", "1.0"),
        ("1.0+ABC", "1.0+abc"),
        ("1.0+a-b_c", "1.0+a.b.c"),
        ("0!1.0", "1.0"),
        ("0", "0.0"),
    ]:
        same(compare_pep440, left, right)
    ordered(compare_pep440, "1.0-foo", "0.0")  # not PEP 440: invalid
    same(compare_pep440, "1.0-beta_2", "1.0b2")


def test_apk_order() -> None:
    ordered(
        compare_apk,
        "1.0_alpha",
        "1.0_alpha1",
        "1.0_beta",
        "1.0_pre1",
        "1.0_rc1",
        "1.0_rc2",
        "1.0",
        "1.0-r1",
        "1.0-r10",
        "1.0_cvs",
        "1.0_svn",
        "1.0_git20240101",
        "1.0_hg",
        "1.0_p1",
        "1.0_p1-r1",
        "1.0a",
        "1.0b",
        "1.0.1",
        "1.2",
        "1.10",
    )
    same(compare_apk, "1.2.3-r4", "1.2.3~abc123-r4")
    same(compare_apk, "1.2.3", "1.2.3-r0")
    ordered(compare_apk, "1.0_rc1_p2", "1.0_rc2")
    ordered(compare_apk, "1.0_rc1", "1.0_rc1_p1")
    ordered(compare_apk, "1.0-beta", "0.1")  # not apk: invalid


def test_generic_order() -> None:
    ordered(compare_generic, "1.0-beta", "1.0rc1", "1.0", "1.0.0", "1.0.1", "1.0.10", "1.1", "2")
    same(compare_generic, "1.0", "1-0")
    same(compare_generic, "1.0RC1", "1.0rc1")
    same(compare_generic, "1.01", "1.1")
    ordered(compare_generic, "1.a", "1.b", "1.0")
    ordered(compare_generic, "", "0")  # empty: invalid


@pytest.mark.parametrize(
    ("ecosystem", "expected"),
    [
        ("Debian", compare_dpkg),
        ("Debian:12", compare_dpkg),
        ("debian:12", compare_dpkg),
        ("Ubuntu:22.04:LTS", compare_dpkg),
        ("Ubuntu:Pro:18.04:LTS", compare_dpkg),
        ("PyPI", compare_pep440),
        ("Alpine:v3.18", compare_apk),
        ("Wolfi", compare_apk),
        ("Chainguard", compare_apk),
        ("npm", compare_semver),
        ("Go", compare_semver),
        ("crates.io", compare_semver),
        ("Hex", compare_semver),
        ("Pub", compare_semver),
        ("SwiftURL", compare_semver),
        ("Maven", compare_generic),
        ("RubyGems", compare_generic),
        ("Unknown:1", compare_generic),
    ],
)
def test_comparator_for(ecosystem: str, expected: advisories.Comparator) -> None:
    assert comparator_for(ecosystem) is expected


def test_compare_dispatches_on_the_ecosystem() -> None:
    assert compare("Debian:12", "1.0~rc1", "1.0") == -1
    assert compare("PyPI", "1.0rc1", "1.0") == -1
    assert compare("npm", "1.0.0-rc.1", "1.0.0") == -1
    assert compare("Maven", "1.0-rc1", "1.0") == -1
    assert compare("Alpine:v3.19", "1.0_rc1", "1.0") == -1


PROPERTY_VERSIONS = {
    "Debian": [
        "0",
        "0~",
        "1.0",
        "1.0~rc1",
        "1.0-1",
        "1.0-1+deb12u1",
        "1:0.9",
        "2.30-1ubuntu1",
        "1.0a",
        "1.0+",
        "a:1",
        "",
        "1.0-",
        "01.0",
        "1.0.0",
        "1.0-0",
    ],
    "PyPI": [
        "0",
        "1.0",
        "1.0.0",
        "1.0a1",
        "1.0.dev0",
        "1.0.post1",
        "1!0.1",
        "1.0+local",
        "1.0+5",
        "1.0rc1.post1.dev2",
        "junk",
        "",
        "2.0b3",
        "v1.0",
    ],
    "npm": [
        "0.0.0",
        "1.0.0",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-1",
        "v1.0.0",
        "1.0",
        "01.0.0",
        "x.y.z",
        "",
        "1.0.0+meta",
        "2.0.0-rc.1",
    ],
    "Alpine": [
        "1.0",
        "1.0_rc1",
        "1.0_p1",
        "1.0-r1",
        "1.0a",
        "1.0.1",
        "1.0_rc1_p1",
        "beta",
        "",
        "1.0~ab-r2",
        "1.0_git1",
    ],
    "Maven": [
        "1.0",
        "1.0-beta",
        "1.0.0",
        "1.0rc1",
        "1.a",
        "1",
        "",
        "1.0-SNAPSHOT",
        "1.0.Final",
        "2",
    ],
}


def random_versions(rng: random.Random, alphabet: str, count: int) -> list[str]:
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(count)]


@pytest.mark.parametrize("ecosystem", sorted(PROPERTY_VERSIONS))
def test_every_order_is_total_antisymmetric_and_transitive(ecosystem: str) -> None:
    rng = random.Random(ecosystem)
    versions = PROPERTY_VERSIONS[ecosystem] + random_versions(rng, "0123456789.-+~:_abpr!v", 14)
    comparator = comparator_for(ecosystem)
    for left, right in itertools.product(versions, repeat=2):
        result = comparator(left, right)
        assert result in (-1, 0, 1)
        assert comparator(right, left) == -result, (left, right)
    for a, b, c in itertools.product(versions, repeat=3):
        if comparator(a, b) <= 0 and comparator(b, c) <= 0:
            assert comparator(a, c) <= 0, (a, b, c)
    # Random pairs, as a sort would meet them: a sorted list stays sorted pairwise.
    for _ in range(200):
        sample = rng.sample(versions, 6)
        sample.sort(key=cmp_to_key(comparator))
        assert all(comparator(x, y) <= 0 for x, y in itertools.pairwise(sample))
    # The sort key orders as the comparator does, pair by pair and in a sort (stable: equal
    # versions keep their places either way).
    keys = {version: version_key(ecosystem, version) for version in versions}
    for left, right in itertools.product(versions, repeat=2):
        order = (keys[left] > keys[right]) - (keys[left] < keys[right])
        assert order == comparator(left, right), (left, right)
    for _ in range(50):
        rng.shuffle(versions)
        assert sorted(versions, key=keys.__getitem__) == sorted(
            versions, key=cmp_to_key(comparator)
        )


# --- sort keys --------------------------------------------------------------------------------


def dpkg_reference(left: str, right: str) -> int:
    """dpkg's own dpkg_version_compare and verrevcmp (lib/dpkg/version.c), character by
    character, for valid versions: the oracle of the key-based compare_dpkg."""

    def order(c: str) -> int:
        if c.isdigit():
            return 0
        if c.isalpha():
            return ord(c)
        return -1 if c == "~" else ord(c) + 256 if c else 0

    def verrevcmp(a: str, b: str) -> int:
        def at(text: str, n: int) -> str:
            return text[n] if n < len(text) else ""  # C's NUL at the end

        i = j = 0
        while at(a, i) or at(b, j):
            first_diff = 0
            while (at(a, i) and not at(a, i).isdigit()) or (at(b, j) and not at(b, j).isdigit()):
                ac, bc = order(at(a, i)), order(at(b, j))
                if ac != bc:
                    return ac - bc
                i, j = i + 1, j + 1
            while at(a, i) == "0":
                i += 1
            while at(b, j) == "0":
                j += 1
            while at(a, i).isdigit() and at(b, j).isdigit():
                first_diff = first_diff or ord(at(a, i)) - ord(at(b, j))
                i, j = i + 1, j + 1
            if at(a, i).isdigit():
                return 1
            if at(b, j).isdigit():
                return -1
            if first_diff:
                return first_diff
        return 0

    def parse(text: str) -> tuple[int, str, str]:
        epoch, colon, rest = text.partition(":")
        upstream, hyphen, revision = (rest if colon else text).rpartition("-")
        return (
            int(epoch) if colon else 0,
            upstream if hyphen else revision,
            revision if hyphen else "",
        )

    (epoch_a, up_a, rev_a), (epoch_b, up_b, rev_b) = parse(left), parse(right)
    result = (epoch_a > epoch_b) - (epoch_a < epoch_b) or verrevcmp(up_a, up_b)
    result = result or verrevcmp(rev_a, rev_b)
    return (result > 0) - (result < 0)


def random_dpkg_versions(rng: random.Random, count: int) -> list[str]:
    """Valid Debian versions, rich in what verrevcmp finds hard: zeros, "~", empty parts."""
    versions = []
    for _ in range(count):
        epoch = rng.choice(["", "", "", "0:", "1:", "01:", "2:"])
        upstream = "".join(rng.choice("0001129.+~~aZ") for _ in range(rng.randint(1, 7)))
        if epoch and rng.random() < 0.1:
            upstream += ":1"
        revision = "".join(rng.choice("0019.+~b") for _ in range(rng.randint(0, 4)))
        versions.append(f"{epoch}{upstream}{'-' + revision if revision else ''}")
    return versions


def test_dpkg_keys_order_as_dpkg_does() -> None:
    rng = random.Random(1)
    versions = [
        *random_dpkg_versions(rng, 250),
        "0", "00", "0~", "0~1", "~", "~~", "1.0", "1.0.0", "1.0~", "1.0a", "1.0+", "1.0-0",
        "1.0-0~1", "1.0-00", "0:1.0", "1:0.9", "1.0-1", "1.0-1~", "1.0-a", "1.0-~",
    ]  # fmt: skip
    for left, right in itertools.product(versions, repeat=2):
        assert compare_dpkg(left, right) == dpkg_reference(left, right), (left, right)
    by_key = sorted(versions, key=lambda version: version_key("Debian", version))
    assert by_key == sorted(versions, key=cmp_to_key(dpkg_reference))


def test_dpkg_key_edge_cases() -> None:
    def key(version: str) -> tuple[Any, ...]:
        return version_key("Debian", version)

    assert key("1.0") < key("1.0.0")  # runs out: an empty part, before "." and a number
    assert key("1.0~") < key("1.0")  # "~" before the end
    assert key("1.0~~") < key("1.0~") < key("1.0~a")
    assert key("1.0") < key("1.0a")  # the end before a letter
    assert key("1.0a") < key("1.0+")  # letters before other characters
    assert key("1.0") == key("1.0-0") == key("1.0-00")  # an empty revision is "0"
    assert key("1.0-0~1") < key("1.0")  # ... and "0~1" is below it
    assert key("0~1") < key("0") == key("00")  # a first part of "", 0 still counts
    assert key("0:1.0") == key("1.0")  # no epoch is 0
    assert key("1:0.9") > key("9.9") and key("2:0") > key("1:99")
    assert key("1.01") == key("1.1") and key("1.10") > key("1.9")
    assert key("1.0-") < key("0~") and key("a:1") < key("0~")  # invalid: before all valid


def test_version_key_dispatches_like_compare() -> None:
    assert version_key("debian:12", "1.0~rc1") == version_key("Debian", "1.0~rc1")
    assert version_key("PyPI", "1.0") == version_key("PyPI", "1.0.0")
    assert version_key("npm", "1.0.0-rc.1") < version_key("npm", "1.0.0")
    assert version_key("Maven", "1.0-rc1") < version_key("Maven", "1.0")
    assert version_key("Wolfi", "1.0_rc1") < version_key("Wolfi", "1.0")


def test_keys_are_remembered_for_short_versions_only() -> None:
    # A cache hit returns the key computed before; long versions are parsed each time, so
    # that hostile inventories cannot fill the bounded caches with large keys.
    for ecosystem in ("Debian", "PyPI", "npm", "Alpine", "Maven"):
        short, long = "1.2.3", "1." * 40 + "1"
        assert version_key(ecosystem, short) is version_key(ecosystem, short)
        assert version_key(ecosystem, long) == version_key(ecosystem, long)
        assert version_key(ecosystem, long) is not version_key(ecosystem, long)


# --- evaluation -------------------------------------------------------------------------------


def one_range(
    *events: tuple[str, str],
    ecosystem: str = "npm",
    kind: str = "SEMVER",
    versions: tuple[str, ...] = (),
) -> AdvisoryIndex:
    return AdvisoryIndex(
        [advisory("GHSA-x", package(ecosystem, "p", *events, kind=kind, versions=versions))]
    )


def affected(index: AdvisoryIndex, version: str, ecosystem: str = "npm") -> str | bool | None:
    """``False`` when not affected, else the match's ``fixed``."""
    matches = index.match(ecosystem, "p", version)
    return False if not matches else matches[0].fixed


def test_introduced_and_fixed() -> None:
    index = one_range(("introduced", "1.0.0"), ("fixed", "1.2.0"))
    assert affected(index, "0.9.0") is False
    assert affected(index, "1.0.0") == "1.2.0"
    assert affected(index, "1.1.9") == "1.2.0"
    assert affected(index, "1.2.0") is False
    assert affected(index, "1.2.0-rc.1") == "1.2.0"


def test_last_affected_is_inclusive() -> None:
    index = one_range(("introduced", "1.0.0"), ("last_affected", "1.2.0"))
    assert affected(index, "1.2.0") is None
    assert affected(index, "1.2.1") is False


def test_unfixed_and_from_the_start() -> None:
    index = one_range(("introduced", "0"))
    assert affected(index, "0.0.0") is None
    assert affected(index, "99.0.0") is None
    assert affected(index, "not-a-version") is None  # invalid: fail closed


def test_limit_events() -> None:
    index = one_range(("introduced", "0"), ("limit", "2.0.0"))
    assert affected(index, "1.9.9") is None
    assert affected(index, "2.0.0") is False
    index = one_range(("introduced", "0"), ("limit", "1.0.0"), ("limit", "3.0.0"))
    assert affected(index, "2.0.0") is None  # below one of them
    assert affected(index, "3.0.0") is False
    index = one_range(("introduced", "0"), ("limit", "*"))
    assert affected(index, "99.0.0") is None


def test_events_are_sorted_before_the_sweep() -> None:
    index = one_range(
        ("fixed", "2.0.1"), ("introduced", "2.0.0"), ("fixed", "1.0.1"), ("introduced", "0")
    )
    assert affected(index, "0.5.0") == "1.0.1"
    assert affected(index, "1.5.0") is False
    assert affected(index, "2.0.0") == "2.0.1"
    assert affected(index, "2.0.1") is False


def test_an_interval_opened_and_closed_at_one_version_is_empty() -> None:
    index = one_range(("fixed", "1.0.0"), ("introduced", "1.0.0"))
    assert affected(index, "1.0.0") is False
    index = one_range(("last_affected", "1.0.0"), ("introduced", "1.0.0"))
    assert affected(index, "1.0.0") is None


def test_introduced_zero_sorts_first_even_where_0_is_not_the_lowest() -> None:
    index = one_range(("fixed", "0~1"), ("introduced", "0"), ecosystem="Debian", kind="ECOSYSTEM")
    assert affected(index, "0~0", ecosystem="Debian") == "0~1"


def test_the_fix_is_the_lowest_above_the_installed_version() -> None:
    index = one_range(
        ("introduced", "0"), ("fixed", "1.0.0"), ("fixed", "1.1.0"), ("fixed", "2.0.0")
    )
    assert affected(index, "1.0.5") is False
    index = one_range(("introduced", "1.0.0"), ("fixed", "3.0.0"), ("fixed", "2.0.0"))
    assert affected(index, "1.5.0") == "2.0.0"


def test_listed_versions() -> None:
    index = one_range(("introduced", "2.0.0"), ("fixed", "2.1.0"), versions=("1.0.0",))
    # Listed but outside the range: affected; the range's fix is the hint.
    assert affected(index, "1.0.0") == "2.1.0"
    assert affected(index, "1.0.1") is False
    index = one_range(versions=("1.0.0",))
    assert affected(index, "1.0.0") is None
    assert affected(index, "v1.0.0") is None  # Go inventories write a leading v
    assert one_range(versions=("1.0",), ecosystem="PyPI").match("PyPI", "p", "v1.0") == []


def semver_ranges(*bounds: tuple[str, str]) -> list[dict[str, Any]]:
    """SEMVER ranges ``introduced``-``fixed``, one per pair."""
    return [{"type": "SEMVER", "events": [{"introduced": i}, {"fixed": f}]} for i, f in bounds]


def test_listed_versions_outside_every_range_take_the_lowest_next_fix() -> None:
    index = one_range(
        ("introduced", "3.0.0"), ("fixed", "3.5.0"), ("fixed", "3.1.0"), versions=("1.0.0",)
    )
    assert affected(index, "1.0.0") == "3.1.0"
    index = one_range(("introduced", "2.0.0"), ("last_affected", "2.1.0"), versions=("1.0.0",))
    assert affected(index, "1.0.0") is None  # no fix known
    entry = package(
        "npm", "p", ("introduced", "2.0.0"), ("last_affected", "2.1.0"), versions=("1.0.0",)
    )
    entry["ranges"] += semver_ranges(("4.0.0", "4.2.0"), ("3.0.0", "3.2.0"), ("5.0.0", "5.2.0"))
    assert affected(AdvisoryIndex([advisory("GHSA-x", entry)]), "1.0.0") == "3.2.0"


def test_entries_past_their_last_fix_are_skipped() -> None:
    fixed = [advisory(f"GHSA-{n}", package("npm", "p", ("introduced", "0"), ("fixed", "1.0.0")))
             for n in range(50)]  # fmt: skip
    calls = 0
    original = advisories._CompiledRange.contains

    def counting(self: Any, version: Any) -> bool:
        nonlocal calls
        calls += 1
        return original(self, version)

    index = AdvisoryIndex(fixed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(advisories._CompiledRange, "contains", counting)
        assert index.match("npm", "p", "1.0.0") == []
        assert index.match("npm", "p", "2.0.0") == []
        assert calls == 0
        assert len(index.match("npm", "p", "0.9.0")) == 50
        assert calls == 50


def test_only_entries_that_cannot_match_are_skipped() -> None:
    # Reopened after its fix: no ceiling.
    index = one_range(("introduced", "0"), ("fixed", "1.0.0"), ("introduced", "2.0.0"))
    assert affected(index, "3.0.0") is None
    # Listed above the last fix (affected, no fix above it known).
    index = one_range(("introduced", "0"), ("fixed", "1.0.0"), versions=("2.0.0",))
    assert affected(index, "2.0.0") is None
    assert affected(index, "2.0.1") is False
    # Several ranges: past the last fix of all of them.
    entry = package("npm", "p", ("introduced", "0"), ("fixed", "1.0.0"))
    entry["ranges"] += semver_ranges(("2.0.0", "2.5.0"))
    index = AdvisoryIndex([advisory("GHSA-x", entry)])
    assert affected(index, "0.5.0") == "1.0.0"
    assert affected(index, "1.5.0") is False
    assert affected(index, "2.1.0") == "2.5.0"
    assert affected(index, "2.5.0") is False
    # last_affected is inclusive: its own version is not past it.
    index = one_range(("introduced", "0"), ("last_affected", "1.0.0"))
    assert affected(index, "1.0.0") is None
    assert affected(index, "1.0.1") is False
    # Debian's order, where the version above a fix is not the longer text.
    index = one_range(
        ("introduced", "0"), ("fixed", "1.0-1"), ecosystem="Debian:12", kind="ECOSYSTEM"
    )
    assert affected(index, "1.0-1~deb12u1", ecosystem="Debian:12") == "1.0-1"
    assert affected(index, "1.0-1+deb12u1", ecosystem="Debian:12") is False


def test_a_semver_range_uses_semver_whatever_the_ecosystem() -> None:
    # 1.0.0-1 is a pre-release of 1.0.0 in SemVer, but after 1.0.0 by the generic rule.
    index = one_range(("introduced", "0"), ("fixed", "1.0.0"), ecosystem="Maven")
    assert affected(index, "1.0.0-1", ecosystem="Maven") == "1.0.0"
    index = one_range(("introduced", "0"), ("fixed", "1.0.0"), ecosystem="Maven", kind="ECOSYSTEM")
    assert affected(index, "1.0.0-1", ecosystem="Maven") is False


# --- the index --------------------------------------------------------------------------------


def test_ecosystem_matching_rules() -> None:
    plain = advisory("DLA-1-1", package("Debian", "curl", ("introduced", "0"), ("fixed", "8.0")))
    release = advisory(
        "DSA-2-1", package("Debian:12", "curl", ("introduced", "0"), ("fixed", "8.0"))
    )
    index = AdvisoryIndex([plain, release])
    assert [m.advisory_id for m in index.match("Debian:12", "curl", "7.88.1-10")] == [
        "DLA-1-1",
        "DSA-2-1",
    ]
    assert [m.advisory_id for m in index.match("Debian:11", "curl", "7.74.0-1")] == ["DLA-1-1"]
    assert [m.advisory_id for m in index.match("Debian", "curl", "7.74.0-1")] == ["DLA-1-1"]
    assert [m.advisory_id for m in index.match("debian:12", "curl", "7.0")] == [
        "DLA-1-1",
        "DSA-2-1",
    ]
    assert index.match("Ubuntu:22.04:LTS", "curl", "7.0") == []
    assert index.match("Debianx", "curl", "7.0") == []
    assert index.match("Debian:12", "libcurl", "7.0") == []
    assert index.match("Debian:12", "curl", "7.0")[1].ecosystem == "Debian:12"


def test_ubuntu_release_ecosystems_match_exactly() -> None:
    index = AdvisoryIndex(
        [
            advisory(
                "UBUNTU-CVE-2024-1",
                package(
                    "Ubuntu:22.04:LTS", "curl", ("introduced", "0"), ("fixed", "7.81.0-1ubuntu1.16")
                ),
            )
        ]
    )
    assert (
        index.match("Ubuntu:22.04:LTS", "curl", "7.81.0-1ubuntu1.15")[0].fixed
        == "7.81.0-1ubuntu1.16"
    )
    assert index.match("Ubuntu:22.04", "curl", "7.81.0-1ubuntu1.15") == []
    assert index.match("Ubuntu:Pro:22.04:LTS", "curl", "7.81.0-1ubuntu1.15") == []


@pytest.mark.parametrize("name", ["Foo.Bar_baz", "foo-bar-baz", "FOO__BAR..BAZ", "foo-_.bar-baz"])
def test_pypi_names_are_normalised(name: str) -> None:
    index = AdvisoryIndex(
        [advisory("PYSEC-1", package("PyPI", "foo_bar.Baz", ("introduced", "0")))]
    )
    assert len(index.match("PyPI", name, "1.0")) == 1
    assert index.match("PyPI", "foobarbaz", "1.0") == []


@pytest.mark.parametrize(
    ("ecosystem", "name", "version"),
    [
        ("", "p", "1"),
        ("npm", "", "1"),
        ("npm", "p", ""),
        ("n" * 257, "p", "1"),
        ("npm", "p" * 257, "1"),
        ("npm", "p", "1" * 257),
    ],
)
def test_match_refuses_empty_or_long_arguments(ecosystem: str, name: str, version: str) -> None:
    index = AdvisoryIndex([advisory("GHSA-x", package("npm", "p", ("introduced", "0")))])
    assert index.match(ecosystem, name, version) == []


def test_index_add_remove_get() -> None:
    first = advisory("GHSA-a", package("npm", "p", ("introduced", "0")))
    second = advisory(
        "GHSA-b", package("npm", "p", ("introduced", "0")), package("npm", "q", ("introduced", "0"))
    )
    index = AdvisoryIndex()
    assert len(index) == 0
    index.add(first)
    index.add(second)
    assert len(index) == 2
    assert "GHSA-a" in index
    assert index.get("GHSA-b") is second
    assert index.get("GHSA-z") is None
    assert [m.advisory_id for m in index.match("npm", "p", "1.0.0")] == ["GHSA-a", "GHSA-b"]
    assert index.remove("GHSA-b")
    assert not index.remove("GHSA-b")
    assert "GHSA-b" not in index
    assert index.match("npm", "q", "1.0.0") == []
    assert [m.advisory_id for m in index.match("npm", "p", "1.0.0")] == ["GHSA-a"]
    # add() replaces a filed copy; a withdrawn copy only removes.
    index.add(replace(first, summary="new"))
    assert index.match("npm", "p", "1.0.0")[0].summary == "new"
    index.add(replace(first, withdrawn=True))
    assert len(index) == 0
    assert index.match("npm", "p", "1.0.0") == []


def test_the_constructor_keeps_the_latest_copy() -> None:
    old = advisory(
        "GHSA-a",
        package("npm", "p", ("introduced", "0")),
        modified="2024-01-01T00:00:00Z",
        summary="old",
    )
    new = replace(old, modified="2024-02-01T00:00:00.000000Z", summary="new")
    assert AdvisoryIndex([old, new]).match("npm", "p", "1")[0].summary == "new"
    assert AdvisoryIndex([new, old]).match("npm", "p", "1")[0].summary == "new"
    tie = replace(new, summary="tie")
    assert AdvisoryIndex([new, tie]).match("npm", "p", "1")[0].summary == "tie"
    assert (
        len(
            AdvisoryIndex(
                [new, replace(old, modified="2024-03-01T00:00:00.000000Z", withdrawn=True)]
            )
        )
        == 0
    )


def test_one_advisory_with_several_entries_for_a_package_matches_once() -> None:
    parsed = advisory(
        "GHSA-a",
        package("npm", "p", ("introduced", "0"), ("fixed", "2.0.0")),
        package("npm", "p", ("introduced", "0"), ("fixed", "1.5.0")),
        package("npm", "p", ("introduced", "0")),
        package("npm", "p", ("introduced", "0"), ("fixed", "3.0.0")),
    )
    [match] = AdvisoryIndex([parsed]).match("npm", "p", "1.0.0")
    assert match.fixed == "1.5.0"
    unfixed_first = advisory(
        "GHSA-b",
        package("npm", "p", ("introduced", "0")),
        package("npm", "p", ("introduced", "0"), ("fixed", "2.0.0")),
    )
    assert AdvisoryIndex([unfixed_first]).match("npm", "p", "1.0.0")[0].fixed == "2.0.0"


def test_matches_are_sorted_by_severity_then_id() -> None:
    entry = package("npm", "p", ("introduced", "0"))
    index = AdvisoryIndex(
        [
            advisory("GHSA-b", entry, database_specific={"severity": "LOW"}),
            advisory("GHSA-a", entry),
            advisory("GHSA-c", entry, database_specific={"severity": "CRITICAL"}),
            advisory("GHSA-d", entry, database_specific={"severity": "LOW"}),
        ]
    )
    assert [(m.severity, m.advisory_id) for m in index.match("npm", "p", "1")] == [
        ("critical", "GHSA-c"),
        ("low", "GHSA-b"),
        ("low", "GHSA-d"),
        ("unknown", "GHSA-a"),
    ]
    assert SEVERITIES[-1] == "unknown"


def test_matching_cost_does_not_grow_with_unrelated_advisories() -> None:
    many = [
        advisory(f"GHSA-{n}", package("npm", f"pkg{n}", ("introduced", "0"))) for n in range(2000)
    ]
    index = AdvisoryIndex(many)
    calls = 0
    original = advisories._CompiledRange.contains

    def counting(self: Any, version: Any) -> bool:
        nonlocal calls
        calls += 1
        return original(self, version)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(advisories._CompiledRange, "contains", counting)
        assert len(index.match("npm", "pkg7", "1.0.0")) == 1
    assert calls == 1


# --- inventories ------------------------------------------------------------------------------


def inventory_index() -> AdvisoryIndex:
    return AdvisoryIndex(
        [parse_advisory(DSA), parse_advisory(GHSA), parse_advisory(NPM), parse_advisory(GO)]
    )


def test_match_inventory() -> None:
    packages = [
        {"name": "openssl", "version": "3.0.9-1", "ecosystem": "Debian:12"},
        {"name": "requests", "version": "2.28.1", "ecosystem": "PyPI"},
        {"name": "requests", "version": "2.28.1", "ecosystem": "PyPI"},  # counted once
        {"name": "semver", "version": "7.5.1", "ecosystem": "npm"},
        {"name": "busybox", "version": "1.36.1-9", "ecosystem": "Debian:12"},
        {"name": "openssl", "version": "3.0.9-1"},  # no ecosystem: cannot be matched
    ]
    matches = match_inventory(inventory_index(), packages)
    assert [(m.advisory_id, m.package) for m in matches] == [
        ("GHSA-c2qf-rxjj-qqgw", "semver"),
        ("GHSA-j8r2-6x86-q33q", "requests"),
        ("DSA-5532-1", "openssl"),
    ]
    assert isinstance(matches, list)


@pytest.mark.parametrize(
    "item",
    [
        "openssl",
        None,
        {"name": "openssl", "version": "3.0.9-1"},
        {"name": "openssl", "version": 3, "ecosystem": "Debian:12"},
        {"name": "", "version": "3.0.9-1", "ecosystem": "Debian:12"},
        {"name": "openssl", "version": "3" * 300, "ecosystem": "Debian:12"},
        {"name": ["openssl"], "version": "3.0.9-1", "ecosystem": "Debian:12"},
    ],
)
def test_scan_inventory_skips_what_cannot_be_matched(item: object) -> None:
    scan = scan_inventory(
        inventory_index(),
        [item, {"name": "openssl", "version": "3.0.9-1", "ecosystem": "Debian:12"}],
    )
    assert scan.skipped == 1
    assert len(scan.matches) == 1
    assert scan.omitted == 0


def test_scan_inventory_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(advisories, "MAX_MATCHES", 2)
    monkeypatch.setattr(advisories, "MAX_INVENTORY_PACKAGES", 3)
    index = AdvisoryIndex(
        [advisory(f"GHSA-{n}", package("npm", "p", ("introduced", "0"))) for n in range(3)]
    )
    items = [{"name": "p", "version": f"1.0.{n}", "ecosystem": "npm"} for n in range(5)]
    scan = scan_inventory(index, items)
    assert len(scan.matches) == 2
    assert scan.omitted == 7  # 3 packages read x 3 advisories, 2 returned
    assert scan.skipped == 2  # beyond the package bound
    assert [m.advisory_id for m in scan.matches] == ["GHSA-0", "GHSA-0"]


# --- feeds ------------------------------------------------------------------------------------


def test_a_json_list_feed() -> None:
    bad_with_id = osv(id="GHSA-bad", affected="x")
    data = as_bytes(
        [parse_ok := osv(id="GHSA-ok"), {"modified": T}, bad_with_id, [1], osv(id="GHSA-ok2")]
    )
    batch = parse_feed(b"  \n" + data, name="feed.json")
    assert [a.id for a in batch.advisories] == ["GHSA-ok", "GHSA-ok2"]
    assert [entry for entry, _ in batch.refused] == ["item 1", "GHSA-bad", "item 3"]
    assert "missing 'id'" in batch.refused[0][1]
    assert parse_ok["id"] == "GHSA-ok"
    assert parse_feed(b"[]", name="empty.json") == FeedBatch((), ())


def test_a_single_advisory_feed() -> None:
    assert parse_feed(as_bytes(GHSA), name="GHSA.json").advisories == (parse_advisory(GHSA),)
    refused = parse_feed(as_bytes(osv(affected=[])), name="x.json")
    assert refused.refused == (("GHSA-test-0000-0000", refused.refused[0][1]),)


def test_the_latest_copy_of_an_id_wins() -> None:
    older = osv(id="GHSA-a", modified="2024-01-01T00:00:00Z", summary="older")
    newer = osv(id="GHSA-a", modified="2024-02-01T00:00:00Z", summary="newer")
    other = osv(id="GHSA-b")
    batch = parse_feed(as_bytes([older, other, newer, older]), name="f")
    assert [(a.id, a.summary) for a in batch.advisories] == [("GHSA-a", "newer"), ("GHSA-b", "")]
    assert batch.superseded == 2
    tie = parse_feed(as_bytes([older, {**older, "summary": "later"}]), name="f")
    assert tie.advisories[0].summary == "later"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not valid JSON"),
        (b"   ", "not valid JSON"),
        (b'"x"', "not an advisory or a list"),
        (b"true", "is a boolean, not an advisory"),
        (b"PK\x03\x04garbage", "not a readable ZIP archive"),
        (b"[" * 18 + b"]" * 18, "nests deeper than 17 levels"),
    ],
)
def test_whole_input_failures(data: bytes, reason: str) -> None:
    with pytest.raises(AdvisoryError, match=reason):
        parse_feed(data, name="feed")


def test_the_depth_scan_is_linear_on_unterminated_strings() -> None:
    # Each escaped quote would restart a failing string match: quadratic, hours for this.
    with pytest.raises(AdvisoryError, match="not valid JSON"):
        parse_feed(b'{"id":"' + b'\\"' * 400_000, name="f")
    with pytest.raises(AdvisoryError, match="nests deeper"):
        parse_feed(b"[" * 20 + b'"abc\\', name="f")  # a lone backslash at the end
    assert parse_feed(b'[{"a":"[[[[[[[[[[[[[[[[[[[[\\"[[[[[[[[["}]', name="f").refused == (
        ("item 0", "missing 'id'"),
    )


def test_a_list_feed_may_be_larger_than_one_advisory(monkeypatch: pytest.MonkeyPatch) -> None:
    documents = [osv(id=f"GHSA-{n}", details="x" * 400_000) for n in range(3)]
    assert len(parse_feed(as_bytes(documents), name="f").advisories) == 3
    with pytest.raises(AdvisoryError, match="larger than 1048576 bytes"):
        parse_feed(as_bytes(osv(details="x" * MAX_ADVISORY_BYTES)), name="f")
    monkeypatch.setattr(advisories, "MAX_FEED_JSON_BYTES", 1000)
    with pytest.raises(AdvisoryError, match="larger than 1000 bytes"):
        parse_feed(as_bytes(documents), name="f")
    monkeypatch.setattr(advisories, "MAX_FEED_ADVISORIES", 2)
    with pytest.raises(AdvisoryError, match="more than 2 entries"):
        parse_feed(as_bytes([1, 2, 3]), name="f")


# --- ZIP archives -----------------------------------------------------------------------------


def make_zip(
    *members: tuple[str, bytes] | zipfile.ZipInfo | tuple[zipfile.ZipInfo, bytes],
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            if isinstance(member, zipfile.ZipInfo):
                archive.writestr(member, b"")
            else:
                archive.writestr(*member)
    return buffer.getvalue()


def patch_member(
    data: bytes,
    index: int,
    *,
    size: int | None = None,
    crc: int | None = None,
    flags: int | None = None,
) -> bytes:
    """Rewrite a member's declared uncompressed size, CRC or flags in both of its headers."""
    patched = bytearray(data)
    central = [i for i in range(len(data)) if data.startswith(b"PK\x01\x02", i)][index]
    local = struct.unpack_from("<I", data, central + 42)[0]
    for value, at_central, at_local, layout in (
        (size, 24, 22, "<I"),
        (crc, 16, 14, "<I"),
        (flags, 8, 6, "<H"),
    ):
        if value is not None:
            struct.pack_into(layout, patched, central + at_central, value)
            struct.pack_into(layout, patched, local + at_local, value)
    return bytes(patched)


def test_an_osv_all_zip() -> None:
    bzip2 = zipfile.ZipInfo("BZ-1.json")
    bzip2.compress_type = zipfile.ZIP_BZIP2
    data = make_zip(
        ("GHSA-j8r2-6x86-q33q.json", as_bytes(GHSA)),
        ("GO-2022-0969.json", as_bytes(GO)),
        ("README.md", b"# OSV"),
        zipfile.ZipInfo("nested/"),
        ("ENC-1.json", as_bytes(DSA)),
        (bzip2, as_bytes(NPM)),
        ("broken.json", b"{"),
        ("list.json", as_bytes([GHSA])),
        ("bad\n" + "x" * 100 + ".json", as_bytes(osv(id="bad id"))),
        ("big.json", b" " * (MAX_ADVISORY_BYTES + 1)),
        ("GHSA-j8r2-6x86-q33q-old.json", as_bytes({**GHSA, "modified": "2020-01-01T00:00:00Z"})),
    )
    batch = parse_feed(patch_member(data, 4, flags=0x1), name="all.zip")
    assert [a.id for a in batch.advisories] == ["GHSA-j8r2-6x86-q33q", "GO-2022-0969"]
    assert batch.advisories[0].modified.startswith("2024-02-16")
    assert batch.superseded == 1
    refused = dict(batch.refused)
    assert refused['"README.md"'] == "not a .json member"
    assert refused['"nested/"'] == "not a .json member"
    assert refused['"ENC-1.json"'] == "encrypted member"
    assert refused['"BZ-1.json"'].startswith("unsupported compression method")
    assert refused['"broken.json"'] == "member is not valid JSON"
    assert "must be an object" in refused['"list.json"']
    assert refused['"big.json"'] == "member is larger than 1048576 bytes uncompressed"
    [long_name] = [entry for entry in refused if entry.startswith('"bad')]
    assert long_name == json.dumps("bad\ufffd" + "x" * 60 + "\u2026")
    assert "'id' must be" in refused[long_name]


def test_a_member_with_an_empty_name() -> None:
    # ZipInfo.is_dir() raises IndexError on an empty name (found by fuzzing). zipfile cannot
    # write one, so the name's length becomes 0 and its byte an (ignored) extra field.
    data = bytearray(make_zip(("z", b"x"), ("a.json", as_bytes(GHSA))))
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<HH", data, central + 28, 0, 1)
    batch = parse_feed(bytes(data), name="all.zip")
    assert batch.refused == (('""', "not a .json member"),)
    assert len(batch.advisories) == 1


def test_a_member_that_inflates_past_its_declared_size_is_a_zip_bomb() -> None:
    bomb = b"[" + b" " * (2 * 1024 * 1024) + b"]"
    data = patch_member(make_zip(("bomb.json", bomb)), 0, size=100)
    with pytest.raises(AdvisoryError, match=r'member "bomb\.json" is corrupt'):
        parse_feed(data, name="all.zip")
    # With a CRC forged for the first 100 bytes, the read still stops at the declared size.
    forged = patch_member(make_zip(("bomb.json", bomb)), 0, size=100, crc=zlib.crc32(bomb[:100]))
    assert parse_feed(forged, name="all.zip").refused == (
        ('"bomb.json"', "member is not valid JSON"),
    )


def test_a_member_declaring_a_huge_size_is_refused_unread() -> None:
    data = patch_member(
        make_zip(("huge.json", as_bytes(GHSA)), ("ok.json", as_bytes(GO))), 0, size=2**30 + 1
    )
    batch = parse_feed(data, name="all.zip")
    assert batch.refused == (('"huge.json"', "member is larger than 1048576 bytes uncompressed"),)
    assert [a.id for a in batch.advisories] == ["GO-2022-0969"]
    both = patch_member(data, 1, size=2**30 + 1)
    with pytest.raises(AdvisoryError, match="declares over 2147483648 bytes uncompressed"):
        parse_feed(both, name="all.zip")


def test_the_read_is_bounded_even_if_zipfile_did_not_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_zip(("a.json", as_bytes(GHSA)))
    monkeypatch.setattr(
        zipfile.ZipFile, "open", lambda _self, _info: io.BytesIO(b" " * (MAX_ADVISORY_BYTES + 10))
    )
    with pytest.raises(AdvisoryError, match="inflates past its declared size"):
        parse_feed(data, name="all.zip")


def test_zip_member_counts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_zip(("a.json", as_bytes(GHSA)), ("b.json", as_bytes(GO)), ("c.txt", b""))
    monkeypatch.setattr(advisories, "MAX_FEED_ADVISORIES", 2)
    with pytest.raises(AdvisoryError, match="more than 2 entries"):
        parse_feed(data, name="all.zip")  # members of any name count
    monkeypatch.setattr(advisories, "MAX_FEED_ADVISORIES", 3)
    assert len(parse_feed(data, name="all.zip").advisories) == 2


def test_a_truncated_or_damaged_zip_is_refused_whole() -> None:
    data = make_zip(("a.json", as_bytes(GHSA)), ("b.json", as_bytes(GO)))
    with pytest.raises(AdvisoryError, match="not a readable ZIP archive"):
        parse_feed(data[: len(data) // 2], name="all.zip")
    # A member whose compressed bytes are damaged fails its CRC or its inflation.
    position = data.index(b"a.json") + len("a.json") + 10
    damaged = data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]
    with pytest.raises(AdvisoryError, match="corrupt"):
        parse_feed(damaged, name="all.zip")


def test_fuzzed_zips_give_a_batch_or_an_advisory_error() -> None:
    rng = random.Random(4)
    seed = make_zip(("a.json", as_bytes(GHSA)), ("b.json", as_bytes(DSA)), ("c.txt", b"x"))
    for _ in range(400):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            assert isinstance(parse_feed(bytes(data), name="fuzz.zip"), FeedBatch)
        except AdvisoryError:
            pass


# --- the stored form --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [DSA, GHSA, GO, NPM, osv(withdrawn=T), {"id": "X-1", "modified": T, "withdrawn": T}],
    ids=["dsa", "ghsa", "go", "npm", "withdrawn", "withdrawn-bare"],
)
def test_the_stored_form_round_trips(document: dict[str, Any]) -> None:
    parsed = parse_advisory(document)
    stored = json.loads(json.dumps(advisory_to_json(parsed)))
    assert advisory_from_json(stored) == parsed
    assert advisory_to_json(advisory_from_json(stored)) == stored


def stored(**over: Any) -> dict[str, Any]:
    document = advisory_to_json(parse_advisory(NPM))
    document.update(over)
    return document


def stored_entry(**over: Any) -> dict[str, Any]:
    entry = stored()["affected"][0]
    entry.update(over)
    return stored(affected=[entry])


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ([], "must be an object"),
        ("{}", "must be an object"),
        ({key: value for key, value in stored().items() if key != "summary"}, "other members"),
        (stored(extra=1), "other members"),
        (stored(format=2), "another format"),
        (stored(id="bad id"), "'id' must be"),
        (stored(modified="yesterday"), "'modified' must be an RFC 3339"),
        (stored(summary="x" * 257), "'summary' must be a clean string"),
        (stored(summary="a\nb"), "'summary' must be a clean string"),
        (stored(summary=None), "'summary' must be a clean string"),
        (stored(severity="severe"), "'severity' or 'withdrawn' is invalid"),
        (stored(severity=["high"]), "'severity' or 'withdrawn' is invalid"),
        (stored(withdrawn="yes"), "'severity' or 'withdrawn' is invalid"),
        (stored(aliases="CVE-1"), "'aliases' must be a list"),
        (stored(aliases=["CVE-1"] * 33), "'aliases' holds more than 32"),
        (stored(aliases=[None]), "'aliases[0]'"),
        (stored(affected=[]), "nothing matchable"),
        (stored(affected=None), "missing 'affected'"),
        (stored(affected={}), "'affected' must be a list"),
        (stored(affected=[None]), "'affected[0]' must be an object"),
        (stored_entry(package={"name": ""}), "'affected[0].package.ecosystem' must be"),
        (stored_entry(package={"ecosystem": "npm\n", "name": "x"}), "control characters"),
        (stored_entry(ranges=[], versions=[]), "nothing matchable"),
        (stored_entry(ranges="x"), "'affected[0].ranges' must be a list"),
        (stored_entry(versions=[1]), "'affected[0].versions[0]' must be a non-empty string"),
        (
            stored_entry(ranges=[{"type": "SEMVER", "events": [["introduced", "0"]]}]),
            "'affected[0].ranges[0].events[0]' must be an object",
        ),
        (
            stored_entry(ranges=[{"type": "SEMVER", "events": [{"fixed": "1.0.0"}]}]),
            "has no 'introduced' event",
        ),
    ],
)
def test_the_stored_form_refuses_garbage(document: object, reason: str) -> None:
    with pytest.raises(AdvisoryError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        advisory_from_json(document)


def test_the_stored_form_is_compact() -> None:
    parsed = parse_advisory(DSA)
    document = advisory_to_json(parsed)
    assert document["affected"][0] == {
        "package": {"ecosystem": "Debian:12", "name": "openssl"},
        "ranges": [
            {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}
        ],
        "versions": ["3.0.11-1~deb12u1", "3.0.9-1"],
    }
    assert document["affected"][1] == {
        "package": {"ecosystem": "Debian:11", "name": "openssl"},
        "ranges": [
            {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1.1w-0+deb11u1"}]}
        ],
    }
    assert "details" not in document
    assert "purl" not in document["affected"][0]["package"]
    versions_only = advisory("GHSA-v", package("npm", "p", versions=("1.0.0",)))
    assert advisory_to_json(versions_only)["affected"] == [
        {"package": {"ecosystem": "npm", "name": "p"}, "versions": ["1.0.0"]}
    ]
    assert (
        AffectedPackage(
            "Debian:12", "openssl", parsed.affected[0].ranges, parsed.affected[0].versions
        )
        == parsed.affected[0]
    )
