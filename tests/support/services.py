"""Skip-or-fail rule for tests that need something outside the Python environment."""

from __future__ import annotations

import os

import pytest


def require_service(name: str, available: bool, reason: str) -> None:
    """Skip when a service is missing, unless CI demands every service (then fail)."""
    if available:
        return
    if os.environ.get("IRONHUB_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{name} is required (IRONHUB_REQUIRE_SERVICES=1) but {reason}")
    pytest.skip(f"{name} unavailable: {reason}")
