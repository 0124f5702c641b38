"""The security-monitoring part of the storage contract: alerts, monitor state and quarantined
devices. Every backend passes these (STYLE.md, "Storage backends must pass the same contract
suite"); the last section guards the SQLite file itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from typing import TYPE_CHECKING

import pytest
from tests.contract.conftest import Backend

from ironhub.clock import FakeClock
from ironhub.config import StorageConfig
from ironhub.errors import (
    ConflictError,
    CorruptDatabaseError,
    NotFoundError,
    PreconditionFailedError,
    StorageError,
)
from ironhub.storage.interfaces import (
    AlertRecord,
    AlertState,
    AuthKind,
    DeviceRecord,
    DeviceState,
    Storage,
)
from ironhub.storage.sqlite import SQLiteStorage

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.asyncio


def alert(alert_id: str = "al-01", **overrides: object) -> AlertRecord:
    """An open alert about ``dev-1`` with defaults for every optional field."""
    fields: dict[str, object] = {
        "alert_id": alert_id,
        "alert_type": "tamper",
        "severity": "high",
        "device_id": "dev-1",
        "detector": "tamper",
        "summary": "the enclosure of dev-1 was opened",
        "state": AlertState.OPEN,
        "created_at": 100.0,
        "updated_at": 100.0,
        "last_seen_at": 100.0,
    }
    fields.update(overrides)
    return AlertRecord(**fields)  # type: ignore[arg-type]


def device(device_id: str = "dev-1", **overrides: object) -> DeviceRecord:
    fields: dict[str, object] = {
        "device_id": device_id,
        "auth_kind": AuthKind.SAS,
        "state": DeviceState.QUARANTINED,
        "created_at": 100.0,
        "updated_at": 100.0,
        "primary_key_sealed": b"\x01sealed-primary",
        "secondary_key_sealed": b"\x01sealed-secondary",
    }
    fields.update(overrides)
    return DeviceRecord(**fields)  # type: ignore[arg-type]


# --- alerts: records --------------------------------------------------------------------------


async def test_alert_round_trip_of_every_field(storage: Storage) -> None:
    full = alert(
        "al-full",
        alert_type="masquerade",
        severity="critical",
        device_id="dev-9/module-ü",
        detector="masquerade",
        summary="dev-9 connected from two networks at once",
        state=AlertState.RESOLVED,
        created_at=1.25,
        updated_at=9.5,
        last_seen_at=7.75,
        count=42,
        evidence=(3, 1, 2**62),  # kept in the order given, not sorted
        details='{"first_peer":"10.0.0.1:5000","second_peer":"192.0.2.7:6000"}',
        actions=("quarantine", "notify", "quarantine"),
        acknowledged_by="alice",
        resolved_by="bob",
        version=7,
    )
    # Every optional field at its default (empty / None), and about no device at all.
    bare = AlertRecord(
        alert_id="al-bare",
        alert_type="brute-force",
        severity="medium",
        device_id=None,
        detector="auth",
        summary="",
        state=AlertState.OPEN,
        created_at=5.0,
        updated_at=6.0,
        last_seen_at=6.0,
    )
    acknowledged = alert("al-ack", state=AlertState.ACKNOWLEDGED, acknowledged_by="carol")
    for record in (full, bare, acknowledged):
        await storage.insert_alert(record)
    assert await storage.get_alert("al-full") == full
    assert await storage.get_alert("al-bare") == bare
    assert await storage.get_alert("al-ack") == acknowledged
    stored = await storage.get_alert("al-bare")
    assert stored is not None
    assert (stored.device_id, stored.evidence, stored.details, stored.actions) == (
        None,
        (),
        "{}",
        (),
    )
    assert (stored.acknowledged_by, stored.resolved_by, stored.count, stored.version) == (
        None,
        None,
        1,
        1,
    )
    assert isinstance(stored.state, AlertState)
    assert await storage.get_alert("al-nobody") is None


async def test_insert_existing_alert_conflicts(storage: Storage) -> None:
    await storage.insert_alert(alert())
    with pytest.raises(ConflictError):
        await storage.insert_alert(alert(alert_type="usb", device_id=None, count=5))
    assert await storage.get_alert("al-01") == alert()
    assert await storage.list_alerts() == [alert()]


async def test_update_alert_with_expected_version(storage: Storage) -> None:
    await storage.insert_alert(alert())
    updated = alert(
        version=2,
        severity="critical",
        summary="the enclosure of dev-1 was opened again",
        state=AlertState.ACKNOWLEDGED,
        updated_at=300.0,
        last_seen_at=250.0,
        count=3,
        evidence=(10, 11, 12),
        details='{"switch":"lid"}',
        actions=("quarantine",),
        acknowledged_by="alice",
    )
    await storage.update_alert(updated, expected_version=1)
    assert await storage.get_alert("al-01") == updated
    resolved = dataclasses.replace(
        updated, version=3, state=AlertState.RESOLVED, resolved_by="bob", updated_at=400.0
    )
    await storage.update_alert(resolved, expected_version=2)
    assert await storage.get_alert("al-01") == resolved
    # And back to the empty values: None and () are stored, not ignored.
    cleared = alert(version=4, evidence=(), actions=(), acknowledged_by=None, resolved_by=None)
    await storage.update_alert(cleared, expected_version=3)
    assert await storage.get_alert("al-01") == cleared


async def test_update_alert_with_stale_version_fails_its_precondition(storage: Storage) -> None:
    await storage.insert_alert(alert())
    await storage.update_alert(alert(version=2, count=2), expected_version=1)
    with pytest.raises(PreconditionFailedError):
        await storage.update_alert(alert(version=2, count=9), expected_version=1)
    with pytest.raises(PreconditionFailedError):
        await storage.update_alert(alert(version=4, count=9), expected_version=3)  # ahead
    assert await storage.get_alert("al-01") == alert(version=2, count=2)


async def test_update_unknown_alert_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        await storage.update_alert(alert(version=2), expected_version=1)
    assert await storage.get_alert("al-01") is None
    assert await storage.list_alerts() == []


async def test_update_alert_requires_next_version(storage: Storage) -> None:
    # An update that kept the version would let a concurrent one through unnoticed.
    await storage.insert_alert(alert())
    for version in (1, 3):
        with pytest.raises(ValueError, match="expected_version"):
            await storage.update_alert(alert(version=version, count=5), expected_version=1)
    assert await storage.get_alert("al-01") == alert()


async def test_concurrent_updates_of_one_version_let_exactly_one_through(
    storage: Storage,
) -> None:
    await storage.insert_alert(alert())
    results = await asyncio.gather(
        *(
            storage.update_alert(alert(version=2, count=n), expected_version=1)
            for n in range(2, 12)
        ),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(r is None or isinstance(r, PreconditionFailedError) for r in results)
    stored = await storage.get_alert("al-01")
    assert stored is not None
    assert stored.version == 2
    assert stored.count == 2 + results.index(None)


# --- alerts: the de-duplication lookup --------------------------------------------------------


async def test_find_alert_without_alerts(storage: Storage) -> None:
    assert await storage.find_alert("tamper", "dev-1") is None
    assert await storage.find_alert("tamper", None) is None


async def test_find_alert_prefers_an_unresolved_one_over_a_newer_resolved_one(
    storage: Storage,
) -> None:
    older_open = alert("al-01", created_at=10.0)
    newer_resolved = alert("al-02", created_at=20.0, state=AlertState.RESOLVED)
    await storage.insert_alert(older_open)
    await storage.insert_alert(newer_resolved)
    assert await storage.find_alert("tamper", "dev-1") == older_open
    # Acknowledged is not resolved either.
    acknowledged = alert("al-01", created_at=10.0, state=AlertState.ACKNOWLEDGED, version=2)
    await storage.update_alert(acknowledged, expected_version=1)
    assert await storage.find_alert("tamper", "dev-1") == acknowledged
    # Once it is resolved too, the newest resolved one is the answer.
    resolved = dataclasses.replace(acknowledged, state=AlertState.RESOLVED, version=3)
    await storage.update_alert(resolved, expected_version=2)
    assert await storage.find_alert("tamper", "dev-1") == newer_resolved


async def test_find_alert_takes_the_newest_unresolved_one(storage: Storage) -> None:
    # De-duplication keeps one unresolved alert per key; should there be two, the newest wins.
    records = [
        alert("al-01", created_at=10.0, state=AlertState.ACKNOWLEDGED),
        alert("al-02", created_at=30.0, state=AlertState.OPEN),
        alert("al-03", created_at=20.0, state=AlertState.OPEN),
        alert("al-04", created_at=40.0, state=AlertState.RESOLVED),
    ]
    for record in reversed(records):
        await storage.insert_alert(record)
    assert await storage.find_alert("tamper", "dev-1") == records[1]


async def test_find_alert_takes_the_newest_resolved_one_when_all_are_resolved(
    storage: Storage,
) -> None:
    # "Newest" is by creation: the older alert's later activity does not make it newer.
    older = alert(
        "al-01", created_at=10.0, last_seen_at=90.0, updated_at=95.0, state=AlertState.RESOLVED
    )
    newer = alert(
        "al-02", created_at=20.0, last_seen_at=30.0, updated_at=35.0, state=AlertState.RESOLVED
    )
    await storage.insert_alert(newer)
    await storage.insert_alert(older)
    assert await storage.find_alert("tamper", "dev-1") == newer


async def test_find_alert_breaks_creation_ties_by_id(storage: Storage) -> None:
    # Ids sort by creation time, so of two created in the same instant the greater is newer.
    for state in (AlertState.RESOLVED, AlertState.OPEN):
        first = alert(f"al-{state}-1", created_at=10.0, state=state)
        second = alert(f"al-{state}-2", created_at=10.0, state=state)
        await storage.insert_alert(second)
        await storage.insert_alert(first)
        assert await storage.find_alert("tamper", "dev-1") == second


async def test_find_alert_is_scoped_to_its_type_and_device(storage: Storage) -> None:
    mine = alert("al-01", created_at=10.0, state=AlertState.RESOLVED)
    others = [
        alert("al-02", created_at=20.0, alert_type="usb"),
        alert("al-03", created_at=30.0, device_id="dev-2"),
        alert("al-04", created_at=40.0, device_id="dev-1/mod"),
        alert("al-05", created_at=50.0, device_id=None),
        alert("al-06", created_at=60.0, device_id=""),  # the empty id is not "no device"
    ]
    for record in (mine, *others):
        await storage.insert_alert(record)
    assert await storage.find_alert("tamper", "dev-1") == mine
    assert await storage.find_alert("usb", "dev-1") == others[0]
    assert await storage.find_alert("tamper", "dev-2") == others[1]
    assert await storage.find_alert("tamper", "dev-1/mod") == others[2]
    assert await storage.find_alert("tamper", "dev-3") is None
    assert await storage.find_alert("auth", "dev-1") is None


async def test_find_alert_about_no_device_matches_only_alerts_about_no_device(
    storage: Storage,
) -> None:
    # device_id None is a value of the key: it matches the alerts about no device (SQL's
    # NULL = NULL is not true; the backend must not lose them), and nothing else.
    assert await storage.find_alert("brute-force", None) is None
    open_none = alert("al-01", alert_type="brute-force", device_id=None, created_at=10.0)
    resolved_none = alert(
        "al-02",
        alert_type="brute-force",
        device_id=None,
        created_at=20.0,
        state=AlertState.RESOLVED,
    )
    with_device = alert("al-03", alert_type="brute-force", device_id="dev-1", created_at=30.0)
    empty_id = alert("al-04", alert_type="brute-force", device_id="", created_at=40.0)
    for record in (open_none, resolved_none, with_device, empty_id):
        await storage.insert_alert(record)
    assert await storage.find_alert("brute-force", None) == open_none
    assert await storage.find_alert("brute-force", "dev-1") == with_device
    assert await storage.find_alert("brute-force", "") == empty_id
    await storage.update_alert(
        dataclasses.replace(open_none, state=AlertState.RESOLVED, version=2), expected_version=1
    )
    assert await storage.find_alert("brute-force", None) == resolved_none
    assert await storage.find_alert("tamper", None) is None


# --- alerts: listing --------------------------------------------------------------------------


async def test_list_alerts_pages_and_filters(storage: Storage) -> None:
    records = [
        alert("a1", device_id="dev-1"),
        alert("a2", device_id="dev-2", state=AlertState.RESOLVED),
        alert("a3", device_id=None, state=AlertState.ACKNOWLEDGED),
        alert("a4", device_id="dev-1", state=AlertState.RESOLVED),
        alert("a5", device_id="dev-1", state=AlertState.ACKNOWLEDGED),
        alert("a6", device_id="dev-2"),
        alert("a7", device_id="dev-1"),
    ]
    for record in reversed(records):
        await storage.insert_alert(record)

    async def ids(**filters: object) -> list[str]:
        found = await storage.list_alerts(**filters)  # type: ignore[arg-type]
        return [a.alert_id for a in found]

    assert await storage.list_alerts() == records
    assert await ids(limit=2) == ["a1", "a2"]
    assert await ids(after="a2", limit=2) == ["a3", "a4"]
    assert await ids(after="a7") == []
    assert await ids(limit=0) == []
    # No device filter means every alert, those about no device included.
    assert await ids(device_id=None) == ["a1", "a2", "a3", "a4", "a5", "a6", "a7"]
    assert await ids(device_id="dev-1") == ["a1", "a4", "a5", "a7"]
    assert await ids(device_id="dev-1", after="a1", limit=2) == ["a4", "a5"]
    assert await ids(device_id="dev-3") == []
    assert await ids(state=AlertState.OPEN) == ["a1", "a6", "a7"]
    assert await ids(state=AlertState.ACKNOWLEDGED) == ["a3", "a5"]
    assert await ids(state=AlertState.RESOLVED) == ["a2", "a4"]
    assert await ids(state=AlertState.OPEN, after="a1", limit=1) == ["a6"]
    assert await ids(device_id="dev-1", state=AlertState.OPEN) == ["a1", "a7"]
    assert await ids(device_id="dev-2", state=AlertState.RESOLVED) == ["a2"]
    assert await ids(device_id="dev-2", state=AlertState.ACKNOWLEDGED) == []


async def test_list_alerts_follows_updates(storage: Storage) -> None:
    await storage.insert_alert(alert("a1"))
    await storage.insert_alert(alert("a2"))
    await storage.update_alert(
        alert("a1", state=AlertState.RESOLVED, version=2), expected_version=1
    )
    assert [a.alert_id for a in await storage.list_alerts(state=AlertState.OPEN)] == ["a2"]
    assert await storage.list_alerts(state=AlertState.RESOLVED) == [
        alert("a1", state=AlertState.RESOLVED, version=2)
    ]


# --- monitor state ----------------------------------------------------------------------------


async def test_monitor_state_missing_is_none(storage: Storage) -> None:
    assert await storage.get_monitor_state("detector:tamper") is None
    assert await storage.get_monitor_state("") is None


async def test_monitor_state_put_replaces(storage: Storage) -> None:
    await storage.put_monitor_state("cursor", "41")
    await storage.put_monitor_state("detector:masquerade", '{"peers":{"dev-1":"10.0.0.1"}}')
    assert await storage.get_monitor_state("cursor") == "41"
    await storage.put_monitor_state("cursor", "42")
    assert await storage.get_monitor_state("cursor") == "42"
    # Names are independent, compared exactly.
    assert await storage.get_monitor_state("detector:masquerade") == (
        '{"peers":{"dev-1":"10.0.0.1"}}'
    )
    assert await storage.get_monitor_state("Cursor") is None
    assert await storage.get_monitor_state("cursor ") is None


async def test_monitor_state_keeps_any_text(storage: Storage) -> None:
    big = '{"seen":[' + ",".join(str(n) for n in range(50_000)) + "]}"
    for name, state in [("empty", ""), ("unicode", "ünïcode \u2713\n\t"), ("big", big)]:
        await storage.put_monitor_state(name, state)
        assert await storage.get_monitor_state(name) == state


async def test_concurrent_monitor_state_writes_keep_the_last(storage: Storage) -> None:
    await asyncio.gather(*(storage.put_monitor_state("cursor", str(n)) for n in range(20)))
    assert await storage.get_monitor_state("cursor") == "19"  # writes commit in call order


# --- quarantined devices ----------------------------------------------------------------------


async def test_quarantined_device_round_trip(storage: Storage) -> None:
    quarantined = device()
    await storage.insert_device(quarantined)
    assert await storage.get_device("dev-1") == quarantined
    assert await storage.list_devices() == [quarantined]
    # An operator ends the quarantine; a playbook may impose it again.
    released = device(state=DeviceState.ENABLED, version=2, updated_at=200.0)
    await storage.update_device(released, expected_version=1)
    assert await storage.get_device("dev-1") == released
    again = device(version=3, updated_at=300.0)
    await storage.update_device(again, expected_version=2)
    assert await storage.get_device("dev-1") == again
    stored = await storage.get_device("dev-1")
    assert stored is not None
    assert stored.state is DeviceState.QUARANTINED


async def test_quarantined_module_round_trip(storage: Storage) -> None:
    await storage.insert_device(device(state=DeviceState.ENABLED))
    module = device("dev-1/edge", auth_kind=AuthKind.X509_CA, primary_key_sealed=None)
    module = dataclasses.replace(module, secondary_key_sealed=None)
    await storage.insert_device(module)
    assert await storage.get_device("dev-1/edge") == module
    assert await storage.list_modules("dev-1") == [module]


# --- durability -------------------------------------------------------------------------------


async def test_reopen_keeps_monitor_state(backend: Backend, storage: Storage) -> None:
    first = alert("al-01", evidence=(1, 2), actions=("quarantine",), details='{"k":"v"}')
    second = alert("al-02", device_id=None, alert_type="brute-force", created_at=50.0)
    await storage.insert_alert(first)
    await storage.insert_alert(second)
    resolved = dataclasses.replace(first, state=AlertState.RESOLVED, resolved_by="bob", version=2)
    await storage.update_alert(resolved, expected_version=1)
    await storage.put_monitor_state("cursor", "17")
    await storage.put_monitor_state("cursor", "18")
    await storage.insert_device(device())
    await storage.close()

    reopened = await backend.open()
    assert await reopened.get_alert("al-01") == resolved
    assert await reopened.list_alerts() == [resolved, second]
    assert await reopened.find_alert("tamper", "dev-1") == resolved
    assert await reopened.find_alert("brute-force", None) == second
    assert await reopened.get_monitor_state("cursor") == "18"
    assert await reopened.get_device("dev-1") == device()
    # The rules survive too.
    with pytest.raises(PreconditionFailedError):
        await reopened.update_alert(dataclasses.replace(first, version=2), expected_version=1)
    with pytest.raises(ConflictError):
        await reopened.insert_alert(second)


async def test_closed_storage_refuses_monitor_work(storage: Storage) -> None:
    await storage.close()
    with pytest.raises(StorageError):
        await storage.insert_alert(alert())
    with pytest.raises(StorageError):
        await storage.get_alert("al-01")
    with pytest.raises(StorageError):
        await storage.find_alert("tamper", None)
    with pytest.raises(StorageError):
        await storage.update_alert(alert(version=2), expected_version=1)
    with pytest.raises(StorageError):
        await storage.list_alerts()
    with pytest.raises(StorageError):
        await storage.put_monitor_state("cursor", "1")
    with pytest.raises(StorageError):
        await storage.get_monitor_state("cursor")


# --- the SQLite file --------------------------------------------------------------------------


async def open_sqlite(path: Path, clock: FakeClock | None = None) -> SQLiteStorage:
    storage = SQLiteStorage(path, StorageConfig(), clock or FakeClock())
    await storage.open()
    return storage


def schema_objects(path: Path, kind: str) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return dict(
            conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = ? AND sql IS NOT NULL", (kind,)
            )
        )
    finally:
        conn.close()


def query_plan(path: Path, sql: str, params: tuple[object, ...]) -> str:
    conn = sqlite3.connect(path)
    try:
        return " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    finally:
        conn.close()


async def test_monitor_tables_and_indexes(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    await (await open_sqlite(path)).close()
    tables = schema_objects(path, "table")
    assert "alert_id TEXT PRIMARY KEY" in tables["alerts"]
    assert "WITHOUT ROWID" in tables["alerts"]
    assert "name TEXT PRIMARY KEY" in tables["monitor_state"]
    indexes = {
        name: sql
        for name, sql in schema_objects(path, "index").items()
        if name.startswith("alerts_")
    }
    assert indexes.keys() == {"alerts_by_key", "alerts_unresolved", "alerts_by_device"}
    assert "(alert_type, device_id, created_at)" in indexes["alerts_by_key"]
    assert "(alert_type, device_id, created_at)" in indexes["alerts_unresolved"]
    assert "WHERE state <> 'resolved'" in indexes["alerts_unresolved"]
    assert "(device_id)" in indexes["alerts_by_device"]


@pytest.mark.parametrize("device_id", ["dev-1", None], ids=["device", "no-device"])
async def test_find_alert_is_served_by_the_indexes(tmp_path: Path, device_id: str | None) -> None:
    from ironhub.storage.sqlite import _ALERT_FIND

    path = tmp_path / "hub.db"
    await (await open_sqlite(path)).close()
    plan = query_plan(path, _ALERT_FIND, ("tamper", device_id))
    # The open one by the small partial index, the resolved fallback by the key index, both
    # in index order: no scan of the table, no sort.
    assert "alerts_unresolved (alert_type=? AND device_id=?)" in plan
    assert "alerts_by_key (alert_type=? AND device_id=?)" in plan
    assert "SCAN" not in plan
    assert "TEMP B-TREE" not in plan


def damage(path: Path, sql: str) -> None:
    """Write what the hub never would, as a bad disk or a foreign writer would."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(sql)
    finally:
        conn.close()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE alerts SET state = 'closed'",
        "UPDATE alerts SET evidence = '[1.5]'",
        "UPDATE alerts SET evidence = '[\"7\"]'",
        "UPDATE alerts SET evidence = 'not json'",
        "UPDATE alerts SET actions = '[1]'",
        "UPDATE alerts SET actions = '{\"a\":1}'",
    ],
    ids=[
        "state",
        "evidence-float",
        "evidence-text",
        "evidence-json",
        "actions-int",
        "actions-object",
    ],
)
async def test_corrupt_alert_is_reported_not_guessed(tmp_path: Path, sql: str) -> None:
    path = tmp_path / "hub.db"
    storage = await open_sqlite(path)
    try:
        await storage.insert_alert(alert(evidence=(1, 2), actions=("notify",)))
        damage(path, sql)
        with pytest.raises(CorruptDatabaseError, match="al-01"):
            await storage.get_alert("al-01")
        with pytest.raises(CorruptDatabaseError):
            await storage.list_alerts()
        # An alert in a state the hub does not know is not taken for a resolved one and
        # skipped: de-duplication sees the damage.
        with pytest.raises(CorruptDatabaseError):
            await storage.find_alert("tamper", "dev-1")
    finally:
        await storage.close()


@pytest.mark.parametrize("state", ["quarantine", "QUARANTINED", ""])
async def test_unknown_device_state_is_reported_not_guessed(tmp_path: Path, state: str) -> None:
    path = tmp_path / "hub.db"
    storage = await open_sqlite(path)
    try:
        await storage.insert_device(device())
        damage(path, f"UPDATE devices SET state = '{state}'")
        with pytest.raises(CorruptDatabaseError):
            await storage.get_device("dev-1")
    finally:
        await storage.close()


async def test_quarantined_is_stored_as_its_value(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    storage = await open_sqlite(path)
    await storage.insert_device(device())
    await storage.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT state FROM devices").fetchall() == [("quarantined",)]
    finally:
        conn.close()


async def test_monitor_state_records_when_it_was_written(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    clock = FakeClock(wall=1_800_000_000.0)
    storage = await open_sqlite(path, clock)
    await storage.put_monitor_state("cursor", "1")
    clock.advance(30.0)
    await storage.put_monitor_state("cursor", "2")
    await storage.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT name, state, updated_at FROM monitor_state").fetchall() == [
            ("cursor", "2", 1_800_000_030.0)
        ]
    finally:
        conn.close()
