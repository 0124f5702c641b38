"""The unmodified SDK's ProvisioningDeviceClient against ironhub's provisioning service (issue 5).

azure-iot-device 2.14.0 runs in its own interpreter (`.venv-sdk`) as a subprocess
(tests/interop/sdk_provision.py): it registers (CONNECT with the DPS username shape, register,
status polls: azure-iot-mqtt.md §5), then connects to the hub it was assigned with the same
credentials and sends telemetry. The hub runs in-process on its own loopback address and port
8883 (the SDK hard-codes the port), with a server certificate that covers that address: the
provisioning host and the assigned hub are both that address. The SDK waits 2 s before its
first status poll, so each test takes a few seconds.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import ec
from tests.support.hubkit import HubFactory
from tests.support.sdk import SDK_PROVISION_SCRIPT, next_address, sdk_python

from ironhub import pki
from ironhub.errors import NotFoundError
from ironhub.provisioning.service import ProvisioningService
from ironhub.server import RunningHub
from ironhub.storage.interfaces import Attestation, AuthKind, Stream

pytestmark = [pytest.mark.asyncio, pytest.mark.sdk]

#: Generous: registration alone is a CONNECT, a 2 s wait and a poll or two.
RUN_TIMEOUT = 90.0
MESSAGES = 2


@dataclass
class ProvisionRun:
    """What one SDK process reported."""

    events: list[dict[str, Any]]
    returncode: int
    stderr: str

    def event(self, name: str) -> dict[str, Any]:
        """The one event ``name`` (fails with everything the process said if it is missing)."""
        found = [e for e in self.events if e["event"] == name]
        assert len(found) == 1, self.describe(f"expected one {name!r} event")
        return found[0]

    def describe(self, why: str) -> str:
        return f"{why}\nevents: {self.events}\nexit: {self.returncode}\nstderr: {self.stderr}"

    def assert_telemetry_sent(self) -> None:
        assert self.returncode == 0, self.describe("the SDK process failed")
        assert [e["n"] for e in self.events if e["event"] == "sent"] == list(range(MESSAGES))
        assert self.events[-1] == {"event": "done"}, self.describe("no done event")


Provision = Callable[..., Awaitable[ProvisionRun]]


@pytest_asyncio.fixture
async def dps_hub(hub_factory: HubFactory) -> RunningHub:
    sdk_python()  # skip (or fail in CI) before starting a hub the test could not use
    address = next_address()
    return await hub_factory(mqtt=f"{address}:8883", hostnames=(address,))


def _service(hub: RunningHub) -> ProvisioningService:
    assert hub.services.provisioning is not None
    return hub.services.provisioning


@pytest_asyncio.fixture
async def provision(hub_factory: HubFactory) -> AsyncIterator[Provision]:
    # Depends on hub_factory so the SDK processes end before the hubs stop.
    python = sdk_python()
    procs: list[asyncio.subprocess.Process] = []

    async def run(hub: RunningHub, registration_id: str, **scenario: object) -> ProvisionRun:
        info = _service(hub).info()
        # What an operator hands the device (`ironhub provisioning info`).
        assert info.enabled
        assert info.port == 8883
        full = {
            "provisioning_host": info.provisioning_host,
            "id_scope": info.id_scope,
            "registration_id": registration_id,
            "ca_file": str(hub.info.ca_path),
            "messages": MESSAGES,
            "run_seconds": RUN_TIMEOUT,
            **scenario,
        }
        proc = await asyncio.create_subprocess_exec(
            str(python),
            str(SDK_PROVISION_SCRIPT),
            json.dumps(full),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT + 10)
        assert proc.returncode is not None
        events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        return ProvisionRun(events, proc.returncode, err.decode(errors="replace")[-4000:])

    yield run
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


async def _telemetry(hub: RunningHub, device_id: str) -> list[dict[str, Any]]:
    msgs = await hub.services.log.query(device_id=device_id, stream=Stream.TELEMETRY)
    return [json.loads(m.payload) for m in msgs]


def _assert_assigned(run: ProvisionRun, hub: RunningHub, device_id: str) -> dict[str, Any]:
    registered = run.event("registered")
    assert registered["status"] == "assigned", run.describe("not assigned")
    assert registered["device_id"] == device_id
    assert registered["assigned_hub"] == hub.services.config.hostname
    assert registered["substatus"] == "initialAssignment"
    return registered


async def _wait_trust_rebuild() -> None:
    # The TLS trust store is rebuilt in the background after x509 enrollment changes.
    await asyncio.sleep(0.5)


async def test_individual_symmetric_enrollment(dps_hub: RunningHub, provision: Provision) -> None:
    service = _service(dps_hub)
    created = await service.create_enrollment("sym-dev-1", Attestation.SYMMETRIC, group=False)
    assert created.primary_key is not None
    run = await provision(dps_hub, "sym-dev-1", auth="symmetric", symmetric_key=created.primary_key)
    registered = _assert_assigned(run, dps_hub, "sym-dev-1")
    assert json.loads(registered["payload"]) is None  # no allocation payload configured
    run.assert_telemetry_sent()
    assert await _telemetry(dps_hub, "sym-dev-1") == [
        {"n": n, "registration_id": "sym-dev-1"} for n in range(MESSAGES)
    ]
    device = await dps_hub.services.registry.get_device("sym-dev-1")
    assert device.auth_kind is AuthKind.SAS
    registration = await service.get_registration("sym-dev-1")
    assert (registration.status, registration.device_id) == ("assigned", "sym-dev-1")
    assert (registration.enrollment_id, registration.group) == ("sym-dev-1", False)


async def test_symmetric_group_with_derived_key(dps_hub: RunningHub, provision: Provision) -> None:
    service = _service(dps_hub)
    initial_twin = {
        "tags": {"site": "plant-7", "line": {"id": 3}},
        "properties": {"desired": {"telemetryInterval": 30, "mode": "eco"}},
    }
    allocation = {"tenant": "acme", "config": {"firmware": "1.4.2"}}
    group = await service.create_enrollment(
        "sym-fleet",
        Attestation.SYMMETRIC,
        group=True,
        initial_twin=initial_twin,
        allocation_payload=allocation,
    )
    assert group.primary_key is not None
    # What the factory tooling does (azure-iot-mqtt.md §5.4): the SDK does not derive keys.
    registration_id = "sym-fleet-0042"
    device_key = base64.b64encode(
        hmac.new(
            base64.b64decode(group.primary_key), registration_id.encode(), hashlib.sha256
        ).digest()
    ).decode()
    assert await service.compute_device_key("sym-fleet", registration_id) == device_key
    run = await provision(
        dps_hub,
        registration_id,
        auth="symmetric",
        symmetric_key=device_key,
        provisioning_payload={"modelId": "dtmi:example:sensor;1", "firmware": "1.4.1"},
    )
    registered = _assert_assigned(run, dps_hub, registration_id)
    # The SDK re-serialises registrationState.payload as a JSON string.
    assert json.loads(registered["payload"]) == allocation
    run.assert_telemetry_sent()
    assert len(await _telemetry(dps_hub, registration_id)) == MESSAGES
    assert dps_hub.services.twins is not None
    twin = await dps_hub.services.twins.get(registration_id)
    assert dict(twin.tags) == initial_twin["tags"]
    assert dict(twin.desired) == initial_twin["properties"]["desired"]
    registration = await service.get_registration(registration_id)
    assert (registration.enrollment_id, registration.group) == ("sym-fleet", True)


async def test_x509_individual_enrollment(
    dps_hub: RunningHub, provision: Provision, tmp_path: Path
) -> None:
    service = _service(dps_hub)
    now = dt.datetime.now(dt.UTC)
    key, cert = pki.create_self_signed_device_certificate("x509-dev-1", now=now)
    await service.create_enrollment(
        "x509-dev-1",
        Attestation.X509,
        group=False,
        certificates_pem=(pki.certificate_pem(cert).decode(),),
    )
    await _wait_trust_rebuild()
    run = await provision(
        dps_hub,
        "x509-dev-1",
        auth="x509",
        cert_file=_write(tmp_path / "x509-dev-1.pem", pki.certificate_pem(cert)),
        key_file=_write(tmp_path / "x509-dev-1.key", pki.private_key_pem(key)),
    )
    _assert_assigned(run, dps_hub, "x509-dev-1")
    run.assert_telemetry_sent()
    assert len(await _telemetry(dps_hub, "x509-dev-1")) == MESSAGES
    device = await dps_hub.services.registry.get_device("x509-dev-1")
    assert device.auth_kind is AuthKind.X509_THUMBPRINT


async def test_x509_group_enrollment(
    dps_hub: RunningHub, provision: Provision, tmp_path: Path
) -> None:
    service = _service(dps_hub)
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = pki.create_ca("interop factory root", now=now)
    await service.create_enrollment(
        "x509-fleet",
        Attestation.X509,
        group=True,
        certificates_pem=(pki.certificate_pem(ca_cert).decode(),),
    )
    await _wait_trust_rebuild()
    registration_id = "x509-fleet-0007"
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = pki.issue_device_certificate(ca_key, ca_cert, key.public_key(), registration_id, now=now)
    run = await provision(
        dps_hub,
        registration_id,
        auth="x509",
        cert_file=_write(tmp_path / "leaf.pem", pki.certificate_pem(leaf)),
        key_file=_write(tmp_path / "leaf.key", pki.private_key_pem(key)),
    )
    _assert_assigned(run, dps_hub, registration_id)
    run.assert_telemetry_sent()
    assert len(await _telemetry(dps_hub, registration_id)) == MESSAGES
    device = await dps_hub.services.registry.get_device(registration_id)
    assert device.auth_kind is AuthKind.X509_CA
    registration = await service.get_registration(registration_id)
    assert (registration.enrollment_id, registration.group) == ("x509-fleet", True)


async def test_disabled_enrollment_is_refused(dps_hub: RunningHub, provision: Provision) -> None:
    service = _service(dps_hub)
    created = await service.create_enrollment(
        "sym-off", Attestation.SYMMETRIC, group=False, enabled=False
    )
    assert created.primary_key is not None
    run = await provision(dps_hub, "sym-off", auth="symmetric", symmetric_key=created.primary_key)
    error = run.event("error")
    print("disabled enrollment:", error)
    # The operation ends with status "disabled" (200), which SDK 2.14.0 does not know: its
    # pipeline fails with ServiceError ("invalid registration status disabled") and register()
    # wraps that in ClientError("Unexpected failure"), as it would against Azure.
    assert (error["stage"], error["type"], error["cause"]) == (
        "register",
        "ClientError",
        "ServiceError",
    ), run.describe("")
    assert "invalid registration status disabled" in error["cause_message"]
    assert run.returncode == 1
    assert not [e for e in run.events if e["event"] in ("registered", "connected", "sent")]
    with pytest.raises(NotFoundError):
        await dps_hub.services.registry.get_device("sym-off")
    with pytest.raises(NotFoundError):
        await service.get_registration("sym-off")
    security = await dps_hub.services.log.query(stream=Stream.SECURITY)
    refused = [dict(m.properties) for m in security]
    assert any(
        p.get("event") == "provisioning-refused"
        and p.get("registration_id") == "sym-off"
        and "disabled" in p.get("reason", "")
        for p in refused
    ), refused


async def test_wrong_symmetric_key_is_refused(dps_hub: RunningHub, provision: Provision) -> None:
    service = _service(dps_hub)
    await service.create_enrollment("sym-bad", Attestation.SYMMETRIC, group=False)
    wrong = base64.b64encode(b"w" * 32).decode()
    run = await provision(dps_hub, "sym-bad", auth="symmetric", symmetric_key=wrong)
    error = run.event("error")
    print("wrong key:", error)
    # CONNACK "not authorized" (5): the SDK raises CredentialError, without retrying.
    assert (error["stage"], error["type"]) == ("register", "CredentialError"), run.describe("")
    with pytest.raises(NotFoundError):
        await dps_hub.services.registry.get_device("sym-bad")
    security = await dps_hub.services.log.query(stream=Stream.SECURITY)
    refused = [dict(m.properties) for m in security]
    assert any(
        p.get("event") == "provisioning-refused"
        and p.get("client_id") == "sym-bad"
        and p.get("reason") == "bad-signature"
        for p in refused
    ), refused
