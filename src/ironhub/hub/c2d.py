"""Cloud-to-device messages and module input messages: a durable queue per identity.

Theory of operation (azure-iot-mqtt.md §3, T2'/T3', §4, §9)::

    operator ──send──▶ checks (size ≤ 64 KB, properties, TTL, identity registered)
        ──▶ storage queue (durable; at most 50 pending per identity, else 429)
        ──▶ CommandBus: CloudMessageQueued ──▶ the endpoint holding the session pulls the queue
    endpoint ──PUBLISH QoS 1 on devices/{d}/messages/devicebound/{props}
                          (or devices/{d}/modules/{m}/inputs/{input}/{props})──▶ device
    device ──PUBACK──▶ complete(): the message leaves the queue, feedback "completed"
    TTL passed before the PUBACK ──▶ the sweeper removes it, feedback "expired"
    operator purge ──▶ removed, feedback "purged"

A message delivered but not acknowledged (the connection dropped) stays queued and is re-sent
with DUP=1 on the next session (its ``delivery_count`` is above 0). MQTT has no reject or
abandon: the PUBACK is the completion, as in IoT Hub. Each outcome is one entry on the
``feedback`` stream of the message log (``event=c2d-feedback``, ``status``, ``message-id``).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from ironhub.codec import azure
from ironhub.errors import StorageError, ValidationError
from ironhub.hub.commands import CloudMessageQueued
from ironhub.storage.interfaces import CloudMessage, LogEntry, Stream

if TYPE_CHECKING:
    from ironhub.clock import Clock
    from ironhub.config import LimitsConfig
    from ironhub.hub.commands import CommandBus
    from ironhub.metrics import Metrics
    from ironhub.registry.service import Registry
    from ironhub.storage.interfaces import Storage
    from ironhub.streams.log import MessageLog

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "MAX_CLOUD_MESSAGE_BYTES",
    "MAX_MESSAGE_ID_CHARS",
    "MAX_TTL_SECONDS",
    "CloudToDevice",
    "CloudToDeviceStatistics",
    "message_id_of",
]

logger = logging.getLogger(__name__)

#: Azure's C2D message size limit (azure-iot-mqtt.md §9).
MAX_CLOUD_MESSAGE_BYTES: Final = 64 * 1024
DEFAULT_TTL_SECONDS: Final = 3600.0
#: Azure's longest C2D time to live: two days.
MAX_TTL_SECONDS: Final = 172_800.0
MAX_MESSAGE_ID_CHARS: Final = 128


def message_id_of(message: CloudMessage) -> str:
    """The ``$.mid`` system property of a queued message (always set by :meth:`send`)."""
    for key, value in message.properties:
        if key == "$.mid":
            return value
    return str(message.seq)


@dataclass(frozen=True, slots=True)
class CloudToDeviceStatistics:
    """Counters for tests and ``/metrics``."""

    sent_total: int
    completed_total: int
    expired_total: int
    purged_total: int


class CloudToDevice:
    """The cloud-to-device queues of every identity."""

    def __init__(
        self,
        storage: Storage,
        registry: Registry,
        log: MessageLog,
        *,
        bus: CommandBus,
        clock: Clock,
        limits: LimitsConfig,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._storage = storage
        self._registry = registry
        self._log = log
        self._bus = bus
        self._clock = clock
        self._max_pending = limits.max_pending_cloud_messages
        self._sweep_seconds = limits.cloud_message_expiry_sweep_seconds
        self._sweeper: asyncio.Task[None] | None = None
        self._sent = 0
        self._completed = 0
        self._expired = 0
        self._purged = 0

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the sweeper that drops expired messages."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def stop(self) -> None:
        """Stop the sweeper."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_seconds)
            try:
                await self.expire_now()
            except StorageError:
                # The next sweep retries; expired messages are also never delivered (pending()).
                logger.exception("cannot sweep expired cloud-to-device messages")

    # --- operator side ----------------------------------------------------------------------
    async def send(
        self,
        identity: str,
        payload: bytes,
        *,
        properties: Sequence[tuple[str, str]] = (),
        ttl_seconds: float | None = None,
        input_name: str | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
    ) -> CloudMessage:
        """Queue a message for ``identity`` and tell its session, if any.

        A device (``d``) receives cloud-to-device messages; a module (``d/m``) receives input
        messages on ``input_name``. The system properties the SDK decodes (azure-iot-mqtt.md
        §3.2) go first: ``$.mid`` (``message_id``, random if not given), ``$.cid``, ``$.ct``,
        ``$.ce`` when given, and ``$.exp`` from the TTL.

        Raises:
            ValidationError: payload over 64 KB, bad properties, system property values or
                input name,
                TTL outside (0, 172800] seconds, or a module without input name (or a device
                with one).
            NotFoundError: no such identity.
            QueueFullError: the identity already has the maximum of pending messages.
            StorageError: the queue could not be written.
        """
        _device_id, module_id = azure.split_identity(identity)
        if module_id is None and input_name is not None:
            raise ValidationError("devices receive cloud-to-device messages without input name")
        if module_id is not None:
            if input_name is None:
                raise ValidationError("a module receives messages on a named input")
            azure.validate_input_name(input_name)
        if len(payload) > MAX_CLOUD_MESSAGE_BYTES:
            msg = f"the message exceeds {MAX_CLOUD_MESSAGE_BYTES} bytes"
            raise ValidationError(msg)
        ttl = DEFAULT_TTL_SECONDS if ttl_seconds is None else float(ttl_seconds)
        if not 0 < ttl <= MAX_TTL_SECONDS:
            msg = f"the time to live must be above 0 and at most {MAX_TTL_SECONDS:g} seconds"
            raise ValidationError(msg)
        application = azure.validate_cloud_properties(properties)
        given = (
            ("$.mid", "message id", uuid.uuid4().hex if message_id is None else message_id),
            ("$.cid", "correlation id", correlation_id),
            ("$.ct", "content type", content_type),
            ("$.ce", "content encoding", content_encoding),
        )
        system: list[tuple[str, str]] = []
        for key, what, value in given:
            if value is None:
                continue
            if not 1 <= len(value) <= MAX_MESSAGE_ID_CHARS or not (
                value.isascii() and value.isprintable()
            ):
                msg = f"the {what} must be 1 to {MAX_MESSAGE_ID_CHARS} printable ASCII characters"
                raise ValidationError(msg)
            system.append((key, value))
        await self._registry.get_device(identity)  # NotFoundError
        now = self._clock.time()
        expires_at = now + ttl
        system.append(("$.exp", datetime.fromtimestamp(expires_at, tz=UTC).isoformat()))
        message = CloudMessage(
            seq=0,
            identity=identity,
            input_name=input_name,
            enqueued_at=now,
            expires_at=expires_at,
            payload=payload,
            properties=(*system, *application),
        )
        seq = await self._storage.enqueue_cloud_message(message, max_pending=self._max_pending)
        self._sent += 1
        self._count("queued")
        queued = CloudMessage(
            seq=seq,
            identity=identity,
            input_name=input_name,
            enqueued_at=now,
            expires_at=expires_at,
            payload=payload,
            properties=message.properties,
        )
        logger.info(
            "cloud message queued identity=%s seq=%d mid=%s bytes=%d",
            identity,
            seq,
            system[0][1],
            len(payload),
        )
        # Not taken means no live session here: the message waits for the next connection.
        self._bus.dispatch(CloudMessageQueued(identity))
        return queued

    async def list(self, identity: str) -> builtins.list[CloudMessage]:
        """The messages queued for ``identity`` (expired ones not yet swept included).

        Raises:
            ValidationError: a malformed identity.
            NotFoundError: no such identity.
        """
        azure.split_identity(identity)
        await self._registry.get_device(identity)
        return await self._storage.list_cloud_messages(identity, limit=self._max_pending * 2)

    async def purge(self, identity: str) -> int:
        """Remove every queued message of ``identity``; how many were removed.

        Raises:
            ValidationError: a malformed identity.
            NotFoundError: no such identity.
        """
        azure.split_identity(identity)
        await self._registry.get_device(identity)
        removed = await self._storage.purge_cloud_messages(identity)
        for message in removed:
            self._feedback(message, "purged")
        self._purged += len(removed)
        return len(removed)

    # --- endpoint side ----------------------------------------------------------------------
    async def pending(self, identity: str, *, limit: int) -> builtins.list[CloudMessage]:
        """Deliverable messages of ``identity``, oldest first (expired ones left out)."""
        now = self._clock.time()
        messages = await self._storage.list_cloud_messages(identity, limit=limit)
        return [m for m in messages if m.expires_at > now]

    async def mark_delivered(self, identity: str, seq: int) -> bool:
        """Count one delivery attempt (a later re-send carries DUP=1); ``False`` if it is gone."""
        return await self._storage.mark_cloud_message_delivered(identity, seq)

    async def complete(self, identity: str, seq: int) -> bool:
        """The device acknowledged the message: remove it, record the feedback."""
        removed = await self._storage.delete_cloud_message(identity, seq)
        if removed is None:
            return False
        self._completed += 1
        self._feedback(removed, "completed")
        return True

    async def expire_now(self) -> int:
        """Remove every expired message now, with feedback; how many."""
        total = 0
        while True:
            expired = await self._storage.take_expired_cloud_messages(self._clock.time())
            for message in expired:
                self._feedback(message, "expired")
            total += len(expired)
            if len(expired) < 1000:  # the storage's default limit
                break
        self._expired += total
        return total

    def _feedback(self, message: CloudMessage, status: str) -> None:
        self._count(status)
        entry = LogEntry(
            stream=Stream.FEEDBACK,
            device_id=message.identity,
            enqueued_at=self._clock.time(),
            payload=b"",
            properties=(
                ("event", "c2d-feedback"),
                ("status", status),
                ("message-id", message_id_of(message)),
                ("seq", str(message.seq)),
                *((("input", message.input_name),) if message.input_name else ()),
            ),
        )
        self._log.append(entry).add_done_callback(_feedback_failure)

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.cloud_messages_total.labels(outcome).inc()

    def statistics(self) -> CloudToDeviceStatistics:
        """Counters for tests and ``/metrics``."""
        return CloudToDeviceStatistics(
            sent_total=self._sent,
            completed_total=self._completed,
            expired_total=self._expired,
            purged_total=self._purged,
        )


def _feedback_failure(future: asyncio.Future[int]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        logger.error("could not record cloud-to-device feedback: %s", exc)
