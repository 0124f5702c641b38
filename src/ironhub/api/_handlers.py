"""The handlers of the operator API and the declared route table, :data:`OPERATIONS`.

Handlers receive a :class:`~ironhub.api._routes.Context` whose caller is already
authenticated and authorised for the route's :class:`~ironhub.api._routes.Access`, and whose
query parameters are known to be declared. They translate between the wire schemas
(:mod:`ironhub.api.schemas`) and the services; domain errors propagate and are mapped to
status codes in one place (:func:`ironhub.api._http.problem_for`).

Every handler that changes state or discloses a key records an ``operator-action`` event on
the security stream (:meth:`Context.audit`) and waits for its commit before answering.
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from ironhub.api._http import RequestError, json_response
from ironhub.api._routes import Access, Operation, QueryParam
from ironhub.api._tail import TailResponse, message_view
from ironhub.api.schemas import (
    MAX_DEVICE_ID_CHARS,
    AddCARequest,
    CAList,
    CAView,
    ConnectionList,
    ConnectionStringView,
    ConnectionView,
    CreatedDeviceView,
    CreateDeviceRequest,
    DeviceList,
    DeviceView,
    HealthView,
    MessagePage,
    RotatedKeyView,
)
from ironhub.errors import ValidationError
from ironhub.storage.interfaces import AuthKind, DeviceState, Stream

if TYPE_CHECKING:
    from ironhub.api._routes import Context
    from ironhub.storage.interfaces import CARecord, DeviceRecord

__all__ = ["OPERATIONS", "connection_string", "device_view"]

#: ``GET /messages`` answers at most this many messages per page.
MAX_MESSAGES_PER_PAGE = 1000
MAX_DEVICES_PER_PAGE = 1000
_KEY_SLOTS = ("primary", "secondary")
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
    key: str | None = None,
    gateway: str | None = None,
) -> str:
    """An Azure-style device connection string (azure-iot-mqtt.md §2.4).

    With ``key`` it is a SAS connection string (``SharedAccessKey=``); without, the X.509 form
    (``x509=true``). ``GatewayHostName`` makes the SDK dial that host instead of ``HostName``
    while still signing for ``HostName``.

    Raises:
        ValidationError: ``gateway`` is not a host name or IPv4 address.
    """
    parts = [f"HostName={hostname}", f"DeviceId={device_id}"]
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


def _ca_view(record: CARecord) -> CAView:
    return CAView(
        fingerprint=record.fingerprint,
        subject=record.subject,
        created_at=record.created_at,
        pem=record.pem,
    )


def _query(ctx: Context, name: str) -> str | None:
    values = ctx.request.query_params.getlist(name)
    if len(values) > 1:
        raise RequestError(400, "invalid-query", f"query parameter {name!r} is repeated")
    return values[0] if values else None


def _query_int(ctx: Context, name: str, *, default: int, minimum: int, maximum: int) -> int:
    text = _query(ctx, name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise RequestError(400, "invalid-query", f"query parameter {name!r} must be an integer")
    value = int(text)
    if not minimum <= value <= maximum:
        raise RequestError(
            400, "invalid-query", f"query parameter {name!r} must be in {minimum}..{maximum}"
        )
    return value


def _query_choice(ctx: Context, name: str, choices: tuple[str, ...]) -> str | None:
    text = _query(ctx, name)
    if text is not None and text not in choices:
        raise RequestError(
            400, "invalid-query", f"query parameter {name!r} must be one of {', '.join(choices)}"
        )
    return text


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
    page = DeviceList(
        devices=[device_view(r, connected) for r in records],
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
    """``POST /devices/{device_id}/keys/{slot}/rotate``: the other key keeps working."""
    device_id = ctx.path_param("device_id")
    slot = _slot(ctx.path_param("slot"))
    key = await ctx.services.registry.rotate_key(device_id, slot)
    # The new key is shown only once the record of its disclosure is durable.
    await ctx.audit("device-rotate-key", f"{device_id}/{slot}")
    cs = connection_string(ctx.services.config.hostname, device_id, key=key)
    return json_response(RotatedKeyView(key=key, connection_string=cs))


async def device_connection_string(ctx: Context) -> Response:
    """``GET /devices/{device_id}/connection-string``: discloses a key for SAS devices."""
    registry = ctx.services.registry
    device_id = ctx.path_param("device_id")
    slot = _slot(_query(ctx, "key"))
    gateway = _query(ctx, "gateway")
    record = await registry.get_device(device_id)
    hostname = ctx.services.config.hostname
    if record.auth_kind is not AuthKind.SAS:
        cs = connection_string(hostname, device_id, gateway=gateway)
        return json_response(ConnectionStringView(connection_string=cs))
    keys = registry.unseal_keys(record)
    if len(keys) < 2:  # pragma: no cover - SAS devices always have two keys
        raise ValidationError(f"device {device_id!r} has no {slot} key")
    raw = keys[0] if slot == "primary" else keys[1]
    # Validate everything before the disclosure is recorded, so a refused request leaves no
    # record of a disclosure that did not happen.
    cs = connection_string(
        hostname, device_id, key=base64.b64encode(raw).decode("ascii"), gateway=gateway
    )
    await ctx.audit("connection-string-disclose", f"{device_id}/{slot}")
    return json_response(ConnectionStringView(connection_string=cs))


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
_DEVICE_FILTER = QueryParam("device", "only messages of this device", {"type": "string"})
_STREAM_FILTER = QueryParam("stream", "only this stream", {"enum": list(_STREAMS)})
_NOT_FOUND = (404,)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path="/healthz",
        operation_id="healthz",
        summary="Liveness check",
        access=Access.PUBLIC,
        handler=healthz,
        response=HealthView,
    ),
    Operation(
        method="GET",
        path="/openapi.json",
        operation_id="openapi",
        summary="This OpenAPI 3.1 document",
        access=Access.PUBLIC,
        handler=openapi,
    ),
    Operation(
        method="GET",
        path="/metrics",
        operation_id="metrics",
        summary="Prometheus metrics (text exposition format)",
        access=Access.READ,
        handler=metrics,
        media_type="text/plain",
    ),
    Operation(
        method="POST",
        path="/devices",
        operation_id="createDevice",
        summary="Create a device; SAS keys are shown in this answer only",
        access=Access.ADMIN,
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
        access=Access.READ,
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
        access=Access.READ,
        handler=show_device,
        response=DeviceView,
        errors=_NOT_FOUND,
    ),
    Operation(
        method="DELETE",
        path="/devices/{device_id}",
        operation_id="deleteDevice",
        summary="Delete a device and drop its live connection",
        access=Access.ADMIN,
        handler=delete_device,
        status=204,
        errors=_NOT_FOUND,
    ),
    Operation(
        method="POST",
        path="/devices/{device_id}/enable",
        operation_id="enableDevice",
        summary="Allow a device to connect",
        access=Access.ADMIN,
        handler=enable_device,
        response=DeviceView,
        errors=_NOT_FOUND,
    ),
    Operation(
        method="POST",
        path="/devices/{device_id}/disable",
        operation_id="disableDevice",
        summary="Refuse a device and drop its live connection",
        access=Access.ADMIN,
        handler=disable_device,
        response=DeviceView,
        errors=_NOT_FOUND,
    ),
    Operation(
        method="POST",
        path="/devices/{device_id}/keys/{slot}/rotate",
        operation_id="rotateDeviceKey",
        summary="Regenerate the primary or secondary SAS key (the other keeps working)",
        access=Access.ADMIN,
        handler=rotate_key,
        response=RotatedKeyView,
        errors=(400, 404),
    ),
    Operation(
        method="GET",
        path="/devices/{device_id}/connection-string",
        operation_id="deviceConnectionString",
        summary="Disclose a device connection string (recorded as a security event)",
        access=Access.ADMIN,
        handler=device_connection_string,
        response=ConnectionStringView,
        query=(
            QueryParam("gateway", "add GatewayHostName=HOST", {"type": "string"}),
            QueryParam("key", "which SAS key", {"enum": list(_KEY_SLOTS)}),
        ),
        errors=(400, 404),
    ),
    Operation(
        method="POST",
        path="/cas",
        operation_id="addCA",
        summary="Register a CA certificate for x509-ca devices",
        access=Access.ADMIN,
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
        access=Access.READ,
        handler=list_cas,
        response=CAList,
    ),
    Operation(
        method="DELETE",
        path="/cas/{fingerprint}",
        operation_id="removeCA",
        summary="Unregister a CA certificate",
        access=Access.ADMIN,
        handler=remove_ca,
        status=204,
        errors=_NOT_FOUND,
    ),
    Operation(
        method="GET",
        path="/messages",
        operation_id="listMessages",
        summary="Committed messages after a sequence number",
        access=Access.READ,
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
        ),
        errors=(400,),
    ),
    Operation(
        method="GET",
        path="/messages/tail",
        operation_id="tailMessages",
        summary="Server-Sent Events: one event per message committed from now on",
        access=Access.READ,
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
        access=Access.READ,
        handler=list_connections,
        response=ConnectionList,
    ),
)
