"""Pure X.509 policy: the hub CA, issuance, parsing and device certificate verification.

Nothing here touches files, sockets, clocks or asyncio: times are passed in as timezone-aware
``datetime`` values and keys and certificates travel as objects or PEM bytes. Only the
``cryptography`` package is used. Every refusal raises :class:`~ironhub.errors.TrustError`
(or :class:`~ironhub.errors.ValidationError` for a malformed name given to an issuing
function); foreign exceptions are wrapped.

Modules (private, re-exported here):

* ``_issue``: :func:`create_ca`, :func:`issue_server_certificate`,
  :func:`issue_device_certificate`, :func:`create_self_signed_device_certificate`, and the
  issuance profile in its docstring;
* ``_certs``: PEM parsing with size caps, CA and self-signed device profiles, the device
  identity rule, thumbprints, PEM serialisation;
* ``_verify``: :func:`verify_ca_signed_device`, :func:`verify_thumbprint_device`;
* ``_common``: key-strength rule and helpers.
"""

from __future__ import annotations

from ironhub.pki._certs import (
    MAX_CERTIFICATE_PEM_BYTES,
    MAX_PRIVATE_KEY_PEM_BYTES,
    certificate_pem,
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
from ironhub.pki._issue import (
    BACKDATE,
    create_ca,
    create_self_signed_device_certificate,
    issue_device_certificate,
    issue_server_certificate,
)
from ironhub.pki._verify import (
    DEFAULT_MAX_CHAIN_DEPTH,
    verify_ca_signed_device,
    verify_thumbprint_device,
)

__all__ = [
    "ALLOWED_EC_CURVES",
    "BACKDATE",
    "DEFAULT_MAX_CHAIN_DEPTH",
    "MAX_CERTIFICATE_PEM_BYTES",
    "MAX_CN_CHARS",
    "MAX_PRIVATE_KEY_PEM_BYTES",
    "MIN_RSA_BITS",
    "certificate_pem",
    "check_device_leaf",
    "check_key_strength",
    "create_ca",
    "create_self_signed_device_certificate",
    "device_identity_from_certificate",
    "issue_device_certificate",
    "issue_server_certificate",
    "load_private_key_pem",
    "normalise_thumbprint",
    "parse_ca_certificate",
    "parse_certificate_pem",
    "parse_self_signed_device_certificate",
    "private_key_pem",
    "thumbprint_sha256",
    "verify_ca_signed_device",
    "verify_thumbprint_device",
]
