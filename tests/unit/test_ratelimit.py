"""The pure rate limiters: token buckets and failure windows, driven by explicit times."""

from __future__ import annotations

import math

import pytest

from ironhub.errors import ThrottledError
from ironhub.hub.ratelimit import FailureWindow, KeyedTokenBuckets, TokenBucket


def test_bucket_starts_full_spends_and_refills() -> None:
    bucket = TokenBucket.full(rate=10.0, burst=3.0, now=0.0)
    assert [bucket.try_take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.try_take(0.0)
    assert wait == pytest.approx(0.1)
    assert bucket.try_take(0.1) == 0.0
    # Refill never exceeds the burst.
    bucket.try_take(100.0)
    assert bucket.tokens == pytest.approx(2.0)


def test_bucket_with_zero_rate_never_refills() -> None:
    bucket = TokenBucket.full(rate=0.0, burst=1.0, now=0.0)
    assert bucket.try_take(0.0) == 0.0
    assert math.isinf(bucket.try_take(1e9))


def test_bucket_ignores_time_going_backwards() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=1.0, now=10.0)
    bucket.try_take(10.0)
    assert bucket.try_take(5.0) > 0
    assert bucket.updated == 10.0


def test_keyed_buckets_are_independent_and_bounded() -> None:
    buckets = KeyedTokenBuckets(rate=1.0, burst=1.0, max_keys=2)
    buckets.check("a", 0.0)
    with pytest.raises(ThrottledError) as exc:
        buckets.check("a", 0.0)
    assert exc.value.retry_after_seconds == pytest.approx(1.0)
    buckets.check("b", 0.0)
    buckets.check("c", 0.0)  # evicts "a", the least recently used
    assert len(buckets) == 2
    buckets.check("a", 0.0)  # forgotten keys start full again


def test_keyed_buckets_disabled_with_zero_rate() -> None:
    buckets = KeyedTokenBuckets(rate=0.0, burst=0.0)
    for _ in range(100):
        buckets.check("a", 0.0)
    assert len(buckets) == 0


def test_failure_window_refuses_over_limit_until_failures_age_out() -> None:
    window = FailureWindow(limit=2, window_seconds=60.0)
    window.check("src", 0.0)
    window.record("src", 0.0)
    window.record("src", 10.0)
    with pytest.raises(ThrottledError) as exc:
        window.check("src", 20.0)
    assert exc.value.retry_after_seconds == pytest.approx(40.0)
    window.check("other", 20.0)
    window.check("src", 60.5)  # the first failure left the window
    window.check("src", 71.0)
    assert len(window) == 0  # both aged out: the key is forgotten


def test_failure_window_keeps_only_what_the_limit_needs_and_bounded_keys() -> None:
    window = FailureWindow(limit=3, window_seconds=60.0, max_keys=2)
    for t in range(100):
        window.record("flood", float(t) / 100)
    with pytest.raises(ThrottledError):
        window.check("flood", 1.0)
    window.record("b", 1.0)
    window.record("c", 1.0)  # evicts "flood"
    assert len(window) == 2
    window.check("flood", 1.0)


def test_failure_window_disabled_with_zero_limit() -> None:
    window = FailureWindow(limit=0)
    for _ in range(10):
        window.record("x", 0.0)
    window.check("x", 0.0)
