"""Certificate revocation lists signed by the hub CA (RFC 5280 §5).

The registry records which device certificates were revoked, when and why; this module turns
that record into a signed CRL that relying parties (a gateway, an operator's OpenSSL) can
fetch. It is pure: the entries, the CRL number and both times are given.

Profile (RFC 5280 §5.1.2 and §5.2):

* version 2, issuer = the CA's subject, signed ECDSA-SHA256 by the CA key (which may be an
  external signer, as in :mod:`~ironhub.pki._issue`);
* ``thisUpdate`` = ``now``, ``nextUpdate`` given by the caller and later than ``now``;
* extensions: ``cRLNumber`` (non-critical, §5.2.3 says it MUST be) and
  ``authorityKeyIdentifier`` taken from the CA's SKI (§5.2.1), both non-critical;
* entries sorted by serial, each with its revocation date (never later than ``thisUpdate``) and
  a ``reasonCode`` entry extension, except for ``unspecified``, which §5.3.1 says SHOULD be
  expressed by leaving the reason out.

Holds (``certificateHold``) are not supported: a revocation is final, so a CRL never needs
``removeFromCRL`` and an entry can never come back to life. ``aACompromise`` concerns
attribute certificates, which ironhub does not issue.
"""

from __future__ import annotations

import datetime as dt
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ironhub.errors import TrustError, ValidationError
from ironhub.pki._common import utc
from ironhub.pki._issue import _authority_key_id, _check_ca_pair

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "MAX_CRL_NUMBER",
    "REVOCATION_REASONS",
    "RevokedEntry",
    "build_crl",
    "crl_der",
    "crl_pem",
    "parse_revocation_reason",
]

#: The revocation reasons an operator may give, by their RFC 5280 §5.3.1 names.
REVOCATION_REASONS: Mapping[str, x509.ReasonFlags] = types.MappingProxyType(
    {
        flag.value: flag
        for flag in (
            x509.ReasonFlags.unspecified,
            x509.ReasonFlags.key_compromise,
            x509.ReasonFlags.ca_compromise,
            x509.ReasonFlags.affiliation_changed,
            x509.ReasonFlags.superseded,
            x509.ReasonFlags.cessation_of_operation,
            x509.ReasonFlags.privilege_withdrawn,
        )
    }
)

#: Largest CRL number: §5.2.3 allows at most 20 octets, and the DER integer is signed.
MAX_CRL_NUMBER = 2**159 - 1

# Certificate serial numbers follow the same 20-octet rule (RFC 5280 §4.1.2.2).
_MAX_SERIAL = 2**159 - 1
_MAX_REASON_CHARS = 40

_REASONS_BY_FOLDED_NAME = {name.casefold(): name for name in REVOCATION_REASONS}


def parse_revocation_reason(name: str) -> str:
    """The RFC 5280 name of a revocation reason an operator typed, in its canonical spelling.

    The match ignores case (``keycompromise`` gives ``keyCompromise``).

    Args:
        name: the reason as given.

    Returns:
        A key of :data:`REVOCATION_REASONS`.

    Raises:
        ValidationError: not one of :data:`REVOCATION_REASONS`; ``certificateHold`` gets its
            own message, since holds are deliberately unsupported.
    """
    canonical = _REASONS_BY_FOLDED_NAME.get(name.casefold())
    if canonical is not None:
        return canonical
    if name.casefold() == x509.ReasonFlags.certificate_hold.value.casefold():
        raise ValidationError("certificate holds are not supported: revocation is final")
    shown = name if len(name) <= _MAX_REASON_CHARS else name[:_MAX_REASON_CHARS] + "..."
    raise ValidationError(
        f"unknown revocation reason {shown!r}; use one of {', '.join(REVOCATION_REASONS)}"
    )


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    """One revoked certificate, as the registry records it.

    Attributes:
        serial: the certificate's serial number (1 to 2**159 - 1).
        revoked_at: when it was revoked (timezone-aware); a time after the CRL's ``now`` is
            written as ``now``.
        reason: a key of :data:`REVOCATION_REASONS` (see :func:`parse_revocation_reason`).
    """

    serial: int
    revoked_at: dt.datetime
    reason: str


def _revoked_certificate(entry: RevokedEntry, now: dt.datetime) -> x509.RevokedCertificate:
    if isinstance(entry.serial, bool) or not 1 <= entry.serial <= _MAX_SERIAL:
        raise ValidationError("a revoked serial number must be between 1 and 2**159 - 1")
    flag = REVOCATION_REASONS.get(entry.reason)
    if flag is None:
        raise ValidationError("a revocation entry has an unknown reason")
    # A revocation recorded by a process whose clock runs ahead would otherwise lie after
    # thisUpdate; refusing it would stop CRL publication altogether, so it is dated at the
    # CRL's own time, the moment this CRL asserts it.
    revoked_at = min(utc(entry.revoked_at), now)
    builder = x509.RevokedCertificateBuilder().serial_number(entry.serial)
    builder = builder.revocation_date(revoked_at)
    if flag is not x509.ReasonFlags.unspecified:
        builder = builder.add_extension(x509.CRLReason(flag), critical=False)
    return builder.build()


def build_crl(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    revoked: Sequence[RevokedEntry],
    *,
    number: int,
    now: dt.datetime,
    next_update: dt.datetime,
) -> x509.CertificateRevocationList:
    """Build and sign the CA's CRL (profile in the module docstring).

    Args:
        ca_key: the CA private key (or an external signer).
        ca_cert: the CA certificate; its subject becomes the CRL issuer.
        revoked: the revoked certificates, in any order; a serial may appear once.
        number: the CRL number, 1 to :data:`MAX_CRL_NUMBER`; the caller increases it with
            every CRL it publishes (§5.2.3).
        now: ``thisUpdate`` (timezone-aware).
        next_update: ``nextUpdate`` (timezone-aware), later than ``now``.

    Returns:
        The signed CRL.

    Raises:
        ValidationError: an entry has a serial out of range, an unknown reason, or a serial
            already listed.
        TrustError: the CA key does not match its certificate, or the CA has expired.
        ValueError: a naive time, ``number`` out of range, or ``next_update`` not after
            ``now``.
    """
    if isinstance(number, bool) or not 1 <= number <= MAX_CRL_NUMBER:
        raise ValueError("the CRL number must be between 1 and 2**159 - 1")
    this_update = utc(now)
    next_update = utc(next_update)
    if next_update <= this_update:
        raise ValueError("next_update must be later than now")
    _check_ca_pair(ca_key, ca_cert)
    if this_update > ca_cert.not_valid_after_utc:
        # A CRL signed by an expired CA verifies nowhere; say so instead of publishing it.
        raise TrustError("the CA certificate has expired")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(_authority_key_id(ca_key, ca_cert), critical=False)
    )
    seen: set[int] = set()
    for entry in sorted(revoked, key=lambda entry: entry.serial):
        if entry.serial in seen:
            raise ValidationError("a serial number is listed twice")
        seen.add(entry.serial)
        builder = builder.add_revoked_certificate(_revoked_certificate(entry, this_update))
    return builder.sign(ca_key, hashes.SHA256())


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    """The CRL as PEM (``-----BEGIN X509 CRL-----``).

    Args:
        crl: the CRL.

    Returns:
        PEM bytes.
    """
    return crl.public_bytes(serialization.Encoding.PEM)


def crl_der(crl: x509.CertificateRevocationList) -> bytes:
    """The CRL as DER, the form RFC 5280 §4.2.1.13 distribution points serve.

    Args:
        crl: the CRL.

    Returns:
        DER bytes.
    """
    return crl.public_bytes(serialization.Encoding.DER)
