"""Bytes one at a time and many packets in one read give the same outcome (§3.2 item 12).

A session (CONNECT, SUBSCRIBE, PUBLISH QoS 1, PINGREQ, DISCONNECT) is written either in one
write, or one byte per write with a drain after each (one TLS record per byte). The hub must
answer the same packets in both cases, store the message exactly once, and close cleanly after
the DISCONNECT.
"""

from __future__ import annotations

import pytest
from tests.support.hostile import (
    HostileGuard,
    close_writer,
    lifecycle_events,
    open_raw,
    read_until_closed,
    security_events,
)
from tests.support.hubkit import HubFactory

from ironhub.codec.mqtt import (
    ConnAck,
    Connect,
    ConnectReturnCode,
    Disconnect,
    MQTTConnection,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    Role,
    SubAck,
    Subscribe,
)
from ironhub.storage.interfaces import Stream

pytestmark = pytest.mark.asyncio


def _session(device_id: str, username: str, password: bytes) -> bytes:
    codec = MQTTConnection(Role.CLIENT)
    return b"".join(
        codec.send(packet)
        for packet in (
            Connect(
                client_id=device_id,
                keep_alive_seconds=60,
                clean_session=True,
                username=username,
                password=password,
            ),
            Subscribe(1, ((f"devices/{device_id}/messages/devicebound/#", 1),)),
            Publish(
                topic=f"devices/{device_id}/messages/events/",
                payload=b"one-by-one",
                qos=1,
                packet_id=2,
            ),
            PingReq(),
            Disconnect(),
        )
    )


@pytest.mark.parametrize("bytewise", [False, True], ids=["one-write", "byte-per-write"])
async def test_session_outcome_does_not_depend_on_cuts(
    hub_factory: HubFactory, guard: HostileGuard, bytewise: bool
) -> None:
    hub = await hub_factory()
    kit = await guard.watch(hub)
    creds = await kit.create_sas("cuts")
    data = _session("cuts", creds.username(), creds.password())
    reader, writer = await open_raw(*kit.hub.endpoint.address, ssl_context=kit.ctx)
    try:
        if bytewise:
            for i in range(len(data)):
                writer.write(data[i : i + 1])
                await writer.drain()
        else:
            writer.write(data)
            await writer.drain()
        received, closed = await read_until_closed(reader, timeout=5)
    finally:
        await close_writer(writer)

    assert closed
    codec = MQTTConnection(Role.CLIENT)
    codec.send(Connect(client_id="cuts", keep_alive_seconds=60))
    packets = codec.receive_data(received)
    assert packets == [
        ConnAck(ConnectReturnCode.ACCEPTED, session_present=False),
        SubAck(1, (1,)),
        PubAck(2),
        PingResp(),
    ]
    stored = await hub.services.log.query(device_id="cuts", stream=Stream.TELEMETRY)
    assert [m.payload for m in stored] == [b"one-by-one"]
    assert await security_events(hub) == []
    assert await lifecycle_events(hub, "cuts") == ["connected", "disconnected"]

    await guard.check(hub)
