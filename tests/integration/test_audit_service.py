"""The audit service's promises that only a controlled store can show: a record is reported
durable only once the store committed it, and a failed batch rolls the chain back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ironhub.audit import verify_export
from ironhub.audit.service import AuditLog
from ironhub.clock import FakeClock
from ironhub.config import StorageConfig
from ironhub.errors import StorageError
from ironhub.metrics import Metrics
from ironhub.storage.sqlite import SQLiteStorage

pytestmark = pytest.mark.asyncio


class GatedStorage:
    """Wraps a real store; audit batches wait for the test to open the gate."""

    def __init__(self, inner: SQLiteStorage) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.fail_next = False

    async def append_audit(self, records: Sequence[tuple[int, bytes, bytes]]) -> None:
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise StorageError("disk full")
        await self.inner.append_audit(records)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def open_log(tmp_path: Path) -> tuple[AuditLog, GatedStorage, SQLiteStorage]:
    inner = SQLiteStorage(tmp_path / "a.db", StorageConfig(), FakeClock(), Metrics())
    await inner.open()
    gated = GatedStorage(inner)
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    audit = AuditLog(
        gated,  # type: ignore[arg-type]
        FakeClock(),
        signing_key=key,
        origin="ironhub-audit/test",
        checkpoint_seconds=0,
    )
    await audit.open()
    return audit, gated, inner


async def test_record_returns_only_after_the_commit(tmp_path: Path) -> None:
    audit, gated, inner = await open_log(tmp_path)
    pending = asyncio.ensure_future(audit.record(actor_kind="hub", actor="hub", action="a"))
    await asyncio.sleep(0.05)
    assert not pending.done()  # the store has not committed it
    assert await inner.read_audit() == []
    gated.gate.set()
    assert await pending == 0
    assert len(await inner.read_audit()) == 1
    await inner.close()


async def test_a_failed_batch_fails_its_callers_and_rolls_the_chain_back(tmp_path: Path) -> None:
    audit, gated, inner = await open_log(tmp_path)
    gated.gate.set()
    assert await audit.record(actor_kind="hub", actor="hub", action="first") == 0
    gated.fail_next = True
    with pytest.raises(StorageError):
        await audit.record(actor_kind="hub", actor="hub", action="lost")
    assert not audit.statistics().healthy
    # The next record continues the stored chain at position 1, not after the lost one.
    assert await audit.record(actor_kind="hub", actor="hub", action="second") == 1
    assert audit.statistics().healthy
    lines = [line + b"\n" async for line in audit.export()]
    report = verify_export(lines, audit.public_key)
    assert report.intact, report.problem
    assert report.records == 2
    await inner.close()
