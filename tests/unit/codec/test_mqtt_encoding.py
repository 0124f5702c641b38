"""encode_packet: golden bytes, round trips through both roles, and what it refuses to encode."""

from __future__ import annotations

import pytest

from ironhub.codec.mqtt import (
    SUBACK_FAILURE,
    ConnAck,
    Connect,
    ConnectionState,
    ConnectReturnCode,
    Disconnect,
    MQTTConnection,
    MQTTLimits,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Role,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    Will,
    encode_packet,
)
from ironhub.codec.mqtt._encoder import _fixed_header
from ironhub.codec.mqtt._rules import MAX_PACKET_BYTES, MAX_REMAINING_LENGTH
from ironhub.errors import LocalProtocolError

CONNECT = Connect(client_id="vector", keep_alive_seconds=60)
BIG = MQTTLimits(max_packet_bytes=MAX_PACKET_BYTES)

GOLDEN = [
    (CONNECT, "101200044d5154540402003c0006766563746f72"),
    (
        Connect(
            client_id="c",
            keep_alive_seconds=10,
            clean_session=False,
            username="u",
            password=b"p",
            will=Will(topic="w", payload=b"m", qos=2, retain=True),
        ),
        "101900044d51545404f4000a00016300017700016d000175000170",
    ),
    (ConnAck(ConnectReturnCode.ACCEPTED), "20020000"),
    (ConnAck(ConnectReturnCode.ACCEPTED, session_present=True), "20020100"),
    (ConnAck(ConnectReturnCode.NOT_AUTHORIZED), "20020005"),
    (Publish("a/b", b"hi"), "30070003612f626869"),
    (Publish("a/b", b"hi", qos=1, retain=True, packet_id=10), "33090003612f62000a6869"),
    (Publish("a/b", b"", qos=2, dup=True, packet_id=0xFFFF), "3c070003612f62ffff"),
    (PubAck(1), "40020001"),
    (PubRec(2), "50020002"),
    (PubRel(3), "62020003"),
    (PubComp(4), "70020004"),
    (Subscribe(1, (("a/#", 1),)), "820800010003612f2301"),
    (Subscribe(7, (("+", 0), ("b", 2))), "820a000700012b0000016202"),
    (SubAck(1, (0, 1, 2, SUBACK_FAILURE)), "9006000100010280"),
    (Unsubscribe(2, ("a",)), "a2050002000161"),
    (UnsubAck(2), "b0020002"),
    (PingReq(), "c000"),
    (PingResp(), "d000"),
    (Disconnect(), "e000"),
]


@pytest.mark.parametrize(("packet", "hex_bytes"), GOLDEN, ids=lambda p: type(p).__name__)
def test_golden_bytes(packet: Packet, hex_bytes: str) -> None:
    assert encode_packet(packet).hex() == hex_bytes


def server_receives(*packets: Packet, connect: Connect = CONNECT) -> list[Packet]:
    """Encode ``connect`` then ``packets`` as a client would, decode them as the server."""
    client = MQTTConnection(Role.CLIENT)
    data = client.send(connect) + b"".join(client.send(packet) for packet in packets)
    server = MQTTConnection(Role.SERVER)
    received = server.receive_data(data)
    assert server.state is ConnectionState.CONNECT_RECEIVED
    server.send(ConnAck(ConnectReturnCode.ACCEPTED))
    return received + server.receive_data(b"")


def client_receives(*packets: Packet, connack: ConnAck | None = None) -> list[Packet]:
    """Encode a CONNACK then ``packets`` as a server would, decode them as the client."""
    server = MQTTConnection(Role.SERVER)
    server.receive_data(encode_packet(CONNECT))
    data = server.send(connack or ConnAck(ConnectReturnCode.ACCEPTED))
    data += b"".join(server.send(packet) for packet in packets)
    client = MQTTConnection(Role.CLIENT)
    client.send(CONNECT)
    return client.receive_data(data)


CLIENT_PACKETS: list[Packet] = [
    Publish("devices/d/messages/events/", b"{}"),
    Publish("a", b"x" * 300, qos=1, packet_id=1),
    Publish("a/b/c", b"", qos=2, retain=True, dup=True, packet_id=65535),
    Publish("\u00e9/\u6f22/\U0001f600/\ufeff", b"\x00\xff"),
    PubAck(1),
    PubRec(2),
    PubRel(3),
    PubComp(4),
    Subscribe(5, (("devices/d/messages/devicebound/#", 1), ("+/x/+", 2), ("#", 0))),
    Unsubscribe(6, ("a/#", "+")),
    PingReq(),
    Disconnect(),
]

SERVER_PACKETS: list[Packet] = [
    Publish("devices/d/messages/devicebound/%24.to=x", b"c2d", qos=1, packet_id=9),
    Publish("$iothub/twin/res/200/?$rid=1", b"{}", retain=True),
    PubAck(1),
    PubRec(2),
    PubRel(3),
    PubComp(4),
    SubAck(5, (1, SUBACK_FAILURE)),
    UnsubAck(6),
    PingResp(),
]


def test_every_client_packet_round_trips_through_a_server() -> None:
    assert server_receives(*CLIENT_PACKETS) == [CONNECT, *CLIENT_PACKETS]


def test_every_server_packet_round_trips_through_a_client() -> None:
    assert client_receives(*SERVER_PACKETS) == [
        ConnAck(ConnectReturnCode.ACCEPTED),
        *SERVER_PACKETS,
    ]


@pytest.mark.parametrize(
    "connect",
    [
        CONNECT,
        Connect(client_id="", keep_alive_seconds=0),
        Connect(client_id="d", keep_alive_seconds=65535, clean_session=False),
        Connect(client_id="d", keep_alive_seconds=1, username="hub/d/?api-version=2021-04-12"),
        Connect(client_id="d", keep_alive_seconds=1, username="", password=b""),
        Connect(client_id="d", keep_alive_seconds=1, username="u", password=b"\x00" * 300),
        Connect(client_id="d", keep_alive_seconds=1, will=Will("w/t", b"", 0, False)),
        Connect(client_id="d", keep_alive_seconds=1, will=Will("w", b"bye" * 50, 1, True)),
        Connect(client_id="\u00e9\U0001f600", keep_alive_seconds=1, will=Will("w", b"", 2, False)),
    ],
    ids=repr,
)
def test_connect_variants_round_trip(connect: Connect) -> None:
    assert server_receives(connect=connect) == [connect]


@pytest.mark.parametrize(
    "connack",
    [ConnAck(ConnectReturnCode(code)) for code in range(6)]
    + [ConnAck(ConnectReturnCode.ACCEPTED, session_present=True)],
    ids=repr,
)
def test_connack_variants_round_trip(connack: ConnAck) -> None:
    server = MQTTConnection(Role.SERVER)
    server.receive_data(encode_packet(Connect("d", 1, clean_session=False)))
    client = MQTTConnection(Role.CLIENT)
    client.send(CONNECT)
    assert client.receive_data(server.send(connack)) == [connack]
    expected = ConnectionState.CLOSED if connack.return_code else ConnectionState.CONNECTED
    assert client.state is expected
    assert server.state is expected


@pytest.mark.parametrize(
    ("body_bytes", "header_bytes"),
    [(127, 2), (128, 3), (16_383, 3), (16_384, 4), (2_097_151, 4), (2_097_152, 5)],
)
def test_remaining_length_boundaries(body_bytes: int, header_bytes: int) -> None:
    publish = Publish("t", b"p" * (body_bytes - 3))  # topic "t" costs 3 body bytes
    data = encode_packet(publish)
    assert len(data) == header_bytes + body_bytes
    server = MQTTConnection(Role.SERVER, BIG)
    server.receive_data(encode_packet(CONNECT))
    server.send(ConnAck(ConnectReturnCode.ACCEPTED))
    assert server.receive_data(data) == [publish]


def test_fixed_header_at_the_framing_limit() -> None:
    assert _fixed_header(0x30, MAX_REMAINING_LENGTH) == bytes.fromhex("30ffffff7f")
    with pytest.raises(LocalProtocolError, match="larger than"):
        _fixed_header(0x30, MAX_REMAINING_LENGTH + 1)


REFUSED = [
    ("not a packet", "not an MQTT 3.1.1 packet"),
    (PubAck(0), "1..65535"),
    (PubRec(65536), "1..65535"),
    (PubRel(-1), "1..65535"),
    (PubComp(0), "1..65535"),
    (UnsubAck(0), "1..65535"),
    (Publish("a", b"", qos=0, packet_id=1), "QoS 0 PUBLISH with a packet identifier"),
    (Publish("a", b"", qos=0, dup=True), "DUP"),
    (Publish("a", b"", qos=1), "1..65535"),
    (Publish("a", b"", qos=2, packet_id=0), "1..65535"),
    (Publish("a", b"", qos=3, packet_id=1), "QoS must be"),
    (Publish("a", b"", qos=-1, packet_id=1), "QoS must be"),
    (Publish("", b""), "empty topic"),
    (Publish("a/+", b""), "wildcard"),
    (Publish("a/#", b""), "wildcard"),
    (Publish("\u00e9/+", b""), "wildcard"),
    (Publish("a\x00", b""), "control character"),
    (Publish("a\x1f", b""), "control character"),
    (Publish("a\x9f", b""), "control character"),
    (Publish("a\ufffe", b""), "non-character"),
    (Publish("a\U0010ffff", b""), "non-character"),
    (Publish("a\ud800", b""), "surrogate"),
    (Publish("a" * 65536, b""), "longer than 65535"),
    (Connect("d", 1, protocol_name="MQIsdp", protocol_level=3), "only MQTT 3.1.1"),
    (Connect("d", 1, protocol_level=5), "only MQTT 3.1.1"),
    (Connect("d", -1), "keep alive"),
    (Connect("d", 65536), "keep alive"),
    (Connect("", 1, clean_session=False), "MQTT-3.1.3-7"),
    (Connect("d", 1, password=b"p"), "MQTT-3.1.2-22"),
    (Connect("d", 1, will=Will("w", b"", 3, False)), "will QoS"),
    (Connect("d", 1, will=Will("w/#", b"", 0, False)), "will topic: wildcard"),
    (Connect("d", 1, will=Will("", b"", 0, False)), "will topic: empty"),
    (Connect("d", 1, will=Will("w", b"m" * 65536, 0, False)), "will message is longer"),
    (Connect("d\x00", 1), "U\\+0000"),
    (Connect("d", 1, username="\udc00"), "surrogate"),
    (Connect("d", 1, username="u", password=b"p" * 65536), "password is longer"),
    (ConnAck(6), "unknown CONNACK return code"),  # type: ignore[arg-type]
    (ConnAck(ConnectReturnCode.NOT_AUTHORIZED, session_present=True), "MQTT-3.2.2-4"),
    (SubAck(1, ()), "at least one return code"),
    (SubAck(1, (3,)), "0, 1, 2 or 0x80"),
    (SubAck(1, (0x81,)), "0, 1, 2 or 0x80"),
    (SubAck(0, (0,)), "1..65535"),
    (Subscribe(1, ()), "at least one topic filter"),
    (Subscribe(1, (("a/#/b", 0),)), "MQTT-4.7.1-2"),
    (Subscribe(1, (("a+", 0),)), "MQTT-4.7.1-3"),
    (Subscribe(1, (("", 0),)), "empty topic filter"),
    (Subscribe(1, (("a\x00", 0),)), "control character"),
    (Subscribe(1, (("a", 3),)), "requested QoS"),
    (Subscribe(0, (("a", 0),)), "1..65535"),
    (Unsubscribe(1, ()), "at least one topic filter"),
    (Unsubscribe(1, ("#/a",)), "MQTT-4.7.1-2"),
    (Unsubscribe(65536, ("a",)), "1..65535"),
]


@pytest.mark.parametrize(("packet", "reason"), REFUSED, ids=repr)
def test_encoder_refuses_what_mqtt_forbids(packet: Packet, reason: str) -> None:
    with pytest.raises(LocalProtocolError, match=reason):
        encode_packet(packet)


def test_publish_payload_of_any_bytes_like_value_is_encoded() -> None:
    assert encode_packet(Publish("a", bytearray(b"xy"))) == bytes.fromhex("3005000161 7879")


def test_reprs_hide_payloads_and_passwords() -> None:
    text = repr(Connect("d", 1, username="u", password=b"hunter2", will=Will("w", b"sec", 1, True)))
    assert "hunter2" not in text
    assert "sec'" not in text
    assert "<3 bytes>" in text
    assert "payload=<3 bytes>" in repr(Publish("a", b"sec"))
