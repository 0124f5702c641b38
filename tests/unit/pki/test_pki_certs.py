"""Parsing, profiles, identities, thumbprints and PEM helpers."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tests.unit.pki.conftest import NOW, CertKit, HubCA, cn

from ironhub import pki
from ironhub.errors import TrustError
from ironhub.pki import _common

# A version 1 certificate (no extensions at all), made with
# `openssl x509 -req -signkey` (OpenSSL 3.0), which writes v1 when no extension is asked for.
V1_CERTIFICATE = """-----BEGIN CERTIFICATE-----
MIIBHDCBwwIUYi6GCcPqm75qX8x6YqydMpdPnb4wCgYIKoZIzj0EAwIwEDEOMAwG
A1UEAwwFdjFkZXYwIBcNMjYxMTIxMjIwMDE5WhgPMjEyNjEwMjgyMjAwMTlaMBAx
DjAMBgNVBAMMBXYxZGV2MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEV1lSP3VX
PU23COm3V+4ig6HyZRJCyVnOAV+pvWCGcI00b+KXUuvbIBCgh1AUuDoJhEuHfM8u
16Xmw1x1Wcq9HDAKBggqhkjOPQQDAgNIADBFAiAl/NA2NH3uxnfK0kY5oo61MQyF
9ylgg/oyFn/fIP3QMgIhAP7qxbr/U6p4UL3NiU8OgHjMTCWE//PdUX6GvVNA5biO
-----END CERTIFICATE-----
"""


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def pem_of(certificate: x509.Certificate) -> bytes:
    return pki.certificate_pem(certificate)


def with_duplicate_extension(kit: CertKit) -> x509.Certificate:
    """A certificate with two subjectKeyIdentifier extensions (signature no longer valid)."""
    key = kit.key()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    placeholder = x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.99"), ski.public_bytes())
    cert = kit.build("dup", signer=key, extensions=(placeholder,))
    raw = der(cert)
    assert raw.count(b"\x55\x1d\x63") == 1
    return x509.load_der_x509_certificate(raw.replace(b"\x55\x1d\x63", b"\x55\x1d\x0e"))


def with_undecodable_cn(kit: CertKit) -> x509.Certificate:
    """A certificate whose UTF8String CN holds invalid UTF-8."""
    key = kit.key()
    raw = der(kit.build("devAA", signer=key))
    assert raw.count(b"devAA") == 2  # subject and issuer
    return x509.load_der_x509_certificate(raw.replace(b"devAA", b"dev\xff\xfe"))


# --- parse_certificate_pem -----------------------------------------------------------------


def test_parse_certificate_pem_accepts_str_and_bytes(hub_ca: HubCA) -> None:
    pem = pem_of(hub_ca.cert)
    assert pki.parse_certificate_pem(pem) == hub_ca.cert
    assert pki.parse_certificate_pem(pem.decode()) == hub_ca.cert
    assert pki.parse_certificate_pem(b"comment before\n" + pem + b"after\n") == hub_ca.cert


def test_parse_certificate_pem_size_cap(hub_ca: HubCA) -> None:
    pem = pem_of(hub_ca.cert)
    padded = pem + b"\n" * (pki.MAX_CERTIFICATE_PEM_BYTES - len(pem))
    assert pki.parse_certificate_pem(padded) == hub_ca.cert
    with pytest.raises(TrustError, match="larger than"):
        pki.parse_certificate_pem(padded + b"\n")
    with pytest.raises(TrustError, match="larger than"):
        pki.parse_certificate_pem((padded + b"\n").decode())


def test_parse_certificate_pem_refuses_non_ascii_text(hub_ca: HubCA) -> None:
    with pytest.raises(TrustError, match="ASCII"):
        pki.parse_certificate_pem(pem_of(hub_ca.cert).decode() + "\u00e9")


def test_parse_certificate_pem_refuses_bundles_and_keys(hub_ca: HubCA) -> None:
    pem = pem_of(hub_ca.cert)
    key_pem = pki.private_key_pem(hub_ca.key)
    for bad in (b"", b"not a pem", pem + pem, pem + key_pem, key_pem + pem, key_pem):
        with pytest.raises(TrustError, match="exactly one"):
            pki.parse_certificate_pem(bad)


def test_parse_certificate_pem_refuses_malformed_der() -> None:
    garbage = b"-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n"
    with pytest.raises(TrustError, match="malformed"):
        pki.parse_certificate_pem(garbage)


def test_parse_certificate_pem_refuses_malformed_extensions_and_names(kit: CertKit) -> None:
    for broken in (with_duplicate_extension(kit), with_undecodable_cn(kit)):
        with pytest.raises(TrustError, match="malformed"):
            pki.parse_certificate_pem(pem_of(broken))


def test_parse_certificate_pem_refuses_v1() -> None:
    assert x509.load_pem_x509_certificate(V1_CERTIFICATE.encode()).version is x509.Version.v1
    with pytest.raises(TrustError, match="version 3"):
        pki.parse_certificate_pem(V1_CERTIFICATE)


# --- parse_ca_certificate ------------------------------------------------------------------


def test_parse_ca_certificate_accepts_intermediates(kit: CertKit, hub_ca: HubCA) -> None:
    root = kit.ca("root", path_length=1)
    _, intermediate = kit.ca("intermediate", signer=root, path_length=0)
    assert pki.parse_ca_certificate(pem_of(intermediate)) == intermediate
    assert pki.parse_ca_certificate(pem_of(root[1])) == root[1]


def test_parse_ca_certificate_accepts_rsa(kit: CertKit, rsa_2048: rsa.RSAPrivateKey) -> None:
    cert = kit.build("rsa CA", signer=rsa_2048, ca=True)
    assert pki.parse_ca_certificate(pem_of(cert)) == cert


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"ca": False}, "not a CA"),
        ({"ca": None}, "not a CA"),
        ({"ca": None, "key_cert_sign": True}, "not a CA"),
    ],
)
def test_parse_ca_certificate_refuses_leaves(
    kit: CertKit, profile: dict[str, object], message: str
) -> None:
    cert = kit.build("not a CA", signer=kit.key(), **profile)  # type: ignore[arg-type]
    with pytest.raises(TrustError, match=message):
        pki.parse_ca_certificate(pem_of(cert))


def test_parse_ca_certificate_requires_key_cert_sign(kit: CertKit) -> None:
    key = kit.key()
    no_usage = (
        x509.CertificateBuilder()
        .subject_name(cn("ca"))
        .issuer_name(cn("ca"))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    cert = no_usage.sign(key, hashes.SHA256())
    with pytest.raises(TrustError, match="keyCertSign"):
        pki.parse_ca_certificate(pem_of(cert))
    usage_without_sign = no_usage.add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    ).sign(key, hashes.SHA256())
    with pytest.raises(TrustError, match="keyCertSign"):
        pki.parse_ca_certificate(pem_of(usage_without_sign))


def test_parse_ca_certificate_refuses_weak_keys(kit: CertKit, rsa_1024: rsa.RSAPrivateKey) -> None:
    cert = kit.build("weak CA", signer=rsa_1024, ca=True)
    with pytest.raises(TrustError, match="RSA key shorter"):
        pki.parse_ca_certificate(pem_of(cert))


# --- parse_self_signed_device_certificate ------------------------------------------------------


def test_self_signed_without_eku_is_accepted(kit: CertKit) -> None:
    cert = kit.build("plain-openssl", signer=kit.key(), eku=None)
    assert pki.parse_self_signed_device_certificate(pem_of(cert)) == cert


def test_self_signed_with_extra_ekus_including_client_auth(kit: CertKit) -> None:
    eku = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = kit.build("both", signer=kit.key(), eku=eku)
    assert pki.parse_self_signed_device_certificate(pem_of(cert)) == cert


def test_self_signed_refuses_ca_signed_certificates(kit: CertKit, hub_ca: HubCA) -> None:
    _, leaf = kit.leaf(hub_ca.pair)
    with pytest.raises(TrustError, match="not self-signed"):
        pki.parse_self_signed_device_certificate(pem_of(leaf))


def test_self_signed_refuses_self_issued_with_a_foreign_signature(kit: CertKit) -> None:
    # Issuer equals subject, but another key signed it.
    cert = kit.build("dev1", signer=kit.key(), public_key=kit.key().public_key())
    with pytest.raises(TrustError, match="not self-signed"):
        pki.parse_self_signed_device_certificate(pem_of(cert))


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"ca": True}, "CA certificate"),
        ({"ca": True, "eku": [ExtendedKeyUsageOID.CLIENT_AUTH]}, "CA certificate"),
        ({"ca": None, "key_cert_sign": True}, "CA certificate"),
        ({"ca": False, "key_cert_sign": True}, "CA certificate"),
        ({"eku": [ExtendedKeyUsageOID.SERVER_AUTH]}, "clientAuth"),
        ({"eku": [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]}, "clientAuth"),
    ],
)
def test_self_signed_refuses_ca_and_wrong_usage(
    kit: CertKit, profile: dict[str, object], message: str
) -> None:
    cert = kit.build("dev1", signer=kit.key(), **profile)  # type: ignore[arg-type]
    with pytest.raises(TrustError, match=message):
        pki.parse_self_signed_device_certificate(pem_of(cert))


def test_self_signed_refuses_weak_keys(kit: CertKit, rsa_1024: rsa.RSAPrivateKey) -> None:
    cert = kit.build("weak", signer=rsa_1024)
    with pytest.raises(TrustError, match="RSA key shorter"):
        pki.parse_self_signed_device_certificate(pem_of(cert))


# --- device identity -----------------------------------------------------------------------


def test_identity_is_the_single_cn(kit: CertKit) -> None:
    cert = kit.build("dev-1", signer=kit.key())
    assert pki.device_identity_from_certificate(cert) == "dev-1"


def test_identity_ignores_other_subject_attributes(kit: CertKit) -> None:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc."),
            x509.NameAttribute(NameOID.COMMON_NAME, "dev1"),
        ]
    )
    assert pki.device_identity_from_certificate(kit.build(subject, signer=kit.key())) == "dev1"


def test_identity_refuses_no_cn(kit: CertKit) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dev1")])
    with pytest.raises(TrustError, match="exactly one"):
        pki.device_identity_from_certificate(kit.build(subject, signer=kit.key()))


def test_identity_refuses_several_cns(kit: CertKit) -> None:
    with pytest.raises(TrustError, match="exactly one"):
        pki.device_identity_from_certificate(kit.build(cn("dev1", "dev2"), signer=kit.key()))
    multi_valued = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "dev1"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
                ]
            )
        ]
    )
    with pytest.raises(TrustError, match="exactly one"):
        pki.device_identity_from_certificate(kit.build(multi_valued, signer=kit.key()))


def _out_of_bounds_cn(kit: CertKit, value: str) -> x509.Certificate:
    with pytest.warns(UserWarning, match="length"):
        attribute = x509.NameAttribute(NameOID.COMMON_NAME, value, _validate=False)
    return kit.build(x509.Name([attribute]), signer=kit.key())


def test_identity_refuses_an_empty_cn(kit: CertKit) -> None:
    with pytest.raises(TrustError, match="not a valid device id"):
        pki.device_identity_from_certificate(_out_of_bounds_cn(kit, ""))


def test_identity_refuses_a_cn_beyond_the_rfc_bound(kit: CertKit) -> None:
    cert = _out_of_bounds_cn(kit, "a" * 65)
    # Parsing such a certificate works (and does not warn); the identity rule refuses it.
    assert pki.parse_certificate_pem(pem_of(cert)) == cert
    with pytest.raises(TrustError, match="exceeds 64"):
        pki.device_identity_from_certificate(cert)


@pytest.mark.parametrize(
    "common_name",
    [
        "*",
        "*.example.net",
        "dev*",
        "dev 1",
        "dev/mod/x",
        "dev/",
        "/mod",
        "dev#",
        "dev+",
        "d\u00e9v",
        "-dev",
        "$dev",
    ],
)
def test_identity_refuses_invalid_cns(kit: CertKit, common_name: str) -> None:
    with pytest.raises(TrustError, match="not a valid device id"):
        pki.device_identity_from_certificate(kit.build(common_name, signer=kit.key()))


def test_identity_refuses_an_undecodable_subject(kit: CertKit) -> None:
    with pytest.raises(TrustError, match="cannot be decoded"):
        pki.device_identity_from_certificate(with_undecodable_cn(kit))


# --- thumbprints ---------------------------------------------------------------------------


def test_thumbprint_is_upper_hex_sha256_of_der(hub_ca: HubCA) -> None:
    thumbprint = pki.thumbprint_sha256(hub_ca.cert)
    assert thumbprint == hashlib.sha256(der(hub_ca.cert)).hexdigest().upper()
    assert len(thumbprint) == 64


def test_normalise_thumbprint() -> None:
    assert pki.normalise_thumbprint("ab:cd ef") == "ABCDEF"


# --- PEM helpers and keys ------------------------------------------------------------------


def test_private_key_round_trip(hub_ca: HubCA) -> None:
    pem = pki.private_key_pem(hub_ca.key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = pki.load_private_key_pem(pem)
    assert loaded.private_numbers() == hub_ca.key.private_numbers()
    assert pki.load_private_key_pem(pem.decode()).private_numbers() == loaded.private_numbers()


def test_load_private_key_accepts_sec1(hub_ca: HubCA) -> None:
    sec1 = hub_ca.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert sec1.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert pki.load_private_key_pem(sec1).private_numbers() == hub_ca.key.private_numbers()


def test_load_private_key_refuses(hub_ca: HubCA, rsa_2048: rsa.RSAPrivateKey) -> None:
    encrypted = hub_ca.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass phrase"),
    )
    rsa_pem = rsa_2048.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    k1_pem = pki.private_key_pem(ec.generate_private_key(ec.SECP256K1()))
    cases: list[tuple[str | bytes, str]] = [
        (encrypted, "unreadable"),
        (b"garbage", "unreadable"),
        (pem_of(hub_ca.cert), "unreadable"),
        (rsa_pem, "not an EC key"),
        (k1_pem, "curve not allowed"),
        (b"x" * (pki.MAX_PRIVATE_KEY_PEM_BYTES + 1), "larger than"),
        ("\u00e9", "ASCII"),
    ]
    for data, message in cases:
        with pytest.raises(TrustError, match=message) as excinfo:
            pki.load_private_key_pem(data)
        assert excinfo.value.__cause__ is None or "pass phrase" not in str(excinfo.value)


def test_certificate_pem_round_trip(hub_ca: HubCA) -> None:
    pem = pki.certificate_pem(hub_ca.cert)
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert pki.parse_certificate_pem(pem) == hub_ca.cert


# --- key strength and helpers --------------------------------------------------------------


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_key_strength_accepts_web_pki_curves(curve: ec.EllipticCurve) -> None:
    pki.check_key_strength(ec.generate_private_key(curve).public_key())


def test_key_strength(rsa_2048: rsa.RSAPrivateKey, rsa_1024: rsa.RSAPrivateKey) -> None:
    pki.check_key_strength(rsa_2048.public_key())
    with pytest.raises(TrustError, match="RSA key shorter"):
        pki.check_key_strength(rsa_1024.public_key())
    with pytest.raises(TrustError, match="curve"):
        pki.check_key_strength(ec.generate_private_key(ec.SECP256K1()).public_key())
    with pytest.raises(TrustError, match="key type"):
        pki.check_key_strength(ed25519.Ed25519PrivateKey.generate().public_key())


def test_utc_requires_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _common.utc(dt.datetime(2026, 1, 1))  # noqa: DTZ001
    assert _common.utc(NOW).tzinfo is dt.UTC


def test_malformed_extensions_on_a_leaf_from_tls(kit: CertKit) -> None:
    # A leaf handed over by the TLS layer did not go through parse_certificate_pem.
    broken = with_duplicate_extension(kit)
    with pytest.raises(TrustError, match="extensions are malformed"):
        pki.check_device_leaf(broken)


def test_public_surface() -> None:
    for name in pki.__all__:
        assert hasattr(pki, name), name
