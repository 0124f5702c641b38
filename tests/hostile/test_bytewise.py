"""Bytes one at a time and many packets in one read give the same outcome (§3.2 item 12).

Two sessions are written either in one write, or one byte per write with a drain after each
(one TLS record per byte):

- CONNECT, SUBSCRIBE, PUBLISH QoS 1, PINGREQ; once every answer is in, DISCONNECT;
- CONNECT, SUBSCRIBE, PINGREQ, DISCONNECT in one go: the answers to the packets before the
  DISCONNECT still come, then the hub closes (this once raised an internal error: the codec is
  closed by the DISCONNECT before the PINGREQ is answered).

The hub must answer the same packets in every case, store the message exactly once, and record
no security event.
"""

from __future__ import annotations

import pytest
from tests.support.hostile import (
    HostileGuard,
    close_writer,
    open_raw,
    security_events,
    wait_for_lifecycle,
)
from tests.support.hubkit import HubFactory
from tests.support.mqtt_client import TestDevice

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


def _connect(device_id: str, username: str, password: bytes) -> Connect:
    return Connect(
        client_id=device_id,
        keep_alive_seconds=60,
        clean_session=True,
        username=username,
        password=password,
    )


SESSIONS = {
    "pipelined": (
        Subscribe(1, (("devices/cuts/messages/devicebound/#", 1),)),
        Publish(topic="devices/cuts/messages/events/", payload=b"one-by-one", qos=1, packet_id=2),
        PingReq(),
    ),
    "ends-with-disconnect": (
        Subscribe(1, (("devices/cuts/messages/devicebound/#", 1),)),
        PingReq(),
        Disconnect(),
    ),
}
ANSWERS = {
    "pipelined": [SubAck(1, (1,)), PubAck(2), PingResp()],
    "ends-with-disconnect": [SubAck(1, (1,)), PingResp()],
}


@pytest.mark.parametrize("session", SESSIONS)
@pytest.mark.parametrize("bytewise", [False, True], ids=["one-write", "byte-per-write"])
async def test_session_outcome_does_not_depend_on_cuts(
    hub_factory: HubFactory, guard: HostileGuard, bytewise: bool, session: str
) -> None:
    hub = await hub_factory()
    kit = await guard.watch(hub)
    creds = await kit.create_sas("cuts")
    connect = _connect("cuts", creds.username(), creds.password())
    encoder = MQTTConnection(Role.CLIENT)
    data = b"".join(encoder.send(packet) for packet in (connect, *SESSIONS[session]))
    device = TestDevice(*await open_raw(*kit.hub.endpoint.address, ssl_context=kit.ctx))
    device.codec.send(connect)  # The device's own codec decodes the answers.
    try:
        if bytewise:
            for i in range(len(data)):
                device.writer.write(data[i : i + 1])
                await device.writer.drain()
        else:
            device.writer.write(data)
            await device.writer.drain()
        expected = [ConnAck(ConnectReturnCode.ACCEPTED, session_present=False), *ANSWERS[session]]
        received = [await device.recv(timeout=5) for _ in expected]
        # PINGRESP needs no commit, so it may overtake a PUBACK; only PUBACKs are ordered.
        assert received[0] == expected[0]
        assert sorted(map(repr, received)) == sorted(map(repr, expected))
        if session == "pipelined":
            device.send(Disconnect())
        assert await device.wait_closed(timeout=5)
        assert device._queue == []
    finally:
        await close_writer(device.writer)

    stored = await hub.services.log.query(device_id="cuts", stream=Stream.TELEMETRY)
    assert [m.payload for m in stored] == ([b"one-by-one"] if session == "pipelined" else [])
    expected_lifecycle = ["connected", "disconnected"]
    assert await wait_for_lifecycle(hub, "cuts", expected_lifecycle) == expected_lifecycle
    # Committed in order: nothing recorded before the disconnection means nothing at all.
    assert await security_events(hub) == []

    await guard.check(hub)
