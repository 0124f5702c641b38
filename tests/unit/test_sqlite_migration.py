"""SQLite schema migration: a database written by the previous release (schema version 1) is
upgraded in place at open, in one transaction, and keeps everything it held."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from typing import TYPE_CHECKING

import msgspec
import pytest

from ironhub.clock import FakeClock
from ironhub.config import StorageConfig
from ironhub.errors import CorruptDatabaseError, StorageError
from ironhub.storage.interfaces import (
    AuthKind,
    CloudMessage,
    DeviceRecord,
    DeviceState,
    LogEntry,
    SessionRecord,
    StoredMessage,
    Stream,
    TokenKind,
    TwinRecord,
)
from ironhub.storage.sqlite import APPLICATION_ID, SCHEMA_VERSION, SQLiteStorage, _migrate

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.asyncio

#: The schema exactly as the previous release (schema version 1) created it, constants
#: substituted. Copied, not imported: it must not follow later edits of ``sqlite.py``.
SCHEMA_V1 = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE devices (
    device_id TEXT PRIMARY KEY,
    auth_kind TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    version INTEGER NOT NULL,
    primary_key_sealed BLOB,
    secondary_key_sealed BLOB,
    primary_thumbprint TEXT,
    secondary_thumbprint TEXT,
    certificates_pem TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE cas (
    fingerprint TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    pem TEXT NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE tokens (
    token_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked INTEGER NOT NULL DEFAULT 0
);
-- The hot table: rowid-keyed, no secondary index (see the module docstring).
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    device_id TEXT,
    enqueued_at REAL NOT NULL,
    properties BLOB,
    payload BLOB NOT NULL,
    packet_id INTEGER,
    digest BLOB
);
INSERT INTO meta (key, value) VALUES
    ('application', 'ironhub'),
    ('schema_version', '1'),
    ('tokens_created', '0');
PRAGMA application_id = 1230129218;
PRAGMA user_version = 1;
"""

DEVICE = DeviceRecord(
    device_id="old-dev",
    auth_kind=AuthKind.SAS,
    state=DeviceState.ENABLED,
    created_at=10.0,
    updated_at=20.0,
    version=3,
    primary_key_sealed=b"\x01sealed-primary",
    secondary_key_sealed=b"\x01sealed-secondary",
)
PROPERTIES = (("$.ct", "application/json"), ("k", "v"))


def write_v1_rows(conn: sqlite3.Connection) -> None:
    """What a hub of the previous release would have stored: a device, a token, messages."""
    conn.execute(
        "INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            DEVICE.device_id,
            "sas",
            "enabled",
            10.0,
            20.0,
            3,
            DEVICE.primary_key_sealed,
            DEVICE.secondary_key_sealed,
            None,
            None,
            "[]",
        ),
    )
    conn.execute("INSERT INTO tokens VALUES ('t1', 'ci', ?, 'admin', 1.0, NULL, 0)", (b"h" * 32,))
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'tokens_created'")
    conn.executemany(
        "INSERT INTO messages VALUES (?, 'telemetry', 'old-dev', ?, ?, ?, NULL, NULL)",
        [
            (seq, 100.0 + seq, msgspec.msgpack.encode(PROPERTIES), f"m{seq}".encode())
            for seq in range(1, 4)
        ],
    )


def make_v1_database(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(SCHEMA_V1)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN")
        write_v1_rows(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()
    path.chmod(0o600)


def header(path: Path) -> tuple[int, int, str]:
    conn = sqlite3.connect(path)
    try:
        return (
            conn.execute("PRAGMA user_version").fetchone()[0],
            conn.execute("PRAGMA application_id").fetchone()[0],
            conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0],
        )
    finally:
        conn.close()


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


async def open_storage(path: Path) -> SQLiteStorage:
    storage = SQLiteStorage(path, StorageConfig(), FakeClock())
    await storage.open()
    return storage


async def test_version_1_database_is_migrated_and_keeps_its_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert SCHEMA_VERSION == 4
    path = tmp_path / "hub.db"
    make_v1_database(path)
    assert header(path) == (1, APPLICATION_ID, "1")

    with caplog.at_level(logging.INFO, logger="ironhub.storage.sqlite"):
        storage = await open_storage(path)
    assert "migrated database schema" in caplog.text
    assert "from_version=1 to_version=4" in caplog.text

    # The old data survived.
    assert await storage.get_device("old-dev") == DEVICE
    assert await storage.list_devices() == [DEVICE]
    assert await storage.count_tokens() == 1
    assert await storage.last_seq() == 3
    assert await storage.query_messages(device_id="old-dev") == [
        StoredMessage(seq, Stream.TELEMETRY, "old-dev", 100.0 + seq, f"m{seq}".encode(), PROPERTIES)
        for seq in range(1, 4)
    ]

    # The new tables work, and so does the log.
    # The existing device got its empty twin with the migration.
    migrated = await storage.get_twin("old-dev")
    assert migrated == TwinRecord("old-dev", "{}", "{}", 1, "{}", 1, 1, DEVICE.updated_at)
    twin = TwinRecord("old-dev", "{}", '{"a":1}', 2, "{}", 1, 2, 30.0)
    await storage.put_twin(twin, expected_version=1)
    assert await storage.get_twin("old-dev") == twin
    session = SessionRecord("old-dev", (("devices/old-dev/messages/devicebound/#", 1),), 0, 30.0)
    await storage.put_session(session)
    assert await storage.get_session("old-dev") == session
    message = CloudMessage(0, "old-dev", None, 30.0, 90.0, b"c2d")
    seq = await storage.enqueue_cloud_message(message, max_pending=5)
    assert [m.seq for m in await storage.list_cloud_messages("old-dev")] == [seq]
    assert await storage.append(LogEntry(Stream.FEEDBACK, "old-dev", 31.0, b"fb")) == 4
    module = DeviceRecord("old-dev/mod", AuthKind.X509_CA, DeviceState.ENABLED, 1.0, 1.0)
    await storage.insert_device(module)
    assert await storage.list_modules("old-dev") == [module]
    assert await storage.delete_device("old-dev") is True
    assert await storage.get_twin("old-dev") is None
    assert await storage.list_cloud_messages("old-dev") == []
    await storage.close()

    assert header(path) == (4, APPLICATION_ID, "4")
    assert {"twins", "sessions", "cloud_messages", "operators"} <= tables(path)


async def test_version_1_tokens_become_role_lists_that_expire(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    make_v1_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(
            "INSERT INTO tokens VALUES ('t2', 'dash', ?, 'reader', 5.0, 99.0, 0)", (b"r" * 32,)
        )
    finally:
        conn.close()
    storage = await open_storage(path)
    try:
        admin, reader = await storage.list_tokens()
        # The admin token stored without expiry gets the 90-day cap from its creation.
        assert (admin.roles, admin.expires_at, admin.kind) == (
            ("admin",),
            1.0 + 90 * 86400,
            TokenKind.AUTOMATION,
        )
        # The API's old "reader" level is the viewer role now.
        assert (reader.roles, reader.expires_at, reader.operator) == (("viewer",), 99.0, None)
        assert await storage.list_operators() == []
    finally:
        await storage.close()


async def test_migration_happens_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "hub.db"
    make_v1_database(path)
    storage = await open_storage(path)
    await storage.close()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ironhub.storage.sqlite"):
        storage = await open_storage(path)
    assert "migrated" not in caplog.text
    assert await storage.get_device("old-dev") == DEVICE
    await storage.close()


async def test_version_1_database_left_by_a_crash_is_migrated(tmp_path: Path) -> None:
    # The previous release was killed with committed rows still only in the WAL.
    source = tmp_path / "live"
    source.mkdir()
    path = source / "hub.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(SCHEMA_V1)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("BEGIN")
    write_v1_rows(conn)
    conn.execute("COMMIT")
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("hub.db", "hub.db-wal"):
        shutil.copyfile(source / name, copy / name)
        (copy / name).chmod(0o600)
    conn.close()
    assert (copy / "hub.db-wal").stat().st_size > 0

    storage = await open_storage(copy / "hub.db")
    assert await storage.get_device("old-dev") == DEVICE
    assert await storage.last_seq() == 3
    await storage.close()
    assert header(copy / "hub.db")[0] == 4


async def test_failed_migration_leaves_version_1_untouched(tmp_path: Path) -> None:
    # A table the migration wants to create already exists (a foreign addition): the
    # migration fails as a whole, and the file stays the previous release's database.
    path = tmp_path / "hub.db"
    make_v1_database(path)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE cloud_messages (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError):
        await open_storage(path)
    assert header(path) == (1, APPLICATION_ID, "1")
    assert "twins" not in tables(path)
    assert "sessions" not in tables(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT device_id FROM devices").fetchall() == [("old-dev",)]
    conn.close()


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE messages",
        "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
    ],
    ids=["missing-table", "meta-mismatch"],
)
async def test_damaged_version_1_database_is_refused_not_migrated(tmp_path: Path, sql: str) -> None:
    path = tmp_path / "hub.db"
    make_v1_database(path)
    conn = sqlite3.connect(path)
    conn.execute(sql)
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabaseError):
        await open_storage(path)
    assert header(path)[0] == 1


async def test_version_2_database_missing_a_new_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    storage = await open_storage(path)
    await storage.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE sessions")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabaseError, match="sessions"):
        await open_storage(path)


async def test_migration_notices_a_concurrent_migration(tmp_path: Path) -> None:
    # Another process migrated between our check and our transaction: nothing is repeated.
    path = tmp_path / "hub.db"
    make_v1_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        _migrate(conn, path, 1)
        assert header(path) == (4, APPLICATION_ID, "4")
        _migrate(conn, path, 1)  # would fail with "table twins already exists" if repeated
        assert not conn.in_transaction
    finally:
        conn.close()
    assert header(path) == (4, APPLICATION_ID, "4")


async def test_migration_refuses_a_version_that_changed_under_it(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    make_v1_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        with pytest.raises(CorruptDatabaseError, match="changed from 0 to 1"):
            _migrate(conn, path, 0)
        assert not conn.in_transaction
    finally:
        conn.close()
    assert header(path) == (1, APPLICATION_ID, "1")
