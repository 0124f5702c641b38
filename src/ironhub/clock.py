"""Time as an injected dependency.

Services never call :func:`time.time` or :func:`time.monotonic` directly: they receive a
:class:`Clock`. Timeouts and rate limits use ``monotonic()`` (immune to wall-clock jumps,
SECURITY-TESTS.md §3.11 item 52); token and certificate validity use ``time()`` (wall clock).
:class:`FakeClock` is the test double, in the spirit of trio's ``MockClock``.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    """A source of monotonic and wall-clock time, both in seconds."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def time(self) -> float:
        """Seconds since the Unix epoch (wall clock)."""
        ...


class SystemClock:
    """The real clocks of the operating system."""

    def monotonic(self) -> float:
        """Seconds from :func:`time.monotonic`."""
        return time.monotonic()

    def time(self) -> float:
        """Seconds from :func:`time.time`."""
        return time.time()


class FakeClock:
    """A clock that moves only when told to; for deterministic tests."""

    def __init__(self, *, wall: float = 1_767_225_600.0, mono: float = 1000.0) -> None:
        self._wall = wall
        self._mono = mono

    def monotonic(self) -> float:
        """The current fake monotonic time."""
        return self._mono

    def time(self) -> float:
        """The current fake wall-clock time."""
        return self._wall

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        self._mono += seconds
        self._wall += seconds

    def jump_wall(self, seconds: float) -> None:
        """Move only the wall clock (which may go backwards); monotonic time is unchanged."""
        self._wall += seconds


SYSTEM_CLOCK = SystemClock()
