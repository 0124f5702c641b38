"""The device endpoint over real TLS sockets, driven by ironhub's own codec as a client."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import sqlite3
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tests.support.hubkit import DeviceKit, HubFactory
from tests.support.mqtt_client import ConnectRefused, SasCredentials, TestDevice, client_tls_context

from ironhub import pki
from ironhub.codec.mqtt import ConnAck, Connect, ConnectReturnCode, Publish
from ironhub.server import RunningHub
from ironhub.storage.interfaces import AuthKind, DeviceState, StoredMessage, Stream

pytestmark = pytest.mark.asyncio

TOPIC = "devices/{}/messages/events/"


async def wait_for_messages(
    hub: RunningHub,
    *,
    device_id: str | None = None,
    stream: Stream | None = None,
    count: int = 1,
    where: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> list[StoredMessage]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await hub.services.log.query(device_id=device_id, stream=stream, limit=1000)
        if where:
            found = [
                m for m in found if all(dict(m.properties).get(k) == v for k, v in where.items())
            ]
        if len(found) >= count or loop.time() > deadline:
            return found
        await asyncio.sleep(0.02)


async def test_sas_device_sends_telemetry_with_properties(hub: RunningHub, kit: DeviceKit) -> None:
    creds = await kit.create_sas("dev1")
    dev = await kit.connect(creds)
    topic = TOPIC.format("dev1") + "%24.ct=application%2Fjson&%24.ce=utf-8&temp=hot&%24.mid=m1"
    await dev.publish(topic, b'{"t": 21}')
    await dev.publish(TOPIC.format("dev1"), b"qos0", qos=0)
    await dev.ping()
    msgs = await wait_for_messages(hub, device_id="dev1", stream=Stream.TELEMETRY, count=2)
    assert [m.payload for m in msgs] == [b'{"t": 21}', b"qos0"]
    props = dict(msgs[0].properties)
    assert props["$.ct"] == "application/json"
    assert props["$.ce"] == "utf-8"
    assert props["$.mid"] == "m1"
    assert props["temp"] == "hot"
    connected = await wait_for_messages(hub, device_id="dev1", stream=Stream.LIFECYCLE)
    assert dict(connected[0].properties)["event"] == "connected"
    assert [c.device_id for c in hub.endpoint.connections()] == ["dev1"]
    await dev.close()


async def test_security_marker_routes_to_security_stream(hub: RunningHub, kit: DeviceKit) -> None:
    creds = await kit.create_sas("sec1")
    dev = await kit.connect(creds)
    topic = TOPIC.format("sec1") + "%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1"
    await dev.publish(topic, b'{"event": "usb"}')
    msgs = await wait_for_messages(
        hub,
        device_id="sec1",
        stream=Stream.SECURITY,
        where={"$.ifid": "urn:azureiot:Security:SecurityAgent:1"},
    )
    assert msgs and msgs[0].payload == b'{"event": "usb"}'
    telemetry = await hub.services.log.query(device_id="sec1", stream=Stream.TELEMETRY)
    assert telemetry == []
    await dev.close()


async def test_pipelined_qos1_all_acknowledged_in_order_and_committed(
    hub_factory: HubFactory,
) -> None:
    hub = await hub_factory(
        limits_device_messages_per_second="100000", limits_device_message_burst="100000"
    )
    kit = DeviceKit(hub)
    creds = await kit.create_sas("pipe")
    dev = await kit.connect(creds)
    payloads = [f"m{i}".encode() for i in range(500)]
    acked = await dev.publish_pipelined(TOPIC.format("pipe"), payloads)
    assert acked == list(range(1, 501))
    msgs = await hub.services.log.query(device_id="pipe", stream=Stream.TELEMETRY, limit=1000)
    # Acknowledged means committed: every acked message is already readable.
    assert [m.payload for m in msgs] == payloads
    await dev.close()


async def test_dup_resend_of_unacknowledged_publish_is_not_stored_twice(
    hub: RunningHub, kit: DeviceKit
) -> None:
    creds = await kit.create_sas("dupdev")
    # Hold the database's write lock from outside so the publish cannot commit before the
    # device's connection is gone: the hub then never writes its PUBACK.
    blocker = sqlite3.connect(hub.services.config.data_dir / "ironhub.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        dev = await kit.connect(creds)
        dev.send(Publish(topic=TOPIC.format("dupdev"), payload=b"once", qos=1, packet_id=77))
        await dev.writer.drain()
        await asyncio.sleep(0.1)
        dev.writer.transport.abort()
        await asyncio.sleep(0.1)
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    dev = await kit.connect(creds)
    await dev.publish(TOPIC.format("dupdev"), b"once", packet_id=77, dup=True)
    # DUP with other content is a different message.
    await dev.publish(TOPIC.format("dupdev"), b"other", packet_id=77, dup=True)
    msgs = await hub.services.log.query(device_id="dupdev", stream=Stream.TELEMETRY)
    assert [m.payload for m in msgs] == [b"once", b"other"]
    assert hub.services.log.statistics().duplicates_suppressed == 1
    await dev.close()


async def test_dup_resend_after_puback_is_stored_again(hub: RunningHub, kit: DeviceKit) -> None:
    # Once a PUBACK was written the device may have reused the packet id for a new message
    # with the same content; dropping its DUP could lose it, so it is stored (at-least-once).
    creds = await kit.create_sas("dupacked")
    dev = await kit.connect(creds)
    await dev.publish(TOPIC.format("dupacked"), b"same", packet_id=5)
    await dev.publish(TOPIC.format("dupacked"), b"same", packet_id=5, dup=True)
    msgs = await hub.services.log.query(device_id="dupacked", stream=Stream.TELEMETRY)
    assert [m.payload for m in msgs] == [b"same", b"same"]
    await dev.close()


async def test_wrong_key_is_refused_with_connack_5_and_recorded(
    hub: RunningHub, kit: DeviceKit
) -> None:
    creds = await kit.create_sas("dev2")
    bad = SasCredentials(creds.hostname, "dev2", base64.b64encode(b"x" * 32).decode())
    with pytest.raises(ConnectRefused) as refused:
        await kit.connect(bad)
    assert refused.value.code == 5
    events = await wait_for_messages(hub, stream=Stream.SECURITY, where={"event": "auth-failed"})
    assert dict(events[0].properties)["reason"] == "bad-signature"
    assert hub.endpoint.connections() == []


async def test_expired_token_and_unknown_device_and_wrong_host(
    hub: RunningHub, kit: DeviceKit
) -> None:
    creds = await kit.create_sas("dev3")
    with pytest.raises(ConnectRefused) as refused:
        await TestDevice.connect(
            kit.host,
            kit.port,
            kit.ctx,
            client_id="dev3",
            username=creds.username(),
            password=creds.password(expiry=1000),
        )
    assert refused.value.code == 5
    ghost = SasCredentials(creds.hostname, "ghost", creds.key_b64)
    with pytest.raises(ConnectRefused):
        await kit.connect(ghost)
    elsewhere = SasCredentials("evil.example", "dev3", creds.key_b64)
    with pytest.raises(ConnectRefused):
        await kit.connect(elsewhere)
    reasons = {
        dict(m.properties)["reason"]
        for m in await wait_for_messages(
            hub, stream=Stream.SECURITY, count=3, where={"event": "auth-failed"}
        )
    }
    assert {"expired", "unknown-device", "wrong-hostname"} <= reasons


async def test_client_id_must_match_username_and_be_valid(hub: RunningHub, kit: DeviceKit) -> None:
    creds = await kit.create_sas("dev4")
    with pytest.raises(ConnectRefused) as refused:
        await TestDevice.connect(
            kit.host,
            kit.port,
            kit.ctx,
            client_id="other",
            username=creds.username(),
            password=creds.password(),
        )
    assert refused.value.code == 5
    for bad_id in ("dev#", "a/b/c", "a/", "+", "dev\x01"):
        with pytest.raises(ConnectRefused) as refused:
            await TestDevice.connect(
                kit.host,
                kit.port,
                kit.ctx,
                client_id=bad_id,
                username=creds.username(),
                password=creds.password(),
            )
        assert refused.value.code == 2


async def test_disabled_device_refused_and_disabling_drops_live_connection(
    hub: RunningHub, kit: DeviceKit
) -> None:
    creds = await kit.create_sas("dev5")
    dev = await kit.connect(creds)
    await hub.services.registry.set_state("dev5", DeviceState.DISABLED)
    assert await dev.wait_closed(timeout=1.0)
    with pytest.raises(ConnectRefused):
        await kit.connect(creds)
    await hub.services.registry.set_state("dev5", DeviceState.ENABLED)
    dev = await kit.connect(creds)
    await dev.ping()
    await dev.close()


async def test_key_rotation_keeps_the_other_key_working(hub: RunningHub, kit: DeviceKit) -> None:
    created = await hub.services.registry.create_device("rot")
    assert created.secondary_key is not None
    secondary = SasCredentials(hub.services.config.hostname, "rot", created.secondary_key)
    dev = await kit.connect(secondary)
    await hub.services.registry.rotate_key("rot", "primary")
    # The connection used the secondary key: it stays up.
    await dev.ping()
    new_secondary = await hub.services.registry.rotate_key("rot", "secondary")
    assert await dev.wait_closed(timeout=1.0)
    with pytest.raises(ConnectRefused):
        await kit.connect(secondary)
    dev = await kit.connect(SasCredentials(secondary.hostname, "rot", new_secondary))
    await dev.ping()
    await dev.close()


async def test_takeover_closes_the_older_connection(hub: RunningHub, kit: DeviceKit) -> None:
    creds = await kit.create_sas("twin")
    first = await kit.connect(creds)
    second = await kit.connect(creds)
    assert await first.wait_closed(timeout=2.0)
    await second.ping()
    events = await wait_for_messages(
        hub, device_id="twin", stream=Stream.LIFECYCLE, where={"event": "takeover"}
    )
    props = dict(events[0].properties)
    assert props["old_peer"] != props["new_peer"]
    await second.close()


@pytest.mark.parametrize(
    "topic",
    [
        "devices/other/messages/events/",
        "devices/dev6/messages/devicebound/",
        "$SYS/broker",
        "devices/dev6/modules/m/messages/events/",
    ],
)
async def test_publish_outside_namespace_closes_and_is_recorded(
    hub: RunningHub, kit: DeviceKit, topic: str
) -> None:
    creds = await kit.create_sas("dev6")
    dev = await kit.connect(creds)
    dev.send(Publish(topic=topic, payload=b"x", qos=1, packet_id=1))
    assert await dev.wait_closed()
    assert not any(isinstance(p, ConnAck) for p in dev._queue)
    events = await wait_for_messages(hub, stream=Stream.SECURITY, where={"event": "publish-denied"})
    assert events
    assert await hub.services.log.query(device_id="dev6", stream=Stream.TELEMETRY) == []
    # A canary device is unaffected.
    canary = await kit.connect(await kit.create_sas("canary"))
    await canary.publish(TOPIC.format("canary"), b"ok")
    await canary.close()


@pytest.mark.parametrize(
    "filters",
    [
        ("#",),
        ("devices/+/messages/devicebound/#",),
        ("devices/dev7/messages/devicebound/#", "devices/other/messages/devicebound/#"),
        ("$share/g/#",),
    ],
)
async def test_subscribe_outside_namespace_closes(
    hub: RunningHub, kit: DeviceKit, filters: tuple[str, ...]
) -> None:
    creds = await kit.create_sas("dev7")
    dev = await kit.connect(creds)
    from ironhub.codec.mqtt import Subscribe

    dev.send(Subscribe(1, tuple((f, 1) for f in filters)))
    assert await dev.wait_closed()
    events = await wait_for_messages(
        hub, stream=Stream.SECURITY, where={"event": "subscribe-denied"}
    )
    assert events


async def test_own_c2d_subscription_is_granted(hub: RunningHub, kit: DeviceKit) -> None:
    creds = await kit.create_sas("dev8")
    dev = await kit.connect(creds)
    ack = await dev.subscribe("devices/dev8/messages/devicebound/#")
    assert ack.return_codes == (1,)
    await dev.close()


async def test_connect_deadline_and_keepalive(hub_factory: HubFactory) -> None:
    hub = await hub_factory(mqtt_connect_timeout_seconds="0.3", mqtt_max_keepalive_seconds="1")
    kit = DeviceKit(hub)
    silent = await TestDevice.open(kit.host, kit.port, kit.ctx)
    assert await silent.wait_closed(timeout=3)
    creds = await kit.create_sas("idle")
    # Keep-alive 0 is clamped to the maximum (1 s): idle for 1.5 s closes the connection.
    dev = await kit.connect(creds, keep_alive=0)
    assert await dev.wait_closed(timeout=4)
    events = await wait_for_messages(
        hub, stream=Stream.SECURITY, where={"event": "connect-timeout"}
    )
    assert events


async def test_failed_auth_is_throttled_per_source(hub_factory: HubFactory) -> None:
    hub = await hub_factory(limits_auth_failures_per_source_per_minute="3")
    kit = DeviceKit(hub)
    creds = await kit.create_sas("brute")
    bad = SasCredentials(creds.hostname, "brute", base64.b64encode(b"y" * 32).decode())
    for _ in range(3):
        with pytest.raises(ConnectRefused):
            await kit.connect(bad)
    # Now even the right key is refused from this source, without checking it.
    with pytest.raises(ConnectRefused):
        await kit.connect(creds)
    events = await wait_for_messages(hub, stream=Stream.SECURITY, where={"reason": "throttled"})
    assert events


async def test_preauth_cap_per_source(hub_factory: HubFactory) -> None:
    hub = await hub_factory(mqtt_max_preauth_connections_per_source="2")
    kit = DeviceKit(hub)
    held = [await TestDevice.open(kit.host, kit.port, kit.ctx) for _ in range(2)]
    with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
        extra = await TestDevice.open(kit.host, kit.port, kit.ctx)
        await extra.ping()
    for dev in held:
        await dev.close()
    await asyncio.sleep(0.1)
    creds = await kit.create_sas("after-cap")
    dev = await kit.connect(creds)
    await dev.ping()
    await dev.close()


async def test_will_is_refused(hub: RunningHub, kit: DeviceKit) -> None:
    from ironhub.codec.mqtt import Will

    creds = await kit.create_sas("willdev")
    dev = await TestDevice.open(kit.host, kit.port, kit.ctx)
    dev.send(
        Connect(
            client_id="willdev",
            keep_alive_seconds=60,
            clean_session=True,
            username=creds.username(),
            password=creds.password(),
            will=Will("devices/willdev/messages/events/", b"bye", 1, False),
        )
    )
    ack = await dev.recv(ConnAck)
    assert isinstance(ack, ConnAck) and ack.return_code == ConnectReturnCode.NOT_AUTHORIZED
    assert await dev.wait_closed()


def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def test_x509_ca_signed_device(hub: RunningHub, kit: DeviceKit, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = pki.create_ca("factory CA", now=now)
    await hub.services.registry.add_ca(pki.certificate_pem(ca_cert).decode())
    await hub.services.registry.create_device("x509dev", AuthKind.X509_CA)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = pki.issue_device_certificate(ca_key, ca_cert, key.public_key(), "x509dev", now=now)
    certfile = _write_pem(tmp_path / "d.pem", pki.certificate_pem(cert))
    keyfile = _write_pem(tmp_path / "d.key", pki.private_key_pem(key))
    await asyncio.sleep(0.2)  # the TLS trust store is rebuilt after registry changes
    ctx = client_tls_context(hub.info.ca_path, certfile=certfile, keyfile=keyfile)
    username = f"{hub.services.config.hostname}/x509dev/?api-version=2019-10-01"
    dev = await TestDevice.connect(
        kit.host, kit.port, ctx, client_id="x509dev", username=username, password=None
    )
    await dev.publish(TOPIC.format("x509dev"), b"signed")
    await dev.close()
    # The same certificate cannot claim another identity.
    await hub.services.registry.create_device("x509other", AuthKind.X509_CA)
    with pytest.raises(ConnectRefused):
        await TestDevice.connect(
            kit.host,
            kit.port,
            ctx,
            client_id="x509other",
            username=f"{hub.services.config.hostname}/x509other/?api-version=2019-10-01",
            password=None,
        )


async def test_x509_thumbprint_device(hub: RunningHub, kit: DeviceKit, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    key, cert = pki.create_self_signed_device_certificate("selfdev", now=now)
    await hub.services.registry.create_device(
        "selfdev", AuthKind.X509_THUMBPRINT, certificates_pem=(pki.certificate_pem(cert).decode(),)
    )
    certfile = _write_pem(tmp_path / "s.pem", pki.certificate_pem(cert))
    keyfile = _write_pem(tmp_path / "s.key", pki.private_key_pem(key))
    await asyncio.sleep(0.2)
    ctx = client_tls_context(hub.info.ca_path, certfile=certfile, keyfile=keyfile)
    username = f"{hub.services.config.hostname}/selfdev/?api-version=2019-10-01"
    dev = await TestDevice.connect(
        kit.host, kit.port, ctx, client_id="selfdev", username=username, password=None
    )
    await dev.publish(TOPIC.format("selfdev"), b"thumb")
    await dev.close()
    # An unknown self-signed certificate fails the TLS handshake or authentication.
    other_key, other_cert = pki.create_self_signed_device_certificate("selfdev", now=now)
    ctx2 = client_tls_context(
        hub.info.ca_path,
        certfile=_write_pem(tmp_path / "o.pem", pki.certificate_pem(other_cert)),
        keyfile=_write_pem(tmp_path / "o.key", pki.private_key_pem(other_key)),
    )
    with pytest.raises((ConnectRefused, ssl.SSLError, ConnectionError)):
        await TestDevice.connect(
            kit.host, kit.port, ctx2, client_id="selfdev", username=username, password=None
        )


async def test_restart_keeps_devices_keys_and_messages(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    data = tmp_path / "persist"
    hub = await hub_factory(data_dir=data)
    kit = DeviceKit(hub)
    creds = await kit.create_sas("keeper")
    dev = await kit.connect(creds)
    await dev.publish(TOPIC.format("keeper"), b"before")
    await dev.close()
    await hub.stop()
    hub2 = await hub_factory(data_dir=data)
    assert hub2.info.first_admin_token is None
    kit2 = DeviceKit(hub2)
    dev = await kit2.connect(creds)
    await dev.publish(TOPIC.format("keeper"), b"after")
    await dev.close()
    msgs = await hub2.services.log.query(device_id="keeper", stream=Stream.TELEMETRY)
    assert [m.payload for m in msgs] == [b"before", b"after"]


async def test_removing_a_ca_drops_sessions_it_authenticated(
    hub: RunningHub, kit: DeviceKit, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = pki.create_ca("line CA", now=now)
    ca = await hub.services.registry.add_ca(pki.certificate_pem(ca_cert).decode())
    await hub.services.registry.create_device("x509gone", AuthKind.X509_CA)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = pki.issue_device_certificate(ca_key, ca_cert, key.public_key(), "x509gone", now=now)
    ctx = client_tls_context(
        hub.info.ca_path,
        certfile=_write_pem(tmp_path / "g.pem", pki.certificate_pem(cert)),
        keyfile=_write_pem(tmp_path / "g.key", pki.private_key_pem(key)),
    )
    await asyncio.sleep(0.2)
    username = f"{hub.services.config.hostname}/x509gone/?api-version=2019-10-01"
    dev = await TestDevice.connect(
        kit.host, kit.port, ctx, client_id="x509gone", username=username, password=None
    )
    await dev.ping()
    await hub.services.registry.remove_ca(ca.fingerprint)
    assert await dev.wait_closed(timeout=2.0)
    events = await wait_for_messages(
        hub, stream=Stream.SECURITY, where={"event": "session-revoked"}
    )
    assert events
