"""Fixtures for the pki tests: a fixed time, a hub CA, builders for hostile certificates and
CSRs, and an external signer."""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ironhub import pki

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)

_DEFAULT = object()


def cn(*names: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name) for name in names])


def lax_cn(name: str) -> x509.Name:
    """A one-CN name, even outside RFC 5280's 1 to 64 characters (as a hostile peer sends)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name, _validate=False)])


class CertKit:
    """Builds certificates with any profile, including ones ironhub must refuse."""

    def key(self, curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(curve or ec.SECP256R1())

    def build(
        self,
        subject: x509.Name | str,
        *,
        signer: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
        issuer: x509.Name | None = None,
        public_key: object = None,
        not_before: dt.datetime = NOW - DAY,
        not_after: dt.datetime = NOW + 30 * DAY,
        ca: bool | None = False,
        path_length: int | None = None,
        key_cert_sign: bool = False,
        eku: object = _DEFAULT,
        ski: bool = True,
        aki: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
        extensions: tuple[x509.ExtensionType, ...] = (),
    ) -> x509.Certificate:
        """A certificate; ``signer`` signs, ``public_key`` defaults to the signer's key."""
        name = cn(subject) if isinstance(subject, str) else subject
        key = public_key if public_key is not None else signer.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer if issuer is not None else name)
            .public_key(key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )
        if ca is not None:
            builder = builder.add_extension(
                x509.BasicConstraints(ca=ca, path_length=path_length if ca else None),
                critical=True,
            )
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=bool(ca) or key_cert_sign,
                crl_sign=bool(ca),
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        if eku is _DEFAULT:
            eku = None if ca else [ExtendedKeyUsageOID.CLIENT_AUTH]
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)  # type: ignore[arg-type]
        if ski:
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key),  # type: ignore[arg-type]
                critical=False,
            )
        if aki is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(aki.public_key()),
                critical=False,
            )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(signer, hashes.SHA256())

    def ca(
        self, name: str, *, signer: tuple[object, x509.Certificate] | None = None, **kwargs: object
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A CA, self-signed or issued by ``signer`` = (key, cert)."""
        key = self.key()
        if signer is None:
            return key, self.build(name, signer=key, ca=True, **kwargs)  # type: ignore[arg-type]
        signer_key, signer_cert = signer
        certificate = self.build(
            name,
            signer=signer_key,  # type: ignore[arg-type]
            issuer=signer_cert.subject,
            public_key=key.public_key(),
            ca=True,
            aki=signer_key,  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )
        return key, certificate

    def leaf(
        self, issuer: tuple[object, x509.Certificate], device_id: str = "dev1", /, **kwargs: object
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A device certificate issued by ``issuer`` = (key, cert)."""
        key = self.key()
        ca_key, ca_cert = issuer
        kwargs.setdefault("aki", ca_key)
        certificate = self.build(
            device_id,
            signer=ca_key,  # type: ignore[arg-type]
            issuer=ca_cert.subject,
            public_key=key.public_key(),
            **kwargs,  # type: ignore[arg-type]
        )
        return key, certificate


def make_csr(
    key: CertificateIssuerPrivateKeyTypes,
    subject: x509.Name | str = "dev1",
    *,
    extensions: tuple[x509.ExtensionType, ...] = (),
    algorithm: hashes.HashAlgorithm | None = None,
) -> x509.CertificateSigningRequest:
    """A CSR for ``key`` (ECDSA/RSA-SHA256 unless told; Edwards keys sign without a hash)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        cn(subject) if isinstance(subject, str) else subject
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    if algorithm is None and isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        algorithm = hashes.SHA256()
    return builder.sign(key, algorithm)  # type: ignore[arg-type]


class CountingSigner(ec.EllipticCurvePrivateKey):
    """An external signer, as a PKCS#11 or TPM key would be wrapped: it holds no private
    numbers, delegates ``sign()`` (here to a real key) and counts the calls."""

    def __init__(self, inner: ec.EllipticCurvePrivateKey | None = None) -> None:
        self._inner = inner or ec.generate_private_key(ec.SECP256R1())
        self.calls = 0

    def sign(
        self,
        data: bytes | bytearray | memoryview,
        signature_algorithm: ec.EllipticCurveSignatureAlgorithm,
    ) -> bytes:
        self.calls += 1
        return self._inner.sign(data, signature_algorithm)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._inner.public_key()

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._inner.curve

    @property
    def key_size(self) -> int:
        return self._inner.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise AssertionError("a token signer does not do ECDH here")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise AssertionError("the private scalar never leaves the token")

    def private_bytes(self, *args: object) -> bytes:
        raise AssertionError("the private key never leaves the token")

    def __copy__(self) -> CountingSigner:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> CountingSigner:
        return self


@dataclass(frozen=True)
class HubCA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pair(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        return self.key, self.cert


@pytest.fixture
def kit() -> CertKit:
    return CertKit()


@pytest.fixture(scope="module")
def hub_ca() -> HubCA:
    key, cert = pki.create_ca("ironhub test CA", now=NOW)
    return HubCA(key, cert)


@pytest.fixture(scope="module")
def rsa_2048() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_1024() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)
