"""Verifying device certificates: chains to registered CAs, and registered thumbprints.

The TLS layer only establishes that the peer holds the private key of the leaf it presented;
these functions decide whether that leaf is a device identity. Python 3.11's :mod:`ssl` hands
us the leaf alone, so chains are rebuilt from the registered CAs with
``cryptography.x509.verification`` (a strict Web-PKI-style path validator, SECURITY-TESTS.md
§3.1, "TLS identity").

Policy, relative to the validator's Web PKI defaults:

* The end-entity policy no longer requires subjectAltName and authorityKeyIdentifier. Azure
  device certificates carry the identity in the CN, usually without a SAN, and certificates
  made with plain OpenSSL often lack an AKI; neither extension makes a chain safer to accept.
* The CA policy is the Web PKI default (basicConstraints CA:TRUE critical, keyCertSign, path
  length constraints, allowed algorithms and key sizes).
* Before path validation, the leaf's own validity period, CA flag and EKU are checked here so
  that the most common refusals get a precise reason for the audit log (Defender reports
  ``IoT_Cert_Expired`` separately, azure-iot-mqtt.md §10).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from ironhub.errors import TrustError
from ironhub.pki._certs import (
    check_device_leaf,
    device_identity_from_certificate,
    normalise_thumbprint,
    thumbprint_sha256,
)
from ironhub.pki._common import check_key_strength, utc

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Sequence

__all__ = ["DEFAULT_MAX_CHAIN_DEPTH", "verify_ca_signed_device", "verify_thumbprint_device"]

#: Most intermediate CAs between a registered CA and a leaf (OpenSSL's meaning of depth).
DEFAULT_MAX_CHAIN_DEPTH = 4

_EE_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    .may_be_present(x509.AuthorityKeyIdentifier, Criticality.NON_CRITICAL, None)
)


def _check_validity_period(certificate: x509.Certificate, now: dt.datetime) -> None:
    if now < certificate.not_valid_before_utc:
        raise TrustError("the certificate is not yet valid")
    if now > certificate.not_valid_after_utc:
        raise TrustError("the certificate has expired")


def verify_ca_signed_device(
    leaf: x509.Certificate,
    *,
    trusted_cas: Sequence[x509.Certificate],
    now: dt.datetime,
    max_chain_depth: int = DEFAULT_MAX_CHAIN_DEPTH,
    intermediates: Sequence[x509.Certificate] = (),
) -> str:
    """Verify a device certificate that must chain to a registered CA; return the device id.

    The registered CAs are both the trust anchors and candidate intermediates, so a leaf issued
    by a registered intermediate verifies whether or not its root is registered too. Python 3.11
    gives us only the leaf; where the peer's presented chain is available (Python 3.13's
    ``SSLSocket.get_unverified_chain()``), pass it as ``intermediates``: those certificates are
    untrusted candidates only, and ``max_chain_depth`` bounds how many may be used.

    Args:
        leaf: the certificate the device presented in TLS.
        trusted_cas: the registered CA certificates.
        now: the verification time (timezone-aware).
        max_chain_depth: the most intermediate CAs allowed in the path.
        intermediates: untrusted intermediate CAs the device presented (optional).

    Returns:
        The device id, the leaf's single CN (see
        :func:`~ironhub.pki.device_identity_from_certificate`).

    Raises:
        TrustError: no CA registered; the leaf is expired or not yet valid, a CA, or has an EKU
            without ``clientAuth``; no valid path to a registered CA (unknown issuer, bad
            signature, expired or invalid CA, path too long, weak key or algorithm); or the CN
            is not a valid device id.
        ValueError: ``now`` is naive.
    """
    now = utc(now)
    if not trusted_cas:
        raise TrustError("no CA is registered for X.509 CA-signed devices")
    _check_validity_period(leaf, now)
    check_device_leaf(leaf)
    anchors = list(trusted_cas)
    try:
        verifier = (
            PolicyBuilder()
            .store(Store(anchors))
            .time(now)
            .max_chain_depth(max_chain_depth)
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_EE_POLICY
            )
            .build_client_verifier()
        )
        verifier.verify(leaf, [*anchors, *intermediates])
    except (VerificationError, ValueError) as exc:
        # The validator's message names certificates by subject, which the peer controls; it
        # stays on __cause__ for debugging and out of our message.
        raise TrustError("the certificate does not chain to a registered, valid CA") from exc
    return device_identity_from_certificate(leaf)


def verify_thumbprint_device(
    leaf: x509.Certificate, *, thumbprints: Sequence[str | None], now: dt.datetime
) -> int:
    """Verify a self-signed device certificate against the device's registered thumbprints.

    The thumbprint is compared first, so an expired certificate that is registered reads
    "expired" and an unknown one "mismatch" (Defender's ``IoT_Cert_Expired`` and
    ``IoT_Cert_Print_Mismatch``). Then the validity period, the leaf profile (not a CA, EKU
    allows ``clientAuth``) and the key strength are checked.

    Args:
        leaf: the certificate the device presented in TLS.
        thumbprints: the registered SHA-256 thumbprints, primary first; ``None`` entries (an
            empty slot) never match. Colons, spaces and lower case are tolerated.
        now: the verification time (timezone-aware).

    Returns:
        The index of the matching thumbprint (0 primary, 1 secondary).

    Raises:
        TrustError: no thumbprint matches, the certificate is expired or not yet valid, is a
            CA, has an EKU without ``clientAuth``, or a weak key.
        ValueError: ``now`` is naive.
    """
    now = utc(now)
    actual = thumbprint_sha256(leaf).encode("ascii")
    matched: int | None = None
    for index, thumbprint in enumerate(thumbprints):
        if thumbprint is None:
            continue
        candidate = normalise_thumbprint(thumbprint).encode("utf-8")
        if hmac.compare_digest(candidate, actual) and matched is None:
            matched = index
    if matched is None:
        raise TrustError("the certificate thumbprint matches no registered thumbprint")
    _check_validity_period(leaf, now)
    check_device_leaf(leaf)
    check_key_strength(leaf.public_key())
    return matched
