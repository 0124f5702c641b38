"""The Device Provisioning Service (DPS) wire grammar, as the Azure device SDK speaks it over MQTT.

Sans-IO, like the rest of :mod:`ironhub.codec`: strings and bytes in, frozen records or bytes
out, every refusal an exception. It covers, with references to the protocol digest
``shared/protocols/azure-iot-mqtt.md``:

* the CONNECT of a provisioning client (§2.2): :func:`parse_dps_username` and the
  registration id rule, :func:`validate_registration_id`;
* symmetric-key attestation (§2.3, §5.4): :func:`dps_resource_uri`, :func:`verify_dps_token`
  and the enrollment-group key derivation, :func:`derive_device_key`;
* the request topics a device publishes (§5.1 steps 3 and 5): :func:`parse_dps_request`, and
  the register body: :func:`parse_register_body`;
* what the service answers (§5.1 steps 4 and 6, §5.2, §5.3): :func:`response_topic`,
  :func:`operation_body`, :func:`error_body`, :func:`format_timestamp`;
* a client side for ironhub's own tests, tools and benchmark: :func:`register_topic`,
  :func:`status_topic`, :func:`register_body`, :func:`parse_response_topic`;
* :func:`default_id_scope`, a deterministic ID scope per hub host name.

Theory of operation. A provisioning client connects with ClientId ``{registrationId}`` and
username ``{idScope}/registrations/{registrationId}/api-version=...`` (no ``?``), subscribes to
:data:`RESPONSE_FILTER` only, publishes one register request and then status polls, each
answered on ``$dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]``. Everything the
device sends is parsed strictly here and everything the service sends is built here, so no
other layer formats a DPS topic or body.

Rules of this module (decisions are marked as ironhub's):

* Registration ids follow Azure's rule (1 to 128 characters of ``A-Z a-z 0-9 - . _ :``, the last
  one alphanumeric or ``-``; Azure's DPS documentation, "registration ID") and, because a
  registration id becomes the device id, ironhub's identity rule too
  (:func:`~ironhub.codec.azure.validate_identity`: the first character alphanumeric, no ``@``
  here since Azure forbids it). Case is preserved and compared exactly, at every step: the
  ClientId, the username, the body's ``registrationId`` and the token's ``sr`` must agree
  byte for byte. Azure calls registration ids case-insensitive, but the SDK never changes case,
  the derived key (§5.4) is computed over the id as typed, and IoT Hub device ids are
  case-sensitive; folding case here would let ``Sensor-1`` and ``sensor-1`` reach one
  enrollment with two different keys. (ironhub decision.)
* The ID scope in a token's ``sr`` is compared exactly too, unlike a hub host name, which
  :func:`~ironhub.codec.sas.verify_sas_token` compares case-insensitively because DNS ignores
  case. An ID scope is an opaque identifier the SDK copies verbatim from its configuration
  into both the username and the token, so a correctly configured device always matches
  exactly. (ironhub decision.)
* The SDK reads the answer topic by splitting it at every ``$`` and taking the third piece as
  the query (§5.3), so :func:`response_topic` percent-encodes the request id with
  ``quote(safe="")`` (``$`` becomes ``%24``) and operation ids may not hold ``$`` at all.
* Bodies are bounded by Azure's DPS message limit, :data:`MAX_DPS_MESSAGE_BYTES` (§9), and
  their bracket nesting is measured on the raw bytes before ``json.loads`` runs, so a
  ``[[[[...`` bomb costs one linear scan. Duplicate keys, ``NaN`` and ``Infinity`` (also as
  ``1e400``) are refused.

Error messages name the rule that failed and never echo a topic, a username, a body, a token
or a claim token (STYLE.md). Malformed input raises :class:`~ironhub.errors.ValidationError`;
a refused credential raises :class:`~ironhub.errors.AuthenticationError` with a ``reason``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from ironhub.codec import sas
from ironhub.codec.azure import (
    _API_VERSION_RE,
    _CONTROL_RE,
    _HOSTNAME_RE,
    _ID_SCOPE_RE,
    _MAX_QUERY_CHARS,
    _QUERY_FORBIDDEN_RE,
    MAX_USERNAME_CHARS,
    _bounded_int,
    _check_identity,
    _check_request_id,
    _encoded_request_id,
    _parse_query,
    is_dps_username,
    percent_decode,
)
from ironhub.errors import AuthenticationError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "DPS_API_VERSION",
    "DPS_KEY_NAME",
    "MAX_CLAIM_TOKEN_CHARS",
    "MAX_CSR_CHARS",
    "MAX_DPS_JSON_DEPTH",
    "MAX_DPS_MESSAGE_BYTES",
    "MAX_ERROR_MESSAGE_CHARS",
    "MAX_OPERATION_ID_CHARS",
    "MAX_REGISTRATION_ID_CHARS",
    "MAX_RETRY_AFTER_SECONDS",
    "OPERATION_STATUSES",
    "REGISTRATION_SUBSTATUSES",
    "RESPONSE_FILTER",
    "DpsUsername",
    "RegisterBody",
    "RegisterRequest",
    "RegistrationState",
    "StatusRequest",
    "default_id_scope",
    "derive_device_key",
    "dps_resource_uri",
    "error_body",
    "format_timestamp",
    "operation_body",
    "parse_dps_request",
    "parse_dps_username",
    "parse_register_body",
    "parse_response_topic",
    "register_body",
    "register_topic",
    "response_topic",
    "status_topic",
    "validate_registration_id",
    "verify_dps_token",
]

#: Azure's DPS message limit (``includes/iot-dps-limits.md``, azure-iot-mqtt.md §9): 96 KB.
MAX_DPS_MESSAGE_BYTES = 96 * 1024

#: The only filter a provisioning client may subscribe to (§5.1 step 2).
RESPONSE_FILTER = "$dps/registrations/res/#"

#: The ``api-version`` azure-iot-device 2.14 sends (§2.2). Any well-formed value is accepted.
DPS_API_VERSION = "2019-03-31"

#: The only ``skn`` a DPS token may carry: Azure's documentation requires it, the Python SDK
#: omits it (§5.4), so it is either absent or this.
DPS_KEY_NAME = "registration"

#: Longest registration id (Azure: "up to 128 characters long").
MAX_REGISTRATION_ID_CHARS = 128

#: Longest operation id. Azure's are about 60 characters (``4.{hex}.{uuid}``); 128 matches the
#: other identifiers of the protocol.
MAX_OPERATION_ID_CHARS = 128

#: Deepest bracket nesting of a DPS JSON body, the outermost object counting as level 1. The
#: SDK's body is two levels plus the application's payload; 16 leaves the payload 15.
MAX_DPS_JSON_DEPTH = 16

#: Longest certificate signing request in a register body, in characters (base64 DER or PEM;
#: a P-256 CSR is under 1 KB and an RSA-4096 one under 3 KB).
MAX_CSR_CHARS = 16 * 1024

#: Longest claim token in a register body (ironhub extension), in characters.
MAX_CLAIM_TOKEN_CHARS = 256

#: Largest ``retry-after`` the service may send, in seconds. The SDK sleeps that long before the
#: next poll (§5.3), so a bound keeps a service bug from parking devices for days.
MAX_RETRY_AFTER_SECONDS = 3600

#: Longest ``errorMessage`` / ``message`` in a body built here.
MAX_ERROR_MESSAGE_CHARS = 1024

#: Operation and registration statuses (the DPS REST API's ``RegistrationOperationStatus`` and
#: ``DeviceRegistrationState``, §5.2). The SDK acts on ``assigning``, ``assigned`` and
#: ``failed`` and reports anything else as a service error.
OPERATION_STATUSES: frozenset[str] = frozenset(
    {"unassigned", "assigning", "assigned", "failed", "disabled"}
)

#: ``substatus`` values of an assigned registration (§5.2).
REGISTRATION_SUBSTATUSES: frozenset[str] = frozenset(
    {
        "initialAssignment",
        "deviceDataMigrated",
        "deviceDataReset",
        "reprovisionedToInitialAssignment",
    }
)

_TOPIC_BASE: Final = "$dps/registrations/"
_REGISTER_PATH: Final = f"{_TOPIC_BASE}PUT/iotdps-register/"
_STATUS_PATH: Final = f"{_TOPIC_BASE}GET/iotdps-get-operationstatus/"
_RESPONSE_PREFIX: Final = f"{_TOPIC_BASE}res/"

_REQUEST_ID_KEY: Final = "$rid"
_OPERATION_ID_KEY: Final = "operationId"
_RETRY_AFTER_KEY: Final = "retry-after"

# Azure's registration id alphabet, with its rule for the last character.
_REGISTRATION_ID_RE = re.compile(r"[A-Za-z0-9._:-]*[A-Za-z0-9-]")

# Operation ids travel raw in our answers' JSON and encoded in the device's poll topic; this
# alphabet survives both unchanged and holds no '$' (§5.3).
_OPERATION_ID_RE = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_OPERATION_ID_CHARS}}}")

# A response status as the SDK reads it (int(text, 10)), canonical: three digits.
_STATUS_RE = re.compile(r"[1-5][0-9]{2}")

# A retry-after value: canonical decimal seconds.
_RETRY_AFTER_RE = re.compile(r"0|[1-9][0-9]{0,8}")

# ISO 8601 UTC timestamps as Azure writes them (0 to 7 fractional digits, 'Z').
_TIMESTAMP_RE = re.compile(
    r"[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](?:\.[0-9]{1,7})?Z"
)

# Printable ASCII without space: claim tokens, etags, tracking ids.
_TOKEN_TEXT_RE = re.compile(r"[\x21-\x7e]+")

# Standard base64 with padding, not empty: the DER certificates of issuedCertificateChain.
_BASE64_RE = re.compile(r"(?=.)(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")

_MAX_ETAG_CHARS: Final = 256
_MAX_TRACKING_ID_CHARS: Final = 128
_MAX_ERROR_CODE: Final = 2**31 - 1

# Unix seconds of 9999-12-31T23:59:59.999999Z, the last instant ISO 8601 years can spell.
_MAX_UNIX_SECONDS: Final = 253_402_300_800
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# Top-level keys of a register body. "registrationId" and "payload" are what the SDK sends;
# "csr" is Azure's certificate-issuance extension; "claimToken" is ironhub's.
_BODY_KEYS: Final = frozenset({"registrationId", "payload", "csr", "claimToken"})
_CSR_KEY: Final = "csr"
_CLAIM_TOKEN_KEY: Final = "claimToken"  # noqa: S105 - a JSON key name, not a secret

# The bytes that matter to the raw depth scan: brackets, quotes and backslashes.
_STRUCTURAL = re.compile(rb'[\[\]{}"\\]')
_OPEN: Final = frozenset(b"[{")
_CLOSE: Final = frozenset(b"]}")
_QUOTE: Final = ord('"')
_BACKSLASH: Final = ord("\\")

_COMPACT: Final = (",", ":")

# Marks an extension field the register body does not carry (a present null is refused).
_ABSENT: Final = object()


@dataclass(frozen=True, slots=True)
class DpsUsername:
    """A parsed DPS CONNECT username (azure-iot-mqtt.md §2.2).

    Attributes:
        id_scope: the ID scope as sent (1 to 64 ASCII letters and digits).
        registration_id: the registration id; it passed :func:`validate_registration_id` and
            equals the ClientId.
        api_version: the decoded ``api-version`` parameter.
    """

    id_scope: str
    registration_id: str
    api_version: str


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    """A register request, ``$dps/registrations/PUT/iotdps-register/?$rid={rid}`` (§5.1 step 3).

    Attributes:
        request_id: the decoded ``$rid``, to echo in :func:`response_topic`.
    """

    request_id: str


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """A status poll (§5.1 step 5).

    ``$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}``; its
    body (a single space from the SDK) carries nothing and is not parsed.

    Attributes:
        request_id: the decoded ``$rid``, to echo in :func:`response_topic`.
        operation_id: the decoded ``operationId`` the service handed out.
    """

    request_id: str
    operation_id: str


@dataclass(frozen=True, slots=True)
class RegisterBody:
    """A parsed register body (§5.1 step 3).

    Attributes:
        registration_id: the body's ``registrationId`` (equal to the connection's).
        payload_json: the ``payload`` value re-serialised as compact JSON, or ``None`` when it
            is ``null`` or absent. When ``csr`` or ``claimToken`` came from inside the payload
            object they are removed from this text, so the payload that is stored, logged or
            handed to an allocation policy never carries the claim token.
        csr: the certificate signing request, from the top level (Azure's certificate-issuance
            API) or from ``payload["csr"]``; ``None`` if absent.
        claim_token: the claim token, from the top level or from ``payload["claimToken"]``
            (ironhub extension); ``None`` if absent. Kept out of ``repr``: it is a credential.
    """

    registration_id: str
    payload_json: str | None
    csr: str | None
    claim_token: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class RegistrationState:
    """The ``registrationState`` of an operation answer (§5.2), as :func:`operation_body` sends it.

    Attributes:
        registration_id: the registration id.
        status: ``"assigned"``, ``"assigning"``, ``"failed"``, ``"disabled"`` or
            ``"unassigned"`` (:data:`OPERATION_STATUSES`).
        created_at: ``createdDateTimeUtc``, ISO 8601 UTC text such as :func:`format_timestamp`
            returns (the caller supplies times: this module has no clock).
        updated_at: ``lastUpdatedDateTimeUtc``, same format.
        assigned_hub: the host name the device connects to next; it must match the hub
            certificate (§5.2).
        device_id: the device id assigned, following the identity rule.
        substatus: one of :data:`REGISTRATION_SUBSTATUSES`.
        etag: an opaque version tag, printable ASCII.
        payload_json: a compact JSON **object** text returned to the device as ``payload``.
        error_code: Azure's error code of a failed registration.
        error_message: its message (no control characters; never a secret).
        issued_certificate_chain: base64 DER certificates issued from a CSR, leaf first.
    """

    registration_id: str
    status: str
    created_at: str
    updated_at: str
    assigned_hub: str | None = None
    device_id: str | None = None
    substatus: str | None = None
    etag: str | None = None
    payload_json: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    issued_certificate_chain: tuple[str, ...] = ()


# --- identities and credentials -----------------------------------------------------------------


def validate_registration_id(registration_id: str) -> str:
    """Check a registration id and return it unchanged.

    A registration id is 1 to :data:`MAX_REGISTRATION_ID_CHARS` characters from
    ``A-Z a-z 0-9 - . _ :``; the first is an ASCII letter or digit and the last a letter, digit
    or ``-``. That is Azure's rule (the last-character clause included) intersected with
    ironhub's identity rule (:func:`~ironhub.codec.azure.validate_identity`), because the
    registration id becomes the device id. Case is kept as given; see the module docstring for
    why it is compared exactly.

    Args:
        registration_id: the registration id.

    Returns:
        The registration id.

    Raises:
        ValidationError: the id breaks the rule (the message says which rule, not the id).
    """
    if not isinstance(registration_id, str):
        raise ValidationError("registration id must be a string")
    if not 1 <= len(registration_id) <= MAX_REGISTRATION_ID_CHARS:
        raise ValidationError(
            f"registration id must be 1 to {MAX_REGISTRATION_ID_CHARS} characters long"
        )
    if not _REGISTRATION_ID_RE.fullmatch(registration_id):
        raise ValidationError(
            "registration id may contain only A-Z a-z 0-9 - . _ : and must end with a letter, "
            "digit or '-'"
        )
    # ironhub's identity rule on top (it adds: the first character is a letter or digit).
    _check_identity(registration_id, "registration id")
    return registration_id


def dps_resource_uri(id_scope: str, registration_id: str) -> str:
    """The resource URI a DPS token must name: ``{idScope}/registrations/{registrationId}``.

    Not encoded; the token carries it as ``quote(uri, safe="")`` (§2.3).

    Args:
        id_scope: the ID scope, 1 to 64 ASCII letters and digits.
        registration_id: the registration id.

    Returns:
        The resource URI.

    Raises:
        ValidationError: the ID scope or the registration id is malformed.
    """
    _check_id_scope(id_scope)
    validate_registration_id(registration_id)
    return f"{id_scope}/registrations/{registration_id}"


def _check_id_scope(id_scope: object) -> None:
    if not isinstance(id_scope, str) or not _ID_SCOPE_RE.fullmatch(id_scope):
        raise ValidationError("ID scope must be 1 to 64 ASCII letters and digits")


def verify_dps_token(
    token: sas.SasToken,
    *,
    id_scope: str,
    registration_id: str,
    keys: Sequence[bytes],
    now: float,
    max_ttl_seconds: float = sas.MAX_TOKEN_TTL_SECONDS,
) -> int:
    """Verify a parsed SAS token for one registration (§2.3, §5.4).

    In order: ``skn`` is absent or :data:`DPS_KEY_NAME`; the decoded ``sr`` is exactly
    :func:`dps_resource_uri` (ID scope included: see the module docstring); then
    :func:`~ironhub.codec.sas.verify_sas_token` checks the signature with each key, the expiry
    and the longest lifetime.

    Args:
        token: the token, from :func:`~ironhub.codec.sas.parse_sas_token`.
        id_scope: the service's ID scope.
        registration_id: the registration id of the connection.
        keys: the registration's raw keys, primary first: the individual enrollment's keys, or
            :func:`derive_device_key` of each group key.
        now: the current wall-clock time, Unix seconds.
        max_ttl_seconds: how far ahead ``se`` may lie.

    Returns:
        The index in ``keys`` of the key that signed the token.

    Raises:
        AuthenticationError: reason ``"wrong-key-name"``, ``"malformed-token"``,
            ``"wrong-resource"``, ``"bad-signature"``, ``"expired"`` or ``"expiry-too-far"``.
        ValidationError: ``id_scope`` or ``registration_id`` is malformed (a caller bug).
    """
    expected_uri = dps_resource_uri(id_scope, registration_id)
    if token.skn is not None and token.skn != DPS_KEY_NAME:
        raise AuthenticationError("wrong-key-name", "DPS tokens take no key name but registration")
    try:
        resource = percent_decode(token.sr)
    except ValidationError:
        raise AuthenticationError(
            "malformed-token", "malformed-token: malformed percent-encoding"
        ) from None
    if resource != expected_uri:
        raise AuthenticationError("wrong-resource", "token is for another resource")
    return sas.verify_sas_token(
        token, expected_uri=expected_uri, keys=keys, now=now, max_ttl_seconds=max_ttl_seconds
    )


def derive_device_key(group_key: bytes, registration_id: str) -> bytes:
    """Derive a device key from an enrollment-group key (§5.4).

    ``HMAC-SHA256(key=group_key, msg=registration_id as UTF-8)``: what
    ``az iot dps enrollment-group compute-device-key`` computes, before its base64 step.

    Args:
        group_key: the group's raw (base64-decoded) key, at least
            :data:`~ironhub.codec.sas.MIN_KEY_BYTES` bytes: a shorter key would otherwise
            launder into a full-length derived key that passes the token verifier's check.
        registration_id: the device's registration id.

    Returns:
        The 32-byte derived key.

    Raises:
        ValidationError: the group key is too short, or the registration id is malformed.
    """
    if not isinstance(group_key, bytes) or len(group_key) < sas.MIN_KEY_BYTES:
        raise ValidationError(f"group keys must be at least {sas.MIN_KEY_BYTES} bytes")
    validate_registration_id(registration_id)
    return hmac.new(group_key, registration_id.encode("ascii"), hashlib.sha256).digest()


def default_id_scope(hostname: str) -> str:
    """A deterministic ID scope for a hub: ``0ne`` and 8 upper-case hex digits.

    The digits are the first 8 of SHA-256 of the lower-cased host name, so one hub keeps its
    scope across restarts and two hubs rarely share one. It has Azure's shape (``0ne000ABCDE``).

    Args:
        hostname: the hub's primary host name.

    Returns:
        The ID scope.

    Raises:
        ValidationError: the host name is malformed.
    """
    if not isinstance(hostname, str) or not _HOSTNAME_RE.fullmatch(hostname):
        raise ValidationError("invalid host name")
    digest = hashlib.sha256(hostname.lower().encode("ascii")).hexdigest()
    return f"0ne{digest[:8].upper()}"


# --- what the device sends ----------------------------------------------------------------------


def parse_dps_username(username: str, *, client_id: str) -> DpsUsername:
    """Parse a DPS CONNECT username (§2.2).

    Shape: ``{idScope}/registrations/{registrationId}/{query}``, with no ``?``; the query is
    ``key=value`` items joined by ``&``, each side percent-encoded, ``api-version`` first (as
    the SDK and Azure's documentation write it, and as
    :func:`~ironhub.codec.azure.is_dps_username` routes on). ``api-version`` is required and any
    well-formed value accepted; ``ClientVersion`` and other keys are allowed and ignored;
    duplicate keys are refused. The registration id must equal the ClientId.

    Args:
        username: the CONNECT username.
        client_id: the CONNECT ClientId.

    Returns:
        The parsed username.

    Raises:
        ValidationError: for any deviation.
    """
    if len(username) > MAX_USERNAME_CHARS:
        raise ValidationError("username too long")
    if not is_dps_username(username):
        raise ValidationError(
            "username must be {idScope}/registrations/{registrationId}/api-version=..."
        )
    id_scope, _, registration_id, query = username.split("/", 3)
    validate_registration_id(registration_id)
    if registration_id != client_id:
        raise ValidationError("registration id in the username differs from the ClientId")
    api_version = _parse_query(query)["api-version"]
    if not _API_VERSION_RE.fullmatch(api_version):
        raise ValidationError("username lacks a valid api-version")
    return DpsUsername(id_scope=id_scope, registration_id=registration_id, api_version=api_version)


def parse_dps_request(topic: str) -> RegisterRequest | StatusRequest:
    """Parse the topic of a device's DPS publish (§5.1 steps 3 and 5).

    Accepted::

        $dps/registrations/PUT/iotdps-register/?$rid={rid}
        $dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}

    The query items come in any order, each once, both sides strictly percent-decoded (so
    ``%24rid`` is ``$rid``) and with no raw ``=`` in a value. ``$rid`` is required: 1 to
    :data:`~ironhub.codec.azure.MAX_REQUEST_ID_CHARS` printable ASCII characters without space,
    the hub's request id rule. ``operationId`` is required for a status poll and refused for a
    register request: 1 to :data:`MAX_OPERATION_ID_CHARS` characters of ``A-Z a-z 0-9 . _ -``.
    Nothing else is allowed.

    Args:
        topic: the PUBLISH topic name.

    Returns:
        The request.

    Raises:
        ValidationError: the topic is anything else.
    """
    if "+" in topic or "#" in topic:
        raise ValidationError("wildcards are not allowed in a topic name")
    path, question_mark, query = topic.partition("?")
    if path not in (_REGISTER_PATH, _STATUS_PATH) or not question_mark:
        raise ValidationError("not a DPS register or status request topic")
    params = _parse_request_query(query)
    request_id = params.pop(_REQUEST_ID_KEY, None)
    if request_id is None:
        raise ValidationError("DPS request lacks $rid")
    _check_request_id(request_id)
    operation_id = params.pop(_OPERATION_ID_KEY, None)
    if params:
        raise ValidationError("DPS request query allows only $rid and operationId")
    if path == _REGISTER_PATH:
        if operation_id is not None:
            raise ValidationError("a register request takes no operationId")
        return RegisterRequest(request_id=request_id)
    if operation_id is None:
        raise ValidationError("a status request needs an operationId")
    _check_operation_id(operation_id)
    return StatusRequest(request_id=request_id, operation_id=operation_id)


def _parse_request_query(query: str) -> dict[str, str]:
    # The hub's request-query grammar (codec/azure.py): printable ASCII, no raw '/', '?' or
    # wildcard, every item key=value with no second raw '=', keys unique after decoding.
    if len(query) > _MAX_QUERY_CHARS:
        raise ValidationError("request query too long")
    if _QUERY_FORBIDDEN_RE.search(query):
        raise ValidationError("request query contains a character that must be percent-encoded")
    params: dict[str, str] = {}
    for item in query.split("&"):
        raw_key, equals, raw_value = item.partition("=")
        if not equals or "=" in raw_value:
            raise ValidationError("request query items must be key=value")
        key = percent_decode(raw_key)
        if key in params:
            raise ValidationError("duplicate request query key")
        params[key] = percent_decode(raw_value)
    return params


def _check_operation_id(operation_id: object) -> str:
    if not isinstance(operation_id, str) or not _OPERATION_ID_RE.fullmatch(operation_id):
        raise ValidationError(
            f"operation id must be 1 to {MAX_OPERATION_ID_CHARS} characters of A-Z a-z 0-9 . _ -"
        )
    return operation_id


def parse_register_body(body: bytes, *, registration_id: str) -> RegisterBody:
    """Parse the body of a register request strictly (§5.1 step 3).

    In order: the size (at most :data:`MAX_DPS_MESSAGE_BYTES`), UTF-8, the bracket depth on the
    raw bytes (at most :data:`MAX_DPS_JSON_DEPTH`), the JSON syntax (duplicate keys, ``NaN``,
    ``Infinity`` and overflowing numbers refused), then the shape: a JSON object whose keys are
    among ``registrationId`` (required, equal to ``registration_id``), ``payload`` (any JSON
    value), ``csr`` and ``claimToken``. ``tpm`` is refused with its own message. ``csr`` (1 to
    :data:`MAX_CSR_CHARS` ASCII characters) and ``claimToken`` (1 to
    :data:`MAX_CLAIM_TOKEN_CHARS` printable ASCII characters, no space) may sit at the top level
    or inside an object ``payload``, not both.

    The SDK sends ``{"payload": <value or null>, "registrationId": "..."}``.

    Args:
        body: the PUBLISH payload.
        registration_id: the connection's registration id.

    Returns:
        The parsed body.

    Raises:
        ValidationError: for any deviation.
    """
    validate_registration_id(registration_id)
    document = _load_json(body, "register body")
    if not isinstance(document, dict):
        raise ValidationError("register body must be a JSON object")
    if "tpm" in document:
        raise ValidationError("TPM attestation is not supported")
    if not document.keys() <= _BODY_KEYS:
        raise ValidationError(
            "register body allows only registrationId, payload, csr and claimToken"
        )
    if document.get("registrationId") != registration_id:
        raise ValidationError("registrationId missing or different from the connection's")
    payload = document.get("payload")
    csr = _take_extension(document, payload, _CSR_KEY)
    claim_token = _take_extension(document, payload, _CLAIM_TOKEN_KEY)
    if csr is not _ABSENT and not (
        isinstance(csr, str) and 1 <= len(csr) <= MAX_CSR_CHARS and csr.isascii()
    ):
        raise ValidationError(f"csr must be 1 to {MAX_CSR_CHARS} ASCII characters")
    if claim_token is not _ABSENT and not (
        isinstance(claim_token, str)
        and len(claim_token) <= MAX_CLAIM_TOKEN_CHARS
        and _TOKEN_TEXT_RE.fullmatch(claim_token)
    ):
        raise ValidationError(
            f"claimToken must be 1 to {MAX_CLAIM_TOKEN_CHARS} printable ASCII characters"
        )
    payload_json = None if payload is None else _compact_json(payload).decode("utf-8")
    return RegisterBody(
        registration_id=registration_id,
        payload_json=payload_json,
        csr=csr if isinstance(csr, str) else None,
        claim_token=claim_token if isinstance(claim_token, str) else None,
    )


def _take_extension(document: dict[str, Any], payload: object, key: str) -> object:
    # An extension field from the top level or from an object payload (not both), removed
    # from the payload so that the payload text never repeats it. A present null is a value
    # like any other, and the caller refuses it.
    in_payload = isinstance(payload, dict) and key in payload
    if key in document:
        if in_payload:
            raise ValidationError(f"{key} given both in the body and in its payload")
        return document[key]
    if isinstance(payload, dict) and in_payload:
        return payload.pop(key)
    return _ABSENT


def _load_json(data: bytes, what: str) -> Any:  # noqa: ANN401
    if len(data) > MAX_DPS_MESSAGE_BYTES:
        raise ValidationError(f"{what} exceeds {MAX_DPS_MESSAGE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # The foreign message quotes the offending byte: drop it.
        raise ValidationError(f"{what} is not valid UTF-8") from None
    _check_raw_depth(data, what)
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_object,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
        )
    except ValueError:
        # JSONDecodeError keeps the whole document in ``.doc``: never chain it.
        raise ValidationError(f"{what} is not valid JSON") from None


def _check_raw_depth(data: bytes, what: str) -> None:
    # The scan of registry/twin.py (a small state machine over brackets, quotes and
    # backslashes, so brackets inside strings do not count), kept here because the codec must
    # not import the registry. On invalid JSON it may count differently from the decoder, but
    # only after the decoder's first error: it can refuse too much, never let too deep through.
    depth = 0
    in_string = False
    escaped_at = -1
    for match in _STRUCTURAL.finditer(data):
        index = match.start()
        byte = data[index]
        if in_string:
            if index == escaped_at:
                continue
            if byte == _BACKSLASH:
                escaped_at = index + 1
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            if depth > MAX_DPS_JSON_DEPTH:
                raise ValidationError(f"{what} nests deeper than {MAX_DPS_JSON_DEPTH} levels")
        elif byte in _CLOSE:
            depth -= 1
        # A backslash outside a string is a syntax error the decoder reports.


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValidationError("JSON object has a duplicate key")
    return result


def _refuse_constant(_constant: str) -> object:
    raise ValidationError("NaN and Infinity are not JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValidationError("JSON number out of range")
    return value


def _compact_json(value: object) -> bytes:
    # Compact UTF-8 JSON. Lone surrogates (legal in JSON escapes, not in UTF-8) are refused.
    try:
        return json.dumps(value, separators=_COMPACT, ensure_ascii=False, allow_nan=False).encode(
            "utf-8"
        )
    except UnicodeEncodeError:
        raise ValidationError("JSON text holds a lone surrogate") from None


# --- what the service sends ---------------------------------------------------------------------


def response_topic(status: int, request_id: str, *, retry_after: int | None = None) -> str:
    """The topic answering a DPS request (§5.1 steps 4 and 6, §5.3).

    ``$dps/registrations/res/{status}/?$rid={rid}``, plus ``&retry-after={seconds}`` when
    given. The request id is encoded with ``quote(safe="")``: the SDK splits the topic at every
    ``$`` and reads the query from the third piece, so ``$rid=`` must come first and no other
    ``$`` may appear (an encoded one is ``%24``, which the SDK decodes with ``unquote``).

    Args:
        status: the HTTP-like status, 100 to 599 (200 done, 202 assigning, 4xx refused without
            retry, 429 and 5xx retried by the SDK after ``retry_after``).
        request_id: the decoded ``$rid`` of the request.
        retry_after: seconds the device should wait, 0 to :data:`MAX_RETRY_AFTER_SECONDS`.

    Returns:
        The topic name.

    Raises:
        ValidationError: the status, request id or retry-after is out of range.
    """
    topic = f"{_RESPONSE_PREFIX}{_bounded_int(status, 100, 599, 'DPS status')}/"
    topic += f"?{_REQUEST_ID_KEY}={_encoded_request_id(request_id)}"
    if retry_after is not None:
        seconds = _bounded_int(retry_after, 0, MAX_RETRY_AFTER_SECONDS, "retry-after")
        topic += f"&{_RETRY_AFTER_KEY}={seconds}"
    return topic


def operation_body(
    operation_id: str, status: str, registration_state: RegistrationState | None
) -> bytes:
    """The JSON body of an operation answer (§5.2).

    ``{"operationId", "status", "registrationState": {...}}``, compact UTF-8 JSON; the state's
    keys in Azure's order (``registrationId``, ``createdDateTimeUtc``, ``assignedHub``,
    ``deviceId``, ``status``, ``substatus``, ``lastUpdatedDateTimeUtc``, ``etag``, ``payload``,
    ``errorCode``, ``errorMessage``, ``issuedCertificateChain``), omitting ``None`` and empty
    fields. ``payload_json`` is embedded as an object, not as a string.

    Args:
        operation_id: the operation id (see :func:`parse_dps_request` for its rule).
        status: the operation status, one of :data:`OPERATION_STATUSES`.
        registration_state: the registration state, or ``None`` (while assigning).

    Returns:
        The body.

    Raises:
        ValidationError: a field breaks its rule (see :class:`RegistrationState`), or the body
            would exceed :data:`MAX_DPS_MESSAGE_BYTES`.
    """
    document: dict[str, object] = {
        "operationId": _check_operation_id(operation_id),
        "status": _check_status(status),
    }
    if registration_state is not None:
        document["registrationState"] = _state_document(registration_state)
    return _bounded_body(document)


def _check_status(status: object) -> str:
    if not isinstance(status, str) or status not in OPERATION_STATUSES:
        raise ValidationError(f"status must be one of {', '.join(sorted(OPERATION_STATUSES))}")
    return status


def _state_document(state: RegistrationState) -> dict[str, object]:
    # Azure's key order (§5.2); None marks an omitted field.
    fields: dict[str, object] = {
        "registrationId": validate_registration_id(state.registration_id),
        "createdDateTimeUtc": _check_timestamp(state.created_at),
        "assignedHub": _optional(state.assigned_hub, _check_hostname),
        "deviceId": _optional(state.device_id, _check_device_id),
        "status": _check_status(state.status),
        "substatus": _optional(state.substatus, _check_substatus),
        "lastUpdatedDateTimeUtc": _check_timestamp(state.updated_at),
        "etag": _optional(state.etag, _check_etag),
        "payload": _optional(state.payload_json, _payload_object),
        "errorCode": _optional(state.error_code, _error_code),
        "errorMessage": _optional(state.error_message, _check_message),
        "issuedCertificateChain": _check_chain(state.issued_certificate_chain) or None,
    }
    return {key: value for key, value in fields.items() if value is not None}


def _optional(value: object, check: Callable[[object], object]) -> object:
    return None if value is None else check(value)


def _check_hostname(value: object) -> str:
    if not isinstance(value, str) or not _HOSTNAME_RE.fullmatch(value):
        raise ValidationError("assigned hub must be a host name")
    return value


def _check_device_id(value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError("device id must be a string")
    _check_identity(value, "device id")
    return value


def _check_substatus(value: object) -> str:
    if not isinstance(value, str) or value not in REGISTRATION_SUBSTATUSES:
        raise ValidationError("unknown registration substatus")
    return value


def _check_etag(value: object) -> str:
    return _check_token_text(value, _MAX_ETAG_CHARS, "etag")


def _payload_object(value: object) -> dict[str, Any]:
    if not isinstance(value, str):
        raise ValidationError("payload must be JSON text")
    # surrogatepass: a lone surrogate becomes bytes the UTF-8 check then refuses.
    payload = _load_json(value.encode("utf-8", "surrogatepass"), "payload")
    if not isinstance(payload, dict):
        raise ValidationError("payload must be a JSON object")
    return payload


def _error_code(value: object) -> int:
    return int(_bounded_int(value, 0, _MAX_ERROR_CODE, "error code"))


def _check_timestamp(value: object) -> str:
    if not isinstance(value, str) or not _TIMESTAMP_RE.fullmatch(value):
        raise ValidationError("timestamps must be ISO 8601 UTC, e.g. 2026-01-01T00:00:00.000000Z")
    return value


def _check_token_text(value: object, max_chars: int, what: str) -> str:
    if not isinstance(value, str) or len(value) > max_chars or not _TOKEN_TEXT_RE.fullmatch(value):
        raise ValidationError(f"{what} must be 1 to {max_chars} printable ASCII characters")
    return value


def _check_message(value: object) -> str:
    if (
        not isinstance(value, str)
        or len(value) > MAX_ERROR_MESSAGE_CHARS
        or _CONTROL_RE.search(value)
    ):
        raise ValidationError(
            f"error messages are at most {MAX_ERROR_MESSAGE_CHARS} characters, no control "
            "characters"
        )
    return value


def _check_chain(chain: object) -> list[str]:
    if not isinstance(chain, tuple | list) or not all(
        isinstance(cert, str) and _BASE64_RE.fullmatch(cert) for cert in chain
    ):
        raise ValidationError("issued certificates must be base64 DER strings")
    return list(chain)


def _bounded_body(document: dict[str, object]) -> bytes:
    body = _compact_json(document)
    if len(body) > MAX_DPS_MESSAGE_BYTES:
        raise ValidationError(f"DPS message exceeds {MAX_DPS_MESSAGE_BYTES} bytes")
    return body


def error_body(error_code: int, message: str, *, tracking_id: str, timestamp: str) -> bytes:
    """Azure's error JSON for a refused DPS request (§5.3, 4xx and 5xx answers).

    ``{"errorCode": 401002, "trackingId": "...", "message": "...", "timestampUtc": "..."}``,
    compact UTF-8 JSON, in that key order.

    Args:
        error_code: Azure's six-digit error code (e.g. 400004, 401002, 404201, 429001).
        message: the human message; never a secret (STYLE.md).
        tracking_id: the id under which the service logged the request.
        timestamp: ISO 8601 UTC, e.g. from :func:`format_timestamp`.

    Returns:
        The body.

    Raises:
        ValidationError: the code is not a non-negative int32, the message is too long or has
            control characters, the tracking id is not 1 to 128 printable ASCII characters, or
            the timestamp is malformed.
    """
    return _bounded_body(
        {
            "errorCode": _error_code(error_code),
            "trackingId": _check_token_text(tracking_id, _MAX_TRACKING_ID_CHARS, "tracking id"),
            "message": _check_message(message),
            "timestampUtc": _check_timestamp(timestamp),
        }
    )


def format_timestamp(unix_seconds: float) -> str:
    """Format Unix seconds as Azure's UTC timestamp text, e.g. ``2026-11-22T01:02:03.456789Z``.

    Always six fractional digits; sub-microsecond parts are rounded half to even. Pure: it
    converts the number given, it reads no clock.

    Args:
        unix_seconds: seconds since 1970-01-01T00:00:00Z, finite, from 0 to the end of 9999.

    Returns:
        The timestamp.

    Raises:
        ValidationError: the value is not a finite number in range.
    """
    if (
        isinstance(unix_seconds, bool)
        or not isinstance(unix_seconds, int | float)
        or not math.isfinite(unix_seconds)
        or not 0 <= unix_seconds < _MAX_UNIX_SECONDS
    ):
        raise ValidationError("timestamp must be finite Unix seconds from 1970 to 9999")
    # No double lies within half a microsecond below the bound, so rounding to microseconds
    # never leaves the calendar.
    moment = _EPOCH + timedelta(seconds=unix_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- the client side (ironhub's tests, tools and benchmark) -------------------------------------


def register_topic(request_id: str) -> str:
    """The topic of a register request, as the SDK builds it (§5.1 step 3).

    Args:
        request_id: the request id (the SDK uses a uuid4), encoded with ``quote(safe="")``.

    Returns:
        ``$dps/registrations/PUT/iotdps-register/?$rid={rid}``.

    Raises:
        ValidationError: the request id breaks the ``$rid`` rule of :func:`parse_dps_request`.
    """
    return f"{_REGISTER_PATH}?{_REQUEST_ID_KEY}={_encoded_request_id(request_id)}"


def status_topic(request_id: str, operation_id: str) -> str:
    """The topic of a status poll, as the SDK builds it (§5.1 step 5).

    Args:
        request_id: the request id, encoded with ``quote(safe="")``.
        operation_id: the operation id from the service's answer.

    Returns:
        ``$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}``.

    Raises:
        ValidationError: the request id or the operation id breaks its rule.
    """
    encoded_operation_id = urllib.parse.quote(_check_operation_id(operation_id), safe="")
    return (
        f"{_STATUS_PATH}?{_REQUEST_ID_KEY}={_encoded_request_id(request_id)}"
        f"&{_OPERATION_ID_KEY}={encoded_operation_id}"
    )


def register_body(
    registration_id: str,
    payload: object | None,
    *,
    csr: str | None = None,
    claim_token: str | None = None,
) -> bytes:
    """The body of a register request, byte for byte as the SDK writes it (§5.1 step 3).

    ``json.dumps(..., sort_keys=True)`` with the default separators and ASCII escapes, as
    ``DeviceRegistrationPayload.get_json_string`` does: ``{"payload": null, "registrationId":
    "..."}``. ``csr`` and ``claimToken`` are added at the top level when given.

    Args:
        registration_id: the registration id.
        payload: the application's provisioning payload, any JSON-serialisable value.
        csr: a certificate signing request to send, or ``None``.
        claim_token: a claim token to send, or ``None``.

    Returns:
        The body.

    Raises:
        ValidationError: the registration id is malformed, or the payload cannot be encoded as
            JSON (unsupported types, non-string keys that cannot be sorted, ``NaN``).
    """
    document: dict[str, object] = {
        "payload": payload,
        "registrationId": validate_registration_id(registration_id),
    }
    if csr is not None:
        document[_CSR_KEY] = csr
    if claim_token is not None:
        document[_CLAIM_TOKEN_KEY] = claim_token
    try:
        return json.dumps(document, sort_keys=True, allow_nan=False).encode("ascii")
    except (TypeError, ValueError, RecursionError):
        raise ValidationError("payload cannot be encoded as JSON") from None


def parse_response_topic(topic: str) -> tuple[int, str, int | None]:
    """Parse the topic of a DPS answer, as a client (§5.1 steps 4 and 6).

    Accepts ``$dps/registrations/res/{status}/?$rid={rid}[&retry-after={n}]`` as
    :func:`response_topic` and Azure write it: query items in any order, each once, both sides
    percent-decoded; ``$rid`` required (the ``$rid`` rule), ``retry-after`` optional (decimal
    seconds), other keys ignored.

    Args:
        topic: the PUBLISH topic name.

    Returns:
        ``(status, request_id, retry_after)``; ``retry_after`` is ``None`` when absent.

    Raises:
        ValidationError: the topic is anything else.
    """
    if not topic.startswith(_RESPONSE_PREFIX):
        raise ValidationError("not a DPS response topic")
    status_text, separator, query = topic[len(_RESPONSE_PREFIX) :].partition("/?")
    if not separator or not _STATUS_RE.fullmatch(status_text):
        raise ValidationError("DPS response topic must be res/{status}/?{query}")
    params = _parse_request_query(query)
    request_id = params.get(_REQUEST_ID_KEY)
    if request_id is None:
        raise ValidationError("DPS response lacks $rid")
    _check_request_id(request_id)
    retry_text = params.get(_RETRY_AFTER_KEY)
    if retry_text is not None and not _RETRY_AFTER_RE.fullmatch(retry_text):
        raise ValidationError("retry-after must be decimal seconds")
    retry_after = None if retry_text is None else int(retry_text)
    return int(status_text), request_id, retry_after
