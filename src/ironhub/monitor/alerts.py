"""Alert rules: de-duplication, suppression, severity and playbooks (pure; issue 6).

A :class:`~ironhub.monitor.model.Finding` becomes an alert through :func:`decide`:

* **merge**: an alert of the same type and device that is not resolved absorbs the finding
  (``count`` + 1, newest evidence kept up to :attr:`AlertPolicy.max_evidence`, severity raised
  to the higher one). An operator sees one alert per problem, not one per event.
* **suppress**: the same type and device was resolved less than
  :attr:`AlertPolicy.suppression_seconds` ago: the finding is dropped (an operator who just
  resolved it is not paged again by the tail of the same burst).
* **new**: otherwise a new open alert.

Playbooks bind alert types to response actions (:data:`ACTIONS`); the configuration text is
``"type:action,action; type:action"`` and :func:`parse_playbooks` refuses anything else.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ironhub.errors import ValidationError
from ironhub.monitor.model import Finding, Severity
from ironhub.storage.interfaces import AlertRecord, AlertState

__all__ = [
    "ACTIONS",
    "DEFAULT_PLAYBOOKS",
    "AlertPolicy",
    "Decision",
    "decide",
    "merge_finding",
    "new_alert",
    "parse_playbooks",
]

#: What a playbook may do: quarantine (telemetry refused, security messages and updates still
#: flow), disable (and disconnect), revoke (issued certificates revoked, SAS keys replaced),
#: notify (the alert sinks: JSON-lines file, webhook).
ACTIONS: Final = ("quarantine", "disable", "revoke", "notify")

#: The default bindings: physical tampering, malware and a stolen identity are contained at
#: once; everything else is reported.
DEFAULT_PLAYBOOKS: Final = (
    "tamper:quarantine,notify; malware-detected:quarantine,notify; masquerade:quarantine,notify"
)

_SEVERITY_ORDER: Final = {s: i for i, s in enumerate(Severity)}


class Decision(StrEnum):
    """What a finding does to the alerts."""

    NEW = "new"
    MERGE = "merge"
    SUPPRESS = "suppress"


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """De-duplication and suppression settings."""

    #: After an alert is resolved, findings of its type and device are dropped this long.
    suppression_seconds: float = 600.0
    #: Evidence sequence numbers kept per alert (the newest).
    max_evidence: int = 50


def decide(existing: AlertRecord | None, finding: Finding, policy: AlertPolicy) -> Decision:
    """What ``finding`` does, given the alert :meth:`Storage.find_alert` returned for its key.

    Args:
        existing: the newest unresolved alert of the finding's type and device, else the
            newest resolved one, else ``None``.
        finding: the detector's finding.
        policy: the settings.

    Returns:
        The decision.
    """
    if existing is None:
        return Decision.NEW
    if existing.state is not AlertState.RESOLVED:
        return Decision.MERGE
    if finding.time - existing.updated_at < policy.suppression_seconds:
        return Decision.SUPPRESS
    return Decision.NEW


def _higher(a: str, b: str) -> str:
    try:
        return a if _SEVERITY_ORDER[Severity(a)] >= _SEVERITY_ORDER[Severity(b)] else b
    except ValueError:
        return b


def new_alert(finding: Finding, alert_id: str, policy: AlertPolicy) -> AlertRecord:
    """The open alert a finding starts."""
    return AlertRecord(
        alert_id=alert_id,
        alert_type=finding.alert_type,
        severity=finding.severity.value,
        device_id=finding.device_id,
        detector=finding.detector,
        summary=finding.summary,
        state=AlertState.OPEN,
        created_at=finding.time,
        updated_at=finding.time,
        last_seen_at=finding.time,
        evidence=tuple(finding.evidence[-policy.max_evidence :]),
        details=json.dumps(dict(finding.details), sort_keys=True, separators=(",", ":")),
    )


def merge_finding(alert: AlertRecord, finding: Finding, policy: AlertPolicy) -> AlertRecord:
    """``alert`` having absorbed ``finding`` (version and state unchanged: storage's job)."""
    details: dict[str, str] = {}
    try:
        loaded = json.loads(alert.details)
        if isinstance(loaded, Mapping):
            details = {str(k): str(v) for k, v in loaded.items()}
    except ValueError:
        details = {}
    details.update(finding.details)
    evidence = (*alert.evidence, *finding.evidence)[-policy.max_evidence :]
    return dataclasses.replace(
        alert,
        severity=_higher(alert.severity, finding.severity.value),
        summary=finding.summary,
        updated_at=max(alert.updated_at, finding.time),
        last_seen_at=max(alert.last_seen_at, finding.time),
        count=alert.count + 1,
        evidence=tuple(evidence),
        details=json.dumps(details, sort_keys=True, separators=(",", ":")),
    )


def parse_playbooks(text: str) -> dict[str, tuple[str, ...]]:
    """Parse ``"type:action,action; type:action"`` into a map of alert type to actions.

    Raises:
        ValidationError: an entry without ``:``, an empty type, an unknown action, or a type
            given twice.
    """
    playbooks: dict[str, tuple[str, ...]] = {}
    for raw in text.split(";"):
        entry = raw.strip()
        if not entry:
            continue
        alert_type, colon, actions_text = entry.partition(":")
        alert_type = alert_type.strip()
        if not colon or not alert_type:
            raise ValidationError(f"playbook entry {entry[:64]!r} is not 'type:action,...'")
        if alert_type in playbooks:
            raise ValidationError(f"playbook for {alert_type[:64]!r} is given twice")
        actions = tuple(a.strip() for a in actions_text.split(",") if a.strip())
        unknown = [a for a in actions if a not in ACTIONS]
        if unknown:
            raise ValidationError(
                f"unknown playbook action {unknown[0][:32]!r}; expected {', '.join(ACTIONS)}"
            )
        playbooks[alert_type] = actions
    return playbooks
