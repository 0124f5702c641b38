"""Storage interfaces and the records that cross them.

Records are frozen dataclasses (:class:`LogEntry`, built per message, a frozen ``msgspec.Struct``)
holding only what is stored: device symmetric keys appear here only *sealed* (AES-GCM under the
key-encryption key, see :mod:`ironhub.registry.sealing`), API tokens only as SHA-256 hashes.

The message log is append-only. :meth:`Storage.append` never blocks and never awaits per
message: it queues the entry for the next group commit and returns a future that resolves
with the entry's sequence number once the transaction holding it is durable (ARCHITECTURE.md,
Durability). A QoS 1 PUBACK is sent only when that future has resolved. Consumers that must
see every committed entry (the live fan-out of :mod:`ironhub.streams.log`) register a
:data:`CommitListener`, called once per committed batch whatever became of the futures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "AdvisoryRecord",
    "AlertRecord",
    "AlertState",
    "Attestation",
    "AuthKind",
    "CARecord",
    "ClaimOutcome",
    "ClaimTokenRecord",
    "CloudMessage",
    "CommitListener",
    "DeviceRecord",
    "DeviceState",
    "EnrollmentRecord",
    "IssuedCertificateRecord",
    "LogEntry",
    "OperatorRecord",
    "PostureRecord",
    "ProfileRecord",
    "RegistrationRecord",
    "ReprovisionPolicy",
    "SessionRecord",
    "Storage",
    "StorageStatistics",
    "StoredMessage",
    "Stream",
    "TokenKind",
    "TokenRecord",
    "TwinRecord",
]


class AuthKind(StrEnum):
    """How a device proves its identity (azure-iot-mqtt.md §2.3, §2.5)."""

    SAS = "sas"
    X509_CA = "x509-ca"
    X509_THUMBPRINT = "x509-thumbprint"


class DeviceState(StrEnum):
    """Whether a device may connect, and what it may do once connected."""

    ENABLED = "enabled"
    DISABLED = "disabled"
    #: Connected devices may only send security messages and receive (twin, C2D, methods);
    #: their telemetry is refused. Set by a response playbook, ended by an operator (issue 6).
    QUARANTINED = "quarantined"


class Stream(StrEnum):
    """The streams of the message log."""

    TELEMETRY = "telemetry"
    SECURITY = "security"
    LIFECYCLE = "lifecycle"
    #: Cloud-to-device delivery outcomes (completed, expired, purged), one entry per message.
    FEEDBACK = "feedback"


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device identity as stored.

    ``primary_key_sealed`` / ``secondary_key_sealed`` are set for SAS devices only and are
    sealed blobs, never raw keys. ``primary_thumbprint`` / ``secondary_thumbprint`` (upper-case
    hex SHA-256 of the DER certificate) are set for thumbprint devices, whose certificates are
    kept in ``certificates_pem`` so the TLS layer can accept them (docs/adr/0003).
    ``version`` increases by one on every update (optimistic concurrency, etag).
    """

    device_id: str
    auth_kind: AuthKind
    state: DeviceState
    created_at: float
    updated_at: float
    version: int = 1
    primary_key_sealed: bytes | None = None
    secondary_key_sealed: bytes | None = None
    primary_thumbprint: str | None = None
    secondary_thumbprint: str | None = None
    certificates_pem: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TwinRecord:
    """The twin of one identity (a device ``d`` or a module ``d/m``), as stored.

    The three sections are compact JSON object texts *without* ``$version``; the section
    versions are kept beside them. ``version`` increases by one on every change of any section
    (the operator's etag, optimistic concurrency). A twin exists for every identity from its
    creation (empty sections, versions 1).
    """

    identity: str
    tags: str
    desired: str
    desired_version: int
    reported: str
    reported_version: int
    version: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """The persistent MQTT session of one clean-session-0 client (its ClientId = identity).

    ``subscriptions`` are the granted ``(topic filter, QoS)`` pairs in subscription order.
    ``desired_version_sent`` is the highest desired ``$version`` the client acknowledged
    (PUBACK) on its desired-properties subscription; a reconnect that finds the twin newer
    delivers a catch-up notification (docs/adr/0009).
    """

    client_id: str
    subscriptions: tuple[tuple[str, int], ...]
    desired_version_sent: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class CloudMessage:
    """A queued cloud-to-device message (device C2D, or a module input message).

    ``seq`` is assigned by storage at enqueue (strictly increasing per store; pass 0 when
    enqueueing). ``identity`` is the receiving device ``d`` or module ``d/m``;
    ``input_name`` is set for module input messages only. ``properties`` hold the system
    properties (``$.mid``, ``$.exp``, ...) and the sender's application properties, in the
    order they go on the wire. ``delivery_count`` counts deliveries not yet acknowledged: a
    message delivered before is re-sent with DUP=1.
    """

    seq: int
    identity: str
    input_name: str | None
    enqueued_at: float
    expires_at: float
    payload: bytes
    properties: tuple[tuple[str, str], ...] = ()
    delivery_count: int = 0


@dataclass(frozen=True, slots=True)
class CARecord:
    """A CA certificate registered for X.509 CA-signed device authentication."""

    fingerprint: str
    subject: str
    pem: str
    created_at: float


class Attestation(StrEnum):
    """How a provisioning enrollment's devices prove who they are (azure-iot-mqtt.md §5.4, §5.5)."""

    SYMMETRIC = "symmetric"
    X509 = "x509"


class ReprovisionPolicy(StrEnum):
    """What a registration of an already provisioned device does to its twin."""

    #: Keep the twin as it is (Azure's "reprovision and migrate data": ``deviceDataMigrated``).
    KEEP_TWIN = "keep-twin"
    #: Reset the twin to the enrollment's initial twin (``deviceDataReset``).
    RESET_TWIN = "reset-twin"


@dataclass(frozen=True, slots=True)
class EnrollmentRecord:
    """A provisioning enrollment: individual (``group`` false) or an enrollment group.

    Individual and group ids are separate namespaces (the key is ``(group, enrollment_id)``);
    an individual enrollment's id is the registration id it admits.

    Credentials by attestation:

    * ``symmetric``: two 32-byte keys, sealed under the KEK bound to the enrollment
      (``primary_key_sealed`` / ``secondary_key_sealed``). For a group they are the group keys
      from which each device key is derived (HMAC-SHA256 over the registration id).
    * ``x509``, individual: ``certificates_pem`` holds one or two self-signed device
      certificates (primary, secondary), matched by thumbprint.
    * ``x509``, group: ``certificates_pem`` holds the CA (root or intermediate) certificates
      that the devices' leaves must chain to; the registration id is the leaf's CN.

    ``device_id`` (individual only) is the device id to assign; ``None`` means the registration
    id. ``initial_twin`` is a compact JSON object ``{"tags": {...}, "properties": {"desired":
    {...}}}`` applied at first registration (and at each one under ``reset-twin``).
    ``allocation_payload`` is compact JSON returned to the device in
    ``registrationState.payload``, or ``None``. ``version`` increases on every update.
    """

    enrollment_id: str
    group: bool
    attestation: Attestation
    enabled: bool
    created_at: float
    updated_at: float
    version: int = 1
    primary_key_sealed: bytes | None = None
    secondary_key_sealed: bytes | None = None
    certificates_pem: tuple[str, ...] = ()
    device_id: str | None = None
    initial_twin: str = "{}"
    allocation_payload: str | None = None
    reprovision: ReprovisionPolicy = ReprovisionPolicy.KEEP_TWIN


@dataclass(frozen=True, slots=True)
class RegistrationRecord:
    """The outcome of the last registration of one registration id (Azure's registration state).

    ``status`` is ``assigned``, ``failed`` or ``disabled``; ``substatus`` one of Azure's
    (``initialAssignment``, ``deviceDataMigrated``, ``deviceDataReset``). ``enrollment_id`` and
    ``group`` name the enrollment that admitted it. ``certificate_serial`` is the serial (upper
    hex) of the certificate issued at the last registration, if a CSR was sent.
    ``version`` increases with every registration (it is the etag).
    """

    registration_id: str
    enrollment_id: str
    group: bool
    device_id: str
    status: str
    substatus: str
    created_at: float
    updated_at: float
    version: int = 1
    error_code: int | None = None
    error_message: str | None = None
    certificate_serial: str | None = None


class ClaimOutcome(StrEnum):
    """What :meth:`Storage.consume_claim_token` found."""

    OK = "ok"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    EXHAUSTED = "exhausted"


@dataclass(frozen=True, slots=True)
class ClaimTokenRecord:
    """A claim token for one enrollment group; only the SHA-256 hash of the secret is stored.

    It lets whoever holds it register up to ``max_uses`` devices through the group until
    ``expires_at``.
    """

    token_id: str
    group_id: str
    token_hash: bytes
    max_uses: int
    uses: int
    created_at: float
    expires_at: float
    created_by: str
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class IssuedCertificateRecord:
    """A device certificate issued by the hub's device CA (never with its private key).

    ``serial`` is upper-case hex without separators; ``thumbprint`` the SHA-256 of the DER,
    upper-case hex. ``revoked_at`` / ``revocation_reason`` are set once revoked (the reason is
    an RFC 5280 reason name such as ``keyCompromise``).
    """

    serial: str
    device_id: str
    registration_id: str
    thumbprint: str
    not_before: float
    not_after: float
    issued_at: float
    pem: str
    revoked_at: float | None = None
    revocation_reason: str | None = None


class AlertState(StrEnum):
    """Where an alert is in its life: raised, seen by an operator, closed."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """A security alert raised by the monitor (issue 6).

    One alert stands for every finding of the same ``alert_type`` and ``device_id`` while it is
    not resolved (de-duplication): ``count`` findings, the first at ``created_at``, the last at
    ``last_seen_at``. ``evidence`` holds message-log sequence numbers (capped, newest last);
    ``details`` small facts as compact JSON; ``actions`` the playbook actions taken
    (``quarantine``, ``disable``, ``revoke``, ``notify``), in order. ``version`` increases on
    every update.
    """

    alert_id: str
    alert_type: str
    severity: str
    device_id: str | None
    detector: str
    summary: str
    state: AlertState
    created_at: float
    updated_at: float
    last_seen_at: float
    count: int = 1
    evidence: tuple[int, ...] = ()
    details: str = "{}"
    actions: tuple[str, ...] = ()
    acknowledged_by: str | None = None
    resolved_by: str | None = None
    version: int = 1


class TokenKind(StrEnum):
    """What a token is for: automation (issued by name) or an operator's login session."""

    AUTOMATION = "automation"
    SESSION = "session"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An operator API token. Only the SHA-256 hash of the secret is stored.

    ``roles`` are role names (:class:`~ironhub.access.roles.Role`); ``operator`` is the account
    that owns the token (always set for sessions; for automation tokens, whoever issued it, or
    ``None`` for the bootstrap token). ``must_rotate`` marks a session opened with a one-time or
    expired password: it may only change that password. ``last_used_at`` is refreshed (coarsely)
    for sessions, to end them after inactivity.
    """

    token_id: str
    name: str
    token_hash: bytes
    roles: tuple[str, ...]
    created_at: float
    expires_at: float | None = None
    revoked: bool = False
    kind: TokenKind = TokenKind.AUTOMATION
    operator: str | None = None
    last_used_at: float | None = None
    must_rotate: bool = False

    @property
    def actor(self) -> str:
        """Who acts with this token, for the audit log: the operator of a session, else its name."""
        if self.kind is TokenKind.SESSION and self.operator is not None:
            return self.operator
        return self.name


@dataclass(frozen=True, slots=True)
class OperatorRecord:
    """An operator account (human login). Secrets are stored hashed or sealed only.

    ``password_history`` holds the argon2 hashes of previous passwords, newest first;
    ``totp_secret_sealed`` the confirmed TOTP secret, ``totp_pending_sealed`` one being enrolled
    (both sealed under the KEK, bound to the name); ``allow_list`` and ``known_networks`` are
    CIDR strings. ``version`` increases on every update (optimistic concurrency).
    """

    name: str
    password_hash: str
    password_changed_at: float
    one_time: bool
    roles: tuple[str, ...]
    created_at: float
    password_history: tuple[str, ...] = ()
    totp_secret_sealed: bytes | None = None
    totp_pending_sealed: bytes | None = None
    totp_last_step: int | None = None
    disabled: bool = False
    allow_list: tuple[str, ...] = ()
    known_networks: tuple[str, ...] = ()
    last_login_at: float | None = None
    version: int = 1


class LogEntry(msgspec.Struct, frozen=True, gc=False):
    """One entry to append to the message log.

    ``properties`` holds the decoded property bag (system properties keep their ``$.`` names)
    plus hub-added annotations. ``packet_id`` and ``digest`` (of topic and payload) identify a
    QoS 1 publish so that a DUP re-send is acknowledged without a second copy.

    A frozen :class:`msgspec.Struct` rather than a dataclass: one is built per device message,
    and a frozen dataclass with seven fields took ~1.1 µs to construct, this ~0.2 µs. It holds
    only strings, numbers, bytes and tuples of them, so it is kept out of the cycle collector.
    """

    stream: Stream
    device_id: str | None
    enqueued_at: float
    payload: bytes
    properties: tuple[tuple[str, str], ...] = ()
    packet_id: int | None = None
    digest: bytes | None = None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A committed log entry with its sequence number (strictly increasing, gap-free per store)."""

    seq: int
    stream: Stream
    device_id: str | None
    enqueued_at: float
    payload: bytes
    properties: tuple[tuple[str, str], ...] = ()


#: Called on the event loop after every committed batch of log entries, in commit order, with
#: the sequence number of the first entry and the entries (entry ``i`` has ``first_seq + i``).
#: Called whether or not the entries' futures were cancelled, so a consumer never misses a
#: committed entry.
CommitListener = Callable[[int, Sequence[LogEntry]], None]


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    """A device profile (issue 6): ``document`` is its compact JSON (monitor/profiles.py).

    ``version`` starts at 1 and increases on every replacement.
    """

    name: str
    document: str
    created_at: float
    updated_at: float
    version: int


@dataclass(frozen=True, slots=True)
class AdvisoryRecord:
    """An imported security advisory (OSV, issue 6), normalised to compact JSON.

    ``modified`` is the advisory's own RFC 3339 modification time, which decides whether a
    later import replaces it.
    """

    advisory_id: str
    modified: str
    document: str
    imported_at: float


@dataclass(frozen=True, slots=True)
class PostureRecord:
    """A device's latest report of one kind (``inventory``, ``antimalware``, ``ports``).

    ``document`` is the compact JSON of the parsed event's fields; ``seq`` the message-log
    sequence number of the report (the raw message), ``received_at`` the hub's receive time.
    """

    device_id: str
    kind: str
    seq: int
    received_at: float
    document: str


@dataclass(frozen=True, slots=True)
class StorageStatistics:
    """Counters for ``/metrics`` and tests."""

    commits: int
    committed_entries: int
    last_batch_size: int
    queued_entries: int
    last_commit_seconds: float
    #: Group commits that failed (their futures failed with ``StorageError``).
    failed_commits: int = 0


class Storage(Protocol):
    """What every storage backend provides. Every method raises ``StorageError`` on failure."""

    async def open(self) -> None:
        """Open (creating on first use) the store.

        Raises:
            CorruptDatabaseError: the database is unreadable or of an unknown schema version.
            StorageError: the database cannot be opened.
        """
        ...

    async def close(self) -> None:
        """Flush pending appends and close."""
        ...

    # --- registry -------------------------------------------------------------------------
    async def insert_device(self, record: DeviceRecord) -> None:
        """Insert a device. Raises ``ConflictError`` if the id exists."""
        ...

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        """The device, or ``None``."""
        ...

    async def list_devices(
        self, *, after: str = "", limit: int = 100, include_modules: bool = False
    ) -> list[DeviceRecord]:
        """Devices ordered by id, starting after ``after``.

        Module identities (``d/m``) are listed only with ``include_modules``, interleaved in
        identity-key order (for whole-registry scans such as the TLS trust store).
        """
        ...

    async def update_device(self, record: DeviceRecord, *, expected_version: int) -> None:
        """Replace a device if its stored version equals ``expected_version``.

        ``record.version`` must be ``expected_version + 1``. Raises ``ConflictError`` on a
        version mismatch and ``NotFoundError`` if the device does not exist.
        """
        ...

    async def delete_device(self, device_id: str) -> bool:
        """Delete an identity and everything it owns, in one transaction; ``False`` if absent.

        Deleting a device ``d`` also deletes its modules (``d/*``); for every deleted identity
        its twin, its session, its queued cloud messages and its latest posture reports go too.
        """
        ...

    async def list_modules(self, device_id: str) -> list[DeviceRecord]:
        """The module identities of device ``device_id`` (records ``d/m``), ordered by id.

        ``list_devices`` never returns modules (identities containing ``/``).
        """
        ...

    # --- twins ------------------------------------------------------------------------------
    async def get_twin(self, identity: str) -> TwinRecord | None:
        """The twin of ``identity``, or ``None``."""
        ...

    async def put_twin(self, record: TwinRecord, *, expected_version: int | None) -> None:
        """Store a twin.

        With ``expected_version=None`` the twin is inserted (``ConflictError`` if one exists);
        otherwise it replaces the stored twin only if the stored ``version`` equals
        ``expected_version`` (``ConflictError`` on mismatch, ``NotFoundError`` if absent).
        """
        ...

    async def list_twins(self, *, after: str = "", limit: int = 100) -> list[TwinRecord]:
        """Twins ordered by identity, starting after ``after`` (devices and modules)."""
        ...

    # --- persistent sessions ----------------------------------------------------------------
    async def get_session(self, client_id: str) -> SessionRecord | None:
        """The stored session of ``client_id``, or ``None``."""
        ...

    async def put_session(self, record: SessionRecord) -> None:
        """Insert or replace the session of ``record.client_id`` (durable on return)."""
        ...

    async def delete_session(self, client_id: str) -> bool:
        """Forget a session; ``False`` if there was none."""
        ...

    # --- cloud-to-device queue --------------------------------------------------------------
    async def enqueue_cloud_message(self, message: CloudMessage, *, max_pending: int) -> int:
        """Queue a message (its ``seq`` is ignored) and return the assigned ``seq``.

        Durable on return. The pending count of ``message.identity`` is checked in the same
        transaction: ``QueueFullError`` if it already holds ``max_pending`` messages.
        """
        ...

    async def list_cloud_messages(self, identity: str, *, limit: int = 100) -> list[CloudMessage]:
        """The queued messages of ``identity`` in ``seq`` order (expired ones included)."""
        ...

    async def mark_cloud_message_delivered(self, identity: str, seq: int) -> bool:
        """Increase the message's ``delivery_count`` by one; ``False`` if it is gone.

        The endpoint relies on the answer: a message listed by a read that raced with its
        completion must not be delivered again.
        """
        ...

    async def delete_cloud_message(self, identity: str, seq: int) -> CloudMessage | None:
        """Remove one message (completion); the removed message, or ``None`` if absent."""
        ...

    async def purge_cloud_messages(self, identity: str) -> list[CloudMessage]:
        """Remove every queued message of ``identity``; the removed messages."""
        ...

    async def take_expired_cloud_messages(
        self, now: float, *, limit: int = 1000
    ) -> list[CloudMessage]:
        """Remove and return up to ``limit`` messages with ``expires_at <= now``, oldest first."""
        ...

    async def insert_ca(self, record: CARecord) -> None:
        """Register a CA. Raises ``ConflictError`` if its fingerprint is registered."""
        ...

    async def list_cas(self) -> list[CARecord]:
        """Every registered CA."""
        ...

    async def delete_ca(self, fingerprint: str) -> bool:
        """Remove a CA; ``False`` if it was not registered."""
        ...

    # --- operator tokens --------------------------------------------------------------------
    async def insert_token(self, record: TokenRecord) -> None:
        """Store a token record. Raises ``ConflictError`` on a duplicate id or hash."""
        ...

    async def find_token(self, token_hash: bytes) -> TokenRecord | None:
        """The token whose secret hashes to ``token_hash``, or ``None``."""
        ...

    async def list_tokens(self) -> list[TokenRecord]:
        """Every token record (hashes included; callers must not expose them)."""
        ...

    async def revoke_token(self, token_id: str) -> bool:
        """Mark a token revoked; ``False`` if unknown."""
        ...

    async def count_tokens(self) -> int:
        """How many tokens were ever created (0 means the hub is uninitialised)."""
        ...

    async def touch_token(self, token_id: str, used_at: float) -> None:
        """Record when a token was last used."""
        ...

    async def revoke_operator_tokens(self, operator: str, kind: TokenKind) -> int:
        """Revoke every live token of ``kind`` owned by ``operator``; how many were revoked."""
        ...

    # --- operator accounts ---------------------------------------------------------------------
    async def insert_operator(self, record: OperatorRecord) -> None:
        """Store a new account. Raises ``ConflictError`` if the name exists."""
        ...

    async def get_operator(self, name: str) -> OperatorRecord | None:
        """The account called ``name``, or ``None``."""
        ...

    async def list_operators(self) -> list[OperatorRecord]:
        """Every account, by name."""
        ...

    async def update_operator(self, record: OperatorRecord) -> None:
        """Replace an account whose stored version is ``record.version - 1``.

        Raises ``NotFoundError`` if it is gone, ``ConflictError`` if it changed meanwhile.
        """
        ...

    # --- provisioning ------------------------------------------------------------------------
    async def insert_enrollment(self, record: EnrollmentRecord) -> None:
        """Store a new enrollment. Raises ``ConflictError`` if ``(group, id)`` exists."""
        ...

    async def get_enrollment(self, enrollment_id: str, *, group: bool) -> EnrollmentRecord | None:
        """The individual enrollment or group called ``enrollment_id``, or ``None``."""
        ...

    async def list_enrollments(
        self, *, group: bool, after: str = "", limit: int = 100
    ) -> list[EnrollmentRecord]:
        """Individual enrollments or groups with ``enrollment_id > after``, in id order."""
        ...

    async def update_enrollment(self, record: EnrollmentRecord, *, expected_version: int) -> None:
        """Replace an enrollment whose stored version is ``expected_version``.

        ``record.version`` must be ``expected_version + 1``. Raises ``NotFoundError`` if it is
        gone, ``PreconditionFailedError`` if it changed meanwhile.
        """
        ...

    async def delete_enrollment(self, enrollment_id: str, *, group: bool) -> bool:
        """Delete an enrollment (and, for a group, its claim tokens); ``False`` if unknown."""
        ...

    async def put_registration(self, record: RegistrationRecord) -> None:
        """Insert or replace the registration state of ``record.registration_id``."""
        ...

    async def get_registration(self, registration_id: str) -> RegistrationRecord | None:
        """The registration state of ``registration_id``, or ``None``."""
        ...

    async def list_registrations(
        self,
        *,
        enrollment_id: str | None = None,
        group: bool | None = None,
        after: str = "",
        limit: int = 100,
    ) -> list[RegistrationRecord]:
        """Registrations with ``registration_id > after``, in id order.

        ``enrollment_id`` and ``group`` filter independently; together they give one
        enrollment's registrations.
        """
        ...

    async def delete_registration(self, registration_id: str) -> bool:
        """Forget a registration state; ``False`` if unknown."""
        ...

    async def insert_claim_token(self, record: ClaimTokenRecord) -> None:
        """Store a claim token.

        Raises ``ConflictError`` on a duplicate id or hash, and ``NotFoundError`` if its
        enrollment group does not exist.
        """
        ...

    async def consume_claim_token(
        self, token_hash: bytes, now: float
    ) -> tuple[ClaimOutcome, ClaimTokenRecord | None]:
        """Use a claim token once, atomically.

        Returns ``(OK, record)`` with ``uses`` already incremented when the token exists, is
        not revoked, ``now < expires_at`` and ``uses < max_uses``; otherwise the outcome that
        refused it (checked in the order unknown, revoked, expired, exhausted) and the record
        unchanged (``None`` when unknown). Two concurrent calls never both get the last use.
        """
        ...

    async def list_claim_tokens(self, group_id: str | None = None) -> list[ClaimTokenRecord]:
        """Claim tokens (hashes included; callers must not expose them), oldest first."""
        ...

    async def revoke_claim_token(self, token_id: str) -> bool:
        """Mark a claim token revoked; ``False`` if unknown."""
        ...

    async def insert_certificate(self, record: IssuedCertificateRecord) -> None:
        """Record an issued certificate. Raises ``ConflictError`` on a duplicate serial."""
        ...

    async def get_certificate(self, serial: str) -> IssuedCertificateRecord | None:
        """The issued certificate with this serial (upper hex), or ``None``."""
        ...

    async def list_certificates(
        self,
        *,
        device_id: str | None = None,
        revoked: bool | None = None,
        after: str = "",
        limit: int = 100,
    ) -> list[IssuedCertificateRecord]:
        """Issued certificates with ``serial > after`` in serial (text) order.

        Optionally filtered by device and by whether they are revoked.
        """
        ...

    async def revoke_certificate(
        self, serial: str, revoked_at: float, reason: str
    ) -> IssuedCertificateRecord | None:
        """Mark a certificate revoked and return it.

        An already revoked one is returned as it is (the first revocation wins); ``None`` if
        the serial is unknown.
        """
        ...

    async def list_revoked_certificates(self) -> list[IssuedCertificateRecord]:
        """Every revoked certificate, by revocation time then serial."""
        ...

    async def put_crl(self, number: int, der: bytes) -> None:
        """Store the current CRL.

        ``number`` must be greater than the stored one's (``ConflictError`` otherwise) and fit
        in 63 bits (``ValueError``).
        """
        ...

    async def get_crl(self) -> tuple[int, bytes] | None:
        """The current CRL ``(number, DER)``, or ``None`` before the first."""
        ...

    # --- security monitoring -------------------------------------------------------------------
    async def insert_alert(self, record: AlertRecord) -> None:
        """Store a new alert. Raises ``ConflictError`` on a duplicate id."""
        ...

    async def get_alert(self, alert_id: str) -> AlertRecord | None:
        """The alert with this id, or ``None``."""
        ...

    async def find_alert(self, alert_type: str, device_id: str | None) -> AlertRecord | None:
        """The alert de-duplication and suppression look at for this type and device.

        The newest one that is not resolved, else the newest resolved one, else ``None``.
        """
        ...

    async def update_alert(self, record: AlertRecord, *, expected_version: int) -> None:
        """Replace an alert whose stored version is ``expected_version``.

        ``record.version`` must be ``expected_version + 1``. Raises ``NotFoundError`` if it is
        gone, ``PreconditionFailedError`` if it changed.
        """
        ...

    async def list_alerts(
        self,
        *,
        device_id: str | None = None,
        state: AlertState | None = None,
        after: str = "",
        limit: int = 100,
    ) -> list[AlertRecord]:
        """Alerts with ``alert_id > after`` in id order (ids sort by creation time).

        Optionally only those of one device and in one state.
        """
        ...

    async def put_monitor_state(self, name: str, state: str) -> None:
        """Store (replace) a named piece of monitor state (detector snapshots, the log cursor)."""
        ...

    async def get_monitor_state(self, name: str) -> str | None:
        """A named piece of monitor state, or ``None``."""
        ...

    # --- device posture: profiles, advisories, latest reports ---------------------------------
    async def put_profile(self, record: ProfileRecord, *, expected_version: int | None) -> None:
        """Create (``expected_version=None``) or replace a profile.

        Creating an existing name raises ``ConflictError``; replacing needs the stored version
        to be ``expected_version`` and ``record.version`` to be one more (``NotFoundError`` if
        it is gone, ``PreconditionFailedError`` if it changed).
        """
        ...

    async def get_profile(self, name: str) -> ProfileRecord | None:
        """The profile called ``name``, or ``None``."""
        ...

    async def list_profiles(self) -> list[ProfileRecord]:
        """Every profile, by name."""
        ...

    async def delete_profile(self, name: str) -> bool:
        """Delete a profile; whether it existed."""
        ...

    async def put_advisories(
        self, records: Sequence[AdvisoryRecord], *, delete: Sequence[str] = ()
    ) -> None:
        """Insert or replace ``records`` and delete the ids in ``delete``, in one transaction."""
        ...

    async def list_advisories(self, *, after: str = "", limit: int = 1000) -> list[AdvisoryRecord]:
        """Advisories with ``advisory_id > after``, in id order."""
        ...

    async def count_advisories(self) -> int:
        """How many advisories are stored."""
        ...

    async def put_posture(self, record: PostureRecord) -> None:
        """Store a device's report of one kind unless a newer one (higher ``seq``) is stored."""
        ...

    async def get_posture(self, device_id: str, kind: str) -> PostureRecord | None:
        """A device's latest report of ``kind``, or ``None``."""
        ...

    async def list_posture(
        self, kind: str, *, after: str = "", limit: int = 1000
    ) -> list[PostureRecord]:
        """The latest reports of ``kind`` of devices with ``device_id > after``, in id order."""
        ...

    # --- audit log ---------------------------------------------------------------------------
    async def append_audit(self, records: Sequence[tuple[int, bytes, bytes]]) -> None:
        """Append audit records ``(seq, hash, body)`` in one transaction, durable on return.

        ``ConflictError`` if a seq is already stored (the log is append-only).
        """
        ...

    async def read_audit(
        self, *, after_seq: int = -1, limit: int = 1000
    ) -> list[tuple[int, bytes, bytes]]:
        """Audit records ``(seq, hash, body)`` with ``seq > after_seq``, in order."""
        ...

    async def audit_hashes(self) -> list[bytes]:
        """Every audit record hash in seq order (the Merkle tree's leaves)."""
        ...

    async def put_audit_checkpoint(self, tree_size: int, body: str) -> None:
        """Store a signed checkpoint (its JSON) for ``tree_size``, replacing one of that size."""
        ...

    async def audit_checkpoints(self) -> list[tuple[int, str]]:
        """Every stored checkpoint ``(tree_size, JSON)``, smallest tree first."""
        ...

    # --- message log ------------------------------------------------------------------------
    def append(self, entry: LogEntry) -> asyncio.Future[int]:
        """Queue ``entry`` for the next group commit; never blocks.

        The future resolves with the entry's sequence number once durable, or fails with
        ``StorageError`` if the commit failed (the caller then must not acknowledge).
        """
        ...

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

        ``since`` / ``until`` keep messages with ``since <= enqueued_at < until``.
        """
        ...

    async def last_seq(self) -> int:
        """The highest committed sequence number (0 when empty)."""
        ...

    def add_commit_listener(self, listener: CommitListener) -> Callable[[], None]:
        """Call ``listener`` on the event loop after every committed batch, in commit order.

        Returns a function that removes the listener. Exceptions raised by a listener are
        logged and never reach the writer or the other listeners.
        """
        ...

    def statistics(self) -> StorageStatistics:
        """Commit counters."""
        ...
