"""Hostile TLS clients on the device endpoint (SECURITY-TESTS.md §3.1 item 1).

Every hub here trusts a registered CA ("factory CA") with a registered CA-signed device
``x509dev``, so a refusal is about the certificate and not just "unknown device". Each attempt
must fail in the TLS handshake or be refused at CONNECT, before any session state is touched:
exactly one security event (``tls-handshake-failed`` or ``auth-failed``), no CONNACK 0, no
lifecycle event, no live connection.

Not covered: revoked certificates (the hub has no CRL/OCSP support yet), a chain deeper than
the maximum (Python 3.11 gives the hub only the leaf, so presented intermediates are never
used: any leaf not issued directly by a registered CA is refused, whatever the depth), and
non-UTF-8 subject names (``cryptography`` will not build them; the pure rule is unit-tested in
tests/unit/pki).
"""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tests.support.hostile import (
    HostileGuard,
    close_writer,
    lifecycle_events,
    open_raw,
    read_until_closed,
    security_events,
    wait_for_events,
    wait_until,
)
from tests.support.hubkit import HubFactory
from tests.support.mqtt_client import client_tls_context

from ironhub import pki
from ironhub.codec.mqtt import Connect, encode_packet
from ironhub.storage.interfaces import AuthKind

if TYPE_CHECKING:
    from pathlib import Path

    from ironhub.server import RunningHub

pytestmark = pytest.mark.asyncio

DEVICE = "x509dev"
CONNACK_5 = bytes.fromhex("20020005")
TLS_REFUSED = "tls-handshake-failed"
AUTH_REFUSED = "auth-failed"


def _leaf(
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate,
    common_name: str,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    usages: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A device-like certificate with the given validity and EKU (``pki`` would refuse these)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    return key, cert


@dataclass
class Attempt:
    """What the hostile client presents and which refusals are acceptable."""

    client_id: str
    key: ec.EllipticCurvePrivateKey | None
    cert: x509.Certificate | None
    refusals: frozenset[str]
    plain_tcp: bool = False


async def _setup(hub: RunningHub, case: str) -> Attempt:
    now = dt.datetime.now(dt.UTC)
    day = dt.timedelta(days=1)
    registry = hub.services.registry
    ca_key, ca_cert = pki.create_ca("factory CA", now=now)
    await registry.add_ca(pki.certificate_pem(ca_cert).decode())
    await registry.create_device(DEVICE, AuthKind.X509_CA)
    cas = 1
    either = frozenset({TLS_REFUSED, AUTH_REFUSED})
    match case:
        case "plain-tcp":
            attempt = Attempt(DEVICE, None, None, frozenset({TLS_REFUSED}), plain_tcp=True)
        case "no-client-certificate":
            attempt = Attempt(DEVICE, None, None, frozenset({AUTH_REFUSED}))
        case "unknown-ca":
            rogue_key, rogue = pki.create_ca("factory CA", now=now)  # Same name, other key.
            key, cert = _leaf(rogue_key, rogue, DEVICE, not_before=now - day, not_after=now + day)
            attempt = Attempt(DEVICE, key, cert, either)
        case "expired":
            key, cert = _leaf(
                ca_key, ca_cert, DEVICE, not_before=now - 30 * day, not_after=now - day
            )
            attempt = Attempt(DEVICE, key, cert, either)
        case "not-yet-valid":
            key, cert = _leaf(
                ca_key, ca_cert, DEVICE, not_before=now + day, not_after=now + 30 * day
            )
            attempt = Attempt(DEVICE, key, cert, either)
        case "server-auth-only":
            key, cert = _leaf(
                ca_key,
                ca_cert,
                DEVICE,
                not_before=now - day,
                not_after=now + day,
                usages=(ExtendedKeyUsageOID.SERVER_AUTH,),
            )
            attempt = Attempt(DEVICE, key, cert, either)
        case "wildcard-identity":
            key, cert = _leaf(ca_key, ca_cert, "x509*", not_before=now - day, not_after=now + day)
            attempt = Attempt(DEVICE, key, cert, either)
        case "self-signed-ca":
            # A self-signed CA:TRUE certificate, registered as a CA (so TLS may chain it to
            # itself) and named like a registered CA-signed device: it must not log in as it.
            key, cert = pki.create_ca("cadev", now=now)
            await registry.add_ca(pki.certificate_pem(cert).decode())
            await registry.create_device("cadev", AuthKind.X509_CA)
            cas = 2
            attempt = Attempt("cadev", key, cert, either)
        case _:
            raise AssertionError(case)
    # The TLS trust store is rebuilt in the background after registry changes.
    assert await wait_until(lambda: hub.endpoint.ssl_context().cert_store_stats()["x509_ca"] >= cas)
    return attempt


def _client_context(hub: RunningHub, attempt: Attempt, tmp_path: Path) -> ssl.SSLContext:
    if attempt.cert is None or attempt.key is None:
        return client_tls_context(hub.info.ca_path)
    certfile = tmp_path / "client.pem"
    keyfile = tmp_path / "client.key"
    certfile.write_bytes(pki.certificate_pem(attempt.cert))
    keyfile.write_bytes(pki.private_key_pem(attempt.key))
    return client_tls_context(hub.info.ca_path, certfile=certfile, keyfile=keyfile)


@pytest.mark.parametrize(
    "case",
    [
        "plain-tcp",
        "no-client-certificate",
        "unknown-ca",
        "expired",
        "not-yet-valid",
        "server-auth-only",
        "wildcard-identity",
        "self-signed-ca",
    ],
)
async def test_hostile_tls_client_is_refused_before_any_session(
    hub_factory: HubFactory, guard: HostileGuard, tmp_path: Path, case: str
) -> None:
    hub = await hub_factory()
    attempt = await _setup(hub, case)
    await guard.watch(hub)
    host, port = hub.endpoint.address
    username = f"{hub.services.config.hostname}/{attempt.client_id}/?api-version=2019-10-01"
    connect = encode_packet(
        Connect(client_id=attempt.client_id, keep_alive_seconds=60, username=username)
    )

    received = b""
    try:
        reader, writer = await open_raw(
            host,
            port,
            ssl_context=None if attempt.plain_tcp else _client_context(hub, attempt, tmp_path),
        )
    except (ssl.SSLError, ConnectionError):
        pass  # Refused in the handshake, as the client sees it (TLS 1.2, or a server alert).
    else:
        try:
            # With TLS 1.3 the client finishes first; the server's verdict on the client
            # certificate arrives as an alert on the next read. A plain-TCP client sends its
            # CONNECT in clear, where the ClientHello should be.
            writer.write(connect)
            await writer.drain()
            received, closed = await read_until_closed(reader, timeout=5)
        finally:
            await close_writer(writer)
        assert closed

    events = await wait_for_events(hub)
    assert len(events) == 1, events
    assert events[0]["event"] in attempt.refusals, events
    if events[0]["event"] == TLS_REFUSED:
        # Nothing was processed as MQTT: no CONNACK of any kind.
        assert not received.startswith(b"\x20"), received.hex()
    else:
        assert received == CONNACK_5, received.hex()
    # No session state: never registered, no lifecycle event, nothing live.
    assert hub.endpoint.connections() == []
    assert hub.endpoint.statistics().accepted_total == 0
    assert await lifecycle_events(hub, attempt.client_id) == []
    assert len(await security_events(hub)) == 1

    await guard.check(hub)
