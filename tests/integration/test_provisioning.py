"""Provisioning end to end over real sockets: DPS wire, enrollments, CSR issuance, claim tokens,
revocation that drops live sessions, renewal and the hostile CSR catalogue (issue 5).

Devices here are ironhub's own test client (tests/support/dps_client.py), which speaks the wire
as the Azure SDK does and can also send CSRs and claim tokens; the unmodified SDK is in
tests/interop/test_sdk_provisioning.py.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.support.dps_client import DpsClient, dps_password, dps_username, make_csr
from tests.support.hubkit import DeviceKit, HubFactory
from tests.support.mqtt_client import (
    ConnectRefused,
    SasCredentials,
    TestDevice,
    client_tls_context,
)
from tests.vectors.load import VECTORS_DIR

from ironhub import pki
from ironhub.codec.mqtt import PubAck, Publish
from ironhub.errors import NotFoundError
from ironhub.server import RunningHub
from ironhub.storage.interfaces import Attestation, AuthKind, ReprovisionPolicy, Stream

pytestmark = pytest.mark.asyncio

#: Polls are not throttled to Azure's budget in most tests (one is about the budget).
FAST = {"provisioning_max_polls_per_window": "1000"}


def _hub_ctx(hub: RunningHub, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    return client_tls_context(hub.info.ca_path, certfile=cert, keyfile=key)


async def _dps(
    hub: RunningHub,
    registration_id: str,
    *,
    key: bytes | None = None,
    ctx: ssl.SSLContext | None = None,
) -> DpsClient:
    host, port = hub.endpoint.address
    assert hub.services.provisioning is not None
    return await DpsClient.connect(
        host,
        port,
        ctx or _hub_ctx(hub),
        id_scope=hub.services.provisioning.id_scope,
        registration_id=registration_id,
        key=key,
    )


def _write_identity(
    tmp_path: Path, name: str, key: ec.EllipticCurvePrivateKey, chain_b64: list[str]
) -> tuple[Path, Path]:
    cert_path = tmp_path / f"{name}.pem"
    key_path = tmp_path / f"{name}.key"
    cert_path.write_bytes(
        b"".join(
            x509.load_der_x509_certificate(base64.b64decode(c)).public_bytes(
                serialization.Encoding.PEM
            )
            for c in chain_b64
        )
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def _connect_x509(hub: RunningHub, device_id: str, cert: Path, key: Path) -> TestDevice:
    host, port = hub.endpoint.address
    return await TestDevice.connect(
        host,
        port,
        _hub_ctx(hub, cert, key),
        client_id=device_id,
        username=f"{hub.services.config.hostname}/{device_id}/?api-version=2019-10-01",
        password=None,
        clean_session=True,
    )


async def _send_telemetry(device: TestDevice, device_id: str) -> None:
    packet_id = device.packet_id()
    device.send(
        Publish(f"devices/{device_id}/messages/events/", b"hello", qos=1, packet_id=packet_id)
    )
    ack = await device.recv(PubAck)
    assert ack.packet_id == packet_id


async def _audit(hub: RunningHub) -> list[dict[str, object]]:
    assert hub.services.audit is not None
    await hub.services.audit.drain()
    return [json.loads(body) for _, _, body in await hub.services.storage.read_audit(limit=100_000)]


async def test_individual_symmetric_enrollment_registers_and_connects(
    hub_factory: HubFactory,
) -> None:
    hub = await hub_factory(**FAST)
    provisioning = hub.services.provisioning
    assert provisioning is not None
    created = await provisioning.create_enrollment(
        "sensor-1",
        Attestation.SYMMETRIC,
        group=False,
        allocation_payload={"site": "north"},
    )
    assert created.primary_key is not None
    key = base64.b64decode(created.primary_key)
    client = await _dps(hub, "sensor-1", key=key)
    answer = await client.register()
    await client.close()
    assert answer.status == 200, answer
    state = answer.body["registrationState"]
    assert answer.body["status"] == "assigned"
    assert state["deviceId"] == "sensor-1"
    assert state["assignedHub"] == hub.services.config.hostname
    assert state["substatus"] == "initialAssignment"
    assert state["payload"] == {"site": "north"}

    # The same key now authenticates the device to the hub.
    kit = DeviceKit(hub)
    device = await kit.connect(
        SasCredentials(hub.services.config.hostname, "sensor-1", created.primary_key)
    )
    await _send_telemetry(device, "sensor-1")
    await device.close()
    registration = await provisioning.get_registration("sensor-1")
    assert registration.status == "assigned"
    assert registration.enrollment_id == "sensor-1"


async def test_group_key_derivation_initial_twin_and_reprovisioning(
    hub_factory: HubFactory,
) -> None:
    hub = await hub_factory(**FAST)
    provisioning = hub.services.provisioning
    twins = hub.services.twins
    assert provisioning is not None and twins is not None
    group = await provisioning.create_enrollment(
        "factory-a",
        Attestation.SYMMETRIC,
        group=True,
        initial_twin={"tags": {"line": "a"}, "properties": {"desired": {"interval": 30}}},
        reprovision=ReprovisionPolicy.RESET_TWIN,
    )
    derived = await provisioning.compute_device_key("factory-a", "meter-7")
    client = await _dps(hub, "meter-7", key=base64.b64decode(derived))
    answer = await client.register()
    await client.close()
    assert answer.status == 200 and answer.body["status"] == "assigned", answer
    twin = await twins.get("meter-7")
    assert twin.tags == {"line": "a"}
    assert twin.desired == {"interval": 30}

    # The device changes its twin; a later registration under reset-twin starts it over.
    await twins.update("meter-7", desired={"interval": 5}, tags={"extra": True})
    client = await _dps(hub, "meter-7", key=base64.b64decode(derived))
    answer = await client.register()
    await client.close()
    assert answer.body["registrationState"]["substatus"] == "deviceDataReset"
    twin = await twins.get("meter-7")
    assert twin.tags == {"line": "a"} and twin.desired == {"interval": 30}
    assert twin.desired_version > 2  # versions only grow

    # A key derived from the group's SECONDARY key works too; a key for another id does not.
    assert group.secondary_key is not None
    secondary = hmac.new(base64.b64decode(group.secondary_key), b"meter-8", hashlib.sha256).digest()
    client = await _dps(hub, "meter-8", key=secondary)
    assert (await client.register()).body["status"] == "assigned"
    await client.close()
    with pytest.raises(ConnectRefused) as refused:
        await _dps(hub, "meter-9", key=base64.b64decode(derived))
    assert refused.value.code == 5


async def test_csr_with_claim_token_issues_a_certificate_the_hub_accepts(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    hub = await hub_factory(**FAST)
    provisioning = hub.services.provisioning
    assert provisioning is not None
    await provisioning.create_enrollment("installers", Attestation.SYMMETRIC, group=True)
    token = await provisioning.create_claim_token(
        "installers", uses=1, lifetime_seconds=600, created_by="test"
    )
    key, csr = make_csr("cam-1")
    client = await _dps(hub, "cam-1")  # no credential at all: the claim token is the proof
    answer = await client.register(csr=csr, claim_token=token.secret)
    await client.close()
    assert answer.status == 200 and answer.body["status"] == "assigned", answer
    chain = answer.body["registrationState"]["issuedCertificateChain"]
    assert len(chain) == 2
    leaf = x509.load_der_x509_certificate(base64.b64decode(chain[0]))
    assert leaf.public_key() == key.public_key()
    assert leaf.subject.rfc4514_string() == "CN=cam-1"
    device = await hub.services.registry.get_device("cam-1")
    assert device.auth_kind is AuthKind.X509_CA

    cert_path, key_path = _write_identity(tmp_path, "cam-1", key, chain)
    device_conn = await _connect_x509(hub, "cam-1", cert_path, key_path)
    await _send_telemetry(device_conn, "cam-1")
    await device_conn.close()

    # The device's private key is nowhere in the hub's data directory (database, WAL, logs).
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    secret_scalar = key.private_numbers().private_value.to_bytes(32, "big")
    await hub.services.audit.drain() if hub.services.audit else None
    for path in hub.services.config.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert der not in data and secret_scalar not in data, path

    # Replaying the spent token is refused, with an audit record of each use and refusal.
    _, csr2 = make_csr("cam-2")
    client = await _dps(hub, "cam-2")
    answer = await client.register(csr=csr2, claim_token=token.secret)
    await client.close()
    assert answer.body["status"] == "failed"
    assert "exhausted" in answer.body["registrationState"]["errorMessage"]
    with pytest.raises(NotFoundError):
        await hub.services.registry.get_device("cam-2")
    actions = [(r["action"], r.get("outcome")) for r in await _audit(hub)]
    assert ("claim-token-used", "ok") in actions
    assert ("claim-token-refused", "refused") in actions
    assert ("certificate-issued", "ok") in actions


async def test_revocation_drops_the_live_session_and_refuses_reconnects(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    hub = await hub_factory(**FAST)
    provisioning = hub.services.provisioning
    assert provisioning is not None
    created = await provisioning.create_enrollment("lock-1", Attestation.SYMMETRIC, group=False)
    assert created.primary_key is not None
    key, csr = make_csr("lock-1")
    client = await _dps(hub, "lock-1", key=base64.b64decode(created.primary_key))
    answer = await client.register(csr=csr)
    await client.close()
    chain = answer.body["registrationState"]["issuedCertificateChain"]
    cert_path, key_path = _write_identity(tmp_path, "lock-1", key, chain)
    device = await _connect_x509(hub, "lock-1", cert_path, key_path)
    await _send_telemetry(device, "lock-1")

    serial = pki.certificate_serial_hex(x509.load_der_x509_certificate(base64.b64decode(chain[0])))
    started = time.monotonic()
    await provisioning.authority.revoke(serial, "keyCompromise")
    assert await device.wait_closed(1.0), "the session outlived the revocation by 1 s"
    assert time.monotonic() - started < 1.0
    with pytest.raises(ConnectRefused) as refused:
        await _connect_x509(hub, "lock-1", cert_path, key_path)
    assert refused.value.code == 5
    _, der = await provisioning.authority.crl()
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(provisioning.authority.certificate.public_key())
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    # A revoked certificate cannot renew itself through provisioning either.
    with pytest.raises(ConnectRefused):
        await _dps(hub, "lock-1", ctx=_hub_ctx(hub, cert_path, key_path))


async def test_renewal_with_the_current_certificate_supersedes_it(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    hub = await hub_factory(**FAST)
    provisioning = hub.services.provisioning
    assert provisioning is not None
    await provisioning.create_enrollment("fleet", Attestation.SYMMETRIC, group=True)
    token = await provisioning.create_claim_token(
        "fleet", uses=1, lifetime_seconds=600, created_by="test"
    )
    key, csr = make_csr("pump-1")
    client = await _dps(hub, "pump-1")
    first = await client.register(csr=csr, claim_token=token.secret)
    await client.close()
    cert_path, key_path = _write_identity(
        tmp_path, "old", key, first.body["registrationState"]["issuedCertificateChain"]
    )
    # Renewal: the current certificate is the proof; the new key never leaves the device.
    new_key, new_csr = make_csr("pump-1")
    client = await _dps(hub, "pump-1", ctx=_hub_ctx(hub, cert_path, key_path))
    second = await client.register(csr=new_csr)
    await client.close()
    assert second.body["status"] == "assigned", second
    new_chain = second.body["registrationState"]["issuedCertificateChain"]
    new_cert, new_key_path = _write_identity(tmp_path, "new", new_key, new_chain)
    device = await _connect_x509(hub, "pump-1", new_cert, new_key_path)
    await _send_telemetry(device, "pump-1")
    await device.close()
    old = x509.load_der_x509_certificate(
        base64.b64decode(first.body["registrationState"]["issuedCertificateChain"][0])
    )
    record = await provisioning.authority.get_certificate(pki.certificate_serial_hex(old))
    assert record.revocation_reason == "superseded"
    with pytest.raises(ConnectRefused):
        await _connect_x509(hub, "pump-1", cert_path, key_path)


async def test_disabling_an_enrollment_disconnects_its_devices_and_refuses_registration(
    hub_factory: HubFactory,
) -> None:
    hub = await hub_factory(**FAST)
    provisioning = hub.services.provisioning
    assert provisioning is not None
    await provisioning.create_enrollment("plant", Attestation.SYMMETRIC, group=True)
    key_b64 = await provisioning.compute_device_key("plant", "valve-1")
    client = await _dps(hub, "valve-1", key=base64.b64decode(key_b64))
    assert (await client.register()).body["status"] == "assigned"
    await client.close()
    device = await DeviceKit(hub).connect(
        SasCredentials(hub.services.config.hostname, "valve-1", key_b64)
    )
    _, disabled = await provisioning.set_enrollment_enabled("plant", group=True, enabled=False)
    assert disabled == ["valve-1"]
    assert await device.wait_closed(1.0)
    client = await _dps(hub, "valve-1", key=base64.b64decode(key_b64))
    answer = await client.register()
    await client.close()
    assert answer.status == 200
    assert answer.body["status"] == "disabled"
    assert "disabled" in answer.body["registrationState"]["errorMessage"]


async def test_a_device_not_provisioned_here_is_never_taken_over(hub_factory: HubFactory) -> None:
    hub = await hub_factory(**FAST)
    provisioning = hub.services.provisioning
    assert provisioning is not None
    await hub.services.registry.create_device("boiler")
    created = await provisioning.create_enrollment("boiler", Attestation.SYMMETRIC, group=False)
    assert created.primary_key is not None
    client = await _dps(hub, "boiler", key=base64.b64decode(created.primary_key))
    answer = await client.register()
    await client.close()
    assert answer.body["status"] == "failed"
    assert answer.body["registrationState"]["errorCode"] == 409201
    device = await hub.services.registry.get_device("boiler")
    assert device.version == 1  # its credentials are untouched


async def test_x509_individual_and_group_enrollments(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    hub = await hub_factory(**FAST)
    provisioning = hub.services.provisioning
    assert provisioning is not None
    now = dt.datetime.now(dt.UTC)
    # Individual: a self-signed device certificate registered as the enrollment's.
    own_key, own_cert = pki.create_self_signed_device_certificate("gauge-1", now=now)
    own_cert_path = tmp_path / "gauge.pem"
    own_key_path = tmp_path / "gauge.key"
    own_cert_path.write_bytes(pki.certificate_pem(own_cert))
    own_key_path.write_bytes(pki.private_key_pem(own_key))
    await provisioning.create_enrollment(
        "gauge-1",
        Attestation.X509,
        group=False,
        certificates_pem=[pki.certificate_pem(own_cert).decode()],
    )
    await asyncio.sleep(0.3)  # the TLS trust store is rebuilt after enrollment changes
    client = await _dps(hub, "gauge-1", ctx=_hub_ctx(hub, own_cert_path, own_key_path))
    answer = await client.register()
    await client.close()
    assert answer.body["status"] == "assigned", answer
    device = await _connect_x509(hub, "gauge-1", own_cert_path, own_key_path)
    await _send_telemetry(device, "gauge-1")
    await device.close()

    # Group: leaves of the group's CA, registration id = CN.
    ca_key, ca_cert = pki.create_ca("vendor CA", now=now)
    await provisioning.create_enrollment(
        "vendor",
        Attestation.X509,
        group=True,
        certificates_pem=[pki.certificate_pem(ca_cert).decode()],
    )
    await asyncio.sleep(0.3)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = pki.issue_device_certificate(ca_key, ca_cert, leaf_key.public_key(), "relay-1", now=now)
    leaf_path = tmp_path / "relay.pem"
    leaf_key_path = tmp_path / "relay.key"
    leaf_path.write_bytes(pki.certificate_pem(leaf))
    leaf_key_path.write_bytes(pki.private_key_pem(leaf_key))
    client = await _dps(hub, "relay-1", ctx=_hub_ctx(hub, leaf_path, leaf_key_path))
    answer = await client.register()
    await client.close()
    assert answer.body["status"] == "assigned", answer
    device = await _connect_x509(hub, "relay-1", leaf_path, leaf_key_path)
    await _send_telemetry(device, "relay-1")
    await device.close()
    # A leaf of that CA cannot register under another registration id.
    with pytest.raises(ConnectRefused):
        await _dps(hub, "relay-2", ctx=_hub_ctx(hub, leaf_path, leaf_key_path))


async def test_polling_faster_than_allowed_gets_429(hub_factory: HubFactory) -> None:
    hub = await hub_factory(provisioning_max_polls_per_window="2")
    provisioning = hub.services.provisioning
    assert provisioning is not None
    created = await provisioning.create_enrollment("fast-1", Attestation.SYMMETRIC, group=False)
    assert created.primary_key is not None
    client = await _dps(hub, "fast-1", key=base64.b64decode(created.primary_key))
    first = await client.request_register()
    assert first.status == 202 and first.retry_after == 2
    assert first.body["status"] == "assigning"
    operation_id = first.body["operationId"]
    await asyncio.sleep(0.3)  # the assignment finishes meanwhile
    statuses = [(await client.request_status(operation_id)).status for _ in range(3)]
    assert statuses[:2] == [200, 200] and statuses[2] == 429
    assert (await client.request_status("4.not-ours")).status in (404, 429)
    await client.close()


async def test_refusals_at_connect_are_clear_and_recorded(hub_factory: HubFactory) -> None:
    hub = await hub_factory(**FAST)
    provisioning = hub.services.provisioning
    assert provisioning is not None
    created = await provisioning.create_enrollment("probe-1", Attestation.SYMMETRIC, group=False)
    assert created.primary_key is not None
    host, port = hub.endpoint.address
    key = base64.b64decode(created.primary_key)
    for username, password in (
        (dps_username("0neWRONG", "probe-1"), dps_password("0neWRONG", "probe-1", key)),
        (
            dps_username(provisioning.id_scope, "probe-1"),
            dps_password(provisioning.id_scope, "probe-1", b"x" * 32),
        ),
    ):
        with pytest.raises(ConnectRefused) as refused:
            await TestDevice.connect(
                host,
                port,
                _hub_ctx(hub),
                client_id="probe-1",
                username=username,
                password=password,
                clean_session=True,
            )
        assert refused.value.code == 5
    wanted = {"wrong-id-scope", "bad-signature"}
    reasons: set[str | None] = set()
    for _ in range(50):  # security events are committed asynchronously
        events = await hub.services.storage.query_messages(stream=Stream.SECURITY, limit=100)
        reasons = {
            dict(m.properties).get("reason")
            for m in events
            if dict(m.properties).get("event") == "provisioning-refused"
        }
        if wanted <= reasons:
            break
        await asyncio.sleep(0.05)
    assert wanted <= reasons


@pytest.mark.parametrize(
    "vector",
    [v for v in json.loads((VECTORS_DIR / "csr_hostile.json").read_text()) if v["expect"] != "ok"],
    ids=lambda v: v["name"],
)
async def test_hostile_csrs_are_refused_and_nothing_is_issued(
    hub_factory: HubFactory, vector: dict[str, str]
) -> None:
    hub = await hub_factory(**FAST)
    provisioning = hub.services.provisioning
    assert provisioning is not None
    registration_id = vector["expected_common_name"]
    created = await provisioning.create_enrollment(
        registration_id, Attestation.SYMMETRIC, group=False
    )
    assert created.primary_key is not None
    raw = bytes.fromhex(vector["hex"])
    try:
        csr_text = raw.decode("ascii")
    except UnicodeDecodeError:
        csr_text = base64.b64encode(raw).decode("ascii")
    client = await _dps(hub, registration_id, key=base64.b64decode(created.primary_key))
    answer = await client.register(csr=csr_text)
    await client.close()
    if answer.status == 400:
        # Refused by the wire rules already (e.g. a CSR over the body's size limits).
        assert answer.body["errorCode"] == 400004
    else:
        assert answer.body["status"] == "failed", answer
        message = answer.body["registrationState"]["errorMessage"]
        assert f"({vector['expect']})" in message, message
    assert await provisioning.authority.list_certificates() == []
    with pytest.raises(NotFoundError):
        await hub.services.registry.get_device(registration_id)
    # Every refusal leaves a record: the failed registration in the audit log (with the
    # CSR's reason), or the wire refusal as a security event.
    records = await _audit(hub)
    if answer.status == 400:
        assert any(r["action"] == "provisioning-refused" for r in records)
    else:
        failed = [
            r
            for r in records
            if r["action"] == "provisioning-register" and r["outcome"] == "failed"
        ]
        assert failed and f"({vector['expect']})" in str(failed[-1]["reason"])


async def test_another_enrollment_cannot_reprovision_a_device(hub_factory: HubFactory) -> None:
    hub = await hub_factory(**FAST)
    provisioning = hub.services.provisioning
    assert provisioning is not None
    await provisioning.create_enrollment("group-a", Attestation.SYMMETRIC, group=True)
    await provisioning.create_enrollment("group-b", Attestation.SYMMETRIC, group=True)
    key_a = await provisioning.compute_device_key("group-a", "shared-id")
    key_b = await provisioning.compute_device_key("group-b", "shared-id")
    client = await _dps(hub, "shared-id", key=base64.b64decode(key_a))
    assert (await client.register()).body["status"] == "assigned"
    await client.close()
    # Whoever holds group B's key (or a claim token of it) cannot take the device over.
    client = await _dps(hub, "shared-id", key=base64.b64decode(key_b))
    answer = await client.register()
    await client.close()
    assert answer.body["status"] == "failed"
    assert "another enrollment" in answer.body["registrationState"]["errorMessage"]
    token = await provisioning.create_claim_token(
        "group-b", uses=1, lifetime_seconds=60, created_by="test"
    )
    _, csr = make_csr("shared-id")
    client = await _dps(hub, "shared-id")
    answer = await client.register(csr=csr, claim_token=token.secret)
    await client.close()
    assert answer.body["status"] == "failed"
    device = await DeviceKit(hub).connect(
        SasCredentials(hub.services.config.hostname, "shared-id", key_a)
    )
    await device.close()  # group A's key still works: nothing changed


def _intermediate(
    root_key: ec.EllipticCurvePrivateKey, root: x509.Certificate, now: dt.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """An intermediate CA under ``root`` (a vendor's issuing CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "vendor issuing")]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    return key, cert


async def test_x509_group_by_an_intermediate_ca(hub_factory: HubFactory, tmp_path: Path) -> None:
    hub = await hub_factory(**FAST)
    provisioning = hub.services.provisioning
    assert provisioning is not None
    now = dt.datetime.now(dt.UTC)
    root_key, root = pki.create_ca("vendor root", now=now)
    inter_key, inter = _intermediate(root_key, root, now)
    # Only the intermediate is registered: the root stays with the vendor.
    await provisioning.create_enrollment(
        "vendor-line",
        Attestation.X509,
        group=True,
        certificates_pem=[pki.certificate_pem(inter).decode()],
    )
    await asyncio.sleep(0.3)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = pki.issue_device_certificate(
        inter_key, inter, leaf_key.public_key(), "meter-77", now=now
    )
    cert_path, key_path = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    cert_path.write_bytes(pki.certificate_pem(leaf))
    key_path.write_bytes(pki.private_key_pem(leaf_key))
    client = await _dps(hub, "meter-77", ctx=_hub_ctx(hub, cert_path, key_path))
    answer = await client.register()
    await client.close()
    assert answer.body["status"] == "assigned", answer
    device = await _connect_x509(hub, "meter-77", cert_path, key_path)
    await _send_telemetry(device, "meter-77")
    await device.close()
    # A leaf of another CA under the same root is not admitted.
    other_key, other = _intermediate(root_key, root, now)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = pki.issue_device_certificate(
        other_key, other, stranger_key.public_key(), "meter-78", now=now
    )
    (tmp_path / "s.pem").write_bytes(pki.certificate_pem(stranger) + pki.certificate_pem(other))
    (tmp_path / "s.key").write_bytes(pki.private_key_pem(stranger_key))
    with pytest.raises((ConnectRefused, ConnectionError, ssl.SSLError)):
        await _dps(hub, "meter-78", ctx=_hub_ctx(hub, tmp_path / "s.pem", tmp_path / "s.key"))


async def test_a_duplicate_serial_is_refused_and_nothing_is_handed_out(
    hub_factory: HubFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = await hub_factory(**FAST)
    provisioning = hub.services.provisioning
    assert provisioning is not None
    # Random 159-bit serials never collide in practice; force one to see the refusal.
    monkeypatch.setattr(x509, "random_serial_number", lambda: 0x1234567890ABCDEF)
    for rid in ("dup-1", "dup-2"):
        created = await provisioning.create_enrollment(rid, Attestation.SYMMETRIC, group=False)
        assert created.primary_key is not None
        _, csr = make_csr(rid)
        client = await _dps(hub, rid, key=base64.b64decode(created.primary_key))
        answer = await client.register(csr=csr)
        await client.close()
        if rid == "dup-1":
            assert answer.body["status"] == "assigned", answer
        else:
            assert answer.body["status"] == "failed"
            assert "(duplicate-serial)" in answer.body["registrationState"]["errorMessage"]
            with pytest.raises(NotFoundError):
                await hub.services.registry.get_device("dup-2")
    certificates = await provisioning.authority.list_certificates()
    assert [c.device_id for c in certificates] == ["dup-1"]


async def test_a_key_that_cannot_be_unsealed_admits_nobody(hub_factory: HubFactory) -> None:
    hub = await hub_factory(**FAST)
    provisioning = hub.services.provisioning
    storage = hub.services.storage
    assert provisioning is not None
    await provisioning.create_enrollment("good", Attestation.SYMMETRIC, group=True)
    await provisioning.create_enrollment("tampered", Attestation.SYMMETRIC, group=True)
    single = await provisioning.create_enrollment("solo", Attestation.SYMMETRIC, group=False)
    assert single.primary_key is not None
    good_key = await provisioning.compute_device_key("good", "ok-1")
    bad_key = await provisioning.compute_device_key("tampered", "bad-1")
    # Someone with write access to the database flips a bit of two sealed keys.
    for enrollment_id, group in (("tampered", True), ("solo", False)):
        record = await storage.get_enrollment(enrollment_id, group=group)
        assert record is not None and record.primary_key_sealed is not None
        blob = bytearray(record.primary_key_sealed)
        blob[-1] ^= 1
        await storage.update_enrollment(
            dataclasses.replace(record, primary_key_sealed=bytes(blob), version=record.version + 1),
            expected_version=record.version,
        )
    for rid, key in (("bad-1", bad_key), ("solo", single.primary_key)):
        with pytest.raises(ConnectRefused):
            await _dps(hub, rid, key=base64.b64decode(key))
    client = await _dps(hub, "ok-1", key=base64.b64decode(good_key))  # the others still work
    assert (await client.register()).body["status"] == "assigned"
    await client.close()
