"""Fixtures of the live-socket hostile tests: the (a)(b)(c) guard of SECURITY-TESTS.md §3."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from tests.support.hostile import HostileGuard


@pytest_asyncio.fixture
async def guard(caplog: pytest.LogCaptureFixture) -> AsyncIterator[HostileGuard]:
    """Records loop exceptions for the whole test; its ``check`` asserts (a)(b)(c)."""
    loop = asyncio.get_running_loop()
    hostile_guard = HostileGuard(caplog)
    previous = loop.get_exception_handler()
    loop.set_exception_handler(hostile_guard.record_loop_error)
    yield hostile_guard
    loop.set_exception_handler(previous)
