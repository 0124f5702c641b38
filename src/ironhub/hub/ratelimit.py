"""Pure rate limiters with an injected clock: token buckets and sliding failure windows.

No asyncio, no clocks of their own: every call takes ``now`` (monotonic seconds). Tables keyed
by attacker-chosen strings (source addresses, claimed identities) are bounded: the least
recently used key is forgotten first, so a flood of distinct keys costs bounded memory.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from ironhub.errors import ThrottledError

__all__ = ["FailureWindow", "KeyedTokenBuckets", "TokenBucket"]


@dataclass(slots=True)
class TokenBucket:
    """A token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        """A bucket that starts full."""
        return cls(rate=rate, burst=burst, tokens=burst, updated=now)

    def _refill(self, now: float) -> None:
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updated = now

    def try_take(self, now: float, amount: float = 1.0) -> float:
        """Take ``amount`` tokens if available.

        Returns:
            0.0 when the tokens were taken, otherwise the seconds to wait until they would be
            (nothing is taken then).
        """
        self._refill(now)
        if self.tokens >= amount:
            self.tokens -= amount
            return 0.0
        if self.rate <= 0:
            return float("inf")
        return (amount - self.tokens) / self.rate


class KeyedTokenBuckets:
    """One token bucket per key, at most ``max_keys`` keys (least recently used evicted)."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 65_536) -> None:
        self._rate = rate
        self._burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, key: str, now: float) -> None:
        """Take one token for ``key``.

        Raises:
            ThrottledError: the key has no token left; ``retry_after_seconds`` says when.
        """
        if self._rate <= 0:
            return
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket.full(self._rate, self._burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        wait = bucket.try_take(now)
        if wait:
            raise ThrottledError("rate limit exceeded", retry_after_seconds=wait)

    def __len__(self) -> int:
        return len(self._buckets)


class FailureWindow:
    """Counts failures per key over a sliding window and refuses keys over the limit.

    Used for authentication failures per source address and per claimed identity; the check
    happens *before* any expensive work (HMAC, chain verification, storage reads), so a
    brute-force attempt costs the hub almost nothing once it is throttled.
    """

    def __init__(self, limit: int, window_seconds: float = 60.0, *, max_keys: int = 65_536) -> None:
        self._limit = limit
        self._window = window_seconds
        self._max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        horizon = now - self._window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def check(self, key: str, now: float) -> None:
        """Refuse ``key`` if it failed ``limit`` times within the window.

        Raises:
            ThrottledError: too many recent failures; ``retry_after_seconds`` says when the
                oldest one leaves the window.
        """
        if self._limit <= 0:
            return
        times = self._recent(key, now)
        if times is not None and len(times) >= self._limit:
            raise ThrottledError(
                "too many failures", retry_after_seconds=times[0] + self._window - now
            )

    def record(self, key: str, now: float) -> None:
        """Count one failure for ``key``."""
        times = self._recent(key, now)
        if times is None:
            times = deque()
            self._failures[key] = times
            if len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        times.append(now)
        # Never keep more timestamps than the limit needs.
        while len(times) > max(self._limit, 1):
            times.popleft()

    def __len__(self) -> int:
        return len(self._failures)
