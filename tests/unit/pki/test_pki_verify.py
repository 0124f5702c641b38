"""Device certificate verification: chains to registered CAs, and thumbprints.

Covers SECURITY-TESTS.md §3.1 item 1 at the policy level: unknown CA, expired, not yet valid,
wrong usage, chain too deep, wildcard identity; and the Defender-style distinction between
thumbprint mismatch and expiry.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from tests.unit.pki.conftest import DAY, NOW, CertKit, HubCA

from ironhub import pki
from ironhub.errors import TrustError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa

CHAIN = "does not chain to a registered, valid CA"


def issued(hub_ca: HubCA, device_id: str = "dev1") -> x509.Certificate:
    key = CertKit().key()
    return pki.issue_device_certificate(
        hub_ca.key, hub_ca.cert, key.public_key(), device_id, now=NOW
    )


# --- CA-signed devices ---------------------------------------------------------------------


def test_ca_signed_device(hub_ca: HubCA) -> None:
    assert pki.verify_ca_signed_device(issued(hub_ca), trusted_cas=[hub_ca.cert], now=NOW) == "dev1"


def test_ca_signed_device_among_several_cas(hub_ca: HubCA, kit: CertKit) -> None:
    _, other = kit.ca("other CA")
    leaf = issued(hub_ca)
    assert pki.verify_ca_signed_device(leaf, trusted_cas=[other, hub_ca.cert], now=NOW) == "dev1"


def test_validity_boundaries_are_inclusive(hub_ca: HubCA) -> None:
    leaf = issued(hub_ca)
    for moment in (leaf.not_valid_before_utc, leaf.not_valid_after_utc):
        assert pki.verify_ca_signed_device(leaf, trusted_cas=[hub_ca.cert], now=moment) == "dev1"


def test_expired_leaf(hub_ca: HubCA) -> None:
    leaf = issued(hub_ca)
    later = leaf.not_valid_after_utc + dt.timedelta(seconds=1)
    with pytest.raises(TrustError, match="has expired"):
        pki.verify_ca_signed_device(leaf, trusted_cas=[hub_ca.cert], now=later)


def test_not_yet_valid_leaf(hub_ca: HubCA) -> None:
    leaf = issued(hub_ca)
    earlier = leaf.not_valid_before_utc - dt.timedelta(seconds=1)
    with pytest.raises(TrustError, match="not yet valid"):
        pki.verify_ca_signed_device(leaf, trusted_cas=[hub_ca.cert], now=earlier)


def test_unknown_ca(hub_ca: HubCA, kit: CertKit) -> None:
    _, stranger = kit.ca("stranger CA")
    with pytest.raises(TrustError, match=CHAIN) as excinfo:
        pki.verify_ca_signed_device(issued(hub_ca), trusted_cas=[stranger], now=NOW)
    # The validator's own error stays on __cause__ for debugging, not in our message.
    assert excinfo.value.__cause__ is not None


def test_no_registered_ca(hub_ca: HubCA) -> None:
    with pytest.raises(TrustError, match="no CA is registered"):
        pki.verify_ca_signed_device(issued(hub_ca), trusted_cas=[], now=NOW)


def test_forged_issuer_name(hub_ca: HubCA, kit: CertKit) -> None:
    # Claims the hub CA as issuer, but an attacker's key signed it.
    forger = kit.key()
    _, leaf = kit.leaf((forger, hub_ca.cert))
    with pytest.raises(TrustError, match=CHAIN):
        pki.verify_ca_signed_device(leaf, trusted_cas=[hub_ca.cert], now=NOW)


def test_expired_ca(kit: CertKit) -> None:
    ca = kit.ca("expired CA", not_after=NOW - DAY, not_before=NOW - 30 * DAY)
    _, leaf = kit.leaf(ca)
    with pytest.raises(TrustError, match=CHAIN):
        pki.verify_ca_signed_device(leaf, trusted_cas=[ca[1]], now=NOW)


@pytest.mark.parametrize(
    ("eku", "message"),
    [
        ([ExtendedKeyUsageOID.SERVER_AUTH], "clientAuth"),
        ([ExtendedKeyUsageOID.CODE_SIGNING], "clientAuth"),
        ([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE], "clientAuth"),
    ],
)
def test_wrong_eku(
    hub_ca: HubCA, kit: CertKit, eku: list[x509.ObjectIdentifier], message: str
) -> None:
    _, leaf = kit.leaf(hub_ca.pair, eku=eku)
    with pytest.raises(TrustError, match=message):
        pki.verify_ca_signed_device(leaf, trusted_cas=[hub_ca.cert], now=NOW)


def test_absent_eku_is_accepted(hub_ca: HubCA, kit: CertKit) -> None:
    _, leaf = kit.leaf(hub_ca.pair, eku=None)
    assert pki.verify_ca_signed_device(leaf, trusted_cas=[hub_ca.cert], now=NOW) == "dev1"


def test_azure_style_leaf_without_san_or_aki(hub_ca: HubCA, kit: CertKit) -> None:
    # Typical OpenSSL-made device certificates carry neither extension.
    _, leaf = kit.leaf(hub_ca.pair, aki=None, ski=False)
    assert pki.verify_ca_signed_device(leaf, trusted_cas=[hub_ca.cert], now=NOW) == "dev1"


@pytest.mark.parametrize(
    "profile",
    [{"ca": True}, {"ca": False, "key_cert_sign": True}, {"ca": None, "key_cert_sign": True}],
)
def test_ca_certificate_as_leaf(hub_ca: HubCA, kit: CertKit, profile: dict[str, object]) -> None:
    _, leaf = kit.leaf(hub_ca.pair, **profile)
    with pytest.raises(TrustError, match="CA certificate cannot be a device"):
        pki.verify_ca_signed_device(leaf, trusted_cas=[hub_ca.cert], now=NOW)


def test_registered_ca_itself_is_not_a_device(hub_ca: HubCA) -> None:
    with pytest.raises(TrustError, match="CA certificate cannot be a device"):
        pki.verify_ca_signed_device(hub_ca.cert, trusted_cas=[hub_ca.cert], now=NOW)


@pytest.mark.parametrize("common_name", ["*", "*.devices.example", "dev/mod/x", "dev 1", "dev#"])
def test_invalid_identity_in_a_valid_chain(hub_ca: HubCA, kit: CertKit, common_name: str) -> None:
    _, leaf = kit.leaf(hub_ca.pair, common_name)
    with pytest.raises(TrustError, match="not a valid device id"):
        pki.verify_ca_signed_device(leaf, trusted_cas=[hub_ca.cert], now=NOW)


def test_registered_intermediate_is_a_trust_anchor(kit: CertKit) -> None:
    root = kit.ca("root", path_length=1)
    intermediate = kit.ca("intermediate", signer=root, path_length=0)
    _, leaf = kit.leaf(intermediate)
    # The intermediate alone, or both, registered: verifies.
    for anchors in ([intermediate[1]], [root[1], intermediate[1]], [intermediate[1], root[1]]):
        assert pki.verify_ca_signed_device(leaf, trusted_cas=anchors, now=NOW) == "dev1"
    # Only the root registered and the intermediate not presented: the path cannot be built.
    with pytest.raises(TrustError, match=CHAIN):
        pki.verify_ca_signed_device(leaf, trusted_cas=[root[1]], now=NOW)


def test_presented_intermediates_and_chain_depth(kit: CertKit) -> None:
    root = kit.ca("root")  # no path length constraint
    first = kit.ca("intermediate 1", signer=root)
    second = kit.ca("intermediate 2", signer=first)
    _, leaf = kit.leaf(second)
    presented = [second[1], first[1]]
    assert (
        pki.verify_ca_signed_device(leaf, trusted_cas=[root[1]], now=NOW, intermediates=presented)
        == "dev1"
    )
    with pytest.raises(TrustError, match=CHAIN):
        pki.verify_ca_signed_device(
            leaf, trusted_cas=[root[1]], now=NOW, intermediates=presented, max_chain_depth=1
        )


def test_hub_ca_path_length_zero_stops_intermediates(hub_ca: HubCA, kit: CertKit) -> None:
    # Someone obtained a CA:TRUE certificate under the hub CA; pathlen:0 makes it useless.
    rogue = kit.ca("rogue intermediate", signer=hub_ca.pair)
    _, leaf = kit.leaf(rogue)
    with pytest.raises(TrustError, match=CHAIN):
        pki.verify_ca_signed_device(
            leaf, trusted_cas=[hub_ca.cert], now=NOW, intermediates=[rogue[1]]
        )


def test_rsa_ca_from_a_customer(kit: CertKit, rsa_2048: rsa.RSAPrivateKey) -> None:
    ca_cert = kit.build("customer RSA CA", signer=rsa_2048, ca=True)
    _, leaf = kit.leaf((rsa_2048, ca_cert), "rsa-signed")
    assert pki.verify_ca_signed_device(leaf, trusted_cas=[ca_cert], now=NOW) == "rsa-signed"


def test_weak_rsa_ca_is_refused_by_the_chain_policy(
    kit: CertKit, rsa_1024: rsa.RSAPrivateKey
) -> None:
    ca_cert = kit.build("weak CA", signer=rsa_1024, ca=True)
    _, leaf = kit.leaf((rsa_1024, ca_cert))
    with pytest.raises(TrustError, match=CHAIN):
        pki.verify_ca_signed_device(leaf, trusted_cas=[ca_cert], now=NOW)


def test_ca_without_basic_constraints_is_refused(kit: CertKit) -> None:
    key = kit.key()
    pseudo_ca = kit.build("pseudo CA", signer=key, ca=None, key_cert_sign=True)
    _, leaf = kit.leaf((key, pseudo_ca))
    with pytest.raises(TrustError, match=CHAIN):
        pki.verify_ca_signed_device(leaf, trusted_cas=[pseudo_ca], now=NOW)


def test_naive_time_is_refused(hub_ca: HubCA) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        pki.verify_ca_signed_device(
            issued(hub_ca),
            trusted_cas=[hub_ca.cert],
            now=dt.datetime(2026, 1, 1),  # noqa: DTZ001
        )


# --- thumbprint devices --------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed() -> x509.Certificate:
    return pki.create_self_signed_device_certificate("selfdev", now=NOW)[1]


def test_thumbprint_primary_and_secondary(self_signed: x509.Certificate) -> None:
    thumbprint = pki.thumbprint_sha256(self_signed)
    other = "00" * 32
    assert pki.verify_thumbprint_device(self_signed, thumbprints=[thumbprint, other], now=NOW) == 0
    assert pki.verify_thumbprint_device(self_signed, thumbprints=[other, thumbprint], now=NOW) == 1
    assert pki.verify_thumbprint_device(self_signed, thumbprints=[None, thumbprint], now=NOW) == 1
    assert (
        pki.verify_thumbprint_device(self_signed, thumbprints=[thumbprint, thumbprint], now=NOW)
        == 0
    )


def test_thumbprint_tolerates_operator_formatting(self_signed: x509.Certificate) -> None:
    thumbprint = pki.thumbprint_sha256(self_signed)
    pasted = ":".join(thumbprint[i : i + 2] for i in range(0, 64, 2)).lower()
    assert pki.verify_thumbprint_device(self_signed, thumbprints=[pasted], now=NOW) == 0


@pytest.mark.parametrize(
    "thumbprints",
    [[], [None], [None, None], ["00" * 32], ["", "garbage"], ["\u00e9" * 64]],
)
def test_thumbprint_mismatch(self_signed: x509.Certificate, thumbprints: list[str | None]) -> None:
    with pytest.raises(TrustError, match="matches no registered thumbprint"):
        pki.verify_thumbprint_device(self_signed, thumbprints=thumbprints, now=NOW)


def test_thumbprint_of_another_certificate_with_the_same_key_does_not_match(
    kit: CertKit,
) -> None:
    key = kit.key()
    registered = kit.build("dev1", signer=key)
    presented = kit.build("dev1", signer=key)
    with pytest.raises(TrustError, match="matches no registered thumbprint"):
        pki.verify_thumbprint_device(
            presented, thumbprints=[pki.thumbprint_sha256(registered)], now=NOW
        )


def test_thumbprint_expired_and_not_yet_valid(self_signed: x509.Certificate) -> None:
    thumbprints = [pki.thumbprint_sha256(self_signed)]
    later = self_signed.not_valid_after_utc + dt.timedelta(seconds=1)
    with pytest.raises(TrustError, match="has expired"):
        pki.verify_thumbprint_device(self_signed, thumbprints=thumbprints, now=later)
    earlier = self_signed.not_valid_before_utc - dt.timedelta(seconds=1)
    with pytest.raises(TrustError, match="not yet valid"):
        pki.verify_thumbprint_device(self_signed, thumbprints=thumbprints, now=earlier)


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"ca": True}, "CA certificate"),
        ({"eku": [ExtendedKeyUsageOID.SERVER_AUTH]}, "clientAuth"),
    ],
)
def test_thumbprint_leaf_profile(kit: CertKit, profile: dict[str, object], message: str) -> None:
    cert = kit.build("dev1", signer=kit.key(), **profile)  # type: ignore[arg-type]
    with pytest.raises(TrustError, match=message):
        pki.verify_thumbprint_device(cert, thumbprints=[pki.thumbprint_sha256(cert)], now=NOW)


def test_thumbprint_weak_key(kit: CertKit, rsa_1024: rsa.RSAPrivateKey) -> None:
    cert = kit.build("dev1", signer=rsa_1024)
    with pytest.raises(TrustError, match="RSA key shorter"):
        pki.verify_thumbprint_device(cert, thumbprints=[pki.thumbprint_sha256(cert)], now=NOW)


def test_thumbprint_naive_time(self_signed: x509.Certificate) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        pki.verify_thumbprint_device(
            self_signed,
            thumbprints=[],
            now=dt.datetime(2026, 1, 1),  # noqa: DTZ001
        )
