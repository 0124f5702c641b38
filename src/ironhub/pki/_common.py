"""Helpers shared by the pki modules: time, key strength, extension access."""

from __future__ import annotations

import contextlib
import datetime as dt
import warnings
from typing import TYPE_CHECKING, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ironhub.errors import TrustError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

__all__ = [
    "ALLOWED_EC_CURVES",
    "MAX_CN_CHARS",
    "MIN_RSA_BITS",
    "check_key_strength",
    "find_extension",
    "is_ca_certificate",
    "lenient_name_decoding",
    "utc",
]

#: ``ub-common-name`` (RFC 5280 appendix A): a CN holds at most 64 characters, so X.509
#: device identities are at most 64 characters although ids may have 128 (Azure has the
#: same limit in practice).
MAX_CN_CHARS = 64

#: Named curves accepted for certificate keys: those the Web PKI allows, which is also what
#: ``cryptography.x509.verification`` accepts in chains.
ALLOWED_EC_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})

#: Smallest RSA modulus accepted (the CA/Browser Forum minimum, and the verifier's default).
MIN_RSA_BITS = 2048

_ExtensionT = TypeVar("_ExtensionT", bound=x509.ExtensionType)


def utc(now: dt.datetime) -> dt.datetime:
    """``now`` in UTC.

    Raises:
        ValueError: ``now`` is naive. A naive time is a bug in the caller: guessing a time zone
            could silently shift every validity check by hours.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(dt.UTC)


@contextlib.contextmanager
def lenient_name_decoding() -> Iterator[None]:
    """Silence cryptography's warning about name attributes outside RFC 5280 length bounds.

    ``cryptography`` emits a ``UserWarning`` when it decodes, say, an empty or 65-character CN
    from a certificate. Such certificates come from peers, our own rules judge their names, and
    under ``-W error`` the warning would escape as an exception, so it is ignored while names
    are decoded. (Only "ignore" is installed: if another thread warns meanwhile, it loses a
    warning, never gains an exception.)
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def check_key_strength(public_key: CertificatePublicKeyTypes) -> None:
    """Refuse public keys ironhub does not accept in certificates.

    Accepted: EC keys on P-256, P-384 or P-521, and RSA keys of at least 2048 bits.

    Args:
        public_key: the key.

    Raises:
        TrustError: another key type, curve, or a short RSA key.
    """
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in ALLOWED_EC_CURVES:
            raise TrustError("elliptic curve not allowed (use P-256, P-384 or P-521)")
        return
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise TrustError(f"RSA key shorter than {MIN_RSA_BITS} bits")
        return
    raise TrustError("key type not allowed (use EC P-256/P-384/P-521 or RSA >= 2048)")


def find_extension(cert: x509.Certificate, kind: type[_ExtensionT]) -> _ExtensionT | None:
    """The value of the certificate's extension of type ``kind``, or ``None`` if absent.

    Raises:
        TrustError: the extensions cannot be parsed (malformed or duplicated).
    """
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except (ValueError, x509.DuplicateExtension):
        raise TrustError("certificate extensions are malformed") from None


def is_ca_certificate(cert: x509.Certificate) -> bool:
    """Whether the certificate claims CA powers (basicConstraints CA:TRUE or keyCertSign).

    Raises:
        TrustError: the extensions cannot be parsed.
    """
    constraints = find_extension(cert, x509.BasicConstraints)
    usage = find_extension(cert, x509.KeyUsage)
    return bool((constraints is not None and constraints.ca) or (usage and usage.key_cert_sign))
