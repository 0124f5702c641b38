"""Issuance: the hub CA, server and device certificates, certificates from CSRs, and external
signers (a CA key held in a token)."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from tests.unit.pki.conftest import DAY, NOW, CertKit, CountingSigner, HubCA, lax_cn, make_csr

from ironhub import pki
from ironhub.errors import CertificateRequestError, TrustError, ValidationError


def ext(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension:  # type: ignore[type-arg]
    return certificate.extensions.get_extension_for_class(kind)


def common_names(certificate: x509.Certificate) -> list[str]:
    return [str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


# --- CA ------------------------------------------------------------------------------------


def test_create_ca_profile(hub_ca: HubCA) -> None:
    cert = hub_ca.cert
    assert common_names(cert) == ["ironhub test CA"]
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    assert isinstance(hub_ca.key.curve, ec.SECP256R1)
    assert cert.not_valid_before_utc == NOW - pki.BACKDATE
    assert cert.not_valid_after_utc == NOW + 3650 * DAY
    assert cert.serial_number > 0
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value == x509.BasicConstraints(ca=True, path_length=0)
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert pki.parse_ca_certificate(pki.certificate_pem(cert)) == cert


def test_create_ca_serials_are_random() -> None:
    _, first = pki.create_ca("a", now=NOW, validity_days=1)
    _, second = pki.create_ca("a", now=NOW, validity_days=1)
    assert first.serial_number != second.serial_number


@pytest.mark.parametrize("name", ["", "x" * 65])
def test_create_ca_refuses_bad_common_names(name: str) -> None:
    with pytest.raises(ValidationError):
        pki.create_ca(name, now=NOW)


def test_create_ca_refuses_naive_time_and_bad_validity() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        pki.create_ca("ca", now=dt.datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="validity_days"):
        pki.create_ca("ca", now=NOW, validity_days=0)


def test_create_ca_converts_other_time_zones_to_utc() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    _, cert = pki.create_ca("ca", now=dt.datetime(2026, 1, 1, 2, tzinfo=plus_two))
    assert cert.not_valid_before_utc == NOW - pki.BACKDATE


# --- server certificates -------------------------------------------------------------------


def test_server_certificate_profile(hub_ca: HubCA) -> None:
    key, cert = pki.issue_server_certificate(
        hub_ca.key,
        hub_ca.cert,
        ["Hub.Example.NET", "10.0.0.5", "localhost", "hub.example.net", "::1"],
        now=NOW,
    )
    assert isinstance(key.curve, ec.SECP256R1)
    assert common_names(cert) == ["Hub.Example.NET"]
    assert cert.issuer == hub_ca.cert.subject
    cert.verify_directly_issued_by(hub_ca.cert)
    san = ext(cert, x509.SubjectAlternativeName)
    assert not san.critical
    assert list(san.value) == [
        x509.DNSName("hub.example.net"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.5")),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    assert ext(cert, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    assert ext(cert, x509.BasicConstraints).value.ca is False
    assert ext(cert, x509.KeyUsage).value.digital_signature
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(hub_ca.cert, x509.SubjectKeyIdentifier).value.digest
    assert cert.not_valid_after_utc == NOW + 397 * DAY


def test_server_certificate_verifies_as_a_tls_server(hub_ca: HubCA) -> None:
    # The Web PKI server policy is what a strict TLS client applies (the SDK uses OpenSSL's).
    _, cert = pki.issue_server_certificate(hub_ca.key, hub_ca.cert, ["hub.example.net"], now=NOW)
    for subject in (
        x509.DNSName("hub.example.net"),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ):
        verifier = (
            PolicyBuilder().store(Store([hub_ca.cert])).time(NOW).build_server_verifier(subject)
        )
        chain = verifier.verify(cert, [])
        assert chain[-1] == hub_ca.cert


def test_server_certificate_defaults(hub_ca: HubCA) -> None:
    _, cert = pki.issue_server_certificate(hub_ca.key, hub_ca.cert, [], now=NOW)
    assert common_names(cert) == ["localhost"]
    assert list(ext(cert, x509.SubjectAlternativeName).value) == [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]


def test_server_certificate_with_a_long_first_name(hub_ca: HubCA) -> None:
    long_name = ".".join(["a" * 60, "example", "net"])
    _, cert = pki.issue_server_certificate(hub_ca.key, hub_ca.cert, [long_name], now=NOW)
    assert len(cert.subject) == 0
    san = ext(cert, x509.SubjectAlternativeName)
    assert san.critical
    assert x509.DNSName(long_name) in san.value


@pytest.mark.parametrize(
    "hostname",
    [
        "*.example.net",
        "hub..example.net",
        "-hub.example.net",
        "hub-.example.net",
        "hub_1.example.net",
        "h\u00fcb.example.net",
        "",
        "a" * 64 + ".net",
        ".".join(["abc"] * 64),  # longer than 253
        "fe80::1%eth0",
    ],
)
def test_server_certificate_refuses_bad_names(hub_ca: HubCA, hostname: str) -> None:
    with pytest.raises(ValidationError):
        pki.issue_server_certificate(hub_ca.key, hub_ca.cert, [hostname], now=NOW)


def test_server_certificate_refuses_a_single_string(hub_ca: HubCA) -> None:
    with pytest.raises(TypeError):
        pki.issue_server_certificate(hub_ca.key, hub_ca.cert, "hub.example.net", now=NOW)


def test_issuing_with_a_mismatched_ca_key_is_refused(hub_ca: HubCA, kit: CertKit) -> None:
    with pytest.raises(TrustError, match="does not match"):
        pki.issue_server_certificate(kit.key(), hub_ca.cert, ["hub"], now=NOW)
    with pytest.raises(TrustError, match="does not match"):
        pki.issue_device_certificate(kit.key(), hub_ca.cert, kit.key().public_key(), "d", now=NOW)


def test_leaves_never_outlive_their_ca() -> None:
    ca_key, ca_cert = pki.create_ca("short CA", now=NOW, validity_days=30)
    _, server = pki.issue_server_certificate(ca_key, ca_cert, ["hub"], now=NOW)
    assert server.not_valid_after_utc == ca_cert.not_valid_after_utc
    device = pki.issue_device_certificate(
        ca_key, ca_cert, ec.generate_private_key(ec.SECP256R1()).public_key(), "d", now=NOW
    )
    assert device.not_valid_after_utc == ca_cert.not_valid_after_utc


def test_issuing_from_an_expired_ca_is_refused() -> None:
    ca_key, ca_cert = pki.create_ca("old CA", now=NOW - 40 * DAY, validity_days=30)
    with pytest.raises(TrustError, match="expired"):
        pki.issue_server_certificate(ca_key, ca_cert, ["hub"], now=NOW)


def test_aki_falls_back_to_the_ca_public_key(kit: CertKit) -> None:
    ca_key, ca_cert = kit.ca("CA without SKI", ski=False)
    _, cert = pki.issue_server_certificate(ca_key, ca_cert, ["hub"], now=NOW)
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    expected = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()).digest
    assert aki.key_identifier == expected


# --- device certificates -------------------------------------------------------------------


def test_device_certificate_profile(hub_ca: HubCA) -> None:
    device_key = ec.generate_private_key(ec.SECP256R1())
    cert = pki.issue_device_certificate(
        hub_ca.key, hub_ca.cert, device_key.public_key(), "dev-1.a_b:c@d", now=NOW
    )
    assert common_names(cert) == ["dev-1.a_b:c@d"]
    assert cert.public_key() == device_key.public_key()
    cert.verify_directly_issued_by(hub_ca.cert)
    assert ext(cert, x509.BasicConstraints).critical
    assert ext(cert, x509.BasicConstraints).value.ca is False
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    assert ext(cert, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    assert cert.not_valid_after_utc == NOW + 365 * DAY
    assert pki.verify_ca_signed_device(cert, trusted_cas=[hub_ca.cert], now=NOW) == "dev-1.a_b:c@d"


def test_device_certificate_for_an_rsa_key(hub_ca: HubCA, rsa_2048: object) -> None:
    cert = pki.issue_device_certificate(
        hub_ca.key,
        hub_ca.cert,
        rsa_2048.public_key(),  # type: ignore[attr-defined]
        "rsa-dev",
        now=NOW,
    )
    assert pki.verify_ca_signed_device(cert, trusted_cas=[hub_ca.cert], now=NOW) == "rsa-dev"


def test_device_certificate_refuses_weak_keys(hub_ca: HubCA, rsa_1024: object) -> None:
    weak_keys = [
        rsa_1024.public_key(),  # type: ignore[attr-defined]
        ec.generate_private_key(ec.SECP256K1()).public_key(),
        ed25519.Ed25519PrivateKey.generate().public_key(),
    ]
    for weak in weak_keys:
        with pytest.raises(TrustError):
            pki.issue_device_certificate(hub_ca.key, hub_ca.cert, weak, "dev1", now=NOW)


@pytest.mark.parametrize("device_id", ["", "dev/1/2", "dev/", "*", "dev 1", "+", "#", "a" * 65])
def test_device_certificate_refuses_bad_ids(hub_ca: HubCA, device_id: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValidationError):
        pki.issue_device_certificate(hub_ca.key, hub_ca.cert, key.public_key(), device_id, now=NOW)
    with pytest.raises(ValidationError):
        pki.create_self_signed_device_certificate(device_id, now=NOW)


def test_device_id_of_64_characters_fits_the_cn(hub_ca: HubCA) -> None:
    _, cert = pki.create_self_signed_device_certificate("a" * 64, now=NOW)
    assert pki.device_identity_from_certificate(cert) == "a" * 64


def test_self_signed_device_certificate_profile() -> None:
    key, cert = pki.create_self_signed_device_certificate("selfdev", now=NOW, validity_days=10)
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.public_key() == key.public_key()
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    assert common_names(cert) == ["selfdev"]
    assert ext(cert, x509.BasicConstraints).value.ca is False
    assert ExtendedKeyUsageOID.CLIENT_AUTH in ext(cert, x509.ExtendedKeyUsage).value
    assert cert.not_valid_after_utc == NOW + 10 * DAY
    assert pki.parse_self_signed_device_certificate(pki.certificate_pem(cert)) == cert
    thumbprint = pki.thumbprint_sha256(cert)
    assert pki.verify_thumbprint_device(cert, thumbprints=[thumbprint], now=NOW) == 0


# --- a CA certificate for an existing key, and external signers ----------------------------


def test_create_ca_certificate_for_an_existing_p384_key() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    cert = pki.create_ca_certificate(key, "token CA", now=NOW, validity_days=20)
    assert cert.public_key() == key.public_key()
    assert common_names(cert) == ["token CA"]
    cert.verify_directly_issued_by(cert)
    assert ext(cert, x509.BasicConstraints).value == x509.BasicConstraints(ca=True, path_length=0)
    assert cert.not_valid_before_utc == NOW - pki.BACKDATE
    assert cert.not_valid_after_utc == NOW + 20 * DAY
    assert pki.parse_ca_certificate(pki.certificate_pem(cert)) == cert


def test_create_ca_certificate_refuses_weak_keys_and_bad_arguments() -> None:
    with pytest.raises(TrustError, match="curve"):
        pki.create_ca_certificate(ec.generate_private_key(ec.SECP256K1()), "ca", now=NOW)
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValidationError):
        pki.create_ca_certificate(key, "", now=NOW)
    with pytest.raises(ValueError, match="validity_days"):
        pki.create_ca_certificate(key, "ca", now=NOW, validity_days=0)


def test_a_token_signer_signs_everything_the_ca_signs() -> None:
    signer = CountingSigner()
    ca_cert = pki.create_ca_certificate(signer, "token CA", now=NOW)
    assert signer.calls == 1
    ca_cert.verify_directly_issued_by(ca_cert)

    _, server = pki.issue_server_certificate(signer, ca_cert, ["hub.example.net"], now=NOW)
    assert signer.calls == 2
    server.verify_directly_issued_by(ca_cert)

    device_key = ec.generate_private_key(ec.SECP256R1())
    device = pki.issue_device_certificate(signer, ca_cert, device_key.public_key(), "d1", now=NOW)
    assert signer.calls == 3
    assert pki.verify_ca_signed_device(device, trusted_cas=[ca_cert], now=NOW) == "d1"

    from_csr = pki.issue_certificate_from_csr(
        signer, ca_cert, make_csr(device_key, "d2"), device_id="d2", now=NOW, validity_days=30
    )
    assert signer.calls == 4
    assert pki.verify_ca_signed_device(from_csr, trusted_cas=[ca_cert], now=NOW) == "d2"

    crl = pki.build_crl(signer, ca_cert, [], number=1, now=NOW, next_update=NOW + DAY)
    assert signer.calls == 5
    assert crl.is_signature_valid(signer.public_key())


def test_a_token_signer_is_not_used_for_a_refused_csr() -> None:
    signer = CountingSigner()
    ca_cert = pki.create_ca_certificate(signer, "token CA", now=NOW)
    csr = make_csr(ec.generate_private_key(ec.SECP256R1()), "someone-else")
    with pytest.raises(CertificateRequestError):
        pki.issue_certificate_from_csr(
            signer, ca_cert, csr, device_id="d1", now=NOW, validity_days=30
        )
    assert signer.calls == 1


# --- certificates from CSRs ----------------------------------------------------------------


def test_certificate_from_csr_profile(hub_ca: HubCA) -> None:
    device_key = ec.generate_private_key(ec.SECP256R1())
    # Everything a CSR may carry; none of it is copied.
    csr = make_csr(
        device_key,
        "dev-7",
        extensions=(
            x509.BasicConstraints(ca=False, path_length=None),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
        ),
    )
    cert = pki.issue_certificate_from_csr(
        hub_ca.key, hub_ca.cert, csr, device_id="dev-7", now=NOW, validity_days=90
    )
    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev-7")])
    assert cert.issuer == hub_ca.cert.subject
    assert cert.public_key() == device_key.public_key()
    assert cert.not_valid_before_utc == NOW - pki.BACKDATE
    assert cert.not_valid_after_utc == NOW + 90 * DAY
    assert cert.serial_number > 2**64
    cert.verify_directly_issued_by(hub_ca.cert)
    assert [e.oid for e in cert.extensions] == [
        x509.BasicConstraints.oid,
        x509.KeyUsage.oid,
        x509.ExtendedKeyUsage.oid,
        x509.SubjectKeyIdentifier.oid,
        x509.AuthorityKeyIdentifier.oid,
    ]
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is False
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.content_commitment
    assert not usage.value.key_encipherment
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        device_key.public_key()
    )
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(hub_ca.cert, x509.SubjectKeyIdentifier).value.digest
    assert pki.verify_ca_signed_device(cert, trusted_cas=[hub_ca.cert], now=NOW) == "dev-7"


def test_certificate_from_csr_for_a_module_and_a_p384_key(hub_ca: HubCA) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    cert = pki.issue_certificate_from_csr(
        hub_ca.key,
        hub_ca.cert,
        pki.load_csr(make_csr(key, "d/m").public_bytes(serialization.Encoding.PEM)),
        device_id="d/m",
        now=NOW,
        validity_days=1,
    )
    assert pki.verify_ca_signed_device(cert, trusted_cas=[hub_ca.cert], now=NOW) == "d/m"


def test_certificate_from_csr_for_an_ed25519_key(hub_ca: HubCA) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    cert = pki.issue_certificate_from_csr(
        hub_ca.key, hub_ca.cert, make_csr(key, "ed"), device_id="ed", now=NOW, validity_days=30
    )
    assert cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(hub_ca.cert)


def test_certificate_from_csr_never_outlives_the_ca() -> None:
    ca_key, ca_cert = pki.create_ca("short CA", now=NOW, validity_days=30)
    csr = make_csr(ec.generate_private_key(ec.SECP256R1()), "d1")
    cert = pki.issue_certificate_from_csr(
        ca_key, ca_cert, csr, device_id="d1", now=NOW, validity_days=365
    )
    assert cert.not_valid_after_utc == ca_cert.not_valid_after_utc


@pytest.mark.parametrize("device_id", ["", "dev 1", "a/b/c", "*", "a" * 65])
def test_certificate_from_csr_refuses_bad_device_ids(hub_ca: HubCA, device_id: str) -> None:
    # Even when the CSR names exactly that id.
    csr = make_csr(ec.generate_private_key(ec.SECP256R1()), lax_cn(device_id))
    with pytest.raises(ValidationError):
        pki.issue_certificate_from_csr(
            hub_ca.key, hub_ca.cert, csr, device_id=device_id, now=NOW, validity_days=30
        )


def test_certificate_from_csr_refuses_what_check_csr_refuses(hub_ca: HubCA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "subject": make_csr(key, "dev2"),
        "san": make_csr(key, extensions=(x509.SubjectAlternativeName([x509.DNSName("h")]),)),
        "key-type": make_csr(ec.generate_private_key(ec.SECP521R1())),
    }
    for reason, csr in cases.items():
        with pytest.raises(CertificateRequestError) as caught:
            pki.issue_certificate_from_csr(
                hub_ca.key, hub_ca.cert, csr, device_id="dev1", now=NOW, validity_days=30
            )
        assert caught.value.reason == reason


def test_certificate_from_csr_checks_the_ca_and_the_arguments(hub_ca: HubCA, kit: CertKit) -> None:
    csr = make_csr(kit.key(), "d1")
    with pytest.raises(TrustError, match="does not match"):
        pki.issue_certificate_from_csr(
            kit.key(), hub_ca.cert, csr, device_id="d1", now=NOW, validity_days=30
        )
    with pytest.raises(TrustError, match="expired"):
        pki.issue_certificate_from_csr(
            hub_ca.key, hub_ca.cert, csr, device_id="d1", now=NOW + 4000 * DAY, validity_days=30
        )
    with pytest.raises(ValueError, match="validity_days"):
        pki.issue_certificate_from_csr(
            hub_ca.key, hub_ca.cert, csr, device_id="d1", now=NOW, validity_days=0
        )
    with pytest.raises(ValueError, match="timezone-aware"):
        pki.issue_certificate_from_csr(
            hub_ca.key,
            hub_ca.cert,
            csr,
            device_id="d1",
            now=dt.datetime(2026, 1, 1),  # noqa: DTZ001
            validity_days=30,
        )


# --- serials -------------------------------------------------------------------------------


def test_certificate_serial_hex(hub_ca: HubCA, kit: CertKit) -> None:
    assert pki.certificate_serial_hex(hub_ca.cert) == format(hub_ca.cert.serial_number, "X")
    key = kit.key()
    for serial, expected in ((1, "1"), (0xAB, "AB"), (0x0100, "100"), (2**159 - 1, "7" + "F" * 39)):
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(x509.Name([]))
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(NOW)
            .not_valid_after(NOW + DAY)
            .sign(key, hashes.SHA256())
        )
        assert pki.certificate_serial_hex(cert) == expected
