"""A TLS handshake that stalls is closed at the handshake deadline (SECURITY-TESTS.md §3.1 item 3).

Renegotiation is disabled in the server context (``OP_NO_RENEGOTIATION``) and TLS 1.3 early
data is never enabled by Python's ``ssl``; neither can be driven from the standard library
client, so only the stall is tested here.
"""

from __future__ import annotations

import ssl
import time

import pytest
from tests.support.hostile import (
    HostileGuard,
    close_writer,
    open_raw,
    read_until_closed,
    wait_for_events,
)
from tests.support.hubkit import HubFactory

pytestmark = pytest.mark.asyncio

HANDSHAKE_TIMEOUT = 0.5


def _client_hello() -> bytes:
    """The first flight of a real TLS client (a ClientHello record)."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 0x16  # handshake record
    return hello


@pytest.mark.parametrize("sent", ["nothing", "half-client-hello", "client-hello"])
async def test_stalled_handshake_closed_at_deadline(
    hub_factory: HubFactory, guard: HostileGuard, sent: str
) -> None:
    # The CONNECT deadline stays long, so only the handshake deadline can explain the close.
    hub = await hub_factory(
        mqtt_tls_handshake_timeout_seconds=str(HANDSHAKE_TIMEOUT),
        mqtt_connect_timeout_seconds="30",
    )
    await guard.watch(hub)
    hello = _client_hello()
    data = {"nothing": b"", "half-client-hello": hello[: len(hello) // 2], "client-hello": hello}

    reader, writer = await open_raw(*hub.endpoint.address)
    try:
        started = time.monotonic()
        writer.write(data[sent])
        await writer.drain()
        # A full ClientHello gets the server's first flight; then the client stalls.
        _, closed = await read_until_closed(reader, timeout=5)
        elapsed = time.monotonic() - started
    finally:
        await close_writer(writer)

    assert closed
    assert HANDSHAKE_TIMEOUT * 0.8 <= elapsed < HANDSHAKE_TIMEOUT + 3.0, elapsed
    events = await wait_for_events(hub, event="tls-handshake-failed")
    assert len(events) == 1, events

    await guard.check(hub)
