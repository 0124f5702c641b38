"""The resource limits of one MQTT connection, as an explicit configuration object."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ironhub.codec.mqtt._rules import MAX_PACKET_BYTES
from ironhub.errors import ConfigError

__all__ = ["DEFAULT_LIMITS", "MQTTLimits"]


@dataclass(frozen=True, slots=True)
class MQTTLimits:
    """Limits the codec enforces on what a peer sends; every breach closes the connection.

    Attributes:
        max_connect_packet_bytes: the largest packet (fixed header included) accepted before the
            connection is CONNECTED, i.e. before the peer is authenticated, and also the most bytes
            held unread while a server decides on a CONNECT. The declared length is checked
            against it before anything is buffered (CVE-2017-7651, CVE-2023-0809). 4096 bytes is
            about ten times an Azure IoT CONNECT (client id of at most 128 characters, a user name
            of about 150 bytes, a SAS token of about 250 bytes).
        max_packet_bytes: the largest packet (fixed header included) accepted once CONNECTED.
            278528 bytes is 256 KiB, the Azure IoT Hub device-to-cloud message limit, plus
            16 KiB for the topic, its property bag and the headers.
        max_topic_levels: the most ``/``-separated levels in a topic name or filter (PUBLISH,
            will, SUBSCRIBE, UNSUBSCRIBE). Azure IoT topics have at most 7; AWS IoT Core allows
            8; Mosquitto's hard limit is 200. 32 bounds the cost of topic matching while leaving
            ample headroom.
        max_subscriptions_per_packet: the most topic filters in one SUBSCRIBE or UNSUBSCRIBE.
            The Azure IoT device SDKs subscribe to at most 4 filters and IoT Hub allows 5
            subscriptions per device; 8 keeps one packet from carrying thousands of filters
            (one authorisation check each).

    Raises:
        ConfigError: a limit is not a positive integer, the pre-CONNECT cap exceeds the general
            cap, or the general cap exceeds the largest packet MQTT can frame.
    """

    max_connect_packet_bytes: int = 4096
    max_packet_bytes: int = 278_528
    max_topic_levels: int = 32
    max_subscriptions_per_packet: int = 8

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"MQTT limit {field.name} must be a positive integer")
        if self.max_connect_packet_bytes > self.max_packet_bytes:
            raise ConfigError("max_connect_packet_bytes must not exceed max_packet_bytes")
        if self.max_packet_bytes > MAX_PACKET_BYTES:
            raise ConfigError(f"max_packet_bytes must not exceed {MAX_PACKET_BYTES}")


#: The documented defaults.
DEFAULT_LIMITS = MQTTLimits()
