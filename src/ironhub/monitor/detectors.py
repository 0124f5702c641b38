"""The security detectors: pure state machines from security events to findings (issue 6).

Each detector takes :class:`~ironhub.monitor.model.SecurityEvent` values in ``time`` order
(``observe``) and the passing of time (``tick``) and answers with
:class:`~ironhub.monitor.model.Finding` values; the monitor service turns findings into alerts
(:mod:`ironhub.monitor.alerts`) and runs the playbooks. Nothing here does I/O, reads a clock or
draws a random number: the only clock is ``event.time`` and the ``now`` given to ``tick``, so a
test replays an attack exactly and a restarted hub (``snapshot`` then ``restore``) continues
where it stopped.

==================  =================================  ========  ===================================
detector            alert type                         severity  fires when (defaults)
==================  =================================  ========  ===================================
tamper              tamper                             critical  any tamper event (even garbled)
                                                       high      ... whose state says it ended
                                                                 (closed, replaced, cleared)
physical-access     usb-outside-maintenance            high      USB device attached outside a
                                                                 maintenance window
                    console-login-outside-maintenance  high      console login (any outcome)
                                                                 outside a maintenance window
antimalware         antimalware-disabled               high      ``enabled`` is false
                    antimalware-stale                  medium    definitions older than 72 h, or
                                                                 the device profile's maximum
                    malware-detected                   critical  any detection (one per report)
inventory-baseline  inventory-below-baseline           high      an OS, kernel, driver or package
                                                                 below its minimum: the device
                                                                 profile's baseline, else the
                                                                 configured one (one per report;
                                                                 no defaults)
profile-drift       profile-drift                      high      a ports, USB or login report
                                                                 outside the device's hardware
                                                                 profile (one per report)
advisories          vulnerable-package                 advisory  an inventory package an imported
                                                                 advisory covers (highest severity
                                                                 of the matches; one per report)
brute-force         brute-force                        high      10 auth failures per identity, or
                                                                 30 per source address (IPv6: /64),
                                                                 within 300 s
masquerade          masquerade                         critical  one identity connected from two
                                                                 addresses within 60 s, or 3
                                                                 take-overs within 600 s
flapping            flapping                           medium    more than 20 connects of one
                                                                 identity within 300 s
rate-anomaly        rate-anomaly                       medium    a 60 s bucket over 10x the
                                                                 device's baseline and over 60
                                                                 messages (after 10 buckets)
                    size-anomaly                       medium    a message over 10x the device's
                                                                 baseline size and over 32 KiB
                                                                 (after 10 messages)
new-network         new-source-network                 medium    a connect from a /24 (IPv4) or
                                                                 /64 (IPv6) not among the device's
                                                                 last 16, after 3 connects
silence             security-stream-silent             medium    no security message of a known type
                                                                 for 24 h from a device that has
                                                                 sent some (once per silence)
==================  =================================  ========  ===================================

Theory of operation
-------------------

*Input.* Device events (``tamper``, ``usb``...) come from the device's own security stream and
are as trustworthy as the device; hub events (``auth-failed``, ``connected``...) are what the
hub saw and carry attacker-chosen strings only in ``fields`` and in ``device_id`` of an
authentication failure. A detector reads only the fields it needs, each only if it has the
documented type (a field of the wrong type is absent), and clamps or drops a value that could
raise (a huge integer, NaN, a 10,000-digit version) first. It does *not* skip an event whose
``problem`` is set: the parser keeps the kind of a known type however garbled the rest is, and
a garbled tamper, USB or malware report is still a report of one (fail closed); such a finding
carries the parser's ``problem`` in its details. Events of kind ``unknown`` reach no detector.
The contract, tested with hostile events, is: ``observe``, ``tick`` and ``restore`` never
raise.

*State.* A detector's state is a set of tables keyed by identity or source address. Every table
has a cap and forgets its least recently used key first, so a flood of distinct identities or
addresses costs bounded memory (the cost is that the flood can make a detector forget an older
key: the caps are sized above the fleet, and the hub's own rate limiter throttles the flood).
Time windows are sliding windows of event times; per-key lists never hold more entries than
the threshold needs.

*Suppression.* Detectors that count (brute force, masquerade, flapping) report a key once and
then stay quiet for ``suppress_seconds``; if the condition still holds after that, they report
it again, so a long attack produces one finding per period rather than one per event. The
anomaly detector reports once per bucket, the silence detector once per silence (re-armed when
the device speaks), the new-network detector once per network. Per-event detectors (tamper,
physical access, anti-malware, inventory) report every event: the alert layer merges findings
of the same type and device into one alert (:func:`ironhub.monitor.alerts.decide`).

*Restart.* ``snapshot`` returns plain JSON data (tables as objects whose member order is the
recency order); ``restore`` replaces the state with it, dropping whatever is malformed and
re-applying the caps, so a corrupted or hostile snapshot degrades to "forgot some history".
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from ironhub.monitor.advisories import AdvisoryIndex, match_inventory
from ironhub.monitor.model import (
    DEVICE_EVENT_KINDS,
    Detector,
    Finding,
    SecurityEvent,
    Severity,
)
from ironhub.monitor.profiles import (
    Baseline,
    DeviceProfile,
    ProfileBook,
    compare_versions,
    hardware_drift,
)

__all__ = [
    "ALERT_TYPES",
    "AdvisoryDetector",
    "AntimalwareConfig",
    "AntimalwareDetector",
    "BruteForceConfig",
    "BruteForceDetector",
    "DetectorSet",
    "DetectorStatistics",
    "DetectorsConfig",
    "FlappingConfig",
    "FlappingDetector",
    "InventoryBaselineConfig",
    "InventoryBaselineDetector",
    "MasqueradeConfig",
    "MasqueradeDetector",
    "NewNetworkConfig",
    "NewNetworkDetector",
    "PhysicalAccessConfig",
    "PhysicalAccessDetector",
    "ProfileDriftDetector",
    "RateAnomalyConfig",
    "RateAnomalyDetector",
    "SilenceConfig",
    "SilenceDetector",
    "TamperConfig",
    "TamperDetector",
    "all_detectors",
    "compare_versions",
]

#: Every alert type a detector here can produce (playbooks bind to these).
ALERT_TYPES: Final = frozenset(
    {
        "tamper",
        "usb-outside-maintenance",
        "console-login-outside-maintenance",
        "antimalware-disabled",
        "antimalware-stale",
        "malware-detected",
        "inventory-below-baseline",
        "profile-drift",
        "vulnerable-package",
        "brute-force",
        "masquerade",
        "flapping",
        "rate-anomaly",
        "size-anomaly",
        "new-source-network",
        "security-stream-silent",
    }
)

# Times are Unix seconds from the hub; anything outside +-10^15 s (30 million years) or NaN is
# a bug upstream, and it is ignored rather than allowed to poison a window or a snapshot.
_MAX_TIME: Final = 1e15
# Numbers from devices are clamped here before any arithmetic: float() of a 400-digit integer
# raises OverflowError, and an infinite age would make a snapshot non-standard JSON.
_MAX_NUMBER: Final = 1e18
# Text from devices is cut to this many characters before it goes into a finding.
_MAX_TEXT: Final = 64
# The version of the snapshot layout; a snapshot of another version restores as empty state.
_SNAPSHOT_VERSION: Final = 1
_DEFAULT_MAX_KEYS: Final = 65_536

_V = TypeVar("_V")
_SEVERITY_ORDER: Final = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)


# ---------------------------------------------------------------------------------------------
# Small helpers shared by the detectors


def _time_ok(value: float) -> bool:
    # The chained comparison is False for NaN and for infinities.
    return -_MAX_TIME < value < _MAX_TIME


def _window_ok(start: float, end: float) -> bool:
    return _time_ok(start) and _time_ok(end) and start < end


def _number(value: object) -> float | None:
    """A JSON number as a finite float (clamped), or ``None`` for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        return float(max(-_MAX_NUMBER, min(_MAX_NUMBER, value)))
    if math.isnan(value):
        return None
    return max(-_MAX_NUMBER, min(_MAX_NUMBER, value))


def _seq(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object, limit: int = _MAX_TEXT) -> str | None:
    """A device-supplied string made safe to show: cut to ``limit``, unprintables replaced."""
    if not isinstance(value, str):
        return None
    cut = value[:limit]
    if cut.isprintable():
        return cut
    return "".join(char if char.isprintable() else "?" for char in cut)


def _flagged(event: SecurityEvent) -> dict[str, str]:
    """``{"problem": ...}`` for a finding made from an event the parser flagged, else ``{}``."""
    problem = _text(event.problem, 256)
    return {} if problem is None else {"problem": problem}


def _evidence(event: SecurityEvent) -> tuple[int, ...]:
    seq = _seq(event.seq)
    return () if seq is None else (seq,)


def _host(source: str) -> str:
    """The host part of a peer address (``[::1]:8883`` and ``10.0.0.1:8883`` lose the port)."""
    if source.startswith("["):
        end = source.find("]")
        return source[1:end] if end > 0 else source
    if source.count(":") == 1:
        return source.split(":", 1)[0]
    return source


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address (an IPv4-mapped IPv6 one as IPv4), or ``None``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _peer_host(peer: object) -> str:
    """The host of a ``host:port`` peer field as the hub writes it (IPv6 hosts unbracketed)."""
    if not isinstance(peer, str) or not peer:
        return "unknown"
    host, _, port = peer.rpartition(":")
    if host and port.isascii() and port.isdigit():
        peer = host.removeprefix("[").removesuffix("]")
    return peer[:_MAX_TEXT]


def _peer(event: SecurityEvent) -> str | None:
    """The peer host of a hub event, canonical when it is an IP address.

    ``source``, else the ``peer`` field (model.py's comments name it so); the port is dropped
    and an address is written one way (``::ffff:10.0.0.1`` is ``10.0.0.1``), so that one host
    never looks like two.
    """
    source = event.source if isinstance(event.source, str) else event.fields.get("peer")
    if not isinstance(source, str) or not source:
        return None
    host = _host(source)
    address = _address(host)
    return host[:_MAX_TEXT] if address is None else str(address)


def _network(host: str) -> str | None:
    """The /24 (IPv4) or /64 (IPv6) network of ``host``, or ``None`` if it is not an address."""
    address = _address(host)
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Network((int(address) >> 8 << 8, 24)))
    # int() ignores a zone index (fe80::1%eth0): the network is the same on every link.
    return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))


def _attacker(host: str) -> str:
    """The key an attacking host is counted under: its IPv4 address, or its IPv6 /64.

    One subscriber gets at least a /64 (RFC 6177), so counting IPv6 addresses one by one would
    let a single attacker rotate through 2**64 of them.
    """
    network = _network(host) if ":" in host else None
    return host if network is None else network


def _touch(table: dict[str, _V], key: str, value: _V, max_keys: int) -> None:
    """Insert or refresh ``key`` as most recent; forget the least recent beyond ``max_keys``."""
    table.pop(key, None)
    table[key] = value
    while len(table) > max_keys:
        del table[next(iter(table))]


def _positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{owner}.{name} must be > 0, got {value!r}")


def _versioned(state: Mapping[str, Any]) -> bool:
    return isinstance(state, Mapping) and state.get("v") == _SNAPSHOT_VERSION


def _items(value: object) -> Iterator[tuple[str, Any]]:
    """The members of a snapshot table, skipping a table that is not one."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                yield key, item


def _finding(
    detector: str,
    alert_type: str,
    severity: Severity,
    device_id: str | None,
    summary: str,
    *,
    time: float,
    evidence: tuple[int, ...],
    **details: str,
) -> Finding:
    return Finding(
        detector=detector,
        alert_type=alert_type,
        severity=severity,
        device_id=device_id,
        summary=summary,
        time=time,
        evidence=evidence,
        details=details,
    )


@dataclass(frozen=True, slots=True)
class DetectorStatistics:
    """How much a detector remembers (trio-style ``statistics()`` record).

    Attributes:
        tracked_keys: identities, source addresses or networks in the detector's tables.
    """

    tracked_keys: int


class _Window:
    """The recent events of one key, and until when its findings are suppressed."""

    __slots__ = ("events", "suppressed_until")

    def __init__(self) -> None:
        self.events: list[tuple[float, int | None]] = []
        self.suppressed_until: float | None = None


class _WindowCounter:
    """Counts events per key within a sliding window; at most ``max_keys`` keys (LRU).

    ``hit`` reports a key when its count within the window reaches ``limit`` and the key is not
    suppressed, and then suppresses it for ``suppress_seconds``. A key never keeps more than
    ``limit`` events: older ones cannot change the answer.
    """

    __slots__ = ("_keys", "_limit", "_max_keys", "_suppress", "_window")

    def __init__(
        self, limit: int, window_seconds: float, suppress_seconds: float, max_keys: int
    ) -> None:
        self._limit = limit
        self._window = window_seconds
        self._suppress = suppress_seconds
        self._max_keys = max_keys
        self._keys: dict[str, _Window] = {}

    def hit(self, key: str, now: float, seq: int | None) -> tuple[int, ...] | None:
        """Count one event of ``key``; its evidence if the key fires now, else ``None``."""
        entry = self._keys.pop(key, None)
        if entry is None:
            entry = _Window()
        self._keys[key] = entry
        if len(self._keys) > self._max_keys:
            del self._keys[next(iter(self._keys))]
        events = entry.events
        horizon = now - self._window
        expired = 0
        for when, _ in events:
            if when > horizon:
                break
            expired += 1
        events.append((now, seq))
        del events[: max(expired, len(events) - self._limit)]
        if len(events) < self._limit:
            return None
        if entry.suppressed_until is not None and now < entry.suppressed_until:
            return None
        entry.suppressed_until = now + self._suppress
        return tuple(s for _, s in events if s is not None)

    def __len__(self) -> int:
        return len(self._keys)

    def snapshot(self) -> dict[str, Any]:
        return {
            key: {"events": [list(e) for e in entry.events], "until": entry.suppressed_until}
            for key, entry in self._keys.items()
        }

    def restore(self, table: object) -> None:
        self._keys = {}
        for key, item in _items(table):
            if not isinstance(item, Mapping) or not isinstance(item.get("events"), list):
                continue
            entry = _Window()
            for pair in item["events"][-self._limit :]:
                if isinstance(pair, list) and len(pair) == 2:
                    when = _number(pair[0])
                    if when is not None and (pair[1] is None or _seq(pair[1]) is not None):
                        entry.events.append((when, pair[1]))
            entry.suppressed_until = _number(item.get("until"))
            _touch(self._keys, key, entry, self._max_keys)


# ---------------------------------------------------------------------------------------------
# Tamper


class _Stateless:
    """What a detector that judges each report on its own has in common: no time, no state."""

    def tick(self, now: float) -> list[Finding]:  # noqa: ARG002 - nothing is time-driven
        """Nothing happens with time."""
        return []

    def snapshot(self) -> dict[str, Any]:
        """No state."""
        return {"v": _SNAPSHOT_VERSION}

    def restore(self, state: Mapping[str, Any]) -> None:
        """No state to restore."""

    def statistics(self) -> DetectorStatistics:
        """Nothing is tracked."""
        return DetectorStatistics(tracked_keys=0)


@dataclass(frozen=True, slots=True)
class TamperConfig:
    """Tamper detector settings.

    Attributes:
        return_states: tamper states that say the enclosure is back to normal. They are still
            reported, at HIGH rather than CRITICAL: someone had it open, and the opening may
            have been lost (power cut) or never sent (a compromised agent). Any other state,
            including a missing or unknown one, is CRITICAL: hostile input must not be able to
            downgrade a tamper report.
    """

    # The states of ironhub.monitor.events.TAMPER_STATES that are not alarm states.
    return_states: frozenset[str] = frozenset({"closed", "replaced", "cleared"})


class TamperDetector(_Stateless):
    """Every ``tamper`` event is a finding, even a garbled one (stateless)."""

    name = "tamper"
    kinds: frozenset[str] = frozenset({"tamper"})

    def __init__(self, config: TamperConfig | None = None) -> None:
        self._config = config or TamperConfig()

    def observe(self, event: SecurityEvent) -> list[Finding]:
        """A ``tamper`` finding for any tamper event."""
        device = event.device_id
        if event.kind != "tamper" or device is None:
            return []
        state = _text(event.fields.get("state"), 32)
        sensor = _text(event.fields.get("sensor")) or "unknown"
        returned = state is not None and state.lower() in self._config.return_states
        severity = Severity.HIGH if returned else Severity.CRITICAL
        return [
            _finding(
                self.name,
                "tamper",
                severity,
                device,
                f"Device {device} reported tampering (state: {state or 'unknown'}).",
                time=event.time,
                evidence=_evidence(event),
                sensor=sensor,
                state=state or "unknown",
                **_flagged(event),
            )
        ]


# ---------------------------------------------------------------------------------------------
# Physical access


@dataclass(frozen=True, slots=True)
class PhysicalAccessConfig:
    """Physical access detector settings.

    Attributes:
        maintenance_windows: configured windows: device identity (or ``"*"`` for every device)
            to ``(start, end)`` Unix-second intervals, start included, end excluded. Windows
            opened at run time with :meth:`PhysicalAccessDetector.set_window` add to these.
        remote_consoles: ``console`` values that name a network login, not a physical one
            (a ``pts/N`` pseudo-terminal is remote too).
        max_windows_per_device: run-time windows kept per device (the latest ending win).
        max_devices: devices with run-time windows.

    Raises:
        ValueError: a limit is not positive or a configured window is empty or not finite.
    """

    maintenance_windows: Mapping[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    remote_consoles: frozenset[str] = frozenset({"ssh", "web", "telnet", "rdp", "vnc", "network"})
    max_windows_per_device: int = 8
    max_devices: int = _DEFAULT_MAX_KEYS

    def __post_init__(self) -> None:
        _positive(
            "PhysicalAccessConfig",
            max_windows_per_device=self.max_windows_per_device,
            max_devices=self.max_devices,
        )
        for device, windows in self.maintenance_windows.items():
            for start, end in windows:
                if not _window_ok(start, end):
                    raise ValueError(f"maintenance window of {device!r} is not start < end")


class PhysicalAccessDetector:
    """USB attachments and console logins outside a maintenance window.

    The run-time windows are part of the state (``snapshot``), so a window an operator opened
    survives a restart. Expired windows are dropped when that device's windows are next used.
    """

    name = "physical-access"
    kinds: frozenset[str] = frozenset({"usb", "login"})

    def __init__(self, config: PhysicalAccessConfig | None = None) -> None:
        self._config = config or PhysicalAccessConfig()
        self._windows: dict[str, list[tuple[float, float]]] = {}

    def set_window(self, device_id: str, start: float, end: float) -> None:
        """Open a maintenance window for ``device_id`` (or ``"*"``): ``start <= t < end``.

        Raises:
            ValueError: the window is empty or its bounds are not finite Unix times.
        """
        if not _window_ok(start, end):
            raise ValueError("a maintenance window needs finite start < end")
        windows = [*self._windows.get(device_id, []), (float(start), float(end))]
        # Over the cap, keep the windows that end last: they are the ones still to be used.
        windows.sort(key=lambda w: w[1])
        _touch(
            self._windows,
            device_id,
            windows[-self._config.max_windows_per_device :],
            self._config.max_devices,
        )

    def clear_windows(self, device_id: str) -> None:
        """End every run-time window of ``device_id`` (configured ones stay)."""
        self._windows.pop(device_id, None)

    def _in_window(self, device: str, now: float) -> bool:
        configured = self._config.maintenance_windows
        for key in (device, "*"):
            for start, end in configured.get(key, ()):
                if start <= now < end:
                    return True
            windows = self._windows.get(key)
            if windows is None:
                continue
            # Events come in time order, so a window that ended is never needed again.
            windows[:] = [w for w in windows if w[1] > now]
            if not windows:
                del self._windows[key]
            elif any(start <= now for start, _ in windows):
                return True
        return False

    def _console(self, value: object) -> bool:
        """Whether a login's ``console`` names a local terminal (``tty1``, ``ttyS0``...)."""
        if isinstance(value, bool):
            return value
        text = _text(value)
        if not text:
            return False
        text = text.lower()
        return text not in self._config.remote_consoles and not text.startswith("pts")

    def observe(self, event: SecurityEvent) -> list[Finding]:
        """A finding for a USB attachment or console login outside every window."""
        device = event.device_id
        if device is None or not _time_ok(event.time):
            return []
        fields = event.fields
        if event.kind == "usb":
            if fields.get("action") != "attached" or self._in_window(device, event.time):
                return []
            return [
                _finding(
                    self.name,
                    "usb-outside-maintenance",
                    Severity.HIGH,
                    device,
                    f"A USB device was attached to {device} outside a maintenance window.",
                    time=event.time,
                    evidence=_evidence(event),
                    vendor=_text(fields.get("vendor")) or "unknown",
                    product=_text(fields.get("product")) or "unknown",
                    usb_class=_text(fields.get("class")) or "unknown",
                    **_flagged(event),
                )
            ]
        if (
            event.kind != "login"
            or not self._console(fields.get("console"))
            # A login with a network address came over the network, whatever its terminal.
            or _text(fields.get("address"))
            or self._in_window(device, event.time)
        ):
            return []
        outcome = (_text(fields.get("outcome"), 16) or "unknown").lower()
        details = {
            "console": _text(fields.get("console")) or "console",
            "outcome": outcome,
            **_flagged(event),
        }
        # A failed login's user name is often a password typed one field too early: only the
        # user of a successful login is kept.
        if outcome in {"success", "succeeded", "ok"}:
            details["user"] = _text(fields.get("user")) or "unknown"
        return [
            _finding(
                self.name,
                "console-login-outside-maintenance",
                Severity.HIGH,
                device,
                f"A console login ({outcome}) on {device} happened outside a maintenance window.",
                time=event.time,
                evidence=_evidence(event),
                **details,
            )
        ]

    def tick(self, now: float) -> list[Finding]:  # noqa: ARG002 - windows expire lazily
        """Nothing is time-driven."""
        return []

    def snapshot(self) -> dict[str, Any]:
        """The run-time maintenance windows."""
        return {
            "v": _SNAPSHOT_VERSION,
            "windows": {
                device: [list(window) for window in windows]
                for device, windows in self._windows.items()
            },
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace the run-time windows with a snapshot's."""
        self._windows = {}
        if not _versioned(state):
            return
        for device, windows in _items(state.get("windows")):
            if not isinstance(windows, list):
                continue
            for window in windows:
                if isinstance(window, list) and len(window) == 2:
                    start, end = _number(window[0]), _number(window[1])
                    if start is not None and end is not None and _window_ok(start, end):
                        self.set_window(device, start, end)

    def statistics(self) -> DetectorStatistics:
        """Devices with run-time windows."""
        return DetectorStatistics(tracked_keys=len(self._windows))


# ---------------------------------------------------------------------------------------------
# Anti-malware


@dataclass(frozen=True, slots=True)
class AntimalwareConfig:
    """Anti-malware detector settings.

    Attributes:
        max_definitions_age_hours: older definitions are stale (72 h, the issue's default:
            engines publish definitions at least daily, so this is three missed updates; it
            matches ``ironhub.monitor.events`` deriving the age from ``definitions_time``).

    Raises:
        ValueError: the maximum age is not positive.
    """

    max_definitions_age_hours: float = 72.0

    def __post_init__(self) -> None:
        _positive("AntimalwareConfig", max_definitions_age_hours=self.max_definitions_age_hours)


class AntimalwareDetector(_Stateless):
    """Disabled engine, stale definitions, detections: per report (stateless)."""

    name = "antimalware"
    kinds: frozenset[str] = frozenset({"antimalware"})

    def __init__(
        self, config: AntimalwareConfig | None = None, profiles: ProfileBook | None = None
    ) -> None:
        self._config = config or AntimalwareConfig()
        self._profiles = profiles

    def observe(self, event: SecurityEvent) -> list[Finding]:
        """Up to three findings for one anti-malware report."""
        device = event.device_id
        if event.kind != "antimalware" or device is None:
            return []
        fields = event.fields
        common = {"engine": _text(fields.get("engine")) or "unknown", **_flagged(event)}
        evidence = _evidence(event)
        findings = []
        if fields.get("enabled") is False:
            findings.append(
                _finding(
                    self.name,
                    "antimalware-disabled",
                    Severity.HIGH,
                    device,
                    f"Anti-malware is disabled on {device}.",
                    time=event.time,
                    evidence=evidence,
                    **common,
                )
            )
        age = _number(fields.get("definitions_age_hours"))
        limit = self._config.max_definitions_age_hours
        profile = _profile_of(self._profiles, event)
        if profile is not None and profile.baseline is not None:
            limit = profile.baseline.max_definitions_age_hours or limit
        if age is not None and age > limit:
            findings.append(
                _finding(
                    self.name,
                    "antimalware-stale",
                    Severity.MEDIUM,
                    device,
                    f"Anti-malware definitions on {device} are {age:.0f} hours old "
                    f"(maximum {limit:g}).",
                    time=event.time,
                    evidence=evidence,
                    **common,
                    definitions_age_hours=f"{age:g}",
                    **_profile_details(profile),
                )
            )
        detections = fields.get("detections")
        # Every item counts, whatever its shape: a malformed detection is still a detection.
        if isinstance(detections, list) and detections:
            first = detections[0] if isinstance(detections[0], Mapping) else {}
            findings.append(
                _finding(
                    self.name,
                    "malware-detected",
                    Severity.CRITICAL,
                    device,
                    f"Anti-malware on {device} reported {len(detections)} detection(s).",
                    time=event.time,
                    evidence=evidence,
                    **common,
                    detections=str(len(detections)),
                    name=_text(first.get("name")) or "unknown",
                    path=_text(first.get("path"), 128) or "unknown",
                )
            )
        return findings


# ---------------------------------------------------------------------------------------------
# Inventory below baseline


@dataclass(frozen=True, slots=True)
class InventoryBaselineConfig:
    """Minimum versions for devices whose profile sets no baseline (none by default).

    A device's profile (:mod:`ironhub.monitor.profiles`) with a ``baseline`` replaces these
    for that device; these are the hub-wide fallback.

    Attributes:
        minimum_os_versions: OS name (``os.name``) to minimum ``os.version``.
        minimum_kernel_version: minimum ``os.kernel``, or ``None``.
        minimum_driver_versions: driver name to minimum version.
        minimum_package_versions: package name to minimum version; a key
            ``"ecosystem:name"`` applies to that ecosystem only and wins over a plain name.
        max_listed: below-baseline items named in a finding's details (all are counted).
    """

    minimum_os_versions: Mapping[str, str] = field(default_factory=dict)
    minimum_kernel_version: str | None = None
    minimum_driver_versions: Mapping[str, str] = field(default_factory=dict)
    minimum_package_versions: Mapping[str, str] = field(default_factory=dict)
    max_listed: int = 5


def _profile_of(profiles: ProfileBook | None, event: SecurityEvent) -> DeviceProfile | None:
    return None if profiles is None else profiles.resolve(event.profile)


def _profile_details(profile: DeviceProfile | None) -> dict[str, str]:
    return {} if profile is None else {"profile": profile.name}


class InventoryBaselineDetector(_Stateless):
    """An inventory report with anything below its minimum version (stateless).

    The minimums are the device profile's ``baseline`` when it has one, else the configured
    hub-wide ones.
    """

    name = "inventory-baseline"
    kinds: frozenset[str] = frozenset({"inventory"})

    def __init__(
        self, config: InventoryBaselineConfig | None = None, profiles: ProfileBook | None = None
    ) -> None:
        config = self._config = config or InventoryBaselineConfig()
        self._profiles = profiles
        self._default = Baseline(
            os_versions=config.minimum_os_versions,
            kernel_version=config.minimum_kernel_version,
            driver_versions=config.minimum_driver_versions,
            package_versions=config.minimum_package_versions,
        )

    def observe(self, event: SecurityEvent) -> list[Finding]:
        """One finding per inventory report with anything below the baseline."""
        device = event.device_id
        if event.kind != "inventory" or device is None:
            return []
        profile = _profile_of(self._profiles, event)
        baseline = self._default
        if profile is not None and profile.baseline is not None:
            baseline = profile.baseline
        below = baseline.gaps(event.fields)
        if not below:
            return []
        return [
            _finding(
                self.name,
                "inventory-below-baseline",
                Severity.HIGH,
                device,
                f"{len(below)} component(s) on {device} are below the minimum version baseline.",
                time=event.time,
                evidence=_evidence(event),
                count=str(len(below)),
                items="; ".join(below[: self._config.max_listed]),
                **_profile_details(profile),
                **_flagged(event),
            )
        ]


# ---------------------------------------------------------------------------------------------
# Profile drift


class ProfileDriftDetector(_Stateless):
    """A ``ports``, ``usb`` or ``login`` report that departs from the device's hardware profile.

    Stateless: each report is judged whole (a ``ports`` report lists every socket and
    interface). Devices whose profile has no ``hardware`` section, or that have no profile,
    are not judged. One finding per report, naming the first departures.
    """

    name = "profile-drift"
    kinds: frozenset[str] = frozenset({"ports", "usb", "login"})

    def __init__(self, profiles: ProfileBook, max_listed: int = 5) -> None:
        self._profiles = profiles
        self._max_listed = max_listed

    def observe(self, event: SecurityEvent) -> list[Finding]:
        """One finding per report that does not fit the device's hardware profile."""
        device = event.device_id
        profile = self._profiles.resolve(event.profile)
        if device is None or profile is None or profile.hardware is None:
            return []
        drift = hardware_drift(profile.hardware, event.kind, event.fields)
        if not drift:
            return []
        return [
            _finding(
                self.name,
                "profile-drift",
                Severity.HIGH,
                device,
                f"{device} reports {len(drift)} departure(s) from its hardware profile "
                f"{profile.name!r}.",
                time=event.time,
                evidence=_evidence(event),
                profile=profile.name,
                count=str(len(drift)),
                items="; ".join(drift[: self._max_listed]),
                **_flagged(event),
            )
        ]


# ---------------------------------------------------------------------------------------------
# Vulnerable packages


_ADVISORY_SEVERITY: Final = {
    "critical": Severity.CRITICAL,
    "high": Severity.HIGH,
    "medium": Severity.MEDIUM,
    "low": Severity.LOW,
}


class AdvisoryDetector(_Stateless):
    """An inventory report with a package that an imported advisory says is vulnerable.

    The advisories are configuration (imported with ``ironhub advisories import``), replaced
    with :meth:`set_index`; an inventory is matched package by package (an index lookup
    each). The finding's severity is the highest among the matches (an advisory without one
    counts as medium).
    """

    name = "advisories"
    kinds: frozenset[str] = frozenset({"inventory"})

    def __init__(self, index: AdvisoryIndex | None = None, max_listed: int = 5) -> None:
        self._index = index or AdvisoryIndex(())
        self._max_listed = max_listed

    @property
    def index(self) -> AdvisoryIndex:
        """The advisories in force."""
        return self._index

    def set_index(self, index: AdvisoryIndex) -> None:
        """Replace the advisories in force."""
        self._index = index

    def observe(self, event: SecurityEvent) -> list[Finding]:
        """One finding per inventory report with a vulnerable package."""
        device = event.device_id
        packages = event.fields.get("packages")
        if event.kind != "inventory" or device is None or not isinstance(packages, list):
            return []
        matches = match_inventory(self._index, packages)
        if not matches:
            return []
        severity = max(
            (_ADVISORY_SEVERITY.get(m.severity, Severity.MEDIUM) for m in matches),
            key=_SEVERITY_ORDER.index,
        )
        listed = [
            f"{m.advisory_id} {_text(m.package)} {_text(m.installed_version, 32)}"
            + (f" (fixed in {_text(m.fixed, 32)})" if m.fixed else "")
            for m in matches[: self._max_listed]
        ]
        return [
            _finding(
                self.name,
                "vulnerable-package",
                severity,
                device,
                f"{len(matches)} known vulnerability(ies) in the packages of {device}.",
                time=event.time,
                evidence=_evidence(event),
                count=str(len(matches)),
                advisories="; ".join(listed),
                **_flagged(event),
            )
        ]


# ---------------------------------------------------------------------------------------------
# Brute force


@dataclass(frozen=True, slots=True)
class BruteForceConfig:
    """Brute-force detector settings.

    The defaults follow NIST SP 800-63B §5.2.2 (at most 100 consecutive failures per account)
    scaled to a 5-minute window, and fail2ban's default ``maxretry``/``findtime`` order of
    magnitude (5 per 10 min for interactive logins; devices retry automatically, hence 10).

    Attributes:
        failures_per_identity: failures of one claimed identity within the window that fire.
        failures_per_source: failures from one source address within the window that fire.
        window_seconds: the sliding window.
        suppress_seconds: after firing, a key is quiet this long (then fires again if the
            attack goes on).
        max_identities: identities tracked (they are attacker-chosen strings).
        max_sources: source addresses tracked.
        ignored_reasons: refusal reasons that are the hub's failure, not the client's
            (``storage-unavailable``: docs/security-events.md), and are not counted.

    Raises:
        ValueError: a limit is not positive.
    """

    failures_per_identity: int = 10
    failures_per_source: int = 30
    window_seconds: float = 300.0
    suppress_seconds: float = 300.0
    # Smaller than the other tables: both keys are chosen by an unauthenticated attacker, and
    # each key may hold up to `failures_per_*` events (about 110 bytes each).
    max_identities: int = 16_384
    max_sources: int = 16_384
    ignored_reasons: frozenset[str] = frozenset({"storage-unavailable"})

    def __post_init__(self) -> None:
        _positive(
            "BruteForceConfig",
            failures_per_identity=self.failures_per_identity,
            failures_per_source=self.failures_per_source,
            window_seconds=self.window_seconds,
            suppress_seconds=self.suppress_seconds,
            max_identities=self.max_identities,
            max_sources=self.max_sources,
        )


class BruteForceDetector:
    """Authentication failures per claimed identity and per source address."""

    name = "brute-force"
    kinds: frozenset[str] = frozenset({"auth-failed"})

    def __init__(self, config: BruteForceConfig | None = None) -> None:
        config = self._config = config or BruteForceConfig()
        self._identities = _WindowCounter(
            config.failures_per_identity,
            config.window_seconds,
            config.suppress_seconds,
            config.max_identities,
        )
        self._sources = _WindowCounter(
            config.failures_per_source,
            config.window_seconds,
            config.suppress_seconds,
            config.max_sources,
        )

    def observe(self, event: SecurityEvent) -> list[Finding]:
        """Count one failure; a finding per key that crosses its threshold."""
        if event.kind != "auth-failed" or not _time_ok(event.time):
            return []
        reason = event.fields.get("reason")
        if isinstance(reason, str) and reason in self._config.ignored_reasons:
            return []
        findings = []
        window = self._config.window_seconds
        device, source, seq = event.device_id, _peer(event), _seq(event.seq)
        source = None if source is None else _attacker(source)
        if device is not None:
            evidence = self._identities.hit(device, event.time, seq)
            if evidence is not None:
                findings.append(
                    _finding(
                        self.name,
                        "brute-force",
                        Severity.HIGH,
                        device,
                        f"At least {self._config.failures_per_identity} authentication failures"
                        f" for {device} within {window:g} s.",
                        time=event.time,
                        evidence=evidence,
                        key="identity",
                        source=source or "unknown",
                        window_seconds=f"{window:g}",
                    )
                )
        if source is not None:
            evidence = self._sources.hit(source, event.time, seq)
            if evidence is not None:
                findings.append(
                    _finding(
                        self.name,
                        "brute-force",
                        Severity.HIGH,
                        None,
                        f"At least {self._config.failures_per_source} authentication failures"
                        f" from {source} within {window:g} s.",
                        time=event.time,
                        evidence=evidence,
                        key="source",
                        source=source,
                        window_seconds=f"{window:g}",
                    )
                )
        return findings

    def tick(self, now: float) -> list[Finding]:  # noqa: ARG002 - windows slide on events
        """Nothing is time-driven."""
        return []

    def snapshot(self) -> dict[str, Any]:
        """The failure windows per identity and per source."""
        return {
            "v": _SNAPSHOT_VERSION,
            "identities": self._identities.snapshot(),
            "sources": self._sources.snapshot(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace the failure windows with a snapshot's."""
        ok = _versioned(state)
        self._identities.restore(state.get("identities") if ok else None)
        self._sources.restore(state.get("sources") if ok else None)

    def statistics(self) -> DetectorStatistics:
        """Identities and sources tracked."""
        return DetectorStatistics(tracked_keys=len(self._identities) + len(self._sources))


# ---------------------------------------------------------------------------------------------
# Masquerade


@dataclass(frozen=True, slots=True)
class MasqueradeConfig:
    """Masquerade detector settings.

    Attributes:
        two_sources_window_seconds: two connects of one identity from different addresses
            closer than this fire. Short on purpose: a device that roams (Wi-Fi to cellular)
            reconnects from a new address too, but rarely within a minute of the last connect.
        takeovers: take-overs of one identity within ``takeover_window_seconds`` that fire.
        takeover_window_seconds: the take-over window.
        suppress_seconds: after firing, the identity is quiet this long.
        max_devices: identities tracked.

    Raises:
        ValueError: a limit is not positive.
    """

    two_sources_window_seconds: float = 60.0
    takeovers: int = 3
    takeover_window_seconds: float = 600.0
    suppress_seconds: float = 600.0
    max_devices: int = _DEFAULT_MAX_KEYS

    def __post_init__(self) -> None:
        _positive(
            "MasqueradeConfig",
            two_sources_window_seconds=self.two_sources_window_seconds,
            takeovers=self.takeovers,
            takeover_window_seconds=self.takeover_window_seconds,
            suppress_seconds=self.suppress_seconds,
            max_devices=self.max_devices,
        )


class _LastConnect:
    __slots__ = ("seq", "source", "suppressed_until", "time")

    def __init__(
        self, source: str, time: float, seq: int | None, suppressed_until: float | None
    ) -> None:
        self.source = source
        self.time = time
        self.seq = seq
        self.suppressed_until = suppressed_until


class MasqueradeDetector:
    """One identity used from two places: two addresses in a short time, or take-overs."""

    name = "masquerade"
    kinds: frozenset[str] = frozenset({"connected", "takeover"})

    def __init__(self, config: MasqueradeConfig | None = None) -> None:
        config = self._config = config or MasqueradeConfig()
        self._last: dict[str, _LastConnect] = {}
        self._takeovers = _WindowCounter(
            config.takeovers,
            config.takeover_window_seconds,
            config.suppress_seconds,
            config.max_devices,
        )

    def _connected(self, device: str, source: str, event: SecurityEvent) -> list[Finding]:
        now, seq = event.time, _seq(event.seq)
        last = self._last.get(device)
        entry = _LastConnect(source, now, seq, None if last is None else last.suppressed_until)
        _touch(self._last, device, entry, self._config.max_devices)
        if (
            last is None
            or last.source == source
            or now - last.time > self._config.two_sources_window_seconds
            or (last.suppressed_until is not None and now < last.suppressed_until)
        ):
            return []
        entry.suppressed_until = now + self._config.suppress_seconds
        evidence = tuple(s for s in (last.seq, seq) if s is not None)
        return [
            _finding(
                self.name,
                "masquerade",
                Severity.CRITICAL,
                device,
                f"{device} connected from two source addresses within {now - last.time:.0f} s.",
                time=now,
                evidence=evidence,
                reason="two-sources",
                first_source=last.source,
                second_source=source,
            )
        ]

    def _takeover(self, device: str, event: SecurityEvent) -> list[Finding]:
        evidence = self._takeovers.hit(device, event.time, _seq(event.seq))
        if evidence is None:
            return []
        old = event.fields.get("old_peer")
        new = event.fields.get("new_peer")
        return [
            _finding(
                self.name,
                "masquerade",
                Severity.CRITICAL,
                device,
                f"{device} was taken over {self._config.takeovers} times within "
                f"{self._config.takeover_window_seconds:g} s (repeated takeovers).",
                time=event.time,
                evidence=evidence,
                reason="repeated-takeovers",
                old_peer=_peer_host(old),
                new_peer=_peer_host(new),
            )
        ]

    def observe(self, event: SecurityEvent) -> list[Finding]:
        """Check a connect against the identity's last one, or count a take-over."""
        device = event.device_id
        if device is None or not _time_ok(event.time):
            return []
        if event.kind == "takeover":
            return self._takeover(device, event)
        if event.kind != "connected":
            return []
        source = _peer(event)
        return [] if source is None else self._connected(device, source, event)

    def tick(self, now: float) -> list[Finding]:  # noqa: ARG002 - windows slide on events
        """Nothing is time-driven."""
        return []

    def snapshot(self) -> dict[str, Any]:
        """The last connect of each identity and the take-over windows."""
        return {
            "v": _SNAPSHOT_VERSION,
            "last": {
                device: [last.source, last.time, last.seq, last.suppressed_until]
                for device, last in self._last.items()
            },
            "takeovers": self._takeovers.snapshot(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace the state with a snapshot's."""
        self._last = {}
        ok = _versioned(state)
        self._takeovers.restore(state.get("takeovers") if ok else None)
        if not ok:
            return
        for device, item in _items(state.get("last")):
            if not isinstance(item, list) or len(item) != 4:
                continue
            source, when, seq, until = item
            if isinstance(source, str) and (when := _number(when)) is not None:
                entry = _LastConnect(source, when, _seq(seq), _number(until))
                _touch(self._last, device, entry, self._config.max_devices)

    def statistics(self) -> DetectorStatistics:
        """Identities tracked."""
        return DetectorStatistics(tracked_keys=len(self._last) + len(self._takeovers))


# ---------------------------------------------------------------------------------------------
# Flapping


@dataclass(frozen=True, slots=True)
class FlappingConfig:
    """Flapping detector settings.

    Attributes:
        max_connects: more connects than this within the window fire (a healthy device
            connects a few times a day; 20 in 5 minutes is a reconnect loop or a fight over
            one identity).
        window_seconds: the sliding window.
        suppress_seconds: after firing, the identity is quiet this long.
        max_devices: identities tracked.

    Raises:
        ValueError: a limit is not positive.
    """

    max_connects: int = 20
    window_seconds: float = 300.0
    suppress_seconds: float = 300.0
    max_devices: int = _DEFAULT_MAX_KEYS

    def __post_init__(self) -> None:
        _positive(
            "FlappingConfig",
            max_connects=self.max_connects,
            window_seconds=self.window_seconds,
            suppress_seconds=self.suppress_seconds,
            max_devices=self.max_devices,
        )


class FlappingDetector:
    """Reconnect storms: too many connects of one identity in a window."""

    name = "flapping"
    kinds: frozenset[str] = frozenset({"connected"})

    def __init__(self, config: FlappingConfig | None = None) -> None:
        config = self._config = config or FlappingConfig()
        self._connects = _WindowCounter(
            config.max_connects + 1,
            config.window_seconds,
            config.suppress_seconds,
            config.max_devices,
        )

    def observe(self, event: SecurityEvent) -> list[Finding]:
        """Count one connect; a finding when the identity goes over the limit."""
        device = event.device_id
        if event.kind != "connected" or device is None or not _time_ok(event.time):
            return []
        evidence = self._connects.hit(device, event.time, _seq(event.seq))
        if evidence is None:
            return []
        window = self._config.window_seconds
        return [
            _finding(
                self.name,
                "flapping",
                Severity.MEDIUM,
                device,
                f"{device} connected more than {self._config.max_connects} times within "
                f"{window:g} s.",
                time=event.time,
                evidence=evidence,
                connects=str(self._config.max_connects + 1),
                window_seconds=f"{window:g}",
            )
        ]

    def tick(self, now: float) -> list[Finding]:  # noqa: ARG002 - windows slide on events
        """Nothing is time-driven."""
        return []

    def snapshot(self) -> dict[str, Any]:
        """The connect windows."""
        return {"v": _SNAPSHOT_VERSION, "connects": self._connects.snapshot()}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace the connect windows with a snapshot's."""
        self._connects.restore(state.get("connects") if _versioned(state) else None)

    def statistics(self) -> DetectorStatistics:
        """Identities tracked."""
        return DetectorStatistics(tracked_keys=len(self._connects))


# ---------------------------------------------------------------------------------------------
# Message rate and size anomalies


@dataclass(frozen=True, slots=True)
class RateAnomalyConfig:
    """Rate and size anomaly settings.

    The baselines are exponentially weighted moving averages (EWMA), as in TCP's smoothed
    round-trip time (RFC 6298 §2) and the Unix load average: O(1) time and memory per device,
    recent history weighs most, and nothing has to be stored per bucket.

    Attributes:
        bucket_seconds: the rate is counted per bucket of this length (aligned to the epoch;
            at least 1 s).
        warmup_buckets: buckets of history (empty ones count) before a rate finding.
        warmup_messages: messages of history before a size finding.
        rate_factor: a bucket with more than ``rate_factor`` x the baseline fires...
        min_anomalous_messages_per_bucket: ...and more than this many messages: an almost
            silent device's baseline is near zero, and its 3 messages are not an anomaly.
        size_factor: a message larger than ``size_factor`` x the baseline size fires...
        min_anomalous_bytes: ...and larger than this.
        rate_smoothing: EWMA weight of the newest bucket (0.2: half-life of about 3 buckets).
        size_smoothing: EWMA weight of the newest message size.
        max_devices: devices tracked.

    Raises:
        ValueError: a limit is not positive, a smoothing weight is not in (0, 1] or the bucket
            is shorter than 1 s.
    """

    bucket_seconds: float = 60.0
    warmup_buckets: int = 10
    warmup_messages: int = 10
    rate_factor: float = 10.0
    min_anomalous_messages_per_bucket: int = 60
    size_factor: float = 10.0
    min_anomalous_bytes: int = 32_768
    rate_smoothing: float = 0.2
    size_smoothing: float = 0.05
    max_devices: int = _DEFAULT_MAX_KEYS

    def __post_init__(self) -> None:
        _positive(
            "RateAnomalyConfig",
            bucket_seconds=self.bucket_seconds,
            warmup_buckets=self.warmup_buckets,
            warmup_messages=self.warmup_messages,
            rate_factor=self.rate_factor,
            size_factor=self.size_factor,
            rate_smoothing=self.rate_smoothing,
            size_smoothing=self.size_smoothing,
            max_devices=self.max_devices,
        )
        if self.rate_smoothing > 1 or self.size_smoothing > 1:
            raise ValueError("RateAnomalyConfig smoothing weights must be in (0, 1]")
        # Bucket indexes are integers: time // bucket_seconds must stay far from overflow.
        if not self.bucket_seconds >= 1:
            raise ValueError("RateAnomalyConfig.bucket_seconds must be >= 1")


class _Traffic:
    """One device's traffic baseline (a few numbers: O(1) memory per device)."""

    __slots__ = (
        "bucket",
        "buckets",
        "count",
        "rate",
        "rate_alerted",
        "rate_limit",
        "size",
        "size_alerted",
        "sizes",
    )

    def __init__(self, bucket: int) -> None:
        self.bucket = bucket  # the current bucket's index (time // bucket_seconds)
        self.count = 0  # messages in the current bucket
        self.rate = 0.0  # baseline messages per bucket (EWMA of closed buckets)
        self.buckets = 0  # closed buckets of history, counted up to the warm-up only
        self.rate_limit = math.inf  # count above which a bucket is anomalous (inf: warming up)
        self.rate_alerted = False  # the current bucket was reported
        self.size = 0.0  # baseline message size in bytes (EWMA)
        self.sizes = 0  # messages of size history, counted up to the warm-up only
        self.size_alerted = False  # a size anomaly was reported in the current bucket


class RateAnomalyDetector:
    """Message rate and size against the device's own recent history; O(1) per event.

    Per device: the count of the current bucket, an EWMA of the counts of closed buckets (the
    empty buckets in a gap count as zero, in one multiplication) and an EWMA of message sizes.
    A bucket is reported the moment its count crosses the limit, not when it closes, and at
    most once. The value fed into each EWMA is capped at the anomaly limit, so one flood or one
    huge message cannot inflate the baseline enough to hide the next one, while a lasting
    change still moves it by up to ``smoothing x (factor - 1)`` per step.
    """

    name = "rate-anomaly"
    kinds: frozenset[str] = frozenset({"message"})

    # Gaps longer than this many buckets decay the baseline as if it were this many: after
    # 10,000 buckets any weight below 1 has taken it to zero, and pow() stays cheap.
    _MAX_GAP: Final = 10_000

    def __init__(self, config: RateAnomalyConfig | None = None) -> None:
        self._config = config or RateAnomalyConfig()
        self._devices: dict[str, _Traffic] = {}

    def _limit(self, traffic: _Traffic) -> float:
        if traffic.buckets < self._config.warmup_buckets:
            return math.inf
        config = self._config
        return max(traffic.rate * config.rate_factor, config.min_anomalous_messages_per_bucket)

    def _roll(self, traffic: _Traffic, bucket: int) -> None:
        """Close the current bucket (and any empty ones) and open ``bucket``."""
        config = self._config
        weight = config.rate_smoothing
        count = min(traffic.count, traffic.rate_limit)
        if traffic.buckets == 0:
            traffic.rate = float(count)
        else:
            traffic.rate += weight * (count - traffic.rate)
        gap = min(bucket - traffic.bucket - 1, self._MAX_GAP)
        if gap > 0:
            traffic.rate *= (1.0 - weight) ** gap
        traffic.buckets = min(traffic.buckets + 1 + gap, config.warmup_buckets)
        traffic.bucket = bucket
        traffic.count = 0
        traffic.rate_alerted = traffic.size_alerted = False
        traffic.rate_limit = self._limit(traffic)

    def observe(self, event: SecurityEvent) -> list[Finding]:
        """Count one message; a finding if its bucket or its size is anomalous."""
        device, now = event.device_id, event.time
        if event.kind != "message" or device is None or not _time_ok(now):
            return []
        config = self._config
        bucket = int(now // config.bucket_seconds)
        traffic = self._devices.get(device)
        if traffic is None:
            traffic = _Traffic(bucket)
            _touch(self._devices, device, traffic, config.max_devices)
        elif bucket > traffic.bucket:
            self._roll(traffic, bucket)
            # Recency is refreshed once per bucket, not per message: cheaper, and enough to
            # tell an active device from one a flood should evict.
            _touch(self._devices, device, traffic, config.max_devices)
        traffic.count += 1
        findings: list[Finding] = []
        if traffic.count > traffic.rate_limit and not traffic.rate_alerted:
            traffic.rate_alerted = True
            findings.append(self._rate_finding(device, traffic, event))
        size = event.fields.get("bytes")
        if type(size) is int and 0 <= size <= _MAX_NUMBER:
            if traffic.sizes >= config.warmup_messages:
                size_limit = max(traffic.size * config.size_factor, config.min_anomalous_bytes)
                if size > size_limit and not traffic.size_alerted:
                    traffic.size_alerted = True
                    findings.append(self._size_finding(device, traffic, size, event))
                traffic.size += config.size_smoothing * (min(size, size_limit) - traffic.size)
            else:
                traffic.size += (size - traffic.size) / (traffic.sizes + 1)
                traffic.sizes += 1
        return findings

    def _rate_finding(self, device: str, traffic: _Traffic, event: SecurityEvent) -> Finding:
        config = self._config
        return _finding(
            self.name,
            "rate-anomaly",
            Severity.MEDIUM,
            device,
            f"{device} sent more than {traffic.count - 1} messages in one "
            f"{config.bucket_seconds:g}-second bucket, over {config.rate_factor:g}x its "
            f"baseline of {traffic.rate:.1f}.",
            time=event.time,
            evidence=_evidence(event),
            messages=str(traffic.count),
            baseline_messages=f"{traffic.rate:.2f}",
            bucket_seconds=f"{config.bucket_seconds:g}",
        )

    def _size_finding(
        self, device: str, traffic: _Traffic, size: int, event: SecurityEvent
    ) -> Finding:
        factor = self._config.size_factor
        return _finding(
            self.name,
            "size-anomaly",
            Severity.MEDIUM,
            device,
            f"{device} sent a {size}-byte message, over {factor:g}x its baseline of "
            f"{traffic.size:.0f} bytes.",
            time=event.time,
            evidence=_evidence(event),
            bytes=str(size),
            baseline_bytes=f"{traffic.size:.0f}",
        )

    def tick(self, now: float) -> list[Finding]:  # noqa: ARG002 - buckets close on events
        """Nothing is time-driven: a silent bucket is accounted for at the next message."""
        return []

    def snapshot(self) -> dict[str, Any]:
        """Each device's baseline."""
        return {
            "v": _SNAPSHOT_VERSION,
            "devices": {
                device: [
                    t.bucket,
                    t.count,
                    t.rate,
                    t.buckets,
                    t.rate_alerted,
                    t.size,
                    t.sizes,
                    t.size_alerted,
                ]
                for device, t in self._devices.items()
            },
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace the baselines with a snapshot's."""
        self._devices = {}
        if not _versioned(state):
            return
        config = self._config
        for device, item in _items(state.get("devices")):
            if not isinstance(item, list) or len(item) != 8:
                continue
            bucket, count, rate, buckets, rate_alerted, size, sizes, size_alerted = item
            rate, size = _number(rate), _number(size)
            integers = (bucket, count, buckets, sizes)
            if rate is None or size is None or not all(type(v) is int for v in integers):
                continue
            if not (_time_ok(bucket) and 0 <= count <= _MAX_NUMBER and rate >= 0 and size >= 0):
                continue
            traffic = _Traffic(bucket)
            traffic.count = count
            traffic.rate = rate
            traffic.buckets = max(0, min(buckets, config.warmup_buckets))
            traffic.rate_alerted = rate_alerted is True
            traffic.size = size
            traffic.sizes = max(0, min(sizes, config.warmup_messages))
            traffic.size_alerted = size_alerted is True
            traffic.rate_limit = self._limit(traffic)
            _touch(self._devices, device, traffic, config.max_devices)

    def statistics(self) -> DetectorStatistics:
        """Devices tracked."""
        return DetectorStatistics(tracked_keys=len(self._devices))


# ---------------------------------------------------------------------------------------------
# New source network


@dataclass(frozen=True, slots=True)
class NewNetworkConfig:
    """New source network settings.

    Attributes:
        min_connects: connects of history before a new network is reported (a new device's
            first networks are its normal ones).
        max_networks_per_device: networks remembered per device, least recently used
            forgotten first (a device roaming over more than this is reported on return).
        max_devices: devices tracked.

    Raises:
        ValueError: a limit is not positive.
    """

    min_connects: int = 3
    max_networks_per_device: int = 16
    max_devices: int = _DEFAULT_MAX_KEYS

    def __post_init__(self) -> None:
        _positive(
            "NewNetworkConfig",
            min_connects=self.min_connects,
            max_networks_per_device=self.max_networks_per_device,
            max_devices=self.max_devices,
        )


class _Networks:
    __slots__ = ("connects", "networks")

    def __init__(self, connects: int, networks: list[str]) -> None:
        self.connects = connects  # counted up to min_connects only
        self.networks = networks  # least recently used first


class NewNetworkDetector:
    """A device connecting from a /24 or /64 it has not used recently."""

    name = "new-network"
    kinds: frozenset[str] = frozenset({"connected"})

    def __init__(self, config: NewNetworkConfig | None = None) -> None:
        self._config = config or NewNetworkConfig()
        self._devices: dict[str, _Networks] = {}

    def observe(self, event: SecurityEvent) -> list[Finding]:
        """Remember the connect's network; a finding if it is new to an established device."""
        device = event.device_id
        if event.kind != "connected" or device is None:
            return []
        source = _peer(event)
        network = None if source is None else _network(source)
        if network is None:
            return []
        config = self._config
        history = self._devices.pop(device, None) or _Networks(0, [])
        _touch(self._devices, device, history, config.max_devices)
        known = network in history.networks
        if known:
            history.networks.remove(network)
        history.networks.append(network)
        del history.networks[: -config.max_networks_per_device]
        established = history.connects >= config.min_connects
        history.connects = min(history.connects + 1, config.min_connects)
        if known or not established:
            return []
        return [
            _finding(
                self.name,
                "new-source-network",
                Severity.MEDIUM,
                device,
                f"{device} connected from network {network}, which it has not used recently.",
                time=event.time,
                evidence=_evidence(event),
                network=network,
                source=str(source),
            )
        ]

    def tick(self, now: float) -> list[Finding]:  # noqa: ARG002 - nothing is time-driven
        """Nothing is time-driven."""
        return []

    def snapshot(self) -> dict[str, Any]:
        """Each device's recent networks."""
        return {
            "v": _SNAPSHOT_VERSION,
            "devices": {
                device: {"connects": h.connects, "networks": list(h.networks)}
                for device, h in self._devices.items()
            },
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace the networks with a snapshot's."""
        self._devices = {}
        if not _versioned(state):
            return
        config = self._config
        for device, item in _items(state.get("devices")):
            if not isinstance(item, Mapping):
                continue
            connects, networks = item.get("connects"), item.get("networks")
            if type(connects) is not int or not isinstance(networks, list):
                continue
            kept = [n for n in networks if isinstance(n, str)][-config.max_networks_per_device :]
            history = _Networks(max(0, min(connects, config.min_connects)), kept)
            _touch(self._devices, device, history, config.max_devices)

    def statistics(self) -> DetectorStatistics:
        """Devices tracked."""
        return DetectorStatistics(tracked_keys=len(self._devices))


# ---------------------------------------------------------------------------------------------
# Silent security stream


@dataclass(frozen=True, slots=True)
class SilenceConfig:
    """Silent security stream settings.

    Attributes:
        max_silence_seconds: a device that sent security messages and then none for longer
            than this is reported (24 h, the issue's default: an agent reports its inventory
            and anti-malware status at least daily, so a day without a word is a dead agent).
        max_devices: devices tracked (already reported ones are forgotten first).

    Raises:
        ValueError: a limit is not positive.
    """

    max_silence_seconds: float = 86_400.0
    max_devices: int = _DEFAULT_MAX_KEYS

    def __post_init__(self) -> None:
        _positive(
            "SilenceConfig",
            max_silence_seconds=self.max_silence_seconds,
            max_devices=self.max_devices,
        )


class SilenceDetector:
    """A device whose security stream went quiet: reported once per silence, from ``tick``.

    Any event of a known device kind counts as the stream speaking, even a garbled one (the
    agent is alive and speaks the protocol); ``unknown`` events do not: a device that sends
    nothing but garbage has no working security agent. The devices are kept in two
    tables ordered by their last event: ``_active`` (not reported) and ``_silent`` (reported,
    waiting to speak again). ``tick`` walks ``_active`` from the oldest and stops at the first
    device still within the limit, so a tick costs O(1 + devices reported).
    """

    name = "silence"
    kinds: frozenset[str] = DEVICE_EVENT_KINDS

    def __init__(self, config: SilenceConfig | None = None) -> None:
        self._config = config or SilenceConfig()
        # device -> (time, seq) of its last security event, oldest first.
        self._active: dict[str, tuple[float, int | None]] = {}
        self._silent: dict[str, tuple[float, int | None]] = {}

    def _admit(self, device: str, last: tuple[float, int | None]) -> None:
        self._silent.pop(device, None)
        self._active.pop(device, None)
        self._active[device] = last
        while len(self._active) + len(self._silent) > self._config.max_devices:
            # Forget a device already reported before one that may still need reporting.
            table = self._silent or self._active
            del table[next(iter(table))]

    def observe(self, event: SecurityEvent) -> list[Finding]:
        """Record that the device's stream spoke (and re-arm it)."""
        device = event.device_id
        if event.kind not in DEVICE_EVENT_KINDS or device is None or not _time_ok(event.time):
            return []
        self._admit(device, (event.time, _seq(event.seq)))
        return []

    def tick(self, now: float) -> list[Finding]:
        """A finding for each device silent for longer than the limit, once per silence."""
        if not _time_ok(now):
            return []
        horizon = now - self._config.max_silence_seconds
        expired = []
        for device, last in self._active.items():
            if last[0] >= horizon:
                break
            expired.append((device, last))
        findings = []
        for device, (when, seq) in expired:
            del self._active[device]
            self._silent[device] = (when, seq)
            findings.append(
                _finding(
                    self.name,
                    "security-stream-silent",
                    Severity.MEDIUM,
                    device,
                    f"{device} has sent no security message for {now - when:.0f} s.",
                    time=now,
                    evidence=() if seq is None else (seq,),
                    last_event_time=f"{when:.0f}",
                    silent_seconds=f"{now - when:.0f}",
                )
            )
        return findings

    def snapshot(self) -> dict[str, Any]:
        """The last security event of each device, reported or not."""
        return {
            "v": _SNAPSHOT_VERSION,
            "active": {device: list(last) for device, last in self._active.items()},
            "silent": {device: list(last) for device, last in self._silent.items()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace the state with a snapshot's."""
        self._active = {}
        self._silent = {}
        if not _versioned(state):
            return
        for name in ("silent", "active"):
            for device, item in _items(state.get(name)):
                if not isinstance(item, list) or len(item) != 2:
                    continue
                when, seq = _number(item[0]), item[1]
                if when is None or not (seq is None or _seq(seq) is not None):
                    continue
                self._admit(device, (when, seq))
                if name == "silent":
                    self._silent[device] = self._active.pop(device)

    def statistics(self) -> DetectorStatistics:
        """Devices tracked."""
        return DetectorStatistics(tracked_keys=len(self._active) + len(self._silent))


# ---------------------------------------------------------------------------------------------
# All of them


@dataclass(frozen=True, slots=True)
class DetectorsConfig:
    """The settings of every detector (defaults documented on each config class)."""

    tamper: TamperConfig = field(default_factory=TamperConfig)
    physical_access: PhysicalAccessConfig = field(default_factory=PhysicalAccessConfig)
    antimalware: AntimalwareConfig = field(default_factory=AntimalwareConfig)
    inventory_baseline: InventoryBaselineConfig = field(default_factory=InventoryBaselineConfig)
    brute_force: BruteForceConfig = field(default_factory=BruteForceConfig)
    masquerade: MasqueradeConfig = field(default_factory=MasqueradeConfig)
    flapping: FlappingConfig = field(default_factory=FlappingConfig)
    rate_anomaly: RateAnomalyConfig = field(default_factory=RateAnomalyConfig)
    new_network: NewNetworkConfig = field(default_factory=NewNetworkConfig)
    silence: SilenceConfig = field(default_factory=SilenceConfig)


def all_detectors(
    config: DetectorsConfig | None = None,
    *,
    profiles: ProfileBook | None = None,
    advisories: AdvisoryIndex | None = None,
) -> list[Detector]:
    """One of each detector, configured by ``config`` (defaults when ``None``).

    ``profiles`` are the device profiles in force, shared by the profile-aware detectors
    (kept current by the caller; empty when ``None``), ``advisories`` the imported advisories.
    """
    config = config or DetectorsConfig()
    profiles = ProfileBook() if profiles is None else profiles
    return [
        TamperDetector(config.tamper),
        PhysicalAccessDetector(config.physical_access),
        AntimalwareDetector(config.antimalware, profiles),
        InventoryBaselineDetector(config.inventory_baseline, profiles),
        ProfileDriftDetector(profiles),
        AdvisoryDetector(advisories),
        BruteForceDetector(config.brute_force),
        MasqueradeDetector(config.masquerade),
        FlappingDetector(config.flapping),
        RateAnomalyDetector(config.rate_anomaly),
        NewNetworkDetector(config.new_network),
        SilenceDetector(config.silence),
    ]


_Observe = Callable[[SecurityEvent], list[Finding]]


class DetectorSet:
    """Several detectors behind one ``observe``/``tick``/``snapshot``/``restore``.

    A detector that declares ``kinds`` (a frozenset of event kinds, as all detectors here do)
    only sees events of those kinds; one without sees every event. The routing is fixed when
    the set is built, so an event costs only the detectors that care about it: 80 % of a hub's
    events are telemetry ``message`` events, and only the rate detector wants them.
    """

    def __init__(self, detectors: Iterable[Detector] | None = None) -> None:
        """Build the routing for ``detectors`` (default: :func:`all_detectors`).

        Raises:
            ValueError: two detectors share a name (snapshots are keyed by name).
        """
        self._detectors = tuple(all_detectors() if detectors is None else detectors)
        names = [detector.name for detector in self._detectors]
        if len(set(names)) != len(names):
            raise ValueError(f"detector names must be unique: {names}")
        declared: dict[str, frozenset[str] | None] = {}
        for detector in self._detectors:
            kinds = getattr(detector, "kinds", None)
            declared[detector.name] = kinds if isinstance(kinds, frozenset) else None
        every_kind = set().union(*(k for k in declared.values() if k is not None))
        self._any: tuple[_Observe, ...] = tuple(
            d.observe for d in self._detectors if declared[d.name] is None
        )
        self._routes: dict[str, tuple[_Observe, ...]] = {
            kind: tuple(
                d.observe
                for d in self._detectors
                if (kinds := declared[d.name]) is None or kind in kinds
            )
            for kind in every_kind
        }

    @property
    def detectors(self) -> tuple[Detector, ...]:
        """The detectors, in order."""
        return self._detectors

    def __getitem__(self, name: str) -> Detector:
        """The detector called ``name``.

        Raises:
            KeyError: there is none.
        """
        for detector in self._detectors:
            if detector.name == name:
                return detector
        raise KeyError(name)

    def observe(self, event: SecurityEvent) -> list[Finding]:
        """Give ``event`` to every detector that wants it; all their findings, in order."""
        route = self._routes.get(event.kind, self._any)
        if len(route) == 1:
            return route[0](event)
        findings: list[Finding] = []
        for observe in route:
            findings += observe(event)
        return findings

    def tick(self, now: float) -> list[Finding]:
        """Tell every detector the time; all their findings, in order."""
        findings: list[Finding] = []
        for detector in self._detectors:
            findings += detector.tick(now)
        return findings

    def set_maintenance_window(self, device_id: str, start: float, end: float) -> None:
        """Open a maintenance window in every physical-access detector of the set.

        Raises:
            LookupError: the set has no physical-access detector.
            ValueError: the window is empty or not finite.
        """
        targets = [d for d in self._detectors if isinstance(d, PhysicalAccessDetector)]
        if not targets:
            raise LookupError("no physical-access detector in this set")
        for detector in targets:
            detector.set_window(device_id, start, end)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every detector's state, by name."""
        return {detector.name: detector.snapshot() for detector in self._detectors}

    def restore(self, state: object) -> None:
        """Restore each detector named in ``state``; the others keep their state.

        Anything that is not a mapping of names to mappings (a corrupted file) restores nothing.
        """
        if not isinstance(state, Mapping):
            return
        for detector in self._detectors:
            saved = state.get(detector.name)
            if isinstance(saved, Mapping):
                detector.restore(saved)
