"""The values the monitor works on: security events in, findings out (pure; issue 6).

Every detector (:mod:`ironhub.monitor.detectors`) is a state machine that takes
:class:`SecurityEvent` values and the time, and returns :class:`Finding` values; the monitor
service turns findings into alerts and runs the response playbooks. Events come from two
places, both in the message log:

* the device's own security stream: telemetry marked as security (``$.ifid=
  urn:azureiot:Security:SecurityAgent:1`` or ``ironhub-stream=security``) whose body is a JSON
  object or a list of them, parsed by :mod:`ironhub.monitor.events` (docs/security-events.md);
* what the hub itself observed: authentication failures, connections, take-overs, refusals
  (the hub's security and lifecycle records), and the size of each telemetry message.

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

__all__ = [
    "DEVICE_EVENT_KINDS",
    "HUB_EVENT_KINDS",
    "Detector",
    "Finding",
    "SecurityEvent",
    "Severity",
]

#: Event kinds a device sends on its security stream (docs/security-events.md).
DEVICE_EVENT_KINDS = frozenset(
    {"tamper", "usb", "login", "inventory", "antimalware", "ports", "integrity", "auditlog"}
)
#: Event kinds the hub derives from what it observed itself.
HUB_EVENT_KINDS = frozenset(
    {
        "auth-failed",  # a CONNECT refused (fields: reason, client_id)
        "connected",  # a device session began (source: the peer's host)
        "disconnected",  # it ended (fields: reason)
        "takeover",  # a second connection of the same identity (fields: old_peer, new_peer)
        "message",  # one telemetry message (fields: bytes)
    }
)


class Severity(StrEnum):
    """How urgent an alert is, least first."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """One thing that happened, as the detectors see it.

    Attributes:
        kind: a device event kind (:data:`DEVICE_EVENT_KINDS`), a hub event kind
            (:data:`HUB_EVENT_KINDS`), or ``"unknown"`` for a device event of a type the hub
            does not know or a message it could not parse (see ``problem``).
        device_id: the identity it concerns (``d`` or ``d/m``); ``None`` for a hub event that
            names no valid identity (an authentication failure with a garbage client id).
        time: when the hub received or observed it (Unix seconds): the detectors' clock.
        device_time: the device's own ``"time"`` field as sent (ISO 8601), if any.
        fields: the rest of the event (device events: the JSON members besides ``event`` and
            ``time``; hub events: the record's properties).
        source: the peer's network address, when known.
        seq: the message-log sequence number of the evidence, when it has one.
        problem: why a device message was flagged (unknown type, malformed JSON, missing
            ``time``...); ``None`` for a well-formed event. Flagged events are kept.
        profile: the device profile assigned to the device when the monitor processed the
            event (its twin tag ``ironhub.profile``, :mod:`ironhub.monitor.profiles`), set for
            the kinds profiles judge; ``None`` when it has none (the ``default`` profile then
            applies, if one exists).
    """

    kind: str
    device_id: str | None
    time: float
    device_time: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None
    seq: int | None = None
    problem: str | None = None
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """A detector's conclusion: the raw material of an alert.

    Attributes:
        detector: the detector's name (``tamper``, ``usb``, ``masquerade``...).
        alert_type: what the alert is about; with ``device_id`` it is the de-duplication key
            (one open alert per type and device).
        severity: how urgent.
        device_id: the identity concerned, or ``None`` (a source address brute-forcing
            several identities).
        summary: one sentence for a human, never a secret or a payload.
        evidence: the message-log sequence numbers of the events that made it.
        time: when it was found (the time of the last event, or of the tick).
        details: small machine-readable facts (the two source addresses of a masquerade...).
    """

    detector: str
    alert_type: str
    severity: Severity
    device_id: str | None
    summary: str
    time: float
    evidence: tuple[int, ...] = ()
    details: Mapping[str, str] = field(default_factory=dict)


class Detector(Protocol):
    """A pure state machine over security events (one per kind of threat).

    ``observe`` and ``tick`` never raise on hostile input: a field of the wrong type is
    treated as absent. ``snapshot`` returns JSON-serialisable state that ``restore`` accepts,
    so that a restarted hub continues where it stopped (state survives).
    """

    name: str

    def observe(self, event: SecurityEvent) -> list[Finding]:
        """Take one event (events arrive in ``time`` order); the findings it causes."""
        ...

    def tick(self, now: float) -> list[Finding]:
        """Time passed with no event (``now`` never goes back); time-driven findings."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """The detector's state as JSON-serialisable data."""
        ...

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace the state with a snapshot's (unknown or malformed parts are dropped)."""
        ...
