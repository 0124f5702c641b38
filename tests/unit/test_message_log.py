"""MessageLog: DUP de-duplication, live fan-out, lagging subscribers (over real SQLite)."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from ironhub.clock import FakeClock
from ironhub.config import StorageConfig
from ironhub.errors import StorageError
from ironhub.metrics import Metrics
from ironhub.storage.interfaces import LogEntry, StoredMessage, Stream
from ironhub.storage.sqlite import SQLiteStorage
from ironhub.streams.log import LogSubscription, MessageLog, SubscriberLagged

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    opened = SQLiteStorage(tmp_path / "hub.db", StorageConfig(), FakeClock())
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest_asyncio.fixture
async def log(storage: SQLiteStorage, metrics: Metrics) -> AsyncIterator[MessageLog]:
    started = MessageLog(storage, FakeClock(), metrics)
    await started.start()
    yield started
    await started.close()


def publish(
    packet_id: int | None = 5,
    *,
    device_id: str = "dev-1",
    body: bytes = b"hello",
    stream: Stream = Stream.TELEMETRY,
) -> LogEntry:
    return LogEntry(
        stream=stream,
        device_id=device_id,
        enqueued_at=1.0,
        payload=body,
        packet_id=packet_id,
        digest=None if packet_id is None else b"digest:" + body,
    )


async def stored_payloads(log: MessageLog) -> list[bytes]:
    return [m.payload for m in await log.query(limit=1000)]


def drain(subscription: LogSubscription) -> list[StoredMessage]:
    """Everything already queued for ``subscription`` (fan-out runs before futures settle)."""
    return list(subscription._queue)


# --- de-duplication ---------------------------------------------------------------------------


async def test_dup_of_pending_publish_gets_the_same_future(log: MessageLog) -> None:
    first = log.append(publish())
    again = log.append(publish(), dup=True)
    assert again is first
    assert await first == 1
    assert await stored_payloads(log) == [b"hello"]
    assert log.statistics().duplicates_suppressed == 1


async def test_dup_of_committed_publish_resolves_with_original_seq(log: MessageLog) -> None:
    await log.append(publish(body=b"other", packet_id=None))
    seq = await log.append(publish())
    again = log.append(publish(), dup=True)
    assert again.done()
    assert await again == seq == 2
    assert await stored_payloads(log) == [b"other", b"hello"]


async def test_dup_with_other_content_is_a_new_message(log: MessageLog) -> None:
    await log.append(publish(body=b"one"))
    assert await log.append(publish(body=b"two"), dup=True) == 2
    assert log.statistics().duplicates_suppressed == 0


async def test_packet_id_reuse_without_dup_is_a_new_message(log: MessageLog) -> None:
    await log.append(publish())
    assert await log.append(publish()) == 2  # [MQTT-2.3.1-6]: ids are reused after PUBACK


async def test_dup_is_per_device(log: MessageLog) -> None:
    await log.append(publish(device_id="a"))
    assert await log.append(publish(device_id="b"), dup=True) == 2


async def test_dup_of_unknown_publish_is_stored(log: MessageLog) -> None:
    assert await log.append(publish(), dup=True) == 1
    assert log.statistics().dedup_entries == 1


async def test_dup_after_failed_original_is_stored_again(
    log: MessageLog, storage: SQLiteStorage, tmp_path: Path
) -> None:
    conn = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
    conn.execute(
        "CREATE TRIGGER fail BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'x'); END"
    )
    with pytest.raises(StorageError):
        await log.append(publish())
    conn.execute("DROP TRIGGER fail")
    conn.close()
    assert await log.append(publish(), dup=True) == 1
    assert log.statistics().duplicates_suppressed == 0


async def test_dup_after_cancelled_original_uses_the_committed_seq(log: MessageLog) -> None:
    original = log.append(publish())
    original.cancel()  # e.g. the connection task died while waiting for the commit
    await log.append(publish(packet_id=None, body=b"barrier"))
    again = log.append(publish(), dup=True)
    assert await again == 1
    assert await stored_payloads(log) == [b"hello", b"barrier"]


async def test_dedup_memory_is_bounded(storage: SQLiteStorage) -> None:
    log = MessageLog(storage, FakeClock(), dedup_capacity=2)
    await log.start()
    await asyncio.gather(*(log.append(publish(packet_id=p)) for p in (1, 2, 3)))
    assert log.statistics().dedup_entries == 2
    assert await log.append(publish(packet_id=1), dup=True) == 4  # forgotten: stored again
    assert await log.append(publish(packet_id=3), dup=True) == 3  # remembered
    await log.close()


async def test_zero_capacity_disables_dedup(storage: SQLiteStorage) -> None:
    log = MessageLog(storage, FakeClock(), dedup_capacity=0)
    await log.start()
    await log.append(publish())
    assert await log.append(publish(), dup=True) == 2
    assert log.statistics().dedup_entries == 0
    await log.close()


async def test_negative_capacity_is_refused(storage: SQLiteStorage) -> None:
    with pytest.raises(ValueError, match="dedup_capacity"):
        MessageLog(storage, FakeClock(), dedup_capacity=-1)


async def test_dup_after_restart_is_stored_again(tmp_path: Path) -> None:
    # Whether a PUBACK left before a crash is unknown, so nothing is matched across a restart:
    # a second copy is allowed, a lost message is not.
    path = tmp_path / "hub.db"
    first = SQLiteStorage(path, StorageConfig(), FakeClock())
    await first.open()
    log = MessageLog(first, FakeClock())
    await log.start()
    await asyncio.gather(*(log.append(publish(packet_id=p, body=b"%d" % p)) for p in range(1, 6)))
    await log.close()
    await first.close()

    second = SQLiteStorage(path, StorageConfig(), FakeClock())
    await second.open()
    log = MessageLog(second, FakeClock(), dedup_capacity=3)
    await log.start()
    assert log.statistics().dedup_entries == 0
    assert await log.append(publish(packet_id=4, body=b"4"), dup=True) == 6
    await log.close()
    await second.close()


async def test_dup_after_acknowledged_is_stored_again(log: MessageLog) -> None:
    # The device got (or may have got) the PUBACK and reused the packet id for a new message
    # with the same content whose first send was lost: its DUP must be stored, not dropped.
    first = await log.append(publish(packet_id=9, body=b"same"))
    log.acknowledged("dev-1", 9)
    again = await log.append(publish(packet_id=9, body=b"same"), dup=True)
    assert again == first + 1
    assert log.statistics().duplicates_suppressed == 0


# --- fan-out ----------------------------------------------------------------------------------


async def test_subscriber_receives_committed_messages_in_order(log: MessageLog) -> None:
    subscription = log.subscribe(max_queue=10_000)
    entries = [publish(packet_id=None, body=b"%d" % n) for n in range(1000)]
    seqs = await asyncio.gather(*(log.append(e) for e in entries))
    received = [await anext(subscription) for _ in range(1000)]
    assert [m.seq for m in received] == seqs == list(range(1, 1001))
    assert [m.payload for m in received] == [e.payload for e in entries]
    assert received[0] == StoredMessage(1, Stream.TELEMETRY, "dev-1", 1.0, b"0", ())


async def test_subscriber_filters(log: MessageLog) -> None:
    by_device = log.subscribe(device_id="a")
    by_stream = log.subscribe(stream=Stream.SECURITY)
    both = log.subscribe(device_id="a", stream=Stream.SECURITY)
    await asyncio.gather(
        log.append(publish(None, device_id="a")),
        log.append(publish(None, device_id="b", stream=Stream.SECURITY)),
        log.append(publish(None, device_id="a", stream=Stream.SECURITY)),
    )
    assert [m.seq for m in drain(by_device)] == [1, 3]
    assert [m.seq for m in drain(by_stream)] == [2, 3]
    assert [m.seq for m in drain(both)] == [3]


async def test_subscriber_sees_only_what_commits_after_subscribing(log: MessageLog) -> None:
    await log.append(publish(None))
    subscription = log.subscribe()
    await log.append(publish(None))
    assert [m.seq for m in drain(subscription)] == [2]


async def test_lagging_subscriber_is_cut_off_without_slowing_others(log: MessageLog) -> None:
    slow = log.subscribe(max_queue=3)
    fast = log.subscribe(max_queue=100)
    seqs = await asyncio.gather(*(log.append(publish(None)) for _ in range(10)))
    assert seqs == list(range(1, 11))
    assert slow.lagged
    assert [(await anext(slow)).seq for _ in range(3)] == [1, 2, 3]
    with pytest.raises(SubscriberLagged) as info:
        await anext(slow)
    assert info.value.resume_after_seq == 3
    assert [m.seq for m in await log.query(after_seq=info.value.resume_after_seq)] == list(
        range(4, 11)
    )
    assert [m.seq for m in drain(fast)] == seqs
    stats = log.statistics()
    assert (stats.subscribers, stats.lagged_subscribers) == (1, 1)


async def test_waiting_subscriber_wakes_on_commit(log: MessageLog) -> None:
    subscription = log.subscribe()
    waiting = asyncio.ensure_future(anext(subscription))
    await asyncio.sleep(0)  # let it park
    assert not waiting.done()
    await log.append(publish(None))
    assert (await waiting).seq == 1


async def test_closing_a_subscription_ends_its_iteration(log: MessageLog) -> None:
    subscription = log.subscribe()
    waiting = asyncio.ensure_future(anext(subscription))
    await asyncio.sleep(0)
    subscription.close()
    subscription.close()  # idempotent
    with pytest.raises(StopAsyncIteration):
        await waiting
    assert log.statistics().subscribers == 0
    await log.append(publish(None))
    assert [m async for m in subscription] == []


async def test_closing_the_log_ends_subscriptions(storage: SQLiteStorage) -> None:
    log = MessageLog(storage, FakeClock())
    await log.start()
    subscription = log.subscribe()
    await log.close()
    await log.close()  # idempotent
    assert [m async for m in subscription] == []
    with pytest.raises(StorageError):
        log.subscribe()
    with pytest.raises(StorageError):
        await log.start()
    await storage.append(publish(None))  # the log no longer listens
    assert log.statistics().committed == 0


async def test_invalid_queue_size_is_refused(log: MessageLog) -> None:
    with pytest.raises(ValueError, match="max_queue"):
        log.subscribe(max_queue=0)


# --- reading and counters ---------------------------------------------------------------------


async def test_query_and_last_seq_delegate(log: MessageLog) -> None:
    await asyncio.gather(
        log.append(publish(None, device_id="a")),
        log.append(publish(None, device_id="b", stream=Stream.LIFECYCLE)),
    )
    assert [m.device_id for m in await log.query(device_id="b")] == ["b"]
    assert [m.seq for m in await log.query(stream=Stream.LIFECYCLE)] == [2]
    assert [m.seq for m in await log.query(after_seq=1, limit=5)] == [2]
    assert await log.last_seq() == 2


async def test_statistics(log: MessageLog) -> None:
    await asyncio.gather(
        log.append(publish(1)),
        log.append(publish(2, stream=Stream.SECURITY)),
        log.append(publish(3)),
    )
    await log.append(publish(3), dup=True)
    stats = log.statistics()
    assert (stats.appended, stats.committed, stats.duplicates_suppressed) == (3, 3, 1)
    assert stats.dedup_entries == 3


async def test_start_is_idempotent(log: MessageLog) -> None:
    await log.start()
    await log.append(publish(None))
    assert log.statistics().committed == 1  # one listener, counted once
