"""Direct methods: an operator invokes a method on a connected device and waits for its answer.

Theory of operation (azure-iot-mqtt.md §3, T4/T4r)::

    operator ──invoke(identity, name, payload, timeout)──▶ MethodService
        ├─ checks: name, payload ≤ 128 KB, timeout, identity registered, per-identity rate
        ├─ a fresh request id ``rid`` is registered as pending for *that identity*
        ├─ CommandBus: MethodRequest ──▶ the endpoint holding the identity's session
        │      not taken (offline, or not subscribed to $iothub/methods/POST/#) ──▶ 404
        └─ waits ≤ timeout ──▶ 504
    device ──$iothub/methods/res/{status}/?$rid={rid}──▶ endpoint ──▶ complete(identity, rid, ...)
        ├─ rid pending for this identity ──▶ the operator gets {status, payload}
        └─ otherwise (another device's rid, a late answer, a guess) ──▶ refused, security event

Pending requests are keyed by identity, not by connection: the SDK renews its SAS token by
reconnecting, and an answer sent over the new connection is still the same device's answer.
A device can therefore answer only the request ids issued to its own identity.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ironhub.codec import azure
from ironhub.errors import (
    AuthorizationError,
    DeviceResponseError,
    DeviceUnavailableError,
    RequestTimeoutError,
    ValidationError,
)
from ironhub.hub.commands import MethodRequest
from ironhub.hub.ratelimit import KeyedTokenBuckets

if TYPE_CHECKING:
    from ironhub.clock import Clock
    from ironhub.config import LimitsConfig
    from ironhub.hub.commands import CommandBus
    from ironhub.metrics import Metrics
    from ironhub.registry.service import Registry

__all__ = [
    "DEFAULT_METHOD_TIMEOUT_SECONDS",
    "MAX_METHOD_PAYLOAD_BYTES",
    "MAX_METHOD_TIMEOUT_SECONDS",
    "MIN_METHOD_TIMEOUT_SECONDS",
    "MethodResult",
    "MethodService",
    "MethodStatistics",
]

logger = logging.getLogger(__name__)

#: Azure's limit for a method request and for its response (azure-iot-mqtt.md §9).
MAX_METHOD_PAYLOAD_BYTES: Final = 128 * 1024
DEFAULT_METHOD_TIMEOUT_SECONDS: Final = 30.0
#: Azure accepts response timeouts of 5 to 300 s; we allow 1 s for tests and scripts.
MIN_METHOD_TIMEOUT_SECONDS: Final = 1.0
MAX_METHOD_TIMEOUT_SECONDS: Final = 300.0
#: Outstanding invocations per identity (each holds an operator request open).
MAX_PENDING_PER_IDENTITY: Final = 32


@dataclass(frozen=True, slots=True)
class MethodResult:
    """The device's answer: its status code and JSON payload (any JSON value)."""

    status: int
    payload: Any


@dataclass(frozen=True, slots=True)
class MethodStatistics:
    """Counters for tests and ``/metrics``."""

    pending: int
    completed_total: int
    timed_out_total: int
    unmatched_responses_total: int


class MethodService:
    """Invokes direct methods and matches the devices' answers to the pending requests."""

    def __init__(
        self,
        registry: Registry,
        bus: CommandBus,
        clock: Clock,
        limits: LimitsConfig,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._registry = registry
        self._bus = bus
        self._clock = clock
        self._rate = KeyedTokenBuckets(limits.method_calls_per_second, limits.method_call_burst)
        self._pending: dict[tuple[str, str], asyncio.Future[MethodResult]] = {}
        self._per_identity: dict[str, int] = {}
        self._completed = 0
        self._timed_out = 0
        self._unmatched = 0

    async def invoke(
        self,
        identity: str,
        method_name: str,
        payload: Any,  # noqa: ANN401 - any JSON value
        *,
        timeout_seconds: float = DEFAULT_METHOD_TIMEOUT_SECONDS,
    ) -> MethodResult:
        """Invoke ``method_name`` on ``identity`` and wait for the device's answer.

        Raises:
            ValidationError: a bad method name, a payload that is not JSON-encodable or
                larger than 128 KB, or a timeout outside 1 to 300 seconds.
            NotFoundError: no such device or module.
            ThrottledError: the identity's method rate is exceeded.
            DeviceUnavailableError: the identity is not connected, or not subscribed to
                direct methods.
            RequestTimeoutError: no answer within ``timeout_seconds``.
            DeviceResponseError: the device answered with malformed JSON or too much of it.
        """
        azure.validate_method_name(method_name)
        if not MIN_METHOD_TIMEOUT_SECONDS <= timeout_seconds <= MAX_METHOD_TIMEOUT_SECONDS:
            msg = (
                f"timeout must be {MIN_METHOD_TIMEOUT_SECONDS:g} to "
                f"{MAX_METHOD_TIMEOUT_SECONDS:g} seconds"
            )
            raise ValidationError(msg)
        try:
            body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError):
            raise ValidationError("the method payload must be a JSON value") from None
        if len(body) > MAX_METHOD_PAYLOAD_BYTES:
            msg = f"the method payload exceeds {MAX_METHOD_PAYLOAD_BYTES} bytes"
            raise ValidationError(msg)
        await self._registry.get_device(identity)  # NotFoundError
        self._rate.check(identity, self._clock.monotonic())
        if self._per_identity.get(identity, 0) >= MAX_PENDING_PER_IDENTITY:
            raise DeviceUnavailableError("too many method calls are pending for this device")

        request_id = secrets.token_hex(8)
        key = (identity, request_id)
        future: asyncio.Future[MethodResult] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        self._per_identity[identity] = self._per_identity.get(identity, 0) + 1
        try:
            taken = self._bus.dispatch(MethodRequest(identity, method_name, request_id, body))
            if not taken:
                self._count("unavailable")
                msg = "the device is not connected or does not listen for direct methods"
                raise DeviceUnavailableError(msg)
            try:
                result = await asyncio.wait_for(future, timeout_seconds)
            except TimeoutError:
                self._timed_out += 1
                self._count("timeout")
                msg = f"the device did not answer within {timeout_seconds:g} seconds"
                raise RequestTimeoutError(msg) from None
            except DeviceResponseError:
                self._count("bad-response")
                raise
            self._count("answered")
            return result
        finally:
            self._pending.pop(key, None)
            left = self._per_identity.get(identity, 1) - 1
            if left > 0:
                self._per_identity[identity] = left
            else:
                self._per_identity.pop(identity, None)

    def complete(self, identity: str, request_id: str, status: int, body: bytes) -> None:
        """Take a device's answer to one of its own pending requests.

        Raises:
            AuthorizationError: ``request_id`` is not pending for ``identity`` (another
                device's request, a late answer after the timeout, or a guess).
        """
        future = self._pending.pop((identity, request_id), None)
        if future is None or future.done():
            self._unmatched += 1
            raise AuthorizationError("no pending method request with this id for this device")
        self._completed += 1
        if len(body) > MAX_METHOD_PAYLOAD_BYTES:
            future.set_exception(
                DeviceResponseError(f"the device's answer exceeds {MAX_METHOD_PAYLOAD_BYTES} bytes")
            )
            return
        try:
            # The SDK sends json.dumps(payload): "null" when there is none. An empty body is
            # read the same way, as the SDK reads an empty request body (§3, T4').
            payload = json.loads(body or b"null")
        except (ValueError, RecursionError):
            future.set_exception(DeviceResponseError("the device answered with malformed JSON"))
            return
        future.set_result(MethodResult(status, payload))

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.method_calls_total.labels(outcome).inc()

    def abandon(self, identity: str, request_id: str) -> None:
        """The request was never delivered (its connection ended first): fail the call now."""
        future = self._pending.get((identity, request_id))
        if future is not None and not future.done():
            future.set_exception(
                DeviceUnavailableError("the device disconnected before the request reached it")
            )

    def statistics(self) -> MethodStatistics:
        """Counters for tests and ``/metrics``."""
        return MethodStatistics(
            pending=len(self._pending),
            completed_total=self._completed,
            timed_out_total=self._timed_out,
            unmatched_responses_total=self._unmatched,
        )
