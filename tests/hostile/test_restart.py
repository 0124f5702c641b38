"""A hub restarts cleanly from the database its hostile runs wrote (SECURITY-TESTS.md §3.11.48).

One data directory takes a batch of the attacks of this directory (malformed vectors, a
connection flood, a 200 MB header, a subscription bomb, a slow consumer, plain TCP on the TLS
port) next to a device's pipelined QoS 1 telemetry. Then the hub stops, and a new hub starts on
the same directory: it comes up, the canary works, the earlier messages and security events are
all there, and the earlier device reconnects with its old key.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from tests.support.hostile import (
    TELEMETRY,
    HostileGuard,
    close_writer,
    open_raw,
    ping_flood_until_closed,
    play_vector,
    read_until_closed,
    security_events,
    wait_until,
)
from tests.support.hubkit import DeviceKit, HubFactory
from tests.support.mqtt_client import TestDevice
from tests.vectors.load import load_vectors

from ironhub.codec.mqtt import ConnAck, Connect, Subscribe, encode_packet
from ironhub.storage.interfaces import Stream

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.asyncio

MESSAGES = 100


async def _hostile_batch(kit: DeviceKit) -> None:
    hub = kit.hub
    host, port = hub.endpoint.address

    # Malformed packets: every seventh refused vector, each from its own address.
    refused = [v for v in load_vectors("mqtt_server_malformed") if v["expect"] != "packets"]
    for index, vector in enumerate(refused[::7]):
        assert await play_vector(kit, vector, f"127.0.20.{index + 1}") is None, vector["name"]

    # A flood of TCP connections that never start TLS (closed at the 0.5 s handshake deadline).
    flood = [await open_raw(host, port, local_addr="127.0.21.1") for _ in range(30)]
    await asyncio.gather(*(read_until_closed(reader, timeout=5) for reader, _ in flood))
    for _, writer in flood:
        await close_writer(writer)

    # A CONNECT declaring 200 MB; plain TCP bytes where the ClientHello should be.
    for data, ctx in (
        (b"\x10\x80\xc2\xd7\x2f", kit.ctx),
        (encode_packet(Connect(client_id="x", keep_alive_seconds=60)), None),
    ):
        reader, writer = await open_raw(host, port, local_addr="127.0.22.1", ssl_context=ctx)
        writer.write(data)
        assert (await read_until_closed(reader, timeout=5))[1]
        await close_writer(writer)

    # A subscription bomb from an authenticated device.
    bomber = await kit.connect(await kit.create_sas("bomber"), local_addr=("127.0.23.1", 0))
    bomber.send(Subscribe(1, tuple((f"a{i}", 1) for i in range(10_000))))
    assert await bomber.wait_closed()
    await close_writer(bomber.writer)

    # A slow consumer: a PINGREQ flood whose answers are never read.
    creds = await kit.create_sas("sloth")
    sloth = TestDevice(
        *await open_raw(host, port, local_addr="127.0.24.1", ssl_context=kit.ctx, rcvbuf=4096)
    )
    sloth.send(
        Connect(
            client_id="sloth",
            keep_alive_seconds=60,
            username=creds.username(),
            password=creds.password(),
        )
    )
    await sloth.recv(ConnAck)
    await ping_flood_until_closed(sloth)
    assert await sloth.wait_closed()
    await close_writer(sloth.writer)


async def test_restart_from_a_database_written_under_attack(
    hub_factory: HubFactory, guard: HostileGuard, tmp_path: Path
) -> None:
    data_dir = tmp_path / "attacked"
    hub = await hub_factory(
        data_dir=data_dir,
        mqtt_tls_handshake_timeout_seconds="0.5",
        limits_connections_per_source_per_second="0",
    )
    kit = await guard.watch(hub)
    keeper = await kit.create_sas("keeper")
    device = await kit.connect(keeper)
    payloads = [f"k{i:03d}".encode() for i in range(MESSAGES)]
    await device.publish_pipelined(TELEMETRY.format("keeper"), payloads)
    await device.close()

    await _hostile_batch(kit)
    await guard.check(hub)
    events_before = await security_events(hub)
    assert {"protocol-error", "tls-handshake-failed", "slow-consumer"} <= {
        e["event"] for e in events_before
    }
    await hub.stop()

    restarted = await hub_factory(data_dir=data_dir)
    assert restarted.info.first_admin_token is None  # The same store, not a new one.
    kit = await guard.watch(restarted)
    stored = await restarted.services.log.query(
        device_id="keeper", stream=Stream.TELEMETRY, limit=1000
    )
    assert [m.payload for m in stored] == payloads
    assert await security_events(restarted) == events_before
    device = await kit.connect(keeper)
    await device.publish(TELEMETRY.format("keeper"), b"after restart")
    await device.close()
    assert await wait_until(lambda: restarted.endpoint.statistics().connections == 0)
    await guard.check(restarted)
