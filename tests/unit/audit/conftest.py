"""Fixtures for the audit tests (the helpers themselves are in ``auditkit``)."""

from __future__ import annotations

import pytest
from tests.unit.audit.auditkit import AuditKit


@pytest.fixture(scope="session")
def kit() -> AuditKit:
    return AuditKit()
