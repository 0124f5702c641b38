"""The fleet audit route: ``GET /fleet/audit`` (issue 6).

The rules live in :mod:`ironhub.monitor.fleet` (pure) and the gathering in
:class:`~ironhub.monitor.fleet_service.FleetAuditor`; this module adds the wire. The audit
reads configuration, credentials' fingerprints and accounts, and says where the hub is weak,
so it needs ``audit:read`` (the auditors' permission), not a device or alert permission. It
changes nothing and records no ``operator-action``; the route table records the request like
every read.

``?days=N`` (1 to 3650, default 30) is the certificate expiry window; certificates that expire
within 7 days (or within ``N`` if smaller) are ``high``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ironhub.access.roles import Permission
from ironhub.api._http import json_response
from ironhub.api._routes import Operation, QueryParam
from ironhub.api.schemas import FleetAuditView, FleetFindingView
from ironhub.monitor.fleet import FleetPolicy
from ironhub.monitor.fleet_service import FleetAuditor

if TYPE_CHECKING:
    from starlette.responses import Response

    from ironhub.api._routes import Context

__all__ = ["FLEET_OPERATIONS"]

#: The longest expiry window one may ask for: ten years, the device CA's own validity.
MAX_DAYS = 3650
_DEFAULT_DAYS = 30
_URGENT_DAYS = 7


async def audit_fleet(ctx: Context) -> Response:
    """``GET /fleet/audit[?days=]``: every finding, most severe first."""
    days = ctx.query_int("days", default=_DEFAULT_DAYS, minimum=1, maximum=MAX_DAYS)
    policy = FleetPolicy(expiry_days=days, urgent_expiry_days=min(_URGENT_DAYS, days))
    report = await FleetAuditor(ctx.services, policy).audit()
    view = FleetAuditView(
        findings=[
            FleetFindingView(
                check=f.check,
                severity=f.severity.value,
                subject=f.subject,
                problem=f.problem,
                fix=f.fix,
            )
            for f in report.findings
        ],
        checked_at=report.checked_at,
        devices=report.identities,
    )
    return json_response(view)


FLEET_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path="/fleet/audit",
        operation_id="auditFleet",
        summary="Audit the fleet and the hub for risky configuration, with the fix for each",
        permission=Permission.AUDIT_READ,
        handler=audit_fleet,
        response=FleetAuditView,
        query=(
            QueryParam(
                "days",
                "certificates expiring within this many days are reported",
                {"type": "integer", "minimum": 1, "maximum": MAX_DAYS},
            ),
        ),
    ),
)
