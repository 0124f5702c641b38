"""MQTTConnection: the state machine, the handshake hold, limits and framing edge cases."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest

from ironhub.codec.mqtt import (
    ConnAck,
    Connect,
    ConnectionState,
    ConnectReturnCode,
    Disconnect,
    MQTTConnection,
    MQTTLimits,
    MQTTStatistics,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    Role,
    SubAck,
    Subscribe,
    encode_packet,
)
from ironhub.codec.mqtt._rules import MAX_PACKET_BYTES
from ironhub.errors import ConfigError, LocalProtocolError, RemoteProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable

CONNECT = Connect(client_id="vector", keep_alive_seconds=60)
CONNECT_BYTES = encode_packet(CONNECT)
ACCEPT = ConnAck(ConnectReturnCode.ACCEPTED)
PINGREQ = encode_packet(PingReq())


def connected_server(limits: MQTTLimits | None = None) -> MQTTConnection:
    server = MQTTConnection(Role.SERVER) if limits is None else MQTTConnection(Role.SERVER, limits)
    assert server.receive_data(CONNECT_BYTES) == [CONNECT]
    server.send(ACCEPT)
    return server


def connected_client() -> MQTTConnection:
    client = MQTTConnection(Role.CLIENT)
    client.send(CONNECT)
    assert client.receive_data(encode_packet(ACCEPT)) == [ACCEPT]
    return client


# -- server handshake ------------------------------------------------------------------------


def test_a_new_connection_awaits_connect() -> None:
    server = MQTTConnection(Role.SERVER)
    assert server.state is ConnectionState.AWAIT_CONNECT
    assert server.role is Role.SERVER
    assert server.limits == MQTTLimits()
    assert server.receive_data(b"") == []
    assert server.receive_data(CONNECT_BYTES[:5]) == []
    assert server.receive_data(CONNECT_BYTES[5:]) == [CONNECT]
    assert server.state is ConnectionState.CONNECT_RECEIVED


def test_packets_after_connect_are_held_until_connack_0() -> None:
    # [MQTT-3.1.4-5]
    server = MQTTConnection(Role.SERVER)
    publish = Publish("a", b"x", qos=1, packet_id=1)
    tail = PINGREQ + encode_packet(publish)
    assert server.receive_data(CONNECT_BYTES + tail[:3]) == [CONNECT]
    assert server.receive_data(tail[3:]) == []
    assert server.receive_data(b"") == []
    assert server.statistics().bytes_buffered == len(tail)
    assert server.send(ACCEPT) == bytes.fromhex("20020000")
    assert server.state is ConnectionState.CONNECTED
    assert server.receive_data(b"") == [PingReq(), publish]
    assert server.statistics().bytes_buffered == 0


def test_held_bytes_are_bounded_by_the_connect_cap() -> None:
    limits = MQTTLimits(max_connect_packet_bytes=100)
    server = MQTTConnection(Role.SERVER, limits)
    assert server.receive_data(CONNECT_BYTES + b"\xc0" * 60) == [CONNECT]
    server.receive_data(b"\xc0" * 40)  # exactly 100 held: fine
    with pytest.raises(RemoteProtocolError, match="more than 100 bytes sent before CONNACK"):
        server.receive_data(b"\xc0")
    assert server.state is ConnectionState.CLOSED


def test_held_bytes_over_the_cap_in_the_connect_read_fail_at_once() -> None:
    server = MQTTConnection(Role.SERVER, MQTTLimits(max_connect_packet_bytes=100))
    with pytest.raises(RemoteProtocolError, match="before CONNACK"):
        server.receive_data(CONNECT_BYTES + b"\xc0" * 101)


def test_a_refused_connect_closes_and_drops_held_bytes() -> None:
    server = MQTTConnection(Role.SERVER)
    server.receive_data(CONNECT_BYTES + PINGREQ)
    assert server.send(ConnAck(ConnectReturnCode.NOT_AUTHORIZED)) == bytes.fromhex("20020005")
    assert server.state is ConnectionState.CLOSED
    assert server.statistics().bytes_buffered == 0
    assert server.receive_data(b"") == []
    with pytest.raises(LocalProtocolError):
        server.send(ConnAck(ConnectReturnCode.NOT_AUTHORIZED))
    with pytest.raises(RemoteProtocolError, match="closed"):
        server.receive_data(PINGREQ)


def test_session_present_needs_a_persistent_session() -> None:
    # [MQTT-3.2.2-1]: a clean-session CONNECT gets session present 0.
    server = MQTTConnection(Role.SERVER)
    server.receive_data(CONNECT_BYTES)
    with pytest.raises(LocalProtocolError, match=r"MQTT-3\.2\.2-1"):
        server.send(ConnAck(ConnectReturnCode.ACCEPTED, session_present=True))
    assert server.state is ConnectionState.CONNECT_RECEIVED
    persistent = MQTTConnection(Role.SERVER)
    persistent.receive_data(encode_packet(Connect("d", 1, clean_session=False)))
    assert persistent.send(ConnAck(ConnectReturnCode.ACCEPTED, session_present=True)) == (
        bytes.fromhex("20020100")
    )


@pytest.mark.parametrize("packet", [ACCEPT, PingResp(), SubAck(1, (0,)), CONNECT])
def test_a_server_sends_nothing_before_connect(packet: Packet) -> None:
    server = MQTTConnection(Role.SERVER)
    with pytest.raises(LocalProtocolError, match="await-connect"):
        server.send(packet)
    assert server.state is ConnectionState.AWAIT_CONNECT


@pytest.mark.parametrize("packet", [PingResp(), PubAck(1), Publish("a", b""), Disconnect()])
def test_a_server_answers_connect_with_connack_only(packet: Packet) -> None:
    server = MQTTConnection(Role.SERVER)
    server.receive_data(CONNECT_BYTES)
    with pytest.raises(LocalProtocolError, match="connect-received"):
        server.send(packet)


@pytest.mark.parametrize(
    "packet", [ACCEPT, CONNECT, Subscribe(1, (("a", 0),)), PingReq(), Disconnect()]
)
def test_a_connected_server_sends_only_server_packets(packet: Packet) -> None:
    server = connected_server()
    with pytest.raises(LocalProtocolError, match="may not send"):
        server.send(packet)
    assert server.state is ConnectionState.CONNECTED


def test_a_connected_server_sends_server_packets() -> None:
    server = connected_server()
    assert server.send(PingResp()) == b"\xd0\x00"
    assert server.send(SubAck(1, (0x80,))) == bytes.fromhex("9003000180")


def test_disconnect_closes_and_nothing_may_follow() -> None:
    # [MQTT-3.14.4-1]
    server = connected_server()
    assert server.receive_data(PINGREQ + b"\xe0\x00") == [PingReq(), Disconnect()]
    assert server.state is ConnectionState.CLOSED
    assert server.receive_data(b"") == []
    with pytest.raises(RemoteProtocolError, match="closed"):
        server.receive_data(b"\xe0")
    with pytest.raises(LocalProtocolError):
        server.send(PingResp())


def test_bytes_after_disconnect_in_the_same_read_are_refused() -> None:
    server = connected_server()
    with pytest.raises(RemoteProtocolError, match="after the end of the connection"):
        server.receive_data(b"\xe0\x00\xc0")


def test_a_second_connect_is_refused() -> None:
    # [MQTT-3.1.0-2]
    server = connected_server()
    with pytest.raises(RemoteProtocolError, match="second CONNECT"):
        server.receive_data(CONNECT_BYTES)


# -- errors and the CONNACK hint -----------------------------------------------------------


def test_a_connack_hint_allows_exactly_one_refusal() -> None:
    server = MQTTConnection(Role.SERVER)
    with pytest.raises(RemoteProtocolError) as refusal:
        server.receive_data(encode_packet(CONNECT)[:8] + b"\x03" + CONNECT_BYTES[9:])
    assert refusal.value.connack_code == 1
    assert server.state is ConnectionState.CLOSED
    with pytest.raises(LocalProtocolError):
        server.send(ACCEPT)
    with pytest.raises(LocalProtocolError):
        server.send(PingResp())
    answer = server.send(ConnAck(ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION))
    assert answer == bytes.fromhex("20020001")
    with pytest.raises(LocalProtocolError):
        server.send(ConnAck(ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION))
    with pytest.raises(RemoteProtocolError, match="already failed: unsupported protocol level"):
        server.receive_data(b"")


def test_an_error_without_hint_allows_no_connack() -> None:
    server = MQTTConnection(Role.SERVER)
    with pytest.raises(RemoteProtocolError) as refusal:
        server.receive_data(b"\x00")
    assert refusal.value.connack_code is None
    with pytest.raises(LocalProtocolError):
        server.send(ConnAck(ConnectReturnCode.SERVER_UNAVAILABLE))


# -- client side -----------------------------------------------------------------------------


def test_client_handshake() -> None:
    client = MQTTConnection(Role.CLIENT)
    assert client.state is ConnectionState.AWAIT_CONNECT
    assert client.receive_data(b"") == []
    with pytest.raises(LocalProtocolError, match="await-connect"):
        client.send(PingReq())
    assert client.send(CONNECT) == CONNECT_BYTES
    assert client.state is ConnectionState.AWAIT_CONNACK
    # A client need not wait for CONNACK (§3.1.4).
    assert client.send(PingReq()) == PINGREQ
    with pytest.raises(LocalProtocolError, match="await-connack"):
        client.send(CONNECT)
    publish = Publish("a", b"q")
    assert client.receive_data(encode_packet(ACCEPT) + encode_packet(publish)[:2]) == [ACCEPT]
    assert client.state is ConnectionState.CONNECTED
    assert client.receive_data(encode_packet(publish)[2:]) == [publish]


def test_a_client_refuses_data_before_it_has_sent_connect() -> None:
    client = MQTTConnection(Role.CLIENT)
    with pytest.raises(RemoteProtocolError, match="await-connect"):
        client.receive_data(encode_packet(ACCEPT))


@pytest.mark.parametrize("packet", [ACCEPT, PingResp(), SubAck(1, (0,)), CONNECT])
def test_a_connected_client_sends_only_client_packets(packet: Packet) -> None:
    client = connected_client()
    with pytest.raises(LocalProtocolError, match="may not send"):
        client.send(packet)


def test_client_disconnect_closes() -> None:
    client = connected_client()
    assert client.send(Disconnect()) == b"\xe0\x00"
    assert client.state is ConnectionState.CLOSED
    with pytest.raises(LocalProtocolError, match="closed"):
        client.send(PingReq())


def test_a_refused_client_sees_the_code_then_closes() -> None:
    client = MQTTConnection(Role.CLIENT)
    client.send(CONNECT)
    refusal = ConnAck(ConnectReturnCode.BAD_USERNAME_OR_PASSWORD)
    assert client.receive_data(encode_packet(refusal)) == [refusal]
    assert client.state is ConnectionState.CLOSED
    with pytest.raises(RemoteProtocolError):
        client.receive_data(b"\xd0\x00")


# -- limits ----------------------------------------------------------------------------------


def _smallest_at_least(total: int, make: Callable[[int], Packet]) -> tuple[Packet, bytes]:
    # The smallest ``make(n)`` whose encoding is at least ``total`` bytes long. Not every size
    # exists: a 127-byte body makes a 129-byte packet, a 128-byte body a 131-byte one.
    low, high = 0, total
    while low < high:
        middle = (low + high) // 2
        if len(encode_packet(make(middle))) >= total:
            high = middle
        else:
            low = middle + 1
    return make(low), encode_packet(make(low))


def _connect(n: int) -> Packet:
    return Connect("d" * n, 1)


def _publish(n: int) -> Packet:
    return Publish("t", b"p" * n)


@pytest.mark.parametrize("cap", [100, 128, 129, 130, 131, 4096])
def test_the_connect_cap_is_exact(cap: int) -> None:
    limits = MQTTLimits(max_connect_packet_bytes=cap)
    _, fitting = _smallest_at_least(cap, _connect)
    if len(fitting) > cap:  # no packet of exactly ``cap`` bytes exists
        _, fitting = _smallest_at_least(cap - 2, _connect)
    assert len(MQTTConnection(Role.SERVER, limits).receive_data(fitting)) == 1
    _, too_big = _smallest_at_least(cap + 1, _connect)
    with pytest.raises(RemoteProtocolError, match=f"larger than the {cap}-byte limit"):
        MQTTConnection(Role.SERVER, limits).receive_data(too_big[:5])


@pytest.mark.parametrize("cap", [50, 129, 130, 16_386, 16_387, 278_528])
def test_the_packet_cap_is_exact_and_checked_from_the_header(cap: int) -> None:
    limits = MQTTLimits(max_connect_packet_bytes=50, max_packet_bytes=cap)
    publish, fitting = _smallest_at_least(cap, _publish)
    if len(fitting) > cap:
        publish, fitting = _smallest_at_least(cap - 2, _publish)
    assert connected_server(limits).receive_data(fitting) == [publish]
    _, too_big = _smallest_at_least(cap + 1, _publish)
    with pytest.raises(RemoteProtocolError, match="larger than"):
        connected_server(limits).receive_data(too_big[:5])


def test_a_header_that_can_only_declare_too_much_fails_before_it_is_complete() -> None:
    with pytest.raises(RemoteProtocolError, match="4096-byte limit"):
        MQTTConnection(Role.SERVER).receive_data(b"\x10\xff\xff")
    server = connected_server()
    with pytest.raises(RemoteProtocolError, match="278528-byte limit"):
        server.receive_data(b"\x30\x80\x80\x80")


def test_the_cap_also_binds_a_client_until_connack() -> None:
    client = MQTTConnection(Role.CLIENT)
    client.send(CONNECT)
    with pytest.raises(RemoteProtocolError, match="4096-byte limit"):
        client.receive_data(b"\x20\x80\x40")


BIG = MQTTLimits(max_packet_bytes=MAX_PACKET_BYTES)


def test_four_length_bytes_are_accepted_and_a_fifth_never_awaited() -> None:
    # [MQTT-2.2.3]: at most four bytes; the fourth continuation bit fails at once.
    server = connected_server(BIG)
    assert server.receive_data(bytes.fromhex("30ffffff7f")) == []
    assert server.statistics().bytes_buffered == 5
    server = connected_server(BIG)
    assert server.receive_data(bytes.fromhex("30808080")) == []
    with pytest.raises(RemoteProtocolError, match="longer than four bytes"):
        server.receive_data(b"\x80")


@pytest.mark.parametrize("header", ["c08000", "c0808000", "4082000001", "30808000"])
def test_non_minimal_remaining_lengths_are_refused(header: str) -> None:
    server = connected_server(BIG)
    with pytest.raises(RemoteProtocolError, match="not minimally encoded"):
        server.receive_data(bytes.fromhex(header))


@pytest.mark.parametrize(
    "changes",
    [
        {"max_connect_packet_bytes": 0},
        {"max_packet_bytes": -1},
        {"max_topic_levels": 0},
        {"max_subscriptions_per_packet": True},
        {"max_topic_levels": 2.5},
        {"max_connect_packet_bytes": 5000, "max_packet_bytes": 4999},
        {"max_packet_bytes": MAX_PACKET_BYTES + 1},
    ],
)
def test_invalid_limits_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        MQTTLimits(**changes)  # type: ignore[arg-type]


def test_limits_are_frozen_with_documented_defaults() -> None:
    limits = MQTTLimits()
    assert dataclasses.astuple(limits) == (4096, 278_528, 32, 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_packet_bytes = 1  # type: ignore[misc]


def test_custom_topic_and_subscription_caps() -> None:
    limits = MQTTLimits(max_topic_levels=2, max_subscriptions_per_packet=1)
    server = connected_server(limits)
    assert server.receive_data(encode_packet(Publish("a/b", b""))) == [Publish("a/b", b"")]
    with pytest.raises(RemoteProtocolError, match="more than 2 levels"):
        server.receive_data(encode_packet(Publish("a/b/c", b"")))
    server = connected_server(limits)
    with pytest.raises(RemoteProtocolError, match="more than 1 topic filters"):
        server.receive_data(encode_packet(Subscribe(1, (("a", 0), ("b", 0)))))


# -- statistics ------------------------------------------------------------------------------


def test_statistics_count_both_directions() -> None:
    server = MQTTConnection(Role.SERVER)
    server.receive_data(CONNECT_BYTES + PINGREQ[:1])
    server.send(ACCEPT)
    server.receive_data(PINGREQ[1:])
    server.send(PingResp())
    assert server.statistics() == MQTTStatistics(
        state=ConnectionState.CONNECTED,
        bytes_received=len(CONNECT_BYTES) + 2,
        bytes_sent=6,
        bytes_buffered=0,
        packets_received=2,
        packets_sent=2,
    )


def test_a_failed_send_changes_nothing() -> None:
    server = connected_server()
    before = server.statistics()
    with pytest.raises(LocalProtocolError):
        server.send(PubAck(0))
    assert server.statistics() == before


def test_receive_accepts_any_bytes_like_buffer() -> None:
    server = MQTTConnection(Role.SERVER)
    assert server.receive_data(bytearray(CONNECT_BYTES[:3])) == []  # type: ignore[arg-type]
    assert server.receive_data(memoryview(CONNECT_BYTES)[3:]) == [CONNECT]  # type: ignore[arg-type]


def test_a_declared_length_larger_than_what_is_sent_buffers_only_what_arrived() -> None:
    # SECURITY-TESTS.md 3.2 item 7: the stall itself is the endpoint's deadline to handle.
    server = connected_server()
    server.receive_data(bytes.fromhex("30ffff0f") + b"\x00\x01a")  # declares 262143 bytes
    assert server.statistics().bytes_buffered == 7
    server.receive_data(b"x" * 1000)
    assert server.statistics().bytes_buffered == 1007
