import time

import pytest
from tests.support.hostile import *
from tests.support.mqtt_client import TestDevice

from ironhub.codec.mqtt import ConnAck, Connect
from ironhub.hub import endpoint as ep

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("cap", ["16384", "1048576"])
async def test_dbg(hub_factory, guard, monkeypatch, cap):
    calls = {"reply": 0, "dr": [], "closed_at": None}
    orig_reply = ep._Connection._reply

    def reply(self, p):
        calls["reply"] += 1
        orig_reply(self, p)

    orig_dr = ep._Connection.data_received

    def dr(self, data):
        t = time.perf_counter()
        orig_dr(self, data)
        calls["dr"].append((len(data), round(time.perf_counter() - t, 3)))

    monkeypatch.setattr(ep._Connection, "_reply", reply)
    monkeypatch.setattr(ep._Connection, "data_received", dr)
    hub = await hub_factory(mqtt_max_outbound_buffer_bytes=cap)
    kit = await guard.watch(hub)
    creds = await kit.create_sas("sloth")
    device = TestDevice(*await open_raw(*hub.endpoint.address, ssl_context=kit.ctx, rcvbuf=4096))
    device.send(
        Connect(
            client_id="sloth",
            keep_alive_seconds=60,
            username=creds.username(),
            password=creds.password(),
        )
    )
    await device.recv(ConnAck)
    calls["dr"].clear()
    t = time.perf_counter()
    try:
        for i in range(0, 400_000, 16384):
            device.writer.write(b"\xc0\x00" * 8192)
            await device.writer.drain()
    except Exception as e:
        print("write stopped", repr(e))
    await wait_until(lambda: hub.endpoint.statistics().connections == 0)
    print(
        "elapsed",
        time.perf_counter() - t,
        "replies",
        calls["reply"],
        "reads",
        calls["dr"][:30],
        len(calls["dr"]),
    )
    await close_writer(device.writer)
