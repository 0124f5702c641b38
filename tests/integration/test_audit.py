"""The audit log end to end: what is recorded, export and offline verification, proofs,
restart, and failing closed when the log cannot be written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from tests.integration.test_api_cloud import HubAPI, assert_error, create_device
from tests.support.hubkit import DeviceKit, HubFactory
from tests.support.mqtt_client import ConnectRefused, SasCredentials

from ironhub.audit import verify_consistency, verify_export, verify_inclusion
from ironhub.cli.main import cli
from ironhub.errors import StorageError
from ironhub.server import DataFiles, RunningHub

pytestmark = pytest.mark.asyncio


@pytest.fixture
def api(hub: RunningHub) -> HubAPI:
    assert hub.info.first_admin_token is not None
    return HubAPI(hub, hub.info.first_admin_token)


async def records(hub: RunningHub) -> list[dict[str, Any]]:
    audit = hub.services.audit
    assert audit is not None
    await audit.drain()
    return [json.loads(body) for _, body in await audit.read(limit=10_000)]


async def eventually_recorded(hub: RunningHub, **fields: str) -> dict[str, Any]:
    for _ in range(250):
        for record in await records(hub):
            if all(record.get(k) == v for k, v in fields.items()):
                return record
        await asyncio.sleep(0.02)
    raise AssertionError(f"no audit record with {fields}")


def public_key(hub: RunningHub) -> Any:
    return load_pem_public_key(
        DataFiles(hub.services.config.data_dir).audit_public_key.read_bytes()
    )


async def export_lines(api: HubAPI) -> list[bytes]:
    response = await api.request("GET", "/audit/export")
    assert response.status == 200, response.body[:300]
    assert response.body.endswith(b"\n")
    return response.body.splitlines(keepends=True)


async def test_operator_actions_and_refusals_are_recorded(api: HubAPI, hub: RunningHub) -> None:
    first = (await records(hub))[0]
    assert (first["seq"], first["actor_kind"], first["action"]) == (0, "hub", "hub-init")
    await create_device(api, "audited")
    requested = await eventually_recorded(
        hub, action="operator-request", target="createDevice", actor_kind="operator"
    )
    done = await eventually_recorded(hub, action="device-create", target="audited")
    assert requested["seq"] < done["seq"]
    assert done["actor"] == requested["actor"] == "bootstrap-admin"
    assert done["source"].startswith("127.0.0.1")
    # A forged token: refused, and recorded with the reason, never the token.
    forged = "ihk_" + "A" * 43
    response = await api.request("GET", "/devices", token=forged)
    assert_error(response, 401)
    refused = await eventually_recorded(hub, action="operator-auth-failed")
    assert refused["outcome"] == "refused"
    assert forged not in json.dumps(await records(hub))


async def test_device_security_and_lifecycle_events_are_recorded(
    hub: RunningHub, kit: DeviceKit
) -> None:
    creds = await kit.create_sas("dev-audit")
    dev = await kit.connect(creds)
    await dev.close()
    await eventually_recorded(hub, actor="dev-audit", action="connected", actor_kind="device")
    wrong = SasCredentials(creds.hostname, "dev-audit", "A" * 43 + "=")
    with pytest.raises(ConnectRefused):
        await kit.connect(wrong)
    failed = await eventually_recorded(hub, action="auth-failed", outcome="refused")
    assert failed["actor_kind"] == "device"
    assert failed["source"] == "127.0.0.1"


async def test_export_verifies_offline_and_any_edit_is_found(api: HubAPI, hub: RunningHub) -> None:
    for i in range(5):
        await create_device(api, f"dev-{i}")
    lines = await export_lines(api)
    key = public_key(hub)
    report = verify_export(lines, key)
    assert report.intact, report.problem
    assert report.records == len(lines) - 1 - report.checkpoints
    assert report.checkpoints >= 1
    # The export itself was recorded before it started.
    await eventually_recorded(hub, action="audit-export")
    # Flip one byte inside record 3's body: found at position 3.
    tampered = list(lines)
    line = bytearray(tampered[4])
    index = line.index(b'"action":"') + len(b'"action":"')
    assert line.endswith(b"\n")
    line[index] ^= 0x01
    tampered[4] = bytes(line)
    bad = verify_export(tampered, key)
    assert not bad.intact
    assert bad.first_bad_position == 3
    # Cutting the tail is found through the checkpoint.
    cut = [tampered[0], *lines[1:-3], lines[-1]]
    assert not verify_export(cut, key).intact


async def test_cli_export_and_verify(api: HubAPI, hub: RunningHub, tmp_path: Path) -> None:
    await create_device(api, "cli-audit")
    out = tmp_path / "audit.jsonl"
    env = {
        "IRONHUB_API": hub.info.api_url,
        "IRONHUB_TOKEN": api.token,
        "IRONHUB_CA": str(hub.info.ca_path),
    }
    runner = CliRunner()
    exported = await asyncio.to_thread(
        runner.invoke, cli, ["audit", "export", "--out", str(out), "--json"], env=env
    )
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output)["lines"] > 2
    pub = DataFiles(hub.services.config.data_dir).audit_public_key
    verified = runner.invoke(cli, ["audit", "verify", str(out), "--public-key", str(pub), "--json"])
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.output)["intact"] is True
    data = bytearray(out.read_bytes())
    data[data.index(b'"record":') + 20] ^= 0x01
    out.write_bytes(bytes(data))
    broken = runner.invoke(cli, ["audit", "verify", str(out), "--public-key", str(pub)])
    assert broken.exit_code == 3
    assert "NOT INTACT at record position 0" in broken.output


async def test_inclusion_and_consistency_proofs(api: HubAPI, hub: RunningHub) -> None:
    for i in range(6):
        await create_device(api, f"p-{i}")
    audit = hub.services.audit
    assert audit is not None
    await audit.drain()
    size = audit.size
    proof = await api.ok("GET", f"/audit/proofs/inclusion?seq=2&tree_size={size}")
    verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        2,
        size,
        [bytes.fromhex(p) for p in proof["proof"]],
        bytes.fromhex(proof["root"]),
    )
    checkpoint = await api.ok("GET", "/audit/checkpoint")
    assert checkpoint["tree_size"] >= size
    old = 3
    consistency = await api.ok(
        "GET", f"/audit/proofs/consistency?old_size={old}&new_size={checkpoint['tree_size']}"
    )
    verify_consistency(
        old,
        checkpoint["tree_size"],
        bytes.fromhex(consistency["old_root"]),
        bytes.fromhex(checkpoint["root"]),
        [bytes.fromhex(p) for p in consistency["proof"]],
    )
    assert_error(await api.request("GET", "/audit/proofs/inclusion?seq=10000"), 400)
    assert_error(await api.request("GET", "/audit/proofs/inclusion"), 400)


async def test_restart_reverifies_and_continues_the_chain(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    data = tmp_path / "audit-restart"
    hub = await hub_factory(data_dir=data)
    api = HubAPI(hub, hub.info.first_admin_token or "")
    await create_device(api, "before")
    await hub.stop()
    hub = await hub_factory(data_dir=data)
    api = HubAPI(hub, api.token)
    await create_device(api, "after")
    report = verify_export(await export_lines(api), public_key(hub))
    assert report.intact, report.problem
    actions = [r["action"] for r in await records(hub)]
    assert actions.count("hub-stop") == 1
    assert actions.index("hub-stop") < actions.index("hub-start")


async def test_privileged_requests_fail_closed_when_the_log_is_unwritable(
    api: HubAPI, hub: RunningHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(_records: object) -> None:
        raise StorageError("disk full")

    monkeypatch.setattr(hub.services.storage, "append_audit", broken)
    response = await api.request("POST", "/devices", {"device_id": "never"})
    assert_error(response, 503)
    with pytest.raises(Exception):  # noqa: B017 - NotFoundError: nothing was done
        await hub.services.registry.get_device("never")
    registry = hub.services.metrics.registry
    assert registry.get_sample_value("ironhub_audit_healthy") == 0
    # Reads still work; writes recover with the log.
    assert (await api.request("GET", "/devices")).status == 200
    monkeypatch.undo()
    await create_device(api, "later")
    assert registry.get_sample_value("ironhub_audit_healthy") == 1
    report = verify_export(await export_lines(api), public_key(hub))
    assert report.intact, report.problem


@pytest.mark.parametrize("damage", ["edit", "truncate"])
async def test_a_damaged_store_is_refused_at_start(
    hub_factory: HubFactory, tmp_path: Path, damage: str
) -> None:
    import sqlite3

    from ironhub.errors import AuditIntegrityError

    data = tmp_path / f"audit-{damage}"
    hub = await hub_factory(data_dir=data)
    api = HubAPI(hub, hub.info.first_admin_token or "")
    for i in range(3):
        await create_device(api, f"d{i}")
    await hub.stop()  # signs a final checkpoint
    conn = sqlite3.connect(data / "ironhub.db")
    if damage == "edit":
        body = conn.execute("SELECT body FROM audit_records WHERE seq = 2").fetchone()[0]
        conn.execute(
            "UPDATE audit_records SET body = ? WHERE seq = 2",
            (bytes(body).replace(b'"outcome":"ok"', b'"outcome":"refused"'),),
        )
    else:
        conn.execute("DELETE FROM audit_records WHERE seq >= 4")
    conn.commit()
    conn.close()
    with pytest.raises(AuditIntegrityError) as refused:
        await hub_factory(data_dir=data)
    assert refused.value.position == (2 if damage == "edit" else 4)


async def test_device_audit_stream_is_queryable_by_device_and_time(
    api: HubAPI, hub: RunningHub, kit: DeviceKit
) -> None:
    # A device's own audit records (OS auth log lines, agent events) go to the security stream
    # with ironhub-stream=security (or the SDK's $.ifid marker) and are queried by device and
    # time range.
    import time as time_module

    creds = await kit.create_sas("auditing-dev")
    dev = await kit.connect(creds)
    before = time_module.time()
    topic = "devices/auditing-dev/messages/events/ironhub-stream=security&kind=auth-log"
    await dev.publish(topic, b"sshd[812]: Failed password for root from 10.0.0.9")
    await dev.publish("devices/auditing-dev/messages/events/", b"plain telemetry")
    after = time_module.time() + 1
    await dev.close()
    page = await api.ok(
        "GET", f"/messages?device=auditing-dev&stream=security&since={before}&until={after}"
    )
    lines = [m["payload_text"] for m in page["messages"]]
    assert lines == ["sshd[812]: Failed password for root from 10.0.0.9"]
    assert page["messages"][0]["properties"]["kind"] == "auth-log"
    iso = await api.ok(
        "GET", "/messages?device=auditing-dev&stream=security&since=2099-01-01T00:00:00%2B00:00"
    )
    assert iso["messages"] == []
    assert_error(await api.request("GET", "/messages?since=yesterday"), 400)
    assert_error(await api.request("GET", "/messages?since=2026-01-01T00:00:00"), 400)
