"""The public surface of ironhub.codec.mqtt is its __all__, and nothing private leaks into it."""

from __future__ import annotations

import inspect

import ironhub.codec.mqtt as mqtt
from ironhub.codec.mqtt import _packets

EXPECTED = {
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
}


def test_all_is_exactly_the_documented_surface() -> None:
    assert set(mqtt.__all__) == EXPECTED
    assert len(mqtt.__all__) == len(EXPECTED)
    for name in mqtt.__all__:
        assert hasattr(mqtt, name), name


def test_every_packet_module_name_is_reexported() -> None:
    assert set(_packets.__all__) <= set(mqtt.__all__)


def test_public_classes_and_functions_are_documented() -> None:
    for name in mqtt.__all__:
        value = getattr(mqtt, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), name


def test_public_callables_state_what_they_raise() -> None:
    for function in (
        mqtt.encode_packet,
        mqtt.MQTTConnection.receive_data,
        mqtt.MQTTConnection.send,
    ):
        assert "Raises:" in (function.__doc__ or ""), function.__qualname__
