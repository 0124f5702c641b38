"""The device posture routes: profiles, advisories and the vulnerable-device report (issue 6).

The rules live in :class:`~ironhub.monitor.posture_service.PostureService` and the pure
modules behind it; this module adds the wire:

- ``GET /profiles``, ``POST /profiles``, ``GET|PUT|DELETE /profiles/{name}``: device profiles
  (the document format is :mod:`ironhub.monitor.profiles`; a bad member is a 400 naming it).
- ``GET /profiles/{name}/devices``, ``POST /profiles/{name}/assign``,
  ``DELETE /devices/{device_id}/profile``: which devices a profile judges (the twin tag
  ``ironhub.profile``).
- ``POST /advisories/import?source=NAME``: an OSV file as the raw body (``application/json``
  for one advisory or a list, ``application/zip`` for OSV's ``all.zip``), up to
  ``monitor.max_advisory_import_bytes``; ``GET /advisories``.
- ``GET /posture/report[?device=ID]``: the outdated/vulnerable-device report.

Reading is ``posture:read`` (every role for people), changing is ``posture:manage``
(``security-admin`` and ``admin``). Every change records an ``operator-action`` before the
answer goes out.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Final

from starlette.responses import Response

from ironhub.access.roles import Permission
from ironhub.api._http import RequestError, check_json_depth, json_response, read_body
from ironhub.api._routes import Operation, QueryParam
from ironhub.api.schemas import (
    AdvisoryImportView,
    AdvisoryList,
    AdvisoryPackageView,
    AdvisoryView,
    AssignedDevicesView,
    AssignProfileRequest,
    CreateProfileRequest,
    DevicePostureView,
    PostureReportView,
    ProfileList,
    ProfileView,
    RefusedAdvisoryView,
    ReplaceProfileRequest,
    VulnerabilityView,
)
from ironhub.codec.azure import split_identity
from ironhub.monitor.profiles import ProfileError, validate_profile_name

if TYPE_CHECKING:
    from ironhub.api._routes import Context
    from ironhub.monitor.advisories import Advisory
    from ironhub.monitor.posture_service import DevicePosture, PostureService
    from ironhub.storage.interfaces import ProfileRecord

__all__ = ["POSTURE_OPERATIONS"]

MAX_PAGE: Final = 1000
_DEFAULT_PAGE: Final = 100
#: Media types an advisory file may be sent as.
_IMPORT_TYPES: Final = frozenset(
    {"application/json", "application/zip", "application/octet-stream"}
)
#: Time allowed for an advisory file to arrive (it can be large; the route needs
#: ``posture:manage``, so a slow body only ties up an authenticated security admin's request).
_IMPORT_TIMEOUT_SECONDS: Final = 300.0


def _posture(ctx: Context) -> PostureService:
    service = ctx.services.posture
    if service is None:  # pragma: no cover - server.py always builds it
        raise RequestError(503, "posture-unavailable", "this hub runs no posture service")
    return service


def _name(ctx: Context) -> str:
    name = ctx.path_param("name")
    try:
        return validate_profile_name(name)
    except ProfileError as exc:
        raise RequestError(400, "invalid-profile-name", str(exc)) from None


def _profile_view(record: ProfileRecord) -> ProfileView:
    return ProfileView(
        name=record.name,
        profile=json.loads(record.document),
        created_at=record.created_at,
        updated_at=record.updated_at,
        version=record.version,
    )


def _advisory_view(advisory: Advisory) -> AdvisoryView:
    return AdvisoryView(
        id=advisory.id,
        modified=advisory.modified,
        severity=advisory.severity,
        summary=advisory.summary,
        aliases=list(advisory.aliases),
        packages=[
            AdvisoryPackageView(ecosystem=a.ecosystem, name=a.name) for a in advisory.affected
        ],
    )


def _device_view(device: DevicePosture) -> DevicePostureView:
    return DevicePostureView(
        device_id=device.device_id,
        profile=device.profile,
        profile_missing=device.profile_missing,
        inventory_at=device.inventory_at,
        outdated=device.outdated,
        vulnerable=device.vulnerable,
        below_baseline=device.below_baseline,
        vulnerabilities=[
            VulnerabilityView(
                advisory_id=m.advisory_id,
                aliases=list(m.aliases),
                severity=m.severity,
                summary=m.summary,
                package=m.package,
                installed_version=m.installed_version,
                fixed=m.fixed,
            )
            for m in device.vulnerabilities
        ],
        antimalware=device.antimalware,
        drift=device.drift,
    )


# --- profiles ---------------------------------------------------------------------------------


async def list_profiles(ctx: Context) -> Response:
    """``GET /profiles``: every profile, by name."""
    records = await _posture(ctx).list_profiles()
    return json_response(ProfileList(profiles=[_profile_view(r) for r in records]))


async def create_profile(ctx: Context) -> Response:
    """``POST /profiles``: a new profile (409 if the name is taken)."""
    body = await ctx.body(CreateProfileRequest)
    check_json_depth(body.profile, "profile")
    try:
        validate_profile_name(body.name)
    except ProfileError as exc:
        raise RequestError(400, "invalid-profile-name", str(exc)) from None
    record = await _posture(ctx).put_profile(body.name, body.profile, create=True)
    await ctx.audit("profile-create", body.name)
    return json_response(_profile_view(record), status=201)


async def show_profile(ctx: Context) -> Response:
    """``GET /profiles/{name}``."""
    return json_response(_profile_view(await _posture(ctx).get_profile(_name(ctx))))


async def replace_profile(ctx: Context) -> Response:
    """``PUT /profiles/{name}``: replace the document (applies to the next report)."""
    name = _name(ctx)
    body = await ctx.body(ReplaceProfileRequest)
    check_json_depth(body.profile, "profile")
    record = await _posture(ctx).put_profile(name, body.profile, create=False)
    await ctx.audit("profile-replace", name)
    return json_response(_profile_view(record))


async def delete_profile(ctx: Context) -> Response:
    """``DELETE /profiles/{name}``: 409 while devices are assigned to it."""
    name = _name(ctx)
    await _posture(ctx).delete_profile(name)
    await ctx.audit("profile-delete", name)
    return Response(status_code=204)


async def profile_devices(ctx: Context) -> Response:
    """``GET /profiles/{name}/devices``: the devices assigned to it (a scan of the twins)."""
    name = _name(ctx)
    service = _posture(ctx)
    await service.get_profile(name)
    devices = await service.assigned_devices(name)
    return json_response(AssignedDevicesView(profile=name, device_ids=devices))


async def assign_profile(ctx: Context) -> Response:
    """``POST /profiles/{name}/assign``: set the devices' ``ironhub.profile`` tag."""
    name = _name(ctx)
    body = await ctx.body(AssignProfileRequest)
    for device_id in body.device_ids:
        split_identity(device_id)
    await _posture(ctx).assign(name, body.device_ids)
    for device_id in body.device_ids:
        await ctx.audit(f"profile-assign:{name}", device_id)
    return json_response(AssignedDevicesView(profile=name, device_ids=body.device_ids))


async def unassign_profile(ctx: Context) -> Response:
    """``DELETE /devices/{device_id}/profile``: the device falls back to ``default``."""
    device_id = ctx.path_param("device_id")
    split_identity(device_id)
    await _posture(ctx).assign(None, [device_id])
    await ctx.audit("profile-unassign", device_id)
    return Response(status_code=204)


# --- advisories -------------------------------------------------------------------------------


async def import_advisories(ctx: Context) -> Response:
    """``POST /advisories/import?source=NAME``: the raw OSV file as the body."""
    media_type = ctx.request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in _IMPORT_TYPES:
        raise RequestError(
            415,
            "unsupported-media-type",
            "send the OSV file as application/json (one advisory or a list) or "
            "application/zip (OSV's all.zip)",
        )
    source = ctx.query("source") or "upload"
    if len(source) > 256 or not source.isprintable():
        raise RequestError(400, "invalid-query", "source must be printable, at most 256 characters")
    data = await read_body(
        ctx.request,
        max_bytes=ctx.services.config.monitor.max_advisory_import_bytes,
        timeout_seconds=_IMPORT_TIMEOUT_SECONDS,
    )
    if not data:
        raise RequestError(400, "invalid-body", "the advisory file is empty")
    summary = await _posture(ctx).import_advisories(data, source=source)
    await ctx.audit("advisories-import", source)
    return json_response(
        AdvisoryImportView(
            source=summary.source,
            added=summary.added,
            updated=summary.updated,
            unchanged=summary.unchanged,
            withdrawn=summary.withdrawn,
            refused=summary.refused,
            refused_entries=[
                RefusedAdvisoryView(entry=entry, reason=reason)
                for entry, reason in summary.refused_listed
            ],
            total=summary.total,
            imported_at=summary.imported_at,
        )
    )


async def list_advisories(ctx: Context) -> Response:
    """``GET /advisories[?after=ID&limit=N]``: imported advisories in id order."""
    service = _posture(ctx)
    limit = ctx.query_int("limit", default=_DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
    advisories = await service.list_advisories(after=ctx.query("after") or "", limit=limit)
    return json_response(
        AdvisoryList(
            advisories=[_advisory_view(a) for a in advisories],
            total=len(service.index),
            imported_at=await service.last_import(),
        )
    )


# --- the report -------------------------------------------------------------------------------


async def posture_report(ctx: Context) -> Response:
    """``GET /posture/report[?device=ID]``: devices below baseline, vulnerable or drifted."""
    device = ctx.query("device")
    if device is not None:
        split_identity(device)
    report = await _posture(ctx).report(device_id=device)
    return json_response(
        PostureReportView(
            devices=[_device_view(d) for d in report.devices],
            checked=report.checked,
            advisories=report.advisories,
            checked_at=report.checked_at,
        )
    )


# --- the route table --------------------------------------------------------------------------

_P = Permission
_PROFILE = "/profiles/{name}"

POSTURE_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path="/profiles",
        operation_id="listProfiles",
        summary="List device profiles (hardware allowed, minimum versions)",
        permission=_P.POSTURE_READ,
        handler=list_profiles,
        response=ProfileList,
    ),
    Operation(
        method="POST",
        path="/profiles",
        operation_id="createProfile",
        summary="Create a device profile",
        permission=_P.POSTURE_MANAGE,
        handler=create_profile,
        request=CreateProfileRequest,
        response=ProfileView,
        status=201,
        errors=(400, 409, 413, 415),
    ),
    Operation(
        method="GET",
        path=_PROFILE,
        operation_id="showProfile",
        summary="Show a device profile",
        permission=_P.POSTURE_READ,
        handler=show_profile,
        response=ProfileView,
        errors=(400, 404),
    ),
    Operation(
        method="PUT",
        path=_PROFILE,
        operation_id="replaceProfile",
        summary="Replace a device profile's document",
        permission=_P.POSTURE_MANAGE,
        handler=replace_profile,
        request=ReplaceProfileRequest,
        response=ProfileView,
        errors=(400, 404, 413, 415),
    ),
    Operation(
        method="DELETE",
        path=_PROFILE,
        operation_id="deleteProfile",
        summary="Delete a device profile no device is assigned to",
        permission=_P.POSTURE_MANAGE,
        handler=delete_profile,
        status=204,
        errors=(400, 404, 409),
    ),
    Operation(
        method="GET",
        path=_PROFILE + "/devices",
        operation_id="listProfileDevices",
        summary="List the devices assigned to a profile",
        permission=_P.POSTURE_READ,
        handler=profile_devices,
        response=AssignedDevicesView,
        errors=(400, 404),
    ),
    Operation(
        method="POST",
        path=_PROFILE + "/assign",
        operation_id="assignProfile",
        summary="Assign a profile to devices (twin tag ironhub.profile)",
        permission=_P.POSTURE_MANAGE,
        handler=assign_profile,
        request=AssignProfileRequest,
        response=AssignedDevicesView,
        errors=(400, 404, 413, 415, 429),
    ),
    Operation(
        method="DELETE",
        path="/devices/{device_id}/profile",
        operation_id="unassignProfile",
        summary="Remove a device's profile assignment (it falls back to 'default')",
        permission=_P.POSTURE_MANAGE,
        handler=unassign_profile,
        status=204,
        errors=(400, 404, 429),
    ),
    Operation(
        method="POST",
        path="/advisories/import",
        operation_id="importAdvisories",
        summary="Import an OSV advisory file (JSON or OSV's all.zip) as the raw body",
        permission=_P.POSTURE_MANAGE,
        handler=import_advisories,
        response=AdvisoryImportView,
        query=(
            QueryParam("source", "a name for the file, kept with the import", {"type": "string"}),
        ),
        errors=(400, 408, 413, 415),
    ),
    Operation(
        method="GET",
        path="/advisories",
        operation_id="listAdvisories",
        summary="List imported advisories in id order",
        permission=_P.POSTURE_READ,
        handler=list_advisories,
        response=AdvisoryList,
        query=(
            QueryParam(
                "after", "list advisories whose id sorts after this one", {"type": "string"}
            ),
            QueryParam(
                "limit", "page size", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}
            ),
        ),
    ),
    Operation(
        method="GET",
        path="/posture/report",
        operation_id="showPostureReport",
        summary="The outdated/vulnerable-device report: below baseline, vulnerable, drifted",
        permission=_P.POSTURE_READ,
        handler=posture_report,
        response=PostureReportView,
        query=(QueryParam("device", "only this device", {"type": "string"}),),
        errors=(400,),
    ),
)
