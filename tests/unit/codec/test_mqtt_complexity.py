"""Large inputs cost time in proportion to what is accepted, never to what is declared.

SECURITY-TESTS.md section 2, "Algorithmic complexity": caps are checked before the work they
bound, so a packet with a million filters costs what one with nine does. The structural tests
prove the early stop without timing (what lies past the cap is garbage that would fail
differently if it were read); the timing bounds are generous sanity checks only.
"""

from __future__ import annotations

import time

import pytest
from tests.vectors.mqtt_runner import CLIENT_CONNECT

from ironhub.codec.mqtt import (
    ConnAck,
    ConnectReturnCode,
    MQTTConnection,
    MQTTLimits,
    PingReq,
    Publish,
    Role,
    encode_packet,
)
from ironhub.codec.mqtt._rules import MAX_PACKET_BYTES
from ironhub.errors import RemoteProtocolError

HUGE = MQTTLimits(max_packet_bytes=MAX_PACKET_BYTES)


def _server(limits: MQTTLimits = HUGE) -> MQTTConnection:
    server = MQTTConnection(Role.SERVER, limits)
    server.receive_data(encode_packet(CLIENT_CONNECT))
    server.send(ConnAck(ConnectReturnCode.ACCEPTED))
    return server


def _frame(first: int, body: bytes) -> bytes:
    length, header = len(body), bytearray([first])
    while True:
        byte, length = length & 0x7F, length >> 7
        header.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(header) + body


def test_a_subscribe_with_a_million_filters_stops_at_the_cap() -> None:
    valid = b"".join(len(f"t{i}").to_bytes(2, "big") + f"t{i}".encode() + b"\x00" for i in range(8))
    garbage = b"\x00\x01\xff\x00" * 1_000_000  # invalid UTF-8 filters, never read
    data = _frame(0x82, b"\x00\x01" + valid + garbage)
    started = time.perf_counter()
    with pytest.raises(RemoteProtocolError, match="more than 8 topic filters"):
        _server().receive_data(data)
    assert time.perf_counter() - started < 1.0


def test_an_unsubscribe_with_a_million_filters_stops_at_the_cap() -> None:
    valid = b"\x00\x01a" * 8
    data = _frame(0xA2, b"\x00\x01" + valid + b"\x00\x01\xff" * 1_000_000)
    with pytest.raises(RemoteProtocolError, match="more than 8 topic filters"):
        _server().receive_data(data)


def test_a_subscribe_over_the_default_packet_cap_is_refused_from_its_header() -> None:
    data = _frame(0x82, b"\x00\x01" + b"\x00\x01a\x00" * 100_000)
    server = _server(MQTTLimits())
    with pytest.raises(RemoteProtocolError, match="278528-byte limit"):
        server.receive_data(data[:5])


def test_a_topic_of_65535_separators_is_refused_by_the_level_cap() -> None:
    topic = "/" * 65_535
    data = _frame(0x30, len(topic).to_bytes(2, "big") + topic.encode())
    with pytest.raises(RemoteProtocolError, match="more than 32 levels"):
        _server().receive_data(data)


def _feed_byte_by_byte(payload_bytes: int) -> float:
    data = encode_packet(Publish("t", b"x" * payload_bytes))
    server = _server()
    started = time.perf_counter()
    for index in range(len(data)):
        server.receive_data(data[index : index + 1])
    elapsed = time.perf_counter() - started
    assert server.statistics().packets_received == 2
    return elapsed


def test_byte_at_a_time_is_linear() -> None:
    # Re-scanning or copying the buffer on every read would make this quadratic: 8 times the
    # bytes would cost 64 times the time. Best of three runs, to shrug off a busy machine.
    small = min(_feed_byte_by_byte(8_192) for _ in range(3))
    large = min(_feed_byte_by_byte(65_536) for _ in range(3))
    assert large < 30 * small + 0.05


def test_many_packets_in_one_read_are_linear() -> None:
    data = encode_packet(PingReq()) * 200_000
    server = _server()
    started = time.perf_counter()
    assert len(server.receive_data(data)) == 200_000
    assert time.perf_counter() - started < 5.0


def test_a_large_publish_is_decoded_in_one_read() -> None:
    publish = Publish("devices/d/messages/events/", b"\xab" * 262_144, qos=1, packet_id=1)
    server = _server(MQTTLimits())
    assert server.receive_data(encode_packet(publish)) == [publish]
