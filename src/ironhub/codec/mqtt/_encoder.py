"""Encoding of MQTT 3.1.1 packets: :func:`encode_packet`.

Stateless and fast: the hub pre-encodes acknowledgements with it and the benchmarks build their
load with it. It validates what it encodes with the rules the decoder applies to what it
receives (:mod:`ironhub.codec.mqtt._rules`), so that we never put on the wire what we would refuse
to read; a refusal is :class:`~ironhub.errors.LocalProtocolError`, a bug on our side. Which packet
may be sent in which state is the business of :class:`~ironhub.codec.mqtt.MQTTConnection`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ironhub.codec.mqtt._packets import (
    ConnAck,
    Connect,
    ConnectReturnCode,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    Will,
)
from ironhub.codec.mqtt._rules import (
    MAX_PACKET_ID,
    MAX_REMAINING_LENGTH,
    MAX_STRING_BYTES,
    SUBACK_RETURN_CODES,
    topic_filter_problem,
    topic_name_problem,
)
from ironhub.errors import LocalProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["encode_packet"]

# The CONNECT variable header up to the flags: protocol name "MQTT", level 4 [MQTT-3.1.2-1/2].
_CONNECT_PROTOCOL = b"\x00\x04MQTT\x04"


def encode_packet(packet: Packet) -> bytes:
    """Encode one packet, fixed header included.

    Args:
        packet: any MQTT 3.1.1 packet value object.

    Returns:
        The packet's bytes, ready to write.

    Raises:
        LocalProtocolError: the packet breaks a rule of MQTT 3.1.1, for example packet id 0,
            a QoS 0 PUBLISH with a packet id, a wildcard in a PUBLISH topic, a string that is
            not encodable UTF-8 or contains U+0000, a field or packet too large to frame, or an
            object that is not a packet at all.
    """
    encode = _ENCODERS.get(type(packet))
    if encode is None:
        raise LocalProtocolError(f"{type(packet).__name__} is not an MQTT 3.1.1 packet")
    return encode(packet)


def _fixed_header(first: int, remaining: int) -> bytes:
    # The first byte and the remaining length, 7 bits a byte, least significant first [MQTT-2.2.3].
    if remaining < 0x80:
        return bytes((first, remaining))
    if remaining > MAX_REMAINING_LENGTH:
        raise LocalProtocolError(f"packet body larger than {MAX_REMAINING_LENGTH} bytes")
    header = bytearray((first,))
    while remaining >= 0x80:
        header.append((remaining & 0x7F) | 0x80)
        remaining >>= 7
    header.append(remaining)
    return bytes(header)


def _string(value: str, what: str) -> bytes:
    # A UTF-8 string with its two-byte length [MQTT-1.5.3].
    if "\x00" in value:
        raise LocalProtocolError(f"{what} contains U+0000 [MQTT-1.5.3-2]")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} contains a surrogate code point [MQTT-1.5.3-1]") from None
    if len(raw) > MAX_STRING_BYTES:
        raise LocalProtocolError(f"{what} is longer than {MAX_STRING_BYTES} bytes [MQTT-1.5.3]")
    return len(raw).to_bytes(2, "big") + raw


def _binary(value: bytes, what: str) -> bytes:
    if len(value) > MAX_STRING_BYTES:
        raise LocalProtocolError(f"{what} is longer than {MAX_STRING_BYTES} bytes")
    return len(value).to_bytes(2, "big") + value


def _packet_id(packet_id: int | None, what: str) -> bytes:
    if packet_id is None or not 0 < packet_id <= MAX_PACKET_ID:
        raise LocalProtocolError(f"{what} needs a packet identifier in 1..65535 [MQTT-2.3.1-1]")
    return packet_id.to_bytes(2, "big")


def _encode_connect(packet: Connect) -> bytes:
    if packet.protocol_name != "MQTT" or packet.protocol_level != 4:
        raise LocalProtocolError("only MQTT 3.1.1 (protocol MQTT, level 4) can be encoded")
    if not 0 <= packet.keep_alive_seconds <= 0xFFFF:
        raise LocalProtocolError("keep alive must be in 0..65535 seconds [MQTT-3.1.2.10]")
    flags = 0
    if packet.clean_session:
        flags |= 0x02
    elif not packet.client_id:
        raise LocalProtocolError("empty client identifier needs clean session [MQTT-3.1.3-7]")
    payload = [_string(packet.client_id, "client identifier")]
    if packet.will is not None:
        flags |= _will(packet.will, payload)
    if packet.username is not None:
        flags |= 0x80
        payload.append(_string(packet.username, "user name"))
    if packet.password is not None:
        if packet.username is None:
            raise LocalProtocolError("a password needs a user name [MQTT-3.1.2-22]")
        flags |= 0x40
        payload.append(_binary(packet.password, "password"))
    body = b"".join(
        (_CONNECT_PROTOCOL, bytes((flags,)), packet.keep_alive_seconds.to_bytes(2, "big"), *payload)
    )
    return _fixed_header(0x10, len(body)) + body


def _will(will: Will, payload: list[bytes]) -> int:
    # Append the will topic and message; return the CONNECT flags they need [MQTT-3.1.2.5-7].
    if will.qos not in (0, 1, 2):
        raise LocalProtocolError("will QoS must be 0, 1 or 2 [MQTT-3.1.2-14]")
    problem = topic_name_problem(will.topic)
    if problem is not None:
        raise LocalProtocolError(f"will topic: {problem}")
    payload.append(_string(will.topic, "will topic"))
    payload.append(_binary(will.payload, "will message"))
    return 0x04 | will.qos << 3 | (0x20 if will.retain else 0)


def _encode_connack(packet: ConnAck) -> bytes:
    try:
        code = ConnectReturnCode(packet.return_code)
    except ValueError:
        raise LocalProtocolError("unknown CONNACK return code [MQTT-3.2.2.3]") from None
    if packet.session_present and code:
        raise LocalProtocolError("session present with a refused connection [MQTT-3.2.2-4]")
    return bytes((0x20, 0x02, 0x01 if packet.session_present else 0x00, code))


def _encode_publish(packet: Publish) -> bytes:
    qos = packet.qos
    if qos == 0:
        if packet.packet_id is not None:
            raise LocalProtocolError("QoS 0 PUBLISH with a packet identifier [MQTT-2.3.1-5]")
        if packet.dup:
            raise LocalProtocolError("DUP flag on a QoS 0 PUBLISH [MQTT-3.3.1-2]")
        packet_id = b""
    elif qos in (1, 2):
        packet_id = _packet_id(packet.packet_id, "a QoS 1 or 2 PUBLISH")
    else:
        raise LocalProtocolError("PUBLISH QoS must be 0, 1 or 2 [MQTT-3.3.1-4]")
    problem = topic_name_problem(packet.topic)
    if problem is not None:
        raise LocalProtocolError(problem)
    topic = _string(packet.topic, "topic name")
    first = 0x30 | qos << 1 | (0x08 if packet.dup else 0) | (0x01 if packet.retain else 0)
    payload = packet.payload
    header = _fixed_header(first, len(topic) + len(packet_id) + len(payload))
    return b"".join((header, topic, packet_id, payload))


def _packet_id_encoder(first: int, name: str) -> Callable[[Any], bytes]:
    # PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: a two-byte body, the packet identifier.
    header = bytes((first, 0x02))

    def encode(packet: PubAck | PubRec | PubRel | PubComp | UnsubAck) -> bytes:
        return header + _packet_id(packet.packet_id, name)

    return encode


def _constant_encoder(encoded: bytes) -> Callable[[Any], bytes]:
    # PINGREQ, PINGRESP, DISCONNECT: a fixed header with remaining length 0.
    def encode(packet: PingReq | PingResp | Disconnect) -> bytes:
        del packet
        return encoded

    return encode


def _encode_subscribe(packet: Subscribe) -> bytes:
    if not packet.requests:
        raise LocalProtocolError("SUBSCRIBE needs at least one topic filter [MQTT-3.8.3-3]")
    parts = [_packet_id(packet.packet_id, "SUBSCRIBE")]
    for topic_filter, qos in packet.requests:
        problem = topic_filter_problem(topic_filter)
        if problem is not None:
            raise LocalProtocolError(problem)
        if qos not in (0, 1, 2):
            raise LocalProtocolError("requested QoS must be 0, 1 or 2 [MQTT-3-8.3-4]")
        parts.append(_string(topic_filter, "topic filter"))
        parts.append(bytes((qos,)))
    body = b"".join(parts)
    return _fixed_header(0x82, len(body)) + body


def _encode_suback(packet: SubAck) -> bytes:
    if not packet.return_codes:
        raise LocalProtocolError("SUBACK needs at least one return code [MQTT-3.9.3]")
    if not SUBACK_RETURN_CODES.issuperset(packet.return_codes):
        raise LocalProtocolError("SUBACK return codes must be 0, 1, 2 or 0x80 [MQTT-3.9.3-2]")
    body = _packet_id(packet.packet_id, "SUBACK") + bytes(packet.return_codes)
    return _fixed_header(0x90, len(body)) + body


def _encode_unsubscribe(packet: Unsubscribe) -> bytes:
    if not packet.topic_filters:
        raise LocalProtocolError("UNSUBSCRIBE needs at least one topic filter [MQTT-3.10.3-2]")
    parts = [_packet_id(packet.packet_id, "UNSUBSCRIBE")]
    for topic_filter in packet.topic_filters:
        problem = topic_filter_problem(topic_filter)
        if problem is not None:
            raise LocalProtocolError(problem)
        parts.append(_string(topic_filter, "topic filter"))
    body = b"".join(parts)
    return _fixed_header(0xA2, len(body)) + body


# Dispatch on the exact class: packets are final value objects.
_ENCODERS: dict[type[Any], Callable[[Any], bytes]] = {
    Connect: _encode_connect,
    ConnAck: _encode_connack,
    Publish: _encode_publish,
    PubAck: _packet_id_encoder(0x40, "PUBACK"),
    PubRec: _packet_id_encoder(0x50, "PUBREC"),
    PubRel: _packet_id_encoder(0x62, "PUBREL"),  # flags 0b0010 [MQTT-3.6.1-1]
    PubComp: _packet_id_encoder(0x70, "PUBCOMP"),
    Subscribe: _encode_subscribe,  # 0x82: flags 0b0010 [MQTT-3.8.1-1]
    SubAck: _encode_suback,
    Unsubscribe: _encode_unsubscribe,  # 0xA2: flags 0b0010 [MQTT-3.10.1-1]
    UnsubAck: _packet_id_encoder(0xB0, "UNSUBACK"),
    PingReq: _constant_encoder(b"\xc0\x00"),
    PingResp: _constant_encoder(b"\xd0\x00"),
    Disconnect: _constant_encoder(b"\xe0\x00"),
}
