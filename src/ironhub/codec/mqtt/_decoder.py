"""Decoding of single MQTT 3.1.1 packets: fixed headers and packet bodies.

This module is stateless. :mod:`ironhub.codec.mqtt._connection` owns the buffer and the state
machine and asks it three questions: is this first byte acceptable here (the decoder tables), where
does the packet starting at this offset end (:func:`read_frame`), and what packet is this complete
body (the ``decode_*`` functions).

Every function raises :class:`~ironhub.errors.RemoteProtocolError` and nothing else, whatever the
input: each reads only inside ``[start, end)`` after checking the bounds it needs, and wraps the
one foreign exception it can meet (``UnicodeDecodeError``) without chaining it, since that
exception carries the offending bytes. Reasons never quote what the peer sent.
"""

from __future__ import annotations

from collections.abc import Callable

from ironhub.codec.mqtt._limits import MQTTLimits
from ironhub.codec.mqtt._packets import (
    ConnAck,
    Connect,
    ConnectReturnCode,
    Disconnect,
    Packet,
    PacketType,
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
from ironhub.codec.mqtt._rules import SUBACK_RETURN_CODES, topic_filter_problem, topic_name_problem
from ironhub.errors import RemoteProtocolError

__all__ = [
    "CLIENT_DECODERS",
    "SERVER_DECODERS",
    "Decoder",
    "decode_connack",
    "decode_connect",
    "decode_publish",
    "first_byte_problem",
    "new_publish",
    "read_frame",
]

Decoder = Callable[[memoryview, int, int, int, MQTTLimits], Packet]
"""Decode one body: ``(view, first byte, body start, body end, limits) -> packet``."""

# The fixed-header flags every type but PUBLISH must carry [MQTT-2.2.2-1], [MQTT-2.2.2-2].
_REQUIRED_FLAGS = {
    PacketType.PUBREL: 0b0010,  # [MQTT-3.6.1-1]
    PacketType.SUBSCRIBE: 0b0010,  # [MQTT-3.8.1-1]
    PacketType.UNSUBSCRIBE: 0b0010,  # [MQTT-3.10.1-1]
}

_SUBACK_CODES = bytes(sorted(SUBACK_RETURN_CODES))


def _truncated(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"{what} is truncated")


def first_byte_problem(first: int) -> str | None:
    """Say what is wrong with a fixed header's first byte regardless of direction, or ``None``.

    Args:
        first: the packet type (bits 7-4) and flags (bits 3-0).

    Returns:
        A reason for a reserved packet type, wrong flags, QoS 3 or DUP on QoS 0; else ``None``.
    """
    kind, flags = first >> 4, first & 0x0F
    if kind in (0, 15):
        return f"reserved packet type {kind} [MQTT-2.2.1]"
    packet_type = PacketType(kind)
    if packet_type is PacketType.PUBLISH:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            return "PUBLISH with QoS 3 [MQTT-3.3.1-4]"
        if flags & 0x08 and qos == 0:
            return "DUP flag on a QoS 0 PUBLISH [MQTT-3.3.1-2]"
        return None
    if flags != _REQUIRED_FLAGS.get(packet_type, 0):
        return f"reserved fixed-header flags of {packet_type.name} [MQTT-2.2.2-2]"
    return None


def read_frame(data: bytes | bytearray, pos: int, end: int, cap: int) -> tuple[int, int]:
    """Locate the body of the packet whose first byte is at ``data[pos]``.

    The remaining length takes one to four bytes of 7 bits each, least significant first; bit 7
    says another byte follows [MQTT-2.2.3]. A fourth byte with bit 7 set is refused at once,
    never by waiting for a fifth. Non-minimal encodings (a last length byte of 0 after a
    continuation byte) are refused too: 3.1.1 is silent on them, MQTT 5 forbids them
    [MQTT-1.5.5-1], no client sends them, and accepting two encodings of one packet only helps
    parser-differential tricks. ``cap`` limits the whole packet and is checked against the
    declared length before anything is buffered; while the length bytes are still arriving it is
    checked against the smallest length they can still declare, so a hostile header fails as
    early as possible (CVE-2017-7651).

    Args:
        data: the receive buffer.
        pos: the offset of the packet's first byte; ``pos < end``.
        end: the end of the valid data in ``data``.
        cap: the largest whole packet, in bytes, accepted in the current state.

    Returns:
        ``(body_start, body_end)``; ``body_end`` may lie beyond ``end`` when the body has not all
        arrived. ``(-1, -1)`` when the length bytes themselves are incomplete.

    Raises:
        RemoteProtocolError: the length is over four bytes, not minimal, or over ``cap``.
    """
    value = 0
    shift = 0
    last = min(end, pos + 5)
    for index in range(pos + 1, last):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and index > pos + 1:
                raise RemoteProtocolError("remaining length is not minimally encoded")
            body_start = index + 1
            if body_start - pos + value > cap:
                raise RemoteProtocolError(f"packet larger than the {cap}-byte limit")
            return body_start, body_start + value
        shift += 7
    continuations = last - pos - 1
    if continuations == 4:
        raise RemoteProtocolError("remaining length longer than four bytes [MQTT-2.2.3]")
    # Incomplete. After n continuation bytes the final byte is non-zero (minimal encoding), so
    # the packet is at least 1 + n + 1 header bytes plus ``value + 128**n`` body bytes.
    if continuations and continuations + 2 + value + (1 << shift) > cap:
        raise RemoteProtocolError(f"packet larger than the {cap}-byte limit")
    return -1, -1


def _read_string(view: memoryview, pos: int, end: int, what: str) -> tuple[str, int]:
    # A UTF-8 string: two-byte big-endian length, then well-formed UTF-8 [MQTT-1.5.3]. Python's
    # strict decoder refuses overlong forms, encoded surrogates (U+D800..U+DFFF) and code points
    # above U+10FFFF [MQTT-1.5.3-1]; it keeps U+FEFF as a character [MQTT-1.5.3-3].
    if pos + 2 > end:
        raise _truncated(what)
    start = pos + 2
    stop = start + (view[pos] << 8 | view[pos + 1])
    if stop > end:
        raise RemoteProtocolError(f"{what} runs past the end of the packet [MQTT-1.5.3]")
    try:
        text = str(view[start:stop], "utf-8")
    except UnicodeDecodeError:
        # ``from None``: the UnicodeDecodeError holds the peer's bytes; keep them out of logs.
        raise RemoteProtocolError(f"{what} is not well-formed UTF-8 [MQTT-1.5.3-1]") from None
    if "\x00" in text:
        raise RemoteProtocolError(f"{what} contains U+0000 [MQTT-1.5.3-2]")
    return text, stop


def _read_binary(view: memoryview, pos: int, end: int, what: str) -> tuple[bytes, int]:
    # Binary data: two-byte big-endian length, then that many bytes [MQTT-1.5.3].
    if pos + 2 > end:
        raise _truncated(what)
    start = pos + 2
    stop = start + (view[pos] << 8 | view[pos + 1])
    if stop > end:
        raise RemoteProtocolError(f"{what} runs past the end of the packet")
    return bytes(view[start:stop]), stop


def _read_packet_id(view: memoryview, pos: int, end: int, what: str) -> int:
    if pos + 2 > end:
        raise _truncated(f"{what} packet identifier")
    packet_id = view[pos] << 8 | view[pos + 1]
    if not packet_id:
        raise RemoteProtocolError(f"{what} with packet identifier 0 [MQTT-2.3.1-1]")
    return packet_id


def _read_connect_header(view: memoryview, start: int, end: int) -> tuple[int, int, int]:
    # The CONNECT variable header: protocol name and level, flags, keep alive [MQTT-3.1.2].
    # Returns (position after it, flags, keep alive).
    name, pos = _read_string(view, start, end, "protocol name")
    if pos + 4 > end:
        raise _truncated("CONNECT variable header")
    level = view[pos]
    flags = view[pos + 1]
    if name != "MQTT":
        if name == "MQIsdp":
            # MQTT 3.1. Answering CONNACK 1 (defined in 3.1 too) tells an old client plainly
            # that we only speak 3.1.1, instead of leaving it to retry after a silent close.
            raise RemoteProtocolError("MQTT 3.1 (MQIsdp) is not supported", connack_code=1)
        # [MQTT-3.1.2-1]: not MQTT at all; close without answering.
        raise RemoteProtocolError("unknown protocol name [MQTT-3.1.2-1]")
    if level != 4:
        # Checked before the flags: an MQTT 5 CONNECT (level 5) carries properties that do not
        # parse as 3.1.1, and it must still get CONNACK 1 [MQTT-3.1.2-2].
        raise RemoteProtocolError("unsupported protocol level [MQTT-3.1.2-2]", connack_code=1)
    if flags & 0x01:
        raise RemoteProtocolError("reserved CONNECT flag is set [MQTT-3.1.2-3]")
    will_qos = (flags >> 3) & 0x03
    if flags & 0x04:
        if will_qos == 3:
            raise RemoteProtocolError("will QoS 3 [MQTT-3.1.2-14]")
    elif will_qos or flags & 0x20:
        raise RemoteProtocolError(
            "will QoS or will retain set without the will flag [MQTT-3.1.2-13] [MQTT-3.1.2-15]"
        )
    if flags & 0x40 and not flags & 0x80:
        raise RemoteProtocolError("password flag without user name flag [MQTT-3.1.2-22]")
    return pos + 4, flags, view[pos + 2] << 8 | view[pos + 3]


def _read_will(
    view: memoryview, pos: int, end: int, flags: int, limits: MQTTLimits
) -> tuple[Will, int]:
    # The will topic and message [MQTT-3.1.3.2], [MQTT-3.1.3.3]. The topic is a topic name:
    # no wildcards, not empty, same character rules as a PUBLISH topic.
    topic, pos = _read_string(view, pos, end, "will topic")
    problem = topic_name_problem(topic, limits.max_topic_levels)
    if problem is not None:
        raise RemoteProtocolError(f"will topic: {problem}")
    payload, pos = _read_binary(view, pos, end, "will message")
    return Will(topic, payload, (flags >> 3) & 0x03, bool(flags & 0x20)), pos


def decode_connect(
    view: memoryview, first: int, start: int, end: int, limits: MQTTLimits
) -> Connect:
    """Decode a CONNECT body [MQTT-3.1].

    Args:
        view: the receive buffer.
        first: the fixed header's first byte (already checked).
        start: the offset of the body.
        end: the offset just past the body.
        limits: the connection's limits.

    Returns:
        The CONNECT packet.

    Raises:
        RemoteProtocolError: the CONNECT is malformed (``connack_code`` is ``None``: close
            without answering), names an unsupported protocol level (``connack_code=1``), or
            has an empty client identifier without clean session (``connack_code=2``).
    """
    del first
    pos, flags, keep_alive = _read_connect_header(view, start, end)
    client_id, pos = _read_string(view, pos, end, "client identifier")  # [MQTT-3.1.3-4]
    will = None
    if flags & 0x04:
        will, pos = _read_will(view, pos, end, flags, limits)
    username = None
    if flags & 0x80:
        username, pos = _read_string(view, pos, end, "user name")  # [MQTT-3.1.3-11]
    password = None
    if flags & 0x40:
        password, pos = _read_binary(view, pos, end, "password")
    if pos != end:
        raise RemoteProtocolError("bytes after the end of the CONNECT payload")
    if not client_id and not flags & 0x02:
        # Judged last, so that only a well-formed CONNECT is answered.
        raise RemoteProtocolError(
            "empty client identifier without clean session [MQTT-3.1.3-8]", connack_code=2
        )
    return Connect(
        client_id=client_id,
        keep_alive_seconds=keep_alive,
        clean_session=bool(flags & 0x02),
        username=username,
        password=password,
        will=will,
    )


def decode_connack(
    view: memoryview, first: int, start: int, end: int, limits: MQTTLimits
) -> ConnAck:
    """Decode a CONNACK body [MQTT-3.2].

    Args:
        view: the receive buffer.
        first: the fixed header's first byte (already checked).
        start: the offset of the body.
        end: the offset just past the body.
        limits: the connection's limits (unused: a CONNACK has a fixed size).

    Returns:
        The CONNACK packet.

    Raises:
        RemoteProtocolError: the CONNACK is not two bytes, sets reserved bits, carries an unknown
            return code, or claims a session with a refusal [MQTT-3.2.2-4].
    """
    del first, limits
    if end - start != 2:
        raise RemoteProtocolError("CONNACK remaining length is not 2 [MQTT-3.2.1]")
    acknowledge_flags = view[start]
    code = view[start + 1]
    if acknowledge_flags & 0xFE:
        raise RemoteProtocolError("reserved CONNACK flags are set [MQTT-3.2.2.1]")
    if code > ConnectReturnCode.NOT_AUTHORIZED:
        raise RemoteProtocolError("reserved CONNACK return code [MQTT-3.2.2.3]")
    if acknowledge_flags and code:
        raise RemoteProtocolError("session present with a refused connection [MQTT-3.2.2-4]")
    return ConnAck(ConnectReturnCode(code), session_present=bool(acknowledge_flags))


def decode_publish(
    view: memoryview, first: int, start: int, end: int, limits: MQTTLimits
) -> Publish:
    """Decode a PUBLISH body [MQTT-3.3].

    The first byte was checked by the decoder table (QoS < 3, no DUP on QoS 0), so only the body
    is left. :class:`~ironhub.codec.mqtt._connection.MQTTConnection` calls this for a topic it
    has not just seen, and decodes a repeated topic itself (``_receive_packets``).

    Raises:
        RemoteProtocolError: the topic or packet identifier is malformed or truncated.
    """
    if start + 2 > end:
        raise _truncated("topic name")
    topic_start = start + 2
    topic_end = topic_start + (view[start] << 8 | view[start + 1])
    if topic_end > end:
        raise RemoteProtocolError("topic name runs past the end of the packet [MQTT-1.5.3]")
    try:
        topic = str(view[topic_start:topic_end], "utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("topic name is not well-formed UTF-8 [MQTT-1.5.3-1]") from None
    # U+0000 is refused by topic_name_problem along with the other control characters.
    problem = topic_name_problem(topic, limits.max_topic_levels)
    if problem is not None:
        raise RemoteProtocolError(problem)
    qos = (first >> 1) & 0x03
    if qos:
        packet_id: int | None = _read_packet_id(view, topic_end, end, "PUBLISH")
        payload_start = topic_end + 2
    else:
        packet_id = None
        payload_start = topic_end
    return new_publish(
        topic,
        bytes(view[payload_start:end]),
        qos,
        bool(first & 0x01),
        bool(first & 0x08),
        packet_id,
    )


_new_object = object.__new__
_set_topic = Publish.__dict__["topic"].__set__
_set_payload = Publish.__dict__["payload"].__set__
_set_qos = Publish.__dict__["qos"].__set__
_set_retain = Publish.__dict__["retain"].__set__
_set_dup = Publish.__dict__["dup"].__set__
_set_packet_id = Publish.__dict__["packet_id"].__set__


def new_publish(  # noqa: PLR0917 - the field order of Publish
    topic: str, payload: bytes, qos: int, retain: bool, dup: bool, packet_id: int | None
) -> Publish:
    """``Publish(topic, payload, qos, retain, dup, packet_id)``, built in half the time.

    The frozen dataclass's ``__init__`` goes through ``object.__setattr__`` once per field; the
    decoder builds one PUBLISH per message, so it fills the slots directly. The result is an
    ordinary, equal, still frozen :class:`Publish`.
    """
    publish: Publish = _new_object(Publish)
    _set_topic(publish, topic)
    _set_payload(publish, payload)
    _set_qos(publish, qos)
    _set_retain(publish, retain)
    _set_dup(publish, dup)
    _set_packet_id(publish, packet_id)
    return publish


def _packet_id_decoder(packet_type: PacketType, make: Callable[[int], Packet]) -> Decoder:
    # PUBACK, PUBREC, PUBREL, PUBCOMP and UNSUBACK: exactly a non-zero packet identifier.
    name = packet_type.name

    def decode(view: memoryview, first: int, start: int, end: int, limits: MQTTLimits) -> Packet:
        del first, limits
        if end - start != 2:
            raise RemoteProtocolError(f"{name} remaining length is not 2")
        return make(_read_packet_id(view, start, end, name))

    return decode


def _empty_decoder(packet_type: PacketType, packet: Packet) -> Decoder:
    # PINGREQ, PINGRESP and DISCONNECT have no body. Packets are frozen, so one instance serves.
    name = packet_type.name

    def decode(view: memoryview, first: int, start: int, end: int, limits: MQTTLimits) -> Packet:
        del view, first, limits
        if end != start:
            raise RemoteProtocolError(f"{name} remaining length is not 0")
        return packet

    return decode


def _decode_subscribe(
    view: memoryview, first: int, start: int, end: int, limits: MQTTLimits
) -> Subscribe:
    # SUBSCRIBE [MQTT-3.8]. The filter cap is checked before each filter is read, so a packet
    # with a million filters costs no more than one with ``cap + 1``.
    del first
    packet_id = _read_packet_id(view, start, end, "SUBSCRIBE")
    pos = start + 2
    if pos == end:
        raise RemoteProtocolError("SUBSCRIBE without a topic filter [MQTT-3.8.3-3]")
    cap = limits.max_subscriptions_per_packet
    requests: list[tuple[str, int]] = []
    while pos < end:
        if len(requests) == cap:
            raise RemoteProtocolError(f"more than {cap} topic filters in one SUBSCRIBE")
        topic_filter, pos = _read_string(view, pos, end, "topic filter")
        problem = topic_filter_problem(topic_filter, limits.max_topic_levels)
        if problem is not None:
            raise RemoteProtocolError(problem)
        if pos == end:
            raise _truncated("SUBSCRIBE requested QoS")
        requested_qos = view[pos]
        pos += 1
        if requested_qos > 2:
            # Reserved bits 7-2 set, or QoS 3 [MQTT-3-8.3-4].
            raise RemoteProtocolError("invalid requested QoS byte in SUBSCRIBE [MQTT-3-8.3-4]")
        requests.append((topic_filter, requested_qos))
    return Subscribe(packet_id, tuple(requests))


def _decode_suback(
    view: memoryview, first: int, start: int, end: int, limits: MQTTLimits
) -> SubAck:
    # SUBACK [MQTT-3.9]: one return code per filter of the SUBSCRIBE, which had at least one.
    del first, limits
    packet_id = _read_packet_id(view, start, end, "SUBACK")
    codes = bytes(view[start + 2 : end])
    if not codes:
        raise RemoteProtocolError("SUBACK without a return code [MQTT-3.9.3]")
    if codes.translate(None, _SUBACK_CODES):
        raise RemoteProtocolError("reserved SUBACK return code [MQTT-3.9.3-2]")
    return SubAck(packet_id, tuple(codes))


def _decode_unsubscribe(
    view: memoryview, first: int, start: int, end: int, limits: MQTTLimits
) -> Unsubscribe:
    # UNSUBSCRIBE [MQTT-3.10], under the same filter cap as SUBSCRIBE.
    del first
    packet_id = _read_packet_id(view, start, end, "UNSUBSCRIBE")
    pos = start + 2
    if pos == end:
        raise RemoteProtocolError("UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]")
    cap = limits.max_subscriptions_per_packet
    topic_filters: list[str] = []
    while pos < end:
        if len(topic_filters) == cap:
            raise RemoteProtocolError(f"more than {cap} topic filters in one UNSUBSCRIBE")
        topic_filter, pos = _read_string(view, pos, end, "topic filter")
        problem = topic_filter_problem(topic_filter, limits.max_topic_levels)
        if problem is not None:
            raise RemoteProtocolError(problem)
        topic_filters.append(topic_filter)
    return Unsubscribe(packet_id, tuple(topic_filters))


_DECODERS: dict[PacketType, Decoder] = {
    PacketType.CONNECT: decode_connect,
    PacketType.CONNACK: decode_connack,
    PacketType.PUBLISH: decode_publish,
    PacketType.PUBACK: _packet_id_decoder(PacketType.PUBACK, PubAck),
    PacketType.PUBREC: _packet_id_decoder(PacketType.PUBREC, PubRec),
    PacketType.PUBREL: _packet_id_decoder(PacketType.PUBREL, PubRel),
    PacketType.PUBCOMP: _packet_id_decoder(PacketType.PUBCOMP, PubComp),
    PacketType.SUBSCRIBE: _decode_subscribe,
    PacketType.SUBACK: _decode_suback,
    PacketType.UNSUBSCRIBE: _decode_unsubscribe,
    PacketType.UNSUBACK: _packet_id_decoder(PacketType.UNSUBACK, UnsubAck),
    PacketType.PINGREQ: _empty_decoder(PacketType.PINGREQ, PingReq()),
    PacketType.PINGRESP: _empty_decoder(PacketType.PINGRESP, PingResp()),
    PacketType.DISCONNECT: _empty_decoder(PacketType.DISCONNECT, Disconnect()),
}


def _table(*kinds: PacketType) -> tuple[Decoder | None, ...]:
    # One entry per possible first byte: the decoder when that byte (type and flags) may arrive,
    # else None. One lookup then replaces the type, direction and flag checks on the hot path.
    return tuple(
        _DECODERS[PacketType(first >> 4)]
        if first >> 4 in kinds and first_byte_problem(first) is None
        else None
        for first in range(256)
    )


#: What a server accepts once CONNECTED: every client-to-server type but CONNECT, which may only
#: come first [MQTT-3.1.0-2]. CONNACK, SUBACK, UNSUBACK and PINGRESP from a client are refused
#: (CVE-2021-28166).
SERVER_DECODERS = _table(
    PacketType.PUBLISH,
    PacketType.PUBACK,
    PacketType.PUBREC,
    PacketType.PUBREL,
    PacketType.PUBCOMP,
    PacketType.SUBSCRIBE,
    PacketType.UNSUBSCRIBE,
    PacketType.PINGREQ,
    PacketType.DISCONNECT,
)

#: What a client accepts once CONNECTED: every server-to-client type but CONNACK, which may only
#: come first. A 3.1.1 server never sends CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ or DISCONNECT.
CLIENT_DECODERS = _table(
    PacketType.PUBLISH,
    PacketType.PUBACK,
    PacketType.PUBREC,
    PacketType.PUBREL,
    PacketType.PUBCOMP,
    PacketType.SUBACK,
    PacketType.UNSUBACK,
    PacketType.PINGRESP,
)
