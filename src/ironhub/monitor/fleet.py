"""The fleet audit: risky configuration across the devices and the hub (pure; issue 6).

Input is one :class:`FleetSnapshot`, a plain record of facts that
:mod:`ironhub.monitor.fleet_service` gathers from the running services; output is a list of
:class:`FleetFinding`, most severe first, each with the fix in one line. Nothing here does
I/O, reads a clock (``snapshot.now`` is the time) or ever sees a secret: SAS keys arrive as
SHA-256 hashes, the webhook secret as its length and whether it repeats one character.

==========================  ==========  =========================================================
check                       severity    fires when
==========================  ==========  =========================================================
``shared-credentials``      critical    two or more identities hold the same SAS key (equal
                                        hashes) or the same certificate thumbprint
``unreadable-keys``         high        a sealed SAS key cannot be unsealed (wrong KEK or
                                        tampering)
``certificate-expiring``    critical    a device certificate has expired
                            high        it expires within ``urgent_expiry_days`` (7)
                            medium      it expires within ``expiry_days`` (30, ``--days``)
``revoked-but-connected``   critical    an ``x509-ca`` identity is connected while every
                                        certificate the device CA issued to it is revoked
``never-seen``              low         an enabled identity older than ``never_seen_days`` (7)
                                        has no ``connected`` lifecycle record (and is not
                                        connected now); one low finding instead when the
                                        lifecycle scan hit its bound
``disabled-logging``        high        the audit log is unhealthy, or the hub runs without one
                            medium      no audit witness file is configured
``permissive-settings``     high        the monitor is disabled
                            medium      a listener binds beyond loopback; a limit is raised
                                        above ``limit_factor`` (10) times its default or
                                        disabled
                            low         provisioning is on with no enrollment; CA keys are in
                                        files (``keys.backend = file``)
``default-like-secrets``    critical    an automation token never expires
                            high        the webhook secret is short (< 32 bytes) or one
                                        repeated character; an operator still has the
                                        one-time password after ``one_time_password_hours``
``keys-older-than-policy``  medium      a SAS identity's record is older than
                                        ``key_max_age_days`` (365)
==========================  ==========  =========================================================

Approximations, chosen because the hub does not record the exact fact:

* ``revoked-but-connected``: the endpoint does not expose the serial of a live connection's
  certificate, so an ``x509-ca`` identity is flagged when *all* of its issued certificates are
  revoked. A device also holding a certificate from a registered factory CA is flagged too (a
  false positive worth a look); one with a revoked and a valid issued certificate is not.
* ``keys-older-than-policy``: the registry keeps no per-key rotation time; ``updated_at``
  changes on every update of the record (rotation, enable, disable), so it bounds the key's
  age from below: a finding is certain, its absence is not.
* ``certificate-expiring``: only the newest unrevoked issued certificate of an identity is
  judged, since re-provisioning supersedes the older ones, which then expire harmlessly.
  Thumbprint certificates are judged each (both slots are live credentials).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ironhub.monitor.model import Severity

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = [
    "CHECKS",
    "SEVERITY_RANK",
    "CertificateFacts",
    "ConnectionFacts",
    "FleetFinding",
    "FleetPolicy",
    "FleetSnapshot",
    "HubSettings",
    "IdentityFacts",
    "LimitFacts",
    "OperatorFacts",
    "SecretFacts",
    "TokenFacts",
    "at_or_above",
    "audit_fleet",
]

_DAY = 86400.0
_HOUR = 3600.0
#: Identities named in one finding's subject; the rest are counted, so a key copied to a whole
#: production batch still gives a readable line.
_MAX_NAMED = 10

#: Severities in order, least first, for sorting and ``--min-severity``.
SEVERITY_RANK: dict[Severity, int] = {
    Severity.LOW: 0,
    Severity.MEDIUM: 1,
    Severity.HIGH: 2,
    Severity.CRITICAL: 3,
}


@dataclass(frozen=True, slots=True)
class FleetPolicy:
    """The thresholds of the checks (defaults in the module table)."""

    expiry_days: float = 30.0
    urgent_expiry_days: float = 7.0
    never_seen_days: float = 7.0
    key_max_age_days: float = 365.0
    one_time_password_hours: float = 24.0
    #: A limit above this multiple of its default is "raised far".
    limit_factor: float = 10.0
    #: HMAC-SHA256 keys shorter than its output (32 bytes) weaken it (RFC 2104 §3).
    min_webhook_secret_bytes: int = 32


@dataclass(frozen=True, slots=True)
class FleetFinding:
    """One risky thing found, and what to do about it.

    Attributes:
        check: the check's name (the module table).
        severity: how urgent.
        subject: what it is about: an identity, a list of them, an account, a setting.
        problem: one sentence, never a secret.
        fix: one sentence saying what to do.
    """

    check: str
    severity: Severity
    subject: str
    problem: str
    fix: str


@dataclass(frozen=True, slots=True)
class IdentityFacts:
    """A device or module identity (``d`` or ``d/m``) and its credentials' fingerprints.

    ``key_hashes`` are hex SHA-256 hashes of the unsealed SAS keys (never the keys);
    ``keys_unreadable`` says a sealed key could not be opened.
    """

    identity: str
    auth_kind: str
    enabled: bool
    created_at: float
    updated_at: float
    key_hashes: tuple[str, ...] = ()
    thumbprints: tuple[str, ...] = ()
    keys_unreadable: bool = False


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """A device certificate, issued or registered.

    ``origin`` is ``"issued"`` (by the device CA; ``reference`` is the serial) or
    ``"thumbprint"`` (registered for a thumbprint identity; ``reference`` is the thumbprint).
    """

    identity: str
    origin: str
    reference: str
    not_after: float
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionFacts:
    """A live authenticated connection."""

    identity: str
    auth_kind: str
    peer: str


@dataclass(frozen=True, slots=True)
class OperatorFacts:
    """An operator account (no hash, no secret)."""

    name: str
    one_time: bool
    password_changed_at: float
    disabled: bool


@dataclass(frozen=True, slots=True)
class TokenFacts:
    """An API token (no hash, no secret)."""

    token_id: str
    name: str
    kind: str
    expires_at: float | None
    revoked: bool


@dataclass(frozen=True, slots=True)
class LimitFacts:
    """A configured limit beside its default; ``zero_disables``: 0 turns the limit off."""

    name: str
    value: float
    default: float
    zero_disables: bool = False


@dataclass(frozen=True, slots=True)
class SecretFacts:
    """What may be said of a secret without showing it."""

    length_bytes: int
    one_character: bool


@dataclass(frozen=True, slots=True)
class HubSettings:
    """The hub's own configuration and health, as the checks need it.

    ``audit_healthy`` is ``None`` when the hub runs without an audit log; ``webhook_secret``
    is ``None`` when no webhook secret is configured (or none could be read).
    """

    mqtt_host: str = "127.0.0.1"
    api_host: str = "127.0.0.1"
    monitor_enabled: bool = True
    provisioning_enabled: bool = True
    has_enrollments: bool = False
    keys_backend: str = "file"
    witness_path: str = ""
    audit_healthy: bool | None = True
    webhook_secret: SecretFacts | None = None
    limits: tuple[LimitFacts, ...] = ()


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """Everything the checks look at, taken at ``now`` (Unix seconds).

    ``ever_connected`` holds the identities with a ``connected`` lifecycle record; it is only
    trusted when ``lifecycle_scan_complete`` (the service bounds the scan).
    """

    now: float
    identities: tuple[IdentityFacts, ...] = ()
    certificates: tuple[CertificateFacts, ...] = ()
    connections: tuple[ConnectionFacts, ...] = ()
    ever_connected: frozenset[str] = frozenset()
    lifecycle_scan_complete: bool = True
    operators: tuple[OperatorFacts, ...] = ()
    tokens: tuple[TokenFacts, ...] = ()
    settings: HubSettings = HubSettings()


def _names(identities: Iterable[str]) -> str:
    ordered = sorted(identities)
    shown = ", ".join(ordered[:_MAX_NAMED])
    if len(ordered) > _MAX_NAMED:
        shown += f" (+{len(ordered) - _MAX_NAMED} more)"
    return shown


# --- the checks -------------------------------------------------------------------------------


_SHARED_FIXES = {
    "SAS key": "rotate both keys of every identity but one "
    "(`ironhub device rotate-key ID primary|secondary`) and reinstall them",
    "certificate thumbprint": "give each device its own key pair and certificate, "
    "then re-register the others' thumbprints",
}


def check_shared_credentials(snapshot: FleetSnapshot, policy: FleetPolicy) -> list[FleetFinding]:
    """Identities holding the same SAS key or certificate thumbprint.

    Either identity can pose as the other: the "compromised key used to masquerade as an
    existing device" of the issue.
    """
    del policy
    holders: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for facts in snapshot.identities:
        for digest in facts.key_hashes:
            holders["SAS key", digest].add(facts.identity)
        for thumbprint in facts.thumbprints:
            holders["certificate thumbprint", thumbprint.upper()].add(facts.identity)
    # The same key in both slots of one identity is shared with nobody: only groups of two or
    # more identities count.
    return [
        FleetFinding(
            "shared-credentials",
            Severity.CRITICAL,
            _names(identities),
            f"{len(identities)} identities use the same {what}; each can masquerade as the others",
            _SHARED_FIXES[what],
        )
        for (what, _), identities in holders.items()
        if len(identities) > 1
    ]


def check_unreadable_keys(snapshot: FleetSnapshot, policy: FleetPolicy) -> list[FleetFinding]:
    """Sealed keys that do not open: the KEK is wrong or the database was tampered with."""
    del policy
    return [
        FleetFinding(
            "unreadable-keys",
            Severity.HIGH,
            facts.identity,
            "a sealed SAS key cannot be unsealed (wrong key-encryption key or tampering)",
            "compare the database with a backup and the audit log; rotate the identity's keys",
        )
        for facts in snapshot.identities
        if facts.keys_unreadable
    ]


def _expiry(
    facts: CertificateFacts, snapshot: FleetSnapshot, policy: FleetPolicy
) -> FleetFinding | None:
    left_days = (facts.not_after - snapshot.now) / _DAY
    what = f"{facts.origin} certificate {facts.reference}"
    fix = (
        "re-provision the device for a new certificate"
        if facts.origin == "issued"
        else "register the device's next certificate in the free thumbprint slot, then the old"
    )
    if left_days <= 0:
        return FleetFinding(
            "certificate-expiring",
            Severity.CRITICAL,
            facts.identity,
            f"{what} has expired",
            fix,
        )
    if left_days <= policy.urgent_expiry_days:
        severity = Severity.HIGH
    elif left_days <= policy.expiry_days:
        severity = Severity.MEDIUM
    else:
        return None
    return FleetFinding(
        "certificate-expiring",
        severity,
        facts.identity,
        f"{what} expires in {left_days:.1f} days",
        fix,
    )


def check_certificate_expiring(snapshot: FleetSnapshot, policy: FleetPolicy) -> list[FleetFinding]:
    """Certificates expired or expiring soon (revoked ones are out of use already)."""
    newest_issued: dict[str, CertificateFacts] = {}
    judged: list[CertificateFacts] = []
    for facts in snapshot.certificates:
        if facts.revoked:
            continue
        if facts.origin != "issued":
            judged.append(facts)
            continue
        known = newest_issued.get(facts.identity)
        if known is None or facts.not_after > known.not_after:
            newest_issued[facts.identity] = facts
    judged.extend(newest_issued.values())
    return [f for f in (_expiry(c, snapshot, policy) for c in judged) if f is not None]


def check_revoked_but_connected(snapshot: FleetSnapshot, policy: FleetPolicy) -> list[FleetFinding]:
    """An ``x509-ca`` identity connected although all its issued certificates are revoked."""
    del policy
    issued: defaultdict[str, list[bool]] = defaultdict(list)
    for facts in snapshot.certificates:
        if facts.origin == "issued":
            issued[facts.identity].append(facts.revoked)
    return [
        FleetFinding(
            "revoked-but-connected",
            Severity.CRITICAL,
            conn.identity,
            f"connected from {conn.peer} with a certificate while every certificate the "
            "device CA issued to it is revoked",
            "disable it now (`ironhub device disable ID`), then find which CA still admits it",
        )
        for conn in snapshot.connections
        if conn.auth_kind == "x509-ca" and issued.get(conn.identity) and all(issued[conn.identity])
    ]


def check_never_seen(snapshot: FleetSnapshot, policy: FleetPolicy) -> list[FleetFinding]:
    """Enabled identities created long ago that never connected: forgotten credentials."""
    if not snapshot.lifecycle_scan_complete:
        return [
            FleetFinding(
                "never-seen",
                Severity.LOW,
                "hub",
                "the lifecycle log is longer than the audit reads; never-seen was not checked",
                "run the audit again after old messages are pruned",
            )
        ]
    cutoff = snapshot.now - policy.never_seen_days * _DAY
    seen = snapshot.ever_connected | {c.identity for c in snapshot.connections}
    return [
        FleetFinding(
            "never-seen",
            Severity.LOW,
            facts.identity,
            f"created {(snapshot.now - facts.created_at) / _DAY:.0f} days ago and never connected",
            "delete it if the device was never installed (`ironhub device delete ID`); "
            "unused credentials are a standing invitation",
        )
        for facts in snapshot.identities
        if facts.enabled and facts.created_at < cutoff and facts.identity not in seen
    ]


def check_disabled_logging(snapshot: FleetSnapshot, policy: FleetPolicy) -> list[FleetFinding]:
    """The audit log failing or absent, and tamper evidence without a witness."""
    del policy
    settings = snapshot.settings
    findings = []
    if settings.audit_healthy is None:
        findings.append(
            FleetFinding(
                "disabled-logging",
                Severity.HIGH,
                "audit",
                "the hub runs without an audit log",
                "run the hub with its audit log (`ironhub serve`)",
            )
        )
    elif not settings.audit_healthy:
        findings.append(
            FleetFinding(
                "disabled-logging",
                Severity.HIGH,
                "audit",
                "the audit log failed to write (ironhub_audit_healthy 0); records are missing",
                "check the disk and the server log, then `ironhub audit verify`",
            )
        )
    if not settings.witness_path:
        findings.append(
            FleetFinding(
                "disabled-logging",
                Severity.MEDIUM,
                "audit.witness_path",
                "no witness file: tamper-evidence depends on the data directory alone",
                "set audit.witness_path to a file outside the data directory",
            )
        )
    return findings


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _limit_findings(limits: Iterable[LimitFacts], factor: float) -> list[FleetFinding]:
    findings = []
    for limit in limits:
        if limit.zero_disables and limit.value == 0:
            problem = "is 0: the limit is off"
        elif limit.value > factor * limit.default:
            problem = (
                f"is {limit.value:g}, more than {factor:g} times the default {limit.default:g}"
            )
        else:
            continue
        findings.append(
            FleetFinding(
                "permissive-settings",
                Severity.MEDIUM,
                f"limits.{limit.name}",
                f"limits.{limit.name} {problem}",
                "lower it towards the default unless a measured need says otherwise",
            )
        )
    return findings


def check_permissive_settings(snapshot: FleetSnapshot, policy: FleetPolicy) -> list[FleetFinding]:
    """Settings that open the hub wider than the secure defaults."""
    settings = snapshot.settings
    findings = []
    if not settings.monitor_enabled:
        findings.append(
            FleetFinding(
                "permissive-settings",
                Severity.HIGH,
                "monitor.enabled",
                "security monitoring is off: no detector runs, no alert is raised",
                "set monitor.enabled = true",
            )
        )
    for name, host in (("mqtt.host", settings.mqtt_host), ("api.host", settings.api_host)):
        if not _is_loopback(host):
            findings.append(
                FleetFinding(
                    "permissive-settings",
                    Severity.MEDIUM,
                    name,
                    f"{name} = {host}: the listener is exposed beyond this machine; intended?",
                    "bind to loopback or to the one interface that needs it, behind a firewall",
                )
            )
    if settings.provisioning_enabled and not settings.has_enrollments:
        # Low: with no enrollment nothing can register, but it is an open door with nobody
        # invited, and one more listener shape to parse.
        findings.append(
            FleetFinding(
                "permissive-settings",
                Severity.LOW,
                "provisioning.enabled",
                "provisioning is served but has no enrollment",
                "set provisioning.enabled = false until devices are to be enrolled",
            )
        )
    findings += _limit_findings(settings.limits, policy.limit_factor)
    if settings.keys_backend == "file":
        findings.append(
            FleetFinding(
                "permissive-settings",
                Severity.LOW,
                "keys.backend",
                "the CA keys and the key-encryption key are files on disk",
                "consider keys.backend = pkcs11 (an HSM) so the CA keys never leave it",
            )
        )
    return findings


def check_default_like_secrets(snapshot: FleetSnapshot, policy: FleetPolicy) -> list[FleetFinding]:
    """Secrets that are weak, never changed, or never expire."""
    findings = []
    secret = snapshot.settings.webhook_secret
    if secret is not None:
        problem = None
        if secret.one_character:
            problem = "the webhook secret is one character repeated"
        elif secret.length_bytes < policy.min_webhook_secret_bytes:
            problem = (
                f"the webhook secret is {secret.length_bytes} bytes, "
                f"fewer than {policy.min_webhook_secret_bytes}"
            )
        if problem is not None:
            findings.append(
                FleetFinding(
                    "default-like-secrets",
                    Severity.HIGH,
                    "monitor.webhook_secret_file",
                    problem,
                    "write 32 random bytes (`head -c 32 /dev/urandom`) and share them with the "
                    "receiver",
                )
            )
    grace = policy.one_time_password_hours * _HOUR
    findings += [
        FleetFinding(
            "default-like-secrets",
            Severity.HIGH,
            f"operator {account.name}",
            "the account still has its one-time password after "
            f"{policy.one_time_password_hours:g} hours",
            "log in and rotate it (`ironhub operator rotate-password`), or disable the account",
        )
        for account in snapshot.operators
        if account.one_time
        and not account.disabled
        and snapshot.now - account.password_changed_at > grace
    ]
    findings += [
        FleetFinding(
            "default-like-secrets",
            Severity.CRITICAL,
            f"token {token.token_id} ({token.name})",
            "an automation token never expires (the API refuses to make one: where from?)",
            "revoke it (`ironhub token revoke ID`) and check the audit log for its use",
        )
        for token in snapshot.tokens
        if token.kind == "automation" and not token.revoked and token.expires_at is None
    ]
    return findings


def check_keys_older_than_policy(
    snapshot: FleetSnapshot, policy: FleetPolicy
) -> list[FleetFinding]:
    """SAS identities whose keys have not changed for longer than the rotation policy."""
    cutoff = snapshot.now - policy.key_max_age_days * _DAY
    return [
        FleetFinding(
            "keys-older-than-policy",
            Severity.MEDIUM,
            facts.identity,
            f"its record has not changed for {(snapshot.now - facts.updated_at) / _DAY:.0f} days "
            f"(policy: {policy.key_max_age_days:g}); its keys are at least that old",
            "rotate one key, move the device to it, then rotate the other "
            "(`ironhub device rotate-key ID secondary`)",
        )
        for facts in snapshot.identities
        if facts.auth_kind == "sas" and facts.updated_at < cutoff
    ]


#: Every check, in the order of the module table.
CHECKS: tuple[Callable[[FleetSnapshot, FleetPolicy], list[FleetFinding]], ...] = (
    check_shared_credentials,
    check_unreadable_keys,
    check_certificate_expiring,
    check_revoked_but_connected,
    check_never_seen,
    check_disabled_logging,
    check_permissive_settings,
    check_default_like_secrets,
    check_keys_older_than_policy,
)


def audit_fleet(snapshot: FleetSnapshot, policy: FleetPolicy | None = None) -> list[FleetFinding]:
    """Run every check; findings most severe first, then by check and subject."""
    policy = policy or FleetPolicy()
    findings = [finding for check in CHECKS for finding in check(snapshot, policy)]
    return sorted(findings, key=lambda f: (-SEVERITY_RANK[f.severity], f.check, f.subject))


def at_or_above(findings: Iterable[FleetFinding], minimum: Severity) -> list[FleetFinding]:
    """The findings whose severity is ``minimum`` or worse."""
    return [f for f in findings if SEVERITY_RANK[f.severity] >= SEVERITY_RANK[minimum]]
