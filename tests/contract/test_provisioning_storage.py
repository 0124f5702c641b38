"""The provisioning part of the storage contract: enrollments, registration states, claim
tokens, issued certificates and the CRL. Every backend passes these (STYLE.md, "Storage
backends must pass the same contract suite"); the last section guards the SQLite file itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from typing import TYPE_CHECKING

import pytest
from tests.contract.conftest import Backend

from ironhub.clock import FakeClock
from ironhub.config import StorageConfig
from ironhub.errors import (
    ConflictError,
    CorruptDatabaseError,
    NotFoundError,
    PreconditionFailedError,
    StorageError,
)
from ironhub.storage.interfaces import (
    Attestation,
    ClaimOutcome,
    ClaimTokenRecord,
    EnrollmentRecord,
    IssuedCertificateRecord,
    RegistrationRecord,
    ReprovisionPolicy,
    Storage,
)
from ironhub.storage.sqlite import SQLiteStorage

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.asyncio

PEM_A = "-----BEGIN CERTIFICATE-----\nQUFB\n-----END CERTIFICATE-----\n"
PEM_B = "-----BEGIN CERTIFICATE-----\nQkJC\n-----END CERTIFICATE-----\n"


def enrollment(
    enrollment_id: str = "enr-1", *, group: bool = False, **overrides: object
) -> EnrollmentRecord:
    """A symmetric-key enrollment with defaults for every optional field."""
    fields: dict[str, object] = {
        "enrollment_id": enrollment_id,
        "group": group,
        "attestation": Attestation.SYMMETRIC,
        "enabled": True,
        "created_at": 100.0,
        "updated_at": 100.0,
        "primary_key_sealed": b"\x01sealed-primary",
        "secondary_key_sealed": b"\x01sealed-secondary",
    }
    fields.update(overrides)
    return EnrollmentRecord(**fields)  # type: ignore[arg-type]


def registration(registration_id: str = "reg-1", **overrides: object) -> RegistrationRecord:
    fields: dict[str, object] = {
        "registration_id": registration_id,
        "enrollment_id": "enr-1",
        "group": False,
        "device_id": registration_id,
        "status": "assigned",
        "substatus": "initialAssignment",
        "created_at": 200.0,
        "updated_at": 200.0,
    }
    fields.update(overrides)
    return RegistrationRecord(**fields)  # type: ignore[arg-type]


def claim(
    token_id: str = "ct-1", token_hash: bytes = b"c" * 32, **overrides: object
) -> ClaimTokenRecord:
    fields: dict[str, object] = {
        "token_id": token_id,
        "group_id": "grp-1",
        "token_hash": token_hash,
        "max_uses": 3,
        "uses": 0,
        "created_at": 10.0,
        "expires_at": 1000.0,
        "created_by": "alice",
    }
    fields.update(overrides)
    return ClaimTokenRecord(**fields)  # type: ignore[arg-type]


def certificate(serial: str = "0A", **overrides: object) -> IssuedCertificateRecord:
    fields: dict[str, object] = {
        "serial": serial,
        "device_id": "dev-1",
        "registration_id": "dev-1",
        "thumbprint": "AB" * 32,
        "not_before": 50.0,
        "not_after": 50.0 + 86400.0,
        "issued_at": 60.0,
        "pem": PEM_A,
    }
    fields.update(overrides)
    return IssuedCertificateRecord(**fields)  # type: ignore[arg-type]


async def add_group(storage: Storage, group_id: str = "grp-1") -> EnrollmentRecord:
    record = enrollment(group_id, group=True)
    await storage.insert_enrollment(record)
    return record


# --- enrollments ------------------------------------------------------------------------------


async def test_enrollment_round_trip_of_every_field(storage: Storage) -> None:
    individual = enrollment(
        "dev-sym",
        enabled=False,
        version=7,
        created_at=1.5,
        updated_at=2.5,
        device_id="assigned-device",
        initial_twin='{"tags":{"floor":2},"properties":{"desired":{"rate":5}}}',
        allocation_payload='{"region":"eu"}',
        reprovision=ReprovisionPolicy.RESET_TWIN,
    )
    # X.509 group: no keys, CA certificates, every optional field at its default.
    x509_group = EnrollmentRecord(
        enrollment_id="factory",
        group=True,
        attestation=Attestation.X509,
        enabled=True,
        created_at=3.0,
        updated_at=4.0,
        certificates_pem=(PEM_A, PEM_B),
    )
    # Every optional field at its default (None / empty), symmetric individual.
    bare = EnrollmentRecord("bare", False, Attestation.SYMMETRIC, True, 5.0, 6.0)
    for record in (individual, x509_group, bare):
        await storage.insert_enrollment(record)
    assert await storage.get_enrollment("dev-sym", group=False) == individual
    assert await storage.get_enrollment("factory", group=True) == x509_group
    assert await storage.get_enrollment("bare", group=False) == bare
    assert await storage.get_enrollment("nobody", group=False) is None
    # The kind is part of the key: an id of one kind is unknown as the other.
    assert await storage.get_enrollment("dev-sym", group=True) is None
    assert await storage.get_enrollment("factory", group=False) is None


async def test_individual_and_group_ids_are_separate_namespaces(storage: Storage) -> None:
    individual = enrollment("same")
    group = enrollment("same", group=True, attestation=Attestation.X509, primary_key_sealed=None)
    await storage.insert_enrollment(individual)
    await storage.insert_enrollment(group)
    assert await storage.get_enrollment("same", group=False) == individual
    assert await storage.get_enrollment("same", group=True) == group


async def test_insert_existing_enrollment_conflicts(storage: Storage) -> None:
    await storage.insert_enrollment(enrollment())
    with pytest.raises(ConflictError):
        await storage.insert_enrollment(enrollment(enabled=False))
    assert await storage.get_enrollment("enr-1", group=False) == enrollment()
    await add_group(storage)
    with pytest.raises(ConflictError):
        await storage.insert_enrollment(enrollment("grp-1", group=True, enabled=False))
    assert await storage.get_enrollment("grp-1", group=True) == enrollment("grp-1", group=True)


async def test_list_enrollments_pages_by_kind_in_id_order(storage: Storage) -> None:
    for enrollment_id in ["c", "a", "e", "b", "d"]:
        await storage.insert_enrollment(enrollment(enrollment_id))
    for enrollment_id in ["g2", "g1", "b"]:
        await storage.insert_enrollment(enrollment(enrollment_id, group=True))

    async def ids(*, group: bool, after: str = "", limit: int = 100) -> list[str]:
        found = await storage.list_enrollments(group=group, after=after, limit=limit)
        assert all(e.group is group for e in found)
        return [e.enrollment_id for e in found]

    assert await ids(group=False) == ["a", "b", "c", "d", "e"]
    assert await ids(group=False, limit=2) == ["a", "b"]
    assert await ids(group=False, after="b", limit=2) == ["c", "d"]
    assert await ids(group=False, after="e") == []
    assert await ids(group=False, limit=0) == []
    assert await ids(group=True) == ["b", "g1", "g2"]
    assert await ids(group=True, after="b") == ["g1", "g2"]
    assert (await storage.list_enrollments(group=False))[0] == enrollment("a")


async def test_update_enrollment_with_expected_version(storage: Storage) -> None:
    await storage.insert_enrollment(enrollment())
    updated = enrollment(
        version=2,
        enabled=False,
        updated_at=300.0,
        primary_key_sealed=None,
        secondary_key_sealed=None,
        attestation=Attestation.X509,
        certificates_pem=(PEM_B,),
        device_id="renamed",
        initial_twin='{"tags":{"a":1}}',
        allocation_payload="[1]",
        reprovision=ReprovisionPolicy.RESET_TWIN,
    )
    await storage.update_enrollment(updated, expected_version=1)
    assert await storage.get_enrollment("enr-1", group=False) == updated
    # And back to the empty values: None and () are stored, not ignored.
    cleared = enrollment(version=3, device_id=None, allocation_payload=None, certificates_pem=())
    await storage.update_enrollment(cleared, expected_version=2)
    assert await storage.get_enrollment("enr-1", group=False) == cleared


async def test_update_enrollment_with_stale_version_fails_its_precondition(
    storage: Storage,
) -> None:
    await storage.insert_enrollment(enrollment())
    await storage.update_enrollment(enrollment(version=2), expected_version=1)
    with pytest.raises(PreconditionFailedError):
        await storage.update_enrollment(enrollment(version=2, enabled=False), expected_version=1)
    assert await storage.get_enrollment("enr-1", group=False) == enrollment(version=2)


async def test_update_unknown_enrollment_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        await storage.update_enrollment(enrollment(version=2), expected_version=1)
    # The individual enrollment "grp-1" does not exist even though the group does.
    await add_group(storage)
    with pytest.raises(NotFoundError):
        await storage.update_enrollment(enrollment("grp-1", version=2), expected_version=1)
    assert await storage.get_enrollment("grp-1", group=True) == enrollment("grp-1", group=True)


async def test_update_enrollment_requires_next_version(storage: Storage) -> None:
    await storage.insert_enrollment(enrollment())
    with pytest.raises(ValueError, match="expected_version"):
        await storage.update_enrollment(enrollment(version=5), expected_version=1)
    assert await storage.get_enrollment("enr-1", group=False) == enrollment()


async def test_delete_enrollment(storage: Storage) -> None:
    await storage.insert_enrollment(enrollment())
    await add_group(storage, "enr-1")
    assert await storage.delete_enrollment("enr-1", group=False) is True
    assert await storage.delete_enrollment("enr-1", group=False) is False
    assert await storage.get_enrollment("enr-1", group=False) is None
    # The group of the same name is another enrollment.
    assert await storage.get_enrollment("enr-1", group=True) is not None
    assert await storage.delete_enrollment("enr-1", group=True) is True
    assert await storage.delete_enrollment("enr-1", group=True) is False


async def test_deleting_a_group_deletes_its_claim_tokens_only(storage: Storage) -> None:
    await add_group(storage, "grp-1")
    await add_group(storage, "grp-2")
    await storage.insert_enrollment(enrollment("grp-1"))  # an individual namesake
    await storage.insert_claim_token(claim("a", b"a" * 32, group_id="grp-1"))
    await storage.insert_claim_token(claim("b", b"b" * 32, group_id="grp-1"))
    await storage.insert_claim_token(claim("c", b"d" * 32, group_id="grp-2"))
    await storage.put_registration(registration("dev-9", enrollment_id="grp-1", group=True))

    # Deleting the individual namesake leaves the group's tokens alone.
    assert await storage.delete_enrollment("grp-1", group=False) is True
    assert len(await storage.list_claim_tokens("grp-1")) == 2

    assert await storage.delete_enrollment("grp-1", group=True) is True
    assert await storage.list_claim_tokens("grp-1") == []
    assert [t.token_id for t in await storage.list_claim_tokens()] == ["c"]
    # A deleted group's token admits nobody, even when presented again.
    assert await storage.consume_claim_token(b"a" * 32, 20.0) == (ClaimOutcome.UNKNOWN, None)
    # Registration states are kept: they record what happened.
    assert await storage.get_registration("dev-9") is not None


# --- registration states ----------------------------------------------------------------------


async def test_registration_round_trip_of_every_field(storage: Storage) -> None:
    full = registration(
        "dev-x",
        enrollment_id="factory",
        group=True,
        device_id="device-x",
        status="failed",
        substatus="deviceDataReset",
        created_at=1.0,
        updated_at=2.0,
        version=4,
        error_code=401002,
        error_message="the attestation failed",
        certificate_serial="7F00AB",
    )
    bare = registration("dev-y")
    await storage.put_registration(full)
    await storage.put_registration(bare)
    assert await storage.get_registration("dev-x") == full
    assert await storage.get_registration("dev-y") == bare
    assert bare.error_code is None
    assert bare.certificate_serial is None
    assert await storage.get_registration("nobody") is None


async def test_put_registration_replaces_every_field(storage: Storage) -> None:
    await storage.put_registration(
        registration(error_code=1, error_message="boom", certificate_serial="01")
    )
    again = registration(
        enrollment_id="grp-1",
        group=True,
        device_id="other",
        status="assigned",
        substatus="deviceDataMigrated",
        updated_at=250.0,
        version=2,
    )
    await storage.put_registration(again)
    assert await storage.get_registration("reg-1") == again


async def test_list_registrations_pages_and_filters(storage: Storage) -> None:
    records = [
        registration("r1", enrollment_id="e1", group=False),
        registration("r2", enrollment_id="g1", group=True),
        registration("r3", enrollment_id="g1", group=True),
        registration("r4", enrollment_id="g1", group=False),  # the individual namesake
        registration("r5", enrollment_id="g2", group=True),
        registration("r6", enrollment_id="g1", group=True),
    ]
    for record in reversed(records):
        await storage.put_registration(record)

    async def ids(**filters: object) -> list[str]:
        found = await storage.list_registrations(**filters)  # type: ignore[arg-type]
        return [r.registration_id for r in found]

    assert await storage.list_registrations() == records
    assert await ids(limit=2) == ["r1", "r2"]
    assert await ids(after="r2", limit=2) == ["r3", "r4"]
    assert await ids(after="r6") == []
    assert await ids(limit=0) == []
    # One enrollment: the id together with its kind.
    assert await ids(enrollment_id="g1", group=True) == ["r2", "r3", "r6"]
    assert await ids(enrollment_id="g1", group=True, after="r2", limit=1) == ["r3"]
    assert await ids(enrollment_id="g1", group=False) == ["r4"]
    assert await ids(enrollment_id="nobody", group=True) == []
    # Each filter on its own.
    assert await ids(group=True) == ["r2", "r3", "r5", "r6"]
    assert await ids(group=False) == ["r1", "r4"]
    assert await ids(enrollment_id="g1") == ["r2", "r3", "r4", "r6"]


async def test_delete_registration(storage: Storage) -> None:
    await storage.put_registration(registration())
    assert await storage.delete_registration("reg-1") is True
    assert await storage.delete_registration("reg-1") is False
    assert await storage.get_registration("reg-1") is None
    assert await storage.list_registrations() == []


# --- claim tokens -----------------------------------------------------------------------------


async def test_claim_token_round_trip_and_listing(storage: Storage) -> None:
    await add_group(storage, "grp-1")
    await add_group(storage, "grp-2")
    first = claim("t-b", b"1" * 32, created_at=5.0)
    second = claim("t-a", b"2" * 32, created_at=7.0, group_id="grp-2", max_uses=1, uses=1)
    third = claim("t-c", b"3" * 32, created_at=7.0, revoked=True, created_by="bob")
    for record in (third, second, first):
        await storage.insert_claim_token(record)
    # Oldest first; ties by id.
    assert await storage.list_claim_tokens() == [first, second, third]
    assert await storage.list_claim_tokens("grp-1") == [first, third]
    assert await storage.list_claim_tokens("grp-2") == [second]
    assert await storage.list_claim_tokens("nobody") == []


async def test_claim_token_needs_an_existing_group(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        await storage.insert_claim_token(claim())
    # An individual enrollment of that name is not a group.
    await storage.insert_enrollment(enrollment("grp-1"))
    with pytest.raises(NotFoundError):
        await storage.insert_claim_token(claim())
    assert await storage.list_claim_tokens() == []
    await add_group(storage, "grp-1")
    await storage.insert_claim_token(claim())
    assert await storage.list_claim_tokens() == [claim()]


async def test_claim_token_for_a_concurrently_deleted_group_is_refused(storage: Storage) -> None:
    await add_group(storage)
    deleted, inserted = await asyncio.gather(
        storage.delete_enrollment("grp-1", group=True),
        storage.insert_claim_token(claim()),
        return_exceptions=True,
    )
    # Whatever the order, no token outlives its group.
    assert deleted is True
    assert inserted is None or isinstance(inserted, NotFoundError)
    assert await storage.list_claim_tokens() == []


async def test_claim_token_duplicates_conflict(storage: Storage) -> None:
    await add_group(storage)
    await storage.insert_claim_token(claim())
    with pytest.raises(ConflictError):
        await storage.insert_claim_token(claim("ct-1", b"other-hash"))
    with pytest.raises(ConflictError):
        await storage.insert_claim_token(claim("ct-2", b"c" * 32))
    assert await storage.list_claim_tokens() == [claim()]


async def test_revoke_claim_token(storage: Storage) -> None:
    await add_group(storage)
    await storage.insert_claim_token(claim())
    assert await storage.revoke_claim_token("ct-1") is True
    assert await storage.revoke_claim_token("ct-1") is True  # still revoked, still known
    assert await storage.revoke_claim_token("unknown") is False
    assert await storage.list_claim_tokens() == [claim(revoked=True)]


async def test_consume_claim_token_counts_uses(storage: Storage) -> None:
    await add_group(storage)
    await storage.insert_claim_token(claim(max_uses=2))
    assert await storage.consume_claim_token(b"c" * 32, 20.0) == (
        ClaimOutcome.OK,
        claim(max_uses=2, uses=1),
    )
    assert await storage.consume_claim_token(b"c" * 32, 21.0) == (
        ClaimOutcome.OK,
        claim(max_uses=2, uses=2),
    )
    assert await storage.consume_claim_token(b"c" * 32, 22.0) == (
        ClaimOutcome.EXHAUSTED,
        claim(max_uses=2, uses=2),
    )
    assert await storage.list_claim_tokens() == [claim(max_uses=2, uses=2)]


async def test_consume_claim_token_outcomes_in_order(storage: Storage) -> None:
    await add_group(storage)
    # Each token fails every check from its outcome on: the first failing check is reported.
    revoked = claim("rev", b"r" * 32, revoked=True, expires_at=15.0, max_uses=1, uses=1)
    expired = claim("exp", b"e" * 32, expires_at=15.0, max_uses=1, uses=1)
    exhausted = claim("exh", b"x" * 32, max_uses=1, uses=1)
    fresh = claim("ok", b"o" * 32, expires_at=20.0)
    for record in (revoked, expired, exhausted, fresh):
        await storage.insert_claim_token(record)
    now = 20.0 - 1e-6
    assert await storage.consume_claim_token(b"?" * 32, now) == (ClaimOutcome.UNKNOWN, None)
    assert await storage.consume_claim_token(b"r" * 32, now) == (ClaimOutcome.REVOKED, revoked)
    assert await storage.consume_claim_token(b"e" * 32, now) == (ClaimOutcome.EXPIRED, expired)
    assert await storage.consume_claim_token(b"x" * 32, now) == (
        ClaimOutcome.EXHAUSTED,
        exhausted,
    )
    # Valid while now < expires_at, expired from expires_at on.
    assert await storage.consume_claim_token(b"o" * 32, now) == (
        ClaimOutcome.OK,
        dataclasses.replace(fresh, uses=1),
    )
    assert await storage.consume_claim_token(b"o" * 32, 20.0) == (
        ClaimOutcome.EXPIRED,
        dataclasses.replace(fresh, uses=1),
    )
    # Refusals changed nothing (listed oldest first, then by id).
    assert await storage.list_claim_tokens() == [
        exhausted,
        expired,
        dataclasses.replace(fresh, uses=1),
        revoked,
    ]


async def test_revoked_claim_token_is_refused_from_then_on(storage: Storage) -> None:
    await add_group(storage)
    await storage.insert_claim_token(claim())
    assert (await storage.consume_claim_token(b"c" * 32, 20.0))[0] is ClaimOutcome.OK
    await storage.revoke_claim_token("ct-1")
    assert await storage.consume_claim_token(b"c" * 32, 20.0) == (
        ClaimOutcome.REVOKED,
        claim(uses=1, revoked=True),
    )


@pytest.mark.parametrize("max_uses", [1, 5, 20])
async def test_concurrent_consumes_get_exactly_max_uses(storage: Storage, max_uses: int) -> None:
    await add_group(storage)
    await storage.insert_claim_token(claim(max_uses=max_uses))
    results = await asyncio.gather(
        *(storage.consume_claim_token(b"c" * 32, 20.0) for _ in range(max_uses + 5))
    )
    outcomes = [outcome for outcome, _ in results]
    assert outcomes.count(ClaimOutcome.OK) == max_uses
    assert outcomes.count(ClaimOutcome.EXHAUSTED) == 5
    # Every use was handed out once: the OK records carry uses 1..max_uses.
    assert sorted(r.uses for o, r in results if o is ClaimOutcome.OK and r is not None) == list(
        range(1, max_uses + 1)
    )
    assert await storage.list_claim_tokens() == [claim(max_uses=max_uses, uses=max_uses)]


# --- issued certificates ----------------------------------------------------------------------


async def test_certificate_round_trip_of_every_field(storage: Storage) -> None:
    live = certificate("0A")
    already_revoked = certificate(
        "0B",
        device_id="dev-2",
        registration_id="reg-2",
        thumbprint="CD" * 32,
        not_before=1.0,
        not_after=2.0,
        issued_at=1.5,
        pem=PEM_B,
        revoked_at=3.0,
        revocation_reason="keyCompromise",
    )
    await storage.insert_certificate(live)
    await storage.insert_certificate(already_revoked)
    assert await storage.get_certificate("0A") == live
    assert await storage.get_certificate("0B") == already_revoked
    assert await storage.get_certificate("0C") is None


async def test_insert_existing_certificate_conflicts(storage: Storage) -> None:
    await storage.insert_certificate(certificate())
    with pytest.raises(ConflictError):
        await storage.insert_certificate(certificate(device_id="intruder"))
    assert await storage.get_certificate("0A") == certificate()


async def test_list_certificates_pages_and_filters(storage: Storage) -> None:
    records = {
        "01": certificate("01", device_id="a"),
        "02": certificate("02", device_id="b", revoked_at=5.0, revocation_reason="superseded"),
        "03": certificate("03", device_id="a", revoked_at=4.0, revocation_reason="keyCompromise"),
        "04": certificate("04", device_id="b"),
        "05": certificate("05", device_id="a"),
    }
    for serial in ("04", "02", "05", "01", "03"):
        await storage.insert_certificate(records[serial])

    async def serials(**filters: object) -> list[str]:
        found = await storage.list_certificates(**filters)  # type: ignore[arg-type]
        return [c.serial for c in found]

    assert await storage.list_certificates() == [records[s] for s in sorted(records)]
    assert await serials(limit=2) == ["01", "02"]
    assert await serials(after="02", limit=2) == ["03", "04"]
    assert await serials(after="05") == []
    assert await serials(limit=0) == []
    assert await serials(device_id="a") == ["01", "03", "05"]
    assert await serials(device_id="a", after="01", limit=1) == ["03"]
    assert await serials(device_id="nobody") == []
    assert await serials(revoked=True) == ["02", "03"]
    assert await serials(revoked=False) == ["01", "04", "05"]
    assert await serials(device_id="b", revoked=True) == ["02"]
    assert await serials(device_id="b", revoked=False) == ["04"]
    assert await serials(device_id="a", revoked=False, after="01") == ["05"]


async def test_revoke_certificate_keeps_the_first_revocation(storage: Storage) -> None:
    await storage.insert_certificate(certificate())
    first = certificate(revoked_at=70.0, revocation_reason="keyCompromise")
    assert await storage.revoke_certificate("0A", 70.0, "keyCompromise") == first
    # A second revocation changes nothing, and says what is stored.
    assert await storage.revoke_certificate("0A", 90.0, "superseded") == first
    assert await storage.get_certificate("0A") == first
    assert await storage.revoke_certificate("0F", 70.0, "keyCompromise") is None
    assert await storage.get_certificate("0F") is None


async def test_concurrent_revocations_agree_on_one(storage: Storage) -> None:
    await storage.insert_certificate(certificate())
    results = await asyncio.gather(
        *(storage.revoke_certificate("0A", 70.0 + n, f"reason-{n}") for n in range(10))
    )
    stored = await storage.get_certificate("0A")
    assert stored is not None
    assert stored.revoked_at is not None
    assert all(result == stored for result in results)


async def test_list_revoked_certificates_by_time_then_serial(storage: Storage) -> None:
    for serial in ("05", "04", "03", "02", "01"):
        await storage.insert_certificate(certificate(serial))
    assert await storage.list_revoked_certificates() == []
    await storage.revoke_certificate("04", 20.0, "keyCompromise")
    await storage.revoke_certificate("02", 30.0, "superseded")
    await storage.revoke_certificate("05", 10.0, "cessationOfOperation")
    await storage.revoke_certificate("03", 20.0, "affiliationChanged")
    revoked = await storage.list_revoked_certificates()
    assert [(c.serial, c.revoked_at, c.revocation_reason) for c in revoked] == [
        ("05", 10.0, "cessationOfOperation"),
        ("03", 20.0, "affiliationChanged"),
        ("04", 20.0, "keyCompromise"),
        ("02", 30.0, "superseded"),
    ]


# --- the CRL ----------------------------------------------------------------------------------


async def test_crl_numbers_only_increase(storage: Storage) -> None:
    assert await storage.get_crl() is None
    await storage.put_crl(1, b"\x30crl-1")
    assert await storage.get_crl() == (1, b"\x30crl-1")
    for stale in (1, 0):
        with pytest.raises(ConflictError):
            await storage.put_crl(stale, b"\x30stale")
    assert await storage.get_crl() == (1, b"\x30crl-1")
    await storage.put_crl(5, b"\x30crl-5")  # gaps are fine, going back is not
    assert await storage.get_crl() == (5, b"\x30crl-5")
    with pytest.raises(ConflictError):
        await storage.put_crl(4, b"\x30stale")
    assert await storage.get_crl() == (5, b"\x30crl-5")


async def test_concurrent_crl_writers_keep_the_greatest(storage: Storage) -> None:
    numbers = [3, 1, 4, 2, 9, 6, 5]
    results = await asyncio.gather(
        *(storage.put_crl(n, b"crl-%d" % n) for n in numbers), return_exceptions=True
    )
    assert all(r is None or isinstance(r, ConflictError) for r in results)
    assert await storage.get_crl() == (9, b"crl-9")


async def test_crl_number_out_of_range_is_a_caller_bug(storage: Storage) -> None:
    # RFC 5280 §5.2.3: non-negative; a backend stores a 64-bit integer.
    for number in (-1, 2**63):
        with pytest.raises(ValueError, match="CRL number"):
            await storage.put_crl(number, b"crl")
    await storage.put_crl(2**63 - 1, b"crl")
    assert await storage.get_crl() == (2**63 - 1, b"crl")


# --- durability -------------------------------------------------------------------------------


async def test_reopen_keeps_provisioning_state(backend: Backend, storage: Storage) -> None:
    group = await add_group(storage)
    individual = enrollment(
        "dev-1", attestation=Attestation.X509, certificates_pem=(PEM_A, PEM_B), enabled=False
    )
    await storage.insert_enrollment(individual)
    await storage.update_enrollment(dataclasses.replace(individual, version=2), expected_version=1)
    state = registration("dev-1", certificate_serial="0A", error_code=None)
    await storage.put_registration(state)
    await storage.insert_claim_token(claim(max_uses=2))
    await storage.consume_claim_token(b"c" * 32, 20.0)
    await storage.insert_claim_token(claim("ct-2", b"d" * 32, revoked=True))
    await storage.insert_certificate(certificate())
    await storage.insert_certificate(certificate("0B"))
    await storage.revoke_certificate("0B", 70.0, "keyCompromise")
    await storage.put_crl(3, b"\x30crl-3")
    await storage.close()

    reopened = await backend.open()
    assert await reopened.get_enrollment("grp-1", group=True) == group
    assert await reopened.get_enrollment("dev-1", group=False) == dataclasses.replace(
        individual, version=2
    )
    assert await reopened.get_registration("dev-1") == state
    assert await reopened.list_claim_tokens() == [
        claim(max_uses=2, uses=1),
        claim("ct-2", b"d" * 32, revoked=True),
    ]
    assert await reopened.get_certificate("0A") == certificate()
    assert await reopened.list_revoked_certificates() == [
        certificate("0B", revoked_at=70.0, revocation_reason="keyCompromise")
    ]
    assert await reopened.get_crl() == (3, b"\x30crl-3")
    # The counters and the rules survive too.
    assert (await reopened.consume_claim_token(b"c" * 32, 21.0))[0] is ClaimOutcome.OK
    assert (await reopened.consume_claim_token(b"c" * 32, 22.0))[0] is ClaimOutcome.EXHAUSTED
    with pytest.raises(ConflictError):
        await reopened.put_crl(3, b"\x30again")
    with pytest.raises(PreconditionFailedError):
        await reopened.update_enrollment(
            dataclasses.replace(individual, version=2), expected_version=1
        )


async def test_closed_storage_refuses_provisioning_work(storage: Storage) -> None:
    await storage.close()
    with pytest.raises(StorageError):
        await storage.insert_enrollment(enrollment())
    with pytest.raises(StorageError):
        await storage.get_enrollment("enr-1", group=False)
    with pytest.raises(StorageError):
        await storage.consume_claim_token(b"c" * 32, 20.0)
    with pytest.raises(StorageError):
        await storage.list_certificates()
    with pytest.raises(StorageError):
        await storage.put_crl(1, b"crl")


# --- the SQLite file --------------------------------------------------------------------------


async def open_sqlite(path: Path) -> SQLiteStorage:
    storage = SQLiteStorage(path, StorageConfig(), FakeClock())
    await storage.open()
    return storage


def schema_objects(path: Path, kind: str) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return dict(
            conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = ? AND sql IS NOT NULL", (kind,)
            )
        )
    finally:
        conn.close()


async def test_provisioning_tables_and_indexes(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    storage = await open_sqlite(path)
    await storage.close()
    tables = schema_objects(path, "table")
    assert {"enrollments", "registrations", "claim_tokens", "certificates", "crl"} <= set(tables)
    assert "PRIMARY KEY (grp, enrollment_id)" in tables["enrollments"]
    assert "token_hash BLOB NOT NULL UNIQUE" in tables["claim_tokens"]
    indexes = schema_objects(path, "index")
    assert "(grp, enrollment_id)" in indexes["registrations_by_enrollment"]
    assert "(device_id)" in indexes["certificates_by_device"]
    assert "WHERE revoked_at IS NOT NULL" in indexes["certificates_revoked"]
    assert "(group_id, created_at)" in indexes["claim_tokens_by_group"]
    conn = sqlite3.connect(path)
    try:
        plan = " ".join(
            row[3]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT serial FROM certificates"
                " WHERE revoked_at IS NOT NULL ORDER BY revoked_at, serial"
            )
        )
    finally:
        conn.close()
    assert "certificates_revoked" in plan
    assert "TEMP B-TREE" not in plan  # the index serves the CRL order


async def test_crl_table_holds_one_row(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    storage = await open_sqlite(path)
    await storage.put_crl(1, b"one")
    await storage.put_crl(2, b"two")
    await storage.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT id, number, der FROM crl").fetchall() == [(1, 2, b"two")]
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO crl (id, number, der) VALUES (2, 3, x'00')")
    finally:
        conn.close()


def damage(path: Path, sql: str) -> None:
    """Write what the CHECK constraints refuse, as a bad disk or a foreign writer would."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA ignore_check_constraints = ON")
        conn.execute(sql)
    finally:
        conn.close()


async def populated(path: Path) -> SQLiteStorage:
    storage = await open_sqlite(path)
    await add_group(storage)
    await storage.insert_claim_token(claim())
    await storage.put_registration(registration())
    return storage


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE enrollments SET attestation = 'password'",
        "UPDATE enrollments SET reprovision = 'maybe'",
        "UPDATE enrollments SET certificates_pem = 'not json'",
    ],
    ids=["attestation", "reprovision", "certificates"],
)
async def test_corrupt_enrollment_is_reported_not_guessed(tmp_path: Path, sql: str) -> None:
    path = tmp_path / "hub.db"
    storage = await populated(path)
    await storage.close()
    damage(path, sql)
    storage = await open_sqlite(path)
    try:
        with pytest.raises(CorruptDatabaseError):
            await storage.get_enrollment("grp-1", group=True)
        with pytest.raises(CorruptDatabaseError):
            await storage.list_enrollments(group=True)
    finally:
        await storage.close()


@pytest.mark.parametrize(
    ("sql", "read"),
    [
        ("UPDATE enrollments SET enabled = 2", "enrollment"),
        ("UPDATE registrations SET grp = 7", "registration"),
        ("UPDATE claim_tokens SET revoked = 'no'", "claim-tokens"),
        ("UPDATE claim_tokens SET revoked = 2", "consume"),
    ],
    ids=["enabled", "group", "revoked-text", "revoked-consume"],
)
async def test_damaged_flags_are_reported_not_guessed(tmp_path: Path, sql: str, read: str) -> None:
    path = tmp_path / "hub.db"
    storage = await populated(path)
    try:
        # Damage while the hub runs: the flag is read strictly, never as "truthy".
        damage(path, sql)
        with pytest.raises(CorruptDatabaseError, match="neither 0 nor 1"):
            if read == "enrollment":
                await storage.get_enrollment("grp-1", group=True)
            elif read == "registration":
                await storage.list_registrations()
            elif read == "claim-tokens":
                await storage.list_claim_tokens()
            else:
                await storage.consume_claim_token(b"c" * 32, 20.0)
    finally:
        await storage.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT uses FROM claim_tokens").fetchall() == [(0,)]
    finally:
        conn.close()
    # At the next start the integrity check refuses the file as a whole.
    with pytest.raises(CorruptDatabaseError, match="CHECK constraint"):
        await open_sqlite(path)
