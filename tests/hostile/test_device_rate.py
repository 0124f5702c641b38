"""The per-device message rate is enforced by backpressure, never by loss (ARCHITECTURE.md).

- 200 pipelined QoS 1 publishes at 50 messages/s with a burst of 10: every one is acknowledged
  and stored once, and the last acknowledgement comes no sooner than the rate allows
  ((200 - 10) / 50 = 3.8 s; checked with a generous margin). Packets that arrive in the same read
  as the one that empties the bucket wait too: the limit holds for a pipelining device.
- The connection's timers stay bounded however long the device stays over its rate.
- While the hub holds a device back, it does not count the device as idle: a pause longer than
  1.5x the keep-alive must not end in a keep-alive disconnect [MQTT-3.1.2-24].
"""

from __future__ import annotations

import time

import pytest
from tests.support.hostile import TELEMETRY, HostileGuard
from tests.support.hubkit import HubFactory

from ironhub.storage.interfaces import Stream

pytestmark = pytest.mark.asyncio


@pytest.mark.slow
async def test_pipelined_publishes_over_the_device_rate_are_delayed_not_dropped(
    hub_factory: HubFactory, guard: HostileGuard
) -> None:
    count, rate, burst = 200, 50, 10
    hub = await hub_factory(
        limits_device_messages_per_second=str(rate), limits_device_message_burst=str(burst)
    )
    kit = await guard.watch(hub)
    device = await kit.connect(await kit.create_sas("eager"))
    payloads = [f"r{i:03d}".encode() for i in range(count)]
    started = time.monotonic()
    acked = await device.publish_pipelined(TELEMETRY.format("eager"), payloads)
    elapsed = time.monotonic() - started
    assert acked == list(range(1, count + 1))
    stored = await hub.services.log.query(device_id="eager", stream=Stream.TELEMETRY, limit=500)
    assert [m.payload for m in stored] == payloads
    assert elapsed >= 0.8 * (count - burst) / rate, elapsed
    # Being held back for seconds leaves no pile of timers behind (private, but the only place
    # a per-message timer leak would show).
    conn = hub.endpoint._live["eager"]
    assert len(conn._timers) <= 4, len(conn._timers)
    await device.ping()
    await device.close()

    await guard.check(hub)


async def test_rate_pause_longer_than_keep_alive_is_not_idleness(
    hub_factory: HubFactory, guard: HostileGuard
) -> None:
    # One message every 2 s, keep-alive 1 s (idle limit 1.5 s): the second publish is held
    # back for longer than the idle limit, by the hub.
    hub = await hub_factory(
        limits_device_messages_per_second="0.5",
        limits_device_message_burst="1",
        mqtt_max_keepalive_seconds="1",
    )
    kit = await guard.watch(hub)
    device = await kit.connect(await kit.create_sas("patient"), keep_alive=1)
    topic = TELEMETRY.format("patient")
    started = time.monotonic()
    acked = await device.publish_pipelined(topic, [b"first", b"second"])
    elapsed = time.monotonic() - started
    assert acked == [1, 2]
    assert elapsed >= 1.5, elapsed
    await device.ping()  # Still connected.
    await device.close()
    stored = await hub.services.log.query(device_id="patient", stream=Stream.TELEMETRY)
    assert [m.payload for m in stored] == [b"first", b"second"]

    await guard.check(hub)
