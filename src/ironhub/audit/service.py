"""The audit log service: appends records durably, keeps the Merkle tree, signs checkpoints.

The rules (record format, chain, tree, proofs, checkpoints, verification) are pure, in the
other modules of this package; this service orders them over storage and time.

Theory of operation::

    record() / append_nowait()
        ──▶ next position, prev = hash of the previous record, canonical body, hash
        ──▶ in-memory chain and tree advance at once (appends are ordered on the event loop)
        ──▶ pending batch ──one storage transaction per batch (group commit)──▶ futures resolve
    a failed batch ──▶ its futures and every later pending one fail (StorageError); the chain
        rolls back to the last committed record; callers of privileged actions fail closed
    checkpoint timer / every N records ──▶ drain ──▶ sign (size, root) with the Ed25519 audit key
        ──▶ stored, and appended to the witness file if one is configured
    open() ──▶ every stored record re-verified (chain, positions, hashes), every stored checkpoint
        checked against the tree and the public key ──▶ refuse to start if anything is wrong

A record is durable before :meth:`AuditLog.record` returns, so an action is acknowledged only
after its record is (the issue's rule). Records never hold secrets: callers pass names,
identities, addresses and short reasons.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, overload

import msgspec

from ironhub.audit import (
    GENESIS,
    ChainVerifier,
    Checkpoint,
    TreeBuilder,
    build_record,
    checkpoint_line,
    consistency_proof,
    export_header,
    inclusion_proof,
    record_line,
    root_hash,
    sign_checkpoint,
    verify_checkpoint,
)
from ironhub.errors import AuditIntegrityError, StorageError, ValidationError

if TYPE_CHECKING:
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from ironhub.clock import Clock
    from ironhub.metrics import Metrics
    from ironhub.storage.interfaces import Storage

__all__ = ["AuditLog", "AuditStatistics"]

logger = logging.getLogger(__name__)

#: Most records committed in one transaction.
_MAX_BATCH: Final = 4096
#: Records read per page when verifying or exporting.
_PAGE: Final = 5000
_HASH_BYTES: Final = 32
_checkpoint_decoder = msgspec.json.Decoder(Checkpoint)


@dataclass(frozen=True, slots=True)
class AuditStatistics:
    """Counters for tests and ``/metrics``."""

    size: int
    committed: int
    checkpoints: int
    failed_batches: int
    healthy: bool


class _Leaves(Sequence[bytes]):
    """The record hashes (Merkle leaves) in one bytearray: 32 bytes per record, no objects."""

    def __init__(self) -> None:
        self.data = bytearray()

    def __len__(self) -> int:
        return len(self.data) // _HASH_BYTES

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * _HASH_BYTES
        return bytes(self.data[start : start + _HASH_BYTES])

    def __iter__(self) -> Iterator[bytes]:
        data = self.data
        for start in range(0, len(data), _HASH_BYTES):
            yield bytes(data[start : start + _HASH_BYTES])

    def append(self, leaf: bytes) -> None:
        self.data += leaf

    def truncate(self, size: int) -> None:
        del self.data[size * _HASH_BYTES :]


class AuditLog:
    """The hub's tamper-evident audit log.

    Args:
        storage: an open storage backend.
        clock: wall-clock time for records and checkpoints.
        signing_key: the hub's Ed25519 audit key (checkpoints).
        origin: the log's name in checkpoints, ``ironhub-audit/<hub host name>``.
        checkpoint_records: sign a checkpoint after this many new records...
        checkpoint_seconds: ...or after this long with new records.
        witness_path: a file outside the data directory (operator's choice) to which every
            checkpoint is appended, so that losing the whole tail is detectable too.
    """

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        *,
        signing_key: Ed25519PrivateKey,
        origin: str,
        checkpoint_records: int = 1000,
        checkpoint_seconds: float = 60.0,
        witness_path: Path | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._storage = storage
        self._clock = clock
        self._key = signing_key
        self._public_key = signing_key.public_key()
        self._origin = origin
        self._checkpoint_records = max(1, checkpoint_records)
        self._checkpoint_seconds = checkpoint_seconds
        self._witness = witness_path
        self._leaves = _Leaves()
        self._tree = TreeBuilder()
        self._last_hash = bytes.fromhex(GENESIS)
        self._committed = 0
        self._committed_hash = self._last_hash
        self._pending: list[tuple[int, bytes, bytes, asyncio.Future[int]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._checkpoints: list[Checkpoint] = []
        self._timer: asyncio.Task[None] | None = None
        self._failed_batches = 0
        self._healthy = True
        self._opened = False

    # --- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        """Load and verify the stored log, then start the checkpoint timer.

        Raises:
            AuditIntegrityError: the stored records or checkpoints do not verify (the hub
                refuses to start rather than continue a log it cannot vouch for).
            StorageError: the store cannot be read.
        """
        stored = await self._load_checkpoints()
        # Checkpoints are checked as the tree passes their sizes: one pass, O(n log n) total.
        due = [checkpoint for checkpoint in stored if checkpoint.tree_size > 0]
        await self._load_records(due)
        size = len(self._leaves)
        if due:
            # A signed checkpoint covers records the store no longer has: the tail was cut.
            raise AuditIntegrityError(
                f"a signed checkpoint covers {due[-1].tree_size} audit records, the store holds "
                f"{size}: records from position {size} are missing",
                position=size,
            )
        if size:
            self._last_hash = self._leaves[size - 1]
        self._committed = size
        self._committed_hash = self._last_hash
        self._checkpoints = stored
        self._opened = True
        logger.info(
            "audit log verified records=%d checkpoints=%d origin=%s",
            size,
            len(self._checkpoints),
            self._origin,
        )
        if self._checkpoint_seconds > 0:
            self._timer = asyncio.get_running_loop().create_task(self._checkpoint_forever())

    async def _load_checkpoints(self) -> list[Checkpoint]:
        stored = []
        for tree_size, text in await self._storage.audit_checkpoints():
            checkpoint = _checkpoint_decoder.decode(text)
            verify_checkpoint(checkpoint, self._public_key)
            if checkpoint.tree_size != tree_size:
                raise AuditIntegrityError("a stored checkpoint is filed under another size")
            stored.append(checkpoint)
        return stored

    async def _load_records(self, due: list[Checkpoint]) -> None:
        verifier = ChainVerifier()
        after = -1
        while page := await self._storage.read_audit(after_seq=after, limit=_PAGE):
            for seq, digest, body in page:
                if seq != verifier.size:
                    raise AuditIntegrityError(
                        f"audit record {verifier.size} is missing from the store",
                        position=verifier.size,
                    )
                verifier.feed(digest, body)
                self._leaves.append(digest)
                self._tree.append(digest)
                while due and due[0].tree_size == self._tree.size:
                    self._check_root(due.pop(0))
            after = page[-1][0]

    def _check_root(self, checkpoint: Checkpoint) -> None:
        if checkpoint.root != self._tree.root().hex():
            raise AuditIntegrityError(
                f"the signed checkpoint of size {checkpoint.tree_size} does not match the "
                "stored records",
                position=None,
            )

    async def close(self) -> None:
        """Stop the timer, commit what is pending and sign a final checkpoint."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        if self._opened:
            with contextlib.suppress(StorageError):
                await self.checkpoint()

    # --- appending ------------------------------------------------------------------------------
    def append_nowait(
        self,
        *,
        actor_kind: str,
        actor: str,
        action: str,
        target: str = "-",
        outcome: str = "ok",
        source: str = "-",
        reason: str = "-",
    ) -> asyncio.Future[int]:
        """Queue a record; the future resolves with its position once it is durable.

        Raises:
            ValidationError: a field breaks the record rules (unknown actor kind or outcome).
        """
        seq = len(self._leaves)
        _record, body, digest = build_record(
            seq=seq,
            time=self._clock.time(),
            actor_kind=actor_kind,
            actor=_clip(actor),
            action=_clip(action),
            target=_clip(target),
            outcome=outcome,
            source=_clip(source),
            reason=_clip(reason),
            prev=self._last_hash,
        )
        self._last_hash = digest
        self._leaves.append(digest)
        self._tree.append(digest)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((seq, digest, body, future))
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
        return future

    async def record(
        self,
        *,
        actor_kind: str,
        actor: str,
        action: str,
        target: str = "-",
        outcome: str = "ok",
        source: str = "-",
        reason: str = "-",
    ) -> int:
        """Append a record and wait until it is durable; its position.

        Raises:
            StorageError: the record could not be committed (callers fail closed).
            ValidationError: a field breaks the record rules.
        """
        return await self.append_nowait(
            actor_kind=actor_kind,
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            source=source,
            reason=reason,
        )

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:_MAX_BATCH]
                del self._pending[: len(batch)]
                try:
                    await self._storage.append_audit([(s, h, b) for s, h, b, _ in batch])
                except Exception as exc:  # noqa: BLE001 - the batch boundary: fail, roll back
                    self._fail(batch, exc)
                    continue
                self._committed = batch[-1][0] + 1
                self._committed_hash = batch[-1][1]
                self._healthy = True
                if self._metrics is not None:
                    self._metrics.audit_healthy.set(1)
                    self._metrics.audit_records_total.inc(len(batch))
                for seq, _, _, future in batch:
                    if not future.done():
                        future.set_result(seq)
                if self._committed - self._last_checkpoint_size() >= self._checkpoint_records:
                    asyncio.get_running_loop().create_task(self._checkpoint_quietly())
        finally:
            self._flushing = None

    def _fail(
        self, batch: list[tuple[int, bytes, bytes, asyncio.Future[int]]], exc: BaseException
    ) -> None:
        # Everything after the last committed record chained on records that are not stored:
        # fail it all and roll the chain back, so the next append continues a stored chain.
        self._failed_batches += 1
        self._healthy = False
        if self._metrics is not None:
            self._metrics.audit_healthy.set(0)
            self._metrics.audit_failed_batches_total.inc()
        # The alarm: an operator watching the log or /metrics (ironhub_audit_healthy 0) sees
        # it; privileged API calls answer 503 until the log is writable again.
        logger.critical("audit log unwritable; failing %d record(s): %s", len(batch), exc)
        failed = [*batch, *self._pending]
        self._pending.clear()
        error = exc if isinstance(exc, StorageError) else StorageError(f"audit log: {exc}")
        for _, _, _, future in failed:
            if not future.done():
                future.set_exception(StorageError(f"the audit log cannot be written: {error}"))
        self._leaves.truncate(self._committed)
        self._last_hash = self._committed_hash
        self._tree = TreeBuilder()
        for leaf in self._leaves:
            self._tree.append(leaf)

    async def drain(self) -> None:
        """Wait until every record appended so far is committed (or failed)."""
        while self._flushing is not None:
            await asyncio.shield(self._flushing)

    # --- checkpoints ----------------------------------------------------------------------------
    def _last_checkpoint_size(self) -> int:
        return self._checkpoints[-1].tree_size if self._checkpoints else 0

    async def _checkpoint_forever(self) -> None:
        while True:
            await asyncio.sleep(self._checkpoint_seconds)
            await self._checkpoint_quietly()

    async def _checkpoint_quietly(self) -> None:
        try:
            await self.checkpoint()
        except (StorageError, OSError):
            logger.exception("cannot store or witness an audit checkpoint")

    async def checkpoint(self) -> Checkpoint | None:
        """Sign and store a checkpoint of the committed log (``None`` while it is empty).

        Raises:
            StorageError: the checkpoint cannot be stored.
            OSError: the witness file cannot be written.
        """
        await self.drain()
        size = self._committed
        if size == 0:
            return None
        if self._checkpoints and self._checkpoints[-1].tree_size == size:
            return self._checkpoints[-1]
        root = self._tree.root() if self._tree.size == size else root_hash(self._leaves[:size])
        checkpoint = sign_checkpoint(
            self._key, origin=self._origin, tree_size=size, root=root, time=self._clock.time()
        )
        line = checkpoint_line(checkpoint)
        await self._storage.put_audit_checkpoint(size, line[len(b'{"checkpoint":') : -1].decode())
        if not self._checkpoints or self._checkpoints[-1].tree_size < size:
            self._checkpoints.append(checkpoint)
        if self._witness is not None:
            await asyncio.to_thread(_append_witness, self._witness, line)
        return checkpoint

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest signed checkpoint."""
        return self._checkpoints[-1] if self._checkpoints else None

    # --- reading ----------------------------------------------------------------------------------
    @property
    def public_key(self) -> Ed25519PublicKey:
        """The key that verifies this log's checkpoints."""
        return self._public_key

    @property
    def origin(self) -> str:
        """The log's name in checkpoints."""
        return self._origin

    @property
    def size(self) -> int:
        """Committed records."""
        return self._committed

    def inclusion_proof(self, seq: int, tree_size: int) -> list[bytes]:
        """The inclusion proof of record ``seq`` in the tree of ``tree_size`` records.

        Raises:
            ValidationError: ``seq`` or ``tree_size`` is out of range.
        """
        if not 0 <= seq < tree_size <= self._committed:
            raise ValidationError(f"need 0 <= seq < tree_size <= {self._committed}")
        return inclusion_proof(self._leaves, seq, tree_size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The consistency proof between the trees of ``old_size`` and ``new_size`` records.

        Raises:
            ValidationError: the sizes are out of range.
        """
        if not 0 < old_size <= new_size <= self._committed:
            raise ValidationError(f"need 0 < old_size <= new_size <= {self._committed}")
        return consistency_proof(self._leaves, old_size, new_size)

    def root(self, tree_size: int) -> bytes:
        """The Merkle root of the first ``tree_size`` committed records.

        Raises:
            ValidationError: ``tree_size`` is out of range.
        """
        if not 0 <= tree_size <= self._committed:
            raise ValidationError(f"need 0 <= tree_size <= {self._committed}")
        if tree_size == self._tree.size:
            return self._tree.root()
        return root_hash(self._leaves[:tree_size])

    async def read(self, *, after_seq: int = -1, limit: int = 100) -> list[tuple[bytes, bytes]]:
        """Committed record lines' parts ``(hash, body)`` after ``after_seq``.

        Raises:
            StorageError: the store cannot be read.
        """
        rows = await self._storage.read_audit(after_seq=after_seq, limit=limit)
        return [(digest, body) for _, digest, body in rows]

    async def export(self) -> AsyncIterator[bytes]:
        """The portable export, line by line (each without its newline).

        A fresh checkpoint covering every committed record is signed first, so the export is
        verifiable to its last line with only the public key.

        Raises:
            StorageError: the store cannot be read.
        """
        await self.checkpoint()
        size = self._committed
        yield export_header(self._origin, self._public_key)
        after = -1
        while after + 1 < size:
            page = await self._storage.read_audit(
                after_seq=after, limit=min(_PAGE, size - after - 1)
            )
            if not page:
                break
            for _seq, digest, body in page:
                yield record_line(body, digest)
            after = page[-1][0]
        for checkpoint in self._checkpoints:
            if checkpoint.tree_size <= size:
                yield checkpoint_line(checkpoint)

    def statistics(self) -> AuditStatistics:
        """Counters for tests and ``/metrics``."""
        return AuditStatistics(
            size=len(self._leaves),
            committed=self._committed,
            checkpoints=len(self._checkpoints),
            failed_batches=self._failed_batches,
            healthy=self._healthy,
        )


def _clip(text: str) -> str:
    # Fields are bounded by the record rules; callers pass device-chosen text at times.
    return text[:256] if text else "-"


def _append_witness(path: Path, line: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
