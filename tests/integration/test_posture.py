"""Device posture end to end over real sockets: profiles, drift, baselines, advisories (issue 6).

* An operator creates a hardware profile and assigns it; a device that reports an extra
  listening port, a Bluetooth radio or a USB stick raises ``profile-drift``; one that fits
  raises nothing.
* The profile's baseline judges inventories (``inventory-below-baseline`` names the profile)
  and its anti-malware age replaces the detector's default.
* An OSV file imported through the API (JSON) and the CLI (OSV's ``all.zip`` layout) puts
  advisories in force at once: a device whose *stored* inventory has a covered package is
  alerted without sending anything new, and the outdated/vulnerable-device report lists it
  with the fixed version; a later import withdraws the advisory.
* Profiles and advisories survive a restart; a profile in use cannot be deleted.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from typing import TYPE_CHECKING, Any

import pytest
from tests.integration.test_cli_provisioning import assert_one_line_error, run, run_json
from tests.support.hubkit import DeviceKit
from tests.support.mqtt_client import TestDevice

from ironhub.cli.client import APIError, HubClient
from ironhub.codec.mqtt import PubAck, Publish

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.hubkit import HubFactory

    from ironhub.server import RunningHub
    from ironhub.storage.interfaces import AlertRecord

pytestmark = pytest.mark.asyncio

SECURITY_TOPIC = "devices/{}/messages/events/ironhub-stream=security"

SENSOR: dict[str, Any] = {
    "description": "Field sensor v2",
    "hardware": {
        "interfaces": {"ethernet": 1, "wifi": 1},
        "listening": ["tcp/22"],
        "usb": None,
        "consoles": ["ssh"],
    },
    "baseline": {
        "os": {"Debian GNU/Linux": "12.7"},
        "packages": {"Debian:12:busybox": "1:1.35.0-4+b3"},
        "maxDefinitionsAgeHours": 24,
    },
}

OPENSSL_ADVISORY: dict[str, Any] = {
    "schema_version": "1.6.0",
    "id": "DSA-9001-1",
    "modified": "2026-09-01T00:00:00Z",
    "published": "2026-08-30T00:00:00Z",
    "summary": "openssl - security update",
    "aliases": ["CVE-2026-0001"],
    "affected": [
        {
            "package": {"ecosystem": "Debian:12", "name": "openssl"},
            "ranges": [
                {
                    "type": "ECOSYSTEM",
                    "events": [{"introduced": "0"}, {"fixed": "3.0.15-1~deb12u1"}],
                }
            ],
        }
    ],
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
}

INVENTORY: dict[str, Any] = {
    "os": {"name": "Debian GNU/Linux", "version": "12.7", "kernel": "6.1.0-25-arm64"},
    "packages": [
        {"name": "openssl", "version": "3.0.14-1~deb12u2", "ecosystem": "Debian:12"},
        {"name": "busybox", "version": "1:1.35.0-4+b3", "ecosystem": "Debian:12"},
    ],
}


def _security(event: str, **fields: Any) -> bytes:
    return json.dumps({"event": event, "time": "2026-11-22T02:00:00Z", **fields}).encode()


async def _publish(device: TestDevice, device_id: str, body: bytes) -> None:
    packet_id = device.packet_id()
    device.send(Publish(SECURITY_TOPIC.format(device_id), body, qos=1, packet_id=packet_id))
    ack = await device.recv(PubAck)
    assert ack.packet_id == packet_id


def _client(hub: RunningHub) -> HubClient:
    assert hub.info.first_admin_token is not None
    return HubClient(hub.info.api_url, hub.info.first_admin_token, hub.info.ca_path)


async def _api(hub: RunningHub, method: str, path: str, **kwargs: Any) -> Any:
    return await asyncio.to_thread(_client(hub).request, method, path, **kwargs)


async def _alerts(hub: RunningHub, device_id: str) -> list[AlertRecord]:
    assert hub.services.monitor is not None
    return await hub.services.monitor.list_alerts(device_id=device_id)


async def _processed(hub: RunningHub) -> None:
    """Wait until the monitor has processed everything committed so far."""
    assert hub.services.monitor is not None
    assert await hub.services.monitor.wait_for(await hub.services.log.last_seq())


async def _wait_alert(hub: RunningHub, device_id: str, alert_type: str) -> AlertRecord:
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        for alert in await _alerts(hub, device_id):
            if alert.alert_type == alert_type:
                return alert
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {alert_type} alert for {device_id}")


async def _sensor(hub: RunningHub, kit: DeviceKit, device_id: str) -> TestDevice:
    creds = await kit.create_sas(device_id)
    return await kit.connect(creds)


async def test_profile_drift_and_baseline_from_an_assigned_profile(
    hub_factory: HubFactory,
) -> None:
    hub = await hub_factory()
    kit = DeviceKit(hub)
    created = await _api(
        hub, "POST", "/profiles", json_body={"name": "sensor-v2", "profile": SENSOR}
    )
    assert created["version"] == 1
    assert created["profile"]["hardware"]["listening"] == ["tcp/22"]
    fits, drifts = await _sensor(hub, kit, "fits-1"), await _sensor(hub, kit, "drifts-1")
    await _api(
        hub, "POST", "/profiles/sensor-v2/assign", json_body={"deviceIds": ["fits-1", "drifts-1"]}
    )
    twin = await _api(hub, "GET", "/devices/drifts-1/twin")
    assert twin["tags"] == {"ironhub": {"profile": "sensor-v2"}}

    ok_ports = {
        "listening": [
            {"protocol": "tcp", "port": 22, "address": "0.0.0.0"},
            {"protocol": "tcp", "port": 631, "address": "127.0.0.1"},
        ],
        "interfaces": [{"name": "eth0", "kind": "ethernet"}, {"name": "lo", "kind": "loopback"}],
    }
    await _publish(fits, "fits-1", _security("ports", **ok_ports))
    await _publish(fits, "fits-1", _security("login", user="ops", console="ssh", outcome="success"))
    await _publish(fits, "fits-1", _security("inventory", **INVENTORY))

    bad_ports = {
        "listening": [
            {"protocol": "tcp", "port": 22, "address": "0.0.0.0"},
            {"protocol": "tcp", "port": 4444, "address": "0.0.0.0", "process": "nc"},
        ],
        "interfaces": [{"name": "eth0", "kind": "ethernet"}, {"name": "hci0", "kind": "bluetooth"}],
    }
    await _publish(drifts, "drifts-1", _security("ports", **bad_ports))
    drift = await _wait_alert(hub, "drifts-1", "profile-drift")
    details = json.loads(drift.details)
    assert details["profile"] == "sensor-v2"
    assert "tcp/4444 (nc)" in details["items"]
    assert "bluetooth" in details["items"]
    # Below the profile's baseline, and anti-malware older than the profile's 24 h.
    old = dict(INVENTORY, os={"name": "Debian GNU/Linux", "version": "12.5"})
    await _publish(drifts, "drifts-1", _security("inventory", **old))
    below = await _wait_alert(hub, "drifts-1", "inventory-below-baseline")
    assert json.loads(below.details)["profile"] == "sensor-v2"
    assert "12.5 < 12.7" in json.loads(below.details)["items"]
    await _publish(
        drifts,
        "drifts-1",
        _security("antimalware", engine="ClamAV", enabled=True, definitions_age_hours=30),
    )
    stale = await _wait_alert(hub, "drifts-1", "antimalware-stale")
    assert json.loads(stale.details)["profile"] == "sensor-v2"

    await _processed(hub)
    assert await _alerts(hub, "fits-1") == []
    # The report shows the drifted device with its stored reports; not the one that fits.
    report = await _api(hub, "GET", "/posture/report")
    assert [d["deviceId"] for d in report["devices"]] == ["drifts-1"]
    [row] = report["devices"]
    assert row["outdated"] is True
    assert row["belowBaseline"] == ["os Debian GNU/Linux 12.5 < 12.7"]
    assert any("4444" in line for line in row["drift"])
    assert any("30 h old" in line for line in row["antimalware"])
    assert report["checked"] == 2

    # Unassigned, the device falls back to no profile: the same report drifts no more.
    await _api(hub, "DELETE", "/devices/drifts-1/profile")
    before = len(await _alerts(hub, "drifts-1"))
    assert hub.services.monitor is not None
    await _publish(
        drifts, "drifts-1", _security("login", user="root", console="ttyS1", outcome="failure")
    )
    await _processed(hub)
    types = [a.alert_type for a in await _alerts(hub, "drifts-1")]
    assert "console-login-outside-maintenance" in types
    assert types.count("profile-drift") == 1
    assert len(types) == before + 1
    await fits.close()
    await drifts.close()


async def test_a_profile_in_use_cannot_be_deleted_and_bad_documents_are_400(
    hub: RunningHub, kit: DeviceKit
) -> None:
    await kit.create_sas("d-1")
    await _api(hub, "POST", "/profiles", json_body={"name": "m", "profile": {}})
    await _api(hub, "POST", "/profiles/m/assign", json_body={"deviceIds": ["d-1"]})
    assert (await _api(hub, "GET", "/profiles/m/devices"))["deviceIds"] == ["d-1"]
    with pytest.raises(APIError) as conflict:
        await _api(hub, "DELETE", "/profiles/m")
    assert conflict.value.status == 409
    assert "d-1" in str(conflict.value)
    await _api(hub, "DELETE", "/devices/d-1/profile")
    await _api(hub, "DELETE", "/profiles/m")
    for body, status, fragment in (
        ({"name": "x", "profile": {"hardware": {"listening": ["tcp/99999"]}}}, 400, "tcp/99999"),
        ({"name": "bad name", "profile": {}}, 400, "profile name"),
        ({"name": "x", "profile": {"nope": 1}}, 400, "unknown member 'nope'"),
    ):
        with pytest.raises(APIError) as refused:
            await _api(hub, "POST", "/profiles", json_body=body)
        assert refused.value.status == status
        assert fragment in str(refused.value)
    with pytest.raises(APIError) as missing:
        await _api(hub, "POST", "/profiles/none/assign", json_body={"deviceIds": ["d-1"]})
    assert missing.value.status == 404
    await _api(hub, "POST", "/profiles", json_body={"name": "y", "profile": {}})
    with pytest.raises(APIError) as unknown_device:
        await _api(hub, "POST", "/profiles/y/assign", json_body={"deviceIds": ["ghost"]})
    assert unknown_device.value.status == 404
    with pytest.raises(APIError) as taken:
        await _api(hub, "POST", "/profiles", json_body={"name": "y", "profile": {}})
    assert taken.value.status == 409


async def test_imported_advisories_alert_stored_inventories_and_fill_the_report(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    hub = await hub_factory()
    kit = DeviceKit(hub)
    device = await _sensor(hub, kit, "gw-1")
    await _publish(device, "gw-1", _security("inventory", **INVENTORY))
    await _processed(hub)
    assert await _alerts(hub, "gw-1") == []

    # Imported through the API as JSON: the stored inventory is checked at once.
    started = time.monotonic()
    answer = await _api(
        hub,
        "POST",
        "/advisories/import",
        query={"source": "dsa.json"},
        raw_body=json.dumps([OPENSSL_ADVISORY, {"id": "broken"}]).encode(),
    )
    assert (answer["added"], answer["refused"], answer["total"]) == (1, 1, 1)
    assert answer["refusedEntries"][0]["entry"] in ("broken", "item 1")
    alert = await _wait_alert(hub, "gw-1", "vulnerable-package")
    assert time.monotonic() - started < 2.0
    assert alert.severity == "critical"
    assert "DSA-9001-1" in json.loads(alert.details)["advisories"]
    report = await _api(hub, "GET", "/posture/report", query={"device": "gw-1"})
    [row] = report["devices"]
    [vulnerability] = row["vulnerabilities"]
    assert vulnerability["advisoryId"] == "DSA-9001-1"
    assert vulnerability["fixed"] == "3.0.15-1~deb12u1"
    assert vulnerability["installedVersion"] == "3.0.14-1~deb12u2"
    assert row["vulnerable"] is True

    # A device that reports later is matched on arrival; a patched one is not.
    other = await _sensor(hub, kit, "gw-2")
    await _publish(other, "gw-2", _security("inventory", **INVENTORY))
    await _wait_alert(hub, "gw-2", "vulnerable-package")
    patched = dict(
        INVENTORY,
        packages=[{"name": "openssl", "version": "3.0.15-1~deb12u1", "ecosystem": "Debian:12"}],
    )
    fixed = await _sensor(hub, kit, "gw-3")
    await _publish(fixed, "gw-3", _security("inventory", **patched))
    await _processed(hub)
    assert await _alerts(hub, "gw-3") == []

    # The CLI imports OSV's all.zip layout; the same advisory, withdrawn, is removed.
    withdrawn = dict(
        OPENSSL_ADVISORY, modified="2026-10-01T00:00:00Z", withdrawn="2026-10-01T00:00:00Z"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("DSA-9001-1.json", json.dumps(withdrawn))
        archive.writestr("README.txt", "not an advisory")
    path = tmp_path / "all.zip"
    path.write_bytes(buffer.getvalue())
    imported = await run_json(hub, "advisories", "import", str(path))
    assert (imported["withdrawn"], imported["total"]) == (1, 0)
    listed = await run_json(hub, "advisories", "list")
    assert listed["advisories"] == [] and listed["importedAt"] is not None
    report = await _api(hub, "GET", "/posture/report")
    assert all(not d["vulnerable"] for d in report["devices"])

    # Garbage is refused whole, with a one-line error.
    junk = tmp_path / "junk.json"
    junk.write_bytes(b"\x00\x01 not json")
    result = await run(hub, "advisories", "import", str(junk))
    assert_one_line_error(result, 1, "advisory file refused")
    for device_ in (device, other, fixed):
        await device_.close()


async def test_profiles_and_advisories_survive_a_restart(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    data = tmp_path / "restart"
    hub = await hub_factory(data_dir=data)
    kit = DeviceKit(hub)
    creds = await kit.create_sas("r-1")
    await _api(hub, "POST", "/profiles", json_body={"name": "sensor-v2", "profile": SENSOR})
    await _api(hub, "POST", "/profiles/sensor-v2/assign", json_body={"deviceIds": ["r-1"]})
    await _api(
        hub,
        "POST",
        "/advisories/import",
        raw_body=json.dumps(OPENSSL_ADVISORY).encode(),
    )
    await hub.stop()

    hub = await hub_factory(data_dir=data)
    kit = DeviceKit(hub)
    device = await kit.connect(creds)
    await _publish(
        device, "r-1", _security("usb", action="attached", vendor="0781", product="5567")
    )
    await _publish(device, "r-1", _security("inventory", **INVENTORY))
    drift = await _wait_alert(hub, "r-1", "profile-drift")
    assert "the profile has no USB" in json.loads(drift.details)["items"]
    await _wait_alert(hub, "r-1", "vulnerable-package")
    await device.close()


async def test_the_cli_manages_profiles(hub: RunningHub, kit: DeviceKit, tmp_path: Path) -> None:
    await kit.create_sas("c-1")
    document = tmp_path / "sensor.json"
    document.write_text(json.dumps(SENSOR))
    created = await run_json(hub, "profile", "create", "sensor-v2", f"@{document}")
    assert created["name"] == "sensor-v2"
    human = await run(hub, "profile", "list")
    assert human.exit_code == 0, human.stderr
    assert "sensor-v2" in human.stdout and "Field sensor v2" in human.stdout
    updated = await run_json(hub, "profile", "update", "sensor-v2", '{"description": "v3"}')
    assert updated["version"] == 2 and updated["profile"] == {"description": "v3"}
    assigned = await run_json(hub, "profile", "assign", "sensor-v2", "c-1")
    assert assigned["deviceIds"] == ["c-1"]
    assert (await run_json(hub, "profile", "devices", "sensor-v2"))["deviceIds"] == ["c-1"]
    refused = await run(hub, "profile", "delete", "sensor-v2")
    assert_one_line_error(refused, 1, "assigned to c-1")
    await run_json(hub, "profile", "unassign", "c-1")
    shown = await run(hub, "profile", "show", "sensor-v2")
    assert shown.exit_code == 0 and '"description": "v3"' in shown.stdout
    assert (await run_json(hub, "profile", "delete", "sensor-v2")) == {"deleted": "sensor-v2"}
    assert (await run_json(hub, "profile", "list")) == {"profiles": []}
    bad = await run(hub, "profile", "create", "x", '{"hardware": {"usb": []}}')
    assert_one_line_error(bad, 1, "hardware.usb must be an object")
