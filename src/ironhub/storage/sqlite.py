"""The embedded storage backend: stdlib :mod:`sqlite3` in WAL mode.

Theory of operation
-------------------

Three kinds of thread touch the database file:

* **The event loop** never touches it. It hands work to the other threads and receives the
  results through :meth:`asyncio.AbstractEventLoop.call_soon_threadsafe`, so no coroutine ever
  blocks on disk I/O.
* **One writer thread** owns the only write connection. It serves a FIFO queue holding two kinds
  of work: log entries (from :meth:`SQLiteStorage.append`) and small *jobs* (device, CA, token,
  twin, session, C2D queue, provisioning and monitor writes). Each turn it drains everything
  queued, up to ``StorageConfig.max_commit_batch`` log entries, inserts those entries with a few
  multi-row ``INSERT`` statements in one transaction, commits, and then resolves all of their
  futures with one ``call_soon_threadsafe`` (group commit, ARCHITECTURE.md "Durability"). A job
  found while draining ends the batch; it and the jobs queued behind it run right after the
  batch, in one transaction of their own with a savepoint per job
  (:meth:`SQLiteStorage._run_jobs`), which keeps the queue strictly FIFO. With
  ``synchronous=FULL`` (the default) the commit has fsynced the WAL before any future resolves,
  so an acknowledged message survives power loss; with ``NORMAL`` it survives a process crash
  (SIGKILL) but not power loss.
* **Reader threads** (a small pool, one connection each, ``query_only``) serve every read.
  WAL lets them read a committed snapshot while the writer appends.

Sequence numbers are assigned by the writer from an in-memory counter (``max(seq) + 1`` at
open), so a batch's numbers are known before it commits and are gap-free. If a commit fails,
every future of the batch fails with :class:`~ironhub.errors.StorageError`, nothing is
acknowledged, and the counter is re-read from the database before the next batch.

Schema and its guards
---------------------

The ``messages`` table is keyed by ``seq`` only. There is deliberately **no secondary index**
(an index on ``(device_id, enqueued_at)`` cut inserts from ~290k to ~50k rows/s,
ARCHITECTURE.md). Consequently a query filtered by device or stream walks the table in
``seq`` order from ``after_seq`` and stops after ``limit`` matches: cheap for recent or busy
devices, a scan of everything after ``after_seq`` for a device that sent nothing since.

The other tables are small and keyed by identity; ``cloud_messages`` carries indexes on
``(identity, seq)`` and ``expires_at``, which its queries need and which cost nothing on the hot
path. Identity keys are ``d`` for a device and ``d/m`` for a module; the modules of ``d`` are
exactly the keys strictly between ``d/`` and ``d0`` under the BINARY collation (``/`` is 0x2F,
``0`` is 0x30), a range the primary keys serve and that never reaches a sibling ``d-2``.

A new database is built under a temporary name and renamed into place once complete, so a file
under the final name is always a whole ironhub database. Opening refuses, with
:class:`~ironhub.errors.CorruptDatabaseError`, anything else: a file that is not SQLite, is
truncated, fails ``PRAGMA quick_check``, lacks the ironhub ``application_id`` and ``meta`` row,
or carries a schema version this code does not know (a downgrade). The hub must never come up
with empty security state (SECURITY-TESTS.md §3.11 item 49). Files are created ``0600``; the
``-wal`` and ``-shm`` files inherit that mode from SQLite and are tightened again after open.

Schema migrations
-----------------

An intact database of an older known version (1 to 6, written by earlier releases) is
upgraded in place at open, before WAL mode and before any reader: the new tables, ``PRAGMA
user_version`` and ``meta.schema_version`` change in one transaction (:func:`_migrate`), so the
file is either wholly the old version or wholly the new one. Existing tables are never rewritten.
Version 2 added ``twins``, ``sessions`` and ``cloud_messages``; version 3 the audit log;
version 4 operator accounts and role-scoped tokens; version 5 provisioning (``enrollments``,
``registrations``, ``claim_tokens``, ``certificates`` and ``crl``); version 6 security monitoring
(``alerts`` and ``monitor_state``; the device state ``quarantined`` is a new value of the
existing ``devices.state`` column, which needed no change); version 7 device posture
(``profiles``, ``advisories``, ``device_posture``).

Provisioning rules that span rows are kept by the writer, not by SQLite foreign keys (which
stay off, as for modules): a claim token is inserted only in the transaction that found its
enrollment group, deleting a group deletes its claim tokens in the same transaction, and a
claim token is consumed by one transaction that reads, checks and increments it. Because every
job runs ``BEGIN IMMEDIATE`` on the single write connection, two consumers can never both see
the last use, not even from two processes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, TypeVar

import msgspec

from ironhub.errors import (
    ConflictError,
    CorruptDatabaseError,
    IronhubError,
    NotFoundError,
    PreconditionFailedError,
    QueueFullError,
    StorageError,
)
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
    CommitListener,
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
    StorageStatistics,
    StoredMessage,
    Stream,
    TokenKind,
    TokenRecord,
    TwinRecord,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from ironhub.clock import Clock
    from ironhub.config import StorageConfig
    from ironhub.metrics import Metrics

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SQLiteStorage"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: ``PRAGMA application_id`` of every ironhub database: the ASCII bytes ``IRHB``.
APPLICATION_ID: Final = 0x49524842
#: The schema this code reads and writes (``PRAGMA user_version`` and ``meta.schema_version``).
SCHEMA_VERSION: Final = 7

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_HEADER_BYTES: Final = 100
_FILE_MODE: Final = 0o600
_READER_THREADS: Final = 2
_BUSY_TIMEOUT_MS: Final = 5000
_SYNCHRONOUS_MODES: Final = frozenset({"FULL", "EXTRA", "NORMAL"})
_TABLES_V1: Final = frozenset({"meta", "devices", "cas", "tokens", "messages"})
_TABLES_V4: Final = _TABLES_V1 | {
    "twins",
    "sessions",
    "cloud_messages",
    "audit_records",
    "audit_checkpoints",
    "operators",
}
_TABLES_V5: Final = _TABLES_V4 | {
    "enrollments",
    "registrations",
    "claim_tokens",
    "certificates",
    "crl",
}
#: The tables every known schema version must hold (checked at open, before any migration).
_TABLES: Final = {
    1: _TABLES_V1,
    2: _TABLES_V1 | {"twins", "sessions", "cloud_messages"},
    3: _TABLES_V1 | {"twins", "sessions", "cloud_messages", "audit_records", "audit_checkpoints"},
    4: _TABLES_V4,
    5: _TABLES_V5,
    6: _TABLES_V5 | {"alerts", "monitor_state"},
    7: _TABLES_V5 | {"alerts", "monitor_state", "profiles", "advisories", "device_posture"},
}

#: The tables of schema version 1, unchanged since (the previous release created exactly these).
_TABLES_V1_SQL: Final = """
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
"""

#: What schema version 2 adds to version 1, one statement each, so that the migration can run
#: them inside its own transaction (``executescript`` would commit first). None of these is
#: on the hot path, so secondary indexes are fine here.
_TABLES_V2_STATEMENTS: Final = (
    """CREATE TABLE twins (
    identity TEXT PRIMARY KEY,
    tags TEXT NOT NULL,
    desired TEXT NOT NULL,
    desired_version INTEGER NOT NULL,
    reported TEXT NOT NULL,
    reported_version INTEGER NOT NULL,
    version INTEGER NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID""",
    """CREATE TABLE sessions (
    client_id TEXT PRIMARY KEY,
    subscriptions TEXT NOT NULL,
    desired_version_sent INTEGER NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID""",
    # AUTOINCREMENT: a seq is never reused, even after the newest message was deleted, so a
    # device can never mistake a new message for one it has already settled.
    """CREATE TABLE cloud_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    identity TEXT NOT NULL,
    input_name TEXT,
    enqueued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    properties BLOB,
    payload BLOB NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0
)""",
    "CREATE INDEX cloud_messages_by_identity ON cloud_messages (identity, seq)",
    "CREATE INDEX cloud_messages_by_expiry ON cloud_messages (expires_at)",
)

#: What schema version 3 adds: the audit log (docs/adr/0010). ``body`` holds the canonical
#: record bytes the hash covers, so what is verified is exactly what was stored.
_TABLES_V3_STATEMENTS: Final = (
    """CREATE TABLE audit_records (
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    body BLOB NOT NULL
)""",
    """CREATE TABLE audit_checkpoints (
    tree_size INTEGER PRIMARY KEY,
    body TEXT NOT NULL
)""",
)

#: What schema version 4 changes: operator access (docs/adr/0011). Tokens carry a list of
#: roles (comma-separated role names; the API's old "reader" level becomes the "viewer" role),
#: a kind (automation or session), an owner, a last use and the must-rotate mark; every token
#: expires (a token stored without expiry gets the 90-day cap from its creation). Operator
#: accounts get their own table. Also run on a fresh database, so both paths build one schema.
_TABLES_V4_STATEMENTS: Final = (
    "ALTER TABLE tokens RENAME COLUMN role TO roles",
    "UPDATE tokens SET roles = 'viewer' WHERE roles = 'reader'",
    "UPDATE tokens SET expires_at = created_at + 7776000.0 WHERE expires_at IS NULL",
    "ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'automation'",
    "ALTER TABLE tokens ADD COLUMN operator TEXT",
    "ALTER TABLE tokens ADD COLUMN last_used_at REAL",
    "ALTER TABLE tokens ADD COLUMN must_rotate INTEGER NOT NULL DEFAULT 0",
    """CREATE TABLE operators (
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
) WITHOUT ROWID""",
)

#: What schema version 5 adds: provisioning (enrollments, registration states, claim tokens,
#: issued device certificates and the current CRL). Flags are INTEGER 0/1 with a CHECK (the
#: group flag is part of the enrollment key: individual and group ids are separate
#: namespaces); PEM lists are JSON arrays, as ``devices.certificates_pem``. The cross-row rules
#: (a claim token's group exists, a group's tokens go with it) are the writer's, see the module
#: docstring. ``crl`` holds at most one row (``id`` is always 1).
_TABLES_V5_STATEMENTS: Final = (
    """CREATE TABLE enrollments (
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
) WITHOUT ROWID""",
    """CREATE TABLE registrations (
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
) WITHOUT ROWID""",
    # One enrollment's registrations, in registration id order (the key ends every entry).
    "CREATE INDEX registrations_by_enrollment ON registrations (grp, enrollment_id)",
    """CREATE TABLE claim_tokens (
    token_id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    max_uses INTEGER NOT NULL,
    uses INTEGER NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
) WITHOUT ROWID""",
    "CREATE INDEX claim_tokens_by_group ON claim_tokens (group_id, created_at)",
    """CREATE TABLE certificates (
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
) WITHOUT ROWID""",
    "CREATE INDEX certificates_by_device ON certificates (device_id)",
    # Partial: only the revoked few, in CRL order (revocation time, then the key: serial).
    "CREATE INDEX certificates_revoked ON certificates (revoked_at) WHERE revoked_at IS NOT NULL",
    """CREATE TABLE crl (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    number INTEGER NOT NULL,
    der BLOB NOT NULL
)""",
)

#: What schema version 6 adds: security monitoring (issue 6). ``alerts`` holds the monitor's
#: alerts; ``evidence`` (message-log sequence numbers) and ``actions`` are JSON arrays,
#: ``details`` compact JSON stored as given; ``device_id`` is NULL for an alert about no single
#: identity. ``state`` has no CHECK, unlike the 0/1 flags of version 5: SQLite cannot change a
#: CHECK without rebuilding the table, so a later alert state would cost a table rewrite; the
#: reader refuses unknown states instead. ``monitor_state`` holds named pieces of monitor state
#: (detector snapshots, the log cursor) as opaque text. The new device state ``quarantined``
#: needs no change: ``devices.state`` is unconstrained TEXT, read strictly.
_TABLES_V6_STATEMENTS: Final = (
    """CREATE TABLE alerts (
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
) WITHOUT ROWID""",
    # The de-duplication key, newest last (the key, alert_id, ends every entry and breaks
    # ties): serves find_alert's fallback to the newest resolved alert.
    "CREATE INDEX alerts_by_key ON alerts (alert_type, device_id, created_at)",
    # Partial: only the few alerts not yet resolved, so that find_alert never walks a key's
    # resolved history to learn that nothing is open.
    (
        "CREATE INDEX alerts_unresolved ON alerts (alert_type, device_id, created_at)"
        " WHERE state <> 'resolved'"
    ),
    # One device's alerts, in alert_id order (the key ends every entry).
    "CREATE INDEX alerts_by_device ON alerts (device_id)",
    """CREATE TABLE monitor_state (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at REAL
) WITHOUT ROWID""",
)

#: What schema version 7 adds: device posture (issue 6). ``profiles`` holds device profiles
#: (compact JSON checked by monitor/profiles.py), ``advisories`` imported OSV advisories in
#: their normalised compact form, ``device_posture`` each device's latest report of a kind
#: (``inventory``, ``antimalware``, ``ports``), owned by the device like its twin (deleted with
#: it).
_TABLES_V7_STATEMENTS: Final = (
    """CREATE TABLE profiles (
    name TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID""",
    """CREATE TABLE advisories (
    advisory_id TEXT PRIMARY KEY,
    modified TEXT NOT NULL,
    document TEXT NOT NULL,
    imported_at REAL NOT NULL
) WITHOUT ROWID""",
    """CREATE TABLE device_posture (
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    received_at REAL NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (device_id, kind)
) WITHOUT ROWID""",
    # list_posture walks one kind in device order.
    "CREATE INDEX device_posture_by_kind ON device_posture (kind, device_id)",
)

_SCHEMA: Final = (
    _TABLES_V1_SQL
    + "".join(f"{statement};\n" for statement in _TABLES_V2_STATEMENTS)
    + "".join(f"{statement};\n" for statement in _TABLES_V3_STATEMENTS)
    + "".join(f"{statement};\n" for statement in _TABLES_V4_STATEMENTS)
    + "".join(f"{statement};\n" for statement in _TABLES_V5_STATEMENTS)
    + "".join(f"{statement};\n" for statement in _TABLES_V6_STATEMENTS)
    + "".join(f"{statement};\n" for statement in _TABLES_V7_STATEMENTS)
    + f"""
INSERT INTO meta (key, value) VALUES
    ('application', 'ironhub'),
    ('schema_version', '{SCHEMA_VERSION}'),
    ('tokens_created', '0');
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
"""  # noqa: S608 - only module constants are interpolated
)

_INSERT_MESSAGES_PREFIX: Final = (
    "INSERT INTO messages (seq, stream, device_id, enqueued_at, properties, payload,"
    " packet_id, digest) VALUES "
)
_MESSAGE_COLUMNS: Final = 8
#: A batch is inserted with multi-row INSERTs of these sizes, largest first (one statement step
#: per chunk instead of one per row: ~15% less writer CPU than ``executemany``). Few distinct
#: statements, so the connection's statement cache keeps them all prepared. 256 rows bind 2048
#: parameters, far below SQLite's limit of 32766.
_INSERT_CHUNKS: Final = (256, 32, 4, 1)
_INSERT_MESSAGES: Final = {
    rows: _INSERT_MESSAGES_PREFIX + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    for rows in _INSERT_CHUNKS
}
_STREAM_TEXT: Final = {stream: stream.value for stream in Stream}
_DEVICE_SELECT: Final = (
    "SELECT device_id, auth_kind, state, created_at, updated_at, version, primary_key_sealed,"
    " secondary_key_sealed, primary_thumbprint, secondary_thumbprint, certificates_pem"
    " FROM devices"
)
_INSERT_DEVICE: Final = (
    "INSERT INTO devices (device_id, auth_kind, state, created_at, updated_at, version,"
    " primary_key_sealed, secondary_key_sealed, primary_thumbprint, secondary_thumbprint,"
    " certificates_pem) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_DEVICE: Final = (
    "UPDATE devices SET auth_kind = ?, state = ?, created_at = ?, updated_at = ?, version = ?,"
    " primary_key_sealed = ?, secondary_key_sealed = ?, primary_thumbprint = ?,"
    " secondary_thumbprint = ?, certificates_pem = ? WHERE device_id = ? AND version = ?"
)
_LIST_DEVICES: Final = (
    _DEVICE_SELECT + " WHERE device_id > ? AND instr(device_id, '/') = 0 ORDER BY device_id LIMIT ?"
)
_LIST_IDENTITIES: Final = _DEVICE_SELECT + " WHERE device_id > ? ORDER BY device_id LIMIT ?"
_TOKENS_SELECT: Final = (
    "SELECT token_id, name, token_hash, roles, created_at, expires_at, revoked, kind, operator,"
    " last_used_at, must_rotate FROM tokens"
)
_TOKENS_INSERT: Final = (
    "INSERT INTO tokens (token_id, name, token_hash, roles, created_at, expires_at, revoked,"
    " kind, operator, last_used_at, must_rotate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_OPERATOR_COLUMNS: Final = (
    "name, password_hash, password_changed_at, one_time, password_history, totp_secret_sealed,"
    " totp_pending_sealed, totp_last_step, roles, disabled, allow_list, known_networks,"
    " last_login_at, created_at, version"
)
_OPERATOR_SELECT: Final = f"SELECT {_OPERATOR_COLUMNS} FROM operators"  # noqa: S608
_OPERATOR_INSERT: Final = (
    f"INSERT INTO operators ({_OPERATOR_COLUMNS}) VALUES"  # noqa: S608
    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_OPERATOR_UPDATE: Final = (
    "UPDATE operators SET password_hash = ?, password_changed_at = ?, one_time = ?,"
    " password_history = ?, totp_secret_sealed = ?, totp_pending_sealed = ?,"
    " totp_last_step = ?, roles = ?, disabled = ?, allow_list = ?, known_networks = ?,"
    " last_login_at = ?, created_at = ?, version = ? WHERE name = ? AND version = ?"
)
_ENROLLMENT_COLUMNS: Final = (
    "grp, enrollment_id, attestation, enabled, created_at, updated_at, version,"
    " primary_key_sealed, secondary_key_sealed, certificates_pem, device_id, initial_twin,"
    " allocation_payload, reprovision"
)
_ENROLLMENT_SELECT: Final = f"SELECT {_ENROLLMENT_COLUMNS} FROM enrollments"  # noqa: S608
_ENROLLMENT_INSERT: Final = (
    f"INSERT INTO enrollments ({_ENROLLMENT_COLUMNS}) VALUES"  # noqa: S608
    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ENROLLMENT_UPDATE: Final = (
    "UPDATE enrollments SET attestation = ?, enabled = ?, created_at = ?, updated_at = ?,"
    " version = ?, primary_key_sealed = ?, secondary_key_sealed = ?, certificates_pem = ?,"
    " device_id = ?, initial_twin = ?, allocation_payload = ?, reprovision = ?"
    " WHERE grp = ? AND enrollment_id = ? AND version = ?"
)
_REGISTRATION_COLUMNS: Final = (
    "registration_id, enrollment_id, grp, device_id, status, substatus, created_at, updated_at,"
    " version, error_code, error_message, certificate_serial"
)
_REGISTRATION_SELECT: Final = f"SELECT {_REGISTRATION_COLUMNS} FROM registrations"  # noqa: S608
_REGISTRATION_UPSERT: Final = (
    f"INSERT INTO registrations ({_REGISTRATION_COLUMNS}) VALUES"  # noqa: S608
    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (registration_id) DO UPDATE SET"
    " enrollment_id = excluded.enrollment_id, grp = excluded.grp,"
    " device_id = excluded.device_id, status = excluded.status,"
    " substatus = excluded.substatus, created_at = excluded.created_at,"
    " updated_at = excluded.updated_at, version = excluded.version,"
    " error_code = excluded.error_code, error_message = excluded.error_message,"
    " certificate_serial = excluded.certificate_serial"
)
#: Registration listings differ only in their filters, fixed strings chosen by code. With both
#: filters the ``registrations_by_enrollment`` index serves the order too.
_REGISTRATION_QUERIES: Final = {
    (has_enrollment, has_group): (
        _REGISTRATION_SELECT
        + " WHERE registration_id > ?"
        + (" AND enrollment_id = ?" if has_enrollment else "")
        + (" AND grp = ?" if has_group else "")
        + " ORDER BY registration_id LIMIT ?"
    )
    for has_enrollment in (False, True)
    for has_group in (False, True)
}
_CLAIM_COLUMNS: Final = (
    "token_id, group_id, token_hash, max_uses, uses, created_at, expires_at, created_by, revoked"
)
_CLAIM_SELECT: Final = f"SELECT {_CLAIM_COLUMNS} FROM claim_tokens"  # noqa: S608
_CLAIM_INSERT: Final = (
    f"INSERT INTO claim_tokens ({_CLAIM_COLUMNS}) VALUES"  # noqa: S608
    " (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_CERTIFICATE_COLUMNS: Final = (
    "serial, device_id, registration_id, thumbprint, not_before, not_after, issued_at, pem,"
    " revoked_at, revocation_reason"
)
_CERTIFICATE_SELECT: Final = f"SELECT {_CERTIFICATE_COLUMNS} FROM certificates"  # noqa: S608
_CERTIFICATE_INSERT: Final = (
    f"INSERT INTO certificates ({_CERTIFICATE_COLUMNS}) VALUES"  # noqa: S608
    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_REVOKED_FILTER: Final = {
    None: "",
    True: " AND revoked_at IS NOT NULL",
    False: " AND revoked_at IS NULL",
}
#: Certificate listings differ only in their filters, fixed strings chosen by code.
_CERTIFICATE_QUERIES: Final = {
    (has_device, revoked): (
        _CERTIFICATE_SELECT
        + " WHERE serial > ?"
        + (" AND device_id = ?" if has_device else "")
        + _REVOKED_FILTER[revoked]
        + " ORDER BY serial LIMIT ?"
    )
    for has_device in (False, True)
    for revoked in (None, True, False)
}
_ALERT_COLUMNS: Final = (
    "alert_id, alert_type, severity, device_id, detector, summary, state, created_at,"
    " updated_at, last_seen_at, count, evidence, details, actions, acknowledged_by, resolved_by,"
    " version"
)
_ALERT_SELECT: Final = f"SELECT {_ALERT_COLUMNS} FROM alerts"  # noqa: S608
_ALERT_INSERT: Final = (
    f"INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES"  # noqa: S608
    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ALERT_UPDATE: Final = (
    "UPDATE alerts SET alert_type = ?, severity = ?, device_id = ?, detector = ?, summary = ?,"
    " state = ?, created_at = ?, updated_at = ?, last_seen_at = ?, count = ?, evidence = ?,"
    " details = ?, actions = ?, acknowledged_by = ?, resolved_by = ?, version = ?"
    " WHERE alert_id = ? AND version = ?"
)
#: The alert de-duplication looks at: the newest not resolved, else the newest resolved (ties
#: by id, which sorts by creation). ``device_id IS ?`` matches NULL with NULL. One statement,
#: so both lookups read the same snapshot; the first is served by the partial index
#: ``alerts_unresolved`` (its WHERE term is repeated verbatim), the second by ``alerts_by_key``.
_ALERT_FIND: Final = (
    f"{_ALERT_SELECT} WHERE alert_id = coalesce("  # noqa: S608
    "(SELECT alert_id FROM alerts WHERE alert_type = ?1 AND device_id IS ?2"
    " AND state <> 'resolved' ORDER BY created_at DESC, alert_id DESC LIMIT 1),"
    " (SELECT alert_id FROM alerts WHERE alert_type = ?1 AND device_id IS ?2"
    " AND state = 'resolved' ORDER BY created_at DESC, alert_id DESC LIMIT 1))"
)
#: Alert listings differ only in their filters, fixed strings chosen by code. With a device
#: the ``alerts_by_device`` index serves the order too.
_ALERT_QUERIES: Final = {
    (has_device, has_state): (
        _ALERT_SELECT
        + " WHERE alert_id > ?"
        + (" AND device_id = ?" if has_device else "")
        + (" AND state = ?" if has_state else "")
        + " ORDER BY alert_id LIMIT ?"
    )
    for has_device in (False, True)
    for has_state in (False, True)
}
#: The largest CRL number a 64-bit INTEGER column holds. RFC 5280 §5.2.3 allows 20 octets,
#: but the hub counts up from 1, one per re-signing: 2**63 - 1 is never reached.
_MAX_CRL_NUMBER: Final = 2**63 - 1
_TWIN_SELECT: Final = (
    "SELECT identity, tags, desired, desired_version, reported, reported_version, version,"
    " updated_at FROM twins"
)
_INSERT_TWIN: Final = (
    "INSERT INTO twins (identity, tags, desired, desired_version, reported, reported_version,"
    " version, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_TWIN: Final = (
    "UPDATE twins SET tags = ?, desired = ?, desired_version = ?, reported = ?,"
    " reported_version = ?, version = ?, updated_at = ? WHERE identity = ? AND version = ?"
)
_SESSION_SELECT: Final = (
    "SELECT client_id, subscriptions, desired_version_sent, updated_at FROM sessions"
)
_UPSERT_SESSION: Final = (
    "INSERT INTO sessions (client_id, subscriptions, desired_version_sent, updated_at)"
    " VALUES (?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET"
    " subscriptions = excluded.subscriptions,"
    " desired_version_sent = excluded.desired_version_sent,"
    " updated_at = excluded.updated_at"
)
_CLOUD_SELECT: Final = (
    "SELECT seq, identity, input_name, enqueued_at, expires_at, properties, payload,"
    " delivery_count FROM cloud_messages"
)
_INSERT_CLOUD: Final = (
    "INSERT INTO cloud_messages (identity, input_name, enqueued_at, expires_at, properties,"
    " payload, delivery_count) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
#: The identities a deletion removes, per table and column (fixed strings chosen by code).
#: ``{column} = ?`` is the identity itself; the range ``> 'd/'`` and ``< 'd0'`` is exactly the
#: identities that start with ``d/`` ('/' is 0x2F and '0' is 0x30, under SQLite's BINARY
#: collation), i.e. the modules of device ``d`` and nothing of a sibling such as ``d-2``.
_OWNED_BY: Final = "({column} = ? OR ({column} > ? AND {column} < ?))"
_DELETE_OWNED: Final = tuple(
    f"DELETE FROM {table} WHERE " + _OWNED_BY.format(column=column)  # noqa: S608
    for table, column in (
        ("devices", "device_id"),
        ("twins", "identity"),
        ("sessions", "client_id"),
        ("cloud_messages", "identity"),
        ("device_posture", "device_id"),
    )
)
#: Message queries differ only in their filters, which are fixed strings chosen by code.
_MESSAGE_QUERIES: Final = {
    (has_device, has_stream, has_since, has_until): (
        "SELECT seq, stream, device_id, enqueued_at, properties, payload FROM messages"  # noqa: S608
        " WHERE seq > ?"
        + (" AND device_id = ?" if has_device else "")
        + (" AND stream = ?" if has_stream else "")
        + (" AND enqueued_at >= ?" if has_since else "")
        + (" AND enqueued_at < ?" if has_until else "")
        + " ORDER BY seq LIMIT ?"
    )
    for has_device in (False, True)
    for has_stream in (False, True)
    for has_since in (False, True)
    for has_until in (False, True)
}

_properties_encoder = msgspec.msgpack.Encoder()
_properties_decoder = msgspec.msgpack.Decoder(tuple[tuple[str, str], ...])
_json_encoder = msgspec.json.Encoder()
_string_list_decoder = msgspec.json.Decoder(tuple[str, ...])
#: Alert evidence: a JSON array of message-log sequence numbers (integers only, no floats).
_int_list_decoder = msgspec.json.Decoder(tuple[int, ...])
#: Session subscriptions: a JSON array of ``[topic filter, QoS]`` pairs, in subscription order.
_subscriptions_decoder = msgspec.json.Decoder(tuple[tuple[str, int], ...])


@dataclass(slots=True)
class _Job:
    """A registry write to run on the writer thread in its own transaction."""

    run: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


#: Most registry writes committed in one transaction (each in its own savepoint).
_MAX_JOB_BATCH: Final = 256

# An item on the writer queue: a log entry with its future, a job, or ``None`` (stop).
_Item = tuple[LogEntry, "asyncio.Future[int]"] | _Job | None


def _map_error(exc: sqlite3.Error, action: str) -> StorageError:
    """Translate a :mod:`sqlite3` error into the ironhub tree (the seam, STYLE.md)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return CorruptDatabaseError(f"{action}: the database is corrupt: {exc}")
    return StorageError(f"{action} failed: {type(exc).__name__}: {exc}")


def _tighten_mode(path: Path) -> None:
    """Make ``path`` readable and writable by its owner only, if it exists."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return
    if mode != _FILE_MODE:
        logger.warning("tightening file mode: path=%s mode=%o new_mode=%o", path, mode, _FILE_MODE)
        path.chmod(_FILE_MODE)


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _check_header(path: Path) -> None:
    """Refuse a file that is not a complete SQLite database before SQLite touches it.

    Raises:
        CorruptDatabaseError: the file is empty, truncated or not SQLite.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        header = f.read(_HEADER_BYTES)
    if len(header) < _HEADER_BYTES:
        raise CorruptDatabaseError(
            f"{path}: {size} bytes is too short for a SQLite database (truncated?); "
            "refusing to start with empty security state"
        )
    if not header.startswith(_SQLITE_MAGIC):
        raise CorruptDatabaseError(f"{path}: not a SQLite database (foreign or corrupt file)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    change_counter = header[24:28]
    pages = int.from_bytes(header[28:32], "big")
    valid_for = header[92:96]
    wal, _ = _sidecars(path)
    wal_empty = not wal.exists() or wal.stat().st_size == 0
    # The in-header size is only meaningful when "version-valid-for" matches the change
    # counter (SQLite file format §1.3.7), and only binding while no WAL may hold later pages.
    if wal_empty and valid_for == change_counter and size < pages * page_size:
        raise CorruptDatabaseError(
            f"{path}: truncated: {size} bytes on disk, the header describes "
            f"{pages * page_size}; refusing to start"
        )


def _create_database(path: Path) -> None:
    """Build a fresh database under a temporary name, then rename it into place.

    The rename makes creation atomic: a crash leaves either no database or a complete one,
    never a half-initialised file that a later start would mistake for an empty hub.

    Raises:
        StorageError: the file cannot be created.
    """
    temporary = path.with_name(path.name + ".init")
    for leftover in (temporary, *_sidecars(temporary)):
        leftover.unlink(missing_ok=True)
    try:
        fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, _FILE_MODE)
        os.close(fd)
        conn = sqlite3.connect(temporary, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            conn.executescript(_SCHEMA)  # executescript commits the open transaction first
        finally:
            conn.close()
        temporary.replace(path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except (OSError, sqlite3.Error) as exc:
        temporary.unlink(missing_ok=True)
        raise StorageError(f"{path}: cannot create the database: {exc}") from exc
    logger.info("created database: path=%s schema_version=%d", path, SCHEMA_VERSION)


def _check_schema(conn: sqlite3.Connection, path: Path) -> int:
    """Verify that ``conn`` holds an intact ironhub database of a known schema version.

    A known version older than :data:`SCHEMA_VERSION` passes (it is migrated next, see
    :func:`_migrate`); its tables are checked against what that version had.

    Returns:
        The schema version of the file.

    Raises:
        CorruptDatabaseError: foreign, newer, unknown or damaged database.
    """
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if application_id != APPLICATION_ID:
        raise CorruptDatabaseError(
            f"{path}: not an ironhub database (application_id {application_id:#x})"
        )
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise CorruptDatabaseError(
            f"{path}: schema version {version} was written by a newer ironhub; this version "
            f"knows {SCHEMA_VERSION} and refuses to downgrade"
        )
    expected_tables = _TABLES.get(version)
    if expected_tables is None:
        raise CorruptDatabaseError(f"{path}: unknown schema version {version}")
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    missing = sorted(expected_tables - tables)
    if missing:
        raise CorruptDatabaseError(f"{path}: table(s) missing: {', '.join(missing)}")
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("application") != "ironhub" or meta.get("schema_version") != str(version):
        raise CorruptDatabaseError(f"{path}: the meta table does not match the file header")
    problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise CorruptDatabaseError(f"{path}: integrity check failed: {'; '.join(problems[:3])}")
    return version


#: The upgrade steps: ``_MIGRATIONS[v]`` turns schema version ``v`` into ``v + 1``.
_MIGRATIONS: Final = {
    1: (
        *_TABLES_V2_STATEMENTS,
        # Every identity has a twin from its creation (TwinRecord); give the existing ones
        # theirs, empty, so twin queries see them.
        (
            "INSERT INTO twins (identity, tags, desired, desired_version, reported,"
            " reported_version, version, updated_at)"
            " SELECT device_id, '{}', '{}', 1, '{}', 1, 1, updated_at FROM devices"
        ),
    ),
    2: _TABLES_V3_STATEMENTS,
    3: _TABLES_V4_STATEMENTS,
    4: _TABLES_V5_STATEMENTS,
    5: _TABLES_V6_STATEMENTS,
    6: _TABLES_V7_STATEMENTS,
}


def _migrate(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """Upgrade a database of an older known schema to :data:`SCHEMA_VERSION`, in place.

    Every step and the version bump (``PRAGMA user_version`` and ``meta.schema_version``) run
    in one ``BEGIN IMMEDIATE`` transaction: a crash or an error leaves the file exactly as the
    previous release wrote it, never half-migrated. The version is read again inside the
    transaction, so a second process that migrated first is noticed, not repeated.

    Raises:
        CorruptDatabaseError: the version changed under us to one this code cannot migrate.
        sqlite3.Error: a statement failed (rolled back; mapped by the caller).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        current: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if current == SCHEMA_VERSION:
            conn.execute("ROLLBACK")
            return
        if current != version:
            raise CorruptDatabaseError(
                f"{path}: schema version changed from {version} to {current} while opening"
            )
        for step in range(current, SCHEMA_VERSION):
            for statement in _MIGRATIONS[step]:
                conn.execute(statement)
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
        )
        # PRAGMA takes no parameters; SCHEMA_VERSION is a module constant.
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    logger.warning(
        "migrated database schema: path=%s from_version=%d to_version=%d",
        path,
        version,
        SCHEMA_VERSION,
    )


def _prepare_writer(conn: sqlite3.Connection, path: Path, synchronous: str) -> int:
    """Verify the database, migrate an older schema, switch to WAL; the next sequence number.

    Raises:
        CorruptDatabaseError: see :func:`_check_schema`.
        StorageError: WAL mode cannot be enabled.
        sqlite3.Error: a pragma or the migration failed (mapped by the caller).
    """
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA trusted_schema = OFF")
    # The migration runs with the strongest durability whatever the configured mode: it is
    # rare, and the file must not lose it.
    conn.execute("PRAGMA synchronous = FULL")
    version = _check_schema(conn, path)
    if version < SCHEMA_VERSION:
        _migrate(conn, path, version)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StorageError(f"{path}: WAL mode unavailable (journal_mode={mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    next_seq: int = conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM messages").fetchone()[0]
    for sidecar in _sidecars(path):
        _tighten_mode(sidecar)
    return next_seq


def _device_row(record: DeviceRecord) -> tuple[Any, ...]:
    return (
        record.device_id,
        record.auth_kind.value,
        record.state.value,
        record.created_at,
        record.updated_at,
        record.version,
        record.primary_key_sealed,
        record.secondary_key_sealed,
        record.primary_thumbprint,
        record.secondary_thumbprint,
        _json_encoder.encode(record.certificates_pem).decode(),
    )


def _device_from_row(row: Sequence[Any]) -> DeviceRecord:
    """Rebuild a record; a value this code cannot read means the database is damaged.

    Raises:
        CorruptDatabaseError: a column holds an unknown enum value or malformed JSON.
    """
    try:
        return DeviceRecord(
            device_id=row[0],
            auth_kind=AuthKind(row[1]),
            state=DeviceState(row[2]),
            created_at=row[3],
            updated_at=row[4],
            version=row[5],
            primary_key_sealed=row[6],
            secondary_key_sealed=row[7],
            primary_thumbprint=row[8],
            secondary_thumbprint=row[9],
            certificates_pem=_string_list_decoder.decode(row[10]),
        )
    except (ValueError, msgspec.DecodeError) as exc:
        raise CorruptDatabaseError(f"device row cannot be decoded: {exc}") from exc


_PROFILE_SELECT: Final = "SELECT name, document, created_at, updated_at, version FROM profiles"
_POSTURE_SELECT: Final = "SELECT device_id, kind, seq, received_at, document FROM device_posture"


def _profile_from_row(row: tuple[Any, ...]) -> ProfileRecord:
    return ProfileRecord(
        name=row[0], document=row[1], created_at=row[2], updated_at=row[3], version=row[4]
    )


def _posture_from_row(row: tuple[Any, ...]) -> PostureRecord:
    return PostureRecord(
        device_id=row[0], kind=row[1], seq=row[2], received_at=row[3], document=row[4]
    )


def _owned_range(identity: str) -> tuple[str, str, str]:
    """The parameters of :data:`_OWNED_BY` for deleting ``identity`` and what it owns.

    A device ``d`` owns the identities strictly between ``d/`` and ``d0``: exactly those that
    start with ``d/``. A module owns nothing else; the bounds ``(identity, identity)`` make an
    empty range.
    """
    if "/" in identity:
        return identity, identity, identity
    return identity, identity + "/", identity + "0"


def _twin_row(record: TwinRecord) -> tuple[Any, ...]:
    return (
        record.identity,
        record.tags,
        record.desired,
        record.desired_version,
        record.reported,
        record.reported_version,
        record.version,
        record.updated_at,
    )


def _twin_from_row(row: Sequence[Any]) -> TwinRecord:
    return TwinRecord(
        identity=row[0],
        tags=row[1],
        desired=row[2],
        desired_version=row[3],
        reported=row[4],
        reported_version=row[5],
        version=row[6],
        updated_at=row[7],
    )


def _session_from_row(row: Sequence[Any]) -> SessionRecord:
    """Rebuild a session.

    Raises:
        CorruptDatabaseError: the subscriptions are not a JSON array of [filter, QoS] pairs.
    """
    try:
        subscriptions = _subscriptions_decoder.decode(row[1])
    except msgspec.DecodeError as exc:
        raise CorruptDatabaseError(f"session row cannot be decoded: {exc}") from exc
    return SessionRecord(
        client_id=row[0],
        subscriptions=subscriptions,
        desired_version_sent=row[2],
        updated_at=row[3],
    )


def _cloud_message_from_row(row: Sequence[Any]) -> CloudMessage:
    """Rebuild a queued cloud-to-device message.

    Raises:
        CorruptDatabaseError: the property bag cannot be decoded.
    """
    try:
        properties = _properties_decoder.decode(row[5]) if row[5] is not None else ()
    except msgspec.DecodeError as exc:
        raise CorruptDatabaseError(f"cloud message {row[0]} cannot be decoded: {exc}") from exc
    return CloudMessage(
        seq=row[0],
        identity=row[1],
        input_name=row[2],
        enqueued_at=row[3],
        expires_at=row[4],
        payload=row[6],
        properties=properties,
        delivery_count=row[7],
    )


def _token_from_row(row: Sequence[Any]) -> TokenRecord:
    return TokenRecord(
        token_id=row[0],
        name=row[1],
        token_hash=row[2],
        roles=_split_roles(row[3]),
        created_at=row[4],
        expires_at=row[5],
        revoked=bool(row[6]),
        kind=TokenKind(row[7]),
        operator=row[8],
        last_used_at=row[9],
        must_rotate=bool(row[10]),
    )


def _split_roles(text: str) -> tuple[str, ...]:
    return tuple(name for name in text.split(",") if name)


def _join_roles(roles: Sequence[str]) -> str:
    if any("," in name for name in roles):
        raise ValueError("a role name contains a comma")
    return ",".join(roles)


def _json_list(values: Sequence[str]) -> str:
    return msgspec.json.encode(list(values)).decode("utf-8")


def _operator_from_row(row: Sequence[Any]) -> OperatorRecord:
    try:
        history = tuple(msgspec.json.decode(row[4], type=list[str]))
        allow_list = tuple(msgspec.json.decode(row[10], type=list[str]))
        known = tuple(msgspec.json.decode(row[11], type=list[str]))
    except msgspec.DecodeError:
        raise CorruptDatabaseError(f"operator {row[0]!r}: malformed stored list") from None
    return OperatorRecord(
        name=row[0],
        password_hash=row[1],
        password_changed_at=row[2],
        one_time=bool(row[3]),
        password_history=history,
        totp_secret_sealed=row[5],
        totp_pending_sealed=row[6],
        totp_last_step=row[7],
        roles=_split_roles(row[8]),
        disabled=bool(row[9]),
        allow_list=allow_list,
        known_networks=known,
        last_login_at=row[12],
        created_at=row[13],
        version=row[14],
    )


def _operator_values(record: OperatorRecord) -> tuple[Any, ...]:
    """The columns after ``name``, in :data:`_OPERATOR_COLUMNS` order."""
    return (
        record.password_hash,
        record.password_changed_at,
        int(record.one_time),
        _json_list(record.password_history),
        record.totp_secret_sealed,
        record.totp_pending_sealed,
        record.totp_last_step,
        _join_roles(record.roles),
        int(record.disabled),
        _json_list(record.allow_list),
        _json_list(record.known_networks),
        record.last_login_at,
        record.created_at,
        record.version,
    )


def _flag(value: object, what: str) -> bool:
    """Read a stored 0/1 flag strictly.

    A security flag (``revoked``, ``enabled``) holding anything else is damage, not a value to
    guess at.

    Raises:
        CorruptDatabaseError: the value is neither 0 nor 1.
    """
    if value in (0, 1):
        return bool(value)
    raise CorruptDatabaseError(f"{what}: a stored flag is neither 0 nor 1")


def _enrollment_values(record: EnrollmentRecord) -> tuple[Any, ...]:
    """The columns after the key ``(grp, enrollment_id)``, in :data:`_ENROLLMENT_COLUMNS` order."""
    return (
        record.attestation.value,
        int(record.enabled),
        record.created_at,
        record.updated_at,
        record.version,
        record.primary_key_sealed,
        record.secondary_key_sealed,
        _json_encoder.encode(record.certificates_pem).decode(),
        record.device_id,
        record.initial_twin,
        record.allocation_payload,
        record.reprovision.value,
    )


def _enrollment_from_row(row: Sequence[Any]) -> EnrollmentRecord:
    """Rebuild an enrollment.

    Raises:
        CorruptDatabaseError: a column holds an unknown enum value, a flag other than 0/1 or
            malformed JSON.
    """
    what = f"enrollment {row[1]!r}"
    try:
        return EnrollmentRecord(
            enrollment_id=row[1],
            group=_flag(row[0], what),
            attestation=Attestation(row[2]),
            enabled=_flag(row[3], what),
            created_at=row[4],
            updated_at=row[5],
            version=row[6],
            primary_key_sealed=row[7],
            secondary_key_sealed=row[8],
            certificates_pem=_string_list_decoder.decode(row[9]),
            device_id=row[10],
            initial_twin=row[11],
            allocation_payload=row[12],
            reprovision=ReprovisionPolicy(row[13]),
        )
    except (ValueError, msgspec.DecodeError) as exc:
        raise CorruptDatabaseError(f"{what} cannot be decoded: {exc}") from exc


def _registration_row(record: RegistrationRecord) -> tuple[Any, ...]:
    return (
        record.registration_id,
        record.enrollment_id,
        int(record.group),
        record.device_id,
        record.status,
        record.substatus,
        record.created_at,
        record.updated_at,
        record.version,
        record.error_code,
        record.error_message,
        record.certificate_serial,
    )


def _registration_from_row(row: Sequence[Any]) -> RegistrationRecord:
    """Rebuild a registration state.

    Raises:
        CorruptDatabaseError: the group flag is neither 0 nor 1.
    """
    return RegistrationRecord(
        registration_id=row[0],
        enrollment_id=row[1],
        group=_flag(row[2], f"registration {row[0]!r}"),
        device_id=row[3],
        status=row[4],
        substatus=row[5],
        created_at=row[6],
        updated_at=row[7],
        version=row[8],
        error_code=row[9],
        error_message=row[10],
        certificate_serial=row[11],
    )


def _claim_token_row(record: ClaimTokenRecord) -> tuple[Any, ...]:
    return (
        record.token_id,
        record.group_id,
        record.token_hash,
        record.max_uses,
        record.uses,
        record.created_at,
        record.expires_at,
        record.created_by,
        int(record.revoked),
    )


def _claim_token_from_row(row: Sequence[Any]) -> ClaimTokenRecord:
    """Rebuild a claim token.

    Raises:
        CorruptDatabaseError: the revoked flag is neither 0 nor 1.
    """
    return ClaimTokenRecord(
        token_id=row[0],
        group_id=row[1],
        token_hash=row[2],
        max_uses=row[3],
        uses=row[4],
        created_at=row[5],
        expires_at=row[6],
        created_by=row[7],
        revoked=_flag(row[8], f"claim token {row[0]!r}"),
    )


def _certificate_row(record: IssuedCertificateRecord) -> tuple[Any, ...]:
    return (
        record.serial,
        record.device_id,
        record.registration_id,
        record.thumbprint,
        record.not_before,
        record.not_after,
        record.issued_at,
        record.pem,
        record.revoked_at,
        record.revocation_reason,
    )


def _certificate_from_row(row: Sequence[Any]) -> IssuedCertificateRecord:
    return IssuedCertificateRecord(
        serial=row[0],
        device_id=row[1],
        registration_id=row[2],
        thumbprint=row[3],
        not_before=row[4],
        not_after=row[5],
        issued_at=row[6],
        pem=row[7],
        revoked_at=row[8],
        revocation_reason=row[9],
    )


def _alert_values(record: AlertRecord) -> tuple[Any, ...]:
    """The columns after the key ``alert_id``, in :data:`_ALERT_COLUMNS` order."""
    return (
        record.alert_type,
        record.severity,
        record.device_id,
        record.detector,
        record.summary,
        record.state.value,
        record.created_at,
        record.updated_at,
        record.last_seen_at,
        record.count,
        _json_encoder.encode(record.evidence).decode(),
        record.details,
        _json_encoder.encode(record.actions).decode(),
        record.acknowledged_by,
        record.resolved_by,
        record.version,
    )


def _alert_from_row(row: Sequence[Any]) -> AlertRecord:
    """Rebuild an alert.

    Raises:
        CorruptDatabaseError: the state is unknown, or the evidence or actions are not a JSON
            array of integers or of strings.
    """
    try:
        return AlertRecord(
            alert_id=row[0],
            alert_type=row[1],
            severity=row[2],
            device_id=row[3],
            detector=row[4],
            summary=row[5],
            state=AlertState(row[6]),
            created_at=row[7],
            updated_at=row[8],
            last_seen_at=row[9],
            count=row[10],
            evidence=_int_list_decoder.decode(row[11]),
            details=row[12],
            actions=_string_list_decoder.decode(row[13]),
            acknowledged_by=row[14],
            resolved_by=row[15],
            version=row[16],
        )
    except (ValueError, msgspec.DecodeError) as exc:
        raise CorruptDatabaseError(f"alert {row[0]!r} cannot be decoded: {exc}") from exc


def _message_from_row(row: Sequence[Any]) -> StoredMessage:
    """Rebuild a stored message.

    Raises:
        CorruptDatabaseError: the stream or the property bag cannot be decoded.
    """
    try:
        properties = _properties_decoder.decode(row[4]) if row[4] is not None else ()
        return StoredMessage(
            seq=row[0],
            stream=Stream(row[1]),
            device_id=row[2],
            enqueued_at=row[3],
            payload=row[5],
            properties=properties,
        )
    except (ValueError, msgspec.DecodeError) as exc:
        raise CorruptDatabaseError(f"message {row[0]} cannot be decoded: {exc}") from exc


def _insert_parameters(first_seq: int, entries: list[LogEntry]) -> list[object]:
    """The parameters of a batch's rows, flat, in column order (writer thread)."""
    encode = _properties_encoder.encode
    text = _STREAM_TEXT
    params: list[object] = []
    extend = params.extend
    seq = first_seq
    for e in entries:
        properties = e.properties
        extend(
            (
                seq,
                text[e.stream],
                e.device_id,
                e.enqueued_at,
                encode(properties) if properties else None,
                e.payload,
                e.packet_id,
                e.digest,
            )
        )
        seq += 1
    return params


def _insert_rows(conn: sqlite3.Connection, params: list[object], count: int) -> None:
    """Insert ``count`` rows whose flat ``params`` are given, in chunks (writer thread)."""
    done = 0
    for rows in _INSERT_CHUNKS:
        if count - done < rows:
            continue
        sql = _INSERT_MESSAGES[rows]
        width = rows * _MESSAGE_COLUMNS
        while count - done >= rows:
            start = done * _MESSAGE_COLUMNS
            conn.execute(sql, params[start : start + width])
            done += rows


def _deliver_batch(
    futures: list[asyncio.Future[int]],
    first_seq: int,
    entries: list[LogEntry],
    listeners: Sequence[CommitListener],
) -> None:
    """Resolve a committed batch's futures in order, then tell the commit listeners.

    Runs on the event loop, once per batch.
    """
    seq = first_seq
    for future in futures:
        if not future.done():  # the caller may have cancelled it; the entry is stored anyway
            future.set_result(seq)
        seq += 1
    for listener in listeners:
        try:
            listener(first_seq, entries)
        except Exception:  # listener boundary: one bad consumer must not stop the others
            logger.exception("commit listener failed: first_seq=%d", first_seq)


def _fail_futures(futures: Sequence[asyncio.Future[Any]], error: BaseException) -> None:
    """Fail the futures that nobody cancelled (runs on the event loop)."""
    for future in futures:
        if not future.done():
            future.set_exception(error)


def _settle(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    """Complete a job's future (runs on the event loop)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SQLiteStorage:
    """The :class:`~ironhub.storage.interfaces.Storage` backend of the embedded profile.

    Args:
        path: the database file; its directory must exist. Created on first :meth:`open`.
        config: batch size and ``synchronous`` mode.
        clock: times the commits.
        metrics: when given, ``commit_batch_size`` and ``commit_seconds`` are observed.
    """

    def __init__(
        self,
        path: Path,
        config: StorageConfig,
        clock: Clock,
        metrics: Metrics | None = None,
    ) -> None:
        self._path = path
        self._config = config
        self._clock = clock
        self._metrics = metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_stopped: ThreadFuture[None] = ThreadFuture()
        self._readers: ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._listeners: list[CommitListener] = []
        self._accepting = False
        self._next_seq: int | None = None
        # Statistics: written by the writer thread only, read anywhere.
        self._commits = 0
        self._failed_commits = 0
        self._committed_entries = 0
        self._last_batch_size = 0
        self._last_commit_seconds = 0.0

    # --- life cycle -----------------------------------------------------------------------
    async def open(self) -> None:
        """Open the database, creating it on first use, and start the writer thread.

        Raises:
            CorruptDatabaseError: the file is not an intact ironhub database of a known schema.
            StorageError: the database cannot be opened or created, or is already open.
        """
        if self._loop is not None:
            raise StorageError("storage is already open")
        if self._config.synchronous not in _SYNCHRONOUS_MODES:
            raise StorageError(f"synchronous={self._config.synchronous!r} is not supported")
        self._loop = asyncio.get_running_loop()
        ready: ThreadFuture[None] = ThreadFuture()
        self._queue = queue.SimpleQueue()
        self._writer_stopped = ThreadFuture()
        self._writer = threading.Thread(
            target=self._writer_main, args=(ready,), name="ironhub-sqlite-writer", daemon=True
        )
        self._writer.start()
        try:
            await asyncio.wrap_future(ready)
        except BaseException:
            self._queue.put(None)  # if open() was cancelled after the writer came up
            self._loop = None
            raise
        self._readers = ThreadPoolExecutor(
            max_workers=_READER_THREADS, thread_name_prefix="ironhub-sqlite-reader"
        )
        self._accepting = True
        logger.info(
            "storage open: path=%s synchronous=%s max_commit_batch=%d next_seq=%s",
            self._path,
            self._config.synchronous,
            self._config.max_commit_batch,
            self._next_seq,
        )

    async def close(self) -> None:
        """Commit every queued append, stop the writer and close all connections.

        Raises:
            StorageError: never in practice; queued entries whose commit fails have their
                futures failed instead.
        """
        if not self._accepting:
            return
        self._accepting = False
        self._queue.put(None)
        await asyncio.wrap_future(self._writer_stopped)
        readers, self._readers = self._readers, None
        if readers is not None:
            await asyncio.to_thread(self._close_readers, readers)
        logger.info("storage closed: path=%s", self._path)

    def _close_readers(self, readers: ThreadPoolExecutor) -> None:
        readers.shutdown(wait=True)
        with self._reader_lock:
            connections, self._reader_connections = self._reader_connections, []
        for conn in connections:
            conn.close()

    def _require_open(self) -> asyncio.AbstractEventLoop:
        if not self._accepting or self._loop is None:
            raise StorageError("storage is not open")
        return self._loop

    # --- the writer thread ----------------------------------------------------------------
    def _open_writer_connection(self) -> sqlite3.Connection:
        """Create or open the database and verify it (writer thread).

        Raises:
            CorruptDatabaseError: see :meth:`open`.
            StorageError: the file cannot be opened.
        """
        path = self._path
        try:
            if not path.exists():
                _create_database(path)
            _check_header(path)
            _tighten_mode(path)
            conn = sqlite3.connect(path, isolation_level=None)
        except OSError as exc:
            raise StorageError(f"{path}: cannot open the database: {exc}") from exc
        except sqlite3.Error as exc:
            raise _map_error(exc, f"{path}: open") from exc
        try:
            self._next_seq = _prepare_writer(conn, path, self._config.synchronous)
        except sqlite3.Error as exc:
            conn.close()
            raise _map_error(exc, f"{path}: open") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _writer_main(self, ready: ThreadFuture[None]) -> None:
        """The writer thread: open, then serve the queue until the stop marker."""
        try:
            conn = self._open_writer_connection()
        except BaseException as exc:  # noqa: BLE001 - handed to open(), which re-raises it
            ready.set_exception(exc)
            self._writer_stopped.set_result(None)
            return
        ready.set_result(None)
        try:
            self._serve(conn)
        finally:
            conn.close()
            self._fail_leftovers()
            self._writer_stopped.set_result(None)

    def _serve(self, conn: sqlite3.Connection) -> None:
        # An item taken from the queue that belongs to the next round (a job after log
        # entries, or the other way round): order on the queue is order of commits.
        carry: list[_Item] = []
        while True:
            item = carry.pop() if carry else self._queue.get()
            entries, futures, jobs, stop = self._take_round(item, carry)
            if entries:
                self._commit_batch(conn, entries, futures)
            if jobs:
                self._run_jobs(conn, jobs)
            if stop:
                return

    def _take_round(
        self, item: _Item, carry: list[_Item]
    ) -> tuple[list[LogEntry], list[asyncio.Future[int]], list[_Job], bool]:
        """Take what one commit holds: a run of log entries or a run of jobs (writer thread).

        Returns the entries with their futures, the jobs, and whether the stop marker came;
        the first item of the other kind is left in ``carry`` for the next round.
        """
        max_batch = max(1, self._config.max_commit_batch)
        entries: list[LogEntry] = []
        futures: list[asyncio.Future[int]] = []
        jobs: list[_Job] = []
        while True:
            if item is None:
                return entries, futures, jobs, True
            if isinstance(item, _Job):
                if entries:
                    carry.append(item)
                    break
                jobs.append(item)
                if len(jobs) >= _MAX_JOB_BATCH:
                    break
            else:
                if jobs:
                    carry.append(item)
                    break
                entries.append(item[0])
                futures.append(item[1])
                if len(entries) >= max_batch:
                    break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        return entries, futures, jobs, False

    def _commit_batch(
        self,
        conn: sqlite3.Connection,
        entries: list[LogEntry],
        futures: list[asyncio.Future[int]],
    ) -> None:
        """Insert and commit one batch, then resolve or fail its futures (writer thread)."""
        started = self._clock.monotonic()
        try:
            first_seq = self._next_seq
            if first_seq is None:
                first_seq = conn.execute(
                    "SELECT coalesce(max(seq), 0) + 1 FROM messages"
                ).fetchone()[0]
            params = _insert_parameters(first_seq, entries)
            conn.execute("BEGIN IMMEDIATE")
            _insert_rows(conn, params, len(entries))
            conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - writer task boundary: fail the batch, keep serving
            self._abandon_batch(conn, futures, exc)
            return
        elapsed = self._clock.monotonic() - started
        size = len(entries)
        self._next_seq = first_seq + size
        self._commits += 1
        self._committed_entries += size
        self._last_batch_size = size
        self._last_commit_seconds = elapsed
        if self._metrics is not None:
            self._metrics.commit_batch_size.observe(size)
            self._metrics.commit_seconds.observe(elapsed)
        self._call_loop(_deliver_batch, futures, first_seq, entries, tuple(self._listeners))

    def _abandon_batch(
        self,
        conn: sqlite3.Connection,
        futures: list[asyncio.Future[int]],
        exc: Exception,
    ) -> None:
        """Roll back a failed batch and fail all of its futures (writer thread)."""
        self._rollback(conn)
        self._next_seq = None  # re-read before the next batch: the commit may have landed
        self._failed_commits += 1
        error = (
            _map_error(exc, "commit")
            if isinstance(exc, sqlite3.Error)
            else StorageError(f"commit failed: {type(exc).__name__}")
        )
        if isinstance(exc, sqlite3.Error):
            logger.error("group commit failed: entries=%d error=%s", len(futures), exc)
        else:
            logger.error("group commit failed unexpectedly: entries=%d", len(futures), exc_info=exc)
        self._call_loop(_fail_futures, futures, error)

    def _run_jobs(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        """Run queued registry writes in one transaction, each in its own savepoint.

        Group commit for jobs: one fsync for every write that queued meanwhile (provisioning
        makes several per device). Each job stays atomic on its own (a failing one is rolled
        back to its savepoint and fails alone), and every future is settled only after the
        COMMIT, so a write is reported done only once it is durable (writer thread).
        """
        outcomes: list[tuple[object, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in jobs:
                conn.execute("SAVEPOINT job")
                try:
                    result = job.run(conn)
                except Exception as exc:  # noqa: BLE001 - one job's boundary: it fails alone
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((None, self._job_error(exc)))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((result, None))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            failure = _map_error(exc, "write")
            for job in jobs:
                self._call_loop(_settle, job.future, None, failure)
            return
        for job, (result, error) in zip(jobs, outcomes, strict=True):
            self._call_loop(_settle, job.future, result, error)

    @staticmethod
    def _job_error(exc: Exception) -> BaseException:
        """What a failed job's caller is told."""
        if isinstance(exc, IronhubError):
            return exc
        if isinstance(exc, sqlite3.Error):
            return _map_error(exc, "write")
        logger.error("storage job failed unexpectedly", exc_info=exc)
        return StorageError(f"write failed: {type(exc).__name__}")

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                logger.exception("rollback failed")

    def _call_loop(self, callback: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None:  # pragma: no cover - the writer only runs while open
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            # The loop was closed without close(): nobody is left to receive the result.
            logger.warning("event loop closed; dropping a storage result")

    def _fail_leftovers(self) -> None:
        """Fail whatever is still queued once the writer stops (writer thread)."""
        error = StorageError("storage is closed")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Job):
                self._call_loop(_settle, item.future, None, error)
            elif item is not None:
                self._call_loop(_fail_futures, [item[1]], error)

    async def _write(self, run: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``run`` on the writer thread in a transaction and return its result.

        Raises:
            StorageError: storage is closed or the write failed.
            RegistryError: whatever ``run`` raised on purpose (conflicts, not found).
        """
        loop = self._require_open()
        future: asyncio.Future[_T] = loop.create_future()
        self._queue.put(_Job(run, future))
        return await future

    # --- readers --------------------------------------------------------------------------
    def _reader_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA trusted_schema = OFF")
            conn.execute("PRAGMA query_only = ON")
            self._reader_local.conn = conn
            with self._reader_lock:
                self._reader_connections.append(conn)
        return conn

    def _run_read(self, run: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return run(self._reader_connection())
        except sqlite3.Error as exc:
            raise _map_error(exc, "read") from exc

    async def _read(self, run: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``run`` on a reader thread.

        Raises:
            StorageError: storage is closed or the read failed.
        """
        loop = self._require_open()
        return await loop.run_in_executor(self._readers, self._run_read, run)

    # --- registry -------------------------------------------------------------------------
    async def insert_device(self, record: DeviceRecord) -> None:
        """Insert a device, or a module (``d/m``) of an existing device ``d``.

        A module's parent is checked in the insert's transaction, so a module can never
        outlive a device deleted concurrently (it would keep credentials of a deleted device).

        Raises:
            ConflictError: an identity with this id exists.
            NotFoundError: the record is a module whose device does not exist.
            StorageError: the write failed.
        """
        row = _device_row(record)
        parent, slash, _ = record.device_id.partition("/")

        def run(conn: sqlite3.Connection) -> None:
            if slash and (
                conn.execute("SELECT 1 FROM devices WHERE device_id = ?", (parent,)).fetchone()
                is None
            ):
                raise NotFoundError(f"device {parent!r} does not exist")
            try:
                conn.execute(_INSERT_DEVICE, row)
            except sqlite3.IntegrityError:
                raise ConflictError(f"identity {record.device_id!r} already exists") from None

        await self._write(run)

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        """The device or module with this identity key, or ``None``.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> DeviceRecord | None:
            row = conn.execute(_DEVICE_SELECT + " WHERE device_id = ?", (device_id,)).fetchone()
            return None if row is None else _device_from_row(row)

        return await self._read(run)

    async def list_devices(
        self, *, after: str = "", limit: int = 100, include_modules: bool = False
    ) -> list[DeviceRecord]:
        """Devices ordered by id, starting after ``after``; at most ``limit``.

        Modules (``d/m``) only with ``include_modules``, in the same identity-key order.

        Raises:
            StorageError: the read failed.
        """
        if limit < 1:
            return []

        def run(conn: sqlite3.Connection) -> list[DeviceRecord]:
            rows = conn.execute(
                _LIST_IDENTITIES if include_modules else _LIST_DEVICES, (after, limit)
            ).fetchall()
            return [_device_from_row(row) for row in rows]

        return await self._read(run)

    async def list_modules(self, device_id: str) -> list[DeviceRecord]:
        """The modules of device ``device_id`` (records ``d/m``), ordered by id.

        Raises:
            StorageError: the read failed.
        """
        if "/" in device_id:
            return []  # a module has no modules

        def run(conn: sqlite3.Connection) -> list[DeviceRecord]:
            rows = conn.execute(
                _DEVICE_SELECT + " WHERE device_id > ? AND device_id < ? ORDER BY device_id",
                (device_id + "/", device_id + "0"),
            ).fetchall()
            return [_device_from_row(row) for row in rows]

        return await self._read(run)

    async def update_device(self, record: DeviceRecord, *, expected_version: int) -> None:
        """Replace a device if its stored version equals ``expected_version``.

        Raises:
            ValueError: ``record.version`` is not ``expected_version + 1`` (a caller bug).
            ConflictError: the stored version differs.
            NotFoundError: the device does not exist.
            StorageError: the write failed.
        """
        if record.version != expected_version + 1:
            raise ValueError("record.version must be expected_version + 1")
        row = _device_row(record)

        def run(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(_UPDATE_DEVICE, (*row[1:], record.device_id, expected_version))
            if cursor.rowcount == 1:
                return
            found = conn.execute(
                "SELECT version FROM devices WHERE device_id = ?", (record.device_id,)
            ).fetchone()
            if found is None:
                raise NotFoundError(f"device {record.device_id!r} does not exist")
            raise ConflictError(
                f"device {record.device_id!r} is at version {found[0]}, not {expected_version}"
            )

        await self._write(run)

    async def delete_device(self, device_id: str) -> bool:
        """Delete an identity and everything it owns, in one transaction.

        A device ``d`` owns its modules ``d/*``; every deleted identity owns its twin, its
        session and its queued cloud messages. Leftovers of an identity that is already gone
        (a twin written concurrently with an earlier deletion) are removed as well.

        Returns:
            Whether the identity ``device_id`` itself existed.

        Raises:
            StorageError: the write failed.
        """
        params = _owned_range(device_id)

        def run(conn: sqlite3.Connection) -> bool:
            existed = (
                conn.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)).fetchone()
                is not None
            )
            for sql in _DELETE_OWNED:
                conn.execute(sql, params)
            return existed

        return await self._write(run)

    # --- twins ----------------------------------------------------------------------------
    async def get_twin(self, identity: str) -> TwinRecord | None:
        """The twin of ``identity``, or ``None``.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> TwinRecord | None:
            row = conn.execute(_TWIN_SELECT + " WHERE identity = ?", (identity,)).fetchone()
            return None if row is None else _twin_from_row(row)

        return await self._read(run)

    async def put_twin(self, record: TwinRecord, *, expected_version: int | None) -> None:
        """Insert a twin (``expected_version=None``) or replace it if its version matches.

        Raises:
            ConflictError: inserting a twin that exists, or the stored version differs.
            NotFoundError: replacing a twin that does not exist.
            StorageError: the write failed.
        """
        row = _twin_row(record)

        def run(conn: sqlite3.Connection) -> None:
            if expected_version is None:
                try:
                    conn.execute(_INSERT_TWIN, row)
                except sqlite3.IntegrityError:
                    raise ConflictError(f"twin {record.identity!r} already exists") from None
                return
            cursor = conn.execute(_UPDATE_TWIN, (*row[1:], record.identity, expected_version))
            if cursor.rowcount == 1:
                return
            found = conn.execute(
                "SELECT version FROM twins WHERE identity = ?", (record.identity,)
            ).fetchone()
            if found is None:
                raise NotFoundError(f"twin {record.identity!r} does not exist")
            raise ConflictError(
                f"twin {record.identity!r} is at version {found[0]}, not {expected_version}"
            )

        await self._write(run)

    async def list_twins(self, *, after: str = "", limit: int = 100) -> list[TwinRecord]:
        """Twins of devices and modules ordered by identity, after ``after``; at most ``limit``.

        Raises:
            StorageError: the read failed.
        """
        if limit < 1:
            return []

        def run(conn: sqlite3.Connection) -> list[TwinRecord]:
            rows = conn.execute(
                _TWIN_SELECT + " WHERE identity > ? ORDER BY identity LIMIT ?", (after, limit)
            ).fetchall()
            return [_twin_from_row(row) for row in rows]

        return await self._read(run)

    # --- audit log --------------------------------------------------------------------------
    async def append_audit(self, records: Sequence[tuple[int, bytes, bytes]]) -> None:
        """Append audit records ``(seq, hash, body)`` in one transaction; committed on return.

        Raises:
            ConflictError: a seq is already stored (the log is append-only).
            StorageError: the write failed.
        """
        rows = list(records)

        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.executemany(
                    "INSERT INTO audit_records (seq, hash, body) VALUES (?, ?, ?)", rows
                )
            except sqlite3.IntegrityError:
                raise ConflictError("an audit record with this position exists") from None

        await self._write(run)

    async def read_audit(
        self, *, after_seq: int = -1, limit: int = 1000
    ) -> list[tuple[int, bytes, bytes]]:
        """Audit records with ``seq > after_seq`` in order; at most ``limit``.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> list[tuple[int, bytes, bytes]]:
            rows = conn.execute(
                "SELECT seq, hash, body FROM audit_records WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, max(0, limit)),
            ).fetchall()
            return [(int(r[0]), bytes(r[1]), bytes(r[2])) for r in rows]

        return await self._read(run)

    async def audit_hashes(self) -> list[bytes]:
        """Every audit record hash in seq order.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> list[bytes]:
            return [
                bytes(row[0]) for row in conn.execute("SELECT hash FROM audit_records ORDER BY seq")
            ]

        return await self._read(run)

    async def put_audit_checkpoint(self, tree_size: int, body: str) -> None:
        """Store a signed checkpoint for ``tree_size``; committed on return.

        Raises:
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO audit_checkpoints (tree_size, body) VALUES (?, ?)",
                (tree_size, body),
            )

        await self._write(run)

    async def audit_checkpoints(self) -> list[tuple[int, str]]:
        """Every stored checkpoint, smallest tree first.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            return [
                (int(row[0]), str(row[1]))
                for row in conn.execute(
                    "SELECT tree_size, body FROM audit_checkpoints ORDER BY tree_size"
                )
            ]

        return await self._read(run)

    # --- persistent sessions --------------------------------------------------------------
    async def get_session(self, client_id: str) -> SessionRecord | None:
        """The stored session of ``client_id``, or ``None``.

        Raises:
            CorruptDatabaseError: the stored subscriptions cannot be decoded.
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> SessionRecord | None:
            row = conn.execute(_SESSION_SELECT + " WHERE client_id = ?", (client_id,)).fetchone()
            return None if row is None else _session_from_row(row)

        return await self._read(run)

    async def put_session(self, record: SessionRecord) -> None:
        """Insert or replace the session of ``record.client_id``; committed on return.

        Raises:
            StorageError: the write failed.
        """
        row = (
            record.client_id,
            _json_encoder.encode(record.subscriptions).decode(),
            record.desired_version_sent,
            record.updated_at,
        )

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(_UPSERT_SESSION, row)

        await self._write(run)

    async def delete_session(self, client_id: str) -> bool:
        """Forget a session; ``False`` if there was none.

        Raises:
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute("DELETE FROM sessions WHERE client_id = ?", (client_id,))
            return cursor.rowcount == 1

        return await self._write(run)

    # --- cloud-to-device queue ------------------------------------------------------------
    async def enqueue_cloud_message(self, message: CloudMessage, *, max_pending: int) -> int:
        """Queue a message (its ``seq`` is ignored); the assigned ``seq``, committed on return.

        The count and the insert share one writer transaction, so concurrent senders cannot
        overfill a queue. Sequence numbers are never reused (``AUTOINCREMENT``).

        Raises:
            QueueFullError: ``message.identity`` already holds ``max_pending`` messages.
            StorageError: the write failed.
        """
        row = (
            message.identity,
            message.input_name,
            message.enqueued_at,
            message.expires_at,
            _properties_encoder.encode(message.properties) if message.properties else None,
            message.payload,
            message.delivery_count,
        )

        def run(conn: sqlite3.Connection) -> int:
            pending: int = conn.execute(
                "SELECT count(*) FROM cloud_messages WHERE identity = ?", (message.identity,)
            ).fetchone()[0]
            if pending >= max_pending:
                raise QueueFullError(
                    f"the cloud-to-device queue of {message.identity!r} holds {pending} "
                    f"messages (maximum {max_pending})"
                )
            seq = conn.execute(_INSERT_CLOUD, row).lastrowid
            if seq is None:  # pragma: no cover - an INSERT into a rowid table always sets it
                raise StorageError("enqueue did not assign a sequence number")
            return seq

        return await self._write(run)

    async def list_cloud_messages(self, identity: str, *, limit: int = 100) -> list[CloudMessage]:
        """The queued messages of ``identity`` in ``seq`` order, expired ones included.

        Raises:
            CorruptDatabaseError: a stored property bag cannot be decoded.
            StorageError: the read failed.
        """
        if limit < 1:
            return []

        def run(conn: sqlite3.Connection) -> list[CloudMessage]:
            rows = conn.execute(
                _CLOUD_SELECT + " WHERE identity = ? ORDER BY seq LIMIT ?", (identity, limit)
            ).fetchall()
            return [_cloud_message_from_row(row) for row in rows]

        return await self._read(run)

    async def mark_cloud_message_delivered(self, identity: str, seq: int) -> bool:
        """Increase the message's ``delivery_count`` by one; ``False`` if it is gone.

        Raises:
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE cloud_messages SET delivery_count = delivery_count + 1"
                " WHERE identity = ? AND seq = ?",
                (identity, seq),
            )
            return cursor.rowcount == 1

        return await self._write(run)

    async def delete_cloud_message(self, identity: str, seq: int) -> CloudMessage | None:
        """Remove one message of ``identity``; the removed message, or ``None`` if absent.

        Raises:
            CorruptDatabaseError: the stored property bag cannot be decoded.
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> CloudMessage | None:
            row = conn.execute(
                _CLOUD_SELECT + " WHERE identity = ? AND seq = ?", (identity, seq)
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM cloud_messages WHERE seq = ?", (seq,))
            return _cloud_message_from_row(row)

        return await self._write(run)

    async def purge_cloud_messages(self, identity: str) -> list[CloudMessage]:
        """Remove every queued message of ``identity``; the removed messages in ``seq`` order.

        Raises:
            CorruptDatabaseError: a stored property bag cannot be decoded.
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> list[CloudMessage]:
            rows = conn.execute(
                _CLOUD_SELECT + " WHERE identity = ? ORDER BY seq", (identity,)
            ).fetchall()
            conn.execute("DELETE FROM cloud_messages WHERE identity = ?", (identity,))
            return [_cloud_message_from_row(row) for row in rows]

        return await self._write(run)

    async def take_expired_cloud_messages(
        self, now: float, *, limit: int = 1000
    ) -> list[CloudMessage]:
        """Remove and return up to ``limit`` messages with ``expires_at <= now``.

        "Oldest first" means the longest expired first: ordered by ``expires_at``, then by
        ``seq`` (the order of the ``expires_at`` index).

        Raises:
            CorruptDatabaseError: a stored property bag cannot be decoded.
            StorageError: the write failed.
        """
        if limit < 1:
            return []

        def run(conn: sqlite3.Connection) -> list[CloudMessage]:
            rows = conn.execute(
                _CLOUD_SELECT + " WHERE expires_at <= ? ORDER BY expires_at, seq LIMIT ?",
                (now, limit),
            ).fetchall()
            conn.executemany("DELETE FROM cloud_messages WHERE seq = ?", [(r[0],) for r in rows])
            return [_cloud_message_from_row(row) for row in rows]

        return await self._write(run)

    async def insert_ca(self, record: CARecord) -> None:
        """Register a CA.

        Raises:
            ConflictError: the fingerprint is registered.
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO cas (fingerprint, subject, pem, created_at) VALUES (?, ?, ?, ?)",
                    (record.fingerprint, record.subject, record.pem, record.created_at),
                )
            except sqlite3.IntegrityError:
                raise ConflictError(f"CA {record.fingerprint} is already registered") from None

        await self._write(run)

    async def list_cas(self) -> list[CARecord]:
        """Every registered CA, ordered by fingerprint.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> list[CARecord]:
            rows = conn.execute(
                "SELECT fingerprint, subject, pem, created_at FROM cas ORDER BY fingerprint"
            ).fetchall()
            return [CARecord(*row) for row in rows]

        return await self._read(run)

    async def delete_ca(self, fingerprint: str) -> bool:
        """Remove a CA; ``False`` if it was not registered.

        Raises:
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute("DELETE FROM cas WHERE fingerprint = ?", (fingerprint,))
            return cursor.rowcount == 1

        return await self._write(run)

    # --- operator tokens ------------------------------------------------------------------
    async def insert_token(self, record: TokenRecord) -> None:
        """Store a token record and count it in ``meta.tokens_created``.

        Raises:
            ConflictError: the id or the hash exists.
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    _TOKENS_INSERT,
                    (
                        record.token_id,
                        record.name,
                        record.token_hash,
                        _join_roles(record.roles),
                        record.created_at,
                        record.expires_at,
                        int(record.revoked),
                        record.kind.value,
                        record.operator,
                        record.last_used_at,
                        int(record.must_rotate),
                    ),
                )
            except sqlite3.IntegrityError:
                raise ConflictError(f"token {record.token_id!r} already exists") from None
            conn.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'tokens_created'"
            )

        await self._write(run)

    async def find_token(self, token_hash: bytes) -> TokenRecord | None:
        """The token whose secret hashes to ``token_hash``, or ``None``.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> TokenRecord | None:
            row = conn.execute(_TOKENS_SELECT + " WHERE token_hash = ?", (token_hash,)).fetchone()
            return None if row is None else _token_from_row(row)

        return await self._read(run)

    async def list_tokens(self) -> list[TokenRecord]:
        """Every token record, oldest first.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> list[TokenRecord]:
            rows = conn.execute(_TOKENS_SELECT + " ORDER BY created_at, token_id").fetchall()
            return [_token_from_row(row) for row in rows]

        return await self._read(run)

    async def revoke_token(self, token_id: str) -> bool:
        """Mark a token revoked; ``False`` if unknown.

        Raises:
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute("UPDATE tokens SET revoked = 1 WHERE token_id = ?", (token_id,))
            return cursor.rowcount == 1

        return await self._write(run)

    async def count_tokens(self) -> int:
        """How many tokens were ever created, revoked ones included.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT value FROM meta WHERE key = 'tokens_created'").fetchone()
            if row is None:
                raise CorruptDatabaseError("meta.tokens_created is missing")
            return int(row[0])

        return await self._read(run)

    async def touch_token(self, token_id: str, used_at: float) -> None:
        """Record when a token was last used (unknown ids are ignored).

        Raises:
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE tokens SET last_used_at = ? WHERE token_id = ?", (used_at, token_id)
            )

        await self._write(run)

    async def revoke_operator_tokens(self, operator: str, kind: TokenKind) -> int:
        """Revoke every live token of ``kind`` owned by ``operator``.

        Returns:
            How many tokens were revoked.

        Raises:
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE tokens SET revoked = 1 WHERE operator = ? AND kind = ? AND revoked = 0",
                (operator, kind.value),
            )
            return cursor.rowcount

        return await self._write(run)

    # --- operator accounts ----------------------------------------------------------------
    async def insert_operator(self, record: OperatorRecord) -> None:
        """Store a new operator account.

        Raises:
            ConflictError: an account with this name exists.
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(_OPERATOR_INSERT, (record.name, *_operator_values(record)))
            except sqlite3.IntegrityError:
                raise ConflictError(f"operator {record.name!r} already exists") from None

        await self._write(run)

    async def get_operator(self, name: str) -> OperatorRecord | None:
        """The operator account called ``name``, or ``None``.

        Raises:
            StorageError: the read failed.
            CorruptDatabaseError: a stored list is malformed.
        """

        def run(conn: sqlite3.Connection) -> OperatorRecord | None:
            row = conn.execute(_OPERATOR_SELECT + " WHERE name = ?", (name,)).fetchone()
            return None if row is None else _operator_from_row(row)

        return await self._read(run)

    async def list_operators(self) -> list[OperatorRecord]:
        """Every operator account, by name.

        Raises:
            StorageError: the read failed.
            CorruptDatabaseError: a stored list is malformed.
        """

        def run(conn: sqlite3.Connection) -> list[OperatorRecord]:
            rows = conn.execute(_OPERATOR_SELECT + " ORDER BY name").fetchall()
            return [_operator_from_row(row) for row in rows]

        return await self._read(run)

    async def update_operator(self, record: OperatorRecord) -> None:
        """Replace the account whose stored version is ``record.version - 1``.

        Raises:
            NotFoundError: no account has this name.
            ConflictError: the account changed since it was read.
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                _OPERATOR_UPDATE, (*_operator_values(record), record.name, record.version - 1)
            )
            if cursor.rowcount == 1:
                return
            exists = conn.execute(
                "SELECT 1 FROM operators WHERE name = ?", (record.name,)
            ).fetchone()
            if exists is None:
                raise NotFoundError(f"operator {record.name!r} does not exist")
            raise ConflictError(f"operator {record.name!r} changed meanwhile; try again")

        await self._write(run)

    # --- provisioning: enrollments ---------------------------------------------------------
    async def insert_enrollment(self, record: EnrollmentRecord) -> None:
        """Store a new individual enrollment or enrollment group.

        Raises:
            ConflictError: an enrollment of the same kind with this id exists.
            StorageError: the write failed.
        """
        row = (int(record.group), record.enrollment_id, *_enrollment_values(record))

        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(_ENROLLMENT_INSERT, row)
            except sqlite3.IntegrityError:
                kind = "enrollment group" if record.group else "enrollment"
                raise ConflictError(f"{kind} {record.enrollment_id!r} already exists") from None

        await self._write(run)

    async def get_enrollment(self, enrollment_id: str, *, group: bool) -> EnrollmentRecord | None:
        """The individual enrollment or group called ``enrollment_id``, or ``None``.

        Raises:
            CorruptDatabaseError: the stored row cannot be decoded.
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> EnrollmentRecord | None:
            row = conn.execute(
                _ENROLLMENT_SELECT + " WHERE grp = ? AND enrollment_id = ?",
                (int(group), enrollment_id),
            ).fetchone()
            return None if row is None else _enrollment_from_row(row)

        return await self._read(run)

    async def list_enrollments(
        self, *, group: bool, after: str = "", limit: int = 100
    ) -> list[EnrollmentRecord]:
        """Individual enrollments or groups with ``enrollment_id > after``, in id order.

        Raises:
            CorruptDatabaseError: a stored row cannot be decoded.
            StorageError: the read failed.
        """
        if limit < 1:
            return []

        def run(conn: sqlite3.Connection) -> list[EnrollmentRecord]:
            rows = conn.execute(
                _ENROLLMENT_SELECT
                + " WHERE grp = ? AND enrollment_id > ? ORDER BY enrollment_id LIMIT ?",
                (int(group), after, limit),
            ).fetchall()
            return [_enrollment_from_row(row) for row in rows]

        return await self._read(run)

    async def update_enrollment(self, record: EnrollmentRecord, *, expected_version: int) -> None:
        """Replace an enrollment whose stored version is ``expected_version``.

        The key ``(record.group, record.enrollment_id)`` names the enrollment; every other
        field is replaced.

        Raises:
            ValueError: ``record.version`` is not ``expected_version + 1`` (a caller bug).
            PreconditionFailedError: the stored version differs.
            NotFoundError: the enrollment does not exist.
            StorageError: the write failed.
        """
        if record.version != expected_version + 1:
            raise ValueError("record.version must be expected_version + 1")
        key = (int(record.group), record.enrollment_id)
        values = _enrollment_values(record)

        def run(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(_ENROLLMENT_UPDATE, (*values, *key, expected_version))
            if cursor.rowcount == 1:
                return
            found = conn.execute(
                "SELECT version FROM enrollments WHERE grp = ? AND enrollment_id = ?", key
            ).fetchone()
            if found is None:
                raise NotFoundError(f"enrollment {record.enrollment_id!r} does not exist")
            raise PreconditionFailedError(
                f"enrollment {record.enrollment_id!r} is at version {found[0]}, "
                f"not {expected_version}"
            )

        await self._write(run)

    async def delete_enrollment(self, enrollment_id: str, *, group: bool) -> bool:
        """Delete an enrollment and, for a group, its claim tokens, in one transaction.

        A group's claim tokens go even if the group itself is already gone, so no token can
        outlive the group it was issued for. Registration states are kept (they record what
        happened; :meth:`delete_registration` forgets them).

        Returns:
            Whether the enrollment existed.

        Raises:
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM enrollments WHERE grp = ? AND enrollment_id = ?",
                (int(group), enrollment_id),
            )
            if group:
                conn.execute("DELETE FROM claim_tokens WHERE group_id = ?", (enrollment_id,))
            return cursor.rowcount == 1

        return await self._write(run)

    # --- provisioning: registration states -------------------------------------------------
    async def put_registration(self, record: RegistrationRecord) -> None:
        """Insert or replace the registration state of ``record.registration_id``.

        Raises:
            StorageError: the write failed.
        """
        row = _registration_row(record)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(_REGISTRATION_UPSERT, row)

        await self._write(run)

    async def get_registration(self, registration_id: str) -> RegistrationRecord | None:
        """The registration state of ``registration_id``, or ``None``.

        Raises:
            CorruptDatabaseError: the stored row cannot be decoded.
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> RegistrationRecord | None:
            row = conn.execute(
                _REGISTRATION_SELECT + " WHERE registration_id = ?", (registration_id,)
            ).fetchone()
            return None if row is None else _registration_from_row(row)

        return await self._read(run)

    async def list_registrations(
        self,
        *,
        enrollment_id: str | None = None,
        group: bool | None = None,
        after: str = "",
        limit: int = 100,
    ) -> list[RegistrationRecord]:
        """Registrations with ``registration_id > after`` in id order; at most ``limit``.

        ``enrollment_id`` and ``group`` filter independently: together they select one
        enrollment's registrations; ``group`` alone those admitted by groups (or by individual
        enrollments).

        Raises:
            CorruptDatabaseError: a stored row cannot be decoded.
            StorageError: the read failed.
        """
        if limit < 1:
            return []
        sql = _REGISTRATION_QUERIES[enrollment_id is not None, group is not None]
        params: list[object] = [after]
        if enrollment_id is not None:
            params.append(enrollment_id)
        if group is not None:
            params.append(int(group))
        params.append(limit)

        def run(conn: sqlite3.Connection) -> list[RegistrationRecord]:
            return [_registration_from_row(row) for row in conn.execute(sql, params)]

        return await self._read(run)

    async def delete_registration(self, registration_id: str) -> bool:
        """Forget a registration state; ``False`` if unknown.

        Raises:
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM registrations WHERE registration_id = ?", (registration_id,)
            )
            return cursor.rowcount == 1

        return await self._write(run)

    # --- provisioning: claim tokens ---------------------------------------------------------
    async def insert_claim_token(self, record: ClaimTokenRecord) -> None:
        """Store a claim token for an existing enrollment group.

        The group is looked up in the insert's transaction, so a token can never be stored for
        a group deleted concurrently (it would admit devices through nothing).

        Raises:
            NotFoundError: the enrollment group ``record.group_id`` does not exist.
            ConflictError: a claim token with this id or hash exists.
            StorageError: the write failed.
        """
        row = _claim_token_row(record)

        def run(conn: sqlite3.Connection) -> None:
            if (
                conn.execute(
                    "SELECT 1 FROM enrollments WHERE grp = 1 AND enrollment_id = ?",
                    (record.group_id,),
                ).fetchone()
                is None
            ):
                raise NotFoundError(f"enrollment group {record.group_id!r} does not exist")
            try:
                conn.execute(_CLAIM_INSERT, row)
            except sqlite3.IntegrityError:
                raise ConflictError(
                    f"claim token {record.token_id!r} (or its secret) already exists"
                ) from None

        await self._write(run)

    async def consume_claim_token(
        self, token_hash: bytes, now: float
    ) -> tuple[ClaimOutcome, ClaimTokenRecord | None]:
        """Use a claim token once: read, check and increment in one writer transaction.

        The checks run in the documented order (unknown, revoked, expired, exhausted); a token
        is expired from ``expires_at`` on. Jobs run one at a time on the write connection under
        ``BEGIN IMMEDIATE``, so two callers never both get the last use.

        Returns:
            ``(OK, record)`` with ``uses`` already incremented, or the refusing outcome with the
            unchanged record (``None`` when unknown).

        Raises:
            CorruptDatabaseError: the stored row cannot be decoded.
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> tuple[ClaimOutcome, ClaimTokenRecord | None]:
            row = conn.execute(_CLAIM_SELECT + " WHERE token_hash = ?", (token_hash,)).fetchone()
            if row is None:
                return ClaimOutcome.UNKNOWN, None
            record = _claim_token_from_row(row)
            if record.revoked:
                return ClaimOutcome.REVOKED, record
            if now >= record.expires_at:
                return ClaimOutcome.EXPIRED, record
            if record.uses >= record.max_uses:
                return ClaimOutcome.EXHAUSTED, record
            conn.execute(
                "UPDATE claim_tokens SET uses = uses + 1 WHERE token_id = ?", (record.token_id,)
            )
            return ClaimOutcome.OK, replace(record, uses=record.uses + 1)

        return await self._write(run)

    async def list_claim_tokens(self, group_id: str | None = None) -> list[ClaimTokenRecord]:
        """Claim tokens, of one group or of all, oldest first (then by id).

        Raises:
            CorruptDatabaseError: a stored row cannot be decoded.
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> list[ClaimTokenRecord]:
            if group_id is None:
                rows = conn.execute(_CLAIM_SELECT + " ORDER BY created_at, token_id")
            else:
                rows = conn.execute(
                    _CLAIM_SELECT + " WHERE group_id = ? ORDER BY created_at, token_id",
                    (group_id,),
                )
            return [_claim_token_from_row(row) for row in rows]

        return await self._read(run)

    async def revoke_claim_token(self, token_id: str) -> bool:
        """Mark a claim token revoked; ``False`` if unknown.

        Raises:
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE claim_tokens SET revoked = 1 WHERE token_id = ?", (token_id,)
            )
            return cursor.rowcount == 1

        return await self._write(run)

    # --- provisioning: issued certificates and the CRL --------------------------------------
    async def insert_certificate(self, record: IssuedCertificateRecord) -> None:
        """Record an issued certificate.

        Raises:
            ConflictError: a certificate with this serial is recorded.
            StorageError: the write failed.
        """
        row = _certificate_row(record)

        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(_CERTIFICATE_INSERT, row)
            except sqlite3.IntegrityError:
                raise ConflictError(f"certificate {record.serial} is already recorded") from None

        await self._write(run)

    async def get_certificate(self, serial: str) -> IssuedCertificateRecord | None:
        """The issued certificate with this serial (upper hex, compared exactly), or ``None``.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> IssuedCertificateRecord | None:
            row = conn.execute(_CERTIFICATE_SELECT + " WHERE serial = ?", (serial,)).fetchone()
            return None if row is None else _certificate_from_row(row)

        return await self._read(run)

    async def list_certificates(
        self,
        *,
        device_id: str | None = None,
        revoked: bool | None = None,
        after: str = "",
        limit: int = 100,
    ) -> list[IssuedCertificateRecord]:
        """Issued certificates with ``serial > after`` in serial order; at most ``limit``.

        Serials are compared as text (upper hex), the order ``after`` pages by.

        Raises:
            StorageError: the read failed.
        """
        if limit < 1:
            return []
        sql = _CERTIFICATE_QUERIES[device_id is not None, revoked]
        params: list[object] = [after]
        if device_id is not None:
            params.append(device_id)
        params.append(limit)

        def run(conn: sqlite3.Connection) -> list[IssuedCertificateRecord]:
            return [_certificate_from_row(row) for row in conn.execute(sql, params)]

        return await self._read(run)

    async def revoke_certificate(
        self, serial: str, revoked_at: float, reason: str
    ) -> IssuedCertificateRecord | None:
        """Mark a certificate revoked and return it; the first revocation wins.

        An already revoked certificate is returned as stored: its revocation time and reason
        never change, so a CRL once published stays true.

        Returns:
            The certificate as stored after the call, or ``None`` if the serial is unknown.

        Raises:
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> IssuedCertificateRecord | None:
            conn.execute(
                "UPDATE certificates SET revoked_at = ?, revocation_reason = ?"
                " WHERE serial = ? AND revoked_at IS NULL",
                (revoked_at, reason, serial),
            )
            row = conn.execute(_CERTIFICATE_SELECT + " WHERE serial = ?", (serial,)).fetchone()
            return None if row is None else _certificate_from_row(row)

        return await self._write(run)

    async def list_revoked_certificates(self) -> list[IssuedCertificateRecord]:
        """Every revoked certificate, by revocation time then serial (the partial index).

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> list[IssuedCertificateRecord]:
            rows = conn.execute(
                _CERTIFICATE_SELECT + " WHERE revoked_at IS NOT NULL ORDER BY revoked_at, serial"
            )
            return [_certificate_from_row(row) for row in rows]

        return await self._read(run)

    async def put_crl(self, number: int, der: bytes) -> None:
        """Store the current CRL if ``number`` is greater than the stored one's.

        The comparison and the write share one writer transaction, so of two concurrent
        signers only the one with the greater number lands (RFC 5280 §5.2.3: CRL numbers
        increase monotonically).

        Raises:
            ValueError: ``number`` is negative or beyond a 64-bit integer (a caller bug).
            ConflictError: the stored CRL's number is not smaller than ``number``.
            StorageError: the write failed.
        """
        if not 0 <= number <= _MAX_CRL_NUMBER:
            raise ValueError("a CRL number is a non-negative 64-bit integer")

        def run(conn: sqlite3.Connection) -> None:
            found = conn.execute("SELECT number FROM crl WHERE id = 1").fetchone()
            if found is not None and found[0] >= number:
                raise ConflictError(f"CRL number {number} is not greater than {found[0]}")
            conn.execute(
                "INSERT INTO crl (id, number, der) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET number = excluded.number, der = excluded.der",
                (number, der),
            )

        await self._write(run)

    async def get_crl(self) -> tuple[int, bytes] | None:
        """The current CRL ``(number, DER)``, or ``None`` before the first.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> tuple[int, bytes] | None:
            row = conn.execute("SELECT number, der FROM crl WHERE id = 1").fetchone()
            return None if row is None else (int(row[0]), bytes(row[1]))

        return await self._read(run)

    # --- security monitoring --------------------------------------------------------------
    async def insert_alert(self, record: AlertRecord) -> None:
        """Store a new alert.

        Raises:
            ConflictError: an alert with this id exists.
            StorageError: the write failed.
        """
        row = (record.alert_id, *_alert_values(record))

        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(_ALERT_INSERT, row)
            except sqlite3.IntegrityError:
                raise ConflictError(f"alert {record.alert_id!r} already exists") from None

        await self._write(run)

    async def get_alert(self, alert_id: str) -> AlertRecord | None:
        """The alert with this id, or ``None``.

        Raises:
            CorruptDatabaseError: the stored row cannot be decoded.
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> AlertRecord | None:
            row = conn.execute(_ALERT_SELECT + " WHERE alert_id = ?", (alert_id,)).fetchone()
            return None if row is None else _alert_from_row(row)

        return await self._read(run)

    async def find_alert(self, alert_type: str, device_id: str | None) -> AlertRecord | None:
        """The alert de-duplication and suppression look at for this type and device.

        The newest alert of ``alert_type`` about ``device_id`` (``None`` matches the alerts
        about no device) that is not resolved, else the newest resolved one, else ``None``.
        "Newest" is by ``created_at``, ties broken by the greater id. Both lookups are one
        statement, so they see one snapshot.

        Raises:
            CorruptDatabaseError: the stored row cannot be decoded.
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> AlertRecord | None:
            row = conn.execute(_ALERT_FIND, (alert_type, device_id)).fetchone()
            return None if row is None else _alert_from_row(row)

        return await self._read(run)

    async def update_alert(self, record: AlertRecord, *, expected_version: int) -> None:
        """Replace an alert whose stored version is ``expected_version``.

        Every field but the id is replaced (the de-duplication key too, although the monitor
        never changes it).

        Raises:
            ValueError: ``record.version`` is not ``expected_version + 1`` (a caller bug: an
                update that kept the version would let a concurrent one through unnoticed).
            PreconditionFailedError: the stored version differs.
            NotFoundError: the alert does not exist.
            StorageError: the write failed.
        """
        if record.version != expected_version + 1:
            raise ValueError("record.version must be expected_version + 1")
        values = _alert_values(record)

        def run(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(_ALERT_UPDATE, (*values, record.alert_id, expected_version))
            if cursor.rowcount == 1:
                return
            found = conn.execute(
                "SELECT version FROM alerts WHERE alert_id = ?", (record.alert_id,)
            ).fetchone()
            if found is None:
                raise NotFoundError(f"alert {record.alert_id!r} does not exist")
            raise PreconditionFailedError(
                f"alert {record.alert_id!r} is at version {found[0]}, not {expected_version}"
            )

        await self._write(run)

    async def list_alerts(
        self,
        *,
        device_id: str | None = None,
        state: AlertState | None = None,
        after: str = "",
        limit: int = 100,
    ) -> list[AlertRecord]:
        """Alerts with ``alert_id > after`` in id order; at most ``limit``.

        Optionally only those about ``device_id`` (``None`` means every alert, not those about
        no device) and in ``state``.

        Raises:
            CorruptDatabaseError: a stored row cannot be decoded.
            StorageError: the read failed.
        """
        if limit < 1:
            return []
        sql = _ALERT_QUERIES[device_id is not None, state is not None]
        params: list[object] = [after]
        if device_id is not None:
            params.append(device_id)
        if state is not None:
            params.append(state.value)
        params.append(limit)

        def run(conn: sqlite3.Connection) -> list[AlertRecord]:
            return [_alert_from_row(row) for row in conn.execute(sql, params)]

        return await self._read(run)

    async def put_monitor_state(self, name: str, state: str) -> None:
        """Store (replace) a named piece of monitor state; committed on return.

        ``updated_at`` is the clock's wall time, for whoever inspects the file.

        Raises:
            StorageError: the write failed.
        """
        row = (name, state, self._clock.time())

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO monitor_state (name, state, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET state = excluded.state,"
                " updated_at = excluded.updated_at",
                row,
            )

        await self._write(run)

    async def get_monitor_state(self, name: str) -> str | None:
        """A named piece of monitor state, or ``None``.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT state FROM monitor_state WHERE name = ?", (name,)).fetchone()
            return None if row is None else str(row[0])

        return await self._read(run)

    # --- device posture: profiles, advisories, latest reports ---------------------------------
    async def put_profile(self, record: ProfileRecord, *, expected_version: int | None) -> None:
        """Create (``expected_version=None``) or replace a profile; committed on return.

        Raises:
            ConflictError: creating a name that exists.
            NotFoundError: replacing a profile that is gone.
            PreconditionFailedError: replacing a profile whose version is not
                ``expected_version``.
            ValueError: a new profile's version is not 1, or a replacement's is not
                ``expected_version + 1``.
            StorageError: the write failed.
        """
        wanted = 1 if expected_version is None else expected_version + 1
        if record.version != wanted:
            raise ValueError(f"record.version must be {wanted}")
        values = (record.document, record.created_at, record.updated_at, record.version)

        def run(conn: sqlite3.Connection) -> None:
            if expected_version is None:
                try:
                    conn.execute(
                        "INSERT INTO profiles (name, document, created_at, updated_at, version)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (record.name, *values),
                    )
                except sqlite3.IntegrityError:
                    raise ConflictError(f"profile {record.name!r} already exists") from None
                return
            cursor = conn.execute(
                "UPDATE profiles SET document = ?, created_at = ?, updated_at = ?, version = ?"
                " WHERE name = ? AND version = ?",
                (*values, record.name, expected_version),
            )
            if cursor.rowcount == 1:
                return
            found = conn.execute(
                "SELECT version FROM profiles WHERE name = ?", (record.name,)
            ).fetchone()
            if found is None:
                raise NotFoundError(f"profile {record.name!r} does not exist")
            raise PreconditionFailedError(
                f"profile {record.name!r} is at version {found[0]}, not {expected_version}"
            )

        await self._write(run)

    async def get_profile(self, name: str) -> ProfileRecord | None:
        """The profile called ``name``, or ``None``.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> ProfileRecord | None:
            row = conn.execute(_PROFILE_SELECT + " WHERE name = ?", (name,)).fetchone()
            return None if row is None else _profile_from_row(row)

        return await self._read(run)

    async def list_profiles(self) -> list[ProfileRecord]:
        """Every profile, by name.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> list[ProfileRecord]:
            return [
                _profile_from_row(row) for row in conn.execute(_PROFILE_SELECT + " ORDER BY name")
            ]

        return await self._read(run)

    async def delete_profile(self, name: str) -> bool:
        """Delete a profile; whether it existed.

        Raises:
            StorageError: the write failed.
        """

        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM profiles WHERE name = ?", (name,)).rowcount == 1

        return await self._write(run)

    async def put_advisories(
        self, records: Sequence[AdvisoryRecord], *, delete: Sequence[str] = ()
    ) -> None:
        """Insert or replace advisories and delete others, in one transaction.

        Raises:
            StorageError: the write failed (nothing changed).
        """
        rows = [(r.advisory_id, r.modified, r.document, r.imported_at) for r in records]
        gone = [(advisory_id,) for advisory_id in delete]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO advisories (advisory_id, modified, document, imported_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (advisory_id) DO UPDATE SET"
                " modified = excluded.modified, document = excluded.document,"
                " imported_at = excluded.imported_at",
                rows,
            )
            conn.executemany("DELETE FROM advisories WHERE advisory_id = ?", gone)

        await self._write(run)

    async def list_advisories(self, *, after: str = "", limit: int = 1000) -> list[AdvisoryRecord]:
        """Advisories with ``advisory_id > after``, in id order; at most ``limit``.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> list[AdvisoryRecord]:
            return [
                AdvisoryRecord(
                    advisory_id=row[0], modified=row[1], document=row[2], imported_at=row[3]
                )
                for row in conn.execute(
                    "SELECT advisory_id, modified, document, imported_at FROM advisories"
                    " WHERE advisory_id > ? ORDER BY advisory_id LIMIT ?",
                    (after, max(limit, 0)),
                )
            ]

        return await self._read(run)

    async def count_advisories(self) -> int:
        """How many advisories are stored.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM advisories").fetchone()[0])

        return await self._read(run)

    async def put_posture(self, record: PostureRecord) -> None:
        """Store a device's report of one kind unless one with a higher ``seq`` is stored.

        Raises:
            StorageError: the write failed.
        """
        row = (record.device_id, record.kind, record.seq, record.received_at, record.document)

        def run(conn: sqlite3.Connection) -> None:
            # The monitor may process a message again after a crash: an older report must not
            # replace a newer one.
            conn.execute(
                "INSERT INTO device_posture (device_id, kind, seq, received_at, document)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id, kind) DO UPDATE SET"
                " seq = excluded.seq, received_at = excluded.received_at,"
                " document = excluded.document WHERE excluded.seq >= device_posture.seq",
                row,
            )

        await self._write(run)

    async def get_posture(self, device_id: str, kind: str) -> PostureRecord | None:
        """A device's latest report of ``kind``, or ``None``.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> PostureRecord | None:
            row = conn.execute(
                _POSTURE_SELECT + " WHERE device_id = ? AND kind = ?", (device_id, kind)
            ).fetchone()
            return None if row is None else _posture_from_row(row)

        return await self._read(run)

    async def list_posture(
        self, kind: str, *, after: str = "", limit: int = 1000
    ) -> list[PostureRecord]:
        """The latest reports of ``kind``, of devices with ``device_id > after``, in id order.

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> list[PostureRecord]:
            return [
                _posture_from_row(row)
                for row in conn.execute(
                    _POSTURE_SELECT
                    + " WHERE kind = ? AND device_id > ? ORDER BY device_id LIMIT ?",
                    (kind, after, max(limit, 0)),
                )
            ]

        return await self._read(run)

    # --- message log ----------------------------------------------------------------------
    def append(self, entry: LogEntry) -> asyncio.Future[int]:
        """Queue ``entry`` for the next group commit; never blocks.

        Must be called on the event loop that opened the storage.

        Returns:
            A future resolving with the entry's sequence number once its transaction is
            committed, or failing with ``StorageError`` (the caller must not acknowledge).
        """
        loop = self._loop
        if loop is None or not self._accepting:
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            future.set_exception(StorageError("storage is not open"))
            return future
        future = loop.create_future()
        self._queue.put((entry, future))
        return future

    def add_commit_listener(self, listener: CommitListener) -> Callable[[], None]:
        """Call ``listener(first_seq, entries)`` on the event loop after each committed batch.

        Returns:
            A function that removes the listener (idempotent).
        """
        # Copy-on-write: the writer thread snapshots the list per batch without a lock.
        self._listeners = [*self._listeners, listener]

        def remove() -> None:
            self._listeners = [item for item in self._listeners if item is not listener]

        return remove

    async def query_messages(
        self,
        *,
        device_id: str | None = None,
        stream: Stream | None = None,
        after_seq: int = 0,
        limit: int = 100,
        since: float | None = None,
        until: float | None = None,
    ) -> list[StoredMessage]:
        """Committed messages with ``seq > after_seq`` in sequence order, at most ``limit``.

        ``since``/``until`` bound ``enqueued_at`` (``since <= t < until``). There is no index
        on ``device_id``, ``stream`` or time (module docstring): a filtered query walks the
        primary key from ``after_seq`` until it has ``limit`` matches.

        Raises:
            StorageError: the read failed.
        """
        if limit < 1:
            return []
        sql = _MESSAGE_QUERIES[
            device_id is not None, stream is not None, since is not None, until is not None
        ]
        params: list[object] = [after_seq]
        params.extend(value for value in (device_id,) if value is not None)
        if stream is not None:
            params.append(stream.value)
        params.extend(value for value in (since, until) if value is not None)
        params.append(limit)

        def run(conn: sqlite3.Connection) -> list[StoredMessage]:
            return [_message_from_row(row) for row in conn.execute(sql, params)]

        return await self._read(run)

    async def last_seq(self) -> int:
        """The highest committed sequence number (0 when empty).

        Raises:
            StorageError: the read failed.
        """

        def run(conn: sqlite3.Connection) -> int:
            value: int = conn.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()[0]
            return value

        return await self._read(run)

    def statistics(self) -> StorageStatistics:
        """Commit counters (read without locking; each field is individually consistent)."""
        return StorageStatistics(
            commits=self._commits,
            committed_entries=self._committed_entries,
            last_batch_size=self._last_batch_size,
            queued_entries=self._queue.qsize(),
            last_commit_seconds=self._last_commit_seconds,
            failed_commits=self._failed_commits,
        )
