"""The security monitoring routes: alerts, and the end of a device's quarantine (issue 6).

The rules live in :class:`~ironhub.monitor.service.MonitorService` (which state changes are
allowed, who acknowledged, what a release may end); this module adds the wire. What it
guarantees on top:

- the actor recorded on an alert is the caller's authenticated name, never a name from the
  request;
- every state change records an ``operator-action`` (:meth:`Context.audit`) before the answer
  goes out; the route table has already recorded the ``operator-request`` before the handler
  ran (``alerts:manage`` and ``devices:state`` are not reads);
- a hub that runs without the monitor (``monitor.enabled = false``) answers these routes with
  503 ``monitor-disabled`` and a sentence saying so, not with a storage error.

Permissions: reading alerts is ``alerts:read`` (every role for people); acknowledging and
resolving is ``alerts:manage``; a release turns an identity's telemetry back on and is
therefore ``devices:state``, like enabling and disabling a device.

Identities in paths: ``/alerts/{alert_id}``, ``/devices/{device_id}/release`` and
``/devices/{device_id}/modules/{module_id}/release`` (a playbook quarantines the identity an
alert names, which may be a module).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from starlette.responses import Response

from ironhub.access.roles import Permission
from ironhub.api._http import RequestError, json_response
from ironhub.api._routes import Operation, QueryParam
from ironhub.api.schemas import (
    AlertList,
    AlertView,
    ChangeAlertRequest,
    DeviceView,
    MaintenanceRequest,
    MaintenanceView,
    ModuleView,
    SeverityName,
)
from ironhub.codec.azure import split_identity
from ironhub.errors import AuthorizationError
from ironhub.storage.interfaces import AlertState

if TYPE_CHECKING:
    from ironhub.api._routes import Context
    from ironhub.monitor.service import MonitorService
    from ironhub.storage.interfaces import AlertRecord

__all__ = ["MONITOR_OPERATIONS", "alert_view"]

#: Page sizes, as ``GET /devices``.
MAX_PAGE = 1000
_DEFAULT_PAGE = 100
_STATES = tuple(s.value for s in AlertState)


# --- helpers ----------------------------------------------------------------------------------


def _monitor(ctx: Context) -> MonitorService:
    """The monitor service, or 503 when this hub runs without it.

    Not a :class:`~ironhub.errors.StorageError`: its answer says "the storage backend is
    unavailable; try again later", and trying again will not help here.

    Raises:
        RequestError: 503 ``monitor-disabled``.
    """
    service = ctx.services.monitor
    if service is None:
        raise RequestError(
            503,
            "monitor-disabled",
            "security monitoring is disabled on this hub (monitor.enabled = false); "
            "no alerts are kept, and POST /devices/{device_id}/enable ends a quarantine",
        )
    return service


def _caller(ctx: Context) -> str:
    actor = ctx.actor
    if actor is None:  # pragma: no cover - protected routes always have one
        raise AuthorizationError("authentication required")
    return actor.actor


def _details(text: str) -> dict[str, Any]:
    """An alert's ``details`` (compact JSON text in storage) as an object; ``{}`` if not one."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def alert_view(record: AlertRecord) -> AlertView:
    """The operator's view of an alert.

    It holds every member of :func:`ironhub.monitor.service.alert_document` (what the
    JSON-lines file and the webhook receive), with the same values, plus who acknowledged and
    resolved it, when it last changed and its version.
    """
    return AlertView(
        alert_id=record.alert_id,
        alert_type=record.alert_type,
        # The monitor stores Severity values only (ironhub.monitor.model).
        severity=cast("SeverityName", record.severity),
        device_id=record.device_id,
        detector=record.detector,
        summary=record.summary,
        state=record.state.value,
        created_at=record.created_at,
        updated_at=record.updated_at,
        last_seen_at=record.last_seen_at,
        count=record.count,
        evidence=list(record.evidence),
        details=_details(record.details),
        actions=list(record.actions),
        acknowledged_by=record.acknowledged_by,
        resolved_by=record.resolved_by,
        version=record.version,
    )


def _bad_query(name: str, expected: str) -> RequestError:
    return RequestError(400, "invalid-query", f"query parameter {name!r} must be {expected}")


def _query_state(ctx: Context) -> AlertState | None:
    text = ctx.query("state")
    if text is None:
        return None
    if text not in _STATES:
        raise _bad_query("state", "one of " + ", ".join(_STATES))
    return AlertState(text)


def _query_identity(ctx: Context) -> str | None:
    """The ``device`` filter: a device or module identity (``d`` or ``d/m``), checked.

    Raises:
        ValidationError: it breaks the identity rule (400).
    """
    text = ctx.query("device")
    if text is not None:
        split_identity(text)
    return text


# --- alerts -----------------------------------------------------------------------------------


async def list_alerts(ctx: Context) -> Response:
    """``GET /alerts[?device=&state=&after=&limit=]``: one page, oldest first."""
    device = _query_identity(ctx)
    state = _query_state(ctx)
    after = ctx.query("after") or ""
    limit = ctx.query_int("limit", default=_DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
    records = await _monitor(ctx).list_alerts(
        device_id=device, state=state, after=after, limit=limit
    )
    # A full page may have a successor; a short one is the last.
    page = AlertList(
        alerts=[alert_view(r) for r in records],
        next_after=records[-1].alert_id if len(records) == limit else None,
    )
    return json_response(page)


async def show_alert(ctx: Context) -> Response:
    """``GET /alerts/{alert_id}``."""
    record = await _monitor(ctx).get_alert(ctx.path_param("alert_id"))
    return json_response(alert_view(record))


async def _change(ctx: Context, state: AlertState, action: str) -> Response:
    await ctx.body(ChangeAlertRequest)
    alert_id = ctx.path_param("alert_id")
    record = await _monitor(ctx).set_state(alert_id, state, actor=_caller(ctx))
    await ctx.audit(action, alert_id)
    return json_response(alert_view(record))


async def acknowledge_alert(ctx: Context) -> Response:
    """``POST /alerts/{alert_id}/ack`` ``{}``: an operator is on it.

    Acknowledging an acknowledged alert changes nothing (the first acknowledger stays) and
    answers it as it is; a resolved alert is final (400).
    """
    return await _change(ctx, AlertState.ACKNOWLEDGED, "alert-acknowledge")


async def resolve_alert(ctx: Context) -> Response:
    """``POST /alerts/{alert_id}/resolve`` ``{}``: handled; open or acknowledged before.

    Resolving twice is refused (400): the second operator learns that someone else closed it.
    Findings of the same type and device are suppressed for ``monitor.suppression_seconds``,
    then open a new alert. Resolving does not end a quarantine the alert caused: that is
    ``POST /devices/{device_id}/release``, a decision of its own.
    """
    return await _change(ctx, AlertState.RESOLVED, "alert-resolve")


# --- quarantine -------------------------------------------------------------------------------


async def release_device(ctx: Context) -> Response:
    """``POST /devices/{device_id}[/modules/{module_id}]/release``: end a quarantine.

    The identity is enabled again and its telemetry is accepted at once. 400 unless it is
    quarantined (a disabled device is enabled with ``POST /devices/{device_id}/enable``, a
    deliberate other decision). A playbook quarantines the identity an alert names, which can
    be a module; a module is released on its own route, and releasing a device does not
    release its modules' own quarantines.
    """
    # Imported here: the route table (api/_handlers.py) imports this module.
    from ironhub.api._handlers import device_view, module_view  # noqa: PLC0415

    identity = ctx.path_param("device_id")
    module = "module_id" in ctx.request.path_params
    if module:
        identity = f"{identity}/{ctx.path_param('module_id')}"
    # Checked before anything is looked up or recorded: an audit record never names an
    # identity that cannot exist.
    split_identity(identity)
    record = await _monitor(ctx).release(identity)
    await ctx.audit("module-release" if module else "device-release", identity)
    endpoint = ctx.services.endpoint
    connected = None if endpoint is None else {c.device_id for c in endpoint.connections()}
    view = module_view(record, connected) if module else device_view(record, connected)
    return json_response(view)


async def open_maintenance(ctx: Context) -> Response:
    """``POST /devices/{device_id}/maintenance``: a window for planned physical work.

    USB devices and console logins on the device raise no alert inside it (the detector's
    rule); everything else is watched as always. The window is recorded in the audit log.
    """
    device_id = ctx.path_param("device_id")
    split_identity(device_id)
    body = await ctx.body(MaintenanceRequest)
    starts_at = body.starts_at if body.starts_at is not None else ctx.services.clock.time()
    ends_at = starts_at + body.duration_seconds
    await _monitor(ctx).open_maintenance_window(device_id, starts_at=starts_at, ends_at=ends_at)
    await ctx.audit("maintenance-window", device_id)
    return json_response(MaintenanceView(device_id=device_id, starts_at=starts_at, ends_at=ends_at))


# --- the route table --------------------------------------------------------------------------

_P = Permission
_ALERT = "/alerts/{alert_id}"
_CHANGE_ERRORS = (400, 404, 409, 413, 415)

MONITOR_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path="/alerts",
        operation_id="listAlerts",
        summary="List security alerts, oldest first",
        permission=_P.ALERTS_READ,
        handler=list_alerts,
        response=AlertList,
        query=(
            QueryParam("device", "only this device's (or module's)", {"type": "string"}),
            QueryParam("state", "only alerts in this state", {"enum": list(_STATES)}),
            QueryParam("after", "list alerts whose id sorts after this one", {"type": "string"}),
            QueryParam(
                "limit", "page size", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}
            ),
        ),
    ),
    Operation(
        method="GET",
        path=_ALERT,
        operation_id="showAlert",
        summary="Show a security alert with its evidence and the actions taken",
        permission=_P.ALERTS_READ,
        handler=show_alert,
        response=AlertView,
        errors=(404,),
    ),
    Operation(
        method="POST",
        path=_ALERT + "/ack",
        operation_id="acknowledgeAlert",
        summary="Acknowledge an alert (recorded with the caller's name)",
        permission=_P.ALERTS_MANAGE,
        handler=acknowledge_alert,
        request=ChangeAlertRequest,
        response=AlertView,
        errors=_CHANGE_ERRORS,
    ),
    Operation(
        method="POST",
        path=_ALERT + "/resolve",
        operation_id="resolveAlert",
        summary="Resolve an alert (final; a quarantine it caused stays until released)",
        permission=_P.ALERTS_MANAGE,
        handler=resolve_alert,
        request=ChangeAlertRequest,
        response=AlertView,
        errors=_CHANGE_ERRORS,
    ),
    Operation(
        method="POST",
        path="/devices/{device_id}/release",
        operation_id="releaseDevice",
        summary="End a device's quarantine: its telemetry is accepted again",
        permission=_P.DEVICES_STATE,
        handler=release_device,
        response=DeviceView,
        errors=(400, 404),
    ),
    Operation(
        method="POST",
        path="/devices/{device_id}/maintenance",
        operation_id="openMaintenanceWindow",
        summary="Open a maintenance window: USB and console logins raise no alert in it",
        permission=_P.DEVICES_STATE,
        handler=open_maintenance,
        request=MaintenanceRequest,
        response=MaintenanceView,
        errors=(400, 404, 413, 415),
    ),
    Operation(
        method="POST",
        path="/devices/{device_id}/modules/{module_id}/release",
        operation_id="releaseModule",
        summary="End a module identity's own quarantine: its telemetry is accepted again",
        permission=_P.DEVICES_STATE,
        handler=release_device,
        response=ModuleView,
        errors=(400, 404),
    ),
)
