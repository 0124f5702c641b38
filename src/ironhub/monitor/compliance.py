"""The exposure and compliance reports: what the hub exposes, and how it measures up (pure).

Input is one :class:`ComplianceFacts`, a plain record of what
:mod:`ironhub.monitor.compliance_service` observed on the running hub (the bound listeners and
their TLS contexts, the route table, the configuration, the accounts, the fleet audit's findings
from the same moment, the device posture); output is

* :func:`exposure`: every listener, protocol and API route that is actually enabled, with what
  authenticates it and a note where it deserves care;
* :func:`compliance`: the hub's configuration mapped to the 13 provisions of ETSI EN 303 645
  (v2.1.1, clause 5) and the six device cybersecurity capabilities of NISTIR 8259A, each with a
  status, the facts it was judged on and the fix.

Nothing here does I/O or reads a clock (``facts.now`` is the time); no status is written down,
every one is derived from the facts by the rules below. Both frameworks are about *devices*:
the hub is judged on what it contributes to its devices meeting them (the transport and storage
of their data, their identities, the interfaces that reach them). Where a provision is wholly
on the device (5.8's sensing, 5.12's installation steps), the evidence says so.

ETSI EN 303 645 (a provision passes when *every* condition holds; the thresholds are
:class:`CompliancePolicy`'s):

=====  ======================================  ====================================================
ref    facts read                              pass rule
=====  ======================================  ====================================================
5.1    fleet findings; operator access policy  0 ``shared-credentials`` and 0
                                               ``default-like-secrets`` findings; operator
                                               passwords of at least ``min_password_length`` (8,
                                               NIST SP 800-63B) with a non-empty breached list; a
                                               login lockout
5.2    posture (advisory feed)                 a posture service exists and an advisory feed was
                                               imported within ``advisory_max_age_days`` (30)
5.3    ``firmware_updates``; posture           a signed firmware update service runs, a posture
                                               service exists, 0 outdated and 0 vulnerable devices
5.4    fleet findings; data directory; key     0 ``shared-credentials`` and 0 ``unreadable-keys``
       backend                                 findings; the data directory is private (no group or
                                               other access); the key backend is evidence only
                                               (files are 0600, an HSM is stronger)
5.5    listeners                               every listener speaks TLS with a minimum version in
                                               ``secure_tls_versions`` (1.2, 1.3)
5.6    listeners; routes; provisioning         no listener on the wildcard address; every public
                                               route is one of ``public_routes``; provisioning is
                                               not served without an enrollment
5.7    ``firmware_updates``                    a signed firmware update service runs
5.8    listeners; data directory; routes       every listener is TLS 1.2+; the data directory is
                                               private; no public route under
                                               ``device_data_prefixes``
5.9    ``storage_synchronous``; rate limits    commits are fsynced (``FULL`` or ``EXTRA``); no rate
                                               limit is off (0) or above ``limit_factor`` (10)
                                               times its default
5.10   monitor; fleet findings                 the monitor is enabled and there is no high or
                                               critical ``disabled-logging`` finding
5.11   routes                                  the route table has ``identity_erasure_route`` and a
                                               ``DELETE`` route under ``message_erasure_prefix``
5.12   provisioning                            provisioning is served (zero-touch enrolment)
5.13   input size bounds                       no input size bound above ``limit_factor`` (10)
                                               times its default
=====  ======================================  ====================================================

NISTIR 8259A:

=====  ======================================  ====================================================
ref    facts read                              pass rule
=====  ======================================  ====================================================
1      fleet findings                          0 ``shared-credentials`` and 0
                                               ``revoked-but-connected`` findings
2      routes; audit log                       ``configuration_route`` exists; no state-changing
                                               route is public outside ``public_routes``; the audit
                                               log is healthy (changes are recorded)
3      listeners; data directory; fleet        every listener is TLS 1.2+; the data directory is
       findings                                private; 0 ``unreadable-keys`` findings
4      routes; operator accounts               every public route is one of ``public_routes``;
                                               every enabled operator account has TOTP MFA
5      ``firmware_updates``                    a signed firmware update service runs
6      monitor; audit log; posture             the monitor is enabled and the audit log healthy;
                                               posture figures are evidence only
=====  ======================================  ====================================================

The hub has no firmware update service yet, so 5.3, 5.7 and NIST 5 fail on every hub today,
with that as their evidence: a report that passed them would be lying.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, NamedTuple, TypeAlias

from ironhub.monitor.fleet import SEVERITY_RANK, FleetFinding, LimitFacts
from ironhub.monitor.model import Severity

__all__ = [
    "ETSI",
    "NIST",
    "PROVISIONS",
    "PUBLIC_ROUTES",
    "AccessFacts",
    "ComplianceFacts",
    "CompliancePolicy",
    "ExposureEntry",
    "ListenerFacts",
    "PostureFacts",
    "ProvisionResult",
    "RouteFacts",
    "compliance",
    "exposure",
]

ETSI: Final = "ETSI EN 303 645"
NIST: Final = "NISTIR 8259A"
_DAY = 86400.0
_SSE = "text/event-stream"

Framework = Literal["ETSI EN 303 645", "NISTIR 8259A"]
Status = Literal["pass", "fail"]

#: Routes that answer without a token, and why each may. A public route not listed here fails
#: 5.6 and NIST 4 until someone decides and writes down why it is public.
PUBLIC_ROUTES: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        ("GET", "/healthz"): "liveness probe; says nothing about devices",
        ("GET", "/openapi.json"): "the API's own description",
        ("POST", "/login"): "exchanges a password (and TOTP code) for a session; locked out after "
        "repeated failures",
        ("GET", "/pki/crl"): "the certificate revocation list is public by design (RFC 5280)",
        ("GET", "/pki/device-ca"): "the device CA certificate devices chain to; public by design",
    }
)


@dataclass(frozen=True, slots=True)
class CompliancePolicy:
    """The thresholds and declarations the rules use (defaults in the module tables)."""

    #: An advisory feed older than this no longer counts as managing vulnerability reports.
    advisory_max_age_days: float = 30.0
    #: A limit above this multiple of its default is "raised far" (as in the fleet audit).
    limit_factor: float = 10.0
    #: NIST SP 800-63B §3.1.1.2: at least 8 characters for a memorised secret.
    min_password_length: int = 8
    secure_tls_versions: frozenset[str] = frozenset({"1.2", "1.3"})
    public_routes: Mapping[tuple[str, str], str] = field(default_factory=lambda: PUBLIC_ROUTES)
    #: Paths under which routes read or change device data (personal data, 5.8).
    device_data_prefixes: tuple[str, ...] = ("/devices", "/messages", "/twins")
    #: The route that erases an identity with its keys, twin, modules and queues (5.11).
    identity_erasure_route: tuple[str, str] = ("DELETE", "/devices/{device_id}")
    #: A ``DELETE`` route under this prefix would erase stored messages (5.11).
    message_erasure_prefix: str = "/messages"
    #: The route that changes a device's configuration (desired properties; NIST 2).
    configuration_route: tuple[str, str] = ("PATCH", "/devices/{device_id}/twin")


class RouteFacts(NamedTuple):
    """One API route: ``(method, path, permission)``; ``permission`` ``None`` means public.

    A plain ``(method, path, permission)`` tuple converts with ``RouteFacts(*route)``;
    ``media_type`` tells a live stream (Server-Sent Events) from a JSON answer.
    """

    method: str
    path: str
    permission: str | None
    media_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class ListenerFacts:
    """A socket the hub listens on, as observed.

    Attributes:
        kind: ``"device"`` (MQTT: hub sessions and provisioning) or ``"api"`` (HTTPS).
        host: the bound address.
        port: the bound port.
        tls: whether connections are TLS.
        tls_min: the lowest TLS version accepted (``"1.2"``), ``""`` when unknown (the
            library's minimum, which the rules do not trust).
        tls_max: the highest, ``""`` when unknown.
        client_certificates: whether the TLS layer asks for client certificates.
        observed: ``False`` when taken from the configuration because the listener could not
            be looked at.
    """

    kind: str
    host: str
    port: int
    tls: bool
    tls_min: str = ""
    tls_max: str = ""
    client_certificates: bool = False
    observed: bool = True


@dataclass(frozen=True, slots=True)
class AccessFacts:
    """Operator accounts and the rules for their passwords and logins (no secret)."""

    accounts: int = 0
    accounts_with_mfa: int = 0
    #: Whether the hub refuses logins without MFA (it has no such setting yet).
    mfa_required: bool = False
    password_min_length: int = 12
    breached_passwords: int = 0
    password_max_age_days: float = 90.0
    password_history: int = 5
    lockout_failures_per_account: int = 5
    lockout_failures_per_source: int = 20


@dataclass(frozen=True, slots=True)
class PostureFacts:
    """What the posture service knows of the fleet's software (``None`` facts: no service).

    ``advisories_imported_at`` is the Unix time of the last advisory feed import, ``None`` when
    none ever was.
    """

    profiles: int
    devices: int
    devices_with_profile: int
    devices_with_inventory: int
    advisories: int
    advisories_imported_at: float | None
    vulnerable_devices: int
    outdated_devices: int


@dataclass(frozen=True, slots=True)
class ComplianceFacts:
    """Everything the reports look at, taken at ``now`` (Unix seconds)."""

    now: float
    listeners: tuple[ListenerFacts, ...] = ()
    routes: tuple[RouteFacts, ...] = ()
    provisioning_enabled: bool = False
    enrollments: int = 0
    monitor_enabled: bool = True
    webhook_enabled: bool = False
    #: ``None`` when the hub runs without an audit log.
    audit_healthy: bool | None = True
    witness_path: str = ""
    keys_backend: str = "file"
    data_dir: str = ""
    data_dir_private: bool = True
    storage_synchronous: str = "FULL"
    #: Rate limits (``limits.*``) and input size bounds (``mqtt.*``, ``api.*``).
    limits: tuple[LimitFacts, ...] = ()
    input_limits: tuple[LimitFacts, ...] = ()
    access: AccessFacts = AccessFacts()
    identities: int = 0
    fleet_findings: tuple[FleetFinding, ...] = ()
    #: Whether a signed firmware update service runs (none does yet).
    firmware_updates: bool = False
    posture: PostureFacts | None = None


@dataclass(frozen=True, slots=True)
class ExposureEntry:
    """One enabled listener, protocol or route.

    Attributes:
        kind: ``"listener"``, ``"protocol"`` or ``"route"``.
        name: what it is (``"GET /devices"``, ``"MQTT 3.1.1"``).
        where: where it is reached (``"127.0.0.1:8883"``, ``"operator API"``).
        authentication: what authenticates a caller, in words.
        notes: what deserves care (``"public: no token"``), ``""`` when nothing.
    """

    kind: Literal["listener", "protocol", "route"]
    name: str
    where: str
    authentication: str
    notes: str = ""


@dataclass(frozen=True, slots=True)
class ProvisionResult:
    """One provision or capability, judged.

    Attributes:
        framework: ``"ETSI EN 303 645"`` or ``"NISTIR 8259A"``.
        ref: the provision (``"5.1"``) or capability number (``"1"``).
        title: its title in the framework.
        status: ``"pass"`` or ``"fail"``.
        evidence: the facts it was judged on, one sentence each.
        fix: what would make it pass; ``""`` when it passes.
    """

    framework: Framework
    ref: str
    title: str
    status: Status
    evidence: tuple[str, ...]
    fix: str


# --- words about facts ------------------------------------------------------------------------


_LABELS = {"device": "device endpoint (MQTT)", "api": "operator API (HTTPS)"}


def _address(listener: ListenerFacts) -> str:
    host = f"[{listener.host}]" if ":" in listener.host else listener.host
    return f"{host}:{listener.port}"


def _label(listener: ListenerFacts) -> str:
    return f"{_LABELS.get(listener.kind, listener.kind)} {_address(listener)}"


def _reach(host: str) -> Literal["loopback", "interface", "wildcard"]:
    """How far a bound address reaches: this machine, one interface, or every interface."""
    if host == "localhost":
        return "loopback"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # A host name binds whatever it resolves to: at least one interface.
        return "interface"
    if address.is_loopback:
        return "loopback"
    return "wildcard" if address.is_unspecified else "interface"


_REACH_NOTES = {
    "loopback": "loopback only",
    "interface": "binds beyond loopback",
    "wildcard": "binds every interface",
}


def _tls_ok(listener: ListenerFacts, policy: CompliancePolicy) -> bool:
    return listener.tls and listener.tls_min in policy.secure_tls_versions


def _tls_words(listener: ListenerFacts) -> str:
    if not listener.tls:
        return "no TLS"
    if not listener.tls_min:
        return "TLS from the library's minimum version (not pinned)"
    if listener.tls_max and listener.tls_max != listener.tls_min:
        return f"TLS {listener.tls_min} to {listener.tls_max} only"
    return f"TLS {listener.tls_min}+ only"


def _tls_line(listener: ListenerFacts) -> str:
    line = f"{_label(listener)} accepts {_tls_words(listener)}"
    return line if listener.observed else line + " (from the configuration, not observed)"


def _public(facts: ComplianceFacts) -> list[RouteFacts]:
    return [r for r in facts.routes if r.permission is None]


def _undeclared_public(facts: ComplianceFacts, policy: CompliancePolicy) -> list[RouteFacts]:
    return [r for r in _public(facts) if (r.method, r.path) not in policy.public_routes]


def _route_names(routes: list[RouteFacts]) -> str:
    return ", ".join(f"{r.method} {r.path}" for r in routes)


def _has_route(facts: ComplianceFacts, route: tuple[str, str]) -> bool:
    return any((r.method, r.path) == route for r in facts.routes)


def _count(facts: ComplianceFacts, check: str, minimum: Severity = Severity.LOW) -> int:
    return sum(
        1
        for f in facts.fleet_findings
        if f.check == check and SEVERITY_RANK[f.severity] >= SEVERITY_RANK[minimum]
    )


def _limit_problem(limit: LimitFacts, factor: float) -> str | None:
    if limit.zero_disables and limit.value == 0:
        return f"{limit.name} is 0: the limit is off"
    if limit.value > factor * limit.default:
        return f"{limit.name} is {limit.value:g}, above {factor:g}x its default {limit.default:g}"
    return None


def _limits_line(limits: tuple[LimitFacts, ...]) -> str:
    return ", ".join(f"{limit.name} = {limit.value:g}" for limit in limits)


# --- exposure ---------------------------------------------------------------------------------


def _listener_entry(listener: ListenerFacts, facts: ComplianceFacts) -> ExposureEntry:
    if listener.kind == "device":
        who = (
            "each device by a SAS token (HMAC-SHA256 of its own key) or an X.509 client "
            "certificate, checked before any topic"
        )
        if facts.provisioning_enabled:
            who += "; registrations by an enrollment key, certificate or claim token"
    else:
        who = "a bearer token (API token or operator session) per route; see the routes"
    notes = [_tls_words(listener), _REACH_NOTES[_reach(listener.host)]]
    if listener.client_certificates:
        notes.append("asks for client certificates")
    if not listener.observed:
        notes.append("from the configuration, not observed")
    return ExposureEntry(
        "listener",
        _LABELS.get(listener.kind, listener.kind),
        _address(listener),
        who,
        "; ".join(notes),
    )


def _protocols(facts: ComplianceFacts) -> list[ExposureEntry]:
    kinds = {listener.kind: _address(listener) for listener in facts.listeners}
    entries = []
    if "device" in kinds:
        entries.append(
            ExposureEntry(
                "protocol",
                "MQTT 3.1.1 over TLS (Azure IoT Hub device protocol)",
                kinds["device"],
                "per device (SAS or X.509); a device reaches only its own topics",
                "telemetry, twins, direct methods, cloud-to-device messages",
            )
        )
        if facts.provisioning_enabled:
            entries.append(
                ExposureEntry(
                    "protocol",
                    "DPS over MQTT/TLS (device provisioning)",
                    kinds["device"],
                    "enrollment key, derived group key, certificate or claim token with a CSR",
                    "" if facts.enrollments else "no enrollment: served, but nothing can register",
                )
            )
    if "api" in kinds:
        entries.append(
            ExposureEntry(
                "protocol",
                "HTTPS REST (operator API, OpenAPI 3.1)",
                kinds["api"],
                "bearer token per route, with the route's permission",
                f"{len(facts.routes)} routes, {len(_public(facts))} public",
            )
        )
        streams = [r for r in facts.routes if r.media_type == _SSE]
        if streams:
            entries.append(
                ExposureEntry(
                    "protocol",
                    "Server-Sent Events (live tail)",
                    kinds["api"],
                    "as its route: " + ", ".join(r.permission or "public" for r in streams),
                    "long-lived responses: " + _route_names(streams),
                )
            )
    if facts.webhook_enabled:
        entries.append(
            ExposureEntry(
                "protocol",
                "alert webhook (HTTPS POST, outbound)",
                "monitor.webhook_url",
                "body signed with HMAC-SHA256 (X-Ironhub-Signature); receiver's certificate "
                "verified",
                "outbound only",
            )
        )
    if facts.keys_backend == "pkcs11":
        entries.append(
            ExposureEntry(
                "protocol",
                "PKCS#11 (key token)",
                "keys.pkcs11_module",
                "token PIN",
                "local: CA keys never leave the token",
            )
        )
    return entries


def _route_entry(route: RouteFacts, policy: CompliancePolicy) -> ExposureEntry:
    notes = []
    if route.permission is None:
        why = policy.public_routes.get((route.method, route.path))
        notes.append(f"public: no token ({why})" if why else "public: no token, NOT DECLARED")
        authentication = "none"
    else:
        authentication = f"bearer token with permission {route.permission}"
        if not route.permission.endswith(":read"):
            notes.append("recorded in the audit log before it runs")
    if route.media_type == _SSE:
        notes.append("Server-Sent Events stream")
    return ExposureEntry(
        "route",
        f"{route.method} {route.path}",
        "operator API",
        authentication,
        "; ".join(notes),
    )


def exposure(facts: ComplianceFacts, policy: CompliancePolicy | None = None) -> list[ExposureEntry]:
    """Every enabled listener, then every protocol, then every route in table order."""
    policy = policy or CompliancePolicy()
    return [
        *(_listener_entry(listener, facts) for listener in facts.listeners),
        *_protocols(facts),
        *(_route_entry(route, policy) for route in facts.routes),
    ]


# --- compliance -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Judgement:
    """The evidence and the fixes gathered while one provision is judged."""

    evidence: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    def check(self, ok: bool, evidence: str, fix: str) -> None:
        """One condition of the pass rule: its evidence always, its fix when it fails."""
        self.evidence.append(evidence)
        if not ok and fix not in self.fixes:
            self.fixes.append(fix)

    def fail(self, evidence: str, fix: str) -> None:
        """A condition that cannot hold (a fact is missing)."""
        self.check(ok=False, evidence=evidence, fix=fix)

    def note(self, evidence: str) -> None:
        """Evidence that decides nothing."""
        self.evidence.append(evidence)


#: A provision's rule: reads the facts, records evidence and fixes in the judgement.
Rule: TypeAlias = Callable[[ComplianceFacts, CompliancePolicy, _Judgement], None]


def _shared_credentials(facts: ComplianceFacts, j: _Judgement) -> None:
    n = _count(facts, "shared-credentials")
    j.check(
        n == 0,
        f"{n} shared-credential findings in the fleet audit (identities holding the same SAS "
        "key or certificate)",
        "give every device its own credential: `ironhub audit-fleet` names the identities "
        "that share one; rotate their keys",
    )


def _unreadable_keys(facts: ComplianceFacts, j: _Judgement) -> None:
    n = _count(facts, "unreadable-keys")
    j.check(
        n == 0,
        f"{n} unreadable-key findings in the fleet audit (every other sealed SAS key opens "
        "under the KEK)",
        "compare the database with a backup and the audit log; rotate the named identities' keys",
    )


def _data_dir(facts: ComplianceFacts, j: _Judgement) -> None:
    j.check(
        facts.data_dir_private,
        f"data directory {facts.data_dir} is private (no group or other access)"
        if facts.data_dir_private
        else f"data directory {facts.data_dir} is open to group or others",
        f"chmod 700 {facts.data_dir}",
    )


def _listeners_tls(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    for listener in facts.listeners:
        j.check(
            _tls_ok(listener, policy),
            _tls_line(listener),
            "serve every listener over TLS with a minimum version of 1.2",
        )


def _public_routes(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    undeclared = _undeclared_public(facts, policy)
    public = _public(facts)
    j.check(
        not undeclared,
        f"public routes outside the declared set: {_route_names(undeclared)}"
        if undeclared
        else f"{len(public)} of {len(facts.routes)} routes are public, each declared public by "
        f"design ({_route_names(public) or 'none'})",
        "give those routes a permission, or declare why they are public (PUBLIC_ROUTES)",
    )


def _firmware(facts: ComplianceFacts, j: _Judgement) -> None:
    j.check(
        facts.firmware_updates,
        "signed firmware update service running"
        if facts.firmware_updates
        else "no signed firmware update service: the hub cannot deliver or verify device software",
        "a signed firmware update service (TUF metadata, rollouts) is still to be built; "
        "update devices through their maker's channel meanwhile",
    )


def _monitor(facts: ComplianceFacts, j: _Judgement) -> None:
    j.check(
        facts.monitor_enabled,
        "security monitor enabled: detectors read every device security message and hub record"
        if facts.monitor_enabled
        else "the security monitor is disabled: no detector runs, no alert is raised",
        "set monitor.enabled = true",
    )


def _audit_words(facts: ComplianceFacts) -> str:
    if facts.audit_healthy is None:
        return "the hub runs without an audit log"
    if not facts.audit_healthy:
        return "the audit log failed to write (ironhub_audit_healthy 0)"
    witness = (
        f"witness file {facts.witness_path} configured"
        if facts.witness_path
        else "no witness file configured"
    )
    return f"audit log healthy, {witness}"


def _audit(facts: ComplianceFacts, j: _Judgement) -> None:
    j.check(
        facts.audit_healthy is True,
        _audit_words(facts),
        "run the hub with a healthy audit log: check the disk and `ironhub audit verify`",
    )


def etsi_5_1(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """No universal default passwords: unique credentials, no lingering defaults, no guessing."""
    _shared_credentials(facts, j)
    n = _count(facts, "default-like-secrets")
    j.check(
        n == 0,
        f"{n} default-like-secret findings in the fleet audit (unchanged one-time passwords, "
        "tokens that never expire, weak webhook secrets)",
        "act on the default-like-secrets findings of `ironhub audit-fleet`",
    )
    access = facts.access
    j.check(
        access.password_min_length >= policy.min_password_length and access.breached_passwords > 0,
        f"operator passwords need at least {access.password_min_length} characters; "
        f"{access.breached_passwords} common or breached passwords are refused",
        f"require at least {policy.min_password_length} characters and a breached-password list",
    )
    j.check(
        access.lockout_failures_per_account >= 1,
        f"logins lock an account after {access.lockout_failures_per_account} failures and a "
        f"source after {access.lockout_failures_per_source}",
        "keep the login lockout on (access.lockout_failures_per_account)",
    )


def etsi_5_2(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Implement a means to manage reports of vulnerabilities: a current advisory feed."""
    fix = (
        f"import a vulnerability advisory feed (OSV) at least every "
        f"{policy.advisory_max_age_days:g} days"
    )
    posture = facts.posture
    if posture is None:
        j.fail("no posture service: no vulnerability advisory feed is imported", fix)
        return
    imported = posture.advisories_imported_at
    if imported is None:
        j.fail("no advisory feed was ever imported", fix)
        return
    age_days = (facts.now - imported) / _DAY
    j.check(
        age_days <= policy.advisory_max_age_days,
        f"advisory feed imported {age_days:.0f} days ago ({posture.advisories} advisories); "
        f"the rule: within {policy.advisory_max_age_days:g} days",
        fix,
    )


def etsi_5_3(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Keep software updated: an update service, and no device behind or vulnerable."""
    del policy
    _firmware(facts, j)
    posture = facts.posture
    if posture is None:
        j.fail(
            "no posture service: which software the devices run is not known",
            "run the posture service so that outdated and vulnerable devices are known",
        )
        return
    j.check(
        posture.outdated_devices == 0,
        f"{posture.outdated_devices} of {posture.devices} devices run outdated software",
        "update the outdated devices (`ironhub report vulnerable` lists them)",
    )
    j.check(
        posture.vulnerable_devices == 0,
        f"{posture.vulnerable_devices} of {posture.devices} devices run software with a known "
        "vulnerability",
        "update the vulnerable devices (`ironhub report vulnerable` lists them)",
    )


def etsi_5_4(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Securely store sensitive security parameters: unique, sealed, in a private place."""
    del policy
    _shared_credentials(facts, j)
    _unreadable_keys(facts, j)
    _data_dir(facts, j)
    j.note(
        "CA keys and the KEK are held in a PKCS#11 token"
        if facts.keys_backend == "pkcs11"
        else "CA keys and the KEK are 0600 files (keys.backend = pkcs11 keeps them in an HSM)"
    )


def etsi_5_5(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Communicate securely: every listener is TLS 1.2 or later."""
    _listeners_tls(facts, policy, j)
    if facts.webhook_enabled:
        j.note("alert webhook: HTTPS only, bodies signed with HMAC-SHA256")


def etsi_5_6(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Minimize exposed attack surfaces: narrow binds, declared public routes, no idle service."""
    for listener in facts.listeners:
        reach = _reach(listener.host)
        j.check(
            reach != "wildcard",
            f"{_label(listener)}: {_REACH_NOTES[reach]}",
            "bind each listener to loopback or to the one interface that needs it",
        )
    _public_routes(facts, policy, j)
    if facts.provisioning_enabled:
        j.check(
            facts.enrollments > 0,
            f"provisioning is served with {facts.enrollments} enrollments",
            "set provisioning.enabled = false until devices are to be enrolled",
        )
    else:
        j.note("provisioning is not served")


def etsi_5_7(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Ensure software integrity: signed device software, verified before it runs."""
    del policy
    _firmware(facts, j)


def etsi_5_8(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Ensure that personal data is secure: the hub's part, in transit and at rest."""
    _listeners_tls(facts, policy, j)
    _data_dir(facts, j)
    exposed = [
        r
        for r in _public(facts)
        if any(r.path.startswith(prefix) for prefix in policy.device_data_prefixes)
    ]
    j.check(
        not exposed,
        f"public routes reading device data: {_route_names(exposed)}"
        if exposed
        else "every route reading device data ("
        + ", ".join(policy.device_data_prefixes)
        + ") needs a permission",
        "give every route that reads device data a permission",
    )
    j.note(
        "stored messages and twins are protected by the data directory's permissions, not "
        "encrypted; what a device itself senses or stores is outside the hub's view"
    )


def etsi_5_9(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Make systems resilient to outages: durable acknowledgements, limits in place."""
    durable = facts.storage_synchronous in ("FULL", "EXTRA")
    j.check(
        durable,
        f"storage.synchronous = {facts.storage_synchronous}: "
        + (
            "an acknowledged message is on disk before its PUBACK"
            if durable
            else "a power cut may lose acknowledged messages"
        ),
        "set storage.synchronous = FULL",
    )
    problems = [p for p in (_limit_problem(x, policy.limit_factor) for x in facts.limits) if p]
    j.check(
        not problems,
        "rate limits: " + ("; ".join(problems) if problems else _limits_line(facts.limits)),
        "restore the rate limits towards their defaults",
    )


def etsi_5_10(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Examine system telemetry data: the monitor runs, and so does the audit log."""
    del policy
    _monitor(facts, j)
    n = _count(facts, "disabled-logging", Severity.HIGH)
    j.check(
        n == 0,
        f"{n} high or critical disabled-logging findings in the fleet audit; "
        + _audit_words(facts),
        "restore the audit log (see `ironhub audit-fleet`)",
    )


def etsi_5_11(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Make it easy for users to delete user data: identities and what they sent."""
    method, path = policy.identity_erasure_route
    erases_identity = _has_route(facts, policy.identity_erasure_route)
    j.check(
        erases_identity,
        f"{method} {path} erases an identity with its keys, twin, modules and queued messages"
        if erases_identity
        else f"no {method} {path} route: identities cannot be erased",
        f"serve {method} {path}",
    )
    erasers = [
        r
        for r in facts.routes
        if r.method == "DELETE" and r.path.startswith(policy.message_erasure_prefix)
    ]
    j.check(
        bool(erasers),
        f"stored messages are erased by {_route_names(erasers)}"
        if erasers
        else "no route erases the telemetry and security messages a device sent: they stay in "
        "the message log",
        "add a route that erases a device's stored messages (not built yet)",
    )


def etsi_5_12(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Make installation and maintenance of devices easy: the hub's part is provisioning."""
    del policy
    j.check(
        facts.provisioning_enabled,
        f"provisioning is served: devices get their identity without keys carried by hand "
        f"({facts.enrollments} enrollments)"
        if facts.provisioning_enabled
        else "provisioning is off: every device's credentials are installed by hand",
        "set provisioning.enabled = true and create an enrollment group",
    )
    j.note("the installation steps on the device itself are its maker's part")


def etsi_5_13(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Validate input data: every input has a size bound near its default."""
    problems = [
        p for p in (_limit_problem(x, policy.limit_factor) for x in facts.input_limits) if p
    ]
    j.check(
        not problems,
        "input size bounds: "
        + ("; ".join(problems) if problems else _limits_line(facts.input_limits)),
        "lower the input size bounds towards their defaults",
    )
    j.note("MQTT, DPS, twin and API bodies are parsed by strict decoders that refuse, not guess")


def nist_1(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Device Identification: each device identified by credentials of its own."""
    del policy
    j.note(f"{facts.identities} identities (devices and modules) in the registry")
    _shared_credentials(facts, j)
    n = _count(facts, "revoked-but-connected")
    j.check(
        n == 0,
        f"{n} revoked-but-connected findings in the fleet audit",
        "disable the named devices and find which CA still admits them",
    )


def nist_2(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Device Configuration: changed by authorised entities only, and recorded."""
    method, path = policy.configuration_route
    configurable = _has_route(facts, policy.configuration_route)
    j.check(
        configurable,
        f"{method} {path} changes a device's desired configuration"
        if configurable
        else f"no {method} {path} route: device configuration cannot be changed",
        f"serve {method} {path}",
    )
    writes = [r for r in _undeclared_public(facts, policy) if r.method not in ("GET", "HEAD")]
    j.check(
        not writes,
        f"state-changing routes without a permission: {_route_names(writes)}"
        if writes
        else "every state-changing route needs a permission (or is declared public by design)",
        "give every state-changing route a permission",
    )
    _audit(facts, j)


def nist_3(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Data Protection: data protected in transit and at rest."""
    _listeners_tls(facts, policy, j)
    _data_dir(facts, j)
    _unreadable_keys(facts, j)


def nist_4(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Logical Access to Interfaces: every interface authenticates; people with two factors."""
    _public_routes(facts, policy, j)
    access = facts.access
    j.check(
        access.accounts_with_mfa >= access.accounts,
        f"{access.accounts_with_mfa} of {access.accounts} enabled operator accounts use TOTP "
        "MFA" + ("" if access.mfa_required else " (the hub does not require it)"),
        "enrol MFA on every operator account (`ironhub operator mfa-enrol`)",
    )


def nist_5(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Software Update: devices' software updated by authorised, verified means."""
    del policy
    _firmware(facts, j)


def nist_6(facts: ComplianceFacts, policy: CompliancePolicy, j: _Judgement) -> None:
    """Cybersecurity State Awareness: the hub watches, records and can report device state."""
    del policy
    _monitor(facts, j)
    _audit(facts, j)
    posture = facts.posture
    j.note(
        f"posture: {posture.devices_with_inventory} of {posture.devices} devices report an "
        f"inventory, {posture.devices_with_profile} have a hardware profile "
        f"({posture.profiles} profiles)"
        if posture is not None
        else "no posture service: device inventories are not summarised"
    )


#: Every provision and capability, in the frameworks' order: (framework, ref, title, rule).
PROVISIONS: tuple[tuple[Framework, str, str, Rule], ...] = (
    (ETSI, "5.1", "No universal default passwords", etsi_5_1),
    (ETSI, "5.2", "Implement a means to manage reports of vulnerabilities", etsi_5_2),
    (ETSI, "5.3", "Keep software updated", etsi_5_3),
    (ETSI, "5.4", "Securely store sensitive security parameters", etsi_5_4),
    (ETSI, "5.5", "Communicate securely", etsi_5_5),
    (ETSI, "5.6", "Minimize exposed attack surfaces", etsi_5_6),
    (ETSI, "5.7", "Ensure software integrity", etsi_5_7),
    (ETSI, "5.8", "Ensure that personal data is secure", etsi_5_8),
    (ETSI, "5.9", "Make systems resilient to outages", etsi_5_9),
    (ETSI, "5.10", "Examine system telemetry data", etsi_5_10),
    (ETSI, "5.11", "Make it easy for users to delete user data", etsi_5_11),
    (ETSI, "5.12", "Make installation and maintenance of devices easy", etsi_5_12),
    (ETSI, "5.13", "Validate input data", etsi_5_13),
    (NIST, "1", "Device Identification", nist_1),
    (NIST, "2", "Device Configuration", nist_2),
    (NIST, "3", "Data Protection", nist_3),
    (NIST, "4", "Logical Access to Interfaces", nist_4),
    (NIST, "5", "Software Update", nist_5),
    (NIST, "6", "Cybersecurity State Awareness", nist_6),
)


def compliance(
    facts: ComplianceFacts, policy: CompliancePolicy | None = None
) -> list[ProvisionResult]:
    """Judge every provision of :data:`PROVISIONS`, in order."""
    policy = policy or CompliancePolicy()
    results = []
    for framework, ref, title, rule in PROVISIONS:
        judgement = _Judgement()
        rule(facts, policy, judgement)
        results.append(
            ProvisionResult(
                framework=framework,
                ref=ref,
                title=title,
                status="fail" if judgement.fixes else "pass",
                evidence=tuple(judgement.evidence),
                fix="; ".join(judgement.fixes),
            )
        )
    return results
