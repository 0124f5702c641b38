"""The Azure IoT Hub MQTT grammar and the device authorisation rules built on it.

This module is sans-IO: strings in, frozen records out, and every refusal is an exception
(STYLE.md, "Security checks raise"). It covers, with references to the protocol digest
``shared/protocols/azure-iot-mqtt.md``:

* the CONNECT username (§2.2): :func:`parse_hub_username`, :func:`is_dps_username`;
* ironhub's identifier rule: :func:`validate_identity`;
* the property bag appended to telemetry topics (§3.1): :func:`decode_property_bag`;
* what an authenticated device may publish and subscribe to (§3, T1-T3):
  :func:`classify_device_publish`, :func:`check_device_subscribe`;
* the security-stream markers: :data:`SECURITY_MESSAGE_MARKERS`,
  :func:`is_security_message`.

Theory of operation for topic authorisation. The hub is not a general broker: a device reaches
exactly the topics the Azure SDK uses for its own identity, and nothing else. Topics and filters
are split into levels and compared level by level with the expected levels, never by prefix or
substring (comqtt matched ``allowed`` against ``allowed/secret`` by prefix,
https://github.com/wind-c/comqtt/pull/169; SECURITY-TESTS.md §3.4). Identity strings are never
interpolated into a pattern, so an identity containing ``/``, ``+`` or ``#`` could never widen
what matches (CVE-2017-7650); :func:`validate_identity` refuses such identities anyway.

Error messages never echo the topic, a property value or a payload: a property bag is
device-controlled text that may hold anything, so messages name only the rule that failed.
"""

from __future__ import annotations

import re
import types
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ironhub.errors import AuthenticationError, AuthorizationError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "MAX_IDENTITY_CHARS",
    "MAX_PROPERTIES",
    "MAX_PROPERTY_BAG_CHARS",
    "MAX_USERNAME_CHARS",
    "MAX_USERNAME_PARAMS",
    "SECURITY_INTERFACE_ID",
    "SECURITY_MESSAGE_MARKERS",
    "STREAM_PROPERTY",
    "DevicePublish",
    "HubUsername",
    "check_device_subscribe",
    "classify_device_publish",
    "decode_property_bag",
    "is_dps_username",
    "is_security_message",
    "parse_hub_username",
    "percent_decode",
    "validate_identity",
]

#: Longest device or module id (Azure's limit, azure-iot-mqtt.md §3.1 and the Azure docs).
MAX_IDENTITY_CHARS = 128

#: Longest CONNECT username we parse. The SDK's is about 200 characters; a DTDL model id
#: (``model-id=dtmi:...``, §2.2) may in theory reach 2048 characters, so 4096 leaves room
#: for that while still bounding the work done before authentication.
MAX_USERNAME_CHARS = 4096

#: Most query parameters in a username (the SDK sends two or three).
MAX_USERNAME_PARAMS = 16

#: Most properties in one telemetry property bag. The SDK sends at most 8 system properties
#: plus the application's; 64 is generous for real devices and bounds the per-message work.
MAX_PROPERTIES = 64

#: Longest encoded property bag, in characters (the topic name itself may reach 65535).
MAX_PROPERTY_BAG_CHARS = 8192

#: The interface id ``Message.set_as_security_message()`` puts in ``$.ifid`` (the SDK's
#: ``constant.SECURITY_MESSAGE_INTERFACE_ID``, the Defender-for-IoT security-message marker).
SECURITY_INTERFACE_ID = "urn:azureiot:Security:SecurityAgent:1"

#: ironhub's own marker property. Devices that do not run a Defender agent (the ironhub agent,
#: other SDKs without ``set_as_security_message``) set ``ironhub-stream=security`` as an
#: ordinary custom property to send a message to the security stream. It is the only
#: ``ironhub-`` name a device may use, and ``security`` is its only accepted value.
STREAM_PROPERTY = "ironhub-stream"

#: ``(key, value)`` pairs any one of which sends a telemetry message to the security stream.
SECURITY_MESSAGE_MARKERS: frozenset[tuple[str, str]] = frozenset(
    {("$.ifid", SECURITY_INTERFACE_ID), (STREAM_PROPERTY, "security")}
)

# ironhub's identity rule (see validate_identity for why it is stricter than Azure's).
_IDENTITY_CHARS_RE = re.compile(r"[A-Za-z0-9\-._:@]*")

# Host names in usernames: ASCII letters, digits and the punctuation of DNS names, IPv4 and
# bracketed or bare IPv6 literals. IDNs arrive as A-labels, so nothing else is needed.
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9.:_\[\]-]{1,253}")

# Azure api-version values look like 2019-10-01 or 2016-11-14-preview.
_API_VERSION_RE = re.compile(r"[0-9A-Za-z.-]{1,32}")

# DPS ID scopes look like 0ne000ABCDE.
_ID_SCOPE_RE = re.compile(r"[A-Za-z0-9]{1,64}")

# A '%' not followed by two hexadecimal digits. urllib's unquote leaves such sequences as they
# are; we refuse them so that one string never has two readings.
_BAD_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")

# Raw characters allowed in an encoded property bag: printable ASCII without space, minus the
# MQTT level separator and wildcards, which are not allowed in topic names [MQTT-3.3.2-2]. Every
# SDK percent-encodes anything else (the Python SDK encodes all but ``A-Za-z0-9_.-~``).
_BAG_FORBIDDEN_RE = re.compile(r"[^\x21-\x7e]|[#+/]")

# C0 controls and DEL are refused in decoded keys and values: they have no use in a property
# and make log lines and downstream consumers ambiguous.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

# Device-supplied property names in the namespaces the hub uses for its own annotations. A
# device could otherwise forge, say, the connection identity a consumer relies on. Compared
# case-insensitively because some consumers (HTTP headers, AMQP bridges) are.
_RESERVED_PREFIXES = ("iothub-", "ironhub-")

# The exceptions: Azure documents ``iothub-creation-time-utc`` as user-settable, and
# ``ironhub-stream`` is our security-stream marker.
_DEVICE_SETTABLE_RESERVED = frozenset({"iothub-creation-time-utc", STREAM_PROPERTY})

# Connection-identity system properties; the Java and .NET SDKs let an application set them
# (module message forwarding), so they are accepted only when they name the sender itself.
_CONNECTION_DEVICE_ID = "$.cdid"
_CONNECTION_MODULE_ID = "$.cmid"


@dataclass(frozen=True, slots=True)
class HubUsername:
    """A parsed IoT Hub CONNECT username (azure-iot-mqtt.md §2.2).

    Attributes:
        hostname: the hub host name as sent (compare it case-insensitively).
        device_id: the device id; it passed :func:`validate_identity`.
        module_id: the module id for module identities, else ``None``.
        api_version: the ``api-version`` parameter.
        params: every query parameter, URL-decoded, ``api-version`` included (a read-only
            mapping; e.g. ``DeviceClientType``, ``model-id``).
    """

    hostname: str
    device_id: str
    module_id: str | None
    api_version: str
    params: Mapping[str, str]

    @property
    def client_id(self) -> str:
        """The MQTT ClientId the SDK sends with this username: ``device`` or ``device/module``."""
        if self.module_id is None:
            return self.device_id
        return f"{self.device_id}/{self.module_id}"


@dataclass(frozen=True, slots=True)
class DevicePublish:
    """What an authorised device publish is.

    Attributes:
        kind: ``"telemetry"`` (twin and method publishes come later).
        properties: the decoded property bag, in wire order; system properties keep their
            ``$.`` names.
    """

    kind: Literal["telemetry"]
    properties: tuple[tuple[str, str], ...]


def percent_decode(text: str) -> str:
    """Decode one URL-encoded component strictly.

    Unlike :func:`urllib.parse.unquote`, malformed escapes and invalid UTF-8 are refused rather
    than passed through or replaced, and ``+`` stays ``+`` (the SDK never uses ``quote_plus``,
    see ``mqtt_topic_iothub.py``). The encoded text must be ASCII: every encoder percent-encodes
    anything else.

    Args:
        text: the encoded component.

    Returns:
        The decoded text.

    Raises:
        ValidationError: the text is not ASCII, has a malformed ``%`` escape, or does not decode
            to UTF-8.
    """
    if not text.isascii():
        raise ValidationError("encoded text must be ASCII")
    if _BAD_PERCENT_RE.search(text):
        raise ValidationError("malformed percent-encoding")
    try:
        return urllib.parse.unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("percent-encoding does not decode to UTF-8") from None


def validate_identity(device_id: str, module_id: str | None = None) -> None:
    """Check a device id, and a module id if given, against ironhub's identity rule.

    An identity is 1 to 128 characters from ``A-Z a-z 0-9 - . _ : @`` and starts with a letter
    or digit.

    This is deliberately stricter than Azure, which also allows ``+ # % * ? ! ( ) , = ; $ '``.
    Identities are interpolated into MQTT topics (``devices/{id}/...``), usernames, SAS resource
    URIs, certificate subjects, log lines and file names, so:

    * ``+``, ``#`` and ``/`` would act as MQTT wildcards or level separators in ACL templates
      (CVE-2017-7650; SECURITY-TESTS.md §3.4 item 23), and ``$`` starts reserved topics;
    * ``%`` makes the percent-encoded SAS ``sr`` and property bags ambiguous, and ``?``, ``&``,
      ``=`` and ``;`` are separators in usernames, query strings and connection strings;
    * ``,``, ``=``, ``+`` and ``;`` are special in X.509 distinguished names (RFC 4514), and
      quotes, parentheses, ``*`` and ``!`` are special to shells, SQL, globs and log parsers;
    * whitespace and control characters enable log injection and look-alike identities.

    A leading letter or digit rules out ``.``/``..`` and names that look like options.

    Args:
        device_id: the device id.
        module_id: the module id, or ``None`` for a device identity.

    Raises:
        ValidationError: an id breaks the rule (the message says which rule, not the id).
    """
    _check_identity(device_id, "device id")
    if module_id is not None:
        _check_identity(module_id, "module id")


def _check_identity(value: str, what: str) -> None:
    if not 1 <= len(value) <= MAX_IDENTITY_CHARS:
        raise ValidationError(f"{what} must be 1 to {MAX_IDENTITY_CHARS} characters long")
    if not (value[0].isascii() and value[0].isalnum()):
        raise ValidationError(f"{what} must start with an ASCII letter or digit")
    if not _IDENTITY_CHARS_RE.fullmatch(value):
        raise ValidationError(f"{what} may contain only A-Z a-z 0-9 - . _ : @")


def parse_hub_username(username: str) -> HubUsername:
    """Parse an IoT Hub CONNECT username (azure-iot-mqtt.md §2.2).

    Accepted shapes, split at the first ``?``::

        {hostname}/{deviceId}/?{query}
        {hostname}/{deviceId}/{moduleId}/?{query}

    The host name and ids are not URL-encoded (the SDK never encodes them); the query is
    ``key=value`` pairs joined by ``&``, each side URL-encoded, and must hold ``api-version``.
    Duplicate keys are refused so that no two readers can disagree about a value.

    Args:
        username: the CONNECT username, already decoded from UTF-8 by the MQTT codec.

    Returns:
        The parsed username.

    Raises:
        AuthenticationError: reason ``"malformed-username"``, for any deviation.
    """
    if len(username) > MAX_USERNAME_CHARS:
        raise AuthenticationError("malformed-username", "username too long")
    path, question_mark, query = username.partition("?")
    if not question_mark:
        raise AuthenticationError("malformed-username", "username has no query part")
    levels = path.split("/")
    if len(levels) not in (3, 4) or levels[-1] != "":
        raise AuthenticationError(
            "malformed-username", "username must be {host}/{device}[/{module}]/?{query}"
        )
    hostname, device_id = levels[0], levels[1]
    module_id = levels[2] if len(levels) == 4 else None
    if not _HOSTNAME_RE.fullmatch(hostname):
        raise AuthenticationError("malformed-username", "invalid host name in username")
    try:
        validate_identity(device_id, module_id)
        params = _parse_query(query)
    except ValidationError as exc:
        raise AuthenticationError("malformed-username", f"username: {exc}") from None
    api_version = params.get("api-version")
    if api_version is None or not _API_VERSION_RE.fullmatch(api_version):
        raise AuthenticationError("malformed-username", "username lacks a valid api-version")
    return HubUsername(
        hostname=hostname,
        device_id=device_id,
        module_id=module_id,
        api_version=api_version,
        params=types.MappingProxyType(params),
    )


def _parse_query(query: str) -> dict[str, str]:
    items = query.split("&")
    if len(items) > MAX_USERNAME_PARAMS:
        raise ValidationError("too many query parameters")
    params: dict[str, str] = {}
    for item in items:
        raw_key, equals, raw_value = item.partition("=")
        if not equals or not raw_key:
            raise ValidationError("query parameters must be key=value")
        key = percent_decode(raw_key)
        if key in params:
            raise ValidationError("duplicate query parameter")
        params[key] = percent_decode(raw_value)
    return params


def is_dps_username(username: str) -> bool:
    """Whether ``username`` has the DPS shape ``{idScope}/registrations/{id}/api-version=...``.

    This only recognises the shape (azure-iot-mqtt.md §2.2: the DPS username has no ``?``), so
    the listener can route the connection; the provisioning service validates the rest. A hub
    username never has this shape: its third level is empty or a module id followed by ``/?``.

    Args:
        username: the CONNECT username.

    Returns:
        ``True`` for the DPS shape.
    """
    if len(username) > MAX_USERNAME_CHARS:
        return False
    levels = username.split("/", 3)
    return (
        len(levels) == 4
        and _ID_SCOPE_RE.fullmatch(levels[0]) is not None
        and levels[1] == "registrations"
        and levels[2] != ""
        and "?" not in levels[2]
        and levels[3].startswith("api-version=")
    )


def decode_property_bag(bag: str) -> tuple[tuple[str, str], ...]:
    """Decode a telemetry property bag (azure-iot-mqtt.md §3.1).

    The bag is ``key=value`` items joined by ``&``, each side URL-encoded; the SDK encodes ``$``
    as ``%24``, Azure's documentation shows it raw, and both decode to the same ``$.`` name. A
    key without ``=`` gets the value ``""``: the Python SDK always sends ``=`` (it uses
    ``urlencode``), but Azure documents a bare key as a property with no value, and we have no
    separate null. Duplicate keys are refused, because the SDK refuses them itself and a
    duplicate could smuggle a second value past a reader that keeps the first; this also stops
    a custom property named ``$.mid`` from shadowing the system property.

    Args:
        bag: the encoded bag, the topic level after ``messages/events/`` (may be empty).

    Returns:
        ``(key, value)`` pairs in wire order.

    Raises:
        ValidationError: the bag is too long, has too many items, an empty item or key, a raw
            ``=`` inside a value, a character the grammar forbids, malformed percent-encoding,
            a decoded control character, or a duplicate key.
    """
    if not bag:
        return ()
    if len(bag) > MAX_PROPERTY_BAG_CHARS:
        raise ValidationError("property bag too long")
    if _BAG_FORBIDDEN_RE.search(bag):
        raise ValidationError("property bag contains a character that must be percent-encoded")
    items = bag.split("&")
    if len(items) > MAX_PROPERTIES:
        raise ValidationError("too many properties")
    seen: set[str] = set()
    properties: list[tuple[str, str]] = []
    for item in items:
        raw_key, _, raw_value = item.partition("=")
        if not raw_key:
            raise ValidationError("property bag has an empty item or key")
        if "=" in raw_value:
            # The SDK encodes '=' inside values; a raw one would be read differently by the
            # SDK's own naive split (§3.2), so we refuse rather than guess.
            raise ValidationError("raw '=' inside a property value")
        key = percent_decode(raw_key)
        value = percent_decode(raw_value)
        if _CONTROL_RE.search(key) or _CONTROL_RE.search(value):
            raise ValidationError("control character in a property")
        if key in seen:
            raise ValidationError("duplicate property key")
        seen.add(key)
        properties.append((key, value))
    return tuple(properties)


def _own_identity(device_id: str, module_id: str | None) -> None:
    # Defence in depth: an empty or malformed authenticated identity must never match a
    # topic level (``devices//messages/events/``); fail closed if a caller passes one.
    try:
        validate_identity(device_id, module_id)
    except ValidationError:
        raise AuthorizationError("the authenticated identity is not a valid identity") from None


def classify_device_publish(
    topic: str, *, device_id: str, module_id: str | None = None
) -> DevicePublish:
    """Authorise a PUBLISH from an authenticated device and say what it is.

    Allowed (azure-iot-mqtt.md §3, T1/T1m), with the identity's own ids only:

    * device identity: ``devices/{device_id}/messages/events/{property_bag}``;
    * module identity: ``devices/{device_id}/modules/{module_id}/messages/events/{bag}``.

    The bag may be empty, and the trailing ``/`` may be missing (hand-written MQTT clients omit
    it). Twin and direct-method topics (``$iothub/...``) are refused until they are implemented.

    Property rules: a device may not set names in the hub's annotation namespaces (``iothub-*``
    and ``ironhub-*``, except ``iothub-creation-time-utc`` and ``ironhub-stream=security``), and
    ``$.cdid`` / ``$.cmid`` only with its own ids, so it cannot forge the sender identity
    consumers see.

    Args:
        topic: the PUBLISH topic name.
        device_id: the authenticated device id.
        module_id: the authenticated module id, for module identities.

    Returns:
        The classified publish with its decoded properties.

    Raises:
        AuthorizationError: the topic is outside the identity's telemetry topic, a ``$`` topic,
            contains wildcards, or a property breaks the rules above.
        ValidationError: the property bag is malformed (see :func:`decode_property_bag`).
    """
    _own_identity(device_id, module_id)
    if "+" in topic or "#" in topic:
        raise AuthorizationError("wildcards are not allowed in a topic name")
    if topic.startswith("$iothub/"):
        raise AuthorizationError("twin and direct-method topics are not supported yet")
    if topic.startswith("$"):
        raise AuthorizationError("devices may not publish to $-topics")
    expected = (
        ["devices", device_id, "messages", "events"]
        if module_id is None
        else ["devices", device_id, "modules", module_id, "messages", "events"]
    )
    levels = topic.split("/")
    if levels[: len(expected)] != expected or len(levels) > len(expected) + 1:
        raise AuthorizationError("publish outside the identity's own telemetry topic")
    bag = levels[len(expected)] if len(levels) > len(expected) else ""
    properties = decode_property_bag(bag)
    _check_device_properties(properties, device_id=device_id, module_id=module_id)
    return DevicePublish(kind="telemetry", properties=properties)


def _check_device_properties(
    properties: tuple[tuple[str, str], ...], *, device_id: str, module_id: str | None
) -> None:
    for key, value in properties:
        lowered = key.lower()
        if lowered.startswith(_RESERVED_PREFIXES) and key not in _DEVICE_SETTABLE_RESERVED:
            raise AuthorizationError("property name is reserved for the hub")
        if key == STREAM_PROPERTY and value != "security":
            raise AuthorizationError(f"{STREAM_PROPERTY} accepts only the value 'security'")
        if key == _CONNECTION_DEVICE_ID and value != device_id:
            raise AuthorizationError("$.cdid must name the sending device")
        if key == _CONNECTION_MODULE_ID and value != module_id:
            raise AuthorizationError("$.cmid must name the sending module")


def check_device_subscribe(
    topic_filter: str, *, device_id: str, module_id: str | None = None
) -> None:
    """Authorise one SUBSCRIBE filter of an authenticated device.

    Allowed, exactly and level by level (azure-iot-mqtt.md §3, T2/T3):

    * device identity: ``devices/{device_id}/messages/devicebound/#``;
    * module identity: ``devices/{device_id}/modules/{module_id}/inputs/#``.

    Everything else is refused: ``#``, ``+/...``, other identities, ``$share/...``, and for now
    ``$iothub/...`` (twin and methods come later). Call it for every filter of a multi-filter
    SUBSCRIBE (dojot/dojot#2529 checked only the first).

    Args:
        topic_filter: the filter as received.
        device_id: the authenticated device id.
        module_id: the authenticated module id, for module identities.

    Raises:
        AuthorizationError: the filter is not the identity's own C2D or input filter.
    """
    _own_identity(device_id, module_id)
    allowed = (
        ["devices", device_id, "messages", "devicebound", "#"]
        if module_id is None
        else ["devices", device_id, "modules", module_id, "inputs", "#"]
    )
    if topic_filter.split("/") == allowed:
        return
    if topic_filter.startswith("$iothub/"):
        raise AuthorizationError("twin and direct-method subscriptions are not supported yet")
    raise AuthorizationError("subscription outside the identity's own namespace")


def is_security_message(properties: Iterable[tuple[str, str]]) -> bool:
    """Whether a telemetry message belongs to the security stream.

    True when its properties carry one of :data:`SECURITY_MESSAGE_MARKERS`:
    ``$.ifid=urn:azureiot:Security:SecurityAgent:1`` (what the SDK's
    ``Message.set_as_security_message()`` sends) or ``ironhub-stream=security``. This is routing,
    not a security check: any device may write to its own security stream.

    Args:
        properties: decoded ``(key, value)`` pairs, as from :func:`classify_device_publish`.

    Returns:
        ``True`` for a security message.
    """
    return any(pair in SECURITY_MESSAGE_MARKERS for pair in properties)
