"""``ironhub audit-fleet`` and ``GET /fleet/audit`` over a real hub (issue 6).

A whole hub runs in-process (``hub_factory``); the CLI runs through ``CliRunner`` in a worker
thread as an operator would. The misconfigured fleet is seeded the way each problem arises in
life, mostly by writing records as storage would hold them (an old device, a copied key, a
certificate near its end, a revoked certificate the endpoint never heard of, a forgotten
one-time password, a token from nowhere) and by configuration.

What a clean hub legitimately has, decided here and asserted below:

* a fresh hub with the shipped defaults has three findings, none ``high``: no audit witness
  (medium), provisioning served with no enrollment (low), CA keys in files (low); so
  ``audit-fleet`` exits 0 at the default ``--min-severity high``;
* with a witness configured and provisioning off, only ``keys.backend = file`` (low) remains;
  ``pkcs11`` needs SoftHSM and is left to the unit tests of the rule.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import secrets
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tests.integration.test_cli_provisioning import run, run_json
from tests.support.hubkit import DeviceKit
from tests.support.mqtt_client import TestDevice, client_tls_context

from ironhub import pki
from ironhub.monitor import fleet_service
from ironhub.monitor.fleet_service import FleetAuditor
from ironhub.registry.sealing import device_key_aad, seal
from ironhub.storage.interfaces import (
    Attestation,
    AuthKind,
    DeviceRecord,
    DeviceState,
    EnrollmentRecord,
    IssuedCertificateRecord,
    LogEntry,
    OperatorRecord,
    Stream,
    TokenRecord,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.hubkit import HubFactory

    from ironhub.server import RunningHub

pytestmark = pytest.mark.asyncio

DAY = 86400.0
FRESH_HUB = [
    ["disabled-logging", "medium", "audit.witness_path"],
    ["permissive-settings", "low", "keys.backend"],
    ["permissive-settings", "low", "provisioning.enabled"],
]


async def audit_json(hub: RunningHub, *args: str) -> dict[str, Any]:
    """``audit-fleet --json`` that found something at or above high (exit 5)."""
    result = await run(hub, "audit-fleet", "--json", *args)
    assert result.exit_code == 5, (result.stdout, result.stderr)
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def found(answer: dict[str, object]) -> list[list[str]]:
    findings = answer["findings"]
    assert isinstance(findings, list)
    return [[f["check"], f["severity"], f["subject"]] for f in findings]


async def test_a_fresh_hub_has_only_its_legitimate_findings(hub_factory: HubFactory) -> None:
    hub = await hub_factory()
    kit = DeviceKit(hub)
    device = await kit.connect(await kit.create_sas("fresh"))
    answer = await run_json(hub, "audit-fleet")
    assert found(answer) == FRESH_HUB
    assert answer["devices"] == 1
    assert abs(answer["checkedAt"] - hub.services.clock.time()) < 60
    assert (await run(hub, "audit-fleet")).exit_code == 0
    assert (await run(hub, "audit-fleet", "--min-severity", "medium")).exit_code == 5
    human = await run(hub, "audit-fleet", "--min-severity", "low")
    assert human.exit_code == 5
    for text in ("SEVERITY", "witness", "pkcs11", "3 finding(s), 1 identities"):
        assert text in human.stdout, text
    await device.close()


async def test_a_configured_clean_hub_finds_only_file_keys(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    # The monitor is off, so nothing refused this group-readable secret file; the audit cannot
    # read it either (read_secret_file refuses it) and says nothing of a secret it cannot see.
    loose = tmp_path / "loose.key"
    loose.write_bytes(b"y" * 40)
    loose.chmod(0o644)
    hub = await hub_factory(
        audit_witness_path=str(tmp_path / "witness.log"),
        provisioning_enabled="false",
        monitor_webhook_secret_file=str(loose),
    )
    answer = await run_json(hub, "audit-fleet")
    assert found(answer) == [["permissive-settings", "low", "keys.backend"]]
    assert (await run(hub, "audit-fleet", "--min-severity", "medium")).exit_code == 0
    empty = await hub_factory(
        audit_witness_path=str(tmp_path / "witness2.log"), provisioning_enabled="false"
    )
    assert (await run(empty, "audit-fleet", "--min-severity", "medium")).stdout.count("low") == 1


async def test_a_public_listener_is_reported(hub_factory: HubFactory) -> None:
    hub = await hub_factory(mqtt="0.0.0.0:0", allow_public_bind="1")
    assert ["permissive-settings", "medium", "mqtt.host"] in found(
        await run_json(hub, "audit-fleet")
    )


async def _seed_sas(hub: RunningHub, device_id: str, key: bytes, *, age_days: float) -> None:
    """A SAS device whose primary key is ``key``, created (and last changed) long ago."""
    assert hub.services.keys is not None
    kek = hub.services.keys.kek
    then = hub.services.clock.time() - age_days * DAY
    await hub.services.storage.insert_device(
        DeviceRecord(
            device_id=device_id,
            auth_kind=AuthKind.SAS,
            state=DeviceState.ENABLED,
            created_at=then,
            updated_at=then,
            primary_key_sealed=seal(kek, key, aad=device_key_aad(device_id, "primary")),
            secondary_key_sealed=seal(
                kek, secrets.token_bytes(32), aad=device_key_aad(device_id, "secondary")
            ),
        )
    )


def _issued(
    device_id: str, serial: str, not_after: float, *, revoked: bool
) -> IssuedCertificateRecord:
    return IssuedCertificateRecord(
        serial=serial,
        device_id=device_id,
        registration_id=device_id,
        thumbprint=hashlib.sha256(serial.encode()).hexdigest().upper(),
        not_before=not_after - 30 * DAY,
        not_after=not_after,
        issued_at=not_after - 30 * DAY,
        pem="",
        revoked_at=not_after - DAY if revoked else None,
        revocation_reason="keyCompromise" if revoked else None,
    )


async def _connect_x509_ca(hub: RunningHub, device_id: str, tmp_path: Path) -> TestDevice:
    """A device connected with a certificate from a registered factory CA."""
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = pki.create_ca("factory CA", now=now)
    await hub.services.registry.add_ca(pki.certificate_pem(ca_cert).decode())
    await hub.services.registry.create_device(device_id, AuthKind.X509_CA)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = pki.issue_device_certificate(ca_key, ca_cert, key.public_key(), device_id, now=now)
    certfile = tmp_path / "d.pem"
    certfile.write_bytes(pki.certificate_pem(cert))
    keyfile = tmp_path / "d.key"
    keyfile.write_bytes(pki.private_key_pem(key))
    await asyncio.sleep(0.2)  # the TLS trust store is rebuilt after registry changes
    kit = DeviceKit(hub)
    ctx = client_tls_context(hub.info.ca_path, certfile=certfile, keyfile=keyfile)
    return await TestDevice.connect(
        kit.host,
        kit.port,
        ctx,
        client_id=device_id,
        username=f"{hub.services.config.hostname}/{device_id}/?api-version=2019-10-01",
        password=None,
    )


async def test_each_seeded_misconfiguration_is_found(
    hub_factory: HubFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of two, so that every paged read (identities, certificates, the lifecycle scan)
    # turns a page.
    monkeypatch.setattr(fleet_service, "PAGE", 2)
    secret_file = tmp_path / "webhook.key"
    secret_file.write_bytes(b"x" * 40 + b"\n")
    secret_file.chmod(0o600)
    hub = await hub_factory(
        audit_witness_path=str(tmp_path / "witness.log"),
        monitor_enabled="false",
        monitor_webhook_secret_file=str(secret_file),
        limits_auth_failures_per_source_per_minute="1000",
        limits_connections_per_source_per_second="0",
    )
    services = hub.services
    storage = services.storage
    now = services.clock.time()
    # Two devices flashed with the same key, both old and never connected.
    shared = secrets.token_bytes(32)
    await _seed_sas(hub, "copy-a", shared, age_days=400)
    await _seed_sas(hub, "copy-b", shared, age_days=10)
    # An old device that did connect once: not "never seen".
    await _seed_sas(hub, "seen-once", secrets.token_bytes(32), age_days=10)
    await services.log.append(
        LogEntry(
            stream=Stream.LIFECYCLE,
            device_id="seen-once",
            enqueued_at=now - 5 * DAY,
            payload=b"",
            properties=(("event", "connected"), ("peer", "10.0.0.1:1")),
        )
    )
    # A sealed key moved from another identity: it no longer opens (bound to its identity).
    moved = await services.storage.get_device("copy-b")
    assert moved is not None
    await storage.insert_device(replace(moved, device_id="moved-key"))
    # A thumbprint device whose registered certificate ends in two days.
    _, short = pki.create_self_signed_device_certificate(
        "thumb", now=dt.datetime.now(dt.UTC), validity_days=2
    )
    await services.registry.create_device(
        "thumb", AuthKind.X509_THUMBPRINT, certificates_pem=(pki.certificate_pem(short).decode(),)
    )
    # A certificate issued to a device, five days from its end.
    await storage.insert_certificate(_issued("renew-me", "0A01", now + 5 * DAY, revoked=False))
    # A device connected although the device CA revoked every certificate it issued to it.
    await storage.insert_certificate(_issued("revoked-dev", "0B01", now + 20 * DAY, revoked=True))
    device = await _connect_x509_ca(hub, "revoked-dev", tmp_path)
    # An operator who never changed the one-time password; a token that never expires.
    await storage.insert_operator(
        OperatorRecord(
            name="forgot",
            password_hash="$argon2id$unused",
            password_changed_at=now - 2 * DAY,
            one_time=True,
            roles=("viewer",),
            created_at=now - 2 * DAY,
        )
    )
    await storage.insert_token(
        TokenRecord(
            token_id="tk_forever",
            name="legacy",
            token_hash=hashlib.sha256(b"legacy").digest(),
            roles=("viewer",),
            created_at=now,
            expires_at=None,
        )
    )

    answer = await audit_json(hub)
    findings = found(answer)
    expected = [
        ["shared-credentials", "critical", "copy-a, copy-b"],
        ["revoked-but-connected", "critical", "revoked-dev"],
        ["default-like-secrets", "critical", "token tk_forever (legacy)"],
        ["certificate-expiring", "high", "renew-me"],
        ["certificate-expiring", "high", "thumb"],
        ["unreadable-keys", "high", "moved-key"],
        ["default-like-secrets", "high", "operator forgot"],
        ["default-like-secrets", "high", "monitor.webhook_secret_file"],
        ["permissive-settings", "high", "monitor.enabled"],
        ["permissive-settings", "medium", "limits.auth_failures_per_source_per_minute"],
        ["permissive-settings", "medium", "limits.connections_per_source_per_second"],
        ["keys-older-than-policy", "medium", "copy-a"],
        ["never-seen", "low", "copy-a"],
        ["never-seen", "low", "copy-b"],
    ]
    for item in expected:
        assert item in findings, (item, findings)
    assert not any(f[2] == "seen-once" for f in findings)
    # Nothing from the webhook secret or the keys leaks into the answer.
    assert "xxxx" not in str(answer)
    assert answer["devices"] == 6  # renew-me is a certificate only
    assert (await run(hub, "audit-fleet")).exit_code == 5
    # The expiry window is the caller's: with --days 3 only the two-day certificate is left.
    narrow = found(await audit_json(hub, "--days", "3"))
    assert [f for f in narrow if f[0] == "certificate-expiring"] == [
        ["certificate-expiring", "high", "thumb"]
    ]
    await device.close()


async def test_the_route_needs_audit_read(hub: RunningHub) -> None:
    created = await run_json(hub, "token", "create", "backend", "--role", "registry-read")
    refused = await run(hub, "audit-fleet", token=created["token"])
    assert refused.exit_code == 3, (refused.stdout, refused.stderr)
    auditor = await run_json(hub, "token", "create", "viewer", "--role", "viewer")
    assert (await run(hub, "audit-fleet", "--json", token=auditor["token"])).exit_code == 0


async def test_the_lifecycle_scan_is_bounded_and_enrollments_count(hub: RunningHub) -> None:
    services = hub.services
    now = services.clock.time()
    await _seed_sas(hub, "quiet", secrets.token_bytes(32), age_days=30)
    for peer in ("10.0.0.1:1", "10.0.0.2:1"):
        await services.log.append(
            LogEntry(
                stream=Stream.LIFECYCLE,
                device_id="other",
                enqueued_at=now,
                payload=b"",
                properties=(("event", "connected"), ("peer", peer)),
            )
        )
    bounded = await FleetAuditor(services, max_lifecycle_records=1).snapshot()
    assert not bounded.lifecycle_scan_complete
    report = await FleetAuditor(services, max_lifecycle_records=1).audit()
    assert ("never-seen", "hub") in [(f.check, f.subject) for f in report.findings]
    whole = await FleetAuditor(services).snapshot()
    assert whole.lifecycle_scan_complete
    assert whole.ever_connected == frozenset()
    assert not whole.settings.has_enrollments
    await services.storage.insert_enrollment(
        EnrollmentRecord(
            enrollment_id="invited",
            group=True,
            attestation=Attestation.SYMMETRIC,
            enabled=True,
            created_at=now,
            updated_at=now,
        )
    )
    invited = await FleetAuditor(services).snapshot()
    assert invited.settings.has_enrollments
    # A hub wired without the optional services still audits what it has.
    bare = await FleetAuditor(
        replace(services, provisioning=None, operators=None, endpoint=None, audit=None)
    ).snapshot()
    assert bare.settings.audit_healthy is None
    assert not bare.settings.provisioning_enabled
    assert bare.operators == ()


async def test_the_cli_says_so_when_nothing_is_found(
    hub: RunningHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every real hub has at least the keys.backend finding unless it runs on an HSM; the
    # rules are stubbed out to see the CLI's answer to an empty report.
    monkeypatch.setattr(fleet_service, "audit_fleet", lambda snapshot, policy: [])
    result = await run(hub, "audit-fleet", "--min-severity", "low")
    assert result.exit_code == 0, result.stderr
    assert "No findings (0 identities checked)." in result.stdout


async def test_the_scheduled_audit_turns_serious_findings_into_alerts(
    hub_factory: HubFactory,
) -> None:
    hub = await hub_factory(monitor_fleet_audit_interval_seconds="0.2")
    shared = secrets.token_bytes(32)
    await _seed_sas(hub, "twin-a", shared, age_days=1)
    await _seed_sas(hub, "twin-b", shared, age_days=1)
    monitor = hub.services.monitor
    assert monitor is not None
    for _ in range(100):
        alerts = await monitor.list_alerts()
        if any(a.alert_type == "fleet-shared-credentials" for a in alerts):
            break
        await asyncio.sleep(0.05)
    [alert] = [a for a in alerts if a.alert_type == "fleet-shared-credentials"]
    assert alert.severity == "critical" and alert.device_id is None
    assert "twin-a, twin-b" in alert.summary
    # Medium and low findings (no witness file, file keys) raise no alert.
    assert all(a.severity in ("high", "critical") for a in alerts)
    await asyncio.sleep(0.5)  # later runs merge into the open alert instead of opening more
    again = [a for a in await monitor.list_alerts() if a.alert_type == "fleet-shared-credentials"]
    assert len(again) == 1 and again[0].count > 1
