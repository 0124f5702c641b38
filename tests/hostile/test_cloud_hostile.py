"""Hostile devices against twins, direct methods, cloud-to-device queues and module identities.

Live TLS connections to a real hub (SECURITY-TESTS.md §3.4 items 20-21, §3.5 items 24-27), each
test ending with the (a)(b)(c) checks of tests/support/hostile.py.

The vectors of tests/vectors/azure_cloud.json (the same ones the unit tests give the pure rules
and the fuzz harness mutates), each from its own loopback source so that its security event can
be told apart (and is never rate-limited away), played as the vector README says:

- publish ``close``: the hub closes without sending anything (no PUBACK), promptly, and records
  ``publish-denied`` (reason: the rule's exception class; the topic) or, when the MQTT codec
  refuses the packet first, ``protocol-error``;
- ``twin-400``: PUBACK and ``$iothub/twin/res/400/?$rid=<rid>`` with a JSON message, a
  ``twin-patch-refused`` event, the twin unchanged, the connection still usable;
- ``method-refused``: PUBACK and nothing else, a ``method-response-refused`` event naming the
  rid, the connection still usable;
- ``ok-200`` / ``ok-204``: the twin answer (204 with the new reported ``$version``), no event;
- subscriptions: SUBACK granting QoS 1 and no event, or a close without SUBACK and a
  ``subscribe-denied`` event naming the filter.

After every vector the attacker's connection is gone and descriptors and tasks are back to
their baseline; the canary check runs at the end of each shard.

The behaviour tests:

- a twin GET flood is answered with 429 beyond the rate, never with a close, while another
  device's GET is answered promptly;
- hundreds of method responses with made-up rids are each acknowledged, refused and counted,
  their security events rate-limited (suppressed ones counted), and a real pending call of the
  same device still completes;
- a device that never acknowledges gets at most ``max_outbound_inflight`` publishes; when its
  waiting queue overflows it is disconnected as a slow consumer, its C2D messages stay queued and
  come back with DUP=1 in the next session, and a bystander is unaffected;
- more subscriptions than ``max_subscriptions``: close and ``subscribe-denied``
  (``too-many-subscriptions``), nothing stored;
- reported patches that would take the section past 32 KB (and bodies past 64 KB), repeated:
  400 every time, the twin unchanged, memory bounded;
- a device answering another device's pending method: refused and recorded, the victim's call
  unaffected.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.parse
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

import pytest
from tests.support.hostile import (
    FD_TOLERANCE,
    TASK_TOLERANCE,
    TELEMETRY,
    HostileGuard,
    fd_count,
    read_until_closed,
    rss_kib,
    security_events,
    wait_for_events,
    wait_until,
)
from tests.support.hubkit import DeviceKit, HubFactory
from tests.vectors.load import CloudPublishVector, CloudSubscribeVector, load_cloud_vectors

from ironhub.codec.mqtt import PingReq, PingResp, PubAck, Publish, SubAck, Subscribe
from ironhub.errors import DeviceResponseError, DeviceUnavailableError
from ironhub.hub.methods import MethodResult

if TYPE_CHECKING:
    from tests.support.mqtt_client import SasCredentials, TestDevice

    from ironhub.server import RunningHub

pytestmark = pytest.mark.asyncio

TWIN_RES = "$iothub/twin/res/#"
METHODS = "$iothub/methods/POST/#"
PATCH = "$iothub/twin/PATCH/properties/reported/?$rid="

VECTORS = load_cloud_vectors()
#: Vectors without an event first: their check is an absence, which is only conclusive once the
#: events recorded after them (in order, by the refused vectors) are visible.
ORDERED: list[CloudPublishVector | CloudSubscribeVector] = sorted(
    [*VECTORS.publishes, *VECTORS.subscriptions], key=lambda v: v.event is not None
)
SHARDS = 4
#: A refusal must come long before any deadline could explain the close (keep-alive 60 s).
PROMPT_SECONDS = 2.0
#: Upper bound for an answer that normally takes milliseconds (CI shares 2 noisy cores).
ANSWER_SECONDS = 5.0


def c2d_filter(device_id: str) -> str:
    return f"devices/{device_id}/messages/devicebound/#"


def query_of(topic: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(topic.partition("?")[2]))


def status_of(topic: str) -> str:
    return topic.split("/")[3]


async def ack(device: TestDevice, publish: Publish) -> None:
    assert publish.packet_id is not None
    device.send(PubAck(publish.packet_id))
    await device.writer.drain()


async def recv_publish(device: TestDevice, *, timeout: float = ANSWER_SECONDS) -> Publish:
    packet = await device.recv(Publish, timeout=timeout)
    assert isinstance(packet, Publish)
    return packet


async def request(
    device: TestDevice, topic: str, body: bytes, *, answered: bool = True
) -> tuple[Publish | None, float]:
    """Publish QoS 1; collect the PUBACK and, if ``answered``, the hub's answer (acknowledged).

    Returns the answer and the seconds the exchange took. Ends with a PINGREQ round trip, so the
    connection is known to be usable and nothing else was sent before the PINGRESP.
    """
    started = time.monotonic()
    pid = device.packet_id()
    device.send(Publish(topic=topic, payload=body, qos=1, packet_id=pid))
    await device.writer.drain()
    answer: Publish | None = None
    acked = False
    while not acked or (answered and answer is None):
        packet = await device.recv(timeout=ANSWER_SECONDS)
        if isinstance(packet, PubAck):
            assert packet.packet_id == pid, packet
            acked = True
        else:
            assert isinstance(packet, Publish), packet
            assert answered, f"unexpected answer {packet!r}"
            assert answer is None, f"a second answer {packet!r}"
            answer = packet
            await ack(device, packet)
    elapsed = time.monotonic() - started
    device.send(PingReq())
    await device.writer.drain()
    packet = await device.recv(timeout=ANSWER_SECONDS)
    assert isinstance(packet, PingResp), f"unexpected {packet!r}"
    return answer, elapsed


def _remaining_length(length: int) -> bytes:
    encoded = bytearray()
    while True:
        length, digit = divmod(length, 128)
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def raw_publish(topic: str, payload: bytes, packet_id: int) -> bytes:
    """A QoS 1 PUBLISH, encoded here: the codec's encoder refuses to send wildcards."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + packet_id.to_bytes(2, "big") + payload
    return b"\x32" + _remaining_length(len(body)) + body


def raw_subscribe(topic_filter: str, packet_id: int) -> bytes:
    """A one-filter QoS 1 SUBSCRIBE, encoded here: the encoder refuses malformed filters."""
    name = topic_filter.encode()
    body = packet_id.to_bytes(2, "big") + len(name).to_bytes(2, "big") + name + b"\x01"
    return b"\x82" + _remaining_length(len(body)) + body


def twin_answer_topic(status: int, rid: str, version: int | None = None) -> str:
    """The answer topic, built here independently of the hub's builder."""
    topic = f"$iothub/twin/res/{status}/?$rid={urllib.parse.quote(rid, safe='')}"
    return topic if version is None else f"{topic}&$version={version}"


# --- the vectors ---------------------------------------------------------------------------------


async def play_publish(
    kit: DeviceKit, creds: SasCredentials, vector: CloudPublishVector, source: str
) -> str | None:
    """Play one publish vector from ``source``; return what went wrong, or ``None``."""
    twins = kit.hub.services.twins
    assert twins is not None
    device = await kit.connect(creds, local_addr=(source, 0), clean_session=True)
    try:
        before = await twins.get(vector.identity)
        if vector.expect == "close":
            started = time.monotonic()
            device.send_raw(raw_publish(vector.topic, vector.payload, 1))
            try:
                await device.writer.drain()
            except (ConnectionError, OSError):
                pass  # The hub may close before it has read the whole packet.
            received, closed = await read_until_closed(device.reader, timeout=PROMPT_SECONDS + 1)
            elapsed = time.monotonic() - started
            if not closed or elapsed > PROMPT_SECONDS:
                return f"not closed promptly (closed={closed}, {elapsed:.2f} s)"
            if received:
                return f"sent {received[:64].hex()} before closing"
            return None
        answered = vector.expect != "method-refused"
        if answered:
            await device.subscribe(TWIN_RES)
        answer, _ = await request(device, vector.topic, vector.payload, answered=answered)
        after = await twins.get(vector.identity)
        rid = vector.rid
        assert rid is not None
        if answer is None:
            return None  # method-refused: PUBACK, then nothing but the PINGRESP
        if vector.expect == "ok-200":
            document = json.loads(answer.payload)
            if answer.topic != twin_answer_topic(200, rid):
                return f"answer topic {answer.topic!r}"
            if document["desired"]["$version"] != before.desired_version:
                return f"desired $version {document['desired']['$version']}"
            if document["reported"]["$version"] != before.reported_version:
                return f"reported $version {document['reported']['$version']}"
        elif vector.expect == "ok-204":
            version = before.reported_version + 1
            if answer.topic != twin_answer_topic(204, rid, version) or answer.payload:
                return f"answer {answer!r}"
            if after.reported_version != version:
                return f"reported version {after.reported_version}, expected {version}"
        else:
            message = json.loads(answer.payload)["message"]
            if answer.topic != twin_answer_topic(400, rid) or not isinstance(message, str):
                return f"answer {answer!r}"
            if (after.reported, after.reported_version) != (
                before.reported,
                before.reported_version,
            ):
                return "the refused patch changed the twin"
        if answer.qos != 1:
            return f"answer at QoS {answer.qos}"
        return None
    finally:
        await device.close()


async def play_subscribe(
    kit: DeviceKit, creds: SasCredentials, vector: CloudSubscribeVector, source: str
) -> str | None:
    """Play one subscription vector from ``source``; return what went wrong, or ``None``."""
    device = await kit.connect(creds, local_addr=(source, 0), clean_session=True)
    try:
        started = time.monotonic()
        if vector.expect == "close":
            device.send_raw(raw_subscribe(vector.topic_filter, 1))
            try:
                await device.writer.drain()
            except (ConnectionError, OSError):
                pass
            received, closed = await read_until_closed(device.reader, timeout=PROMPT_SECONDS + 1)
            elapsed = time.monotonic() - started
            if not closed or elapsed > PROMPT_SECONDS:
                return f"not closed promptly (closed={closed}, {elapsed:.2f} s)"
            if received:
                return f"sent {received[:64].hex()} before closing (a SUBACK?)"
            return None
        device.send(Subscribe(device.packet_id(), ((vector.topic_filter, 1),)))
        await device.writer.drain()
        suback = await device.recv(SubAck, timeout=ANSWER_SECONDS)
        assert isinstance(suback, SubAck)
        if suback.return_codes != (1,):
            return f"SUBACK {suback.return_codes}"
        await device.ping()
        return None
    finally:
        await device.close()


def _event_problem(
    vector: CloudPublishVector | CloudSubscribeVector, events: list[dict[str, str]]
) -> str | None:
    if vector.event is None:
        return f"unexpected events {events}" if events else None
    if [e["event"] for e in events] != [vector.event]:
        return f"events {[e['event'] for e in events]}, expected [{vector.event!r}]"
    event = events[0]
    if vector.event == "publish-denied":
        assert isinstance(vector, CloudPublishVector)
        if (event.get("reason"), event.get("topic")) != (vector.error, vector.topic[:256]):
            return f"event {event}"
    elif vector.event == "subscribe-denied":
        assert isinstance(vector, CloudSubscribeVector)
        if event.get("topic_filter") != vector.topic_filter[:256]:
            return f"event {event}"
    elif vector.event == "method-response-refused":
        assert isinstance(vector, CloudPublishVector)
        assert vector.rid is not None
        if event.get("request_id") != vector.rid[:128]:
            return f"event {event}"
    return None


def _source(shard: int, index: int) -> str:
    return f"127.0.{40 + shard}.{index + 1}"


async def _events_by_peer(hub: RunningHub) -> dict[str, list[dict[str, str]]]:
    by_peer: dict[str, list[dict[str, str]]] = defaultdict(list)
    for event in await security_events(hub):
        by_peer[event["peer"]].append(event)
    return by_peer


@pytest.mark.parametrize("shard", range(SHARDS))
async def test_cloud_vectors_over_tls(
    hub_factory: HubFactory, guard: HostileGuard, shard: int
) -> None:
    # Twin rate off: with it, a twin-400 vector could meet a 429 first.
    hub = await hub_factory(limits_twin_operations_per_second="0")
    kit = await guard.watch(hub)
    creds = {
        "dev1": await kit.create_sas("dev1"),
        "dev1/mod1": await kit.create_module_sas("dev1", "mod1"),
    }
    vectors = ORDERED[shard::SHARDS]
    assert len(vectors) < 255
    fds, tasks = fd_count(), len(asyncio.all_tasks())
    stats = hub.endpoint.statistics
    failures: dict[str, str] = {}
    for index, vector in enumerate(vectors):
        source = _source(shard, index)
        try:
            if isinstance(vector, CloudPublishVector):
                failure = await play_publish(kit, creds[vector.identity], vector, source)
            else:
                failure = await play_subscribe(kit, creds[vector.identity], vector, source)
        except (AssertionError, TimeoutError, ConnectionError, ValueError, KeyError) as exc:
            failure = f"{type(exc).__name__}: {exc}"
        if failure is not None:
            failures[vector.name] = failure
        # The health checks after every case: the connection is gone, and with it its
        # descriptors and tasks.
        if not await wait_until(
            lambda: stats().connections == 0 and stats().preauth_connections == 0
        ):
            failures.setdefault(vector.name, f"connection left: {stats()}")
        if not await wait_until(lambda: fd_count() <= fds + FD_TOLERANCE):
            failures.setdefault(vector.name, f"descriptors: {fd_count()} now, {fds} before")
        if not await wait_until(lambda: len(asyncio.all_tasks()) <= tasks + TASK_TOLERANCE):
            failures.setdefault(vector.name, f"tasks: {len(asyncio.all_tasks())}, {tasks} before")

    # Events are appended asynchronously and commit in groups, in order: wait for all of them.
    expected = {_source(shard, i) for i, v in enumerate(vectors) if v.event is not None}
    deadline = time.monotonic() + 10
    by_peer = await _events_by_peer(hub)
    while not expected <= set(by_peer) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        by_peer = await _events_by_peer(hub)
    for index, vector in enumerate(vectors):
        problem = _event_problem(vector, by_peer.get(_source(shard, index), []))
        if problem is not None:
            failures.setdefault(vector.name, problem)
    assert failures == {}
    assert hub.endpoint.statistics().security_events_suppressed == 0

    await guard.check(hub)


# --- behaviour -----------------------------------------------------------------------------------


async def test_twin_get_flood_is_throttled_never_closed(
    hub_factory: HubFactory, guard: HostileGuard
) -> None:
    rate, burst, count, chunk = 5, 10, 300, 50
    hub = await hub_factory(
        limits_twin_operations_per_second=str(rate),
        limits_twin_operation_burst=str(burst),
        limits_device_messages_per_second="100000",
        limits_device_message_burst="100000",
    )
    kit = await guard.watch(hub)
    flooder = await kit.connect(await kit.create_sas("flooder"), local_addr=("127.0.1.1", 0))
    other = await kit.connect(await kit.create_sas("other"), local_addr=("127.0.1.2", 0))
    await flooder.subscribe(TWIN_RES)
    await other.subscribe(TWIN_RES)
    statuses: dict[str, str] = {}
    acked = 0

    async def read_answers() -> None:
        # A well-behaved flooder: it reads and acknowledges every answer.
        nonlocal acked
        while len(statuses) < count or acked < count:
            packet = await flooder.recv(timeout=10)
            if isinstance(packet, PubAck):
                acked += 1
            else:
                assert isinstance(packet, Publish), packet
                await ack(flooder, packet)
                rid = query_of(packet.topic)["$rid"]
                assert rid not in statuses, rid
                statuses[rid] = status_of(packet.topic)

    started = time.monotonic()
    reader = asyncio.get_running_loop().create_task(read_answers())
    other_latency = None
    for first in range(0, count, chunk):
        # A flood, but not a slow consumer: at most two chunks of answers outstanding.
        floor = first - 2 * chunk
        assert await wait_until(lambda: len(statuses) >= floor, timeout=10)  # noqa: B023
        flooder.send_raw(
            b"".join(
                flooder.codec.send(
                    Publish(f"$iothub/twin/GET/?$rid=f{i}", b" ", qos=1, packet_id=i + 1)
                )
                for i in range(first, first + chunk)
            )
        )
        await flooder.writer.drain()
        if first == chunk:
            # Meanwhile, another device reads its own twin.
            answer, other_latency = await request(other, "$iothub/twin/GET/?$rid=o", b" ")
            assert answer is not None
            assert answer.topic == twin_answer_topic(200, "o")
    await asyncio.wait_for(reader, 20)
    elapsed = time.monotonic() - started

    assert set(statuses) == {f"f{i}" for i in range(count)}
    counts = Counter(statuses.values())
    assert set(counts) == {"200", "429"}, counts
    assert burst <= counts["200"] <= burst + rate * elapsed + 1, (counts, elapsed)
    assert other_latency is not None
    assert other_latency < 2.0, other_latency  # generous: CI shares 2 cores
    # Throttled, never closed: the flooder is still connected and usable.
    await flooder.ping()
    assert {c.device_id for c in hub.endpoint.connections()} == {"flooder", "other"}
    assert await security_events(hub) == []
    await flooder.close()
    await other.close()

    await guard.check(hub)


async def test_method_response_spam_is_refused_and_its_events_are_capped(
    hub_factory: HubFactory, guard: HostileGuard
) -> None:
    count, source = 400, "127.0.1.3"
    hub = await hub_factory(
        limits_device_messages_per_second="100000", limits_device_message_burst="100000"
    )
    kit = await guard.watch(hub)
    methods = hub.services.methods
    assert methods is not None
    device = await kit.connect(await kit.create_sas("spammer"), local_addr=(source, 0))
    await device.subscribe(METHODS)
    call = asyncio.get_running_loop().create_task(
        methods.invoke("spammer", "real", {"x": 1}, timeout_seconds=30)
    )
    invocation = await recv_publish(device)
    await ack(device, invocation)
    rid = query_of(invocation.topic)["$rid"]
    suppressed = hub.endpoint.statistics().security_events_suppressed
    unmatched = methods.statistics().unmatched_responses_total

    started = time.monotonic()
    guesses = [secrets.token_hex(8) for _ in range(count)]
    assert rid not in guesses
    pids = [device.packet_id() for _ in guesses]
    device.send_raw(
        b"".join(
            device.codec.send(
                Publish(f"$iothub/methods/res/200/?$rid={guess}", b"{}", qos=1, packet_id=pid)
            )
            for guess, pid in zip(guesses, pids, strict=True)
        )
    )
    await device.writer.drain()
    acked: list[int] = []
    while len(acked) < count:
        puback = await device.recv(PubAck, timeout=ANSWER_SECONDS)
        assert isinstance(puback, PubAck)
        acked.append(puback.packet_id)
    elapsed = time.monotonic() - started

    # Each one acknowledged (a valid publish), refused and counted; nothing reached the call.
    assert acked == pids
    assert methods.statistics().unmatched_responses_total - unmatched == count
    assert not call.done()
    # The events are capped per source (a burst of 20, then 1/s); the rest are counted.
    dropped = hub.endpoint.statistics().security_events_suppressed - suppressed
    assert count - (20 + elapsed + 1) <= dropped < count, (dropped, elapsed)
    recorded = await wait_for_events(
        hub, count=count - dropped, event="method-response-refused", peer=source
    )
    assert len(recorded) == count - dropped
    assert {e["request_id"] for e in recorded} <= set(guesses)
    # The connection stays usable and the real invocation still completes.
    await device.ping()
    await request(device, f"$iothub/methods/res/200/?$rid={rid}", b'{"done":true}', answered=False)
    assert await asyncio.wait_for(call, ANSWER_SECONDS) == MethodResult(200, {"done": True})
    assert methods.statistics().pending == 0
    await device.close()

    await guard.check(hub)


async def test_device_that_never_acknowledges_is_cut_off_and_keeps_its_queue(
    hub_factory: HubFactory, guard: HostileGuard
) -> None:
    inflight, queue, messages, source = 16, 8, 50, "127.0.1.4"
    hub = await hub_factory(
        mqtt_max_outbound_inflight=str(inflight),
        mqtt_max_outbound_queue=str(queue),
        limits_method_calls_per_second="1000",
        limits_method_call_burst="1000",
    )
    kit = await guard.watch(hub)
    c2d, methods = hub.services.c2d, hub.services.methods
    assert c2d is not None
    assert methods is not None
    creds = await kit.create_sas("sloth")
    sloth = await kit.connect(creds, local_addr=(source, 0), clean_session=False)
    await sloth.subscribe(c2d_filter("sloth"), METHODS)
    bystander = await kit.connect(await kit.create_sas("bystander"), local_addr=("127.0.1.5", 0))
    await bystander.subscribe(c2d_filter("bystander"), METHODS)
    payloads = [f"m{i:02d}".encode() for i in range(messages)]
    for payload in payloads:
        await c2d.send("sloth", payload)

    # The window: exactly max_outbound_inflight publishes, never acknowledged, then nothing.
    first = [await recv_publish(sloth) for _ in range(inflight)]
    assert [p.payload for p in first] == payloads[:inflight]
    assert len({p.packet_id for p in first}) == inflight
    assert not any(p.dup for p in first)
    with pytest.raises(TimeoutError):
        await sloth.recv(timeout=0.5)

    # Method requests wait behind the full window; the one that overflows the waiting queue
    # disconnects the device as a slow consumer.
    calls = [
        asyncio.get_running_loop().create_task(
            methods.invoke("sloth", "poke", None, timeout_seconds=1)
        )
        for _ in range(queue + 4)
    ]
    # Meanwhile a bystander's method call and C2D message are served.
    bystander_call = asyncio.get_running_loop().create_task(
        methods.invoke("bystander", "poke", None, timeout_seconds=5)
    )
    poke = await recv_publish(bystander)
    await ack(bystander, poke)
    await bystander.publish(
        f"$iothub/methods/res/200/?$rid={query_of(poke.topic)['$rid']}", b"null"
    )
    assert await asyncio.wait_for(bystander_call, ANSWER_SECONDS) == MethodResult(200, None)
    results = await asyncio.gather(*calls, return_exceptions=True)
    kinds = Counter(type(r).__name__ for r in results)
    # The queued ones fail at once when the device is cut off (never sent), the rest find it
    # gone: none waits for its timeout.
    assert Counter(str(r) for r in results) == {
        "the device disconnected before the request reached it": queue,
        "the device is not connected or does not listen for direct methods": 4,
    }, results
    assert kinds == {
        DeviceUnavailableError.__name__: queue + 4,
    }, results
    assert await sloth.wait_closed(ANSWER_SECONDS)
    events = await wait_for_events(hub, event="slow-consumer", peer=source)
    assert [e.get("reason") for e in events] == ["outbound-queue"]
    assert "sloth" not in {c.device_id for c in hub.endpoint.connections()}
    await c2d.send("bystander", b"still here")
    delivered = await recv_publish(bystander)
    assert delivered.payload == b"still here"
    await ack(bystander, delivered)
    await bystander.publish(TELEMETRY.format("bystander"), b"fine")

    # Nothing was lost: the whole queue waits, and the next session gets it, the messages
    # already sent once with DUP=1.
    queued = await c2d.list("sloth")
    assert [m.payload for m in queued] == payloads
    sloth = await kit.connect(creds, local_addr=(source, 0), clean_session=False)
    again: list[Publish] = []
    while len(again) < messages:
        publish = await recv_publish(sloth)
        again.append(publish)
        await ack(sloth, publish)
    assert [p.payload for p in again] == payloads
    assert [p.dup for p in again] == [True] * inflight + [False] * (messages - inflight)

    async def drained() -> bool:
        return await c2d.list("sloth") == []

    deadline = time.monotonic() + ANSWER_SECONDS
    while not await drained():
        assert time.monotonic() < deadline, await c2d.list("sloth")
        await asyncio.sleep(0.05)
    assert [e["event"] for e in await security_events(hub)] == ["slow-consumer"]
    await sloth.close()
    await bystander.close()

    await guard.check(hub)


@pytest.mark.parametrize("how", ["one-subscribe", "one-at-a-time"])
async def test_subscriptions_above_the_cap_close_the_connection(
    hub_factory: HubFactory, guard: HostileGuard, how: str
) -> None:
    source = "127.0.1.6"
    hub = await hub_factory(mqtt_max_subscriptions="2")
    kit = await guard.watch(hub)
    creds = await kit.create_sas("greedy")
    device = await kit.connect(creds, local_addr=(source, 0), clean_session=False)
    filters = (c2d_filter("greedy"), TWIN_RES, METHODS)
    if how == "one-subscribe":
        device.send(Subscribe(device.packet_id(), tuple((f, 1) for f in filters)))
        stored: tuple[tuple[str, int], ...] = ()
    else:
        assert (await device.subscribe(*filters[:2])).return_codes == (1, 1)
        # The same subscription again is not one more.
        assert (await device.subscribe(TWIN_RES)).return_codes == (1,)
        device.send(Subscribe(device.packet_id(), ((filters[2], 1),)))
        stored = ((filters[0], 1), (filters[1], 1))
    await device.writer.drain()
    received, closed = await read_until_closed(device.reader, timeout=PROMPT_SECONDS + 1)
    assert closed
    assert received == b""  # no SUBACK: refused, not half-granted
    await device.close()
    events = await wait_for_events(hub, event="subscribe-denied", peer=source)
    assert [e.get("reason") for e in events] == ["too-many-subscriptions"]
    # Nothing of the refused SUBSCRIBE was stored.
    session = await hub.services.storage.get_session("greedy")
    assert sorted(session.subscriptions if session is not None else ()) == sorted(stored)

    await guard.check(hub)


async def test_oversized_reported_patches_leave_the_twin_alone(
    hub_factory: HubFactory, guard: HostileGuard
) -> None:
    source, rounds = "127.0.1.7", 10
    hub = await hub_factory(
        limits_twin_operations_per_second="0",
        limits_device_messages_per_second="100000",
        limits_device_message_burst="100000",
    )
    kit = await guard.watch(hub)
    twins = hub.services.twins
    assert twins is not None
    device = await kit.connect(await kit.create_sas("hoarder"), local_addr=(source, 0))
    await device.subscribe(TWIN_RES)
    # Fill the reported section to 32,072 of its 32,768 bytes.
    for i in range(8):
        body = json.dumps({f"p{i}": "v" * 4000}).encode()
        answer, _ = await request(device, f"{PATCH}fill{i}", body)
        assert answer is not None
        assert status_of(answer.topic) == "204"
    before = await twins.get("hoarder")
    rss_before = rss_kib()
    suppressed = hub.endpoint.statistics().security_events_suppressed

    bodies = {
        # A valid patch that is itself over 32 KB.
        "section-36k": json.dumps({f"k{i}": "v" * 3900 for i in range(9)}).encode(),
        # A small valid patch that takes the merged section past 32 KB.
        "section-plus-4k": json.dumps({"more": "v" * 4000}).encode(),
        # Bodies past max_patch_bytes (64 KB), the second near the 256 KB message limit.
        "body-70k": json.dumps({"a": "x" * 70_000}).encode(),
        "body-250k": json.dumps({"a": "x" * 250_000}).encode(),
    }
    started = time.monotonic()
    for round_ in range(rounds):
        for name, body in bodies.items():
            answer, _ = await request(device, f"{PATCH}{name}-{round_}", body)
            assert answer is not None, name
            assert answer.topic == twin_answer_topic(400, f"{name}-{round_}"), name
            assert "message" in json.loads(answer.payload)
    elapsed = time.monotonic() - started

    after = await twins.get("hoarder")
    assert (after.reported, after.reported_version, after.version) == (
        before.reported,
        before.reported_version,
        before.version,
    )
    # Bounded by what one request holds, not by what was sent (4 MB in all).
    assert rss_kib() - rss_before < 32 * 1024
    # One refusal event each, capped per source like every security event.
    refused = rounds * len(bodies)
    dropped = hub.endpoint.statistics().security_events_suppressed - suppressed
    assert refused - (20 + elapsed + 1) <= dropped <= refused, (dropped, elapsed)
    assert len(
        await wait_for_events(hub, count=refused - dropped, event="twin-patch-refused", peer=source)
    ) == (refused - dropped)
    # A patch that shrinks the section is still accepted.
    answer, _ = await request(device, f"{PATCH}shrink", b'{"p0":null,"p1":null}')
    assert answer is not None
    assert answer.topic == twin_answer_topic(204, "shrink", before.reported_version + 1)
    await device.ping()
    await device.close()

    await guard.check(hub)


async def test_answering_another_devices_method_is_refused(
    hub_factory: HubFactory, guard: HostileGuard
) -> None:
    victim_source, attacker_source, module_source = "127.0.1.8", "127.0.1.9", "127.0.1.10"
    hub = await hub_factory()
    kit = await guard.watch(hub)
    methods = hub.services.methods
    assert methods is not None
    victim = await kit.connect(await kit.create_sas("victim"), local_addr=(victim_source, 0))
    attacker = await kit.connect(await kit.create_sas("attacker"), local_addr=(attacker_source, 0))
    # The victim's own module is another identity too.
    module = await kit.connect(
        await kit.create_module_sas("victim", "mod"), local_addr=(module_source, 0)
    )
    for device in (victim, attacker, module):
        await device.subscribe(METHODS)
    call = asyncio.get_running_loop().create_task(
        methods.invoke("victim", "unlock", {"door": 1}, timeout_seconds=10)
    )
    invocation = await recv_publish(victim)
    await ack(victim, invocation)
    rid = query_of(invocation.topic)["$rid"]

    # The attacker learned the rid somehow; plain and percent-encoded, its answers are refused,
    # and so is the module's.
    encoded = "".join(f"%{ord(c):02X}" for c in rid)
    for device, attempt in ((attacker, rid), (attacker, encoded), (module, rid)):
        await request(
            device,
            f"$iothub/methods/res/200/?$rid={attempt}",
            b'{"unlocked":true}',
            answered=False,
        )
    events = await wait_for_events(
        hub, count=2, event="method-response-refused", peer=attacker_source
    )
    assert [e["request_id"] for e in events] == [rid, rid]
    events = await wait_for_events(hub, event="method-response-refused", peer=module_source)
    assert [e["request_id"] for e in events] == [rid]
    assert not call.done()
    assert methods.statistics().pending == 1

    # The victim's own answer completes the call; a second one (late) is refused in turn.
    await request(
        victim, f"$iothub/methods/res/403/?$rid={rid}", b'{"unlocked":false}', answered=False
    )
    assert await asyncio.wait_for(call, ANSWER_SECONDS) == MethodResult(403, {"unlocked": False})
    await request(victim, f"$iothub/methods/res/200/?$rid={rid}", b"{}", answered=False)
    late = await wait_for_events(hub, event="method-response-refused", peer=victim_source)
    assert [e["request_id"] for e in late] == [rid]

    # The victim's answer to a real call is a nesting bomb: the operator gets an error, the
    # hub nothing worse.
    call = asyncio.get_running_loop().create_task(
        methods.invoke("victim", "status", None, timeout_seconds=10)
    )
    invocation = await recv_publish(victim)
    await ack(victim, invocation)
    rid = query_of(invocation.topic)["$rid"]
    await request(victim, f"$iothub/methods/res/200/?$rid={rid}", b"[" * 100_000, answered=False)
    with pytest.raises(DeviceResponseError):
        await asyncio.wait_for(call, ANSWER_SECONDS)

    # No connection was closed; nobody else saw the victim's requests.
    assert {c.device_id for c in hub.endpoint.connections()} == {"victim", "attacker", "victim/mod"}
    for device in (attacker, module):
        with pytest.raises(TimeoutError):
            await device.recv(timeout=0.3)
        await device.close()
    await victim.close()
    assert [e["peer"] for e in await security_events(hub)] == [
        attacker_source,
        attacker_source,
        module_source,
        victim_source,
    ]

    await guard.check(hub)
