"""SIGKILL while appending: every acknowledged message is in the log after restart, once.

ARCHITECTURE.md "Durability" and SECURITY-TESTS.md §3.11 item 47: a child process appends
continuously and prints each sequence number once its commit returned (when the hub would
send PUBACK). The test kills it with SIGKILL mid-stream, restarts it on the same database a
few times, and finally checks the database.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ironhub.clock import FakeClock
from ironhub.config import StorageConfig
from ironhub.storage.sqlite import SQLiteStorage

if TYPE_CHECKING:
    from ironhub.storage.interfaces import StoredMessage

CHILD = Path(__file__).with_name("_append_forever.py")
ROUNDS = 3
ACKS_BEFORE_KILL = 3000


def run_and_kill(db: Path, round_: int) -> dict[int, bytes]:
    """Run the child until it acknowledged enough, SIGKILL it, return ``seq -> payload``."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(db), str(round_)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stderr is not None
    lines: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(lines) < ACKS_BEFORE_KILL:
            line = child.stdout.readline()
            assert line, f"child ended early: {child.stderr.read().decode()}"
            lines.append(line)
            assert time.monotonic() < deadline, "child too slow"
        child.send_signal(signal.SIGKILL)
        lines.extend(child.stdout.read().splitlines(keepends=True))
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    acknowledged: dict[int, bytes] = {}
    for line in lines:
        if not line.endswith(b"\n"):
            continue  # cut off mid-write by the kill: never fully reported
        seq, round_text, n = line.split()
        acknowledged[int(seq)] = b"%s:%s" % (round_text, n)
    return acknowledged


async def read_log(db: Path) -> list[StoredMessage]:
    storage = SQLiteStorage(db, StorageConfig(), FakeClock())
    await storage.open()  # also proves the file is intact (quick_check)
    try:
        messages: list[StoredMessage] = []
        while batch := await storage.query_messages(
            after_seq=messages[-1].seq if messages else 0, limit=10_000
        ):
            messages.extend(batch)
        return messages
    finally:
        await storage.close()


def test_acknowledged_appends_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    acknowledged: dict[int, bytes] = {}
    for round_ in range(ROUNDS):
        acked = run_and_kill(db, round_)
        assert len(acked) >= ACKS_BEFORE_KILL
        reused = sorted(acked.keys() & acknowledged.keys())
        assert not reused, (
            f"{len(reused)} seqs acknowledged twice (lost, then reused): {reused[:5]}"
        )
        acknowledged |= acked

    messages = asyncio.run(read_log(db))
    stored = {m.seq: m.payload for m in messages}
    assert len(stored) == len(messages)  # each seq exactly once
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))  # gap-free
    missing = sorted(seq for seq in acknowledged if seq not in stored)
    assert missing == [], f"{len(missing)} acknowledged messages lost, first {missing[:5]}"
    wrong = [seq for seq, payload in acknowledged.items() if stored[seq] != payload]
    assert wrong == [], f"acknowledged seqs hold other payloads: {wrong[:5]}"
    payloads = [m.payload for m in messages]
    assert len(set(payloads)) == len(payloads), "a message was stored twice"
