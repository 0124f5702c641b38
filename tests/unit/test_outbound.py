"""The hub-to-device QoS 1 window: packet ids, in-flight bound, waiting queue."""

from __future__ import annotations

import pytest

from ironhub.errors import ThrottledError
from ironhub.hub.outbound import OutboundPublish, OutboundWindow


def pub(n: int = 0) -> OutboundPublish:
    return OutboundPublish(f"t/{n}", b"x")


def test_refuses_an_empty_window() -> None:
    with pytest.raises(ValueError, match="at least one"):
        OutboundWindow(max_inflight=0, max_queued=1)
    with pytest.raises(ValueError, match="at least one"):
        OutboundWindow(max_inflight=1, max_queued=-1)


def test_ids_in_flight_then_queue_then_throttle() -> None:
    window = OutboundWindow(max_inflight=2, max_queued=1)
    assert window.offer(pub(1)) == 1
    assert window.offer(pub(2)) == 2
    assert window.offer(pub(3)) is None
    assert (window.inflight, window.queued) == (2, 1)
    with pytest.raises(ThrottledError):
        window.offer(pub(4))
    assert window.next_ready() is None  # the window is still full
    assert window.acknowledge(1) == pub(1)
    assert window.acknowledge(1) is None  # not in flight any more
    assert window.acknowledge(77) is None
    ready = window.next_ready()
    assert ready == (3, pub(3))
    assert window.next_ready() is None  # nothing waits


def test_waiting_publishes_keep_their_order() -> None:
    window = OutboundWindow(max_inflight=1, max_queued=5)
    assert window.offer(pub(1)) == 1
    assert window.offer(pub(2)) is None
    window.acknowledge(1)
    # A new offer must not overtake the waiting one.
    assert window.offer(pub(3)) is None
    assert window.next_ready() == (2, pub(2))


def test_packet_ids_wrap_and_skip_ids_in_flight() -> None:
    window = OutboundWindow(max_inflight=3, max_queued=0)
    window._last_id = 65534
    assert window.offer(pub(1)) == 65535
    assert window.offer(pub(2)) == 1
    window.acknowledge(65535)
    window._last_id = 65534
    assert window.offer(pub(3)) == 65535
    window.acknowledge(1)
    window.acknowledge(65535)
    window._last_id = 0
    window.offer(pub(4))  # id 1
    window._last_id = 0
    assert window.offer(pub(5)) == 2  # 1 is in flight: skipped


def test_waiting_publishes_are_handed_back_when_the_connection_ends() -> None:
    dropped: list[int] = []
    window = OutboundWindow(max_inflight=1, max_queued=5)
    assert window.offer(pub(1)) == 1
    waiting = OutboundPublish("t/2", b"x", on_drop=lambda: dropped.append(2))
    assert window.offer(waiting) is None
    assert window.take_waiting() == [waiting]
    assert window.queued == 0
    assert window.inflight == 1  # sent ones stay: the device may still acknowledge them
