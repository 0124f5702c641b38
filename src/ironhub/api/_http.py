"""HTTP plumbing of the operator API: bounded body reading, strict JSON decoding, error bodies.

Everything a request can get wrong before a handler runs is turned into an
:class:`RequestError` here, and every error the API answers with has the same body::

    {"error": {"code": "not-found", "message": "no device 'dev9'"}}

Error messages never contain a secret: token text never reaches this module, and decoder
messages that would echo a value from the body have the value replaced (an operator who
pastes a key into the wrong field must not see it reflected into logs or proxies).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from starlette.responses import Response

from ironhub.api.schemas import ErrorBody, ErrorDetail
from ironhub.errors import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    DeviceResponseError,
    DeviceUnavailableError,
    IronhubError,
    NotFoundError,
    PreconditionFailedError,
    RegistryError,
    RequestTimeoutError,
    SealingError,
    StorageError,
    ThrottledError,
    TrustError,
    ValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request

__all__ = [
    "JSON_MEDIA_TYPE",
    "MAX_JSON_DEPTH",
    "RequestError",
    "check_json_depth",
    "decode_json",
    "error_response",
    "json_response",
    "problem_for",
    "read_body",
    "require_json_media_type",
    "too_deep",
]

T = TypeVar("T")

JSON_MEDIA_TYPE = "application/json"
_MAX_MESSAGE_CHARS = 300
#: Free-form JSON members (twin patches, method payloads, initial twins) nest at most this
#: deep. The twin service applies Azure's tighter twin rule (10 levels); this bound protects the
#: decoder and every later walk of the value from recursion, for payloads too.
MAX_JSON_DEPTH = 32
#: Values that msgspec quotes in its messages (``Invalid enum value 'x'``) are replaced.
_QUOTED = re.compile(r"'[^']*'")


class RequestError(IronhubError):
    """A request the API refuses at the HTTP level (size, media type, malformed body).

    Attributes:
        status: the HTTP status code to answer with.
        code: the machine-readable error code of the body.
        headers: extra response headers (``Retry-After``, ``Allow``, ...).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def json_response(
    value: Any,  # noqa: ANN401 - any msgspec-encodable value
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Encode ``value`` with msgspec into a JSON response.

    Raises:
        TypeError: ``value`` is not encodable (a bug in a handler).
    """
    return Response(
        msgspec.json.encode(value),
        status_code=status,
        media_type=JSON_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def error_response(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> Response:
    """The JSON error body for ``status``.

    Raises:
        TypeError: never in practice (the body is built from strings).
    """
    body = ErrorBody(error=ErrorDetail(code=code, message=message[:_MAX_MESSAGE_CHARS]))
    return json_response(body, status=status, headers=headers)


_AUTHENTICATION_PROBLEM = RequestError(
    401,
    "unauthorized",
    "a valid bearer token is required (missing, malformed, unknown, expired or revoked)",
    headers={"WWW-Authenticate": 'Bearer realm="ironhub", error="invalid_token"'},
)

#: ``(exception type, status, code, fixed message or None to use the exception's)``, most
#: specific first. Fixed messages replace texts that could name paths or internals.
_MAPPING: tuple[tuple[type[IronhubError], int, str, str | None], ...] = (
    (AuthorizationError, 403, "forbidden", None),
    (NotFoundError, 404, "not-found", None),
    (DeviceUnavailableError, 404, "device-unavailable", None),
    (RequestTimeoutError, 504, "device-timeout", None),
    (DeviceResponseError, 502, "bad-device-response", None),
    (PreconditionFailedError, 412, "precondition-failed", None),
    (ConflictError, 409, "conflict", None),
    (ValidationError, 400, "invalid", None),
    (TrustError, 400, "invalid", None),
    (RegistryError, 400, "refused", None),
    (
        StorageError,
        503,
        "storage-unavailable",
        "the storage backend is unavailable; try again later",
    ),
    (SealingError, 500, "sealing-failed", "sealed key material could not be opened"),
)


def problem_for(exc: IronhubError) -> RequestError:
    """Map an ironhub exception to the HTTP answer it deserves.

    The mapping is the API's contract (docs/adr): ``NotFoundError`` 404, ``ConflictError`` 409,
    ``ValidationError`` and ``TrustError`` 400, ``AuthenticationError`` 401 (with
    ``WWW-Authenticate: Bearer``), ``AuthorizationError`` 403, ``ThrottledError`` 429 (with
    ``Retry-After``), ``StorageError`` 503, anything else 500. Messages of storage and
    sealing failures are generic: they could name paths or internals.

    Raises:
        TypeError: never; the signature requires an :class:`IronhubError`.
    """
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, AuthenticationError):
        # RFC 6750 §3: the same generic answer whatever the reason, so that a caller cannot
        # tell a revoked token from a forged one; the reason goes to the security stream.
        return _AUTHENTICATION_PROBLEM
    if isinstance(exc, ThrottledError):
        retry = max(1, math.ceil(exc.retry_after_seconds))
        return RequestError(429, "throttled", str(exc), headers={"Retry-After": str(retry)})
    for kind, status, code, fixed in _MAPPING:
        if isinstance(exc, kind):
            headers = {"Retry-After": "1"} if status == 503 else None
            return RequestError(status, code, fixed or str(exc), headers=headers)
    return RequestError(500, "internal", "internal error")


async def read_body(request: Request, *, max_bytes: int, timeout_seconds: float) -> bytes:
    """Read the request body incrementally, stopping as soon as it exceeds ``max_bytes``.

    A declared ``Content-Length`` above the cap is refused before anything is read; a
    chunked body is counted as it arrives, so memory stays bounded by the cap either way.

    Raises:
        RequestError: 413 when the body is too large, 400 for a malformed ``Content-Length``,
            408 when the body does not arrive within ``timeout_seconds`` (slow-body attack).
    """
    declared = request.headers.getlist("content-length")
    if declared:
        if len(set(declared)) != 1 or not declared[0].isdigit():
            raise RequestError(400, "bad-request", "malformed Content-Length header")
        if int(declared[0]) > max_bytes:
            raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(max_bytes)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(
            408, "request-timeout", "the request body did not arrive in time"
        ) from None
    return b"".join(chunks)


def _too_large(max_bytes: int) -> RequestError:
    return RequestError(
        413, "body-too-large", f"the request body exceeds the limit of {max_bytes} bytes"
    )


def require_json_media_type(request: Request) -> None:
    """Refuse bodies that do not declare ``application/json``.

    Requiring the JSON media type also means a cross-site HTML form can never reach a
    state-changing route (forms cannot send it without a CORS preflight).

    Raises:
        RequestError: 415 for any other (or a missing) ``Content-Type``.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        raise RequestError(
            415, "unsupported-media-type", "the request body must be application/json"
        )


def decode_json(body: bytes, kind: type[T]) -> T:
    """Decode ``body`` strictly into ``kind``.

    Strict means: valid UTF-8, one JSON value and nothing after it, the exact field names and
    types of the schema (unknown fields are refused) and no duplicate object keys. msgspec on
    its own keeps the last of duplicate keys; two parsers that disagree about which one wins
    are a classic smuggling vector (a proxy checks the first ``device_id``, we act on the
    second), so duplicates are refused outright.

    Raises:
        RequestError: 400 with code ``invalid-utf8``, ``malformed-json``, ``invalid-body`` or
            ``duplicate-key``.
    """
    try:
        value = msgspec.json.decode(body, type=kind)
    except UnicodeDecodeError:
        raise RequestError(400, "invalid-utf8", "the request body is not valid UTF-8") from None
    except msgspec.ValidationError as exc:
        raise RequestError(400, "invalid-body", _QUOTED.sub("'…'", str(exc))) from None
    except msgspec.DecodeError as exc:
        raise RequestError(400, "malformed-json", f"the request body is not JSON: {exc}") from None
    except RecursionError:
        # Free-form members (twin patches, method payloads) can nest; a nesting bomb must
        # be a 400, not a 500.
        raise _too_deep() from None
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicate_keys)
    except RecursionError:  # pragma: no cover - msgspec's limit is the lower one
        raise _too_deep() from None
    except ValueError:  # pragma: no cover - msgspec accepted it; the two parsers disagree
        raise RequestError(400, "malformed-json", "the request body is not JSON") from None
    return value


def too_deep(what: str) -> RequestError:
    """400 ``too-deep``: ``what`` nests JSON deeper than :data:`MAX_JSON_DEPTH`."""
    return RequestError(400, "too-deep", f"{what} nests JSON deeper than {MAX_JSON_DEPTH} levels")


def check_json_depth(value: object, what: str) -> None:
    """Refuse a decoded JSON value nested deeper than :data:`MAX_JSON_DEPTH` (iteratively).

    Raises:
        RequestError: 400 ``too-deep``.
    """
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise too_deep(what)
        stack.extend((child, depth + 1) for child in children)


def _too_deep() -> RequestError:
    return RequestError(400, "too-deep", "the request body nests too deeply")


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise RequestError(
                400, "duplicate-key", f"the request body repeats the key {key[:64]!r}"
            )
        seen[key] = value
    return seen
