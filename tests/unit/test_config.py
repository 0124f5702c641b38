"""The configuration loader: defaults, TOML, environment, and refusal of anything doubtful."""

from __future__ import annotations

from pathlib import Path

import pytest

from ironhub.config import HubConfig, load_config, parse_host_port
from ironhub.errors import ConfigError


def test_defaults_are_secure(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={})
    assert config.mqtt.host == "127.0.0.1"
    assert config.mqtt.port == 8883
    assert config.api.host == "127.0.0.1"
    assert config.hostnames == ("localhost",)
    assert config.hostname == "localhost"
    assert config.storage.synchronous == "FULL"
    assert config.redacted()["data_dir"] == str(tmp_path)


def test_toml_then_environment_then_flags(tmp_path: Path) -> None:
    (tmp_path / "ironhub.toml").write_text(
        'hostnames = ["hub.example"]\n[mqtt]\nport = 9000\nmax_keepalive_seconds = 60\n'
        "[limits]\ndevice_messages_per_second = 5\n"
    )
    config = load_config(
        tmp_path,
        environ={"IRONHUB_MQTT_PORT": "9001", "IRONHUB_LIMITS_DEVICE_MESSAGE_BURST": "7"},
    )
    assert config.hostnames == ("hub.example",)
    assert config.mqtt.port == 9001
    assert config.mqtt.max_keepalive_seconds == 60
    assert config.limits.device_messages_per_second == 5.0
    assert config.limits.device_message_burst == 7
    flagged = load_config(
        tmp_path, environ={"IRONHUB_HOSTNAMES": "a.example, b.example"}, mqtt_bind="127.0.0.2:1"
    )
    assert flagged.hostnames == ("a.example", "b.example")
    assert (flagged.mqtt.host, flagged.mqtt.port) == ("127.0.0.2", 1)
    assert load_config(tmp_path, environ={}, hostnames=("x.example",)).hostname == "x.example"


def test_unrelated_environment_is_ignored(tmp_path: Path) -> None:
    config = load_config(
        tmp_path,
        environ={
            "IRONHUB_TOKEN": "t",
            "IRONHUB_API": "https://x",
            "IRONHUB_DATA": "/d",
            "HOME": "/",
        },
    )
    assert isinstance(config, HubConfig)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[mqtt]\nprot = 1\n", "unknown key"),
        ("surprise = 1\n", "unknown key"),
        ("[mqtt]\nport = 'x'\n", "not a valid"),
        ("[mqtt]\nport = true\n", "not a valid"),
        ("[mqtt]\nconnect_timeout_seconds = -1\n", "must not be negative"),
        ("[mqtt]\nhost = 3\n", "not a valid"),
        ("mqtt = 3\n", "must be a table"),
        ("hostnames = []\n", "at least one"),
        ("hostnames = [1]\n", "list of non-empty strings"),
        ("[storage]\nsynchronous = 'OFF'\n", "FULL, EXTRA or NORMAL"),
        ("[mqtt\n", "cannot be loaded"),
        ("[mqtt]\nhost = '0.0.0.0'\n", "not a loopback"),
        ("[api]\nhost = 'hub.example'\n", "not a loopback"),
    ],
)
def test_bad_configuration_refuses_to_start(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "ironhub.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, environ={})


def test_public_bind_needs_explicit_consent(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        load_config(tmp_path, environ={}, mqtt_bind="0.0.0.0:8883")
    config = load_config(
        tmp_path, environ={"IRONHUB_ALLOW_PUBLIC_BIND": "1"}, mqtt_bind="0.0.0.0:8883"
    )
    assert config.mqtt.host == "0.0.0.0"
    (tmp_path / "ironhub.toml").write_text("allow_public_bind = true\n")
    assert load_config(tmp_path, environ={}, api_bind="[::]:8443").api.host == "::"
    assert load_config(tmp_path, environ={}, api_bind="localhost:1").api.host == "localhost"


def test_unreadable_file_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "ironhub.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_config(tmp_path, environ={})


@pytest.mark.parametrize("text", ["8883", "host:", ":8883", "host:x", "host:70000", "host:-1"])
def test_host_port_parsing_refuses_garbage(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_host_port(text, what="--mqtt")


def test_host_port_parsing() -> None:
    assert parse_host_port("[::1]:8883", what="x") == ("::1", 8883)
    assert parse_host_port("127.0.0.1:0", what="x") == ("127.0.0.1", 0)
