"""Hostile OSV advisory files, imported live through the hub's HTTPS API (issue 6).

The vectors of tests/vectors/osv_advisories.json (the same ones the unit tests give the pure
parser and tests/fuzz/fuzz_osv.py mutates) are posted one by one, in file order, to
``POST /advisories/import?source=<vector name>`` of one running hub, as an operator's upload:

- an ``accepted`` vector is answered 200 and counted as ``added``, ``updated``, ``unchanged``
  or ``withdrawn``, exactly as the advisories already stored dictate (the vectors share ids:
  a model of the store, fed by the parser's reading of each vector, says which), with nothing
  refused;
- a ``refused`` vector is answered 400 (``advisory file refused: ...``, a whole-file refusal)
  or 200 with its one entry refused, and in both cases the reason holds the vector's
  ``reason_contains`` and nothing is added, updated or withdrawn.

Afterwards the hub still answers, ``GET /advisories`` lists exactly the ids the model holds
(the distinct accepted ids whose last accepted copy was not withdrawn), and every import left
its trace: an ``operator-request`` audit record per request, an ``operator-action``
(``advisories-import``, the source) per import answered 200 and none for a 400, also on the
security stream. Then every vector goes again in one ZIP archive (OSV's ``all.zip`` layout) to
a second hub: each refused vector's member is refused, no accepted one is.

Each test ends with the (a)(b)(c) checks of tests/support/hostile.py (no ERROR logged, no task
exception, descriptors and tasks back to their baseline, a canary device still served).
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from typing import TYPE_CHECKING, Any

import pytest
from tests.fuzz.fuzz_osv import OsvVector, load_osv_vectors
from tests.support.hostile import security_events

from ironhub.cli.client import APIError, HubClient
from ironhub.monitor.advisories import Advisory, AdvisoryError, parse_feed

if TYPE_CHECKING:
    from tests.support.hostile import HostileGuard
    from tests.support.hubkit import HubFactory

    from ironhub.server import RunningHub

pytestmark = pytest.mark.asyncio

VECTORS = load_osv_vectors()
REFUSED_PREFIX = "advisory file refused: "
COUNTS = ("added", "updated", "unchanged", "withdrawn")


def _client(hub: RunningHub) -> HubClient:
    assert hub.info.first_admin_token is not None
    return HubClient(hub.info.api_url, hub.info.first_admin_token, hub.info.ca_path)


async def _import(
    client: HubClient, source: str, data: bytes, content_type: str = "application/json"
) -> tuple[int, dict[str, Any]]:
    """POST the file; (200, the answer) or (the error status, its code and message)."""
    try:
        answer = await asyncio.to_thread(
            client.request,
            "POST",
            "/advisories/import",
            query={"source": source},
            raw_body=data,
            content_type=content_type,
        )
    except APIError as exc:
        return exc.status, {"code": exc.code, "message": str(exc)}
    return 200, answer


async def _audit_actions(hub: RunningHub) -> list[tuple[str, str]]:
    assert hub.services.audit is not None
    await hub.services.audit.drain()
    records = [json.loads(b) for _, _, b in await hub.services.storage.read_audit(limit=100_000)]
    return [(r["action"], r["target"]) for r in records]


def _accepted_advisory(vector: OsvVector) -> Advisory:
    """The parser's reading of an accepted vector (the unit tests hold it to the vector)."""
    batch = parse_feed(vector.data, name=vector.name)
    assert batch.refused == () and len(batch.advisories) == 1, vector.name
    return batch.advisories[0]


def _expected_counts(advisory: Advisory, stored: dict[str, str]) -> dict[str, int]:
    """What importing ``advisory`` counts, and the model of the store updated."""
    counts = dict.fromkeys(COUNTS, 0)
    previous = stored.get(advisory.id)
    if advisory.withdrawn:
        if previous is not None:
            counts["withdrawn"] = 1
            del stored[advisory.id]
        return counts
    if previous is not None and previous >= advisory.modified:
        counts["unchanged"] = 1
        return counts
    counts["added" if previous is None else "updated"] = 1
    stored[advisory.id] = advisory.modified
    return counts


def _refusal_problem(vector: OsvVector, status: int, answer: dict[str, Any]) -> str | None:
    assert vector.reason is not None
    if status == 400:
        message = answer["message"]
        if answer["code"] != "invalid" or not message.startswith(REFUSED_PREFIX):
            return f"400 of another kind: {answer}"
        return None if vector.reason in message else f"the reason misses the vector's: {message}"
    if status != 200:
        return f"status {status}: {answer}"
    if answer["refused"] != 1 or any(answer[key] for key in COUNTS):
        return f"not exactly one entry refused and nothing counted: {answer}"
    [entry] = answer["refusedEntries"]
    if vector.reason not in entry["reason"]:
        return f"the reason misses the vector's: {entry}"
    return None


async def test_every_vector_imported_live(hub_factory: HubFactory, guard: HostileGuard) -> None:
    hub = await hub_factory()
    await guard.watch(hub)
    client = _client(hub)
    stored: dict[str, str] = {}  # the model: id -> modified
    accepted_ids: list[tuple[str, bool]] = []  # (id, withdrawn) per accepted vector, in order
    failures: dict[str, str] = {}
    answered_ok: list[str] = []
    for vector in VECTORS:
        status, answer = await _import(client, vector.name, vector.data)
        if status == 200:
            answered_ok.append(vector.name)
        if vector.expect == "refused":
            problem = _refusal_problem(vector, status, answer)
            if problem is None and status == 200 and answer["total"] != len(stored):
                problem = f"the total moved: {answer['total']}, the model holds {len(stored)}"
            if problem is not None:
                failures[vector.name] = problem
            continue
        advisory = _accepted_advisory(vector)
        accepted_ids.append((advisory.id, advisory.withdrawn))
        expected = _expected_counts(advisory, stored)
        if status != 200:
            failures[vector.name] = f"status {status}: {answer}"
            continue
        got = {key: answer[key] for key in COUNTS}
        if got != expected or answer["refused"] != 0 or answer["total"] != len(stored):
            failures[vector.name] = f"{answer}, expected {expected} and total {len(stored)}"
        elif not advisory.withdrawn and sum(got.values()) != 1:
            failures[vector.name] = f"not counted: {answer}"
    assert failures == {}
    assert any(expect == "accepted" for expect in (v.expect for v in VECTORS))

    # The hub still answers; what it lists is the model: the distinct accepted ids whose last
    # accepted copy was not withdrawn.
    last_withdrawn = dict(accepted_ids)
    in_force = {advisory_id for advisory_id, withdrawn in last_withdrawn.items() if not withdrawn}
    assert in_force == set(stored)
    listed = await asyncio.to_thread(client.request, "GET", "/advisories", query={"limit": 1000})
    assert listed["total"] == len(in_force)
    assert {a["id"] for a in listed["advisories"]} == in_force
    assert listed["importedAt"] is not None

    # Every request was audited before it ran; every import answered 200 left an
    # operator-action naming its source, and no refused file did.
    actions = await _audit_actions(hub)
    assert actions.count(("operator-request", "importAdvisories")) == len(VECTORS)
    imported = [target for action, target in actions if action == "advisories-import"]
    assert sorted(imported) == sorted(answered_ok)
    events = await security_events(hub, event="operator-action", action="advisories-import")
    assert sorted(e["target"] for e in events) == sorted(answered_ok)
    await guard.check(hub)


async def test_every_vector_in_one_zip_archive(
    hub_factory: HubFactory, guard: HostileGuard
) -> None:
    hub = await hub_factory()
    await guard.watch(hub)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for vector in VECTORS:
            archive.writestr(f"{vector.name}.json", vector.data)
        archive.writestr("README.md", b"# not an advisory")
    data = buffer.getvalue()

    status, answer = await _import(_client(hub), "all.zip", data, "application/zip")
    assert status == 200, answer
    refused = {entry["entry"]: entry["reason"] for entry in answer["refusedEntries"]}
    assert refused.pop('"README.md"') == "not a .json member"
    # A vector refused whole as a file is refused as a member, the rest of the archive kept.
    assert set(refused) == {f'"{v.name}.json"' for v in VECTORS if v.expect == "refused"}
    assert answer["refused"] == len(refused) + 1
    try:
        batch = parse_feed(data, name="all.zip")
    except AdvisoryError as exc:  # pragma: no cover - the parser's own tests say otherwise
        raise AssertionError(f"the archive is refused whole: {exc}") from None
    in_force = [a for a in batch.advisories if not a.withdrawn]
    assert (answer["added"], answer["withdrawn"], answer["total"]) == (
        len(in_force),
        0,
        len(in_force),
    )
    await guard.check(hub)
