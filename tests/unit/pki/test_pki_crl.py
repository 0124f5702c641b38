"""CRLs: revocation reasons, the CRL profile, round trips and refusals."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from tests.unit.pki.conftest import DAY, NOW, CertKit, HubCA

from ironhub import pki
from ironhub.errors import TrustError, ValidationError

HOUR = dt.timedelta(hours=1)


def public_key(certificate: x509.Certificate) -> ec.EllipticCurvePublicKey:
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def entries() -> list[pki.RevokedEntry]:
    return [
        pki.RevokedEntry(serial=0x7F00, revoked_at=NOW - DAY, reason="keyCompromise"),
        pki.RevokedEntry(serial=0x10, revoked_at=NOW - 2 * DAY, reason="unspecified"),
        pki.RevokedEntry(serial=2**159 - 1, revoked_at=NOW, reason="cessationOfOperation"),
    ]


# --- reasons ---------------------------------------------------------------------------------


def test_revocation_reasons() -> None:
    assert set(pki.REVOCATION_REASONS) == {
        "unspecified",
        "keyCompromise",
        "cACompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
        "privilegeWithdrawn",
    }
    for name, flag in pki.REVOCATION_REASONS.items():
        assert flag.value == name
    with pytest.raises(TypeError):
        pki.REVOCATION_REASONS["certificateHold"] = x509.ReasonFlags.certificate_hold  # type: ignore[index]


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("keyCompromise", "keyCompromise"),
        ("keycompromise", "keyCompromise"),
        ("CACOMPROMISE", "cACompromise"),
        ("unspecified", "unspecified"),
        ("privilegeWithdrawn", "privilegeWithdrawn"),
    ],
)
def test_parse_revocation_reason(given: str, canonical: str) -> None:
    assert pki.parse_revocation_reason(given) == canonical


def test_holds_are_not_supported() -> None:
    for name in ("certificateHold", "CERTIFICATEHOLD"):
        with pytest.raises(ValidationError, match="holds are not supported"):
            pki.parse_revocation_reason(name)


@pytest.mark.parametrize(
    "name", ["", "removeFromCRL", "aACompromise", "key-compromise", "compromised"]
)
def test_unknown_reasons_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="unknown revocation reason"):
        pki.parse_revocation_reason(name)


def test_an_unknown_reason_is_not_echoed_unbounded() -> None:
    with pytest.raises(ValidationError) as caught:
        pki.parse_revocation_reason("x" * 10_000)
    assert len(str(caught.value)) < 300


# --- the CRL -------------------------------------------------------------------------------------


def test_crl_profile(hub_ca: HubCA) -> None:
    crl = pki.build_crl(
        hub_ca.key, hub_ca.cert, entries(), number=7, now=NOW, next_update=NOW + 7 * DAY
    )
    assert crl.is_signature_valid(public_key(hub_ca.cert))
    assert not crl.is_signature_valid(ec.generate_private_key(ec.SECP256R1()).public_key())
    assert crl.issuer == hub_ca.cert.subject
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NOW + 7 * DAY
    assert crl.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256
    number = crl.extensions.get_extension_for_class(x509.CRLNumber)
    assert not number.critical
    assert number.value.crl_number == 7
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert not aki.critical
    ski = hub_ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.value.key_identifier == ski.digest
    # Sorted by serial, whatever the order given.
    assert [entry.serial_number for entry in crl] == [0x10, 0x7F00, 2**159 - 1]


def test_crl_round_trips_and_entries(hub_ca: HubCA) -> None:
    crl = pki.build_crl(
        hub_ca.key, hub_ca.cert, entries(), number=1, now=NOW, next_update=NOW + DAY
    )
    for loaded in (
        x509.load_der_x509_crl(pki.crl_der(crl)),
        x509.load_pem_x509_crl(pki.crl_pem(crl)),
    ):
        assert loaded == crl
        assert loaded.is_signature_valid(public_key(hub_ca.cert))
        compromised = loaded.get_revoked_certificate_by_serial_number(0x7F00)
        assert compromised is not None
        assert compromised.revocation_date_utc == NOW - DAY
        reason = compromised.extensions.get_extension_for_class(x509.CRLReason)
        assert not reason.critical
        assert reason.value.reason is x509.ReasonFlags.key_compromise
        retired = loaded.get_revoked_certificate_by_serial_number(2**159 - 1)
        assert retired is not None
        assert (
            retired.extensions.get_extension_for_class(x509.CRLReason).value.reason
            is x509.ReasonFlags.cessation_of_operation
        )
        # RFC 5280 §5.3.1: "unspecified" is expressed by leaving the reason code out.
        unspecified = loaded.get_revoked_certificate_by_serial_number(0x10)
        assert unspecified is not None
        assert len(unspecified.extensions) == 0
        assert loaded.get_revoked_certificate_by_serial_number(0x11) is None
    assert pki.crl_pem(crl).startswith(b"-----BEGIN X509 CRL-----")


def test_every_reason_is_encoded(hub_ca: HubCA) -> None:
    revoked = [
        pki.RevokedEntry(serial=index + 1, revoked_at=NOW, reason=name)
        for index, name in enumerate(pki.REVOCATION_REASONS)
    ]
    crl = pki.build_crl(hub_ca.key, hub_ca.cert, revoked, number=2, now=NOW, next_update=NOW + DAY)
    for entry in revoked:
        found = crl.get_revoked_certificate_by_serial_number(entry.serial)
        assert found is not None
        reasons = [e.value.reason.value for e in found.extensions]
        assert reasons == ([] if entry.reason == "unspecified" else [entry.reason])


def test_an_empty_crl(hub_ca: HubCA) -> None:
    crl = pki.build_crl(hub_ca.key, hub_ca.cert, [], number=1, now=NOW, next_update=NOW + HOUR)
    assert len(crl) == 0
    assert crl.is_signature_valid(public_key(hub_ca.cert))


def test_crl_times_are_converted_to_utc(hub_ca: HubCA) -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    local_now = NOW.astimezone(plus_two)
    revoked = [pki.RevokedEntry(serial=5, revoked_at=local_now, reason="superseded")]
    crl = pki.build_crl(
        hub_ca.key, hub_ca.cert, revoked, number=1, now=local_now, next_update=local_now + DAY
    )
    assert crl.last_update_utc == NOW
    entry = crl.get_revoked_certificate_by_serial_number(5)
    assert entry is not None
    assert entry.revocation_date_utc == NOW


def test_crl_aki_falls_back_to_the_ca_public_key(kit: CertKit) -> None:
    ca_key, ca_cert = kit.ca("CA without SKI", ski=False)
    crl = pki.build_crl(ca_key, ca_cert, [], number=1, now=NOW, next_update=NOW + DAY)
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    expected = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()).digest
    assert aki.key_identifier == expected


def test_revoked_entry_is_frozen() -> None:
    entry = pki.RevokedEntry(serial=1, revoked_at=NOW, reason="unspecified")
    with pytest.raises(AttributeError):
        entry.serial = 2  # type: ignore[misc]
    assert not hasattr(entry, "__dict__")


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", [0, -1, 2**159, True])
def test_crl_number_out_of_range(hub_ca: HubCA, number: int) -> None:
    with pytest.raises(ValueError, match="CRL number"):
        pki.build_crl(hub_ca.key, hub_ca.cert, [], number=number, now=NOW, next_update=NOW + DAY)


def test_crl_number_at_the_maximum(hub_ca: HubCA) -> None:
    crl = pki.build_crl(
        hub_ca.key, hub_ca.cert, [], number=pki.MAX_CRL_NUMBER, now=NOW, next_update=NOW + DAY
    )
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2**159 - 1


@pytest.mark.parametrize("next_update", [NOW, NOW - HOUR])
def test_next_update_must_follow_now(hub_ca: HubCA, next_update: dt.datetime) -> None:
    with pytest.raises(ValueError, match="next_update"):
        pki.build_crl(hub_ca.key, hub_ca.cert, [], number=1, now=NOW, next_update=next_update)


def test_naive_times_are_refused(hub_ca: HubCA) -> None:
    naive = dt.datetime(2026, 1, 1)  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone-aware"):
        pki.build_crl(hub_ca.key, hub_ca.cert, [], number=1, now=naive, next_update=NOW + DAY)
    with pytest.raises(ValueError, match="timezone-aware"):
        pki.build_crl(hub_ca.key, hub_ca.cert, [], number=1, now=NOW, next_update=naive)
    revoked = [pki.RevokedEntry(serial=1, revoked_at=naive, reason="unspecified")]
    with pytest.raises(ValueError, match="timezone-aware"):
        pki.build_crl(hub_ca.key, hub_ca.cert, revoked, number=1, now=NOW, next_update=NOW + DAY)


@pytest.mark.parametrize("serial", [0, -5, 2**159, True])
def test_serial_out_of_range(hub_ca: HubCA, serial: int) -> None:
    revoked = [pki.RevokedEntry(serial=serial, revoked_at=NOW, reason="unspecified")]
    with pytest.raises(ValidationError, match="serial"):
        pki.build_crl(hub_ca.key, hub_ca.cert, revoked, number=1, now=NOW, next_update=NOW + DAY)


@pytest.mark.parametrize("reason", ["certificateHold", "removeFromCRL", "keycompromise", ""])
def test_entry_reason_must_be_canonical(hub_ca: HubCA, reason: str) -> None:
    # Entries carry the canonical name: parse_revocation_reason is the operator's door.
    revoked = [pki.RevokedEntry(serial=1, revoked_at=NOW, reason=reason)]
    with pytest.raises(ValidationError, match="unknown reason"):
        pki.build_crl(hub_ca.key, hub_ca.cert, revoked, number=1, now=NOW, next_update=NOW + DAY)


def test_duplicate_serials_are_refused(hub_ca: HubCA) -> None:
    revoked = [
        pki.RevokedEntry(serial=9, revoked_at=NOW - DAY, reason="superseded"),
        pki.RevokedEntry(serial=9, revoked_at=NOW, reason="keyCompromise"),
    ]
    with pytest.raises(ValidationError, match="twice"):
        pki.build_crl(hub_ca.key, hub_ca.cert, revoked, number=1, now=NOW, next_update=NOW + DAY)


def test_a_revocation_after_now_is_dated_now(hub_ca: HubCA) -> None:
    # Another process's clock may run ahead; the CRL must still be published.
    revoked = [pki.RevokedEntry(serial=1, revoked_at=NOW + HOUR, reason="unspecified")]
    crl = pki.build_crl(hub_ca.key, hub_ca.cert, revoked, number=1, now=NOW, next_update=NOW + DAY)
    entry = crl.get_revoked_certificate_by_serial_number(1)
    assert entry is not None
    assert entry.revocation_date_utc == NOW


def test_mismatched_or_expired_ca_is_refused(hub_ca: HubCA, kit: CertKit) -> None:
    with pytest.raises(TrustError, match="does not match"):
        pki.build_crl(kit.key(), hub_ca.cert, [], number=1, now=NOW, next_update=NOW + DAY)
    ca_key, ca_cert = pki.create_ca("old CA", now=NOW - 40 * DAY, validity_days=30)
    with pytest.raises(TrustError, match="expired"):
        pki.build_crl(ca_key, ca_cert, [], number=1, now=NOW, next_update=NOW + DAY)
    # On its last second the CA still signs.
    last = ca_cert.not_valid_after_utc
    crl = pki.build_crl(ca_key, ca_cert, [], number=1, now=last, next_update=last + DAY)
    assert crl.is_signature_valid(public_key(ca_cert))
