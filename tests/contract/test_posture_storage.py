"""The device-posture part of the storage contract: profiles, advisories and each device's
latest posture reports. Every backend passes these (STYLE.md, "Storage backends must pass the
same contract suite"); the last section guards the SQLite file itself.
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
    NotFoundError,
    PreconditionFailedError,
    StorageError,
)
from ironhub.storage.interfaces import (
    AdvisoryRecord,
    AuthKind,
    DeviceRecord,
    DeviceState,
    PostureRecord,
    ProfileRecord,
    Storage,
)
from ironhub.storage.sqlite import SQLiteStorage

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.asyncio


def profile(name: str = "camera", **overrides: object) -> ProfileRecord:
    """A new profile (version 1) with a small compact JSON document."""
    fields: dict[str, object] = {
        "name": name,
        "document": '{"ports":{"tcp":[443]}}',
        "created_at": 100.0,
        "updated_at": 100.0,
        "version": 1,
    }
    fields.update(overrides)
    return ProfileRecord(**fields)  # type: ignore[arg-type]


def advisory(advisory_id: str = "GHSA-0001", **overrides: object) -> AdvisoryRecord:
    fields: dict[str, object] = {
        "advisory_id": advisory_id,
        "modified": "2024-01-01T00:00:00Z",
        "document": f'{{"id":"{advisory_id}"}}',
        "imported_at": 100.0,
    }
    fields.update(overrides)
    return AdvisoryRecord(**fields)  # type: ignore[arg-type]


def posture(
    device_id: str = "dev-1", kind: str = "inventory", **overrides: object
) -> PostureRecord:
    fields: dict[str, object] = {
        "device_id": device_id,
        "kind": kind,
        "seq": 10,
        "received_at": 100.0,
        "document": '{"packages":[{"name":"openssl","version":"3.0.2"}]}',
    }
    fields.update(overrides)
    return PostureRecord(**fields)  # type: ignore[arg-type]


def device(device_id: str = "dev-1") -> DeviceRecord:
    return DeviceRecord(
        device_id=device_id,
        auth_kind=AuthKind.X509_CA,
        state=DeviceState.ENABLED,
        created_at=100.0,
        updated_at=100.0,
    )


# --- profiles ---------------------------------------------------------------------------------


async def test_profile_round_trip(storage: Storage) -> None:
    record = profile(
        document='{"name":"ünïcode","ports":{"tcp":[22,443]},"software":[]}',
        created_at=1.25,
        updated_at=9.5,
    )
    assert await storage.get_profile("camera") is None
    await storage.put_profile(record, expected_version=None)
    assert await storage.get_profile("camera") == record
    assert await storage.list_profiles() == [record]
    # Names are compared exactly.
    assert await storage.get_profile("Camera") is None
    assert await storage.get_profile("camera ") is None


async def test_create_existing_profile_conflicts(storage: Storage) -> None:
    await storage.put_profile(profile(), expected_version=None)
    with pytest.raises(ConflictError):
        await storage.put_profile(profile(document="{}", created_at=5.0), expected_version=None)
    assert await storage.get_profile("camera") == profile()
    assert await storage.list_profiles() == [profile()]


async def test_replace_profile_with_expected_version(storage: Storage) -> None:
    await storage.put_profile(profile(), expected_version=None)
    second = profile(document='{"ports":{"tcp":[443,8883]}}', updated_at=200.0, version=2)
    await storage.put_profile(second, expected_version=1)
    assert await storage.get_profile("camera") == second
    third = dataclasses.replace(second, document="{}", updated_at=300.0, version=3)
    await storage.put_profile(third, expected_version=2)
    assert await storage.get_profile("camera") == third
    assert await storage.list_profiles() == [third]


async def test_replace_profile_with_stale_version_fails_its_precondition(
    storage: Storage,
) -> None:
    await storage.put_profile(profile(), expected_version=None)
    await storage.put_profile(profile(version=2, updated_at=200.0), expected_version=1)
    with pytest.raises(PreconditionFailedError):
        await storage.put_profile(profile(version=2, document="{}"), expected_version=1)
    with pytest.raises(PreconditionFailedError):
        await storage.put_profile(profile(version=4, document="{}"), expected_version=3)  # ahead
    assert await storage.get_profile("camera") == profile(version=2, updated_at=200.0)


async def test_replace_unknown_profile_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        await storage.put_profile(profile(version=2), expected_version=1)
    assert await storage.get_profile("camera") is None
    assert await storage.list_profiles() == []


async def test_concurrent_profile_replacements_of_one_version_let_exactly_one_through(
    storage: Storage,
) -> None:
    await storage.put_profile(profile(), expected_version=None)
    results = await asyncio.gather(
        *(
            storage.put_profile(profile(version=2, document=f'{{"n":{n}}}'), expected_version=1)
            for n in range(10)
        ),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(r is None or isinstance(r, PreconditionFailedError) for r in results)
    stored = await storage.get_profile("camera")
    assert stored is not None
    assert stored.version == 2
    assert stored.document == f'{{"n":{results.index(None)}}}'


async def test_concurrent_profile_creations_let_exactly_one_through(storage: Storage) -> None:
    results = await asyncio.gather(
        *(
            storage.put_profile(profile(document=f'{{"n":{n}}}'), expected_version=None)
            for n in range(10)
        ),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(r is None or isinstance(r, ConflictError) for r in results)
    assert await storage.get_profile("camera") == profile(document=f'{{"n":{results.index(None)}}}')


async def test_list_profiles_is_by_name(storage: Storage) -> None:
    names = ["thermostat", "camera-2", "Camera", "camera", "gateway", "camera/edge", "a"]
    for name in names:
        await storage.put_profile(profile(name), expected_version=None)
    assert [p.name for p in await storage.list_profiles()] == sorted(names)
    assert await storage.list_profiles() == [profile(name) for name in sorted(names)]


async def test_delete_profile_returns_whether_it_existed(storage: Storage) -> None:
    await storage.put_profile(profile("camera"), expected_version=None)
    await storage.put_profile(profile("camera-2"), expected_version=None)
    assert await storage.delete_profile("camera") is True
    assert await storage.get_profile("camera") is None
    assert await storage.delete_profile("camera") is False
    assert await storage.delete_profile("nobody") is False
    assert await storage.delete_profile("Camera-2") is False
    # Only the one named: a name sharing a prefix stays.
    assert await storage.list_profiles() == [profile("camera-2")]
    # A deleted profile cannot be replaced; it can be created again, from version 1.
    with pytest.raises(NotFoundError):
        await storage.put_profile(profile(version=2), expected_version=1)
    await storage.put_profile(profile(document="{}"), expected_version=None)
    assert await storage.get_profile("camera") == profile(document="{}")


# --- advisories -------------------------------------------------------------------------------


async def test_advisories_start_empty(storage: Storage) -> None:
    assert await storage.list_advisories() == []
    assert await storage.count_advisories() == 0


async def test_put_advisories_inserts_and_replaces(storage: Storage) -> None:
    first, second = advisory("GHSA-0001"), advisory("GHSA-0002")
    await storage.put_advisories([second, first])
    assert await storage.list_advisories() == [first, second]
    assert await storage.count_advisories() == 2
    # Every field of the stored advisory is replaced; the other one is untouched.
    newer = advisory(
        "GHSA-0001",
        modified="2024-06-01T12:00:00Z",
        document='{"id":"GHSA-0001","withdrawn":null,"summary":"ünïcode"}',
        imported_at=200.0,
    )
    await storage.put_advisories([newer])
    assert await storage.list_advisories() == [newer, second]
    assert await storage.count_advisories() == 2


async def test_put_advisories_deletes_in_the_same_call(storage: Storage) -> None:
    await storage.put_advisories([advisory("A-1"), advisory("A-2"), advisory("A-3")])
    added = advisory("A-4")
    replaced = advisory("A-3", modified="2025-01-01T00:00:00Z", imported_at=300.0)
    # Deleting an id that is not stored is no error.
    await storage.put_advisories([added, replaced], delete=["A-2", "A-9"])
    assert await storage.list_advisories() == [advisory("A-1"), replaced, added]
    assert await storage.count_advisories() == 3
    # Only deleting.
    await storage.put_advisories([], delete=["A-1", "A-4"])
    assert await storage.list_advisories() == [replaced]
    assert await storage.count_advisories() == 1
    # Nothing at all.
    await storage.put_advisories([])
    assert await storage.list_advisories() == [replaced]


async def test_put_advisories_is_all_or_nothing(storage: Storage) -> None:
    await storage.put_advisories([advisory("A-1"), advisory("A-2")])
    # A record no backend can store (document None, which the type forbids) fails the call:
    # neither its valid records nor its deletions are kept.
    broken = advisory("A-5", document=None)
    with pytest.raises(StorageError):
        await storage.put_advisories(
            [advisory("A-1", imported_at=500.0), advisory("A-3"), broken], delete=["A-2"]
        )
    assert await storage.list_advisories() == [advisory("A-1"), advisory("A-2")]
    assert await storage.count_advisories() == 2


async def test_list_advisories_pages(storage: Storage) -> None:
    ids = ["OSV-2024-7", "GHSA-b", "CVE-2024-0001", "GHSA-a", "PYSEC-1", "GHSA-a-1", "GHSA-aa"]
    await storage.put_advisories([advisory(i) for i in ids])
    ordered = sorted(ids)

    async def page(**kwargs: object) -> list[str]:
        found = await storage.list_advisories(**kwargs)  # type: ignore[arg-type]
        return [a.advisory_id for a in found]

    assert await page() == ordered
    assert await page(limit=3) == ordered[:3]
    assert await page(after=ordered[2], limit=3) == ordered[3:6]
    assert await page(after=ordered[5], limit=3) == ordered[6:]
    assert await page(after=ordered[-1]) == []
    assert await page(after="GHSA-a") == ["GHSA-a-1", "GHSA-aa", "GHSA-b", "OSV-2024-7", "PYSEC-1"]
    assert await page(after="D") == ordered[1:]  # ``after`` need not be a stored id
    assert await page(limit=0) == []
    assert await storage.count_advisories() == len(ids)

    # Walking the pages visits every advisory once.
    seen: list[str] = []
    after = ""
    while batch := await page(after=after, limit=2):
        seen.extend(batch)
        after = batch[-1]
    assert seen == ordered


# --- posture ----------------------------------------------------------------------------------


async def test_posture_round_trip(storage: Storage) -> None:
    record = posture(seq=2**62, received_at=1.25, document='{"name":"ünïcode"}')
    assert await storage.get_posture("dev-1", "inventory") is None
    await storage.put_posture(record)
    assert await storage.get_posture("dev-1", "inventory") == record
    # Device and kind are the key, compared exactly.
    assert await storage.get_posture("dev-1", "ports") is None
    assert await storage.get_posture("dev-10", "inventory") is None
    assert await storage.get_posture("dev-1/mod", "inventory") is None
    assert await storage.get_posture("dev-1", "Inventory") is None


async def test_newer_posture_replaces_the_stored_one(storage: Storage) -> None:
    await storage.put_posture(posture(seq=5))
    newer = posture(seq=7, received_at=200.0, document='{"packages":[]}')
    await storage.put_posture(newer)
    assert await storage.get_posture("dev-1", "inventory") == newer
    assert await storage.list_posture("inventory") == [newer]


async def test_older_posture_does_not_replace_a_newer_one(storage: Storage) -> None:
    # The monitor may process a message again after a crash: the older report is ignored.
    newer = posture(seq=7, received_at=200.0)
    await storage.put_posture(newer)
    await storage.put_posture(posture(seq=6, received_at=300.0, document="{}"))
    await storage.put_posture(posture(seq=0, received_at=400.0, document="{}"))
    assert await storage.get_posture("dev-1", "inventory") == newer
    assert await storage.list_posture("inventory") == [newer]


async def test_posture_of_equal_seq_replaces(storage: Storage) -> None:
    await storage.put_posture(posture(seq=7))
    again = posture(seq=7, received_at=150.0, document='{"packages":[]}')
    await storage.put_posture(again)
    assert await storage.get_posture("dev-1", "inventory") == again


async def test_posture_kinds_are_independent(storage: Storage) -> None:
    inventory = posture(kind="inventory", seq=9)
    ports = posture(kind="ports", seq=1, document='{"tcp":[22]}')
    antimalware = posture(kind="antimalware", seq=5, document='{"enabled":true}')
    for record in (inventory, ports, antimalware):
        await storage.put_posture(record)
    # A higher seq of one kind does not hold back another kind.
    assert await storage.get_posture("dev-1", "inventory") == inventory
    assert await storage.get_posture("dev-1", "ports") == ports
    assert await storage.get_posture("dev-1", "antimalware") == antimalware
    older_inventory = posture(kind="inventory", seq=2, document="{}")
    await storage.put_posture(older_inventory)
    newer_ports = posture(kind="ports", seq=2, document='{"tcp":[]}')
    await storage.put_posture(newer_ports)
    assert await storage.get_posture("dev-1", "inventory") == inventory
    assert await storage.get_posture("dev-1", "ports") == newer_ports


async def test_concurrent_posture_writes_keep_the_highest_seq(storage: Storage) -> None:
    seqs = [4, 9, 1, 7, 9, 3, 8]
    await asyncio.gather(
        *(storage.put_posture(posture(seq=s, document=f'{{"n":{n}}}')) for n, s in enumerate(seqs))
    )
    stored = await storage.get_posture("dev-1", "inventory")
    assert stored is not None
    # Of the two reports of seq 9 the later call wins (writes commit in call order).
    assert (stored.seq, stored.document) == (9, '{"n":4}')


async def test_list_posture_by_kind_pages(storage: Storage) -> None:
    devices = ["dev-2", "dev-10", "dev-1/mod", "dev-1", "dev-1-b", "Dev-3", "edge"]
    for n, device_id in enumerate(devices):
        await storage.put_posture(posture(device_id, "inventory", seq=n))
        if n % 2 == 0:
            await storage.put_posture(posture(device_id, "ports", seq=n, document="{}"))
    ordered = sorted(devices)

    async def page(kind: str, **kwargs: object) -> list[str]:
        found = await storage.list_posture(kind, **kwargs)  # type: ignore[arg-type]
        assert all(record.kind == kind for record in found)
        return [record.device_id for record in found]

    assert await page("inventory") == ordered
    assert await storage.list_posture("inventory") == [
        posture(d, "inventory", seq=devices.index(d)) for d in ordered
    ]
    assert await page("ports") == sorted(devices[0::2])
    assert await page("antimalware") == []
    assert await page("inventory", limit=3) == ordered[:3]
    assert await page("inventory", after=ordered[2], limit=3) == ordered[3:6]
    assert await page("inventory", after=ordered[5], limit=3) == ordered[6:]
    assert await page("inventory", after=ordered[-1]) == []
    # By code point: upper case first, and '-' < '/' < '0'.
    assert ordered == ["Dev-3", "dev-1", "dev-1-b", "dev-1/mod", "dev-10", "dev-2", "edge"]
    assert await page("inventory", after="dev-1") == [
        "dev-1-b",
        "dev-1/mod",
        "dev-10",
        "dev-2",
        "edge",
    ]
    assert await page("ports", after="dev-1", limit=2) == ["dev-1-b", "dev-1/mod"]
    assert await page("ports", after="dev-1/mod") == ["dev-2", "edge"]
    assert await page("inventory", limit=0) == []


async def test_deleting_a_device_deletes_its_posture_and_its_modules(storage: Storage) -> None:
    # dev-1 owns dev-1/edge; dev-10 and dev-1-b merely share its prefix.
    identities = ["dev-1", "dev-1/edge", "dev-10", "dev-1-b", "dev-10/edge"]
    for identity in identities:
        await storage.insert_device(device(identity))
        for kind in ("inventory", "ports", "antimalware"):
            await storage.put_posture(posture(identity, kind))
    assert await storage.delete_device("dev-1") is True
    for kind in ("inventory", "ports", "antimalware"):
        assert await storage.get_posture("dev-1", kind) is None
        assert await storage.get_posture("dev-1/edge", kind) is None
        for other in ("dev-10", "dev-1-b", "dev-10/edge"):
            assert await storage.get_posture(other, kind) == posture(other, kind)
        assert [r.device_id for r in await storage.list_posture(kind)] == [
            "dev-1-b",
            "dev-10",
            "dev-10/edge",
        ]
    assert await storage.get_device("dev-10") == device("dev-10")


async def test_deleting_a_module_deletes_only_its_posture(storage: Storage) -> None:
    for identity in ("dev-1", "dev-1/edge", "dev-1/edge-2"):
        await storage.insert_device(device(identity))
        await storage.put_posture(posture(identity))
    assert await storage.delete_device("dev-1/edge") is True
    assert [r.device_id for r in await storage.list_posture("inventory")] == [
        "dev-1",
        "dev-1/edge-2",
    ]


async def test_deleting_a_device_without_posture_is_fine(storage: Storage) -> None:
    await storage.insert_device(device("dev-1"))
    await storage.put_posture(posture("dev-2"))
    assert await storage.delete_device("dev-1") is True
    assert await storage.delete_device("dev-1") is False
    assert await storage.list_posture("inventory") == [posture("dev-2")]


# --- durability -------------------------------------------------------------------------------


async def test_reopen_keeps_posture(backend: Backend, storage: Storage) -> None:
    await storage.put_profile(profile(), expected_version=None)
    replaced = profile(document="{}", updated_at=200.0, version=2)
    await storage.put_profile(replaced, expected_version=1)
    await storage.put_profile(profile("gateway"), expected_version=None)
    await storage.delete_profile("gateway")
    await storage.put_advisories([advisory("A-1"), advisory("A-2")])
    await storage.put_advisories([], delete=["A-1"])
    newer = posture(seq=8)
    await storage.put_posture(newer)
    await storage.put_posture(posture(seq=3))
    await storage.close()

    reopened = await backend.open()
    assert await reopened.list_profiles() == [replaced]
    assert await reopened.list_advisories() == [advisory("A-2")]
    assert await reopened.count_advisories() == 1
    assert await reopened.get_posture("dev-1", "inventory") == newer
    # The rules survive too.
    with pytest.raises(PreconditionFailedError):
        await reopened.put_profile(profile(version=2), expected_version=1)
    with pytest.raises(ConflictError):
        await reopened.put_profile(profile(), expected_version=None)
    await reopened.put_posture(posture(seq=7, document="{}"))
    assert await reopened.get_posture("dev-1", "inventory") == newer


async def test_closed_storage_refuses_posture_work(storage: Storage) -> None:
    await storage.close()
    with pytest.raises(StorageError):
        await storage.put_profile(profile(), expected_version=None)
    with pytest.raises(StorageError):
        await storage.get_profile("camera")
    with pytest.raises(StorageError):
        await storage.list_profiles()
    with pytest.raises(StorageError):
        await storage.delete_profile("camera")
    with pytest.raises(StorageError):
        await storage.put_advisories([advisory()])
    with pytest.raises(StorageError):
        await storage.list_advisories()
    with pytest.raises(StorageError):
        await storage.count_advisories()
    with pytest.raises(StorageError):
        await storage.put_posture(posture())
    with pytest.raises(StorageError):
        await storage.get_posture("dev-1", "inventory")
    with pytest.raises(StorageError):
        await storage.list_posture("inventory")


# --- the SQLite file --------------------------------------------------------------------------


async def open_sqlite(path: Path) -> SQLiteStorage:
    storage = SQLiteStorage(path, StorageConfig(), FakeClock())
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


async def test_posture_tables_and_indexes(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    await (await open_sqlite(path)).close()
    tables = schema_objects(path, "table")
    assert "name TEXT PRIMARY KEY" in tables["profiles"]
    assert "advisory_id TEXT PRIMARY KEY" in tables["advisories"]
    assert "PRIMARY KEY (device_id, kind)" in tables["device_posture"]
    for name in ("profiles", "advisories", "device_posture"):
        assert "WITHOUT ROWID" in tables[name]
    indexes = {
        name: sql
        for name, sql in schema_objects(path, "index").items()
        if name.startswith("device_posture")
    }
    assert indexes == {
        "device_posture_by_kind": (
            "CREATE INDEX device_posture_by_kind ON device_posture (kind, device_id)"
        )
    }


async def test_list_posture_is_served_by_the_kind_index(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    await (await open_sqlite(path)).close()
    conn = sqlite3.connect(path)
    try:
        plan = " | ".join(
            row[3]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT device_id, kind, seq, received_at, document"
                " FROM device_posture WHERE kind = ? AND device_id > ? ORDER BY device_id"
                " LIMIT ?",
                ("inventory", "", 10),
            )
        )
    finally:
        conn.close()
    assert "device_posture_by_kind (kind=? AND device_id>?)" in plan
    assert "TEMP B-TREE" not in plan


async def test_posture_is_stored_as_given(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    storage = await open_sqlite(path)
    await storage.put_posture(posture(seq=3, received_at=1_800_000_000.5, document='{"a":1}'))
    await storage.put_posture(posture(seq=2, document="{}"))
    await storage.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT * FROM device_posture").fetchall() == [
            ("dev-1", "inventory", 3, 1_800_000_000.5, '{"a":1}')
        ]
    finally:
        conn.close()
