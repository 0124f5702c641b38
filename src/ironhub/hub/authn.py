"""Device authentication: SAS tokens and X.509 client certificates, exactly as Azure IoT Hub.

The rules themselves are pure (:mod:`ironhub.codec.sas`, :mod:`ironhub.codec.azure`,
:mod:`ironhub.pki`); this module orders them so that the cheap checks come first:

1. the client id is a valid identity (else CONNACK 2);
2. throttling per source address and per claimed identity, *before* any storage read or
   cryptography (brute force costs the hub almost nothing once throttled);
3. the username has the hub shape, names the same device, and one of our host names;
4. the registry record exists and is enabled;
5. the credential matches the device's auth kind: SAS signature with the primary or secondary
   key, or the TLS client certificate chained to a registered CA (CN = device id) or matching a
   registered thumbprint.

Nothing about any session is read or changed here; the endpoint touches session state only
after :meth:`Authenticator.authenticate` returned.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from cryptography import x509

from ironhub.codec import azure, sas
from ironhub.codec.mqtt import Connect, ConnectReturnCode
from ironhub.errors import (
    AuthenticationError,
    NotFoundError,
    SealingError,
    ThrottledError,
    TrustError,
    ValidationError,
)
from ironhub.hub.ratelimit import FailureWindow
from ironhub.pki import (
    parse_certificate_pem,
    verify_ca_signed_device,
    verify_thumbprint_device,
)
from ironhub.storage.interfaces import AuthKind, DeviceRecord, DeviceState

if TYPE_CHECKING:
    from ironhub.clock import Clock
    from ironhub.config import HubConfig
    from ironhub.registry.service import Registry

__all__ = ["AuthRefused", "Authenticated", "Authenticator", "ProvisionedTrust"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A device that proved its identity.

    Attributes:
        device_id: the identity key, equal to the MQTT client id: ``device`` or
            ``device/module``.
        auth_kind: how it proved it.
        credential_slot: 0 primary / 1 secondary key or thumbprint; ``None`` for CA-signed.
        expires_at: wall-clock deadline of the credential (SAS ``se`` or the certificate's
            ``notAfter``), or ``None``.
        certificate_der: the client certificate that authenticated, kept so that live
            sessions can be re-checked when trust changes (a CA is removed).
    """

    device_id: str
    auth_kind: AuthKind
    credential_slot: int | None
    expires_at: float | None
    certificate_der: bytes | None = None
    #: The identity (or its device) is quarantined: it may connect, but its telemetry is
    #: refused (security messages and everything the hub sends still flow).
    quarantined: bool = False


class ProvisionedTrust(Protocol):
    """What provisioning adds to device authentication (the provisioning service)."""

    async def device_anchors(self) -> list[x509.Certificate]:
        """CAs that CA-signed devices may chain to besides the registered CAs."""
        ...

    def is_revoked(self, certificate: x509.Certificate) -> bool:
        """Whether the device CA revoked ``certificate``."""
        ...


class AuthRefused(Exception):  # noqa: N818 - a refusal, not an error of ours
    """Authentication failed; carries the CONNACK code to send and a machine reason."""

    def __init__(self, return_code: ConnectReturnCode, reason: str) -> None:
        super().__init__(reason)
        self.return_code = return_code
        self.reason = reason


class Authenticator:
    """Checks CONNECT credentials against the registry, with failure throttling."""

    def __init__(
        self,
        registry: Registry,
        config: HubConfig,
        clock: Clock,
        provisioned: ProvisionedTrust | None = None,
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._provisioned = provisioned
        self._hostnames = {h.lower() for h in config.hostnames}
        limits = config.limits
        self._by_source = FailureWindow(limits.auth_failures_per_source_per_minute)
        self._by_identity = FailureWindow(limits.auth_failures_per_identity_per_minute)

    async def authenticate(
        self, connect: Connect, *, peer_host: str, peer_certificate_der: bytes | None
    ) -> Authenticated:
        """Authenticate one CONNECT.

        Raises:
            AuthRefused: with the CONNACK return code and the reason; the failure has been
                counted for throttling.
        """
        client_id = connect.client_id
        try:
            # "device" or "device/module". Wildcards, other '/', control characters, empty
            # ids: refused before anything else (CVE-2017-7650 class).
            azure.split_identity(client_id)
        except ValidationError:
            self._count_failure(peer_host, None)
            raise AuthRefused(ConnectReturnCode.IDENTIFIER_REJECTED, "invalid-client-id") from None

        self.check_throttle(peer_host, client_id)

        try:
            result = await self._check(connect, peer_certificate_der)
        except AuthenticationError as exc:
            self._count_failure(peer_host, client_id)
            raise AuthRefused(ConnectReturnCode.NOT_AUTHORIZED, exc.reason) from None
        return result

    def check_throttle(self, peer_host: str, identity: str) -> None:
        """Refuse at once a source or identity with too many recent failures.

        Raises:
            AuthRefused: ``throttled`` (CONNACK 5).
        """
        now = self._clock.monotonic()
        try:
            self._by_source.check(peer_host, now)
            self._by_identity.check(identity, now)
        except ThrottledError:
            raise AuthRefused(ConnectReturnCode.NOT_AUTHORIZED, "throttled") from None

    def record_failure(self, peer_host: str, identity: str) -> None:
        """Count a failed attempt (the provisioning endpoint shares the throttle)."""
        self._count_failure(peer_host, identity)

    def _count_failure(self, peer_host: str, client_id: str | None) -> None:
        now = self._clock.monotonic()
        self._by_source.record(peer_host, now)
        if client_id is not None:
            self._by_identity.record(client_id, now)

    async def _check(self, connect: Connect, peer_certificate_der: bytes | None) -> Authenticated:
        if connect.username is None:
            raise AuthenticationError("missing-username")
        if azure.is_dps_username(connect.username):
            raise AuthenticationError("provisioning-not-enabled")
        username = azure.parse_hub_username(connect.username)
        if username.client_id != connect.client_id:
            raise AuthenticationError("username-mismatch")
        if username.hostname.lower() not in self._hostnames:
            raise AuthenticationError("wrong-hostname")

        try:
            record = await self._registry.get_device(connect.client_id)
        except NotFoundError:
            raise AuthenticationError("unknown-device") from None
        if record.state is DeviceState.DISABLED:
            raise AuthenticationError("disabled")
        quarantined = record.state is DeviceState.QUARANTINED
        if username.module_id is not None:
            # A module of a disabled (or deleted) device does not connect either, and a module
            # of a quarantined device is quarantined with it.
            try:
                parent = await self._registry.get_device(username.device_id)
            except NotFoundError:
                raise AuthenticationError("unknown-device") from None
            if parent.state is DeviceState.DISABLED:
                raise AuthenticationError("disabled")
            quarantined = quarantined or parent.state is DeviceState.QUARANTINED
        result = await self._credential(connect, username, record, peer_certificate_der)
        return dataclasses.replace(result, quarantined=quarantined) if quarantined else result

    async def _credential(
        self,
        connect: Connect,
        username: azure.HubUsername,
        record: DeviceRecord,
        peer_certificate_der: bytes | None,
    ) -> Authenticated:
        """Check the SAS token or client certificate against the identity's credentials."""
        if connect.password is not None:
            if record.auth_kind is not AuthKind.SAS:
                raise AuthenticationError("wrong-auth-kind")
            token = sas.parse_sas_token(connect.password)
            try:
                keys = self._registry.unseal_keys(record)
            except SealingError:
                # Fail closed: a key we cannot open never authenticates anyone.
                logger.exception("cannot unseal keys client_id=%s", connect.client_id)
                raise AuthenticationError("key-unavailable") from None
            slot = sas.verify_sas_token(
                token,
                expected_uri=sas.resource_uri_for(username.hostname, connect.client_id),
                keys=keys,
                now=self._clock.time(),
            )
            return Authenticated(record.device_id, record.auth_kind, slot, float(token.se))

        if peer_certificate_der is None:
            raise AuthenticationError("no-credential")
        try:
            leaf = x509.load_der_x509_certificate(peer_certificate_der)
        except ValueError:
            raise AuthenticationError("bad-certificate") from None
        now = datetime.fromtimestamp(self._clock.time(), tz=UTC)
        try:
            expires_at = leaf.not_valid_after_utc.timestamp()
            if record.auth_kind is AuthKind.X509_CA:
                await self._verify_ca_signed(leaf, record.device_id, now)
                return Authenticated(
                    record.device_id, record.auth_kind, None, expires_at, peer_certificate_der
                )
            if record.auth_kind is AuthKind.X509_THUMBPRINT:
                thumbprints = [
                    t for t in (record.primary_thumbprint, record.secondary_thumbprint) if t
                ]
                slot = verify_thumbprint_device(leaf, thumbprints=thumbprints, now=now)
                return Authenticated(
                    record.device_id, record.auth_kind, slot, expires_at, peer_certificate_der
                )
        except TrustError as exc:
            raise AuthenticationError("certificate-refused", str(exc)) from None
        raise AuthenticationError("wrong-auth-kind")

    async def _verify_ca_signed(
        self, leaf: x509.Certificate, device_id: str, now: datetime
    ) -> None:
        cas = [parse_certificate_pem(c.pem) for c in await self._registry.list_cas()]
        if self._provisioned is not None:
            # Certificates issued by the device CA, and leaves of x509 enrollment groups.
            if self._provisioned.is_revoked(leaf):
                raise AuthenticationError("certificate-revoked")
            cas.extend(await self._provisioned.device_anchors())
        if verify_ca_signed_device(leaf, trusted_cas=cas, now=now) != device_id:
            raise AuthenticationError("certificate-identity-mismatch")

    async def recheck(self, auth: Authenticated) -> None:
        """Re-check a live session's certificate against the current CAs.

        Raises:
            AuthenticationError: the certificate no longer chains to a registered CA.
        """
        if auth.auth_kind is not AuthKind.X509_CA or auth.certificate_der is None:
            return
        leaf = x509.load_der_x509_certificate(auth.certificate_der)
        now = datetime.fromtimestamp(self._clock.time(), tz=UTC)
        try:
            await self._verify_ca_signed(leaf, auth.device_id, now)
        except TrustError as exc:
            raise AuthenticationError("certificate-refused", str(exc)) from None
