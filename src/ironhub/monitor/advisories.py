r"""OSV security advisories: parsing, version orders and matching against device inventories.

Pure (no I/O, no clock, no asyncio; ``tests/unit/test_purity.py``). An operator imports an
advisory feed offline (``ironhub advisories import FILE``); the posture service stores each
advisory in the compact form of :func:`advisory_to_json` and keeps an :class:`AdvisoryIndex`
that the detectors and the posture report match device inventories against.

Theory of operation
-------------------

*Input.* A feed is hostile: whoever hands the operator a file controls it. :func:`parse_feed`
takes bytes: one OSV advisory (a JSON object), a JSON list of them, or a ZIP archive of
``*.json`` members (OSV's per-ecosystem ``all.zip``, one ``<ID>.json`` per advisory; detected by
the ``PK\x03\x04`` magic). The contract, fuzzed in the tests: any bytes yield a
:class:`FeedBatch` or raise :class:`AdvisoryError`, nothing else. Two levels of failure:

1. The whole input (raises): not strict JSON (no byte order mark, valid UTF-8, no duplicate
   keys, no ``NaN``/``Infinity``, integers of at most :data:`MAX_INTEGER_DIGITS` digits,
   nesting of at most :data:`MAX_JSON_DEPTH` checked on the raw bytes before ``json.loads``
   recurses), not an object or a list, over a bound, or an unreadable or lying ZIP archive (a
   member that inflates past its declared size fails its CRC; the read is bounded anyway).
2. One advisory (refused, the rest kept): :func:`parse_advisory` raises and the batch records
   ``(entry, reason)``: the advisory's id, ``item N`` or the ZIP member's name.

*Normalisation.* An :class:`Advisory` keeps what matching and the report need: the id, the
modification time (rewritten as fixed-width UTC, ``2024-05-01T10:00:00.000000Z``, so that
string order is time order: the importer compares them as strings), a one-line summary,
aliases, one severity, the withdrawn flag and the affected packages with their ``ECOSYSTEM`` and
``SEMVER`` ranges and listed versions. ``GIT`` ranges (commit hashes: they need the
repository's history) and unknown range types are ignored; an affected entry left with nothing
to match, or without a package, is dropped; an advisory left with nothing is refused ("nothing
matchable") unless it is withdrawn. A withdrawn advisory only has to name itself (the importer
uses it to delete a stored copy) and never matches. Of several copies of one id in a batch, the
greatest ``modified`` wins (on a tie, the later copy).

*Severity.* The highest CVSS v3.x base score of the advisory's ``severity`` vectors
(:func:`cvss3_base_score`), else of its affected packages' vectors, else the text
``database_specific.severity`` (GitHub: ``CRITICAL``, ``HIGH``, ``MODERATE``, ``LOW``), else an
``Ubuntu`` priority, else ``"unknown"``. Scores map as 9.0+ critical, 7.0+ high, 4.0+ medium,
lower low. A malformed vector is no error: the next source decides. CVSS v2 and v4 vectors are
not scored (v4 needs FIRST's table of macro-vectors; such feeds carry a text severity too).

*Version orders* (:func:`comparator_for`): ``Debian`` and ``Ubuntu`` use dpkg's algorithm
(:func:`compare_dpkg`), ``PyPI`` PEP 440 (:func:`compare_pep440`), ``Alpine``, ``Wolfi`` and
``Chainguard`` apk's (:func:`compare_apk`); ``npm``, ``Go``, ``crates.io``, ``Hex``, ``Pub``,
``SwiftURL`` and every ``SEMVER`` range use SemVer 2.0 (:func:`compare_semver`); the rest the
generic rule (:func:`compare_generic`). Comparison never raises: a version the ecosystem's
grammar refuses (or empty, or longer than :data:`MAX_STRING_CHARS`) is *invalid*, and invalid
versions sort before every valid one and among themselves by the generic rule, then by code
points. The order is total and deterministic, and an unreadable installed version lies in
every range opened by ``introduced: "0"`` (fail closed: reported, not hidden). Each order is
a sort key (:func:`version_key`) parsed once per distinct version (a bounded cache); the
comparators compare keys.

*Matching.* :class:`AdvisoryIndex` files each affected package under (base ecosystem,
normalised name): matching a package costs the advisories that name it, not all of them. An
advisory for ``Debian:12`` matches inventory items of exactly ``Debian:12``; one for ``Debian``
matches ``Debian`` and every ``Debian:<release>``. Known ecosystem names are compared in their
canonical spelling whatever their case (``debian:12`` is ``Debian:12``); package names exactly,
except PyPI's (PEP 503). A version is affected if ``versions`` lists it (exactly; SemVer
ecosystems also try it without a leading ``v``, as Go inventories write ``v1.2.3``) or it lies
in a range by OSV's evaluation: events sorted by version (``introduced: "0"`` first),
``introduced`` opens, ``fixed`` closes (exclusive), ``last_affected`` closes (inclusive), and
where ``limit`` events exist the version must be below one (``*`` is infinity). The index
keeps the sort keys of the range events, so matching a package costs one key and tuple
comparisons, and it skips the entries whose last event is a fix below the version.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import accumulate
from typing import Any, Final

from ironhub.errors import IronhubError

__all__ = [
    "EVENT_TYPES",
    "MAX_ADVISORY_BYTES",
    "MAX_AFFECTED",
    "MAX_ALIASES",
    "MAX_EVENTS",
    "MAX_FEED_ADVISORIES",
    "MAX_FEED_JSON_BYTES",
    "MAX_ID_CHARS",
    "MAX_INTEGER_DIGITS",
    "MAX_INVENTORY_PACKAGES",
    "MAX_JSON_DEPTH",
    "MAX_MATCHES",
    "MAX_NAME_CHARS",
    "MAX_RANGES",
    "MAX_SEVERITY_ITEMS",
    "MAX_STRING_CHARS",
    "MAX_SUMMARY_CHARS",
    "MAX_VERSIONS",
    "MAX_ZIP_TOTAL_BYTES",
    "SEVERITIES",
    "Advisory",
    "AdvisoryError",
    "AdvisoryIndex",
    "AffectedPackage",
    "Comparator",
    "FeedBatch",
    "InventoryScan",
    "Match",
    "Range",
    "advisory_from_json",
    "advisory_to_json",
    "comparator_for",
    "compare",
    "compare_apk",
    "compare_dpkg",
    "compare_generic",
    "compare_pep440",
    "compare_semver",
    "cvss3_base_score",
    "match_inventory",
    "parse_advisory",
    "parse_feed",
    "scan_inventory",
    "version_key",
]

#: Largest advisory, in bytes: a single-object feed, or a ZIP member's declared and actual
#: uncompressed size (OSV's largest records, kernel ones with long ``versions``, fit easily).
MAX_ADVISORY_BYTES: Final = 1024 * 1024
#: Largest JSON-list feed, in bytes (larger collections come as a ZIP archive).
MAX_FEED_JSON_BYTES: Final = 64 * 1024 * 1024
#: Most entries of one feed: list items, or ZIP members of any name (OSV's largest
#: ``all.zip`` holds about a hundred thousand).
MAX_FEED_ADVISORIES: Final = 200_000
#: Most uncompressed bytes the ``.json`` members of a ZIP archive may declare in total.
MAX_ZIP_TOTAL_BYTES: Final = 2 * 1024 * 1024 * 1024
#: Deepest JSON nesting of one advisory, itself counting as 1 (OSV needs 5; the rest is room
#: for ``database_specific``); a list feed gets one more level.
MAX_JSON_DEPTH: Final = 16
#: Longest integer literal, in digits (bounds the quadratic cost of converting it).
MAX_INTEGER_DIGITS: Final = 20
#: Most ``affected`` entries of an advisory.
MAX_AFFECTED: Final = 256
#: Most ``ranges`` of an affected entry.
MAX_RANGES: Final = 64
#: Most ``events`` of a range.
MAX_EVENTS: Final = 256
#: Most listed ``versions`` of an affected entry.
MAX_VERSIONS: Final = 10_000
#: Most ``severity`` items of an advisory or of an affected entry.
MAX_SEVERITY_ITEMS: Final = 16
#: Aliases kept of an advisory (more are dropped, not refused: advisories bundle CVEs).
MAX_ALIASES: Final = 32
#: Longest ecosystem, package name and version.
MAX_STRING_CHARS: Final = 256
#: Longest advisory id or alias.
MAX_ID_CHARS: Final = 128
#: Longest summary kept (longer ones are clipped).
MAX_SUMMARY_CHARS: Final = 256
#: Longest piece of input (a file or member name) quoted in a reason.
MAX_NAME_CHARS: Final = 64
#: Most packages of one inventory matched (events.py keeps 4096); the rest are skipped.
MAX_INVENTORY_PACKAGES: Final = 8192
#: Most matches returned per inventory, the most severe first; the rest are counted.
MAX_MATCHES: Final = 1000

#: Severities, most urgent first.
SEVERITIES: Final = ("critical", "high", "medium", "low", "unknown")
#: OSV range event types.
EVENT_TYPES: Final = ("introduced", "fixed", "last_affected", "limit")
#: A version comparison: -1, 0 or 1 like ``cmp``.
Comparator = Callable[[str, str], int]

_Key = tuple[Any, ...]
# OSV ids are "<DB>-<ENTRY>" (GHSA-xxxx-xxxx-xxxx, DSA-5555-1, RHSA-2024:1234, PYSEC-2021-1...):
# a narrower alphabet than "printable", so that an id is safe in a log line, a URL path and a
# file name without escaping.
_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+\-]*")
_TIME_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_MAX_TIME_CHARS: Final = 64
# C0 and C1 controls, DEL and lone surrogates: refused in names and versions (log injection;
# text that consumers cannot re-encode), replaced in the summary.
_UNSAFE: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_BOM: Final = b"\xef\xbb\xbf"
_ZIP_MAGIC: Final = b"PK\x03\x04"
_LIST_START: Final = re.compile(rb"[ \t\r\n]*\[")  # JSON whitespace, then a list
# Stored and deflated only: OSV's archives use deflate, and each other method is more
# decompressor code exposed to hostile input.
_ZIP_METHODS: Final = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_ZIP_ENCRYPTED: Final = 0x1
# What zipfile raises on a damaged archive (NotImplementedError: unknown versions, flags).
_ZIP_ERRORS: Final = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError, OSError,
    NotImplementedError,
)  # fmt: skip
_MATCHABLE: Final = ("ECOSYSTEM", "SEMVER")
_FORMAT: Final = 1  # advisory_to_json's format
_STORED_KEYS: Final = {"format", "id", "modified", "summary", "aliases", "severity", "withdrawn"}

# The depth scan: JSON strings, the bytes that are not brackets, each byte's depth change. An
# unterminated string matches to the end: otherwise each quote inside it would start a new,
# failing match, and a megabyte of escaped quotes would cost quadratic time.
_JSON_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS: Final = bytes(sorted(set(range(256)) - set(b"[]{}")))
_DEPTH_CHANGE: Final = [{91: 1, 123: 1, 93: -1, 125: -1}.get(byte, 0) for byte in range(256)]

_TEXT_SEVERITY: Final = {
    "CRITICAL": "critical", "HIGH": "high", "MODERATE": "medium", "MEDIUM": "medium",
    "LOW": "low",
}  # fmt: skip
# Ubuntu priorities (https://ubuntu.com/security/cves/about#priority).
_UBUNTU_PRIORITY: Final = {
    "critical": "critical", "high": "high", "medium": "medium", "low": "low", "negligible": "low",
}  # fmt: skip
_SEVERITY_RANK: Final = {name: rank for rank, name in enumerate(SEVERITIES)}
# The OSV ecosystems (schema, "Defined ecosystems"), by lower-case name.
_KNOWN_ECOSYSTEMS: Final = {
    name.lower(): name
    for name in (
        "AlmaLinux", "Alpaquita", "Alpine", "Android", "Bioconductor", "Bitnami", "Chainguard",
        "ConanCenter", "CRAN", "crates.io", "Debian", "GHC", "GitHub Actions", "Go", "Hackage",
        "Hex", "Julia", "Kubernetes", "Linux", "Mageia", "Maven", "MinimOS", "npm", "NuGet",
        "opam", "openEuler", "openSUSE", "OSS-Fuzz", "Packagist", "Photon OS", "Pub", "PyPI",
        "Red Hat", "Rocky Linux", "RubyGems", "SUSE", "SwiftURL", "Ubuntu", "VSCode", "Wolfi",
    )
}  # fmt: skip
_JSON_TYPES: Final = {list: "a list", dict: "an object", str: "a string", bool: "a boolean"}


class AdvisoryError(IronhubError, ValueError):
    """An advisory, a feed or a stored advisory is malformed or breaks a bound.

    The message says why and quotes at most :data:`MAX_NAME_CHARS` characters of the input
    (JSON-quoted, control characters replaced).
    """


# --- the values -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Range:
    """An ``ECOSYSTEM`` or ``SEMVER`` range.

    Attributes:
        kind: ``"ECOSYSTEM"`` (the ecosystem's order) or ``"SEMVER"``.
        events: ``(type, version)`` pairs in document order (:data:`EVENT_TYPES`), at least
            one of them ``introduced``.
    """

    kind: str
    events: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class AffectedPackage:
    """A package an advisory covers.

    Attributes:
        ecosystem: the OSV ecosystem, known names canonically spelt (``Debian:12``).
        name: the package name as the advisory writes it.
        ranges: the matchable ranges.
        versions: the versions listed as affected.
    """

    ecosystem: str
    name: str
    ranges: tuple[Range, ...]
    versions: frozenset[str]


@dataclass(frozen=True, slots=True)
class Advisory:
    """One advisory, normalised (module docstring).

    Attributes:
        id: the OSV id.
        modified: the last modification, fixed-width UTC (string order is time order).
        summary: one line (the summary, else the details' first line), clipped.
        aliases: other ids of the vulnerability (CVE...), at most :data:`MAX_ALIASES`.
        severity: one of :data:`SEVERITIES`.
        withdrawn: withdrawn advisories never match.
        affected: the packages covered (empty only when withdrawn).
    """

    id: str
    modified: str
    summary: str
    aliases: tuple[str, ...]
    severity: str
    withdrawn: bool
    affected: tuple[AffectedPackage, ...]


@dataclass(frozen=True, slots=True)
class FeedBatch:
    """What a feed held.

    Attributes:
        advisories: the accepted advisories, one per id, in order of first appearance.
        refused: ``(entry, reason)`` per refused entry: the advisory's id if it has a valid
            one, else ``item N`` (list index) or the ZIP member's name (quoted, clipped).
        superseded: copies dropped for a later copy of the same id.
    """

    advisories: tuple[Advisory, ...]
    refused: tuple[tuple[str, str], ...]
    superseded: int = 0


@dataclass(frozen=True, slots=True)
class Match:
    """An installed package that an advisory covers.

    Attributes:
        advisory_id: the advisory's id.
        aliases: its aliases.
        severity: its severity.
        summary: its summary.
        package: the package name as the inventory writes it.
        installed_version: the installed version.
        fixed: the lowest ``fixed`` version above the installed one in the matching ranges,
            or ``None`` (unfixed, or only ``last_affected`` known).
        ecosystem: the inventory's ecosystem (known names canonically spelt).
    """

    advisory_id: str
    aliases: tuple[str, ...]
    severity: str
    summary: str
    package: str
    installed_version: str
    fixed: str | None
    ecosystem: str


@dataclass(frozen=True, slots=True)
class InventoryScan:
    """What :func:`scan_inventory` found.

    Attributes:
        matches: at most :data:`MAX_MATCHES`, most severe first, then by advisory id and
            package.
        omitted: matches beyond those.
        skipped: items that cannot be matched: not a mapping, a ``name``, ``version`` or
            ``ecosystem`` missing or not a string of 1 to :data:`MAX_STRING_CHARS` characters,
            or beyond :data:`MAX_INVENTORY_PACKAGES`.
    """

    matches: tuple[Match, ...]
    omitted: int
    skipped: int


# --- strict JSON ------------------------------------------------------------------------------


def _load_json(data: bytes, *, max_bytes: int, max_depth: int, what: str) -> object:
    if len(data) > max_bytes:
        raise AdvisoryError(f"{what} is larger than {max_bytes} bytes")
    if data.startswith(_BOM):
        raise AdvisoryError(f"{what} starts with a byte order mark")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # The foreign message quotes the offending bytes: never chain it.
        raise AdvisoryError(f"{what} is not valid UTF-8") from None
    # Strings are removed (brackets inside them do not count), then the depth is the running
    # sum of +1 per opening and -1 per closing bracket, computed in C. Strings are cut as the
    # decoder cuts them until its first error, so no bracket json.loads would enter is missed.
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if max(accumulate(map(_DEPTH_CHANGE.__getitem__, brackets)), default=0) > max_depth:
        raise AdvisoryError(f"{what} nests deeper than {max_depth} levels")
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_object,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except AdvisoryError as exc:
        raise AdvisoryError(f"{what} {exc}") from None
    except ValueError:
        # JSONDecodeError keeps the whole document in ``.doc``: never chain it.
        raise AdvisoryError(f"{what} is not valid JSON") from None


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A duplicate key has two readings (first or last wins, by parser): the "fixed" read here
    # could be another version in the tool the operator checked the file with.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise AdvisoryError("has an object with a duplicate key")
    return result


def _refuse_constant(_constant: str) -> object:
    raise AdvisoryError("holds NaN or Infinity, which are not JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise AdvisoryError("holds a number out of range")
    return value


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise AdvisoryError("holds a number out of range")
    return int(literal)


# --- feeds ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    """A batch being read: the latest copy of each id, and the refusals."""

    latest: dict[str, Advisory]
    refused: list[tuple[str, str]]
    superseded: int = 0

    def take(self, label: str, document: object) -> None:
        try:
            advisory = parse_advisory(document)
        except AdvisoryError as exc:
            self.refused.append((label, str(exc)))
            return
        previous = self.latest.get(advisory.id)
        self.superseded += previous is not None
        if previous is None or previous.modified <= advisory.modified:
            self.latest[advisory.id] = advisory


def parse_feed(data: bytes, *, name: str) -> FeedBatch:
    """Read a feed: one OSV advisory, a JSON list of them, or a ZIP archive of ``.json`` files.

    One bad advisory never spoils the rest: it is refused, with a reason, in the batch.

    Args:
        data: the file's bytes.
        name: the file's name, quoted (clipped) in errors.

    Returns:
        The accepted advisories (the latest copy of each id) and the refused entries.

    Raises:
        AdvisoryError: the input as a whole is unreadable: not strict JSON nor a readable ZIP
            archive, not an object or a list, over a bound, or a ZIP member that fails its
            CRC check or inflates past its declared size (a ZIP bomb).
    """
    label = f"feed {_quote(name)}"
    batch = _Batch({}, [])
    if data.startswith(_ZIP_MAGIC):
        _read_zip(data, label, batch)
    else:
        is_list = _LIST_START.match(data) is not None
        document = _load_json(
            data,
            max_bytes=MAX_FEED_JSON_BYTES if is_list else MAX_ADVISORY_BYTES,
            max_depth=MAX_JSON_DEPTH + is_list,
            what=label,
        )
        if isinstance(document, list):
            if len(document) > MAX_FEED_ADVISORIES:
                raise AdvisoryError(f"{label} holds more than {MAX_FEED_ADVISORIES} entries")
            for index, item in enumerate(document):
                batch.take(_entry_label(item, index), item)
        elif isinstance(document, dict):
            batch.take(_entry_label(document, 0), document)
        else:
            raise AdvisoryError(f"{label} is {_json_type(document)}, not an advisory or a list")
    return FeedBatch(tuple(batch.latest.values()), tuple(batch.refused), batch.superseded)


def _entry_label(item: object, index: int) -> str:
    advisory_id = item.get("id") if isinstance(item, dict) else None
    return (
        advisory_id if isinstance(advisory_id, str) and _valid_id(advisory_id) else f"item {index}"
    )


def _read_zip(data: bytes, label: str, batch: _Batch) -> None:
    # zipfile reads the central directory first: its size is bounded by the input's.
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS:
        raise AdvisoryError(f"{label} is not a readable ZIP archive") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_FEED_ADVISORIES:
            raise AdvisoryError(f"{label} holds more than {MAX_FEED_ADVISORIES} entries")
        # Not ZipInfo.is_dir(), which raises IndexError on an empty name.
        json_members = [info for info in members if info.filename.endswith(".json")]
        if sum(info.file_size for info in json_members) > MAX_ZIP_TOTAL_BYTES:
            raise AdvisoryError(f"{label} declares over {MAX_ZIP_TOTAL_BYTES} bytes uncompressed")
        for info in members:
            member = _quote(info.filename)
            problem = _member_problem(info)
            if problem is not None:
                batch.refused.append((member, problem))
                continue
            try:
                # The read is bounded whatever the header says; zipfile itself stops at the
                # declared size and checks the CRC, so a member that inflates further is
                # corrupt; the length check guards against a zipfile that would not stop.
                with archive.open(info) as stream:
                    content = stream.read(MAX_ADVISORY_BYTES + 1)
            except _ZIP_ERRORS:
                raise AdvisoryError(f"{label}: member {member} is corrupt") from None
            if len(content) > min(info.file_size, MAX_ADVISORY_BYTES):
                raise AdvisoryError(f"{label}: member {member} inflates past its declared size")
            try:
                document = _load_json(
                    content, max_bytes=MAX_ADVISORY_BYTES, max_depth=MAX_JSON_DEPTH, what="member"
                )
            except AdvisoryError as exc:
                batch.refused.append((member, str(exc)))
                continue
            batch.take(member, document)


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    if not info.filename.endswith(".json"):
        return "not a .json member"
    if info.flag_bits & _ZIP_ENCRYPTED:
        return "encrypted member"
    if info.compress_type not in _ZIP_METHODS:
        return "unsupported compression method (only stored and deflated)"
    if info.file_size > MAX_ADVISORY_BYTES:
        return f"member is larger than {MAX_ADVISORY_BYTES} bytes uncompressed"
    return None


# --- one advisory -----------------------------------------------------------------------------


def parse_advisory(obj: object) -> Advisory:
    """Check and normalise one OSV advisory (a decoded JSON object).

    Documented fields must have their documented types (``null`` counts as absent for the
    optional ones); undocumented fields are ignored.

    Args:
        obj: the advisory.

    Returns:
        The normalised advisory.

    Raises:
        AdvisoryError: the advisory is malformed, breaks a bound, or has nothing matchable.
    """
    document = _object(obj, "the advisory")
    advisory_id = _identifier(document.get("id"), "id")
    modified = _time(document.get("modified"), "modified")
    for optional in ("published", "withdrawn"):
        if document.get(optional) is not None:
            _time(document[optional], optional)
    for optional in ("schema_version", "summary", "details"):
        if document.get(optional) is not None and not isinstance(document[optional], str):
            raise AdvisoryError(f"'{optional}' must be a string")
    withdrawn = document.get("withdrawn") is not None
    database_specific = _optional_object(document.get("database_specific"), "database_specific")
    scores = _scores(document.get("severity"), "severity")
    affected, package_scores = _affected_list(document.get("affected"), withdrawn=withdrawn)
    return Advisory(
        id=advisory_id,
        modified=modified,
        summary=_summary(document.get("summary"), document.get("details")),
        aliases=_aliases(document.get("aliases"), advisory_id),
        severity=_severity(scores, package_scores, database_specific),
        withdrawn=withdrawn,
        affected=affected,
    )


def _affected_list(
    value: object, *, withdrawn: bool
) -> tuple[tuple[AffectedPackage, ...], list[tuple[str, str]]]:
    if value is None and withdrawn:
        return (), []
    if value is None:
        raise AdvisoryError("missing 'affected'")
    kept: list[AffectedPackage] = []
    scores: list[tuple[str, str]] = []
    git_only, saw_git = True, False
    for index, item in enumerate(_list(value, "affected", MAX_AFFECTED)):
        path = f"affected[{index}]"
        entry = _object(item, path)
        scores += _scores(entry.get("severity"), f"{path}.severity")
        for optional in ("database_specific", "ecosystem_specific"):
            _optional_object(entry.get(optional), f"{path}.{optional}")
        package = _package(entry.get("package"), f"{path}.package")
        ranges, kinds = _ranges(entry.get("ranges"), path)
        versions = entry.get("versions")
        versions = frozenset(
            _text(version, f"{path}.versions[{n}]")
            for n, version in enumerate(_list(versions, f"{path}.versions", MAX_VERSIONS))
        ) if versions is not None else frozenset()  # fmt: skip
        git_only = git_only and not versions and kinds <= {"GIT"}
        saw_git = saw_git or "GIT" in kinds
        if package is not None and (ranges or versions):
            kept.append(AffectedPackage(*package, ranges, versions))
    if not kept and not withdrawn:
        if git_only and saw_git:
            raise AdvisoryError("nothing matchable: only GIT ranges")
        raise AdvisoryError(
            "nothing matchable: no package with an ECOSYSTEM or SEMVER range or listed versions"
        )
    return tuple(kept), scores


def _package(value: object, path: str) -> tuple[str, str] | None:
    # Entries with only GIT ranges often name no package: dropped, not refused.
    if value is None:
        return None
    package = _object(value, path)
    ecosystem = _text(package.get("ecosystem"), f"{path}.ecosystem")
    name = _text(package.get("name"), f"{path}.name")
    if package.get("purl") is not None and not isinstance(package["purl"], str):
        raise AdvisoryError(f"'{path}.purl' must be a string")
    return _canonical_ecosystem(ecosystem), name


def _ranges(value: object, path: str) -> tuple[tuple[Range, ...], set[str]]:
    ranges: list[Range] = []
    kinds: set[str] = set()
    for index, item in enumerate(
        [] if value is None else _list(value, f"{path}.ranges", MAX_RANGES)
    ):
        where = f"{path}.ranges[{index}]"
        document = _object(item, where)
        kind = document.get("type")
        if not isinstance(kind, str) or not kind:
            raise AdvisoryError(f"'{where}.type' must be a non-empty string")
        kinds.add(kind)
        events = _list(document.get("events"), f"{where}.events", MAX_EVENTS)
        if not events:
            raise AdvisoryError(f"'{where}.events' is empty")
        pairs = tuple(_event(event, f"{where}.events[{n}]") for n, event in enumerate(events))
        if kind not in _MATCHABLE:
            continue  # GIT and unknown types are ignored (module docstring)
        if not any(event_type == "introduced" for event_type, _ in pairs):
            raise AdvisoryError(f"'{where}' has no 'introduced' event")
        ranges.append(Range(kind, pairs))
    return tuple(ranges), kinds


def _event(value: object, path: str) -> tuple[str, str]:
    event = _object(value, path)
    if len(event) != 1 or next(iter(event)) not in EVENT_TYPES:
        raise AdvisoryError(f"'{path}' must hold exactly one of {', '.join(EVENT_TYPES)}")
    ((kind, version),) = event.items()
    return kind, _text(version, f"{path}.{kind}")


def _aliases(value: object, advisory_id: str) -> tuple[str, ...]:
    # Only the kept ones are checked: a longer list is clipped, not refused, and its size is
    # bounded by the document's.
    aliases = [] if value is None else _list(value, "aliases", None)[:MAX_ALIASES]
    kept = {_identifier(alias, f"aliases[{n}]"): None for n, alias in enumerate(aliases)}
    kept.pop(advisory_id, None)
    return tuple(kept)


def _summary(summary: object, details: object) -> str:
    text = summary if isinstance(summary, str) and summary.strip() else None
    if text is None and isinstance(details, str):
        text = next((line for line in details.splitlines() if line.strip()), None)
    text = _UNSAFE.sub("\ufffd", " ".join((text or "").split()))
    return text if len(text) <= MAX_SUMMARY_CHARS else f"{text[: MAX_SUMMARY_CHARS - 1]}\u2026"


# --- severity ---------------------------------------------------------------------------------


def _scores(value: object, path: str) -> list[tuple[str, str]]:
    scores: list[tuple[str, str]] = []
    for index, item in enumerate([] if value is None else _list(value, path, MAX_SEVERITY_ITEMS)):
        document = _object(item, f"{path}[{index}]")
        kind, score = document.get("type"), document.get("score")
        if not isinstance(kind, str) or not isinstance(score, str):
            raise AdvisoryError(f"'{path}[{index}]' must have a string 'type' and 'score'")
        scores.append((kind, score))
    return scores


def _severity(
    scores: list[tuple[str, str]],
    package_scores: list[tuple[str, str]],
    database_specific: dict[str, Any] | None,
) -> str:
    for source in (scores, package_scores):
        computed = [cvss3_base_score(score) for kind, score in source if kind == "CVSS_V3"]
        best = max((score for score in computed if score is not None), default=None)
        if best is not None:
            return _score_severity(best)
    text = (database_specific or {}).get("severity")
    if isinstance(text, str) and text.upper() in _TEXT_SEVERITY:
        return _TEXT_SEVERITY[text.upper()]
    for kind, score in (*scores, *package_scores):
        if kind == "Ubuntu" and score.lower() in _UBUNTU_PRIORITY:
            return _UBUNTU_PRIORITY[score.lower()]
    return "unknown"


def _score_severity(score: float) -> str:
    # CVSS v3.1 §5 qualitative ratings, "None" (0.0) counted as low: there is an advisory.
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    return "medium" if score >= 4.0 else "low"


# CVSS v3.1 specification §7.4 (v3.0 has the same weights).
_CVSS3_WEIGHTS: Final[dict[str, dict[str, float]]] = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "PR": {"N": 0.85, "L": 0.62, "H": 0.27},
    "UI": {"N": 0.85, "R": 0.62},
    "S": {"U": 0.0, "C": 0.0},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}
# Privileges Required weighs more when the scope changes.
_CVSS3_PR_CHANGED: Final = {"N": 0.85, "L": 0.68, "H": 0.5}
# Temporal and environmental metrics: allowed in a vector, not part of the base score.
_CVSS3_OTHER: Final = {
    "E": "XUPFH", "RL": "XOTWU", "RC": "XURC", "CR": "XLMH", "IR": "XLMH", "AR": "XLMH",
    "MAV": "XNALP", "MAC": "XLH", "MPR": "XNLH", "MUI": "XNR", "MS": "XUC", "MC": "XNLH",
    "MI": "XNLH", "MA": "XNLH",
}  # fmt: skip


def cvss3_base_score(vector: str) -> float | None:
    """The CVSS v3.0 or v3.1 base score of a vector, or ``None`` if it is malformed.

    The specification's formula (v3.1 §7.1) and each version's round-up (v3.0: the smallest
    one-decimal number not below the value; v3.1 Appendix A: the same on integers, free of
    floating-point artefacts). Temporal and environmental metrics may appear but do not
    count; a metric may appear once, and every base metric must.

    Args:
        vector: ``CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H`` and the like.

    Returns:
        The base score (0.0 to 10.0), or ``None``.

    Raises:
        Nothing.
    """
    version, _, rest = vector.partition("/")
    if len(vector) > MAX_STRING_CHARS or version not in ("CVSS:3.0", "CVSS:3.1"):
        return None
    metrics: dict[str, str] = {}
    for part in rest.split("/"):
        name, _, value = part.partition(":")
        allowed = _CVSS3_WEIGHTS.get(name) or _CVSS3_OTHER.get(name, "")
        if name in metrics or not value or value not in allowed:
            return None
        metrics[name] = value
    if any(name not in metrics for name in _CVSS3_WEIGHTS):
        return None
    changed = metrics["S"] == "C"
    weight = {name: _CVSS3_WEIGHTS[name][metrics[name]] for name in _CVSS3_WEIGHTS}
    if changed:
        weight["PR"] = _CVSS3_PR_CHANGED[metrics["PR"]]
    iss = 1 - (1 - weight["C"]) * (1 - weight["I"]) * (1 - weight["A"])
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    exploitability = 8.22 * weight["AV"] * weight["AC"] * weight["PR"] * weight["UI"]
    if impact <= 0:
        return 0.0
    total = min((1.08 if changed else 1.0) * (impact + exploitability), 10.0)
    return _roundup_30(total) if version == "CVSS:3.0" else _roundup_31(total)


def _roundup_30(value: float) -> float:
    return math.ceil(value * 10) / 10


def _roundup_31(value: float) -> float:
    scaled = round(value * 100_000)
    return scaled / 100_000 if scaled % 10_000 == 0 else (scaled // 10_000 + 1) / 10


# --- field checks -----------------------------------------------------------------------------


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AdvisoryError(f"'{path}' must be an object, not {_json_type(value)}")
    return value


def _optional_object(value: object, path: str) -> dict[str, Any] | None:
    return None if value is None else _object(value, path)


def _list(value: object, path: str, max_items: int | None) -> list[Any]:
    if not isinstance(value, list):
        raise AdvisoryError(f"'{path}' must be a list, not {_json_type(value)}")
    if max_items is not None and len(value) > max_items:
        raise AdvisoryError(f"'{path}' holds more than {max_items} items")
    return value


def _text(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise AdvisoryError(f"'{path}' must be a non-empty string")
    if len(value) > MAX_STRING_CHARS:
        raise AdvisoryError(f"'{path}' is longer than {MAX_STRING_CHARS} characters")
    if _UNSAFE.search(value):
        raise AdvisoryError(f"'{path}' holds control characters or lone surrogates")
    return value


def _valid_id(text: str) -> bool:
    return len(text) <= MAX_ID_CHARS and _ID_RE.fullmatch(text) is not None


def _identifier(value: object, path: str) -> str:
    if value is None:
        raise AdvisoryError(f"missing '{path}'")
    if not isinstance(value, str) or not _valid_id(value):
        raise AdvisoryError(
            f"'{path}' must be 1 to {MAX_ID_CHARS} characters of A-Z a-z 0-9 . _ : + - "
            "starting with a letter or digit"
        )
    return value


def _time(value: object, path: str) -> str:
    if value is None:
        raise AdvisoryError(f"missing '{path}'")
    if isinstance(value, str) and len(value) <= _MAX_TIME_CHARS and _TIME_RE.fullmatch(value):
        try:
            # Refuses impossible dates, hour 24, leap seconds and year 0; the conversion to
            # UTC refuses instants outside years 1 to 9999.
            instant = datetime.fromisoformat(value.upper()).astimezone(UTC)
        except (ValueError, OverflowError):
            pass
        else:
            return instant.isoformat(timespec="microseconds").replace("+00:00", "Z")
    raise AdvisoryError(f"'{path}' must be an RFC 3339 date-time")


def _quote(text: str) -> str:
    clipped = text[:MAX_NAME_CHARS] + ("\u2026" if len(text) > MAX_NAME_CHARS else "")
    return json.dumps(_UNSAFE.sub("\ufffd", clipped))


def _json_type(value: object) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), "a number")


# --- version orders ---------------------------------------------------------------------------
#
# Every order is a *sort key*: a function from a version to a tuple whose natural order is the
# ecosystem's (valid versions (1, parsed), invalid ones (0, generic key, text), so invalid
# versions sort first); a comparator only compares two keys, and AdvisoryIndex keeps the keys
# of range events. Parsing is the costly part and a fleet reports the same versions over and
# over, so each order remembers the keys of the last _KEY_CACHE_SIZE versions of at most
# _MAX_CACHED_CHARS characters it met: an LRU cache, bounded in memory (a real version's key
# takes well under 1 kB; the worst 64-character ones about 6.5 kB, so under 30 MB per order).
_KEY_CACHE_SIZE: Final = 4096
# Longer versions are rare (Go's pseudo-versions take 34 characters) and parsed each time.
_MAX_CACHED_CHARS: Final = 64

# A sort key of versions: the keys of one order compare as the versions do.
_SortKey = Callable[[str], _Key]


def _num(digits: str) -> tuple[int, str]:
    # A number as a comparable key without int(): a 200-digit version part costs nothing and
    # never meets Python's limit on int-string conversion.
    stripped = digits.lstrip("0")
    return len(stripped), stripped


_ZERO: Final = _num("0")


def _order(a: _Key, b: _Key) -> int:
    return (a > b) - (a < b)


def _valid_length(text: str) -> bool:
    return 0 < len(text) <= MAX_STRING_CHARS


def _invalid_key(text: str) -> _Key:
    # Invalid versions: before every valid one (whose keys start with 1), then the generic
    # rule, then code points.
    return (0, _generic_key(text[:MAX_STRING_CHARS]), text)


def _sort_key(parse: Callable[[str], _Key | None]) -> _SortKey:
    """The cached sort key of an order, from its parser (``None``: not its grammar)."""

    def compute(text: str) -> _Key:
        parsed = parse(text) if _valid_length(text) else None
        return _invalid_key(text) if parsed is None else (1, parsed)

    cached = lru_cache(maxsize=_KEY_CACHE_SIZE)(compute)

    def key(text: str) -> _Key:
        return cached(text) if len(text) <= _MAX_CACHED_CHARS else compute(text)

    return key


_GENERIC_TOKEN: Final = re.compile(r"([0-9]+)|[^0-9.\-+_~]+")


def _generic_key(text: str) -> _Key:
    # Text (0) < the end (1) < a number (2) at the same position.
    tokens = [
        (2, *_num(match[1])) if match[1] is not None else (0, 0, match[0].lower())
        for match in _GENERIC_TOKEN.finditer(text)
    ]
    return (*tokens, (1, 0, ""))


_generic_sort_key: Final = _sort_key(_generic_key)


def compare_generic(left: str, right: str) -> int:
    """Compare two versions by the generic rule (ecosystems without a rule of their own).

    A version is cut into runs of ASCII digits (numbers, compared by value) and runs of
    anything else but the separators ``. - + _ ~`` (text, compared case-insensitively by code
    point). At the same position text comes before a number (``1.0rc1 < 1.0.1``); a version
    that runs out is newer than one that goes on with text (``1.0-beta < 1.0``) and older than
    one that goes on with a number (``1.0 < 1.0.0``). Separators only separate (``1.0 == 1-0``).

    Returns:
        -1, 0 or 1 like ``cmp``.

    Raises:
        Nothing.
    """
    return _order(_generic_sort_key(left), _generic_sort_key(right))


_SEMVER_RE: Final = re.compile(
    r"v?(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?(?:\.(0|[1-9][0-9]*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)


def _semver_key(text: str) -> _Key | None:
    match = _SEMVER_RE.fullmatch(text)
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    # SemVer §11: a pre-release comes before its release; numeric identifiers compare by value
    # and before alphanumeric ones (ASCII order); more identifiers win over a prefix.
    identifiers = tuple(
        (0, _num(part), "") if part.isdigit() else (1, _ZERO, part)
        for part in (pre or "").split(".")
    )
    return (
        _num(major),
        _num(minor or "0"),
        _num(patch or "0"),
        (1,) if pre is None else (0, identifiers),
    )


_semver_sort_key: Final = _sort_key(_semver_key)


def compare_semver(left: str, right: str) -> int:
    """Compare two versions by SemVer 2.0 precedence (§11).

    ``1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-beta < 1.0.0``; build metadata does not count
    (``1.0.0+a == 1.0.0``). Leniencies: a leading ``v`` (Go), and a missing minor or patch
    number is 0 (``1.2 == 1.2.0``). Other texts are invalid (module docstring).

    Returns:
        -1, 0 or 1 like ``cmp``.

    Raises:
        Nothing.
    """
    return _order(_semver_sort_key(left), _semver_sort_key(right))


# PEP 440, appendix B's grammar (case-insensitive; surrounding whitespace is stripped).
_PEP440_RE: Final = re.compile(
    r"v?(?:(?P<epoch>[0-9]+)!)?(?P<release>[0-9]+(?:\.[0-9]+)*)"
    r"(?:[-_.]?(?P<pre>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?"
    r"(?:-(?P<post_n1>[0-9]+)|[-_.]?(?P<post>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?)?"
    r"(?:[-_.]?(?P<dev>dev)[-_.]?(?P<dev_n>[0-9]+)?)?"
    r"(?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?",
    re.IGNORECASE,
)
_PEP440_PRE: Final = {
    "a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2,
}  # fmt: skip


def _pep440_key(text: str) -> _Key | None:
    match = _PEP440_RE.fullmatch(text.strip())
    if match is None:
        return None
    release = [_num(part) for part in match["release"].split(".")]
    while release and release[-1] == _ZERO:
        release.pop()  # 1.0 == 1.0.0
    post = match["post_n1"] or match["post_n2"] or "0"
    has_post = match["post_n1"] is not None or match["post"] is not None
    # packaging.version's order: the dev releases of a final release come before its
    # pre-releases (1.0.dev0 < 1.0a1), the final release after them, post-releases after it.
    if match["pre"] is not None:
        pre: _Key = (1, _PEP440_PRE[match["pre"].lower()], _num(match["pre_n"] or "0"))
    else:
        pre = (0 if match["dev"] is not None and not has_post else 2, 0, _ZERO)
    # A local label breaks ties only; in it, numeric segments come after alphanumeric ones.
    local = tuple(
        (1, _num(part), "") if part.isdigit() else (0, _ZERO, part.lower())
        for part in re.split(r"[-_.]", match["local"] or "")
    )
    return (
        _num(match["epoch"] or "0"),
        tuple(release),
        pre,
        (1, _num(post)) if has_post else (0, _ZERO),
        (0, _num(match["dev_n"] or "0")) if match["dev"] is not None else (1, _ZERO),
        (0, ()) if match["local"] is None else (1, local),
    )


_pep440_sort_key: Final = _sort_key(_pep440_key)


def compare_pep440(left: str, right: str) -> int:
    """Compare two Python package versions by PEP 440.

    Epoch (``1!``), release (trailing zeros ignored: ``1.0 == 1.0.0``), pre-release
    (``a``/``alpha`` < ``b``/``beta`` < ``rc``/``c``/``pre``/``preview``), post-release
    (``.post1``, ``-1``, ``rev``, ``r``), development release, in ``packaging.version``'s order
    (``1.0.dev0 < 1.0a1.dev0 < 1.0a1 < 1.0rc1 < 1.0 < 1.0.post1.dev0 < 1.0.post1``); a local
    label (``+ubuntu1``) only breaks ties (``1.0 < 1.0+local``). Other texts are invalid.

    Returns:
        -1, 0 or 1 like ``cmp``.

    Raises:
        Nothing.
    """
    return _order(_pep440_sort_key(left), _pep440_sort_key(right))


_APK_RE: Final = re.compile(
    r"([0-9]+(?:\.[0-9]+)*)([a-z]?)((?:_(?:alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]*)*)"
    r"(?:~[0-9a-f]+)?(?:-r([0-9]+))?"
)
_APK_SUFFIX_RE: Final = re.compile(r"_(alpha|beta|pre|rc|cvs|svn|git|hg|p)([0-9]*)")
# apk-tools' order: pre-release suffixes, then none (the release, 4), then post-release ones.
_APK_SUFFIX: Final = {
    "alpha": 0, "beta": 1, "pre": 2, "rc": 3, "cvs": 5, "svn": 6, "git": 7, "hg": 8, "p": 9,
}  # fmt: skip


def _apk_key(text: str) -> _Key | None:
    match = _APK_RE.fullmatch(text)
    if match is None:
        return None
    numbers, letter, suffixes, revision = match.groups()
    ranked = [(_APK_SUFFIX[name], _num(n)) for name, n in _APK_SUFFIX_RE.findall(suffixes)]
    return (
        tuple(_num(part) for part in numbers.split(".")),
        letter,
        (*ranked, (4, _ZERO)),
        _num(revision or "0"),
    )


_apk_sort_key: Final = _sort_key(_apk_key)


def compare_apk(left: str, right: str) -> int:
    """Compare two Alpine (apk) package versions.

    ``<numbers>[letter][_suffix[N]]...[~hash][-rN]``: numbers by value, more numbers newer
    (``1.2 < 1.2.1``), then the letter (``1.2 < 1.2a``), then the suffixes, ``_alpha < _beta <
    _pre < _rc`` before the release and ``_cvs < _svn < _git < _hg < _p`` after it (``1.0_rc1 <
    1.0 < 1.0_p1``), then the ``-r`` revision. A ``~hash`` does not count. Other texts are
    invalid.

    Returns:
        -1, 0 or 1 like ``cmp``.

    Raises:
        Nothing.
    """
    return _order(_apk_sort_key(left), _apk_sort_key(right))


_DPKG_UPSTREAM: Final = re.compile(r"[A-Za-z0-9.+~:-]+")
_DPKG_REVISION: Final = re.compile(r"[A-Za-z0-9.+~]*")
_DPKG_SEGMENT: Final = re.compile(r"([^0-9]*)([0-9]*)")
# dpkg's order() of the characters of a non-digit part: "~" before the end of the part, letters
# before everything else. As text that compares the same way: "~" becomes U+0001, the end an
# appended U+0002, letters stay, the other characters a valid version may hold move past the
# letters (their code point plus 256).
_DPKG_LEXICAL: Final = str.maketrans({"~": "\x01", **{c: chr(ord(c) + 256) for c in ".+:-"}})
_DPKG_END: Final = "\x02"
# A part where a version has run out: an empty non-digit part and the number 0.
_DPKG_EMPTY_PART: Final = (_DPKG_END, 0)


def _verrev_key(text: str) -> tuple[str | int, ...]:
    # dpkg's verrevcmp, as a key: alternate non-digit parts (dpkg's order(), as text) and digit
    # parts (numbers: the text is at most MAX_STRING_CHARS long, so int() is cheap and safe),
    # flat, then one empty part. verrevcmp goes on with empty parts where a version runs out;
    # tuple order stops at the end instead, and agrees because of two facts. Every part after
    # the first has a non-empty non-digit part, which differs from an empty one at its first
    # character, so the one empty part appended decides against it exactly as verrevcmp's
    # would. And the first part is always there (an empty text has one empty part), because
    # it alone may be empty ("0~1" starts with "", 0): "0~1" < "0" needs the key of "0" to be
    # (empty, empty), longer than that first part.
    key: list[str | int] = []
    for match in _DPKG_SEGMENT.finditer(text):
        if match[0]:
            key += (match[1].translate(_DPKG_LEXICAL) + _DPKG_END, int(match[2] or 0))
    return (*(key or _DPKG_EMPTY_PART), *_DPKG_EMPTY_PART)


def _dpkg_key(text: str) -> _Key | None:
    # dpkg's parseversion: the epoch before the first colon (so a colon in the upstream version
    # needs an epoch), the revision after the last hyphen, neither empty if present.
    epoch, colon, rest = text.partition(":")
    if not colon:
        epoch, rest = "0", text
    upstream, hyphen, revision = rest.rpartition("-")
    if not hyphen:
        upstream, revision = rest, ""
    valid = (
        epoch.isascii()
        and epoch.isdigit()
        and _DPKG_UPSTREAM.fullmatch(upstream) is not None
        and _DPKG_REVISION.fullmatch(revision) is not None
        and (revision or not hyphen)
    )
    # Flat (tuples compare fastest flat): the upstream key ends with an empty part and its
    # other parts differ from one at their non-digit text, so equal upstream keys end at the
    # same place and revision keys line up, and different ones are decided before either ends.
    return (int(epoch), *_verrev_key(upstream), *_verrev_key(revision)) if valid else None


_dpkg_sort_key: Final = _sort_key(_dpkg_key)


def compare_dpkg(left: str, right: str) -> int:
    """Compare two Debian package versions as ``dpkg --compare-versions`` does.

    ``[epoch:]upstream[-revision]``: the epoch as a number (none is 0), then the upstream
    version, then the revision (after the last hyphen; none is empty, which equals ``0``),
    both with dpkg's ``verrevcmp``: non-digit parts character by character, ``~`` before
    everything, even the end (``1.0~rc1 < 1.0``), letters before other characters (``1.0a <
    1.0+``); digit parts as numbers. What dpkg refuses (an empty or non-numeric epoch,
    characters outside ``A-Za-z0-9.+~:-``, an empty upstream version or revision) is invalid.

    Returns:
        -1, 0 or 1 like ``cmp``.

    Raises:
        Nothing.
    """
    return _order(_dpkg_sort_key(left), _dpkg_sort_key(right))


_COMPARATORS: Final[dict[str, Comparator]] = {
    "Debian": compare_dpkg, "Ubuntu": compare_dpkg, "PyPI": compare_pep440,
    "Alpine": compare_apk, "Wolfi": compare_apk, "Chainguard": compare_apk,
    "npm": compare_semver, "Go": compare_semver, "crates.io": compare_semver,
    "Hex": compare_semver, "Pub": compare_semver, "SwiftURL": compare_semver,
}  # fmt: skip
_SORT_KEYS: Final[dict[Comparator, _SortKey]] = {
    compare_dpkg: _dpkg_sort_key, compare_pep440: _pep440_sort_key, compare_apk: _apk_sort_key,
    compare_semver: _semver_sort_key, compare_generic: _generic_sort_key,
}  # fmt: skip
_BASE_SORT_KEYS: Final = {base: _SORT_KEYS[order] for base, order in _COMPARATORS.items()}


def _canonical_ecosystem(ecosystem: str) -> str:
    base, colon, release = ecosystem.partition(":")
    return f"{_KNOWN_ECOSYSTEMS.get(base.lower(), base)}{colon}{release}"


# Inventories repeat a few ecosystems (at most MAX_STRING_CHARS long: match() checks).
_canonical_inventory_ecosystem: Final = lru_cache(maxsize=256)(_canonical_ecosystem)


def comparator_for(ecosystem: str) -> Comparator:
    """The version order of an OSV ecosystem (any release suffix, known names in any case).

    Returns:
        :func:`compare_dpkg`, :func:`compare_pep440`, :func:`compare_apk`,
        :func:`compare_semver` or :func:`compare_generic` (module docstring).

    Raises:
        Nothing.
    """
    return _COMPARATORS.get(_canonical_ecosystem(ecosystem).partition(":")[0], compare_generic)


def compare(ecosystem: str, left: str, right: str) -> int:
    """Compare two versions of a package of ``ecosystem``.

    Returns:
        -1 if ``left`` is older, 0 if they are equal, 1 if it is newer.

    Raises:
        Nothing: unreadable versions are ordered by the invalid-version rule.
    """
    return comparator_for(ecosystem)(left, right)


def version_key(ecosystem: str, version: str) -> tuple[Any, ...]:
    """A sort key for versions of a package of ``ecosystem``, in :func:`compare`'s order.

    ``sorted(versions, key=lambda v: version_key(ecosystem, v))`` sorts as
    ``functools.cmp_to_key`` of :func:`comparator_for` would, parsing each version once (and
    remembering recent ones). Keys are opaque: compare them only with keys of the same
    ecosystem's order (another order's may raise ``TypeError``).

    Raises:
        Nothing: unreadable versions get keys by the invalid-version rule.
    """
    return _SORT_KEYS[comparator_for(ecosystem)](version)


# --- matching ---------------------------------------------------------------------------------
#
# Filing an advisory computes the sort keys of its range events once; matching an installed
# version computes its key once (per order: the entries filed under one base ecosystem share
# its order) and then only compares tuples.

# At one version, an interval opened and closed there is empty.
_EVENT_RANK: Final = {"introduced": 0, "last_affected": 1, "fixed": 2}
_INTRODUCED: Final = 0
_LAST_AFFECTED: Final = 1
_FIXED: Final = 2
_FROM_START: Final = ("introduced", "0")
# The bound of "introduced: 0": below every key (keys are non-empty tuples), so it sorts first
# and every version, even an unreadable one, is at or above it.
_START: Final[_Key] = ()
# A fix: its key in the ecosystem's order (to pick the lowest of several ranges), its version.
_Fix = tuple[_Key, str]


@dataclass(frozen=True, slots=True)
class _CompiledRange:
    """A range ready for evaluation, its versions replaced by keys of its order.

    Attributes:
        key: the sort key of the range's order, ``None`` where it is its entry's.
        events: ``(rank, bound)`` sorted by bound then rank (:data:`_EVENT_RANK`); limits apart.
        fixes: per ``fixed`` event in that order, ``(bound, fix)``.
        below: the greatest ``limit``, ``None`` without limits or with a ``*``.
        ceiling: ``(bound, inclusive)`` of the last event if it closes (``fixed``: not
            inclusive; ``last_affected``: inclusive), else ``None``. A version ``v`` with
            ``(v, True) > ceiling`` is past it: the last event closes the sweep there, so the
            range cannot contain ``v``.
    """

    key: _SortKey | None
    events: tuple[tuple[int, _Key], ...]
    fixes: tuple[tuple[_Key, _Fix], ...]
    below: _Key | None
    ceiling: tuple[_Key, bool] | None

    def contains(self, version: _Key) -> bool:
        # OSV's evaluation (schema, "Evaluation"): BeforeLimits (below some limit, so below the
        # greatest), then the sweep.
        if self.below is not None and not version < self.below:
            return False
        # The events are sorted: past the first bound above the version, none applies.
        vulnerable = False
        for rank, bound in self.events:
            if version < bound:
                break
            if rank == _INTRODUCED:
                vulnerable = True
            elif rank == _FIXED or version > bound:
                vulnerable = False
        return vulnerable

    def fixed_above(self, version: _Key) -> _Fix | None:
        # The events are sorted: the first fixed version above is the lowest.
        for bound, fix in self.fixes:
            if version < bound:
                return fix
        return None


def _compile(range_: Range, ecosystem_key: _SortKey) -> _CompiledRange:
    key = _semver_sort_key if range_.kind == "SEMVER" else ecosystem_key
    # A stable sort on (bound, rank) alone: equal events keep their document order.
    events = sorted(
        (
            (_START if event == _FROM_START else key(event[1]), _EVENT_RANK[event[0]], event[1])
            for event in range_.events
            if event[0] != "limit"
        ),
        key=lambda event: event[:2],
    )
    fixes = tuple(
        (bound, (bound if key is ecosystem_key else ecosystem_key(version), version))
        for bound, rank, version in events
        if rank == _FIXED
    )
    limits = [version for kind, version in range_.events if kind == "limit"]
    below = None if not limits or any("*" in limit for limit in limits) else max(map(key, limits))
    last_bound, last_rank = events[-1][:2] if events else (_START, _INTRODUCED)
    return _CompiledRange(
        None if key is ecosystem_key else key,
        tuple((rank, bound) for bound, rank, _ in events),
        fixes,
        below,
        None if last_rank == _INTRODUCED else (last_bound, last_rank == _LAST_AFFECTED),
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    """One affected package of one advisory, as filed in the index.

    Attributes:
        any_release: filed for a base ecosystem (``Debian``), so it applies to every release.
        v_prefix: a SemVer ecosystem: a listed version also matches with a leading ``v``.
        ceiling: the greatest ceiling of its ranges (:class:`_CompiledRange`), ``None`` if
            one has none, has an order of its own or versions are listed: matching skips the
            entry for versions past it, most of them in a fleet kept up to date.
    """

    advisory: Advisory
    ecosystem: str
    any_release: bool
    versions: frozenset[str]
    ranges: tuple[_CompiledRange, ...]
    v_prefix: bool
    ceiling: tuple[_Key, bool] | None

    def evaluate(self, version: str, key: _Key) -> tuple[bool, _Fix | None]:
        # key: the version's key in the ecosystem's order. The lowest fix of the matching
        # ranges (on a tie, the first); listed in no matching range, of all ranges: any range's
        # next fix is still the best hint there is.
        matched = False
        lowest: _Fix | None = None
        for range_ in self.ranges:
            range_key = key if range_.key is None else range_.key(version)
            if range_.contains(range_key):
                matched = True
                fix = range_.fixed_above(range_key)
                if fix is not None and (lowest is None or fix[0] < lowest[0]):
                    lowest = fix
        if matched:
            return True, lowest
        listed = version in self.versions or (
            self.v_prefix and version[:1] == "v" and version[1:] in self.versions
        )
        if not listed:
            return False, None
        for range_ in self.ranges:
            fix = range_.fixed_above(key if range_.key is None else range_.key(version))
            if fix is not None and (lowest is None or fix[0] < lowest[0]):
                lowest = fix
        return True, lowest


def _index_key(ecosystem: str, name: str) -> tuple[str, str]:
    base = ecosystem.partition(":")[0]
    return base, re.sub(r"[-_.]+", "-", name).lower() if base == "PyPI" else name  # PEP 503


def _match_order(match: Match) -> tuple[int, str, str, str, str]:
    rank = _SEVERITY_RANK.get(match.severity, len(SEVERITIES))
    return rank, match.advisory_id, match.package, match.ecosystem, match.installed_version


def _ceiling(ranges: tuple[_CompiledRange, ...]) -> tuple[_Key, bool] | None:
    # An entry's ceiling (_Entry): past the ceilings of all its ranges, none contains a version.
    ceilings = []
    for range_ in ranges:
        if range_.key is not None or range_.ceiling is None:
            return None
        ceilings.append(range_.ceiling)
    return max(ceilings, default=None)


class AdvisoryIndex:
    """The advisories in force, filed by (base ecosystem, package name) for matching.

    Of several copies of one id given to the constructor the greatest ``modified`` wins (on a
    tie, the later copy), as in a batch; withdrawn advisories are not filed. :meth:`add` and
    :meth:`remove` change the index in place (the posture service rebuilds it after an
    import instead, which costs the same). ``len()`` counts the filed advisories.
    """

    def __init__(self, advisories: Iterable[Advisory] = ()) -> None:
        self._advisories: dict[str, Advisory] = {}
        self._entries: dict[tuple[str, str], list[_Entry]] = {}
        latest: dict[str, Advisory] = {}
        for advisory in advisories:
            previous = latest.get(advisory.id)
            if previous is None or previous.modified <= advisory.modified:
                latest[advisory.id] = advisory
        for advisory in latest.values():
            self.add(advisory)

    def __len__(self) -> int:
        return len(self._advisories)

    def __contains__(self, advisory_id: object) -> bool:
        return advisory_id in self._advisories

    def get(self, advisory_id: str) -> Advisory | None:
        """The filed advisory of this id, or ``None``.

        Raises:
            Nothing.
        """
        return self._advisories.get(advisory_id)

    def add(self, advisory: Advisory) -> None:
        """File an advisory in place of any copy of its id (a withdrawn one only removes it).

        Raises:
            Nothing.
        """
        self.remove(advisory.id)
        if advisory.withdrawn:
            return
        self._advisories[advisory.id] = advisory
        for package in advisory.affected:
            ecosystem = _canonical_ecosystem(package.ecosystem)
            key = _SORT_KEYS[comparator_for(ecosystem)]
            ranges = tuple(_compile(range_, key) for range_ in package.ranges)
            # Filed under its base ecosystem: a base ecosystem's entry applies to every
            # inventory ecosystem that finds it (the base itself or one of its releases).
            entry = _Entry(
                advisory,
                ecosystem,
                ":" not in ecosystem,
                package.versions,
                ranges,
                key is _semver_sort_key,
                None if package.versions else _ceiling(ranges),
            )
            self._entries.setdefault(_index_key(ecosystem, package.name), []).append(entry)

    def remove(self, advisory_id: str) -> bool:
        """Unfile the advisory of this id.

        Returns:
            Whether it was filed.

        Raises:
            Nothing.
        """
        advisory = self._advisories.pop(advisory_id, None)
        for package in () if advisory is None else advisory.affected:
            key = _index_key(_canonical_ecosystem(package.ecosystem), package.name)
            kept = [e for e in self._entries.get(key, ()) if e.advisory.id != advisory_id]
            if kept:
                self._entries[key] = kept
            else:
                self._entries.pop(key, None)
        return advisory is not None

    def match(self, ecosystem: str, name: str, version: str) -> list[Match]:
        """The advisories that cover one installed package (module docstring, *Matching*).

        Args:
            ecosystem: the inventory's ecosystem (``Debian:12``, ``PyPI``...).
            name: the package name.
            version: the installed version.

        Returns:
            One match per advisory, most severe first, then by id; none if an argument is
            empty or longer than :data:`MAX_STRING_CHARS`.

        Raises:
            Nothing.
        """
        if not (_valid_length(ecosystem) and _valid_length(name) and _valid_length(version)):
            return []
        return sorted(self._match(ecosystem, name, version), key=_match_order)

    def _match(self, ecosystem: str, name: str, version: str) -> list[Match]:
        # match() without its checks (the arguments have valid lengths) and unsorted.
        ecosystem = _canonical_inventory_ecosystem(ecosystem)
        index_key = _index_key(ecosystem, name)
        entries = self._entries.get(index_key)
        if not entries:
            return []
        # The entries filed under one base ecosystem share its order: one key serves them all.
        key = _BASE_SORT_KEYS.get(index_key[0], _generic_sort_key)(version)
        past = (key, True)  # above a fixed version, or above a last affected one
        found: dict[str, tuple[Advisory, _Fix | None]] = {}
        for entry in entries:
            if (entry.ceiling is not None and entry.ceiling < past) or (
                not entry.any_release and entry.ecosystem != ecosystem
            ):
                continue
            affected, fix = entry.evaluate(version, key)
            if not affected:
                continue
            previous = found.get(entry.advisory.id, (entry.advisory, None))[1]
            if previous is not None and (fix is None or previous[0] < fix[0]):
                fix = previous
            found[entry.advisory.id] = (entry.advisory, fix)
        return [
            Match(
                a.id,
                a.aliases,
                a.severity,
                a.summary,
                name,
                version,
                None if fix is None else fix[1],
                ecosystem,
            )
            for a, fix in found.values()
        ]


def _inventory_fields(item: object) -> tuple[str, str, str] | None:
    if not isinstance(item, Mapping):
        return None
    ecosystem, name, version = item.get("ecosystem"), item.get("name"), item.get("version")
    if (
        isinstance(ecosystem, str)
        and isinstance(name, str)
        and isinstance(version, str)
        and 0 < len(ecosystem) <= MAX_STRING_CHARS
        and 0 < len(name) <= MAX_STRING_CHARS
        and 0 < len(version) <= MAX_STRING_CHARS
    ):
        return ecosystem, name, version
    return None


def scan_inventory(index: AdvisoryIndex, packages: Iterable[object]) -> InventoryScan:
    """Match an inventory's packages, counting what was left out.

    Args:
        index: the advisories in force.
        packages: items ``{"name": str, "version": str, "ecosystem": str}`` (an ``inventory``
            event's ``packages``); others are skipped and counted.

    Returns:
        The first :data:`MAX_MATCHES` matches, one per advisory, ecosystem, package and
        version, and the counts.

    Raises:
        Nothing.
    """
    found: dict[tuple[str, str, str, str], Match] = {}
    skipped = 0
    for count, item in enumerate(packages):
        fields = _inventory_fields(item) if count < MAX_INVENTORY_PACKAGES else None
        if fields is None:
            skipped += 1
            continue
        for match in index._match(*fields):  # noqa: SLF001 - one module; sorted below
            key = (match.advisory_id, match.ecosystem, match.package, match.installed_version)
            found.setdefault(key, match)
    ordered = sorted(found.values(), key=_match_order)
    return InventoryScan(tuple(ordered[:MAX_MATCHES]), max(0, len(ordered) - MAX_MATCHES), skipped)


def match_inventory(index: AdvisoryIndex, packages: Iterable[object]) -> list[Match]:
    """The matches of an inventory's packages (:func:`scan_inventory` without the counts).

    Args:
        index: the advisories in force.
        packages: items ``{"name": str, "version": str, "ecosystem": str}``; items without
            an ecosystem cannot be matched and are skipped.

    Returns:
        At most :data:`MAX_MATCHES` matches, most severe first, then by advisory id and package.

    Raises:
        Nothing.
    """
    return list(scan_inventory(index, packages).matches)


# --- the stored form --------------------------------------------------------------------------


def advisory_to_json(advisory: Advisory) -> dict[str, Any]:
    """The compact JSON form the hub stores instead of the OSV document.

    Its ``affected`` is the OSV subset the advisory kept (``package``, ``ranges``,
    ``versions``), so reading it back runs the OSV checks again; ``withdrawn`` is a boolean;
    ``format`` is 1.

    Raises:
        Nothing.
    """
    affected = []
    for package in advisory.affected:
        entry: dict[str, Any] = {"package": {"ecosystem": package.ecosystem, "name": package.name}}
        if package.ranges:
            entry["ranges"] = [
                {"type": r.kind, "events": [{kind: version} for kind, version in r.events]}
                for r in package.ranges
            ]
        if package.versions:
            entry["versions"] = sorted(package.versions)
        affected.append(entry)
    return {
        "format": _FORMAT,
        "id": advisory.id,
        "modified": advisory.modified,
        "summary": advisory.summary,
        "aliases": list(advisory.aliases),
        "severity": advisory.severity,
        "withdrawn": advisory.withdrawn,
        "affected": affected,
    }


def advisory_from_json(obj: object) -> Advisory:
    """Read back the form of :func:`advisory_to_json`, checking everything again.

    Stored data is trusted no more than a feed: a damaged or foreign row is refused.

    Raises:
        AdvisoryError: not that form (members, types, bounds, format).
    """
    document = _object(obj, "the stored advisory")
    if set(document) != {*_STORED_KEYS, "affected"} or document["format"] != _FORMAT:
        raise AdvisoryError("the stored advisory has other members or another format")
    summary, severity, withdrawn = document["summary"], document["severity"], document["withdrawn"]
    if not isinstance(summary, str) or len(summary) > MAX_SUMMARY_CHARS or _UNSAFE.search(summary):
        raise AdvisoryError(f"'summary' must be a clean string of {MAX_SUMMARY_CHARS} at most")
    if severity not in SEVERITIES or not isinstance(withdrawn, bool):
        raise AdvisoryError("'severity' or 'withdrawn' is invalid")
    aliases = _list(document["aliases"], "aliases", MAX_ALIASES)
    return Advisory(
        id=_identifier(document["id"], "id"),
        modified=_time(document["modified"], "modified"),
        summary=summary,
        aliases=tuple(_identifier(alias, f"aliases[{n}]") for n, alias in enumerate(aliases)),
        severity=severity,
        withdrawn=withdrawn,
        affected=_affected_list(document["affected"], withdrawn=withdrawn)[0],
    )
