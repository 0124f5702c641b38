"""The README quickstart, end to end: `ironhub serve`, a device created with the CLI, the
unmodified Azure SDK sending telemetry, and the operator watching it with `messages tail`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tests.support.sdk import SDK_DEVICE_SCRIPT, next_address, sdk_python
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
