"""Live tail of the message log as Server-Sent Events.

Theory of operation
-------------------

A tail is one :class:`~ironhub.streams.log.LogSubscription` turned into an SSE stream:

* The subscription is opened by the handler *before* the response starts, so once the client
  has seen the response headers, every message committed afterwards reaches it.
* Each committed message becomes one event: ``id: <seq>`` and ``data: <json>`` (a
  :class:`~ironhub.api.schemas.MessageView` on one line).
* When nothing arrived for ``heartbeat_seconds`` a comment line (``: heartbeat``) is sent, so
  proxies and clients with read timeouts keep the stream open and a vanished client is noticed
  when the write fails.
* If the subscriber fell behind (its bounded queue overflowed, ``SubscriberLagged``), the
  stream sends ``event: lagged`` and ends: the client knows it missed messages and can resume
  from the last ``id`` with ``GET /messages?after=``. Silently skipping would be a lie.
* When the hub shuts down (:meth:`TailRegistry.close_all`) every stream ends cleanly, so the
  HTTP server does not wait forever for endless responses.

Whatever ends the stream (end of subscription, lag, shutdown, client disconnect, cancellation),
:meth:`_TailStream.close` runs exactly once from the response's ``finally``: it closes the
subscription, cancels the pending read and frees the slot counted against
``max_tail_clients``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from starlette.responses import StreamingResponse

from ironhub.api.schemas import MessageView, TailLagged
from ironhub.errors import ThrottledError
from ironhub.streams.log import SubscriberLagged

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from prometheus_client import Gauge
    from starlette.types import Receive, Scope, Send

    from ironhub.storage.interfaces import StoredMessage

__all__ = ["Subscription", "TailRegistry", "TailResponse", "message_view"]

logger = logging.getLogger(__name__)


class Subscription(Protocol):
    """What a tail needs of a log subscription."""

    def __aiter__(self) -> AsyncIterator[StoredMessage]:
        """The committed messages, in order; raises ``SubscriberLagged`` when behind."""
        ...

    def close(self) -> None:
        """Stop receiving messages."""
        ...


def message_view(message: StoredMessage) -> MessageView:
    """The API view of a stored message (payload as base64 and, when UTF-8, as text).

    Raises:
        TypeError: never in practice; declared for the docstring convention.
    """
    try:
        text: str | None = message.payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return MessageView(
        seq=message.seq,
        stream=message.stream.value,
        device_id=message.device_id,
        enqueued_at=message.enqueued_at,
        properties=dict(message.properties),
        payload_base64=base64.b64encode(message.payload).decode("ascii"),
        payload_text=text,
    )


class TailRegistry:
    """Counts live tails against the cap and ends them all at shutdown."""

    def __init__(self, max_clients: int, gauge: Gauge | None = None) -> None:
        self.max_clients = max_clients
        self.active = 0
        self._gauge = gauge
        self._closing = asyncio.Event()

    def acquire(self) -> None:
        """Take one tail slot.

        Raises:
            ThrottledError: ``max_clients`` tails are already open.
        """
        if self._closing.is_set():
            raise ThrottledError("the hub is shutting down", retry_after_seconds=5.0)
        if self.active >= self.max_clients:
            raise ThrottledError(
                f"too many live tails (limit {self.max_clients})", retry_after_seconds=5.0
            )
        self.active += 1
        if self._gauge is not None:
            self._gauge.set(self.active)

    def release(self) -> None:
        """Give one slot back."""
        self.active -= 1
        if self._gauge is not None:
            self._gauge.set(self.active)

    def close_all(self) -> None:
        """End every open tail (and refuse new ones): the hub is shutting down."""
        self._closing.set()

    async def wait_closing(self) -> None:
        """Return when :meth:`close_all` was called."""
        await self._closing.wait()


class _TailStream:
    """The event generator of one tail; see the module docstring."""

    def __init__(
        self, subscription: Subscription, registry: TailRegistry, heartbeat_seconds: float
    ) -> None:
        self._subscription = subscription
        self._iterator = aiter(subscription)
        self._registry = registry
        self._heartbeat = heartbeat_seconds
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    async def _next(self) -> StoredMessage:
        return await anext(self._iterator)

    async def events(self) -> AsyncIterator[bytes]:
        """The SSE byte stream."""
        # A first comment flushes the headers and tells the client the subscription is live.
        yield b": tail open\n\n"
        closing: asyncio.Task[None] = asyncio.create_task(self._registry.wait_closing())
        self._tasks.add(closing)
        pending: asyncio.Task[StoredMessage] | None = None
        while True:
            if pending is None:
                pending = asyncio.create_task(self._next())
                self._tasks.add(pending)
            done, _ = await asyncio.wait(
                (pending, closing), timeout=self._heartbeat, return_when=asyncio.FIRST_COMPLETED
            )
            if closing in done:
                yield b"event: closed\ndata: {}\n\n"
                return
            if pending not in done:
                yield b": heartbeat\n\n"
                continue
            task, pending = pending, None
            self._tasks.discard(task)
            try:
                message = task.result()
            except StopAsyncIteration:
                return
            except SubscriberLagged as exc:
                lagged = TailLagged(reason="subscriber-lagged", last_seq=exc.resume_after_seq)
                yield b"event: lagged\ndata: " + msgspec.json.encode(lagged) + b"\n\n"
                return
            data = msgspec.json.encode(message_view(message))
            yield b"id: %d\ndata: %s\n\n" % (message.seq, data)

    def close(self) -> None:
        """Close the subscription, cancel pending reads and free the slot (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                # Mark a result we no longer want as retrieved (no "never retrieved" noise).
                task.exception()
        self._tasks.clear()
        try:
            self._subscription.close()
        finally:
            self._registry.release()


class TailResponse(StreamingResponse):
    """A ``text/event-stream`` response that always closes its subscription."""

    def __init__(
        self,
        subscription: Subscription,
        registry: TailRegistry,
        *,
        heartbeat_seconds: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._stream = _TailStream(subscription, registry, heartbeat_seconds)
        super().__init__(
            self._stream.events(),
            media_type="text/event-stream",
            headers={
                "Cache-Control": "no-store",
                # Proxies such as nginx buffer responses unless told otherwise.
                "X-Accel-Buffering": "no",
                **(headers or {}),
            },
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream until the tail ends or the client goes; then close the subscription."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Everything the tail holds is released here, not in the generator: a generator
            # abandoned at a ``yield`` (the client vanished mid-send) is only finalised later.
            self._stream.close()
