"""Certificate issuance: the hub CA, server certificates and device certificates.

Issuance profile (the choices an ADR records):

* Keys are EC P-256 and signatures ECDSA-SHA256: small, fast, accepted by every TLS stack the
  Azure SDKs use (azure-iot-mqtt.md §1 used the same).
* Serial numbers are random (``x509.random_serial_number``, 159 bits), per CA/B BR 7.1.
* ``notBefore`` is backdated by :data:`BACKDATE` so a device whose clock is a few minutes behind
  accepts a certificate issued just now (cfssl backdates by 5 minutes too).
* The CA is ``CA:TRUE, pathlen:0`` (critical) with ``keyCertSign, cRLSign``: the hub CA signs
  leaves only, so a stolen leaf key, or an intermediate someone managed to get issued, can
  never mint further certificates.
* A leaf never outlives its issuer: ``notAfter`` is clamped to the CA's ``notAfter``.
* Leaves are ``CA:FALSE`` (critical) with ``digitalSignature`` (critical), one EKU
  (``serverAuth`` or ``clientAuth``), SKI, and AKI taken from the CA's SKI, so chain builders
  find the issuer by key id.
* A device certificate issued from a CSR follows the same device profile: the subject is
  built from the device id and only the CSR's public key is taken; nothing the CSR asks for
  (names, extensions) is copied, and :func:`~ironhub.pki.check_csr` refuses CSRs that ask.

The CA key is only ever used through ``public_key()`` and the certificate builder's ``sign``,
so it may be an external signer: an ``EllipticCurvePrivateKey`` subclass whose ``sign()``
calls a PKCS#11 token or a TPM (``cryptography`` calls the Python ``sign()`` method of such
a subclass).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ironhub.codec.azure import split_identity
from ironhub.errors import TrustError, ValidationError
from ironhub.pki._common import MAX_CN_CHARS, check_key_strength, find_extension, utc
from ironhub.pki._csr import check_csr

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

__all__ = [
    "BACKDATE",
    "create_ca",
    "create_ca_certificate",
    "create_self_signed_device_certificate",
    "issue_certificate_from_csr",
    "issue_device_certificate",
    "issue_server_certificate",
]

#: How far ``notBefore`` lies before the issuing time, to absorb device clock skew.
BACKDATE = dt.timedelta(minutes=5)

# One DNS label: letters, digits and inner hyphens. Wildcards are refused: the hub's names are
# explicit, and a wildcard certificate would also cover hosts we do not run.
_DNS_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")

_SERVER_DEFAULT_NAMES = ("localhost", "127.0.0.1")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, digital_signature: bool = False, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _validity(
    now: dt.datetime, validity_days: int, issuer: x509.Certificate | None = None
) -> tuple[dt.datetime, dt.datetime]:
    if validity_days < 1:
        raise ValueError("validity_days must be at least 1")
    now = utc(now)
    not_before = now - BACKDATE
    not_after = now + dt.timedelta(days=validity_days)
    if issuer is not None:
        not_after = min(not_after, issuer.not_valid_after_utc)
        if not_after <= now:
            raise TrustError("the CA certificate has expired")
    return not_before, not_after


def _check_common_name(common_name: str) -> None:
    if not 1 <= len(common_name) <= MAX_CN_CHARS:
        raise ValidationError(f"a common name must be 1 to {MAX_CN_CHARS} characters long")


def _authority_key_id(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> x509.AuthorityKeyIdentifier:
    # Reuse the CA's own SKI when it has one: a CA whose SKI was computed another way (not the
    # SHA-1 of the key, RFC 5280 §4.2.1.2 method 1) would otherwise get leaves whose AKI points
    # nowhere.
    ski = find_extension(ca_cert, x509.SubjectKeyIdentifier)
    if ski is not None:
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())


def _check_ca_pair(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate) -> None:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if ca_key.public_key().public_bytes(der, spki) != ca_cert.public_key().public_bytes(der, spki):
        # Certificates signed this way would never verify; say so at issuance instead.
        raise TrustError("the CA key does not match the CA certificate")


def create_ca_certificate(
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    *,
    now: dt.datetime,
    validity_days: int = 3650,
) -> x509.Certificate:
    """Create the self-signed root CA certificate for an existing key (``CA:TRUE, pathlen:0``).

    The key may be an external signer: any ``EllipticCurvePrivateKey`` subclass whose
    ``sign()`` asks a token (PKCS#11, a TPM) to sign. Only ``public_key()`` and the
    signature are used, so the private scalar never has to leave the token.

    Args:
        key: the CA key (EC P-256, P-384 or P-521).
        common_name: the CA's CN (1 to 64 characters).
        now: the issuing time (timezone-aware).
        validity_days: lifetime; 10 years by default, as a root is replaced rarely.

    Returns:
        The CA certificate, signed ECDSA-SHA256 by ``key``.

    Raises:
        ValidationError: the common name is empty or too long.
        TrustError: the key is on a curve ironhub does not accept.
        ValueError: ``now`` is naive or ``validity_days`` is below 1.
    """
    _check_common_name(common_name)
    public_key = key.public_key()
    check_key_strength(public_key)
    not_before, not_after = _validity(now, validity_days)
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    name = _name(common_name)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def create_ca(
    common_name: str, *, now: dt.datetime, validity_days: int = 3650
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Create a new EC P-256 key and its self-signed root CA certificate.

    See :func:`create_ca_certificate` for the profile, and to certify a key that already
    exists (one held in a token).

    Args:
        common_name: the CA's CN (1 to 64 characters).
        now: the issuing time (timezone-aware).
        validity_days: lifetime; 10 years by default, as a root is replaced rarely.

    Returns:
        The CA private key and certificate.

    Raises:
        ValidationError: the common name is empty or too long.
        ValueError: ``now`` is naive or ``validity_days`` is below 1.
    """
    # Check the arguments before paying for a key.
    _check_common_name(common_name)
    _validity(now, validity_days)
    key = ec.generate_private_key(ec.SECP256R1())
    return key, create_ca_certificate(key, common_name, now=now, validity_days=validity_days)


def _server_alt_names(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for hostname in (*hostnames, *_SERVER_DEFAULT_NAMES):
        general_name: x509.GeneralName
        try:
            address = ipaddress.ip_address(hostname)
        except ValueError:
            _check_dns_name(hostname)
            general_name = x509.DNSName(hostname.lower())
            identity = "dns:" + hostname.lower()
        else:
            if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
                # A zone index (fe80::1%eth0) is local to one host and has no SAN encoding.
                raise ValidationError("IPv6 addresses with a zone index cannot be certified")
            general_name = x509.IPAddress(address)
            identity = f"ip:{address}"
        if identity not in seen:
            seen.add(identity)
            names.append(general_name)
    return names


def _check_dns_name(hostname: str) -> None:
    labels = hostname.split(".")
    if len(hostname) > 253 or not all(_DNS_LABEL_RE.fullmatch(label) for label in labels):
        raise ValidationError("not a valid DNS host name or IP address (wildcards not allowed)")


def issue_server_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hostnames: Sequence[str],
    *,
    now: dt.datetime,
    validity_days: int = 397,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Issue the hub's TLS server certificate.

    The SANs are ``hostnames`` followed by ``localhost`` and ``127.0.0.1``: IP literals become
    IP SANs (the SDK dials IP hosts without SNI and checks an IP SAN, azure-iot-mqtt.md §0),
    everything else DNS SANs (lower-cased); duplicates are dropped. The CN is the first name,
    for old clients; when it exceeds 64 characters the subject is left empty and the SAN
    extension is made critical, as RFC 5280 §4.2.1.6 requires.

    Args:
        ca_key: the CA private key (or an external signer).
        ca_cert: the CA certificate.
        hostnames: the names devices dial (``HostName`` / ``GatewayHostName``), may be empty.
        now: the issuing time (timezone-aware).
        validity_days: lifetime; 397 days by default, the CA/B Forum maximum for TLS servers.

    Returns:
        The server private key (EC P-256) and certificate.

    Raises:
        TypeError: ``hostnames`` is a single string (it would be read as characters).
        ValidationError: a name is neither an IP address nor a DNS name (wildcards included).
        TrustError: the CA key does not match its certificate, or the CA has expired.
        ValueError: ``now`` is naive or ``validity_days`` is below 1.
    """
    if isinstance(hostnames, str):
        raise TypeError("hostnames must be a sequence of names, not one string")
    _check_ca_pair(ca_key, ca_cert)
    alt_names = _server_alt_names(hostnames)
    not_before, not_after = _validity(now, validity_days, ca_cert)
    first = hostnames[0] if hostnames else _SERVER_DEFAULT_NAMES[0]
    subject = _name(first) if len(first) <= MAX_CN_CHARS else x509.Name([])
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=len(subject) == 0)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca_key, ca_cert), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, certificate


def _check_device_id(device_id: str) -> None:
    split_identity(device_id)  # "device" or "device/module"
    if len(device_id) > MAX_CN_CHARS:
        raise ValidationError(
            f"an X.509 device id must be at most {MAX_CN_CHARS} characters (CN limit)"
        )


def _device_builder(
    device_id: str,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(device_id))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def issue_device_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    public_key: CertificatePublicKeyTypes,
    device_id: str,
    *,
    now: dt.datetime,
    validity_days: int = 365,
) -> x509.Certificate:
    """Issue a CA-signed device certificate (CN = device id, ``clientAuth``, ``CA:FALSE``).

    Args:
        ca_key: the CA private key (or an external signer).
        ca_cert: the CA certificate.
        public_key: the device's public key (EC P-256/384/521 or RSA >= 2048).
        device_id: the device id; it becomes the CN (Azure's rule for CA-signed devices,
            azure-iot-mqtt.md §2.5).
        now: the issuing time (timezone-aware).
        validity_days: lifetime, one year by default.

    Returns:
        The certificate.

    Raises:
        ValidationError: the device id breaks the identity rule or exceeds 64 characters.
        TrustError: the public key is too weak or of another type, the CA key does not match
            its certificate, or the CA has expired.
        ValueError: ``now`` is naive or ``validity_days`` is below 1.
    """
    _check_device_id(device_id)
    check_key_strength(public_key)
    _check_ca_pair(ca_key, ca_cert)
    not_before, not_after = _validity(now, validity_days, ca_cert)
    return (
        _device_builder(device_id, ca_cert.subject, public_key, not_before, not_after)
        .add_extension(_authority_key_id(ca_key, ca_cert), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def issue_certificate_from_csr(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    csr: x509.CertificateSigningRequest,
    *,
    device_id: str,
    now: dt.datetime,
    validity_days: int,
) -> x509.Certificate:
    """Issue a device certificate for the key of a device's certificate signing request.

    The request must pass :func:`~ironhub.pki.check_csr` with the device id as its expected
    CN. The certificate has the device profile of :func:`issue_device_certificate`: CN = device
    id (built here, not copied), the request's public key, a random serial, ``notBefore``
    backdated by :data:`BACKDATE`, ``notAfter`` clamped to the CA's, ``CA:FALSE`` and
    ``digitalSignature`` (both critical), EKU ``clientAuth`` only, SKI, and AKI from the CA's
    SKI. None of the request's extensions is copied.

    Args:
        ca_key: the CA private key (or an external signer).
        ca_cert: the CA certificate.
        csr: the device's request, from :func:`~ironhub.pki.load_csr`.
        device_id: the device id the certificate is for (``device`` or ``device/module``).
        now: the issuing time (timezone-aware).
        validity_days: lifetime in days (the caller's policy; no default on purpose).

    Returns:
        The certificate.

    Raises:
        ValidationError: the device id breaks the identity rule or exceeds 64 characters.
        CertificateRequestError: the request was refused (its ``reason`` says why).
        TrustError: the CA key does not match its certificate, or the CA has expired.
        ValueError: ``now`` is naive or ``validity_days`` is below 1.
    """
    # The device id is our own input: a malformed one is a caller error, reported as such
    # before the device's request is judged against it.
    _check_device_id(device_id)
    check_csr(csr, expected_common_name=device_id)
    _check_ca_pair(ca_key, ca_cert)
    not_before, not_after = _validity(now, validity_days, ca_cert)
    return (
        _device_builder(device_id, ca_cert.subject, csr.public_key(), not_before, not_after)
        .add_extension(_authority_key_id(ca_key, ca_cert), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def create_self_signed_device_certificate(
    device_id: str, *, now: dt.datetime, validity_days: int = 365
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Create a key and a self-signed device certificate, for thumbprint authentication.

    CN = device id, ``CA:FALSE``, ``clientAuth``: it passes
    :func:`~ironhub.pki.parse_self_signed_device_certificate`.

    Args:
        device_id: the device id.
        now: the issuing time (timezone-aware).
        validity_days: lifetime, one year by default.

    Returns:
        The private key (EC P-256) and certificate.

    Raises:
        ValidationError: the device id breaks the identity rule or exceeds 64 characters.
        ValueError: ``now`` is naive or ``validity_days`` is below 1.
    """
    _check_device_id(device_id)
    not_before, not_after = _validity(now, validity_days)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _device_builder(
        device_id, _name(device_id), key.public_key(), not_before, not_after
    ).sign(key, hashes.SHA256())
    return key, certificate
