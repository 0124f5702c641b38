"""The message log: DUP de-duplication and live fan-out over the storage group commit.

Theory of operation
-------------------

Appending is synchronous and cheap: :meth:`MessageLog.append` hands the entry to
:meth:`Storage.append <ironhub.storage.interfaces.Storage.append>` and returns its future. Nothing
awaits per message and nothing crosses a thread per message; the storage backend resolves a
whole batch of futures at once after its commit.

**DUP de-duplication.** MQTT re-sends an unacknowledged QoS 1 PUBLISH with the DUP flag and the
same packet identifier [MQTT-3.3.1-1]. The log remembers, for the newest ``dedup_capacity`` QoS 1
entries *whose PUBACK was never written*, ``(device_id, packet_id) -> (digest, future-or-seq)``
in an LRU map. A DUP whose digest matches gets the original's future (still pending: the same
future; committed: a resolved one) instead of a second copy.

The rule is deliberately narrow, because a wrong match loses a message: once a PUBACK was
written (:meth:`MessageLog.acknowledged`), the device may have received it and reused the packet
id for a *new* message with the same content, whose first send was lost; its DUP re-send is
indistinguishable on the wire from a re-send of the old one. Such a DUP is stored again. Only
when the hub knows it never acknowledged the original (the connection dropped before the
commit finished) is the device's re-send certainly the same message. For the same reason
nothing is remembered across a restart: whether the PUBACK left before a SIGKILL is unknown.
A DUP whose original failed or was cancelled is appended again: a second copy is allowed
(at-least-once), a lost message is not. Once an entry is committed the map keeps only its
sequence number, so futures are not kept alive. That is settled once per batch, right after the
connections have written the batch's PUBACKs (which drop their entries), so the hot path touches
only what is still unacknowledged; a DUP arriving in between settles first.

**Fan-out.** The log registers a commit listener with the storage backend. After each commit
the listener runs once on the event loop with the batch, in commit order, and copies matching
messages into each subscriber's bounded queue. A subscriber whose queue is full is cut off
(:class:`SubscriberLagged`) instead of slowing the commit path; it can resume from the store with
:meth:`MessageLog.query` after the sequence number the exception carries.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ironhub.errors import IronhubError, StorageError
from ironhub.storage.interfaces import LogEntry, StoredMessage, Stream

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from ironhub.clock import Clock
    from ironhub.metrics import Metrics
    from ironhub.storage.interfaces import Storage

__all__ = ["LogSubscription", "MessageLog", "MessageLogStatistics", "SubscriberLagged"]

logger = logging.getLogger(__name__)

#: Default number of recent QoS 1 publishes remembered for DUP de-duplication.
DEFAULT_DEDUP_CAPACITY: Final = 100_000


class SubscriberLagged(IronhubError):  # noqa: N818 - names the condition, like trio's BrokenResourceError
    """A live subscriber fell more than its queue behind and was cut off.

    Every message queued before the cut was delivered first.

    Attributes:
        resume_after_seq: the sequence number of the last message delivered; the subscriber may
            catch up with ``MessageLog.query(after_seq=resume_after_seq)``.
    """

    def __init__(self, resume_after_seq: int) -> None:
        super().__init__(f"subscriber fell behind and was cut off after seq {resume_after_seq}")
        self.resume_after_seq = resume_after_seq


@dataclass(frozen=True, slots=True)
class MessageLogStatistics:
    """Counters of one :class:`MessageLog`."""

    #: Entries handed to storage (duplicates excluded).
    appended: int
    #: Entries seen committed.
    committed: int
    #: DUP re-sends answered with the original's future instead of a second copy.
    duplicates_suppressed: int
    #: QoS 1 publishes currently remembered for de-duplication.
    dedup_entries: int
    #: Live subscribers.
    subscribers: int
    #: Subscribers cut off for lagging since start.
    lagged_subscribers: int


class LogSubscription:
    """Committed messages matching a filter, as an async iterator.

    ``async for message in subscription`` yields :class:`StoredMessage` in commit order. It
    ends (``StopAsyncIteration``) after :meth:`close` or when the log closes, and raises
    :class:`SubscriberLagged` once the queued messages are drained if the subscriber was cut off.
    """

    def __init__(
        self,
        owner: MessageLog,
        *,
        device_id: str | None,
        stream: Stream | None,
        max_queue: int,
    ) -> None:
        self.device_id = device_id
        self.stream = stream
        self._owner = owner
        self._max_queue = max_queue
        self._queue: collections.deque[StoredMessage] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._lagged = False
        self._last_delivered = 0
        self._closed = False

    @property
    def lagged(self) -> bool:
        """Whether the subscriber was cut off for falling behind."""
        return self._lagged

    def __aiter__(self) -> LogSubscription:
        return self

    async def __anext__(self) -> StoredMessage:
        """The next committed message.

        Raises:
            StopAsyncIteration: the subscription or the log was closed.
            SubscriberLagged: the subscriber was cut off and has drained its queue.
        """
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._queue:
                message = self._queue.popleft()
                self._last_delivered = message.seq
                return message
            if self._lagged:
                raise SubscriberLagged(self._last_delivered)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        """Stop receiving; a pending ``__anext__`` ends with ``StopAsyncIteration``."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._owner._discard(self)  # noqa: SLF001 - the owner's own bookkeeping
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _matches(self, entry: LogEntry) -> bool:
        return (self.stream is None or entry.stream is self.stream) and (
            self.device_id is None or entry.device_id == self.device_id
        )

    def _offer(self, message: StoredMessage) -> bool:
        """Queue ``message``; ``False`` (and cut off) if the queue is full."""
        if len(self._queue) >= self._max_queue:
            self._lagged = True
            return False
        self._queue.append(message)
        return True


class MessageLog:
    """The hub's message log over a :class:`~ironhub.storage.interfaces.Storage`.

    Args:
        storage: an open storage backend.
        clock: the hub's clock.
        metrics: the hub's metrics. Not updated here: the endpoint counts accepted messages
            (``ironhub_messages``) and storage counts commits.
        dedup_capacity: how many recent QoS 1 publishes are remembered for DUP detection.
    """

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        metrics: Metrics | None = None,
        *,
        dedup_capacity: int = DEFAULT_DEDUP_CAPACITY,
    ) -> None:
        if dedup_capacity < 0:
            raise ValueError("dedup_capacity must not be negative")
        self._storage = storage
        self._clock = clock
        self._metrics = metrics
        self._capacity = dedup_capacity
        # (device_id, packet_id) -> (digest, pending future or committed seq), oldest first.
        self._recent: collections.OrderedDict[
            tuple[str, int], tuple[bytes, asyncio.Future[int] | int]
        ] = collections.OrderedDict()
        # An insertion-ordered set; a subscriber removes itself while the fan-out iterates a copy.
        self._subscribers: dict[LogSubscription, None] = {}
        # Committed batches whose entries are still to be settled in _recent (see _on_commit).
        self._unsettled: collections.deque[tuple[int, Sequence[LogEntry]]] = collections.deque()
        self._remove_listener: Callable[[], None] | None = None
        self._closed = False
        self._appended = 0
        self._committed = 0
        self._duplicates = 0
        self._lagged = 0

    async def start(self) -> None:
        """Listen for commits.

        Raises:
            StorageError: the log is closed or storage failed.
        """
        if self._closed:
            raise StorageError("message log is closed")
        if self._remove_listener is not None:
            return
        self._remove_listener = self._storage.add_commit_listener(self._on_commit)

    async def close(self) -> None:
        """Stop listening and end every subscription (they stop iterating)."""
        if self._closed:
            return
        self._closed = True
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        for subscription in list(self._subscribers):
            subscription.close()
        self._recent.clear()
        self._unsettled.clear()

    # --- appending ------------------------------------------------------------------------
    def append(self, entry: LogEntry, *, dup: bool = False) -> asyncio.Future[int]:
        """Queue ``entry`` for the next group commit, or recognise a DUP re-send.

        Args:
            entry: the entry; QoS 1 publishes carry ``packet_id`` and ``digest``.
            dup: the PUBLISH had its DUP flag set. Only then is a matching earlier entry
                (same device, packet id and digest) answered without a second copy.

        Returns:
            A future resolving with the entry's sequence number once durable, or failing with
            ``StorageError``. For a recognised DUP it is the original's future, possibly shared
            with its first caller: wrap it in :func:`asyncio.shield` before any cancellable wait.
        """
        digest = entry.digest
        packet_id = entry.packet_id
        device_id = entry.device_id
        if packet_id is None or device_id is None or digest is None:
            future = self._storage.append(entry)
            self._appended += 1
            return future
        key = (device_id, packet_id)
        recent = self._recent
        if dup:
            if self._unsettled:
                self._settle()
            known = recent.get(key)
            if known is not None and known[0] == digest:
                original = self._reuse(known[1])
                if original is not None:
                    self._duplicates += 1
                    recent.move_to_end(key)
                    return original
        future = self._storage.append(entry)
        self._appended += 1
        if self._capacity:
            # A reused packet id replaces the older entry and becomes the newest.
            recent.pop(key, None)
            recent[key] = (digest, future)
            if len(recent) > self._capacity:
                recent.popitem(last=False)
        return future

    def acknowledged(self, device_id: str, packet_id: int) -> None:
        """The PUBACK for ``packet_id`` was written: forget the entry for DUP matching.

        From now on the device may reuse the packet id, so a later DUP could be a new message.
        """
        self._recent.pop((device_id, packet_id), None)

    def acknowledged_many(self, device_id: str, packet_ids: Iterable[int]) -> None:
        """:meth:`acknowledged` for several packet ids of one device (one commit's PUBACKs)."""
        pop = self._recent.pop
        for packet_id in packet_ids:
            pop((device_id, packet_id), None)

    @staticmethod
    def _reuse(known: asyncio.Future[int] | int) -> asyncio.Future[int] | None:
        """The future to hand a DUP, or ``None`` if the original must be appended again."""
        if isinstance(known, int):
            resolved: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            resolved.set_result(known)
            return resolved
        if known.cancelled() or (known.done() and known.exception() is not None):
            return None
        return known

    def _on_commit(self, first_seq: int, entries: Sequence[LogEntry]) -> None:
        """Record a committed batch and fan it out (storage commit listener, on the loop)."""
        self._committed += len(entries)
        if self._recent:
            # The connections acknowledge this batch in callbacks that storage scheduled
            # before calling us, and each PUBACK written drops its entry from the map. Settling
            # after them walks the map for what is left, not for the whole batch; a DUP that
            # arrives before that settles first (append).
            self._unsettled.append((first_seq, entries))
            asyncio.get_running_loop().call_soon(self._settle)
        if self._subscribers:
            self._fan_out(first_seq, entries)

    def _settle(self) -> None:
        """Keep only the sequence number of committed entries still remembered."""
        unsettled = self._unsettled
        recent = self._recent
        get = recent.get
        while unsettled:
            first_seq, entries = unsettled.popleft()
            if not recent:
                continue
            for offset, entry in enumerate(entries):
                packet_id = entry.packet_id
                device_id = entry.device_id
                if packet_id is None or device_id is None:
                    continue
                key = (device_id, packet_id)
                known = get(key)
                if known is not None and known[0] == entry.digest and not isinstance(known[1], int):
                    recent[key] = (known[0], first_seq + offset)

    def _fan_out(self, first_seq: int, entries: Sequence[LogEntry]) -> None:
        built: list[StoredMessage | None] = [None] * len(entries)
        for subscription in list(self._subscribers):
            delivered = False
            for offset, entry in enumerate(entries):
                if not subscription._matches(entry):  # noqa: SLF001 - same module
                    continue
                message = built[offset]
                if message is None:
                    message = StoredMessage(
                        seq=first_seq + offset,
                        stream=entry.stream,
                        device_id=entry.device_id,
                        enqueued_at=entry.enqueued_at,
                        payload=entry.payload,
                        properties=entry.properties,
                    )
                    built[offset] = message
                if not subscription._offer(message):  # noqa: SLF001 - same module
                    self._cut_off(subscription)
                    break
                delivered = True
            if delivered:
                subscription._wake()  # noqa: SLF001 - same module

    def _cut_off(self, subscription: LogSubscription) -> None:
        self._lagged += 1
        self._subscribers.pop(subscription, None)
        subscription._wake()  # noqa: SLF001 - same module
        logger.warning(
            "subscriber cut off for lagging: device_id=%s stream=%s",
            subscription.device_id,
            subscription.stream,
        )

    # --- reading --------------------------------------------------------------------------
    def subscribe(
        self,
        *,
        device_id: str | None = None,
        stream: Stream | None = None,
        max_queue: int = 1000,
    ) -> LogSubscription:
        """Receive messages committed from now on that match the filter.

        Args:
            device_id: only this device's messages (``None``: every device).
            stream: only this stream (``None``: every stream).
            max_queue: messages held for a slow consumer before it is cut off.

        Raises:
            ValueError: ``max_queue`` is smaller than 1.
            StorageError: the log is closed.
        """
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if self._closed:
            raise StorageError("message log is closed")
        subscription = LogSubscription(
            self, device_id=device_id, stream=stream, max_queue=max_queue
        )
        self._subscribers[subscription] = None
        return subscription

    def _discard(self, subscription: LogSubscription) -> None:
        self._subscribers.pop(subscription, None)

    async def query(
        self,
        *,
        device_id: str | None = None,
        stream: Stream | None = None,
        after_seq: int = 0,
        limit: int = 100,
        since: float | None = None,
        until: float | None = None,
    ) -> list[StoredMessage]:
        """Committed messages with ``seq > after_seq`` in order, at most ``limit``.

        ``since`` / ``until`` (wall-clock seconds) keep ``since <= enqueued_at < until``: a
        device's own audit records on the security stream, by device and time (issue 4).

        Without an index on device or stream, a filtered query walks the log from
        ``after_seq`` (see :mod:`ironhub.storage.sqlite`).

        Raises:
            StorageError: storage failed.
        """
        return await self._storage.query_messages(
            device_id=device_id,
            stream=stream,
            after_seq=after_seq,
            limit=limit,
            since=since,
            until=until,
        )

    async def last_seq(self) -> int:
        """The highest committed sequence number (0 when empty).

        Raises:
            StorageError: storage failed.
        """
        return await self._storage.last_seq()

    def statistics(self) -> MessageLogStatistics:
        """Counters for ``/metrics`` and tests."""
        return MessageLogStatistics(
            appended=self._appended,
            committed=self._committed,
            duplicates_suppressed=self._duplicates,
            dedup_entries=len(self._recent),
            subscribers=len(self._subscribers),
            lagged_subscribers=self._lagged,
        )
