"""Storage backends under the shared contract suite.

Each backend is a :class:`Backend` harness: it opens instances of the backend over one
persistent location (so a test can close and reopen), and it can make the next commits fail
for entries of a chosen device (fault injection without test hooks in the product). To add a
backend (PostgreSQL), write its harness and add its name to ``BACKENDS``.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Protocol

import pytest
import pytest_asyncio

from ironhub.clock import FakeClock
from ironhub.config import StorageConfig
from ironhub.metrics import Metrics
from ironhub.storage.sqlite import SQLiteStorage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from ironhub.storage.interfaces import Storage

BACKENDS = ["sqlite"]

POISON_DEVICE = "poison-device"


class Backend(Protocol):
    metrics: Metrics

    async def open(self, config: StorageConfig | None = None) -> Storage: ...

    async def close_all(self) -> None: ...

    def inject_commit_failure(self) -> None:
        """Make every commit holding an entry of ``POISON_DEVICE`` fail."""

    def clear_commit_failure(self) -> None: ...


class SQLiteBackend:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "ironhub.db"
        self.clock = FakeClock()
        self.metrics = Metrics()
        self._opened: list[SQLiteStorage] = []

    async def open(self, config: StorageConfig | None = None) -> SQLiteStorage:
        storage = SQLiteStorage(self.path, config or StorageConfig(), self.clock, self.metrics)
        await storage.open()
        self._opened.append(storage)
        return storage

    async def close_all(self) -> None:
        for storage in self._opened:
            await storage.close()

    def _execute(self, sql: str) -> None:
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            conn.execute(sql)
        finally:
            conn.close()

    def inject_commit_failure(self) -> None:
        # A trigger added behind the writer's back: SQLite notices the schema change and
        # aborts any transaction that inserts a poisoned row.
        self._execute(
            "CREATE TRIGGER poison BEFORE INSERT ON messages "
            f"WHEN NEW.device_id = '{POISON_DEVICE}' "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )

    def clear_commit_failure(self) -> None:
        self._execute("DROP TRIGGER poison")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return SQLiteBackend(tmp_path)
    raise AssertionError(request.param)  # pragma: no cover


@pytest_asyncio.fixture
async def storage(backend: Backend) -> AsyncIterator[Storage]:
    opened = await backend.open()
    yield opened
    await backend.close_all()
