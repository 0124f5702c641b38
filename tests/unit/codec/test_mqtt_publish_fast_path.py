"""The PUBLISH fast path: a repeated topic is decoded without re-validation, with the same result.

``MQTTConnection`` caches the wire bytes of the last PUBLISH topic it decoded in full. A later
PUBLISH whose topic bytes are equal reuses the validated string; anything else (another topic,
a malformed packet) goes through the full decoder. These tests pin that the two paths agree,
including on every refusal.
"""

from __future__ import annotations

import dataclasses

import pytest

from ironhub.codec.mqtt import (
    ConnAck,
    Connect,
    ConnectReturnCode,
    MQTTConnection,
    Publish,
    Role,
    encode_packet,
)
from ironhub.codec.mqtt._decoder import new_publish
from ironhub.errors import RemoteProtocolError

TOPIC = "devices/dev-1/messages/events/"


def connected_server() -> MQTTConnection:
    server = MQTTConnection(Role.SERVER)
    server.receive_data(encode_packet(Connect(client_id="dev-1", keep_alive_seconds=60)))
    server.send(ConnAck(ConnectReturnCode.ACCEPTED))
    return server


def publishes() -> list[Publish]:
    return [
        Publish(TOPIC, b"one", qos=1, packet_id=1),
        Publish(TOPIC, b"two", qos=1, packet_id=2, dup=True),
        Publish(TOPIC, b"", qos=0),
        Publish(TOPIC, b"three", qos=1, packet_id=65535, retain=True),
        Publish(TOPIC, b"four", qos=2, packet_id=7),
        Publish("devices/dev-1/messages/events/a=1", b"five", qos=1, packet_id=3),
        Publish(TOPIC, b"six", qos=1, packet_id=4),
        # Same length as TOPIC, other bytes: must not be taken for it.
        Publish("devices/dev-1/messages/events/"[:-1] + "x", b"seven", qos=1, packet_id=5),
    ]


def test_repeated_topics_decode_like_the_full_decoder() -> None:
    sent = publishes()
    data = b"".join(encode_packet(p) for p in sent)
    assert connected_server().receive_data(data) == sent
    # One packet per read, and byte by byte (the buffered, bytearray path).
    server = connected_server()
    assert [q for p in sent for q in server.receive_data(encode_packet(p))] == sent
    server = connected_server()
    assert [q for byte in data for q in server.receive_data(bytes([byte]))] == sent


def test_fast_path_packets_are_ordinary_frozen_publishes() -> None:
    server = connected_server()
    first, second = server.receive_data(
        encode_packet(Publish(TOPIC, b"a", qos=1, packet_id=1))
        + encode_packet(Publish(TOPIC, b"b", qos=1, packet_id=2))
    )
    assert type(second) is Publish
    assert second == Publish(TOPIC, b"b", qos=1, packet_id=2)
    assert second.topic is first.topic  # the cached string
    assert type(second.payload) is bytes
    with pytest.raises(dataclasses.FrozenInstanceError):
        second.qos = 0  # type: ignore[misc]
    assert "payload=<1 bytes>" in repr(second)


def test_new_publish_equals_the_constructor() -> None:
    assert new_publish("t", b"p", 1, True, True, 9) == Publish("t", b"p", 1, True, True, 9)


def _first_publish(server: MQTTConnection) -> None:
    assert server.receive_data(encode_packet(Publish(TOPIC, b"x", qos=1, packet_id=1)))


def test_packet_id_zero_after_a_cached_topic_is_refused() -> None:
    server = connected_server()
    _first_publish(server)
    packet = bytearray(encode_packet(Publish(TOPIC, b"x", qos=1, packet_id=1)))
    packet[-3:-1] = b"\x00\x00"  # the packet identifier, before the 1-byte payload
    with pytest.raises(RemoteProtocolError, match="packet identifier 0"):
        server.receive_data(bytes(packet))


def test_truncated_packet_id_after_a_cached_topic_is_refused() -> None:
    server = connected_server()
    _first_publish(server)
    topic = TOPIC.encode()
    body = len(topic).to_bytes(2, "big") + topic + b"\x01"  # one byte of packet identifier
    with pytest.raises(RemoteProtocolError, match="truncated"):
        server.receive_data(bytes([0x32, len(body)]) + body)


def test_a_body_too_short_for_a_topic_length_is_refused_after_a_cached_topic() -> None:
    server = connected_server()
    _first_publish(server)
    with pytest.raises(RemoteProtocolError, match="truncated"):
        server.receive_data(b"\x30\x01\x00")


def test_an_invalid_topic_after_a_cached_one_is_still_refused() -> None:
    server = connected_server()
    _first_publish(server)
    topic = (TOPIC[:-1] + "#").encode()  # same length, a wildcard
    body = len(topic).to_bytes(2, "big") + topic + b"\x00\x01"
    with pytest.raises(RemoteProtocolError, match="wildcard"):
        server.receive_data(bytes([0x32, len(body)]) + body)


def test_a_client_decodes_repeated_publishes_too() -> None:
    client = MQTTConnection(Role.CLIENT)
    client.send(Connect(client_id="c", keep_alive_seconds=60))
    client.receive_data(encode_packet(ConnAck(ConnectReturnCode.ACCEPTED)))
    sent = publishes()
    assert client.receive_data(b"".join(encode_packet(p) for p in sent)) == sent
