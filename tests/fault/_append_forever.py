"""Child process for test_log_sigkill: appends to the message log until killed.

Usage: ``python _append_forever.py DB_PATH ROUND``. Each line on stdout is ``SEQ ROUND N``,
written and flushed only after the future of entry ``N`` resolved, that is once its commit
returned: exactly the moment the hub would send PUBACK.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from pathlib import Path

from ironhub.clock import SYSTEM_CLOCK
from ironhub.config import StorageConfig
from ironhub.storage.interfaces import LogEntry, Stream
from ironhub.storage.sqlite import SQLiteStorage

IN_FLIGHT = 256


def report(round_: str, n: int, future: asyncio.Future[int]) -> None:
    if not future.cancelled() and future.exception() is None:
        sys.stdout.write(f"{future.result()} {round_} {n}\n")
        sys.stdout.flush()


async def main(path: Path, round_: str) -> None:
    storage = SQLiteStorage(path, StorageConfig(), SYSTEM_CLOCK)
    await storage.open()
    pending: set[asyncio.Future[int]] = set()
    n = 0
    while True:
        while len(pending) < IN_FLIGHT:
            future = storage.append(
                LogEntry(
                    stream=Stream.TELEMETRY,
                    device_id="dev-1",
                    enqueued_at=float(n),
                    payload=f"{round_}:{n}".encode(),
                    packet_id=n % 65535 + 1,
                    digest=b"d",
                )
            )
            future.add_done_callback(functools.partial(report, round_, n))
            pending.add(future)
            n += 1
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
