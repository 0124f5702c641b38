"""The exposure and compliance rules (ironhub.monitor.compliance): each provision passing and
failing from facts.

Facts are built by hand: the rules are pure. :data:`GOOD` is a hub that passes every provision
(it has the firmware update service and posture the real hub does not have yet); each case
changes one fact and names exactly the provisions that must then fail, so a rule that reads a
fact it should not, or misses one it should, shows.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ironhub.monitor.compliance import (
    ETSI,
    NIST,
    PROVISIONS,
    PUBLIC_ROUTES,
    AccessFacts,
    ComplianceFacts,
    CompliancePolicy,
    ExposureEntry,
    ListenerFacts,
    PostureFacts,
    ProvisionResult,
    RouteFacts,
    compliance,
    exposure,
)
from ironhub.monitor.fleet import FleetFinding, LimitFacts
from ironhub.monitor.model import Severity

NOW = 1_800_000_000.0
DAY = 86400.0

DEVICE = ListenerFacts(
    kind="device",
    host="127.0.0.1",
    port=8883,
    tls=True,
    tls_min="1.2",
    tls_max="1.3",
    client_certificates=True,
)
API = ListenerFacts(kind="api", host="127.0.0.1", port=8443, tls=True, tls_min="1.2", tls_max="1.3")
ROUTES = (
    RouteFacts("GET", "/healthz", None),
    RouteFacts("POST", "/login", None),
    RouteFacts("GET", "/devices", "devices:read"),
    RouteFacts("DELETE", "/devices/{device_id}", "devices:write"),
    RouteFacts("PATCH", "/devices/{device_id}/twin", "twins:write"),
    RouteFacts("GET", "/messages/tail", "messages:read", "text/event-stream"),
    RouteFacts("DELETE", "/messages/{device_id}", "messages:erase"),
)
POSTURE = PostureFacts(
    profiles=2,
    devices=10,
    devices_with_profile=8,
    devices_with_inventory=9,
    advisories=1200,
    advisories_imported_at=NOW - 2 * DAY,
    vulnerable_devices=0,
    outdated_devices=0,
)
GOOD = ComplianceFacts(
    now=NOW,
    listeners=(DEVICE, API),
    routes=ROUTES,
    provisioning_enabled=True,
    enrollments=2,
    monitor_enabled=True,
    webhook_enabled=True,
    audit_healthy=True,
    witness_path="/srv/witness/audit.log",
    keys_backend="pkcs11",
    data_dir="/var/lib/ironhub",
    data_dir_private=True,
    storage_synchronous="FULL",
    limits=(
        LimitFacts("device_messages_per_second", 100, 100),
        LimitFacts("connections_per_source_per_second", 200, 200, zero_disables=True),
    ),
    input_limits=(
        LimitFacts("mqtt.max_packet_bytes", 278528, 278528),
        LimitFacts("api.max_body_bytes", 1048576, 1048576),
    ),
    access=AccessFacts(accounts=2, accounts_with_mfa=2, breached_passwords=1000),
    identities=3,
    firmware_updates=True,
    posture=POSTURE,
)

ALL_REFS = [(framework, ref) for framework, ref, _, _ in PROVISIONS]


def finding(check: str, severity: Severity = Severity.CRITICAL) -> FleetFinding:
    return FleetFinding(check, severity, "subject", "problem", "fix")


def with_(**changes: Any) -> ComplianceFacts:
    return dataclasses.replace(GOOD, **changes)


def failing(facts: ComplianceFacts) -> set[str]:
    """The failing provisions as ``"5.3"`` (ETSI) and ``"N5"`` (NIST)."""
    return {
        r.ref if r.framework == ETSI else f"N{r.ref}"
        for r in compliance(facts)
        if r.status == "fail"
    }


def result(facts: ComplianceFacts, framework: str, ref: str) -> ProvisionResult:
    [found] = [r for r in compliance(facts) if (r.framework, r.ref) == (framework, ref)]
    return found


def evidence(facts: ComplianceFacts, framework: str, ref: str) -> str:
    return " | ".join(result(facts, framework, ref).evidence)


# --- the whole report -------------------------------------------------------------------------


def test_every_provision_and_capability_is_judged_in_order() -> None:
    results = compliance(GOOD)
    assert [(r.framework, r.ref) for r in results] == ALL_REFS
    assert [r.ref for r in results if r.framework == ETSI] == [f"5.{n}" for n in range(1, 14)]
    assert [r.title for r in results if r.framework == NIST] == [
        "Device Identification",
        "Device Configuration",
        "Data Protection",
        "Logical Access to Interfaces",
        "Software Update",
        "Cybersecurity State Awareness",
    ]
    assert results[0].title == "No universal default passwords"
    assert results[9].title == "Examine system telemetry data"


def test_a_hub_with_everything_passes_everything_with_evidence() -> None:
    results = compliance(GOOD)
    assert failing(GOOD) == set()
    for r in results:
        assert r.status == "pass"
        assert r.fix == ""
        assert r.evidence, r.ref
        assert all(line for line in r.evidence)


def test_the_hub_as_it_is_today_fails_the_update_provisions() -> None:
    # No firmware update service and no posture facts: what a fresh hub reports.
    today = with_(firmware_updates=False, posture=None)
    assert failing(today) == {"5.2", "5.3", "5.7", "N5"}
    for framework, ref in ((ETSI, "5.3"), (ETSI, "5.7"), (NIST, "5")):
        r = result(today, framework, ref)
        assert "no signed firmware update service" in " ".join(r.evidence)
        assert "firmware update service" in r.fix
    assert "no posture service" in evidence(today, NIST, "6")


# --- one fact at a time -----------------------------------------------------------------------


CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("no firmware updates", {"firmware_updates": False}, {"5.3", "5.7", "N5"}),
    ("no posture service", {"posture": None}, {"5.2", "5.3"}),
    (
        "never imported advisories",
        {"posture": dataclasses.replace(POSTURE, advisories_imported_at=None)},
        {"5.2"},
    ),
    (
        "stale advisories",
        {"posture": dataclasses.replace(POSTURE, advisories_imported_at=NOW - 31 * DAY)},
        {"5.2"},
    ),
    ("outdated device", {"posture": dataclasses.replace(POSTURE, outdated_devices=1)}, {"5.3"}),
    (
        "vulnerable device",
        {"posture": dataclasses.replace(POSTURE, vulnerable_devices=2)},
        {"5.3"},
    ),
    (
        "shared credentials",
        {"fleet_findings": (finding("shared-credentials"),)},
        {"5.1", "5.4", "N1"},
    ),
    (
        "default-like secret",
        {"fleet_findings": (finding("default-like-secrets", Severity.HIGH),)},
        {"5.1"},
    ),
    (
        "short passwords allowed",
        {"access": dataclasses.replace(GOOD.access, password_min_length=6)},
        {"5.1"},
    ),
    (
        "no breached list",
        {"access": dataclasses.replace(GOOD.access, breached_passwords=0)},
        {"5.1"},
    ),
    (
        "no lockout",
        {"access": dataclasses.replace(GOOD.access, lockout_failures_per_account=0)},
        {"5.1"},
    ),
    (
        "unreadable keys",
        {"fleet_findings": (finding("unreadable-keys", Severity.HIGH),)},
        {"5.4", "N3"},
    ),
    ("data dir open", {"data_dir_private": False}, {"5.4", "5.8", "N3"}),
    (
        "plaintext API",
        {"listeners": (DEVICE, dataclasses.replace(API, tls=False, tls_min="", tls_max=""))},
        {"5.5", "5.8", "N3"},
    ),
    (
        "TLS 1.0 allowed",
        {"listeners": (dataclasses.replace(DEVICE, tls_min="1.0"), API)},
        {"5.5", "5.8", "N3"},
    ),
    (
        "TLS floor unknown",
        {"listeners": (dataclasses.replace(DEVICE, tls_min="", observed=False), API)},
        {"5.5", "5.8", "N3"},
    ),
    (
        "wildcard IPv4",
        {"listeners": (dataclasses.replace(DEVICE, host="0.0.0.0"), API)},
        {"5.6"},
    ),
    ("wildcard IPv6", {"listeners": (DEVICE, dataclasses.replace(API, host="::"))}, {"5.6"}),
    (
        "one interface",
        {"listeners": (dataclasses.replace(DEVICE, host="192.0.2.10"), API)},
        set(),
    ),
    (
        "host name",
        {"listeners": (dataclasses.replace(DEVICE, host="hub.example.net"), API)},
        set(),
    ),
    ("localhost", {"listeners": (dataclasses.replace(DEVICE, host="localhost"), API)}, set()),
    (
        "undeclared public read",
        {"routes": (*ROUTES, RouteFacts("GET", "/status", None))},
        {
            "5.6",
            "N4",
        },
    ),
    (
        "undeclared public write on device data",
        {"routes": (*ROUTES, RouteFacts("POST", "/devices", None))},
        {"5.6", "5.8", "N2", "N4"},
    ),
    ("idle provisioning", {"enrollments": 0}, {"5.6"}),
    ("no provisioning", {"provisioning_enabled": False, "enrollments": 0}, {"5.12"}),
    ("monitor off", {"monitor_enabled": False}, {"5.10", "N6"}),
    (
        "logging broken",
        {"fleet_findings": (finding("disabled-logging", Severity.HIGH),)},
        {"5.10"},
    ),
    (
        "no witness (medium)",
        {"fleet_findings": (finding("disabled-logging", Severity.MEDIUM),)},
        set(),
    ),
    ("no audit log", {"audit_healthy": None}, {"N2", "N6"}),
    ("audit log failing", {"audit_healthy": False}, {"N2", "N6"}),
    ("commits not fsynced", {"storage_synchronous": "NORMAL"}, {"5.9"}),
    ("EXTRA is durable", {"storage_synchronous": "EXTRA"}, set()),
    (
        "a rate limit off",
        {"limits": (LimitFacts("connections_per_source_per_second", 0, 200, zero_disables=True),)},
        {"5.9"},
    ),
    (
        "a rate limit raised far",
        {"limits": (LimitFacts("device_messages_per_second", 1001, 100),)},
        {"5.9"},
    ),
    ("a rate limit raised a little", {"limits": (LimitFacts("x", 1000, 100),)}, set()),
    (
        "input bound raised far",
        {"input_limits": (LimitFacts("api.max_body_bytes", 11 * 1048576, 1048576),)},
        {"5.13"},
    ),
    (
        "no identity erasure",
        {"routes": tuple(r for r in ROUTES if r.path != "/devices/{device_id}")},
        {"5.11"},
    ),
    (
        "no message erasure",
        {"routes": tuple(r for r in ROUTES if r.method != "DELETE" or r.path.startswith("/dev"))},
        {"5.11"},
    ),
    (
        "no configuration route",
        {"routes": tuple(r for r in ROUTES if r.method != "PATCH")},
        {"N2"},
    ),
    (
        "an account without MFA",
        {"access": dataclasses.replace(GOOD.access, accounts_with_mfa=1)},
        {"N4"},
    ),
    ("revoked but connected", {"fleet_findings": (finding("revoked-but-connected"),)}, {"N1"}),
    (
        "findings the report does not read",
        {
            "fleet_findings": (
                finding("never-seen", Severity.LOW),
                finding("keys-older-than-policy"),
            )
        },
        set(),
    ),
]


@pytest.mark.parametrize(("changes", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_fact_fails_exactly_its_provisions(changes: dict[str, Any], expected: set[str]) -> None:
    facts = with_(**changes)
    assert failing(facts) == expected
    for r in compliance(facts):
        assert (r.fix != "") == (r.status == "fail"), r


# --- what the evidence says -------------------------------------------------------------------


def test_listeners_are_cited_with_their_tls_range() -> None:
    text = evidence(GOOD, ETSI, "5.5")
    assert "device endpoint (MQTT) 127.0.0.1:8883 accepts TLS 1.2 to 1.3 only" in text
    assert "operator API (HTTPS) 127.0.0.1:8443 accepts TLS 1.2 to 1.3 only" in text
    assert "alert webhook: HTTPS only" in text
    pinned = with_(listeners=(dataclasses.replace(DEVICE, tls_max="1.2"),), webhook_enabled=False)
    assert evidence(pinned, ETSI, "5.5") == (
        "device endpoint (MQTT) 127.0.0.1:8883 accepts TLS 1.2+ only"
    )
    unknown = with_(listeners=(dataclasses.replace(DEVICE, tls_min="", observed=False),))
    assert "TLS from the library's minimum version (not pinned) (from the configuration" in (
        evidence(unknown, ETSI, "5.5")
    )
    plain = with_(listeners=(dataclasses.replace(API, tls=False, host="::1"),))
    assert "operator API (HTTPS) [::1]:8443 accepts no TLS" in evidence(plain, ETSI, "5.5")


def test_a_fix_shared_by_several_failures_is_given_once() -> None:
    weak = dataclasses.replace(DEVICE, tls_min="1.0")
    facts = with_(listeners=(weak, dataclasses.replace(API, tls_min="1.1")))
    r = result(facts, ETSI, "5.5")
    assert r.status == "fail"
    assert r.fix == "serve every listener over TLS with a minimum version of 1.2"
    assert len([line for line in r.evidence if "accepts" in line]) == 2


def test_the_advisory_rule_is_stated() -> None:
    assert "imported 2 days ago (1200 advisories); the rule: within 30 days" in evidence(
        GOOD, ETSI, "5.2"
    )
    stale = with_(posture=dataclasses.replace(POSTURE, advisories_imported_at=NOW - 45 * DAY))
    r = result(stale, ETSI, "5.2")
    assert "imported 45 days ago" in r.evidence[0]
    assert "every 30 days" in r.fix
    looser = compliance(stale, CompliancePolicy(advisory_max_age_days=60))
    assert next(x for x in looser if x.ref == "5.2").status == "pass"
    assert "no advisory feed was ever imported" in evidence(
        with_(posture=dataclasses.replace(POSTURE, advisories_imported_at=None)), ETSI, "5.2"
    )


def test_fleet_findings_are_counted_in_the_evidence() -> None:
    assert "0 shared-credential findings in the fleet audit" in evidence(GOOD, ETSI, "5.1")
    two = with_(fleet_findings=(finding("shared-credentials"), finding("shared-credentials")))
    assert "2 shared-credential findings in the fleet audit" in evidence(two, NIST, "1")
    assert "ironhub audit-fleet" in result(two, NIST, "1").fix
    assert "3 identities" in evidence(GOOD, NIST, "1")


def test_audit_log_states_are_worded() -> None:
    assert "audit log healthy, witness file /srv/witness/audit.log configured" in evidence(
        GOOD, ETSI, "5.10"
    )
    assert "audit log healthy, no witness file configured" in evidence(
        with_(witness_path=""), NIST, "6"
    )
    assert "without an audit log" in evidence(with_(audit_healthy=None), NIST, "2")
    assert "failed to write" in evidence(with_(audit_healthy=False), NIST, "6")
    off = with_(monitor_enabled=False)
    assert "monitor is disabled" in evidence(off, ETSI, "5.10")
    assert result(off, ETSI, "5.10").fix == "set monitor.enabled = true"


def test_storage_keys_and_data_are_worded() -> None:
    assert "held in a PKCS#11 token" in evidence(GOOD, ETSI, "5.4")
    assert "0600 files" in evidence(with_(keys_backend="file"), ETSI, "5.4")
    assert "/var/lib/ironhub is private" in evidence(GOOD, NIST, "3")
    opened = with_(data_dir_private=False)
    assert "/var/lib/ironhub is open to group or others" in evidence(opened, ETSI, "5.8")
    assert "chmod 700 /var/lib/ironhub" in result(opened, ETSI, "5.8").fix
    assert "outside the hub's view" in evidence(GOOD, ETSI, "5.8")
    assert "needs a permission" in evidence(GOOD, ETSI, "5.8")
    leaky = with_(routes=(*ROUTES, RouteFacts("GET", "/twins", None)))
    assert "public routes reading device data: GET /twins" in evidence(leaky, ETSI, "5.8")
    assert "storage.synchronous = NORMAL: a power cut" in evidence(
        with_(storage_synchronous="NORMAL"), ETSI, "5.9"
    )
    assert "device_messages_per_second = 100" in evidence(GOOD, ETSI, "5.9")
    off = with_(limits=(LimitFacts("c", 0, 200, zero_disables=True),))
    assert "c is 0: the limit is off" in evidence(off, ETSI, "5.9")
    raised = with_(input_limits=(LimitFacts("api.max_body_bytes", 2e7, 1e6),))
    assert "api.max_body_bytes is 2e+07, above 10x its default 1e+06" in evidence(
        raised, ETSI, "5.13"
    )
    assert "mqtt.max_packet_bytes = 278528" in evidence(GOOD, ETSI, "5.13")


def test_attack_surface_evidence() -> None:
    text = evidence(GOOD, ETSI, "5.6")
    assert "device endpoint (MQTT) 127.0.0.1:8883: loopback only" in text
    assert "2 of 7 routes are public, each declared public by design" in text
    assert "GET /healthz, POST /login" in text
    assert "provisioning is served with 2 enrollments" in text
    wide = with_(listeners=(dataclasses.replace(DEVICE, host="0.0.0.0"),))
    assert "binds every interface" in evidence(wide, ETSI, "5.6")
    beyond = with_(listeners=(dataclasses.replace(DEVICE, host="192.0.2.10"),))
    assert "binds beyond loopback" in evidence(beyond, ETSI, "5.6")
    closed = with_(routes=tuple(r for r in ROUTES if r.permission), provisioning_enabled=False)
    text = evidence(closed, ETSI, "5.6")
    assert "0 of 5 routes are public, each declared public by design (none)" in text
    assert "provisioning is not served" in text
    undeclared = with_(routes=(*ROUTES, RouteFacts("GET", "/status", None)))
    assert "public routes outside the declared set: GET /status" in evidence(undeclared, NIST, "4")
    idle = with_(enrollments=0)
    assert result(idle, ETSI, "5.6").fix == (
        "set provisioning.enabled = false until devices are to be enrolled"
    )


def test_erasure_configuration_and_access_evidence() -> None:
    assert "DELETE /devices/{device_id} erases an identity" in evidence(GOOD, ETSI, "5.11")
    assert "erased by DELETE /messages/{device_id}" in evidence(GOOD, ETSI, "5.11")
    bare = with_(routes=(RouteFacts("GET", "/devices", "devices:read"),))
    text = evidence(bare, ETSI, "5.11")
    assert "no DELETE /devices/{device_id} route" in text
    assert "no route erases the telemetry" in text
    assert "no PATCH /devices/{device_id}/twin route" in evidence(bare, NIST, "2")
    writes = with_(routes=(*ROUTES, RouteFacts("DELETE", "/cas/{fingerprint}", None)))
    assert "state-changing routes without a permission: DELETE /cas/{fingerprint}" in evidence(
        writes, NIST, "2"
    )
    assert "2 of 2 enabled operator accounts use TOTP MFA (the hub does not require it)" in (
        evidence(GOOD, NIST, "4")
    )
    required = with_(access=dataclasses.replace(GOOD.access, mfa_required=True))
    assert "use TOTP MFA" in evidence(required, NIST, "4")
    assert "does not require" not in evidence(required, NIST, "4")
    assert "at least 12 characters; 1000 common or breached" in evidence(GOOD, ETSI, "5.1")
    assert "after 5 failures and a source after 20" in evidence(GOOD, ETSI, "5.1")
    assert "provisioning is off" in evidence(with_(provisioning_enabled=False), ETSI, "5.12")
    assert "(2 enrollments)" in evidence(GOOD, ETSI, "5.12")


def test_posture_evidence() -> None:
    assert "9 of 10 devices report an inventory, 8 have a hardware profile (2 profiles)" in (
        evidence(GOOD, NIST, "6")
    )
    text = evidence(with_(posture=dataclasses.replace(POSTURE, outdated_devices=3)), ETSI, "5.3")
    assert "3 of 10 devices run outdated software" in text
    assert "which software the devices run is not known" in evidence(
        with_(posture=None), ETSI, "5.3"
    )
    assert "no posture service: no vulnerability advisory feed" in evidence(
        with_(posture=None), ETSI, "5.2"
    )


# --- exposure ---------------------------------------------------------------------------------


def entries(facts: ComplianceFacts, kind: str) -> list[ExposureEntry]:
    return [e for e in exposure(facts) if e.kind == kind]


def test_exposure_lists_listeners_protocols_then_routes() -> None:
    report = exposure(GOOD)
    kinds = [e.kind for e in report]
    assert kinds == sorted(kinds, key=["listener", "protocol", "route"].index)
    assert [e.name for e in entries(GOOD, "route")] == [f"{r.method} {r.path}" for r in ROUTES]
    [device, api] = entries(GOOD, "listener")
    assert device == ExposureEntry(
        "listener",
        "device endpoint (MQTT)",
        "127.0.0.1:8883",
        "each device by a SAS token (HMAC-SHA256 of its own key) or an X.509 client certificate, "
        "checked before any topic; registrations by an enrollment key, certificate or claim token",
        "TLS 1.2 to 1.3 only; loopback only; asks for client certificates",
    )
    assert api.where == "127.0.0.1:8443"
    assert api.authentication.startswith("a bearer token")
    assert api.notes == "TLS 1.2 to 1.3 only; loopback only"


def test_exposure_protocols_follow_the_facts() -> None:
    names = [e.name for e in entries(GOOD, "protocol")]
    assert names == [
        "MQTT 3.1.1 over TLS (Azure IoT Hub device protocol)",
        "DPS over MQTT/TLS (device provisioning)",
        "HTTPS REST (operator API, OpenAPI 3.1)",
        "Server-Sent Events (live tail)",
        "alert webhook (HTTPS POST, outbound)",
        "PKCS#11 (key token)",
    ]
    by_name = {e.name: e for e in entries(GOOD, "protocol")}
    assert by_name["HTTPS REST (operator API, OpenAPI 3.1)"].notes == "7 routes, 2 public"
    assert by_name["Server-Sent Events (live tail)"].authentication == "as its route: messages:read"
    assert by_name["DPS over MQTT/TLS (device provisioning)"].notes == ""
    idle = {e.name: e for e in entries(with_(enrollments=0), "protocol")}
    assert idle["DPS over MQTT/TLS (device provisioning)"].notes.startswith("no enrollment")
    lean = with_(
        listeners=(API,),
        routes=ROUTES[:2],
        provisioning_enabled=False,
        webhook_enabled=False,
        keys_backend="file",
    )
    assert [e.name for e in entries(lean, "protocol")] == ["HTTPS REST (operator API, OpenAPI 3.1)"]
    device_only = with_(listeners=(DEVICE,), provisioning_enabled=False)
    assert [e.name for e in entries(device_only, "protocol")][:2] == [
        "MQTT 3.1.1 over TLS (Azure IoT Hub device protocol)",
        "alert webhook (HTTPS POST, outbound)",
    ]
    [listener] = entries(device_only, "listener")
    assert "registrations" not in listener.authentication


def test_exposure_route_notes() -> None:
    routes = {e.name: e for e in entries(GOOD, "route")}
    assert routes["GET /healthz"].authentication == "none"
    assert routes["GET /healthz"].notes == f"public: no token ({PUBLIC_ROUTES['GET', '/healthz']})"
    assert routes["GET /devices"].authentication == "bearer token with permission devices:read"
    assert routes["GET /devices"].notes == ""
    assert routes["DELETE /devices/{device_id}"].notes == (
        "recorded in the audit log before it runs"
    )
    assert routes["GET /messages/tail"].notes == "Server-Sent Events stream"
    assert all(e.where == "operator API" for e in routes.values())
    odd = with_(routes=(RouteFacts("GET", "/status", None),))
    [entry] = entries(odd, "route")
    assert entry.notes == "public: no token, NOT DECLARED"


def test_exposure_listener_notes() -> None:
    wide = dataclasses.replace(API, host="0.0.0.0", observed=False)
    [entry] = entries(with_(listeners=(wide,)), "listener")
    assert entry.notes == (
        "TLS 1.2 to 1.3 only; binds every interface; from the configuration, not observed"
    )
    v6 = dataclasses.replace(DEVICE, host="2001:db8::1", client_certificates=False)
    [entry] = entries(with_(listeners=(v6,)), "listener")
    assert entry.where == "[2001:db8::1]:8883"
    assert entry.notes == "TLS 1.2 to 1.3 only; binds beyond loopback"
    other = ListenerFacts(kind="gateway", host="127.0.0.1", port=1, tls=True, tls_min="1.3")
    [entry] = entries(with_(listeners=(other,)), "listener")
    assert entry.name == "gateway"
    assert "gateway 127.0.0.1:1 accepts TLS 1.3+ only" in evidence(
        with_(listeners=(other,)), ETSI, "5.5"
    )


def test_a_policy_may_declare_more_public_routes() -> None:
    status = RouteFacts("GET", "/status", None)
    policy = CompliancePolicy(public_routes={**PUBLIC_ROUTES, ("GET", "/status"): "why not"})
    results = compliance(with_(routes=(*ROUTES, status)), policy)
    assert all(r.status == "pass" for r in results)
    [entry] = [e for e in exposure(with_(routes=(status,)), policy) if e.kind == "route"]
    assert entry.notes == "public: no token (why not)"


def test_route_facts_are_plain_tuples() -> None:
    assert RouteFacts(*("GET", "/x", None)) == RouteFacts("GET", "/x", None, "application/json")
    assert tuple(RouteFacts("GET", "/x", "a:read"))[:3] == ("GET", "/x", "a:read")
