"""The MQTT side of one provisioning (DPS) connection, after its CONNACK.

A device that connects with the DPS username shape (azure-iot-mqtt.md §2.2, §5) gets this
instead of a hub session: it may subscribe to ``$dps/registrations/res/#`` only, and publish
register and operation-status requests only (:mod:`ironhub.codec.dps` parses them). Each
request is answered on the response topic, ``$rid`` first (§5.3):

* register → ``202`` ``assigning`` with the operation id and ``retry-after``, while the
  assignment runs (:meth:`~ironhub.provisioning.service.ProvisioningService.begin`);
* status → ``200`` with the result; a request that arrives while the operation is still
  assigning is held until it ends, up to a second, and answered ``202`` + ``retry-after``
  if it has not;
  ``429`` + ``retry-after`` to a device that polls faster than allowed; ``404`` for an
  operation that is not its own;
* a malformed body → ``400`` with Azure's error JSON.

Anything else (another topic, another filter, QoS 2, an oversized message) is a protocol
violation: a security event and the connection is closed. Answers go out at QoS 0: the SDK
subscribes at QoS 1 but takes either, and a lost answer is covered by its 30 s timeout and
retry (§5.3).
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any, Final, Protocol

from ironhub.codec import dps
from ironhub.codec.mqtt import PubAck, Publish, SubAck, Subscribe, UnsubAck, Unsubscribe
from ironhub.errors import NotFoundError, ThrottledError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from ironhub.codec.mqtt import Packet
    from ironhub.provisioning.service import AttestedDevice, Operation, ProvisioningService

__all__ = ["DpsConnection", "DpsSession"]

logger = logging.getLogger(__name__)

#: Register requests one connection may make (the SDK makes one; retries reconnect).
MAX_REGISTERS_PER_CONNECTION: Final = 4
#: Longest a status request is held while its operation is still assigning.
_MAX_HOLD_SECONDS: Final = 1.0
#: Status code a malformed request gets, and Azure's matching error code.
_BAD_REQUEST: Final = 400
_BAD_REQUEST_CODE: Final = 400004
_NOT_FOUND_CODE: Final = 404002
_THROTTLED_CODE: Final = 429001


class DpsConnection(Protocol):
    """What a provisioning session needs of its connection."""

    peer_host: str

    def reply(self, packet: Packet) -> None:
        """Queue a packet for the answer to the current read."""
        ...

    def close(self, reason: str, *, abort: bool = False) -> None:
        """Close the connection."""
        ...

    def send_now(self, packet: Packet) -> None:
        """Write a packet at once (from a task, outside the handling of a read)."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a supervised task of the connection."""
        ...

    def provisioning_event(self, event: str, **fields: str) -> None:
        """Record a security event for this connection."""
        ...


class DpsSession:
    """Handles the packets of one attested provisioning connection."""

    def __init__(
        self,
        connection: DpsConnection,
        attested: AttestedDevice,
        service: ProvisioningService,
        *,
        poll_interval_seconds: int,
    ) -> None:
        self._conn = connection
        self.attested = attested
        self._service = service
        self._retry_after = poll_interval_seconds
        self._registers = 0

    def on_subscribe(self, subscribe: Subscribe) -> None:
        """Grant ``$dps/registrations/res/#``; anything else closes the connection."""
        codes: list[int] = []
        for topic_filter, qos in subscribe.requests:
            if topic_filter != dps.RESPONSE_FILTER:
                self._conn.provisioning_event("subscribe-denied", topic_filter=topic_filter[:256])
                self._conn.close("subscribe-denied")
                return
            codes.append(min(qos, 1))
        self._conn.reply(SubAck(subscribe.packet_id, tuple(codes)))

    def on_unsubscribe(self, unsubscribe: Unsubscribe) -> None:
        """Acknowledge (there is nothing to remove but the one filter)."""
        self._conn.reply(UnsubAck(unsubscribe.packet_id))

    def on_publish(self, publish: Publish) -> None:
        """Answer a register or status request; close on anything else."""
        if publish.qos == 2:
            self._conn.provisioning_event("protocol-refused", reason="qos2")
            self._conn.close("qos2-unsupported")
            return
        if len(publish.payload) > dps.MAX_DPS_MESSAGE_BYTES:
            self._conn.provisioning_event("publish-denied", reason="too-large")
            self._conn.close("message-too-large")
            return
        try:
            request = dps.parse_dps_request(publish.topic)
        except ValidationError:
            self._conn.provisioning_event("publish-denied", topic=publish.topic[:256])
            self._conn.close("publish-denied")
            return
        if publish.qos == 1 and publish.packet_id is not None:
            self._conn.reply(PubAck(publish.packet_id))
        if isinstance(request, dps.RegisterRequest):
            self._register(request, publish.payload)
        else:
            self._status(request)

    def _register(self, request: dps.RegisterRequest, payload: bytes) -> None:
        rid = request.request_id
        self._registers += 1
        if self._registers > MAX_REGISTERS_PER_CONNECTION:
            self._error(429, rid, _THROTTLED_CODE, "too many register requests on one connection")
            return
        try:
            body = dps.parse_register_body(payload, registration_id=self.attested.registration_id)
        except ValidationError as exc:
            self._conn.provisioning_event("provisioning-refused", reason="bad-request")
            self._error(_BAD_REQUEST, rid, _BAD_REQUEST_CODE, str(exc))
            return
        try:
            operation = self._service.begin(self.attested, body, source=self._conn.peer_host)
        except ThrottledError as exc:
            self._error(429, rid, _THROTTLED_CODE, str(exc))
            return
        self._send(202, rid, operation.body(), retry_after=self._retry_after)

    def _status(self, request: dps.StatusRequest) -> None:
        rid = request.request_id
        try:
            operation = self._service.poll(self.attested.registration_id, request.operation_id)
        except ThrottledError:
            self._conn.provisioning_event("provisioning-throttled", reason="polling-too-fast")
            self._error(429, rid, _THROTTLED_CODE, "polling faster than allowed", self._retry_after)
            return
        except NotFoundError:
            self._error(404, rid, _NOT_FOUND_CODE, "no such operation")
            return
        if operation.status == "assigning":
            # Held until the assignment ends (usually milliseconds) but never past the
            # retry-after the device was given: one poll instead of a 202 round trip per
            # retry-after, and the device still hears within the time it expects (§5.3).
            self._conn.spawn(self._status_when_done(rid, operation))
            return
        self._finished(rid, operation, now=False)

    async def _status_when_done(self, rid: str, operation: Operation) -> None:
        await operation.wait(min(self._retry_after, _MAX_HOLD_SECONDS))
        if operation.status == "assigning":
            self._send(202, rid, operation.body(), retry_after=self._retry_after, now=True)
            return
        self._finished(rid, operation, now=True)

    def _finished(self, rid: str, operation: Operation, *, now: bool) -> None:
        if operation.status != "assigned":
            self._conn.provisioning_event(
                "provisioning-refused",
                reason=(operation.state.error_message or "-")[:200]
                if operation.state is not None
                else "-",
            )
        self._send(200, rid, operation.body(), now=now)

    def _error(
        self,
        status: int,
        rid: str,
        code: int,
        message: str,
        retry_after: int | None = None,
    ) -> None:
        body = dps.error_body(
            code,
            message,
            tracking_id=secrets.token_hex(8),
            timestamp=dps.format_timestamp(self._service.now()),
        )
        self._send(status, rid, body, retry_after=retry_after)

    def _send(
        self,
        status: int,
        rid: str,
        body: bytes,
        *,
        retry_after: int | None = None,
        now: bool = False,
    ) -> None:
        topic = dps.response_topic(status, rid, retry_after=retry_after)
        packet = Publish(topic=topic, payload=body, qos=0)
        if now:
            self._conn.send_now(packet)
        else:
            self._conn.reply(packet)
