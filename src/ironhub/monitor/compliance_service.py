"""Gathers the exposure and compliance reports' facts from the running hub (issue 6).

The rules live in :mod:`ironhub.monitor.compliance` (pure); this module only looks, and looks
at what runs rather than at what was asked for where it can:

* the device listener's address and TLS versions come from the live
  :class:`~ironhub.hub.endpoint.DeviceEndpoint` (its bound socket, and the TLS context it hands
  the next connection); an endpoint that is not one (a test stand-in) is described from the
  configuration and marked "not observed", with an unknown TLS range, which the rules do not
  trust;
* the operator API is served by uvicorn, which is not part of :class:`~ironhub.services.Services`:
  the API route passes the address the request arrived on and whether it came over TLS; the
  TLS range is that of the context uvicorn builds from :mod:`ironhub.server`'s settings
  (``ssl.SSLContext(PROTOCOL_TLS_SERVER)``: no version or ciphers are passed, so the Python
  defaults hold, TLS 1.2 and up since Python 3.10);
* the route table is passed in by the caller (the API passes its own table): reading
  :mod:`ironhub.api` from here would invert the layering;
* the fleet audit runs once per compliance report (:class:`FleetAuditor`), so both judge the
  same moment; the exposure report does not need it and does not run it.

What is not observable is written down as a constant with its reason: there is no signed
firmware update service yet (:data:`FIRMWARE_UPDATES`), and the password length and breached
list are not configurable (:mod:`ironhub.server` builds the policy from
``access.password_max_age_days`` and ``access.password_history`` only), so they are the
defaults of :class:`~ironhub.access.policy.PasswordPolicy`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ironhub.access.policy import DEFAULT_PASSWORD_POLICY
from ironhub.config import APIConfig, MQTTConfig
from ironhub.hub.endpoint import DeviceEndpoint
from ironhub.monitor.compliance import (
    AccessFacts,
    ComplianceFacts,
    CompliancePolicy,
    ListenerFacts,
    RouteFacts,
    compliance,
    exposure,
)
from ironhub.monitor.fleet import LimitFacts

# The fleet audit's own view of the rate limits, so both reports judge the same numbers.
from ironhub.monitor.fleet_service import FleetAuditor, limit_facts

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ironhub.monitor.compliance import ExposureEntry, PostureFacts, ProvisionResult
    from ironhub.monitor.fleet import FleetFinding
    from ironhub.services import Services

__all__ = ["FIRMWARE_UPDATES", "ComplianceReport", "ExposureReport", "ReportBuilder"]

logger = logging.getLogger(__name__)

#: Whether a signed firmware update service runs: not yet (the firmware part of the roadmap).
#: 5.3, 5.7 and NIST 5 fail until it does.
FIRMWARE_UPDATES: Final = False
#: Enrollments (individual, then groups) read per storage call.
PAGE: Final = 1000

_TLS_NAMES: Final = {
    ssl.TLSVersion.SSLv3: "SSL 3.0",
    ssl.TLSVersion.TLSv1: "1.0",
    ssl.TLSVersion.TLSv1_1: "1.1",
    ssl.TLSVersion.TLSv1_2: "1.2",
    ssl.TLSVersion.TLSv1_3: "1.3",
}
#: The bounds on what a listener reads, beside their defaults (5.13).
_INPUT_LIMITS: Final = (
    ("mqtt", "max_connect_packet_bytes"),
    ("mqtt", "max_packet_bytes"),
    ("mqtt", "max_message_bytes"),
    ("api", "max_body_bytes"),
)


@dataclass(frozen=True, slots=True)
class ExposureReport:
    """Every enabled listener, protocol and route, and when they were looked at."""

    entries: list[ExposureEntry]
    checked_at: float


@dataclass(frozen=True, slots=True)
class ComplianceReport:
    """Every provision judged, in the frameworks' order, and when."""

    results: list[ProvisionResult]
    checked_at: float

    @property
    def failed(self) -> int:
        """How many provisions and capabilities fail."""
        return sum(1 for r in self.results if r.status == "fail")


def _tls_range(context: ssl.SSLContext) -> tuple[str, str]:
    """``(lowest, highest)`` TLS version a context accepts; ``""`` for the library minimum."""
    highest = "1.3" if ssl.HAS_TLSv1_3 else "1.2"
    return (
        _TLS_NAMES.get(context.minimum_version, ""),
        _TLS_NAMES.get(context.maximum_version, highest),
    )


def _device_listener(services: Services) -> ListenerFacts | None:
    endpoint = services.endpoint
    if endpoint is None:
        return None
    if isinstance(endpoint, DeviceEndpoint):
        host, port = endpoint.address
        context = endpoint.ssl_context()
        low, high = _tls_range(context)
        return ListenerFacts(
            kind="device",
            host=host,
            port=port,
            tls=True,
            tls_min=low,
            tls_max=high,
            client_certificates=context.verify_mode is not ssl.CERT_NONE,
        )
    config = services.config.mqtt
    return ListenerFacts(
        kind="device", host=config.host, port=config.port, tls=True, observed=False
    )


def _api_listener(
    services: Services, address: tuple[str, int] | None, *, tls: bool
) -> ListenerFacts:
    config = services.config.api
    host, port = address if address is not None else (config.host, config.port)
    # The context uvicorn builds for ironhub.server (PROTOCOL_TLS_SERVER, nothing else set).
    low, high = _tls_range(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)) if tls else ("", "")
    return ListenerFacts(
        kind="api",
        host=host,
        port=port,
        tls=tls,
        tls_min=low,
        tls_max=high,
        observed=address is not None,
    )


def _input_limits(services: Services) -> tuple[LimitFacts, ...]:
    config = services.config
    sections = {"mqtt": (config.mqtt, MQTTConfig()), "api": (config.api, APIConfig())}
    return tuple(
        LimitFacts(
            name=f"{section}.{name}",
            value=float(getattr(sections[section][0], name)),
            default=float(getattr(sections[section][1], name)),
        )
        for section, name in _INPUT_LIMITS
    )


def _is_private(path: Path) -> bool:
    """Whether ``path`` is a directory only its owner can enter (mode ``0o700`` or narrower)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        logger.warning("compliance report: the data directory cannot be read path=%s", path)
        return False
    return stat.S_ISDIR(mode) and not mode & (stat.S_IRWXG | stat.S_IRWXO)


class ReportBuilder:
    """Looks at a running hub and builds its exposure and compliance reports.

    Args:
        services: the running hub.
        posture: what the posture service knows of the fleet's software; ``None`` when there
            is no posture service (5.2 and 5.3 then fail: nothing says what devices run).
        routes: the API's route table, ``(method, path, permission)`` with ``None`` for a
            public route (:class:`~ironhub.monitor.compliance.RouteFacts`).
        api_address: the address the API was reached on (``None``: from the configuration,
            marked not observed).
        api_tls: whether the API was reached over TLS.
        policy: the thresholds of the rules.
    """

    def __init__(
        self,
        services: Services,
        posture: PostureFacts | None = None,
        *,
        routes: Iterable[RouteFacts | tuple[str, str, str | None]] = (),
        api_address: tuple[str, int] | None = None,
        api_tls: bool = True,
        policy: CompliancePolicy | None = None,
    ) -> None:
        self._services = services
        self._posture = posture
        self._routes = tuple(RouteFacts(*route) for route in routes)
        self._api_address = api_address
        self._api_tls = api_tls
        self._policy = policy or CompliancePolicy()

    async def exposure(self) -> ExposureReport:
        """Every enabled listener, protocol and route.

        Raises:
            StorageError: storage failed.
        """
        facts = await self.facts(fleet=False)
        return ExposureReport(entries=exposure(facts, self._policy), checked_at=facts.now)

    async def compliance(self) -> ComplianceReport:
        """Every provision of ETSI EN 303 645 and capability of NISTIR 8259A, judged.

        Raises:
            StorageError: storage failed.
        """
        facts = await self.facts()
        return ComplianceReport(results=compliance(facts, self._policy), checked_at=facts.now)

    async def facts(self, *, fleet: bool = True) -> ComplianceFacts:
        """The facts the reports need, taken now.

        Args:
            fleet: run the fleet audit too (the compliance rules read its findings; the
                exposure report does not).

        Raises:
            StorageError: storage failed.
        """
        services = self._services
        config = services.config
        now = services.clock.time()
        listeners = [
            listener
            for listener in (
                _device_listener(services),
                _api_listener(services, self._api_address, tls=self._api_tls),
            )
            if listener is not None
        ]
        findings: tuple[FleetFinding, ...] = ()
        identities = 0
        if fleet:
            report = await FleetAuditor(services).audit()
            findings = tuple(report.findings)
            identities = report.identities
        provisioning = services.provisioning
        return ComplianceFacts(
            now=now,
            listeners=tuple(listeners),
            routes=self._routes,
            provisioning_enabled=provisioning is not None and provisioning.enabled,
            enrollments=await self._enrollments(),
            monitor_enabled=config.monitor.enabled and services.monitor is not None,
            webhook_enabled=bool(config.monitor.webhook_url),
            audit_healthy=None if services.audit is None else services.audit.statistics().healthy,
            witness_path=config.audit.witness_path,
            keys_backend=config.keys.backend,
            data_dir=str(config.data_dir),
            data_dir_private=await asyncio.to_thread(_is_private, Path(config.data_dir)),
            storage_synchronous=config.storage.synchronous,
            limits=limit_facts(config.limits),
            input_limits=_input_limits(services),
            access=await self._access(),
            identities=identities,
            fleet_findings=findings,
            firmware_updates=FIRMWARE_UPDATES,
            posture=self._posture,
        )

    async def _enrollments(self) -> int:
        """Individual enrollments and enrollment groups, disabled ones included."""
        provisioning = self._services.provisioning
        if provisioning is None:
            return 0
        total = 0
        for group in (False, True):
            after = ""
            while True:
                page = await provisioning.list_enrollments(group=group, after=after, limit=PAGE)
                total += len(page)
                if len(page) < PAGE:
                    break
                after = page[-1].enrollment_id
        return total

    async def _access(self) -> AccessFacts:
        config = self._services.config.access
        operators = self._services.operators
        accounts = [] if operators is None else await operators.list()
        enabled = [a for a in accounts if not a.disabled]
        return AccessFacts(
            accounts=len(enabled),
            accounts_with_mfa=sum(1 for a in enabled if a.totp_secret_sealed is not None),
            mfa_required=False,
            password_min_length=DEFAULT_PASSWORD_POLICY.min_length,
            breached_passwords=len(DEFAULT_PASSWORD_POLICY.breached),
            password_max_age_days=config.password_max_age_days,
            password_history=config.password_history,
            lockout_failures_per_account=config.lockout_failures_per_account,
            lockout_failures_per_source=config.lockout_failures_per_source,
        )
