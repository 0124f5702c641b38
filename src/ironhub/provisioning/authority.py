"""The device certificate authority: issues device certificates from CSRs, revokes, keeps the CRL.

The X.509 rules are pure (:mod:`ironhub.pki`: CSR checks, the issuance profile, the CRL); this
service wires them to storage, the clock and the key custody (:mod:`ironhub.custody`), whose
signing key may live in a PKCS#11 token. What it guarantees:

* A certificate is handed out only after its record is stored (an unrecorded certificate
  could never be listed or revoked). The device's private key never reaches the hub: only
  the CSR's public key is certified.
* Revocation takes effect at once in this process: the revoked serials are kept in memory
  (loaded at :meth:`DeviceAuthority.open`), the listeners are told synchronously (the
  endpoint closes the sessions using the certificate), and the CRL is regenerated and
  stored before :meth:`DeviceAuthority.revoke` returns.
* The CRL is re-signed when it is older than half its validity, so a relying party that
  fetches it never holds one past ``nextUpdate`` while the hub runs.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ironhub import pki
from ironhub.errors import CertificateRequestError, ConflictError, NotFoundError, ValidationError
from ironhub.storage.interfaces import IssuedCertificateRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    from cryptography.hazmat.primitives.asymmetric import ec

    from ironhub.clock import Clock
    from ironhub.config import ProvisioningConfig
    from ironhub.storage.interfaces import Storage

__all__ = ["DeviceAuthority", "IssuedCertificate"]

logger = logging.getLogger(__name__)


class IssuedCertificate:
    """A certificate just issued, with the chain to hand to the device (leaf first)."""

    __slots__ = ("certificate", "chain_der", "record")

    def __init__(
        self,
        certificate: x509.Certificate,
        record: IssuedCertificateRecord,
        chain_der: tuple[bytes, ...],
    ) -> None:
        self.certificate = certificate
        self.record = record
        self.chain_der = chain_der

    def chain_base64(self) -> tuple[str, ...]:
        """The chain as base64 DER texts (Azure's ``issuedCertificateChain``)."""
        return tuple(base64.b64encode(der).decode("ascii") for der in self.chain_der)


class DeviceAuthority:
    """Issues, lists and revokes device certificates; publishes the CRL."""

    def __init__(
        self,
        storage: Storage,
        *,
        key: ec.EllipticCurvePrivateKey,
        certificate: x509.Certificate,
        clock: Clock,
        config: ProvisioningConfig,
    ) -> None:
        self._storage = storage
        self._key = key
        self._certificate = certificate
        self._issuer = certificate.subject.public_bytes()
        self._clock = clock
        self._config = config
        self._revoked: set[int] = set()
        self._listeners: list[Callable[[IssuedCertificateRecord], None]] = []
        self._crl: tuple[int, bytes, float] | None = None  # number, DER, thisUpdate

    @property
    def certificate(self) -> x509.Certificate:
        """The device CA certificate (the trust anchor of every issued certificate)."""
        return self._certificate

    def certificate_pem(self) -> str:
        """The device CA certificate in PEM."""
        return self._certificate.public_bytes(Encoding.PEM).decode("ascii")

    def add_revocation_listener(self, callback: Callable[[IssuedCertificateRecord], None]) -> None:
        """Call ``callback`` (synchronously) after each new revocation is stored."""
        self._listeners.append(callback)

    async def open(self) -> None:
        """Load the revoked serials and make sure a current CRL exists.

        Raises:
            StorageError: storage failed.
            TrustError: the CRL cannot be signed (the key source is unavailable).
        """
        revoked = await self._storage.list_revoked_certificates()
        self._revoked = {int(r.serial, 16) for r in revoked}
        stored = await self._storage.get_crl()
        if stored is not None:
            number, der = stored
            crl = x509.load_der_x509_crl(der)
            self._crl = (number, der, crl.last_update_utc.timestamp())
        await self._refresh_crl(force=stored is None)

    # --- issuance ---------------------------------------------------------------------------
    async def issue(
        self, csr_text: str, *, device_id: str, registration_id: str
    ) -> IssuedCertificate:
        """Check a CSR and issue a device certificate for ``device_id``.

        Raises:
            CertificateRequestError: the CSR is refused (``reason`` says why), or the serial
                collided with an issued one (``duplicate-serial``); nothing was issued.
            TrustError: the CA key could not sign.
            StorageError: the record could not be stored; the certificate is not handed out.
        """
        csr = pki.load_csr(csr_text)
        now = dt.datetime.fromtimestamp(self._clock.time(), tz=dt.UTC)
        certificate = pki.issue_certificate_from_csr(
            self._key,
            self._certificate,
            csr,
            device_id=device_id,
            now=now,
            validity_days=self._config.certificate_validity_days,
        )
        der = certificate.public_bytes(Encoding.DER)
        record = IssuedCertificateRecord(
            serial=pki.certificate_serial_hex(certificate),
            device_id=device_id,
            registration_id=registration_id,
            thumbprint=pki.thumbprint_sha256(certificate),
            not_before=certificate.not_valid_before_utc.timestamp(),
            not_after=certificate.not_valid_after_utc.timestamp(),
            issued_at=now.timestamp(),
            pem=pki.certificate_pem(certificate).decode("ascii"),
        )
        try:
            await self._storage.insert_certificate(record)
        except ConflictError:
            raise CertificateRequestError(
                "duplicate-serial", "a certificate with this serial was issued before"
            ) from None
        logger.info(
            "certificate issued serial=%s device_id=%s not_after=%s",
            record.serial,
            device_id,
            certificate.not_valid_after_utc.isoformat(),
        )
        return IssuedCertificate(
            certificate, record, (der, self._certificate.public_bytes(Encoding.DER))
        )

    # --- revocation -------------------------------------------------------------------------
    def issued_by_us(self, certificate: x509.Certificate) -> bool:
        """Whether ``certificate`` names the device CA as its issuer."""
        return certificate.issuer.public_bytes() == self._issuer

    def is_revoked(self, certificate: x509.Certificate) -> bool:
        """Whether ``certificate`` was issued by the device CA and is revoked."""
        return certificate.serial_number in self._revoked and self.issued_by_us(certificate)

    async def revoke(self, serial: str, reason: str = "unspecified") -> IssuedCertificateRecord:
        """Revoke an issued certificate: listeners drop its sessions, the CRL is re-signed.

        Revoking a revoked certificate changes nothing and returns it as it is.

        Raises:
            ValidationError: an unknown reason name or a malformed serial.
            NotFoundError: no certificate with this serial was issued.
            StorageError: storage failed.
            TrustError: the CRL could not be signed (the revocation itself is stored and
                enforced in this process).
        """
        reason = pki.parse_revocation_reason(reason)
        normalised = _normalise_serial(serial)
        record = await self._storage.revoke_certificate(normalised, self._clock.time(), reason)
        if record is None:
            raise NotFoundError(f"no certificate with serial {normalised} was issued")
        number = int(record.serial, 16)
        if number not in self._revoked:
            self._revoked.add(number)
            logger.warning(
                "certificate revoked serial=%s device_id=%s reason=%s",
                record.serial,
                record.device_id,
                record.revocation_reason,
            )
            for listener in self._listeners:
                listener(record)
            await self._refresh_crl(force=True)
        return record

    async def revoke_device(self, device_id: str, reason: str = "unspecified") -> list[str]:
        """Revoke every unrevoked certificate issued to ``device_id``; their serials.

        Raises:
            ValidationError: an unknown reason name.
            StorageError: storage failed.
            TrustError: the CRL could not be signed.
        """
        pki.parse_revocation_reason(reason)
        serials: list[str] = []
        after = ""
        while True:
            page = await self._storage.list_certificates(
                device_id=device_id, revoked=False, after=after, limit=500
            )
            if not page:
                return serials
            for record in page:
                await self.revoke(record.serial, reason)
                serials.append(record.serial)
            after = page[-1].serial

    async def get_certificate(self, serial: str) -> IssuedCertificateRecord:
        """One issued certificate.

        Raises:
            ValidationError: a malformed serial.
            NotFoundError: unknown serial.
            StorageError: storage failed.
        """
        normalised = _normalise_serial(serial)
        record = await self._storage.get_certificate(normalised)
        if record is None:
            raise NotFoundError(f"no certificate with serial {normalised} was issued")
        return record

    async def list_certificates(
        self,
        *,
        device_id: str | None = None,
        revoked: bool | None = None,
        after: str = "",
        limit: int = 100,
    ) -> list[IssuedCertificateRecord]:
        """Issued certificates in serial order.

        Raises:
            StorageError: storage failed.
        """
        return await self._storage.list_certificates(
            device_id=device_id, revoked=revoked, after=after, limit=limit
        )

    # --- the CRL ----------------------------------------------------------------------------
    async def crl(self) -> tuple[int, bytes]:
        """The current CRL ``(number, DER)``, re-signed first if it is getting old.

        Raises:
            StorageError: storage failed.
            TrustError: the CRL could not be signed.
        """
        await self._refresh_crl(force=False)
        assert self._crl is not None
        return self._crl[0], self._crl[1]

    async def _refresh_crl(self, *, force: bool) -> None:
        validity = self._config.crl_validity_hours * 3600.0
        now_ts = self._clock.time()
        if not force and self._crl is not None and now_ts - self._crl[2] < validity / 2:
            return
        revoked = await self._storage.list_revoked_certificates()
        number = (self._crl[0] if self._crl is not None else 0) + 1
        now = dt.datetime.fromtimestamp(now_ts, tz=dt.UTC)
        crl = pki.build_crl(
            self._key,
            self._certificate,
            [
                pki.RevokedEntry(
                    serial=int(r.serial, 16),
                    revoked_at=dt.datetime.fromtimestamp(r.revoked_at or now_ts, tz=dt.UTC),
                    reason=r.revocation_reason or "unspecified",
                )
                for r in revoked
            ],
            number=number,
            now=now,
            next_update=now + dt.timedelta(seconds=validity),
        )
        der = pki.crl_der(crl)
        try:
            await self._storage.put_crl(number, der)
        except ConflictError:
            # Another writer stored a newer CRL meanwhile; take it, with its own signing time.
            stored = await self._storage.get_crl()
            if stored is None:  # pragma: no cover - put_crl conflicted with nothing
                raise
            number, der = stored
            now_ts = x509.load_der_x509_crl(der).last_update_utc.timestamp()
        self._crl = (number, der, now_ts)
        logger.info("CRL signed number=%d revoked=%d", number, len(revoked))


def _normalise_serial(serial: str) -> str:
    """Upper-case hex without separators or leading zeros, as stored.

    Raises:
        ValidationError: not a hexadecimal serial.
    """
    text = serial.replace(":", "").replace(" ", "").strip()
    if not text or len(text) > 64:
        raise ValidationError("a serial is 1 to 64 hexadecimal digits")
    try:
        value = int(text, 16)
    except ValueError:
        raise ValidationError("a serial is 1 to 64 hexadecimal digits") from None
    return format(value, "X")
