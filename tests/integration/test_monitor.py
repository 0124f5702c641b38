"""Security monitoring end to end over real sockets (issue 6).

* A device reports tamper → an alert exists within 1 s → the quarantine playbook runs → its
  telemetry is refused while its security messages still land → an operator releases it
  through the API → telemetry flows again; every step is in the audit log.
* One key used from two source addresses → a masquerade alert and the configured response.
* Detector state survives a restart: a brute-force count continues across it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import http.server
import json
import ssl
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from tests.support.hubkit import DeviceKit, HubFactory
from tests.support.mqtt_client import ConnectRefused, SasCredentials, TestDevice

from ironhub import pki
from ironhub.cli.client import HubClient
from ironhub.clock import SYSTEM_CLOCK
from ironhub.codec.mqtt import ConnectReturnCode, PubAck, Publish
from ironhub.config import StorageConfig
from ironhub.errors import ConfigError
from ironhub.server import RunningHub
from ironhub.storage.interfaces import AlertRecord, AlertState, DeviceState, Stream
from ironhub.storage.sqlite import SQLiteStorage

pytestmark = pytest.mark.asyncio

SECURITY_TOPIC = "devices/{}/messages/events/ironhub-stream=security"
TELEMETRY_TOPIC = "devices/{}/messages/events/"


async def _publish(device: TestDevice, topic: str, body: bytes) -> None:
    packet_id = device.packet_id()
    device.send(Publish(topic, body, qos=1, packet_id=packet_id))
    ack = await device.recv(PubAck)
    assert ack.packet_id == packet_id


def _security(event: str, **fields: Any) -> bytes:
    return json.dumps({"event": event, "time": "2026-11-22T02:00:00Z", **fields}).encode()


async def _alerts(hub: RunningHub, device_id: str) -> list[AlertRecord]:
    assert hub.services.monitor is not None
    return await hub.services.monitor.list_alerts(device_id=device_id)


async def _wait_alert(hub: RunningHub, device_id: str, alert_type: str, seconds: float) -> float:
    """Seconds until an alert of ``alert_type`` exists for ``device_id`` (fails after ``seconds``)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if any(a.alert_type == alert_type for a in await _alerts(hub, device_id)):
            return time.monotonic() - started
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {alert_type} alert for {device_id} within {seconds} s")


async def _wait_state(hub: RunningHub, device_id: str, state: DeviceState) -> None:
    for _ in range(200):
        if (await hub.services.registry.get_device(device_id)).state is state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{device_id} never became {state.value}")


async def _stored(hub: RunningHub, device_id: str, stream: Stream) -> list[bytes]:
    messages = await hub.services.log.query(device_id=device_id, stream=stream, limit=1000)
    return [m.payload for m in messages]


async def _audit_actions(hub: RunningHub) -> list[tuple[str, str]]:
    assert hub.services.audit is not None
    await hub.services.audit.drain()
    records = [json.loads(b) for _, _, b in await hub.services.storage.read_audit(limit=100_000)]
    return [(r["action"], r["target"]) for r in records]


def _client(hub: RunningHub) -> HubClient:
    assert hub.info.first_admin_token is not None
    return HubClient(hub.info.api_url, hub.info.first_admin_token, hub.info.ca_path)


async def test_tamper_alert_quarantine_and_release(hub_factory: HubFactory) -> None:
    hub = await hub_factory()
    kit = DeviceKit(hub)
    creds = await kit.create_sas("meter-1")
    device = await kit.connect(creds)
    await _publish(device, TELEMETRY_TOPIC.format("meter-1"), b"before")

    await _publish(
        device, SECURITY_TOPIC.format("meter-1"), _security("tamper", sensor="lid", state="opened")
    )
    elapsed = await _wait_alert(hub, "meter-1", "tamper", 1.0)
    assert elapsed < 1.0
    await _wait_state(hub, "meter-1", DeviceState.QUARANTINED)
    [alert] = await _alerts(hub, "meter-1")
    assert alert.severity == "critical" and alert.state is AlertState.OPEN
    assert "quarantine" in (await hub.services.monitor.get_alert(alert.alert_id)).actions  # type: ignore[union-attr]

    # Quarantined: still connected; telemetry is acknowledged but refused, security lands.
    await _publish(device, TELEMETRY_TOPIC.format("meter-1"), b"during")
    await _publish(device, SECURITY_TOPIC.format("meter-1"), _security("usb", action="attached"))
    await asyncio.sleep(0.1)
    assert await _stored(hub, "meter-1", Stream.TELEMETRY) == [b"before"]
    security = await _stored(hub, "meter-1", Stream.SECURITY)
    assert any(b"usb" in payload for payload in security)
    refused = await hub.services.log.query(stream=Stream.SECURITY, limit=1000)
    assert any(dict(m.properties).get("event") == "quarantine-refused" for m in refused)
    # A reconnect does not escape the quarantine.
    await device.close()
    device = await kit.connect(creds)
    await _publish(device, TELEMETRY_TOPIC.format("meter-1"), b"reconnected")
    assert await _stored(hub, "meter-1", Stream.TELEMETRY) == [b"before"]

    # The operator releases it through the API; telemetry flows again on the same session.
    answer = await asyncio.to_thread(
        _client(hub).request, "POST", "/devices/meter-1/release", json_body={}
    )
    assert answer["state"] == "enabled"
    await _publish(device, TELEMETRY_TOPIC.format("meter-1"), b"after")
    await device.close()
    assert await _stored(hub, "meter-1", Stream.TELEMETRY) == [b"before", b"after"]

    actions = await _audit_actions(hub)
    for expected in (
        ("alert-opened", "meter-1"),
        ("playbook-quarantine", "meter-1"),
        ("quarantine-refused", "meter-1"),
    ):
        assert expected in actions, expected
    assert any(a == "operator-request" and "release" in t for a, t in actions) or any(
        "release" in a for a, _ in actions
    )


async def test_one_key_from_two_addresses_is_a_masquerade(hub_factory: HubFactory) -> None:
    hub = await hub_factory()
    kit = DeviceKit(hub)
    creds = await kit.create_sas("gate-1")
    first = await kit.connect(creds, local_addr=("127.0.0.1", 0))
    second = await kit.connect(creds, local_addr=("127.0.0.2", 0))  # the same key elsewhere
    await _wait_alert(hub, "gate-1", "masquerade", 2.0)
    await _wait_state(hub, "gate-1", DeviceState.QUARANTINED)
    [alert] = [a for a in await _alerts(hub, "gate-1") if a.alert_type == "masquerade"]
    assert alert.severity == "critical"
    details = json.loads(alert.details)
    assert {"127.0.0.1", "127.0.0.2"} <= set(details.values()) or "127.0.0.2" in alert.details
    await first.close()
    await second.close()


async def test_detector_state_survives_a_restart(hub_factory: HubFactory, tmp_path: Path) -> None:
    data = tmp_path / "hub"
    hub = await hub_factory(data_dir=data, limits_auth_failures_per_identity_per_minute="1000")
    kit = DeviceKit(hub)
    creds = await kit.create_sas("lock-9")
    wrong = SasCredentials(creds.hostname, "lock-9", "A" * 43 + "=")

    async def fail(times: int, target: RunningHub) -> None:
        k = DeviceKit(target)
        for _ in range(times):
            with pytest.raises(ConnectRefused) as refused:
                await k.connect(wrong)
            assert refused.value.code == int(ConnectReturnCode.NOT_AUTHORIZED)

    await fail(6, hub)
    await asyncio.sleep(0.3)
    assert not [a for a in await _alerts(hub, "lock-9") if a.alert_type == "brute-force"]
    await hub.stop()
    hub = await hub_factory(data_dir=data, limits_auth_failures_per_identity_per_minute="1000")
    await fail(4, hub)  # 6 + 4 = the threshold of 10 within 5 minutes
    await _wait_alert(hub, "lock-9", "brute-force", 2.0)


async def test_notify_appends_alerts_as_json_lines(hub_factory: HubFactory, tmp_path: Path) -> None:
    sink = tmp_path / "alerts.jsonl"
    hub = await hub_factory(monitor_alert_file=str(sink), monitor_playbooks="tamper:notify")
    kit = DeviceKit(hub)
    device = await kit.connect(await kit.create_sas("box-1"))
    await _publish(device, SECURITY_TOPIC.format("box-1"), _security("tamper", state="opened"))
    await _wait_alert(hub, "box-1", "tamper", 1.0)
    await device.close()
    for _ in range(100):
        if sink.exists() and sink.read_text():
            break
        await asyncio.sleep(0.01)
    [line] = sink.read_text().splitlines()
    document = json.loads(line)
    assert document["alertType"] == "tamper" and document["deviceId"] == "box-1"
    assert document["actions"] == [] and document["state"] == "open"
    # notify only: the device was not quarantined.
    assert (await hub.services.registry.get_device("box-1")).state is DeviceState.ENABLED


class _Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    failures_left: ClassVar[int] = 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.__class__.received.append((dict(self.headers.items()), body))
        if self.__class__.failures_left > 0:
            self.__class__.failures_left -= 1
            self.send_response(500)  # the first delivery fails: the monitor must retry
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


async def test_notify_posts_signed_alerts_to_a_webhook_and_retries(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = pki.create_ca("webhook receiver CA", now=now)
    key, cert = pki.issue_server_certificate(ca_key, ca_cert, ("127.0.0.1",), now=now)
    (tmp_path / "ca.pem").write_bytes(pki.certificate_pem(ca_cert))
    (tmp_path / "hook.pem").write_bytes(pki.certificate_pem(cert))
    (tmp_path / "hook.key").write_bytes(pki.private_key_pem(key))
    secret = tmp_path / "hook.secret"
    secret.write_bytes(b"0123456789abcdef0123456789abcdef")
    secret.chmod(0o600)
    _Hook.received, _Hook.failures_left = [], 1
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "hook.pem", tmp_path / "hook.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        hub = await hub_factory(
            monitor_playbooks="tamper:notify",
            monitor_webhook_url=f"https://127.0.0.1:{server.server_address[1]}/hook",
            monitor_webhook_secret_file=str(secret),
            monitor_webhook_ca_file=str(tmp_path / "ca.pem"),
        )
        kit = DeviceKit(hub)
        device = await kit.connect(await kit.create_sas("box-2"))
        await _publish(device, SECURITY_TOPIC.format("box-2"), _security("tamper", state="opened"))
        await device.close()
        for _ in range(500):
            if len(_Hook.received) >= 2:
                break
            await asyncio.sleep(0.02)
    finally:
        server.shutdown()
        server.server_close()
    assert len(_Hook.received) == 2, _Hook.received  # one failure, one retry that landed
    for headers, body in _Hook.received:
        expected = hmac.new(secret.read_bytes(), body, hashlib.sha256).hexdigest()
        assert headers["X-Ironhub-Signature"] == f"sha256={expected}"
        assert json.loads(body)["alertType"] == "tamper"


async def test_disable_and_revoke_playbooks(hub_factory: HubFactory) -> None:
    hub = await hub_factory(monitor_playbooks="tamper:disable; malware-detected:revoke")
    kit = DeviceKit(hub)
    a = await kit.create_sas("case-a")
    b = await kit.create_sas("case-b")
    dev_a = await kit.connect(a)
    dev_b = await kit.connect(b)
    await _publish(dev_a, SECURITY_TOPIC.format("case-a"), _security("tamper", state="opened"))
    await _wait_state(hub, "case-a", DeviceState.DISABLED)
    assert await dev_a.wait_closed(1.0)  # disabling drops the session at once
    detections = [{"name": "Mirai", "path": "/tmp/x"}]
    await _publish(
        dev_b,
        SECURITY_TOPIC.format("case-b"),
        _security("antimalware", engine="clam", enabled=True, detections=detections),
    )
    await _wait_alert(hub, "case-b", "malware-detected", 2.0)
    assert await dev_b.wait_closed(2.0)  # its keys were replaced: the session is gone
    with pytest.raises(ConnectRefused):
        await kit.connect(b)  # the old key no longer works
    actions = await _audit_actions(hub)
    assert ("playbook-disable", "case-a") in actions
    assert ("playbook-revoke", "case-b") in actions


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"monitor_playbooks": "tamper:explode"}, "unknown playbook action"),
        ({"monitor_webhook_url": "http://127.0.0.1:9/hook"}, "only https://"),
        ({"monitor_webhook_url": "https://127.0.0.1:9/hook"}, "webhook_secret_file"),
    ],
)
async def test_bad_monitor_settings_refuse_the_start(
    hub_factory: HubFactory, settings: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        await hub_factory(**settings)


async def test_unreadable_monitor_state_starts_the_detectors_afresh(
    hub_factory: HubFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "hub"
    hub = await hub_factory(data_dir=data)
    await hub.stop()
    # Damage the saved detector state while the hub is down.
    storage = SQLiteStorage(data / "ironhub.db", StorageConfig(), SYSTEM_CLOCK)
    await storage.open()
    await storage.put_monitor_state("detectors", "{not json")
    await storage.close()
    hub = await hub_factory(data_dir=data)  # logs the problem, does not refuse to start
    assert "monitor state unreadable" in caplog.text
    kit = DeviceKit(hub)
    device = await kit.connect(await kit.create_sas("fresh-1"))
    await _publish(device, SECURITY_TOPIC.format("fresh-1"), _security("tamper", state="opened"))
    await _wait_alert(hub, "fresh-1", "tamper", 1.0)
    await device.close()


async def test_a_maintenance_window_lets_planned_usb_work_pass(hub_factory: HubFactory) -> None:
    hub = await hub_factory()
    kit = DeviceKit(hub)
    planned = await kit.connect(await kit.create_sas("kiosk-1"))
    unplanned = await kit.connect(await kit.create_sas("kiosk-2"))
    answer = await asyncio.to_thread(
        _client(hub).request,
        "POST",
        "/devices/kiosk-1/maintenance",
        json_body={"durationSeconds": 600},
    )
    assert answer["endsAt"] - answer["startsAt"] == 600
    usb = _security("usb", action="attached", vendor="0781", product="5567")
    await _publish(planned, SECURITY_TOPIC.format("kiosk-1"), usb)
    await _publish(unplanned, SECURITY_TOPIC.format("kiosk-2"), usb)
    await _wait_alert(hub, "kiosk-2", "usb-outside-maintenance", 1.0)
    await asyncio.sleep(0.2)
    assert await _alerts(hub, "kiosk-1") == []
    assert ("maintenance-window", "kiosk-1") in await _audit_actions(hub)
    await planned.close()
    await unplanned.close()
