"""The alert rules: merge, suppress, new; severity only rises; playbook parsing (pure)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ironhub.errors import ValidationError
from ironhub.monitor.alerts import (
    ACTIONS,
    DEFAULT_PLAYBOOKS,
    AlertPolicy,
    Decision,
    decide,
    merge_finding,
    new_alert,
    parse_playbooks,
)
from ironhub.monitor.model import Finding, Severity
from ironhub.storage.interfaces import AlertState

POLICY = AlertPolicy(suppression_seconds=60.0, max_evidence=3)


def finding(time: float = 100.0, severity: Severity = Severity.HIGH, **details: str) -> Finding:
    return Finding(
        detector="tamper",
        alert_type="tamper",
        severity=severity,
        device_id="dev1",
        summary=f"cover opened at {time}",
        time=time,
        evidence=(int(time),),
        details=details,
    )


def test_a_first_finding_opens_an_alert() -> None:
    assert decide(None, finding(), POLICY) is Decision.NEW
    alert = new_alert(finding(details_key="x"), "al_1", POLICY)
    assert alert.state is AlertState.OPEN
    assert (alert.alert_type, alert.device_id, alert.severity) == ("tamper", "dev1", "high")
    assert alert.created_at == alert.last_seen_at == 100.0
    assert alert.count == 1 and alert.evidence == (100,)
    assert json.loads(alert.details) == {"details_key": "x"}


@pytest.mark.parametrize("state", [AlertState.OPEN, AlertState.ACKNOWLEDGED])
def test_findings_merge_into_an_unresolved_alert(state: AlertState) -> None:
    alert = dataclasses.replace(new_alert(finding(), "al_1", POLICY), state=state)
    assert decide(alert, finding(200.0), POLICY) is Decision.MERGE
    merged = alert
    for t in (110.0, 120.0, 130.0):
        merged = merge_finding(merged, finding(t, Severity.MEDIUM, where=str(t)), POLICY)
    assert merged.count == 4
    assert merged.evidence == (110, 120, 130)  # the newest, capped
    assert merged.severity == "high"  # never lowered
    assert merged.last_seen_at == 130.0 and merged.state is state
    assert json.loads(merged.details) == {"where": "130.0"}
    raised = merge_finding(merged, finding(140.0, Severity.CRITICAL), POLICY)
    assert raised.severity == "critical"


def test_a_resolved_alert_suppresses_then_lets_a_new_one_open() -> None:
    resolved = dataclasses.replace(
        new_alert(finding(), "al_1", POLICY), state=AlertState.RESOLVED, updated_at=100.0
    )
    assert decide(resolved, finding(159.0), POLICY) is Decision.SUPPRESS
    assert decide(resolved, finding(160.0), POLICY) is Decision.NEW


def test_merging_survives_garbage_in_stored_fields() -> None:
    alert = dataclasses.replace(
        new_alert(finding(), "al_1", POLICY), details="not json", severity="bogus"
    )
    merged = merge_finding(alert, finding(101.0, Severity.LOW, a="b"), POLICY)
    assert json.loads(merged.details) == {"a": "b"}
    assert merged.severity == "low"  # an unknown stored severity yields to a known one
    listed = dataclasses.replace(alert, details="[1, 2]")
    assert json.loads(merge_finding(listed, finding(), POLICY).details) == {}


def test_playbooks_parse_strictly() -> None:
    assert parse_playbooks(DEFAULT_PLAYBOOKS)["tamper"] == ("quarantine", "notify")
    assert parse_playbooks(" a : notify , disable ;; b: ") == {
        "a": ("notify", "disable"),
        "b": (),
    }
    assert set(ACTIONS) == {"quarantine", "disable", "revoke", "notify"}
    for bad, message in (
        ("tamper", "not 'type:action"),
        (":notify", "not 'type:action"),
        ("a:notify; a:disable", "given twice"),
        ("a:explode", "unknown playbook action"),
    ):
        with pytest.raises(ValidationError, match=message):
            parse_playbooks(bad)
