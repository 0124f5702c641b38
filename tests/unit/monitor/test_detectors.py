"""The security detectors: firing, not firing, suppression, restart, hostile input, bounds.

Every detector is driven with hand-built :class:`SecurityEvent` values and explicit times (no
clock, no sleep). "Restart" means: run the original on the first part of a scenario, take its
snapshot through ``json.dumps``/``json.loads`` (as the service stores it), restore it into a
fresh instance, then feed the rest of the scenario to both; they must answer identically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import FrozenInstanceError
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ironhub.monitor import detectors as detectors_module
from ironhub.monitor.advisories import AdvisoryIndex, parse_advisory
from ironhub.monitor.detectors import (
    ALERT_TYPES,
    AdvisoryDetector,
    AntimalwareConfig,
    AntimalwareDetector,
    BruteForceConfig,
    BruteForceDetector,
    DetectorsConfig,
    DetectorSet,
    DetectorStatistics,
    FlappingConfig,
    FlappingDetector,
    InventoryBaselineConfig,
    InventoryBaselineDetector,
    MasqueradeConfig,
    MasqueradeDetector,
    NewNetworkConfig,
    NewNetworkDetector,
    PhysicalAccessConfig,
    PhysicalAccessDetector,
    ProfileDriftDetector,
    RateAnomalyConfig,
    RateAnomalyDetector,
    SilenceConfig,
    SilenceDetector,
    TamperConfig,
    TamperDetector,
    all_detectors,
    compare_versions,
)
from ironhub.monitor.model import (
    DEVICE_EVENT_KINDS,
    HUB_EVENT_KINDS,
    Detector,
    Finding,
    SecurityEvent,
    Severity,
)
from ironhub.monitor.profiles import ProfileBook, parse_profile

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOUR = 3600.0
DAY = 24 * HOUR
D = TypeVar("D", bound=Detector)
ALL_KINDS = sorted(DEVICE_EVENT_KINDS | HUB_EVENT_KINDS | {"unknown"})


def ev(
    kind: str,
    device: str | None = "dev-1",
    t: float = T0,
    *,
    source: str | None = None,
    seq: int | None = None,
    problem: str | None = None,
    **fields: Any,
) -> SecurityEvent:
    return SecurityEvent(
        kind=kind,
        device_id=device,
        time=t,
        fields=fields,
        source=source,
        seq=seq,
        problem=problem,
    )


def feed(detector: Detector, events: Iterable[SecurityEvent]) -> list[Finding]:
    found: list[Finding] = []
    for event in events:
        found += detector.observe(event)
    return found


def json_roundtrip(state: Mapping[str, Any]) -> Any:
    # allow_nan=False: a snapshot must be standard JSON (no NaN or Infinity).
    return json.loads(json.dumps(state, allow_nan=False))


def restarted(detector: D, make: Callable[[], D]) -> D:
    fresh = make()
    fresh.restore(json_roundtrip(detector.snapshot()))
    return fresh


def assert_restart_continues(
    make: Callable[[], Detector],
    before: list[SecurityEvent],
    after: list[Callable[[Detector], list[Finding]]],
) -> list[Finding]:
    """Run ``before``, restart, then each step of ``after`` on both; return the findings."""
    original = make()
    feed(original, before)
    restored = restarted(original, make)
    assert restored.snapshot() == json_roundtrip(original.snapshot())
    found: list[Finding] = []
    for step in after:
        expected = step(original)
        assert step(restored) == expected
        found += expected
    assert restored.snapshot() == original.snapshot()
    return found


def observing(*events: SecurityEvent) -> list[Callable[[Detector], list[Finding]]]:
    return [lambda d, e=e: d.observe(e) for e in events]


def types(findings: Iterable[Finding]) -> list[str]:
    return [f.alert_type for f in findings]


# Values a hostile or broken device could put in any field.
HOSTILE_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    10**400,
    -(10**400),
    1e308,
    math.inf,
    -math.inf,
    math.nan,
    "",
    "x" * 100_000,
    "\x00\n\x1b[31m\ud800",
    "9" * 5000,
    [],
    [None, 1, "a", [], {}],
    {},
    {"name": 1, "version": None},
    [{"name": "n", "version": "9" * 5000, "ecosystem": 3}],
    [{"name": None}, "str", 5],
]
FIELD_NAMES = sorted(
    {
        "state",
        "sensor",
        "action",
        "vendor",
        "product",
        "class",
        "user",
        "console",
        "outcome",
        "address",
        "os",
        "drivers",
        "packages",
        "engine",
        "enabled",
        "definitions_age_hours",
        "detections",
        "bytes",
        "peer",
        "old_peer",
        "new_peer",
        "reason",
        "client_id",
    }
)


def everything() -> list[Detector]:
    """All detectors with a baseline configured, so the inventory detector has work."""
    config = DetectorsConfig(
        inventory_baseline=InventoryBaselineConfig(
            minimum_os_versions={"Debian": "12.0"},
            minimum_kernel_version="6.1",
            minimum_driver_versions={"n": "1.0"},
            minimum_package_versions={"n": "2.0", "deb:n": "3.0"},
        )
    )
    return all_detectors(config)


# ---------------------------------------------------------------------------------------------
# Tamper


def test_tamper_fires_critical_with_details_and_evidence() -> None:
    [finding] = TamperDetector().observe(ev("tamper", seq=7, sensor="lid", state="opened"))
    assert finding.detector == "tamper"
    assert finding.alert_type == "tamper"
    assert finding.severity is Severity.CRITICAL
    assert finding.device_id == "dev-1"
    assert finding.evidence == (7,)
    assert finding.time == T0
    assert dict(finding.details) == {"sensor": "lid", "state": "opened"}
    assert "dev-1" in finding.summary
    assert finding.summary.endswith(".")


@pytest.mark.parametrize("state", ["opened", "removed", "triggered", "OPENED", "unheard-of"])
def test_tamper_alarm_and_unknown_states_are_critical(state: str) -> None:
    [finding] = TamperDetector().observe(ev("tamper", sensor="lid", state=state))
    assert finding.severity is Severity.CRITICAL


@pytest.mark.parametrize("state", ["closed", "replaced", "cleared", "Closed"])
def test_tamper_end_states_are_still_reported_at_high(state: str) -> None:
    [finding] = TamperDetector().observe(ev("tamper", sensor="lid", state=state))
    assert finding.severity is Severity.HIGH
    assert finding.alert_type == "tamper"


def test_tamper_return_states_match_the_parser_schema() -> None:
    from ironhub.monitor.events import TAMPER_ALARM_STATES, TAMPER_STATES

    assert TamperConfig().return_states == frozenset(TAMPER_STATES) - TAMPER_ALARM_STATES


def test_tamper_garbled_report_still_fires_critical_fail_closed() -> None:
    # The parser keeps kind="tamper" for a garbled tamper object; the state is missing.
    [finding] = TamperDetector().observe(ev("tamper", problem="missing 'state'", seq=3))
    assert finding.severity is Severity.CRITICAL
    assert finding.details["state"] == "unknown"
    assert finding.details["sensor"] == "unknown"
    assert finding.details["problem"] == "missing 'state'"


def test_tamper_wrong_types_cannot_downgrade_the_severity() -> None:
    [finding] = TamperDetector().observe(ev("tamper", sensor=["lid"], state=["closed"]))
    assert finding.severity is Severity.CRITICAL


def test_tamper_ignores_other_kinds_and_anonymous_events() -> None:
    detector = TamperDetector()
    assert detector.observe(ev("usb", action="attached")) == []
    assert detector.observe(ev("tamper", device=None, state="opened")) == []
    assert detector.tick(T0 + DAY) == []


def test_tamper_text_is_cut_and_made_printable() -> None:
    [finding] = TamperDetector().observe(ev("tamper", sensor="a\nb" + "x" * 500, state="opened"))
    assert finding.details["sensor"].startswith("a?b")
    assert len(finding.details["sensor"]) == 64


def test_tamper_is_stateless_across_restart() -> None:
    found = assert_restart_continues(
        TamperDetector,
        [ev("tamper", state="opened")],
        observing(ev("tamper", state="closed", t=T0 + 1)),
    )
    assert [f.severity for f in found] == [Severity.HIGH]
    assert TamperDetector().statistics() == DetectorStatistics(tracked_keys=0)


# ---------------------------------------------------------------------------------------------
# Physical access


def usb(t: float = T0, device: str = "dev-1", action: str = "attached", **kw: Any) -> SecurityEvent:
    return ev("usb", device, t, action=action, vendor="0781", product="5567", **kw)


def login(
    t: float = T0, console: Any = "tty1", outcome: str = "success", **kw: Any
) -> SecurityEvent:
    return ev(
        "login", "dev-1", t, **({"user": "root", "console": console, "outcome": outcome} | kw)
    )


def test_usb_attached_outside_maintenance_fires_high() -> None:
    [finding] = PhysicalAccessDetector().observe(usb(seq=5, **{"class": "mass-storage"}))
    assert finding.alert_type == "usb-outside-maintenance"
    assert finding.severity is Severity.HIGH
    assert finding.evidence == (5,)
    assert dict(finding.details) == {
        "vendor": "0781",
        "product": "5567",
        "usb_class": "mass-storage",
    }


def test_usb_removed_or_unknown_action_does_not_fire() -> None:
    detector = PhysicalAccessDetector()
    assert detector.observe(usb(action="removed")) == []
    assert detector.observe(ev("usb", action=None)) == []
    assert detector.observe(ev("usb")) == []


def test_usb_garbled_attach_still_fires_with_the_problem() -> None:
    [finding] = PhysicalAccessDetector().observe(
        ev("usb", action="attached", vendor="zz", problem="'vendor' must be 4 hexadecimal digits")
    )
    assert finding.details["vendor"] == "zz"
    assert "problem" in finding.details


def test_configured_window_for_the_device_or_every_device() -> None:
    config = PhysicalAccessConfig(
        maintenance_windows={"dev-1": ((T0, T0 + HOUR),), "*": ((T0 + DAY, T0 + DAY + 60),)}
    )
    detector = PhysicalAccessDetector(config)
    assert detector.observe(usb(T0)) == []  # start is included
    assert detector.observe(usb(T0 + HOUR - 1)) == []
    assert types(detector.observe(usb(T0 + HOUR))) == ["usb-outside-maintenance"]  # end is not
    assert detector.observe(usb(T0 + DAY + 30, device="dev-2")) == []  # the "*" window
    assert types(detector.observe(usb(T0 + 10, device="dev-2"))) == ["usb-outside-maintenance"]


def test_set_window_opens_maintenance_at_run_time() -> None:
    detector = PhysicalAccessDetector()
    detector.set_window("dev-1", T0 - 10, T0 + 60)
    assert detector.observe(usb(T0)) == []
    assert detector.observe(login(T0 + 1)) == []
    assert types(detector.observe(usb(T0 + 60))) == ["usb-outside-maintenance"]
    # The ended window was dropped when it was next looked at.
    assert detector.statistics().tracked_keys == 0


def test_a_future_window_does_not_cover_now_and_is_kept() -> None:
    detector = PhysicalAccessDetector()
    detector.set_window("dev-1", T0 + 100, T0 + 200)
    detector.set_window("dev-1", T0 + 300, T0 + 400)  # a later one keeps the earlier one
    assert types(detector.observe(usb(T0))) == ["usb-outside-maintenance"]
    assert detector.observe(usb(T0 + 150)) == []
    assert detector.observe(usb(T0 + 350)) == []


def test_set_window_for_every_device() -> None:
    detector = PhysicalAccessDetector()
    detector.set_window("*", T0, T0 + 60)
    assert detector.observe(usb(T0 + 1, device="dev-9")) == []


@pytest.mark.parametrize(
    ("start", "end"),
    [(T0, T0), (T0 + 1, T0), (math.nan, T0), (T0, math.inf), (-math.inf, T0), (T0, 1e16)],
)
def test_set_window_refuses_empty_or_infinite_windows(start: float, end: float) -> None:
    with pytest.raises(ValueError, match="start < end"):
        PhysicalAccessDetector().set_window("dev-1", start, end)


def test_configured_windows_are_checked() -> None:
    with pytest.raises(ValueError, match="not start < end"):
        PhysicalAccessConfig(maintenance_windows={"dev-1": ((T0, T0 - 1),)})
    with pytest.raises(ValueError, match="max_devices"):
        PhysicalAccessConfig(max_devices=0)


def test_windows_per_device_are_capped_keeping_those_that_end_last() -> None:
    detector = PhysicalAccessDetector(PhysicalAccessConfig(max_windows_per_device=2))
    for i in (5, 1, 3, 4):
        detector.set_window("dev-1", T0 + i * 100, T0 + i * 100 + 50)
    windows = detector.snapshot()["windows"]["dev-1"]
    assert windows == [[T0 + 400, T0 + 450], [T0 + 500, T0 + 550]]


def test_clear_windows_ends_maintenance_early() -> None:
    detector = PhysicalAccessDetector()
    detector.set_window("dev-1", T0, T0 + HOUR)
    detector.clear_windows("dev-1")
    detector.clear_windows("never-had-one")
    assert types(detector.observe(usb(T0 + 1))) == ["usb-outside-maintenance"]


@pytest.mark.parametrize("console", ["tty1", "ttyS0", "serial", "console", True])
def test_console_login_outside_maintenance_fires_high(console: Any) -> None:
    [finding] = PhysicalAccessDetector().observe(login(console=console, seq=9))
    assert finding.alert_type == "console-login-outside-maintenance"
    assert finding.severity is Severity.HIGH
    assert finding.details["user"] == "root"
    assert finding.details["outcome"] == "success"
    assert finding.evidence == (9,)


@pytest.mark.parametrize("console", ["pts/0", "ssh", "SSH", "web", "telnet", False, None, "", 5])
def test_remote_or_unspecified_logins_do_not_fire(console: Any) -> None:
    assert PhysicalAccessDetector().observe(login(console=console)) == []


def test_a_login_with_a_network_address_is_not_a_console_login() -> None:
    assert PhysicalAccessDetector().observe(login(address="192.0.2.7")) == []


def test_failed_console_login_keeps_no_user_name() -> None:
    # A failed login's user name is often a mistyped password.
    [finding] = PhysicalAccessDetector().observe(login(outcome="failure", user="hunter2"))
    assert "user" not in finding.details
    assert "hunter2" not in finding.summary
    assert finding.details["outcome"] == "failure"


def test_console_login_during_maintenance_does_not_fire() -> None:
    detector = PhysicalAccessDetector()
    detector.set_window("dev-1", T0, T0 + 60)
    assert detector.observe(login(T0 + 30)) == []


def test_physical_access_ignores_other_kinds_bad_times_and_anonymous_events() -> None:
    detector = PhysicalAccessDetector()
    assert detector.observe(ev("tamper", state="opened")) == []
    assert detector.observe(ev("usb", device=None, action="attached")) == []
    assert detector.observe(usb(math.nan)) == []
    assert detector.tick(T0) == []


def test_physical_access_windows_survive_restart() -> None:
    original = PhysicalAccessDetector()
    original.set_window("dev-1", T0, T0 + HOUR)
    original.set_window("*", T0 + DAY, T0 + DAY + 1)
    restored = restarted(original, PhysicalAccessDetector)
    assert restored.snapshot() == original.snapshot()
    for event in (usb(T0 + 10), usb(T0 + HOUR + 1), usb(T0 + DAY, device="x")):
        assert restored.observe(event) == original.observe(event)
    assert types(restored.observe(usb(T0 + 2 * DAY))) == ["usb-outside-maintenance"]


def test_physical_access_restore_drops_malformed_windows() -> None:
    detector = PhysicalAccessDetector()
    detector.restore(
        {
            "v": 1,
            "windows": {
                "a": "not a list",
                "b": [[T0, T0 + 1, 3], ["x", T0], [T0, T0 - 1], [T0, 1e300], [T0, T0 + 5]],
                "c": [],
            },
        }
    )
    assert detector.snapshot()["windows"] == {"b": [[T0, T0 + 5]]}
    detector.restore({"v": 99, "windows": {"b": [[T0, T0 + 5]]}})
    assert detector.snapshot()["windows"] == {}
    detector.restore({"windows": "nope"})
    assert detector.statistics().tracked_keys == 0


def test_physical_access_state_is_bounded() -> None:
    detector = PhysicalAccessDetector(PhysicalAccessConfig(max_devices=1000))
    for i in range(100_000):
        detector.set_window(f"dev-{i}", T0, T0 + 1)
    assert detector.statistics().tracked_keys == 1000
    assert "dev-99999" in detector.snapshot()["windows"]


# ---------------------------------------------------------------------------------------------
# Anti-malware


def av(**fields: Any) -> SecurityEvent:
    base: dict[str, Any] = {"engine": "clamav", "enabled": True, "definitions_age_hours": 1.0}
    return ev("antimalware", seq=11, **(base | fields))


def test_antimalware_healthy_report_is_quiet() -> None:
    assert AntimalwareDetector().observe(av(detections=[])) == []


def test_antimalware_disabled_fires_high() -> None:
    [finding] = AntimalwareDetector().observe(av(enabled=False))
    assert (finding.alert_type, finding.severity) == ("antimalware-disabled", Severity.HIGH)
    assert finding.details["engine"] == "clamav"
    assert finding.evidence == (11,)


@pytest.mark.parametrize("enabled", ["false", 0, None, [], "no"])
def test_antimalware_disabled_needs_a_real_false(enabled: Any) -> None:
    assert AntimalwareDetector().observe(av(enabled=enabled)) == []


def test_antimalware_stale_definitions_fire_medium() -> None:
    detector = AntimalwareDetector()
    assert detector.observe(av(definitions_age_hours=72)) == []  # not older than the maximum
    [finding] = detector.observe(av(definitions_age_hours=72.5))
    assert (finding.alert_type, finding.severity) == ("antimalware-stale", Severity.MEDIUM)
    assert finding.details["definitions_age_hours"] == "72.5"
    assert "72" in finding.summary


def test_antimalware_stale_threshold_is_configurable() -> None:
    detector = AntimalwareDetector(AntimalwareConfig(max_definitions_age_hours=24))
    assert types(detector.observe(av(definitions_age_hours=25))) == ["antimalware-stale"]
    with pytest.raises(ValueError, match="max_definitions_age_hours"):
        AntimalwareConfig(max_definitions_age_hours=0)


@pytest.mark.parametrize(
    ("age", "fires"),
    [
        (10**400, True),  # clamped, not an OverflowError
        (1e308, True),
        (math.inf, True),
        (math.nan, False),
        ("100", False),
        (True, False),
        (-(10**400), False),
    ],
)
def test_antimalware_hostile_ages(age: Any, fires: bool) -> None:
    found = AntimalwareDetector().observe(av(definitions_age_hours=age))
    assert types(found) == (["antimalware-stale"] if fires else [])


def test_malware_detection_fires_critical_once_per_report() -> None:
    detections = [{"name": "Eicar-Test", "path": "/tmp/eicar"}, {"name": "Mirai", "path": "/x"}]
    [finding] = AntimalwareDetector().observe(av(detections=detections))
    assert (finding.alert_type, finding.severity) == ("malware-detected", Severity.CRITICAL)
    assert finding.details["detections"] == "2"
    assert finding.details["name"] == "Eicar-Test"
    assert finding.details["path"] == "/tmp/eicar"
    assert "2 detection(s)" in finding.summary


@pytest.mark.parametrize("detections", [["garbage"], [None], [{"name": 5}]])
def test_a_malformed_detection_is_still_a_detection(detections: list[Any]) -> None:
    [finding] = AntimalwareDetector().observe(av(detections=detections))
    assert finding.alert_type == "malware-detected"
    assert finding.details["name"] == "unknown"


@pytest.mark.parametrize("detections", [[], {}, "Eicar", 3, None])
def test_no_detection_list_no_malware_finding(detections: Any) -> None:
    assert AntimalwareDetector().observe(av(detections=detections)) == []


def test_antimalware_report_can_raise_all_three_with_the_parser_problem() -> None:
    found = AntimalwareDetector().observe(
        av(
            enabled=False,
            definitions_age_hours=500,
            detections=[{"name": "x"}],
            problem="'version' must be a non-empty string",
        )
    )
    assert types(found) == ["antimalware-disabled", "antimalware-stale", "malware-detected"]
    assert all(f.details["problem"].startswith("'version'") for f in found)


def test_antimalware_ignores_other_kinds_and_is_stateless() -> None:
    detector = AntimalwareDetector()
    assert detector.observe(ev("tamper", enabled=False)) == []
    assert detector.observe(ev("antimalware", device=None, enabled=False)) == []
    assert detector.tick(T0) == []
    found = assert_restart_continues(
        AntimalwareDetector, [av(enabled=False)], observing(av(enabled=False))
    )
    assert types(found) == ["antimalware-disabled"]
    assert detector.statistics().tracked_keys == 0


# ---------------------------------------------------------------------------------------------
# Inventory below baseline


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("1.2", "1.10", -1),  # numeric parts compare as numbers
        ("1.10", "1.9", 1),
        ("01.2", "1.2", 0),  # leading zeros do not matter
        ("1.2", "1.2.0", -1),  # a prefix is older
        ("1.2.1", "1.2", 1),
        ("6.1.0-17-amd64", "6.1.0-18-amd64", -1),  # '-' and '+' separate too
        ("3.0.13+deb12u1", "3.0.13+deb12u2", -1),  # text parts compare as text
        ("1.0-rc1", "1.0", 1),  # documented: no pre-release ordering
        ("1.a", "1.1", 1),  # text sorts after a number at the same position
        ("1..2", "1.2", 0),  # empty parts are dropped
        ("", "0", -1),
        ("\u0661.\u0662", "1.2", 1),  # non-ASCII digits are text, not numbers
        ("9" * 5000, "1", 1),  # cut to 64 characters: no int() conversion limit error
    ],
)
def test_compare_versions(left: str, right: str, expected: int) -> None:
    assert compare_versions(left, right) == expected
    assert compare_versions(right, left) == -expected


def baseline_detector(**config: Any) -> InventoryBaselineDetector:
    defaults: dict[str, Any] = {
        "minimum_os_versions": {"Debian": "12.4"},
        "minimum_kernel_version": "6.1.0-17",
        "minimum_driver_versions": {"usb-storage": "6.1"},
        "minimum_package_versions": {"openssl": "3.0.11", "pypi:urllib3": "2.2.2"},
    }
    return InventoryBaselineDetector(InventoryBaselineConfig(**(defaults | config)))


def inventory(**fields: Any) -> SecurityEvent:
    return ev("inventory", seq=21, **fields)


def test_inventory_at_or_above_baseline_is_quiet() -> None:
    event = inventory(
        os={"name": "Debian", "version": "12.4", "kernel": "6.1.0-18-amd64"},
        drivers=[{"name": "usb-storage", "version": "6.1.0"}],
        packages=[{"name": "openssl", "version": "3.0.13", "ecosystem": "deb"}],
    )
    assert baseline_detector().observe(event) == []


def test_inventory_below_baseline_fires_one_high_finding_per_report() -> None:
    event = inventory(
        os={"name": "Debian", "version": "12.1", "kernel": "5.10.0"},
        drivers=[{"name": "usb-storage", "version": "5.4"}],
        packages=[
            {"name": "openssl", "version": "1.1.1w", "ecosystem": "deb"},
            {"name": "zlib", "version": "0.1"},  # no baseline for it
        ],
    )
    [finding] = baseline_detector().observe(event)
    assert (finding.alert_type, finding.severity) == ("inventory-below-baseline", Severity.HIGH)
    assert finding.details["count"] == "4"
    assert finding.details["items"] == (
        "os Debian 12.1 < 12.4; kernel kernel 5.10.0 < 6.1.0-17; "
        "driver usb-storage 5.4 < 6.1; package openssl 1.1.1w < 3.0.11"
    )
    assert finding.evidence == (21,)
    assert "4 component(s)" in finding.summary


def test_an_ecosystem_specific_minimum_wins_over_the_plain_name() -> None:
    detector = baseline_detector(
        minimum_package_versions={"urllib3": "1.0", "pypi:urllib3": "2.2.2"}
    )
    pypi = inventory(packages=[{"name": "urllib3", "version": "2.0.0", "ecosystem": "pypi"}])
    deb = inventory(packages=[{"name": "urllib3", "version": "2.0.0", "ecosystem": "deb"}])
    plain = inventory(packages=[{"name": "urllib3", "version": "0.9"}])
    assert types(detector.observe(pypi)) == ["inventory-below-baseline"]
    assert detector.observe(deb) == []
    assert types(detector.observe(plain)) == ["inventory-below-baseline"]


def test_inventory_details_list_at_most_max_listed_items_but_count_all() -> None:
    detector = baseline_detector(
        minimum_package_versions={f"p{i}": "2" for i in range(7)}, max_listed=2
    )
    packages = [{"name": f"p{i}", "version": "1"} for i in range(7)]
    [finding] = detector.observe(inventory(packages=packages))
    assert finding.details["count"] == "7"
    assert finding.details["items"] == "package p0 1 < 2; package p1 1 < 2"


def test_inventory_without_a_baseline_never_fires() -> None:
    event = inventory(
        os={"name": "Debian", "version": "1"}, packages=[{"name": "openssl", "version": "0"}]
    )
    assert InventoryBaselineDetector().observe(event) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"os": "Debian 12"},
        {"os": {"name": 5, "version": "1"}},
        {"os": {"name": "Debian", "version": 12}},
        {"os": {"name": "Unknown OS", "version": "0.1"}},
        {"os": {"name": "Debian", "version": "12.4", "kernel": None}},
        {"drivers": "usb-storage 5.4"},
        {"drivers": [None, "x", {"name": None, "version": "0"}, {"name": "usb-storage"}]},
        {"packages": [{"name": "openssl", "version": ["1"]}]},
        {"packages": {"openssl": "1.0"}},
    ],
)
def test_inventory_wrong_shapes_are_ignored(fields: dict[str, Any]) -> None:
    assert baseline_detector().observe(inventory(**fields)) == []


def test_inventory_garbled_report_fires_on_what_is_readable() -> None:
    event = inventory(
        packages=[{"name": "openssl", "version": "1.0"}],
        problem="'packages' holds more than 4096 items; the rest were dropped",
    )
    [finding] = baseline_detector().observe(event)
    assert finding.details["problem"].startswith("'packages'")


def test_inventory_ignores_other_kinds_and_is_stateless() -> None:
    detector = baseline_detector()
    assert detector.observe(ev("ports", os={"name": "Debian", "version": "1"})) == []
    assert (
        detector.observe(ev("inventory", device=None, os={"name": "Debian", "version": "1"})) == []
    )
    assert detector.tick(T0) == []
    event = inventory(os={"name": "Debian", "version": "1"})
    found = assert_restart_continues(baseline_detector, [event], observing(event))
    assert types(found) == ["inventory-below-baseline"]
    assert detector.statistics().tracked_keys == 0


# ---------------------------------------------------------------------------------------------
# Brute force


def fail(
    t: float, device: str | None = "dev-1", source: str | None = "203.0.113.9", seq: int = 0
) -> SecurityEvent:
    return ev("auth-failed", device, t, source=source, seq=seq, reason="bad-credentials")


def test_brute_force_per_identity_fires_at_the_threshold() -> None:
    detector = BruteForceDetector()
    sources = [f"198.51.100.{i}" for i in range(10)]  # spread, so no source reaches 30
    found = feed(detector, [fail(T0 + i, source=sources[i], seq=i) for i in range(9)])
    assert found == []
    [finding] = detector.observe(fail(T0 + 9, source=sources[9], seq=9))
    assert (finding.alert_type, finding.severity) == ("brute-force", Severity.HIGH)
    assert finding.device_id == "dev-1"
    assert finding.evidence == tuple(range(10))
    assert finding.details["key"] == "identity"
    assert finding.details["source"] == "198.51.100.9"
    assert finding.details["window_seconds"] == "300"


def test_brute_force_failures_spread_beyond_the_window_do_not_fire() -> None:
    detector = BruteForceDetector()
    assert feed(detector, [fail(T0 + i * 34) for i in range(50)]) == []  # 9 per 300 s at most


def test_brute_force_suppresses_then_reports_a_continuing_attack_again() -> None:
    detector = BruteForceDetector(BruteForceConfig(failures_per_source=10_000))
    found = [(i, f) for i in range(400) for f in detector.observe(fail(T0 + i))]
    # Fires at the 10th failure (t=9), then quiet for 300 s, then again at t=309.
    assert [i for i, _ in found] == [9, 309]


def test_brute_force_re_arms_after_the_attack_stops() -> None:
    detector = BruteForceDetector()
    assert len(feed(detector, [fail(T0 + i) for i in range(10)])) == 1
    later = T0 + 10_000
    assert len(feed(detector, [fail(later + i) for i in range(10)])) == 1


def test_brute_force_per_source_across_many_identities() -> None:
    detector = BruteForceDetector()
    found = feed(detector, [fail(T0 + i, device=f"dev-{i}", seq=i) for i in range(30)])
    [finding] = found
    assert finding.device_id is None
    assert finding.details == {"key": "source", "source": "203.0.113.9", "window_seconds": "300"}
    assert finding.evidence == tuple(range(30))
    assert "203.0.113.9" in finding.summary


def test_brute_force_counts_a_host_not_its_ports() -> None:
    detector = BruteForceDetector(BruteForceConfig(failures_per_source=3))
    events = [fail(T0 + i, device=None, source=f"203.0.113.9:{4000 + i}") for i in range(3)]
    [finding] = feed(detector, events)
    assert finding.details["source"] == "203.0.113.9"


def test_brute_force_counts_an_ipv6_attacker_by_its_64() -> None:
    detector = BruteForceDetector(BruteForceConfig(failures_per_source=3))
    events = [fail(T0 + i, device=None, source=f"2001:db8:1:2::{i + 1:x}") for i in range(3)]
    [finding] = feed(detector, events)
    assert finding.details["source"] == "2001:db8:1:2::/64"


def test_brute_force_reads_the_peer_field_and_canonical_addresses() -> None:
    detector = BruteForceDetector(BruteForceConfig(failures_per_source=2))
    first = ev("auth-failed", None, T0, peer="::ffff:192.0.2.1")
    second = ev("auth-failed", None, T0 + 1, source="192.0.2.1")
    [finding] = feed(detector, [first, second])
    assert finding.details["source"] == "192.0.2.1"


def test_brute_force_does_not_count_the_hubs_own_failures() -> None:
    detector = BruteForceDetector(BruteForceConfig(failures_per_identity=2))
    outage = [ev("auth-failed", "dev-1", T0 + i, reason="storage-unavailable") for i in range(5)]
    assert feed(detector, outage) == []
    assert detector.statistics().tracked_keys == 0
    hostile = [ev("auth-failed", "dev-1", T0 + i, reason=["storage-unavailable"]) for i in range(2)]
    assert types(feed(detector, hostile)) == ["brute-force"]


def test_brute_force_without_identity_or_source_counts_nothing() -> None:
    detector = BruteForceDetector(BruteForceConfig(failures_per_identity=1))
    assert feed(detector, [fail(T0, device=None, source=None)] * 5) == []
    assert detector.observe(ev("connected", source="203.0.113.9")) == []
    assert detector.observe(fail(math.inf)) == []
    assert detector.statistics().tracked_keys == 0
    assert detector.tick(T0) == []


def test_brute_force_state_survives_restart() -> None:
    make = BruteForceDetector
    before = [fail(T0 + i, seq=i) for i in range(9)]
    found = assert_restart_continues(make, before, observing(*(fail(T0 + 9 + i) for i in range(5))))
    assert types(found) == ["brute-force"]
    assert found[0].evidence == (*range(9), 0)


def test_brute_force_suppression_survives_restart() -> None:
    before = [fail(T0 + i) for i in range(12)]  # fires at T0 + 9, quiet until T0 + 309
    after = observing(*(fail(T0 + 290 + i) for i in range(30)))
    found = assert_restart_continues(BruteForceDetector, before, after)
    assert [(f.time, f.details["key"]) for f in found] == [
        (T0 + 309, "identity"),
        (T0 + 319, "source"),  # 30 from the source within 300 s: a different key
    ]


def test_brute_force_state_is_bounded_under_a_flood() -> None:
    detector = BruteForceDetector()
    for i in range(100_000):
        detector.observe(
            fail(T0 + i / 1000, device=f"dev-{i}", source=f"10.{i >> 16}.{i >> 8 & 255}.{i & 255}")
        )
    assert detector.statistics().tracked_keys == 16_384 + 16_384
    snapshot = detector.snapshot()
    assert len(snapshot["identities"]) == len(snapshot["sources"]) == 16_384


def test_brute_force_keys_keep_no_more_events_than_the_threshold() -> None:
    detector = BruteForceDetector()
    feed(detector, [fail(T0 + i / 100) for i in range(1000)])
    assert len(detector.snapshot()["identities"]["dev-1"]["events"]) == 10
    assert len(detector.snapshot()["sources"]["203.0.113.9"]["events"]) == 30


def test_brute_force_restore_drops_malformed_entries() -> None:
    detector = BruteForceDetector()
    detector.restore(
        {
            "v": 1,
            "identities": {
                "a": "x",
                "b": {"events": "x"},
                "c": {"events": [[T0, 1], [T0, "s"], [T0], "x", ["t", 1], [T0, True], [T0, None]]},
                "d": {"events": [], "until": "soon"},
            },
            "sources": ["not", "a", "table"],
        }
    )
    assert detector.snapshot() == {
        "v": 1,
        "identities": {
            "c": {"events": [[T0, 1], [T0, None]], "until": None},
            "d": {"events": [], "until": None},
        },
        "sources": {},
    }
    detector.restore({"v": 2, "identities": {"c": {"events": [[T0, 1]]}}})
    assert detector.statistics().tracked_keys == 0


def test_brute_force_config_is_checked() -> None:
    with pytest.raises(ValueError, match="failures_per_identity"):
        BruteForceConfig(failures_per_identity=0)
    with pytest.raises(ValueError, match="window_seconds"):
        BruteForceConfig(window_seconds=math.nan)


# ---------------------------------------------------------------------------------------------
# Masquerade


def connect(
    t: float, source: str | None = "192.0.2.1", device: str | None = "dev-1", seq: int | None = None
) -> SecurityEvent:
    return ev("connected", device, t, source=source, seq=seq)


def takeover(t: float, seq: int | None = None, **fields: Any) -> SecurityEvent:
    peers = {"old_peer": "192.0.2.1:40000", "new_peer": "198.51.100.7:50000"} | fields
    return ev("takeover", "dev-1", t, source="198.51.100.7", seq=seq, **peers)


def test_masquerade_two_sources_within_the_window_fires_critical() -> None:
    detector = MasqueradeDetector()
    assert detector.observe(connect(T0, seq=1)) == []
    [finding] = detector.observe(connect(T0 + 30, "198.51.100.7", seq=2))
    assert (finding.alert_type, finding.severity) == ("masquerade", Severity.CRITICAL)
    assert finding.device_id == "dev-1"
    assert finding.evidence == (1, 2)
    assert finding.details == {
        "reason": "two-sources",
        "first_source": "192.0.2.1",
        "second_source": "198.51.100.7",
    }
    assert "30 s" in finding.summary


def test_masquerade_same_source_or_slow_move_does_not_fire() -> None:
    detector = MasqueradeDetector()
    assert detector.observe(connect(T0)) == []
    assert detector.observe(connect(T0 + 5)) == []
    assert detector.observe(connect(T0 + 66, "198.51.100.7")) == []  # 61 s after the last
    assert detector.observe(connect(T0 + 66, device="dev-2", source="198.51.100.8")) == []


def test_masquerade_one_host_written_two_ways_is_one_source() -> None:
    detector = MasqueradeDetector()
    assert detector.observe(connect(T0, "::ffff:192.0.2.1")) == []
    assert detector.observe(connect(T0 + 1, "192.0.2.1:8883")) == []
    assert detector.observe(connect(T0 + 2, "[2001:db8::1]:8883")) != []


def test_masquerade_reads_the_peer_field_when_there_is_no_source() -> None:
    detector = MasqueradeDetector()
    assert detector.observe(connect(T0)) == []
    event = ev("connected", "dev-1", T0 + 1, peer="198.51.100.7")
    assert types(detector.observe(event)) == ["masquerade"]
    assert detector.observe(ev("connected", "dev-1", T0 + 2)) == []  # no address: nothing


def test_masquerade_suppresses_then_fires_again() -> None:
    detector = MasqueradeDetector()
    a, b = "192.0.2.1", "198.51.100.7"
    events = [connect(T0 + i * 10, a if i % 2 else b) for i in range(100)]
    fired = [e.time - T0 for e in events for _ in detector.observe(e)]
    assert fired == [10, 610]  # once, then quiet for 600 s, then again while it goes on


def test_repeated_takeovers_fire_critical() -> None:
    detector = MasqueradeDetector()
    assert detector.observe(takeover(T0, seq=1)) == []
    assert detector.observe(takeover(T0 + 100, seq=2)) == []
    [finding] = detector.observe(takeover(T0 + 200, seq=3))
    assert (finding.alert_type, finding.severity) == ("masquerade", Severity.CRITICAL)
    assert finding.evidence == (1, 2, 3)
    assert finding.details == {
        "reason": "repeated-takeovers",
        "old_peer": "192.0.2.1",
        "new_peer": "198.51.100.7",
    }
    assert "repeated takeovers" in finding.summary


def test_takeovers_spread_over_more_than_the_window_do_not_fire() -> None:
    detector = MasqueradeDetector()
    assert feed(detector, [takeover(T0 + i * 301) for i in range(10)]) == []


@pytest.mark.parametrize(
    ("peer", "shown"),
    [
        ("2001:db8::1:40000", "2001:db8::1"),
        ("[2001:db8::1]:40000", "2001:db8::1"),
        ("unknown", "unknown"),
        ("host.example:x", "host.example:x"),
        (None, "unknown"),
        (42, "unknown"),
        ("", "unknown"),
    ],
)
def test_takeover_peers_are_shown_as_hosts(peer: Any, shown: str) -> None:
    detector = MasqueradeDetector(MasqueradeConfig(takeovers=1))
    [finding] = detector.observe(takeover(T0, old_peer=peer))
    assert finding.details["old_peer"] == shown


def test_masquerade_ignores_other_kinds_and_bad_events() -> None:
    detector = MasqueradeDetector()
    assert detector.observe(ev("disconnected", source="192.0.2.1")) == []
    assert detector.observe(connect(T0, device=None)) == []
    assert detector.observe(connect(math.nan)) == []
    assert detector.tick(T0) == []
    assert detector.statistics().tracked_keys == 0


def test_masquerade_state_survives_restart() -> None:
    before = [connect(T0, seq=1), takeover(T0 + 1), takeover(T0 + 2)]
    found = assert_restart_continues(
        MasqueradeDetector,
        before,
        observing(connect(T0 + 20, "198.51.100.7", seq=2), takeover(T0 + 3), connect(T0 + 30)),
    )
    assert [f.details["reason"] for f in found] == ["two-sources", "repeated-takeovers"]


def test_masquerade_restore_drops_malformed_entries() -> None:
    detector = MasqueradeDetector()
    detector.restore(
        {
            "v": 1,
            "last": {
                "a": ["192.0.2.1", T0, 1, None],
                "b": ["192.0.2.1", "yesterday", 1, None],
                "c": [5, T0, 1, None],
                "d": ["192.0.2.1", T0],
                "e": "192.0.2.1",
                "f": ["192.0.2.1", T0, "seq", "until"],
            },
            "takeovers": None,
        }
    )
    assert detector.snapshot()["last"] == {
        "a": ["192.0.2.1", T0, 1, None],
        "f": ["192.0.2.1", T0, None, None],
    }
    detector.restore({"last": {"a": ["192.0.2.1", T0, 1, None]}})
    assert detector.statistics().tracked_keys == 0


def test_masquerade_state_is_bounded() -> None:
    detector = MasqueradeDetector(MasqueradeConfig(max_devices=5000))
    for i in range(100_000):
        detector.observe(connect(T0 + i / 100, device=f"dev-{i}"))
        detector.observe(ev("takeover", f"dev-{i}", T0 + i / 100))
    assert detector.statistics().tracked_keys == 10_000


def test_masquerade_config_is_checked() -> None:
    with pytest.raises(ValueError, match="takeovers"):
        MasqueradeConfig(takeovers=0)


# ---------------------------------------------------------------------------------------------
# Flapping


def test_flapping_fires_medium_on_more_than_the_limit() -> None:
    detector = FlappingDetector()
    assert feed(detector, [connect(T0 + i * 10, seq=i) for i in range(20)]) == []
    [finding] = detector.observe(connect(T0 + 200, seq=20))
    assert (finding.alert_type, finding.severity) == ("flapping", Severity.MEDIUM)
    assert finding.evidence == tuple(range(21))
    assert finding.details == {"connects": "21", "window_seconds": "300"}


def test_flapping_slow_reconnects_do_not_fire() -> None:
    assert feed(FlappingDetector(), [connect(T0 + i * 15) for i in range(200)]) == []


def test_flapping_suppresses_then_fires_again_and_is_per_identity() -> None:
    detector = FlappingDetector()
    fired = [
        (e.device_id, e.time - T0)
        for i in range(700)
        for e in (connect(T0 + i, device="dev-1"), connect(T0 + i * 60, device="dev-2"))
        for _ in detector.observe(e)
    ]
    assert fired == [("dev-1", 20), ("dev-1", 320), ("dev-1", 620)]


def test_flapping_ignores_other_kinds_and_bad_events() -> None:
    detector = FlappingDetector(FlappingConfig(max_connects=1))
    assert feed(detector, [ev("disconnected")] * 5) == []
    assert feed(detector, [connect(T0, device=None)] * 5) == []
    assert feed(detector, [connect(-math.inf)] * 5) == []
    assert detector.tick(T0) == []


def test_flapping_state_survives_restart() -> None:
    before = [connect(T0 + i) for i in range(15)]
    after = observing(*(connect(T0 + 15 + i) for i in range(10)))
    assert types(assert_restart_continues(FlappingDetector, before, after)) == ["flapping"]


def test_flapping_state_is_bounded_and_restore_is_checked() -> None:
    detector = FlappingDetector(FlappingConfig(max_devices=1000))
    for i in range(100_000):
        detector.observe(connect(T0, device=f"dev-{i}"))
    assert detector.statistics().tracked_keys == 1000
    detector.restore({"v": 1, "connects": {"x": {"events": [[T0, 1]] * 50, "until": None}}})
    assert len(detector.snapshot()["connects"]["x"]["events"]) == 21
    detector.restore({"v": 0})
    assert detector.statistics().tracked_keys == 0
    with pytest.raises(ValueError, match="max_connects"):
        FlappingConfig(max_connects=-1)


# ---------------------------------------------------------------------------------------------
# Rate and size anomalies


def msg(t: float, size: Any = 200, device: str = "dev-1", seq: int | None = None) -> SecurityEvent:
    return ev("message", device, t, seq=seq, bytes=size)


def steady(
    minutes: int, per_minute: int, start: float = T0, size: int = 200
) -> list[SecurityEvent]:
    """``per_minute`` messages in each of ``minutes`` minutes, from the minute at ``start``."""
    return [
        msg(start + m * 60 + i * (59 / per_minute), size)
        for m in range(minutes)
        for i in range(per_minute)
    ]


def burst(count: int, start: float, seq0: int = 1000) -> list[SecurityEvent]:
    return [msg(start + i * 0.001, seq=seq0 + i) for i in range(count)]


def test_rate_anomaly_fires_medium_once_per_bucket_over_k_times_baseline() -> None:
    detector = RateAnomalyDetector()
    assert feed(detector, steady(12, 10)) == []  # baseline: 10 per minute
    found = feed(detector, burst(150, T0 + 12 * 60))
    [finding] = found
    assert (finding.alert_type, finding.severity) == ("rate-anomaly", Severity.MEDIUM)
    assert finding.evidence == (1100,)  # the 101st message crossed 10 x 10
    assert finding.details["messages"] == "101"
    assert finding.details["baseline_messages"] == "10.00"
    assert finding.details["bucket_seconds"] == "60"
    assert "more than 100 messages" in finding.summary


def test_rate_anomaly_under_the_factor_does_not_fire() -> None:
    detector = RateAnomalyDetector()
    feed(detector, steady(12, 10))
    assert feed(detector, burst(100, T0 + 12 * 60)) == []


def test_rate_anomaly_waits_for_the_warm_up() -> None:
    detector = RateAnomalyDetector()
    feed(detector, steady(5, 10))
    assert feed(detector, burst(1000, T0 + 5 * 60)) == []


def test_rate_anomaly_absolute_floor_protects_near_silent_devices() -> None:
    detector = RateAnomalyDetector()
    feed(detector, steady(12, 1))  # baseline 1 per minute: 10x is 10 messages
    assert feed(detector, burst(60, T0 + 12 * 60)) == []  # not over the floor of 60
    detector = RateAnomalyDetector()
    feed(detector, steady(12, 1))
    assert types(feed(detector, burst(61, T0 + 12 * 60))) == ["rate-anomaly"]


def test_rate_anomaly_baseline_decays_over_silent_buckets() -> None:
    detector = RateAnomalyDetector()
    feed(detector, steady(12, 50))  # 10 x 50 = 500
    assert feed(detector, burst(100, T0 + 12 * 60)) == []
    # After an hour of silence the baseline is ~0, so the floor decides.
    assert types(feed(detector, burst(61, T0 + 80 * 60))) == ["rate-anomaly"]
    # After a silence of years (gap capped for pow()), still fine.
    assert feed(detector, [msg(T0 + 1e9)]) == []


def test_a_flood_does_not_inflate_the_baseline_enough_to_hide_the_next_one() -> None:
    detector = RateAnomalyDetector()
    feed(detector, steady(12, 10))
    assert len(feed(detector, burst(10_000, T0 + 12 * 60))) == 1
    # The 10,000-message bucket counted as 100 (the limit): baseline 0.8*10 + 0.2*100 = 28.
    assert types(feed(detector, burst(300, T0 + 13 * 60))) == ["rate-anomaly"]


def test_rate_anomaly_is_per_device() -> None:
    detector = RateAnomalyDetector()
    feed(detector, steady(12, 10))
    flood = [msg(T0 + 12 * 60 + i * 0.01, device="dev-2") for i in range(500)]
    assert feed(detector, flood) == []  # dev-2 has no history


def test_size_anomaly_fires_over_k_times_baseline_and_the_floor() -> None:
    detector = RateAnomalyDetector()
    feed(detector, [msg(T0 + i, 4000) for i in range(10)])
    assert detector.observe(msg(T0 + 10, 39_000)) == []  # under 10x 4000
    # The baseline moved to 4000 + 0.05 x 35,000 = 5750: the limit is now 57,500.
    assert detector.observe(msg(T0 + 11, 57_500)) == []
    [finding] = detector.observe(msg(T0 + 12, 100_000, seq=77))
    assert (finding.alert_type, finding.severity) == ("size-anomaly", Severity.MEDIUM)
    assert finding.evidence == (77,)
    assert finding.details["bytes"] == "100000"
    assert "100000-byte" in finding.summary


def test_size_anomaly_needs_the_absolute_floor_and_the_warm_up() -> None:
    detector = RateAnomalyDetector()
    feed(detector, [msg(T0 + i, 100) for i in range(9)])
    assert detector.observe(msg(T0 + 9, 1_000_000)) == []  # the 10th message is still warm-up
    detector = RateAnomalyDetector()
    feed(detector, [msg(T0 + i, 100) for i in range(10)])
    assert detector.observe(msg(T0 + 10, 30_000)) == []  # 300x, but under 32 KiB


def test_size_anomaly_once_per_bucket_and_again_in_the_next() -> None:
    detector = RateAnomalyDetector()
    feed(detector, [msg(T0 + i, 200) for i in range(10)])
    big = [msg(T0 + 11 + i, 200_000) for i in range(3)]
    assert types(feed(detector, big)) == ["size-anomaly"]
    # The clipped baseline grew (each big message counted as 10x), but 1 MB is still huge.
    assert types(feed(detector, [msg(T0 + 61, 1_000_000)])) == ["size-anomaly"]


@pytest.mark.parametrize("size", ["200", True, -5, 10**400, 2.5, None, [1]])
def test_hostile_sizes_count_for_rate_but_not_size(size: Any) -> None:
    detector = RateAnomalyDetector()
    feed(detector, [msg(T0 + i, size) for i in range(20)])
    [entry] = detector.snapshot()["devices"].values()
    assert entry[1] == 20  # counted
    assert entry[6] == 0  # no size history


def test_rate_anomaly_ignores_other_kinds_anonymous_and_bad_times() -> None:
    detector = RateAnomalyDetector()
    assert detector.observe(ev("connected", bytes=10**9)) == []
    assert detector.observe(ev("message", device=None, bytes=1)) == []
    assert detector.observe(msg(math.nan)) == []
    assert detector.observe(msg(1e300)) == []
    assert detector.statistics().tracked_keys == 0
    assert detector.tick(T0) == []


def test_rate_anomaly_time_going_back_stays_in_the_current_bucket() -> None:
    detector = RateAnomalyDetector()
    feed(detector, [msg(T0 + 120), msg(T0), msg(T0 + 121)])
    [entry] = detector.snapshot()["devices"].values()
    assert entry[:2] == [int((T0 + 120) // 60), 3]


def test_rate_anomaly_state_is_constant_per_device() -> None:
    detector = RateAnomalyDetector()
    feed(detector, steady(30, 20))
    [entry] = detector.snapshot()["devices"].values()
    assert len(entry) == 8
    assert entry[3] == 10  # buckets of history are counted up to the warm-up only


def test_rate_anomaly_state_survives_restart_mid_bucket() -> None:
    before = [*steady(12, 10), *burst(50, T0 + 12 * 60)]
    after = observing(*burst(80, T0 + 12 * 60 + 1), msg(T0 + 13 * 60, 500_000))
    found = assert_restart_continues(RateAnomalyDetector, before, after)
    assert types(found) == ["rate-anomaly", "size-anomaly"]


def test_rate_anomaly_alerted_bucket_survives_restart() -> None:
    before = [*steady(12, 10), *burst(150, T0 + 12 * 60)]
    after = observing(*burst(50, T0 + 12 * 60 + 5))
    assert assert_restart_continues(RateAnomalyDetector, before, after) == []


def test_rate_anomaly_restore_drops_malformed_entries() -> None:
    detector = RateAnomalyDetector()
    good = [29_000_000, 3, 10.0, 50, False, 200.0, 99, True]
    detector.restore(
        {
            "v": 1,
            "devices": {
                "good": good,
                "short": good[:7],
                "text": "x",
                "float-bucket": [29_000_000.5, *good[1:]],
                "neg-count": [29_000_000, -1, *good[2:]],
                "neg-rate": [29_000_000, 3, -1.0, *good[3:]],
                "nan-rate": [29_000_000, 3, "nan", *good[3:]],
                "bool-count": [29_000_000, True, *good[2:]],
                "huge-bucket": [10**20, *good[1:]],
                "neg-size": [*good[:5], -2.0, *good[6:]],
                5: good,  # not a JSON key
            },
        }
    )
    snapshot = detector.snapshot()["devices"]
    assert list(snapshot) == ["good"]
    assert snapshot["good"] == [29_000_000, 3, 10.0, 10, False, 200.0, 10, True]
    detector.restore({"v": 1, "devices": []})
    assert detector.statistics().tracked_keys == 0
    detector.restore({})
    assert detector.statistics().tracked_keys == 0


def test_rate_anomaly_state_is_bounded_with_the_default_cap() -> None:
    detector = RateAnomalyDetector()
    for i in range(100_000):
        detector.observe(msg(T0 + i / 1000, device=f"dev-{i}"))
    assert detector.statistics().tracked_keys == 65_536


def test_rate_anomaly_evicts_the_least_recently_active_device() -> None:
    detector = RateAnomalyDetector(RateAnomalyConfig(max_devices=2))
    feed(detector, [msg(T0, device="a"), msg(T0, device="b"), msg(T0 + 60, device="a")])
    detector.observe(msg(T0 + 61, device="c"))
    assert list(detector.snapshot()["devices"]) == ["a", "c"]


@pytest.mark.parametrize(
    "config",
    [
        {"bucket_seconds": 0},
        {"bucket_seconds": 1e-300},
        {"rate_smoothing": 0},
        {"rate_smoothing": 1.5},
        {"size_smoothing": 2},
        {"warmup_buckets": 0},
    ],
)
def test_rate_anomaly_config_is_checked(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="RateAnomalyConfig"):
        RateAnomalyConfig(**config)


# ---------------------------------------------------------------------------------------------
# New source network


def test_new_network_after_an_established_history_fires_medium() -> None:
    detector = NewNetworkDetector()
    assert feed(detector, [connect(T0 + i, f"192.0.2.{i + 1}") for i in range(3)]) == []
    [finding] = detector.observe(connect(T0 + 10, "198.51.100.7:8883", seq=4))
    assert (finding.alert_type, finding.severity) == ("new-source-network", Severity.MEDIUM)
    assert finding.evidence == (4,)
    assert finding.details == {"network": "198.51.100.0/24", "source": "198.51.100.7"}
    assert "198.51.100.0/24" in finding.summary
    # Remembered now: once per network.
    assert detector.observe(connect(T0 + 20, "198.51.100.99")) == []


def test_new_network_during_the_first_connects_is_normal() -> None:
    detector = NewNetworkDetector()
    events = [connect(T0, "192.0.2.1"), connect(T0, "198.51.100.1"), connect(T0, "203.0.113.1")]
    assert feed(detector, events) == []
    assert types(detector.observe(connect(T0, "10.0.0.1"))) == ["new-source-network"]


def test_new_network_ipv6_uses_the_64_and_mapped_ipv4_is_ipv4() -> None:
    detector = NewNetworkDetector()
    feed(detector, [connect(T0, "2001:db8:1:2::1")] * 3)
    assert detector.observe(connect(T0, "2001:db8:1:2:ffff::9")) == []
    assert detector.observe(connect(T0, "fe80::1%eth0")) != []
    [finding] = detector.observe(connect(T0, "2001:db8:1:3::1"))
    assert finding.details["network"] == "2001:db8:1:3::/64"
    feed(detector, [connect(T0, "::ffff:192.0.2.1")])
    assert detector.observe(connect(T0, "192.0.2.200")) == []


def test_new_network_ignores_names_and_missing_addresses() -> None:
    detector = NewNetworkDetector(NewNetworkConfig(min_connects=1))
    assert detector.observe(connect(T0, "device.example")) == []
    assert detector.observe(connect(T0, None)) == []
    assert detector.observe(connect(T0, "192.0.2.1", device=None)) == []
    assert detector.observe(ev("disconnected", source="192.0.2.1")) == []
    assert detector.statistics().tracked_keys == 0
    assert detector.tick(T0) == []


def test_new_network_remembers_only_the_most_recent_networks() -> None:
    detector = NewNetworkDetector(NewNetworkConfig(max_networks_per_device=2, min_connects=1))
    feed(detector, [connect(T0, "10.0.1.1"), connect(T0, "10.0.2.1")])
    detector.observe(connect(T0, "10.0.1.1"))  # refreshed: 10.0.2.0/24 is now the oldest
    assert types(detector.observe(connect(T0, "10.0.3.1"))) == ["new-source-network"]
    assert detector.observe(connect(T0, "10.0.1.1")) == []
    assert types(detector.observe(connect(T0, "10.0.2.1"))) == ["new-source-network"]
    assert detector.snapshot()["devices"]["dev-1"]["networks"] == ["10.0.1.0/24", "10.0.2.0/24"]


def test_new_network_state_survives_restart() -> None:
    before = [connect(T0, "192.0.2.1"), connect(T0, "192.0.2.2")]
    after = observing(connect(T0, "192.0.2.3"), connect(T0, "198.51.100.1"))
    assert types(assert_restart_continues(NewNetworkDetector, before, after)) == [
        "new-source-network"
    ]


def test_new_network_restore_drops_malformed_entries_and_is_bounded() -> None:
    detector = NewNetworkDetector(NewNetworkConfig(max_networks_per_device=2))
    detector.restore(
        {
            "v": 1,
            "devices": {
                "a": {"connects": 99, "networks": ["n1", 5, "n2", "n3"]},
                "b": {"connects": "3", "networks": []},
                "c": {"connects": 1, "networks": "n1"},
                "d": ["n1"],
            },
        }
    )
    assert detector.snapshot()["devices"] == {"a": {"connects": 3, "networks": ["n2", "n3"]}}
    detector.restore({"v": 1, "devices": None})
    assert detector.statistics().tracked_keys == 0
    detector.restore({"devices": {"a": {"connects": 1, "networks": []}}})
    assert detector.statistics().tracked_keys == 0
    bounded = NewNetworkDetector()
    for i in range(100_000):
        bounded.observe(connect(T0, f"10.{i >> 16}.{i >> 8 & 255}.{i & 255}", device=f"d{i}"))
    assert bounded.statistics().tracked_keys == 65_536


def test_new_network_config_is_checked() -> None:
    with pytest.raises(ValueError, match="max_networks_per_device"):
        NewNetworkConfig(max_networks_per_device=0)


# ---------------------------------------------------------------------------------------------
# Silent security stream


def test_silence_fires_once_per_silence_and_re_arms_when_the_device_speaks() -> None:
    detector = SilenceDetector()
    detector.observe(ev("inventory", t=T0, seq=3))
    assert detector.tick(T0 + DAY) == []  # not longer than the maximum yet
    [finding] = detector.tick(T0 + DAY + 1)
    assert (finding.alert_type, finding.severity) == ("security-stream-silent", Severity.MEDIUM)
    assert finding.device_id == "dev-1"
    assert finding.time == T0 + DAY + 1
    assert finding.evidence == (3,)
    assert finding.details == {"last_event_time": f"{T0:.0f}", "silent_seconds": "86401"}
    assert detector.tick(T0 + 2 * DAY) == []  # not repeated every tick
    detector.observe(ev("antimalware", t=T0 + 3 * DAY))
    assert detector.tick(T0 + 3 * DAY + 10) == []
    assert types(detector.tick(T0 + 4 * DAY + 1)) == ["security-stream-silent"]


def test_silence_needs_a_device_that_has_spoken() -> None:
    detector = SilenceDetector()
    for kind in sorted(HUB_EVENT_KINDS | {"unknown"}):
        detector.observe(ev(kind, t=T0))
    detector.observe(ev("tamper", device=None, t=T0))
    detector.observe(ev("tamper", t=math.nan))
    assert detector.tick(T0 + 10 * DAY) == []
    assert detector.statistics().tracked_keys == 0


def test_silence_counts_a_garbled_report_of_a_known_kind_as_speaking() -> None:
    detector = SilenceDetector()
    detector.observe(ev("inventory", t=T0))
    detector.observe(ev("inventory", t=T0 + DAY, problem="missing 'time'"))
    assert detector.tick(T0 + DAY + 10) == []


def test_silence_reports_devices_in_order_and_only_the_expired_ones() -> None:
    detector = SilenceDetector(SilenceConfig(max_silence_seconds=100))
    for i, device in enumerate(["a", "b", "c", "d"]):
        detector.observe(ev("ports", device, T0 + i * 10))
    detector.observe(ev("ports", "a", T0 + 35))  # "a" spoke again: now the newest
    assert [f.device_id for f in detector.tick(T0 + 125)] == ["b", "c"]
    assert [f.device_id for f in detector.tick(T0 + 1000)] == ["d", "a"]
    assert detector.tick(math.inf) == []
    assert detector.tick(math.nan) == []


def test_silence_state_survives_restart() -> None:
    before = [ev("usb", "a", T0), ev("usb", "b", T0 + HOUR, seq=5)]

    def ticking(now: float) -> Callable[[Detector], list[Finding]]:
        return lambda d: d.tick(now)

    after = [
        ticking(T0 + DAY + 1),  # "a" reported before... (in both)
        ticking(T0 + DAY + HOUR + 1),
        *observing(ev("usb", "a", T0 + 2 * DAY)),
        ticking(T0 + 3 * DAY + 1),
    ]
    found = assert_restart_continues(SilenceDetector, before, after)
    assert [f.device_id for f in found] == ["a", "b", "a"]
    # ...and a silence reported before the restart is not reported again after it.
    detector = SilenceDetector()
    feed(detector, before)
    detector.tick(T0 + 2 * DAY)
    assert restarted(detector, SilenceDetector).tick(T0 + 5 * DAY) == []


def test_silence_restore_drops_malformed_entries() -> None:
    detector = SilenceDetector()
    detector.restore(
        {
            "v": 1,
            "active": {"a": [T0, 1], "b": [T0], "c": ["t", 1], "d": [T0, "s"], "e": 5},
            "silent": {"f": [T0, None], "a": [T0 - 1, None]},
        }
    )
    # "a" is in both: the active entry, restored last, wins.
    assert detector.snapshot() == {"v": 1, "active": {"a": [T0, 1]}, "silent": {"f": [T0, None]}}
    detector.restore({"v": 1, "active": [], "silent": "x"})
    assert detector.statistics().tracked_keys == 0
    detector.restore({"active": {"a": [T0, 1]}})
    assert detector.statistics().tracked_keys == 0


def test_silence_state_is_bounded_forgetting_reported_devices_first() -> None:
    detector = SilenceDetector(SilenceConfig(max_devices=3))
    feed(detector, [ev("ports", d, T0 + i) for i, d in enumerate("abc")])
    assert types(detector.tick(T0 + DAY + 1.5)) == ["security-stream-silent"] * 2  # a, b
    feed(detector, [ev("ports", "d", T0 + DAY + 2), ev("ports", "e", T0 + DAY + 3)])
    snapshot = detector.snapshot()
    assert (list(snapshot["active"]), list(snapshot["silent"])) == (["c", "d", "e"], [])
    detector.observe(ev("ports", "f", T0 + DAY + 4))
    assert list(detector.snapshot()["active"]) == ["d", "e", "f"]
    big = SilenceDetector()
    for i in range(100_000):
        big.observe(ev("auditlog", f"dev-{i}", T0 + i))
    assert big.statistics().tracked_keys == 65_536


def test_silence_config_is_checked() -> None:
    with pytest.raises(ValueError, match="max_silence_seconds"):
        SilenceConfig(max_silence_seconds=0)


# ---------------------------------------------------------------------------------------------
# Profiles: drift, baselines and anti-malware age per device model

PROFILES = ProfileBook(
    [
        parse_profile(
            "sensor",
            {
                "hardware": {"listening": ["tcp/22"], "interfaces": {"ethernet": 1}},
                "baseline": {"os": {"Debian": "12.7"}, "maxDefinitionsAgeHours": 12},
            },
        ),
        parse_profile("baseline-only", {"baseline": {"kernel": "6.1"}}),
    ]
)


def profiled(kind: str, profile: str | None, **fields: Any) -> SecurityEvent:
    return SecurityEvent(
        kind=kind, device_id="dev-1", time=T0, fields=fields, seq=5, profile=profile
    )


def test_profile_drift_fires_once_per_report_with_the_profile_named() -> None:
    detector = ProfileDriftDetector(PROFILES, max_listed=1)
    listening = [
        {"protocol": "tcp", "port": 22, "address": "0.0.0.0"},
        {"protocol": "tcp", "port": 23, "address": "0.0.0.0"},
        {"protocol": "udp", "port": 69, "address": "0.0.0.0"},
    ]
    [finding] = detector.observe(profiled("ports", "sensor", listening=listening))
    assert (finding.alert_type, finding.severity) == ("profile-drift", Severity.HIGH)
    assert finding.details == {
        "profile": "sensor",
        "count": "2",
        "items": "listening tcp/23 is not in the profile",
    }
    assert finding.evidence == (5,)
    assert "'sensor'" in finding.summary
    assert detector.observe(profiled("ports", "sensor", listening=listening[:1])) == []
    garbled = SecurityEvent(
        kind="usb", device_id="dev-1", time=T0, fields={"action": "attached"},
        problem="'vendor' is not 4 hex digits", profile="sensor",
    )  # fmt: skip
    [usb_drift] = detector.observe(garbled)
    assert usb_drift.details["problem"] == "'vendor' is not 4 hex digits"


def test_profile_drift_needs_a_device_and_a_hardware_profile() -> None:
    detector = ProfileDriftDetector(PROFILES)
    bad = {"listening": [{"protocol": "tcp", "port": 23, "address": "0.0.0.0"}]}
    assert detector.observe(profiled("ports", "baseline-only", **bad)) == []
    assert detector.observe(profiled("ports", None, **bad)) == []  # no default profile
    assert detector.observe(profiled("ports", "gone", **bad)) == []
    event = SecurityEvent(kind="ports", device_id=None, time=T0, fields=bad, profile="sensor")
    assert detector.observe(event) == []
    assert detector.tick(T0) == []
    assert detector.snapshot() == {"v": 1}


def test_the_default_profile_judges_devices_without_one() -> None:
    book = ProfileBook([parse_profile("default", {"hardware": {}})])
    [finding] = ProfileDriftDetector(book).observe(profiled("login", None, console="ttyS0"))
    assert finding.details["profile"] == "default"


def test_a_profile_baseline_replaces_the_configured_one() -> None:
    detector = InventoryBaselineDetector(
        InventoryBaselineConfig(minimum_os_versions={"Debian": "11"}), PROFILES
    )
    os_12_5 = {"os": {"name": "Debian", "version": "12.5", "kernel": "5.10"}}
    [finding] = detector.observe(profiled("inventory", "sensor", **os_12_5))
    assert finding.details["items"] == "os Debian 12.5 < 12.7"
    assert finding.details["profile"] == "sensor"
    [kernel] = detector.observe(profiled("inventory", "baseline-only", **os_12_5))
    assert kernel.details["items"] == "kernel kernel 5.10 < 6.1"
    # No profile: the configured baseline (12.5 >= 11), and no profile in the details.
    assert detector.observe(profiled("inventory", None, **os_12_5)) == []
    old = {"os": {"name": "Debian", "version": "10"}}
    [configured] = detector.observe(profiled("inventory", None, **old))
    assert "profile" not in configured.details
    # A profile without a baseline falls back to the configured one too.
    book = ProfileBook([parse_profile("hw", {"hardware": {}})])
    fallback = InventoryBaselineDetector(
        InventoryBaselineConfig(minimum_os_versions={"Debian": "11"}), book
    )
    assert len(fallback.observe(profiled("inventory", "hw", **old))) == 1


def test_a_profile_sets_the_anti_malware_definitions_age() -> None:
    detector = AntimalwareDetector(AntimalwareConfig(), PROFILES)
    report = {"engine": "ClamAV", "enabled": True, "definitions_age_hours": 20}
    [stale] = detector.observe(profiled("antimalware", "sensor", **report))
    assert stale.alert_type == "antimalware-stale"
    assert stale.details["profile"] == "sensor"
    assert "maximum 12" in stale.summary
    # The profile without an age, and no profile: the detector's 72 h.
    assert detector.observe(profiled("antimalware", "baseline-only", **report)) == []
    assert detector.observe(profiled("antimalware", None, **report)) == []
    assert AntimalwareDetector().observe(profiled("antimalware", "sensor", **report)) == []


ADVISORY = {
    "id": "DSA-1-1",
    "modified": "2026-01-01T00:00:00Z",
    "summary": "openssl",
    "affected": [
        {
            "package": {"ecosystem": "Debian:12", "name": "openssl"},
            "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.15-1"}]}
            ],
        }
    ],
    "database_specific": {"severity": "HIGH"},
}


def test_advisories_fire_on_vulnerable_inventories() -> None:
    detector = AdvisoryDetector(max_listed=1)
    vulnerable = {
        "packages": [{"name": "openssl", "version": "3.0.14-1", "ecosystem": "Debian:12"}]
    }
    assert detector.observe(profiled("inventory", None, **vulnerable)) == []
    detector.set_index(AdvisoryIndex([parse_advisory(ADVISORY)]))
    assert len(detector.index) == 1
    [finding] = detector.observe(profiled("inventory", None, **vulnerable))
    assert (finding.alert_type, finding.severity) == ("vulnerable-package", Severity.HIGH)
    assert finding.details["advisories"] == "DSA-1-1 openssl 3.0.14-1 (fixed in 3.0.15-1)"
    assert finding.details["count"] == "1"
    fixed = {"packages": [{"name": "openssl", "version": "3.0.15-1", "ecosystem": "Debian:12"}]}
    assert detector.observe(profiled("inventory", None, **fixed)) == []
    assert detector.observe(profiled("inventory", None, packages="openssl")) == []
    assert detector.observe(profiled("ports", None, **vulnerable)) == []


def test_advisory_severity_is_the_highest_and_unknown_counts_as_medium() -> None:
    unknown = dict(ADVISORY, id="X-1", database_specific={})
    critical = dict(ADVISORY, id="X-2", database_specific={"severity": "CRITICAL"})
    unfixed = dict(
        ADVISORY,
        id="X-3",
        affected=[{"package": {"ecosystem": "Debian:12", "name": "zlib"}, "versions": ["1.0"]}],
    )
    detector = AdvisoryDetector(AdvisoryIndex([parse_advisory(unknown)]))
    packages = [
        {"name": "openssl", "version": "3.0.14-1", "ecosystem": "Debian:12"},
        {"name": "zlib", "version": "1.0", "ecosystem": "Debian:12"},
    ]
    [medium] = detector.observe(profiled("inventory", None, packages=packages))
    assert medium.severity is Severity.MEDIUM
    detector.set_index(AdvisoryIndex([parse_advisory(a) for a in (unknown, critical, unfixed)]))
    [worst] = detector.observe(profiled("inventory", None, packages=packages))
    assert worst.severity is Severity.CRITICAL
    assert worst.details["count"] == "3"
    assert "X-3 zlib 1.0;" in worst.details["advisories"] or worst.details["advisories"].endswith(
        "X-3 zlib 1.0"
    )


# ---------------------------------------------------------------------------------------------
# DetectorSet, all_detectors, DetectorsConfig


NAMES = [
    "tamper",
    "physical-access",
    "antimalware",
    "inventory-baseline",
    "profile-drift",
    "advisories",
    "brute-force",
    "masquerade",
    "flapping",
    "rate-anomaly",
    "new-network",
    "silence",
]


def test_all_detectors_are_detectors_with_unique_names() -> None:
    detectors = all_detectors()
    assert [d.name for d in detectors] == NAMES
    assert [d.name for d in DetectorSet().detectors] == NAMES
    for detector in detectors:
        assert isinstance(detector.name, str)
        assert detector.tick(T0) == []


def test_monitor_config_reaches_each_detector() -> None:
    config = DetectorsConfig(brute_force=BruteForceConfig(failures_per_identity=2))
    detectors = DetectorSet(all_detectors(config))
    found = detectors.observe(fail(T0)) + detectors.observe(fail(T0 + 1))
    assert types(found) == ["brute-force"]
    with pytest.raises(FrozenInstanceError):
        config.brute_force = BruteForceConfig()  # type: ignore[misc]


class Recorder:
    """A detector without ``kinds``: it sees every event."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.state: dict[str, Any] = {}

    def observe(self, event: SecurityEvent) -> list[Finding]:
        self.seen.append(event.kind)
        return [Finding("recorder", "recorded", Severity.LOW, event.device_id, "Seen.", event.time)]

    def tick(self, now: float) -> list[Finding]:
        return [Finding("recorder", "ticked", Severity.LOW, None, "Ticked.", now)]

    def snapshot(self) -> dict[str, Any]:
        return {"seen": len(self.seen)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.state = dict(state)


def test_detector_set_routes_by_kind_and_keeps_order() -> None:
    recorder = Recorder()
    detectors = DetectorSet([TamperDetector(), recorder, RateAnomalyDetector()])
    found = detectors.observe(ev("tamper", state="opened"))
    assert [f.detector for f in found] == ["tamper", "recorder"]
    assert [f.detector for f in detectors.observe(msg(T0))] == ["recorder"]
    assert [f.detector for f in detectors.observe(ev("unknown"))] == ["recorder"]
    assert recorder.seen == ["tamper", "message", "unknown"]
    assert types(detectors.tick(T0)) == ["ticked"]


def test_detector_set_without_kindless_detectors_drops_unknown_kinds() -> None:
    detectors = DetectorSet([TamperDetector(), SilenceDetector()])
    assert detectors.observe(ev("unknown", problem="malformed JSON")) == []
    assert detectors.observe(ev("message")) == []


def test_detector_set_refuses_duplicate_names() -> None:
    with pytest.raises(ValueError, match="unique"):
        DetectorSet([TamperDetector(), TamperDetector()])


def test_detector_set_lookup_and_maintenance_windows() -> None:
    detectors = DetectorSet()
    assert isinstance(detectors["tamper"], TamperDetector)
    with pytest.raises(KeyError):
        detectors["nope"]
    detectors.set_maintenance_window("dev-1", T0, T0 + 60)
    assert detectors.observe(usb(T0 + 1)) == []
    with pytest.raises(ValueError, match="start < end"):
        detectors.set_maintenance_window("dev-1", T0, T0)
    with pytest.raises(LookupError, match="physical-access"):
        DetectorSet([TamperDetector()]).set_maintenance_window("dev-1", T0, T0 + 60)


def test_detector_set_snapshot_and_restore() -> None:
    recorder = Recorder()
    detectors = DetectorSet([*everything(), recorder])
    scenario = [
        *(fail(T0 + i, seq=i) for i in range(9)),
        *steady(12, 10),
        connect(T0, "192.0.2.1"),
        ev("inventory", t=T0),
    ]
    for event in scenario:
        detectors.observe(event)
    detectors.set_maintenance_window("dev-2", T0, T0 + DAY)
    state = json_roundtrip(detectors.snapshot())
    assert set(state) == {*NAMES, "recorder"}
    fresh_recorder = Recorder()
    fresh = DetectorSet([*everything(), fresh_recorder])
    fresh.restore(state)
    assert fresh_recorder.state == {"seen": len(scenario)}
    assert json_roundtrip(fresh.snapshot()) == state | {"recorder": {"seen": 0}}
    later = [fail(T0 + 10), usb(T0 + 5, device="dev-2"), connect(T0 + 30, "198.51.100.1")]
    for event in later:
        assert fresh.observe(event) == detectors.observe(event)
    ticked = fresh.tick(T0 + 2 * DAY)
    assert ticked == detectors.tick(T0 + 2 * DAY)
    assert types(ticked) == ["security-stream-silent"] * 2 + ["ticked"]  # dev-1, dev-2


def test_detector_set_restore_ignores_garbage_and_missing_names() -> None:
    detectors = DetectorSet()
    for i in range(9):
        detectors.observe(fail(T0 + i))
    detectors.restore("garbage")
    detectors.restore({"brute-force": "garbage", "unknown-detector": {"v": 1}})
    assert types(detectors.observe(fail(T0 + 9))) == ["brute-force"]  # state kept
    detectors.restore({"brute-force": {}})  # a mapping replaces it (malformed: empty)
    assert detectors.observe(fail(T0 + 10)) == []


def test_alert_types_are_all_listed() -> None:
    assert len(ALERT_TYPES) == 16
    assert "tamper" in ALERT_TYPES


def test_the_module_exports_what_it_documents() -> None:
    for name in detectors_module.__all__:
        assert hasattr(detectors_module, name)
    for name in NAMES:
        assert f"\n{name} " in detectors_module.__doc__  # the docstring table
    for alert_type in ALERT_TYPES:
        assert f" {alert_type} " in detectors_module.__doc__


# ---------------------------------------------------------------------------------------------
# Hostile input: nothing raises, findings are well-formed, snapshots stay standard JSON


def check_findings(findings: list[Finding]) -> None:
    for finding in findings:
        assert finding.alert_type in ALERT_TYPES
        assert isinstance(finding.severity, Severity)
        assert all(isinstance(v, str) for v in finding.details.values())
        assert all(isinstance(s, int) for s in finding.evidence)
        assert finding.summary.endswith(".")
        assert len(finding.summary) < 400


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_hostile_value_in_every_field_of_every_kind_never_raises(kind: str) -> None:
    detectors = DetectorSet(everything())
    t = T0
    for name in FIELD_NAMES:
        for value in HOSTILE_VALUES:
            t += 1
            for problem in (None, "garbled"):
                event = ev(kind, "dev-1", t, source="192.0.2.1", seq=1, problem=problem)
                event = SecurityEvent(**{**_as_dict(event), "fields": {name: value}})
                check_findings(detectors.observe(event))
    check_findings(detectors.tick(t + 10 * DAY))
    json_roundtrip(detectors.snapshot())


def _as_dict(event: SecurityEvent) -> dict[str, Any]:
    return {slot: getattr(event, slot) for slot in SecurityEvent.__slots__}


@pytest.mark.parametrize("time", [math.nan, math.inf, -math.inf, 1e300, -1e300])
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_absurd_times_never_raise_nor_poison_the_state(kind: str, time: float) -> None:
    detectors = DetectorSet(everything())
    check_findings(detectors.observe(ev(kind, t=time, source="192.0.2.1", bytes=1)))
    check_findings(detectors.tick(time))
    json_roundtrip(detectors.snapshot())


@pytest.mark.parametrize("source", ["", "[", "[::1", ":", "::", "a" * 10_000, "1.2.3.4:5:6"])
def test_odd_sources_never_raise(source: str) -> None:
    detectors = DetectorSet(everything())
    for kind in ("auth-failed", "connected", "takeover"):
        for i in range(40):
            check_findings(detectors.observe(ev(kind, t=T0 + i, source=source)))
    json_roundtrip(detectors.snapshot())


@pytest.mark.parametrize("name", NAMES)
def test_restoring_garbage_never_raises(name: str) -> None:
    detectors = DetectorSet(everything())
    detector = detectors[name]
    for garbage in [
        {},
        {"v": 1},
        {"v": "1"},
        {"v": 1, "windows": 5, "identities": 5, "sources": 5, "last": 5, "takeovers": 5},
        {"v": 1, "connects": [], "devices": 5, "active": 5, "silent": 5},
        {"v": 1, "devices": {"d": [None] * 8}, "active": {"d": None}, "last": {"d": [None] * 4}},
    ]:
        detector.restore(garbage)
        json_roundtrip(detector.snapshot())


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.dictionaries(st.sampled_from(FIELD_NAMES), JSON, max_size=6)
EVENTS = st.builds(
    SecurityEvent,
    kind=st.sampled_from(ALL_KINDS),
    device_id=st.none() | st.sampled_from(["dev-1", "dev-2", "dev-3/mod"]),
    time=st.floats(min_value=T0, max_value=T0 + 3 * DAY),
    fields=FIELDS,
    source=st.none() | st.sampled_from(["192.0.2.1", "192.0.2.1:80", "2001:db8::1", "x"]),
    seq=st.none() | st.integers(min_value=0, max_value=2**63),
    problem=st.none() | st.text(max_size=30),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EVENTS, max_size=40), st.integers(min_value=0, max_value=40))
def test_fuzz_any_events_any_restart_point(events: list[SecurityEvent], cut: int) -> None:
    events.sort(key=lambda e: e.time)  # events arrive in time order
    original = DetectorSet(everything())
    for event in events[:cut]:
        check_findings(original.observe(event))
    restored = DetectorSet(everything())
    restored.restore(json_roundtrip(original.snapshot()))
    for event in events[cut:]:
        expected = original.observe(event)
        check_findings(expected)
        assert restored.observe(event) == expected
    now = (events[-1].time if events else T0) + 2 * DAY
    assert restored.tick(now) == original.tick(now)
    assert json_roundtrip(restored.snapshot()) == json_roundtrip(original.snapshot())
