"""The exposure and compliance reports: ``GET /reports/exposure`` and ``GET /reports/compliance``.

The rules live in :mod:`ironhub.monitor.compliance` (pure) and the gathering in
:class:`~ironhub.monitor.compliance_service.ReportBuilder`; this module adds the wire, and the
two facts only the API knows: its own route table (``ctx.state.operations``, the one the
application was built from, so the report lists what is served) and the address and scheme the
request arrived on (the API listener as it runs, not as configured).

Both reports say where the hub is weak, like the fleet audit, so both need ``audit:read``. They
change nothing; the route table records the request like every read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ironhub.access.roles import Permission
from ironhub.api._http import json_response
from ironhub.api._routes import Operation
from ironhub.api.schemas import (
    ComplianceReportView,
    ExposureEntryView,
    ExposureReportView,
    ProvisionView,
)
from ironhub.monitor.compliance import PostureFacts, RouteFacts
from ironhub.monitor.compliance_service import ReportBuilder

if TYPE_CHECKING:
    from starlette.responses import Response

    from ironhub.api._routes import Context

__all__ = ["REPORT_OPERATIONS"]


def _builder(ctx: Context, posture: PostureFacts | None = None) -> ReportBuilder:
    routes = [
        RouteFacts(
            op.method,
            op.path,
            op.permission.value if op.permission is not None else None,
            op.media_type,
        )
        for op in ctx.state.operations
    ]
    server = ctx.request.scope.get("server")
    address = (str(server[0]), int(server[1])) if server else None
    return ReportBuilder(
        ctx.services,
        posture,
        routes=routes,
        api_address=address,
        api_tls=ctx.request.url.scheme == "https",
    )


async def report_exposure(ctx: Context) -> Response:
    """``GET /reports/exposure``: every enabled listener, protocol and route."""
    report = await _builder(ctx).exposure()
    return json_response(
        ExposureReportView(
            entries=[
                ExposureEntryView(
                    kind=e.kind,
                    name=e.name,
                    where=e.where,
                    authentication=e.authentication,
                    notes=e.notes,
                )
                for e in report.entries
            ],
            checked_at=report.checked_at,
        )
    )


async def report_compliance(ctx: Context) -> Response:
    """``GET /reports/compliance``: ETSI EN 303 645 and NISTIR 8259A, each with evidence."""
    posture = ctx.services.posture
    facts = None if posture is None else await posture.facts()
    report = await _builder(ctx, facts).compliance()
    return json_response(
        ComplianceReportView(
            provisions=[
                ProvisionView(
                    framework=r.framework,
                    ref=r.ref,
                    title=r.title,
                    status=r.status,
                    evidence=list(r.evidence),
                    fix=r.fix,
                )
                for r in report.results
            ],
            passed=len(report.results) - report.failed,
            failed=report.failed,
            checked_at=report.checked_at,
        )
    )


REPORT_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path="/reports/exposure",
        operation_id="showExposureReport",
        summary="Every enabled listener, protocol and API route, with its authentication",
        permission=Permission.AUDIT_READ,
        handler=report_exposure,
        response=ExposureReportView,
    ),
    Operation(
        method="GET",
        path="/reports/compliance",
        operation_id="showComplianceReport",
        summary="The configuration against ETSI EN 303 645 and NISTIR 8259A, with evidence",
        permission=Permission.AUDIT_READ,
        handler=report_compliance,
        response=ComplianceReportView,
    ),
)
