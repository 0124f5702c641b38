"""The README quickstart, end to end: `ironhub serve`, a device created with the CLI, the
unmodified Azure SDK sending telemetry, and the operator watching it with `messages tail`."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import ssl
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from tests.support.sdk import SDK_DEVICE_SCRIPT, SDK_PROVISION_SCRIPT, next_address, sdk_python
from tests.support.serve_process import ServeProcess, child_environment, hub_command

pytestmark = pytest.mark.sdk


def test_readme_quickstart(tmp_path: Path) -> None:
    python = sdk_python()
    address = next_address()
    data = tmp_path / "ironhub-data"
    init = subprocess.run(
        hub_command("init", "--data", str(data), "--hostname", address, "--json"),
        capture_output=True,
        env=child_environment(),
        timeout=60,
        check=True,
    )
    token = json.loads(init.stdout)["first_admin_token"]
    with ServeProcess.start(
        data, mqtt=f"{address}:8883", extra_args=("--hostname", address)
    ) as hub:
        env = hub.cli_environment(token)
        created = subprocess.run(
            hub_command("device", "create", "dev1", "--json"),
            capture_output=True,
            env=env,
            timeout=60,
            check=True,
        )
        connection_string = json.loads(created.stdout)["connection_string"]
        assert connection_string.startswith(f"HostName={address};DeviceId=dev1;SharedAccessKey=")
        with subprocess.Popen(
            hub_command(
                "messages",
                "tail",
                "--device",
                "dev1",
                "--stream",
                "telemetry",
                "--count",
                "2",
                "--json",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        ) as tail:
            try:
                # The tail shows messages committed from its subscription on: wait for it, so a
                # fast device cannot send before the tail listens (a race seen once under load).
                _wait_for_live_tail(hub.api_url, hub.ca_path, token)
                device = subprocess.run(
                    [
                        str(python),
                        str(SDK_DEVICE_SCRIPT),
                        json.dumps(
                            {
                                "auth": "sas",
                                "ca_file": str(hub.ca_path),
                                "connection_string": connection_string,
                                "messages": 2,
                                "properties": {"site": "lab"},
                            }
                        ),
                    ],
                    capture_output=True,
                    timeout=120,
                    check=False,
                )
                assert device.returncode == 0, device.stdout + device.stderr
                out, err = tail.communicate(timeout=60)
            finally:
                tail.kill()
        assert tail.returncode == 0, err.decode()
        lines = [json.loads(line) for line in out.decode().splitlines()]
        telemetry = [m for m in lines if m["stream"] == "telemetry"]
        assert [json.loads(m["payload_text"]) for m in telemetry] == [{"n": 0}, {"n": 1}]
        assert telemetry[0]["properties"]["site"] == "lab"
        assert telemetry[0]["device_id"] == "dev1"


def _wait_for_live_tail(api_url: str, ca_path: Path, token: str) -> None:
    url = urllib.parse.urlsplit(api_url)
    context = ssl.create_default_context(cafile=str(ca_path))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conn = http.client.HTTPSConnection(
            url.hostname or "", url.port, context=context, timeout=10
        )
        try:
            conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
            body = conn.getresponse().read().decode()
        finally:
            conn.close()
        if "\nironhub_live_tails 1.0" in body:
            return
        time.sleep(0.05)
    raise AssertionError("the messages tail never subscribed")


class _Events:
    """The JSON event lines of an SDK device process, read on a thread."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.lines: queue.Queue[dict[str, object]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put(json.loads(line))

    def until(self, event: str, timeout: float = 60.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {event!r} event from the SDK device")
            try:
                got = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if got.get("event") == "error":
                raise AssertionError(f"SDK device error: {got}")
            if got.get("event") == event:
                return got

    def command(self, **command: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()


def test_readme_twins_methods_and_c2d(tmp_path: Path) -> None:
    # The README's second quickstart: an SDK device with handlers, driven by the CLI commands
    # the README shows (twin patch/show/query, device invoke, c2d send/list, feedback).
    python = sdk_python()
    address = next_address()
    data = tmp_path / "ironhub-data"
    init = subprocess.run(
        hub_command("init", "--data", str(data), "--hostname", address, "--json"),
        capture_output=True,
        env=child_environment(),
        timeout=60,
        check=True,
    )
    token = json.loads(init.stdout)["first_admin_token"]
    with ServeProcess.start(
        data, mqtt=f"{address}:8883", extra_args=("--hostname", address)
    ) as hub:
        env = hub.cli_environment(token)

        def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                hub_command(*args), capture_output=True, env=env, timeout=60, check=False
            )

        created = cli("device", "create", "dev1", "--json")
        assert created.returncode == 0, created.stderr
        scenario = {
            "mode": "cloud",
            "ca_file": str(hub.ca_path),
            "connection_string": json.loads(created.stdout)["connection_string"],
            "handlers": ["messages", "desired", "methods"],
            "run_seconds": 120,
        }
        with subprocess.Popen(
            [str(python), str(SDK_DEVICE_SCRIPT), json.dumps(scenario)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as proc:
            try:
                events = _Events(proc)
                events.until("ready")
                events.command(op="get_twin")
                assert events.until("twin")["twin"] == {
                    "desired": {"$version": 1},
                    "reported": {"$version": 1},
                }
                events.command(op="patch_reported", patch={"fw": "1.2.3"})
                events.until("patched")

                patched = cli(
                    "twin", "patch", "dev1", "--desired", '{"interval": 5}',
                    "--tags", '{"site": "lab"}', "--json",
                )  # fmt: skip
                assert patched.returncode == 0, patched.stderr
                assert events.until("desired")["patch"] == {"interval": 5, "$version": 2}
                shown = json.loads(cli("twin", "show", "dev1", "--json").stdout)
                assert shown["properties"]["reported"]["fw"] == "1.2.3"
                assert shown["tags"] == {"site": "lab"}
                found = cli(
                    "twin", "query", "tags.site = 'lab' AND properties.reported.fw = '1.2.3'",
                    "--json",
                )  # fmt: skip
                assert found.returncode == 0, found.stderr
                assert "dev1" in found.stdout.decode()

                invoked = cli(
                    "device", "invoke", "dev1", "reboot", "--payload", '{"delay": 1}',
                    "--timeout", "10", "--json",
                )  # fmt: skip
                assert invoked.returncode == 0, invoked.stderr
                answer = json.loads(invoked.stdout)
                assert answer["status"] == 200
                assert answer["payload"] == {"method": "reboot", "echo": {"delay": 1}}

                sent = cli(
                    "c2d", "send", "dev1", "--body", "hello", "--property", "color=blue",
                    "--ttl", "600", "--json",
                )  # fmt: skip
                assert sent.returncode == 0, sent.stderr
                message = events.until("message")
                assert message["data"] == "hello"
                assert message["custom_properties"] == {"color": "blue"}
                deadline = time.monotonic() + 30
                while json.loads(cli("c2d", "list", "dev1", "--json").stdout)["messages"]:
                    assert time.monotonic() < deadline, "the C2D message was never completed"
                    time.sleep(0.1)
                feedback = cli("messages", "list", "--stream", "feedback", "--json")
                assert '"completed"' in feedback.stdout.decode()
                events.command(op="stop")
                events.until("done")
            finally:
                proc.kill()

        offline = cli("device", "invoke", "dev1", "reboot", "--timeout", "2")
        assert offline.returncode == 4, offline.stderr


def _cli_json(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        hub_command(*args, "--json"), capture_output=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_readme_provisioning(tmp_path: Path) -> None:
    """The README's provisioning quickstart: a group, a derived key, the SDK registers."""
    python = sdk_python()
    address = next_address()
    data = tmp_path / "ironhub-data"
    init = subprocess.run(
        hub_command("init", "--data", str(data), "--hostname", address, "--json"),
        capture_output=True,
        env=child_environment(),
        timeout=60,
        check=True,
    )
    token = json.loads(init.stdout)["first_admin_token"]
    with ServeProcess.start(
        data, mqtt=f"{address}:8883", extra_args=("--hostname", address)
    ) as hub:
        env = hub.cli_environment(token)
        info = _cli_json(env, "provisioning", "info")
        assert info["provisioningHost"] == address and info["port"] == 8883
        _cli_json(env, "enrollment-group", "create", "factory", "--attestation", "symmetric")
        key = _cli_json(env, "enrollment-group", "compute-device-key", "factory", "sensor-0042")[
            "deviceKey"
        ]
        device = subprocess.run(
            [
                str(python),
                str(SDK_PROVISION_SCRIPT),
                json.dumps(
                    {
                        "provisioning_host": info["provisioningHost"],
                        "id_scope": info["idScope"],
                        "registration_id": "sensor-0042",
                        "ca_file": str(hub.ca_path),
                        "auth": "symmetric",
                        "symmetric_key": key,
                        "messages": 1,
                    }
                ),
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert device.returncode == 0, device.stdout + device.stderr
        events = [json.loads(line) for line in device.stdout.decode().splitlines()]
        registered = next(e for e in events if e["event"] == "registered")
        assert registered["status"] == "assigned"
        assert registered["device_id"] == "sensor-0042"
        assert registered["assigned_hub"] == address
        assert events[-1]["event"] == "done"
        registration = _cli_json(env, "registration", "show", "sensor-0042")
        assert registration["status"] == "assigned"
        assert registration["enrollmentId"] == "factory"
        messages = _cli_json(env, "messages", "list", "--device", "sensor-0042")
        assert any(m["stream"] == "telemetry" for m in messages["messages"])
        # Cutting the whole group off disables the device it provisioned.
        _cli_json(env, "enrollment-group", "disable", "factory")
        assert _cli_json(env, "device", "show", "sensor-0042")["state"] == "disabled"
