"""The device endpoint: accepts TLS connections and runs one MQTT 3.1.1 session per device.

Theory of operation, one connection::

    TCP accepted ──(pre-auth caps per source and in total)──▶ TLS handshake (deadline)
        ──▶ AWAIT_CONNECT (CONNECT deadline; tiny packet cap in the codec)
        ──CONNECT──▶ reading paused, authenticate (throttled, see authn)
            ├─ refused ──▶ CONNACK 2/3/5, security event, close
            └─ accepted ──▶ older connection of the same identity closed ("takeover")
                ──▶ session: clean 1 drops the stored one; clean 0 restores its subscriptions
                    (re-authorised; docs/adr/0009)
                ──▶ CONNACK 0 (session present), keep-alive and credential deadlines armed
                ──▶ CONNECTED; catch-up: a missed desired version, queued C2D messages

    CONNECTED: PUBLISH ──authz──▶ log.append (group commit) ──committed──▶ PUBACK, in order
               PUBLISH $iothub/... ──▶ twin GET / reported PATCH (answered on twin/res) or a
                   method answer (to its pending request) ──handled──▶ PUBACK, in order
               SUBSCRIBE ──authz per filter──▶ stored (clean 0) ──▶ SUBACK, or close on any
                   forbidden filter or beyond the subscription cap
               commands (CommandBus) ──▶ method requests, desired notifications, queued
                   C2D/input messages ──▶ QoS 1 window (bounded) ──PUBACK──▶ completion
               PINGREQ ──▶ PINGRESP;  DISCONNECT / idle 1.5x keep-alive / token expiry /
               device disabled or deleted / protocol error / slow consumer ──▶ close

Data flows one way (ARCHITECTURE.md): this endpoint appends telemetry to the message log and
hands twin requests and method answers to their services; services reach a session only through
commands it takes (:mod:`ironhub.hub.commands`). It never awaits storage per message. A QoS 1
PUBACK is written only after the commit of the transaction holding that message; if a commit
fails, the connection closes without acknowledging, and the device re-sends. Backpressure
instead of loss: when too many publishes await their commit, or a device exceeds its message
rate, the endpoint stops reading that socket for a while.

Only the per-connection boundary (:meth:`_Connection.data_received` and the authentication
task) catches broad exceptions: it logs, counts, records a security event and closes that one
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import socket
import ssl
import struct
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from cryptography import x509

from ironhub.codec import azure, dps
from ironhub.codec.azure import SubscriptionKind
from ironhub.codec.mqtt import (
    ConnAck,
    Connect,
    ConnectionState,
    ConnectReturnCode,
    Disconnect,
    MQTTConnection,
    MQTTLimits,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    Role,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    encode_packet,
)
from ironhub.errors import (
    AuthenticationError,
    AuthorizationError,
    RemoteProtocolError,
    StorageError,
    ThrottledError,
    ValidationError,
)
from ironhub.hub.authn import Authenticated, Authenticator, AuthRefused
from ironhub.hub.commands import (
    CloudMessageQueued,
    Command,
    DesiredPropertiesChanged,
    MethodRequest,
)
from ironhub.hub.dps import DpsSession
from ironhub.hub.outbound import OutboundPublish, OutboundWindow
from ironhub.hub.ratelimit import KeyedTokenBuckets, TokenBucket
from ironhub.registry.service import KEY_SLOTS
from ironhub.registry.twin import desired_notification
from ironhub.services import ConnectionInfo
from ironhub.storage.interfaces import AuthKind, LogEntry, SessionRecord, Stream

if TYPE_CHECKING:
    from ironhub.codec.azure import DevicePublish
    from ironhub.registry.service import DeviceChange
    from ironhub.services import Services
    from ironhub.storage.interfaces import CloudMessage, IssuedCertificateRecord

__all__ = ["DeviceEndpoint", "EndpointStatistics"]

logger = logging.getLogger(__name__)

#: Security events recorded per source address: a burst, then one per second. A flood of
#: failed handshakes must not turn into a flood of log writes.
_EVENTS_PER_SOURCE_PER_SECOND = 1.0
_EVENT_BURST_PER_SOURCE = 20
#: Longest client id kept in a security event (the value is attacker-chosen).
_MAX_RECORDED_ID_CHARS = 128


@dataclass(frozen=True, slots=True)
class EndpointStatistics:
    """A snapshot of the endpoint's counters."""

    preauth_connections: int
    connections: int
    accepted_total: int
    refused_total: int
    security_events_suppressed: int


def _puback(packet_id: int) -> bytes:
    # PUBACK [MQTT-3.4]: fixed header 0x40, remaining length 2, packet identifier. Written
    # directly because it is the hot path; the codec's own encoder is tested to agree.
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


def _pubacks(packet_ids: list[int]) -> bytes:
    # The PUBACKs of one commit in one C call: each is the big-endian word 0x4002_iiii.
    return struct.pack(f">{len(packet_ids)}I", *[0x40020000 | i for i in packet_ids])


def _digest(topic: str, payload: bytes) -> bytes:
    return _digest_with_prefix(topic.encode() + b"\x00", payload)


def _digest_with_prefix(prefix: bytes, payload: bytes) -> bytes:
    # ``prefix`` is the encoded topic and a NUL, cached per topic by the connection.
    return _blake2b(prefix + payload, digest_size=16).digest()


_blake2b = hashlib.blake2b


@dataclass(frozen=True, slots=True)
class _Route:
    """What a connection caches per PUBLISH topic (at most 64 topics per connection)."""

    properties: tuple[tuple[str, str], ...]
    stream: Stream
    #: The UTF-8 topic and a NUL: the prefix of the DUP digest.
    digest_prefix: bytes


class DeviceEndpoint:
    """The TLS listener and every live device session of one hub process."""

    def __init__(
        self,
        services: Services,
        *,
        ssl_context: Callable[[], ssl.SSLContext],
    ) -> None:
        self._services = services
        self._config = services.config.mqtt
        self._clock = services.clock
        self._metrics = services.metrics
        self._ssl_context = ssl_context
        self._authenticator = Authenticator(
            services.registry, services.config, services.clock, services.provisioning
        )
        self._limits = MQTTLimits(
            max_connect_packet_bytes=self._config.max_connect_packet_bytes,
            max_packet_bytes=self._config.max_packet_bytes,
        )
        limits = services.config.limits
        self._message_rate = (limits.device_messages_per_second, limits.device_message_burst)
        self._device_buckets: dict[str, TokenBucket] = {}
        self._event_buckets = KeyedTokenBuckets(
            _EVENTS_PER_SOURCE_PER_SECOND, _EVENT_BURST_PER_SOURCE
        )
        self._connection_buckets = KeyedTokenBuckets(
            limits.connections_per_source_per_second,
            max(1.0, limits.connections_per_source_per_second),
        )
        self._message_counters = {
            stream: services.metrics.messages_total.labels(stream.value) for stream in Stream
        }
        self._server: asyncio.Server | None = None
        self._all: set[_Connection] = set()
        self._preauth_by_source: dict[str, int] = {}
        self._preauth_total = 0
        self._live: dict[str, _Connection] = {}
        #: Provisioning (DPS) connections past their CONNACK; they are not hub sessions.
        self._provisioning: set[_Connection] = set()
        self._accepted_total = 0
        self._refused_total = 0
        self._events_suppressed = 0
        services.registry.add_listener(self._on_device_change)
        services.registry.add_trust_listener(self._on_trust_change)
        if services.provisioning is not None:
            services.provisioning.authority.add_revocation_listener(self._on_certificate_revoked)
            services.provisioning.add_trust_listener(self._on_trust_change)
        self._recheck_task: asyncio.Task[None] | None = None
        self._unsubscribe_commands: Callable[[], None] | None = None
        self._session_writes: dict[str, asyncio.Future[None]] = {}
        if services.commands is not None:
            self._unsubscribe_commands = services.commands.subscribe(self._on_command)

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Start listening on the configured address.

        Raises:
            OSError: the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self),
            self._config.host,
            self._config.port,
            backlog=1024,
            reuse_address=True,
        )
        logger.info("device endpoint listening host=%s port=%d", *self.address)

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the port is the real one when 0 was configured)."""
        assert self._server is not None
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    async def stop(self) -> None:
        """Stop accepting, close every connection and wait for them to go."""
        if self._unsubscribe_commands is not None:
            self._unsubscribe_commands()
            self._unsubscribe_commands = None
        if self._server is not None:
            self._server.close()
        for conn in list(self._all):
            conn.close("shutdown")
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def connections(self) -> list[ConnectionInfo]:
        """The live authenticated connections."""
        return [c.info() for c in self._live.values() if c.auth is not None]

    def statistics(self) -> EndpointStatistics:
        """Counters for tests and ``/metrics``."""
        return EndpointStatistics(
            preauth_connections=self._preauth_total,
            connections=len(self._live),
            accepted_total=self._accepted_total,
            refused_total=self._refused_total,
            security_events_suppressed=self._events_suppressed,
        )

    # --- used by connections --------------------------------------------------------------
    def admit(self, conn: _Connection) -> str | None:
        """Count a new TCP connection; return a refusal reason if a cap is reached."""
        host = conn.peer_host
        try:
            self._connection_buckets.check(host, self._clock.monotonic())
        except ThrottledError:
            return "connection-rate"
        if self._preauth_total >= self._config.max_preauth_connections:
            return "preauth-cap"
        if self._preauth_by_source.get(host, 0) >= self._config.max_preauth_connections_per_source:
            return "preauth-cap-per-source"
        self._all.add(conn)
        self._preauth_total += 1
        self._preauth_by_source[host] = self._preauth_by_source.get(host, 0) + 1
        self._metrics.preauth_connections.set(self._preauth_total)
        return None

    def leave_preauth(self, conn: _Connection) -> None:
        """The connection finished authentication, or closed before it."""
        host = conn.peer_host
        self._preauth_total -= 1
        left = self._preauth_by_source.get(host, 1) - 1
        if left > 0:
            self._preauth_by_source[host] = left
        else:
            self._preauth_by_source.pop(host, None)
        self._metrics.preauth_connections.set(self._preauth_total)

    def forget(self, conn: _Connection) -> None:
        """The connection is gone."""
        self._all.discard(conn)
        self._provisioning.discard(conn)
        if conn.auth is not None and self._live.get(conn.auth.device_id) is conn:
            del self._live[conn.auth.device_id]
            self._metrics.connections.set(len(self._live))

    def register(self, conn: _Connection, auth: Authenticated) -> bool:
        """Make ``conn`` the one live connection of its identity (closing an older one).

        Returns:
            ``False`` if the global connection cap is reached (CONNACK 3).
        """
        old = self._live.get(auth.device_id)
        if old is None and len(self._live) >= self._config.max_connections:
            return False
        if old is not None:
            # One live connection per identity [MQTT-3.1.4-2]; the newest wins.
            self.lifecycle_event(
                auth.device_id,
                "takeover",
                old_peer=old.peer,
                new_peer=conn.peer,
            )
            old.close("takeover")
        self._live[auth.device_id] = conn
        self._accepted_total += 1
        self._metrics.connects_total.inc()
        self._metrics.connections.set(len(self._live))
        return True

    def register_provisioning(self, conn: _Connection) -> bool:
        """Count an attested provisioning connection; ``False`` past the connection cap."""
        if len(self._provisioning) + len(self._live) >= self._config.max_connections:
            return False
        self._provisioning.add(conn)
        return True

    def message_bucket(self, device_id: str) -> TokenBucket:
        """The device's telemetry token bucket (kept across reconnects)."""
        bucket = self._device_buckets.get(device_id)
        if bucket is None:
            rate, burst = self._message_rate
            bucket = TokenBucket.full(rate, burst, self._clock.monotonic())
            self._device_buckets[device_id] = bucket
        return bucket

    @property
    def authenticator(self) -> Authenticator:
        """The credential checker."""
        return self._authenticator

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for a new connection (rebuilt when client trust changes)."""
        return self._ssl_context()

    def _append(self, entry: LogEntry) -> None:
        future = self._services.log.append(entry)
        future.add_done_callback(_log_append_failure)

    def security_event(
        self, peer_host: str, event: str, *, device_id: str | None = None, **fields: str
    ) -> None:
        """Record a security event in the log, rate-limited per source address."""
        self._refused_total += 1
        try:
            self._event_buckets.check(peer_host, self._clock.monotonic())
        except ThrottledError:
            self._events_suppressed += 1
            return
        props = [("event", event), ("peer", peer_host)]
        props.extend(fields.items())
        logger.info(
            "security event=%s peer=%s device_id=%s %s", event, peer_host, device_id, fields
        )
        self._audit(
            action=event,
            actor=device_id or fields.get("client_id", "-"),
            outcome="refused",
            source=peer_host,
            reason=fields.get("reason", "-"),
        )
        self._append(
            LogEntry(
                stream=Stream.SECURITY,
                device_id=device_id,
                enqueued_at=self._clock.time(),
                payload=b"",
                properties=tuple(props),
            )
        )

    def lifecycle_event(self, device_id: str, event: str, **fields: str) -> None:
        """Record a connection lifecycle event in the log."""
        logger.info("lifecycle event=%s device_id=%s %s", event, device_id, fields)
        self._audit(
            action=event,
            actor=device_id,
            outcome="ok",
            source=fields.get("peer", fields.get("new_peer", "-")),
            reason=fields.get("reason", "-"),
        )
        self._append(
            LogEntry(
                stream=Stream.LIFECYCLE,
                device_id=device_id,
                enqueued_at=self._clock.time(),
                payload=b"",
                properties=(("event", event), *fields.items()),
            )
        )

    def _audit(self, *, action: str, actor: str, outcome: str, source: str, reason: str) -> None:
        # Device security and lifecycle events go to the audit log too (issue 4); the
        # connection never waits for it, a failure is logged (the audit log raises its alarm).
        audit = self._services.audit
        if audit is None:
            return
        future = audit.append_nowait(
            actor_kind="device",
            actor=actor,
            action=action,
            target=actor,
            outcome=outcome,
            source=source,
            reason=reason,
        )
        future.add_done_callback(_log_append_failure)

    def acknowledged(self, device_id: str, packet_ids: list[int]) -> None:
        """PUBACKs were written for these publishes."""
        self._services.log.acknowledged_many(device_id, packet_ids)

    def count_message(self, stream: Stream, count: int = 1) -> None:
        """Count accepted device messages."""
        # Resolving a labelled child costs more than the rest of the publish path; do it once.
        self._message_counters[stream].inc(count)

    def count_refused(self, reason: str) -> None:
        """Count one refused publish."""
        self._metrics.messages_refused_total.labels(reason).inc()

    def count_auth_failure(self, reason: str) -> None:
        """Count one refused authentication."""
        self._metrics.auth_failures_total.labels(reason).inc()

    def count_protocol_error(self) -> None:
        """Count one connection closed for a protocol error."""
        self._metrics.protocol_errors_total.inc()

    def _on_device_change(self, change: DeviceChange) -> None:
        conn = self._live.get(change.device_id)
        if conn is None or conn.auth is None:
            return
        if change.reason in ("disabled", "deleted", "credentials-changed"):
            conn.close(f"device-{change.reason}")
        elif change.reason in ("quarantined", "enabled"):
            # Takes effect on the next message; the session itself stays up.
            conn.quarantined = change.reason == "quarantined"
        elif change.reason == "key-rotated" and (
            change.slot is None
            or conn.auth.credential_slot is None
            or change.slot == KEY_SLOTS[conn.auth.credential_slot]
        ):
            # Rotating the key the connection authenticated with invalidates it; rotating
            # the other key must not disturb the device (rotation without downtime).
            conn.close("key-rotated")

    def _on_certificate_revoked(self, record: IssuedCertificateRecord) -> None:
        # Called synchronously by the device CA right after the revocation is stored, so the
        # session ends now, not at its next reconnect (SECURITY-TESTS §3.1 item 2).
        conn = self._live.get(record.device_id)
        if conn is None or conn.auth is None or conn.auth.certificate_der is None:
            return
        serial = x509.load_der_x509_certificate(conn.auth.certificate_der).serial_number
        if format(serial, "X") == record.serial:
            self.security_event(
                conn.peer_host,
                "session-revoked",
                device_id=record.device_id,
                reason="certificate-revoked",
                serial=record.serial,
            )
            conn.close("certificate-revoked")

    def _on_command(self, command: Command) -> bool:
        """Take a command for a live session of this endpoint (cloud to device)."""
        conn = self._live.get(command.identity)
        if conn is None or not conn.ready:
            return False
        match command:
            case MethodRequest():
                return conn.deliver_method_request(command)
            case DesiredPropertiesChanged():
                return conn.deliver_desired(command.version, command.body)
            case CloudMessageQueued():
                return conn.pull_cloud_messages()

    @property
    def services(self) -> Services:
        """The hub's services (for connections)."""
        return self._services

    async def save_session(self, record: SessionRecord) -> None:
        """Store a session, remembering the write so the next CONNECT can wait for it.

        Raises:
            StorageError: the write failed.
        """
        task = asyncio.ensure_future(self._services.storage.put_session(record))
        self._session_writes[record.client_id] = task
        try:
            await asyncio.shield(task)
        finally:
            if self._session_writes.get(record.client_id) is task:
                del self._session_writes[record.client_id]

    async def wait_session_settled(self, client_id: str) -> None:
        """Wait until the last session write of ``client_id`` (by an older connection) ended.

        A device that acknowledges and reconnects at once must find what it acknowledged;
        storage commits writes in order, so the last one stands for all.
        """
        task = self._session_writes.get(client_id)
        if task is not None:
            with contextlib.suppress(StorageError):
                await asyncio.shield(task)

    def _on_trust_change(self) -> None:
        # A removed CA must not leave the sessions it authenticated alive (SECURITY-TESTS
        # §3.4 item 22: authorisation is re-checked, not only evaluated at CONNECT).
        if self._recheck_task is None or self._recheck_task.done():
            self._recheck_task = asyncio.get_running_loop().create_task(self._recheck_live())

    async def _recheck_live(self) -> None:
        for conn in list(self._live.values()):
            auth = conn.auth
            if auth is None or auth.auth_kind is not AuthKind.X509_CA:
                continue
            try:
                await self._authenticator.recheck(auth)
            except AuthenticationError as exc:
                self.security_event(
                    conn.peer_host, "session-revoked", device_id=auth.device_id, reason=exc.reason
                )
                conn.close("trust-revoked")
            except StorageError:
                # Fail closed: if trust cannot be re-evaluated, the session does not continue.
                logger.exception("cannot re-check session device_id=%s", auth.device_id)
                conn.close("trust-unavailable")

    @property
    def mqtt_config(self) -> MQTTLimits:
        """The codec limits for new connections."""
        return self._limits


def _error_body(message: str) -> bytes:
    # Twin error answers carry a JSON message (never the device's own input).
    return json.dumps({"message": message[:200]}).encode()


def _log_append_failure(future: asyncio.Future[int]) -> None:
    # Events are best effort for the connection, but a failure must never be silent.
    if not future.cancelled() and (exc := future.exception()) is not None:
        logger.error("could not record an event in the log: %s", exc)


class _Connection(asyncio.Protocol):
    """One device connection: TCP accept, TLS, MQTT session."""

    def __init__(self, endpoint: DeviceEndpoint) -> None:
        self._endpoint = endpoint
        self._loop = asyncio.get_running_loop()
        self._config = endpoint._config  # noqa: SLF001 - one package
        self._tcp: asyncio.Transport | None = None
        self._transport: asyncio.Transport | None = None
        self._codec = MQTTConnection(Role.SERVER, endpoint.mqtt_config)
        self.peer = "unknown"
        self.peer_host = "unknown"
        self.auth: Authenticated | None = None
        #: Telemetry is refused while set (security messages still land): issue 6.
        self.quarantined = False
        #: Set instead of ``auth`` for a provisioning (DPS) connection.
        self._dps: DpsSession | None = None
        self._connect: Connect | None = None
        self._preauth = False
        self._closed = False
        self._paused: set[str] = set()
        self._pending: deque[tuple[int, asyncio.Future[int]]] = deque()
        self._timers: list[asyncio.TimerHandle] = []
        self._idle_timer: asyncio.TimerHandle | None = None
        self._keep_alive = 0.0
        self._last_rx = 0.0
        self._connected_at = 0.0
        self._topic_cache: dict[str, _Route] = {}
        # Whether a done callback is registered on the head of _pending (one per commit
        # batch, not one per message).
        self._armed = False
        self._bucket: TokenBucket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._early: list[bytes] = []
        self._writing_paused = False
        self._replies = bytearray()
        # Packets decoded but held back by the device rate limit, and the timer that ends the
        # hold (one at a time: a timer per over-rate message used to pile up in _timers).
        self._held: deque[Packet] = deque()
        self._rate_timer: asyncio.TimerHandle | None = None
        # --- the MQTT session (after authentication only) ---
        #: Whether CONNACK 0 was sent and the session state is loaded (commands may come).
        self.ready = False
        self._device_part = ""
        self._module_id: str | None = None
        self._clean = True
        #: Granted subscriptions by kind: (topic filter, granted QoS).
        self._subs: dict[SubscriptionKind, tuple[str, int]] = {}
        #: Highest desired $version the device acknowledged / that was queued to it.
        self._desired_sent = 0
        self._desired_queued = 0
        self._window = OutboundWindow(
            max_inflight=self._config.max_outbound_inflight,
            max_queued=self._config.max_outbound_queue,
        )
        #: Cloud-to-device messages in flight (their storage seq) and the pull task's state.
        self._c2d_inflight: set[int] = set()
        self._c2d_pulling = False
        self._c2d_again = False

    # --- TCP and TLS ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self._tcp is not None:
            return  # start_tls does not call this again, but be safe.
        self._tcp = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.peer_host = str(peer[0])
            self.peer = f"{peer[0]}:{peer[1]}"
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # TLS 1.3 connects stall ~44 ms without it (ARCHITECTURE.md).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        refusal = self._endpoint.admit(self)
        if refusal is not None:
            self._endpoint.security_event(self.peer_host, "connection-refused", reason=refusal)
            self._closed = True
            transport.abort()
            return
        self._preauth = True
        self._arm(self._config.connect_timeout_seconds, self._connect_deadline)
        self._spawn(self._start_tls(transport))

    async def _start_tls(self, transport: asyncio.Transport) -> None:
        try:
            tls = await self._loop.start_tls(
                transport,
                self,
                self._endpoint.ssl_context(),
                server_side=True,
                ssl_handshake_timeout=self._config.tls_handshake_timeout_seconds,
            )
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as exc:
            if not self._closed:
                self._endpoint.security_event(
                    self.peer_host, "tls-handshake-failed", reason=type(exc).__name__
                )
            self._teardown("tls-handshake-failed")
            transport.abort()
            return
        if self._closed or tls is None:
            if tls is not None:
                tls.abort()
            return
        self._transport = tls
        self._last_rx = self._loop.time()
        # The TLS layer may hand over application data before start_tls() returned to us.
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        # Per-connection boundary: whatever goes wrong in here closes this connection only.
        if self._transport is None:
            self._early.append(data)
            return
        try:
            packets = self._codec.receive_data(data)
            if packets:
                # Keep-alive counts control packets, not bytes [MQTT-3.1.2-24]: a peer that
                # trickles a packet it never completes (slowloris) must not stay alive on it.
                self._last_rx = self._loop.time()
            self._process(packets)
        except RemoteProtocolError as exc:
            self._protocol_error(exc)
        except Exception:
            logger.exception("internal error peer=%s", self.peer)
            self._endpoint.security_event(self.peer_host, "internal-error", device_id=self._id())
            self.close("internal-error")

    def eof_received(self) -> bool | None:
        self.close("eof")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._teardown("connection-lost" if exc else "closed")

    def pause_writing(self) -> None:
        # The peer does not read what we send; it gets a bounded buffer, then the door.
        # asyncio calls this once, when the buffer crosses the transport's high-water mark
        # (64 KiB by default); a cap above that mark is enforced by _write() from then on,
        # until resume_writing(). Without that, a peer that never reads grew the buffer
        # without bound under the default 1 MiB cap (tests/hostile, §3.5 item 27).
        self._writing_paused = True
        self._check_outbound()

    def resume_writing(self) -> None:
        self._writing_paused = False

    def _check_outbound(self) -> None:
        transport = self._transport
        if (
            transport is not None
            and transport.get_write_buffer_size() > self._config.max_outbound_buffer_bytes
        ):
            self._endpoint.security_event(self.peer_host, "slow-consumer", device_id=self._id())
            self.close("slow-consumer", abort=True)

    # --- MQTT -----------------------------------------------------------------------------
    def _process(self, packets: list[Packet]) -> None:
        try:
            self._process_held(packets)
        finally:
            self._flush_replies()

    def _process_held(self, packets: list[Packet]) -> None:  # noqa: C901, PLR0912 - a case a type
        held = self._held
        held.extend(packets)
        # One clock reading per read: the packets of one read arrived together. The rate check
        # with one ``now`` is exact (a bucket refills by elapsed time, which is 0 within a read).
        clock = self._endpoint._clock  # noqa: SLF001 - one package
        now = clock.monotonic()
        wall = clock.time()
        counted: dict[Stream, int] = {}
        try:
            while held:
                if self._closed or "rate" in self._paused or "session" in self._paused:
                    # Over the device's rate, the rest of this read waits with the socket: a
                    # pipelining device is held to its rate like one that waits for each PUBACK
                    # (before, every packet of the read was accepted and only the next read
                    # waited).
                    return
                packet = held.popleft()
                if self._dps is not None and self._dps_packet(packet):
                    continue
                match packet:
                    case Publish():
                        if not self._take_message_token(now):
                            held.appendleft(packet)
                            return
                        stream = self._on_publish(packet, wall)
                        if stream is not None:
                            counted[stream] = counted.get(stream, 0) + 1
                    case Connect():
                        self._on_connect(packet)
                    case PingReq():
                        self._reply(PingResp())
                    case Subscribe():
                        self._on_subscribe(packet)
                    case Unsubscribe():
                        self._on_unsubscribe(packet)
                    case PubAck():
                        self._on_puback(packet.packet_id)
                    case Disconnect():
                        self.close("disconnect")
                    case _:
                        # QoS 2 flows: IoT Hub closes the connection on QoS 2 (azure-iot-mqtt §9).
                        self._endpoint.security_event(
                            self.peer_host,
                            "protocol-refused",
                            device_id=self._id(),
                            reason=f"unsupported-{type(packet).__name__.lower()}",
                        )
                        self.close("unsupported-packet")
        finally:
            # Counted once per read, not per message (a labelled counter takes a lock).
            for stream, count in counted.items():
                self._endpoint.count_message(stream, count)

    def _dps_packet(self, packet: Packet) -> bool:
        """Hand a provisioning connection's packet to its session; ``False``: not its kind."""
        dps_session = self._dps
        assert dps_session is not None
        match packet:
            case Publish():
                dps_session.on_publish(packet)
            case Subscribe():
                dps_session.on_subscribe(packet)
            case Unsubscribe():
                dps_session.on_unsubscribe(packet)
            case PubAck():
                pass  # answers go out at QoS 0; nothing awaits an acknowledgement
            case _:
                return False
        return True

    def reply(self, packet: Packet) -> None:
        """Queue ``packet`` with the answers to the current read (for the DPS session)."""
        self._reply(packet)

    def send_now(self, packet: Packet) -> None:
        """Write ``packet`` at once (for the DPS session's tasks)."""
        if not self._closed and self._codec.state is not ConnectionState.CLOSED:
            self._write(self._codec.send(packet))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a supervised task of this connection (for the DPS session)."""
        self._spawn(coro)

    def provisioning_event(self, event: str, **fields: str) -> None:
        """A security event of this provisioning connection."""
        registration_id = self._dps.attested.registration_id if self._dps is not None else "-"
        self._endpoint.security_event(
            self.peer_host, event, registration_id=registration_id, **fields
        )

    async def _provisioning_connect(self, connect: Connect, cert: bytes | None) -> None:
        """Attest a DPS-shaped CONNECT and start its provisioning session."""
        endpoint = self._endpoint
        provisioning = endpoint.services.provisioning
        claimed = connect.client_id[:_MAX_RECORDED_ID_CHARS]
        authenticator = endpoint.authenticator
        try:
            if provisioning is None or not provisioning.enabled:
                raise AuthRefused(ConnectReturnCode.NOT_AUTHORIZED, "provisioning-not-enabled")
            authenticator.check_throttle(self.peer_host, f"dps:{connect.client_id}")
            try:
                assert connect.username is not None
                username = dps.parse_dps_username(connect.username, client_id=connect.client_id)
                attested = await provisioning.attest(
                    username, password=connect.password, certificate_der=cert
                )
            except (ValidationError, AuthenticationError) as exc:
                authenticator.record_failure(self.peer_host, f"dps:{connect.client_id}")
                reason = exc.reason if isinstance(exc, AuthenticationError) else "bad-username"
                raise AuthRefused(ConnectReturnCode.NOT_AUTHORIZED, reason) from None
        except AuthRefused as refused:
            endpoint.count_auth_failure(refused.reason)
            endpoint.security_event(
                self.peer_host, "provisioning-refused", reason=refused.reason, client_id=claimed
            )
            self._refuse(refused.return_code)
            return
        except StorageError:
            logger.exception("provisioning store unavailable peer=%s", self.peer)
            endpoint.security_event(
                self.peer_host, "provisioning-refused", reason="storage-unavailable"
            )
            self._refuse(ConnectReturnCode.SERVER_UNAVAILABLE)
            return
        if self._closed:
            return
        if not endpoint.register_provisioning(self):
            endpoint.security_event(self.peer_host, "connection-refused", reason="connection-cap")
            self._refuse(ConnectReturnCode.SERVER_UNAVAILABLE)
            return
        config = endpoint.services.config.provisioning
        self._dps = DpsSession(
            self, attested, provisioning, poll_interval_seconds=config.poll_interval_seconds
        )
        if attested.method != "claim":
            # A connection with no credential (it may only register with a claim token) stays
            # under the pre-auth caps per source and in total: it has proven nothing yet.
            self._leave_preauth()
        self._write(self._codec.send(ConnAck(ConnectReturnCode.ACCEPTED)))
        self._arm_keep_alive(connect.keep_alive_seconds)
        # A provisioning conversation takes seconds; an idle or endless one is cut off.
        self._arm(config.max_connection_seconds, partial(self.close, "provisioning-time-limit"))
        self._resume("auth")
        try:
            self._process(self._codec.receive_data(b""))
        except RemoteProtocolError as exc:
            self._protocol_error(exc)

    def _on_connect(self, connect: Connect) -> None:
        self._connect = connect
        self._pause("auth")
        if (
            connect.username is not None
            and connect.will is None
            and azure.is_dps_username(connect.username)
        ):
            # Provisioning, not a hub session (a will is refused by _authenticate).
            self._spawn(self._provisioning_connect(connect, self._peer_certificate()))
            return
        self._spawn(self._authenticate(connect))

    def _peer_certificate(self) -> bytes | None:
        transport = self._transport
        ssl_object = transport.get_extra_info("ssl_object") if transport else None
        return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None

    async def _authenticate(self, connect: Connect) -> None:  # noqa: C901 - one ordered list
        endpoint = self._endpoint
        cert = self._peer_certificate()
        claimed = connect.client_id[:_MAX_RECORDED_ID_CHARS]
        try:
            if connect.will is not None:
                # Azure devices never send a will; refusing it keeps will topics out of the
                # authorisation surface until wills are supported (docs/adr/0004).
                raise AuthRefused(ConnectReturnCode.NOT_AUTHORIZED, "will-not-supported")
            auth = await endpoint.authenticator.authenticate(
                connect, peer_host=self.peer_host, peer_certificate_der=cert
            )
        except AuthRefused as refused:
            endpoint.count_auth_failure(refused.reason)
            endpoint.security_event(
                self.peer_host, "auth-failed", reason=refused.reason, client_id=claimed
            )
            self._refuse(refused.return_code)
            return
        except StorageError:
            logger.exception("registry unavailable during authentication peer=%s", self.peer)
            endpoint.security_event(self.peer_host, "auth-failed", reason="storage-unavailable")
            self._refuse(ConnectReturnCode.SERVER_UNAVAILABLE)
            return
        if self._closed:
            return
        if not endpoint.register(self, auth):
            endpoint.security_event(self.peer_host, "connection-refused", reason="connection-cap")
            self._refuse(ConnectReturnCode.SERVER_UNAVAILABLE)
            return
        self.auth = auth
        self.quarantined = auth.quarantined
        self._leave_preauth()
        self._device_part, self._module_id = azure.split_identity(auth.device_id)
        self._clean = connect.clean_session
        try:
            # Session state is touched only now, after authentication (issue 3).
            session_present = await self._open_session()
        except StorageError:
            logger.exception("session state unavailable client_id=%s", auth.device_id)
            endpoint.security_event(
                self.peer_host, "connection-refused", device_id=auth.device_id, reason="session"
            )
            self._refuse(ConnectReturnCode.SERVER_UNAVAILABLE)
            return
        if self.closed:
            return
        self._connected_at = endpoint._clock.time()  # noqa: SLF001 - one package
        self._bucket = endpoint.message_bucket(auth.device_id)
        self._write(
            self._codec.send(ConnAck(ConnectReturnCode.ACCEPTED, session_present=session_present))
        )
        self._arm_keep_alive(connect.keep_alive_seconds)
        if auth.expires_at is not None:
            # The SAS expiry is also a deadline for the live connection (azure-iot-mqtt §2.3);
            # the SDK reconnects with a fresh token two minutes before it.
            remaining = auth.expires_at - endpoint._clock.time()  # noqa: SLF001
            self._arm(max(0.0, remaining), self._credential_expired)
        endpoint.lifecycle_event(
            auth.device_id,
            "connected",
            peer=self.peer,
            auth_kind=auth.auth_kind.value,
            keep_alive=str(int(self._keep_alive)),
            clean_session=str(connect.clean_session).lower(),
            session_present=str(session_present).lower(),
        )
        self.ready = True
        if self._subs:
            self._spawn(self._resume_session())
        self._resume("auth")
        # Packets that arrived behind the CONNECT were held by the codec until CONNACK 0
        # [MQTT-3.1.4-5]; process them now.
        try:
            self._process(self._codec.receive_data(b""))
        except RemoteProtocolError as exc:
            self._protocol_error(exc)

    def _refuse(self, code: ConnectReturnCode) -> None:
        if not self._closed and self._transport is not None:
            self._write(self._codec.send(ConnAck(code)))
        self.close("refused")

    def _on_publish(self, publish: Publish, now: float) -> Stream | None:
        """Append one PUBLISH to the log; the stream it went to, or ``None`` if refused."""
        auth = self.auth
        assert auth is not None  # The codec yields PUBLISH only after CONNACK 0.
        qos = publish.qos
        if qos == 2:
            self._endpoint.security_event(
                self.peer_host, "protocol-refused", device_id=auth.device_id, reason="qos2"
            )
            self.close("qos2-unsupported")
            return None
        topic = publish.topic
        route = self._topic_cache.get(topic)
        if route is None:
            if topic.startswith("$iothub/"):
                # Twin and method publishes: not telemetry, never cached (the rid differs).
                self._on_control_publish(publish)
                return None
            route = self._route(topic, auth.device_id)
            if route is None:
                return None
        payload = publish.payload
        if len(payload) + len(topic) > self._config.max_message_bytes:
            self._endpoint.count_refused("too-large")
            self._endpoint.security_event(
                self.peer_host, "publish-denied", device_id=auth.device_id, reason="too-large"
            )
            self.close("message-too-large")
            return None
        stream = route.stream
        if self.quarantined and stream is not Stream.SECURITY:
            self._refuse_quarantined(publish)
            return None
        properties = route.properties
        if publish.retain:
            properties = (*properties, ("mqtt-retain", "true"))
        log = self._endpoint._services.log  # noqa: SLF001 - one package
        if qos:
            packet_id = publish.packet_id
            assert packet_id is not None
            future = log.append(
                LogEntry(
                    stream,
                    auth.device_id,
                    now,
                    payload,
                    properties,
                    packet_id,
                    _digest_with_prefix(route.digest_prefix, payload),
                ),
                dup=publish.dup,
            )
            self._acknowledge_when_done(packet_id, future)
        else:
            future = log.append(LogEntry(stream, auth.device_id, now, payload, properties))
            future.add_done_callback(_log_append_failure)
        return stream

    def _refuse_quarantined(self, publish: Publish) -> None:
        """Refuse a quarantined device's telemetry: acknowledged, not stored, recorded.

        MQTT 3.1.1 has no negative acknowledgement. Leaving the PUBLISH unacknowledged would
        make the device re-send it forever, its queue stuck in front of the security messages
        it may still send; closing would cut those too. So the hub acknowledges and drops it,
        and says so on the security stream (rate-limited per source like every event).
        """
        if publish.qos and publish.packet_id is not None:
            done: asyncio.Future[int] = self._loop.create_future()
            done.set_result(0)
            self._acknowledge_when_done(publish.packet_id, done)
        self._endpoint.count_refused("quarantined")
        self._endpoint.security_event(
            self.peer_host, "quarantine-refused", device_id=self._id(), reason="quarantined"
        )

    def _acknowledge_when_done(self, packet_id: int, future: asyncio.Future[int]) -> None:
        """PUBACK ``packet_id`` once ``future`` succeeds, after every earlier publish's PUBACK."""
        pending = self._pending
        pending.append((packet_id, future))
        if not self._armed:
            # One callback per commit batch: it fires when the oldest pending publish is
            # durable, and futures resolve in commit order (_on_committed).
            self._armed = True
            future.add_done_callback(self._on_committed)
        if len(pending) >= self._config.max_inflight_messages:
            self._pause("inflight")

    def _classify(self, topic: str, device_id: str) -> DevicePublish | None:
        """Authorise a device publish; ``None`` if refused (recorded, connection closed)."""
        try:
            return azure.classify_device_publish(
                topic, device_id=self._device_part, module_id=self._module_id
            )
        except (AuthorizationError, ValidationError) as exc:
            self._endpoint.count_refused("forbidden-topic")
            self._endpoint.security_event(
                self.peer_host,
                "publish-denied",
                device_id=device_id,
                reason=type(exc).__name__,
                topic=topic[:256],
            )
            self.close("publish-denied")
            return None

    def _route(self, topic: str, device_id: str) -> _Route | None:
        """Authorise and classify a topic not in the cache; ``None`` if refused (closed)."""
        classified = self._classify(topic, device_id)
        if classified is None:
            return None
        if classified.kind != "telemetry":  # pragma: no cover - $iothub topics go elsewhere
            self.close("publish-denied")
            return None
        properties = classified.properties
        route = _Route(
            properties=properties,
            # The retain annotation added per message never marks a security message.
            stream=Stream.SECURITY if azure.is_security_message(properties) else Stream.TELEMETRY,
            digest_prefix=topic.encode() + b"\x00",
        )
        if len(self._topic_cache) < 64:
            self._topic_cache[topic] = route
        return route

    def _take_message_token(self, now: float) -> bool:
        """Take a token from the device's bucket, or pause for the rate and return False."""
        bucket = self._bucket
        assert bucket is not None
        if bucket.updated >= now and bucket.tokens >= 1.0:
            # What try_take(now) does when the bucket was already refilled at ``now``.
            bucket.tokens -= 1.0
            return True
        wait = bucket.try_take(now)
        if not wait:
            return True
        # Over the device's rate: stop reading rather than drop (ARCHITECTURE.md).
        self._pause("rate")
        if self._rate_timer is None:
            self._rate_timer = self._loop.call_later(min(wait, 5.0), self._end_rate_pause)
        return False

    def _end_rate_pause(self) -> None:
        self._rate_timer = None
        if self._closed:
            return
        # Reading resumes asynchronously (on a later loop iteration), so the held packets are
        # processed first, in order; the first over-rate one pauses again.
        self._resume("rate")
        self._process([])

    def _on_committed(self, _future: asyncio.Future[int]) -> None:
        # Armed on the oldest pending publish only. Futures resolve in commit order, a whole
        # batch at once, so when it fires every publish of its batch is done: acknowledge every
        # finished head entry, in order [MQTT-4.6.0-2], in one write, then re-arm on the new
        # head (a later batch).
        self._armed = False
        pending = self._pending
        device_id = self._id()
        writing = self._transport is not None and not self._closed and device_id is not None
        acked: list[int] = []
        while pending:
            packet_id, future = pending[0]
            if not future.done():
                break
            pending.popleft()
            if future.cancelled() or future.exception() is not None:
                # Not durable: never acknowledge. The device will re-send after reconnect.
                # Nothing of this drain is written (as before the batching of callbacks).
                logger.error("commit failed; closing without PUBACK device_id=%s", device_id)
                self.close("storage-failure")
                return
            if writing:
                acked.append(packet_id)
        self._write_pubacks(device_id, acked)
        if pending:
            self._armed = True
            pending[0][1].add_done_callback(self._on_committed)
        if "inflight" in self._paused and len(pending) < self._config.max_inflight_messages // 2:
            self._resume("inflight")

    def _write_pubacks(self, device_id: str | None, packet_ids: list[int]) -> None:
        if packet_ids and device_id is not None:
            self._write(_pubacks(packet_ids))
            # A written PUBACK makes a later DUP with this id ambiguous (streams/log.py).
            self._endpoint.acknowledged(device_id, packet_ids)

    # --- subscriptions and the persistent session -------------------------------------------
    def _on_subscribe(self, subscribe: Subscribe) -> None:
        auth = self.auth
        assert auth is not None
        subs = dict(self._subs)
        added: list[SubscriptionKind] = []
        codes: list[int] = []
        for topic_filter, qos in subscribe.requests:
            try:
                kind = azure.check_device_subscribe(
                    topic_filter, device_id=self._device_part, module_id=self._module_id
                )
            except (AuthorizationError, ValidationError):
                self._endpoint.security_event(
                    self.peer_host,
                    "subscribe-denied",
                    device_id=auth.device_id,
                    topic_filter=topic_filter[:256],
                )
                # The Azure SDK ignores SUBACK failures, so a refusal alone would go
                # unnoticed; closing makes the violation visible (issue 2).
                self.close("subscribe-denied")
                return
            granted = min(qos, 1)
            if kind not in subs:
                added.append(kind)
            subs[kind] = (topic_filter, granted)
            codes.append(granted)
        if len(subs) > self._config.max_subscriptions:
            self._endpoint.security_event(
                self.peer_host,
                "subscribe-denied",
                device_id=auth.device_id,
                reason="too-many-subscriptions",
            )
            self.close("too-many-subscriptions")
            return
        self._subs = subs
        ack = SubAck(subscribe.packet_id, tuple(codes))
        if self._clean and SubscriptionKind.DESIRED not in added:
            self._reply(ack)
            self._after_subscribe(added)
            return
        # The SUBACK waits until the subscription is stored: the SDK never subscribes again,
        # so a subscription it was told about must survive a hub restart (issue 3).
        self._pause("session")
        self._spawn(self._store_subscriptions(ack, added))

    async def _store_subscriptions(
        self, ack: SubAck | UnsubAck, added: list[SubscriptionKind]
    ) -> None:
        """Store the session (reading stopped meanwhile), then answer SUBSCRIBE/UNSUBSCRIBE."""
        twins = self._endpoint.services.twins
        try:
            if SubscriptionKind.DESIRED in added and twins is not None:
                # A new desired subscription starts at the current version: the device reads
                # the twin itself (the SDK's GET after subscribing); later patches are sent.
                twin = await twins.device_get(self._identity, rate_limited=False)
                self._desired_sent = max(self._desired_sent, twin.desired_version)
                self._desired_queued = max(self._desired_queued, twin.desired_version)
            if not self._clean:
                await self._save_session()
        except StorageError:
            logger.exception("cannot store subscriptions client_id=%s", self._identity)
            self.close("storage-failure")
            return
        if self._closed:
            return
        self._reply(ack)
        self._resume("session")
        self._process([])
        self._after_subscribe(added)

    def _after_subscribe(self, added: list[SubscriptionKind]) -> None:
        if SubscriptionKind.C2D in added or SubscriptionKind.MODULE_INPUTS in added:
            self.pull_cloud_messages()

    def _on_unsubscribe(self, unsubscribe: Unsubscribe) -> None:
        removed = {
            kind
            for kind, (topic_filter, _) in self._subs.items()
            if topic_filter in unsubscribe.topic_filters
        }
        for kind in removed:
            del self._subs[kind]
        ack = UnsubAck(unsubscribe.packet_id)
        if self._clean or not removed:
            self._reply(ack)
            return
        self._pause("session")
        self._spawn(self._store_subscriptions(ack, []))

    @property
    def _identity(self) -> str:
        auth = self.auth
        assert auth is not None
        return auth.device_id

    async def _open_session(self) -> bool:
        """Load or discard the stored session at CONNECT; whether one was present.

        Raises:
            StorageError: the session store failed (the CONNECT is refused with CONNACK 3).
        """
        storage = self._endpoint.services.storage
        identity = self._identity
        await self._endpoint.wait_session_settled(identity)
        record = await storage.get_session(identity)
        if self._clean:
            # [MQTT-3.1.2-6]: a clean session discards any previous one.
            if record is not None:
                await storage.delete_session(identity)
            return False
        if record is None:
            # Stored from its first subscription on: an empty session carries nothing, and
            # a CONNECT then costs no write (the SDK always connects with clean session 0).
            return False
        for topic_filter, qos in record.subscriptions:
            try:
                # Re-authorised, not trusted: the rules may have changed since it was stored.
                kind = azure.check_device_subscribe(
                    topic_filter, device_id=self._device_part, module_id=self._module_id
                )
            except (AuthorizationError, ValidationError):
                logger.warning("stored subscription no longer allowed client_id=%s", identity)
                continue
            self._subs[kind] = (topic_filter, min(qos, 1))
        self._desired_sent = self._desired_queued = record.desired_version_sent
        return True

    async def _save_session(self) -> None:
        await self._endpoint.save_session(
            SessionRecord(
                client_id=self._identity,
                subscriptions=tuple(self._subs.values()),
                desired_version_sent=self._desired_sent,
                updated_at=self._endpoint._clock.time(),  # noqa: SLF001 - one package
            )
        )

    async def _resume_session(self) -> None:
        """After CONNACK of a restored session: deliver what waited while it was away."""
        if SubscriptionKind.DESIRED in self._subs:
            twins = self._endpoint.services.twins
            if twins is not None:
                try:
                    twin = await twins.device_get(self._identity, rate_limited=False)
                except StorageError:
                    logger.exception("cannot read twin client_id=%s", self._identity)
                else:
                    if twin.desired_version > self._desired_queued and not self._closed:
                        # The patches missed while away, as one notification carrying the
                        # whole desired section (docs/adr/0009).
                        self.deliver_desired(
                            twin.desired_version,
                            desired_notification(twin.desired, twin.desired_version),
                        )
        self.pull_cloud_messages()

    # --- hub to device ----------------------------------------------------------------------
    def _send_out(
        self,
        kind: SubscriptionKind,
        topic: str,
        payload: bytes,
        *,
        dup: bool = False,
        on_ack: Callable[[], None] | None = None,
        on_drop: Callable[[], None] | None = None,
        implicit: bool = False,
    ) -> bool:
        """Publish to the device if it subscribed to ``kind``; whether it was sent or queued.

        QoS 1 unless the subscription was granted QoS 0 (then ``on_ack`` runs at once: with
        QoS 0, sending is all the delivery there is). ``implicit`` sends at QoS 1 even without
        the subscription (answers to the device's own requests, see ``_twin_respond``).
        """
        sub = self._subs.get(kind)
        if sub is None and implicit:
            sub = ("", 1)
        if sub is None or self._closed:
            return False
        if sub[1] == 0:
            self._write(encode_packet(Publish(topic, payload)))
            if on_ack is not None:
                on_ack()
            return True
        publish = OutboundPublish(topic, payload, dup, on_ack, on_drop)
        try:
            packet_id = self._window.offer(publish)
        except ThrottledError:
            self._endpoint.security_event(
                self.peer_host, "slow-consumer", device_id=self._id(), reason="outbound-queue"
            )
            self.close("slow-consumer")
            return False
        if packet_id is not None:
            self._write_publish(packet_id, publish)
        return True

    def _write_publish(self, packet_id: int, publish: OutboundPublish) -> None:
        self._write(
            encode_packet(
                Publish(publish.topic, publish.payload, qos=1, dup=publish.dup, packet_id=packet_id)
            )
        )

    def _on_puback(self, packet_id: int) -> None:
        publish = self._window.acknowledge(packet_id)
        if publish is None:
            # Not ours in flight: a confused or probing client. Nothing to complete.
            logger.debug("PUBACK for an unknown packet id client_id=%s", self._id())
            return
        if publish.on_ack is not None:
            publish.on_ack()
        while (ready := self._window.next_ready()) is not None:
            self._write_publish(*ready)

    def deliver_method_request(self, request: MethodRequest) -> bool:
        """Send a direct-method request; ``False`` if the device does not listen for methods."""
        topic = azure.method_request_topic(request.method_name, request.request_id)
        methods = self._endpoint.services.methods
        on_drop = None
        if methods is not None:
            # Never sent (the connection ended while it waited for room): the operator learns
            # at once instead of at the timeout.
            on_drop = partial(methods.abandon, request.identity, request.request_id)
        return self._send_out(SubscriptionKind.METHODS, topic, request.payload, on_drop=on_drop)

    def deliver_desired(self, version: int, body: bytes) -> bool:
        """Send a desired-properties notification (once per version)."""
        if SubscriptionKind.DESIRED not in self._subs:
            return False
        if version <= self._desired_queued:
            return True
        self._desired_queued = version
        return self._send_out(
            SubscriptionKind.DESIRED,
            azure.desired_patch_topic(version),
            body,
            on_ack=partial(self._desired_acknowledged, version),
        )

    def _desired_acknowledged(self, version: int) -> None:
        if version > self._desired_sent:
            self._desired_sent = version
            if not self._clean:
                self._spawn(self._save_session_quietly())

    async def _save_session_quietly(self) -> None:
        try:
            await self._save_session()
        except StorageError:
            # At worst the device gets this notification again after a reconnect.
            logger.exception("cannot store the session client_id=%s", self._id())

    def pull_cloud_messages(self) -> bool:
        """Deliver queued cloud-to-device (or module input) messages if the device listens."""
        kind = SubscriptionKind.C2D if self._module_id is None else SubscriptionKind.MODULE_INPUTS
        if kind not in self._subs or self._closed:
            return False
        if self._c2d_pulling:
            self._c2d_again = True
        else:
            self._c2d_pulling = True
            self._spawn(self._pull_cloud_messages(kind))
        return True

    async def _pull_cloud_messages(self, kind: SubscriptionKind) -> None:
        c2d = self._endpoint.services.c2d
        identity = self._identity
        window = self._config.max_outbound_inflight
        try:
            while c2d is not None and not self._closed:
                self._c2d_again = False
                room = window - len(self._c2d_inflight)
                if room <= 0:
                    return  # A PUBACK pulls again.
                messages = await c2d.pending(identity, limit=window + len(self._c2d_inflight))
                for message in messages:
                    if room <= 0 or self._closed:
                        break
                    if message.seq in self._c2d_inflight:
                        continue
                    # Counted before sending: after a crash the next delivery is a DUP. The
                    # list came from a read that may predate a completion that just finished
                    # (completion deletes the row, then leaves _c2d_inflight): a message gone
                    # from storage is never sent again (tests/fault/test_cloud_sigkill.py).
                    if not await c2d.mark_delivered(identity, message.seq):
                        continue
                    if self._closed or kind not in self._subs:
                        return
                    self._c2d_inflight.add(message.seq)
                    self._send_out(
                        kind,
                        self._cloud_topic(message),
                        message.payload,
                        dup=message.delivery_count > 0,
                        on_ack=partial(self._cloud_message_acknowledged, message.seq),
                    )
                    room -= 1
                if not self._c2d_again:
                    return
        except StorageError:
            logger.exception("cannot read the cloud-to-device queue client_id=%s", identity)
        finally:
            self._c2d_pulling = False

    def _cloud_topic(self, message: CloudMessage) -> str:
        if self._module_id is None:
            return azure.c2d_topic(self._device_part, message.properties)
        return azure.module_input_topic(
            self._device_part, self._module_id, message.input_name or "", message.properties
        )

    def _cloud_message_acknowledged(self, seq: int) -> None:
        self._spawn(self._complete_cloud_message(seq))

    async def _complete_cloud_message(self, seq: int) -> None:
        c2d = self._endpoint.services.c2d
        assert c2d is not None
        try:
            await c2d.complete(self._identity, seq)
        except StorageError:
            # Not removed: it is delivered again (DUP) with the next session.
            logger.exception("cannot complete a cloud message client_id=%s", self._id())
            return
        finally:
            self._c2d_inflight.discard(seq)
        self.pull_cloud_messages()

    # --- device to hub: twins and method answers --------------------------------------------
    def _on_control_publish(self, publish: Publish) -> None:
        """A ``$iothub/...`` publish: a twin request or a method answer."""
        auth = self.auth
        assert auth is not None
        classified = self._classify(publish.topic, auth.device_id)
        if classified is None:
            return
        if len(publish.payload) > self._config.max_message_bytes:
            self._endpoint.count_refused("too-large")
            self._endpoint.security_event(
                self.peer_host, "publish-denied", device_id=auth.device_id, reason="too-large"
            )
            self.close("message-too-large")
            return
        done: asyncio.Future[int] = self._loop.create_future()
        if publish.qos and publish.packet_id is not None:
            # Acknowledged in order with the telemetry around it, once handled [MQTT-4.6.0-2].
            self._acknowledge_when_done(publish.packet_id, done)
        request_id = classified.request_id or ""
        if classified.kind == "twin-get":
            self._spawn(self._twin_request(request_id, None, done))
        elif classified.kind == "twin-patch-reported":
            self._spawn(self._twin_request(request_id, publish.payload, done))
        else:
            self._method_answer(request_id, classified.status or 0, publish.payload)
            done.set_result(0)

    def _twin_respond(
        self, status: int, request_id: str, body: bytes = b"", version: int | None = None
    ) -> None:
        # Answered even without a subscription to $iothub/twin/res/#: the SDK's own twin GET
        # after each reconnect (desired handler set, get_twin() never called) is sent without
        # it, and the SDK waits for that answer forever (docs/adr/0009).
        self._send_out(
            SubscriptionKind.TWIN_RESPONSES,
            azure.twin_response_topic(status, request_id, version),
            body,
            implicit=True,
        )

    async def _twin_request(
        self, request_id: str, body: bytes | None, done: asyncio.Future[int]
    ) -> None:
        """Answer a twin GET (``body`` None) or a reported PATCH on ``$iothub/twin/res``."""
        twins = self._endpoint.services.twins
        try:
            if twins is None:
                self._twin_respond(503, request_id, _error_body("twins are not available"))
            elif body is None:
                twin = await twins.device_get(self._identity)
                self._twin_respond(200, request_id, twin.device_document())
            else:
                twin = await twins.device_patch_reported(self._identity, body)
                self._twin_respond(204, request_id, version=twin.reported_version)
        except ValidationError as exc:
            self._endpoint.security_event(
                self.peer_host,
                "twin-patch-refused",
                device_id=self._id(),
                reason=str(exc)[:200],
            )
            self._twin_respond(400, request_id, _error_body(str(exc)))
        except ThrottledError as exc:
            self._twin_respond(429, request_id, _error_body(str(exc)))
        except StorageError:
            logger.exception("twin store failed client_id=%s", self._id())
            self._twin_respond(503, request_id, _error_body("the twin store is unavailable"))
        finally:
            if not done.done():
                done.set_result(0)

    def _method_answer(self, request_id: str, status: int, body: bytes) -> None:
        methods = self._endpoint.services.methods
        try:
            if methods is None:
                raise AuthorizationError("direct methods are not available")
            methods.complete(self._identity, request_id, status, body)
        except AuthorizationError:
            # Another identity's request id, a late answer after the timeout, or a guess:
            # acknowledged (a valid publish) but dropped, and recorded (issue 3).
            self._endpoint.count_refused("method-response-unmatched")
            self._endpoint.security_event(
                self.peer_host,
                "method-response-refused",
                device_id=self._id(),
                request_id=request_id[:128],
            )

    # --- timers ---------------------------------------------------------------------------
    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._timers.append(self._loop.call_later(delay, callback))

    def _arm_keep_alive(self, requested: int) -> None:
        maximum = self._config.max_keepalive_seconds
        # Keep-alive 0 would mean "never idle"; with a maximum configured it is clamped to the
        # maximum instead (SlowITe, CVE-2020-13849).
        self._keep_alive = float(min(requested, maximum) if requested > 0 else maximum)
        self._idle_timer = self._loop.call_later(self._keep_alive * 1.5, self._check_idle)

    def _check_idle(self) -> None:
        # Rescheduled lazily instead of on every packet: the hot path only stores a time.
        limit = self._keep_alive * 1.5
        if self._paused:
            # The hub itself is not reading (device rate, commits in flight): the device's
            # silence is ours, not idleness [MQTT-3.1.2-24]. It counts as active until we read
            # again; a rate pause longer than 1.5x keep-alive used to disconnect it.
            self._last_rx = self._loop.time()
        idle = self._loop.time() - self._last_rx
        if idle >= limit:
            self.close("keep-alive-timeout")
            return
        self._idle_timer = self._loop.call_later(limit - idle, self._check_idle)

    def _connect_deadline(self) -> None:
        if self.auth is None and self._dps is None and not self._closed:
            self._endpoint.security_event(self.peer_host, "connect-timeout")
            self.close("connect-timeout", abort=True)

    def _credential_expired(self) -> None:
        self.close("credential-expired")

    # --- helpers --------------------------------------------------------------------------
    def _id(self) -> str | None:
        return self.auth.device_id if self.auth is not None else None

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = self._loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # Supervision: a task's failure is never silent and closes its connection only.
        self._tasks.discard(task)
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            logger.error("connection task failed peer=%s", self.peer, exc_info=exc)
            self._endpoint.security_event(self.peer_host, "internal-error", device_id=self._id())
            self.close("internal-error")

    def _pause(self, reason: str) -> None:
        if not self._paused and self._transport is not None:
            self._transport.pause_reading()
        self._paused.add(reason)

    def _resume(self, reason: str) -> None:
        if reason not in self._paused:
            return
        self._paused.discard(reason)
        if not self._paused and self._transport is not None and not self._closed:
            self._transport.resume_reading()

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._closed:
            self._transport.write(data)
            if self._writing_paused:
                self._check_outbound()

    def _reply(self, packet: Packet) -> None:
        # The codec is CLOSED as soon as it has decoded the client's DISCONNECT
        # [MQTT-3.14.4-1], yet the packets decoded before it in the same read (PINGREQ,
        # SUBSCRIBE, ... then DISCONNECT in one segment) are still processed. Their answers
        # are encoded without the codec then: asking the closed codec raised
        # LocalProtocolError, an "internal error" for a well-behaved client (tests/hostile).
        if self._codec.state is ConnectionState.CLOSED:
            self._replies += encode_packet(packet)
        else:
            self._replies += self._codec.send(packet)

    def _flush_replies(self) -> None:
        # The answers to one read go out in one write, as the PUBACKs of one commit do: one
        # TLS record per PINGRESP made a PINGREQ flood cost ~1 s of event loop per 256 KiB read,
        # stalling every other device (tests/hostile, §3.5 item 27). Answers are never larger
        # than the packets they answer, so this stays bounded by one read.
        if self._replies:
            data = bytes(self._replies)
            self._replies.clear()
            self._write(data)

    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        self._endpoint.count_protocol_error()
        self._endpoint.security_event(
            self.peer_host, "protocol-error", device_id=self._id(), reason=str(exc)[:200]
        )
        if exc.connack_code is not None and self.auth is None and self._transport is not None:
            self._transport.write(self._codec_connack(exc.connack_code))
        self.close("protocol-error")

    @staticmethod
    def _codec_connack(code: int) -> bytes:
        # The codec is closed after a RemoteProtocolError, so encode the refusal statelessly.
        return encode_packet(ConnAck(ConnectReturnCode(code)))

    def _leave_preauth(self) -> None:
        if self._preauth:
            self._preauth = False
            self._endpoint.leave_preauth(self)

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (or closing)."""
        return self._closed

    def close(self, reason: str, *, abort: bool = False) -> None:
        """Close the connection (idempotent); pending unacknowledged publishes stay unacked."""
        if self._closed:
            return
        if not abort and self._replies and self._transport is not None:
            # Answers to what came before the reason to close (close() still sends them).
            self._transport.write(bytes(self._replies))
        self._replies.clear()
        self._closed = True
        transport = self._transport or self._tcp
        if transport is not None:
            if abort:
                transport.abort()
            else:
                transport.close()
        self._teardown(reason)

    def _teardown(self, reason: str) -> None:
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._rate_timer is not None:
            self._rate_timer.cancel()
            self._rate_timer = None
        self._held.clear()
        for publish in self._window.take_waiting():
            if publish.on_drop is not None:
                publish.on_drop()
        self._leave_preauth()
        if self.auth is not None and self._endpoint._live.get(self.auth.device_id) is self:  # noqa: SLF001
            self._endpoint.lifecycle_event(
                self.auth.device_id, "disconnected", peer=self.peer, reason=reason
            )
        self._endpoint.forget(self)

    def info(self) -> ConnectionInfo:
        """A description of this connection for the API."""
        assert self.auth is not None
        return ConnectionInfo(
            device_id=self.auth.device_id,
            peer=self.peer,
            auth_kind=self.auth.auth_kind.value,
            connected_at=self._connected_at,
            keep_alive_seconds=int(self._keep_alive),
        )
