"""Fixtures for the pki tests: a fixed time, a hub CA, and a builder for hostile certificates."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ironhub import pki

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)

_DEFAULT = object()


def cn(*names: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name) for name in names])


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
