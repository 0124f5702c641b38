"""Sans-IO MQTT 3.1.1 codec: bytes in, frozen packets out, an explicit state machine.

Use :class:`MQTTConnection` to speak MQTT on one connection, as a server or as a client; it
enforces the order of packets, the direction each may travel in, and the :class:`MQTTLimits`.
Use :func:`encode_packet` to encode a packet without a connection (pre-encoded acknowledgements,
benchmarks). Packets are the frozen value objects listed below.

Errors (:mod:`ironhub.errors`): :class:`~ironhub.errors.RemoteProtocolError` when the peer breaks
the protocol (with the CONNACK code to answer, if any), and
:class:`~ironhub.errors.LocalProtocolError` when we try to send something MQTT forbids. Nothing
else escapes the codec, whatever the bytes.
"""

from __future__ import annotations

from ironhub.codec.mqtt._connection import ConnectionState, MQTTConnection, MQTTStatistics, Role
from ironhub.codec.mqtt._encoder import encode_packet
from ironhub.codec.mqtt._limits import MQTTLimits
from ironhub.codec.mqtt._packets import (
    SUBACK_FAILURE,
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

__all__ = [
    "SUBACK_FAILURE",
    "ConnAck",
    "Connect",
    "ConnectReturnCode",
    "ConnectionState",
    "Disconnect",
    "MQTTConnection",
    "MQTTLimits",
    "MQTTStatistics",
    "Packet",
    "PacketType",
    "PingReq",
    "PingResp",
    "PubAck",
    "PubComp",
    "PubRec",
    "PubRel",
    "Publish",
    "Role",
    "SubAck",
    "Subscribe",
    "UnsubAck",
    "Unsubscribe",
    "Will",
    "encode_packet",
]
