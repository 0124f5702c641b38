"""The fleet audit's rules (ironhub.monitor.fleet): each check firing and not firing.

Snapshots are built by hand: the rules are pure, so no hub, no clock and no storage are
needed. ``NOW`` is an arbitrary fixed time; ages are expressed in days before it.
"""

from __future__ import annotations

import dataclasses

import pytest

from ironhub.monitor.fleet import (
    CHECKS,
    CertificateFacts,
    ConnectionFacts,
    FleetFinding,
    FleetPolicy,
    FleetSnapshot,
    HubSettings,
    IdentityFacts,
    LimitFacts,
    OperatorFacts,
    SecretFacts,
    TokenFacts,
    at_or_above,
    audit_fleet,
    check_certificate_expiring,
    check_default_like_secrets,
    check_disabled_logging,
    check_keys_older_than_policy,
    check_never_seen,
    check_permissive_settings,
    check_revoked_but_connected,
    check_shared_credentials,
    check_unreadable_keys,
)
from ironhub.monitor.model import Severity

NOW = 1_800_000_000.0
DAY = 86400.0
POLICY = FleetPolicy()
#: The hub settings that produce no finding at all (witness set, pkcs11, no provisioning).
QUIET = HubSettings(witness_path="/witness", keys_backend="pkcs11", provisioning_enabled=False)


def ident(identity: str, *, age_days: float = 1.0, **kw: object) -> IdentityFacts:
    base: dict[str, object] = {
        "identity": identity,
        "auth_kind": "sas",
        "enabled": True,
        "created_at": NOW - age_days * DAY,
        "updated_at": NOW - age_days * DAY,
    }
    base.update(kw)
    return IdentityFacts(**base)  # type: ignore[arg-type]


def snap(**kw: object) -> FleetSnapshot:
    kw.setdefault("settings", QUIET)
    return FleetSnapshot(now=NOW, **kw)  # type: ignore[arg-type]


def cert(
    identity: str, days_left: float, *, origin: str = "issued", **kw: object
) -> CertificateFacts:
    return CertificateFacts(
        identity=identity,
        origin=origin,
        reference=f"{identity}-{days_left}",
        not_after=NOW + days_left * DAY,
        **kw,  # type: ignore[arg-type]
    )


def summary(findings: list[FleetFinding]) -> list[tuple[str, Severity, str]]:
    return [(f.check, f.severity, f.subject) for f in findings]


# --- the whole audit --------------------------------------------------------------------------


def test_a_quiet_snapshot_finds_nothing() -> None:
    assert audit_fleet(snap(identities=(ident("d1"), ident("d2", key_hashes=("a",))))) == []


def test_a_fresh_hub_finds_exactly_its_legitimate_low_and_medium_settings() -> None:
    findings = audit_fleet(FleetSnapshot(now=NOW))
    assert summary(findings) == [
        ("disabled-logging", Severity.MEDIUM, "audit.witness_path"),
        ("permissive-settings", Severity.LOW, "keys.backend"),
        ("permissive-settings", Severity.LOW, "provisioning.enabled"),
    ]
    assert at_or_above(findings, Severity.HIGH) == []
    assert len(at_or_above(findings, Severity.MEDIUM)) == 1
    assert at_or_above(findings, Severity.LOW) == findings


def test_findings_come_most_severe_first_and_the_policy_is_used() -> None:
    snapshot = snap(
        identities=(
            ident("old", age_days=30),
            ident("a", key_hashes=("k",)),
            ident("b", key_hashes=("k",)),
        ),
    )
    findings = audit_fleet(snapshot)
    assert summary(findings) == [
        ("shared-credentials", Severity.CRITICAL, "a, b"),
        ("never-seen", Severity.LOW, "old"),
    ]
    assert summary(audit_fleet(snapshot, FleetPolicy(never_seen_days=60))) == summary(findings)[:1]


def test_every_check_is_listed_once() -> None:
    assert len(set(CHECKS)) == len(CHECKS) == 9


# --- shared-credentials -----------------------------------------------------------------------


def test_the_same_sas_key_on_two_identities_is_critical() -> None:
    found = check_shared_credentials(
        snap(
            identities=(
                ident("d1", key_hashes=("h1", "h2")),
                ident("d2/m", key_hashes=("h3", "h1")),
                ident("d3", key_hashes=("h4", "h4")),  # both slots alike: shared with nobody
            )
        ),
        POLICY,
    )
    assert summary(found) == [("shared-credentials", Severity.CRITICAL, "d1, d2/m")]
    assert "SAS key" in found[0].problem
    assert "rotate-key" in found[0].fix
    assert "h1" not in found[0].problem + found[0].fix


def test_the_same_thumbprint_is_shared_whatever_its_case() -> None:
    found = check_shared_credentials(
        snap(
            identities=(
                ident("t1", auth_kind="x509-thumbprint", thumbprints=("abcd",)),
                ident("t2", auth_kind="x509-thumbprint", thumbprints=("ABCD", "EF01")),
            )
        ),
        POLICY,
    )
    assert summary(found) == [("shared-credentials", Severity.CRITICAL, "t1, t2")]
    assert "thumbprint" in found[0].problem


def test_a_whole_batch_sharing_a_key_is_named_in_a_readable_line() -> None:
    batch = tuple(ident(f"dev{i:02d}", key_hashes=("same",)) for i in range(13))
    (found,) = check_shared_credentials(snap(identities=batch), POLICY)
    assert found.subject.endswith("dev09 (+3 more)")
    assert found.problem.startswith("13 identities")


def test_unreadable_keys_are_high() -> None:
    found = check_unreadable_keys(
        snap(identities=(ident("ok"), ident("bad", keys_unreadable=True))), POLICY
    )
    assert summary(found) == [("unreadable-keys", Severity.HIGH, "bad")]


# --- certificate-expiring ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days_left", "severity"),
    [
        (-1.0, Severity.CRITICAL),
        (0.0, Severity.CRITICAL),
        (3.0, Severity.HIGH),
        (7.0, Severity.HIGH),
        (20.0, Severity.MEDIUM),
        (30.0, Severity.MEDIUM),
        (31.0, None),
    ],
)
def test_expiry_severity_by_days_left(days_left: float, severity: Severity | None) -> None:
    for origin in ("issued", "thumbprint"):
        found = check_certificate_expiring(
            snap(certificates=(cert("d", days_left, origin=origin),)), POLICY
        )
        assert [f.severity for f in found] == ([] if severity is None else [severity])
        for f in found:
            assert origin in f.problem
            assert ("re-provision" in f.fix) == (origin == "issued")
            assert ("expired" in f.problem) == (severity is Severity.CRITICAL)


def test_the_expiry_window_follows_the_policy() -> None:
    certificates = (cert("d", 45.0),)
    assert check_certificate_expiring(snap(certificates=certificates), POLICY) == []
    found = check_certificate_expiring(snap(certificates=certificates), FleetPolicy(expiry_days=60))
    assert [f.severity for f in found] == [Severity.MEDIUM]


def test_only_the_newest_unrevoked_issued_certificate_counts() -> None:
    certificates = (
        cert("d", -10.0),  # superseded, expired: harmless
        cert("d", 90.0),  # the current one
        cert("d", 2.0),  # superseded too (older than the current)
        cert("e", 200.0, revoked=True),  # revoked: out of use
        cert("e", 1.0),
        cert("t", 1.0, origin="thumbprint"),  # both thumbprint slots are live: each judged
        cert("t", 2.0, origin="thumbprint"),
        cert("t", 3.0, origin="thumbprint", revoked=True),
    )
    found = check_certificate_expiring(snap(certificates=certificates), POLICY)
    assert sorted((f.subject, f.severity) for f in found) == [
        ("e", Severity.HIGH),
        ("t", Severity.HIGH),
        ("t", Severity.HIGH),
    ]


# --- revoked-but-connected --------------------------------------------------------------------


def test_a_connected_x509_ca_identity_whose_certificates_are_all_revoked_is_critical() -> None:
    snapshot = snap(
        certificates=(
            cert("gone", 10.0, revoked=True),
            cert("gone", 20.0, revoked=True),
            cert("half", 10.0, revoked=True),
            cert("half", 20.0),
            cert("sas", 10.0, revoked=True),
            cert("thumb", 10.0, origin="thumbprint", revoked=True),
        ),
        connections=(
            ConnectionFacts("gone", "x509-ca", "10.0.0.9:5000"),
            ConnectionFacts("half", "x509-ca", "10.0.0.8:5000"),
            ConnectionFacts("factory", "x509-ca", "10.0.0.7:5000"),  # no issued certificate
            ConnectionFacts("sas", "sas", "10.0.0.6:5000"),
            ConnectionFacts("thumb", "x509-ca", "10.0.0.5:5000"),  # only thumbprint facts
        ),
    )
    found = check_revoked_but_connected(snapshot, POLICY)
    assert summary(found) == [("revoked-but-connected", Severity.CRITICAL, "gone")]
    assert "10.0.0.9:5000" in found[0].problem


# --- never-seen -------------------------------------------------------------------------------


def test_old_enabled_identities_that_never_connected_are_low() -> None:
    snapshot = snap(
        identities=(
            ident("never", age_days=8),
            ident("seen", age_days=8),
            ident("live", age_days=8),
            ident("young", age_days=6),
            ident("off", age_days=8, enabled=False),
        ),
        ever_connected=frozenset({"seen"}),
        connections=(ConnectionFacts("live", "sas", "p"),),
    )
    found = check_never_seen(snapshot, POLICY)
    assert summary(found) == [("never-seen", Severity.LOW, "never")]
    assert "8 days" in found[0].problem


def test_an_incomplete_lifecycle_scan_says_so_instead_of_guessing() -> None:
    snapshot = snap(identities=(ident("never", age_days=8),), lifecycle_scan_complete=False)
    assert summary(check_never_seen(snapshot, POLICY)) == [("never-seen", Severity.LOW, "hub")]


# --- disabled-logging -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("healthy", "witness", "expected"),
    [
        (True, "/w", []),
        (True, "", [Severity.MEDIUM]),
        (False, "/w", [Severity.HIGH]),
        (None, "", [Severity.HIGH, Severity.MEDIUM]),
    ],
)
def test_disabled_logging(healthy: bool | None, witness: str, expected: list[Severity]) -> None:
    settings = dataclasses.replace(QUIET, audit_healthy=healthy, witness_path=witness)
    found = check_disabled_logging(snap(settings=settings), POLICY)
    assert [f.severity for f in found] == expected
    if healthy is False:
        assert "failed" in found[0].problem
    if healthy is None:
        assert "without an audit log" in found[0].problem


# --- permissive-settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "exposed"),
    [
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("::1", False),
        ("localhost", False),
        ("0.0.0.0", True),
        ("::", True),
        ("192.0.2.10", True),
        ("hub.example.test", True),
    ],
)
def test_listeners_beyond_loopback_are_medium(host: str, exposed: bool) -> None:
    for field in ("mqtt_host", "api_host"):
        settings = dataclasses.replace(QUIET, **{field: host})
        found = check_permissive_settings(snap(settings=settings), POLICY)
        expected = [(f"{field.partition('_')[0]}.host", Severity.MEDIUM)] if exposed else []
        assert [(f.subject, f.severity) for f in found] == expected


def test_a_disabled_monitor_is_high() -> None:
    settings = dataclasses.replace(QUIET, monitor_enabled=False)
    found = check_permissive_settings(snap(settings=settings), POLICY)
    assert summary(found) == [("permissive-settings", Severity.HIGH, "monitor.enabled")]


@pytest.mark.parametrize(
    ("enabled", "enrollments", "found"),
    [(True, False, True), (True, True, False), (False, False, False)],
)
def test_provisioning_with_nobody_invited_is_low(
    enabled: bool,
    enrollments: bool,
    found: bool,
) -> None:
    settings = dataclasses.replace(QUIET, provisioning_enabled=enabled, has_enrollments=enrollments)
    findings = check_permissive_settings(snap(settings=settings), POLICY)
    assert bool(findings) == found
    assert all(f.subject == "provisioning.enabled" and f.severity is Severity.LOW for f in findings)


def test_file_keys_are_low() -> None:
    settings = dataclasses.replace(QUIET, keys_backend="file")
    found = check_permissive_settings(snap(settings=settings), POLICY)
    assert summary(found) == [("permissive-settings", Severity.LOW, "keys.backend")]
    assert "pkcs11" in found[0].fix


def test_limits_raised_far_or_turned_off_are_medium() -> None:
    limits = (
        LimitFacts("auth_failures_per_source_per_minute", 201.0, 20.0),
        LimitFacts("auth_failures_per_identity_per_minute", 100.0, 10.0),  # exactly 10x: fine
        LimitFacts("device_message_burst", 0.0, 200.0),  # lowered: stricter, fine
        LimitFacts("connections_per_source_per_second", 0.0, 200.0, zero_disables=True),
        LimitFacts("twin_operations_per_second", 5.0, 10.0, zero_disables=True),
    )
    settings = dataclasses.replace(QUIET, limits=limits)
    found = check_permissive_settings(snap(settings=settings), POLICY)
    assert summary(found) == [
        ("permissive-settings", Severity.MEDIUM, "limits.auth_failures_per_source_per_minute"),
        ("permissive-settings", Severity.MEDIUM, "limits.connections_per_source_per_second"),
    ]
    assert "10 times the default 20" in found[0].problem
    assert "off" in found[1].problem
    assert check_permissive_settings(snap(settings=settings), FleetPolicy(limit_factor=20))[
        0
    ].subject.endswith("connections_per_source_per_second")


# --- default-like-secrets ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (None, None),
        (SecretFacts(32, one_character=False), None),
        (SecretFacts(64, one_character=True), "one character"),
        (SecretFacts(16, one_character=False), "16 bytes"),
    ],
)
def test_weak_webhook_secrets_are_high(secret: SecretFacts | None, problem: str | None) -> None:
    settings = dataclasses.replace(QUIET, webhook_secret=secret)
    found = check_default_like_secrets(snap(settings=settings), POLICY)
    if problem is None:
        assert found == []
    else:
        assert summary(found) == [
            ("default-like-secrets", Severity.HIGH, "monitor.webhook_secret_file")
        ]
        assert problem in found[0].problem


def test_a_one_time_password_kept_past_its_grace_is_high() -> None:
    old = NOW - 25 * 3600
    operators = (
        OperatorFacts("kept", one_time=True, password_changed_at=old, disabled=False),
        OperatorFacts("fresh", one_time=True, password_changed_at=NOW - 3600, disabled=False),
        OperatorFacts("gone", one_time=True, password_changed_at=old, disabled=True),
        OperatorFacts("rotated", one_time=False, password_changed_at=old, disabled=False),
    )
    found = check_default_like_secrets(snap(operators=operators), POLICY)
    assert summary(found) == [("default-like-secrets", Severity.HIGH, "operator kept")]


def test_an_automation_token_without_expiry_is_critical() -> None:
    tokens = (
        TokenFacts("tk1", "ci", "automation", None, revoked=False),
        TokenFacts("tk2", "old", "automation", None, revoked=True),
        TokenFacts("tk3", "cron", "automation", NOW + DAY, revoked=False),
        TokenFacts("tk4", "alice", "session", None, revoked=False),
    )
    found = check_default_like_secrets(snap(tokens=tokens), POLICY)
    assert summary(found) == [("default-like-secrets", Severity.CRITICAL, "token tk1 (ci)")]


# --- keys-older-than-policy -------------------------------------------------------------------


def test_sas_keys_older_than_the_policy_are_medium() -> None:
    identities = (
        ident("old", age_days=400),
        ident("recent", age_days=400, updated_at=NOW - 10 * DAY),
        ident("x509", age_days=400, auth_kind="x509-ca"),
    )
    found = check_keys_older_than_policy(snap(identities=identities), POLICY)
    assert summary(found) == [("keys-older-than-policy", Severity.MEDIUM, "old")]
    assert "400 days" in found[0].problem
    assert (
        check_keys_older_than_policy(snap(identities=identities), FleetPolicy(key_max_age_days=500))
        == []
    )
