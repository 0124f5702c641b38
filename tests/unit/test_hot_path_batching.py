"""The per-batch parts of the QoS 1 hot path: chunked inserts, batched PUBACK bookkeeping.

Storage inserts a group commit with a few multi-row INSERTs (256, 32, 4, 1 rows); the log
forgets a commit's acknowledged publishes in one call and settles the rest of its DUP map once
per batch. These pin that batching changes nothing observable.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from ironhub.clock import FakeClock
from ironhub.codec.mqtt import PubAck, encode_packet
from ironhub.config import StorageConfig
from ironhub.hub.endpoint import _digest, _digest_with_prefix, _puback, _pubacks
from ironhub.storage.interfaces import LogEntry, Stream
from ironhub.storage.sqlite import SQLiteStorage
from ironhub.streams.log import MessageLog

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@pytest_asyncio.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    opened = SQLiteStorage(tmp_path / "hub.db", StorageConfig(), FakeClock())
    await opened.open()
    yield opened
    await opened.close()


def entry(n: int, *, packet_id: int | None = None, device_id: str = "dev-1") -> LogEntry:
    return LogEntry(
        stream=Stream.SECURITY if n % 7 == 0 else Stream.TELEMETRY,
        device_id=device_id,
        enqueued_at=float(n),
        payload=b"payload-%d" % n,
        properties=(("n", str(n)),) if n % 3 == 0 else (),
        packet_id=packet_id,
        digest=None if packet_id is None else b"d%d" % n,
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("count", [1, 3, 4, 5, 31, 32, 33, 256, 300, 1000])
async def test_a_batch_of_any_size_is_stored_in_order(storage: SQLiteStorage, count: int) -> None:
    # Appended in one loop turn, they commit together (or in a few batches): every size
    # decomposes into the insert chunks.
    futures = [storage.append(entry(n)) for n in range(count)]
    seqs = await asyncio.gather(*futures)
    assert seqs == list(range(1, count + 1))
    stored = await storage.query_messages(limit=count + 10)
    assert [m.seq for m in stored] == seqs
    for n, message in enumerate(stored):
        expected = entry(n)
        assert message.payload == expected.payload
        assert message.stream is expected.stream
        assert message.properties == expected.properties
        assert message.enqueued_at == expected.enqueued_at


@pytest.mark.asyncio
async def test_acknowledged_many_forgets_exactly_those_ids(storage: SQLiteStorage) -> None:
    log = MessageLog(storage, FakeClock())
    await log.start()
    try:
        for n in range(1, 6):
            await log.append(entry(n, packet_id=n))
        log.acknowledged_many("dev-1", [1, 2, 3])
        log.acknowledged_many("other", [4])  # another device's ids are untouched
        assert log.statistics().dedup_entries == 2
        # Acknowledged: a DUP is a new message. Not acknowledged: the original's seq.
        assert await log.append(entry(1, packet_id=1), dup=True) == 6
        assert await log.append(entry(4, packet_id=4), dup=True) == 4
    finally:
        await log.close()


@pytest.mark.asyncio
async def test_committed_entries_settle_to_their_seq_once_per_batch(
    storage: SQLiteStorage,
) -> None:
    log = MessageLog(storage, FakeClock())
    await log.start()
    try:
        futures = [log.append(entry(n, packet_id=n)) for n in range(1, 4)]
        await asyncio.gather(*futures)
        await asyncio.sleep(0)  # the settling runs right after the batch's callbacks
        recent = log._recent
        assert [value[1] for value in recent.values()] == [1, 2, 3]
        assert not log._unsettled
    finally:
        await log.close()


def test_pubacks_match_the_codec() -> None:
    ids = [1, 2, 255, 256, 65535]
    assert _pubacks(ids) == b"".join(encode_packet(PubAck(i)) for i in ids)
    assert _pubacks(ids) == b"".join(_puback(i) for i in ids)
    assert _pubacks([]) == b""


def test_cached_digest_prefix_gives_the_same_digest() -> None:
    topic = "devices/dev-1/messages/events/"
    assert _digest_with_prefix(topic.encode() + b"\x00", b"body") == _digest(topic, b"body")
    assert _digest(topic, b"body") != _digest(topic + "x", b"body")
