"""``ironhub report exposure|compliance`` and ``GET /reports/*`` over a real hub (issue 6).

A whole hub runs in-process (``hub_factory``), listening on real loopback sockets; the CLI runs
through ``CliRunner`` in a worker thread as an operator would, against the real HTTPS API. The
reports must describe the hub as it runs: the route table the application serves, the port the
device endpoint is bound to, the TLS context it hands new connections.

What a fresh hub legitimately fails, decided here and asserted below:

* 5.3, 5.7 and NIST 5: there is no signed firmware update service yet;
* 5.2: no posture facts reach the report (no advisory feed);
* 5.6: provisioning is served with no enrollment (the fleet audit's low finding);
* 5.11: no route erases the messages a device sent;
* NIST 4: the first ``admin`` has no MFA yet.

Everything else passes, 5.1 included (the only operator still has a fresh one-time password
and no device shares a key), and each seeded misconfiguration flips exactly its provisions.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
from tests.integration.test_cli_provisioning import run, run_json

from ironhub.api.app import api_state
from ironhub.monitor import compliance_service
from ironhub.monitor.compliance import RouteFacts
from ironhub.monitor.compliance_service import ReportBuilder
from ironhub.registry.sealing import device_key_aad, seal
from ironhub.storage.interfaces import (
    Attestation,
    AuthKind,
    DeviceRecord,
    DeviceState,
    EnrollmentRecord,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.hubkit import HubFactory

    from ironhub.server import RunningHub

pytestmark = pytest.mark.asyncio

FRESH_HUB_FAILS = {"5.2", "5.3", "5.6", "5.7", "5.11", "N4", "N5"}


def failing(answer: dict[str, Any]) -> set[str]:
    return {
        p["ref"] if p["framework"] == "ETSI EN 303 645" else f"N{p['ref']}"
        for p in answer["provisions"]
        if p["status"] == "fail"
    }


def provision(answer: dict[str, Any], ref: str) -> dict[str, Any]:
    framework = "NISTIR 8259A" if ref.startswith("N") else "ETSI EN 303 645"
    [found] = [
        p
        for p in answer["provisions"]
        if p["framework"] == framework and p["ref"] == ref.removeprefix("N")
    ]
    return found


async def compliance_json(hub: RunningHub) -> dict[str, Any]:
    """``report compliance --json``, which exits 5 on every hub today (no firmware updates)."""
    result = await run(hub, "report", "compliance", "--json")
    assert result.exit_code == 5, (result.stdout, result.stderr)
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


async def _seed_sas(hub: RunningHub, device_id: str, key: bytes) -> None:
    """A SAS device whose primary key is ``key`` (as a factory flashing one key twice would)."""
    assert hub.services.keys is not None
    kek = hub.services.keys.kek
    now = hub.services.clock.time()
    await hub.services.storage.insert_device(
        DeviceRecord(
            device_id=device_id,
            auth_kind=AuthKind.SAS,
            state=DeviceState.ENABLED,
            created_at=now,
            updated_at=now,
            primary_key_sealed=seal(kek, key, aad=device_key_aad(device_id, "primary")),
            secondary_key_sealed=seal(
                kek, secrets.token_bytes(32), aad=device_key_aad(device_id, "secondary")
            ),
        )
    )


async def _enroll(hub: RunningHub, enrollment_id: str, *, group: bool) -> None:
    now = hub.services.clock.time()
    await hub.services.storage.insert_enrollment(
        EnrollmentRecord(
            enrollment_id=enrollment_id,
            group=group,
            attestation=Attestation.SYMMETRIC,
            enabled=True,
            created_at=now,
            updated_at=now,
        )
    )


# --- exposure ---------------------------------------------------------------------------------


async def test_exposure_lists_every_served_route_and_the_live_listeners(hub: RunningHub) -> None:
    answer = await run_json(hub, "report", "exposure")
    entries = answer["entries"]
    assert abs(answer["checkedAt"] - hub.services.clock.time()) < 60
    # Every route of the table the application serves, with its permission.
    routes = {e["name"]: e for e in entries if e["kind"] == "route"}
    served = api_state(hub.app).operations
    assert len(routes) == len(served)
    for op in served:
        entry = routes[f"{op.method} {op.path}"]
        assert entry["where"] == "operator API"
        if op.permission is None:
            assert entry["authentication"] == "none"
            assert entry["notes"].startswith("public: no token (")
        else:
            assert entry["authentication"] == f"bearer token with permission {op.permission}"
    assert routes["GET /reports/exposure"]["authentication"].endswith("audit:read")
    assert routes["GET /reports/compliance"]["authentication"].endswith("audit:read")
    assert "NOT DECLARED" not in json.dumps(entries)
    # The listeners as bound: the real ports, not the configured 0.
    listeners = {e["name"]: e for e in entries if e["kind"] == "listener"}
    device = listeners["device endpoint (MQTT)"]
    assert device["where"] == hub.info.mqtt
    # The device CA is a trust anchor, so the TLS layer asks for (optional) client certificates.
    assert device["notes"] == "TLS 1.2 to 1.3 only; loopback only; asks for client certificates"
    assert "SAS token" in device["authentication"]
    assert "claim token" in device["authentication"]  # provisioning is served
    api = listeners["operator API (HTTPS)"]
    assert f"https://{api['where']}" == hub.info.api_url
    assert api["notes"] == "TLS 1.2 to 1.3 only; loopback only"
    protocols = [e["name"] for e in entries if e["kind"] == "protocol"]
    assert protocols == [
        "MQTT 3.1.1 over TLS (Azure IoT Hub device protocol)",
        "DPS over MQTT/TLS (device provisioning)",
        "HTTPS REST (operator API, OpenAPI 3.1)",
        "Server-Sent Events (live tail)",
    ]
    human = await run(hub, "report", "exposure")
    assert human.exit_code == 0, human.stderr
    for text in ("KIND", "AUTHENTICATION", "GET /healthz", "public: no token", hub.info.mqtt):
        assert text in human.stdout, text
    public = sum(1 for e in routes.values() if e["authentication"] == "none")
    assert f"{len(entries)} entries ({public} public routes)" in human.stdout


async def test_a_wildcard_bind_is_exposed_and_fails_5_6(hub_factory: HubFactory) -> None:
    hub = await hub_factory(mqtt="0.0.0.0:0", allow_public_bind="1", provisioning_enabled="false")
    answer = await run_json(hub, "report", "exposure")
    [device] = [e for e in answer["entries"] if e["name"] == "device endpoint (MQTT)"]
    assert device["where"].startswith("0.0.0.0:")
    assert "binds every interface" in device["notes"]
    assert "registrations" not in device["authentication"]
    assert "DPS" not in json.dumps(answer)
    report = await compliance_json(hub)
    # Provisioning off: 5.6 fails for the bind alone, and 5.12 fails instead.
    assert failing(report) == (FRESH_HUB_FAILS | {"5.12"})
    assert any("binds every interface" in line for line in provision(report, "5.6")["evidence"])


# --- compliance -------------------------------------------------------------------------------


async def test_a_fresh_hub_fails_the_update_provisions_and_passes_5_1(hub: RunningHub) -> None:
    answer = await compliance_json(hub)
    assert len(answer["provisions"]) == 19
    assert answer["passed"] + answer["failed"] == 19
    assert answer["failed"] == len(FRESH_HUB_FAILS)
    assert failing(answer) == FRESH_HUB_FAILS
    assert abs(answer["checkedAt"] - hub.services.clock.time()) < 60
    for ref in ("5.3", "5.7", "N5"):
        p = provision(answer, ref)
        assert any("no signed firmware update service" in line for line in p["evidence"]), ref
        assert p["fix"]
    p51 = provision(answer, "5.1")
    assert p51["status"] == "pass"
    assert p51["fix"] == ""
    assert "0 shared-credential findings in the fleet audit" in p51["evidence"][0]
    p55 = provision(answer, "5.5")
    assert (
        f"device endpoint (MQTT) {hub.info.mqtt} accepts TLS 1.2 to 1.3 only" in (p55["evidence"])
    )
    assert "no witness file configured" in " ".join(provision(answer, "5.10")["evidence"])
    assert "0 of 1 enabled operator accounts use TOTP MFA" in " ".join(
        provision(answer, "N4")["evidence"]
    )
    human = await run(hub, "report", "compliance")
    assert human.exit_code == 5
    for text in ("FRAMEWORK", "FAIL", "PASS", "No universal default passwords", "failing: "):
        assert text in human.stdout, text
    assert f"{answer['passed']} of 19 pass" in human.stdout


async def test_seeded_misconfigurations_flip_their_provisions(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    hub = await hub_factory(
        monitor_enabled="false",
        storage_synchronous="NORMAL",
        limits_connections_per_source_per_second="0",
        api_max_body_bytes=str(64 * 1024 * 1024),
        audit_witness_path=str(tmp_path / "witness.log"),
    )
    shared = secrets.token_bytes(32)
    await _seed_sas(hub, "copy-a", shared)
    await _seed_sas(hub, "copy-b", shared)
    answer = await compliance_json(hub)
    assert failing(answer) == FRESH_HUB_FAILS | {"5.1", "5.4", "5.9", "5.10", "5.13", "N1", "N6"}
    assert "the security monitor is disabled" in " ".join(provision(answer, "5.10")["evidence"])
    assert provision(answer, "5.10")["fix"] == "set monitor.enabled = true"
    assert "1 shared-credential findings" in provision(answer, "5.4")["evidence"][0]
    nine = " ".join(provision(answer, "5.9")["evidence"])
    assert "storage.synchronous = NORMAL" in nine
    assert "connections_per_source_per_second is 0: the limit is off" in nine
    assert "api.max_body_bytes is 6.71089e+07" in " ".join(provision(answer, "5.13")["evidence"])
    assert f"witness file {tmp_path / 'witness.log'} configured" in " ".join(
        provision(answer, "N6")["evidence"]
    )
    assert "copy-a" not in json.dumps(answer)  # counts, not names: the fleet audit names them


async def test_enrollments_and_a_private_data_dir_are_observed(
    hub: RunningHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of one, so that counting enrollments turns pages in both namespaces.
    monkeypatch.setattr(compliance_service, "PAGE", 1)
    await _enroll(hub, "sensor-1", group=False)
    await _enroll(hub, "factory", group=True)
    await _enroll(hub, "lab", group=True)
    answer = await compliance_json(hub)
    assert failing(answer) == FRESH_HUB_FAILS - {"5.6"}
    assert "provisioning is served with 3 enrollments" in provision(answer, "5.6")["evidence"]
    data_dir = hub.services.config.data_dir
    data_dir.chmod(0o750)
    try:
        opened = await compliance_json(hub)
    finally:
        data_dir.chmod(0o700)
    assert failing(opened) == FRESH_HUB_FAILS - {"5.6"} | {"5.4", "5.8", "N3"}
    assert provision(opened, "5.4")["fix"] == f"chmod 700 {data_dir}"


async def test_the_routes_need_audit_read(hub: RunningHub) -> None:
    created = await run_json(hub, "token", "create", "backend", "--role", "registry-read")
    for command in ("exposure", "compliance"):
        refused = await run(hub, "report", command, token=created["token"])
        assert refused.exit_code == 3, (refused.stdout, refused.stderr)
    viewer = await run_json(hub, "token", "create", "auditor", "--role", "viewer")
    assert (await run(hub, "report", "exposure", "--json", token=viewer["token"])).exit_code == 0
    assert (await run(hub, "report", "compliance", token=viewer["token"])).exit_code == 5


async def test_the_builder_reports_what_it_cannot_observe(hub: RunningHub) -> None:
    # A hub wired without the optional services, and an API address nobody passed.
    bare = replace(hub.services, provisioning=None, operators=None, endpoint=None, audit=None)
    facts = await ReportBuilder(bare, routes=[("GET", "/healthz", None)]).facts(fleet=False)
    assert [listener.kind for listener in facts.listeners] == ["api"]
    [api] = facts.listeners
    assert not api.observed
    assert (api.host, api.port) == ("127.0.0.1", 0)
    assert facts.routes == (RouteFacts("GET", "/healthz", None),)
    assert facts.audit_healthy is None
    assert facts.enrollments == 0
    assert facts.access.accounts == 0
    assert not facts.provisioning_enabled
    assert facts.fleet_findings == ()

    class StandIn:
        def connections(self) -> list[object]:
            return []

    stand_in = replace(hub.services, endpoint=StandIn())
    facts = await ReportBuilder(stand_in, api_tls=False).facts(fleet=False)
    device, api = facts.listeners
    assert (device.kind, device.observed, device.tls_min) == ("device", False, "")
    assert (api.tls, api.tls_min) == (False, "")
    report = await ReportBuilder(stand_in, api_tls=False).compliance()
    assert report.failed >= 1
    assert {r.ref for r in report.results if r.status == "fail"} >= {"5.5", "5.8"}
    # A data directory that is a file, or is gone, is not private.
    config = hub.services.config
    for path in (hub.info.ca_path, config.data_dir / "missing"):
        elsewhere = replace(hub.services, config=replace(config, data_dir=path))
        assert not (await ReportBuilder(elsewhere).facts(fleet=False)).data_dir_private


async def test_the_cli_exits_0_when_everything_passes(
    hub: RunningHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No hub passes today (no firmware update service); the rules are narrowed to the passing
    # provisions to see the CLI's answer to a clean report.
    real = compliance_service.compliance
    monkeypatch.setattr(
        compliance_service,
        "compliance",
        lambda facts, policy: [r for r in real(facts, policy) if r.status == "pass"],
    )
    result = await run(hub, "report", "compliance")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    passed = 19 - len(FRESH_HUB_FAILS)
    assert f"{passed} of {passed} pass (checked at" in result.stdout
    assert "failing" not in result.stdout
