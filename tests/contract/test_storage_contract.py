"""The storage contract: every backend passes these (STYLE.md, "Storage backends must pass the
same contract suite"). The last section guards the SQLite file itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import stat
from typing import TYPE_CHECKING

import pytest
from tests.contract.conftest import POISON_DEVICE, Backend

from ironhub.clock import FakeClock
from ironhub.config import StorageConfig
from ironhub.errors import (
    ConflictError,
    CorruptDatabaseError,
    NotFoundError,
    QueueFullError,
    StorageError,
    ThrottledError,
)
from ironhub.storage.interfaces import (
    AuthKind,
    CARecord,
    CloudMessage,
    DeviceRecord,
    DeviceState,
    LogEntry,
    SessionRecord,
    Storage,
    StoredMessage,
    Stream,
    TokenRecord,
    TwinRecord,
)
from ironhub.storage.sqlite import APPLICATION_ID, SCHEMA_VERSION, SQLiteStorage

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

pytestmark = pytest.mark.asyncio


def device(device_id: str = "dev-1", **overrides: object) -> DeviceRecord:
    fields: dict[str, object] = {
        "device_id": device_id,
        "auth_kind": AuthKind.SAS,
        "state": DeviceState.ENABLED,
        "created_at": 100.0,
        "updated_at": 100.0,
        "primary_key_sealed": b"\x01sealed-primary",
        "secondary_key_sealed": b"\x01sealed-secondary",
    }
    fields.update(overrides)
    return DeviceRecord(**fields)  # type: ignore[arg-type]


def token(token_id: str = "t1", token_hash: bytes = b"h" * 32, **overrides: object) -> TokenRecord:
    fields: dict[str, object] = {
        "token_id": token_id,
        "name": "ci",
        "token_hash": token_hash,
        "roles": ("admin",),
        "created_at": 10.0,
        "expires_at": 1000.0,
    }
    fields.update(overrides)
    return TokenRecord(**fields)  # type: ignore[arg-type]


def entry(
    n: int = 0,
    *,
    device_id: str | None = "dev-1",
    stream: Stream = Stream.TELEMETRY,
    packet_id: int | None = None,
    properties: tuple[tuple[str, str], ...] = (),
) -> LogEntry:
    return LogEntry(
        stream=stream,
        device_id=device_id,
        enqueued_at=1000.0 + n,
        payload=f"payload-{n}".encode(),
        properties=properties,
        packet_id=packet_id,
        digest=None if packet_id is None else f"digest-{n}".encode(),
    )


def twin(identity: str = "dev-1", **overrides: object) -> TwinRecord:
    fields: dict[str, object] = {
        "identity": identity,
        "tags": "{}",
        "desired": "{}",
        "desired_version": 1,
        "reported": "{}",
        "reported_version": 1,
        "version": 1,
        "updated_at": 100.0,
    }
    fields.update(overrides)
    return TwinRecord(**fields)  # type: ignore[arg-type]


def session(client_id: str = "dev-1", **overrides: object) -> SessionRecord:
    fields: dict[str, object] = {
        "client_id": client_id,
        "subscriptions": (("devices/dev-1/messages/devicebound/#", 1), ("$iothub/twin/res/#", 0)),
        "desired_version_sent": 3,
        "updated_at": 100.0,
    }
    fields.update(overrides)
    return SessionRecord(**fields)  # type: ignore[arg-type]


def cloud(identity: str = "dev-1", n: int = 0, **overrides: object) -> CloudMessage:
    fields: dict[str, object] = {
        "seq": 0,
        "identity": identity,
        "input_name": None,
        "enqueued_at": 500.0 + n,
        "expires_at": 10_000.0 + n,
        "payload": f"c2d-{n}".encode(),
        "properties": (("$.mid", f"mid-{n}"), ("$.exp", "2030-01-01T00:00:00Z"), ("k", "v=ü")),
    }
    fields.update(overrides)
    return CloudMessage(**fields)  # type: ignore[arg-type]


def stored(message: CloudMessage, seq: int, delivery_count: int = 0) -> CloudMessage:
    """``message`` as storage returns it once queued under ``seq``."""
    return dataclasses.replace(message, seq=seq, delivery_count=delivery_count)


async def settle(futures: Sequence[asyncio.Future[int]]) -> list[int | BaseException]:
    return list(await asyncio.gather(*futures, return_exceptions=True))


# --- devices ----------------------------------------------------------------------------------


async def test_device_round_trip(storage: Storage) -> None:
    record = device(
        "thumb-1",
        auth_kind=AuthKind.X509_THUMBPRINT,
        primary_key_sealed=None,
        secondary_key_sealed=None,
        primary_thumbprint="AB" * 32,
        secondary_thumbprint="CD" * 32,
        certificates_pem=("-----BEGIN CERTIFICATE-----\nA\n", "-----BEGIN CERTIFICATE-----\nB\n"),
    )
    await storage.insert_device(record)
    await storage.insert_device(device("sas-1"))
    assert await storage.get_device("thumb-1") == record
    assert await storage.get_device("sas-1") == device("sas-1")
    assert await storage.get_device("nobody") is None


async def test_insert_existing_device_conflicts(storage: Storage) -> None:
    await storage.insert_device(device())
    with pytest.raises(ConflictError):
        await storage.insert_device(device(state=DeviceState.DISABLED))
    assert await storage.get_device("dev-1") == device()


async def test_list_devices_pages_in_id_order(storage: Storage) -> None:
    for device_id in ["c", "a", "e", "b", "d"]:
        await storage.insert_device(device(device_id))
    assert [d.device_id for d in await storage.list_devices()] == ["a", "b", "c", "d", "e"]
    assert [d.device_id for d in await storage.list_devices(limit=2)] == ["a", "b"]
    assert [d.device_id for d in await storage.list_devices(after="b", limit=2)] == ["c", "d"]
    assert await storage.list_devices(after="e") == []
    assert await storage.list_devices(limit=0) == []


async def test_update_device_with_expected_version(storage: Storage) -> None:
    await storage.insert_device(device())
    updated = device(state=DeviceState.DISABLED, version=2, updated_at=200.0)
    await storage.update_device(updated, expected_version=1)
    assert await storage.get_device("dev-1") == updated


async def test_update_device_with_stale_version_conflicts(storage: Storage) -> None:
    await storage.insert_device(device())
    await storage.update_device(device(version=2), expected_version=1)
    with pytest.raises(ConflictError):
        await storage.update_device(
            device(version=2, state=DeviceState.DISABLED), expected_version=1
        )
    assert (await storage.get_device("dev-1")) == device(version=2)


async def test_update_unknown_device_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        await storage.update_device(device(version=2), expected_version=1)


async def test_update_device_requires_next_version(storage: Storage) -> None:
    await storage.insert_device(device())
    with pytest.raises(ValueError, match="expected_version"):
        await storage.update_device(device(version=5), expected_version=1)


async def test_delete_device(storage: Storage) -> None:
    await storage.insert_device(device())
    assert await storage.delete_device("dev-1") is True
    assert await storage.delete_device("dev-1") is False
    assert await storage.get_device("dev-1") is None


async def test_list_devices_excludes_modules(storage: Storage) -> None:
    for device_id in ["a", "a/m1", "b", "b/m1", "b/m2", "c"]:
        await storage.insert_device(device(device_id))
    assert [d.device_id for d in await storage.list_devices()] == ["a", "b", "c"]
    assert [d.device_id for d in await storage.list_devices(limit=2)] == ["a", "b"]
    assert [d.device_id for d in await storage.list_devices(after="a", limit=2)] == ["b", "c"]
    assert [d.device_id for d in await storage.list_devices(after="b", limit=1)] == ["c"]
    assert await storage.get_device("b/m1") == device("b/m1")  # modules are stored identities
    everything = await storage.list_devices(include_modules=True)
    assert [d.device_id for d in everything] == ["a", "a/m1", "b", "b/m1", "b/m2", "c"]
    page = await storage.list_devices(after="a/m1", limit=2, include_modules=True)
    assert [d.device_id for d in page] == ["b", "b/m1"]


async def test_list_modules_in_id_order(storage: Storage) -> None:
    for device_id in ["d", "d/z", "d/a", "d/m.1", "d-2", "d-2/a", "d.x", "d0", "d0/a", "dd/a"]:
        if "/" in device_id and await storage.get_device(device_id.split("/")[0]) is None:
            await storage.insert_device(device(device_id.split("/")[0]))
        await storage.insert_device(device(device_id))
    assert [m.device_id for m in await storage.list_modules("d")] == ["d/a", "d/m.1", "d/z"]
    assert [m.device_id for m in await storage.list_modules("d-2")] == ["d-2/a"]
    assert await storage.list_modules("d.x") == []
    assert await storage.list_modules("nobody") == []
    assert await storage.list_modules("d/a") == []
    assert (await storage.list_modules("d"))[0] == device("d/a")


async def test_module_of_a_missing_device_is_refused(storage: Storage) -> None:
    # The parent is checked in the insert's transaction: a module cannot outlive its device.
    with pytest.raises(NotFoundError):
        await storage.insert_device(device("ghost/m"))
    assert await storage.get_device("ghost/m") is None
    await storage.insert_device(device("ghost"))
    await storage.insert_device(device("ghost/m"))
    with pytest.raises(ConflictError):
        await storage.insert_device(device("ghost/m"))


async def test_module_update_and_delete(storage: Storage) -> None:
    await storage.insert_device(device("d"))
    await storage.insert_device(device("d/m"))
    updated = device("d/m", state=DeviceState.DISABLED, version=2)
    await storage.update_device(updated, expected_version=1)
    assert await storage.get_device("d/m") == updated
    assert await storage.delete_device("d/m") is True
    assert await storage.delete_device("d/m") is False
    assert await storage.get_device("d") == device("d")  # deleting a module keeps its device


async def populate_identity(storage: Storage, identity: str) -> None:
    """An identity with everything it may own: record, twin, session, two cloud messages."""
    await storage.insert_device(device(identity))
    await storage.put_twin(twin(identity), expected_version=None)
    await storage.put_session(session(identity))
    for n in range(2):
        await storage.enqueue_cloud_message(cloud(identity, n), max_pending=10)


async def owned_state(storage: Storage, identity: str) -> tuple[bool, bool, bool, int]:
    return (
        await storage.get_device(identity) is not None,
        await storage.get_twin(identity) is not None,
        await storage.get_session(identity) is not None,
        len(await storage.list_cloud_messages(identity)),
    )


async def test_delete_device_cascades_to_modules_and_owned_state(storage: Storage) -> None:
    identities = ["d", "d/m1", "d/m2", "d-2", "d-2/m1", "d.x", "c", "d0"]
    for identity in identities:
        await populate_identity(storage, identity)
    assert await storage.delete_device("d") is True
    for gone in ["d", "d/m1", "d/m2"]:
        assert await owned_state(storage, gone) == (False, False, False, 0), gone
    for kept in ["d-2", "d-2/m1", "d.x", "c", "d0"]:
        assert await owned_state(storage, kept) == (True, True, True, 2), kept
    assert await storage.list_modules("d") == []
    assert [t.identity for t in await storage.list_twins()] == ["c", "d-2", "d-2/m1", "d.x", "d0"]
    assert [d.device_id for d in await storage.list_devices()] == ["c", "d-2", "d.x", "d0"]
    assert await storage.delete_device("d") is False


async def test_delete_module_leaves_device_and_siblings(storage: Storage) -> None:
    for identity in ["d", "d/m1", "d/m2"]:
        await populate_identity(storage, identity)
    assert await storage.delete_device("d/m1") is True
    assert await owned_state(storage, "d/m1") == (False, False, False, 0)
    assert await owned_state(storage, "d") == (True, True, True, 2)
    assert await owned_state(storage, "d/m2") == (True, True, True, 2)


async def test_delete_absent_device_reports_false(storage: Storage) -> None:
    await populate_identity(storage, "d-2")
    assert await storage.delete_device("d") is False
    assert await owned_state(storage, "d-2") == (True, True, True, 2)


# --- CAs --------------------------------------------------------------------------------------


async def test_ca_register_list_delete(storage: Storage) -> None:
    first = CARecord("BB" * 32, "CN=Two", "pem-2", 5.0)
    second = CARecord("AA" * 32, "CN=One", "pem-1", 6.0)
    await storage.insert_ca(first)
    await storage.insert_ca(second)
    assert await storage.list_cas() == [second, first]
    with pytest.raises(ConflictError):
        await storage.insert_ca(first)
    assert await storage.delete_ca("AA" * 32) is True
    assert await storage.delete_ca("AA" * 32) is False
    assert await storage.list_cas() == [first]


# --- tokens -----------------------------------------------------------------------------------


async def test_token_round_trip_and_lookup_by_hash(storage: Storage) -> None:
    record = token()
    forever = token("t2", b"g" * 32, expires_at=None, created_at=11.0)
    await storage.insert_token(record)
    await storage.insert_token(forever)
    assert await storage.find_token(b"h" * 32) == record
    assert await storage.find_token(b"g" * 32) == forever
    assert await storage.find_token(b"x" * 32) is None
    assert await storage.list_tokens() == [record, forever]


async def test_token_duplicates_conflict(storage: Storage) -> None:
    await storage.insert_token(token())
    with pytest.raises(ConflictError):
        await storage.insert_token(token("t1", b"other-hash"))
    with pytest.raises(ConflictError):
        await storage.insert_token(token("t2", b"h" * 32))
    assert await storage.count_tokens() == 1


async def test_revoke_token_and_count_ever_created(storage: Storage) -> None:
    assert await storage.count_tokens() == 0
    await storage.insert_token(token())
    assert await storage.revoke_token("t1") is True
    assert await storage.revoke_token("unknown") is False
    found = await storage.find_token(b"h" * 32)
    assert found is not None
    assert found.revoked is True
    assert await storage.count_tokens() == 1  # revoked tokens still count: not a fresh hub


# --- twins -----------------------------------------------------------------------------------


async def test_twin_insert_and_get(storage: Storage) -> None:
    record = twin(
        "d/m",
        tags='{"floor":2}',
        desired='{"rate":5,"ü":"x"}',
        desired_version=4,
        reported='{"fw":"1.2"}',
        reported_version=7,
        version=10,
        updated_at=123.5,
    )
    await storage.put_twin(record, expected_version=None)
    assert await storage.get_twin("d/m") == record
    assert await storage.get_twin("d") is None


async def test_twin_insert_of_existing_conflicts(storage: Storage) -> None:
    await storage.put_twin(twin(), expected_version=None)
    with pytest.raises(ConflictError):
        await storage.put_twin(twin(tags='{"a":1}'), expected_version=None)
    assert await storage.get_twin("dev-1") == twin()


async def test_twin_replace_with_expected_version(storage: Storage) -> None:
    await storage.put_twin(twin(), expected_version=None)
    changed = twin(desired='{"a":1}', desired_version=2, version=2, updated_at=200.0)
    await storage.put_twin(changed, expected_version=1)
    assert await storage.get_twin("dev-1") == changed
    with pytest.raises(ConflictError):
        await storage.put_twin(twin(reported='{"b":2}', version=2), expected_version=1)
    assert await storage.get_twin("dev-1") == changed


async def test_twin_replace_of_absent_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        await storage.put_twin(twin(version=2), expected_version=1)
    assert await storage.get_twin("dev-1") is None


async def test_list_twins_pages_in_identity_order(storage: Storage) -> None:
    for identity in ["c", "a/m", "a", "b", "a-1"]:
        await storage.put_twin(twin(identity), expected_version=None)
    everything = ["a", "a-1", "a/m", "b", "c"]
    assert [t.identity for t in await storage.list_twins()] == everything
    assert [t.identity for t in await storage.list_twins(limit=2)] == ["a", "a-1"]
    assert [t.identity for t in await storage.list_twins(after="a-1", limit=2)] == ["a/m", "b"]
    assert await storage.list_twins(after="c") == []
    assert await storage.list_twins(limit=0) == []
    assert (await storage.list_twins(after="a/m", limit=1)) == [twin("b")]


# --- persistent sessions ----------------------------------------------------------------------


async def test_session_upsert_get_delete(storage: Storage) -> None:
    assert await storage.get_session("dev-1") is None
    first = session()
    await storage.put_session(first)
    assert await storage.get_session("dev-1") == first
    replaced = session(subscriptions=(("$iothub/methods/POST/#", 0),), desired_version_sent=9)
    await storage.put_session(replaced)
    assert await storage.get_session("dev-1") == replaced
    empty = session("d/m", subscriptions=(), desired_version_sent=0)
    await storage.put_session(empty)
    assert await storage.get_session("d/m") == empty
    assert await storage.delete_session("dev-1") is True
    assert await storage.delete_session("dev-1") is False
    assert await storage.get_session("dev-1") is None
    assert await storage.get_session("d/m") == empty


async def test_session_keeps_subscription_order(storage: Storage) -> None:
    filters = tuple((f"devices/dev-1/modules/m{n}/#", n % 2) for n in (3, 1, 2))
    await storage.put_session(session(subscriptions=filters))
    found = await storage.get_session("dev-1")
    assert found is not None
    assert found.subscriptions == filters


# --- cloud-to-device queue --------------------------------------------------------------------


async def test_cloud_queue_round_trip_in_seq_order(storage: Storage) -> None:
    plain = cloud("dev-1", 0, properties=())
    module_input = cloud("dev-1/m", 1, input_name="input1", payload=b"\x00\xff")
    other = cloud("dev-1", 2, seq=999, delivery_count=0)  # the given seq is ignored
    seqs = [
        await storage.enqueue_cloud_message(m, max_pending=10) for m in (plain, module_input, other)
    ]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    assert await storage.list_cloud_messages("dev-1") == [
        stored(plain, seqs[0]),
        stored(other, seqs[2]),
    ]
    assert await storage.list_cloud_messages("dev-1/m") == [stored(module_input, seqs[1])]
    assert await storage.list_cloud_messages("dev-1", limit=1) == [stored(plain, seqs[0])]
    assert await storage.list_cloud_messages("dev-1", limit=0) == []
    assert await storage.list_cloud_messages("nobody") == []


async def test_cloud_listing_includes_expired_messages(storage: Storage) -> None:
    seq = await storage.enqueue_cloud_message(cloud(expires_at=1.0), max_pending=10)
    assert [m.seq for m in await storage.list_cloud_messages("dev-1")] == [seq]


async def test_cloud_queue_full_at_max_pending(storage: Storage) -> None:
    for n in range(3):
        await storage.enqueue_cloud_message(cloud("dev-1", n), max_pending=3)
    with pytest.raises(QueueFullError) as info:
        await storage.enqueue_cloud_message(cloud("dev-1", 3), max_pending=3)
    assert isinstance(info.value, ThrottledError)
    assert len(await storage.list_cloud_messages("dev-1")) == 3
    # Other identities, a module of the same device included, have queues of their own.
    await storage.enqueue_cloud_message(cloud("dev-2"), max_pending=3)
    await storage.enqueue_cloud_message(cloud("dev-1/m"), max_pending=3)
    assert len(await storage.list_cloud_messages("dev-2")) == 1
    # A completed message frees its place; a larger limit admits more.
    first = (await storage.list_cloud_messages("dev-1"))[0]
    await storage.delete_cloud_message("dev-1", first.seq)
    await storage.enqueue_cloud_message(cloud("dev-1", 4), max_pending=3)
    await storage.enqueue_cloud_message(cloud("dev-1", 5), max_pending=4)
    with pytest.raises(QueueFullError):
        await storage.enqueue_cloud_message(cloud("dev-1", 6), max_pending=0)
    assert len(await storage.list_cloud_messages("dev-1")) == 4


async def test_concurrent_enqueues_never_overfill(storage: Storage) -> None:
    results = await asyncio.gather(
        *(storage.enqueue_cloud_message(cloud("dev-1", n), max_pending=5) for n in range(20)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, int) for r in results) == 5
    assert all(isinstance(r, (int, QueueFullError)) for r in results)
    assert len(await storage.list_cloud_messages("dev-1")) == 5


async def test_cloud_seqs_are_never_reused(storage: Storage) -> None:
    first = await storage.enqueue_cloud_message(cloud(), max_pending=10)
    assert await storage.delete_cloud_message("dev-1", first) is not None
    second = await storage.enqueue_cloud_message(cloud(), max_pending=10)
    assert second > first
    await storage.purge_cloud_messages("dev-1")
    assert await storage.enqueue_cloud_message(cloud(), max_pending=10) > second


async def test_mark_cloud_message_delivered_counts(storage: Storage) -> None:
    seq = await storage.enqueue_cloud_message(cloud(), max_pending=10)
    other = await storage.enqueue_cloud_message(cloud(n=1), max_pending=10)
    assert await storage.mark_cloud_message_delivered("dev-1", seq)
    assert await storage.mark_cloud_message_delivered("dev-1", seq)
    # Another identity's message is untouched; a message that is gone answers False.
    assert not await storage.mark_cloud_message_delivered("dev-2", other)
    assert not await storage.mark_cloud_message_delivered("dev-1", 10_000)
    assert [m.delivery_count for m in await storage.list_cloud_messages("dev-1")] == [2, 0]


async def test_delete_cloud_message_returns_it(storage: Storage) -> None:
    seq = await storage.enqueue_cloud_message(cloud(), max_pending=10)
    await storage.mark_cloud_message_delivered("dev-1", seq)
    assert await storage.delete_cloud_message("dev-2", seq) is None  # not that identity's
    assert await storage.delete_cloud_message("dev-1", seq) == stored(cloud(), seq, 1)
    assert await storage.delete_cloud_message("dev-1", seq) is None
    assert await storage.list_cloud_messages("dev-1") == []


async def test_purge_cloud_messages(storage: Storage) -> None:
    seqs = [await storage.enqueue_cloud_message(cloud("d", n), max_pending=10) for n in range(3)]
    kept = await storage.enqueue_cloud_message(cloud("d/m", 9), max_pending=10)
    purged = await storage.purge_cloud_messages("d")
    assert purged == [stored(cloud("d", n), seq) for n, seq in enumerate(seqs)]
    assert await storage.list_cloud_messages("d") == []
    assert await storage.purge_cloud_messages("d") == []
    assert [m.seq for m in await storage.list_cloud_messages("d/m")] == [kept]


async def test_take_expired_oldest_first_and_limited(storage: Storage) -> None:
    # Enqueued out of expiry order: "oldest first" is by expiry time, then by seq.
    expiries = {"late": 300.0, "early": 100.0, "tie-a": 200.0, "tie-b": 200.0, "live": 900.0}
    seq = {}
    for n, (name, expires_at) in enumerate(expiries.items()):
        identity = "dev-2" if name == "tie-a" else "dev-1"
        message = cloud(identity, n, expires_at=expires_at)
        seq[name] = await storage.enqueue_cloud_message(message, max_pending=10)
    taken = await storage.take_expired_cloud_messages(300.0, limit=2)
    assert [m.seq for m in taken] == [seq["early"], seq["tie-a"]]
    assert taken[1] == stored(cloud("dev-2", 2, expires_at=200.0), seq["tie-a"])
    assert await storage.take_expired_cloud_messages(0.0) == []
    rest = await storage.take_expired_cloud_messages(300.0)
    assert [m.seq for m in rest] == [seq["tie-b"], seq["late"]]  # expires_at == now counts
    assert await storage.take_expired_cloud_messages(300.0) == []
    assert [m.seq for m in await storage.list_cloud_messages("dev-1")] == [seq["live"]]
    assert await storage.take_expired_cloud_messages(1000.0, limit=0) == []


async def test_reopen_keeps_twins_sessions_and_cloud_messages(
    backend: Backend, storage: Storage
) -> None:
    await storage.insert_device(device("d"))
    await storage.insert_device(device("d/m"))
    await storage.put_twin(twin("d/m", desired='{"a":1}'), expected_version=None)
    await storage.put_session(session("d/m"))
    seq = await storage.enqueue_cloud_message(cloud("d/m", input_name="in"), max_pending=10)
    await storage.mark_cloud_message_delivered("d/m", seq)
    await storage.close()

    reopened = await backend.open()
    assert await reopened.list_modules("d") == [device("d/m")]
    assert await reopened.get_twin("d/m") == twin("d/m", desired='{"a":1}')
    assert await reopened.get_session("d/m") == session("d/m")
    assert await reopened.list_cloud_messages("d/m") == [
        stored(cloud("d/m", input_name="in"), seq, 1)
    ]
    # The counter survives too: a seq is not reused after a restart.
    await reopened.delete_cloud_message("d/m", seq)
    assert await reopened.enqueue_cloud_message(cloud("d/m"), max_pending=10) > seq


async def test_feedback_stream_round_trips(storage: Storage) -> None:
    seq = await storage.append(entry(0, stream=Stream.FEEDBACK, properties=(("outcome", "ok"),)))
    assert [m.stream for m in await storage.query_messages(stream=Stream.FEEDBACK)] == [
        Stream.FEEDBACK
    ]
    assert (await storage.query_messages())[0].seq == seq


# --- message log ------------------------------------------------------------------------------


async def test_append_then_query_round_trip(storage: Storage) -> None:
    entries = [
        entry(1, properties=(("$.ct", "application/json"), ("k", "v=ü"))),
        entry(2, device_id=None, stream=Stream.LIFECYCLE),
        LogEntry(Stream.SECURITY, "dev-2", 5.5, b"\x00\xff binary", packet_id=7, digest=b"d"),
        LogEntry(Stream.TELEMETRY, "dev-3", 6.0, b""),
    ]
    seqs = await asyncio.gather(*(storage.append(e) for e in entries))
    assert seqs == [1, 2, 3, 4]
    got = await storage.query_messages()
    assert got == [
        StoredMessage(s, e.stream, e.device_id, e.enqueued_at, e.payload, e.properties)
        for s, e in zip(seqs, entries, strict=True)
    ]


async def test_query_filters(storage: Storage) -> None:
    entries = [
        entry(1, device_id="a"),
        entry(2, device_id="b"),
        entry(3, device_id="a", stream=Stream.SECURITY),
        entry(4, device_id="a"),
        entry(5, device_id="b", stream=Stream.SECURITY),
    ]
    await asyncio.gather(*(storage.append(e) for e in entries))

    async def seqs(**kwargs: object) -> list[int]:
        return [m.seq for m in await storage.query_messages(**kwargs)]  # type: ignore[arg-type]

    assert await seqs(device_id="a") == [1, 3, 4]
    assert await seqs(stream=Stream.SECURITY) == [3, 5]
    assert await seqs(device_id="a", stream=Stream.SECURITY) == [3]
    assert await seqs(after_seq=3) == [4, 5]
    assert await seqs(device_id="a", after_seq=1, limit=1) == [3]
    assert await seqs(limit=0) == []
    assert await seqs(device_id="nobody") == []


async def test_last_seq(storage: Storage) -> None:
    assert await storage.last_seq() == 0
    await asyncio.gather(*(storage.append(entry(n)) for n in range(3)))
    assert await storage.last_seq() == 3


async def test_group_commit_batches_and_orders(backend: Backend, storage: Storage) -> None:
    count = 2000
    futures = [storage.append(entry(n)) for n in range(count)]
    seqs = await asyncio.gather(*futures)
    assert seqs == list(range(1, count + 1))  # resolved in order, strictly increasing, gap-free
    stats = storage.statistics()
    assert stats.committed_entries == count
    assert stats.commits < count // 10  # many appends, few transactions
    assert stats.failed_commits == 0
    assert stats.queued_entries == 0
    registry = backend.metrics.registry
    assert registry.get_sample_value("ironhub_commit_batch_size_count") == stats.commits
    assert registry.get_sample_value("ironhub_commit_batch_size_sum") == count
    assert registry.get_sample_value("ironhub_commit_seconds_count") == stats.commits


async def test_commit_batch_is_capped(backend: Backend) -> None:
    storage = await backend.open(StorageConfig(max_commit_batch=8))
    batches: list[int] = []
    storage.add_commit_listener(lambda _first, entries: batches.append(len(entries)))
    await asyncio.gather(*(storage.append(entry(n)) for n in range(100)))
    assert sum(batches) == 100
    assert max(batches) <= 8
    assert storage.statistics().commits == len(batches) >= 13


async def test_failed_commit_fails_every_future_of_the_batch(
    backend: Backend, storage: Storage
) -> None:
    backend.inject_commit_failure()
    poisoned = storage.append(entry(0, device_id=POISON_DEVICE))
    with pytest.raises(StorageError):
        await poisoned
    assert storage.statistics().failed_commits == 1

    # Entries appended together with a poisoned one: whatever shared its transaction fails,
    # and no failed entry is stored, no stored entry is failed.
    batch = [entry(n) for n in range(1, 50)]
    batch.insert(25, entry(99, device_id=POISON_DEVICE))
    results = await settle([storage.append(e) for e in batch])
    stored = {m.payload: m.seq for m in await storage.query_messages(limit=1000)}
    assert POISON_DEVICE not in {m.device_id for m in await storage.query_messages(limit=1000)}
    for e, result in zip(batch, results, strict=True):
        if isinstance(result, BaseException):
            assert isinstance(result, StorageError)
            assert e.payload not in stored
        else:
            assert stored[e.payload] == result
    assert isinstance(results[25], StorageError)

    # The store recovers, and sequence numbers stay gap-free.
    backend.clear_commit_failure()
    after = await storage.append(entry(100))
    assert after == len(stored) + 1
    assert [m.seq for m in await storage.query_messages(limit=1000)] == list(range(1, after + 1))


async def test_reopen_keeps_everything(backend: Backend, storage: Storage) -> None:
    await storage.insert_device(device())
    await storage.insert_ca(CARecord("AA" * 32, "CN=ca", "pem", 1.0))
    await storage.insert_token(token())
    await asyncio.gather(*(storage.append(entry(n, packet_id=n + 1)) for n in range(10)))
    await storage.close()

    reopened = await backend.open()
    assert await reopened.get_device("dev-1") == device()
    assert [c.fingerprint for c in await reopened.list_cas()] == ["AA" * 32]
    assert await reopened.find_token(b"h" * 32) == token()
    assert await reopened.count_tokens() == 1
    assert await reopened.last_seq() == 10
    assert await reopened.append(entry(10)) == 11


async def test_close_commits_what_was_queued(backend: Backend, storage: Storage) -> None:
    futures = [storage.append(entry(n)) for n in range(500)]
    await storage.close()
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == list(range(1, 501))
    reopened = await backend.open()
    assert await reopened.last_seq() == 500


async def test_closed_storage_refuses_work(storage: Storage) -> None:
    await storage.close()
    await storage.close()  # idempotent
    with pytest.raises(StorageError):
        await storage.append(entry())
    with pytest.raises(StorageError):
        await storage.get_device("dev-1")
    with pytest.raises(StorageError):
        await storage.insert_device(device())
    with pytest.raises(StorageError):
        await storage.get_twin("dev-1")
    with pytest.raises(StorageError):
        await storage.enqueue_cloud_message(cloud(), max_pending=10)


async def test_open_twice_is_refused(storage: Storage) -> None:
    with pytest.raises(StorageError, match="already open"):
        await storage.open()


async def test_commit_listener_sees_batches_in_commit_order(storage: Storage) -> None:
    seen: list[tuple[int, list[bytes]]] = []
    remove = storage.add_commit_listener(
        lambda first, entries: seen.append((first, [e.payload for e in entries]))
    )
    entries = [entry(n) for n in range(300)]
    await asyncio.gather(*(storage.append(e) for e in entries))
    flat = [(first + i, payload) for first, payloads in seen for i, payload in enumerate(payloads)]
    assert flat == [(n + 1, e.payload) for n, e in enumerate(entries)]
    remove()
    remove()  # idempotent
    await storage.append(entry(300))
    assert sum(len(p) for _, p in seen) == 300


async def test_raising_commit_listener_harms_nobody(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_first: int, _entries: Sequence[LogEntry]) -> None:
        raise RuntimeError("consumer bug")

    later: list[int] = []
    storage.add_commit_listener(broken)
    storage.add_commit_listener(lambda first, _entries: later.append(first))
    assert await storage.append(entry()) == 1
    assert later == [1]
    assert "commit listener failed" in caplog.text


async def test_cancelled_append_is_still_stored_and_announced(storage: Storage) -> None:
    announced: list[int] = []
    storage.add_commit_listener(
        lambda first, entries: announced.extend(range(first, first + len(entries)))
    )
    cancelled = storage.append(entry(0))
    cancelled.cancel()
    assert await storage.append(entry(1)) == 2
    assert [m.seq for m in await storage.query_messages()] == [1, 2]
    assert announced == [1, 2]


async def test_statistics_start_empty(storage: Storage) -> None:
    stats = storage.statistics()
    assert (stats.commits, stats.committed_entries, stats.queued_entries) == (0, 0, 0)
    assert stats.failed_commits == 0


# --- the SQLite file --------------------------------------------------------------------------


async def open_sqlite(path: Path, config: StorageConfig | None = None) -> SQLiteStorage:
    storage = SQLiteStorage(path, config or StorageConfig(), FakeClock())
    await storage.open()
    return storage


async def make_database(path: Path, entries: int = 0) -> None:
    storage = await open_sqlite(path)
    await storage.insert_device(device())
    await asyncio.gather(*(storage.append(entry(n)) for n in range(entries)))
    await storage.close()


async def test_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    old = os.umask(0o022)
    try:
        storage = await open_sqlite(path)
        await storage.append(entry())
    finally:
        os.umask(old)
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert files == {"hub.db": 0o600, "hub.db-wal": 0o600, "hub.db-shm": 0o600}
    await storage.close()


async def test_permissive_modes_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    await make_database(path)
    path.chmod(0o644)
    storage = await open_sqlite(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    await storage.close()


async def test_messages_table_has_no_secondary_index(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    await make_database(path)
    conn = sqlite3.connect(path)
    indexes = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'"
    ).fetchall()
    conn.close()
    assert indexes == []


async def test_leftover_from_interrupted_creation_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    (tmp_path / "hub.db.init").write_bytes(b"half-written")
    storage = await open_sqlite(path)
    assert await storage.count_tokens() == 0
    await storage.close()
    assert not (tmp_path / "hub.db.init").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "too short"),
        (b"SQLite format 3\x00" + b"\x00" * 20, "too short"),
        (b"this is not a database at all " * 100, "not a SQLite database"),
    ],
    ids=["empty", "header-only", "foreign-bytes"],
)
async def test_unreadable_file_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "hub.db"
    path.write_bytes(content)
    with pytest.raises(CorruptDatabaseError, match=message):
        await open_sqlite(path)
    assert path.read_bytes() == content  # never "repaired" into an empty hub


async def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    await make_database(path, entries=2000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDatabaseError, match="truncated"):
        await open_sqlite(path)


async def test_damaged_pages_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    await make_database(path, entries=2000)
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    for page in range(2, len(data) // page_size):
        data[page * page_size : page * page_size + 8] = b"\xa5" * 8  # smash page headers
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDatabaseError):
        await open_sqlite(path)


async def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE devices (device_id TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabaseError, match="not an ironhub database"):
        await open_sqlite(path)


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    await make_database(path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabaseError, match="newer ironhub"):
        await open_sqlite(path)


async def test_older_unknown_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    await make_database(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 0")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabaseError, match="unknown schema version 0"):
        await open_sqlite(path)


@pytest.mark.parametrize(
    "sql",
    [
        # Not the header's (current) version: derived, so that it stays wrong as versions grow.
        f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'",
        "DELETE FROM meta WHERE key = 'application'",
        "DROP TABLE tokens",
    ],
    ids=["meta-version", "meta-application", "missing-table"],
)
async def test_inconsistent_schema_is_refused(tmp_path: Path, sql: str) -> None:
    path = tmp_path / "hub.db"
    await make_database(path)
    conn = sqlite3.connect(path)
    conn.execute(sql)
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabaseError):
        await open_sqlite(path)


async def test_header_identifies_ironhub(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    await make_database(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_missing_directory_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        await open_sqlite(tmp_path / "absent" / "hub.db")
    assert not isinstance(info.value, CorruptDatabaseError)


async def test_unknown_synchronous_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="synchronous"):
        await open_sqlite(tmp_path / "hub.db", StorageConfig(synchronous="OFF"))
    assert not (tmp_path / "hub.db").exists()


async def test_corrupt_row_is_reported_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    await make_database(path, entries=1)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE devices SET auth_kind = 'password'")
    conn.execute("UPDATE messages SET stream = 'nonsense'")
    conn.commit()
    conn.close()
    storage = await open_sqlite(path)
    with pytest.raises(CorruptDatabaseError):
        await storage.get_device("dev-1")
    with pytest.raises(CorruptDatabaseError):
        await storage.query_messages()
    await storage.close()


async def test_corrupt_session_and_cloud_rows_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    storage = await open_sqlite(path)
    await storage.put_session(session())
    seq = await storage.enqueue_cloud_message(cloud(), max_pending=10)
    await storage.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE sessions SET subscriptions = '[\"not-a-pair\"]'")
    conn.execute("UPDATE cloud_messages SET properties = x'c1'")
    conn.commit()
    conn.close()
    storage = await open_sqlite(path)
    with pytest.raises(CorruptDatabaseError):
        await storage.get_session("dev-1")
    with pytest.raises(CorruptDatabaseError):
        await storage.list_cloud_messages("dev-1")
    with pytest.raises(CorruptDatabaseError):
        await storage.delete_cloud_message("dev-1", seq)
    # A refused removal removes nothing.
    assert len(await storage.purge_cloud_messages("dev-2")) == 0
    with pytest.raises(CorruptDatabaseError):
        await storage.purge_cloud_messages("dev-1")
    with pytest.raises(CorruptDatabaseError):
        await storage.take_expired_cloud_messages(1e12)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM cloud_messages").fetchone()[0] == 1
    conn.close()
    await storage.close()


async def test_cloud_messages_table_has_its_indexes(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    await make_database(path)
    conn = sqlite3.connect(path)
    indexes = {
        row[0]: row[1]
        for row in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
            ("cloud_messages",),
        )
    }
    conn.close()
    assert len(indexes) == 2
    assert any("(identity, seq)" in sql for sql in indexes.values())
    assert any("(expires_at)" in sql for sql in indexes.values())


# --- audit log ---------------------------------------------------------------------------


async def test_audit_records_append_read_and_refuse_rewrites(storage: Storage) -> None:
    records = [(i, bytes([i]) * 32, b'{"seq":%d}' % i) for i in range(5)]
    await storage.append_audit(records[:3])
    await storage.append_audit(records[3:])
    assert await storage.read_audit() == records
    assert await storage.read_audit(after_seq=2, limit=1) == [records[3]]
    assert await storage.audit_hashes() == [r[1] for r in records]
    with pytest.raises(ConflictError):
        await storage.append_audit([(4, b"x" * 32, b"rewritten")])
    # The failed batch left nothing behind (one transaction).
    with pytest.raises(ConflictError):
        await storage.append_audit([(5, b"y" * 32, b"new"), (2, b"z" * 32, b"again")])
    assert await storage.read_audit() == records


async def test_audit_checkpoints_in_tree_order(storage: Storage) -> None:
    assert await storage.audit_checkpoints() == []
    await storage.put_audit_checkpoint(10, '{"tree_size":10}')
    await storage.put_audit_checkpoint(3, '{"tree_size":3}')
    await storage.put_audit_checkpoint(10, '{"tree_size":10,"again":1}')
    assert await storage.audit_checkpoints() == [
        (3, '{"tree_size":3}'),
        (10, '{"tree_size":10,"again":1}'),
    ]


async def test_messages_by_time(storage: Storage) -> None:
    for i, when in enumerate((10.0, 20.0, 30.0, 40.0)):
        await storage.append(
            LogEntry(Stream.SECURITY, "dev-t" if i % 2 else "other", when, b"%d" % i)
        )
    await asyncio.sleep(0)  # the appends commit in one batch; wait for it below
    for _ in range(100):
        if len(await storage.query_messages()) == 4:
            break
        await asyncio.sleep(0.01)
    found = await storage.query_messages(since=20.0, until=40.0)
    assert [m.enqueued_at for m in found] == [20.0, 30.0]
    mine = await storage.query_messages(device_id="dev-t", stream=Stream.SECURITY, since=25.0)
    assert [m.payload for m in mine] == [b"3"]
    assert await storage.query_messages(until=10.0) == []
