"""Pure X.509 policy: the hub CA, issuance, CSRs, CRLs, parsing and device verification.

Nothing here touches files, sockets, clocks or asyncio: times are passed in as timezone-aware
``datetime`` values and keys and certificates travel as objects or PEM bytes. Only the
``cryptography`` package is used. Every refusal raises :class:`~ironhub.errors.TrustError`
(its subclass :class:`~ironhub.errors.CertificateRequestError`, with a ``reason`` code, for a
refused device CSR), or :class:`~ironhub.errors.ValidationError` for a malformed name, serial
or revocation reason given by the caller; foreign exceptions are wrapped.

CA keys are used only through ``public_key()`` and ``sign()``, so every function that signs
(certificates, CRLs) also accepts an external signer: an ``EllipticCurvePrivateKey`` subclass
whose ``sign()`` calls a PKCS#11 token or a TPM.

Modules (private, re-exported here):

* ``_issue``: :func:`create_ca`, :func:`create_ca_certificate` (for a key that already exists),
  :func:`issue_server_certificate`, :func:`issue_device_certificate`,
  :func:`issue_certificate_from_csr`, :func:`create_self_signed_device_certificate`, and the
  issuance profile in its docstring;
* ``_csr``: device provisioning requests: :func:`load_csr` (PEM, DER or base64 of the DER,
  capped at :data:`MAX_CSR_BYTES`) and :func:`check_csr`, whose refusal reasons are
  :data:`CSR_REFUSAL_REASONS`;
* ``_crl``: :func:`build_crl` from :class:`RevokedEntry` records, :func:`crl_pem`,
  :func:`crl_der`, and the operator's :data:`REVOCATION_REASONS`
  (:func:`parse_revocation_reason`; holds are not supported);
* ``_certs``: PEM parsing with size caps, CA and self-signed device profiles, the device
  identity rule, thumbprints, serials (:func:`certificate_serial_hex`), PEM serialisation;
* ``_verify``: :func:`verify_ca_signed_device`, :func:`verify_thumbprint_device`;
* ``_common``: key-strength rule and helpers.
"""

from __future__ import annotations

from ironhub.pki._certs import (
    MAX_CERTIFICATE_PEM_BYTES,
    MAX_PRIVATE_KEY_PEM_BYTES,
    certificate_pem,
    certificate_serial_hex,
    check_device_leaf,
    device_identity_from_certificate,
    load_private_key_pem,
    normalise_thumbprint,
    parse_ca_certificate,
    parse_certificate_pem,
    parse_self_signed_device_certificate,
    private_key_pem,
    thumbprint_sha256,
)
from ironhub.pki._common import ALLOWED_EC_CURVES, MAX_CN_CHARS, MIN_RSA_BITS, check_key_strength
from ironhub.pki._crl import (
    MAX_CRL_NUMBER,
    REVOCATION_REASONS,
    RevokedEntry,
    build_crl,
    crl_der,
    crl_pem,
    parse_revocation_reason,
)
from ironhub.pki._csr import (
    ALLOWED_CSR_CURVES,
    ALLOWED_CSR_SIGNATURE_ALGORITHMS,
    CSR_REFUSAL_REASONS,
    MAX_CSR_BYTES,
    check_csr,
    load_csr,
)
from ironhub.pki._issue import (
    BACKDATE,
    create_ca,
    create_ca_certificate,
    create_self_signed_device_certificate,
    issue_certificate_from_csr,
    issue_device_certificate,
    issue_server_certificate,
)
from ironhub.pki._verify import (
    DEFAULT_MAX_CHAIN_DEPTH,
    verify_ca_signed_device,
    verify_thumbprint_device,
)

__all__ = [
    "ALLOWED_CSR_CURVES",
    "ALLOWED_CSR_SIGNATURE_ALGORITHMS",
    "ALLOWED_EC_CURVES",
    "BACKDATE",
    "CSR_REFUSAL_REASONS",
    "DEFAULT_MAX_CHAIN_DEPTH",
    "MAX_CERTIFICATE_PEM_BYTES",
    "MAX_CN_CHARS",
    "MAX_CRL_NUMBER",
    "MAX_CSR_BYTES",
    "MAX_PRIVATE_KEY_PEM_BYTES",
    "MIN_RSA_BITS",
    "REVOCATION_REASONS",
    "RevokedEntry",
    "build_crl",
    "certificate_pem",
    "certificate_serial_hex",
    "check_csr",
    "check_device_leaf",
    "check_key_strength",
    "create_ca",
    "create_ca_certificate",
    "create_self_signed_device_certificate",
    "crl_der",
    "crl_pem",
    "device_identity_from_certificate",
    "issue_certificate_from_csr",
    "issue_device_certificate",
    "issue_server_certificate",
    "load_csr",
    "load_private_key_pem",
    "normalise_thumbprint",
    "parse_ca_certificate",
    "parse_certificate_pem",
    "parse_revocation_reason",
    "parse_self_signed_device_certificate",
    "private_key_pem",
    "thumbprint_sha256",
    "verify_ca_signed_device",
    "verify_thumbprint_device",
]
