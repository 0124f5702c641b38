"""Registry: device identities and credentials, CAs, change notifications (over real SQLite)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import ec

from ironhub.clock import FakeClock
from ironhub.config import StorageConfig
from ironhub.errors import ConflictError, NotFoundError, SealingError, ValidationError
from ironhub.pki import (
    certificate_pem,
    create_ca,
    create_self_signed_device_certificate,
    issue_device_certificate,
    thumbprint_sha256,
)
from ironhub.registry.sealing import generate_kek
from ironhub.registry.service import DeviceChange, Registry, validate_device_id
from ironhub.storage.interfaces import AuthKind, DeviceRecord, DeviceState
from ironhub.storage.sqlite import SQLiteStorage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from cryptography import x509

pytestmark = pytest.mark.asyncio

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class RacingStorage(SQLiteStorage):
    """Lets another writer bump a device's version just before each of the next ``races``
    updates, as a concurrent operator would; and, when ``vanishing`` names a device, deletes it
    right after the next read of it."""

    races = 0
    vanishing: str | None = None

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        found = await super().get_device(device_id)
        if device_id == self.vanishing:
            self.vanishing = None
            await self.delete_device(device_id)
        return found

    async def update_device(self, record: DeviceRecord, *, expected_version: int) -> None:
        if self.races:
            self.races -= 1
            current = await self.get_device(record.device_id)
            assert current is not None
            await super().update_device(
                dataclasses.replace(current, version=current.version + 1),
                expected_version=current.version,
            )
        await super().update_device(record, expected_version=expected_version)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def kek() -> bytes:
    return generate_kek()


@pytest_asyncio.fixture
async def storage(tmp_path: Path, clock: FakeClock) -> AsyncIterator[RacingStorage]:
    opened = RacingStorage(tmp_path / "hub.db", StorageConfig(), clock)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def changes() -> list[DeviceChange]:
    return []


@pytest.fixture
def registry(
    storage: RacingStorage, kek: bytes, clock: FakeClock, changes: list[DeviceChange]
) -> Registry:
    created = Registry(storage, kek, clock)
    created.add_listener(changes.append)
    return created


def self_signed(device_id: str = "thumb-1") -> x509.Certificate:
    return create_self_signed_device_certificate(device_id, now=NOW)[1]


def pem(certificate: x509.Certificate) -> str:
    return certificate_pem(certificate).decode()


# --- identities -------------------------------------------------------------------------------


async def test_validate_device_id_delegates_to_the_identity_rule() -> None:
    assert validate_device_id("sensor-01.floor_2:a@b") == "sensor-01.floor_2:a@b"
    for bad in ["", "-leading", "has/slash", "wild+card", "x" * 129, "sp ace"]:
        with pytest.raises(ValidationError):
            validate_device_id(bad)


async def test_create_sas_device_shows_keys_once_and_seals_them(
    registry: Registry, clock: FakeClock, tmp_path: Path
) -> None:
    created = await registry.create_device("sensor-1")
    assert created.primary_key is not None
    assert created.secondary_key is not None
    primary = base64.b64decode(created.primary_key)
    secondary = base64.b64decode(created.secondary_key)
    assert len(primary) == len(secondary) == 32
    assert primary != secondary
    record = created.record
    assert record.auth_kind is AuthKind.SAS
    assert record.state is DeviceState.ENABLED
    assert record.created_at == record.updated_at == clock.time()
    assert record.version == 1
    assert await registry.get_device("sensor-1") == record
    assert registry.unseal_keys(record) == (primary, secondary)
    # Neither key is stored in clear (database and WAL).
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert primary not in on_disk
    assert secondary not in on_disk


async def test_invalid_device_ids_are_refused(registry: Registry) -> None:
    with pytest.raises(ValidationError):
        await registry.create_device("devices/+/#")
    assert await registry.list_devices() == []


async def test_unknown_auth_kind_is_refused(registry: Registry) -> None:
    with pytest.raises(ValidationError, match="authentication kind"):
        await registry.create_device("d", "password")  # type: ignore[arg-type]


async def test_existing_device_conflicts(registry: Registry) -> None:
    await registry.create_device("sensor-1")
    with pytest.raises(ConflictError):
        await registry.create_device("sensor-1", AuthKind.X509_CA)


async def test_thumbprint_device_with_one_or_two_certificates(registry: Registry) -> None:
    first, second = self_signed("thumb-1"), self_signed("thumb-1")
    one = await registry.create_device(
        "thumb-1", AuthKind.X509_THUMBPRINT, certificates_pem=(pem(first),)
    )
    assert one.primary_key is None
    assert one.record.primary_thumbprint == thumbprint_sha256(first)
    assert one.record.secondary_thumbprint is None
    assert one.record.certificates_pem == (pem(first),)
    assert one.record.primary_key_sealed is None

    two = await registry.create_device(
        "thumb-2",
        AuthKind.X509_THUMBPRINT,
        certificates_pem=("\n  " + pem(first) + "\n", pem(second)),
    )
    assert two.record.primary_thumbprint == thumbprint_sha256(first)
    assert two.record.secondary_thumbprint == thumbprint_sha256(second)
    assert two.record.certificates_pem == (pem(first), pem(second))  # normalised PEM
    assert registry.unseal_keys(two.record) == ()


@pytest.mark.parametrize("count", [0, 3])
async def test_thumbprint_device_needs_one_or_two_certificates(
    registry: Registry, count: int
) -> None:
    with pytest.raises(ValidationError, match="one or two"):
        await registry.create_device(
            "thumb-1", AuthKind.X509_THUMBPRINT, certificates_pem=(pem(self_signed()),) * count
        )


async def test_refused_device_certificates_say_why(registry: Registry) -> None:
    ca_key, ca_cert = create_ca("Test CA", now=NOW)
    device_key = ec.generate_private_key(ec.SECP256R1())
    issued = issue_device_certificate(ca_key, ca_cert, device_key.public_key(), "thumb-1", now=NOW)
    refused = {
        "a CA": pem(ca_cert),
        "not self-signed": pem(issued),
        "garbage": "not a certificate",
    }
    for certificate in refused.values():
        with pytest.raises(ValidationError, match="device certificate refused"):
            await registry.create_device(
                "thumb-1", AuthKind.X509_THUMBPRINT, certificates_pem=(certificate,)
            )
    with pytest.raises(ValidationError, match="not self-signed"):
        await registry.create_device(
            "thumb-1", AuthKind.X509_THUMBPRINT, certificates_pem=(pem(issued),)
        )
    assert await registry.list_devices() == []


@pytest.mark.parametrize("kind", [AuthKind.SAS, AuthKind.X509_CA])
async def test_certificates_only_for_thumbprint_devices(registry: Registry, kind: AuthKind) -> None:
    with pytest.raises(ValidationError, match="take no certificates"):
        await registry.create_device("d-1", kind, certificates_pem=(pem(self_signed()),))


async def test_ca_signed_device_has_no_secret(registry: Registry) -> None:
    created = await registry.create_device("ca-dev", AuthKind.X509_CA)
    assert (created.primary_key, created.secondary_key) == (None, None)
    record = created.record
    assert record.primary_key_sealed is None
    assert record.secondary_key_sealed is None
    assert record.primary_thumbprint is None
    assert record.certificates_pem == ()
    assert registry.unseal_keys(record) == ()


async def test_get_and_list(registry: Registry) -> None:
    for device_id in ["c", "a", "b"]:
        await registry.create_device(device_id, AuthKind.X509_CA)
    assert [d.device_id for d in await registry.list_devices()] == ["a", "b", "c"]
    assert [d.device_id for d in await registry.list_devices(after="a", limit=1)] == ["b"]
    with pytest.raises(NotFoundError):
        await registry.get_device("zzz")


# --- state, rotation, deletion, listeners -----------------------------------------------------


async def test_disable_and_enable_notify(
    registry: Registry, clock: FakeClock, changes: list[DeviceChange]
) -> None:
    await registry.create_device("d-1")
    clock.advance(60)
    disabled = await registry.set_state("d-1", DeviceState.DISABLED)
    assert disabled.state is DeviceState.DISABLED
    assert disabled.version == 2
    assert disabled.updated_at == clock.time()
    assert await registry.get_device("d-1") == disabled
    again = await registry.set_state("d-1", DeviceState.DISABLED)
    assert again == disabled  # nothing to do, nobody told
    enabled = await registry.set_state("d-1", DeviceState.ENABLED)
    assert enabled.version == 3
    assert changes == [DeviceChange("d-1", "disabled"), DeviceChange("d-1", "enabled")]


async def test_set_state_refuses_unknown_state_and_device(registry: Registry) -> None:
    with pytest.raises(ValidationError):
        await registry.set_state("d-1", "paused")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        await registry.set_state("d-1", DeviceState.DISABLED)


async def test_rotate_one_key_keeps_the_other(
    registry: Registry, changes: list[DeviceChange]
) -> None:
    created = await registry.create_device("d-1")
    assert created.secondary_key is not None
    new_primary = await registry.rotate_key("d-1", "primary")
    record = await registry.get_device("d-1")
    assert record.version == 2
    assert registry.unseal_keys(record) == (
        base64.b64decode(new_primary),
        base64.b64decode(created.secondary_key),
    )
    assert new_primary != created.primary_key
    new_secondary = await registry.rotate_key("d-1", "secondary")
    record = await registry.get_device("d-1")
    assert registry.unseal_keys(record)[1] == base64.b64decode(new_secondary)
    assert changes == [
        DeviceChange("d-1", "key-rotated", "primary"),
        DeviceChange("d-1", "key-rotated", "secondary"),
    ]


async def test_rotate_key_refusals(registry: Registry) -> None:
    await registry.create_device("d-1")
    await registry.create_device("ca-dev", AuthKind.X509_CA)
    with pytest.raises(ValidationError, match="slot"):
        await registry.rotate_key("d-1", "tertiary")
    with pytest.raises(ValidationError, match="not SAS"):
        await registry.rotate_key("ca-dev", "primary")
    with pytest.raises(NotFoundError):
        await registry.rotate_key("nobody", "primary")


async def test_delete_notifies(registry: Registry, changes: list[DeviceChange]) -> None:
    await registry.create_device("d-1")
    await registry.delete_device("d-1")
    assert changes == [DeviceChange("d-1", "deleted")]
    with pytest.raises(NotFoundError):
        await registry.delete_device("d-1")
    with pytest.raises(NotFoundError):
        await registry.get_device("d-1")


async def test_failing_listener_is_logged_and_contained(
    registry: Registry, changes: list[DeviceChange], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_change: DeviceChange) -> None:
        raise RuntimeError("listener bug")

    registry.add_listener(broken)
    after: list[DeviceChange] = []
    registry.add_listener(after.append)
    await registry.create_device("d-1")
    await registry.delete_device("d-1")
    assert changes == after == [DeviceChange("d-1", "deleted")]
    assert "registry listener failed" in caplog.text


async def test_concurrent_changes_both_land(registry: Registry) -> None:
    await registry.create_device("d-1")
    await asyncio.gather(
        registry.set_state("d-1", DeviceState.DISABLED),
        registry.rotate_key("d-1", "primary"),
    )
    record = await registry.get_device("d-1")
    assert record.state is DeviceState.DISABLED
    assert record.version == 3


async def test_update_retries_after_a_lost_race(registry: Registry, storage: RacingStorage) -> None:
    await registry.create_device("d-1")
    storage.races = 2
    record = await registry.set_state("d-1", DeviceState.DISABLED)
    assert record.version == 4  # two foreign bumps, then ours
    assert await registry.get_device("d-1") == record


async def test_update_gives_up_when_always_outraced(
    registry: Registry, storage: RacingStorage, changes: list[DeviceChange]
) -> None:
    await registry.create_device("d-1")
    storage.races = 3
    with pytest.raises(ConflictError, match="concurrently"):
        await registry.rotate_key("d-1", "primary")
    assert changes == []


# --- sealing ----------------------------------------------------------------------------------


async def test_keys_do_not_open_under_another_kek(
    registry: Registry, storage: RacingStorage, clock: FakeClock
) -> None:
    created = await registry.create_device("d-1")
    other = Registry(storage, generate_kek(), clock)
    with pytest.raises(SealingError):
        other.unseal_keys(created.record)


async def test_sealed_keys_are_bound_to_device_and_slot(registry: Registry) -> None:
    one = (await registry.create_device("d-1")).record
    two = (await registry.create_device("d-2")).record
    moved = dataclasses.replace(two, primary_key_sealed=one.primary_key_sealed)
    with pytest.raises(SealingError):
        registry.unseal_keys(moved)
    swapped = dataclasses.replace(
        one,
        primary_key_sealed=one.secondary_key_sealed,
        secondary_key_sealed=one.primary_key_sealed,
    )
    with pytest.raises(SealingError):
        registry.unseal_keys(swapped)


# --- CAs --------------------------------------------------------------------------------------


async def test_add_list_remove_ca(registry: Registry, clock: FakeClock) -> None:
    _, ca_cert = create_ca("Fleet Root", now=NOW)
    record = await registry.add_ca("\n" + pem(ca_cert))
    assert record.fingerprint == thumbprint_sha256(ca_cert)
    assert record.subject == "CN=Fleet Root"
    assert record.pem == pem(ca_cert)
    assert record.created_at == clock.time()
    assert await registry.list_cas() == [record]
    with pytest.raises(ConflictError):
        await registry.add_ca(pem(ca_cert))
    colon_lower = ":".join(
        record.fingerprint[i : i + 2] for i in range(0, len(record.fingerprint), 2)
    ).lower()
    await registry.remove_ca(colon_lower)
    assert await registry.list_cas() == []
    with pytest.raises(NotFoundError):
        await registry.remove_ca(record.fingerprint)


async def test_non_ca_certificates_are_refused(registry: Registry) -> None:
    with pytest.raises(ValidationError, match="CA certificate refused"):
        await registry.add_ca(pem(self_signed()))
    with pytest.raises(ValidationError, match="CA certificate refused"):
        await registry.add_ca("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert await registry.list_cas() == []


# --- modules ----------------------------------------------------------------------------------


async def test_create_sas_module_seals_keys_under_the_module_identity(
    registry: Registry, clock: FakeClock
) -> None:
    device = await registry.create_device("d-1")
    created = await registry.create_module("d-1", "mod.1")
    record = created.record
    assert record.device_id == "d-1/mod.1"
    assert record.auth_kind is AuthKind.SAS
    assert record.state is DeviceState.ENABLED
    assert record.created_at == record.updated_at == clock.time()
    assert created.primary_key is not None
    assert created.secondary_key is not None
    keys = (base64.b64decode(created.primary_key), base64.b64decode(created.secondary_key))
    assert registry.unseal_keys(record) == keys
    assert keys != registry.unseal_keys(device.record)
    assert await registry.get_device("d-1/mod.1") == record
    # The sealed keys are bound to the module identity: they open neither as the device's
    # nor as another module's.
    with pytest.raises(SealingError):
        registry.unseal_keys(
            dataclasses.replace(device.record, primary_key_sealed=record.primary_key_sealed)
        )
    with pytest.raises(SealingError):
        registry.unseal_keys(dataclasses.replace(record, device_id="d-1/other"))


async def test_create_module_with_x509_credentials(registry: Registry) -> None:
    trust: list[None] = []
    registry.add_trust_listener(lambda: trust.append(None))
    await registry.create_device("d-1", AuthKind.X509_CA)
    certificate = self_signed("d-1/thumb")
    thumb = await registry.create_module(
        "d-1", "thumb", auth_kind=AuthKind.X509_THUMBPRINT, certificates_pem=[pem(certificate)]
    )
    assert thumb.primary_key is None
    assert thumb.record.primary_thumbprint == thumbprint_sha256(certificate)
    assert thumb.record.certificates_pem == (pem(certificate),)
    assert trust == [None]  # the TLS layer must learn the new certificate
    ca = await registry.create_module("d-1", "ca", auth_kind=AuthKind.X509_CA)
    assert (ca.primary_key, ca.record.primary_key_sealed) == (None, None)
    assert registry.unseal_keys(ca.record) == ()
    with pytest.raises(ValidationError, match="take no certificates"):
        await registry.create_module("d-1", "sas", certificates_pem=(pem(certificate),))
    with pytest.raises(ValidationError, match="one or two"):
        await registry.create_module("d-1", "t2", auth_kind=AuthKind.X509_THUMBPRINT)
    with pytest.raises(ValidationError, match="authentication kind"):
        await registry.create_module("d-1", "x", auth_kind="password")  # type: ignore[arg-type]
    assert [m.device_id for m in await registry.list_modules("d-1")] == ["d-1/ca", "d-1/thumb"]


async def test_create_module_needs_an_existing_device(registry: Registry) -> None:
    with pytest.raises(NotFoundError):
        await registry.create_module("ghost", "m")
    await registry.create_device("d-1")
    await registry.create_module("d-1", "m")
    with pytest.raises(NotFoundError):
        await registry.create_module("d-2", "m")  # a device's name prefix is not a device


async def test_existing_module_conflicts(registry: Registry) -> None:
    await registry.create_device("d-1")
    await registry.create_module("d-1", "m")
    with pytest.raises(ConflictError):
        await registry.create_module("d-1", "m", auth_kind=AuthKind.X509_CA)


@pytest.mark.parametrize(
    ("device_id", "module_id"),
    [("d-1", ""), ("d-1", "a/b"), ("d-1", "+"), ("d-1", "-m"), ("", "m"), ("d-1/m", "x")],
)
async def test_invalid_module_ids_are_refused(
    registry: Registry, device_id: str, module_id: str
) -> None:
    await registry.create_device("d-1")
    with pytest.raises(ValidationError):
        await registry.create_module(device_id, module_id)
    assert await registry.list_modules("d-1") == []


async def test_create_device_refuses_a_module_identity(registry: Registry) -> None:
    await registry.create_device("d-1")
    with pytest.raises(ValidationError):
        await registry.create_device("d-1/m")
    assert await registry.list_modules("d-1") == []


async def test_list_modules(registry: Registry) -> None:
    for device_id in ["d", "d-2"]:
        await registry.create_device(device_id, AuthKind.X509_CA)
    for module_id in ["z", "a", "m"]:
        await registry.create_module("d", module_id, auth_kind=AuthKind.X509_CA)
    await registry.create_module("d-2", "a", auth_kind=AuthKind.X509_CA)
    assert [m.device_id for m in await registry.list_modules("d")] == ["d/a", "d/m", "d/z"]
    assert [m.device_id for m in await registry.list_modules("d-2")] == ["d-2/a"]
    assert [d.device_id for d in await registry.list_devices()] == ["d", "d-2"]
    with pytest.raises(NotFoundError):
        await registry.list_modules("ghost")
    with pytest.raises(ValidationError):
        await registry.list_modules("d/a")


async def test_delete_device_deletes_and_notifies_its_modules(
    registry: Registry, changes: list[DeviceChange]
) -> None:
    trust: list[None] = []
    registry.add_trust_listener(lambda: trust.append(None))
    await registry.create_device("d")
    await registry.create_module("d", "m1")
    await registry.create_module("d", "m2")
    await registry.create_device("d-2")
    await registry.create_module("d-2", "m1")
    await registry.delete_device("d")
    assert changes == [
        DeviceChange("d", "deleted"),
        DeviceChange("d/m1", "deleted"),
        DeviceChange("d/m2", "deleted"),
    ]
    assert trust == [None]
    for gone in ["d", "d/m1", "d/m2"]:
        with pytest.raises(NotFoundError):
            await registry.get_device(gone)
    assert [m.device_id for m in await registry.list_modules("d-2")] == ["d-2/m1"]
    # A device created again under the same id starts without modules.
    await registry.create_device("d")
    assert await registry.list_modules("d") == []


async def test_delete_module_keeps_its_device(
    registry: Registry, changes: list[DeviceChange]
) -> None:
    await registry.create_device("d")
    await registry.create_module("d", "m1")
    await registry.create_module("d", "m2")
    await registry.delete_device("d/m1")
    assert changes == [DeviceChange("d/m1", "deleted")]
    assert [m.device_id for m in await registry.list_modules("d")] == ["d/m2"]
    with pytest.raises(NotFoundError):
        await registry.delete_device("d/m1")


async def test_disabling_a_device_notifies_its_modules(
    registry: Registry, changes: list[DeviceChange]
) -> None:
    await registry.create_device("d")
    await registry.create_module("d", "m1")
    await registry.create_module("d", "m2")
    await registry.create_device("d-2")
    await registry.create_module("d-2", "m1")
    await registry.set_state("d", DeviceState.DISABLED)
    assert changes == [
        DeviceChange("d", "disabled"),
        DeviceChange("d/m1", "disabled"),
        DeviceChange("d/m2", "disabled"),
    ]
    # The modules' own records are not changed: their state is their own.
    assert (await registry.get_device("d/m1")).state is DeviceState.ENABLED
    changes.clear()
    await registry.set_state("d", DeviceState.ENABLED)
    assert [c.device_id for c in changes] == ["d", "d/m1", "d/m2"]
    assert {c.reason for c in changes} == {"enabled"}


async def test_module_state_and_keys_are_its_own(
    registry: Registry, changes: list[DeviceChange]
) -> None:
    device = await registry.create_device("d")
    module = await registry.create_module("d", "m")
    disabled = await registry.set_state("d/m", DeviceState.DISABLED)
    assert disabled.state is DeviceState.DISABLED
    assert disabled.version == 2
    assert (await registry.get_device("d")).state is DeviceState.ENABLED
    new_key = await registry.rotate_key("d/m", "secondary")
    record = await registry.get_device("d/m")
    assert module.primary_key is not None
    assert registry.unseal_keys(record) == (
        base64.b64decode(module.primary_key),
        base64.b64decode(new_key),
    )
    assert registry.unseal_keys(await registry.get_device("d")) == registry.unseal_keys(
        device.record
    )
    assert changes == [
        DeviceChange("d/m", "disabled"),
        DeviceChange("d/m", "key-rotated", "secondary"),
    ]


@pytest.mark.parametrize("identity", ["", "d/", "/m", "d/m/x", "d/+", "has space"])
async def test_changes_refuse_malformed_identity_keys(
    registry: Registry, identity: str, changes: list[DeviceChange]
) -> None:
    with pytest.raises(ValidationError):
        await registry.set_state(identity, DeviceState.DISABLED)
    with pytest.raises(ValidationError):
        await registry.rotate_key(identity, "primary")
    with pytest.raises(ValidationError):
        await registry.delete_device(identity)
    assert changes == []


async def test_module_of_a_device_deleted_meanwhile_is_refused(
    registry: Registry, storage: RacingStorage
) -> None:
    await registry.create_device("d")
    storage.vanishing = "d"  # deleted between the registry's check and the insert
    with pytest.raises(NotFoundError):
        await registry.create_module("d", "m")
    assert await storage.get_device("d/m") is None


async def test_quarantine_reaches_modules_and_release_spares_their_own_quarantine(
    registry: Registry, changes: list[DeviceChange]
) -> None:
    await registry.create_device("dev")
    await registry.create_module("dev", "a")
    await registry.create_module("dev", "b")
    await registry.set_state("dev/b", DeviceState.QUARANTINED)  # on its own account
    changes.clear()
    await registry.set_state("dev", DeviceState.QUARANTINED)
    assert [(c.device_id, c.reason) for c in changes] == [
        ("dev", "quarantined"),
        ("dev/a", "quarantined"),
        ("dev/b", "quarantined"),
    ]
    changes.clear()
    await registry.set_state("dev", DeviceState.ENABLED)
    # dev/b stays quarantined: nobody tells its session otherwise.
    assert [(c.device_id, c.reason) for c in changes] == [("dev", "enabled"), ("dev/a", "enabled")]
