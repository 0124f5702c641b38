"""A small HTTPS client for the operator API, on the standard library only.

:class:`HubClient` speaks JSON to the API over ``http.client`` with an ``ssl`` context that
trusts the hub's CA (hostname checking stays on), and follows Server-Sent Events for
``messages tail``. Every failure becomes a :class:`ClientError` whose ``exit_code`` the CLI
uses and whose message is one line meant for a human; the token never appears in one.

Exception tree::

    ClientError                 exit 1 unless stated otherwise
    ├── ClientUsageError        exit 2: a local file or setting is wrong (CA file, URL, id)
    ├── ClientAuthError         exit 3: no usable token, or the API answered 401 / 403
    ├── HubUnreachableError     the API cannot be reached (refused, DNS, timeout, TLS)
    └── APIError                the API answered with an error body (status, code)
        ├── DeviceOfflineError  exit 4: the device is not connected or not listening (404)
        └── DeviceTimeoutError  exit 5: the device did not answer a direct method in time (504)

Identities: ``device`` or ``device/module``; :func:`identity_path` maps them to the API's
``/devices/{d}`` and ``/devices/{d}/modules/{m}`` routes.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import os
import socket
import ssl
import stat
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from ironhub.errors import IronhubError

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator, Mapping, Sequence
    from pathlib import Path

__all__ = [
    "DEFAULT_API_URL",
    "APIError",
    "ClientAuthError",
    "ClientError",
    "ClientUsageError",
    "DeviceOfflineError",
    "DeviceTimeoutError",
    "HubClient",
    "HubUnreachableError",
    "SSEEvent",
    "identity_path",
    "read_token_file",
]

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://127.0.0.1:8443"
#: An SSE line longer than this is not from our hub (one message is at most ~350 KiB as JSON).
_MAX_SSE_LINE_BYTES = 4 * 1024 * 1024
#: A direct method holds the request open for its own timeout; the HTTP read waits this much
#: longer, so the hub's 504 arrives before the client gives up.
_METHOD_TIMEOUT_MARGIN_SECONDS = 15.0


class ClientError(IronhubError):
    """A CLI request failed; ``exit_code`` says how the process should end."""

    exit_code = 1


class ClientUsageError(ClientError):
    """A local setting is wrong: a missing CA file, a malformed URL."""

    exit_code = 2


class ClientAuthError(ClientError):
    """No usable token, or the API refused it (401) or its role (403)."""

    exit_code = 3


class HubUnreachableError(ClientError):
    """The API could not be reached: connection refused, DNS, timeout, TLS verification."""


class APIError(ClientError):
    """The API answered with an error.

    Attributes:
        status: the HTTP status.
        code: the ``error.code`` of the body (``http-error`` if the body was not ours).
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class DeviceOfflineError(APIError):
    """The device is not connected, or does not listen for direct methods (404)."""

    exit_code = 4


class DeviceTimeoutError(APIError):
    """The device did not answer a direct method within its timeout (504)."""

    exit_code = 5


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One Server-Sent Event."""

    event: str = "message"
    data: str = ""
    id: str | None = None


def read_token_file(path: Path) -> str:
    """Read an API token from ``path``, refusing files others could read.

    Like ssh with private keys: a token readable by the group or by others is treated as
    already leaked, and is not used.

    Raises:
        ClientAuthError: the file is missing, unreadable, not a regular file, too open or empty.
    """
    try:
        info = path.stat()
    except OSError as exc:
        raise ClientAuthError(f"cannot read token file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ClientAuthError(f"token file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise ClientAuthError(
            f"token file {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
        )
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientAuthError(f"cannot read token file {path}: {exc}") from None
    if not token:
        raise ClientAuthError(f"token file {path} is empty")
    return token


def _segment(text: str, what: str) -> str:
    if not text:
        raise ClientUsageError(f"the {what} id is empty")
    # Ids may contain characters that are special in URLs (``%``, ``?``, ``#``).
    return urllib.parse.quote(text, safe="")


def identity_path(identity: str, *rest: str) -> str:
    """The API path of a device (``d``) or module (``d/m``) identity, plus ``rest``.

    ``rest`` segments are percent-encoded as well.

    Raises:
        ClientUsageError: an empty id, or more than one ``/``.
    """
    device_id, slash, module_id = identity.partition("/")
    parts = ["/devices", _segment(device_id, "device")]
    if slash:
        if "/" in module_id:
            raise ClientUsageError("an identity is DEVICE or DEVICE/MODULE (one '/' at most)")
        parts += ["modules", _segment(module_id, "module")]
    parts += [urllib.parse.quote(part, safe="") for part in rest]
    return "/".join(parts)


def _is_module(identity: str) -> bool:
    return "/" in identity


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass(slots=True)
class HubClient:
    """A connection-per-request client of the operator API.

    Args:
        api_url: ``https://HOST:PORT[/prefix]``; ``http://`` only for loopback hosts.
        token: the operator API token, or ``None`` for public routes only.
        ca_file: the hub CA certificate to trust; ``None`` means the system trust store.
        timeout_seconds: connect and read timeout of ordinary requests.
    """

    api_url: str
    token: str | None
    ca_file: Path | None = None
    timeout_seconds: float = 30.0
    _scheme: str = field(init=False, default="https")
    _host: str = field(init=False, default="")
    _port: int = field(init=False, default=443)
    _prefix: str = field(init=False, default="")
    _context: ssl.SSLContext | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        """Parse the URL and build the TLS context.

        Raises:
            ClientUsageError: the URL is malformed, or the CA file is missing or not a PEM.
            ClientAuthError: the token contains characters no token has.
        """
        try:
            parts = urllib.parse.urlsplit(self.api_url)
            port = parts.port
        except ValueError:
            raise ClientUsageError(f"malformed API URL {self.api_url!r}") from None
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ClientUsageError(f"the API URL must be https://HOST:PORT, not {self.api_url!r}")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ClientUsageError("plain http:// is only allowed to a loopback address")
        if parts.query or parts.fragment or parts.username:
            raise ClientUsageError("the API URL must not have credentials, a query or a fragment")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        if self.token is not None and not (
            self.token.isascii() and self.token.isprintable() and " " not in self.token
        ):
            raise ClientAuthError("the API token contains characters no token has")
        if self._scheme == "https":
            self._context = self._tls_context()

    def _tls_context(self) -> ssl.SSLContext:
        if self.ca_file is None:
            return ssl.create_default_context()
        try:
            return ssl.create_default_context(cafile=os.fspath(self.ca_file))
        except FileNotFoundError:
            raise ClientUsageError(
                f"hub CA certificate {self.ca_file} not found (set --ca or IRONHUB_CA)"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise ClientUsageError(f"cannot load CA certificate {self.ca_file}: {exc}") from None

    @property
    def base_url(self) -> str:
        """The API URL as given."""
        return self.api_url

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._context is not None:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._context
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _target(self, path: str, query: Mapping[str, str | int | None] | None) -> str:
        """``path`` (already percent-encoded by the caller) with the URL prefix and query."""
        target = self._prefix + path
        params = {k: str(v) for k, v in (query or {}).items() if v is not None}
        if params:
            target += "?" + urllib.parse.urlencode(params)
        return target

    def _headers(
        self, *, accept: str, body: bool, content_type: str = "application/json"
    ) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": "ironhub-cli"}
        if body:
            headers["Content-Type"] = content_type
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _unreachable(self, exc: OSError | http.client.HTTPException) -> ClientError:
        where = f"{self._host}:{self._port}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            hint = (
                f"pass the hub's CA certificate with --ca (tried {self.ca_file})"
                if self.ca_file is not None
                else "pass the hub's CA certificate with --ca or IRONHUB_CA"
            )
            return HubUnreachableError(
                f"TLS verification of {where} failed ({exc.verify_message}); {hint}"
            )
        if isinstance(exc, ssl.SSLError):
            return HubUnreachableError(f"TLS with {where} failed: {exc.reason or exc}")
        if isinstance(exc, TimeoutError | socket.timeout):
            return HubUnreachableError(f"the API at {self.api_url} did not answer in time")
        if isinstance(exc, socket.gaierror):
            return HubUnreachableError(f"cannot resolve the API host {self._host!r}")
        if isinstance(exc, http.client.HTTPException):
            return HubUnreachableError(f"the API at {self.api_url} broke off its answer")
        reason = exc.strerror or type(exc).__name__
        return HubUnreachableError(f"cannot reach the API at {self.api_url}: {reason}")

    def _open(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | None] | None,
        body: bytes | None,
        accept: str,
        timeout: float,
        content_type: str = "application/json",
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = self._connection(timeout)
        try:
            conn.request(
                method,
                self._target(path, query),
                body=body,
                headers=self._headers(
                    accept=accept, body=body is not None, content_type=content_type
                ),
            )
            response = conn.getresponse()
        except OSError as exc:
            conn.close()
            raise self._unreachable(exc) from None
        except http.client.HTTPException as exc:
            conn.close()
            raise HubUnreachableError(
                f"the API at {self.api_url} answered something that is not HTTP ({exc!r})"
            ) from None
        return conn, response

    @staticmethod
    def _error_from(status: int, reason: str, raw: bytes) -> ClientError:
        code, message = "http-error", f"HTTP {status} {reason}".strip()
        try:
            detail = json.loads(raw)["error"]
            code, message = str(detail["code"]), str(detail["message"])
        except (ValueError, KeyError, TypeError):
            pass
        if status == 401:
            return ClientAuthError(
                f"the API refused the token ({message}); check IRONHUB_TOKEN or --token-file"
            )
        if status == 403:
            return ClientAuthError(f"the token may not do this: {message}")
        if status == 404 and code == "device-unavailable":
            return DeviceOfflineError(status, code, message)
        if status == 504 and code == "device-timeout":
            return DeviceTimeoutError(status, code, message)
        return APIError(status, code, message)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | None] | None = None,
        json_body: Any = None,  # noqa: ANN401 - any JSON value
        timeout_seconds: float | None = None,
        raw_body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Any:  # noqa: ANN401 - the decoded JSON answer
        """Send one request and return its decoded JSON answer (``None`` for 204).

        ``timeout_seconds`` replaces the client's read timeout for this request. ``raw_body``
        is sent as it is, declared as ``content_type`` (a file upload), instead of
        ``json_body``.

        Raises:
            HubUnreachableError: the API could not be reached or did not speak HTTP.
            ClientAuthError: the API answered 401 or 403.
            APIError: the API answered any other error, or a success that is not JSON.
        """
        body = None if json_body is None else json.dumps(json_body).encode("utf-8")
        if raw_body is not None:
            body = raw_body
        conn, response = self._open(
            method,
            path,
            query=query,
            body=body,
            accept="application/json",
            timeout=self.timeout_seconds if timeout_seconds is None else timeout_seconds,
            content_type=content_type,
        )
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            # IncompleteRead: the hub went away in the middle of its answer.
            raise self._unreachable(exc) from None
        finally:
            conn.close()
        if response.status >= 400:
            raise self._error_from(response.status, response.reason, raw)
        if response.status == 204 or not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise APIError(response.status, "bad-answer", "the API answered non-JSON") from None

    # --- twins ----------------------------------------------------------------------------

    def get_twin(self, identity: str) -> Any:  # noqa: ANN401 - the twin document
        """The twin of a device or module.

        Raises:
            ClientError: see :meth:`request`; ``ClientUsageError`` for a malformed identity.
        """
        return self.request("GET", identity_path(identity, "twin"))

    def patch_twin(
        self,
        identity: str,
        *,
        desired: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        if_version: int | None = None,
    ) -> Any:  # noqa: ANN401 - the twin document
        """Change desired properties and/or tags; only at ``if_version`` when given (else 412).

        Raises:
            ClientError: see :meth:`request`; ``ClientUsageError`` for a malformed identity.
        """
        body: dict[str, Any] = {}
        if desired is not None:
            body["desired"] = dict(desired)
        if tags is not None:
            body["tags"] = dict(tags)
        if if_version is not None:
            body["version"] = if_version
        return self.request("PATCH", identity_path(identity, "twin"), json_body=body)

    def query_twins(self, where: str, *, after: str = "", limit: int = 100) -> Any:  # noqa: ANN401
        """One page of twins matching ``where`` (``{"twins": [...], "next_after": ...}``).

        Raises:
            ClientError: see :meth:`request`.
        """
        body = {"where": where, "after": after, "limit": limit}
        return self.request("POST", "/twins/query", json_body=body)

    # --- direct methods -------------------------------------------------------------------

    def invoke_method(
        self,
        identity: str,
        method_name: str,
        payload: Any = None,  # noqa: ANN401 - any JSON value
        *,
        timeout_seconds: float = 30.0,
    ) -> Any:  # noqa: ANN401 - {"status": int, "payload": ...}
        """Invoke a direct method and wait for the device's answer.

        Raises:
            DeviceOfflineError: the device is not connected or does not listen for methods.
            DeviceTimeoutError: the device did not answer within ``timeout_seconds``.
            ClientError: see :meth:`request`.
        """
        return self.request(
            "POST",
            identity_path(identity, "methods", method_name),
            json_body={"payload": payload, "timeout_seconds": timeout_seconds},
            timeout_seconds=timeout_seconds + _METHOD_TIMEOUT_MARGIN_SECONDS,
        )

    # --- cloud-to-device messages ---------------------------------------------------------

    def send_cloud_message(
        self,
        identity: str,
        body: str,
        *,
        properties: Mapping[str, str] | None = None,
        ttl_seconds: float | None = None,
        message_id: str | None = None,
        input_name: str | None = None,
        system: Mapping[str, str | None] | None = None,
    ) -> Any:  # noqa: ANN401 - the queued message (without payload)
        """Queue a message: a device's cloud-to-device message, or a module input message.

        Raises:
            ClientUsageError: a module without ``input_name``, or a device with one.
            ClientError: see :meth:`request`.
        """
        if _is_module(identity) != (input_name is not None):
            raise ClientUsageError(
                "modules receive messages on a named input (ironhub module send-input); "
                "devices receive cloud-to-device messages (ironhub c2d send)"
            )
        json_body: dict[str, Any] = {"body": body, "properties": dict(properties or {})}
        if ttl_seconds is not None:
            json_body["ttl_seconds"] = ttl_seconds
        if message_id is not None:
            json_body["message_id"] = message_id
        # correlation_id, content_type, content_encoding: the API's own field names.
        json_body.update({k: v for k, v in (system or {}).items() if v is not None})
        if input_name is None:
            path = identity_path(identity, "messages", "cloud")
        else:
            path = identity_path(identity, "inputs", input_name, "messages")
        return self.request("POST", path, json_body=json_body)

    def list_cloud_messages(self, identity: str) -> Any:  # noqa: ANN401
        """The messages queued for a device or module (``{"messages": [...]}``).

        Raises:
            ClientError: see :meth:`request`.
        """
        return self.request("GET", identity_path(identity, "messages", "cloud"))

    def purge_cloud_messages(self, identity: str) -> Any:  # noqa: ANN401
        """Drop every message queued for a device or module (``{"purged": n}``).

        Raises:
            ClientError: see :meth:`request`.
        """
        return self.request("DELETE", identity_path(identity, "messages", "cloud"))

    # --- modules --------------------------------------------------------------------------

    def create_module(
        self,
        device_id: str,
        module_id: str,
        *,
        auth: str = "sas",
        certificates_pem: Sequence[str] = (),
    ) -> Any:  # noqa: ANN401 - the module, and its keys shown once
        """Create a module identity of a device.

        Raises:
            ClientError: see :meth:`request`.
        """
        body = {"module_id": module_id, "auth": auth, "certificates_pem": list(certificates_pem)}
        return self.request("POST", identity_path(device_id, "modules"), json_body=body)

    def list_modules(self, device_id: str) -> Any:  # noqa: ANN401
        """The module identities of a device (``{"modules": [...]}``).

        Raises:
            ClientError: see :meth:`request`.
        """
        return self.request("GET", identity_path(device_id, "modules"))

    def get_module(self, device_id: str, module_id: str) -> Any:  # noqa: ANN401
        """One module identity (never its keys).

        Raises:
            ClientError: see :meth:`request`.
        """
        return self.request("GET", identity_path(f"{device_id}/{module_id}"))

    def delete_module(self, device_id: str, module_id: str) -> None:
        """Delete a module identity.

        Raises:
            ClientError: see :meth:`request`.
        """
        self.request("DELETE", identity_path(f"{device_id}/{module_id}"))

    def module_connection_string(
        self, device_id: str, module_id: str, *, gateway: str | None = None, key: str = "primary"
    ) -> Any:  # noqa: ANN401 - {"connection_string": ...}
        """A module's connection string (the hub records the disclosure of its key).

        Raises:
            ClientError: see :meth:`request`.
        """
        return self.request(
            "GET",
            identity_path(f"{device_id}/{module_id}", "connection-string"),
            query={"gateway": gateway, "key": key},
        )

    # --- server-sent events ---------------------------------------------------------------

    def download(self, path: str, out: BinaryIO, *, timeout_seconds: float = 300.0) -> int:
        """Copy a streamed answer (e.g. ``/audit/export``) into ``out``; the bytes copied.

        Raises:
            HubUnreachableError: the API could not be reached or broke off the answer.
            ClientAuthError: the API answered 401 or 403.
            APIError: the API answered any other error.
        """
        conn, response = self._open(
            "GET", path, query=None, body=None, accept="*/*", timeout=timeout_seconds
        )
        copied = 0
        try:
            if response.status >= 400:
                raise self._error_from(response.status, response.reason, response.read())
            while chunk := response.read(65536):
                out.write(chunk)
                copied += len(chunk)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        finally:
            conn.close()
        return copied

    def events(
        self,
        path: str,
        *,
        query: Mapping[str, str | int | None] | None = None,
        idle_timeout_seconds: float = 60.0,
    ) -> Generator[SSEEvent, None, None]:
        """Follow a Server-Sent Events stream; comments (heartbeats) are skipped.

        The iterator ends when the server ends the stream; closing it closes the connection.

        Raises:
            HubUnreachableError: the API could not be reached, or was silent (not even a
                heartbeat) for ``idle_timeout_seconds``.
            ClientAuthError: the API answered 401 or 403.
            APIError: the API answered any other error.
        """
        conn, response = self._open(
            "GET",
            path,
            query=query,
            body=None,
            accept="text/event-stream",
            timeout=idle_timeout_seconds,
        )
        try:
            if response.status >= 400:
                raise self._error_from(response.status, response.reason, response.read())
            yield from self._parse_events(response)
        except OSError as exc:
            raise self._unreachable(exc) from None
        finally:
            conn.close()

    @staticmethod
    def _parse_events(response: http.client.HTTPResponse) -> Iterator[SSEEvent]:
        """The SSE parsing rules of the WHATWG HTML standard, §9.2.6, for UTF-8 streams."""
        event = ""
        data: list[str] = []
        last_id: str | None = None
        while True:
            line = response.readline(_MAX_SSE_LINE_BYTES)
            if not line:
                return
            if not line.endswith(b"\n"):
                raise HubUnreachableError("the API sent an event line that is too long")
            text = line.rstrip(b"\r\n").decode("utf-8", errors="replace")
            if not text:
                if data:
                    yield SSEEvent(event=event or "message", data="\n".join(data), id=last_id)
                event, data = "", []
                continue
            if text.startswith(":"):
                continue
            name, _, value = text.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                last_id = value
