"""Helpers for the live-socket hostile tests (tests/hostile, SECURITY-TESTS.md §3).

Every hostile test ends with the three checks §3 asks of all of them, gathered in
:class:`HostileGuard`:

- (a) the hub is alive: a canary SAS device connects and gets a QoS 1 publish acknowledged;
- (b) no unhandled task exception and no ERROR record was logged (a loop exception handler
  records what asyncio would report, e.g. "Task exception was never retrieved");
- (c) resources return to baseline within a bounded time once the attacker has gone: no
  pre-auth connection, only the canary's connection while it is up, and the process's open file
  descriptors and asyncio tasks back to their count before the attack.

The other helpers open raw (non-MQTT) connections from a chosen loopback source address, read
until the hub closes, and query the security events the hub recorded.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ironhub.codec.mqtt import Disconnect, Role
from ironhub.storage.interfaces import Stream
from tests.support.hubkit import DeviceKit
from tests.support.mqtt_client import SasCredentials, TestDevice
from tests.vectors.load import expected_connack_code, vector_bytes
from tests.vectors.mqtt_runner import run_vector

if TYPE_CHECKING:
    import pytest

    from ironhub.server import RunningHub

#: Where the canary connects from. Attackers use 127.0.0.1 (the OS default) or other loopback
#: addresses, so per-source caps and per-source event limits never count the canary.
CANARY_SOURCE = "127.0.0.2"
#: Open descriptors may differ by this much from the baseline (lazily opened files such as the
#: SQLite journal, a resolver socket); a leak of one descriptor per attacker connection is far
#: larger in every test.
FD_TOLERANCE = 4
#: asyncio tasks may differ by this much (a trust-store rebuild finishing late).
TASK_TOLERANCE = 2
TELEMETRY = "devices/{}/messages/events/"


def fd_count() -> int:
    """Open file descriptors of this process."""
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def rss_kib() -> int:
    """Resident set size of this process, in KiB (``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


async def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 5.0, interval: float = 0.01
) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return predicate()
        await asyncio.sleep(interval)
    return True


async def security_events(hub: RunningHub, **where: str) -> list[dict[str, str]]:
    """Every committed security event (as a property dict) whose properties match ``where``."""
    found: list[dict[str, str]] = []
    after = 0
    while True:
        page = await hub.services.log.query(stream=Stream.SECURITY, after_seq=after, limit=1000)
        if not page:
            return found
        after = page[-1].seq
        for message in page:
            props = dict(message.properties)
            if all(props.get(k) == v for k, v in where.items()):
                found.append(props)


async def wait_for_events(
    hub: RunningHub, *, count: int = 1, timeout: float = 5.0, **where: str
) -> list[dict[str, str]]:
    """Poll until at least ``count`` security events match ``where`` (events commit in groups)."""
    deadline = time.monotonic() + timeout
    while True:
        found = await security_events(hub, **where)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.02)


async def lifecycle_events(hub: RunningHub, device_id: str) -> list[str]:
    """The lifecycle event names recorded for ``device_id``, in order."""
    found = await hub.services.log.query(device_id=device_id, stream=Stream.LIFECYCLE, limit=1000)
    return [dict(m.properties)["event"] for m in found]


async def wait_for_lifecycle(
    hub: RunningHub, device_id: str, expected: list[str], *, timeout: float = 5.0
) -> list[str]:
    """Poll until the lifecycle events of ``device_id`` are ``expected``; return the last seen."""
    deadline = time.monotonic() + timeout
    while True:
        found = await lifecycle_events(hub, device_id)
        if found == expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.02)


async def open_raw(
    host: str,
    port: int,
    *,
    local_addr: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    rcvbuf: int | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP (or TLS) connection from ``local_addr``, optionally with a tiny receive buffer.

    ``rcvbuf`` is set before connecting, so the advertised TCP window stays small: that is what
    a peer that never reads looks like, and it keeps the kernel from absorbing megabytes.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((local_addr or "127.0.0.1", 0))
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), 5)
        return await asyncio.wait_for(
            asyncio.open_connection(
                sock=sock,
                ssl=ssl_context,
                server_hostname="localhost" if ssl_context else None,
            ),
            10,
        )
    except BaseException:
        sock.close()
        raise


async def read_until_closed(reader: asyncio.StreamReader, *, timeout: float) -> tuple[bytes, bool]:
    """Read until the peer closes; return the bytes received and whether it closed in time."""
    received = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return bytes(received), False
            data = await asyncio.wait_for(reader.read(65536), remaining)
            if not data:
                return bytes(received), True
            received += data
    except TimeoutError:
        return bytes(received), False
    except (ConnectionError, ssl.SSLError):
        return bytes(received), True


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a client connection, ignoring whatever state the hub left it in."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 2)
    except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
        pass


@dataclass
class _Baseline:
    fds: int
    tasks: int


@dataclass
class HostileGuard:
    """The (a)(b)(c) checks of SECURITY-TESTS.md §3, shared by every hostile test.

    Use :meth:`watch` right after starting a hub (it records the baseline and creates the
    canary device), run the attack, close every attacker connection, then :meth:`check`.
    """

    caplog: pytest.LogCaptureFixture
    loop_errors: list[dict[str, Any]] = field(default_factory=list)
    _baselines: dict[int, _Baseline] = field(default_factory=dict)
    #: Canary credentials per data directory (a restarted hub keeps its devices).
    _canary: dict[Path, SasCredentials] = field(default_factory=dict)
    _canary_messages: int = 0

    def record_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Loop exception handler: remember, then report as asyncio would."""
        self.loop_errors.append(context)
        loop.default_exception_handler(context)

    async def watch(self, hub: RunningHub) -> DeviceKit:
        """Record the baseline of ``hub`` before the attack; return a kit for it."""
        kit = DeviceKit(hub)
        data_dir = hub.services.config.data_dir
        if data_dir not in self._canary:
            self._canary[data_dir] = await kit.create_sas("canary")
        self._baselines[id(hub)] = _Baseline(fd_count(), len(asyncio.all_tasks()))
        return kit

    async def check(self, hub: RunningHub, *, settle_seconds: float = 5.0) -> None:
        """Assert (a), (b) and (c) for ``hub`` once the attacker has left."""
        baseline = self._baselines[id(hub)]
        endpoint = hub.endpoint

        # (c) The attacker's connections are gone: nothing pre-auth, nothing authenticated.
        assert await wait_until(
            lambda: (
                endpoint.statistics().preauth_connections == 0
                and endpoint.statistics().connections == 0
            ),
            timeout=settle_seconds,
        ), f"connections left after the attack: {endpoint.statistics()}"

        # (a) A canary connects from its own source and gets a QoS 1 publish acknowledged.
        kit = DeviceKit(hub)
        self._canary_messages += 1
        payload = f"canary-{self._canary_messages}".encode()
        creds = self._canary[hub.services.config.data_dir]
        canary = await kit.connect(creds, local_addr=(CANARY_SOURCE, 0))
        try:
            await asyncio.wait_for(canary.publish(TELEMETRY.format("canary"), payload), 5)
            stats = endpoint.statistics()
            assert stats.preauth_connections == 0, stats
            assert stats.connections == 1, stats
            assert [c.device_id for c in endpoint.connections()] == ["canary"]
        finally:
            await canary.close()
        stored = await hub.services.log.query(
            device_id="canary", stream=Stream.TELEMETRY, limit=1000
        )
        assert payload in [m.payload for m in stored]
        assert await wait_until(lambda: endpoint.statistics().connections == 0, timeout=2)

        # (c) Descriptors and tasks return to their count before the attack.
        assert await wait_until(
            lambda: fd_count() <= baseline.fds + FD_TOLERANCE, timeout=settle_seconds
        ), f"file descriptors: {fd_count()} now, {baseline.fds} before the attack"
        assert await wait_until(
            lambda: len(asyncio.all_tasks()) <= baseline.tasks + TASK_TOLERANCE,
            timeout=settle_seconds,
        ), f"tasks: {len(asyncio.all_tasks())} now, {baseline.tasks} before the attack"

        # (b) Nothing escaped: collect garbage first, so that "Task exception was never
        # retrieved" (reported when a failed task is destroyed) reaches the handler now.
        gc.collect()
        await asyncio.sleep(0)
        self.assert_no_errors()

    def assert_no_errors(self) -> None:
        """(b) No unhandled loop exception and no ERROR log record so far."""
        assert self.loop_errors == [], self.loop_errors
        errors = [
            f"{r.name}: {r.getMessage()}" for r in self.caplog.records if r.levelno >= logging.ERROR
        ]
        assert errors == [], errors


# --- the vectors of tests/vectors/, played live (their README, "How a runner behaves") -------

#: A refusal must come long before any deadline could explain the close (the CONNECT deadline
#: is 10 s and the keep-alive 60 s by default): a late close means "waiting for more".
PROMPT_SECONDS = 2.0


def _first_packet_length(data: bytes) -> int:
    """Length of the first packet (fixed header included), from its remaining-length field."""
    value, shift, index = 0, 0, 1
    while True:
        byte = data[index]
        value |= (byte & 0x7F) << shift
        index += 1
        if not byte & 0x80:
            return index + value
        shift += 7


def _ends_with_disconnect(vector: dict[str, Any]) -> bool:
    packets = run_vector(vector, Role.SERVER).packets
    return bool(packets) and isinstance(packets[-1], Disconnect)


async def play_vector(kit: DeviceKit, vector: dict[str, Any], source: str) -> str | None:
    """Play one ``mqtt_server_*`` vector from ``source``; return what went wrong, or ``None``.

    ``accept_connect`` vectors get a real SAS device's CONNECT instead of their own (a device
    named after the source is created). ``close`` and ``connack:N`` vectors must be answered
    with exactly nothing or CONNACK N, then a close within :data:`PROMPT_SECONDS`; ``packets``
    vectors get a DISCONNECT (unless they end with one) and must then be closed.
    """
    data = vector_bytes(vector)
    if vector.get("accept_connect", False):
        creds = await kit.create_sas(f"vec-{source.replace('.', '-')}")
        device = await kit.connect(creds, local_addr=(source, 0))
        reader, writer = device.reader, device.writer
        data = data[_first_packet_length(data) :]
    else:
        reader, writer = await open_raw(
            *kit.hub.endpoint.address, local_addr=source, ssl_context=kit.ctx
        )
    try:
        started = time.monotonic()
        writer.write(data)
        if vector["expect"] == "packets" and not _ends_with_disconnect(vector):
            # README step 4: a live runner ends a usable connection with DISCONNECT (in the
            # same write: many packets in one read must work too, §3.2 item 12).
            writer.write(b"\xe0\x00")
        try:
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # The hub may close before it has taken the last bytes.
        received, closed = await read_until_closed(reader, timeout=PROMPT_SECONDS + 1)
        elapsed = time.monotonic() - started
    finally:
        await close_writer(writer)
    if vector["expect"] == "packets":
        return None if closed else "not closed after DISCONNECT"
    if not closed or elapsed > PROMPT_SECONDS:
        return f"not closed promptly (closed={closed}, {elapsed:.2f} s)"
    code = expected_connack_code(vector)
    expected = b"" if code is None else bytes([0x20, 0x02, 0x00, code])
    if received != expected:
        return f"received {received.hex()!r}, expected {expected.hex()!r}"
    return None


async def ping_flood_until_closed(
    device: TestDevice, *, max_bytes: int = 16 * 1024 * 1024, chunk_bytes: int = 65_536
) -> int:
    """Write PINGREQs and never read the PINGRESPs, until the hub closes; return bytes sent.

    A peer that never reads first fills the kernel's buffers (the hub's send buffer grows to a
    few MB on loopback), then the hub's own outbound buffer up to its cap. Stops at
    ``max_bytes`` if the hub never closes.
    """
    chunk = b"\xc0\x00" * (chunk_bytes // 2)
    sent = 0
    try:
        while sent < max_bytes:
            device.writer.write(chunk)
            await device.writer.drain()
            sent += len(chunk)
            # drain() does not yield while the kernel takes everything; the attacker shares
            # the hub's event loop here, and a real one would not starve it.
            await asyncio.sleep(0)
    except (ConnectionError, OSError):
        pass
    return sent
