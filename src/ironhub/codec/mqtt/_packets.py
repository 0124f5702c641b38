"""MQTT 3.1.1 packets as frozen value objects.

These are the events the codec yields for received bytes and accepts for sending. Field
names follow the specification (OASIS MQTT 3.1.1, §3). All strings are already validated
UTF-8 text; payloads are ``bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "SUBACK_FAILURE",
    "ConnAck",
    "Connect",
    "ConnectReturnCode",
    "Disconnect",
    "Packet",
    "PacketType",
    "PingReq",
    "PingResp",
    "PubAck",
    "PubComp",
    "PubRec",
    "PubRel",
    "Publish",
    "SubAck",
    "Subscribe",
    "UnsubAck",
    "Unsubscribe",
    "Will",
]


class PacketType(IntEnum):
    """Control packet types, fixed header bits 7-4 [MQTT-2.2.1]."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class ConnectReturnCode(IntEnum):
    """CONNACK return codes [MQTT-3.2.2.3]."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


#: SUBACK return code for a refused filter [MQTT-3.9.3].
SUBACK_FAILURE = 0x80


@dataclass(frozen=True, slots=True)
class Will:
    """The will message carried by CONNECT."""

    topic: str
    payload: bytes
    qos: int
    retain: bool

    def __repr__(self) -> str:
        # Like a PUBLISH payload, the will message never reaches a log line; its size does.
        return (
            f"Will(topic={self.topic!r}, qos={self.qos}, retain={self.retain},"
            f" payload=<{len(self.payload)} bytes>)"
        )


@dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT [MQTT-3.1]. ``password`` is ``None`` when the password flag is 0."""

    client_id: str
    keep_alive_seconds: int
    clean_session: bool = True
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    protocol_name: str = "MQTT"
    protocol_level: int = 4

    def __repr__(self) -> str:
        # The password is a credential: never let it reach a log line.
        return (
            f"Connect(client_id={self.client_id!r}, keep_alive_seconds={self.keep_alive_seconds},"
            f" clean_session={self.clean_session}, username={self.username!r},"
            f" password={'<redacted>' if self.password is not None else None},"
            f" will={self.will!r})"
        )


@dataclass(frozen=True, slots=True)
class ConnAck:
    """CONNACK [MQTT-3.2]."""

    return_code: ConnectReturnCode
    session_present: bool = False


@dataclass(frozen=True, slots=True)
class Publish:
    """PUBLISH [MQTT-3.3]. ``packet_id`` is ``None`` exactly when ``qos`` is 0."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None

    def __repr__(self) -> str:
        # Payload bytes never reach a log line (STYLE.md); their size does.
        return (
            f"Publish(topic={self.topic!r}, qos={self.qos}, retain={self.retain},"
            f" dup={self.dup}, packet_id={self.packet_id}, payload=<{len(self.payload)} bytes>)"
        )


@dataclass(frozen=True, slots=True)
class PubAck:
    """PUBACK [MQTT-3.4]."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class PubRec:
    """PUBREC [MQTT-3.5]."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class PubRel:
    """PUBREL [MQTT-3.6]."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class PubComp:
    """PUBCOMP [MQTT-3.7]."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE [MQTT-3.8]: ``requests`` holds (topic filter, requested QoS) pairs."""

    packet_id: int
    requests: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class SubAck:
    """SUBACK [MQTT-3.9]: one return code per request (granted QoS or 0x80)."""

    packet_id: int
    return_codes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """UNSUBSCRIBE [MQTT-3.10]."""

    packet_id: int
    topic_filters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UnsubAck:
    """UNSUBACK [MQTT-3.11]."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class PingReq:
    """PINGREQ [MQTT-3.12]."""


@dataclass(frozen=True, slots=True)
class PingResp:
    """PINGRESP [MQTT-3.13]."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """DISCONNECT [MQTT-3.14]."""


Packet = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
)
