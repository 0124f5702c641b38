"""Twins, direct methods, cloud-to-device messages, persistent sessions and modules, end to end.

A real hub in-process, devices over real TLS sockets with the test MQTT client (which, unlike
the SDK, lets each test see every packet and flag). The unmodified SDK runs the same features
in tests/interop/test_sdk_cloud.py.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from pathlib import Path

import pytest
from tests.support.hubkit import DeviceKit, HubFactory
from tests.support.mqtt_client import SasCredentials, TestDevice

from ironhub.codec.mqtt import PubAck, Publish
from ironhub.errors import (
    DeviceUnavailableError,
    QueueFullError,
    RequestTimeoutError,
    ValidationError,
)
from ironhub.hub.methods import MethodResult
from ironhub.server import RunningHub
from ironhub.storage.interfaces import Stream

pytestmark = pytest.mark.asyncio

TWIN_RES = "$iothub/twin/res/#"
DESIRED = "$iothub/twin/PATCH/properties/desired/#"
METHODS = "$iothub/methods/POST/#"


def c2d_filter(device_id: str) -> str:
    return f"devices/{device_id}/messages/devicebound/#"


def query_of(topic: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(topic.partition("?")[2]))


async def recv_publish(dev: TestDevice, *, timeout: float = 10.0) -> Publish:
    packet = await dev.recv(Publish, timeout=timeout)
    assert isinstance(packet, Publish)
    return packet


async def ack(dev: TestDevice, publish: Publish) -> None:
    assert publish.packet_id is not None
    dev.send(PubAck(publish.packet_id))
    await dev.writer.drain()


async def twin_request(dev: TestDevice, topic: str, body: bytes) -> Publish:
    """Publish a twin request and return the hub's answer (PUBACK consumed in between)."""
    pid = dev.packet_id()
    dev.send(Publish(topic=topic, payload=body, qos=1, packet_id=pid))
    await dev.writer.drain()
    answer: Publish | None = None
    acked = False
    while answer is None or not acked:
        packet = await dev.recv()
        if isinstance(packet, PubAck):
            assert packet.packet_id == pid
            acked = True
        else:
            assert isinstance(packet, Publish)
            answer = packet
            await ack(dev, packet)
    return answer


async def security_events(hub: RunningHub, event: str) -> list[dict[str, str]]:
    found = []
    for message in await hub.services.storage.query_messages(stream=Stream.SECURITY, limit=1000):
        props = dict(message.properties)
        if props.get("event") == event:
            found.append(props)
    return found


async def eventually(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await predicate():
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# --- twins ---------------------------------------------------------------------------------
async def test_twin_get_and_reported_patch(kit: DeviceKit) -> None:
    creds = await kit.create_sas("twin-dev")
    dev = await kit.connect(creds)
    await dev.subscribe(TWIN_RES)

    answer = await twin_request(dev, "$iothub/twin/GET/?$rid=1", b" ")
    assert answer.topic.startswith("$iothub/twin/res/200/")
    assert query_of(answer.topic)["$rid"] == "1"
    doc = json.loads(answer.payload)
    assert doc["desired"] == {"$version": 1}
    assert doc["reported"] == {"$version": 1}

    patch = b'{"fw": {"version": "1.2.3"}, "temp": 21.5}'
    answer = await twin_request(dev, "$iothub/twin/PATCH/properties/reported/?$rid=2", patch)
    assert answer.topic.startswith("$iothub/twin/res/204/")
    assert query_of(answer.topic) == {"$rid": "2", "$version": "2"}

    answer = await twin_request(
        dev, "$iothub/twin/PATCH/properties/reported/?$rid=3", b'{"temp": null}'
    )
    assert query_of(answer.topic)["$version"] == "3"
    twin = await kit.hub.services.twins.get("twin-dev")  # type: ignore[union-attr]
    assert dict(twin.reported) == {"fw": {"version": "1.2.3"}}
    assert twin.reported_version == 3
    await dev.close()


async def test_twin_answer_without_subscription(kit: DeviceKit) -> None:
    # The SDK's own GET after a reconnect goes out without $iothub/twin/res/# when the app
    # only set a desired handler; it waits forever for the answer, so the answer is sent.
    dev = await kit.connect(await kit.create_sas("unsubscribed"))
    answer = await twin_request(dev, "$iothub/twin/GET/?$rid=x", b" ")
    assert answer.topic.startswith("$iothub/twin/res/200/")
    assert answer.qos == 1
    await dev.close()


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "invalid JSON"),
        (b'{"a.b": 1}', "key with a dot"),
        (b'{"$version": 9}', "reserved $ key"),
        (json.dumps({"big": "x" * 5000}).encode(), "value over 4 KB"),
        (b"[1, 2]", "not an object"),
        (b"[" * 200 + b"]" * 200, "nesting bomb"),
    ],
)
async def test_reported_patch_refused_with_400(kit: DeviceKit, body: bytes, why: str) -> None:
    creds = await kit.create_sas("bad-patch")
    dev = await kit.connect(creds)
    await dev.subscribe(TWIN_RES)
    answer = await twin_request(dev, "$iothub/twin/PATCH/properties/reported/?$rid=r1", body)
    assert answer.topic.startswith("$iothub/twin/res/400/"), why
    assert "message" in json.loads(answer.payload)
    await eventually(lambda: _has_event(kit.hub, "twin-patch-refused"))
    # The connection and the hub stay healthy.
    await dev.ping()
    answer = await twin_request(dev, "$iothub/twin/GET/?$rid=r2", b" ")
    assert json.loads(answer.payload)["reported"] == {"$version": 1}
    await dev.close()


async def _has_event(hub: RunningHub, event: str) -> bool:
    return bool(await security_events(hub, event))


async def test_reported_section_limit(kit: DeviceKit) -> None:
    creds = await kit.create_sas("big-twin")
    dev = await kit.connect(creds)
    await dev.subscribe(TWIN_RES)
    status = []
    for i in range(12):  # 12 x ~3 KB > 32 KB
        body = json.dumps({f"p{i}": "v" * 3000}).encode()
        answer = await twin_request(dev, f"$iothub/twin/PATCH/properties/reported/?$rid={i}", body)
        status.append(answer.topic.split("/")[3])
    assert status[:10] == ["204"] * 10
    assert status[-1] == "400"
    await dev.close()


async def test_twin_throttled_with_429(hub_factory: HubFactory) -> None:
    hub = await hub_factory(
        limits_twin_operations_per_second="0.01", limits_twin_operation_burst="2"
    )
    kit = DeviceKit(hub)
    dev = await kit.connect(await kit.create_sas("busy"))
    await dev.subscribe(TWIN_RES)
    codes = []
    for i in range(4):
        answer = await twin_request(dev, f"$iothub/twin/GET/?$rid={i}", b" ")
        codes.append(answer.topic.split("/")[3])
    assert codes == ["200", "200", "429", "429"]
    await dev.close()


async def test_desired_patch_notification(kit: DeviceKit) -> None:
    creds = await kit.create_sas("desired-dev")
    dev = await kit.connect(creds)
    await dev.subscribe(DESIRED)
    twins = kit.hub.services.twins
    assert twins is not None
    updated = await twins.update("desired-dev", desired={"interval": 5}, tags={"site": "a"})
    note = await recv_publish(dev)
    assert (
        note.topic == f"$iothub/twin/PATCH/properties/desired/?$version={updated.desired_version}"
    )
    assert note.qos == 1
    assert json.loads(note.payload) == {"interval": 5, "$version": updated.desired_version}
    await ack(dev, note)
    # Tags alone never reach the device.
    await twins.update("desired-dev", tags={"site": "b"})
    with pytest.raises(TimeoutError):
        await dev.recv(timeout=0.3)
    await dev.close()


async def test_desired_patch_while_offline_arrives_on_reconnect(kit: DeviceKit) -> None:
    creds = await kit.create_sas("sleepy")
    dev = await kit.connect(creds, clean_session=False)
    await dev.subscribe(DESIRED)
    await dev.close()
    twins = kit.hub.services.twins
    assert twins is not None
    await twins.update("sleepy", desired={"mode": "eco"})
    await twins.update("sleepy", desired={"level": 3})

    dev = await kit.connect(creds, clean_session=False)  # no SUBSCRIBE: the session has it
    note = await recv_publish(dev)
    assert note.topic == "$iothub/twin/PATCH/properties/desired/?$version=3"
    assert json.loads(note.payload) == {"mode": "eco", "level": 3, "$version": 3}
    await ack(dev, note)
    await dev.close()
    # Acknowledged: not sent again.
    dev = await kit.connect(creds, clean_session=False)
    with pytest.raises(TimeoutError):
        await dev.recv(timeout=0.3)
    await dev.close()


# --- direct methods ------------------------------------------------------------------------
async def test_method_invocation_round_trip(kit: DeviceKit) -> None:
    creds = await kit.create_sas("method-dev")
    dev = await kit.connect(creds)
    await dev.subscribe(METHODS)
    methods = kit.hub.services.methods
    assert methods is not None
    call = asyncio.create_task(
        methods.invoke("method-dev", "reboot", {"delay": 1}, timeout_seconds=10)
    )
    request = await recv_publish(dev)
    assert request.topic.startswith("$iothub/methods/POST/reboot/?$rid=")
    assert json.loads(request.payload) == {"delay": 1}
    await ack(dev, request)
    rid = query_of(request.topic)["$rid"]
    await dev.publish(f"$iothub/methods/res/200/?$rid={rid}", b'{"result": "rebooting"}')
    result = await call
    assert result == MethodResult(200, {"result": "rebooting"})
    registry = kit.hub.services.metrics.registry
    assert registry.get_sample_value("ironhub_method_calls_total", {"outcome": "answered"}) == 1
    await dev.close()


async def test_method_offline_and_timeout(kit: DeviceKit) -> None:
    await kit.create_sas("offline")
    methods = kit.hub.services.methods
    assert methods is not None
    with pytest.raises(DeviceUnavailableError):
        await methods.invoke("offline", "ping", None, timeout_seconds=5)
    dev = await kit.connect(await kit.create_sas("silent"))
    # Connected but not subscribed to methods: unavailable, at once.
    with pytest.raises(DeviceUnavailableError):
        await methods.invoke("silent", "ping", None, timeout_seconds=5)
    await dev.subscribe(METHODS)
    with pytest.raises(RequestTimeoutError):
        await methods.invoke("silent", "ping", None, timeout_seconds=1)
    await dev.close()


async def test_device_cannot_answer_another_devices_method(kit: DeviceKit) -> None:
    victim = await kit.connect(await kit.create_sas("victim"))
    attacker = await kit.connect(await kit.create_sas("attacker"))
    await victim.subscribe(METHODS)
    methods = kit.hub.services.methods
    assert methods is not None
    call = asyncio.create_task(methods.invoke("victim", "unlock", None, timeout_seconds=10))
    request = await recv_publish(victim)
    await ack(victim, request)
    rid = query_of(request.topic)["$rid"]
    # The attacker learned the rid somehow; its answer is refused and recorded.
    await attacker.publish(f"$iothub/methods/res/200/?$rid={rid}", b'{"unlocked": true}')
    await eventually(lambda: _has_event(kit.hub, "method-response-refused"))
    assert not call.done()
    await victim.publish(f"$iothub/methods/res/403/?$rid={rid}", b'{"unlocked": false}')
    assert await call == MethodResult(403, {"unlocked": False})
    await attacker.ping()
    await victim.close()
    await attacker.close()


# --- cloud-to-device messages ----------------------------------------------------------------
async def test_c2d_delivered_on_subscribe_and_completed_on_puback(kit: DeviceKit) -> None:
    creds = await kit.create_sas("c2d-dev")
    c2d = kit.hub.services.c2d
    assert c2d is not None
    queued = await c2d.send(
        "c2d-dev",
        b"hello",
        properties=[("color", "blue green"), ("k", "a&b=c")],
        message_id="m1",
        correlation_id="c 1",
        content_encoding="utf-8",
    )
    with pytest.raises(ValidationError, match="correlation id"):
        await c2d.send("c2d-dev", b"x", correlation_id="\x00")
    dev = await kit.connect(creds)
    await dev.subscribe(c2d_filter("c2d-dev"))
    message = await recv_publish(dev)
    prefix = "devices/c2d-dev/messages/devicebound/"
    assert message.topic.startswith(prefix)
    props = dict(urllib.parse.parse_qsl(message.topic[len(prefix) :]))
    assert props["$.mid"] == "m1"
    assert props["$.cid"] == "c 1"
    assert props["$.ce"] == "utf-8"
    assert "$.ct" not in props
    assert props["color"] == "blue green"
    assert props["k"] == "a&b=c"
    assert message.payload == b"hello"
    assert not message.dup
    await ack(dev, message)

    async def empty() -> bool:
        return not await c2d.list("c2d-dev")

    await eventually(empty)

    async def fed_back() -> bool:
        return bool(await kit.hub.services.storage.query_messages(stream=Stream.FEEDBACK))

    await eventually(fed_back)
    feedback = await kit.hub.services.storage.query_messages(stream=Stream.FEEDBACK)
    assert [dict(f.properties)["status"] for f in feedback] == ["completed"]
    assert dict(feedback[0].properties)["seq"] == str(queued.seq)
    registry = kit.hub.services.metrics.registry
    for outcome in ("queued", "completed"):
        assert registry.get_sample_value("ironhub_cloud_messages_total", {"outcome": outcome}) == 1
    await dev.close()


async def test_c2d_unacknowledged_is_redelivered_with_dup(kit: DeviceKit) -> None:
    creds = await kit.create_sas("flaky")
    dev = await kit.connect(creds, clean_session=False)
    await dev.subscribe(c2d_filter("flaky"))
    c2d = kit.hub.services.c2d
    assert c2d is not None
    await c2d.send("flaky", b"once")
    first = await recv_publish(dev)
    assert not first.dup
    await dev.close()  # no PUBACK

    dev = await kit.connect(creds, clean_session=False)
    again = await recv_publish(dev)
    assert again.dup
    assert again.payload == b"once"
    await ack(dev, again)
    await dev.close()


async def test_c2d_queue_limits_and_expiry(hub_factory: HubFactory) -> None:
    hub = await hub_factory(limits_cloud_message_expiry_sweep_seconds="0.1")
    kit = DeviceKit(hub)
    await kit.create_sas("full")
    c2d = hub.services.c2d
    assert c2d is not None
    for i in range(50):
        await c2d.send("full", f"{i}".encode())
    with pytest.raises(QueueFullError):
        await c2d.send("full", b"one too many")
    assert await c2d.purge("full") == 50

    await c2d.send("full", b"short-lived", ttl_seconds=0.2)

    async def expired() -> bool:
        feedback = await hub.services.storage.query_messages(stream=Stream.FEEDBACK, limit=100)
        return any(dict(f.properties)["status"] == "expired" for f in feedback)

    await eventually(expired)
    assert await c2d.list("full") == []


async def test_clean_session_discards_subscriptions(kit: DeviceKit) -> None:
    creds = await kit.create_sas("forgetful")
    dev = await kit.connect(creds, clean_session=False)
    await dev.subscribe(c2d_filter("forgetful"))
    await dev.close()
    dev = await kit.connect(creds, clean_session=True)
    await dev.close()
    c2d = kit.hub.services.c2d
    assert c2d is not None
    await c2d.send("forgetful", b"waits")
    dev = await kit.connect(creds, clean_session=False)
    with pytest.raises(TimeoutError):
        await dev.recv(timeout=0.3)
    await dev.subscribe(c2d_filter("forgetful"))
    assert (await recv_publish(dev)).payload == b"waits"
    await dev.close()


async def test_hub_restart_between_subscribe_and_delivery(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    data = tmp_path / "restart"
    hub = await hub_factory(data_dir=data)
    kit = DeviceKit(hub)
    creds = await kit.create_sas("survivor")
    dev = await kit.connect(creds, clean_session=False)
    await dev.subscribe(c2d_filter("survivor"), DESIRED)
    await dev.close()
    await hub.stop()

    hub = await hub_factory(data_dir=data)
    assert hub.services.c2d is not None and hub.services.twins is not None
    await hub.services.c2d.send("survivor", b"after restart")
    await hub.services.twins.update("survivor", desired={"after": "restart"})
    kit = DeviceKit(hub)
    creds = SasCredentials(creds.hostname, creds.device_id, creds.key_b64)
    dev = await kit.connect(creds, clean_session=False)
    got = [await recv_publish(dev), await recv_publish(dev)]
    topics = sorted(p.topic.split("?")[0] for p in got)
    assert topics[0] == "$iothub/twin/PATCH/properties/desired/"
    assert topics[1].startswith("devices/survivor/messages/devicebound/")
    for publish in got:
        await ack(dev, publish)
    await dev.close()


# --- modules ---------------------------------------------------------------------------------
async def test_module_identity_output_and_input(kit: DeviceKit) -> None:
    await kit.create_sas("edge")
    creds = await kit.create_module_sas("edge", "filter")
    mod = await kit.connect(creds)
    await mod.subscribe("devices/edge/modules/filter/inputs/#", TWIN_RES, METHODS)
    await mod.publish("devices/edge/modules/filter/messages/events/%24.on=alerts", b"hot")
    stored = await kit.hub.services.storage.query_messages(stream=Stream.TELEMETRY)
    assert stored[-1].device_id == "edge/filter"
    assert ("$.on", "alerts") in stored[-1].properties

    c2d = kit.hub.services.c2d
    assert c2d is not None
    await c2d.send("edge/filter", b"in", input_name="input1", properties=[("a", "1")])
    message = await recv_publish(mod)
    assert message.topic.startswith("devices/edge/modules/filter/inputs/input1/")
    assert message.payload == b"in"
    await ack(mod, message)

    # The module has its own twin.
    answer = await twin_request(
        mod, "$iothub/twin/PATCH/properties/reported/?$rid=m1", b'{"ok": true}'
    )
    assert answer.topic.startswith("$iothub/twin/res/204/")
    twins = kit.hub.services.twins
    assert twins is not None
    assert dict((await twins.get("edge/filter")).reported) == {"ok": True}
    assert dict((await twins.get("edge")).reported) == {}
    await mod.close()


async def test_module_cannot_publish_as_parent(kit: DeviceKit) -> None:
    await kit.create_sas("parent")
    mod = await kit.connect(await kit.create_module_sas("parent", "m1"))
    mod.send(Publish("devices/parent/messages/events/", b"spoof", qos=1, packet_id=1))
    await mod.writer.drain()
    assert await mod.wait_closed()
    await eventually(lambda: _has_event(kit.hub, "publish-denied"))


@pytest.mark.parametrize(
    "topic_filter",
    [
        "devices/other/messages/devicebound/#",
        "$iothub/twin/#",
        "$iothub/methods/POST/+",
        "$iothub/twin/res/+",
        "devices/me/modules/x/inputs/#",
    ],
)
async def test_foreign_subscriptions_close_the_connection(
    kit: DeviceKit, topic_filter: str
) -> None:
    dev = await kit.connect(await kit.create_sas("me"))
    from ironhub.codec.mqtt import Subscribe

    dev.send(Subscribe(dev.packet_id(), ((topic_filter, 1),)))
    await dev.writer.drain()
    assert await dev.wait_closed()
    await eventually(lambda: _has_event(kit.hub, "subscribe-denied"))


async def test_disabling_the_parent_drops_its_modules(kit: DeviceKit) -> None:
    await kit.create_sas("owner")
    mod = await kit.connect(await kit.create_module_sas("owner", "m"))
    from ironhub.storage.interfaces import DeviceState

    await kit.hub.services.registry.set_state("owner", DeviceState.DISABLED)
    assert await mod.wait_closed()


async def test_a_device_polling_its_twin_does_not_lock_the_operator_out(
    hub_factory: HubFactory,
) -> None:
    hub = await hub_factory(
        limits_twin_operations_per_second="0.01", limits_twin_operation_burst="2"
    )
    kit = DeviceKit(hub)
    dev = await kit.connect(await kit.create_sas("poller"))
    for i in range(4):
        await twin_request(dev, f"$iothub/twin/GET/?$rid={i}", b" ")  # 2 answered, 2 throttled
    twins = hub.services.twins
    assert twins is not None
    updated = await twins.update("poller", desired={"fix": 1})
    assert dict(updated.desired) == {"fix": 1}
    await dev.close()


async def test_x509_modules_ca_signed_and_thumbprint(
    hub: RunningHub, kit: DeviceKit, tmp_path: Path
) -> None:
    import datetime as dt

    from cryptography.hazmat.primitives.asymmetric import ec
    from tests.support.mqtt_client import ConnectRefused, client_tls_context

    from ironhub import pki
    from ironhub.storage.interfaces import AuthKind

    registry = hub.services.registry
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = pki.create_ca("module CA", now=now)
    await registry.add_ca(pki.certificate_pem(ca_cert).decode())
    await registry.create_device("gw", AuthKind.X509_CA)
    await registry.create_module("gw", "signed", auth_kind=AuthKind.X509_CA)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = pki.issue_device_certificate(ca_key, ca_cert, key.public_key(), "gw/signed", now=now)
    self_key, self_cert = pki.create_self_signed_device_certificate("gw/thumb", now=now)
    await registry.create_module(
        "gw",
        "thumb",
        auth_kind=AuthKind.X509_THUMBPRINT,
        certificates_pem=(pki.certificate_pem(self_cert).decode(),),
    )
    await asyncio.sleep(0.3)  # the TLS trust store is rebuilt after registry changes

    def context(name: str, cert_pem: bytes, key_pem: bytes):  # type: ignore[no-untyped-def]
        certfile = tmp_path / f"{name}.pem"
        keyfile = tmp_path / f"{name}.key"
        certfile.write_bytes(cert_pem)
        keyfile.write_bytes(key_pem)
        return client_tls_context(hub.info.ca_path, certfile=certfile, keyfile=keyfile)

    hostname = hub.services.config.hostname
    for name, cert_pem, key_pem in (
        ("signed", pki.certificate_pem(cert), pki.private_key_pem(key)),
        ("thumb", pki.certificate_pem(self_cert), pki.private_key_pem(self_key)),
    ):
        ctx = context(name, cert_pem, key_pem)
        mod = await TestDevice.connect(
            kit.host,
            kit.port,
            ctx,
            client_id=f"gw/{name}",
            username=f"{hostname}/gw/{name}/?api-version=2019-10-01",
            password=None,
        )
        await mod.publish(f"devices/gw/modules/{name}/messages/events/", b"x509 module")
        await mod.close()
    # The module's certificate does not make it its parent.
    with pytest.raises(ConnectRefused):
        await TestDevice.connect(
            kit.host,
            kit.port,
            context("signed2", pki.certificate_pem(cert), pki.private_key_pem(key)),
            client_id="gw",
            username=f"{hostname}/gw/?api-version=2019-10-01",
            password=None,
        )
    stored = await hub.services.storage.query_messages(stream=Stream.TELEMETRY)
    assert {m.device_id for m in stored} == {"gw/signed", "gw/thumb"}
