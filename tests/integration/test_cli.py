"""The ``ironhub`` CLI against a live API server over TLS (and ``serve`` as a real process).

Client commands run through ``click.testing.CliRunner`` with the environment an operator would
set (``IRONHUB_API``, ``IRONHUB_TOKEN``, ``IRONHUB_CA``); the server runs in its own thread
(conftest.py), so a blocking command such as ``messages tail`` can run while the test appends
to the log.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from click.testing import CliRunner, Result

from ironhub import pki
from ironhub.api import close_streams
from ironhub.cli.main import cli, safe
from ironhub.services import ConnectionInfo
from ironhub.storage.interfaces import Stream

if TYPE_CHECKING:
    from pathlib import Path

    from tests.integration.conftest import APIHub

_CLEAR = ("IRONHUB_TOKEN_FILE", "IRONHUB_DATA", "IRONHUB_API", "IRONHUB_TOKEN", "IRONHUB_CA")


def run(hub: APIHub | None, *args: str, env: dict[str, str | None] | None = None) -> Result:
    """Run ``ironhub ARGS`` with the operator's environment pointing at ``hub``."""
    environment: dict[str, str | None] = dict.fromkeys(_CLEAR)
    if hub is not None:
        environment |= {
            "IRONHUB_API": hub.url,
            "IRONHUB_TOKEN": hub.token,
            "IRONHUB_CA": str(hub.pki.ca_path),
        }
    environment |= env or {}
    return CliRunner().invoke(cli, list(args), env=environment, catch_exceptions=False)


def run_json(hub: APIHub, *args: str) -> Any:
    result = run(hub, *args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def assert_one_line_error(result: Result, exit_code: int, *fragments: str) -> str:
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def unsealed_keys(hub: APIHub, device_id: str) -> tuple[str, ...]:
    async def keys() -> tuple[str, ...]:
        record = await hub.services.registry.get_device(device_id)
        return tuple(
            base64.b64encode(k).decode() for k in hub.services.registry.unseal_keys(record)
        )

    return hub.call(keys())


# --- devices -----------------------------------------------------------------------------------


def test_device_lifecycle_json(api_hub: APIHub) -> None:
    created = run_json(api_hub, "device", "create", "dev1")
    assert set(created) == {"device", "primary_key", "secondary_key", "connection_string"}
    assert created["device"]["device_id"] == "dev1"
    assert (created["primary_key"], created["secondary_key"]) == unsealed_keys(api_hub, "dev1")

    listed = run_json(api_hub, "device", "list")
    assert [d["device_id"] for d in listed["devices"]] == ["dev1"]
    assert listed["next_after"] is None

    shown = run_json(api_hub, "device", "show", "dev1")
    assert shown["state"] == "enabled"
    assert "primary_key" not in shown

    rotated = run_json(api_hub, "device", "rotate-key", "dev1", "--key", "secondary")
    assert unsealed_keys(api_hub, "dev1") == (created["primary_key"], rotated["key"])
    assert rotated["connection_string"].endswith(rotated["key"])

    assert run_json(api_hub, "device", "disable", "dev1")["state"] == "disabled"
    assert run_json(api_hub, "device", "enable", "dev1")["state"] == "enabled"

    cs = run_json(api_hub, "device", "connection-string", "dev1", "--gateway", "edge.local")
    assert cs["connection_string"] == (
        f"HostName=hub.example.test;DeviceId=dev1;SharedAccessKey={created['primary_key']};"
        "GatewayHostName=edge.local"
    )
    assert run_json(api_hub, "device", "delete", "dev1", "--yes") == {"deleted": "dev1"}
    assert run_json(api_hub, "device", "list")["devices"] == []
    actions = [e["action"] for e in api_hub.security_events("operator-action")]
    assert actions == [
        "device-create",
        "device-rotate-key",
        "device-disable",
        "device-enable",
        "connection-string-disclose",
        "device-delete",
    ]


def test_device_commands_for_humans(api_hub: APIHub) -> None:
    result = run(api_hub, "device", "create", "dev1")
    assert result.exit_code == 0, result.stderr
    keys = unsealed_keys(api_hub, "dev1")
    assert "Created device dev1 (sas)." in result.stdout
    assert keys[0] in result.stdout
    assert keys[1] in result.stdout
    # The connection string stays on one line, copy-pasteable.
    assert f"HostName=hub.example.test;DeviceId=dev1;SharedAccessKey={keys[0]}" in (
        result.stdout.splitlines()
    )
    assert "shown only once" in result.stdout

    api_hub.endpoint.live = [ConnectionInfo("dev1", "127.0.0.1:5000", "sas", 1.0, 60)]
    listed = run(api_hub, "device", "list")
    assert listed.exit_code == 0
    assert re.search(r"dev1\s+sas\s+enabled\s+yes\s+1", listed.stdout), listed.stdout

    shown = run(api_hub, "device", "show", "dev1")
    assert re.search(r"State:\s+enabled", shown.stdout)
    assert keys[0] not in shown.stdout

    assert "is now disabled" in run(api_hub, "device", "disable", "dev1").stdout
    assert "is now enabled" in run(api_hub, "device", "enable", "dev1").stdout
    rotated = run(api_hub, "device", "rotate-key", "dev1")
    assert unsealed_keys(api_hub, "dev1")[0] in rotated.stdout

    cs = run(api_hub, "device", "connection-string", "dev1")
    new_primary = unsealed_keys(api_hub, "dev1")[0]
    assert cs.stdout == f"HostName=hub.example.test;DeviceId=dev1;SharedAccessKey={new_primary}\n"

    refused = run(api_hub, "device", "delete", "dev1")
    assert_one_line_error(refused, 2, "--yes")
    assert run(api_hub, "device", "delete", "dev1", "--yes").stdout == "Deleted device dev1.\n"
    assert run(api_hub, "device", "list").stdout == "No devices.\n"


def test_thumbprint_device_from_certificate_file(api_hub: APIHub, tmp_path: Path) -> None:
    _, cert = pki.create_self_signed_device_certificate("cam1", now=dt.datetime.now(dt.UTC))
    pem = tmp_path / "cam1.pem"
    pem.write_bytes(pki.certificate_pem(cert))
    created = run_json(
        api_hub, "device", "create", "cam1", "--auth", "x509-thumbprint", "--cert", str(pem)
    )
    assert created["device"]["primary_thumbprint"] == pki.thumbprint_sha256(cert)
    assert created["connection_string"].endswith(";x509=true")
    missing = run(api_hub, "device", "create", "cam2", "--cert", str(tmp_path / "nope.pem"))
    assert missing.exit_code == 2
    assert "Traceback" not in missing.output


def test_device_list_pages_through_everything(api_hub: APIHub) -> None:
    for i in range(5):
        run_json(api_hub, "device", "create", f"d{i}")
    listed = run_json(api_hub, "device", "list")
    assert [d["device_id"] for d in listed["devices"]] == [f"d{i}" for i in range(5)]
    limited = run_json(api_hub, "device", "list", "--limit", "2", "--after", "d0")
    assert [d["device_id"] for d in limited["devices"]] == ["d1", "d2"]
    assert limited["next_after"] == "d2"


# --- CAs ---------------------------------------------------------------------------------------


def test_ca_commands(api_hub: APIHub, tmp_path: Path) -> None:
    _, cert = pki.create_ca("Fleet CA", now=dt.datetime.now(dt.UTC))
    pem = tmp_path / "fleet.pem"
    pem.write_bytes(pki.certificate_pem(cert))
    added = run_json(api_hub, "ca", "add", str(pem))
    fingerprint = added["fingerprint"]
    assert fingerprint == pki.thumbprint_sha256(cert)
    assert [c["fingerprint"] for c in run_json(api_hub, "ca", "list")["cas"]] == [fingerprint]
    human = run(api_hub, "ca", "list")
    assert fingerprint in human.stdout
    assert "Fleet CA" in human.stdout
    again = run(api_hub, "ca", "add", str(pem))
    assert_one_line_error(again, 1, "already")
    assert run_json(api_hub, "ca", "remove", fingerprint) == {"removed": fingerprint}
    assert run(api_hub, "ca", "list").stdout == "No CA certificates registered.\n"
    assert_one_line_error(run(api_hub, "ca", "remove", fingerprint), 1)
    missing = run(api_hub, "ca", "add", str(tmp_path / "missing.pem"))
    assert missing.exit_code == 2
    assert "does not exist" in missing.stderr


# --- messages and connections ------------------------------------------------------------------


def test_messages_list(api_hub: APIHub) -> None:
    s1 = api_hub.append(b"21.5", properties=(("unit", "C"),))
    s2 = api_hub.append(b"\xff\x01", device_id="dev2")
    page = run_json(api_hub, "messages", "list")
    assert [m["seq"] for m in page["messages"]] == [s1, s2]
    assert page["next_after"] == s2
    only = run_json(api_hub, "messages", "list", "--device", "dev2")
    assert [m["seq"] for m in only["messages"]] == [s2]
    after = run_json(api_hub, "messages", "list", "--after", str(s1), "--limit", "1")
    assert [m["seq"] for m in after["messages"]] == [s2]
    human = run(api_hub, "messages", "list")
    assert re.search(rf"{s1}\s+\S+ \S+\s+telemetry\s+dev1\s+unit=C\s+21.5", human.stdout)
    assert "base64:/wE=" in human.stdout
    empty = run(api_hub, "messages", "list", "--stream", "security")
    assert empty.stdout == "No messages.\n"
    bad = run(api_hub, "messages", "list", "--limit", "5000")
    assert bad.exit_code == 2


def test_device_text_cannot_inject_terminal_escapes(api_hub: APIHub) -> None:
    api_hub.append("\x1b[2J\x1b]0;pwned\x07text\u202egnp.exe".encode())
    human = run(api_hub, "messages", "list")
    assert "\x1b" not in human.stdout
    assert "\u202e" not in human.stdout
    assert "\\x1b[2J" in human.stdout
    assert safe("a\x1bb\u202ec") == "a\\x1bb\\u202ec"
    assert safe("plain ünïcode") == "plain ünïcode"


def tail_in_thread(hub: APIHub, *args: str) -> tuple[threading.Thread, list[Result]]:
    results: list[Result] = []
    thread = threading.Thread(
        target=lambda: results.append(run(hub, "messages", "tail", *args)), daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while hub.tail_count() == 0:
        assert time.monotonic() < deadline, "the tail did not subscribe"
        time.sleep(0.02)
    return thread, results


def test_messages_tail_count_json(api_hub: APIHub) -> None:
    thread, results = tail_in_thread(api_hub, "--count", "2", "--json", "--device", "dev1")
    api_hub.append(b"skip me", device_id="dev2")
    s1 = api_hub.append(b"one")
    s2 = api_hub.append(b"two", properties=(("k", "v"),))
    api_hub.append(b"three")
    thread.join(20)
    assert not thread.is_alive()
    (result,) = results
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(m["seq"], m["payload_text"]) for m in lines] == [(s1, "one"), (s2, "two")]
    assert lines[1]["properties"] == {"k": "v"}


def test_messages_tail_for_humans(api_hub: APIHub) -> None:
    thread, results = tail_in_thread(api_hub, "--count", "1", "--stream", "security")
    api_hub.append(b"telemetry")
    seq = api_hub.append(b"tamper!", stream=Stream.SECURITY, properties=(("kind", "usb"),))
    thread.join(20)
    (result,) = results
    assert result.exit_code == 0, result.stderr
    assert re.fullmatch(rf"#{seq} \S+ \S+ security dev1 kind=usb tamper!\n", result.stdout), (
        result.stdout
    )


def test_messages_tail_ends_with_an_error_when_the_hub_closes_it(api_hub: APIHub) -> None:
    thread, results = tail_in_thread(api_hub)
    api_hub.run(lambda: close_streams(api_hub.app))
    thread.join(20)
    (result,) = results
    assert_one_line_error(result, 1, "closed the tail")


def test_connections(api_hub: APIHub) -> None:
    assert run_json(api_hub, "connections") == {"connections": []}
    assert run(api_hub, "connections").stdout == "No live connections.\n"
    api_hub.endpoint.live = [ConnectionInfo("dev1", "127.0.0.1:5000", "sas", 1.0, 60)]
    listed = run_json(api_hub, "connections")["connections"]
    assert [c["device_id"] for c in listed] == ["dev1"]
    assert re.search(r"dev1\s+127\.0\.0\.1:5000\s+sas", run(api_hub, "connections").stdout)


# --- error paths -------------------------------------------------------------------------------


def test_unknown_device_is_one_line(api_hub: APIHub) -> None:
    result = run(api_hub, "device", "show", "ghost")
    assert_one_line_error(result, 1, "ghost", "does not exist")
    assert result.stdout == ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_api_unreachable(api_hub: APIHub) -> None:
    port = free_port()
    result = run(api_hub, "device", "list", env={"IRONHUB_API": f"https://127.0.0.1:{port}"})
    assert_one_line_error(result, 1, "cannot reach the API", str(port))


def test_bad_token(api_hub: APIHub) -> None:
    forged = "ihk_" + "A" * 43
    result = run(api_hub, "device", "list", env={"IRONHUB_TOKEN": forged})
    line = assert_one_line_error(result, 3, "refused the token")
    assert forged not in line


def test_missing_token(api_hub: APIHub) -> None:
    result = run(api_hub, "device", "list", env={"IRONHUB_TOKEN": None})
    assert_one_line_error(result, 3, "IRONHUB_TOKEN")


def test_token_file(api_hub: APIHub, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(api_hub.token + "\n")
    token_file.chmod(0o644)
    loose = run(
        api_hub, "device", "list", "--token-file", str(token_file), env={"IRONHUB_TOKEN": None}
    )
    assert_one_line_error(loose, 3, "group or others", "chmod 600")
    token_file.chmod(0o600)
    ok = run(api_hub, "device", "list", "--json", "--token-file", str(token_file))
    assert ok.exit_code == 0, ok.stderr
    via_env = run(
        api_hub,
        "device",
        "list",
        "--json",
        env={"IRONHUB_TOKEN": None, "IRONHUB_TOKEN_FILE": str(token_file)},
    )
    assert via_env.exit_code == 0, via_env.stderr
    missing = run(api_hub, "device", "list", "--token-file", str(tmp_path / "nope"))
    assert_one_line_error(missing, 3, "cannot read token file")


def test_wrong_ca_is_a_clear_tls_error(api_hub: APIHub, tmp_path: Path) -> None:
    _, other = pki.create_ca("Some other CA", now=dt.datetime.now(dt.UTC))
    other_ca = tmp_path / "other.pem"
    other_ca.write_bytes(pki.certificate_pem(other))
    result = run(api_hub, "device", "list", env={"IRONHUB_CA": str(other_ca)})
    assert_one_line_error(result, 1, "TLS verification", "--ca")
    missing = run(api_hub, "device", "list", "--ca", str(tmp_path / "none.pem"))
    assert_one_line_error(missing, 2, "not found")


def test_ca_defaults_to_the_data_dir(api_hub: APIHub, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ca.pem").write_bytes(api_hub.pki.ca_path.read_bytes())
    result = run(api_hub, "device", "list", "--json", "--data", str(data), env={"IRONHUB_CA": None})
    assert result.exit_code == 0, result.stderr


def test_plain_http_only_to_loopback(api_hub: APIHub) -> None:
    result = run(api_hub, "device", "list", "--api", "http://hub.example.test:8443")
    assert_one_line_error(result, 2, "loopback")
    malformed = run(api_hub, "device", "list", "--api", "ftp://x")
    assert_one_line_error(malformed, 2, "https://")


def test_usage_errors_exit_2() -> None:
    result = run(None, "device", "create")
    assert result.exit_code == 2
    assert run(None, "device", "rotate-key", "dev1", "--key", "third").exit_code == 2
    assert run(None, "--version").stdout.startswith("ironhub, version ")


# --- init and serve ----------------------------------------------------------------------------


def test_init_prints_the_first_token_once(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    first = run(None, "init", "--data", str(data), "--hostname", "hub.local", "--json")
    assert first.exit_code == 0, first.stderr
    info = json.loads(first.stdout)
    assert info["created"] is True
    assert info["hostname"] == "hub.local"
    assert info["first_admin_token"].startswith("ihk_")
    assert info["ca_path"].endswith(".pem")
    second = run(None, "init", "--data", str(data))
    assert second.exit_code == 0, second.stderr
    assert "Already initialised" in second.stdout
    assert info["first_admin_token"] not in second.stdout
    assert "First admin token" not in second.stdout


def test_serve_banner_and_a_client_session(tmp_path: Path) -> None:
    """``ironhub serve`` as a real process: banner, then the CLI drives it with its token."""
    data = tmp_path / "hub"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRONHUB_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ironhub.cli",
            "serve",
            "--data",
            str(data),
            "--mqtt",
            f"127.0.0.1:{free_port()}",
            "--api",
            f"127.0.0.1:{free_port()}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner: list[str] = []
        deadline = time.monotonic() + 60
        while not any("ironhub messages tail" in line for line in banner):
            assert time.monotonic() < deadline, banner
            line = process.stdout.readline()
            assert line, (banner, process.stderr.read() if process.stderr else "")
            banner.append(line)
        text = "".join(banner)
        token = re.search(r"export IRONHUB_TOKEN=(ihk_\S+)", text)
        api = re.search(r"export IRONHUB_API=(\S+)", text)
        ca = re.search(r"export IRONHUB_CA=(\S+)", text)
        assert token
        assert api
        assert ca
        assert "First admin token" in text
        assert "ironhub device create dev1" in text
        assert "IoTHubDeviceClient.create_from_connection_string(" in text
        assert "server_verification_cert=open(" in text
        assert re.search(r"MQTT \(devices\):\s+127\.0\.0\.1:\d+", text)
        operator = {
            "IRONHUB_API": api.group(1),
            "IRONHUB_TOKEN": token.group(1),
            "IRONHUB_CA": ca.group(1),
        }
        created = CliRunner().invoke(
            cli, ["device", "create", "dev1", "--json"], env=dict.fromkeys(_CLEAR) | operator
        )
        assert created.exit_code == 0, created.stderr
        assert json.loads(created.stdout)["connection_string"].startswith(
            "HostName=localhost;DeviceId=dev1;SharedAccessKey="
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
    assert process.returncode == 0
