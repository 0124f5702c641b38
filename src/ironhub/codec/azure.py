"""The Azure IoT Hub MQTT grammar and the device authorisation rules built on it.

This module is sans-IO: strings in, frozen records out, and every refusal is an exception
(STYLE.md, "Security checks raise"). It covers, with references to the protocol digest
``shared/protocols/azure-iot-mqtt.md``:

* the CONNECT username (§2.2): :func:`parse_hub_username`, :func:`is_dps_username`;
* ironhub's identifier rule: :func:`validate_identity`, :func:`split_identity`, and the names
  that share it or resemble it: :func:`validate_input_name`, :func:`validate_method_name`;
* the property bag appended to telemetry topics (§3.1): :func:`decode_property_bag`;
* what an authenticated device or module may publish (§3, T1/T1m telemetry, T5g/T5p twin
  requests, T4r method responses): :func:`classify_device_publish`, :class:`DevicePublish`;
* what it may subscribe to (§3, T2-T6): :func:`check_device_subscribe`,
  :class:`SubscriptionKind`;
* the topics the hub publishes to devices (§3, T2'-T6', §3.2): :func:`encode_property_bag`,
  :func:`c2d_topic`, :func:`module_input_topic`, :func:`twin_response_topic`,
  :func:`desired_patch_topic`, :func:`method_request_topic`, and the admission check for
  operator-supplied cloud-to-device properties, :func:`validate_cloud_properties`;
* the security-stream markers: :data:`SECURITY_MESSAGE_MARKERS`,
  :func:`is_security_message`.

Theory of operation for topic authorisation. The hub is not a general broker: a device reaches
exactly the topics the Azure SDK uses for its own identity, and nothing else. Topics and filters
are split into levels and compared level by level with the expected levels, never by prefix or
substring (comqtt matched ``allowed`` against ``allowed/secret`` by prefix,
https://github.com/wind-c/comqtt/pull/169; SECURITY-TESTS.md §3.4). Identity strings are never
interpolated into a pattern, so an identity containing ``/``, ``+`` or ``#`` could never widen
what matches (CVE-2017-7650); :func:`validate_identity` refuses such identities anyway.

The ``$iothub/...`` topics name no identity: the connection's authenticated identity selects
whose twin and methods they address, so a device can reach only its own twin and methods, and
a module (which uses the same topics) only the module's.

Theory of operation for outbound topics. The SDK recognises hub-to-device topics by substring
and prefix (``is_method_topic`` looks for ``$iothub/methods/POST`` anywhere in the topic,
``mqtt_topic_iothub.py``), splits them at every ``/`` and at the first ``?``, and splits query
items at every ``=``. The builders therefore percent-encode every free-form part
(``urllib.parse.quote(..., safe="")``, §3.2), so no ``/``, ``?``, ``&`` or ``=`` of a value
ever reaches the wire raw, and validate the parts sent raw (identities, input and method names)
against rules that exclude those characters and ``%``.

Error messages never echo the topic, a property value or a payload: a property bag is
device-controlled text that may hold anything, so messages name only the rule that failed.
"""

from __future__ import annotations

import itertools
import re
import types
import urllib.parse
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from ironhub.errors import AuthenticationError, AuthorizationError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "MAX_IDENTITY_CHARS",
    "MAX_METHOD_NAME_CHARS",
    "MAX_PROPERTIES",
    "MAX_PROPERTY_BAG_CHARS",
    "MAX_PROPERTY_KEY_CHARS",
    "MAX_REQUEST_ID_CHARS",
    "MAX_USERNAME_CHARS",
    "MAX_USERNAME_PARAMS",
    "SECURITY_INTERFACE_ID",
    "SECURITY_MESSAGE_MARKERS",
    "STREAM_PROPERTY",
    "DevicePublish",
    "HubUsername",
    "PublishKind",
    "SubscriptionKind",
    "c2d_topic",
    "check_device_subscribe",
    "classify_device_publish",
    "decode_property_bag",
    "desired_patch_topic",
    "encode_property_bag",
    "is_dps_username",
    "is_security_message",
    "method_request_topic",
    "module_input_topic",
    "parse_hub_username",
    "percent_decode",
    "split_identity",
    "twin_response_topic",
    "validate_cloud_properties",
    "validate_identity",
    "validate_input_name",
    "validate_method_name",
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

#: Longest key of an operator-supplied cloud-to-device property (:func:`validate_cloud_properties`).
MAX_PROPERTY_KEY_CHARS = 256

#: Longest ``$rid`` request id, decoded. The SDK sends a uuid4 (36 characters,
#: ``common/pipeline/pipeline_stages_base.py``); Azure documents no limit, and 128 matches the
#: other identifiers of the protocol.
MAX_REQUEST_ID_CHARS = 128

#: Longest direct-method name (Azure's documented limit for method names).
MAX_METHOD_NAME_CHARS = 128

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

# A $rid request id, decoded: printable ASCII without space. Anything else is re-encoded on the
# way back anyway, but has no use and makes logs ambiguous.
_REQUEST_ID_RE = re.compile(rf"[\x21-\x7e]{{1,{MAX_REQUEST_ID_CHARS}}}")

# A method name is sent raw in a topic level (Azure does not encode it, and the SDK decodes it
# with unquote, so a raw name round-trips exactly when it holds no '%'). It must therefore hold
# no level separator, wildcard, query separator or '%', and no space.
_METHOD_NAME_RE = re.compile(rf"[\x21-\x7e]{{1,{MAX_METHOD_NAME_CHARS}}}")
_METHOD_NAME_FORBIDDEN = frozenset("/#+?&=%")

# A method-response status as the SDK writes it (str(int)): optional '-', decimal digits. The
# class is ASCII on purpose: int() would also accept other scripts' digits, '+', '_' and spaces.
_METHOD_STATUS_RE = re.compile(r"-?[0-9]{1,10}")
_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1

# Largest twin $version the builders accept (Azure versions are 64-bit integers).
_MAX_TWIN_VERSION = 2**63 - 1

# Raw characters allowed in the query of a $iothub request topic: as in property bags, plus no
# raw '?', because the SDK splits its own topics at every '?' (`topic.split("?")[1]`).
_QUERY_FORBIDDEN_RE = re.compile(r"[^\x21-\x7e]|[#+/?]")

# Longest query of a $iothub request topic: a $rid of 128 characters, fully percent-encoded, plus
# a $version, with room to spare.
_MAX_QUERY_CHARS = 1024

# Query keys of device requests: $rid is required, $version tolerated and ignored.
_REQUEST_ID_KEY = "$rid"
_VERSION_KEY = "$version"

# The module output name system property (§3.1, T1m).
_OUTPUT_NAME = "$.on"

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


#: What a device publish is: see :class:`DevicePublish`.
PublishKind = Literal["telemetry", "twin-get", "twin-patch-reported", "method-response"]


@dataclass(frozen=True, slots=True)
class DevicePublish:
    """What an authorised device publish is.

    Attributes:
        kind: ``"telemetry"`` (T1/T1m), ``"twin-get"`` (T5g), ``"twin-patch-reported"`` (T5p)
            or ``"method-response"`` (T4r).
        properties: for telemetry, the decoded property bag in wire order; system properties
            keep their ``$.`` names. Empty for the other kinds.
        request_id: the decoded ``$rid`` of a twin request or method response, else ``None``.
        status: the status of a method response, an int32 chosen by the device, else ``None``.
    """

    kind: PublishKind
    properties: tuple[tuple[str, str], ...] = ()
    request_id: str | None = None
    status: int | None = None


class SubscriptionKind(StrEnum):
    """The subscriptions a device or module may hold (azure-iot-mqtt.md §3, T2-T6)."""

    #: ``devices/{d}/messages/devicebound/#``: cloud-to-device messages, device identities only.
    C2D = "c2d"
    #: ``devices/{d}/modules/{m}/inputs/#``: routed input messages, module identities only.
    MODULE_INPUTS = "module-inputs"
    #: ``$iothub/twin/res/#``: answers to twin GET and reported-properties PATCH requests.
    TWIN_RESPONSES = "twin-responses"
    #: ``$iothub/twin/PATCH/properties/desired/#``: desired-property patch notifications.
    DESIRED = "desired"
    #: ``$iothub/methods/POST/#``: direct-method requests.
    METHODS = "methods"


# The identity-independent filters, as level tuples compared for equality. The connection's
# identity selects whose twin and methods these address.
_IOTHUB_SUBSCRIPTIONS: Mapping[tuple[str, ...], SubscriptionKind] = types.MappingProxyType(
    {
        ("$iothub", "twin", "res", "#"): SubscriptionKind.TWIN_RESPONSES,
        ("$iothub", "twin", "PATCH", "properties", "desired", "#"): SubscriptionKind.DESIRED,
        ("$iothub", "methods", "POST", "#"): SubscriptionKind.METHODS,
    }
)


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


def split_identity(identity: str) -> tuple[str, str | None]:
    """Split an identity key into its device id and module id, validating both.

    Identity keys name a device (``"dev1"``) or a module (``"dev1/mod1"``); they are the MQTT
    ClientId the SDK sends, and the key of the registry, twins, sessions and queues.

    Args:
        identity: ``device`` or ``device/module``.

    Returns:
        ``(device_id, module_id)``, ``module_id`` being ``None`` for a device.

    Raises:
        ValidationError: not one or two valid identities joined by one ``/``.
    """
    device_id, slash, module_id = identity.partition("/")
    if not slash:
        validate_identity(device_id)
        return device_id, None
    validate_identity(device_id, module_id)
    return device_id, module_id


def validate_input_name(name: str) -> None:
    """Check a module input name (or output name, ``$.on``) against the identity rule.

    Input names are sent raw as a topic level (``devices/{d}/modules/{m}/inputs/{input}/...``,
    T3'), like the ids, so they follow :func:`validate_identity`'s rule: 1 to 128 characters
    from ``A-Z a-z 0-9 - . _ : @``, starting with a letter or digit.

    Args:
        name: the input name.

    Raises:
        ValidationError: the name breaks the rule.
    """
    _check_identity(name, "input name")


def validate_method_name(name: str) -> None:
    """Check a direct-method name.

    A method name is 1 to :data:`MAX_METHOD_NAME_CHARS` printable ASCII characters without
    space, ``/``, ``#``, ``+``, ``?``, ``&``, ``=`` or ``%``. It is sent raw as a topic level
    (``$iothub/methods/POST/{name}/?$rid=...``, T4'), as Azure sends it; the SDK decodes it with
    ``unquote(topic.split("/")[3])`` and finds the query at the first ``?``, so these characters
    would change what the device reads, and ``%`` would make it decode differently.

    Args:
        name: the method name.

    Raises:
        ValidationError: the name breaks the rule.
    """
    if not _METHOD_NAME_RE.fullmatch(name) or not _METHOD_NAME_FORBIDDEN.isdisjoint(name):
        raise ValidationError(
            f"method name must be 1 to {MAX_METHOD_NAME_CHARS} printable ASCII characters, "
            "without space / # + ? & = %"
        )


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
    """Authorise a PUBLISH from an authenticated device or module and say what it is.

    Allowed (azure-iot-mqtt.md §3), with the identity's own ids only:

    * telemetry (T1/T1m): ``devices/{device_id}/messages/events/{property_bag}`` for a device,
      ``devices/{device_id}/modules/{module_id}/messages/events/{bag}`` for a module. The bag
      may be empty, and the trailing ``/`` may be missing (hand-written MQTT clients omit it);
    * twin GET (T5g): ``$iothub/twin/GET/?$rid={rid}``;
    * reported-properties patch (T5p): ``$iothub/twin/PATCH/properties/reported/?$rid={rid}``;
    * method response (T4r): ``$iothub/methods/res/{status}/?$rid={rid}``.

    The ``$iothub`` topics are the same for devices and modules; the authenticated identity
    selects whose twin or method they concern. Their query is ``key=value`` items joined by
    ``&``, both sides strictly percent-decoded: ``$rid`` is required (1 to
    :data:`MAX_REQUEST_ID_CHARS` printable ASCII characters, no space), ``$version`` is
    tolerated and ignored, and nothing else is allowed. ``status`` is a decimal int32 with an
    optional ``-``, as the SDK writes ``str(status)``. Every other ``$iothub`` topic (the
    hub-to-device ones included) is refused.

    Property rules: a device may not set names in the hub's annotation namespaces (``iothub-*``
    and ``ironhub-*``, except ``iothub-creation-time-utc`` and ``ironhub-stream=security``), and
    ``$.cdid`` / ``$.cmid`` only with its own ids, so it cannot forge the sender identity
    consumers see. ``$.on`` (the output name) is for modules only and follows the identity rule
    of :func:`validate_input_name`, since the hub routes on it.

    Args:
        topic: the PUBLISH topic name.
        device_id: the authenticated device id.
        module_id: the authenticated module id, for module identities.

    Returns:
        The classified publish: its decoded properties for telemetry, its request id (and
        status) otherwise.

    Raises:
        AuthorizationError: the topic is not one of the identity's own topics above, is another
            ``$`` topic, contains wildcards, or a property breaks the rules above.
        ValidationError: the topic has the right shape but a malformed part: property bag (see
            :func:`decode_property_bag`), ``$.on`` value, query, request id or status.
    """
    _own_identity(device_id, module_id)
    if "+" in topic or "#" in topic:
        raise AuthorizationError("wildcards are not allowed in a topic name")
    if topic.startswith("$iothub/"):
        return _classify_iothub_publish(topic)
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


def _classify_iothub_publish(topic: str) -> DevicePublish:
    # The path is everything before the first '?', as the SDK splits it; the query holds no raw
    # '/', so the levels of the path are all the topic's levels but the last.
    path, question_mark, query = topic.partition("?")
    levels = path.split("/")
    kind: PublishKind
    status: int | None = None
    if levels == ["$iothub", "twin", "GET", ""]:
        kind = "twin-get"
    elif levels == ["$iothub", "twin", "PATCH", "properties", "reported", ""]:
        kind = "twin-patch-reported"
    elif len(levels) == 5 and levels[:3] == ["$iothub", "methods", "res"] and levels[4] == "":
        kind = "method-response"
        status = _parse_method_status(levels[3])
    else:
        raise AuthorizationError(
            "under $iothub a device may publish only twin requests and method responses"
        )
    if not question_mark:
        raise ValidationError("$iothub request lacks its $rid query")
    return DevicePublish(kind=kind, request_id=_parse_request_query(query), status=status)


def _parse_method_status(text: str) -> int:
    if not _METHOD_STATUS_RE.fullmatch(text):
        raise ValidationError("method status must be a decimal integer")
    status = int(text)
    if not _INT32_MIN <= status <= _INT32_MAX:
        raise ValidationError("method status must fit in 32 bits")
    return status


def _parse_request_query(query: str) -> str:
    if len(query) > _MAX_QUERY_CHARS:
        raise ValidationError("request query too long")
    if _QUERY_FORBIDDEN_RE.search(query):
        raise ValidationError("request query contains a character that must be percent-encoded")
    request_id: str | None = None
    seen: set[str] = set()
    for item in query.split("&"):
        raw_key, equals, raw_value = item.partition("=")
        # The SDK's own parser (_extract_properties) requires '=' in every item and splits at
        # every '=', so a raw '=' inside a value has two readings.
        if not equals or "=" in raw_value:
            raise ValidationError("request query items must be key=value")
        key = percent_decode(raw_key)
        if key in seen:
            raise ValidationError("duplicate request query key")
        seen.add(key)
        value = percent_decode(raw_value)
        if key == _REQUEST_ID_KEY:
            request_id = value
        elif key != _VERSION_KEY:
            raise ValidationError("request query allows only $rid and $version")
    if request_id is None:
        raise ValidationError("request query lacks $rid")
    _check_request_id(request_id)
    return request_id


def _check_request_id(request_id: str) -> None:
    if not _REQUEST_ID_RE.fullmatch(request_id):
        raise ValidationError(
            f"request id must be 1 to {MAX_REQUEST_ID_CHARS} printable ASCII characters, "
            "without spaces"
        )


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
        if key == _OUTPUT_NAME:
            # Outputs are a module feature (send_message_to_output); the hub routes on the
            # name, so it follows the identity rule like the input names it becomes.
            if module_id is None:
                raise AuthorizationError("only modules may name an output")
            _check_identity(value, "output name")


def check_device_subscribe(
    topic_filter: str, *, device_id: str, module_id: str | None = None
) -> SubscriptionKind:
    """Authorise one SUBSCRIBE filter of an authenticated device or module.

    Allowed, exactly and level by level (azure-iot-mqtt.md §3, T2-T6):

    * device identity: ``devices/{device_id}/messages/devicebound/#``;
    * module identity: ``devices/{device_id}/modules/{module_id}/inputs/#``;
    * both: ``$iothub/twin/res/#``, ``$iothub/twin/PATCH/properties/desired/#`` and
      ``$iothub/methods/POST/#``, which address the connection's own twin and methods.

    Everything else is refused: ``#``, ``+/...``, ``$iothub/#``, narrower or ``+`` variants of
    the filters above, other identities, ``$share/...``. Call it for every filter of a
    multi-filter SUBSCRIBE (dojot/dojot#2529 checked only the first).

    Args:
        topic_filter: the filter as received.
        device_id: the authenticated device id.
        module_id: the authenticated module id, for module identities.

    Returns:
        Which subscription the filter is.

    Raises:
        AuthorizationError: the filter is not one of the identity's filters above.
    """
    _own_identity(device_id, module_id)
    levels = topic_filter.split("/")
    if module_id is None:
        if levels == ["devices", device_id, "messages", "devicebound", "#"]:
            return SubscriptionKind.C2D
    elif levels == ["devices", device_id, "modules", module_id, "inputs", "#"]:
        return SubscriptionKind.MODULE_INPUTS
    kind = _IOTHUB_SUBSCRIPTIONS.get(tuple(levels))
    if kind is None:
        raise AuthorizationError("subscription outside the identity's own namespace")
    return kind


# --- hub-to-device topics ------------------------------------------------------------------------


def encode_property_bag(properties: Iterable[tuple[str, str]]) -> str:
    """Encode a property bag for a cloud-to-device or input topic (azure-iot-mqtt.md §3.2).

    Items are ``key=value`` joined by ``&``, both sides ``urllib.parse.quote(..., safe="")``:
    exactly what the SDK's ``extract_message_properties_from_topic`` undoes with ``unquote``
    after splitting at every ``&`` and ``=``. Encoding every ``/``, ``&``, ``=``, ``?``, ``%``,
    ``+``, ``#`` and space keeps the split unambiguous, and the output always decodes with
    :func:`decode_property_bag` to the input. Size limits are the caller's admission check
    (:func:`validate_cloud_properties`); system properties the hub adds itself (``$.mid``,
    ``iothub-ack``, ...) pass through here, so ``$`` and reserved names are allowed.

    Args:
        properties: ``(key, value)`` pairs, in the order to send.

    Returns:
        The encoded bag; ``""`` for no properties.

    Raises:
        ValidationError: an item is not a pair of strings, a key is empty or repeated, or a key
            or value holds a control character or cannot be encoded as UTF-8.
    """
    items: list[str] = []
    seen: set[str] = set()
    for item in properties:
        key, value = _property_pair(item)
        if not key:
            raise ValidationError("property keys must not be empty")
        if _CONTROL_RE.search(key) or _CONTROL_RE.search(value):
            raise ValidationError("control character in a property")
        if key in seen:
            raise ValidationError("duplicate property key")
        seen.add(key)
        items.append(f"{_quote(key)}={_quote(value)}")
    return "&".join(items)


def _property_pair(item: object) -> tuple[str, str]:
    # Properties may come from JSON (lists) or an operator tool; check the shape rather than
    # trust the annotation.
    if not (
        isinstance(item, tuple | list)
        and len(item) == 2
        and isinstance(item[0], str)
        and isinstance(item[1], str)
    ):
        raise ValidationError("properties must be (key, value) pairs of strings")
    return item[0], item[1]


def _quote(text: str) -> str:
    try:
        return urllib.parse.quote(text, safe="")
    except UnicodeEncodeError:
        # Lone surrogates: not text any device could decode.
        raise ValidationError("property cannot be encoded as UTF-8") from None


def validate_cloud_properties(
    properties: Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    """Admit the application properties an operator attaches to a cloud-to-device message.

    Rules: at most :data:`MAX_PROPERTIES` pairs of strings; keys 1 to
    :data:`MAX_PROPERTY_KEY_CHARS` characters; no control characters in keys or values; no
    duplicate keys; no key starting with ``$`` (system properties, which the SDK maps to message
    attributes such as ``message_id``) or, case-insensitively, ``iothub-`` or ``ironhub-`` (the
    hub's own annotations, e.g. ``iothub-ack``); the encoded bag at most
    :data:`MAX_PROPERTY_BAG_CHARS` characters, so the device-side decoder limits hold too.

    Args:
        properties: the operator's ``(key, value)`` pairs; only the first
            :data:`MAX_PROPERTIES` + 1 are read.

    Returns:
        The properties, as a tuple in the given order.

    Raises:
        ValidationError: a rule above is broken.
    """
    admitted = tuple(
        _property_pair(item) for item in itertools.islice(properties, MAX_PROPERTIES + 1)
    )
    if len(admitted) > MAX_PROPERTIES:
        raise ValidationError(f"at most {MAX_PROPERTIES} properties are allowed")
    for key, _ in admitted:
        if len(key) > MAX_PROPERTY_KEY_CHARS:
            raise ValidationError(f"property keys are at most {MAX_PROPERTY_KEY_CHARS} characters")
        if key.startswith("$") or key.lower().startswith(_RESERVED_PREFIXES):
            raise ValidationError("property name is reserved for the hub")
    if len(encode_property_bag(admitted)) > MAX_PROPERTY_BAG_CHARS:
        raise ValidationError("properties too long once encoded")
    return admitted


def c2d_topic(device_id: str, properties: Iterable[tuple[str, str]]) -> str:
    """The topic of a cloud-to-device message (T2'): ``devices/{d}/messages/devicebound/{bag}``.

    Args:
        device_id: the receiving device (sent raw, as Azure does).
        properties: the property bag, see :func:`encode_property_bag`.

    Returns:
        The topic name.

    Raises:
        ValidationError: the device id breaks :func:`validate_identity`, or the properties
            :func:`encode_property_bag`.
    """
    validate_identity(device_id)
    return f"devices/{device_id}/messages/devicebound/{encode_property_bag(properties)}"


def module_input_topic(
    device_id: str, module_id: str, input_name: str, properties: Iterable[tuple[str, str]]
) -> str:
    """The topic of a message routed to a module input (T3').

    ``devices/{d}/modules/{m}/inputs/{input}/{bag}``; the SDK reads the input name from level 5
    and the bag from level 6.

    Args:
        device_id: the module's device.
        module_id: the receiving module.
        input_name: the input (sent raw, see :func:`validate_input_name`).
        properties: the property bag, see :func:`encode_property_bag`.

    Returns:
        The topic name.

    Raises:
        ValidationError: an id or the input name breaks the identity rule, or the properties
            :func:`encode_property_bag`.
    """
    validate_identity(device_id, module_id)
    validate_input_name(input_name)
    bag = encode_property_bag(properties)
    return f"devices/{device_id}/modules/{module_id}/inputs/{input_name}/{bag}"


def twin_response_topic(status: int, request_id: str, version: int | None = None) -> str:
    """The topic answering a twin request (T5'): ``$iothub/twin/res/{status}/?$rid={rid}``.

    ``&$version={version}`` is appended when given (Azure sends it with a reported-properties
    PATCH answer; the SDK ignores it). The request id is encoded with ``quote(safe="")``, as the
    SDK encodes its own and decodes ours.

    Args:
        status: the HTTP-like status, 100 to 599 (200 GET, 204 PATCH, 400, 429, 5xx).
        request_id: the ``$rid`` of the request, decoded.
        version: the twin's new reported version, 0 to 2**63 - 1, or ``None``.

    Returns:
        The topic name.

    Raises:
        ValidationError: the status, request id or version is out of range.
    """
    topic = f"$iothub/twin/res/{_bounded_int(status, 100, 599, 'twin status')}/"
    topic += f"?{_REQUEST_ID_KEY}={_encoded_request_id(request_id)}"
    if version is not None:
        topic += f"&{_VERSION_KEY}={_bounded_int(version, 0, _MAX_TWIN_VERSION, 'twin version')}"
    return topic


def desired_patch_topic(version: int) -> str:
    """The topic of a desired-properties notification (T6').

    ``$iothub/twin/PATCH/properties/desired/?$version={version}``. The SDK matches the prefix
    only and reads the version from the JSON body (§3.3), which must carry ``"$version"``.

    Args:
        version: the desired properties' new version, 0 to 2**63 - 1.

    Returns:
        The topic name.

    Raises:
        ValidationError: the version is out of range.
    """
    version_text = _bounded_int(version, 0, _MAX_TWIN_VERSION, "twin version")
    return f"$iothub/twin/PATCH/properties/desired/?{_VERSION_KEY}={version_text}"


def method_request_topic(method_name: str, request_id: str) -> str:
    """The topic of a direct-method request (T4'): ``$iothub/methods/POST/{name}/?$rid={rid}``.

    The name is sent raw (see :func:`validate_method_name`), the request id encoded with
    ``quote(safe="")``; the device echoes it in ``$iothub/methods/res/{status}/?$rid=``.

    Args:
        method_name: the method to invoke.
        request_id: the request id the hub chose.

    Returns:
        The topic name.

    Raises:
        ValidationError: the name breaks :func:`validate_method_name`, or the request id is not
            1 to :data:`MAX_REQUEST_ID_CHARS` printable ASCII characters without spaces.
    """
    validate_method_name(method_name)
    return (
        f"$iothub/methods/POST/{method_name}/?{_REQUEST_ID_KEY}={_encoded_request_id(request_id)}"
    )


def _encoded_request_id(request_id: str) -> str:
    _check_request_id(request_id)
    return urllib.parse.quote(request_id, safe="")


def _bounded_int(value: object, low: int, high: int, what: str) -> str:
    # bool is an int subclass, and an IntEnum would format as its name in some versions; take
    # plain integers only and format them as the canonical decimal the SDK parses with int().
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{what} must be an integer from {low} to {high}")
    return str(int(value))


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
