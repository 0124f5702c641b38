"""The ironhub exception tree.

Every exception raised on purpose by ironhub derives from :class:`IronhubError`::

    IronhubError
    ├── ConfigError                 the configuration cannot be loaded; the process refuses to start
    ├── ProtocolError               a wire protocol was violated
    │   ├── LocalProtocolError      we tried to do something the protocol forbids (our bug)
    │   └── RemoteProtocolError     the peer misbehaved; carries the answer to give (CONNACK code)
    ├── AuthenticationError         a credential was refused (reason says why, never the secret)
    ├── AuthorizationError          an authenticated identity asked for something it may not do
    ├── ThrottledError              a rate or concurrency limit was hit
    │   └── QueueFullError          a device's cloud-to-device queue holds its maximum
    ├── DeviceUnavailableError      the device is not connected, or not listening (methods: 404)
    ├── RequestTimeoutError         the device did not answer in time (methods: 504)
    ├── DeviceResponseError         the device answered with something unusable (methods: 502)
    ├── TrustError                  X.509 / PKI material is invalid or does not chain
    │   └── CertificateRequestError a device's CSR was refused (reason: a kebab-case code)
    ├── SealingError                sealed key material cannot be opened (wrong KEK or tampered)
    ├── AuditError                  the tamper-evident audit log
    │   └── AuditIntegrityError     the log, a proof or a checkpoint does not verify: the log lies
    │       └── AuditFormatError    a line or record is unparsable or not in canonical form
    ├── StorageError                the storage backend failed; callers fail closed
    │   └── CorruptDatabaseError    the database is unreadable, truncated or of a foreign schema
    └── RegistryError               a registry operation was refused
        ├── NotFoundError           no such device / CA / token
        ├── ConflictError           the object already exists
        │   └── PreconditionFailedError  the version the caller expected is not the stored one
        └── ValidationError         an identifier or field is malformed

Messages never contain secrets, keys or payload bytes (STYLE.md).
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "AuditFormatError",
    "AuditIntegrityError",
    "AuthenticationError",
    "AuthorizationError",
    "CertificateRequestError",
    "ConfigError",
    "ConflictError",
    "CorruptDatabaseError",
    "DeviceResponseError",
    "DeviceUnavailableError",
    "IronhubError",
    "LocalProtocolError",
    "NotFoundError",
    "PreconditionFailedError",
    "ProtocolError",
    "QueueFullError",
    "RegistryError",
    "RemoteProtocolError",
    "RequestTimeoutError",
    "SealingError",
    "StorageError",
    "ThrottledError",
    "TrustError",
    "ValidationError",
]


class IronhubError(Exception):
    """Root of every exception ironhub raises on purpose."""


class ConfigError(IronhubError):
    """The configuration is invalid or unreadable; the process must not start."""


class ProtocolError(IronhubError):
    """A wire protocol rule was broken."""


class LocalProtocolError(ProtocolError):
    """We asked the codec to do something the protocol forbids (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol.

    Attributes:
        connack_code: when not ``None``, the MQTT 3.1.1 CONNACK return code to send before
            closing (only meaningful while a CONNECT is being processed, e.g. 1 for an
            unacceptable protocol level, 2 for a rejected identifier). ``None`` means: close
            the connection without answering, as [MQTT-4.8.0-1] requires for malformed input.
    """

    def __init__(self, message: str, *, connack_code: int | None = None) -> None:
        super().__init__(message)
        self.connack_code = connack_code


class AuthenticationError(IronhubError):
    """A device or operator credential was refused.

    Attributes:
        reason: a short machine-readable reason (``"bad-signature"``, ``"expired"``, ...).
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


class AuthorizationError(IronhubError):
    """An authenticated identity asked for something it is not allowed to do."""


class ThrottledError(IronhubError):
    """A rate or concurrency limit was exceeded.

    Attributes:
        retry_after_seconds: a hint of when trying again may succeed.
    """

    def __init__(self, message: str, *, retry_after_seconds: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class QueueFullError(ThrottledError):
    """A device's cloud-to-device queue already holds its maximum of pending messages."""


class DeviceUnavailableError(IronhubError):
    """The device is not connected, or not subscribed to what was asked (direct methods)."""


class RequestTimeoutError(IronhubError):
    """The device did not answer a request (a direct method) within its timeout."""


class DeviceResponseError(IronhubError):
    """The device answered a request with something unusable (a malformed method response)."""


class TrustError(IronhubError):
    """X.509 material is malformed, expired, revoked, or does not chain to a trusted CA."""


class CertificateRequestError(TrustError):
    """A certificate signing request (CSR) was refused: unreadable, or asks for too much.

    Attributes:
        reason: a short kebab-case machine code (``"malformed"``, ``"bad-signature"``,
            ``"key-type"``, ...; :data:`ironhub.pki.CSR_REFUSAL_REASONS` lists those of the
            CSR rules). The message never quotes the request's own strings.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SealingError(IronhubError):
    """Sealed key material could not be opened: wrong key-encryption key or tampering."""


class AuditError(IronhubError):
    """Root of the audit log errors.

    I/O is not audit code's business: a storage failure while reading or writing the log is a
    :class:`StorageError`, never an :class:`AuditError` (python-tuf keeps "the repository
    lies" apart from "the download failed" in the same way).
    """


class AuditIntegrityError(AuditError):
    """The audit log, an inclusion or consistency proof, or a checkpoint does not verify.

    The log lies: something was altered, removed, inserted, reordered or forged.

    Attributes:
        position: when known, the position (``seq``) of the first record that is wrong or
            missing; ``None`` when the problem cannot be pinned to a record (a header, a
            checkpoint, a proof).
        line: when known, the 1-based line of an export on which the problem shows.
    """

    def __init__(
        self, message: str, *, position: int | None = None, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.position = position
        self.line = line


class AuditFormatError(AuditIntegrityError):
    """A line, record, checkpoint or header cannot be parsed, or is not in canonical form."""


class StorageError(IronhubError):
    """The storage backend failed. Callers fail closed (no acknowledgement, 503)."""


class CorruptDatabaseError(StorageError):
    """The database is unreadable, truncated, or has a schema this version does not know."""


class RegistryError(IronhubError):
    """A registry operation was refused."""


class NotFoundError(RegistryError):
    """The device, CA or token does not exist."""


class ConflictError(RegistryError):
    """The object already exists, or an optimistic-concurrency version did not match."""


class PreconditionFailedError(ConflictError):
    """The caller's expected version (``If-Match``, ``--if-version``) is not the stored one."""


class ValidationError(RegistryError):
    """An identifier or field is malformed."""
