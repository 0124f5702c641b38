"""The route table's vocabulary: who may call a route, what it takes, what it answers.

Every route of the API is one :class:`Operation` in a declared table. The application is built
from that table only, and the same table produces the OpenAPI document, so a route cannot
exist without declaring the :class:`~ironhub.access.roles.Permission` it needs (``None`` only
for the public routes; a test checks that the served routes and the table agree).
Authentication and authorisation are applied by the table, not by handlers: a handler can
forget nothing.

A credential's roles (``TokenRecord.roles``) grant permissions through
:func:`~ironhub.access.roles.permissions_of`; an unknown role grants nothing (fail closed).
Permissions ending in ``:read`` are reads (:func:`is_read`); every other route is privileged and
is recorded in the audit log before it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ironhub.api._http import RequestError, decode_json, read_body, require_json_media_type
from ironhub.storage.interfaces import LogEntry, Stream

if TYPE_CHECKING:
    import msgspec
    from starlette.requests import Request
    from starlette.responses import Response

    from ironhub.access.roles import Permission
    from ironhub.api._tail import TailRegistry
    from ironhub.hub.ratelimit import FailureWindow
    from ironhub.services import Services
    from ironhub.storage.interfaces import TokenRecord

__all__ = [
    "APIState",
    "Context",
    "Handler",
    "Operation",
    "QueryParam",
    "is_read",
    "record_security_event",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def is_read(permission: Permission | None) -> bool:
    """Whether a route needing ``permission`` only reads (public routes count as reads).

    Reads are the permissions named ``*:read``; every other route changes state, discloses a
    secret or exports data, and is recorded in the audit log before it runs.
    """
    return permission is None or permission.value.endswith(":read")


Handler = Callable[["Context"], Awaitable["Response"]]


@dataclass(frozen=True, slots=True)
class QueryParam:
    """A query parameter, described for the OpenAPI document."""

    name: str
    description: str
    schema: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """One route of the API.

    Attributes:
        method: the HTTP method (``GET``, ``POST``, ``DELETE``).
        path: the Starlette path template, ``{name}`` for path parameters.
        operation_id: the OpenAPI ``operationId``.
        summary: one line for the OpenAPI document.
        permission: what the caller needs, ``None`` for a public route (no token);
            deliberately without a default.
        handler: the coroutine that answers.
        request: the msgspec type of the JSON body, if the route takes one.
        response: the msgspec type of the JSON answer, if any.
        status: the status code of a successful answer.
        media_type: the media type of a successful answer.
        query: the query parameters the route understands.
        errors: the error statuses the route can answer with (documented in OpenAPI).
    """

    method: str
    path: str
    operation_id: str
    summary: str
    permission: Permission | None
    handler: Handler
    request: type[msgspec.Struct] | None = None
    response: type[msgspec.Struct] | None = None
    status: int = 200
    media_type: str = "application/json"
    query: tuple[QueryParam, ...] = ()
    errors: tuple[int, ...] = ()


@dataclass(slots=True)
class APIState:
    """The per-application state shared by every request."""

    services: Services
    failures: FailureWindow
    tails: TailRegistry
    tail_heartbeat_seconds: float
    body_timeout_seconds: float
    operations: tuple[Operation, ...] = ()
    openapi: bytes = b""


async def record_security_event(
    services: Services, properties: tuple[tuple[str, str], ...], *, device_id: str | None = None
) -> int:
    """Record an operator event in the audit log and on the security stream, durably.

    The audit log (hash-chained, signed checkpoints) is written first: an action is never
    acknowledged before its audit record is durable (issue 4). The security stream keeps the
    same event for live tails and consumers.

    Returns:
        The sequence number of the security-stream record.

    Raises:
        StorageError: either record could not be committed (the caller fails closed).
    """
    if services.audit is not None:
        props = dict(properties)
        event = props.get("event", "operator-event")
        await services.audit.record(
            actor_kind="operator",
            actor=props.get("actor", "-"),
            action=props.get("action", event),
            target=props.get("target", props.get("operation", props.get("path", "-"))),
            outcome="ok" if event == "operator-action" else "refused",
            source=props.get("peer", "-"),
            reason=props.get("reason", props.get("role", "-")),
        )
    entry = LogEntry(
        stream=Stream.SECURITY,
        device_id=device_id,
        enqueued_at=services.clock.time(),
        payload=b"",
        properties=properties,
    )
    seq: int = await services.log.append(entry)
    return seq


@dataclass(slots=True)
class Context:
    """What a handler knows about the request it answers."""

    request: Request
    state: APIState
    operation: Operation
    actor: TokenRecord | None
    peer: str

    @property
    def services(self) -> Services:
        """The hub's services."""
        return self.state.services

    def query(self, name: str) -> str | None:
        """The query parameter ``name``, or ``None``.

        Raises:
            RequestError: 400 when it is repeated (two readers could pick different ones).
        """
        values = self.request.query_params.getlist(name)
        if len(values) > 1:
            raise RequestError(400, "invalid-query", f"query parameter {name!r} is repeated")
        return values[0] if values else None

    def query_int(
        self, name: str, *, default: int | None = None, minimum: int, maximum: int
    ) -> int:
        """The integer query parameter ``name`` (``default`` when absent; required if None).

        Raises:
            RequestError: 400 when missing (and required), not a decimal integer, or out of
                ``minimum..maximum``.
        """
        text = self.query(name)
        if text is None:
            if default is None:
                raise RequestError(400, "invalid-query", f"query parameter {name!r} is required")
            return default
        if not text.isascii() or not text.isdigit() or len(text) > 19:
            raise RequestError(400, "invalid-query", f"query parameter {name!r} must be an integer")
        value = int(text)
        if not minimum <= value <= maximum:
            raise RequestError(
                400, "invalid-query", f"query parameter {name!r} must be in {minimum}..{maximum}"
            )
        return value

    def path_param(self, name: str) -> str:
        """The path parameter ``name`` (routing guarantees it exists).

        Raises:
            KeyError: the route has no such parameter (a bug in the table).
        """
        value: str = self.request.path_params[name]
        return value

    async def body(self, kind: type[T]) -> T:
        """Read and strictly decode the JSON body as ``kind``.

        Raises:
            RequestError: 400, 408, 413 or 415 (see :mod:`ironhub.api._http`).
        """
        if kind is not self.operation.request:  # pragma: no cover - a bug in the table
            msg = f"{self.operation.operation_id} declares {self.operation.request}, not {kind}"
            raise TypeError(msg)
        require_json_media_type(self.request)
        config = self.services.config.api
        raw = await read_body(
            self.request,
            max_bytes=config.max_body_bytes,
            timeout_seconds=self.state.body_timeout_seconds,
        )
        return decode_json(raw, kind)

    async def audit(self, action: str, target: str) -> None:
        """Record an operator action on the security stream, durably, before answering.

        Handlers that disclose a key call this *before* putting the key in the answer, so a
        key is never shown without a committed record of who saw it.

        Raises:
            StorageError: the record could not be committed (the caller answers 503).
        """
        actor = self.actor
        properties = (
            ("event", "operator-action"),
            ("action", action),
            ("target", target),
            ("actor", actor.actor if actor else "-"),
            ("actor_id", actor.token_id if actor else "-"),
            ("peer", self.peer),
        )
        seq = await record_security_event(self.services, properties)
        logger.info(
            "operator-action action=%s target=%s actor=%s peer=%s seq=%d",
            action,
            target,
            actor.actor if actor else "-",
            self.peer,
            seq,
        )
