"""Connection floods against the pre-auth caps and deadlines (SECURITY-TESTS.md §3.1 item 4).

One attacker host (127.0.0.1) opens 200 TCP connections that never start TLS; a second one
(127.0.0.3) opens 50 that finish the handshake and never send CONNECT; a third (127.0.0.4) then
tries to take what is left of the global cap. With a per-source cap of 40 and a global cap of
100:

- each source holds at most 40 pre-auth connections and the total never exceeds 100; the
  connections over a cap are closed at once;
- a canary from its own address (127.0.0.2) connects and publishes during the flood;
- every held connection is closed at its deadline: the TLS handshake deadline for the first
  kind, the CONNECT deadline for the second;
- the security events of the flood are rate-limited per source: far fewer are recorded than
  connections were refused, and the suppressed ones are counted.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from tests.support.hostile import (
    CANARY_SOURCE,
    TELEMETRY,
    HostileGuard,
    close_writer,
    open_raw,
    security_events,
    wait_until,
)
from tests.support.hubkit import HubFactory

from ironhub.server import RunningHub

pytestmark = pytest.mark.asyncio

PER_SOURCE = 40
GLOBAL = 100
HANDSHAKE_DEADLINE = 3.0
CONNECT_DEADLINE = 3.5
#: How long a connection over a cap may take to be closed ("at once").
AT_ONCE = 0.5


@dataclass
class Held:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    opened: float
    closed_after: float | None = None


async def _closed_within(reader: asyncio.StreamReader, timeout: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), timeout) == b""
    except TimeoutError:
        return False
    except (ConnectionError, OSError):
        return True


async def _flood(
    hub: RunningHub, source: str, count: int, *, ctx: ssl.SSLContext | None = None
) -> tuple[list[Held], int]:
    """Open ``count`` connections from ``source``; return the ones still open and the refused."""
    host, port = hub.endpoint.address
    opened: list[Held] = []
    refused = 0
    for _ in range(count):
        try:
            reader, writer = await open_raw(host, port, local_addr=source, ssl_context=ctx)
        except (ConnectionError, OSError):
            refused += 1  # Closed during the TLS handshake: over a cap.
            continue
        opened.append(Held(reader, writer, time.monotonic()))
    # Connections over a cap are closed at once; the others stay open.
    closed = await asyncio.gather(*(_closed_within(h.reader, AT_ONCE) for h in opened))
    held = []
    for conn, was_closed in zip(opened, closed, strict=True):
        if was_closed:
            refused += 1
            await close_writer(conn.writer)
        else:
            held.append(conn)
    return held, refused


async def _wait_closed(conn: Held) -> None:
    try:
        while await asyncio.wait_for(conn.reader.read(65536), 10):
            pass
    except (ConnectionError, OSError):
        pass
    conn.closed_after = time.monotonic() - conn.opened
    await close_writer(conn.writer)


async def _poll(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@pytest.mark.slow
async def test_connection_flood_caps_deadlines_and_canary(
    hub_factory: HubFactory, guard: HostileGuard
) -> None:
    hub = await hub_factory(
        mqtt_max_preauth_connections=str(GLOBAL),
        mqtt_max_preauth_connections_per_source=str(PER_SOURCE),
        mqtt_tls_handshake_timeout_seconds=str(HANDSHAKE_DEADLINE),
        mqtt_connect_timeout_seconds=str(CONNECT_DEADLINE),
        # The per-source connection rate is another defence; off here so that the caps alone
        # decide who stays.
        limits_connections_per_source_per_second="0",
    )
    kit = await guard.watch(hub)
    stats = hub.endpoint.statistics

    # 200 TCP connections that never start TLS, from one source.
    raw, raw_refused = await _flood(hub, "127.0.0.1", 200)
    assert (len(raw), raw_refused) == (PER_SOURCE, 200 - PER_SOURCE)
    # 50 that finish the handshake and never send CONNECT, from another source.
    idle, idle_refused = await _flood(hub, "127.0.0.3", 50, ctx=kit.ctx)
    assert (len(idle), idle_refused) == (PER_SOURCE, 50 - PER_SOURCE)
    assert stats().preauth_connections == 2 * PER_SOURCE

    # Meanwhile a device from elsewhere connects and publishes.
    creds = await kit.create_sas("during")
    canary = await kit.connect(creds, local_addr=(CANARY_SOURCE, 0))
    await canary.publish(TELEMETRY.format("during"), b"during the flood")
    await canary.close()
    assert await wait_until(lambda: stats().connections == 0)

    # A third source finds only what is left of the global cap.
    more, more_refused = await _flood(hub, "127.0.0.4", PER_SOURCE)
    left = GLOBAL - 2 * PER_SOURCE
    assert (len(more), more_refused) == (left, PER_SOURCE - left)
    assert stats().preauth_connections == GLOBAL

    # Every held connection is closed at its own deadline, not before, not much after.
    await asyncio.gather(*(_wait_closed(c) for c in (*raw, *idle, *more)))
    for conn in (*raw, *more):
        assert conn.closed_after is not None
        assert HANDSHAKE_DEADLINE - AT_ONCE <= conn.closed_after <= HANDSHAKE_DEADLINE + 1.5
    for conn in idle:
        assert conn.closed_after is not None
        assert CONNECT_DEADLINE - AT_ONCE <= conn.closed_after <= CONNECT_DEADLINE + 1.5
    assert await wait_until(lambda: stats().preauth_connections == 0)

    # 290 connections were refused or timed out; the events about them are rate-limited.
    attempts = 200 + 50 + PER_SOURCE
    assert await wait_until(lambda: stats().refused_total >= attempts)
    recorded: list[dict[str, str]] = []

    async def all_committed() -> bool:
        recorded[:] = await security_events(hub)
        return len(recorded) + stats().security_events_suppressed == stats().refused_total

    assert await _poll(all_committed)
    assert {e["event"] for e in recorded} <= {
        "connection-refused",
        "tls-handshake-failed",
        "connect-timeout",
    }
    assert len(recorded) < attempts // 3, len(recorded)
    assert stats().security_events_suppressed > 0

    await guard.check(hub)
