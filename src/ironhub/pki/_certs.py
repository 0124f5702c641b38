"""Parsing certificates and keys, device identities, thumbprints and PEM serialisation.

Every parser takes untrusted bytes (an operator upload, a device certificate from TLS) and
either returns a fully parsed object or raises :class:`~ironhub.errors.TrustError`; the
exceptions of ``cryptography`` are wrapped at this seam (STYLE.md).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ironhub.codec.azure import split_identity
from ironhub.errors import TrustError, ValidationError
from ironhub.pki._common import (
    MAX_CN_CHARS,
    check_key_strength,
    find_extension,
    is_ca_certificate,
    lenient_name_decoding,
)

__all__ = [
    "MAX_CERTIFICATE_PEM_BYTES",
    "MAX_PRIVATE_KEY_PEM_BYTES",
    "certificate_pem",
    "certificate_serial_hex",
    "check_device_leaf",
    "device_identity_from_certificate",
    "load_private_key_pem",
    "normalise_thumbprint",
    "parse_ca_certificate",
    "parse_certificate_pem",
    "parse_self_signed_device_certificate",
    "private_key_pem",
    "thumbprint_sha256",
]

#: Largest PEM accepted for one certificate. Real certificates are 0.5 to 3 KiB.
MAX_CERTIFICATE_PEM_BYTES = 16 * 1024

#: Largest PEM accepted for one private key.
MAX_PRIVATE_KEY_PEM_BYTES = 16 * 1024

_BEGIN = b"-----BEGIN "
_BEGIN_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


def _ascii_bytes(data: str | bytes, *, limit: int, what: str) -> bytes:
    if len(data) > limit:
        raise TrustError(f"{what} PEM larger than {limit} bytes")
    if isinstance(data, str):
        if not data.isascii():
            raise TrustError(f"{what} PEM is not ASCII")
        return data.encode("ascii")
    return data


def parse_certificate_pem(pem: str | bytes) -> x509.Certificate:
    """Parse exactly one X.509 v3 certificate from PEM.

    The text must hold exactly one PEM block, a ``CERTIFICATE``: a bundle, or a private key
    pasted along with the certificate (a leak we would rather refuse than store), is refused.
    The subject, issuer and extensions are parsed eagerly so malformed ones fail here rather
    than later.

    Args:
        pem: the PEM text.

    Returns:
        The certificate.

    Raises:
        TrustError: too large, not ASCII, not exactly one certificate block, malformed DER,
            not version 3, or malformed names or extensions.
    """
    data = _ascii_bytes(pem, limit=MAX_CERTIFICATE_PEM_BYTES, what="certificate")
    if data.count(_BEGIN) != 1 or data.count(_BEGIN_CERTIFICATE) != 1:
        raise TrustError("expected exactly one PEM CERTIFICATE block and nothing else")
    try:
        certificate = x509.load_pem_x509_certificate(data)
        # Touch the lazily parsed parts so that malformed ones are refused now.
        with lenient_name_decoding():
            _ = (certificate.subject, certificate.issuer, certificate.extensions)
    except (ValueError, x509.DuplicateExtension):
        raise TrustError("malformed certificate") from None
    if certificate.version is not x509.Version.v3:
        # v1 certificates have no extensions, hence no basicConstraints to tell a CA from a
        # leaf; some stacks treat them as CAs.
        raise TrustError("only X.509 version 3 certificates are accepted")
    return certificate


def parse_ca_certificate(pem: str | bytes) -> x509.Certificate:
    """Parse a CA certificate an operator registers for CA-signed device authentication.

    It must be a CA (basicConstraints ``CA:TRUE``) allowed to sign certificates (keyUsage with
    ``keyCertSign``), with an accepted key. Roots and intermediates are both accepted; validity
    is checked at each device verification, not here.

    Args:
        pem: the PEM text of one certificate.

    Returns:
        The certificate.

    Raises:
        TrustError: unparseable (see :func:`parse_certificate_pem`), not a CA, no
            ``keyCertSign``, or a weak key.
    """
    certificate = parse_certificate_pem(pem)
    constraints = find_extension(certificate, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        raise TrustError("not a CA certificate (basicConstraints CA:TRUE is required)")
    usage = find_extension(certificate, x509.KeyUsage)
    if usage is None or not usage.key_cert_sign:
        raise TrustError("the CA certificate lacks the keyCertSign key usage")
    check_key_strength(certificate.public_key())
    return certificate


def check_device_leaf(certificate: x509.Certificate) -> None:
    """Refuse certificates that are not usable as a device (TLS client) certificate.

    The certificate must not be a CA (no basicConstraints ``CA:TRUE``, no ``keyCertSign``), and
    if it has an extended key usage, that must include ``clientAuth``. A certificate without
    the EKU extension is accepted: RFC 5280 §4.2.1.12 reads its absence as "any purpose", and
    OpenSSL-made device certificates (``openssl req -x509``, Azure's tutorials) often lack it;
    OpenSSL, Mosquitto and IoT Hub accept them too.

    Args:
        certificate: the device certificate.

    Raises:
        TrustError: a CA certificate, or an EKU without ``clientAuth``.
    """
    if is_ca_certificate(certificate):
        raise TrustError("a CA certificate cannot be a device certificate")
    usage = find_extension(certificate, x509.ExtendedKeyUsage)
    if usage is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        raise TrustError("the certificate's extended key usage does not allow clientAuth")


def parse_self_signed_device_certificate(pem: str | bytes) -> x509.Certificate:
    """Parse a self-signed device certificate registered by thumbprint.

    It must be self-signed (issuer equals subject and its own key verifies its signature), not
    a CA (see :func:`check_device_leaf`), and have an accepted key.

    Args:
        pem: the PEM text of one certificate.

    Returns:
        The certificate.

    Raises:
        TrustError: unparseable, not self-signed, a CA, the wrong EKU, or a weak key.
    """
    certificate = parse_certificate_pem(pem)
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        raise TrustError("the certificate is not self-signed") from None
    check_device_leaf(certificate)
    check_key_strength(certificate.public_key())
    return certificate


def device_identity_from_certificate(certificate: x509.Certificate) -> str:
    """The device id a certificate names: its single subject CN.

    The CN must be the only one in the subject, pass
    :func:`~ironhub.codec.azure.validate_identity` (which refuses wildcards such as ``*``,
    whitespace, control characters and anything outside ASCII) and respect the RFC 5280 bound
    of 64 characters.

    Args:
        certificate: a certificate whose chain or thumbprint was already verified.

    Returns:
        The device id.

    Raises:
        TrustError: no CN, several CNs, an undecodable subject, or a CN that is not a valid
            device id.
    """
    try:
        with lenient_name_decoding():
            names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        raise TrustError("the certificate subject cannot be decoded") from None
    if len(names) != 1:
        raise TrustError("the certificate subject must hold exactly one common name")
    value = names[0].value
    if not isinstance(value, str):  # pragma: no cover - cryptography decodes CNs to str
        raise TrustError("the certificate common name is not text")
    try:
        # A device id, or "device/module" for a module identity (azure-iot-mqtt.md §2.5).
        split_identity(value)
    except ValidationError as exc:
        raise TrustError(f"the certificate common name is not a valid device id: {exc}") from None
    if len(value) > MAX_CN_CHARS:
        # Longer than RFC 5280 allows a CN; ironhub never issues such a certificate.
        raise TrustError(f"the certificate common name exceeds {MAX_CN_CHARS} characters")
    return value


def thumbprint_sha256(certificate: x509.Certificate) -> str:
    """The SHA-256 thumbprint: upper-case hex of SHA-256 over the DER certificate (Azure style).

    Args:
        certificate: the certificate.

    Returns:
        64 upper-case hexadecimal characters.
    """
    return certificate.fingerprint(hashes.SHA256()).hex().upper()


def certificate_serial_hex(certificate: x509.Certificate) -> str:
    """The serial number as upper-case hex without separators (``format(serial, "X")``).

    This is how ironhub stores and shows serials, and what revocation entries refer to:
    no ``0x`` prefix, no colons, no leading zeros (OpenSSL's ``-serial`` output pads to whole
    bytes; strip its leading zeros to compare).

    Args:
        certificate: the certificate.

    Returns:
        The serial, e.g. ``"1A2B3C"``.
    """
    return format(certificate.serial_number, "X")


def normalise_thumbprint(thumbprint: str) -> str:
    """A thumbprint as :func:`thumbprint_sha256` writes it: colons and spaces removed, upper case.

    Args:
        thumbprint: a thumbprint as an operator may paste it (``ab:cd:...``).

    Returns:
        The normalised thumbprint (not validated further).
    """
    return thumbprint.replace(":", "").replace(" ", "").upper()


def certificate_pem(certificate: x509.Certificate) -> bytes:
    """The certificate as PEM.

    Args:
        certificate: the certificate.

    Returns:
        PEM bytes.
    """
    return certificate.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The private key as unencrypted PKCS#8 PEM.

    Unencrypted on purpose: the file is written 0600 and sealed at rest by its permissions
    (ARCHITECTURE.md, "Storage"); a pass phrase would have to be stored next to it anyway.

    Args:
        key: the private key.

    Returns:
        PEM bytes (``-----BEGIN PRIVATE KEY-----``).
    """
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key_pem(data: str | bytes) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted EC private key from PEM (PKCS#8 or SEC1).

    Args:
        data: the PEM text.

    Returns:
        The key.

    Raises:
        TrustError: too large, not ASCII, malformed, encrypted, not an EC key, or on a curve
            ironhub does not accept.
    """
    raw = _ascii_bytes(data, limit=MAX_PRIVATE_KEY_PEM_BYTES, what="private key")
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The exception text may quote parts of the input; keep it out of the message.
        raise TrustError("unreadable private key (malformed or encrypted)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TrustError("the private key is not an EC key")
    check_key_strength(key.public_key())
    return key
