"""The hub-to-device QoS 1 window of one connection: packet ids, in-flight and waiting sends.

Pure bookkeeping (no I/O): the connection asks :meth:`OutboundWindow.offer` whether a publish
may go now (and with which packet id) or must wait, and tells :meth:`OutboundWindow.acknowledge`
about each PUBACK, which hands back the acknowledgement callback and the next waiting publish
that now fits.

Rules:

* at most ``max_inflight`` publishes await their PUBACK; the rest wait, in order, up to
  ``max_queued`` (beyond that the device does not keep up and :class:`ThrottledError` says
  so; the connection closes it as a slow consumer);
* packet ids are 1 to 65535 and never reused while in flight [MQTT-2.3.1-2]; a PUBACK for an
  id not in flight is reported (``None``), never trusted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ironhub.errors import ThrottledError

__all__ = ["OutboundPublish", "OutboundWindow"]

_MAX_PACKET_ID = 65535


@dataclass(frozen=True, slots=True)
class OutboundPublish:
    """One hub-to-device QoS 1 publish.

    ``on_ack`` runs when the device acknowledges it; ``on_drop`` when the connection ends
    before it was even sent (it was waiting for room in the window).
    """

    topic: str
    payload: bytes
    dup: bool = False
    on_ack: Callable[[], None] | None = None
    on_drop: Callable[[], None] | None = None


class OutboundWindow:
    """In-flight and waiting hub-to-device publishes of one connection."""

    def __init__(self, *, max_inflight: int, max_queued: int) -> None:
        if max_inflight < 1 or max_queued < 0:
            msg = "the window needs room for at least one publish"
            raise ValueError(msg)
        self._max_inflight = max_inflight
        self._max_queued = max_queued
        self._inflight: dict[int, OutboundPublish] = {}
        self._queued: deque[OutboundPublish] = deque()
        self._last_id = 0

    @property
    def inflight(self) -> int:
        """Publishes awaiting their PUBACK."""
        return len(self._inflight)

    @property
    def queued(self) -> int:
        """Publishes waiting for room in the window."""
        return len(self._queued)

    def offer(self, publish: OutboundPublish) -> int | None:
        """The packet id to send ``publish`` with now, or ``None`` if it waits.

        Raises:
            ThrottledError: the waiting queue is full.
        """
        if len(self._inflight) < self._max_inflight and not self._queued:
            return self._admit(publish)
        if len(self._queued) >= self._max_queued:
            msg = "the device does not acknowledge fast enough"
            raise ThrottledError(msg)
        self._queued.append(publish)
        return None

    def acknowledge(self, packet_id: int) -> OutboundPublish | None:
        """The in-flight publish a PUBACK completes, or ``None`` for an unknown packet id."""
        return self._inflight.pop(packet_id, None)

    def next_ready(self) -> tuple[int, OutboundPublish] | None:
        """A waiting publish that now fits in the window, with its packet id."""
        if not self._queued or len(self._inflight) >= self._max_inflight:
            return None
        publish = self._queued.popleft()
        return self._admit(publish), publish

    def take_waiting(self) -> list[OutboundPublish]:
        """Remove and return the publishes never sent (the connection is ending)."""
        waiting = list(self._queued)
        self._queued.clear()
        return waiting

    def _admit(self, publish: OutboundPublish) -> int:
        packet_id = self._last_id
        while True:
            packet_id = packet_id % _MAX_PACKET_ID + 1
            if packet_id not in self._inflight:
                break
        self._last_id = packet_id
        self._inflight[packet_id] = publish
        return packet_id
