"""The provisioning service: enrollments, device attestation, assignment and claim tokens.

Wire compatible with Azure DPS over MQTT (azure-iot-mqtt.md §5; the wire rules are pure, in
:mod:`ironhub.codec.dps`). A device reaches it on the hub's own TLS listener with the DPS
username shape; the endpoint hands the CONNECT credential to :meth:`ProvisioningService.attest`
and the register and status requests to :meth:`~ProvisioningService.begin` and
:meth:`~ProvisioningService.poll`.

Attestation (who the device is), at CONNECT, in this order:

* a SAS token (``sr={idScope}/registrations/{registrationId}``): checked against the
  individual enrollment's keys if there is one for the registration id (it takes precedence,
  as in Azure), else against the key derived from each symmetric group's keys
  (HMAC-SHA256 over the registration id, §5.4);
* a TLS client certificate: one issued by the device CA (a renewal: the current certificate
  proves the device, it must not be revoked and its CN must be the registration id), an
  individual enrollment's registered certificate (thumbprint), or a leaf chaining to an
  x509 group's CA with CN = registration id (§5.5);
* neither: the register request must carry a claim token and a CSR (ironhub's extension);
  the token is spent only after the CSR passed its checks.

Assignment then runs in the background while the device polls (register → 202 assigning →
poll → 200 assigned): the enrollment must be enabled and so must an existing device; a device
that exists but was not provisioned by this service is never taken over; credentials are
installed in the registry (the enrollment's or derived SAS keys, the enrollment's certificate,
or a certificate issued from the CSR, the previous issued one being revoked as superseded);
the initial twin is applied at first registration (and at each one under ``reset-twin``);
the registration record and an audit record are written. Failures end the operation as
``failed`` or ``disabled`` with an error code and a message the device can read.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from cryptography import x509

from ironhub import pki
from ironhub.codec import dps, sas
from ironhub.errors import (
    AuthenticationError,
    CertificateRequestError,
    ConflictError,
    NotFoundError,
    SealingError,
    StorageError,
    ThrottledError,
    TrustError,
    ValidationError,
)
from ironhub.hub.ratelimit import FailureWindow
from ironhub.registry.sealing import enrollment_key_aad, seal, unseal
from ironhub.registry.service import KEY_BYTES, KEY_SLOTS, validate_device_id
from ironhub.registry.twin import check_patch
from ironhub.storage.interfaces import (
    Attestation,
    AuthKind,
    ClaimOutcome,
    ClaimTokenRecord,
    DeviceState,
    EnrollmentRecord,
    RegistrationRecord,
    ReprovisionPolicy,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence

    from ironhub.audit.service import AuditLog
    from ironhub.clock import Clock
    from ironhub.config import HubConfig
    from ironhub.hub.twins import TwinService
    from ironhub.provisioning.authority import DeviceAuthority, IssuedCertificate
    from ironhub.registry.service import Registry
    from ironhub.storage.interfaces import DeviceRecord, Storage

__all__ = [
    "CLAIM_TOKEN_PREFIX",
    "AttestedDevice",
    "CreatedClaimToken",
    "CreatedEnrollment",
    "Operation",
    "ProvisioningInfo",
    "ProvisioningService",
]

logger = logging.getLogger(__name__)

#: Claim token secrets start with this, so they are recognisable in a leaked file or log.
CLAIM_TOKEN_PREFIX: Final = "ihc_"  # noqa: S105 - a marker, not a secret
#: Most operations (register requests) remembered at once; more are refused with 429.
MAX_OPERATIONS: Final = 200_000
#: Longest accepted claim token text (the prefix and 43 base64url characters).
_MAX_CLAIM_TOKEN_CHARS: Final = 128

# Error codes in Azure's six-digit style (status * 1000 + detail), in the result's errorCode.
_BAD_REQUEST: Final = 400201
_CSR_REFUSED: Final = 400202
_UNAUTHORIZED: Final = 401201
_DISABLED: Final = 403201
_NOT_FOUND: Final = 404201
_CONFLICT: Final = 409201
_UNAVAILABLE: Final = 503201


@dataclass(frozen=True, slots=True)
class ProvisioningInfo:
    """What a device needs to be configured with (``ironhub provisioning info``)."""

    enabled: bool
    id_scope: str
    provisioning_host: str
    port: int
    assigned_hub: str
    device_ca_pem: str


@dataclass(frozen=True, slots=True)
class CreatedEnrollment:
    """A new enrollment and, for symmetric attestation, its two keys (base64), shown once."""

    record: EnrollmentRecord
    primary_key: str | None = None
    secondary_key: str | None = None


@dataclass(frozen=True, slots=True)
class CreatedClaimToken:
    """A new claim token: its record and the secret, shown once."""

    record: ClaimTokenRecord
    secret: str


@dataclass(frozen=True, slots=True)
class AttestedDevice:
    """A provisioning connection's proven identity (or the lack of one: ``claim``).

    ``method`` is ``symmetric``, ``x509``, ``renewal`` or ``claim``. ``keys`` are the device's
    SAS keys to install (the enrollment's, or derived from the group's), ``certificate`` the
    presented client certificate.
    """

    registration_id: str
    method: str
    enrollment_id: str | None = None
    group: bool = False
    keys: tuple[bytes, bytes] | None = None
    certificate: x509.Certificate | None = None


@dataclass(slots=True)
class Operation:
    """One register request: ``assigning`` until the background assignment ends."""

    operation_id: str
    registration_id: str
    created_at: float
    status: str = "assigning"
    state: dps.RegistrationState | None = None
    finished_at: float | None = None
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def wait(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the assignment to end."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), seconds)

    def body(self) -> bytes:
        """The JSON body of a status response (§5.2)."""
        return dps.operation_body(self.operation_id, self.status, self.state)


class _Refused(Exception):  # noqa: N818 - an outcome, not an error of ours
    """The assignment ends as ``status`` (``failed`` or ``disabled``) with this error."""

    def __init__(self, code: int, message: str, *, status: str = "failed") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class _SymmetricGroup:
    group_id: str
    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class _X509Group:
    group_id: str
    cas: tuple[x509.Certificate, ...]


def _log_audit_failure(future: asyncio.Future[int]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("an audit record of provisioning failed", exc_info=future.exception())


def _hash_claim_token(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def _load_json_object(text: str | None, what: str) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):  # pragma: no cover - stored by this module as objects
        raise ValidationError(f"{what} must be a JSON object")
    return value


class ProvisioningService:
    """Enrollments and claim tokens for operators; attestation and assignment for devices."""

    def __init__(
        self,
        storage: Storage,
        registry: Registry,
        twins: TwinService,
        authority: DeviceAuthority,
        *,
        kek: bytes,
        clock: Clock,
        config: HubConfig,
        audit: AuditLog | None = None,
    ) -> None:
        self._storage = storage
        self._registry = registry
        self._twins = twins
        self._authority = authority
        self._kek = kek
        self._clock = clock
        self._hub = config
        self._config = config.provisioning
        self._audit = audit
        self.id_scope = self._config.id_scope or dps.default_id_scope(config.hostname)
        self._operations: dict[str, Operation] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._polls = FailureWindow(
            self._config.max_polls_per_window, self._config.poll_window_seconds
        )
        self._symmetric_groups: list[_SymmetricGroup] | None = None
        self._x509_groups: list[_X509Group] | None = None
        self._trust_listeners: list[Callable[[], None]] = []
        #: The port the device endpoint actually listens on (set by the server once bound).
        self.port = 0

    @property
    def enabled(self) -> bool:
        """Whether DPS-shaped connections are served."""
        return self._config.enabled

    def now(self) -> float:
        """The wall-clock time (for the timestamps of answers)."""
        return self._clock.time()

    @property
    def authority(self) -> DeviceAuthority:
        """The device certificate authority."""
        return self._authority

    def info(self) -> ProvisioningInfo:
        """The ID scope and where devices reach provisioning."""
        return ProvisioningInfo(
            enabled=self._config.enabled,
            id_scope=self.id_scope,
            provisioning_host=self._hub.hostname,
            port=self.port or self._hub.mqtt.port,
            assigned_hub=self._hub.hostname,
            device_ca_pem=self._authority.certificate_pem(),
        )

    def add_trust_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the certificates devices may present change."""
        self._trust_listeners.append(callback)

    def _changed(self, *, trust: bool) -> None:
        self._symmetric_groups = None
        self._x509_groups = None
        if trust:
            for callback in self._trust_listeners:
                callback()

    async def close(self) -> None:
        """Wait for the assignments under way (bounded), then drop the operations."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        self._operations.clear()

    # --- trust material for the TLS layer and device authentication ---------------------------
    async def trust_pems(self) -> list[str]:
        """Certificates a provisioning client may chain to in the TLS handshake.

        The device CA, individual x509 enrollments' certificates and x509 groups' CAs.

        Raises:
            StorageError: storage failed.
        """
        pems = [self._authority.certificate_pem()]
        for group in (False, True):
            async for record in self._all_enrollments(group=group):
                if record.attestation is Attestation.X509:
                    pems.extend(record.certificates_pem)
        return pems

    async def device_anchors(self) -> list[x509.Certificate]:
        """CAs that X.509 CA-signed hub devices may chain to besides the registered CAs.

        The device CA and the CAs of the x509 enrollment groups.

        Raises:
            StorageError: storage failed.
        """
        groups = await self._load_x509_groups()
        return [self._authority.certificate, *(ca for g in groups for ca in g.cas)]

    def is_revoked(self, certificate: x509.Certificate) -> bool:
        """Whether the device CA revoked ``certificate``."""
        return self._authority.is_revoked(certificate)

    # --- enrollments (operator side) ----------------------------------------------------------
    async def create_enrollment(
        self,
        enrollment_id: str,
        attestation: Attestation,
        *,
        group: bool,
        certificates_pem: Sequence[str] = (),
        device_id: str | None = None,
        initial_twin: Mapping[str, Any] | None = None,
        allocation_payload: Mapping[str, Any] | None = None,
        reprovision: ReprovisionPolicy = ReprovisionPolicy.KEEP_TWIN,
        enabled: bool = True,
    ) -> CreatedEnrollment:
        """Create an individual enrollment (``group`` false) or an enrollment group.

        Args:
            enrollment_id: the registration id (individual) or the group's name.
            attestation: ``symmetric`` (keys are generated and shown once) or ``x509``.
            group: whether it is a group.
            certificates_pem: x509 individual: one or two self-signed device certificates;
                x509 group: one or more CA (root or intermediate) certificates.
            device_id: individual only: the device id to assign (default: the registration id).
            initial_twin: ``{"tags": {...}, "properties": {"desired": {...}}}``.
            allocation_payload: a JSON object returned to the device at registration.
            reprovision: what a later registration does to the twin.
            enabled: whether it admits devices now.

        Raises:
            ValidationError: a malformed id, certificates missing, refused or given to
                symmetric attestation, a bad initial twin or payload.
            ConflictError: the enrollment exists.
            StorageError: storage failed.
        """
        kind = self._check_attestation(attestation)
        if group:
            validate_device_id(enrollment_id)  # the same safe character set
            if device_id is not None:
                raise ValidationError("a group assigns each device its registration id")
        else:
            dps.validate_registration_id(enrollment_id)
            if device_id is not None:
                validate_device_id(device_id)
        twin = self._check_initial_twin(initial_twin or {})
        payload = None
        if allocation_payload is not None:
            if not isinstance(allocation_payload, dict):
                raise ValidationError("the allocation payload must be a JSON object")
            payload = json.dumps(allocation_payload, separators=(",", ":"), allow_nan=False)
            if len(payload) > 8 * 1024:
                raise ValidationError("the allocation payload is larger than 8 KiB")
        now = self._clock.time()
        record = EnrollmentRecord(
            enrollment_id=enrollment_id,
            group=group,
            attestation=kind,
            enabled=enabled,
            created_at=now,
            updated_at=now,
            device_id=device_id,
            initial_twin=json.dumps(twin, separators=(",", ":")),
            allocation_payload=payload,
            reprovision=ReprovisionPolicy(reprovision),
        )
        created = CreatedEnrollment(record)
        if kind is Attestation.SYMMETRIC:
            if certificates_pem:
                raise ValidationError("symmetric enrollments take no certificates")
            keys = (secrets.token_bytes(KEY_BYTES), secrets.token_bytes(KEY_BYTES))
            record = dataclasses.replace(
                record,
                primary_key_sealed=self._seal(enrollment_id, group, "primary", keys[0]),
                secondary_key_sealed=self._seal(enrollment_id, group, "secondary", keys[1]),
            )
            created = CreatedEnrollment(record, _b64(keys[0]), _b64(keys[1]))
        else:
            record = dataclasses.replace(
                record, certificates_pem=self._check_certificates(certificates_pem, group=group)
            )
            created = CreatedEnrollment(record)
        await self._storage.insert_enrollment(record)
        self._changed(trust=kind is Attestation.X509)
        logger.info(
            "enrollment created id=%s group=%s attestation=%s", enrollment_id, group, kind.value
        )
        return created

    @staticmethod
    def _check_attestation(attestation: Attestation | str) -> Attestation:
        try:
            return Attestation(attestation)
        except ValueError:
            raise ValidationError("attestation must be 'symmetric' or 'x509'") from None

    def _check_initial_twin(self, twin: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(twin, dict) or set(twin) - {"tags", "properties"}:
            raise ValidationError('the initial twin is {"tags": {...}, "properties": {...}}')
        properties = twin.get("properties", {})
        if not isinstance(properties, dict) or set(properties) - {"desired"}:
            raise ValidationError('the initial twin\'s properties are {"desired": {...}}')
        tags = check_patch(twin.get("tags", {}))
        desired = check_patch(properties.get("desired", {}))
        return {"tags": tags, "properties": {"desired": desired}}

    @staticmethod
    def _check_certificates(pems: Sequence[str], *, group: bool) -> tuple[str, ...]:
        if group:
            if not 1 <= len(pems) <= 10:
                raise ValidationError("an x509 group takes one to ten CA certificates")
            try:
                cas = [pki.parse_ca_certificate(pem) for pem in pems]
            except TrustError as exc:
                raise ValidationError(f"CA certificate refused: {exc}") from None
            return tuple(pki.certificate_pem(ca).decode("ascii") for ca in cas)
        if not 1 <= len(pems) <= len(KEY_SLOTS):
            raise ValidationError("an x509 enrollment takes one or two device certificates")
        try:
            certs = [pki.parse_self_signed_device_certificate(pem) for pem in pems]
        except TrustError as exc:
            raise ValidationError(f"device certificate refused: {exc}") from None
        return tuple(pki.certificate_pem(c).decode("ascii") for c in certs)

    def _seal(self, enrollment_id: str, group: bool, slot: str, key: bytes) -> bytes:
        return seal(self._kek, key, aad=enrollment_key_aad(enrollment_id, group=group, slot=slot))

    def _unseal_keys(self, record: EnrollmentRecord) -> tuple[bytes, bytes]:
        """The enrollment's raw keys (primary, secondary).

        Raises:
            SealingError: a key cannot be opened.
        """
        blobs = (record.primary_key_sealed, record.secondary_key_sealed)
        keys = tuple(
            unseal(
                self._kek,
                blob or b"",
                aad=enrollment_key_aad(record.enrollment_id, group=record.group, slot=slot),
            )
            for slot, blob in zip(KEY_SLOTS, blobs, strict=True)
        )
        return keys[0], keys[1]

    async def get_enrollment(self, enrollment_id: str, *, group: bool) -> EnrollmentRecord:
        """One enrollment.

        Raises:
            NotFoundError: no such enrollment.
            StorageError: storage failed.
        """
        record = await self._storage.get_enrollment(enrollment_id, group=group)
        if record is None:
            kind = "enrollment group" if group else "enrollment"
            raise NotFoundError(f"{kind} {enrollment_id!r} does not exist")
        return record

    async def list_enrollments(
        self, *, group: bool, after: str = "", limit: int = 100
    ) -> list[EnrollmentRecord]:
        """Enrollments (or groups) in id order.

        Raises:
            StorageError: storage failed.
        """
        return await self._storage.list_enrollments(group=group, after=after, limit=limit)

    async def _all_enrollments(self, *, group: bool) -> AsyncIterator[EnrollmentRecord]:
        after = ""
        while True:
            page = await self._storage.list_enrollments(group=group, after=after, limit=500)
            if not page:
                return
            for record in page:
                yield record
            after = page[-1].enrollment_id

    async def set_enrollment_enabled(
        self, enrollment_id: str, *, group: bool, enabled: bool
    ) -> tuple[EnrollmentRecord, list[str]]:
        """Enable or disable an enrollment.

        Disabling also disables every device it provisioned (their live connections close at
        once); enabling does not re-enable them.

        Returns:
            The stored enrollment and the device ids that were disabled.

        Raises:
            NotFoundError: no such enrollment.
            ConflictError: it kept changing concurrently.
            StorageError: storage failed.
        """
        for _ in range(3):
            current = await self.get_enrollment(enrollment_id, group=group)
            updated = dataclasses.replace(
                current,
                enabled=enabled,
                version=current.version + 1,
                updated_at=self._clock.time(),
            )
            try:
                await self._storage.update_enrollment(updated, expected_version=current.version)
            except ConflictError:
                continue
            break
        else:
            raise ConflictError(f"enrollment {enrollment_id!r} keeps changing; try again")
        self._changed(trust=False)
        disabled: list[str] = []
        if not enabled:
            after = ""
            while True:
                page = await self._storage.list_registrations(
                    enrollment_id=enrollment_id, group=group, after=after, limit=500
                )
                if not page:
                    break
                for registration in page:
                    if registration.status != "assigned":
                        continue
                    try:
                        device = await self._registry.set_state(
                            registration.device_id, DeviceState.DISABLED
                        )
                    except NotFoundError:
                        continue
                    if device.state is DeviceState.DISABLED:
                        disabled.append(registration.device_id)
                after = page[-1].registration_id
        logger.info(
            "enrollment %s id=%s group=%s devices_disabled=%d",
            "enabled" if enabled else "disabled",
            enrollment_id,
            group,
            len(disabled),
        )
        return updated, disabled

    async def delete_enrollment(self, enrollment_id: str, *, group: bool) -> None:
        """Delete an enrollment (a group's claim tokens go with it).

        Devices it provisioned stay registered: disable or delete them, or revoke their
        certificates, to cut them off.

        Raises:
            NotFoundError: no such enrollment.
            StorageError: storage failed.
        """
        if not await self._storage.delete_enrollment(enrollment_id, group=group):
            kind = "enrollment group" if group else "enrollment"
            raise NotFoundError(f"{kind} {enrollment_id!r} does not exist")
        self._changed(trust=True)

    async def compute_device_key(self, group_id: str, registration_id: str) -> str:
        """The device key a symmetric group gives ``registration_id`` (from its primary key).

        Raises:
            ValidationError: a malformed registration id, or the group is not symmetric.
            NotFoundError: no such group.
            SealingError: the group key cannot be opened.
            StorageError: storage failed.
        """
        dps.validate_registration_id(registration_id)
        record = await self.get_enrollment(group_id, group=True)
        if record.attestation is not Attestation.SYMMETRIC:
            raise ValidationError(f"group {group_id!r} uses x509 attestation, not keys")
        primary, _ = self._unseal_keys(record)
        return _b64(dps.derive_device_key(primary, registration_id))

    # --- claim tokens ---------------------------------------------------------------------------
    async def create_claim_token(
        self, group_id: str, *, uses: int, lifetime_seconds: float, created_by: str
    ) -> CreatedClaimToken:
        """Create a claim token for an enrollment group; the secret is shown once.

        Raises:
            ValidationError: uses or lifetime out of bounds.
            NotFoundError: no such group.
            StorageError: storage failed.
        """
        if not 1 <= uses <= self._config.claim_token_max_uses:
            raise ValidationError(f"uses must be between 1 and {self._config.claim_token_max_uses}")
        longest = self._config.claim_token_max_lifetime_days * 86400.0
        if not 0 < lifetime_seconds <= longest:
            raise ValidationError(
                f"a claim token lives at most {self._config.claim_token_max_lifetime_days:g} days"
            )
        await self.get_enrollment(group_id, group=True)
        secret = CLAIM_TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock.time()
        record = ClaimTokenRecord(
            token_id="ct_" + secrets.token_hex(8),
            group_id=group_id,
            token_hash=_hash_claim_token(secret),
            max_uses=uses,
            uses=0,
            created_at=now,
            expires_at=now + lifetime_seconds,
            created_by=created_by,
        )
        await self._storage.insert_claim_token(record)
        logger.info(
            "claim token created token_id=%s group=%s uses=%d", record.token_id, group_id, uses
        )
        return CreatedClaimToken(record, secret)

    async def list_claim_tokens(self, group_id: str | None = None) -> list[ClaimTokenRecord]:
        """Claim tokens, oldest first (with hashes: callers must not expose them).

        Raises:
            StorageError: storage failed.
        """
        return await self._storage.list_claim_tokens(group_id)

    async def revoke_claim_token(self, token_id: str) -> None:
        """Revoke a claim token.

        Raises:
            NotFoundError: no such token.
            StorageError: storage failed.
        """
        if not await self._storage.revoke_claim_token(token_id):
            raise NotFoundError(f"claim token {token_id!r} does not exist")

    # --- registrations (operator side) ----------------------------------------------------------
    async def get_registration(self, registration_id: str) -> RegistrationRecord:
        """The registration state of one registration id.

        Raises:
            NotFoundError: it never registered.
            StorageError: storage failed.
        """
        record = await self._storage.get_registration(registration_id)
        if record is None:
            raise NotFoundError(f"registration {registration_id!r} does not exist")
        return record

    async def list_registrations(
        self,
        *,
        enrollment_id: str | None = None,
        group: bool | None = None,
        after: str = "",
        limit: int = 100,
    ) -> list[RegistrationRecord]:
        """Registration states in id order, optionally of one enrollment.

        Raises:
            StorageError: storage failed.
        """
        return await self._storage.list_registrations(
            enrollment_id=enrollment_id, group=group, after=after, limit=limit
        )

    async def delete_registration(self, registration_id: str) -> None:
        """Forget a registration state.

        The device stays; a later registration of the same id is then refused while the
        device exists, as for any device not provisioned here.

        Raises:
            NotFoundError: unknown registration.
            StorageError: storage failed.
        """
        if not await self._storage.delete_registration(registration_id):
            raise NotFoundError(f"registration {registration_id!r} does not exist")

    # --- device side: attestation ---------------------------------------------------------------
    async def attest(
        self,
        username: dps.DpsUsername,
        *,
        password: bytes | None,
        certificate_der: bytes | None,
    ) -> AttestedDevice:
        """Check a provisioning CONNECT's credential.

        Raises:
            AuthenticationError: the credential is refused (``reason`` says why).
            StorageError: storage failed (fail closed).
        """
        if username.id_scope != self.id_scope:
            raise AuthenticationError("wrong-id-scope")
        registration_id = username.registration_id
        if password is not None:
            return await self._attest_token(registration_id, password)
        if certificate_der is not None:
            try:
                leaf = x509.load_der_x509_certificate(certificate_der)
            except ValueError:
                raise AuthenticationError("bad-certificate") from None
            try:
                return await self._attest_certificate(registration_id, leaf)
            except TrustError as exc:
                raise AuthenticationError("certificate-refused", str(exc)) from None
        return AttestedDevice(registration_id, "claim")

    async def _attest_token(self, registration_id: str, password: bytes) -> AttestedDevice:
        token = sas.parse_sas_token(password)
        now = self._clock.time()
        enrollment = await self._storage.get_enrollment(registration_id, group=False)
        if enrollment is not None:
            # An individual enrollment takes precedence over every group (as in Azure).
            if enrollment.attestation is not Attestation.SYMMETRIC:
                raise AuthenticationError("wrong-attestation")
            try:
                keys = self._unseal_keys(enrollment)
            except SealingError:
                # Fail closed: a key we cannot open authenticates nobody.
                logger.exception("cannot unseal enrollment keys id=%s", registration_id)
                raise AuthenticationError("key-unavailable") from None
            dps.verify_dps_token(
                token, id_scope=self.id_scope, registration_id=registration_id, keys=keys, now=now
            )
            return AttestedDevice(
                registration_id, "symmetric", registration_id, group=False, keys=keys
            )
        for group in await self._load_symmetric_groups():
            derived = tuple(dps.derive_device_key(k, registration_id) for k in group.keys)
            try:
                dps.verify_dps_token(
                    token,
                    id_scope=self.id_scope,
                    registration_id=registration_id,
                    keys=derived,
                    now=now,
                )
            except AuthenticationError as exc:
                if exc.reason == "bad-signature":
                    continue
                raise
            return AttestedDevice(
                registration_id,
                "symmetric",
                group.group_id,
                group=True,
                keys=(derived[0], derived[1]),
            )
        raise AuthenticationError("unknown-registration")

    async def _attest_certificate(
        self, registration_id: str, leaf: x509.Certificate
    ) -> AttestedDevice:
        now = datetime.fromtimestamp(self._clock.time(), tz=UTC)
        if self._authority.issued_by_us(leaf):
            if self._authority.is_revoked(leaf):
                raise AuthenticationError("certificate-revoked")
            subject = pki.verify_ca_signed_device(
                leaf, trusted_cas=[self._authority.certificate], now=now
            )
            if subject != registration_id:
                raise AuthenticationError("certificate-identity-mismatch")
            return AttestedDevice(registration_id, "renewal", certificate=leaf)
        enrollment = await self._storage.get_enrollment(registration_id, group=False)
        if enrollment is not None:
            if enrollment.attestation is not Attestation.X509:
                raise AuthenticationError("wrong-attestation")
            thumbprints = [
                pki.thumbprint_sha256(pki.parse_certificate_pem(pem))
                for pem in enrollment.certificates_pem
            ]
            pki.verify_thumbprint_device(leaf, thumbprints=thumbprints, now=now)
            if pki.device_identity_from_certificate(leaf) != registration_id:
                raise AuthenticationError("certificate-identity-mismatch")
            return AttestedDevice(
                registration_id, "x509", registration_id, group=False, certificate=leaf
            )
        for group in await self._load_x509_groups():
            try:
                subject = pki.verify_ca_signed_device(leaf, trusted_cas=group.cas, now=now)
            except TrustError:
                continue
            if subject != registration_id:
                raise AuthenticationError("certificate-identity-mismatch")
            return AttestedDevice(
                registration_id, "x509", group.group_id, group=True, certificate=leaf
            )
        raise AuthenticationError("unknown-registration")

    async def _load_symmetric_groups(self) -> list[_SymmetricGroup]:
        groups = self._symmetric_groups
        if groups is None:
            groups = []
            async for record in self._all_enrollments(group=True):
                if record.attestation is not Attestation.SYMMETRIC:
                    continue
                try:
                    groups.append(_SymmetricGroup(record.enrollment_id, self._unseal_keys(record)))
                except SealingError:
                    # That group admits nobody (fail closed); the others keep working.
                    logger.exception("cannot unseal group keys group=%s", record.enrollment_id)
            self._symmetric_groups = groups
        return groups

    async def _load_x509_groups(self) -> list[_X509Group]:
        groups = self._x509_groups
        if groups is None:
            groups = [
                _X509Group(
                    record.enrollment_id,
                    tuple(pki.parse_certificate_pem(pem) for pem in record.certificates_pem),
                )
                async for record in self._all_enrollments(group=True)
                if record.attestation is Attestation.X509
            ]
            self._x509_groups = groups
        return groups

    # --- device side: operations ----------------------------------------------------------------
    def begin(self, attested: AttestedDevice, body: dps.RegisterBody, *, source: str) -> Operation:
        """Start the assignment of a register request; the operation to report (assigning).

        Raises:
            ThrottledError: too many operations are under way.
        """
        now = self._clock.time()
        self._prune(now)
        if len(self._operations) >= MAX_OPERATIONS:
            raise ThrottledError("too many provisioning operations under way")
        operation = Operation(
            operation_id=f"4.{secrets.token_hex(8)}.{secrets.token_hex(12)}",
            registration_id=attested.registration_id,
            created_at=now,
        )
        self._operations[operation.operation_id] = operation
        task = asyncio.get_running_loop().create_task(self._run(operation, attested, body, source))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return operation

    def poll(self, registration_id: str, operation_id: str) -> Operation:
        """The operation a status request asks about.

        Raises:
            ThrottledError: the registration polls faster than allowed (429).
            NotFoundError: no such operation for this registration id (404).
        """
        now = self._clock.monotonic()
        self._polls.check(registration_id, now)
        self._polls.record(registration_id, now)
        operation = self._operations.get(operation_id)
        if operation is None or operation.registration_id != registration_id:
            raise NotFoundError("no such operation")
        return operation

    def _prune(self, now: float) -> None:
        """Drop operations older than the operation TTL (oldest first: dicts keep order)."""
        ttl = self._config.operation_ttl_seconds
        operations = self._operations
        while operations:
            oldest = next(iter(operations.values()))
            if now - oldest.created_at <= ttl:
                return
            del operations[oldest.operation_id]

    async def _run(
        self,
        operation: Operation,
        attested: AttestedDevice,
        body: dps.RegisterBody,
        source: str,
    ) -> None:
        registration_id = attested.registration_id
        outcome = "ok"
        reason = "-"
        try:
            state = await self._assign(attested, body, source)
        except _Refused as refused:
            outcome = "refused" if refused.status == "disabled" else "failed"
            reason = refused.message
            state = self._failed_state(registration_id, refused)
        except Exception as exc:
            # Storage, signing (an HSM gone) or a bug: the device still gets an answer, and
            # nothing half-made is reported as assigned.
            logger.exception("provisioning failed registration_id=%s", registration_id)
            outcome, reason = "failed", type(exc).__name__
            state = self._failed_state(
                registration_id, _Refused(_UNAVAILABLE, "the provisioning service is unavailable")
            )
        # Durable before the device hears the outcome (and with it every record noted
        # earlier in this assignment: the audit log commits in order).
        await self._record(
            "provisioning-register",
            registration_id,
            target=state.device_id or registration_id,
            outcome=outcome,
            source=source,
            reason=reason,
        )
        operation.state = state
        operation.status = state.status
        operation.finished_at = self._clock.time()
        operation.done.set()

    def _failed_state(self, registration_id: str, refused: _Refused) -> dps.RegistrationState:
        stamp = dps.format_timestamp(self._clock.time())
        return dps.RegistrationState(
            registration_id=registration_id,
            status=refused.status,
            created_at=stamp,
            updated_at=stamp,
            error_code=refused.code,
            error_message=refused.message,
        )

    def _note(self, action: str, actor: str, **fields: str) -> None:
        """Queue an audit record without waiting; the assignment's final record waits."""
        if self._audit is None:
            return
        try:
            future = self._audit.append_nowait(
                actor_kind="device", actor=actor, action=action, **fields
            )
        except ValidationError:
            logger.exception("could not audit %s actor=%s", action, actor)
            return
        future.add_done_callback(_log_audit_failure)

    async def _record(self, action: str, actor: str, **fields: str) -> None:
        if self._audit is None:
            return
        try:
            await self._audit.record(actor_kind="device", actor=actor, action=action, **fields)
        except (StorageError, ValidationError):
            logger.exception("could not audit %s actor=%s", action, actor)

    async def _enrollment_for(
        self, attested: AttestedDevice, body: dps.RegisterBody, source: str
    ) -> tuple[EnrollmentRecord, str | None]:
        """The enrollment that admits this registration and the claim token spent, if any."""
        registration_id = attested.registration_id
        if attested.method == "claim":
            return await self._claim_enrollment(registration_id, body, source)
        if attested.method == "renewal":
            if body.csr is None:
                raise _Refused(_BAD_REQUEST, "a certificate renewal must carry a CSR")
            registration = await self._storage.get_registration(registration_id)
            if registration is None or registration.status != "assigned":
                raise _Refused(_NOT_FOUND, "no assigned registration to renew")
            enrollment = await self._storage.get_enrollment(
                registration.enrollment_id, group=registration.group
            )
        else:
            assert attested.enrollment_id is not None
            enrollment = await self._storage.get_enrollment(
                attested.enrollment_id, group=attested.group
            )
        if enrollment is None:
            raise _Refused(_NOT_FOUND, "the enrollment no longer exists")
        return enrollment, None

    async def _claim_enrollment(
        self, registration_id: str, body: dps.RegisterBody, source: str
    ) -> tuple[EnrollmentRecord, str | None]:
        """The group a claim token admits to; the token is spent here, once the CSR passed."""
        if body.claim_token is None:
            raise _Refused(
                _UNAUTHORIZED,
                "no credential: connect with a SAS token or a certificate, or register "
                "with a claim token",
            )
        if body.csr is None:
            raise _Refused(_BAD_REQUEST, "a claim-token registration must carry a CSR")
        # The CSR is checked before the token is spent: a bad request costs no use.
        self._check_csr(body.csr, registration_id)
        token = body.claim_token
        if len(token) > _MAX_CLAIM_TOKEN_CHARS or not token.startswith(CLAIM_TOKEN_PREFIX):
            # Not one of ours: refused without a storage lookup, recorded like any other.
            outcome, record = ClaimOutcome.UNKNOWN, None
        else:
            outcome, record = await self._storage.consume_claim_token(
                _hash_claim_token(token), self._clock.time()
            )
        if outcome is not ClaimOutcome.OK or record is None:
            self._note(
                "claim-token-refused",
                registration_id,
                target=record.token_id if record else "-",
                outcome="refused",
                source=source,
                reason=outcome.value,
            )
            raise _Refused(_UNAUTHORIZED, f"the claim token is {outcome.value}")
        self._note(
            "claim-token-used",
            registration_id,
            target=record.token_id,
            source=source,
            reason=f"use {record.uses} of {record.max_uses}",
        )
        enrollment = await self._storage.get_enrollment(record.group_id, group=True)
        if enrollment is None:
            raise _Refused(_NOT_FOUND, "the claim token's enrollment group is gone")
        return enrollment, record.token_id

    def _check_csr(self, csr_text: str, device_id: str) -> None:
        try:
            pki.check_csr(pki.load_csr(csr_text), expected_common_name=device_id)
        except CertificateRequestError as exc:
            raise _Refused(_CSR_REFUSED, f"CSR refused ({exc.reason}): {exc}") from None

    async def _credentials(
        self,
        attested: AttestedDevice,
        enrollment: EnrollmentRecord,
        body: dps.RegisterBody,
        device_id: str,
        source: str,
    ) -> tuple[AuthKind, tuple[bytes, bytes] | None, tuple[str, ...], IssuedCertificate | None]:
        """The hub credentials a registration installs (issuing a certificate for a CSR)."""
        registration_id = attested.registration_id
        issued = None
        keys: tuple[bytes, bytes] | None = None
        certificates: tuple[str, ...] = ()
        if body.csr is not None:
            try:
                issued = await self._authority.issue(
                    body.csr, device_id=device_id, registration_id=registration_id
                )
            except CertificateRequestError as exc:
                raise _Refused(_CSR_REFUSED, f"CSR refused ({exc.reason}): {exc}") from None
            self._note(
                "certificate-issued",
                registration_id,
                target=issued.record.serial,
                source=source,
                reason=f"device {device_id}",
            )
            auth_kind = AuthKind.X509_CA
        elif attested.method == "symmetric":
            keys = attested.keys
            auth_kind = AuthKind.SAS
        elif enrollment.group:  # x509 group
            auth_kind = AuthKind.X509_CA
        else:  # x509 individual
            auth_kind = AuthKind.X509_THUMBPRINT
            certificates = enrollment.certificates_pem
        return auth_kind, keys, certificates, issued

    async def _assign(
        self, attested: AttestedDevice, body: dps.RegisterBody, source: str
    ) -> dps.RegistrationState:
        registration_id = attested.registration_id
        enrollment, _claim = await self._enrollment_for(attested, body, source)
        if not enrollment.enabled:
            raise _Refused(_DISABLED, "the enrollment is disabled", status="disabled")
        device_id = enrollment.device_id or registration_id
        previous = await self._storage.get_registration(registration_id)
        existing: DeviceRecord | None
        try:
            existing = await self._registry.get_device(device_id)
        except NotFoundError:
            existing = None
        if existing is not None:
            if previous is None or previous.status != "assigned" or previous.device_id != device_id:
                raise _Refused(
                    _CONFLICT,
                    f"device {device_id!r} exists and was not provisioned by this service",
                )
            if (previous.enrollment_id, previous.group) != (
                enrollment.enrollment_id,
                enrollment.group,
            ):
                # Another enrollment's device: a key derived from another group's key, or a
                # claim token, must never re-provision it (that would be a take-over).
                raise _Refused(
                    _CONFLICT, f"device {device_id!r} was provisioned by another enrollment"
                )
            if existing.state is not DeviceState.ENABLED:
                # Disabled, or quarantined: re-provisioning must not be a way out of either.
                raise _Refused(
                    _DISABLED, f"the device is {existing.state.value}", status="disabled"
                )

        auth_kind, keys, certificates, issued = await self._credentials(
            attested, enrollment, body, device_id, source
        )
        try:
            _, created = await self._registry.provision_device(
                device_id, auth_kind, keys=keys, certificates_pem=certificates
            )
        except ValidationError as exc:
            raise _Refused(_BAD_REQUEST, str(exc)) from None

        if (
            issued is not None
            and previous is not None
            and previous.certificate_serial
            and previous.certificate_serial != issued.record.serial
        ):
            # The renewed (or re-issued) certificate supersedes the previous one.
            with contextlib.suppress(NotFoundError):
                await self._authority.revoke(previous.certificate_serial, "superseded")

        reset = enrollment.reprovision is ReprovisionPolicy.RESET_TWIN
        initial = _load_json_object(enrollment.initial_twin, "initial twin")
        empty = not initial.get("tags") and not initial.get("properties", {}).get("desired")
        # A new device's twin is empty already: an empty initial twin needs no write.
        if (created and not empty) or (reset and not created):
            await self._twins.provision(
                device_id,
                tags=initial.get("tags", {}),
                desired=initial.get("properties", {}).get("desired", {}),
                reset=not created,
            )
        substatus = (
            "initialAssignment"
            if created
            else ("deviceDataReset" if reset else "deviceDataMigrated")
        )
        now = self._clock.time()
        record = RegistrationRecord(
            registration_id=registration_id,
            enrollment_id=enrollment.enrollment_id,
            group=enrollment.group,
            device_id=device_id,
            status="assigned",
            substatus=substatus,
            created_at=previous.created_at if previous else now,
            updated_at=now,
            version=(previous.version + 1) if previous else 1,
            certificate_serial=issued.record.serial if issued else None,
        )
        await self._storage.put_registration(record)
        return dps.RegistrationState(
            registration_id=registration_id,
            status="assigned",
            created_at=dps.format_timestamp(record.created_at),
            updated_at=dps.format_timestamp(now),
            assigned_hub=self._hub.hostname,
            device_id=device_id,
            substatus=substatus,
            etag=f"{record.version}",
            payload_json=enrollment.allocation_payload,
            issued_certificate_chain=issued.chain_base64() if issued else (),
        )
