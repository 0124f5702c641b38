"""Assembly of the operator API: the Starlette application built from the route table.

Request life cycle, for every route (:func:`_endpoint`):

1. the caller's address is checked against the authentication-failure window (too many
   failures from one address → 429 *before* any token is hashed or looked up);
2. for routes that declare a permission (all but the public ones), the bearer token is
   authenticated (401 + ``WWW-Authenticate: Bearer`` and a ``operator-auth-failed`` security
   event otherwise) and its roles must grant the route's permission (403 +
   ``operator-forbidden``); a session opened with a one-time or expired password may only
   change that password (403 "password change required");
3. query parameters the route does not declare are refused (400);
4. a route whose permission is not a read is recorded in the audit log before it runs (503 if
   that fails);
5. the handler runs; :class:`~ironhub.errors.IronhubError` subclasses are mapped to status
   codes in one place (:func:`~ironhub.api._http.problem_for`), and anything unexpected is
   logged and answered with a bare 500 (never a traceback).

A pure ASGI middleware adds the security headers to every answer, streaming ones included:
``Cache-Control: no-store`` (answers may contain keys), ``X-Content-Type-Options: nosniff``,
a ``Content-Security-Policy`` that allows nothing, ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from ironhub.access.roles import permissions_of, require
from ironhub.api._handlers import OPERATIONS
from ironhub.api._http import RequestError, error_response, problem_for
from ironhub.api._routes import (
    APIState,
    Context,
    Operation,
    is_read,
    record_security_event,
)
from ironhub.api._tail import TailRegistry
from ironhub.api.openapi import build_openapi
from ironhub.errors import (
    AuthenticationError,
    AuthorizationError,
    IronhubError,
    StorageError,
    ThrottledError,
)
from ironhub.hub.ratelimit import FailureWindow

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from ironhub.services import Services
    from ironhub.storage.interfaces import TokenRecord

__all__ = ["api_state", "close_streams", "create_app"]

Endpoint = Callable[["Request"], Awaitable["Response"]]

logger = logging.getLogger(__name__)

#: What a session opened with a one-time or expired password may call: changing it, and
#: ending the session.
_ALLOWED_BEFORE_ROTATION = frozenset({"rotatePassword", "logout"})

#: An API token is ``ihk_`` plus 43 base64url characters; anything far longer is not one, and
#: is refused before it is hashed.
_MAX_TOKEN_CHARS = 256

_SECURITY_HEADERS = (
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
)


class SecurityHeadersMiddleware:
    """Adds :data:`_SECURITY_HEADERS` to every HTTP answer (unless a handler set them)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward the request, decorating the response start message."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _peer(request: Request) -> tuple[str, str]:
    """``(host, "host:port")`` of the caller."""
    client = request.client
    if client is None:  # pragma: no cover - uvicorn always sets it for TCP
        return "unknown", "unknown"
    return client.host, f"{client.host}:{client.port}"


def _bearer_secret(request: Request) -> str:
    """The token of a single ``Authorization: Bearer`` header.

    Raises:
        AuthenticationError: the header is missing, repeated, of another scheme, or too long.
    """
    headers = request.headers.getlist("authorization")
    if not headers:
        raise AuthenticationError("missing-token")
    if len(headers) > 1:
        raise AuthenticationError("repeated-header")
    scheme, _, secret = headers[0].strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise AuthenticationError("malformed-header")
    if len(secret) > _MAX_TOKEN_CHARS:
        raise AuthenticationError("malformed-token")
    return secret


async def _record_quietly(
    services: Services, properties: tuple[tuple[str, str], ...], what: str
) -> None:
    """Record a security event on a refusal path; a storage failure must not turn it into 2xx.

    The caller is refused whatever happens here, so a failed commit is logged, not raised.
    """
    try:
        await record_security_event(services, properties)
    except StorageError:
        logger.exception("cannot record security event event=%s", what)


async def _record_forbidden(
    services: Services, op: Operation, record: TokenRecord, peer: str, exc: AuthorizationError
) -> None:
    """Log and record a refused authorisation (the route's permission, a grant, an account)."""
    roles = ",".join(record.roles) or "-"
    logger.warning(
        "operator-forbidden actor=%s roles=%s operation=%s peer=%s reason=%s",
        record.actor,
        roles,
        op.operation_id,
        peer,
        exc,
    )
    event = (
        ("event", "operator-forbidden"),
        ("actor", record.actor),
        ("actor_id", record.token_id),
        ("role", roles),
        ("operation", op.operation_id),
        ("reason", str(exc)[:200]),
        ("peer", peer),
    )
    await _record_quietly(services, event, "operator-forbidden")


async def _authorize(state: APIState, op: Operation, request: Request) -> TokenRecord:
    """Authenticate the caller's bearer token and check its roles against ``op.permission``.

    Raises:
        ThrottledError: too many recent authentication failures from this address.
        AuthenticationError: no valid token (recorded on the security stream).
        AuthorizationError: the token's roles do not grant the route's permission, or the
            session must change its password first (recorded).
        StorageError: the token store is unavailable (fail closed: 503).
    """
    services = state.services
    host, peer = _peer(request)
    now = services.clock.monotonic()
    state.failures.check(host, now)
    try:
        secret = _bearer_secret(request)
        record: TokenRecord = await services.tokens.authenticate(secret)
    except AuthenticationError as exc:
        state.failures.record(host, now)
        logger.warning(
            "operator-auth-failed reason=%s peer=%s path=%s", exc.reason, peer, request.url.path
        )
        event: tuple[tuple[str, str], ...] = (
            ("event", "operator-auth-failed"),
            ("reason", exc.reason),
            ("peer", peer),
            ("method", request.method),
            ("path", request.url.path[:256]),
        )
        await _record_quietly(services, event, "operator-auth-failed")
        try:
            state.failures.check(host, now)
        except ThrottledError:
            await _record_quietly(
                services,
                (("event", "operator-auth-throttled"), ("peer", peer)),
                "operator-auth-throttled",
            )
        raise
    try:
        if record.must_rotate and op.operation_id not in _ALLOWED_BEFORE_ROTATION:
            raise AuthorizationError("password change required")
        if op.permission is not None:  # always: public routes are not authorised
            require(permissions_of(record.roles), op.permission)
    except AuthorizationError as exc:
        await _record_forbidden(services, op, record, peer, exc)
        raise
    return record


def _check_query(request: Request, op: Operation) -> None:
    """Refuse query parameters the route does not declare (a typo must not widen a query).

    Raises:
        RequestError: 400 naming the first unknown parameter.
    """
    declared = {q.name for q in op.query}
    for name in request.query_params:
        if name not in declared:
            raise RequestError(400, "invalid-query", f"unknown query parameter {name[:64]!r}")


async def _record_request(state: APIState, op: Operation, actor: TokenRecord, peer: str) -> None:
    """Record a privileged request in the audit log *before* it runs.

    If the audit log cannot be written, the request fails with 503 and nothing happens: a
    privileged operation never runs unrecorded (issue 4, fail closed). The handler records the
    completed action as well (``Context.audit``).

    Raises:
        StorageError: the audit log is unwritable.
    """
    audit = state.services.audit
    if audit is not None:
        await audit.record(
            actor_kind="operator",
            actor=actor.actor,
            action="operator-request",
            target=op.operation_id,
            outcome="ok",
            source=peer,
            reason="-",
        )


def _dispatch(handlers: dict[str, Endpoint]) -> Endpoint:
    async def dispatch(request: Request) -> Response:
        # Starlette has checked the method already; HEAD is served as GET without a body.
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return dispatch


def _endpoint(state: APIState, op: Operation) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        _, peer = _peer(request)
        try:
            actor = None
            if op.permission is not None:
                actor = await _authorize(state, op, request)
            _check_query(request, op)
            if not is_read(op.permission) and actor is not None:
                await _record_request(state, op, actor, peer)
            try:
                return await op.handler(Context(request, state, op, actor, peer))
            except AuthorizationError as exc:
                # A refusal inside the handler (a grant beyond the caller's permissions, an
                # account that is not the caller's) is recorded like one at the door.
                if actor is not None:
                    await _record_forbidden(state.services, op, actor, peer, exc)
                raise
        except IronhubError as exc:
            problem = problem_for(exc)
            if problem.status >= 500:
                logger.exception(
                    "request failed operation=%s peer=%s status=%d error=%s",
                    op.operation_id,
                    peer,
                    problem.status,
                    type(exc).__name__,
                )
            return error_response(
                problem.status, problem.code, problem.message, headers=problem.headers
            )
        except Exception:  # the request boundary: log, answer 500, never a traceback out
            logger.exception("unexpected error operation=%s peer=%s", op.operation_id, peer)
            return error_response(500, "internal", "internal error")

    endpoint.__name__ = op.operation_id
    return endpoint


async def _http_exception(_request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (wrong method), as JSON error bodies."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not-found", 405: "method-not-allowed"}
    messages = {404: "no such route", 405: "method not allowed on this route"}
    status = exc.status_code
    return error_response(
        status,
        codes.get(status, "http-error"),
        messages.get(status, "request refused"),
        headers=exc.headers,
    )


def create_app(
    services: Services,
    *,
    tail_heartbeat_seconds: float = 15.0,
    body_timeout_seconds: float = 10.0,
) -> Starlette:
    """The operator API application for ``services``.

    Args:
        services: the hub's running services.
        tail_heartbeat_seconds: idle time after which a live tail sends a heartbeat comment.
        body_timeout_seconds: time allowed for a request body to arrive completely.

    Returns:
        A Starlette application (no lifespan of its own: :mod:`ironhub.server` owns start-up
        and shutdown, and calls :func:`close_streams` before stopping the HTTP server).

    Raises:
        TypeError: a declared schema cannot be described in OpenAPI (a bug in the table).
    """
    config = services.config
    state = APIState(
        services=services,
        failures=FailureWindow(config.limits.auth_failures_per_source_per_minute),
        tails=TailRegistry(config.api.max_tail_clients, services.metrics.live_tails),
        tail_heartbeat_seconds=tail_heartbeat_seconds,
        body_timeout_seconds=body_timeout_seconds,
        operations=OPERATIONS,
        openapi=msgspec.json.encode(build_openapi(OPERATIONS)),
    )
    # One Starlette route per path, dispatching on the method, so that a wrong method gets a
    # 405 whose ``Allow`` header lists every method of the path.
    by_path: dict[str, dict[str, Endpoint]] = {}
    for op in OPERATIONS:
        by_path.setdefault(op.path, {})[op.method] = _endpoint(state, op)
    routes = [
        Route(path, _dispatch(handlers), methods=list(handlers), name=path)
        for path, handlers in by_path.items()
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeadersMiddleware)],
        exception_handlers={HTTPException: _http_exception},
    )
    app.state.ironhub_api = state
    return app


def api_state(app: Starlette) -> APIState:
    """The :class:`APIState` of an application made by :func:`create_app`.

    Raises:
        TypeError: ``app`` was not made by :func:`create_app`.
    """
    state = getattr(app.state, "ironhub_api", None)
    if not isinstance(state, APIState):
        raise TypeError("not an ironhub operator API application")
    return state


def close_streams(app: Starlette) -> None:
    """End every live tail of ``app`` and refuse new ones; call before stopping uvicorn.

    Uvicorn waits for open responses before it shuts down, and an SSE tail never ends on its
    own, so the server calls this first.

    Raises:
        TypeError: ``app`` was not made by :func:`create_app`.
    """
    api_state(app).tails.close_all()
