"""Security monitoring and response: events, detectors, alerts, playbooks (issue 6)."""
