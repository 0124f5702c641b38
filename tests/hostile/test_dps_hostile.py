"""Hostile provisioning clients against the DPS side of the listener (issue 5).

Live TLS connections to a real hub, each test ending with the (a)(b)(c) checks of
tests/support/hostile.py. The vectors of tests/vectors/dps.json (the same ones the unit tests
give the pure codec and the fuzz harness mutates) are played from their own loopback sources:

- ``username``: an ``ok`` username gets CONNACK 0 (no credential: a claim-token connection),
  an ``error`` one CONNACK 5 and a ``provisioning-refused`` event;
- ``topic``: an ``ok`` request topic is answered on the response topic, an ``error`` one closes
  the connection with nothing sent and a ``publish-denied`` event;
- ``register-body``: an ``ok`` body is answered ``202``, an ``error`` one ``400`` with Azure's
  error JSON (the connection stays usable) and a ``provisioning-refused`` event.

The behaviour tests: a filter other than ``$dps/registrations/res/#``, QoS 2, a message over
96 KiB each close with an event; a fifth register request on one connection gets 429; a status
request for another registration's operation gets 404.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.fuzz.fuzz_dps import load_dps_vectors
from tests.support.dps_client import DpsClient
from tests.support.hostile import HostileGuard, wait_for_events
from tests.support.hubkit import HubFactory
from tests.support.mqtt_client import TestDevice, client_tls_context

from ironhub.codec import dps
from ironhub.codec.mqtt import ConnAck, Connect, Publish, SubAck, Subscribe
from ironhub.errors import LocalProtocolError
from ironhub.server import RunningHub

pytestmark = pytest.mark.asyncio

#: The ID scope of the vectors.
SCOPE = "0ne000ABCDE"
VECTORS = load_dps_vectors()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return len(data).to_bytes(2, "big") + data


def _raw_connect(client_id: str, username: str) -> bytes:
    """A CONNECT our client codec would refuse to write (the hub's codec must refuse it)."""
    body = _text("MQTT") + b"\x04\x82" + (30).to_bytes(2, "big")
    body += _text(client_id) + _text(username)
    return b"\x10" + _varint(len(body)) + body


def _raw_publish(topic: str, payload: bytes, packet_id: int) -> bytes:
    body = _text(topic) + packet_id.to_bytes(2, "big") + payload
    return b"\x32" + _varint(len(body)) + body


def _source(index: int) -> str:
    return f"127.0.{60 + index // 250}.{1 + index % 250}"


async def _hub(hub_factory: HubFactory) -> RunningHub:
    return await hub_factory(
        provisioning_id_scope=SCOPE,
        mqtt_max_preauth_connections_per_source="1000",
        limits_connections_per_source_per_second="1000",
    )


async def _claim_connection(hub: RunningHub, registration_id: str, source: str) -> DpsClient:
    """A provisioning connection with no credential (what a claim-token device opens)."""
    host, port = hub.endpoint.address
    device = await TestDevice.connect(
        host,
        port,
        client_tls_context(hub.info.ca_path),
        client_id=registration_id,
        username=f"{SCOPE}/registrations/{registration_id}/api-version=2019-03-31",
        password=None,
        clean_session=True,
        local_addr=(source, 0),
    )
    device.send(Subscribe(device.packet_id(), ((dps.RESPONSE_FILTER, 1),)))
    await device.recv(SubAck)
    return DpsClient(device, registration_id)


async def _closed_without_answer(device: TestDevice) -> bool:
    try:
        packet = await device.recv(timeout=2.0)
    except (ConnectionError, asyncio.IncompleteReadError):
        return True
    raise AssertionError(f"the hub answered {packet!r} instead of closing")


async def test_username_vectors_live(hub_factory: HubFactory, guard: HostileGuard) -> None:
    hub = await _hub(hub_factory)
    await guard.watch(hub)
    host, port = hub.endpoint.address
    ctx = client_tls_context(hub.info.ca_path)
    for index, vector in enumerate(v for v in VECTORS if v.kind == "username"):
        source = _source(index)
        device = await TestDevice.open(host, port, ctx, local_addr=(source, 0))
        connect = Connect(
            client_id=vector.client_id or "x",
            keep_alive_seconds=30,
            clean_session=True,
            username=vector.text,
            password=None,
        )
        try:
            device.send(connect)
        except LocalProtocolError:
            device.send_raw(_raw_connect(connect.client_id, vector.text))
        try:
            ack = await device.recv(ConnAck)
            code = int(ack.return_code)
        except ConnectionError:
            code = -1  # refused by the codec before any CONNACK
        await device.close()
        if vector.expect == "ok":
            assert code == 0, (vector.name, code)
        else:
            assert code != 0, vector.name
    await guard.check(hub)


async def test_topic_vectors_live(hub_factory: HubFactory, guard: HostileGuard) -> None:
    hub = await _hub(hub_factory)
    await guard.watch(hub)
    for index, vector in enumerate(v for v in VECTORS if v.kind == "topic"):
        source = _source(index)
        client = await _claim_connection(hub, "probe-1", source)
        device = client.device
        try:
            device.send(Publish(vector.text, b" ", qos=1, packet_id=device.packet_id()))
        except LocalProtocolError:
            device.send_raw(_raw_publish(vector.text, b" ", device.packet_id()))
        if vector.expect == "ok":
            answer = await client._answer()
            assert answer.status in (202, 400, 404), (vector.name, answer)
            await client.close()
            continue
        assert await _closed_without_answer(device), vector.name
        await device.close()
        events = [
            e
            for e in await wait_for_events(hub, peer=source)
            if e["event"] in ("publish-denied", "protocol-error")
        ]
        assert events, vector.name
    await guard.check(hub)


async def test_register_body_vectors_live(hub_factory: HubFactory, guard: HostileGuard) -> None:
    hub = await _hub(hub_factory)
    await guard.watch(hub)
    for index, vector in enumerate(v for v in VECTORS if v.kind == "register-body"):
        source = _source(index)
        assert vector.registration_id is not None
        client = await _claim_connection(hub, vector.registration_id, source)
        if len(vector.body) > dps.MAX_DPS_MESSAGE_BYTES:
            # Over Azure's message limit: the connection is closed, not answered.
            topic = dps.register_topic("r1")
            client.device.send(Publish(topic, vector.body, qos=1, packet_id=1))
            assert await _closed_without_answer(client.device), vector.name
            await client.close()
            events = await wait_for_events(hub, event="publish-denied", peer=source)
            assert events and events[0]["reason"] == "too-large", vector.name
            continue
        answer = await client.request_register(raw_body=vector.body)
        await client.close()
        if vector.expect == "ok":
            # Accepted by the wire rules; the assignment then fails (no claim token), which
            # is the service's business, not the codec's.
            assert answer.status == 202, (vector.name, answer)
            continue
        assert answer.status == 400, (vector.name, answer)
        assert answer.body["errorCode"] == 400004
        events = await wait_for_events(hub, event="provisioning-refused", peer=source)
        assert events and events[0]["reason"] == "bad-request", vector.name
    await guard.check(hub)


@pytest.mark.parametrize(
    ("name", "packet"),
    [
        ("foreign-filter", Subscribe(7, (("$iothub/twin/res/#", 1),))),
        ("wildcard-filter", Subscribe(7, (("#", 1),))),
        ("qos2", Publish(dps.register_topic("r1"), b"{}", qos=2, packet_id=7)),
        (
            "too-large",
            Publish(dps.register_topic("r1"), b" " * (96 * 1024 + 1), qos=1, packet_id=7),
        ),
        ("hub-topic", Publish("devices/probe-1/messages/events/", b"x", qos=1, packet_id=7)),
    ],
)
async def test_forbidden_packets_close_with_an_event(
    hub_factory: HubFactory, guard: HostileGuard, name: str, packet: Any
) -> None:
    hub = await _hub(hub_factory)
    await guard.watch(hub)
    client = await _claim_connection(hub, "probe-1", "127.0.70.1")
    client.device.send(packet)
    assert await _closed_without_answer(client.device), name
    await client.close()
    events = [
        e
        for e in await wait_for_events(hub, peer="127.0.70.1")
        if e["event"]
        in ("subscribe-denied", "publish-denied", "protocol-refused", "protocol-error")
    ]
    assert events, name
    await guard.check(hub)


async def test_register_floods_and_foreign_operations(
    hub_factory: HubFactory, guard: HostileGuard, tmp_path: Path
) -> None:
    hub = await _hub(hub_factory)
    await guard.watch(hub)
    client = await _claim_connection(hub, "probe-1", "127.0.71.1")
    statuses = [(await client.request_register()).status for _ in range(5)]
    assert statuses == [202, 202, 202, 202, 429]
    other = await _claim_connection(hub, "probe-2", "127.0.71.2")
    first = await other.request_register()
    # probe-1 may not read probe-2's operation: 404, as for one that does not exist.
    answer = await client.request_status(first.body["operationId"])
    assert answer.status == 404
    assert json.loads(json.dumps(answer.body))["errorCode"] == 404002
    answer = await client.request_status(f"4.{uuid.uuid4().hex}")
    assert answer.status == 404
    await client.close()
    await other.close()
    await guard.check(hub)
