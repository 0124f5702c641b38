"""Device profiles: what a device model may expose, and the versions it must run (pure; issue 6).

A **profile** describes one device model. Operators create it (``ironhub profile create``) and
assign it to devices through the twin tag ``ironhub.profile`` (``ironhub profile assign``, or
an enrollment's initial tags); a device without the tag gets the profile called
:data:`DEFAULT_PROFILE` if there is one. It has two optional parts:

* ``hardware``: the interfaces the model has. Once a profile has a ``hardware`` section, it is
  the whole list ("scope hardware to minimum requirements"): what it leaves out is not allowed.

  ==================  ===================================  ===================================
  member              value                                drift when the device reports
  ==================  ===================================  ===================================
  ``interfaces``      ``{kind: max count}``, e.g.          an interface of a kind not listed,
                      ``{"ethernet": 1, "wifi": 1}``       or more of a kind than allowed
                                                           (``loopback`` is always allowed)
  ``listening``       ``["tcp/22", "udp/5353"]``           a socket listening on another
                                                           protocol/port (sockets bound to a
                                                           loopback address are not exposed
                                                           and not judged)
  ``usb``             ``null`` or absent: no USB at all;   a USB device attached: on a port,
                      ``{"ports": [...], "classes":        of a class or with a
                      [...], "devices": ["vvvv:pppp"]}``,  vendor:product outside the lists
                      each list optional (absent: any)
  ``consoles``        ``["ssh"]``                          a login (any outcome) on another
                                                           console (``ttyS0``, ``tty1``...)
  ==================  ===================================  ===================================

* ``baseline``: minimum versions and the anti-malware definitions' maximum age.

  ==========================  ============================================================
  member                      meaning
  ==========================  ============================================================
  ``os``                      ``{os.name: minimum os.version}``
  ``kernel``                  minimum ``os.kernel``
  ``drivers``                 ``{driver name: minimum version}``
  ``packages``                ``{name: minimum}``; a key ``"<ecosystem>:<name>"``
                              (``"Debian:12:openssl"``) applies to that ecosystem only and
                              wins over the plain name
  ``maxDefinitionsAgeHours``  anti-malware definitions older than this are stale (instead of
                              the detector's 72 h)
  ==========================  ============================================================

  Versions are compared with the ecosystem's own rules when the package names its ecosystem
  (dpkg for Debian and Ubuntu, PEP 440 for PyPI...: :func:`ironhub.monitor.advisories.compare`)
  and with :func:`compare_versions` otherwise.

Everything here is a value: :func:`parse_profile` checks an operator's JSON document strictly
(unknown members, wrong types, out-of-range counts are refused with the member's name), and
:func:`hardware_drift` and :meth:`Baseline.gaps` judge one report. Device reports are
attacker-controlled text: every value taken from them is clipped before it goes into a
description.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ironhub.monitor.advisories import compare

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILE_TAG",
    "Baseline",
    "DeviceProfile",
    "HardwareProfile",
    "ProfileBook",
    "ProfileError",
    "USBRule",
    "compare_versions",
    "hardware_drift",
    "parse_profile",
    "profile_document",
    "profile_name_of_tags",
    "validate_profile_name",
]

#: The profile a device without an ``ironhub.profile`` tag is judged by, when it exists.
DEFAULT_PROFILE: Final = "default"
#: The twin tag path that assigns a profile: ``{"ironhub": {"profile": "<name>"}}``.
PROFILE_TAG: Final = ("ironhub", "profile")

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LISTENER: Final = re.compile(r"(tcp|udp)/([0-9]{1,5})")
_USB_ID: Final = re.compile(r"[0-9a-f]{4}:[0-9a-f]{4}")
#: Entries of any one list or table in a profile.
MAX_ENTRIES: Final = 256
#: Characters of one string in a profile (names of OSes, drivers, packages, versions...).
MAX_STRING_CHARS: Final = 256
#: Largest interface count per kind.
MAX_INTERFACE_COUNT: Final = 1024
#: Largest ``maxDefinitionsAgeHours`` (about 11 years).
MAX_AGE_HOURS: Final = 100_000.0
#: Characters of device-sent text quoted in a description.
_QUOTE_CHARS: Final = 64
#: Interface kinds that are never drift.
_ALWAYS_ALLOWED: Final = frozenset({"loopback"})

_VERSION_SEPARATORS: Final = re.compile(r"[.\-+]")
# Versions longer than this are cut before parsing: no real version is, and int() of a
# 5,000-digit part would raise (CPython's integer string conversion limit).
_MAX_VERSION_CHARS: Final = 64


class ProfileError(ValueError):
    """A profile document or name is not acceptable (the message names the member)."""


# ---------------------------------------------------------------------------------------------
# Versions


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    parts = _VERSION_SEPARATORS.split(version[:_MAX_VERSION_CHARS])
    # Numeric parts sort before text parts at the same position: (0, n) < (1, "text").
    return tuple(
        (0, int(part)) if part.isascii() and part.isdigit() else (1, part) for part in parts if part
    )


def compare_versions(left: str, right: str) -> int:
    """Compare two version strings with one simple rule: -1, 0 or 1 like ``cmp``.

    Both are split on ``.``, ``-`` and ``+`` (empty parts dropped); parts are compared left to
    right, digits as numbers (``10 > 9``, ``01 == 1``), anything else as text, a number before
    text at the same position; when one is a prefix of the other, the longer is greater
    (``1.2 < 1.2.1``). The rule knows no pre-releases or epochs: ``1.0-rc1 > 1.0`` and a
    Debian epoch ``1:2.0`` compares as text. It is the rule for OS, kernel and driver versions
    and for packages that name no ecosystem; packages that do are compared by their
    ecosystem's rules.

    Returns:
        -1 if ``left`` is older, 0 if equal, 1 if newer.
    """
    a, b = _version_key(left), _version_key(right)
    return (a > b) - (a < b)


def _clip(value: object, limit: int = _QUOTE_CHARS) -> str:
    """Device-sent text made safe to quote: cut, unprintables replaced; non-text is ``?``."""
    if not isinstance(value, str):
        return "?"
    cut = value[:limit]
    return cut if cut.isprintable() else "".join(c if c.isprintable() else "?" for c in cut)


# ---------------------------------------------------------------------------------------------
# The profile


@dataclass(frozen=True, slots=True)
class USBRule:
    """Which USB devices a model may have attached; ``None`` for a list means any."""

    ports: frozenset[str] | None = None
    classes: frozenset[str] | None = None
    devices: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    """The interfaces a model has; anything else a device reports is drift."""

    interfaces: Mapping[str, int] = field(default_factory=dict)
    listening: frozenset[tuple[str, int]] = frozenset()
    usb: USBRule | None = None
    consoles: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Baseline:
    """Minimum versions by name, and the anti-malware definitions' maximum age."""

    os_versions: Mapping[str, str] = field(default_factory=dict)
    kernel_version: str | None = None
    driver_versions: Mapping[str, str] = field(default_factory=dict)
    package_versions: Mapping[str, str] = field(default_factory=dict)
    max_definitions_age_hours: float | None = None

    def gaps(self, fields: Mapping[str, Any]) -> list[str]:
        """What in an inventory report's ``fields`` is below this baseline, one line each.

        Only values of the documented types count (docs/security-events.md); anything else in
        a hostile report is skipped, never raised on.
        """
        below: list[str | None] = []
        os_info = fields.get("os")
        if isinstance(os_info, Mapping):
            name = os_info.get("name")
            if isinstance(name, str):
                minimum = self.os_versions.get(name)
                below.append(_below("os", name, os_info.get("version"), minimum, None))
            kernel = os_info.get("kernel")
            below.append(_below("kernel", "kernel", kernel, self.kernel_version, None))
        for kind, table in (("driver", self.driver_versions), ("package", self.package_versions)):
            items = fields.get(kind + "s")
            if not isinstance(items, list) or not table:
                continue
            for item in items:
                if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                    continue
                name = item["name"]
                ecosystem = item.get("ecosystem")
                ecosystem = ecosystem if isinstance(ecosystem, str) and ecosystem else None
                minimum = table.get(f"{ecosystem}:{name}") if ecosystem else None
                minimum = minimum or table.get(name)
                below.append(_below(kind, name, item.get("version"), minimum, ecosystem))
        return [item for item in below if item is not None]


def _below(
    kind: str, name: str, version: object, minimum: str | None, ecosystem: str | None
) -> str | None:
    if minimum is None or not isinstance(version, str):
        return None
    if ecosystem is None:
        older = compare_versions(version[:_MAX_VERSION_CHARS], minimum) < 0
    else:
        older = compare(ecosystem, version[:_MAX_VERSION_CHARS], minimum) < 0
    if not older:
        return None
    return f"{kind} {_clip(name)} {_clip(version, 32)} < {minimum}"


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """One device model's profile; ``hardware`` or ``baseline`` ``None`` when not given."""

    name: str
    description: str = ""
    hardware: HardwareProfile | None = None
    baseline: Baseline | None = None


# ---------------------------------------------------------------------------------------------
# Parsing an operator's document


def validate_profile_name(name: object) -> str:
    """``name`` if it is a profile name: 1-64 of ``A-Z a-z 0-9 . _ -``, not starting with a sign.

    Raises:
        ProfileError: it is not.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ProfileError(
            "a profile name is 1 to 64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


def _object(value: object, where: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProfileError(f"{where} must be an object")
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        raise ProfileError(f"{where} has unknown member {_clip(unknown[0])!r}")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_STRING_CHARS:
        raise ProfileError(f"{where} must be a string of 1 to {MAX_STRING_CHARS} characters")
    if not value.isprintable():
        raise ProfileError(f"{where} must be printable")
    return value


def _strings(value: object, where: str) -> frozenset[str]:
    if not isinstance(value, list) or len(value) > MAX_ENTRIES:
        raise ProfileError(f"{where} must be a list of at most {MAX_ENTRIES} strings")
    return frozenset(_string(item, f"{where}[{index}]") for index, item in enumerate(value))


def _versions(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or len(value) > MAX_ENTRIES:
        raise ProfileError(f"{where} must be an object of at most {MAX_ENTRIES} name: version")
    return {
        _string(name, f"{where} name"): _string(version, f"{where}[{_clip(name)!r}]")
        for name, version in value.items()
    }


def _interfaces(value: object) -> dict[str, int]:
    where = "hardware.interfaces"
    if not isinstance(value, Mapping) or len(value) > MAX_ENTRIES:
        raise ProfileError(f"{where} must be an object of at most {MAX_ENTRIES} kind: count")
    counts = {}
    for key, count in value.items():
        kind = _string(key, f"{where} kind")
        if (
            isinstance(count, bool)
            or not isinstance(count, int)
            or not 0 <= count <= MAX_INTERFACE_COUNT
        ):
            raise ProfileError(f"{where}[{kind!r}] must be a count from 0 to {MAX_INTERFACE_COUNT}")
        counts[kind] = count
    return counts


def _listeners(value: object) -> frozenset[tuple[str, int]]:
    listeners = set()
    for text in _strings(value, "hardware.listening"):
        match = _LISTENER.fullmatch(text)
        if match is None or int(match[2]) > 65535:
            raise ProfileError(
                f"hardware.listening entry {_clip(text)!r} is not 'tcp/PORT' or 'udp/PORT'"
            )
        listeners.add((match[1], int(match[2])))
    return frozenset(listeners)


def _usb(value: object) -> USBRule | None:
    if value is None:
        return None
    rule = _object(value, "hardware.usb", frozenset({"ports", "classes", "devices"}))
    devices = None
    if "devices" in rule:
        devices = frozenset(d.lower() for d in _strings(rule["devices"], "hardware.usb.devices"))
        for device in devices:
            if not _USB_ID.fullmatch(device):
                raise ProfileError(
                    f"hardware.usb.devices entry {_clip(device)!r} is not 'vvvv:pppp' (hex)"
                )
    return USBRule(
        ports=_strings(rule["ports"], "hardware.usb.ports") if "ports" in rule else None,
        classes=(
            frozenset(c.lower() for c in _strings(rule["classes"], "hardware.usb.classes"))
            if "classes" in rule
            else None
        ),
        devices=devices,
    )


def _hardware(value: object) -> HardwareProfile:
    hardware = _object(value, "hardware", frozenset({"interfaces", "listening", "usb", "consoles"}))
    return HardwareProfile(
        interfaces=_interfaces(hardware.get("interfaces", {})),
        listening=_listeners(hardware.get("listening", [])),
        usb=_usb(hardware.get("usb")),
        consoles=_strings(hardware.get("consoles", []), "hardware.consoles"),
    )


def _baseline(value: object) -> Baseline:
    baseline = _object(
        value,
        "baseline",
        frozenset({"os", "kernel", "drivers", "packages", "maxDefinitionsAgeHours"}),
    )
    age = baseline.get("maxDefinitionsAgeHours")
    if age is not None and (
        isinstance(age, bool)
        or not isinstance(age, int | float)
        or not 0 < age <= MAX_AGE_HOURS
        or math.isnan(age)
    ):
        raise ProfileError(f"baseline.maxDefinitionsAgeHours must be > 0 and <= {MAX_AGE_HOURS:g}")
    kernel = baseline.get("kernel")
    return Baseline(
        os_versions=_versions(baseline.get("os", {}), "baseline.os"),
        kernel_version=None if kernel is None else _string(kernel, "baseline.kernel"),
        driver_versions=_versions(baseline.get("drivers", {}), "baseline.drivers"),
        package_versions=_versions(baseline.get("packages", {}), "baseline.packages"),
        max_definitions_age_hours=None if age is None else float(age),
    )


def parse_profile(name: str, document: object) -> DeviceProfile:
    """Check an operator's profile document (the module table) and return the profile.

    ``document`` is the parsed JSON object ``{"description", "hardware", "baseline"}``, every
    member optional; ``null`` for ``hardware`` or ``baseline`` means "not given".

    Raises:
        ProfileError: the name or any member is not acceptable; the message names it.
    """
    validate_profile_name(name)
    profile = _object(document, "the profile", frozenset({"description", "hardware", "baseline"}))
    description = profile.get("description", "")
    if description != "":
        description = _string(description, "description")
    hardware = profile.get("hardware")
    baseline = profile.get("baseline")
    return DeviceProfile(
        name=name,
        description=description,
        hardware=None if hardware is None else _hardware(hardware),
        baseline=None if baseline is None else _baseline(baseline),
    )


def profile_document(profile: DeviceProfile) -> dict[str, Any]:
    """The JSON document of ``profile`` (what :func:`parse_profile` reads; lists sorted)."""
    document: dict[str, Any] = {"description": profile.description}
    hardware = profile.hardware
    if hardware is not None:
        usb: dict[str, list[str]] | None = None
        if hardware.usb is not None:
            rule = hardware.usb
            usb = {
                key: sorted(values)
                for key, values in (
                    ("ports", rule.ports),
                    ("classes", rule.classes),
                    ("devices", rule.devices),
                )
                if values is not None
            }
        document["hardware"] = {
            "interfaces": dict(sorted(hardware.interfaces.items())),
            "listening": [f"{p}/{n}" for p, n in sorted(hardware.listening)],
            "usb": usb,
            "consoles": sorted(hardware.consoles),
        }
    baseline = profile.baseline
    if baseline is not None:
        section: dict[str, Any] = {
            "os": dict(sorted(baseline.os_versions.items())),
            "drivers": dict(sorted(baseline.driver_versions.items())),
            "packages": dict(sorted(baseline.package_versions.items())),
        }
        if baseline.kernel_version is not None:
            section["kernel"] = baseline.kernel_version
        if baseline.max_definitions_age_hours is not None:
            section["maxDefinitionsAgeHours"] = baseline.max_definitions_age_hours
        document["baseline"] = section
    return document


def profile_name_of_tags(tags: object) -> str | None:
    """The profile a twin's tags assign (``tags.ironhub.profile``), or ``None``.

    A tag that is not a valid profile name counts as none (the twin is operator-written, but
    tags are also set by other tools; a garbage value must not break the monitor).
    """
    value: object = tags
    for key in PROFILE_TAG:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------
# Judging a report


def _loopback(address: object) -> bool:
    if not isinstance(address, str):
        return False
    if address.lower() == "localhost":
        return True
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return parsed.is_loopback


def _listening_drift(hardware: HardwareProfile, sockets: object) -> Iterable[str]:
    if not isinstance(sockets, list):
        return
    for item in sockets:
        if not isinstance(item, Mapping) or _loopback(item.get("address")):
            continue
        protocol, port = item.get("protocol"), item.get("port")
        if not isinstance(protocol, str) or isinstance(port, bool) or not isinstance(port, int):
            continue
        if (protocol, port) not in hardware.listening:
            process = item.get("process")
            by = f" ({_clip(process)})" if isinstance(process, str) else ""
            yield f"listening {_clip(protocol, 8)}/{port}{by} is not in the profile"


def _interface_drift(hardware: HardwareProfile, interfaces: object) -> Iterable[str]:
    if not isinstance(interfaces, list):
        return
    counts: dict[str, list[str]] = {}
    for item in interfaces:
        if isinstance(item, Mapping) and isinstance(item.get("kind"), str):
            counts.setdefault(item["kind"], []).append(_clip(item.get("name"), 32))
    for kind, names in counts.items():
        if kind in _ALWAYS_ALLOWED:
            continue
        allowed = hardware.interfaces.get(kind, 0)
        if len(names) > allowed:
            yield (
                f"{len(names)} {_clip(kind, 32)} interface(s) ({', '.join(names[:4])}); "
                f"the profile allows {allowed}"
            )


def _usb_drift(hardware: HardwareProfile, fields: Mapping[str, Any]) -> Iterable[str]:
    if fields.get("action") != "attached":
        return
    vendor, product = fields.get("vendor"), fields.get("product")
    device = f"{vendor}:{product}" if isinstance(vendor, str) and isinstance(product, str) else "?"
    port, usb_class = fields.get("port"), fields.get("class")
    what = f"USB device {_clip(device, 16)} ({_clip(usb_class, 32)}) on port {_clip(port, 32)}"
    rule = hardware.usb
    if rule is None:
        yield f"{what}: the profile has no USB"
        return
    if rule.ports is not None and port not in rule.ports:
        yield f"{what}: port not in the profile"
    if rule.classes is not None and (
        not isinstance(usb_class, str) or usb_class.lower() not in rule.classes
    ):
        yield f"{what}: class not in the profile"
    if rule.devices is not None and device not in rule.devices:
        yield f"{what}: device not in the profile"


def hardware_drift(hardware: HardwareProfile, kind: str, fields: Mapping[str, Any]) -> list[str]:
    """How a device report of ``kind`` (``ports``, ``usb``, ``login``) departs from ``hardware``.

    One line per departure; an empty list when the report fits (or is of another kind).
    """
    if kind == "ports":
        return [
            *_listening_drift(hardware, fields.get("listening")),
            *_interface_drift(hardware, fields.get("interfaces")),
        ]
    if kind == "usb":
        return list(_usb_drift(hardware, fields))
    if kind == "login":
        console = fields.get("console")
        if isinstance(console, str) and console not in hardware.consoles:
            return [f"login on console {_clip(console, 32)} is not in the profile"]
    return []


# ---------------------------------------------------------------------------------------------
# The profiles in force


class ProfileBook:
    """The profiles in force, by name; shared by the detectors and kept current by the service.

    Not a detector's state: it is configuration, loaded from storage at start and replaced as
    operators change profiles, so it is never in a snapshot.
    """

    def __init__(self, profiles: Iterable[DeviceProfile] = ()) -> None:
        self._profiles = {profile.name: profile for profile in profiles}

    def __len__(self) -> int:
        return len(self._profiles)

    def put(self, profile: DeviceProfile) -> None:
        """Add or replace ``profile``."""
        self._profiles[profile.name] = profile

    def remove(self, name: str) -> None:
        """Forget the profile called ``name`` (nothing if there is none)."""
        self._profiles.pop(name, None)

    def get(self, name: str) -> DeviceProfile | None:
        """The profile called ``name``, or ``None``."""
        return self._profiles.get(name)

    def names(self) -> list[str]:
        """The profiles' names, sorted."""
        return sorted(self._profiles)

    def resolve(self, assigned: str | None) -> DeviceProfile | None:
        """The profile a device with tag value ``assigned`` is judged by.

        The assigned profile; :data:`DEFAULT_PROFILE` for a device with none; ``None`` when
        the assigned one does not exist (the posture report names such devices).
        """
        return self._profiles.get(DEFAULT_PROFILE if assigned is None else assigned)
