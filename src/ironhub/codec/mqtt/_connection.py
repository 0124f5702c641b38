"""The MQTT 3.1.1 connection state machine: bytes in, packets out, after h11.

Theory of operation
===================

An :class:`MQTTConnection` sits between a byte stream and the code that acts on packets. It
never touches a socket or a clock: the caller feeds it what it read (:meth:`receive_data`) and
writes what :meth:`send` returns. It knows one thing the packets alone do not: where in its life
the connection is, and so which packets may come and go.

One connection plays one :class:`Role`. Its :class:`ConnectionState` moves only forward::

    SERVER   AWAIT_CONNECT --receive CONNECT--> CONNECT_RECEIVED --send CONNACK 0--> CONNECTED
                                                       |                                 |
                                                send CONNACK 1..5                 receive DISCONNECT
                                                       v                                 v
                                                     CLOSED <----------------------------+

    CLIENT   AWAIT_CONNECT --send CONNECT--> AWAIT_CONNACK --receive CONNACK 0--> CONNECTED
                                                  |                                   |
                                          receive CONNACK 1..5                 send DISCONNECT
                                                  v                                   v
                                                CLOSED <------------------------------+

and from every state, a :class:`~ironhub.errors.RemoteProtocolError` leads to CLOSED.

Receiving. :meth:`receive_data` appends to a buffer and decodes, in one pass, every complete
packet the state allows, so any split of the same stream yields the same packets. Each packet's
first byte is looked up in a 256-entry table for the direction and phase: a reserved type, wrong
flags, QoS 3, DUP on QoS 0 or a type the peer may not send (CONNACK from a client,
CVE-2021-28166) fails on that byte alone. The declared remaining length is checked against the
cap for the state before the body is waited for: ``max_connect_packet_bytes`` until CONNECTED
(the peer is not authenticated yet, CVE-2017-7651), ``max_packet_bytes`` after. So the buffer
never holds more than one packet's worth of bytes.

The handshake. A server's first packet must be CONNECT [MQTT-3.1.0-1]. Once it is decoded the
server stops decoding: the connection is CONNECT_RECEIVED and further bytes are held, unread,
until the server has authenticated the client and sent CONNACK 0 [MQTT-3.1.4-5]; the held bytes
are bounded by ``max_connect_packet_bytes``. Sending CONNACK 0 makes it CONNECTED; the held
packets come out of the next :meth:`receive_data` call, ``receive_data(b"")`` included. Sending a
refusal (CONNACK 1..5) closes it [MQTT-3.2.2-5] and drops the held bytes. A client may send right
after its CONNECT (§3.1.4); its first received packet must be CONNACK, and what follows a
CONNACK 0 in the same read is decoded at once.

Ending. After a DISCONNECT (server side) or a refused CONNACK (client side) the connection is
CLOSED and nothing more may arrive [MQTT-3.14.4-1], [MQTT-3.2.2-5]: a byte after it, in the same
read or a later one, is a protocol error. After a protocol error every later
:meth:`receive_data` call raises again. Only one send survives an error: if the error carried a
``connack_code`` (a CONNECT we must answer, e.g. unsupported protocol level), the server may
still :meth:`send` one refusing CONNACK before closing.

Only :class:`~ironhub.errors.RemoteProtocolError` ever leaves :meth:`receive_data`, whatever the
bytes; only :class:`~ironhub.errors.LocalProtocolError` leaves :meth:`send`, which changes
nothing when it raises. Session state (in-flight packet ids, QoS 2 flows, keep-alive timing)
belongs to the hub's session layer, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ironhub.codec.mqtt._decoder import (
    CLIENT_DECODERS,
    SERVER_DECODERS,
    decode_connack,
    decode_connect,
    decode_publish,
    first_byte_problem,
    new_publish,
    read_frame,
)
from ironhub.codec.mqtt._encoder import encode_packet
from ironhub.codec.mqtt._limits import DEFAULT_LIMITS, MQTTLimits
from ironhub.codec.mqtt._packets import (
    ConnAck,
    Connect,
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
)
from ironhub.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["ConnectionState", "MQTTConnection", "MQTTStatistics", "Role"]


class Role(Enum):
    """Which end of the connection we are."""

    SERVER = "server"
    CLIENT = "client"


class ConnectionState(Enum):
    """Where a connection is in its life (see the theory of operation in this module).

    Attributes:
        AWAIT_CONNECT: server: waiting for the client's CONNECT. Client: CONNECT not sent yet.
        CONNECT_RECEIVED: server only: CONNECT decoded, our CONNACK not sent yet; later bytes
            are held unread [MQTT-3.1.4-5].
        AWAIT_CONNACK: client only: CONNECT sent, CONNACK not received yet.
        CONNECTED: CONNACK 0 sent (server) or received (client).
        CLOSED: the connection is over; nothing more may be received, and nothing sent but
            the one refusing CONNACK a ``connack_code`` hint allows.
    """

    AWAIT_CONNECT = "await-connect"
    CONNECT_RECEIVED = "connect-received"
    AWAIT_CONNACK = "await-connack"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class MQTTStatistics:
    """A snapshot of one connection's counters (trio's ``statistics()`` convention).

    Attributes:
        state: the connection state.
        bytes_received: bytes passed to :meth:`MQTTConnection.receive_data`.
        bytes_sent: bytes returned by :meth:`MQTTConnection.send`.
        bytes_buffered: bytes received but not yet decoded (a partial packet, or bytes held
            while a server decides on a CONNECT).
        packets_received: packets returned by :meth:`MQTTConnection.receive_data`.
        packets_sent: packets encoded by :meth:`MQTTConnection.send`.
    """

    state: ConnectionState
    bytes_received: int
    bytes_sent: int
    bytes_buffered: int
    packets_received: int
    packets_sent: int


_CONNECTED = ConnectionState.CONNECTED
_DISCONNECT_BYTE = PacketType.DISCONNECT << 4

# What each role may send once the handshake allows it [MQTT-3.1.4], §3 "direction" rows. A 3.1.1
# server has no DISCONNECT to send: it closes the network connection instead.
_SERVER_SENDS: frozenset[type] = frozenset(
    {Publish, PubAck, PubRec, PubRel, PubComp, SubAck, UnsubAck, PingResp}
)
_CLIENT_SENDS: frozenset[type] = frozenset(
    {Publish, PubAck, PubRec, PubRel, PubComp, Subscribe, Unsubscribe, PingReq, Disconnect}
)


class MQTTConnection:
    """One MQTT 3.1.1 connection, server or client side, as a sans-IO state machine.

    Feed received bytes to :meth:`receive_data` and write the bytes :meth:`send` returns. See
    the theory of operation at the top of this module for the states and the rules.

    Args:
        role: which end we are.
        limits: the caps applied to what the peer sends.
    """

    __slots__ = (
        "_buffer",
        "_bytes_received",
        "_bytes_sent",
        "_clean_session",
        "_decoders",
        "_failure",
        "_limits",
        "_packets_received",
        "_packets_sent",
        "_refusal_allowed",
        "_role",
        "_sendable",
        "_state",
        "_topic",
        "_topic_length",
        "_topic_raw",
    )

    def __init__(self, role: Role, limits: MQTTLimits = DEFAULT_LIMITS) -> None:
        self._role = role
        self._limits = limits
        self._state = ConnectionState.AWAIT_CONNECT
        self._buffer = bytearray()
        self._failure: str | None = None
        self._refusal_allowed = False
        self._clean_session = True
        server = role is Role.SERVER
        self._decoders = SERVER_DECODERS if server else CLIENT_DECODERS
        self._sendable = _SERVER_SENDS if server else _CLIENT_SENDS
        self._bytes_received = 0
        self._bytes_sent = 0
        self._packets_received = 0
        self._packets_sent = 0
        # The last PUBLISH topic decoded: its wire bytes, their length (-1: none yet, which no
        # wire length equals) and the validated string.
        self._topic_raw = b""
        self._topic_length = -1
        self._topic = ""

    @property
    def role(self) -> Role:
        """Which end of the connection we are."""
        return self._role

    @property
    def limits(self) -> MQTTLimits:
        """The caps applied to what the peer sends."""
        return self._limits

    @property
    def state(self) -> ConnectionState:
        """Where the connection is in its life."""
        return self._state

    def statistics(self) -> MQTTStatistics:
        """Return a snapshot of the connection's counters."""
        return MQTTStatistics(
            state=self._state,
            bytes_received=self._bytes_received,
            bytes_sent=self._bytes_sent,
            bytes_buffered=len(self._buffer),
            packets_received=self._packets_received,
            packets_sent=self._packets_sent,
        )

    # -- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Packet]:
        """Take bytes read from the peer and return every packet they complete, in order.

        Partial packets stay buffered until the rest arrives. ``receive_data(b"")`` decodes
        what is buffered, which a server needs after it has sent CONNACK 0.

        Args:
            data: the bytes just read; may be empty.

        Returns:
            The packets completed by ``data``, possibly none.

        Raises:
            RemoteProtocolError: the peer broke the protocol or a limit. The connection is then
                CLOSED and every later call raises again. ``connack_code`` says which CONNACK to
                send before closing, if any.
        """
        if self._failure is not None:
            raise RemoteProtocolError(f"the connection already failed: {self._failure}")
        try:
            packets = self._receive(data)
        except RemoteProtocolError as error:
            self._failure = str(error)
            self._refusal_allowed = error.connack_code is not None
            self._state = ConnectionState.CLOSED
            # A new object: views of the old buffer may live on in the traceback.
            self._buffer = bytearray()
            raise
        self._packets_received += len(packets)
        return packets

    def _receive(self, data: bytes) -> list[Packet]:
        self._bytes_received += len(data)
        state = self._state
        if state is ConnectionState.CONNECT_RECEIVED:
            # [MQTT-3.1.4-5]: hold, do not look, until our CONNACK 0 is sent.
            self._buffer += data
            self._check_held()
            return []
        if state is ConnectionState.CLOSED or (
            # A client that has not sent CONNECT expects nothing: the server speaks second.
            state is ConnectionState.AWAIT_CONNECT and self._role is Role.CLIENT
        ):
            if data:
                raise RemoteProtocolError(f"data received while the connection is {state.value}")
            return []
        buffer = self._buffer
        if buffer:
            buffer += data
            source: bytes | bytearray = buffer
        else:
            # Nothing buffered, the usual case: decode straight from ``data``, without a copy.
            source = data
        packets: list[Packet] = []
        pos = 0
        if state is not _CONNECTED:
            pos = self._receive_handshake(source, packets)
        if self._state is _CONNECTED:
            pos = self._receive_packets(source, pos, packets)
        self._keep_tail(source, pos)
        return packets

    def _keep_tail(self, source: bytes | bytearray, pos: int) -> None:
        # Keep ``source[pos:]`` as the buffer for the next call.
        end = len(source)
        state = self._state
        if pos < end and state is ConnectionState.CLOSED:
            raise RemoteProtocolError(
                "data after the end of the connection [MQTT-3.14.4-1] [MQTT-3.2.2-5]"
            )
        if source is self._buffer:
            del self._buffer[:pos]
        elif pos < end:
            self._buffer = bytearray(memoryview(source)[pos:])
        if state is ConnectionState.CONNECT_RECEIVED:
            self._check_held()

    def _check_held(self) -> None:
        cap = self._limits.max_connect_packet_bytes
        if len(self._buffer) > cap:
            raise RemoteProtocolError(f"more than {cap} bytes sent before CONNACK")

    def _receive_handshake(self, source: bytes | bytearray, packets: list[Packet]) -> int:
        # The first packet: CONNECT for a server (AWAIT_CONNECT), CONNACK for a client
        # (AWAIT_CONNACK). Returns how many bytes were consumed.
        end = len(source)
        if not end:
            return 0
        server = self._role is Role.SERVER
        first = source[0]
        if first != (0x10 if server else 0x20):
            problem = first_byte_problem(first)
            if problem is None:
                problem = (
                    "the first packet must be CONNECT [MQTT-3.1.0-1]"
                    if server
                    else "the first packet from a server must be CONNACK [MQTT-3.2.0-1]"
                )
            raise RemoteProtocolError(problem)
        body_start, body_end = read_frame(source, 0, end, self._limits.max_connect_packet_bytes)
        if body_start < 0 or body_end > end:
            return 0
        with memoryview(source) as view:
            if server:
                connect = decode_connect(view, first, body_start, body_end, self._limits)
                self._clean_session = connect.clean_session
                self._state = ConnectionState.CONNECT_RECEIVED
                packets.append(connect)
            else:
                connack = decode_connack(view, first, body_start, body_end, self._limits)
                self._state = ConnectionState.CLOSED if connack.return_code else _CONNECTED
                packets.append(connack)
        return body_end

    def _receive_packets(  # noqa: C901, PLR0912 - the hot path, inlined on purpose
        self, source: bytes | bytearray, pos: int, packets: list[Packet]
    ) -> int:
        # The hot path: decode every complete packet from ``pos`` on. Returns the new position.
        decoders = self._decoders
        limits = self._limits
        cap = limits.max_packet_bytes
        end = len(source)
        stop_byte = _DISCONNECT_BYTE if self._role is Role.SERVER else -1
        append = packets.append
        # A PUBLISH payload is sliced straight from ``bytes`` (one copy), else from the view.
        whole = source if type(source) is bytes else None
        with memoryview(source) as view:
            while pos < end:
                first = source[pos]
                decode = decoders[first]
                if decode is None:
                    raise RemoteProtocolError(self._refusal(first))
                # One or two length bytes (packets under 16 KiB) are inlined; the general case,
                # and every malformed one, goes through read_frame.
                length = source[pos + 1] if pos + 1 < end else 0x80
                if length < 0x80:
                    body_start = pos + 2
                    body_end = body_start + length
                    if body_end - pos > cap:
                        raise RemoteProtocolError(f"packet larger than the {cap}-byte limit")
                elif pos + 2 < end and 0 < source[pos + 2] < 0x80:
                    body_start = pos + 3
                    body_end = body_start + (length & 0x7F) + (source[pos + 2] << 7)
                    if body_end - pos > cap:
                        raise RemoteProtocolError(f"packet larger than the {cap}-byte limit")
                else:
                    body_start, body_end = read_frame(source, pos, end, cap)
                    if body_start < 0:
                        break
                if body_end > end:
                    break
                if first & 0xF0 == 0x30:
                    # PUBLISH, most of the traffic. A device publishes to one topic over and
                    # over: when the topic bytes equal the last one decoded (and so validated),
                    # reuse its string and read only the packet id and payload here. Anything
                    # else, malformed packets included, takes the full decoder.
                    topic_raw = self._topic_raw
                    qos = (first >> 1) & 0x03
                    topic_end = body_start + 2 + len(topic_raw)
                    payload_start = topic_end + 2 if qos else topic_end
                    if (
                        payload_start <= body_end
                        and source[body_start] << 8 | source[body_start + 1] == self._topic_length
                        and source.startswith(topic_raw, body_start + 2)
                        and (not qos or source[topic_end] or source[topic_end + 1])
                    ):
                        append(
                            new_publish(
                                self._topic,
                                whole[payload_start:body_end]
                                if whole is not None
                                else bytes(view[payload_start:body_end]),
                                qos,
                                bool(first & 0x01),
                                bool(first & 0x08),
                                source[topic_end] << 8 | source[topic_end + 1] if qos else None,
                            )
                        )
                    else:
                        append(self._decode_publish(view, first, body_start, body_end))
                else:
                    append(decode(view, first, body_start, body_end, limits))
                pos = body_end
                if first == stop_byte:
                    # [MQTT-3.14.4-1]: the client closes after DISCONNECT.
                    self._state = ConnectionState.CLOSED
                    break
        return pos

    def _decode_publish(self, view: memoryview, first: int, start: int, end: int) -> Publish:
        # A PUBLISH whose topic is not the cached one (or a malformed one): decode and validate
        # it in full, then cache its topic for the next PUBLISH.
        publish = decode_publish(view, first, start, end, self._limits)
        topic_raw = bytes(view[start + 2 : start + 2 + (view[start] << 8 | view[start + 1])])
        self._topic_raw = topic_raw
        self._topic_length = len(topic_raw)
        self._topic = publish.topic
        return publish

    def _refusal(self, first: int) -> str:
        # Why a first byte is refused once CONNECTED (slow path: the table said no).
        problem = first_byte_problem(first)
        if problem is not None:
            return problem
        packet_type = PacketType(first >> 4)
        server = self._role is Role.SERVER
        if server and packet_type is PacketType.CONNECT:
            return "a second CONNECT [MQTT-3.1.0-2]"
        if not server and packet_type is PacketType.CONNACK:
            return "a second CONNACK"
        sender = "client" if server else "server"
        return f"{packet_type.name} may not be sent by a {sender} (CVE-2021-28166 class)"

    # -- sending -----------------------------------------------------------------------------

    def send(self, packet: Packet) -> bytes:
        """Encode a packet to send to the peer and advance the state accordingly.

        A server sends CONNACK once, after receiving CONNECT: return code 0 makes the connection
        CONNECTED (call ``receive_data(b"")`` next for the packets held meanwhile), any other
        code CLOSED. A client sends CONNECT first; its DISCONNECT closes the connection.

        Args:
            packet: the packet to send.

        Returns:
            The bytes to write.

        Raises:
            LocalProtocolError: the packet is invalid, or may not be sent by this role in this
                state. Nothing changes when it is raised.
        """
        state = self._state
        kind = type(packet)
        if state is _CONNECTED or (
            state is ConnectionState.AWAIT_CONNACK  # a client need not wait (§3.1.4)
        ):
            if kind not in self._sendable:
                raise LocalProtocolError(self._cannot_send(kind))
            data = encode_packet(packet)
            if kind is Disconnect:
                self._state = ConnectionState.CLOSED
        elif self._role is Role.SERVER:
            data = self._server_handshake_send(packet)
        elif state is ConnectionState.AWAIT_CONNECT and isinstance(packet, Connect):
            data = encode_packet(packet)
            self._state = ConnectionState.AWAIT_CONNACK
        else:
            raise LocalProtocolError(self._cannot_send(kind))
        self._bytes_sent += len(data)
        self._packets_sent += 1
        return data

    def _server_handshake_send(self, packet: Packet) -> bytes:
        # A server outside CONNECTED may send exactly one thing: the CONNACK answering CONNECT,
        # or, after an error that carried a connack_code, one refusing CONNACK.
        state = self._state
        if not isinstance(packet, ConnAck) or state is ConnectionState.AWAIT_CONNECT:
            raise LocalProtocolError(self._cannot_send(type(packet)))
        if state is ConnectionState.CLOSED:
            if not (self._refusal_allowed and packet.return_code):
                raise LocalProtocolError(self._cannot_send(ConnAck))
            data = encode_packet(packet)
            self._refusal_allowed = False
            return data
        if packet.session_present and self._clean_session:
            raise LocalProtocolError("session present after a clean-session CONNECT [MQTT-3.2.2-1]")
        data = encode_packet(packet)
        if packet.return_code:
            # [MQTT-3.2.2-5]: a refusal ends the connection; what the client sent meanwhile
            # is dropped unread.
            self._state = ConnectionState.CLOSED
            self._buffer = bytearray()
        else:
            self._state = _CONNECTED
        return data

    def _cannot_send(self, kind: type) -> str:
        return f"a {self._role.value} may not send {kind.__name__} while {self._state.value}"
