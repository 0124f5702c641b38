"""SQLite schema migration: a database written by an earlier release (schema version 1, or 4
before provisioning) is upgraded in place at open, in one transaction, and keeps everything it
held; a database of a newer release is refused."""

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
    Attestation,
    AuthKind,
    ClaimOutcome,
    ClaimTokenRecord,
    CloudMessage,
    DeviceRecord,
    DeviceState,
    EnrollmentRecord,
    IssuedCertificateRecord,
    LogEntry,
    OperatorRecord,
    RegistrationRecord,
    SessionRecord,
    StoredMessage,
    Stream,
    TokenKind,
    TokenRecord,
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
    assert SCHEMA_VERSION == 5
    path = tmp_path / "hub.db"
    make_v1_database(path)
    assert header(path) == (1, APPLICATION_ID, "1")

    with caplog.at_level(logging.INFO, logger="ironhub.storage.sqlite"):
        storage = await open_storage(path)
    assert "migrated database schema" in caplog.text
    assert "from_version=1 to_version=5" in caplog.text

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

    assert header(path) == (5, APPLICATION_ID, "5")
    assert {"twins", "sessions", "cloud_messages", "operators", "enrollments"} <= tables(path)


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
    assert header(copy / "hub.db")[0] == 5


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
        assert header(path) == (5, APPLICATION_ID, "5")
        _migrate(conn, path, 1)  # would fail with "table twins already exists" if repeated
        assert not conn.in_transaction
    finally:
        conn.close()
    assert header(path) == (5, APPLICATION_ID, "5")


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


# --- version 4 (before provisioning) -> 5 ------------------------------------------------------

#: The schema exactly as the release of schema version 4 created a fresh database (read back
#: from ``sqlite_master``; ``sqlite_sequence`` is SQLite's own). Copied, not imported.
SCHEMA_V4 = """
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
    roles TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked INTEGER NOT NULL DEFAULT 0
, kind TEXT NOT NULL DEFAULT 'automation', operator TEXT, last_used_at REAL, must_rotate INTEGER NOT NULL DEFAULT 0);
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
CREATE TABLE twins (
    identity TEXT PRIMARY KEY,
    tags TEXT NOT NULL,
    desired TEXT NOT NULL,
    desired_version INTEGER NOT NULL,
    reported TEXT NOT NULL,
    reported_version INTEGER NOT NULL,
    version INTEGER NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE sessions (
    client_id TEXT PRIMARY KEY,
    subscriptions TEXT NOT NULL,
    desired_version_sent INTEGER NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE cloud_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    identity TEXT NOT NULL,
    input_name TEXT,
    enqueued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    properties BLOB,
    payload BLOB NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX cloud_messages_by_identity ON cloud_messages (identity, seq);
CREATE INDEX cloud_messages_by_expiry ON cloud_messages (expires_at);
CREATE TABLE audit_records (
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE audit_checkpoints (
    tree_size INTEGER PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE operators (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    password_changed_at REAL NOT NULL,
    one_time INTEGER NOT NULL,
    password_history TEXT NOT NULL,
    totp_secret_sealed BLOB,
    totp_pending_sealed BLOB,
    totp_last_step INTEGER,
    roles TEXT NOT NULL,
    disabled INTEGER NOT NULL,
    allow_list TEXT NOT NULL,
    known_networks TEXT NOT NULL,
    last_login_at REAL,
    created_at REAL NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES
    ('application', 'ironhub'),
    ('schema_version', '4'),
    ('tokens_created', '0');
PRAGMA application_id = 1230129218;
PRAGMA user_version = 4;
"""

V4_DEVICE = DeviceRecord(
    device_id="thumb-dev",
    auth_kind=AuthKind.X509_THUMBPRINT,
    state=DeviceState.DISABLED,
    created_at=10.0,
    updated_at=20.0,
    version=2,
    primary_thumbprint="AB" * 32,
    certificates_pem=("-----BEGIN CERTIFICATE-----\nQUFB\n-----END CERTIFICATE-----\n",),
)
V4_TOKEN = TokenRecord(
    token_id="t1",
    name="alice-session",
    token_hash=b"s" * 32,
    roles=("admin", "viewer"),
    created_at=1.0,
    expires_at=99.0,
    kind=TokenKind.SESSION,
    operator="alice",
    last_used_at=5.0,
    must_rotate=True,
)
V4_OPERATOR = OperatorRecord(
    name="alice",
    password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    password_changed_at=2.0,
    one_time=False,
    roles=("admin",),
    created_at=1.0,
    password_history=("$argon2id$old",),
    totp_secret_sealed=b"\x01totp",
    totp_last_step=12345,
    allow_list=("10.0.0.0/8",),
    known_networks=("10.1.0.0/16",),
    last_login_at=3.0,
    version=4,
)
V4_TWIN = TwinRecord("thumb-dev", '{"floor":2}', '{"rate":5}', 3, '{"fw":"1.0"}', 2, 6, 30.0)
V4_SESSION = SessionRecord("thumb-dev", (("devices/thumb-dev/messages/devicebound/#", 1),), 3, 9.0)
V4_CLOUD = CloudMessage(1, "thumb-dev", None, 40.0, 4000.0, b"c2d", (("$.mid", "m1"),), 1)
V4_AUDIT = [(0, b"\x00" * 32, b'{"seq":0}'), (1, b"\x01" * 32, b'{"seq":1}')]


def make_v4_database(path: Path) -> None:
    """A database as the release of schema version 4 left it, holding one of everything."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(SCHEMA_V4)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                "thumb-dev",
                "x509-thumbprint",
                "disabled",
                10.0,
                20.0,
                2,
                None,
                None,
                "AB" * 32,
                None,
                msgspec.json.encode(V4_DEVICE.certificates_pem).decode(),
            ),
        )
        conn.execute(
            "INSERT INTO tokens VALUES ('t1', 'alice-session', ?, 'admin,viewer', 1.0, 99.0, 0,"
            " 'session', 'alice', 5.0, 1)",
            (b"s" * 32,),
        )
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'tokens_created'")
        conn.execute(
            "INSERT INTO operators VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                "alice",
                V4_OPERATOR.password_hash,
                2.0,
                0,
                '["$argon2id$old"]',
                b"\x01totp",
                None,
                12345,
                "admin",
                0,
                '["10.0.0.0/8"]',
                '["10.1.0.0/16"]',
                3.0,
                1.0,
                4,
            ),
        )
        conn.execute(
            "INSERT INTO twins VALUES ('thumb-dev', '{\"floor\":2}', '{\"rate\":5}', 3,"
            ' \'{"fw":"1.0"}\', 2, 6, 30.0)'
        )
        conn.execute(
            "INSERT INTO sessions VALUES ('thumb-dev', ?, 3, 9.0)",
            ('[["devices/thumb-dev/messages/devicebound/#",1]]',),
        )
        conn.execute(
            "INSERT INTO cloud_messages VALUES (1, 'thumb-dev', NULL, 40.0, 4000.0, ?, ?, 1)",
            (msgspec.msgpack.encode(V4_CLOUD.properties), b"c2d"),
        )
        conn.executemany("INSERT INTO audit_records VALUES (?, ?, ?)", V4_AUDIT)
        conn.execute("INSERT INTO audit_checkpoints VALUES (2, '{\"tree_size\":2}')")
        conn.executemany(
            "INSERT INTO messages VALUES (?, 'security', 'thumb-dev', ?, NULL, ?, NULL, NULL)",
            [(seq, 100.0 + seq, f"m{seq}".encode()) for seq in range(1, 4)],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    path.chmod(0o600)


def schema_sql(path: Path) -> dict[str, str]:
    """Every table and index definition, by name."""
    conn = sqlite3.connect(path)
    try:
        return dict(
            conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'index')"
                " AND sql IS NOT NULL"
            )
        )
    finally:
        conn.close()


async def test_version_4_database_is_migrated_and_keeps_its_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "hub.db"
    make_v4_database(path)
    assert header(path) == (4, APPLICATION_ID, "4")
    assert "enrollments" not in tables(path)

    with caplog.at_level(logging.INFO, logger="ironhub.storage.sqlite"):
        storage = await open_storage(path)
    assert "from_version=4 to_version=5" in caplog.text
    try:
        # Everything version 4 held is intact.
        assert await storage.get_device("thumb-dev") == V4_DEVICE
        assert await storage.list_tokens() == [V4_TOKEN]
        assert await storage.count_tokens() == 1
        assert await storage.list_operators() == [V4_OPERATOR]
        assert await storage.get_twin("thumb-dev") == V4_TWIN
        assert await storage.get_session("thumb-dev") == V4_SESSION
        assert await storage.list_cloud_messages("thumb-dev") == [V4_CLOUD]
        assert await storage.read_audit() == V4_AUDIT
        assert await storage.audit_checkpoints() == [(2, '{"tree_size":2}')]
        assert [m.payload for m in await storage.query_messages()] == [b"m1", b"m2", b"m3"]
        assert await storage.last_seq() == 3

        # The provisioning tables start empty and work.
        assert await storage.list_enrollments(group=True) == []
        assert await storage.list_registrations() == []
        assert await storage.list_claim_tokens() == []
        assert await storage.list_certificates() == []
        assert await storage.get_crl() is None
        group = EnrollmentRecord("grp", True, Attestation.X509, True, 1.0, 1.0)
        await storage.insert_enrollment(group)
        await storage.insert_claim_token(
            ClaimTokenRecord("ct", "grp", b"c" * 32, 1, 0, 1.0, 50.0, "alice")
        )
        outcome, _ = await storage.consume_claim_token(b"c" * 32, 2.0)
        assert outcome is ClaimOutcome.OK
        registration = RegistrationRecord(
            "dev-new", "grp", True, "dev-new", "assigned", "initialAssignment", 2.0, 2.0
        )
        await storage.put_registration(registration)
        assert await storage.list_registrations(enrollment_id="grp", group=True) == [registration]
        issued = IssuedCertificateRecord("0A", "dev-new", "dev-new", "CD" * 32, 1.0, 9.0, 2.0, "p")
        await storage.insert_certificate(issued)
        assert await storage.revoke_certificate("0A", 3.0, "keyCompromise") is not None
        await storage.put_crl(1, b"crl")
        assert await storage.get_crl() == (1, b"crl")
        # And the old parts still write.
        assert await storage.append(LogEntry(Stream.SECURITY, "thumb-dev", 31.0, b"m4")) == 4
    finally:
        await storage.close()
    assert header(path) == (5, APPLICATION_ID, "5")


async def test_fresh_database_is_created_at_version_5_with_the_migrated_schema(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    migrated = tmp_path / "migrated.db"
    make_v4_database(migrated)
    version_4 = schema_sql(migrated)
    await (await open_storage(migrated)).close()
    caplog.clear()
    fresh = tmp_path / "fresh.db"
    with caplog.at_level(logging.INFO, logger="ironhub.storage.sqlite"):
        await (await open_storage(fresh)).close()
    # Created at version 5 directly: nothing to migrate.
    assert "created database" in caplog.text
    assert "schema_version=5" in caplog.text
    assert "migrated" not in caplog.text
    assert header(fresh) == (5, APPLICATION_ID, "5")
    # Both paths define the version 5 tables and indexes identically.
    fresh_sql, migrated_sql = schema_sql(fresh), schema_sql(migrated)
    added = set(fresh_sql) - set(version_4)
    assert added == {
        "enrollments",
        "registrations",
        "registrations_by_enrollment",
        "claim_tokens",
        "claim_tokens_by_group",
        "certificates",
        "certificates_by_device",
        "certificates_revoked",
        "crl",
    }
    assert {name: fresh_sql[name] for name in added} == {name: migrated_sql[name] for name in added}
    assert set(migrated_sql) == set(fresh_sql)


async def test_failed_migration_leaves_version_4_untouched(tmp_path: Path) -> None:
    # A table version 5 creates already exists (a foreign addition): nothing is migrated.
    path = tmp_path / "hub.db"
    make_v4_database(path)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE crl (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError):
        await open_storage(path)
    assert header(path) == (4, APPLICATION_ID, "4")
    assert not {"enrollments", "registrations", "claim_tokens", "certificates"} & tables(path)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT name FROM operators").fetchall() == [("alice",)]
    finally:
        conn.close()


async def test_damaged_version_4_database_is_refused_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    make_v4_database(path)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE operators")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabaseError, match="operators"):
        await open_storage(path)
    assert header(path)[0] == 4
    assert "enrollments" not in tables(path)


@pytest.mark.parametrize(
    "table", ["enrollments", "registrations", "claim_tokens", "certificates", "crl"]
)
async def test_version_5_database_missing_a_provisioning_table_is_refused(
    tmp_path: Path, table: str
) -> None:
    path = tmp_path / "hub.db"
    await (await open_storage(path)).close()
    conn = sqlite3.connect(path)
    conn.execute(f"DROP TABLE {table}")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabaseError, match=table):
        await open_storage(path)


async def test_version_6_database_is_refused(tmp_path: Path) -> None:
    # Written by a newer release: never downgraded, never opened as if it were ours.
    path = tmp_path / "hub.db"
    await (await open_storage(path)).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    conn.execute("PRAGMA user_version = 6")
    conn.commit()
    conn.close()
    before = schema_sql(path)
    with pytest.raises(CorruptDatabaseError, match="schema version 6 was written by a newer"):
        await open_storage(path)
    assert header(path) == (6, APPLICATION_ID, "6")
    assert schema_sql(path) == before
