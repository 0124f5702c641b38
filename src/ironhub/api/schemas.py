"""The wire schemas of the operator API, as :class:`msgspec.Struct` types.

Every request body is decoded with ``msgspec.json.decode(body, type=...)`` into one of the
``*Request`` types below; they all forbid unknown fields, so a typo in a field name is a 400
rather than a silently ignored option. Responses are encoded from the other types. The OpenAPI
document (:mod:`ironhub.api.openapi`) is generated from these same classes, so the document
and the wire cannot drift apart.

Timestamps are seconds since the Unix epoch (floats), as stored. Nothing here ever carries a
sealed key, a token hash or a token secret, except the fields whose docstrings say they are
shown once (``primary_key``, ``secondary_key``, ``key``, ``connection_string``).

msgspec resolves the (string) annotations of these classes when it first encodes or decodes
them, so every name used in an annotation here is imported at runtime, never under
``TYPE_CHECKING``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "MAX_CERTIFICATE_PEM_CHARS",
    "MAX_DEVICE_ID_CHARS",
    "AddCARequest",
    "CAList",
    "CAView",
    "ConnectionList",
    "ConnectionStringView",
    "ConnectionView",
    "CreateDeviceRequest",
    "CreatedDeviceView",
    "DeviceList",
    "DeviceView",
    "ErrorBody",
    "ErrorDetail",
    "HealthView",
    "MessagePage",
    "MessageView",
    "RotatedKeyView",
    "TailLagged",
]

#: Azure allows device ids of up to 128 characters; longer ids are refused before any lookup.
MAX_DEVICE_ID_CHARS = 128
#: A PEM certificate is a few kilobytes; 16 KiB leaves room for long chains of extensions.
MAX_CERTIFICATE_PEM_CHARS = 16 * 1024

AuthName = Literal["sas", "x509-ca", "x509-thumbprint"]
StateName = Literal["enabled", "disabled"]
StreamName = Literal["telemetry", "security", "lifecycle"]
DeviceId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_DEVICE_ID_CHARS)]
CertificatePEM = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CERTIFICATE_PEM_CHARS)]


class _Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies: unknown fields are refused."""


class _Response(msgspec.Struct, kw_only=True):
    """Base of response bodies."""


# --- errors ------------------------------------------------------------------------------------


class ErrorDetail(_Response):
    """What went wrong, in a machine-readable code and a sentence for humans."""

    code: str
    message: str


class ErrorBody(_Response):
    """The body of every 4xx and 5xx answer."""

    error: ErrorDetail


class HealthView(_Response):
    """The answer of ``GET /healthz``."""

    status: str


# --- devices -----------------------------------------------------------------------------------


class CreateDeviceRequest(_Request):
    """Create a device identity.

    ``certificates_pem`` holds the primary (and optionally secondary) self-signed certificate
    of an ``x509-thumbprint`` device; it must be empty for the other kinds.
    """

    device_id: DeviceId
    auth: AuthName = "sas"
    certificates_pem: Annotated[list[CertificatePEM], msgspec.Meta(max_length=2)] = []


class DeviceView(_Response):
    """A device identity as the operator sees it: never a key, sealed or not.

    ``connected`` is ``null`` when this process has no device endpoint to ask.
    """

    device_id: str
    auth: AuthName
    state: StateName
    version: int
    created_at: float
    updated_at: float
    primary_thumbprint: str | None = None
    secondary_thumbprint: str | None = None
    connected: bool | None = None


class DeviceList(_Response):
    """One page of devices ordered by id; pass ``next_after`` as ``after`` for the next one."""

    devices: list[DeviceView]
    next_after: str | None


class CreatedDeviceView(_Response, omit_defaults=True):
    """A new device; the keys and the connection string are shown this once only."""

    device: DeviceView
    primary_key: str | None = None
    secondary_key: str | None = None
    connection_string: str | None = None


class RotatedKeyView(_Response):
    """A regenerated SAS key (shown once) and the connection string that uses it."""

    key: str
    connection_string: str


class ConnectionStringView(_Response):
    """An Azure-style device connection string (it contains a key for SAS devices)."""

    connection_string: str


# --- certificate authorities -------------------------------------------------------------------


class AddCARequest(_Request):
    """Register a CA certificate for ``x509-ca`` devices."""

    pem: CertificatePEM


class CAView(_Response):
    """A registered CA certificate (public material only)."""

    fingerprint: str
    subject: str
    created_at: float
    pem: str


class CAList(_Response):
    """Every registered CA."""

    cas: list[CAView]


# --- messages ----------------------------------------------------------------------------------


class MessageView(_Response):
    """One committed message of the log.

    ``payload_text`` is the payload decoded as UTF-8, or ``null`` when it is not valid UTF-8;
    ``payload_base64`` always holds the exact bytes. When a property name occurs more than once
    in the stored property bag, the last value is shown.
    """

    seq: int
    stream: StreamName
    device_id: str | None
    enqueued_at: float
    properties: dict[str, str]
    payload_base64: str
    payload_text: str | None


class MessagePage(_Response):
    """Messages with ``seq > after`` in order; pass ``next_after`` as ``after`` to continue."""

    messages: list[MessageView]
    next_after: int


class TailLagged(_Response):
    """Data of the ``lagged`` event that ends a tail whose reader fell behind."""

    reason: str
    last_seq: int


# --- connections -------------------------------------------------------------------------------


class ConnectionView(_Response):
    """One live, authenticated device connection."""

    device_id: str
    peer: str
    auth_kind: str
    connected_at: float
    keep_alive_seconds: int


class ConnectionList(_Response):
    """The live connections of this hub process (empty when it runs no device endpoint)."""

    connections: list[ConnectionView]
