"""Certificate signing requests from devices: reading them, and the rules they must meet.

A device that provisions itself sends a PKCS#10 request (RFC 2986) for its own key; the hub
answers with a certificate it builds entirely itself
(:func:`~ironhub.pki.issue_certificate_from_csr`).
The request is untrusted input, so this module does two things only:

* :func:`load_csr` turns bytes or text (PEM, DER, or the base64 of the DER, which is what a
  device puts in JSON) into a parsed request, with a size cap before any parsing and every
  ``cryptography`` exception wrapped;
* :func:`check_csr` refuses any request that does not prove possession of an accepted key, or
  that asks for more than a device certificate may hold.

Nothing a request asks for is ever copied into a certificate (the subject is rebuilt from the
device id, extensions come from the issuance profile), so these checks are a second wall:
a device asking for a SAN, CA powers or ``serverAuth`` is either broken or probing, and an
operator should hear about it rather than see the request quietly trimmed.

Every refusal is a :class:`~ironhub.errors.CertificateRequestError` whose ``reason`` is one of
:data:`CSR_REFUSAL_REASONS`. Messages never quote the request's own strings (its subject, its
extension values): they are attacker-controlled and end up in logs.
"""

from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID, SignatureAlgorithmOID

from ironhub.errors import CertificateRequestError
from ironhub.pki._common import lenient_name_decoding

__all__ = [
    "ALLOWED_CSR_CURVES",
    "ALLOWED_CSR_SIGNATURE_ALGORITHMS",
    "CSR_REFUSAL_REASONS",
    "MAX_CSR_BYTES",
    "check_csr",
    "load_csr",
]

#: Largest request accepted, counted on the input as given (bytes, or characters of text).
#: A P-384 request with a few extensions is under 1 KiB; 16 KiB is the certificate PEM cap.
MAX_CSR_BYTES = 16 * 1024

#: Named curves a device key may use. Narrower than the curves accepted in uploaded
#: certificates (P-521 is missing): every device TLS stack we target does P-256, which is
#: also what common secure elements (ATECC608, TPM 2.0) offer; P-384 is there for the rest.
ALLOWED_CSR_CURVES = frozenset({"secp256r1", "secp384r1"})

#: Signature algorithms a request may be signed with. The request is signed by the device's
#: own key, so this also rules out RSA and DSA keys; SHA-1 and SHA-224 are too weak.
ALLOWED_CSR_SIGNATURE_ALGORITHMS = frozenset(
    {
        SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        SignatureAlgorithmOID.ED25519,
    }
)

#: Every ``reason`` a :class:`~ironhub.errors.CertificateRequestError` from this module carries.
CSR_REFUSAL_REASONS = frozenset(
    {
        "malformed",
        "too-large",
        "bad-signature",
        "key-type",
        "subject",
        "san",
        "ca-requested",
        "forbidden-eku",
        "forbidden-key-usage",
        "extension",
    }
)

_PEM_BEGIN = b"-----BEGIN CERTIFICATE REQUEST-----"
_PEM_END = b"-----END CERTIFICATE REQUEST-----"
# The DER of a request is a SEQUENCE; base64 text of it always starts with "M", never with
# this byte, so the first byte tells DER from text without guessing.
_DER_SEQUENCE = 0x30
_WHITESPACE = b" \t\r\n"

# Extensions a request may carry, as long as their values are harmless (checked one by one).
_TOLERATED_EXTENSIONS = frozenset(
    {ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.EXTENDED_KEY_USAGE, ExtensionOID.KEY_USAGE}
)


def _malformed(message: str) -> CertificateRequestError:
    return CertificateRequestError("malformed", message)


def _strict_base64(text: bytes) -> bytes:
    # Line breaks and spaces are allowed anywhere (PEM wraps at 64 columns, some devices
    # wrap their JSON strings too); anything else outside the standard alphabet, and wrong
    # padding, is refused rather than skipped as base64.b64decode would do by default.
    compact = text.translate(None, _WHITESPACE)
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error:
        raise _malformed("the CSR is not valid base64") from None


def _der_from_input(data: bytes) -> bytes:
    if data[:1] == bytes([_DER_SEQUENCE]):
        return data
    text = data.strip(_WHITESPACE)
    if text.startswith(b"-----"):
        # Exactly one block with our label and nothing around it: a second block (a private
        # key pasted along, a chain), PEM headers or trailing junk all fail the base64 check
        # of the body or the label checks here.
        if not (text.startswith(_PEM_BEGIN) and text.endswith(_PEM_END)):
            raise _malformed("expected exactly one PEM CERTIFICATE REQUEST block")
        text = text[len(_PEM_BEGIN) : -len(_PEM_END)]
    return _strict_base64(text)


def _subject_and_extensions(
    csr: x509.CertificateSigningRequest,
) -> tuple[x509.Name, x509.Extensions]:
    try:
        # Names outside the RFC 5280 bounds (an empty or 65-character CN) only warn in
        # cryptography; the subject rule below judges them.
        with lenient_name_decoding():
            return csr.subject, csr.extensions
    except (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise _malformed("the CSR subject or requested extensions cannot be parsed") from None


def load_csr(data: bytes | str) -> x509.CertificateSigningRequest:
    """Parse a PKCS#10 certificate signing request from a device.

    Accepted forms: one PEM ``CERTIFICATE REQUEST`` block (surrounding whitespace allowed),
    raw DER, or standard base64 (with padding, line breaks allowed) of the DER. The size cap
    is applied before anything else; the subject and requested extensions are parsed eagerly
    so that malformed ones fail here. Nothing is judged yet: see :func:`check_csr`.

    Args:
        data: the request as received.

    Returns:
        The parsed request.

    Raises:
        CertificateRequestError: ``too-large`` (over :data:`MAX_CSR_BYTES`) or ``malformed``
            (empty, not ASCII text, not one PEM block, bad base64, bad DER, trailing bytes,
            a version other than 1, unparseable subject or extensions, duplicate extensions).
    """
    if len(data) > MAX_CSR_BYTES:
        raise CertificateRequestError("too-large", f"the CSR exceeds {MAX_CSR_BYTES} bytes")
    if isinstance(data, str):
        if not data.isascii():
            raise _malformed("the CSR text is not ASCII")
        data = data.encode("ascii")
    der = _der_from_input(bytes(data))
    if not der:
        raise _malformed("the CSR is empty")
    try:
        # DER only, and the parser refuses trailing bytes (ExtraData), so what is loaded is
        # exactly what was sent: no second object can hide behind the first.
        csr = x509.load_der_x509_csr(der)
    except (ValueError, TypeError, x509.InvalidVersion, UnsupportedAlgorithm):
        raise _malformed("the CSR is not a valid DER certification request") from None
    _subject_and_extensions(csr)
    return csr


def _check_proof_of_possession(csr: x509.CertificateSigningRequest) -> None:
    try:
        valid = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The key cannot be read (an unknown algorithm, a point off its curve), so the
        # signature cannot be checked either.
        valid = False
    if not valid:
        raise CertificateRequestError(
            "bad-signature", "the CSR signature does not verify with its own public key"
        )


def _check_key_type(csr: x509.CertificateSigningRequest) -> None:
    # The signature verified, so cryptography has already read this key successfully.
    key = csr.public_key()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in ALLOWED_CSR_CURVES:
        return
    raise CertificateRequestError("key-type", "the CSR key must be EC P-256, EC P-384 or Ed25519")


def _check_signature_algorithm(csr: x509.CertificateSigningRequest) -> None:
    if csr.signature_algorithm_oid not in ALLOWED_CSR_SIGNATURE_ALGORITHMS:
        raise CertificateRequestError(
            "bad-signature", "the CSR must be signed with ECDSA-SHA256, ECDSA-SHA384 or Ed25519"
        )


def _check_subject(subject: x509.Name, expected_common_name: str) -> None:
    attributes = list(subject)
    if (
        len(attributes) != 1
        or attributes[0].oid != NameOID.COMMON_NAME
        or attributes[0].value != expected_common_name
    ):
        # The requested name is not quoted: it is the attacker's text.
        raise CertificateRequestError(
            "subject", "the CSR subject must be exactly one common name, the device id"
        )


def _check_extensions(extensions: x509.Extensions) -> None:
    requested = {extension.oid: extension.value for extension in extensions}
    # The reasons are tested in a fixed order, whatever the order inside the request, so the
    # same request always gets the same reason.
    if ExtensionOID.SUBJECT_ALTERNATIVE_NAME in requested:
        raise CertificateRequestError("san", "a device CSR may not request subject alt names")
    constraints = requested.get(ExtensionOID.BASIC_CONSTRAINTS)
    if isinstance(constraints, x509.BasicConstraints) and constraints.ca:
        raise CertificateRequestError("ca-requested", "a device CSR may not request CA:TRUE")
    usages = requested.get(ExtensionOID.EXTENDED_KEY_USAGE)
    if isinstance(usages, x509.ExtendedKeyUsage) and any(
        usage != ExtendedKeyUsageOID.CLIENT_AUTH for usage in usages
    ):
        raise CertificateRequestError(
            "forbidden-eku", "a device CSR may request the clientAuth extended key usage only"
        )
    key_usage = requested.get(ExtensionOID.KEY_USAGE)
    if isinstance(key_usage, x509.KeyUsage) and (key_usage.key_cert_sign or key_usage.crl_sign):
        raise CertificateRequestError(
            "forbidden-key-usage", "a device CSR may not request keyCertSign or cRLSign"
        )
    if not requested.keys() <= _TOLERATED_EXTENSIONS:
        raise CertificateRequestError(
            "extension",
            "a device CSR may request only basicConstraints, keyUsage and extendedKeyUsage",
        )


def check_csr(csr: x509.CertificateSigningRequest, *, expected_common_name: str) -> None:
    """Refuse a device's request unless it proves its key and asks for a plain device leaf.

    The checks run in this order, and the first that fails gives the ``reason``:

    1. ``bad-signature``: the signature does not verify with the request's own key (no proof
       of possession), or the key cannot be read;
    2. ``key-type``: the key is not EC P-256, EC P-384 or Ed25519 (RSA, DSA, Ed448 and other
       curves are refused);
    3. ``bad-signature``: the signature algorithm is not ECDSA-SHA256, ECDSA-SHA384 or
       Ed25519. Checked after the key type because an RSA or DSA key can only sign with an
       RSA or DSA algorithm: such a request is refused for its key, the real problem;
    4. ``subject``: the subject is not exactly one attribute, a CN equal to
       ``expected_common_name``;
    5. ``san``: a subjectAltName is requested (none at all is allowed);
    6. ``ca-requested``: basicConstraints ``CA:TRUE`` is requested;
    7. ``forbidden-eku``: an extended key usage other than ``clientAuth`` is requested;
    8. ``forbidden-key-usage``: ``keyCertSign`` or ``cRLSign`` is requested;
    9. ``extension``: any other extension is requested (only basicConstraints ``CA:FALSE``,
       extendedKeyUsage ``clientAuth`` and a keyUsage without certificate or CRL signing
       are tolerated; none of them is copied into the certificate).

    Args:
        csr: a request, normally from :func:`load_csr`.
        expected_common_name: the device id the request must name.

    Raises:
        CertificateRequestError: with one of the reasons above, or ``malformed`` for a request
            built elsewhere whose subject or extensions cannot be parsed.
    """
    _check_proof_of_possession(csr)
    _check_key_type(csr)
    _check_signature_algorithm(csr)
    subject, extensions = _subject_and_extensions(csr)
    _check_subject(subject, expected_common_name)
    _check_extensions(extensions)
