"""The ``ironhub`` CLI for security monitoring: ``alerts list|show|ack|resolve`` and ``device
release`` (issue 6).

A whole hub runs in-process (``hub`` fixture); each invocation runs through
``click.testing.CliRunner`` in a worker thread with the environment an operator sets, so the hub
keeps serving meanwhile. Alerts are written to storage as the monitor writes them and devices
are quarantined through the registry as the quarantine playbook does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from tests.integration.test_api_monitor import put_alert
from tests.integration.test_cli_provisioning import (
    assert_one_line_error,
    assert_usage_error,
    run,
    run_json,
)

from ironhub.storage.interfaces import AlertState, DeviceState

if TYPE_CHECKING:
    from tests.support.hubkit import HubFactory

    from ironhub.server import RunningHub

pytestmark = pytest.mark.asyncio


async def _token(hub: RunningHub, role: str) -> str:
    created = await run_json(hub, "token", "create", role, "--role", role)
    return str(created["token"])


async def test_list_and_show_round_trip(hub: RunningHub) -> None:
    assert await run_json(hub, "alerts", "list") == {"alerts": [], "nextAfter": None}
    empty = await run(hub, "alerts", "list")
    assert empty.exit_code == 0, empty.stderr
    assert "No alerts." in empty.stdout
    first = await put_alert(
        hub, 1, device_id="dev-a", evidence=(41, 42), actions=("quarantine", "notify")
    )
    await put_alert(hub, 2, device_id="dev-b", alert_type="usb", state=AlertState.ACKNOWLEDGED)
    await put_alert(hub, 3, device_id=None, alert_type="brute-force", severity="medium")
    # A summary is built from what a device sent: printed escaped, never as a terminal control.
    await put_alert(hub, 4, device_id="dev-c", summary="lid \x1b[2Jopen\u202e")
    listed = await run_json(hub, "alerts", "list")
    assert [a["alertType"] for a in listed["alerts"]] == ["tamper", "usb", "brute-force", "tamper"]
    assert listed["alerts"][3]["summary"] == "lid \x1b[2Jopen\u202e"
    assert listed["nextAfter"] is None
    shown = await run_json(hub, "alerts", "show", first.alert_id)
    assert shown == listed["alerts"][0]
    assert shown["evidence"] == [41, 42]
    human = await run(hub, "alerts", "list")
    assert human.exit_code == 0, human.stderr
    for text in ("ALERT", "SEVERITY", first.alert_id, "tamper on dev-a", "brute-force", "medium"):
        assert text in human.stdout, text
    assert "\x1b" not in human.stdout
    assert "\u202e" not in human.stdout
    assert "lid \\x1b[2Jopen\\u202e" in human.stdout
    detail = await run(hub, "alerts", "show", first.alert_id)
    assert detail.exit_code == 0, detail.stderr
    for text in ("Severity:", "high", "quarantine, notify", "41, 42", "Acknowledged by:"):
        assert text in detail.stdout, text


async def test_filters_and_limits(hub: RunningHub) -> None:
    await put_alert(hub, 1, device_id="dev-a")
    await put_alert(hub, 2, device_id="dev-b")
    await put_alert(hub, 3, device_id="dev-a", state=AlertState.RESOLVED, alert_type="usb")
    await put_alert(hub, 4, device_id="dev-a/mod", alert_type="usb")

    async def types(*args: str) -> list[tuple[str | None, str]]:
        page = await run_json(hub, "alerts", "list", *args)
        return [(a["deviceId"], a["state"]) for a in page["alerts"]]

    assert await types("--device", "dev-a") == [("dev-a", "open"), ("dev-a", "resolved")]
    assert await types("--device", "dev-a/mod") == [("dev-a/mod", "open")]
    assert await types("--state", "resolved") == [("dev-a", "resolved")]
    assert await types("--device", "dev-a", "--state", "open") == [("dev-a", "open")]
    limited = await run_json(hub, "alerts", "list", "--limit", "2")
    assert len(limited["alerts"]) == 2
    rest = await run_json(hub, "alerts", "list", "--after", limited["nextAfter"])
    assert len(rest["alerts"]) == 2
    assert rest["nextAfter"] is None
    assert_usage_error(await run(hub, "alerts", "list", "--state", "closed"), "--state")
    assert_one_line_error(await run(hub, "alerts", "list", "--device", "bad id"), 1)


async def test_ack_then_resolve_then_resolve_again(hub: RunningHub) -> None:
    record = await put_alert(hub, 1, device_id="dev-a", actions=("quarantine",))
    acked = await run_json(hub, "alerts", "ack", record.alert_id)
    assert acked["state"] == "acknowledged"
    assert acked["acknowledgedBy"]
    resolved = await run(hub, "alerts", "resolve", record.alert_id)
    assert resolved.exit_code == 0, resolved.stderr
    assert f"Alert {record.alert_id} is now resolved." in resolved.stdout
    # The quarantine it caused is a separate decision; the operator is told how.
    assert "ironhub device release dev-a" in resolved.stdout
    shown = await run_json(hub, "alerts", "show", record.alert_id)
    assert shown["state"] == "resolved"
    assert shown["resolvedBy"] == acked["acknowledgedBy"]
    assert_one_line_error(
        await run(hub, "alerts", "resolve", record.alert_id), 1, "resolved already"
    )
    assert_one_line_error(await run(hub, "alerts", "ack", record.alert_id), 1, "resolved already")
    other = await put_alert(hub, 2, device_id="dev-b")
    human = await run(hub, "alerts", "ack", other.alert_id)
    assert human.exit_code == 0, human.stderr
    assert f"Alert {other.alert_id} is now acknowledged." in human.stdout
    assert "release" not in human.stdout


async def test_unknown_alerts(hub: RunningHub) -> None:
    for command in ("show", "ack", "resolve"):
        assert_one_line_error(await run(hub, "alerts", command, "al_nothing"), 1, "does not exist")
    # Ids are one path segment, whatever they hold.
    assert_one_line_error(await run(hub, "alerts", "show", "../devices"), 1)
    assert_one_line_error(await run(hub, "alerts", "show", ""), 2)


async def test_device_release_round_trip(hub: RunningHub) -> None:
    await run_json(hub, "device", "create", "dev-q")
    await hub.services.registry.set_state("dev-q", DeviceState.QUARANTINED)
    listed = await run_json(hub, "device", "list")
    assert [(d["device_id"], d["state"]) for d in listed["devices"]] == [("dev-q", "quarantined")]
    shown = await run(hub, "device", "show", "dev-q")
    assert shown.exit_code == 0, shown.stderr
    assert "quarantined" in shown.stdout
    table = await run(hub, "device", "list")
    assert "quarantined" in table.stdout
    released = await run_json(hub, "device", "release", "dev-q")
    assert released["device_id"] == "dev-q"
    assert released["state"] == "enabled"
    assert_one_line_error(await run(hub, "device", "release", "dev-q"), 1, "not quarantined")
    assert_one_line_error(await run(hub, "device", "release", "ghost"), 1)
    await hub.services.registry.set_state("dev-q", DeviceState.QUARANTINED)
    human = await run(hub, "device", "release", "dev-q")
    assert human.exit_code == 0, human.stderr
    assert "Device dev-q is now enabled." in human.stdout


async def test_module_release(hub: RunningHub) -> None:
    await run_json(hub, "device", "create", "gw")
    await run_json(hub, "module", "create", "gw", "agent")
    await hub.services.registry.set_state("gw/agent", DeviceState.QUARANTINED)
    released = await run_json(hub, "device", "release", "gw/agent")
    assert (released["device_id"], released["module_id"], released["state"]) == (
        "gw",
        "agent",
        "enabled",
    )
    await hub.services.registry.set_state("gw/agent", DeviceState.QUARANTINED)
    human = await run(hub, "device", "release", "gw/agent")
    assert human.exit_code == 0, human.stderr
    assert "Module gw/agent is now enabled." in human.stdout
    assert_one_line_error(await run(hub, "device", "release", "gw/agent"), 1, "not quarantined")
    assert_one_line_error(await run(hub, "device", "release", "gw/a/b"), 2, "DEVICE/MODULE")


async def test_roles_in_the_cli(hub: RunningHub) -> None:
    record = await put_alert(hub, 1, device_id="dev-q")
    await run_json(hub, "device", "create", "dev-q")
    await hub.services.registry.set_state("dev-q", DeviceState.QUARANTINED)
    viewer = await _token(hub, "viewer")
    operator = await _token(hub, "operator")
    assert len((await run_json(hub, "alerts", "list", token=viewer))["alerts"]) == 1
    assert_one_line_error(
        await run(hub, "alerts", "ack", record.alert_id, token=viewer), 3, "alerts:manage"
    )
    assert_one_line_error(
        await run(hub, "device", "release", "dev-q", token=viewer), 3, "devices:state"
    )
    acked = await run_json(hub, "alerts", "ack", record.alert_id, token=operator)
    assert acked["acknowledgedBy"] == "operator"
    assert (await run_json(hub, "device", "release", "dev-q", token=operator))["state"] == "enabled"


async def test_a_hub_without_the_monitor(hub_factory: HubFactory) -> None:
    hub = await hub_factory(monitor_enabled="false")
    for args in (("alerts", "list"), ("alerts", "ack", "al_x"), ("device", "release", "dev-q")):
        assert_one_line_error(await run(hub, *args), 1, "security monitoring is disabled")


async def test_maintenance_open(hub: RunningHub) -> None:
    await hub.services.registry.create_device("dev-m")
    answer = await run_json(hub, "maintenance", "open", "dev-m", "--for", "2h")
    assert answer["deviceId"] == "dev-m"
    assert answer["endsAt"] - answer["startsAt"] == 7200
    human = await run(hub, "maintenance", "open", "dev-m", "--for", "30m")
    assert human.exit_code == 0, human.stderr
    assert "Until (UTC)" in human.stdout
    too_long = await run(hub, "maintenance", "open", "dev-m", "--for", "8d")
    assert_one_line_error(too_long, 1, "at most")
    unknown = await run(hub, "maintenance", "open", "ghost", "--for", "1h")
    assert unknown.exit_code != 0 and "ghost" in unknown.stderr
    assert_usage_error(await run(hub, "maintenance", "open", "dev-m", "--for", "7"), "duration")
