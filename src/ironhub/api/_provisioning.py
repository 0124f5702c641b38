"""The provisioning routes: enrollments, groups, claim tokens, registrations, issued certificates.

The rules live in :class:`~ironhub.provisioning.service.ProvisioningService` and
:class:`~ironhub.provisioning.authority.DeviceAuthority`; this module adds the wire. What it
guarantees on top:

- a secret appears in exactly one answer, once: a new symmetric enrollment's or group's keys,
  a derived device key (``keys:disclose``, recorded before it is shown), a new claim token's
  secret. Views never carry a sealed key blob or a claim token's hash;
- free-form members (initial twin, allocation payload) are bounded in depth before the
  service walks them;
- every state change records an ``operator-action`` (:meth:`Context.audit`) before the answer
  goes out; the route table has already recorded the ``operator-request`` before the handler
  ran, since no permission here but ``provisioning:read`` is a read.

Two routes are public (no token): the CRL and the device CA certificate. Relying parties (a
gateway, a broker, a device checking a peer) fetch a CRL without credentials, as from any RFC
5280 distribution point; it is signed by the device CA and holds only serial numbers, revocation
times and reasons, nothing about devices or enrollments. The device CA certificate is public
material every device already receives in its chain.

Identities in paths: ``/provisioning/enrollments/{registration_id}``,
``/provisioning/groups/{group_id}``, ``/provisioning/claim-tokens/{token_id}``,
``/provisioning/registrations/{registration_id}``, ``/certificates/{serial}`` (hex, colons
allowed) and ``/devices/{device_id}/certificates/revoke``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from starlette.responses import Response

from ironhub import pki
from ironhub.access.roles import Permission
from ironhub.api._http import RequestError, check_json_depth, json_response
from ironhub.api._routes import Operation, QueryParam
from ironhub.api.schemas import (
    CertificateDetailView,
    CertificateList,
    CertificateView,
    ClaimTokenList,
    ClaimTokenView,
    ComputeDeviceKeyRequest,
    CreateClaimTokenRequest,
    CreatedClaimTokenView,
    CreatedEnrollmentGroupView,
    CreatedEnrollmentView,
    CreateEnrollmentGroupRequest,
    CreateEnrollmentRequest,
    DeviceKeyView,
    EnrollmentGroupList,
    EnrollmentGroupStateView,
    EnrollmentGroupView,
    EnrollmentList,
    EnrollmentStateView,
    EnrollmentView,
    ProvisioningInfoView,
    RegistrationList,
    RegistrationView,
    RevokeCertificateRequest,
    RevokedCertificatesView,
    SetEnrollmentRequest,
)
from ironhub.errors import AuthorizationError, NotFoundError, StorageError
from ironhub.registry.service import validate_device_id
from ironhub.storage.interfaces import Attestation, ReprovisionPolicy

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ironhub.api._routes import Context
    from ironhub.provisioning.authority import DeviceAuthority
    from ironhub.provisioning.service import ProvisioningService
    from ironhub.storage.interfaces import (
        ClaimTokenRecord,
        EnrollmentRecord,
        IssuedCertificateRecord,
        RegistrationRecord,
    )

__all__ = ["PROVISIONING_OPERATIONS"]

#: Page sizes, as ``GET /devices``.
MAX_PAGE = 1000
_DEFAULT_PAGE = 100
#: RFC 2585 §4.2 names the media type of a DER CRL; PEM has no registered one, this is the
#: type web servers commonly give ``.pem`` files.
CRL_MEDIA_TYPE = "application/pkix-crl"
PEM_MEDIA_TYPE = "application/x-pem-file"

ClaimState = Literal["active", "revoked", "expired", "exhausted"]


# --- helpers ----------------------------------------------------------------------------------


def _provisioning(ctx: Context) -> ProvisioningService:
    service = ctx.services.provisioning
    if service is None:
        raise StorageError("the provisioning service is not running")
    return service


def _authority(ctx: Context) -> DeviceAuthority:
    return _provisioning(ctx).authority


def _caller(ctx: Context) -> str:
    actor = ctx.actor
    if actor is None:  # pragma: no cover - protected routes always have one
        raise AuthorizationError("authentication required")
    return actor.actor


def _bad_query(name: str, expected: str) -> RequestError:
    return RequestError(400, "invalid-query", f"query parameter {name!r} must be {expected}")


def _page(ctx: Context) -> tuple[str, int]:
    """``after`` and ``limit`` of a listing."""
    after = ctx.query("after") or ""
    limit = ctx.query_int("limit", default=_DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
    return after, limit


def _query_bool(ctx: Context, name: str) -> bool | None:
    text = ctx.query(name)
    if text is None:
        return None
    if text not in ("true", "false"):
        raise _bad_query(name, "true or false")
    return text == "true"


def _json_object(text: str | None) -> dict[str, Any] | None:
    """A JSON object stored by the service as compact text (``None`` stays ``None``)."""
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def enrollment_view(record: EnrollmentRecord) -> EnrollmentView:
    """The operator's view of an individual enrollment: no key, sealed or not."""
    return EnrollmentView(
        registration_id=record.enrollment_id,
        attestation=record.attestation.value,
        enabled=record.enabled,
        device_id=record.device_id,
        certificates=list(record.certificates_pem),
        initial_twin=_json_object(record.initial_twin) or {},
        allocation_payload=_json_object(record.allocation_payload),
        reprovision=record.reprovision.value,
        version=record.version,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def group_view(record: EnrollmentRecord) -> EnrollmentGroupView:
    """The operator's view of an enrollment group: no key, sealed or not."""
    return EnrollmentGroupView(
        group_id=record.enrollment_id,
        attestation=record.attestation.value,
        enabled=record.enabled,
        certificates=list(record.certificates_pem),
        initial_twin=_json_object(record.initial_twin) or {},
        allocation_payload=_json_object(record.allocation_payload),
        reprovision=record.reprovision.value,
        version=record.version,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _claim_state(record: ClaimTokenRecord, now: float) -> ClaimState:
    # The order matches what a registration with the token would be told first.
    if record.revoked:
        return "revoked"
    if now >= record.expires_at:
        return "expired"
    if record.uses >= record.max_uses:
        return "exhausted"
    return "active"


def _claim_token_fields(record: ClaimTokenRecord, now: float) -> dict[str, Any]:
    # Never the hash: it would let anyone who reads the listing test guesses offline.
    return {
        "token_id": record.token_id,
        "group_id": record.group_id,
        "max_uses": record.max_uses,
        "uses": record.uses,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "created_by": record.created_by,
        "revoked": record.revoked,
        "state": _claim_state(record, now),
    }


def registration_view(record: RegistrationRecord) -> RegistrationView:
    """The operator's view of a registration state."""
    return RegistrationView(
        registration_id=record.registration_id,
        enrollment_id=record.enrollment_id,
        group=record.group,
        device_id=record.device_id,
        status=record.status,
        substatus=record.substatus,
        version=record.version,
        created_at=record.created_at,
        updated_at=record.updated_at,
        error_code=record.error_code,
        error_message=record.error_message,
        certificate_serial=record.certificate_serial,
    )


def _certificate_fields(record: IssuedCertificateRecord) -> dict[str, Any]:
    return {
        "serial": record.serial,
        "device_id": record.device_id,
        "registration_id": record.registration_id,
        "thumbprint": record.thumbprint,
        "not_before": record.not_before,
        "not_after": record.not_after,
        "issued_at": record.issued_at,
        "revoked": record.revoked_at is not None,
        "revoked_at": record.revoked_at,
        "revocation_reason": record.revocation_reason,
    }


def certificate_view(record: IssuedCertificateRecord) -> CertificateView:
    """An issued certificate without its PEM (listings)."""
    return CertificateView(**_certificate_fields(record))


def certificate_detail_view(record: IssuedCertificateRecord) -> CertificateDetailView:
    """An issued certificate with its PEM."""
    return CertificateDetailView(**_certificate_fields(record), pem=record.pem)


def _next_after(ids: Sequence[str], limit: int) -> str | None:
    # A full page may have a successor; a short one is the last.
    return ids[-1] if len(ids) == limit else None


# --- provisioning info ------------------------------------------------------------------------


async def show_provisioning(ctx: Context) -> Response:
    """``GET /provisioning``: the ID scope and where devices provision themselves."""
    info = _provisioning(ctx).info()
    return json_response(
        ProvisioningInfoView(
            id_scope=info.id_scope,
            provisioning_host=info.provisioning_host,
            port=info.port,
            assigned_hub=info.assigned_hub,
            enabled=info.enabled,
            device_ca_pem=info.device_ca_pem,
        )
    )


# --- enrollments and groups -------------------------------------------------------------------


def _kind(group: bool) -> str:
    return "enrollment-group" if group else "enrollment"


async def _create(
    ctx: Context,
    body: CreateEnrollmentRequest | CreateEnrollmentGroupRequest,
    enrollment_id: str,
    *,
    group: bool,
    device_id: str | None = None,
) -> tuple[EnrollmentRecord, str | None, str | None]:
    check_json_depth(body.initial_twin, "initialTwin")
    check_json_depth(body.allocation_payload, "allocationPayload")
    created = await _provisioning(ctx).create_enrollment(
        enrollment_id,
        Attestation(body.attestation),
        group=group,
        certificates_pem=tuple(body.certificates),
        device_id=device_id,
        initial_twin=body.initial_twin,
        allocation_payload=body.allocation_payload,
        reprovision=ReprovisionPolicy(body.reprovision),
        enabled=body.enabled,
    )
    # The keys go out only once this record is durable (ADR 0006: recorded, then answered).
    await ctx.audit(f"{_kind(group)}-create", enrollment_id)
    return created.record, created.primary_key, created.secondary_key


async def create_enrollment(ctx: Context) -> Response:
    """``POST /provisioning/enrollments``: symmetric keys are in this answer only."""
    body = await ctx.body(CreateEnrollmentRequest)
    record, primary, secondary = await _create(
        ctx, body, body.registration_id, group=False, device_id=body.device_id
    )
    view = CreatedEnrollmentView(
        enrollment=enrollment_view(record), primary_key=primary, secondary_key=secondary
    )
    return json_response(view, status=201)


async def create_group(ctx: Context) -> Response:
    """``POST /provisioning/groups``: symmetric group keys are in this answer only."""
    body = await ctx.body(CreateEnrollmentGroupRequest)
    record, primary, secondary = await _create(ctx, body, body.group_id, group=True)
    view = CreatedEnrollmentGroupView(
        group=group_view(record), primary_key=primary, secondary_key=secondary
    )
    return json_response(view, status=201)


async def list_enrollments(ctx: Context) -> Response:
    """``GET /provisioning/enrollments``: one page, ordered by registration id."""
    after, limit = _page(ctx)
    records = await _provisioning(ctx).list_enrollments(group=False, after=after, limit=limit)
    page = EnrollmentList(
        enrollments=[enrollment_view(r) for r in records],
        next_after=_next_after([r.enrollment_id for r in records], limit),
    )
    return json_response(page)


async def list_groups(ctx: Context) -> Response:
    """``GET /provisioning/groups``: one page, ordered by group id."""
    after, limit = _page(ctx)
    records = await _provisioning(ctx).list_enrollments(group=True, after=after, limit=limit)
    page = EnrollmentGroupList(
        groups=[group_view(r) for r in records],
        next_after=_next_after([r.enrollment_id for r in records], limit),
    )
    return json_response(page)


async def show_enrollment(ctx: Context) -> Response:
    """``GET /provisioning/enrollments/{registration_id}``."""
    record = await _provisioning(ctx).get_enrollment(ctx.path_param("registration_id"), group=False)
    return json_response(enrollment_view(record))


async def show_group(ctx: Context) -> Response:
    """``GET /provisioning/groups/{group_id}``."""
    record = await _provisioning(ctx).get_enrollment(ctx.path_param("group_id"), group=True)
    return json_response(group_view(record))


async def _set_enabled(
    ctx: Context, enrollment_id: str, *, group: bool
) -> tuple[EnrollmentRecord, list[str]]:
    body = await ctx.body(SetEnrollmentRequest)
    record, disabled = await _provisioning(ctx).set_enrollment_enabled(
        enrollment_id, group=group, enabled=body.enabled
    )
    action = "enable" if body.enabled else "disable"
    await ctx.audit(f"{_kind(group)}-{action}", enrollment_id)
    # The service disabled these devices as a consequence; each gets its own record, so that
    # a device's history in the audit log shows why it stopped connecting.
    for device_id in disabled:
        await ctx.audit("device-disable", device_id)
    return record, disabled


async def update_enrollment(ctx: Context) -> Response:
    """``PATCH /provisioning/enrollments/{registration_id}`` ``{"enabled": bool}``.

    Disabling also disables the devices the enrollment provisioned (their connections close);
    enabling does not re-enable them: each is a decision of its own.
    """
    record, disabled = await _set_enabled(ctx, ctx.path_param("registration_id"), group=False)
    return json_response(
        EnrollmentStateView(enrollment=enrollment_view(record), disabled_devices=disabled)
    )


async def update_group(ctx: Context) -> Response:
    """``PATCH /provisioning/groups/{group_id}`` ``{"enabled": bool}`` (as for enrollments)."""
    record, disabled = await _set_enabled(ctx, ctx.path_param("group_id"), group=True)
    return json_response(
        EnrollmentGroupStateView(group=group_view(record), disabled_devices=disabled)
    )


async def _delete(ctx: Context, enrollment_id: str, *, group: bool) -> Response:
    await _provisioning(ctx).delete_enrollment(enrollment_id, group=group)
    await ctx.audit(f"{_kind(group)}-delete", enrollment_id)
    return Response(status_code=204)


async def delete_enrollment(ctx: Context) -> Response:
    """``DELETE /provisioning/enrollments/{registration_id}``: provisioned devices stay."""
    return await _delete(ctx, ctx.path_param("registration_id"), group=False)


async def delete_group(ctx: Context) -> Response:
    """``DELETE /provisioning/groups/{group_id}``: its claim tokens go with it."""
    return await _delete(ctx, ctx.path_param("group_id"), group=True)


async def compute_device_key(ctx: Context) -> Response:
    """``POST /provisioning/groups/{group_id}/device-key``: a derived key (a disclosure).

    The derived key is a device credential as good as a connection string, hence
    ``keys:disclose``; the disclosure is recorded before the key is put in the answer.
    """
    group_id = ctx.path_param("group_id")
    body = await ctx.body(ComputeDeviceKeyRequest)
    key = await _provisioning(ctx).compute_device_key(group_id, body.registration_id)
    await ctx.audit("enrollment-group-device-key-disclose", f"{group_id}/{body.registration_id}")
    return json_response(DeviceKeyView(registration_id=body.registration_id, device_key=key))


# --- claim tokens -----------------------------------------------------------------------------


async def create_claim_token(ctx: Context) -> Response:
    """``POST /provisioning/groups/{group_id}/claim-tokens``: the secret is shown once."""
    group_id = ctx.path_param("group_id")
    body = await ctx.body(CreateClaimTokenRequest)
    service = _provisioning(ctx)
    created = await service.create_claim_token(
        group_id,
        uses=body.uses,
        lifetime_seconds=float(body.expires_in_seconds),
        created_by=_caller(ctx),
    )
    await ctx.audit("claim-token-create", f"{group_id}/{created.record.token_id}")
    fields = _claim_token_fields(created.record, service.now())
    return json_response(CreatedClaimTokenView(**fields, token=created.secret), status=201)


async def list_claim_tokens(ctx: Context) -> Response:
    """``GET /provisioning/claim-tokens[?group=]``: oldest first, never a secret or hash."""
    service = _provisioning(ctx)
    records = await service.list_claim_tokens(ctx.query("group"))
    now = service.now()
    tokens = [ClaimTokenView(**_claim_token_fields(r, now)) for r in records]
    return json_response(ClaimTokenList(claim_tokens=tokens))


async def revoke_claim_token(ctx: Context) -> Response:
    """``DELETE /provisioning/claim-tokens/{token_id}``: no further registration may use it.

    Registrations it already admitted stand; disable or delete those devices to undo them.
    """
    token_id = ctx.path_param("token_id")
    await _provisioning(ctx).revoke_claim_token(token_id)
    await ctx.audit("claim-token-revoke", token_id)
    return Response(status_code=204)


# --- registrations ----------------------------------------------------------------------------


async def list_registrations(ctx: Context) -> Response:
    """``GET /provisioning/registrations[?enrollment=|?group=]``: one page by registration id.

    ``enrollment`` names an individual enrollment, ``group`` an enrollment group; the two
    are separate namespaces, so at most one of them may be given.
    """
    enrollment = ctx.query("enrollment")
    group = ctx.query("group")
    if enrollment is not None and group is not None:
        raise RequestError(
            400, "invalid-query", "give at most one of the query parameters enrollment and group"
        )
    after, limit = _page(ctx)
    enrollment_id: str | None = None
    is_group: bool | None = None
    if group is not None:
        enrollment_id, is_group = group, True
    elif enrollment is not None:
        enrollment_id, is_group = enrollment, False
    records = await _provisioning(ctx).list_registrations(
        enrollment_id=enrollment_id, group=is_group, after=after, limit=limit
    )
    page = RegistrationList(
        registrations=[registration_view(r) for r in records],
        next_after=_next_after([r.registration_id for r in records], limit),
    )
    return json_response(page)


async def show_registration(ctx: Context) -> Response:
    """``GET /provisioning/registrations/{registration_id}``."""
    record = await _provisioning(ctx).get_registration(ctx.path_param("registration_id"))
    return json_response(registration_view(record))


async def delete_registration(ctx: Context) -> Response:
    """``DELETE /provisioning/registrations/{registration_id}``: the device stays.

    While the device exists, a later registration of the same id is then refused, as for any
    device this service did not provision.
    """
    registration_id = ctx.path_param("registration_id")
    await _provisioning(ctx).delete_registration(registration_id)
    await ctx.audit("registration-delete", registration_id)
    return Response(status_code=204)


# --- issued certificates ----------------------------------------------------------------------


async def list_certificates(ctx: Context) -> Response:
    """``GET /certificates[?device=&revoked=&after=&limit=]``: one page by serial."""
    device = ctx.query("device")
    revoked = _query_bool(ctx, "revoked")
    after, limit = _page(ctx)
    records = await _authority(ctx).list_certificates(
        device_id=device, revoked=revoked, after=after, limit=limit
    )
    page = CertificateList(
        certificates=[certificate_view(r) for r in records],
        next_after=_next_after([r.serial for r in records], limit),
    )
    return json_response(page)


async def show_certificate(ctx: Context) -> Response:
    """``GET /certificates/{serial}``: with its PEM."""
    record = await _authority(ctx).get_certificate(ctx.path_param("serial"))
    return json_response(certificate_detail_view(record))


async def revoke_certificate(ctx: Context) -> Response:
    """``POST /certificates/{serial}/revoke`` ``{"reason"?}``: final; the CRL is re-signed.

    The sessions using the certificate are closed before the answer. Revoking a revoked
    certificate changes nothing (its first reason stays) and answers it as it is.
    """
    body = await ctx.body(RevokeCertificateRequest)
    record = await _authority(ctx).revoke(ctx.path_param("serial"), body.reason)
    await ctx.audit("certificate-revoke", record.serial)
    return json_response(certificate_detail_view(record))


async def revoke_device_certificates(ctx: Context) -> Response:
    """``POST /devices/{device_id}/certificates/revoke``: every certificate of one device.

    A device that is gone from the registry may still hold valid certificates (deleting a
    device revokes nothing), so this works on the certificates' device id, not on the
    registry. It answers 404 only when neither the device nor any certificate of it exists,
    so a mistyped id is not mistaken for "nothing left to revoke".
    """
    device_id = validate_device_id(ctx.path_param("device_id"))
    body = await ctx.body(RevokeCertificateRequest)
    authority = _authority(ctx)
    serials = await authority.revoke_device(device_id, body.reason)
    if not serials and not await authority.list_certificates(device_id=device_id, limit=1):
        try:
            await ctx.services.registry.get_device(device_id)
        except NotFoundError:
            raise NotFoundError(
                f"no device {device_id!r} and no certificate issued to it"
            ) from None
    await ctx.audit("device-certificates-revoke", device_id)
    return json_response(RevokedCertificatesView(revoked=serials))


# --- public PKI documents ---------------------------------------------------------------------


async def show_crl(ctx: Context) -> Response:
    """``GET /pki/crl[?format=pem]``: the device CA's current CRL, without credentials.

    Public on purpose: relying parties fetch a CRL like any RFC 5280 distribution point,
    without a hub account, and it is safe to hand out. It is signed by the device CA (so it
    cannot be forged on the way) and holds only serials, revocation times and reasons: no
    device id, enrollment or key. DER by default (RFC 5280 §4.2.1.13), PEM on request.
    """
    form = ctx.query("format") or "der"
    if form not in ("der", "pem"):
        raise _bad_query("format", "der or pem")
    _, der = await _authority(ctx).crl()
    if form == "pem":
        pem = pki.crl_pem(x509.load_der_x509_crl(der))
        return Response(pem, media_type=PEM_MEDIA_TYPE)
    return Response(der, media_type=CRL_MEDIA_TYPE)


async def show_device_ca(ctx: Context) -> Response:
    """``GET /pki/device-ca``: the device CA certificate (PEM), without credentials.

    Public: it is in every issued chain already, and a relying party needs it to check the
    CRL's signature and the devices' certificates.
    """
    pem = _authority(ctx).certificate_pem()
    return Response(pem.encode("ascii"), media_type=PEM_MEDIA_TYPE)


# --- the route table --------------------------------------------------------------------------

_P = Permission
_BODY_ERRORS = (400, 404, 413, 415)
_CREATE_ERRORS = (400, 409, 413, 415)
_PAGE_QUERY = (
    QueryParam("after", "list what sorts after this id", {"type": "string"}),
    QueryParam("limit", "page size", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
)
_ENROLLMENT = "/provisioning/enrollments/{registration_id}"
_GROUP = "/provisioning/groups/{group_id}"

PROVISIONING_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path="/provisioning",
        operation_id="showProvisioning",
        summary="The ID scope, the provisioning host and the device CA",
        permission=_P.PROVISIONING_READ,
        handler=show_provisioning,
        response=ProvisioningInfoView,
    ),
    Operation(
        method="POST",
        path="/provisioning/enrollments",
        operation_id="createEnrollment",
        summary="Create an individual enrollment; symmetric keys are in this answer only",
        permission=_P.PROVISIONING_WRITE,
        handler=create_enrollment,
        request=CreateEnrollmentRequest,
        response=CreatedEnrollmentView,
        status=201,
        errors=_CREATE_ERRORS,
    ),
    Operation(
        method="GET",
        path="/provisioning/enrollments",
        operation_id="listEnrollments",
        summary="List individual enrollments by registration id (never keys)",
        permission=_P.PROVISIONING_READ,
        handler=list_enrollments,
        response=EnrollmentList,
        query=_PAGE_QUERY,
    ),
    Operation(
        method="GET",
        path=_ENROLLMENT,
        operation_id="showEnrollment",
        summary="Show an individual enrollment (never its keys)",
        permission=_P.PROVISIONING_READ,
        handler=show_enrollment,
        response=EnrollmentView,
        errors=(404,),
    ),
    Operation(
        method="PATCH",
        path=_ENROLLMENT,
        operation_id="updateEnrollment",
        summary="Enable or disable an enrollment (disabling disables its devices)",
        permission=_P.PROVISIONING_WRITE,
        handler=update_enrollment,
        request=SetEnrollmentRequest,
        response=EnrollmentStateView,
        errors=(*_BODY_ERRORS, 409),
    ),
    Operation(
        method="DELETE",
        path=_ENROLLMENT,
        operation_id="deleteEnrollment",
        summary="Delete an individual enrollment (its devices stay registered)",
        permission=_P.PROVISIONING_WRITE,
        handler=delete_enrollment,
        status=204,
        errors=(404,),
    ),
    Operation(
        method="POST",
        path="/provisioning/groups",
        operation_id="createEnrollmentGroup",
        summary="Create an enrollment group; symmetric group keys are in this answer only",
        permission=_P.PROVISIONING_WRITE,
        handler=create_group,
        request=CreateEnrollmentGroupRequest,
        response=CreatedEnrollmentGroupView,
        status=201,
        errors=_CREATE_ERRORS,
    ),
    Operation(
        method="GET",
        path="/provisioning/groups",
        operation_id="listEnrollmentGroups",
        summary="List enrollment groups by id (never keys)",
        permission=_P.PROVISIONING_READ,
        handler=list_groups,
        response=EnrollmentGroupList,
        query=_PAGE_QUERY,
    ),
    Operation(
        method="GET",
        path=_GROUP,
        operation_id="showEnrollmentGroup",
        summary="Show an enrollment group (never its keys)",
        permission=_P.PROVISIONING_READ,
        handler=show_group,
        response=EnrollmentGroupView,
        errors=(404,),
    ),
    Operation(
        method="PATCH",
        path=_GROUP,
        operation_id="updateEnrollmentGroup",
        summary="Enable or disable an enrollment group (disabling disables its devices)",
        permission=_P.PROVISIONING_WRITE,
        handler=update_group,
        request=SetEnrollmentRequest,
        response=EnrollmentGroupStateView,
        errors=(*_BODY_ERRORS, 409),
    ),
    Operation(
        method="DELETE",
        path=_GROUP,
        operation_id="deleteEnrollmentGroup",
        summary="Delete an enrollment group and its claim tokens (its devices stay)",
        permission=_P.PROVISIONING_WRITE,
        handler=delete_group,
        status=204,
        errors=(404,),
    ),
    Operation(
        method="POST",
        path=_GROUP + "/device-key",
        operation_id="computeDeviceKey",
        summary="Derive a device key from a symmetric group (recorded as a key disclosure)",
        permission=_P.KEYS_DISCLOSE,
        handler=compute_device_key,
        request=ComputeDeviceKeyRequest,
        response=DeviceKeyView,
        errors=_BODY_ERRORS,
    ),
    Operation(
        method="POST",
        path=_GROUP + "/claim-tokens",
        operation_id="createClaimToken",
        summary="Create a claim token for a group; its secret is in this answer only",
        permission=_P.PROVISIONING_WRITE,
        handler=create_claim_token,
        request=CreateClaimTokenRequest,
        response=CreatedClaimTokenView,
        status=201,
        errors=_BODY_ERRORS,
    ),
    Operation(
        method="GET",
        path="/provisioning/claim-tokens",
        operation_id="listClaimTokens",
        summary="List claim tokens, oldest first (never a secret or hash)",
        permission=_P.PROVISIONING_READ,
        handler=list_claim_tokens,
        response=ClaimTokenList,
        query=(QueryParam("group", "only this group's tokens", {"type": "string"}),),
    ),
    Operation(
        method="DELETE",
        path="/provisioning/claim-tokens/{token_id}",
        operation_id="revokeClaimToken",
        summary="Revoke a claim token",
        permission=_P.PROVISIONING_WRITE,
        handler=revoke_claim_token,
        status=204,
        errors=(404,),
    ),
    Operation(
        method="GET",
        path="/provisioning/registrations",
        operation_id="listRegistrations",
        summary="List registration states by registration id",
        permission=_P.PROVISIONING_READ,
        handler=list_registrations,
        response=RegistrationList,
        query=(
            QueryParam("enrollment", "only this individual enrollment's", {"type": "string"}),
            QueryParam("group", "only this enrollment group's", {"type": "string"}),
            *_PAGE_QUERY,
        ),
    ),
    Operation(
        method="GET",
        path="/provisioning/registrations/{registration_id}",
        operation_id="showRegistration",
        summary="Show the registration state of a registration id",
        permission=_P.PROVISIONING_READ,
        handler=show_registration,
        response=RegistrationView,
        errors=(404,),
    ),
    Operation(
        method="DELETE",
        path="/provisioning/registrations/{registration_id}",
        operation_id="deleteRegistration",
        summary="Forget a registration state (the device stays)",
        permission=_P.PROVISIONING_WRITE,
        handler=delete_registration,
        status=204,
        errors=(404,),
    ),
    Operation(
        method="GET",
        path="/certificates",
        operation_id="listCertificates",
        summary="List certificates issued by the device CA, by serial",
        permission=_P.PROVISIONING_READ,
        handler=list_certificates,
        response=CertificateList,
        query=(
            QueryParam("device", "only this device's", {"type": "string"}),
            QueryParam("revoked", "only revoked (true) or unrevoked (false)", {"type": "boolean"}),
            *_PAGE_QUERY,
        ),
    ),
    Operation(
        method="GET",
        path="/certificates/{serial}",
        operation_id="showCertificate",
        summary="Show an issued certificate with its PEM",
        permission=_P.PROVISIONING_READ,
        handler=show_certificate,
        response=CertificateDetailView,
        errors=(400, 404),
    ),
    Operation(
        method="POST",
        path="/certificates/{serial}/revoke",
        operation_id="revokeCertificate",
        summary="Revoke an issued certificate (final); its sessions close, the CRL is re-signed",
        permission=_P.CERTIFICATES_REVOKE,
        handler=revoke_certificate,
        request=RevokeCertificateRequest,
        response=CertificateDetailView,
        errors=_BODY_ERRORS,
    ),
    Operation(
        method="POST",
        path="/devices/{device_id}/certificates/revoke",
        operation_id="revokeDeviceCertificates",
        summary="Revoke every unrevoked certificate issued to a device",
        permission=_P.CERTIFICATES_REVOKE,
        handler=revoke_device_certificates,
        request=RevokeCertificateRequest,
        response=RevokedCertificatesView,
        errors=_BODY_ERRORS,
    ),
    Operation(
        method="GET",
        path="/pki/crl",
        operation_id="showCRL",
        summary="The device CA's CRL, DER (or PEM with format=pem); public",
        permission=None,
        handler=show_crl,
        media_type=CRL_MEDIA_TYPE,
        query=(QueryParam("format", "der (default) or pem", {"enum": ["der", "pem"]}),),
    ),
    Operation(
        method="GET",
        path="/pki/device-ca",
        operation_id="showDeviceCA",
        summary="The device CA certificate (PEM); public",
        permission=None,
        handler=show_device_ca,
        media_type=PEM_MEDIA_TYPE,
    ),
)
