"""The operator API of security monitoring: alerts, their acknowledgement and resolution, and the
end of a device's quarantine (issue 6).

A whole hub runs in-process (``hub`` fixture) and the API is called over real TLS sockets;
blocking requests run in worker threads so the hub keeps serving. Alerts are written to storage
the way the monitor writes them (``insert_alert``) and devices are quarantined through the
registry as the quarantine playbook does, so these tests do not depend on a detector firing
(the detectors and the playbooks are tested end to end elsewhere).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from tests.integration.test_api_provisioning import ProvisioningAPI, assert_error, audit_bodies

from ironhub.monitor.service import alert_document
from ironhub.storage.interfaces import AlertRecord, AlertState, DeviceState, Stream

if TYPE_CHECKING:
    from tests.support.hubkit import HubFactory

    from ironhub.server import RunningHub

pytestmark = pytest.mark.asyncio

#: Alert ids sort by creation time, as the monitor makes them (``al_<ms>_<random>``).
_BASE_MS = 1_700_000_000_000
VIEW_KEYS = {
    "alertId",
    "alertType",
    "severity",
    "deviceId",
    "detector",
    "summary",
    "state",
    "createdAt",
    "updatedAt",
    "lastSeenAt",
    "count",
    "evidence",
    "details",
    "actions",
    "acknowledgedBy",
    "resolvedBy",
    "version",
}


@pytest.fixture
def api(hub: RunningHub) -> ProvisioningAPI:
    token = hub.info.first_admin_token
    assert token is not None
    return ProvisioningAPI(hub, token)


async def put_alert(
    hub: RunningHub,
    index: int,
    *,
    device_id: str | None = "dev-a",
    alert_type: str = "tamper",
    state: AlertState = AlertState.OPEN,
    **extra: Any,
) -> AlertRecord:
    """Store an alert the way the monitor does; ``index`` orders the ids."""
    now = hub.services.clock.time()
    record = AlertRecord(
        alert_id=f"al_{_BASE_MS + index:014d}_{index:08x}",
        alert_type=alert_type,
        severity=extra.pop("severity", "high"),
        device_id=device_id,
        detector=extra.pop("detector", alert_type),
        summary=extra.pop("summary", f"{alert_type} on {device_id}"),
        state=state,
        created_at=now,
        updated_at=now,
        last_seen_at=now,
        **extra,
    )
    await hub.services.storage.insert_alert(record)
    return record


async def quarantine(api: ProvisioningAPI, device_id: str) -> None:
    """A device that exists and is quarantined, as the quarantine playbook leaves it."""
    await api.ok("POST", "/devices", {"device_id": device_id}, status=201)
    await api.hub.services.registry.set_state(device_id, DeviceState.QUARANTINED)


async def actions_of(hub: RunningHub) -> list[tuple[str, str]]:
    return [(r["action"], r["target"]) for r in await audit_bodies(hub)]


# --- reading ------------------------------------------------------------------------------------


async def test_an_alert_reads_the_same_in_the_api_and_the_sinks(api: ProvisioningAPI) -> None:
    record = await put_alert(
        api.hub,
        1,
        evidence=(17, 23),
        details=json.dumps({"sensor": "lid", "peer": "10.0.0.7"}),
        actions=("quarantine", "notify"),
        count=3,
    )
    viewer = await api.token_for("viewer")
    listed = await api.ok("GET", "/alerts", token=viewer)
    shown = await api.ok("GET", f"/alerts/{record.alert_id}", token=viewer)
    assert listed == {"alerts": [shown], "nextAfter": None}
    assert set(shown) == VIEW_KEYS
    assert shown["evidence"] == [17, 23]
    assert shown["details"] == {"sensor": "lid", "peer": "10.0.0.7"}
    assert shown["actions"] == ["quarantine", "notify"]
    assert shown["count"] == 3
    assert shown["state"] == "open"
    assert shown["acknowledgedBy"] is None
    assert shown["resolvedBy"] is None
    assert shown["version"] == 1
    # The JSON-lines file and the webhook get the same members with the same values.
    document = alert_document(record)
    assert {k: shown[k] for k in document} == document
    # Reads are not recorded as operator requests.
    assert ("operator-request", "listAlerts") not in await actions_of(api.hub)


async def test_details_that_are_not_an_object_read_as_empty(api: ProvisioningAPI) -> None:
    broken = await put_alert(api.hub, 1, details="not json")
    listed = await put_alert(api.hub, 2, details="[1, 2]")
    for record in (broken, listed):
        shown = await api.ok("GET", f"/alerts/{record.alert_id}")
        assert shown["details"] == {}


async def test_an_alert_about_no_device_has_a_null_device(api: ProvisioningAPI) -> None:
    record = await put_alert(api.hub, 1, device_id=None, alert_type="brute-force")
    shown = await api.ok("GET", f"/alerts/{record.alert_id}")
    assert shown["deviceId"] is None


async def test_filters_by_device_and_state(api: ProvisioningAPI) -> None:
    await put_alert(api.hub, 1, device_id="dev-a")
    await put_alert(api.hub, 2, device_id="dev-b", state=AlertState.ACKNOWLEDGED)
    await put_alert(api.hub, 3, device_id="dev-a", alert_type="usb", state=AlertState.RESOLVED)
    await put_alert(api.hub, 4, device_id="dev-a/mod-1", alert_type="usb")
    await put_alert(api.hub, 5, device_id=None, alert_type="brute-force")

    async def ids(query: str) -> list[int]:
        page = await api.ok("GET", f"/alerts{query}")
        assert page["nextAfter"] is None
        return [int(a["alertId"].rsplit("_", 1)[1], 16) for a in page["alerts"]]

    assert await ids("") == [1, 2, 3, 4, 5]
    assert await ids("?device=dev-a") == [1, 3]
    assert await ids("?device=dev-a/mod-1") == [4]
    assert await ids("?device=nobody") == []
    assert await ids("?state=open") == [1, 4, 5]
    assert await ids("?state=acknowledged") == [2]
    assert await ids("?state=resolved") == [3]
    assert await ids("?device=dev-a&state=open") == [1]


async def test_pages_follow_next_after(api: ProvisioningAPI) -> None:
    for index in range(1, 6):
        await put_alert(api.hub, index, device_id=f"dev-{index}")
    seen: list[str] = []
    after = ""
    pages = 0
    while True:
        page = await api.ok("GET", f"/alerts?limit=2&after={after}")
        pages += 1
        seen += [a["alertId"] for a in page["alerts"]]
        if page["nextAfter"] is None:
            break
        assert len(page["alerts"]) == 2
        after = page["nextAfter"]
    # Five alerts in pages of two: 2, 2, 1 (a short page is the last).
    assert pages == 3
    assert seen == sorted(seen)
    assert len(seen) == 5
    # A full last page says there may be more; the next one is empty.
    full = await api.ok("GET", "/alerts?limit=5")
    assert full["nextAfter"] == seen[-1]
    assert await api.ok("GET", f"/alerts?after={seen[-1]}") == {"alerts": [], "nextAfter": None}


@pytest.mark.parametrize(
    "query",
    [
        "?state=closed",
        "?state=OPEN",
        "?limit=0",
        "?limit=1001",
        "?limit=ten",
        "?device=bad%20id",
        "?device=a/b/c",
        "?state=open&state=resolved",
        "?severity=high",
    ],
)
async def test_malformed_queries_are_400(api: ProvisioningAPI, query: str) -> None:
    response = await api.request("GET", f"/alerts{query}")
    assert response.status == 400, (query, response.body)
    assert response.json()["error"]["code"] in ("invalid-query", "invalid")


async def test_unknown_alerts_are_404(api: ProvisioningAPI) -> None:
    assert_error(await api.request("GET", "/alerts/al_nothing"), 404, "not-found")
    for action in ("ack", "resolve"):
        assert_error(await api.request("POST", f"/alerts/al_nothing/{action}", {}), 404)
    actions = await actions_of(api.hub)
    # Recorded as requests, never as done.
    assert ("operator-request", "acknowledgeAlert") in actions
    assert not any(a in ("alert-acknowledge", "alert-resolve") for a, _ in actions)


# --- acknowledging and resolving ----------------------------------------------------------------


async def test_acknowledge_then_resolve_then_resolving_again_is_refused(
    api: ProvisioningAPI,
) -> None:
    record = await put_alert(api.hub, 1)
    path = f"/alerts/{record.alert_id}"
    operator = await api.token_for("operator")
    acked = await api.ok("POST", f"{path}/ack", {}, token=operator)
    assert acked["state"] == "acknowledged"
    # The actor is the caller (a token acts under its name), never a name from the body.
    assert acked["acknowledgedBy"] == "operator"
    assert acked["resolvedBy"] is None
    assert acked["version"] == 2
    assert acked["updatedAt"] >= record.updated_at
    # Acknowledging again changes nothing: the first acknowledger stays.
    again = await api.ok("POST", f"{path}/ack", {})
    assert again == acked
    resolved = await api.ok("POST", f"{path}/resolve", {}, token=operator)
    assert resolved["state"] == "resolved"
    assert resolved["acknowledgedBy"] == "operator"
    assert resolved["resolvedBy"] == "operator"
    assert resolved["version"] == 3
    assert await api.ok("GET", path) == resolved
    # Resolved is final.
    message = assert_error(await api.request("POST", f"{path}/resolve", {}), 400, "invalid")
    assert "resolved already" in message
    assert_error(await api.request("POST", f"{path}/ack", {}), 400, "invalid")
    assert (await api.ok("GET", path))["version"] == 3
    actions = await actions_of(api.hub)
    target = record.alert_id
    # Each request is recorded before it runs, each change once it is done.
    assert actions.index(("operator-request", "acknowledgeAlert")) < actions.index(
        ("alert-acknowledge", target)
    )
    assert actions.index(("operator-request", "resolveAlert")) < actions.index(
        ("alert-resolve", target)
    )
    assert actions.count(("alert-resolve", target)) == 1  # the refused one did nothing
    assert actions.count(("alert-acknowledge", target)) == 2  # the repeat was an action too
    records = [r for r in await audit_bodies(api.hub) if r["action"] == "alert-resolve"]
    assert records[0]["actor"] == "operator"
    events = await api.hub.services.log.query(stream=Stream.SECURITY, limit=10_000)
    done = [
        dict(e.properties) for e in events if dict(e.properties).get("action") == "alert-resolve"
    ]
    assert [(e["event"], e["target"], e["actor"]) for e in done] == [
        ("operator-action", target, "operator")
    ]


async def test_an_open_alert_can_be_resolved_directly(api: ProvisioningAPI) -> None:
    record = await put_alert(api.hub, 1)
    resolved = await api.ok("POST", f"/alerts/{record.alert_id}/resolve", {})
    assert resolved["state"] == "resolved"
    assert resolved["acknowledgedBy"] is None
    # The bootstrap token acts under its own name, as the audit log records it.
    request = next(r for r in await audit_bodies(api.hub) if r["target"] == "resolveAlert")
    assert resolved["resolvedBy"] == request["actor"]


async def test_changes_take_an_empty_json_object_and_nothing_else(api: ProvisioningAPI) -> None:
    record = await put_alert(api.hub, 1)
    path = f"/alerts/{record.alert_id}/ack"
    assert_error(await api.request("POST", path), 415)
    assert_error(await api.request("POST", path, {"actor": "someone-else"}), 400, "invalid-body")
    assert_error(await api.request("POST", path, body=b"[]"), 400, "invalid-body")
    assert (await api.ok("GET", f"/alerts/{record.alert_id}"))["state"] == "open"


# --- quarantine release -------------------------------------------------------------------------


async def test_a_quarantined_device_shows_so_and_release_enables_it(api: ProvisioningAPI) -> None:
    await quarantine(api, "dev-q")
    await api.ok("POST", "/devices", {"device_id": "dev-ok"}, status=201)
    listed = await api.ok("GET", "/devices")
    assert {d["device_id"]: d["state"] for d in listed["devices"]} == {
        "dev-ok": "enabled",
        "dev-q": "quarantined",
    }
    assert (await api.ok("GET", "/devices/dev-q"))["state"] == "quarantined"
    operator = await api.token_for("operator")
    released = await api.ok("POST", "/devices/dev-q/release", token=operator)
    assert released["device_id"] == "dev-q"
    assert released["state"] == "enabled"
    assert set(released) == set(await api.ok("GET", "/devices/dev-q"))
    record = await api.hub.services.registry.get_device("dev-q")
    assert record.state is DeviceState.ENABLED
    actions = await actions_of(api.hub)
    assert actions.index(("operator-request", "releaseDevice")) < actions.index(
        ("device-release", "dev-q")
    )
    release = next(r for r in await audit_bodies(api.hub) if r["action"] == "device-release")
    assert release["actor"] == "operator"
    assert release["outcome"] == "ok"


async def test_release_refuses_what_is_not_quarantined(api: ProvisioningAPI) -> None:
    await api.ok("POST", "/devices", {"device_id": "dev-e"}, status=201)
    message = assert_error(await api.request("POST", "/devices/dev-e/release"), 400, "invalid")
    assert "not quarantined" in message
    # A disabled device stays disabled: enabling it is a decision of its own.
    await api.ok("POST", "/devices/dev-e/disable")
    assert_error(await api.request("POST", "/devices/dev-e/release"), 400, "invalid")
    assert (await api.ok("GET", "/devices/dev-e"))["state"] == "disabled"
    assert_error(await api.request("POST", "/devices/ghost/release"), 404, "not-found")
    assert_error(await api.request("POST", "/devices/bad%20id/release"), 400, "invalid")
    # Released twice: the second finds nothing to end.
    await quarantine(api, "dev-q")
    await api.ok("POST", "/devices/dev-q/release")
    assert_error(await api.request("POST", "/devices/dev-q/release"), 400, "invalid")
    actions = await actions_of(api.hub)
    assert [t for a, t in actions if a == "device-release"] == ["dev-q"]


async def test_a_quarantined_module_is_released_on_its_own_route(api: ProvisioningAPI) -> None:
    # A playbook quarantines the identity its alert names, which can be a module.
    await api.ok("POST", "/devices", {"device_id": "gw"}, status=201)
    await api.ok("POST", "/devices/gw/modules", {"module_id": "agent"}, status=201)
    await api.hub.services.registry.set_state("gw/agent", DeviceState.QUARANTINED)
    assert (await api.ok("GET", "/devices/gw/modules/agent"))["state"] == "quarantined"
    assert (await api.ok("GET", "/devices/gw"))["state"] == "enabled"
    # The device is not quarantined: releasing it ends nothing, not even its module's.
    assert_error(await api.request("POST", "/devices/gw/release"), 400, "invalid")
    released = await api.ok("POST", "/devices/gw/modules/agent/release")
    assert (released["device_id"], released["module_id"]) == ("gw", "agent")
    assert released["state"] == "enabled"
    assert set(released) == set(await api.ok("GET", "/devices/gw/modules/agent"))
    assert_error(await api.request("POST", "/devices/gw/modules/agent/release"), 400, "invalid")
    assert_error(await api.request("POST", "/devices/gw/modules/ghost/release"), 404)
    assert_error(await api.request("POST", "/devices/gw/modules/bad%20id/release"), 400)
    actions = await actions_of(api.hub)
    assert ("operator-request", "releaseModule") in actions
    assert [t for a, t in actions if a == "module-release"] == ["gw/agent"]
    assert not any(a == "device-release" for a, _ in actions)


# --- who may ------------------------------------------------------------------------------------


async def test_roles_viewer_reads_operator_acts_security_admin_handles_alerts_only(
    api: ProvisioningAPI,
) -> None:
    first = await put_alert(api.hub, 1, device_id="dev-q")
    second = await put_alert(api.hub, 2, device_id="dev-q", alert_type="usb")
    await quarantine(api, "dev-q")
    viewer = await api.token_for("viewer")
    operator = await api.token_for("operator")
    security = await api.token_for("security-admin")
    registry = await api.token_for("registry-read")
    service = await api.token_for("service-connect")

    for token in (viewer, operator, security):
        assert len((await api.ok("GET", "/alerts", token=token))["alerts"]) == 2
        await api.ok("GET", f"/alerts/{first.alert_id}", token=token)
    for token in (registry, service):
        message = assert_error(await api.request("GET", "/alerts", token=token), 403)
        assert message == "permission 'alerts:read' is required"

    for action in ("ack", "resolve"):
        message = assert_error(
            await api.request("POST", f"/alerts/{first.alert_id}/{action}", {}, token=viewer),
            403,
            "forbidden",
        )
        assert message == "permission 'alerts:manage' is required"
    assert (await api.ok("GET", f"/alerts/{first.alert_id}"))["state"] == "open"

    await api.ok("POST", f"/alerts/{first.alert_id}/ack", {}, token=operator)
    resolved = await api.ok("POST", f"/alerts/{second.alert_id}/resolve", {}, token=security)
    assert resolved["resolvedBy"] == "security-admin"

    # Ending a quarantine is a change of device state: not the viewer's, not the
    # security-admin's (separation of duties), the operator's.
    for token in (viewer, security):
        message = assert_error(
            await api.request("POST", "/devices/dev-q/release", token=token), 403, "forbidden"
        )
        assert message == "permission 'devices:state' is required"
    assert (await api.ok("GET", "/devices/dev-q"))["state"] == "quarantined"
    await api.ok("POST", "/devices/dev-q/release", token=operator)

    forbidden = [r for r in await audit_bodies(api.hub) if r["action"] == "operator-forbidden"]
    assert len(forbidden) == 6
    assert {r["outcome"] for r in forbidden} == {"refused"}


# --- a hub without the monitor -----------------------------------------------------------------


async def test_without_the_monitor_the_routes_say_so(hub_factory: HubFactory) -> None:
    hub = await hub_factory(monitor_enabled="false")
    assert hub.services.monitor is None
    token = hub.info.first_admin_token
    assert token is not None
    api = ProvisioningAPI(hub, token)
    await api.ok("POST", "/devices", {"device_id": "dev-q"}, status=201)
    await hub.services.registry.set_state("dev-q", DeviceState.QUARANTINED)
    for method, path, body in (
        ("GET", "/alerts", None),
        ("GET", "/alerts/al_x", None),
        ("POST", "/alerts/al_x/ack", {}),
        ("POST", "/alerts/al_x/resolve", {}),
        ("POST", "/devices/dev-q/release", None),
    ):
        message = assert_error(await api.request(method, path, body), 503, "monitor-disabled")
        assert "security monitoring is disabled" in message, path
    # The way out of a quarantine left by an earlier run: enable the device.
    assert (await api.ok("POST", "/devices/dev-q/enable"))["state"] == "enabled"


# --- the OpenAPI document -----------------------------------------------------------------------


async def test_openapi_describes_alerts_and_the_quarantined_state(api: ProvisioningAPI) -> None:
    doc = (await api.request("GET", "/openapi.json", token=None)).json()
    schemas = doc["components"]["schemas"]
    assert set(schemas["AlertView"]["properties"]) == VIEW_KEYS
    assert set(schemas["AlertView"]["properties"]["state"]["enum"]) == {
        "open",
        "acknowledged",
        "resolved",
    }
    assert schemas["ChangeAlertRequest"]["additionalProperties"] is False
    assert "quarantined" in schemas["DeviceView"]["properties"]["state"]["enum"]
    paths = doc["paths"]
    assert paths["/alerts"]["get"]["x-ironhub-permission"] == "alerts:read"
    assert paths["/alerts/{alert_id}/ack"]["post"]["x-ironhub-permission"] == "alerts:manage"
    assert paths["/alerts/{alert_id}/resolve"]["post"]["x-ironhub-permission"] == "alerts:manage"
    for path in (
        "/devices/{device_id}/release",
        "/devices/{device_id}/modules/{module_id}/release",
    ):
        assert paths[path]["post"]["x-ironhub-permission"] == "devices:state"
    assert {q["name"] for q in paths["/alerts"]["get"]["parameters"]} == {
        "device",
        "state",
        "after",
        "limit",
    }
