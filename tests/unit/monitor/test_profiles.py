"""Device profiles: parsing an operator's document, drift, baselines (monitor/profiles.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ironhub.monitor.profiles import (
    DEFAULT_PROFILE,
    Baseline,
    DeviceProfile,
    HardwareProfile,
    ProfileBook,
    ProfileError,
    USBRule,
    compare_versions,
    hardware_drift,
    parse_profile,
    profile_document,
    profile_name_of_tags,
    validate_profile_name,
)

FULL: dict[str, Any] = {
    "description": "Field sensor v2",
    "hardware": {
        "interfaces": {"ethernet": 1, "wifi": 1},
        "listening": ["tcp/22", "udp/5353"],
        "usb": {"ports": ["1-1.2"], "classes": ["HID"], "devices": ["046D:C52B"]},
        "consoles": ["ssh"],
    },
    "baseline": {
        "os": {"Debian GNU/Linux": "12.7"},
        "kernel": "6.1.0",
        "drivers": {"brcmfmac": "7.45.241"},
        "packages": {"openssl": "3.0.14", "Debian:12:openssl": "3.0.15-1~deb12u1"},
        "maxDefinitionsAgeHours": 24,
    },
}


def test_a_full_document_parses_and_round_trips() -> None:
    profile = parse_profile("sensor-v2", FULL)
    assert profile.description == "Field sensor v2"
    assert profile.hardware is not None
    assert profile.hardware.interfaces == {"ethernet": 1, "wifi": 1}
    assert profile.hardware.listening == {("tcp", 22), ("udp", 5353)}
    assert profile.hardware.usb == USBRule(
        ports=frozenset({"1-1.2"}), classes=frozenset({"hid"}), devices=frozenset({"046d:c52b"})
    )
    assert profile.hardware.consoles == {"ssh"}
    assert profile.baseline is not None
    assert profile.baseline.max_definitions_age_hours == 24.0
    document = profile_document(profile)
    assert parse_profile("sensor-v2", json.loads(json.dumps(document))) == profile
    assert document["hardware"]["listening"] == ["tcp/22", "udp/5353"]


def test_an_empty_document_is_a_profile_that_judges_nothing() -> None:
    profile = parse_profile("empty", {})
    assert profile == DeviceProfile(name="empty")
    assert profile_document(profile) == {"description": ""}
    assert parse_profile("empty", {"hardware": None, "baseline": None}) == profile


def test_hardware_without_members_allows_nothing_and_round_trips() -> None:
    profile = parse_profile("bare", {"hardware": {}, "baseline": {}})
    assert profile.hardware == HardwareProfile()
    assert profile.baseline == Baseline()
    document = profile_document(profile)
    assert document["hardware"]["usb"] is None
    assert "kernel" not in document["baseline"]
    assert parse_profile("bare", document) == profile


def test_usb_lists_are_optional() -> None:
    profile = parse_profile("u", {"hardware": {"usb": {}}})
    assert profile.hardware is not None
    assert profile.hardware.usb == USBRule()
    assert profile_document(profile)["hardware"]["usb"] == {}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "the profile must be an object"),
        ({"colour": "red"}, "unknown member 'colour'"),
        ({"description": 5}, "description must be a string"),
        ({"description": "x" * 257}, "description must be a string"),
        ({"description": "a\nb"}, "description must be printable"),
        ({"hardware": []}, "hardware must be an object"),
        ({"hardware": {"radios": []}}, "hardware has unknown member 'radios'"),
        ({"hardware": {"interfaces": []}}, "hardware.interfaces must be an object"),
        ({"hardware": {"interfaces": {"wifi": True}}}, "hardware.interfaces['wifi']"),
        ({"hardware": {"interfaces": {"wifi": -1}}}, "count from 0 to 1024"),
        ({"hardware": {"interfaces": {"wifi": 1025}}}, "count from 0 to 1024"),
        ({"hardware": {"interfaces": {"wifi": 1.0}}}, "count from 0 to 1024"),
        ({"hardware": {"interfaces": {"": 1}}}, "hardware.interfaces kind"),
        (
            {"hardware": {"interfaces": {str(i): 1 for i in range(257)}}},
            "at most 256 kind: count",
        ),
        ({"hardware": {"listening": "tcp/22"}}, "hardware.listening must be a list"),
        ({"hardware": {"listening": ["tcp/22"] * 257}}, "at most 256 strings"),
        ({"hardware": {"listening": ["sctp/22"]}}, "'sctp/22' is not 'tcp/PORT'"),
        ({"hardware": {"listening": ["tcp/65536"]}}, "'tcp/65536' is not"),
        ({"hardware": {"listening": ["tcp/"]}}, "is not 'tcp/PORT'"),
        ({"hardware": {"listening": [22]}}, "hardware.listening[0] must be a string"),
        ({"hardware": {"usb": []}}, "hardware.usb must be an object"),
        ({"hardware": {"usb": {"hubs": []}}}, "hardware.usb has unknown member 'hubs'"),
        ({"hardware": {"usb": {"devices": ["0781"]}}}, "'0781' is not 'vvvv:pppp'"),
        ({"hardware": {"usb": {"ports": [1]}}}, "hardware.usb.ports[0]"),
        ({"hardware": {"usb": {"classes": "hid"}}}, "hardware.usb.classes must be a list"),
        ({"hardware": {"consoles": [""]}}, "hardware.consoles[0]"),
        ({"baseline": 1}, "baseline must be an object"),
        ({"baseline": {"firmware": "1"}}, "baseline has unknown member 'firmware'"),
        ({"baseline": {"os": ["x"]}}, "baseline.os must be an object"),
        ({"baseline": {"os": {"Debian": 12}}}, "baseline.os['Debian']"),
        ({"baseline": {"drivers": {"": "1"}}}, "baseline.drivers name"),
        ({"baseline": {"packages": {str(i): "1" for i in range(257)}}}, "at most 256"),
        ({"baseline": {"kernel": 6}}, "baseline.kernel must be a string"),
        ({"baseline": {"maxDefinitionsAgeHours": 0}}, "maxDefinitionsAgeHours must be > 0"),
        ({"baseline": {"maxDefinitionsAgeHours": True}}, "maxDefinitionsAgeHours"),
        ({"baseline": {"maxDefinitionsAgeHours": "24"}}, "maxDefinitionsAgeHours"),
        ({"baseline": {"maxDefinitionsAgeHours": float("nan")}}, "maxDefinitionsAgeHours"),
        ({"baseline": {"maxDefinitionsAgeHours": 1e9}}, "maxDefinitionsAgeHours"),
    ],
)
def test_bad_documents_are_refused_naming_the_member(document: object, message: str) -> None:
    with pytest.raises(ProfileError, match=None) as caught:
        parse_profile("p", document)
    assert message in str(caught.value)


def test_unknown_members_are_quoted_clipped() -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile("p", {"x" * 500: 1})
    assert len(str(caught.value)) < 120


@pytest.mark.parametrize("name", ["a", "sensor-v2", "Model_3.1", "x" * 64, "0day"])
def test_good_names(name: str) -> None:
    assert validate_profile_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", ".a", "a b", "x" * 65, "a/b", 5, None, "é"])
def test_bad_names(name: object) -> None:
    with pytest.raises(ProfileError, match="a profile name is 1 to 64"):
        validate_profile_name(name)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"ironhub": {"profile": "sensor-v2"}}, "sensor-v2"),
        ({"ironhub": {"profile": "bad name"}}, None),
        ({"ironhub": {"profile": 5}}, None),
        ({"ironhub": "sensor"}, None),
        ({"ironhub": {}}, None),
        ({}, None),
        ([], None),
        (None, None),
    ],
)
def test_the_profile_tag(tags: object, expected: str | None) -> None:
    assert profile_name_of_tags(tags) == expected


# --- drift ------------------------------------------------------------------------------------

HW = parse_profile("p", FULL).hardware
assert HW is not None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # Fits.
        (
            {
                "listening": [
                    {"protocol": "tcp", "port": 22, "address": "0.0.0.0"},
                    {"protocol": "udp", "port": 5353},
                    {"protocol": "tcp", "port": 631, "address": "127.0.0.1"},
                    {"protocol": "tcp", "port": 8080, "address": "::1"},
                    {"protocol": "tcp", "port": 8081, "address": "::ffff:127.0.0.1"},
                    {"protocol": "tcp", "port": 8082, "address": "localhost"},
                ],
                "interfaces": [
                    {"name": "lo", "kind": "loopback"},
                    {"name": "eth0", "kind": "ethernet", "up": True},
                    {"name": "wlan0", "kind": "wifi", "up": False},
                ],
            },
            [],
        ),
        (
            {"listening": [{"protocol": "tcp", "port": 23, "address": "0.0.0.0", "process": "d"}]},
            ["listening tcp/23 (d) is not in the profile"],
        ),
        (
            {"listening": [{"protocol": "tcp", "port": 23, "address": "fe80::1%eth0"}]},
            ["listening tcp/23 is not in the profile"],
        ),
        (
            {"listening": [{"protocol": "udp", "port": 22, "address": "10.0.0.1"}]},
            ["listening udp/22 is not in the profile"],
        ),
        # Not an address ("*" as netstat writes any): exposed, so judged.
        (
            {"listening": [{"protocol": "udp", "port": 22, "address": "*"}]},
            ["listening udp/22 is not in the profile"],
        ),
        # Garbage items are skipped (the parser already dropped them; fail safe anyway).
        (
            {"listening": ["x", {"protocol": 1, "port": 2}, {"protocol": "tcp", "port": True}]},
            [],
        ),
        ({"listening": {"protocol": "tcp"}, "interfaces": "eth0"}, []),
        (
            {"interfaces": [{"name": "hci0", "kind": "bluetooth"}, {"name": 7, "kind": 7}, "x"]},
            ["1 bluetooth interface(s) (hci0); the profile allows 0"],
        ),
        (
            {"interfaces": [{"name": f"wlan{i}", "kind": "wifi"} for i in range(6)]},
            ["6 wifi interface(s) (wlan0, wlan1, wlan2, wlan3); the profile allows 1"],
        ),
        ({"interfaces": [{"kind": "ethernet"}]}, []),
    ],
)
def test_ports_drift(fields: dict[str, Any], expected: list[str]) -> None:
    assert hardware_drift(HW, "ports", fields) == expected


def test_usb_drift() -> None:
    fits = {"action": "attached", "vendor": "046d", "product": "c52b", "class": "hid"}
    assert hardware_drift(HW, "usb", {**fits, "port": "1-1.2"}) == []
    assert hardware_drift(HW, "usb", {**fits, "port": "1-1.3", "action": "removed"}) == []
    assert hardware_drift(HW, "usb", {**fits, "port": "1-1.3"}) == [
        "USB device 046d:c52b (hid) on port 1-1.3: port not in the profile"
    ]
    drift = hardware_drift(HW, "usb", {"action": "attached", "port": "1-1.2"})
    assert drift == [
        "USB device ? (?) on port 1-1.2: class not in the profile",
        "USB device ? (?) on port 1-1.2: device not in the profile",
    ]
    storage = {"action": "attached", "vendor": "0781", "product": "5567", "class": "Mass\x00"}
    assert hardware_drift(HardwareProfile(), "usb", storage) == [
        "USB device 0781:5567 (Mass?) on port ?: the profile has no USB"
    ]
    anything = HardwareProfile(usb=USBRule())
    assert hardware_drift(anything, "usb", storage) == []


def test_login_drift() -> None:
    assert hardware_drift(HW, "login", {"console": "ssh", "user": "root"}) == []
    assert hardware_drift(HW, "login", {"console": "ttyS0"}) == [
        "login on console ttyS0 is not in the profile"
    ]
    assert hardware_drift(HW, "login", {"user": "root"}) == []


def test_other_kinds_never_drift() -> None:
    assert hardware_drift(HW, "tamper", {"sensor": "x"}) == []


# --- baselines --------------------------------------------------------------------------------

BASELINE = parse_profile("p", FULL).baseline
assert BASELINE is not None


def test_baseline_gaps() -> None:
    fields = {
        "os": {"name": "Debian GNU/Linux", "version": "12.5", "kernel": "5.10.0-28-arm64"},
        "drivers": [{"name": "brcmfmac", "version": "7.45.100"}, {"name": "other", "version": "1"}],
        "packages": [
            # The ecosystem key wins, compared with dpkg rules: 3.0.15-1~deb12u1 > ...u0.
            {"name": "openssl", "version": "3.0.15-1~deb12u0", "ecosystem": "Debian:12"},
            # No ecosystem: the plain key and the simple rule.
            {"name": "openssl", "version": "3.0.13"},
            {"name": "openssl", "version": "3.0.14"},
            {"name": "openssl", "version": 3},
            {"name": 5},
            "garbage",
        ],
    }
    assert BASELINE.gaps(fields) == [
        "os Debian GNU/Linux 12.5 < 12.7",
        "kernel kernel 5.10.0-28-arm64 < 6.1.0",
        "driver brcmfmac 7.45.100 < 7.45.241",
        "package openssl 3.0.15-1~deb12u0 < 3.0.15-1~deb12u1",
        "package openssl 3.0.13 < 3.0.14",
    ]


def test_baseline_gaps_skip_what_is_not_there() -> None:
    assert BASELINE.gaps({}) == []
    assert BASELINE.gaps({"os": {"name": "Alpine", "version": "1"}}) == []
    assert BASELINE.gaps({"os": {"name": 5}, "drivers": "x"}) == []
    assert Baseline().gaps({"packages": [{"name": "a", "version": "1"}]}) == []
    # The plain key applies to an ecosystem without its own key.
    plain = Baseline(package_versions={"zlib": "1.3"})
    gaps = plain.gaps({"packages": [{"name": "zlib", "version": "1.2.13", "ecosystem": "PyPI"}]})
    assert gaps == ["package zlib 1.2.13 < 1.3"]


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("1.2", "1.2", 0),
        ("1.2", "1.2.1", -1),
        ("10", "9", 1),
        ("01", "1", 0),
        ("1.a", "1.1", 1),
        ("1.0-rc1", "1.0", 1),
        ("9" * 5000, "1", 1),
    ],
)
def test_compare_versions(left: str, right: str, expected: int) -> None:
    assert compare_versions(left, right) == expected
    assert compare_versions(right, left) == -expected


# --- the book ---------------------------------------------------------------------------------


def test_the_book_resolves_assigned_default_and_missing() -> None:
    book = ProfileBook([DeviceProfile(name="a")])
    assert len(book) == 1
    assert book.resolve("a") == DeviceProfile(name="a")
    assert book.resolve(None) is None
    book.put(DeviceProfile(name=DEFAULT_PROFILE, description="fallback"))
    assert book.resolve(None) == DeviceProfile(name=DEFAULT_PROFILE, description="fallback")
    # An assigned profile that does not exist judges nothing: never the default.
    assert book.resolve("gone") is None
    assert book.names() == ["a", "default"]
    book.remove("a")
    book.remove("a")
    assert book.get("a") is None
    assert book.names() == ["default"]
