"""The security event schema and its parser: message-log entries in, SecurityEvent values out.

Pure (no I/O, no clock, no asyncio; ``tests/unit/test_purity.py``). Three producers of
:class:`~ironhub.monitor.model.SecurityEvent` values, all fed from the message log:

* :func:`parse_security_message`: the body of a device's security message (telemetry marked
  with one of :data:`~ironhub.codec.azure.SECURITY_MESSAGE_MARKERS`), a JSON object or a list
  of them, each with ``"event"`` and ``"time"`` and the fields of its type
  (docs/security-events.md is the wire contract);
* :func:`hub_event`: the hub's own security and lifecycle records (authentication failures,
  connections, disconnections, take-overs), which carry an empty payload and their facts as
  properties;
* :func:`message_event`: the size of one telemetry message, for the rate and size detectors.

Theory of operation of the parser. A device is an untrusted party that may be compromised, so
its security messages are hostile input; but they are also the evidence the monitor exists to
see, so the parser never refuses and never raises. Every body becomes at least one event:

1. Message level. The size (:data:`MAX_MESSAGE_BYTES`), the UTF-8 encoding, the bracket depth
   on the raw bytes (:data:`MAX_JSON_DEPTH`, before ``json.loads`` can recurse), the JSON
   syntax (duplicate keys, ``NaN``/``Infinity`` and integer literals longer than
   :data:`MAX_INTEGER_DIGITS` refused), and the shape (an object, or a non-empty list). A
   failure here yields exactly one ``kind="unknown"`` event with ``fields={}`` and the reason
   in ``problem``; the raw body stays in the message log, and ``seq`` points to it.
2. List level. At most :data:`MAX_EVENTS_PER_MESSAGE` members are read; a longer list yields
   the events of the first ones plus one ``unknown`` event saying how many were not read. A
   member that is not an object becomes an ``unknown`` event of its own.
3. Event level. ``"event"`` selects the type. A known type keeps its ``kind`` whatever else is
   wrong with the object, so a tamper detector can still fire on a garbled tamper report (fail
   closed); an unknown or missing type gives ``kind="unknown"``. Each documented field is
   checked against its type; a field of the wrong type is left out of ``fields`` (a detector
   only ever sees documented fields of the documented type), and a required one missing or
   wrong is a problem. Undocumented members are kept, cleaned and bounded (lenient: devices
   may extend the schema).

**The contract detectors rely on:** ``problem is None`` exactly when the object had a known
type, a valid ``time``, every required field, every documented field of its documented type,
and nothing had to be clipped, cleaned or dropped. Otherwise ``problem`` says why (the first
few reasons, never payload bytes: only documented field names, list indexes and, for an unknown
type, the type name JSON-quoted and clipped to :data:`MAX_NAME_CHARS`).

Bounds. A hostile device must not make the monitor's state grow with what it sends, so every
string is clipped (:data:`MAX_STRING_CHARS`, :data:`MAX_LINE_CHARS` for audit-log lines and
paths), control characters and lone surrogates are replaced with U+FFFD (they would allow log
injection, and a lone surrogate cannot be encoded as UTF-8 by the consumers that forward
events), objects keep at most :data:`MAX_MEMBERS` members, lists at most
:data:`MAX_LIST_ITEMS` items (:data:`MAX_INVENTORY_ITEMS` for package lists), and the
undocumented part of one event at most :data:`MAX_EXTRA_VALUES` values.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from ironhub.codec.azure import is_security_message, split_identity
from ironhub.errors import ValidationError
from ironhub.monitor.model import SecurityEvent
from ironhub.storage.interfaces import Stream

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "ANTIVIRUS_MAX_AGE_HOURS",
    "EVENT_FIELDS",
    "MAX_EVENTS_PER_MESSAGE",
    "MAX_EXTRA_VALUES",
    "MAX_INTEGER_DIGITS",
    "MAX_INVENTORY_ITEMS",
    "MAX_JSON_DEPTH",
    "MAX_LINE_CHARS",
    "MAX_LIST_ITEMS",
    "MAX_MEMBERS",
    "MAX_MESSAGE_BYTES",
    "MAX_NAME_CHARS",
    "MAX_PROBLEM_CHARS",
    "MAX_STRING_CHARS",
    "TAMPER_ALARM_STATES",
    "TAMPER_STATES",
    "UNKNOWN_KIND",
    "device_timestamp",
    "hub_event",
    "message_event",
    "parse_security_message",
    "peer_host",
]

#: Largest body read, in bytes: the hub's default message limit (Azure IoT Hub's 256 KiB,
#: ``ironhub.config.AZURE_MAX_MESSAGE_BYTES``). A hub configured for larger messages still
#: reads at most this much of a security message; a larger one is flagged, not parsed.
MAX_MESSAGE_BYTES: Final = 256 * 1024

#: Most events read from one message (a list body); more are flagged in one extra event.
MAX_EVENTS_PER_MESSAGE: Final = 100

#: Deepest nesting of JSON containers, the body's own object or list counting as 1.
MAX_JSON_DEPTH: Final = 10

#: Longest integer literal, in digits (and sign): 20 holds every 64-bit integer, and bounds
#: the quadratic cost of converting long literals.
MAX_INTEGER_DIGITS: Final = 20

#: Longest string kept in ``fields`` (names, versions, users, sensors...).
MAX_STRING_CHARS: Final = 256

#: Longest audit-log line and file path kept (RFC 5424 §6.1 asks receivers to take 2048
#: octets of a syslog message; Linux paths reach 4096 bytes but rarely 2048 characters).
MAX_LINE_CHARS: Final = 2048

#: Longest event type name quoted in ``problem`` and kept in ``fields["event"]``, and longest
#: undocumented member name kept.
MAX_NAME_CHARS: Final = 64

#: Most members kept of one JSON object (an event or a record inside it).
MAX_MEMBERS: Final = 32

#: Most items kept of one list (drivers, detections, listening ports, interfaces...).
MAX_LIST_ITEMS: Final = 256

#: Most packages kept of one inventory: a Debian or Yocto image holds a few hundred to about
#: two thousand packages; 4096 fit in a 256 KiB message only when the names are short.
MAX_INVENTORY_ITEMS: Final = 4096

#: Most values (strings, numbers, items, members) kept of an event's undocumented members.
MAX_EXTRA_VALUES: Final = 256

#: Longest ``problem`` text.
MAX_PROBLEM_CHARS: Final = 512

#: The kind of an event whose type is unknown or whose message could not be parsed.
UNKNOWN_KIND: Final = "unknown"

#: Values of a tamper event's ``state``.
TAMPER_STATES: Final = ("opened", "closed", "removed", "replaced", "triggered", "cleared")

#: The tamper states that report an intrusion (the others report that it ended).
TAMPER_ALARM_STATES: Final = frozenset({"opened", "removed", "triggered"})

#: Largest ``definitions_age_hours`` accepted (about 114 years): bounds a number a detector
#: compares, and anything larger is a device bug, not an age.
ANTIVIRUS_MAX_AGE_HOURS: Final = 1_000_000

_MAX_DEVICE_TIME_CHARS: Final = 64
_MAX_SHOWN_PROBLEMS: Final = 3
_MAX_KEPT_PROBLEMS: Final = 16

# An ISO 8601 / RFC 3339 date-time with seconds and an explicit offset. datetime.fromisoformat
# alone is far more permissive in 3.11 (dates alone, week dates, naive times, a space instead
# of "T"), so the shape is fixed first and fromisoformat only checks the calendar and offset.
_DEVICE_TIME_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# Replaced with U+FFFD in every kept string: C0 controls but the tab, DEL, C1 controls (log
# injection: a newline in a user name forges a log line) and lone surrogates (legal in JSON
# escapes, but not encodable as UTF-8, so they would break every consumer that re-encodes).
_UNSAFE_CHARS: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")
_REPLACEMENT: Final = "\ufffd"

_USB_ID_RE: Final = re.compile(r"(?:0[xX])?([0-9A-Fa-f]{4})")
_SHA256_RE: Final = re.compile(r"[0-9A-Fa-f]{64}")

# The bytes that matter to the raw depth scan: brackets, quotes and backslashes.
_STRUCTURAL: Final = re.compile(rb'[\[\]{}"\\]')
_OPEN: Final = frozenset(b"[{")
_CLOSE: Final = frozenset(b"]}")
_QUOTE: Final = ord('"')
_BACKSLASH: Final = ord("\\")

# The members every event has; the rest are the fields of its type.
_ENVELOPE: Final = frozenset({"event", "time"})

# Marks a documented field that failed its check (and is left out of ``fields``).
_INVALID: Final = object()


# --- the per-event working state ------------------------------------------------------------


@dataclass(slots=True)
class _Context:
    """What checking one event collects: its problems, and the budget of undocumented values."""

    problems: dict[str, None] = field(default_factory=dict)
    more: int = 0
    extra_values_left: int = MAX_EXTRA_VALUES

    def problem(self, text: str) -> None:
        # An ordered set: the same reason (one per clipped extra value...) counts once.
        if text in self.problems:
            return
        if len(self.problems) < _MAX_KEPT_PROBLEMS:
            self.problems[text] = None
        else:
            self.more += 1

    def summary(self) -> str | None:
        if not self.problems:
            return None
        reasons = list(self.problems)
        hidden = len(reasons) - _MAX_SHOWN_PROBLEMS + self.more
        text = "; ".join(reasons[:_MAX_SHOWN_PROBLEMS])
        if hidden > 0:
            text += f" (and {hidden} more)"
        return _clip(text, MAX_PROBLEM_CHARS)


if TYPE_CHECKING:
    #: A value check: (value, path for problems, context) -> the kept value, or _INVALID.
    _Check = Callable[[object, str, _Context], object]


@dataclass(frozen=True, slots=True)
class _Field:
    """A documented field: how to check it, and whether it must be present."""

    check: _Check
    required: bool = False


# --- value checks (each returns the kept value, or _INVALID after recording a problem) -------


def _text(max_chars: int = MAX_STRING_CHARS) -> _Check:
    def check(value: object, path: str, ctx: _Context) -> object:
        if not isinstance(value, str) or not value:
            ctx.problem(f"'{path}' must be a non-empty string")
            return _INVALID
        return _clean(value, max_chars, f"'{path}'", ctx)

    return check


def _choice(*values: str) -> _Check:
    allowed = frozenset(values)
    listing = ", ".join(values)

    def check(value: object, path: str, ctx: _Context) -> object:
        if isinstance(value, str) and value in allowed:
            return value
        ctx.problem(f"'{path}' must be one of {listing}")
        return _INVALID

    return check


def _usb_id(value: object, path: str, ctx: _Context) -> object:
    # USB vendor and product ids are 16-bit numbers; lsusb writes them as 4 hex digits.
    match = _USB_ID_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        ctx.problem(f"'{path}' must be 4 hexadecimal digits")
        return _INVALID
    return match.group(1).lower()


def _sha256(value: object, path: str, ctx: _Context) -> object:
    if not isinstance(value, str) or not _SHA256_RE.fullmatch(value):
        ctx.problem(f"'{path}' must be a SHA-256 digest in hexadecimal (64 digits)")
        return _INVALID
    return value.lower()


def _boolean(value: object, path: str, ctx: _Context) -> object:
    if not isinstance(value, bool):
        ctx.problem(f"'{path}' must be true or false")
        return _INVALID
    return value


def _integer(low: int, high: int) -> _Check:
    def check(value: object, path: str, ctx: _Context) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            ctx.problem(f"'{path}' must be an integer from {low} to {high}")
            return _INVALID
        return value

    return check


def _number(low: int, high: int) -> _Check:
    def check(value: object, path: str, ctx: _Context) -> object:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            ctx.problem(f"'{path}' must be a number from {low} to {high}")
            return _INVALID
        return value

    return check


def _timestamp(value: object, path: str, ctx: _Context) -> object:
    if not isinstance(value, str) or device_timestamp(value) is None:
        ctx.problem(f"'{path}' must be an ISO 8601 date-time with seconds and a UTC offset")
        return _INVALID
    return value


def _record(spec: Mapping[str, _Field]) -> _Check:
    def check(value: object, path: str, ctx: _Context) -> object:
        if not isinstance(value, dict):
            ctx.problem(f"'{path}' must be an object")
            return _INVALID
        # Inside a record only the documented members are kept: undocumented ones (an "arch"
        # on each of 2000 packages) are ignored rather than flagged or stored.
        kept = _fields(value, spec, f"{path}.", ctx, extras=False)
        # A record without one of its required fields is dropped whole (the problem says
        # why): a detector never sees a package without a version.
        if any(expected.required and name not in kept for name, expected in spec.items()):
            return _INVALID
        return kept

    return check


def _list(item: _Check, max_items: int = MAX_LIST_ITEMS) -> _Check:
    def check(value: object, path: str, ctx: _Context) -> object:
        if not isinstance(value, list):
            ctx.problem(f"'{path}' must be a list")
            return _INVALID
        if len(value) > max_items:
            ctx.problem(f"'{path}' holds more than {max_items} items; the rest were dropped")
        kept = []
        for index, member in enumerate(value[:max_items]):
            checked = item(member, f"{path}[{index}]", ctx)
            if checked is not _INVALID:
                kept.append(checked)
        return kept

    return check


# --- the schema (docs/security-events.md, "Event types") --------------------------------------

_TEXT: Final = _Field(_text())
_REQUIRED_TEXT: Final = _Field(_text(), required=True)

_EVENT_SPECS: Final[dict[str, dict[str, _Field]]] = {
    "tamper": {
        "sensor": _REQUIRED_TEXT,
        "state": _Field(_choice(*TAMPER_STATES), required=True),
        "part": _TEXT,
    },
    "usb": {
        "action": _Field(_choice("attached", "removed"), required=True),
        "vendor": _Field(_usb_id),
        "product": _Field(_usb_id),
        "class": _TEXT,
        "port": _TEXT,
        "serial": _TEXT,
    },
    "login": {
        "user": _REQUIRED_TEXT,
        "outcome": _Field(_choice("success", "failure"), required=True),
        "console": _TEXT,
        "method": _TEXT,
        "address": _TEXT,
    },
    "inventory": {
        "os": _Field(_record({"name": _REQUIRED_TEXT, "version": _REQUIRED_TEXT, "kernel": _TEXT})),
        "drivers": _Field(_list(_record({"name": _REQUIRED_TEXT, "version": _REQUIRED_TEXT}))),
        "packages": _Field(
            _list(
                _record({"name": _REQUIRED_TEXT, "version": _REQUIRED_TEXT, "ecosystem": _TEXT}),
                MAX_INVENTORY_ITEMS,
            )
        ),
    },
    "antimalware": {
        "engine": _REQUIRED_TEXT,
        "enabled": _Field(_boolean, required=True),
        "version": _TEXT,
        "definitions_version": _TEXT,
        "definitions_time": _Field(_timestamp),
        "definitions_age_hours": _Field(_number(0, ANTIVIRUS_MAX_AGE_HOURS)),
        "last_scan": _Field(_timestamp),
        "detections": _Field(
            _list(_record({"name": _REQUIRED_TEXT, "path": _Field(_text(MAX_LINE_CHARS))}))
        ),
    },
    "ports": {
        "listening": _Field(
            _list(
                _record(
                    {
                        "protocol": _Field(_choice("tcp", "udp"), required=True),
                        "port": _Field(_integer(0, 65535), required=True),
                        "address": _TEXT,
                        "process": _TEXT,
                    }
                )
            )
        ),
        "interfaces": _Field(
            _list(_record({"name": _REQUIRED_TEXT, "kind": _REQUIRED_TEXT, "up": _Field(_boolean)}))
        ),
    },
    "integrity": {
        "path": _Field(_text(MAX_LINE_CHARS), required=True),
        "result": _Field(_choice("ok", "modified", "missing", "added"), required=True),
        "expected": _Field(_sha256),
        "actual": _Field(_sha256),
    },
    "auditlog": {
        "line": _Field(_text(MAX_LINE_CHARS), required=True),
        "source": _TEXT,
        "severity": _TEXT,
    },
}

# Types whose documented fields are all optional but that must carry at least one of them.
_ANY_OF: Final = {
    "inventory": ("os", "drivers", "packages"),
    "ports": ("listening", "interfaces"),
}

#: The documented fields of each device event type, and whether each is required
#: (docs/security-events.md; a test keeps the two in step).
EVENT_FIELDS: Final[Mapping[str, Mapping[str, bool]]] = {
    kind: {name: spec.required for name, spec in fields.items()}
    for kind, fields in _EVENT_SPECS.items()
}


# --- public API -------------------------------------------------------------------------------


def parse_security_message(
    *,
    device_id: str,
    payload: bytes,
    received_at: float,
    seq: int | None,
    source: str | None = None,
) -> list[SecurityEvent]:
    """Turn the body of one device security message into security events.

    Args:
        device_id: the authenticated identity that sent it (``d`` or ``d/m``).
        payload: the message body as stored in the message log.
        received_at: when the hub received it (Unix seconds): every event's ``time``.
        seq: the message-log sequence number, copied into every event (the evidence).
        source: the device's network address, if the caller knows it.

    Returns:
        At least one event and at most :data:`MAX_EVENTS_PER_MESSAGE` + 1: one per object of
        the body, plus one ``unknown`` event for the members past the limit; or a single
        ``unknown`` event when the body cannot be read (see the module docstring).

    Raises:
        Nothing: hostile input becomes flagged events (``problem``), never an exception.
    """
    origin = _Origin(device_id, received_at, seq, source)
    try:
        document = _load(payload)
    except ValidationError as malformed:
        return [origin.unknown(str(malformed))]
    if isinstance(document, dict):
        return [_event(document, origin)]
    if not isinstance(document, list):
        return [origin.unknown(f"body is {_json_type(document)}, not an object or a list")]
    if not document:
        return [origin.unknown("body is an empty list")]
    events = [
        _member(member, index, origin)
        for index, member in enumerate(document[:MAX_EVENTS_PER_MESSAGE])
    ]
    if len(document) > MAX_EVENTS_PER_MESSAGE:
        events.append(
            origin.unknown(
                f"body holds {len(document)} events, over the limit of "
                f"{MAX_EVENTS_PER_MESSAGE}; the rest were not read"
            )
        )
    return events


def hub_event(
    *,
    stream: str,
    device_id: str | None,
    properties: Sequence[tuple[str, str]],
    received_at: float,
    seq: int | None,
) -> SecurityEvent | None:
    """Turn one of the hub's own security or lifecycle records into a security event.

    The hub records (``DeviceEndpoint.security_event`` and ``lifecycle_event``) carry an empty
    payload and ``("event", name)`` plus facts as properties. Read here:

    * security stream, ``auth-failed`` and ``provisioning-refused`` → ``auth-failed``, with
      ``device_id`` the claimed ``client_id`` when it is a valid identity (else ``None``) and
      ``source`` the ``peer`` address. The claimed identity is **not** authenticated: anyone
      can fail to log in as any device;
    * lifecycle stream, ``connected``, ``disconnected``, ``takeover`` → the same kind, with the
      record's (authenticated) ``device_id`` and ``source`` the host of ``peer`` (``new_peer``
      for a take-over).

    ``fields`` holds the record's properties (``event`` and ``peer`` included), first
    occurrence of each name, cleaned and bounded like a device event's.

    A device's own security message (its properties carry a security-stream marker) is never
    read as a hub record, whatever properties it carries: a device could otherwise forge
    authentication failures of another identity by sending ``event=auth-failed``.

    Args:
        stream: the log stream (:class:`~ironhub.storage.interfaces.Stream` value).
        device_id: the entry's device id.
        properties: the entry's properties.
        received_at: the entry's ``enqueued_at``.
        seq: its sequence number.

    Returns:
        The event, or ``None`` for any other record (other security events, feedback...).

    Raises:
        Nothing.
    """
    if is_security_message(properties):
        return None
    facts = _properties(properties)
    event = facts.get("event")
    if stream == Stream.SECURITY and event in ("auth-failed", "provisioning-refused"):
        peer = facts.get("peer")
        return SecurityEvent(
            kind="auth-failed",
            device_id=_identity_or_none(facts.get("client_id")),
            time=received_at,
            fields=facts,
            source=None if peer in (None, "unknown") else peer,
            seq=seq,
        )
    if stream == Stream.LIFECYCLE and event in ("connected", "disconnected", "takeover"):
        peer = facts.get("new_peer" if event == "takeover" else "peer")
        return SecurityEvent(
            kind=event,
            device_id=device_id,
            time=received_at,
            fields=facts,
            source=None if peer is None else peer_host(peer),
            seq=seq,
        )
    return None


def message_event(
    *, device_id: str, size: int, received_at: float, seq: int | None
) -> SecurityEvent:
    """The ``message`` event of one telemetry message (for rate and size detectors).

    Args:
        device_id: the identity that sent it.
        size: the body's length in bytes (``fields["bytes"]``).
        received_at: when the hub received it.
        seq: its message-log sequence number.

    Returns:
        ``SecurityEvent(kind="message", fields={"bytes": size})``.

    Raises:
        Nothing.
    """
    return SecurityEvent(
        kind="message", device_id=device_id, time=received_at, fields={"bytes": size}, seq=seq
    )


def peer_host(peer: str) -> str | None:
    """The host of a ``host:port`` peer as the hub writes it (``f"{host}:{port}"``).

    IPv6 hosts are written without brackets (``::1:50000``), so the port is what follows the
    last colon; brackets are removed if present.

    Args:
        peer: a lifecycle record's ``peer``, ``old_peer`` or ``new_peer``.

    Returns:
        The host, or ``None`` when ``peer`` is not ``host:port`` (``unknown``).

    Raises:
        Nothing.
    """
    host, colon, port = peer.rpartition(":")
    if not colon or not host or not port.isascii() or not port.isdigit():
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or None


def device_timestamp(text: str) -> float | None:
    """Unix seconds of a device time, or ``None`` if it breaks the wire format.

    The format is ISO 8601 (RFC 3339) with seconds and an explicit offset:
    ``2026-11-22T01:02:03Z``, ``2026-11-22T01:02:03.5+01:00``; up to 9 fractional digits
    (read to the microsecond). No date-only, naive, week-date or space-separated forms.

    Args:
        text: the device's text.

    Returns:
        The instant as Unix seconds, or ``None``.

    Raises:
        Nothing.
    """
    if len(text) > _MAX_DEVICE_TIME_CHARS or not _DEVICE_TIME_RE.fullmatch(text):
        return None
    if text.endswith("Z"):
        text = f"{text[:-1]}+00:00"
    try:
        # Refuses impossible dates, hour 24, leap seconds, year 0 and offsets of a day or more.
        instant = datetime.fromisoformat(text)
    except ValueError:
        return None
    # Subtraction, not .timestamp(): it never overflows near the ends of the calendar.
    return (instant - _EPOCH).total_seconds()


# --- the parser's steps -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Origin:
    """What every event of one message shares."""

    device_id: str
    received_at: float
    seq: int | None
    source: str | None

    def event(
        self, kind: str, fields: dict[str, Any], device_time: str | None, problem: str | None
    ) -> SecurityEvent:
        return SecurityEvent(
            kind=kind,
            device_id=self.device_id,
            time=self.received_at,
            device_time=device_time,
            fields=fields,
            source=self.source,
            seq=self.seq,
            problem=problem,
        )

    def unknown(self, problem: str) -> SecurityEvent:
        return self.event(UNKNOWN_KIND, {}, None, problem)


def _load(payload: bytes) -> Any:  # noqa: ANN401 - a JSON document
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ValidationError(f"body exceeds {MAX_MESSAGE_BYTES} bytes")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        # The foreign message quotes the offending bytes: never chain it.
        raise ValidationError("body is not valid UTF-8") from None
    _check_raw_depth(payload)
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_object,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except ValueError:
        # JSONDecodeError keeps the whole document in ``.doc``: never chain it.
        raise ValidationError("body is not valid JSON") from None


def _check_raw_depth(data: bytes) -> None:
    # The scan of registry/twin.py and codec/dps.py (a small state machine over brackets,
    # quotes and backslashes, so brackets inside strings do not count), repeated here because
    # both are private to their packages and raise their own messages. On invalid JSON it may
    # count differently from the decoder, but only after the decoder's first error: it can
    # refuse too much, never let too deep a body through to json.loads.
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
            if depth > MAX_JSON_DEPTH:
                raise ValidationError(f"body nests deeper than {MAX_JSON_DEPTH} levels")
        elif byte in _CLOSE:
            depth -= 1
        # A backslash outside a string is a syntax error the decoder reports.


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A duplicate key has two readings (first or last wins, by parser): an "event" read as
    # "usb" here could be "tamper" to another consumer of the same log entry.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValidationError("body has an object with a duplicate key")
    return result


def _refuse_constant(_constant: str) -> object:
    raise ValidationError("body holds NaN or Infinity, which are not JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValidationError("body holds a number out of range")
    return value


def _bounded_int(literal: str) -> int:
    if len(literal) > MAX_INTEGER_DIGITS:
        raise ValidationError("body holds a number out of range")
    return int(literal)


def _member(member: object, index: int, origin: _Origin) -> SecurityEvent:
    if isinstance(member, dict):
        return _event(member, origin)
    return origin.unknown(f"list item {index} is {_json_type(member)}, not an object")


def _event(document: dict[str, Any], origin: _Origin) -> SecurityEvent:
    ctx = _Context()
    name = document.get("event")
    if isinstance(name, str) and name in _EVENT_SPECS:
        kind = name
        fields: dict[str, Any] = {}
    else:
        kind = UNKNOWN_KIND
        if name is None:
            ctx.problem("missing 'event'")
            fields = {}
        elif isinstance(name, str):
            clipped = _scrub(name, MAX_NAME_CHARS)
            ctx.problem(f"unknown event type {json.dumps(clipped)}")
            fields = {"event": clipped}
        else:
            ctx.problem("'event' must be a string")
            fields = {}
    device_time = _device_time(document.get("time"), ctx)
    spec = _EVENT_SPECS.get(kind, {})
    fields.update(_fields(document, spec, "", ctx, skip=_ENVELOPE, already=len(fields)))
    if kind in _ANY_OF and not any(document.get(one) is not None for one in _ANY_OF[kind]):
        ctx.problem(f"{kind} needs at least one of {', '.join(_ANY_OF[kind])}")
    if kind == "antimalware":
        _derive_ages(fields, origin.received_at)
    return origin.event(kind, fields, device_time, ctx.summary())


def _device_time(value: object, ctx: _Context) -> str | None:
    if value is None:
        ctx.problem("missing 'time'")
        return None
    if not isinstance(value, str):
        ctx.problem("'time' must be a string")
        return None
    if device_timestamp(value) is None:
        ctx.problem("'time' must be an ISO 8601 date-time with seconds and a UTC offset")
        # Kept as evidence, cleaned and clipped like any string.
        return _scrub(value, _MAX_DEVICE_TIME_CHARS)
    return value


def _fields(
    document: dict[str, Any],
    spec: Mapping[str, _Field],
    prefix: str,
    ctx: _Context,
    *,
    extras: bool = True,
    skip: frozenset[str] = frozenset(),
    already: int = 0,
) -> dict[str, Any]:
    """The documented fields of ``spec``, checked, then (``extras``) the undocumented members.

    Documented fields come first, so that a long object cannot push a required field out of
    the member budget. ``null`` counts as absent (lenient: an optional field may be null).
    """
    kept: dict[str, Any] = {}
    for name, expected in spec.items():
        value = document.get(name)
        if value is None:
            if expected.required:
                ctx.problem(f"missing '{prefix}{name}'")
            continue
        checked = expected.check(value, f"{prefix}{name}", ctx)
        if checked is not _INVALID:
            kept[name] = checked
    if not extras:
        return kept
    budget = MAX_MEMBERS - already - len(kept)
    for name, value in document.items():
        if name in spec or name in skip:
            continue
        if budget <= 0:
            ctx.problem(f"an object has more than {MAX_MEMBERS} members; the rest were dropped")
            break
        key = _clean(name, MAX_NAME_CHARS, "an undocumented member name", ctx)
        extra = _extra(value, ctx)
        if extra is not _INVALID and key not in kept:
            kept[key] = extra
            budget -= 1
    return kept


def _extra(value: object, ctx: _Context) -> object:
    """An undocumented value, kept within the event's budget of :data:`MAX_EXTRA_VALUES`."""
    if ctx.extra_values_left <= 0:
        ctx.problem(
            f"undocumented members hold more than {MAX_EXTRA_VALUES} values; the rest were dropped"
        )
        return _INVALID
    ctx.extra_values_left -= 1
    if isinstance(value, str):
        return _clean(value, MAX_STRING_CHARS, "an undocumented member", ctx)
    if isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            ctx.problem(
                f"an undocumented list holds more than {MAX_LIST_ITEMS} items; "
                "the rest were dropped"
            )
        items = (_extra(item, ctx) for item in value[:MAX_LIST_ITEMS])
        return [item for item in items if item is not _INVALID]
    if isinstance(value, dict):
        return _fields(value, {}, "", ctx)
    # None, booleans and numbers (finite, integers of at most 20 digits) are kept as they are.
    return value


def _derive_ages(fields: dict[str, Any], received_at: float) -> None:
    # Detectors compare ages, not device clock readings: the age is computed against the hub's
    # clock when the device sent a time instead, and clamped at 0 when the device's clock is
    # ahead (a future time is no evidence of fresh definitions either way).
    for time_field, age_field in (
        ("definitions_time", "definitions_age_hours"),
        ("last_scan", "last_scan_age_hours"),
    ):
        text = fields.get(time_field)
        if text is None or age_field in fields:
            continue
        instant = device_timestamp(text)
        assert instant is not None  # _timestamp kept only valid times
        fields[age_field] = round(max(0.0, (received_at - instant) / 3600), 3)


def _properties(properties: Sequence[tuple[str, str]]) -> dict[str, str]:
    # A hub record's properties as a dict: first occurrence of each name, bounded, cleaned
    # (the claimed client id in an auth-failed record is device-controlled text).
    facts: dict[str, str] = {}
    for name, value in properties:
        if len(facts) >= MAX_MEMBERS:
            break
        key = _scrub(name, MAX_NAME_CHARS)
        if key not in facts:
            facts[key] = _scrub(value, MAX_STRING_CHARS)
    return facts


def _identity_or_none(claimed: str | None) -> str | None:
    if claimed is None:
        return None
    try:
        split_identity(claimed)
    except ValidationError:
        return None
    return claimed


# --- strings ----------------------------------------------------------------------------------


def _scrub(text: str, max_chars: int) -> str:
    return _UNSAFE_CHARS.sub(_REPLACEMENT, text[:max_chars])


def _clean(text: str, max_chars: int, what: str, ctx: _Context) -> str:
    if len(text) > max_chars:
        ctx.problem(f"{what} was clipped to {max_chars} characters")
        text = text[:max_chars]
    if _UNSAFE_CHARS.search(text) is None:
        return text
    ctx.problem(f"{what} holds control characters or lone surrogates (replaced)")
    return _UNSAFE_CHARS.sub(_REPLACEMENT, text)


def _clip(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else f"{text[: max_chars - 1]}\u2026"


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
