"""Where the reference device SDK runs: its own interpreter, and hub addresses on port 8883.

azure-iot-device 2.14.0 pins paho-mqtt<2 and hard-codes port 8883, so it lives in `.venv-sdk`
(built by `make test`) and each hub it talks to listens on its own loopback address.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from tests.support.services import require_service

ROOT = Path(__file__).resolve().parents[2]
SDK_DEVICE_SCRIPT = ROOT / "tests" / "interop" / "sdk_device.py"
SDK_PROVISION_SCRIPT = ROOT / "tests" / "interop" / "sdk_provision.py"
_addresses = itertools.count(2)


def sdk_python() -> Path:
    """The SDK virtualenv's interpreter (skips, or fails in CI, when it is missing)."""
    path = Path(os.environ.get("IRONHUB_SDK_PYTHON", ROOT / ".venv-sdk" / "bin" / "python"))
    require_service(
        "azure-iot-device virtualenv", path.exists(), f"{path} does not exist (run make test)"
    )
    return path


def next_address() -> str:
    """A loopback address no other test of this run uses: 127.0.<worker + 1>.<n>."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    return f"127.0.{index + 1}.{next(_addresses)}"
