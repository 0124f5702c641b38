"""The hostile MQTT vectors of tests/vectors/, played over real TLS connections to a live hub.

These are the very vectors the codec unit tests run (SECURITY-TESTS.md §3: one set of cases fed
to the codec, the live endpoint and the fuzz seeds), items 5-11 and 14 of §3.2-3.3. The live
runner follows tests/vectors/README.md:

- the bytes go after the TLS handshake, in one write;
- ``accept_connect`` vectors start with an unauthenticated CONNECT; the runner connects a real
  SAS device instead (CONNACK 0) and then sends the rest of the vector;
- ``close``: the hub closes without sending anything more; ``connack:N``: it sends CONNACK N,
  then closes. Either way promptly (never "waiting for more": well inside the 10 s CONNECT
  deadline and the 60 s keep-alive) and with a ``protocol-error`` security event;
- ``packets``: the codec accepts these bytes, so the hub must not report a protocol error
  (whatever the authorisation layer then decides about the packets' topics).

Each vector connects from its own loopback address, so the per-source event limit never hides
its security event and the event can be matched to the vector by its ``peer``.
"""

from __future__ import annotations

import pytest
from tests.support.hostile import (
    HostileGuard,
    play_vector,
    security_events,
    wait_for_events,
    wait_until,
)
from tests.support.hubkit import HubFactory
from tests.vectors.load import load_vectors

pytestmark = pytest.mark.asyncio

VECTORS = load_vectors("mqtt_server_malformed")
#: ``packets`` vectors first: their check is an absence, which is only conclusive once events
#: recorded after them (by the failing vectors) are visible.
ORDERED = sorted(VECTORS, key=lambda v: v["expect"] != "packets")
SHARDS = 4


def _source(shard: int, index: int) -> str:
    return f"127.0.{10 + shard}.{index + 1}"


@pytest.mark.parametrize("shard", range(SHARDS))
async def test_server_vectors_over_tls(
    hub_factory: HubFactory, guard: HostileGuard, shard: int
) -> None:
    hub = await hub_factory()
    kit = await guard.watch(hub)
    vectors = ORDERED[shard::SHARDS]
    assert len(vectors) < 255
    failures: dict[str, str] = {}
    for index, vector in enumerate(vectors):
        failure = await play_vector(kit, vector, _source(shard, index))
        if failure is not None:
            failures[vector["name"]] = failure
        # One vector at a time: its connection is fully gone before the next one starts.
        assert await wait_until(
            lambda: (
                hub.endpoint.statistics().preauth_connections == 0
                and hub.endpoint.statistics().connections == 0
            )
        ), vector["name"]

    refused = [(i, v) for i, v in enumerate(vectors) if v["expect"] != "packets"]
    # Events commit in groups, in order: wait for the last one, then look at all of them.
    last_index, _ = refused[-1]
    await wait_for_events(hub, event="protocol-error", peer=_source(shard, last_index))
    errors = {e["peer"] for e in await security_events(hub, event="protocol-error")}
    for index, vector in enumerate(vectors):
        recorded = _source(shard, index) in errors
        if vector["expect"] == "packets" and recorded:
            failures[vector["name"]] = "protocol-error recorded for bytes the codec accepts"
        elif vector["expect"] != "packets" and not recorded:
            failures.setdefault(vector["name"], "no protocol-error security event")
    assert failures == {}

    await guard.check(hub)
