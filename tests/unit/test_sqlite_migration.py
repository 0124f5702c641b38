"""SQLite schema migration: a database written by an earlier release (schema version 1, 4
before provisioning, 5 before security monitoring, or 6 before device posture) is upgraded in
place at open, in one transaction, and keeps everything it held; a database of a newer release
is refused."""

from __future__ import annotations

import dataclasses
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
    AdvisoryRecord,
    AlertRecord,
    AlertState,
    Attestation,
    AuthKind,
    CARecord,
    ClaimOutcome,
    ClaimTokenRecord,
    CloudMessage,
    DeviceRecord,
    DeviceState,
    EnrollmentRecord,
    IssuedCertificateRecord,
    LogEntry,
    OperatorRecord,
    PostureRecord,
    ProfileRecord,
    RegistrationRecord,
    ReprovisionPolicy,
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
    assert SCHEMA_VERSION == 7
    path = tmp_path / "hub.db"
    make_v1_database(path)
    assert header(path) == (1, APPLICATION_ID, "1")

    with caplog.at_level(logging.INFO, logger="ironhub.storage.sqlite"):
        storage = await open_storage(path)
    assert "migrated database schema" in caplog.text
    assert "from_version=1 to_version=7" in caplog.text

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
    await storage.put_posture(PostureRecord("old-dev", "inventory", 4, 31.0, "{}"))
    await storage.put_posture(PostureRecord("old-dev/mod", "ports", 4, 31.0, "{}"))
    assert await storage.delete_device("old-dev") is True
    assert await storage.get_twin("old-dev") is None
    assert await storage.list_cloud_messages("old-dev") == []
    assert await storage.get_posture("old-dev", "inventory") is None
    assert await storage.get_posture("old-dev/mod", "ports") is None
    await storage.close()

    assert header(path) == (7, APPLICATION_ID, "7")
    assert {
        "twins",
        "sessions",
        "cloud_messages",
        "operators",
        "enrollments",
        "alerts",
        "monitor_state",
        "profiles",
        "advisories",
        "device_posture",
    } <= tables(path)


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
    assert header(copy / "hub.db")[0] == 7


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
        assert header(path) == (7, APPLICATION_ID, "7")
        _migrate(conn, path, 1)  # would fail with "table twins already exists" if repeated
        assert not conn.in_transaction
    finally:
        conn.close()
    assert header(path) == (7, APPLICATION_ID, "7")


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

#: The tables exactly as the release of schema version 4 created a fresh database (read back
#: from ``sqlite_master``; ``sqlite_sequence`` is SQLite's own). Copied, not imported.
TABLES_V4 = """
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
"""


def identify(version: int) -> str:
    """What every release wrote after its tables: the meta rows and the header fields."""
    return f"""
INSERT INTO meta (key, value) VALUES
    ('application', 'ironhub'),
    ('schema_version', '{version}'),
    ('tokens_created', '0');
PRAGMA application_id = 1230129218;
PRAGMA user_version = {version};
"""


SCHEMA_V4 = TABLES_V4 + identify(4)

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
        write_v4_rows(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()
    path.chmod(0o600)


def write_v4_rows(conn: sqlite3.Connection) -> None:
    """One row in every table of version 4 but ``cas``, as that release wrote them."""
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
    assert "from_version=4 to_version=7" in caplog.text
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
        # So do the monitoring tables, and the posture tables.
        assert await storage.list_alerts() == []
        assert await storage.get_monitor_state("cursor") is None
        assert await storage.list_profiles() == []
        assert await storage.count_advisories() == 0
        assert await storage.list_posture("inventory") == []
        # And the old parts still write.
        assert await storage.append(LogEntry(Stream.SECURITY, "thumb-dev", 31.0, b"m4")) == 4
    finally:
        await storage.close()
    assert header(path) == (7, APPLICATION_ID, "7")


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


async def test_failed_migration_from_version_4_rolls_back_every_step(tmp_path: Path) -> None:
    # The step to version 5 succeeds, the step to 6 fails (a foreign table of that name): the
    # file stays version 4 as a whole, without the provisioning tables of the first step.
    path = tmp_path / "hub.db"
    make_v4_database(path)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE monitor_state (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError):
        await open_storage(path)
    assert header(path) == (4, APPLICATION_ID, "4")
    assert not {"enrollments", "crl", "alerts", "profiles"} & tables(path)


# --- version 5 (before security monitoring) -> 6 -----------------------------------------------

#: What the release of schema version 5 created after the version 4 tables (read back from
#: ``sqlite_master``). Copied, not imported.
TABLES_V5_ADDED = """
CREATE TABLE enrollments (
    grp INTEGER NOT NULL CHECK (grp IN (0, 1)),
    enrollment_id TEXT NOT NULL,
    attestation TEXT NOT NULL,
    enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    version INTEGER NOT NULL,
    primary_key_sealed BLOB,
    secondary_key_sealed BLOB,
    certificates_pem TEXT NOT NULL,
    device_id TEXT,
    initial_twin TEXT NOT NULL,
    allocation_payload TEXT,
    reprovision TEXT NOT NULL,
    PRIMARY KEY (grp, enrollment_id)
) WITHOUT ROWID;
CREATE TABLE registrations (
    registration_id TEXT PRIMARY KEY,
    enrollment_id TEXT NOT NULL,
    grp INTEGER NOT NULL CHECK (grp IN (0, 1)),
    device_id TEXT NOT NULL,
    status TEXT NOT NULL,
    substatus TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    version INTEGER NOT NULL,
    error_code INTEGER,
    error_message TEXT,
    certificate_serial TEXT
) WITHOUT ROWID;
CREATE INDEX registrations_by_enrollment ON registrations (grp, enrollment_id);
CREATE TABLE claim_tokens (
    token_id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    max_uses INTEGER NOT NULL,
    uses INTEGER NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
) WITHOUT ROWID;
CREATE INDEX claim_tokens_by_group ON claim_tokens (group_id, created_at);
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    registration_id TEXT NOT NULL,
    thumbprint TEXT NOT NULL,
    not_before REAL NOT NULL,
    not_after REAL NOT NULL,
    issued_at REAL NOT NULL,
    pem TEXT NOT NULL,
    revoked_at REAL,
    revocation_reason TEXT
) WITHOUT ROWID;
CREATE INDEX certificates_by_device ON certificates (device_id);
CREATE INDEX certificates_revoked ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE TABLE crl (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    number INTEGER NOT NULL,
    der BLOB NOT NULL
);
"""
SCHEMA_V5 = TABLES_V4 + TABLES_V5_ADDED + identify(5)
#: The tables and indexes version 6 adds.
ADDED_IN_V6 = {"alerts", "alerts_by_key", "alerts_unresolved", "alerts_by_device", "monitor_state"}

V5_PEM = "-----BEGIN CERTIFICATE-----\nQkJC\n-----END CERTIFICATE-----\n"
V5_CA = CARecord("EF" * 32, "CN=factory root", V5_PEM, 5.0)
V5_GROUP = EnrollmentRecord(
    enrollment_id="grp-1",
    group=True,
    attestation=Attestation.SYMMETRIC,
    enabled=True,
    created_at=1.0,
    updated_at=2.0,
    version=3,
    primary_key_sealed=b"\x01grp-primary",
    secondary_key_sealed=b"\x01grp-secondary",
    initial_twin='{"tags":{"floor":2}}',
    allocation_payload='{"region":"eu"}',
    reprovision=ReprovisionPolicy.RESET_TWIN,
)
V5_REGISTRATION = RegistrationRecord(
    "dev-new",
    "grp-1",
    True,
    "dev-new",
    "assigned",
    "initialAssignment",
    3.0,
    4.0,
    2,
    None,
    None,
    "0A",
)
V5_CLAIM = ClaimTokenRecord("ct-1", "grp-1", b"c" * 32, 5, 1, 3.0, 500.0, "alice")
V5_CERTIFICATE = IssuedCertificateRecord(
    "0A", "dev-new", "dev-new", "CD" * 32, 1.0, 9.0, 2.0, V5_PEM, 6.0, "keyCompromise"
)


def write_v5_rows(conn: sqlite3.Connection) -> None:
    """One row in every table of version 5, as that release wrote them."""
    write_v4_rows(conn)
    conn.execute("INSERT INTO cas VALUES (?, 'CN=factory root', ?, 5.0)", ("EF" * 32, V5_PEM))
    conn.execute(
        "INSERT INTO enrollments VALUES (1, 'grp-1', 'symmetric', 1, 1.0, 2.0, 3, ?, ?, '[]',"
        " NULL, ?, ?, 'reset-twin')",
        (b"\x01grp-primary", b"\x01grp-secondary", '{"tags":{"floor":2}}', '{"region":"eu"}'),
    )
    conn.execute(
        "INSERT INTO registrations VALUES ('dev-new', 'grp-1', 1, 'dev-new', 'assigned',"
        " 'initialAssignment', 3.0, 4.0, 2, NULL, NULL, '0A')"
    )
    conn.execute(
        "INSERT INTO claim_tokens VALUES ('ct-1', 'grp-1', ?, 5, 1, 3.0, 500.0, 'alice', 0)",
        (b"c" * 32,),
    )
    conn.execute(
        "INSERT INTO certificates VALUES ('0A', 'dev-new', 'dev-new', ?, 1.0, 9.0, 2.0, ?,"
        " 6.0, 'keyCompromise')",
        ("CD" * 32, V5_PEM),
    )
    conn.execute("INSERT INTO crl VALUES (1, 2, ?)", (b"\x30crl-2",))


def make_v5_database(path: Path) -> None:
    """A database as the release of schema version 5 left it, holding one row in every table."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(SCHEMA_V5)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN")
        write_v5_rows(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()
    path.chmod(0o600)


def row_counts(path: Path) -> dict[str, int]:
    """How many rows each table holds (SQLite's own ``sqlite_sequence`` aside)."""
    conn = sqlite3.connect(path)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'sqlite_sequence'"
            )
        ]
        return {
            name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names
        }
    finally:
        conn.close()


async def test_version_5_database_is_migrated_and_keeps_its_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "hub.db"
    make_v5_database(path)
    assert header(path) == (5, APPLICATION_ID, "5")
    before = row_counts(path)
    assert min(before.values()) >= 1  # one of everything
    assert not {"alerts", "monitor_state", "profiles", "advisories", "device_posture"} & tables(
        path
    )

    with caplog.at_level(logging.INFO, logger="ironhub.storage.sqlite"):
        storage = await open_storage(path)
    assert "from_version=5 to_version=7" in caplog.text
    try:
        # Everything version 5 held is intact.
        assert await storage.get_device("thumb-dev") == V4_DEVICE
        assert await storage.list_cas() == [V5_CA]
        assert await storage.list_tokens() == [V4_TOKEN]
        assert await storage.count_tokens() == 1
        assert await storage.list_operators() == [V4_OPERATOR]
        assert await storage.get_twin("thumb-dev") == V4_TWIN
        assert await storage.get_session("thumb-dev") == V4_SESSION
        assert await storage.list_cloud_messages("thumb-dev") == [V4_CLOUD]
        assert await storage.read_audit() == V4_AUDIT
        assert await storage.audit_checkpoints() == [(2, '{"tree_size":2}')]
        assert [m.payload for m in await storage.query_messages()] == [b"m1", b"m2", b"m3"]
        assert await storage.get_enrollment("grp-1", group=True) == V5_GROUP
        assert await storage.get_registration("dev-new") == V5_REGISTRATION
        assert await storage.list_claim_tokens() == [V5_CLAIM]
        assert await storage.get_certificate("0A") == V5_CERTIFICATE
        assert await storage.list_revoked_certificates() == [V5_CERTIFICATE]
        assert await storage.get_crl() == (2, b"\x30crl-2")

        # The monitoring tables start empty and work.
        assert await storage.list_alerts() == []
        assert await storage.find_alert("tamper", "thumb-dev") is None
        assert await storage.get_monitor_state("cursor") is None
        raised = AlertRecord(
            "al-1",
            "tamper",
            "high",
            "thumb-dev",
            "tamper",
            "opened",
            AlertState.OPEN,
            7.0,
            7.0,
            7.0,
        )
        about_nobody = dataclasses.replace(raised, alert_id="al-2", device_id=None)
        await storage.insert_alert(raised)
        await storage.insert_alert(about_nobody)
        acknowledged = dataclasses.replace(
            raised, state=AlertState.ACKNOWLEDGED, acknowledged_by="alice", version=2
        )
        await storage.update_alert(acknowledged, expected_version=1)
        assert await storage.find_alert("tamper", "thumb-dev") == acknowledged
        assert await storage.find_alert("tamper", None) == about_nobody
        assert await storage.list_alerts(device_id="thumb-dev") == [acknowledged]
        await storage.put_monitor_state("cursor", "3")
        assert await storage.get_monitor_state("cursor") == "3"
        # A device written by version 5 can be quarantined, and read back as such.
        quarantined = dataclasses.replace(V4_DEVICE, state=DeviceState.QUARANTINED, version=3)
        await storage.update_device(quarantined, expected_version=2)
        assert await storage.get_device("thumb-dev") == quarantined
        # And the old parts still write.
        outcome, _ = await storage.consume_claim_token(b"c" * 32, 4.0)
        assert outcome is ClaimOutcome.OK
        await storage.put_crl(3, b"\x30crl-3")
        assert await storage.append(LogEntry(Stream.SECURITY, "thumb-dev", 31.0, b"m4")) == 4
    finally:
        await storage.close()
    assert header(path) == (7, APPLICATION_ID, "7")
    after = row_counts(path)
    # The posture tables of version 7 came with the migration, empty.
    assert after == {
        **before,
        "alerts": 2,
        "monitor_state": 1,
        "messages": 4,
        "profiles": 0,
        "advisories": 0,
        "device_posture": 0,
    }

    # Once is enough: the next start finds version 7 and what was written.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ironhub.storage.sqlite"):
        storage = await open_storage(path)
    try:
        assert "migrated" not in caplog.text
        assert await storage.get_device("thumb-dev") == quarantined
        assert await storage.get_alert("al-1") == acknowledged
        assert await storage.get_monitor_state("cursor") == "3"
    finally:
        await storage.close()


async def test_failed_migration_leaves_version_5_untouched(tmp_path: Path) -> None:
    # A table version 6 creates already exists (a foreign addition): nothing is migrated.
    path = tmp_path / "hub.db"
    make_v5_database(path)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE monitor_state (x)")
    conn.commit()
    conn.close()
    before = schema_sql(path)
    with pytest.raises(StorageError):
        await open_storage(path)
    assert header(path) == (5, APPLICATION_ID, "5")
    assert "alerts" not in tables(path)
    assert schema_sql(path) == before
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT enrollment_id FROM enrollments").fetchall() == [("grp-1",)]
    finally:
        conn.close()


@pytest.mark.parametrize(
    "table", ["enrollments", "registrations", "claim_tokens", "certificates", "crl"]
)
async def test_version_5_database_missing_a_provisioning_table_is_refused_not_migrated(
    tmp_path: Path, table: str
) -> None:
    path = tmp_path / "hub.db"
    make_v5_database(path)
    conn = sqlite3.connect(path)
    conn.execute(f"DROP TABLE {table}")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabaseError, match=table):
        await open_storage(path)
    assert header(path)[0] == 5
    assert "alerts" not in tables(path)


async def test_migration_from_version_5_notices_a_concurrent_migration(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    make_v5_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        _migrate(conn, path, 5)
        assert header(path) == (7, APPLICATION_ID, "7")
        _migrate(conn, path, 5)  # would fail with "table alerts already exists" if repeated
        assert not conn.in_transaction
    finally:
        conn.close()
    assert header(path) == (7, APPLICATION_ID, "7")


# --- version 6 (before device posture) -> 7 ----------------------------------------------------

#: What the release of schema version 6 created after the version 5 tables (the statements of
#: its ``_TABLES_V6_STATEMENTS``, as ``sqlite_master`` keeps them: ``alerts_unresolved`` on one
#: line). Copied, not imported.
TABLES_V6_ADDED = """
CREATE TABLE alerts (
    alert_id TEXT PRIMARY KEY,
    alert_type TEXT NOT NULL,
    severity TEXT NOT NULL,
    device_id TEXT,
    detector TEXT NOT NULL,
    summary TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    count INTEGER NOT NULL,
    evidence TEXT NOT NULL,
    details TEXT NOT NULL,
    actions TEXT NOT NULL,
    acknowledged_by TEXT,
    resolved_by TEXT,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX alerts_by_key ON alerts (alert_type, device_id, created_at);
CREATE INDEX alerts_unresolved ON alerts (alert_type, device_id, created_at) WHERE state <> 'resolved';
CREATE INDEX alerts_by_device ON alerts (device_id);
CREATE TABLE monitor_state (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at REAL
) WITHOUT ROWID;
"""
SCHEMA_V6 = TABLES_V4 + TABLES_V5_ADDED + TABLES_V6_ADDED + identify(6)
#: The tables and indexes version 7 adds.
ADDED_IN_V7 = {"profiles", "advisories", "device_posture", "device_posture_by_kind"}

V6_ALERT = AlertRecord(
    alert_id="al-1",
    alert_type="tamper",
    severity="high",
    device_id="thumb-dev",
    detector="tamper",
    summary="the enclosure of thumb-dev was opened",
    state=AlertState.ACKNOWLEDGED,
    created_at=40.0,
    updated_at=45.0,
    last_seen_at=44.0,
    count=2,
    evidence=(1, 2),
    details='{"switch":"lid"}',
    actions=("quarantine",),
    acknowledged_by="alice",
    version=2,
)


def make_v6_database(path: Path) -> None:
    """A database as the release of schema version 6 left it, holding one row in every table."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(SCHEMA_V6)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN")
        write_v5_rows(conn)
        conn.execute(
            "INSERT INTO alerts VALUES ('al-1', 'tamper', 'high', 'thumb-dev', 'tamper',"
            " 'the enclosure of thumb-dev was opened', 'acknowledged', 40.0, 45.0, 44.0, 2,"
            " '[1,2]', ?, '[\"quarantine\"]', 'alice', NULL, 2)",
            ('{"switch":"lid"}',),
        )
        conn.execute("INSERT INTO monitor_state VALUES ('cursor', '3', 50.0)")
        conn.execute("COMMIT")
    finally:
        conn.close()
    path.chmod(0o600)


async def test_version_6_database_is_migrated_and_keeps_its_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "hub.db"
    make_v6_database(path)
    assert header(path) == (6, APPLICATION_ID, "6")
    before = row_counts(path)
    assert min(before.values()) >= 1  # one of everything
    assert {"alerts", "monitor_state"} <= before.keys()
    assert not {"profiles", "advisories", "device_posture"} & tables(path)

    with caplog.at_level(logging.INFO, logger="ironhub.storage.sqlite"):
        storage = await open_storage(path)
    assert "from_version=6 to_version=7" in caplog.text
    try:
        # Everything version 6 held is intact.
        assert await storage.get_device("thumb-dev") == V4_DEVICE
        assert await storage.list_cas() == [V5_CA]
        assert await storage.list_tokens() == [V4_TOKEN]
        assert await storage.count_tokens() == 1
        assert await storage.list_operators() == [V4_OPERATOR]
        assert await storage.get_twin("thumb-dev") == V4_TWIN
        assert await storage.get_session("thumb-dev") == V4_SESSION
        assert await storage.list_cloud_messages("thumb-dev") == [V4_CLOUD]
        assert await storage.read_audit() == V4_AUDIT
        assert await storage.audit_checkpoints() == [(2, '{"tree_size":2}')]
        assert [m.payload for m in await storage.query_messages()] == [b"m1", b"m2", b"m3"]
        assert await storage.get_enrollment("grp-1", group=True) == V5_GROUP
        assert await storage.get_registration("dev-new") == V5_REGISTRATION
        assert await storage.list_claim_tokens() == [V5_CLAIM]
        assert await storage.get_certificate("0A") == V5_CERTIFICATE
        assert await storage.get_crl() == (2, b"\x30crl-2")
        assert await storage.get_alert("al-1") == V6_ALERT
        assert await storage.list_alerts() == [V6_ALERT]
        assert await storage.list_alerts(device_id="thumb-dev") == [V6_ALERT]
        assert await storage.find_alert("tamper", "thumb-dev") == V6_ALERT
        assert await storage.get_monitor_state("cursor") == "3"

        # The posture tables start empty and work.
        assert await storage.list_profiles() == []
        assert await storage.get_profile("camera") is None
        assert await storage.list_advisories() == []
        assert await storage.count_advisories() == 0
        assert await storage.get_posture("thumb-dev", "inventory") is None
        assert await storage.list_posture("inventory") == []
        profile = ProfileRecord("camera", '{"ports":[443]}', 50.0, 50.0, 1)
        await storage.put_profile(profile, expected_version=None)
        replaced = dataclasses.replace(
            profile, document='{"ports":[443,8883]}', updated_at=60.0, version=2
        )
        await storage.put_profile(replaced, expected_version=1)
        assert await storage.get_profile("camera") == replaced
        assert await storage.list_profiles() == [replaced]
        advisories = [
            AdvisoryRecord("GHSA-aaaa", "2024-01-02T00:00:00Z", '{"id":"GHSA-aaaa"}', 50.0),
            AdvisoryRecord("OSV-2024-1", "2024-03-04T00:00:00Z", '{"id":"OSV-2024-1"}', 50.0),
        ]
        await storage.put_advisories(advisories)
        assert await storage.list_advisories() == advisories
        assert await storage.count_advisories() == 2
        posture = PostureRecord("thumb-dev", "inventory", 3, 50.0, '{"packages":[]}')
        await storage.put_posture(posture)
        await storage.put_posture(dataclasses.replace(posture, seq=2, document="{}"))  # older
        assert await storage.get_posture("thumb-dev", "inventory") == posture
        assert await storage.list_posture("inventory") == [posture]
        # And the old parts still write.
        resolved = dataclasses.replace(
            V6_ALERT, state=AlertState.RESOLVED, resolved_by="bob", version=3
        )
        await storage.update_alert(resolved, expected_version=2)
        await storage.put_monitor_state("cursor", "4")
        assert await storage.append(LogEntry(Stream.SECURITY, "thumb-dev", 51.0, b"m4")) == 4
    finally:
        await storage.close()
    assert header(path) == (7, APPLICATION_ID, "7")
    after = row_counts(path)
    assert after == {**before, "messages": 4, "profiles": 1, "advisories": 2, "device_posture": 1}

    # Once is enough: the next start finds version 7 and what was written.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ironhub.storage.sqlite"):
        storage = await open_storage(path)
    try:
        assert "migrated" not in caplog.text
        assert await storage.get_alert("al-1") == resolved
        assert await storage.get_monitor_state("cursor") == "4"
        assert await storage.get_profile("camera") == replaced
        assert await storage.list_advisories() == advisories
        assert await storage.get_posture("thumb-dev", "inventory") == posture
        # A device written by version 6 takes its posture with it when deleted.
        assert await storage.delete_device("thumb-dev") is True
        assert await storage.get_posture("thumb-dev", "inventory") is None
        assert await storage.get_twin("thumb-dev") is None
    finally:
        await storage.close()


async def test_failed_migration_leaves_version_6_untouched(tmp_path: Path) -> None:
    # A table version 7 creates already exists (a foreign addition), after two it creates
    # first: nothing is migrated, not even those two.
    path = tmp_path / "hub.db"
    make_v6_database(path)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE device_posture (x)")
    conn.commit()
    conn.close()
    before = schema_sql(path)
    with pytest.raises(StorageError):
        await open_storage(path)
    assert header(path) == (6, APPLICATION_ID, "6")
    assert not {"profiles", "advisories"} & tables(path)
    assert schema_sql(path) == before
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT alert_id FROM alerts").fetchall() == [("al-1",)]
        assert conn.execute("SELECT state FROM monitor_state").fetchall() == [("3",)]
    finally:
        conn.close()


async def test_failed_migration_from_version_5_rolls_back_every_step(tmp_path: Path) -> None:
    # The step to version 6 succeeds, the step to 7 fails (a foreign table of that name): the
    # file stays version 5 as a whole, without the monitoring tables of the first step.
    path = tmp_path / "hub.db"
    make_v5_database(path)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE advisories (x)")
    conn.commit()
    conn.close()
    before = schema_sql(path)
    with pytest.raises(StorageError):
        await open_storage(path)
    assert header(path) == (5, APPLICATION_ID, "5")
    assert not {"alerts", "monitor_state", "profiles", "device_posture"} & tables(path)
    assert schema_sql(path) == before


@pytest.mark.parametrize("table", ["alerts", "monitor_state", "enrollments", "crl"])
async def test_version_6_database_missing_a_table_is_refused_not_migrated(
    tmp_path: Path, table: str
) -> None:
    path = tmp_path / "hub.db"
    make_v6_database(path)
    conn = sqlite3.connect(path)
    conn.execute(f"DROP TABLE {table}")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabaseError, match=table):
        await open_storage(path)
    assert header(path)[0] == 6
    assert not {"profiles", "advisories", "device_posture"} & tables(path)


async def test_migration_from_version_6_notices_a_concurrent_migration(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    make_v6_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        _migrate(conn, path, 6)
        assert header(path) == (7, APPLICATION_ID, "7")
        _migrate(conn, path, 6)  # would fail with "table profiles already exists" if repeated
        assert not conn.in_transaction
    finally:
        conn.close()
    assert header(path) == (7, APPLICATION_ID, "7")


# --- version 7 (current) ----------------------------------------------------------------------


async def test_fresh_database_is_created_at_version_7_with_the_migrated_schema(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from_4, from_5, from_6 = tmp_path / "from-4.db", tmp_path / "from-5.db", tmp_path / "from-6.db"
    make_v4_database(from_4)
    make_v5_database(from_5)
    make_v6_database(from_6)
    version_4, version_5, version_6 = schema_sql(from_4), schema_sql(from_5), schema_sql(from_6)
    for path in (from_4, from_5, from_6):
        await (await open_storage(path)).close()
    caplog.clear()
    fresh = tmp_path / "fresh.db"
    with caplog.at_level(logging.INFO, logger="ironhub.storage.sqlite"):
        await (await open_storage(fresh)).close()
    # Created at version 7 directly: nothing to migrate.
    assert "created database" in caplog.text
    assert "schema_version=7" in caplog.text
    assert "migrated" not in caplog.text
    assert header(fresh) == (7, APPLICATION_ID, "7")
    # All four paths define every table and index identically.
    fresh_sql = schema_sql(fresh)
    assert schema_sql(from_4) == fresh_sql
    assert schema_sql(from_5) == fresh_sql
    assert schema_sql(from_6) == fresh_sql
    assert set(fresh_sql) - set(version_6) == ADDED_IN_V7
    assert set(fresh_sql) - set(version_5) == ADDED_IN_V6 | ADDED_IN_V7
    assert set(fresh_sql) - set(version_4) == ADDED_IN_V6 | ADDED_IN_V7 | {
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
    # The copies of versions 5 and 6 above are what this code builds, less what came later.
    assert {name: sql for name, sql in fresh_sql.items() if name not in ADDED_IN_V7} == version_6
    assert {
        name: sql for name, sql in fresh_sql.items() if name not in ADDED_IN_V6 | ADDED_IN_V7
    } == version_5


@pytest.mark.parametrize(
    "table",
    ["profiles", "advisories", "device_posture", "alerts", "monitor_state", "enrollments", "crl"],
)
async def test_version_7_database_missing_a_table_is_refused(tmp_path: Path, table: str) -> None:
    path = tmp_path / "hub.db"
    await (await open_storage(path)).close()
    conn = sqlite3.connect(path)
    conn.execute(f"DROP TABLE {table}")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabaseError, match=table):
        await open_storage(path)
    assert header(path)[0] == 7


async def test_version_8_database_is_refused(tmp_path: Path) -> None:
    # Written by a newer release: never downgraded, never opened as if it were ours.
    path = tmp_path / "hub.db"
    await (await open_storage(path)).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '8' WHERE key = 'schema_version'")
    conn.execute("PRAGMA user_version = 8")
    conn.commit()
    conn.close()
    before = schema_sql(path)
    with pytest.raises(CorruptDatabaseError, match="schema version 8 was written by a newer"):
        await open_storage(path)
    assert header(path) == (8, APPLICATION_ID, "8")
    assert schema_sql(path) == before
