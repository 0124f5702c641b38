"""The OpenAPI 3.1 document of the operator API, generated from the route table.

Schemas come from the msgspec types themselves (:func:`msgspec.json.schema_components`), paths
and security requirements from the declared :class:`~ironhub.api._routes.Operation` table, so
the document describes exactly what is served: a route without a declaration cannot exist, and
a declaration without a schema cannot be described.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec

from ironhub import __version__
from ironhub.api.schemas import ErrorBody, MessageView, TailLagged

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ironhub.api._routes import Operation

__all__ = ["build_openapi"]

_REF = "#/components/schemas/{name}"
_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECURITY_SCHEME = "bearerAuth"
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No content",
    400: "Malformed request: bad JSON, unknown field, wrong type, invalid query",
    401: "Missing, malformed, unknown, expired or revoked bearer token",
    403: "The token's role does not grant this route",
    404: "No such object",
    408: "The request body did not arrive in time",
    409: "The object exists already, or changed meanwhile",
    412: "The twin's version is not the one given by If-Match or the body's version",
    413: "The request body is larger than api.max_body_bytes",
    415: "The request body is not application/json",
    429: (
        "Too many failed authentications from this address, too many live tails, a full "
        "cloud-to-device queue or another rate limit (see Retry-After)"
    ),
    502: "The device answered the direct method with malformed JSON or too much of it",
    503: "The storage backend is unavailable; nothing was changed",
    504: "The device did not answer the direct method within its timeout",
}


def _ref(kind: type[Any]) -> dict[str, str]:
    return {"$ref": _REF.format(name=kind.__name__)}


def _error(status: int) -> dict[str, Any]:
    return {
        "description": _STATUS_TEXT.get(status, "Error"),
        "content": {"application/json": {"schema": _ref(ErrorBody)}},
    }


def _success(op: Operation) -> dict[str, Any]:
    description = _STATUS_TEXT.get(op.status, "OK")
    if op.status == 204:
        return {"description": description}
    if op.response is not None:
        schema: dict[str, Any] = _ref(op.response)
    elif op.media_type == "text/event-stream":
        description = (
            "An event stream: one event per committed message (`id:` its sequence number, "
            "`data:` a MessageView as JSON), `: heartbeat` comments, and a final "
            "`event: lagged` (data: TailLagged) if the reader fell behind"
        )
        schema = {"type": "string"}
    elif op.operation_id == "openapi":
        schema = {"type": "object"}
    else:
        schema = {"type": "string"}
    return {"description": description, "content": {op.media_type: {"schema": schema}}}


def _operation(op: Operation) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(op.path)
    ]
    parameters += [
        {
            "name": q.name,
            "in": "query",
            "required": False,
            "description": q.description,
            "schema": dict(q.schema),
        }
        for q in op.query
    ]
    responses: dict[str, Any] = {str(op.status): _success(op)}
    statuses = set(op.errors)
    if op.query:
        statuses.add(400)
    if op.permission is not None:
        statuses |= {401, 403, 429, 503}
    for status in sorted(statuses):
        responses[str(status)] = _error(status)
    document: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "security": [] if op.permission is None else [{_SECURITY_SCHEME: []}],
        "x-ironhub-permission": None if op.permission is None else op.permission.value,
        "responses": responses,
    }
    if parameters:
        document["parameters"] = parameters
    if op.request is not None:
        document["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(op.request)}},
        }
    return document


def build_openapi(operations: Iterable[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``operations``.

    Raises:
        TypeError: a declared request or response type cannot be described by msgspec.
    """
    ops = tuple(operations)
    types: list[type[Any]] = [ErrorBody, MessageView, TailLagged]
    for op in ops:
        types += [t for t in (op.request, op.response) if t is not None and t not in types]
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    # Named from the table, so the sentence cannot fall behind a new public route.
    public = ", ".join(sorted({op.path for op in ops if op.permission is None}))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ironhub operator API",
            "version": __version__,
            "description": (
                "Operator API of an ironhub IoT hub. Every route needs `Authorization: "
                f"Bearer <token>` except the public ones ({public}). Errors always have the "
                'body {"error": {"code": ..., "message": ...}}.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                _SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An operator API token (ihk_...), see `ironhub init`",
                }
            },
        },
    }
