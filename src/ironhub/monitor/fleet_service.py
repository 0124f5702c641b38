"""Gathers the fleet audit's snapshot from the running services (issue 6).

The rules live in :mod:`ironhub.monitor.fleet` (pure); this module only collects facts, and
turns secrets into what may be said of them on the way: SAS keys become SHA-256 hashes at
once (compared, never kept or shown), the webhook secret its length and whether it is one
repeated character.

The work is bounded and linear:

* identities (devices and modules) and issued certificates are read in pages of
  :data:`PAGE`; every SAS identity's keys are unsealed once (AES-GCM, microseconds each);
* the ``never-seen`` check needs to know who ever connected, and the message log has no index
  by stream or device, so a per-device query would walk the log once per device. Instead the
  lifecycle stream is scanned once, oldest first, in pages, and only when some enabled
  identity is old enough to be judged and not connected now; the scan stops as soon as every
  such identity has been seen, or after ``max_lifecycle_records`` records, in which case the
  snapshot says so and the check reports that it could not decide (rather than guessing).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cryptography import x509

from ironhub import pki
from ironhub.config import LimitsConfig
from ironhub.errors import ConfigError, SealingError
from ironhub.monitor.fleet import (
    CertificateFacts,
    ConnectionFacts,
    FleetPolicy,
    FleetSnapshot,
    HubSettings,
    IdentityFacts,
    LimitFacts,
    OperatorFacts,
    SecretFacts,
    TokenFacts,
    audit_fleet,
)
from ironhub.storage.interfaces import AuthKind, DeviceState, Stream

if TYPE_CHECKING:
    from ironhub.monitor.fleet import FleetFinding
    from ironhub.services import Services
    from ironhub.storage.interfaces import DeviceRecord

__all__ = ["FleetAuditor", "FleetReport", "limit_facts"]

logger = logging.getLogger(__name__)

#: Records read per storage call.
PAGE: Final = 1000
#: Lifecycle records the ``never-seen`` scan reads at most (about 50 MB of rows at worst).
MAX_LIFECYCLE_RECORDS: Final = 200_000
#: Limits that are not permissive when raised (a sweep interval), left out of the check.
_NOT_PERMISSIVE: Final = frozenset({"cloud_message_expiry_sweep_seconds"})
#: Limits that 0 turns off (config.LimitsConfig documents it).
_ZERO_DISABLES: Final = frozenset({"connections_per_source_per_second"})
_DAY: Final = 86400.0


@dataclass(frozen=True, slots=True)
class FleetReport:
    """The outcome of one audit: findings most severe first, the time, identities audited."""

    findings: list[FleetFinding]
    checked_at: float
    identities: int


def _certificate_facts(record: DeviceRecord) -> list[CertificateFacts]:
    facts = []
    for pem in record.certificates_pem:
        try:
            certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
        except ValueError:  # pragma: no cover - the registry stored only parsed certificates
            logger.warning("fleet audit: unreadable certificate device_id=%s", record.device_id)
            continue
        facts.append(
            CertificateFacts(
                identity=record.device_id,
                origin="thumbprint",
                reference=pki.thumbprint_sha256(certificate),
                not_after=certificate.not_valid_after_utc.timestamp(),
            )
        )
    return facts


def limit_facts(limits: LimitsConfig) -> tuple[LimitFacts, ...]:
    """Every rate and size limit with its default.

    The fleet audit and the compliance report both read it, so they judge the same numbers.
    """
    defaults = LimitsConfig()
    return tuple(
        LimitFacts(
            name=f.name,
            value=float(getattr(limits, f.name)),
            default=float(getattr(defaults, f.name)),
            zero_disables=f.name in _ZERO_DISABLES,
        )
        for f in dataclasses.fields(LimitsConfig)
        if f.name not in _NOT_PERMISSIVE
    )


def _secret_facts(path: str) -> SecretFacts | None:
    """Length and shape of the webhook secret, as the monitor reads it (stripped)."""
    if not path:
        return None
    from ironhub.custody import read_secret_file  # noqa: PLC0415 - as the monitor does

    try:
        key = read_secret_file(Path(path)).strip()
    except ConfigError:
        # The monitor refuses to start without it; a file broken since is its alarm, not ours.
        logger.warning("fleet audit: the webhook secret file cannot be read path=%s", path)
        return None
    return SecretFacts(length_bytes=len(key), one_character=len(set(key)) <= 1)


class FleetAuditor:
    """Takes a :class:`~ironhub.monitor.fleet.FleetSnapshot` of a hub and audits it.

    Args:
        services: the running hub.
        policy: the thresholds (``expiry_days`` is the CLI's ``--days``).
        max_lifecycle_records: the bound of the ``never-seen`` scan.
    """

    def __init__(
        self,
        services: Services,
        policy: FleetPolicy | None = None,
        *,
        max_lifecycle_records: int = MAX_LIFECYCLE_RECORDS,
    ) -> None:
        self._services = services
        self._policy = policy or FleetPolicy()
        self._max_lifecycle_records = max_lifecycle_records

    async def audit(self) -> FleetReport:
        """Gather a snapshot and run every check.

        Raises:
            StorageError: storage failed.
        """
        snapshot = await self.snapshot()
        return FleetReport(
            findings=audit_fleet(snapshot, self._policy),
            checked_at=snapshot.now,
            identities=len(snapshot.identities),
        )

    async def snapshot(self) -> FleetSnapshot:
        """The facts the checks need, taken now.

        Raises:
            StorageError: storage failed.
        """
        services = self._services
        now = services.clock.time()
        identities, certificates = await self._identities()
        certificates += await self._issued_certificates()
        endpoint = services.endpoint
        connections = tuple(
            ConnectionFacts(c.device_id, c.auth_kind, c.peer)
            for c in (endpoint.connections() if endpoint is not None else ())
        )
        cutoff = now - self._policy.never_seen_days * _DAY
        live = {c.identity for c in connections}
        candidates = {
            i.identity
            for i in identities
            if i.enabled and i.created_at < cutoff and i.identity not in live
        }
        seen, complete = await self._ever_connected(candidates)
        return FleetSnapshot(
            now=now,
            identities=tuple(identities),
            certificates=tuple(certificates),
            connections=connections,
            ever_connected=frozenset(seen),
            lifecycle_scan_complete=complete,
            operators=await self._operators(),
            tokens=tuple(
                TokenFacts(t.token_id, t.name, t.kind.value, t.expires_at, t.revoked)
                for t in await services.tokens.list()
            ),
            settings=await self._settings(),
        )

    async def _identities(self) -> tuple[list[IdentityFacts], list[CertificateFacts]]:
        registry = self._services.registry
        identities: list[IdentityFacts] = []
        certificates: list[CertificateFacts] = []
        after = ""
        while True:
            page = await registry.list_devices(after=after, limit=PAGE, include_modules=True)
            for record in page:
                hashes: tuple[str, ...] = ()
                unreadable = False
                try:
                    # Hashed at once: the keys themselves never leave this expression.
                    hashes = tuple(
                        hashlib.sha256(key).hexdigest() for key in registry.unseal_keys(record)
                    )
                except SealingError:
                    unreadable = True
                identities.append(
                    IdentityFacts(
                        identity=record.device_id,
                        auth_kind=record.auth_kind.value,
                        enabled=record.state is not DeviceState.DISABLED,
                        created_at=record.created_at,
                        updated_at=record.updated_at,
                        key_hashes=hashes,
                        thumbprints=tuple(
                            t
                            for t in (record.primary_thumbprint, record.secondary_thumbprint)
                            if t is not None
                        ),
                        keys_unreadable=unreadable,
                    )
                )
                if record.auth_kind is AuthKind.X509_THUMBPRINT:
                    certificates += _certificate_facts(record)
            if len(page) < PAGE:
                return identities, certificates
            after = page[-1].device_id

    async def _issued_certificates(self) -> list[CertificateFacts]:
        provisioning = self._services.provisioning
        if provisioning is None:
            return []
        facts: list[CertificateFacts] = []
        after = ""
        while True:
            page = await provisioning.authority.list_certificates(after=after, limit=PAGE)
            facts += [
                CertificateFacts(
                    identity=c.device_id,
                    origin="issued",
                    reference=c.serial,
                    not_after=c.not_after,
                    revoked=c.revoked_at is not None,
                )
                for c in page
            ]
            if len(page) < PAGE:
                return facts
            after = page[-1].serial

    async def _ever_connected(self, candidates: set[str]) -> tuple[set[str], bool]:
        """Which ``candidates`` have a ``connected`` record; ``False`` if the bound was hit."""
        seen: set[str] = set()
        if not candidates:
            return seen, True
        after_seq = 0
        scanned = 0
        while scanned < self._max_lifecycle_records:
            limit = min(PAGE, self._max_lifecycle_records - scanned)
            page = await self._services.log.query(
                stream=Stream.LIFECYCLE, after_seq=after_seq, limit=limit
            )
            scanned += len(page)
            for message in page:
                if message.device_id in candidates and ("event", "connected") in (
                    message.properties
                ):
                    seen.add(message.device_id)
            if len(page) < limit or seen == candidates:
                return seen, True
            after_seq = page[-1].seq
        logger.warning(
            "fleet audit: lifecycle scan stopped at its bound records=%d",
            self._max_lifecycle_records,
        )
        return seen, False

    async def _operators(self) -> tuple[OperatorFacts, ...]:
        operators = self._services.operators
        if operators is None:
            return ()
        return tuple(
            OperatorFacts(o.name, o.one_time, o.password_changed_at, o.disabled)
            for o in await operators.list()
        )

    async def _settings(self) -> HubSettings:
        services = self._services
        config = services.config
        provisioning = services.provisioning
        has_enrollments = False
        if provisioning is not None:
            for group in (False, True):
                if await provisioning.list_enrollments(group=group, limit=1):
                    has_enrollments = True
        return HubSettings(
            mqtt_host=config.mqtt.host,
            api_host=config.api.host,
            monitor_enabled=config.monitor.enabled and services.monitor is not None,
            provisioning_enabled=provisioning is not None and provisioning.enabled,
            has_enrollments=has_enrollments,
            keys_backend=config.keys.backend,
            witness_path=config.audit.witness_path,
            audit_healthy=None if services.audit is None else services.audit.statistics().healthy,
            webhook_secret=await asyncio.to_thread(
                _secret_facts, config.monitor.webhook_secret_file
            ),
            limits=limit_facts(config.limits),
        )
