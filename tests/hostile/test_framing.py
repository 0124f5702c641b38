"""Declared lengths that lie, over a live connection (SECURITY-TESTS.md §3.2 items 6 and 7).

- A fixed header declaring 200 MB (or anything above the cap) is refused as soon as the header
  is in, before and after CONNECT, without allocating what it declares: the process's RSS does
  not move by more than a few MB.
- A declared length larger than what is sent, then a stall: closed at the CONNECT deadline
  before CONNECT, at 1.5x the keep-alive after it [MQTT-3.1.2-24]; the buffer holds only what
  arrived.
- The same, trickled one byte at a time (slowloris): bytes that never complete a packet are not
  control packets, so they do not keep the connection alive [MQTT-3.1.2-24].
"""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.support.hostile import (
    TELEMETRY,
    HostileGuard,
    close_writer,
    open_raw,
    read_until_closed,
    rss_kib,
    wait_for_events,
)
from tests.support.hubkit import HubFactory

from ironhub.storage.interfaces import Stream

pytestmark = pytest.mark.asyncio

HUGE = 200_000_000
#: "Does not allocate what it declares": far below the 200 MB of the lie.
MAX_RSS_GROWTH_KIB = 8 * 1024


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _publish_header(remaining: int, device_id: str) -> bytes:
    """A QoS 0 PUBLISH header declaring ``remaining`` bytes, then the start of a valid topic."""
    topic = TELEMETRY.format(device_id).encode()
    return b"\x30" + _varint(remaining) + len(topic).to_bytes(2, "big") + topic


@pytest.mark.parametrize(
    ("when", "declared", "max_packet_bytes"),
    [
        ("before-connect", HUGE, None),
        ("before-connect", 4097, None),
        ("after-connect", HUGE, None),
        ("after-connect", 8193, "8192"),
    ],
    ids=[
        "before-connect-200MB",
        "before-connect-over-cap",
        "after-connect-200MB",
        "after-over-max",
    ],
)
async def test_declared_length_over_cap_is_refused_at_once(
    hub_factory: HubFactory,
    guard: HostileGuard,
    when: str,
    declared: int,
    max_packet_bytes: str | None,
) -> None:
    env = {} if max_packet_bytes is None else {"mqtt_max_packet_bytes": max_packet_bytes}
    hub = await hub_factory(**env)
    kit = await guard.watch(hub)
    if when == "before-connect":
        reader, writer = await open_raw(*hub.endpoint.address, ssl_context=kit.ctx)
        header = b"\x10" + _varint(declared)  # A CONNECT header.
    else:
        device = await kit.connect(await kit.create_sas("liar"))
        reader, writer = device.reader, device.writer
        header = _publish_header(declared, "liar")
    rss_before = rss_kib()
    try:
        started = time.monotonic()
        writer.write(header)  # ...and nothing more: the hub must not wait for the body.
        await writer.drain()
        received, closed = await read_until_closed(reader, timeout=5)
        elapsed = time.monotonic() - started
    finally:
        await close_writer(writer)
    assert closed
    assert received == b""
    assert elapsed < 3.0, elapsed
    assert rss_kib() - rss_before < MAX_RSS_GROWTH_KIB
    assert await wait_for_events(hub, event="protocol-error")
    assert await hub.services.log.query(stream=Stream.TELEMETRY) == []

    await guard.check(hub)


async def test_partial_connect_then_stall_closed_at_connect_deadline(
    hub_factory: HubFactory, guard: HostileGuard
) -> None:
    hub = await hub_factory(mqtt_connect_timeout_seconds="0.5")
    kit = await guard.watch(hub)
    reader, writer = await open_raw(*hub.endpoint.address, ssl_context=kit.ctx)
    try:
        # A CONNECT declaring 3000 bytes (under the 4 KiB pre-auth cap), 100 of them sent.
        writer.write(b"\x10" + _varint(3000) + b"\x00\x04MQTT\x04\x02\x00\x3c" + b"x" * 90)
        await writer.drain()
        started = time.monotonic()
        received, closed = await read_until_closed(reader, timeout=5)
        elapsed = time.monotonic() - started
    finally:
        await close_writer(writer)
    assert closed
    assert received == b""
    assert 0.3 <= elapsed < 4.0, elapsed
    assert await wait_for_events(hub, event="connect-timeout")

    await guard.check(hub)


@pytest.mark.parametrize("trickle", [False, True], ids=["stall", "trickle"])
async def test_partial_packet_closed_at_keep_alive_deadline(
    hub_factory: HubFactory, guard: HostileGuard, trickle: bool
) -> None:
    keep_alive = 1.0
    hub = await hub_factory(mqtt_max_keepalive_seconds="1")
    kit = await guard.watch(hub)
    device = await kit.connect(await kit.create_sas("slowloris"), keep_alive=1)
    connected = time.monotonic()
    rss_before = rss_kib()

    async def trickle_forever() -> None:
        # One byte of the body every quarter second: bytes, never a complete packet.
        while True:
            await asyncio.sleep(0.25)
            device.writer.write(b"x")
            await device.writer.drain()

    trickler = None
    try:
        # A PUBLISH declaring 100 kB, of which about 1 kB is sent.
        device.writer.write(_publish_header(100_000, "slowloris") + b"x" * 1000)
        await device.writer.drain()
        if trickle:
            trickler = asyncio.get_running_loop().create_task(trickle_forever())
        received, closed = await read_until_closed(device.reader, timeout=5)
        elapsed = time.monotonic() - connected
    finally:
        if trickler is not None:
            trickler.cancel()
            await asyncio.gather(trickler, return_exceptions=True)
        await close_writer(device.writer)
    assert closed, "a partial packet kept the connection alive past 1.5x keep-alive"
    assert received == b""
    assert 1.5 * keep_alive - 0.2 <= elapsed < 1.5 * keep_alive + 3.0, elapsed
    assert rss_kib() - rss_before < MAX_RSS_GROWTH_KIB
    assert await hub.services.log.query(stream=Stream.TELEMETRY) == []

    await guard.check(hub)
