"""The handlers of the operator API and the declared route table, :data:`OPERATIONS`.

Handlers receive a :class:`~ironhub.api._routes.Context` whose caller is already
authenticated and authorised for the route's :class:`~ironhub.access.roles.Permission`, and whose
query parameters are known to be declared. They translate between the wire schemas
(:mod:`ironhub.api.schemas`) and the services; domain errors propagate and are mapped to
status codes in one place (:func:`ironhub.api._http.problem_for`).

Every handler that changes state or discloses a key records an ``operator-action`` event on
the security stream (:meth:`Context.audit`) and waits for its commit before answering. A direct
method is recorded *before* it is invoked: its effect on the device cannot be taken back.

Identities: device routes name a device ``d``; the routes under
``/devices/{device_id}/modules/{module_id}`` name the module ``d/m``, which is the identity key
of the registry, the twins, the methods and the cloud-to-device queues.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from ironhub.access.roles import Permission
from ironhub.api._access import ACCESS_OPERATIONS
from ironhub.api._audit import AUDIT_OPERATIONS
from ironhub.api._fleet import FLEET_OPERATIONS
from ironhub.api._http import RequestError, check_json_depth, json_response, too_deep
from ironhub.api._monitor import MONITOR_OPERATIONS
from ironhub.api._posture import POSTURE_OPERATIONS
from ironhub.api._provisioning import PROVISIONING_OPERATIONS
from ironhub.api._reports import REPORT_OPERATIONS
from ironhub.api._routes import Operation, QueryParam
from ironhub.api._tail import TailResponse, message_view
from ironhub.api.schemas import (
    MAX_DEVICE_ID_CHARS,
    MAX_TWINS_PER_PAGE,
    AddCARequest,
    CAList,
    CAView,
    CloudMessageList,
    CloudMessageView,
    ConnectionList,
    ConnectionStringView,
    ConnectionView,
    CreatedDeviceView,
    CreateDeviceRequest,
    CreatedModuleView,
    CreateModuleRequest,
    DeviceList,
    DeviceView,
    HealthView,
    InvokeMethodRequest,
    MessagePage,
    MethodResultView,
    ModuleList,
    ModuleView,
    PurgedView,
    QueuedCloudMessageView,
    RotatedKeyView,
    SendCloudMessageRequest,
    TwinList,
    TwinPatchRequest,
    TwinQueryRequest,
    TwinView,
)
from ironhub.codec.azure import split_identity, validate_method_name
from ironhub.errors import StorageError, ValidationError
from ironhub.storage.interfaces import AuthKind, DeviceState, Stream

if TYPE_CHECKING:
    from ironhub.api._routes import Context
    from ironhub.hub.c2d import CloudToDevice
    from ironhub.hub.methods import MethodService
    from ironhub.hub.twins import TwinService
    from ironhub.registry.twin import Twin
    from ironhub.storage.interfaces import CARecord, CloudMessage, DeviceRecord

__all__ = ["OPERATIONS", "connection_string", "device_view", "module_view"]

T = TypeVar("T")

#: ``GET /messages`` answers at most this many messages per page.
MAX_MESSAGES_PER_PAGE = 1000
MAX_DEVICES_PER_PAGE = 1000
_KEY_SLOTS = ("primary", "secondary")
#: A strong entity tag of this API: the twin version in double quotes (RFC 9110 §8.8.3).
_ETAG = re.compile(r'^"([0-9]{1,18})"$')
#: A DNS name or IPv4 literal; nothing that could add a field to a connection string.
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


# --- helpers -----------------------------------------------------------------------------------


def connection_string(
    hostname: str,
    device_id: str,
    *,
    module_id: str | None = None,
    key: str | None = None,
    gateway: str | None = None,
) -> str:
    """An Azure-style device or module connection string (azure-iot-mqtt.md §2.4).

    With ``key`` it is a SAS connection string (``SharedAccessKey=``); without, the X.509 form
    (``x509=true``). ``ModuleId`` follows ``DeviceId`` for a module identity, as the SDK's
    ``IoTHubModuleClient.create_from_connection_string`` expects. ``GatewayHostName`` makes
    the SDK dial that host instead of ``HostName`` while still signing for ``HostName``.

    Raises:
        ValidationError: ``gateway`` is not a host name or IPv4 address.
    """
    parts = [f"HostName={hostname}", f"DeviceId={device_id}"]
    if module_id is not None:
        parts.append(f"ModuleId={module_id}")
    parts.append(f"SharedAccessKey={key}" if key is not None else "x509=true")
    if gateway is not None:
        if not _HOST_NAME.match(gateway):
            raise ValidationError("gateway: expected a host name or an IPv4 address")
        parts.append(f"GatewayHostName={gateway}")
    return ";".join(parts)


def _connected_ids(ctx: Context) -> set[str] | None:
    endpoint = ctx.services.endpoint
    if endpoint is None:
        return None
    return {c.device_id for c in endpoint.connections()}


def device_view(record: DeviceRecord, connected: set[str] | None) -> DeviceView:
    """The operator's view of a device record: states and thumbprints, never keys.

    Raises:
        TypeError: never in practice; declared for the docstring convention.
    """
    return DeviceView(
        device_id=record.device_id,
        auth=record.auth_kind.value,
        state=record.state.value,
        version=record.version,
        created_at=record.created_at,
        updated_at=record.updated_at,
        primary_thumbprint=record.primary_thumbprint,
        secondary_thumbprint=record.secondary_thumbprint,
        connected=None if connected is None else record.device_id in connected,
    )


def module_view(record: DeviceRecord, connected: set[str] | None) -> ModuleView:
    """The operator's view of a module record (``record.device_id`` is ``device/module``).

    Raises:
        ValidationError: the record is not a module's (a bug in the registry).
    """
    device_id, module_id = split_identity(record.device_id)
    if module_id is None:  # pragma: no cover - the registry answers module records here
        raise ValidationError(f"{record.device_id!r} is not a module identity")
    return ModuleView(
        device_id=device_id,
        module_id=module_id,
        auth=record.auth_kind.value,
        state=record.state.value,
        version=record.version,
        created_at=record.created_at,
        updated_at=record.updated_at,
        primary_thumbprint=record.primary_thumbprint,
        secondary_thumbprint=record.secondary_thumbprint,
        connected=None if connected is None else record.device_id in connected,
    )


def _ca_view(record: CARecord) -> CAView:
    return CAView(
        fingerprint=record.fingerprint,
        subject=record.subject,
        created_at=record.created_at,
        pem=record.pem,
    )


def _query(ctx: Context, name: str) -> str | None:
    return ctx.query(name)


def _query_int(ctx: Context, name: str, *, default: int, minimum: int, maximum: int) -> int:
    return ctx.query_int(name, default=default, minimum=minimum, maximum=maximum)


def _query_choice(ctx: Context, name: str, choices: tuple[str, ...]) -> str | None:
    text = _query(ctx, name)
    if text is not None and text not in choices:
        raise RequestError(
            400, "invalid-query", f"query parameter {name!r} must be one of {', '.join(choices)}"
        )
    return text


def _query_time(ctx: Context, name: str) -> float | None:
    """A time bound: seconds since the epoch, or an ISO 8601 time with a UTC offset."""
    text = _query(ctx, name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise RequestError(
                400,
                "invalid-query",
                f"query parameter {name!r} must be epoch seconds or ISO 8601 with an offset",
            ) from None
        value = moment.timestamp()
    if not 0 <= value < 2**40:  # also refuses nan and inf
        raise RequestError(400, "invalid-query", f"query parameter {name!r} is out of range")
    return value


def _query_device(ctx: Context, name: str = "device") -> str | None:
    text = _query(ctx, name)
    if text is not None and not 0 < len(text) <= MAX_DEVICE_ID_CHARS:
        raise RequestError(400, "invalid-query", f"query parameter {name!r} is not a device id")
    return text


def _slot(text: str | None, default: str = "primary") -> str:
    slot = default if text is None else text
    if slot not in _KEY_SLOTS:
        raise RequestError(400, "invalid-key-slot", "the key must be 'primary' or 'secondary'")
    return slot


def _identity(ctx: Context) -> str:
    """The identity a route names: ``device``, or ``device/module`` under ``/modules/``.

    Validated here, before anything is recorded or looked up, so that an audit record never
    names an identity that cannot exist.

    Raises:
        ValidationError: the device or module id breaks the identity rule.
    """
    identity = ctx.path_param("device_id")
    if "module_id" in ctx.request.path_params:
        identity = f"{identity}/{ctx.path_param('module_id')}"
    split_identity(identity)
    return identity


def _twins(ctx: Context) -> TwinService:
    service = ctx.services.twins
    if service is None:
        raise StorageError("the twin service is not running")
    return service


def _methods(ctx: Context) -> MethodService:
    service = ctx.services.methods
    if service is None:
        raise StorageError("the direct-method service is not running")
    return service


def _c2d(ctx: Context) -> CloudToDevice:
    service = ctx.services.c2d
    if service is None:
        raise StorageError("the cloud-to-device service is not running")
    return service


async def _free_form_body(ctx: Context, kind: type[T]) -> T:
    """:meth:`Context.body` for schemas with free-form JSON members.

    Both JSON decoders refuse very deep nesting with ``RecursionError``; that is the caller's
    fault (400), not ours.

    Raises:
        RequestError: as :meth:`Context.body`, and 400 ``too-deep``.
    """
    try:
        return await ctx.body(kind)
    except RecursionError:
        raise too_deep("the request body") from None


def _if_match(ctx: Context, body_version: int | None) -> int | None:
    """The twin version a change is conditional on: ``If-Match`` or the body's ``version``.

    ``If-Match: *`` is no condition (every identity has a twin). Weak tags never match an
    ``If-Match`` (RFC 9110 §13.1.1), so they, lists and anything else are refused.

    Raises:
        RequestError: 400 for a malformed or repeated header, or one the body contradicts.
    """
    headers = ctx.request.headers.getlist("if-match")
    if len(headers) > 1:
        raise RequestError(400, "invalid-if-match", "the If-Match header is repeated")
    header_version: int | None = None
    if headers and headers[0].strip() != "*":
        match = _ETAG.match(headers[0].strip())
        if match is None:
            raise RequestError(
                400, "invalid-if-match", 'If-Match must be * or a twin ETag ("<version>")'
            )
        header_version = int(match.group(1))
    if header_version is None:
        return body_version
    if body_version is not None and body_version != header_version:
        raise RequestError(
            400, "invalid-if-match", "If-Match and the body's version name different versions"
        )
    return header_version


def _twin_view(twin: Twin) -> TwinView:
    """The twin document of the service, checked against the declared schema."""
    return msgspec.convert(twin.operator_document(), TwinView)


def _etag(twin: Twin) -> dict[str, str]:
    return {"ETag": f'"{twin.version}"'}


def _cloud_message_fields(message: CloudMessage) -> dict[str, Any]:
    device_id, _, module_id = message.identity.partition("/")
    properties = dict(message.properties)
    return {
        "seq": message.seq,
        "device_id": device_id,
        "module_id": module_id or None,
        "input_name": message.input_name,
        "message_id": properties.get("$.mid"),
        "enqueued_at": message.enqueued_at,
        "expires_at": message.expires_at,
        "size": len(message.payload),
        "properties": properties,
        "delivery_count": message.delivery_count,
    }


def _queued_cloud_message_view(message: CloudMessage) -> QueuedCloudMessageView:
    try:
        text: str | None = message.payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return QueuedCloudMessageView(
        **_cloud_message_fields(message),
        payload_base64=base64.b64encode(message.payload).decode("ascii"),
        payload_text=text,
    )


def _cloud_payload(body: SendCloudMessageRequest) -> bytes:
    """The bytes of a message to send: ``body`` as UTF-8, or ``body_base64`` decoded.

    Raises:
        RequestError: 400 unless exactly one of them is given, or for bad base64.
    """
    if (body.body is None) == (body.body_base64 is None):
        raise RequestError(400, "invalid-body", "give exactly one of body and body_base64")
    if body.body is not None:
        return body.body.encode("utf-8")
    try:
        return base64.b64decode(body.body_base64 or "", validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "invalid-body", "body_base64 is not valid base64") from None


# --- public routes -----------------------------------------------------------------------------


async def healthz(_ctx: Context) -> Response:
    """``GET /healthz``: the process answers."""
    return json_response(HealthView(status="ok"))


async def openapi(ctx: Context) -> Response:
    """``GET /openapi.json``: the API description, generated from the route table."""
    return Response(ctx.state.openapi, media_type="application/json")


async def metrics(ctx: Context) -> Response:
    """``GET /metrics``: Prometheus text exposition of the hub's metrics."""
    body = generate_latest(ctx.services.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


# --- devices -----------------------------------------------------------------------------------


async def create_device(ctx: Context) -> Response:
    """``POST /devices``: create an identity; SAS keys are in this answer only."""
    body = await ctx.body(CreateDeviceRequest)
    created = await ctx.services.registry.create_device(
        body.device_id, AuthKind(body.auth), certificates_pem=tuple(body.certificates_pem)
    )
    record = created.record
    await ctx.audit("device-create", record.device_id)
    hostname = ctx.services.config.hostname
    if created.primary_key is not None:
        cs = connection_string(hostname, record.device_id, key=created.primary_key)
    else:
        cs = connection_string(hostname, record.device_id)
    view = CreatedDeviceView(
        device=device_view(record, _connected_ids(ctx)),
        primary_key=created.primary_key,
        secondary_key=created.secondary_key,
        connection_string=cs,
    )
    return json_response(view, status=201)


async def list_devices(ctx: Context) -> Response:
    """``GET /devices``: one page of devices ordered by id."""
    after = _query(ctx, "after") or ""
    limit = _query_int(ctx, "limit", default=100, minimum=1, maximum=MAX_DEVICES_PER_PAGE)
    records = await ctx.services.registry.list_devices(after=after, limit=limit)
    connected = _connected_ids(ctx)
    # Storage never lists modules here; the filter keeps it so should a backend slip. Paging
    # follows the unfiltered page, so a filtered record cannot end the listing early.
    page = DeviceList(
        devices=[device_view(r, connected) for r in records if "/" not in r.device_id],
        next_after=records[-1].device_id if len(records) == limit else None,
    )
    return json_response(page)


async def show_device(ctx: Context) -> Response:
    """``GET /devices/{device_id}``."""
    record = await ctx.services.registry.get_device(ctx.path_param("device_id"))
    return json_response(device_view(record, _connected_ids(ctx)))


async def delete_device(ctx: Context) -> Response:
    """``DELETE /devices/{device_id}``: the registry drops its live connection."""
    device_id = ctx.path_param("device_id")
    await ctx.services.registry.delete_device(device_id)
    await ctx.audit("device-delete", device_id)
    return Response(status_code=204)


async def _set_state(ctx: Context, state: DeviceState) -> Response:
    device_id = ctx.path_param("device_id")
    record = await ctx.services.registry.set_state(device_id, state)
    action = "device-enable" if state is DeviceState.ENABLED else "device-disable"
    await ctx.audit(action, device_id)
    return json_response(device_view(record, _connected_ids(ctx)))


async def enable_device(ctx: Context) -> Response:
    """``POST /devices/{device_id}/enable``."""
    return await _set_state(ctx, DeviceState.ENABLED)


async def disable_device(ctx: Context) -> Response:
    """``POST /devices/{device_id}/disable``: the registry drops its live connection."""
    return await _set_state(ctx, DeviceState.DISABLED)


async def rotate_key(ctx: Context) -> Response:
    """``POST /devices/{device_id}[/modules/{module_id}]/keys/{slot}/rotate``.

    The other key keeps working; a live connection made with the rotated key is dropped.
    """
    identity = _identity(ctx)
    slot = _slot(ctx.path_param("slot"))
    key = await ctx.services.registry.rotate_key(identity, slot)
    # The new key is shown only once the record of its disclosure is durable.
    module = "module_id" in ctx.request.path_params
    await ctx.audit("module-rotate-key" if module else "device-rotate-key", f"{identity}/{slot}")
    device_id, _, module_id = identity.partition("/")
    cs = connection_string(
        ctx.services.config.hostname, device_id, module_id=module_id or None, key=key
    )
    return json_response(RotatedKeyView(key=key, connection_string=cs))


async def device_connection_string(ctx: Context) -> Response:
    """``GET /devices/{device_id}/connection-string``: discloses a key for SAS devices.

    Also ``GET /devices/{device_id}/modules/{module_id}/connection-string`` for a module.
    """
    registry = ctx.services.registry
    identity = _identity(ctx)
    device_id, module_id = split_identity(identity)
    slot = _slot(_query(ctx, "key"))
    gateway = _query(ctx, "gateway")
    record = await registry.get_device(identity)
    hostname = ctx.services.config.hostname
    if record.auth_kind is not AuthKind.SAS:
        cs = connection_string(hostname, device_id, module_id=module_id, gateway=gateway)
        return json_response(ConnectionStringView(connection_string=cs))
    keys = registry.unseal_keys(record)
    if len(keys) < 2:  # pragma: no cover - SAS devices always have two keys
        raise ValidationError(f"identity {identity!r} has no {slot} key")
    raw = keys[0] if slot == "primary" else keys[1]
    # Validate everything before the disclosure is recorded, so a refused request leaves no
    # record of a disclosure that did not happen.
    cs = connection_string(
        hostname,
        device_id,
        module_id=module_id,
        key=base64.b64encode(raw).decode("ascii"),
        gateway=gateway,
    )
    await ctx.audit("connection-string-disclose", f"{identity}/{slot}")
    return json_response(ConnectionStringView(connection_string=cs))


# --- modules -----------------------------------------------------------------------------------


async def create_module(ctx: Context) -> Response:
    """``POST /devices/{device_id}/modules``: SAS keys are in this answer only."""
    device_id = _identity(ctx)
    body = await ctx.body(CreateModuleRequest)
    created = await ctx.services.registry.create_module(
        device_id,
        body.module_id,
        auth_kind=AuthKind(body.auth),
        certificates_pem=tuple(body.certificates_pem),
    )
    record = created.record
    await ctx.audit("module-create", record.device_id)
    cs = connection_string(
        ctx.services.config.hostname,
        device_id,
        module_id=body.module_id,
        key=created.primary_key,
    )
    view = CreatedModuleView(
        module=module_view(record, _connected_ids(ctx)),
        primary_key=created.primary_key,
        secondary_key=created.secondary_key,
        connection_string=cs,
    )
    return json_response(view, status=201)


async def list_modules(ctx: Context) -> Response:
    """``GET /devices/{device_id}/modules``: every module of a device, ordered by id."""
    device_id = _identity(ctx)
    registry = ctx.services.registry
    records = await registry.list_modules(device_id)
    connected = _connected_ids(ctx)
    return json_response(ModuleList(modules=[module_view(r, connected) for r in records]))


async def show_module(ctx: Context) -> Response:
    """``GET /devices/{device_id}/modules/{module_id}``."""
    record = await ctx.services.registry.get_device(_identity(ctx))
    return json_response(module_view(record, _connected_ids(ctx)))


async def delete_module(ctx: Context) -> Response:
    """``DELETE /devices/{device_id}/modules/{module_id}``: its twin and queue go with it."""
    identity = _identity(ctx)
    await ctx.services.registry.delete_device(identity)
    await ctx.audit("module-delete", identity)
    return Response(status_code=204)


# --- twins -------------------------------------------------------------------------------------


async def show_twin(ctx: Context) -> Response:
    """``GET /devices/{device_id}[/modules/{module_id}]/twin``, with its version as ETag."""
    twin = await _twins(ctx).get(_identity(ctx))
    return json_response(_twin_view(twin), headers=_etag(twin))


async def patch_twin(ctx: Context) -> Response:
    """``PATCH /devices/{device_id}[/modules/{module_id}]/twin``: desired properties and tags.

    Conditional on ``If-Match: "<version>"`` or the body's ``version`` (412 when stale).
    """
    identity = _identity(ctx)
    body = await _free_form_body(ctx, TwinPatchRequest)
    if body.desired is None and body.tags is None:
        raise RequestError(400, "invalid-body", "a twin patch needs desired, tags or both")
    check_json_depth(body.desired, "desired")
    check_json_depth(body.tags, "tags")
    expected = _if_match(ctx, body.version)
    twin = await _twins(ctx).update(
        identity, desired=body.desired, tags=body.tags, if_version=expected
    )
    await ctx.audit("twin-update", identity)
    return json_response(_twin_view(twin), headers=_etag(twin))


async def query_twins(ctx: Context) -> Response:
    """``POST /twins/query``: one page of twins matching a filter, ordered by identity."""
    body = await ctx.body(TwinQueryRequest)
    twins = await _twins(ctx).query(body.where, after=body.after, limit=body.limit)
    page = TwinList(
        twins=[_twin_view(t) for t in twins],
        next_after=twins[-1].identity if len(twins) == body.limit else None,
    )
    return json_response(page)


# --- direct methods ----------------------------------------------------------------------------


async def invoke_method(ctx: Context) -> Response:
    """``POST /devices/{device_id}[/modules/{module_id}]/methods/{method_name}``.

    Waits for the device's answer: 404 ``device-unavailable`` when it is offline or does not
    listen for methods, 504 ``device-timeout`` when it does not answer in time, 502
    ``bad-device-response`` when its answer is not JSON or too large.
    """
    identity = _identity(ctx)
    method_name = ctx.path_param("method_name")
    validate_method_name(method_name)
    body = await _free_form_body(ctx, InvokeMethodRequest)
    check_json_depth(body.payload, "payload")
    methods = _methods(ctx)
    # Recorded before the call: once the request reaches the device it cannot be taken back.
    # The name and the timeout are checked first, so the record names a plausible request.
    await ctx.audit("method-invoke", f"{identity}/methods/{method_name}")
    result = await methods.invoke(
        identity, method_name, body.payload, timeout_seconds=body.timeout_seconds
    )
    return json_response(MethodResultView(status=result.status, payload=result.payload))


# --- cloud-to-device messages ------------------------------------------------------------------


async def _send_cloud_message(ctx: Context, identity: str, input_name: str | None) -> Response:
    body = await ctx.body(SendCloudMessageRequest)
    payload = _cloud_payload(body)
    message = await _c2d(ctx).send(
        identity,
        payload,
        properties=tuple(body.properties.items()),
        ttl_seconds=body.ttl_seconds,
        input_name=input_name,
        message_id=body.message_id,
        correlation_id=body.correlation_id,
        content_type=body.content_type,
        content_encoding=body.content_encoding,
    )
    target = identity if input_name is None else f"{identity}/inputs/{input_name}"
    await ctx.audit("c2d-send", target)
    return json_response(CloudMessageView(**_cloud_message_fields(message)), status=201)


async def send_cloud_message(ctx: Context) -> Response:
    """``POST /devices/{device_id}/messages/cloud``: queue a message for a device."""
    return await _send_cloud_message(ctx, _identity(ctx), None)


async def send_module_input(ctx: Context) -> Response:
    """``POST /devices/{device_id}/modules/{module_id}/inputs/{input_name}/messages``."""
    identity = _identity(ctx)
    return await _send_cloud_message(ctx, identity, ctx.path_param("input_name"))


async def list_cloud_messages(ctx: Context) -> Response:
    """``GET /devices/{device_id}[/modules/{module_id}]/messages/cloud``: the queue."""
    messages = await _c2d(ctx).list(_identity(ctx))
    return json_response(
        CloudMessageList(messages=[_queued_cloud_message_view(m) for m in messages])
    )


async def purge_cloud_messages(ctx: Context) -> Response:
    """``DELETE /devices/{device_id}[/modules/{module_id}]/messages/cloud``: empty the queue."""
    identity = _identity(ctx)
    purged = await _c2d(ctx).purge(identity)
    await ctx.audit("c2d-purge", identity)
    return json_response(PurgedView(purged=purged))


# --- certificate authorities -------------------------------------------------------------------


async def add_ca(ctx: Context) -> Response:
    """``POST /cas``: register a CA for ``x509-ca`` devices."""
    body = await ctx.body(AddCARequest)
    record = await ctx.services.registry.add_ca(body.pem)
    await ctx.audit("ca-add", record.fingerprint)
    return json_response(_ca_view(record), status=201)


async def list_cas(ctx: Context) -> Response:
    """``GET /cas``."""
    records = await ctx.services.registry.list_cas()
    return json_response(CAList(cas=[_ca_view(r) for r in records]))


async def remove_ca(ctx: Context) -> Response:
    """``DELETE /cas/{fingerprint}``: devices chaining to it can no longer connect."""
    fingerprint = ctx.path_param("fingerprint")
    await ctx.services.registry.remove_ca(fingerprint)
    await ctx.audit("ca-remove", fingerprint)
    return Response(status_code=204)


# --- messages and connections ------------------------------------------------------------------

_STREAMS = tuple(s.value for s in Stream)


async def list_messages(ctx: Context) -> Response:
    """``GET /messages``: committed messages after a sequence number."""
    device = _query_device(ctx)
    stream = _query_choice(ctx, "stream", _STREAMS)
    after = _query_int(ctx, "after", default=0, minimum=0, maximum=2**63 - 1)
    limit = _query_int(ctx, "limit", default=100, minimum=1, maximum=MAX_MESSAGES_PER_PAGE)
    messages = await ctx.services.log.query(
        device_id=device,
        stream=Stream(stream) if stream is not None else None,
        after_seq=after,
        limit=limit,
        since=_query_time(ctx, "since"),
        until=_query_time(ctx, "until"),
    )
    page = MessagePage(
        messages=[message_view(m) for m in messages],
        next_after=messages[-1].seq if messages else after,
    )
    return json_response(page)


async def tail_messages(ctx: Context) -> Response:
    """``GET /messages/tail``: Server-Sent Events, one per message committed from now on."""
    device = _query_device(ctx)
    stream = _query_choice(ctx, "stream", _STREAMS)
    if ctx.request.method == "HEAD":
        # A HEAD gets the headers of a tail without opening one (it would never end).
        return Response(media_type="text/event-stream")
    tails = ctx.state.tails
    tails.acquire()
    try:
        subscription = ctx.services.log.subscribe(
            device_id=device, stream=Stream(stream) if stream is not None else None
        )
    except BaseException:
        tails.release()
        raise
    return TailResponse(subscription, tails, heartbeat_seconds=ctx.state.tail_heartbeat_seconds)


async def list_connections(ctx: Context) -> Response:
    """``GET /connections``: live authenticated device connections of this process."""
    endpoint = ctx.services.endpoint
    infos = endpoint.connections() if endpoint is not None else []
    views = [
        ConnectionView(
            device_id=c.device_id,
            peer=c.peer,
            auth_kind=str(c.auth_kind),
            connected_at=c.connected_at,
            keep_alive_seconds=c.keep_alive_seconds,
        )
        for c in sorted(infos, key=lambda c: c.device_id)
    ]
    return json_response(ConnectionList(connections=views))


# --- the route table ---------------------------------------------------------------------------

_INT = {"type": "integer", "minimum": 0}
_TIME = {"type": "string", "description": "epoch seconds, or ISO 8601 with a UTC offset"}
_DEVICE_FILTER = QueryParam("device", "only messages of this device", {"type": "string"})
_STREAM_FILTER = QueryParam("stream", "only this stream", {"enum": list(_STREAMS)})
_NOT_FOUND = (404,)
_CONNECTION_STRING_QUERY = (
    QueryParam("gateway", "add GatewayHostName=HOST", {"type": "string"}),
    QueryParam("key", "which SAS key", {"enum": list(_KEY_SLOTS)}),
)
_BODY_ERRORS = (400, 404, 413, 415)
_MODULE = "/devices/{device_id}/modules/{module_id}"

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path="/healthz",
        operation_id="healthz",
        summary="Liveness check",
        permission=None,
        handler=healthz,
        response=HealthView,
    ),
    Operation(
        method="GET",
        path="/openapi.json",
        operation_id="openapi",
        summary="This OpenAPI 3.1 document",
        permission=None,
        handler=openapi,
    ),
    Operation(
        method="GET",
        path="/metrics",
        operation_id="metrics",
        summary="Prometheus metrics (text exposition format)",
        permission=Permission.METRICS_READ,
        handler=metrics,
        media_type="text/plain",
    ),
    Operation(
        method="POST",
        path="/devices",
        operation_id="createDevice",
        summary="Create a device; SAS keys are shown in this answer only",
        permission=Permission.DEVICES_WRITE,
        handler=create_device,
        request=CreateDeviceRequest,
        response=CreatedDeviceView,
        status=201,
        errors=(400, 409, 413, 415),
    ),
    Operation(
        method="GET",
        path="/devices",
        operation_id="listDevices",
        summary="List devices ordered by id",
        permission=Permission.DEVICES_READ,
        handler=list_devices,
        response=DeviceList,
        query=(
            QueryParam("after", "list devices whose id sorts after this one", {"type": "string"}),
            QueryParam("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 1000}),
        ),
        errors=(400,),
    ),
    Operation(
        method="GET",
        path="/devices/{device_id}",
        operation_id="showDevice",
        summary="Show a device (never its keys)",
        permission=Permission.DEVICES_READ,
        handler=show_device,
        response=DeviceView,
        errors=_NOT_FOUND,
    ),
    Operation(
        method="DELETE",
        path="/devices/{device_id}",
        operation_id="deleteDevice",
        summary="Delete a device and drop its live connection",
        permission=Permission.DEVICES_WRITE,
        handler=delete_device,
        status=204,
        errors=_NOT_FOUND,
    ),
    Operation(
        method="POST",
        path="/devices/{device_id}/enable",
        operation_id="enableDevice",
        summary="Allow a device to connect",
        permission=Permission.DEVICES_STATE,
        handler=enable_device,
        response=DeviceView,
        errors=_NOT_FOUND,
    ),
    Operation(
        method="POST",
        path="/devices/{device_id}/disable",
        operation_id="disableDevice",
        summary="Refuse a device and drop its live connection",
        permission=Permission.DEVICES_STATE,
        handler=disable_device,
        response=DeviceView,
        errors=_NOT_FOUND,
    ),
    Operation(
        method="POST",
        path="/devices/{device_id}/keys/{slot}/rotate",
        operation_id="rotateDeviceKey",
        summary="Regenerate the primary or secondary SAS key (the other keeps working)",
        permission=Permission.KEYS_DISCLOSE,
        handler=rotate_key,
        response=RotatedKeyView,
        errors=(400, 404),
    ),
    Operation(
        method="GET",
        path="/devices/{device_id}/connection-string",
        operation_id="deviceConnectionString",
        summary="Disclose a device connection string (recorded as a security event)",
        permission=Permission.KEYS_DISCLOSE,
        handler=device_connection_string,
        response=ConnectionStringView,
        query=_CONNECTION_STRING_QUERY,
        errors=(400, 404),
    ),
    Operation(
        method="POST",
        path="/devices/{device_id}/modules",
        operation_id="createModule",
        summary="Create a module identity of a device; SAS keys are shown in this answer only",
        permission=Permission.DEVICES_WRITE,
        handler=create_module,
        request=CreateModuleRequest,
        response=CreatedModuleView,
        status=201,
        errors=(400, 404, 409, 413, 415),
    ),
    Operation(
        method="GET",
        path="/devices/{device_id}/modules",
        operation_id="listModules",
        summary="List the module identities of a device",
        permission=Permission.DEVICES_READ,
        handler=list_modules,
        response=ModuleList,
        errors=(400, 404),
    ),
    Operation(
        method="GET",
        path=_MODULE,
        operation_id="showModule",
        summary="Show a module identity (never its keys)",
        permission=Permission.DEVICES_READ,
        handler=show_module,
        response=ModuleView,
        errors=(400, 404),
    ),
    Operation(
        method="DELETE",
        path=_MODULE,
        operation_id="deleteModule",
        summary="Delete a module identity, its twin and its queue; drop its live connection",
        permission=Permission.DEVICES_WRITE,
        handler=delete_module,
        status=204,
        errors=(400, 404),
    ),
    Operation(
        method="POST",
        path=_MODULE + "/keys/{slot}/rotate",
        operation_id="rotateModuleKey",
        summary="Regenerate a module's primary or secondary SAS key (the other keeps working)",
        permission=Permission.KEYS_DISCLOSE,
        handler=rotate_key,
        response=RotatedKeyView,
        errors=(400, 404),
    ),
    Operation(
        method="GET",
        path=_MODULE + "/connection-string",
        operation_id="moduleConnectionString",
        summary="Disclose a module connection string (recorded as a security event)",
        permission=Permission.KEYS_DISCLOSE,
        handler=device_connection_string,
        response=ConnectionStringView,
        query=_CONNECTION_STRING_QUERY,
        errors=(400, 404),
    ),
    Operation(
        method="GET",
        path="/devices/{device_id}/twin",
        operation_id="showDeviceTwin",
        summary="Show a device twin (tags, desired and reported properties); ETag = version",
        permission=Permission.TWINS_READ,
        handler=show_twin,
        response=TwinView,
        errors=(400, 404),
    ),
    Operation(
        method="PATCH",
        path="/devices/{device_id}/twin",
        operation_id="patchDeviceTwin",
        summary="Change desired properties and tags (If-Match or version: 412 when stale)",
        permission=Permission.TWINS_WRITE,
        handler=patch_twin,
        request=TwinPatchRequest,
        response=TwinView,
        errors=(*_BODY_ERRORS, 412),
    ),
    Operation(
        method="GET",
        path=_MODULE + "/twin",
        operation_id="showModuleTwin",
        summary="Show a module twin; ETag = version",
        permission=Permission.TWINS_READ,
        handler=show_twin,
        response=TwinView,
        errors=(400, 404),
    ),
    Operation(
        method="PATCH",
        path=_MODULE + "/twin",
        operation_id="patchModuleTwin",
        summary="Change a module's desired properties and tags (412 when stale)",
        permission=Permission.TWINS_WRITE,
        handler=patch_twin,
        request=TwinPatchRequest,
        response=TwinView,
        errors=(*_BODY_ERRORS, 412),
    ),
    Operation(
        method="POST",
        path="/twins/query",
        operation_id="queryTwins",
        summary=f"Twins matching a filter, ordered by identity (pages of up to "
        f"{MAX_TWINS_PER_PAGE})",
        permission=Permission.TWINS_READ,
        handler=query_twins,
        request=TwinQueryRequest,
        response=TwinList,
        errors=(400, 413, 415),
    ),
    Operation(
        method="POST",
        path="/devices/{device_id}/methods/{method_name}",
        operation_id="invokeDeviceMethod",
        summary="Invoke a direct method and wait for the device's answer (recorded first)",
        permission=Permission.METHODS_INVOKE,
        handler=invoke_method,
        request=InvokeMethodRequest,
        response=MethodResultView,
        errors=(*_BODY_ERRORS, 502, 504),
    ),
    Operation(
        method="POST",
        path=_MODULE + "/methods/{method_name}",
        operation_id="invokeModuleMethod",
        summary="Invoke a direct method on a module and wait for its answer (recorded first)",
        permission=Permission.METHODS_INVOKE,
        handler=invoke_method,
        request=InvokeMethodRequest,
        response=MethodResultView,
        errors=(*_BODY_ERRORS, 502, 504),
    ),
    Operation(
        method="POST",
        path="/devices/{device_id}/messages/cloud",
        operation_id="sendCloudMessage",
        summary="Queue a cloud-to-device message for a device",
        permission=Permission.C2D_SEND,
        handler=send_cloud_message,
        request=SendCloudMessageRequest,
        response=CloudMessageView,
        status=201,
        errors=_BODY_ERRORS,
    ),
    Operation(
        method="GET",
        path="/devices/{device_id}/messages/cloud",
        operation_id="listCloudMessages",
        summary="The cloud-to-device messages queued for a device",
        permission=Permission.MESSAGES_READ,
        handler=list_cloud_messages,
        response=CloudMessageList,
        errors=(400, 404),
    ),
    Operation(
        method="DELETE",
        path="/devices/{device_id}/messages/cloud",
        operation_id="purgeCloudMessages",
        summary="Drop every cloud-to-device message queued for a device",
        permission=Permission.C2D_SEND,
        handler=purge_cloud_messages,
        response=PurgedView,
        errors=(400, 404),
    ),
    Operation(
        method="POST",
        path=_MODULE + "/inputs/{input_name}/messages",
        operation_id="sendModuleInput",
        summary="Queue a message for one input of a module",
        permission=Permission.C2D_SEND,
        handler=send_module_input,
        request=SendCloudMessageRequest,
        response=CloudMessageView,
        status=201,
        errors=_BODY_ERRORS,
    ),
    Operation(
        method="GET",
        path=_MODULE + "/messages/cloud",
        operation_id="listModuleMessages",
        summary="The input messages queued for a module",
        permission=Permission.MESSAGES_READ,
        handler=list_cloud_messages,
        response=CloudMessageList,
        errors=(400, 404),
    ),
    Operation(
        method="DELETE",
        path=_MODULE + "/messages/cloud",
        operation_id="purgeModuleMessages",
        summary="Drop every input message queued for a module",
        permission=Permission.C2D_SEND,
        handler=purge_cloud_messages,
        response=PurgedView,
        errors=(400, 404),
    ),
    Operation(
        method="POST",
        path="/cas",
        operation_id="addCA",
        summary="Register a CA certificate for x509-ca devices",
        permission=Permission.CAS_MANAGE,
        handler=add_ca,
        request=AddCARequest,
        response=CAView,
        status=201,
        errors=(400, 409, 413, 415),
    ),
    Operation(
        method="GET",
        path="/cas",
        operation_id="listCAs",
        summary="List registered CA certificates",
        permission=Permission.CAS_READ,
        handler=list_cas,
        response=CAList,
    ),
    Operation(
        method="DELETE",
        path="/cas/{fingerprint}",
        operation_id="removeCA",
        summary="Unregister a CA certificate",
        permission=Permission.CAS_MANAGE,
        handler=remove_ca,
        status=204,
        errors=_NOT_FOUND,
    ),
    Operation(
        method="GET",
        path="/messages",
        operation_id="listMessages",
        summary="Committed messages after a sequence number",
        permission=Permission.MESSAGES_READ,
        handler=list_messages,
        response=MessagePage,
        query=(
            _DEVICE_FILTER,
            _STREAM_FILTER,
            QueryParam("after", "only messages with a larger sequence number", _INT),
            QueryParam(
                "limit",
                "page size",
                {"type": "integer", "minimum": 1, "maximum": MAX_MESSAGES_PER_PAGE},
            ),
            QueryParam("since", "enqueued at or after (epoch seconds or ISO 8601)", _TIME),
            QueryParam("until", "enqueued before (epoch seconds or ISO 8601)", _TIME),
        ),
        errors=(400,),
    ),
    Operation(
        method="GET",
        path="/messages/tail",
        operation_id="tailMessages",
        summary="Server-Sent Events: one event per message committed from now on",
        permission=Permission.MESSAGES_READ,
        handler=tail_messages,
        media_type="text/event-stream",
        query=(_DEVICE_FILTER, _STREAM_FILTER),
        errors=(400,),
    ),
    Operation(
        method="GET",
        path="/connections",
        operation_id="listConnections",
        summary="Live authenticated device connections",
        permission=Permission.DEVICES_READ,
        handler=list_connections,
        response=ConnectionList,
    ),
    # The audit log's routes live with their handlers (api/_audit.py).
    *AUDIT_OPERATIONS,
    # Login, operator accounts and API tokens (api/_access.py).
    *ACCESS_OPERATIONS,
    # Enrollments, claim tokens, registrations, issued certificates, the CRL
    # (api/_provisioning.py).
    *PROVISIONING_OPERATIONS,
    # Security alerts and the end of a quarantine (api/_monitor.py).
    *MONITOR_OPERATIONS,
    # The fleet audit (api/_fleet.py).
    *FLEET_OPERATIONS,
    # Device profiles, advisories, the vulnerable-device report (api/_posture.py).
    *POSTURE_OPERATIONS,
    *REPORT_OPERATIONS,
)
