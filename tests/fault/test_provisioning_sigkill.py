"""SIGKILL of ``ironhub serve`` during provisioning: what a device was told survives (issue 5).

The real ``ironhub serve`` process and SQLite file; devices on ironhub's own DPS client over TLS.

* Every registration answered ``assigned`` before the kill is still assigned after the restart,
  and its credentials work at the hub: the group-derived SAS key, or the certificate issued
  from the device's CSR. A registration cut off by the kill either completed or left nothing
  half-made (the device registers again and gets assigned).
* A revocation answered by the API before the kill is still in force after it: the certificate
  is refused and the CRL lists it.

``IRONHUB_FAULT_CYCLES`` (default 1) repeats the kill; ``IRONHUB_FAULT_SEED`` replays the delays.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tests.support.dps_client import DpsClient, make_csr
from tests.support.mqtt_client import (
    ConnectRefused,
    SasCredentials,
    TestDevice,
    client_tls_context,
)
from tests.support.serve_process import FAST_LOAD_ENV, ServeProcess, init_data_dir

from ironhub import pki
from ironhub.codec import dps

CYCLES = int(os.environ.get("IRONHUB_FAULT_CYCLES", "1"))
SEED = int(os.environ.get("IRONHUB_FAULT_SEED", str(random.randrange(1 << 30))))
HUB_ENV = {**FAST_LOAD_ENV, "IRONHUB_PROVISIONING_MAX_POLLS_PER_WINDOW": "100000"}
KILL_DELAY = (0.3, 0.9)


def _derived_key(group_key_b64: str, registration_id: str) -> bytes:
    return dps.derive_device_key(base64.b64decode(group_key_b64), registration_id)


async def _register_many(
    hub: ServeProcess,
    id_scope: str,
    group_key: str,
    prefix: str,
    stop: threading.Event,
    assigned: dict[str, dict[str, object]],
    keys: dict[str, object],
) -> None:
    """Register devices (every third with a CSR) until ``stop`` or the hub goes away."""
    ctx = client_tls_context(hub.ca_path)
    host, port = hub.mqtt

    async def one(index: int) -> None:
        rid = f"{prefix}-{index}"
        csr = None
        if index % 3 == 0:
            key, csr = make_csr(rid)
            keys[rid] = key
        client = await DpsClient.connect(
            host,
            port,
            ctx,
            id_scope=id_scope,
            registration_id=rid,
            key=_derived_key(group_key, rid),
        )
        try:
            answer = await client.register(csr=csr)
        finally:
            await client.close()
        if answer.status == 200 and answer.body["status"] == "assigned":
            assigned[rid] = answer.body["registrationState"]

    index = 0
    while not stop.is_set():
        batch = [one(index + i) for i in range(8)]
        index += 8
        results = await asyncio.gather(*batch, return_exceptions=True)
        if any(isinstance(r, (OSError, ConnectionError, TimeoutError)) for r in results):
            return  # the hub is gone


async def _check_device(
    hub: ServeProcess,
    hostname: str,
    group_key: str,
    rid: str,
    state: dict[str, object],
    keys: dict[str, object],
    tmp_path: Path,
) -> None:
    ctx = client_tls_context(hub.ca_path)
    host, port = hub.mqtt
    chain = state.get("issuedCertificateChain")
    if chain:
        key = keys[rid]
        cert_path, key_path = tmp_path / f"{rid}.pem", tmp_path / f"{rid}.key"
        cert_path.write_bytes(
            b"".join(
                x509.load_der_x509_certificate(base64.b64decode(c)).public_bytes(
                    serialization.Encoding.PEM
                )
                for c in chain  # type: ignore[attr-defined]
            )
        )
        key_path.write_bytes(
            key.private_bytes(  # type: ignore[attr-defined]
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        device = await TestDevice.connect(
            host,
            port,
            client_tls_context(hub.ca_path, certfile=cert_path, keyfile=key_path),
            client_id=rid,
            username=f"{hostname}/{rid}/?api-version=2019-10-01",
            password=None,
            clean_session=True,
        )
    else:
        creds = SasCredentials(
            hostname, rid, base64.b64encode(_derived_key(group_key, rid)).decode()
        )
        device = await TestDevice.connect(
            host,
            port,
            ctx,
            client_id=rid,
            username=creds.username(),
            password=creds.password(),
            clean_session=True,
        )
    await device.close()


def test_assigned_registrations_and_revocations_survive_sigkill(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    init = init_data_dir(tmp_path / "data")
    with ServeProcess.start(init.data_dir, env=HUB_ENV) as hub:
        api = hub.api_client(init.token)
        group = api.request(
            "POST",
            "/provisioning/groups",
            json_body={"groupId": "line", "attestation": "symmetric"},
        )
        id_scope = api.request("GET", "/provisioning")["idScope"]
        group_key = group["primaryKey"]
        hub.kill()
    for cycle in range(CYCLES):
        with ServeProcess.start(init.data_dir, env=HUB_ENV) as hub:
            stop = threading.Event()
            assigned: dict[str, dict[str, object]] = {}
            keys: dict[str, object] = {}
            delay = rng.uniform(*KILL_DELAY)
            timer = threading.Timer(delay, lambda h=hub, s=stop: (h.kill(), s.set()))
            timer.start()
            try:
                asyncio.run(
                    _register_many(hub, id_scope, group_key, f"c{cycle}", stop, assigned, keys)
                )
            finally:
                timer.join()
        assert assigned, f"no registration completed before the kill (seed {SEED})"
        with ServeProcess.start(init.data_dir, env=HUB_ENV) as hub:
            api = hub.api_client(init.token)
            for rid, state in assigned.items():
                registration = api.request("GET", f"/provisioning/registrations/{rid}")
                assert registration["status"] == "assigned", (rid, SEED)
                asyncio.run(
                    _check_device(hub, init.hostname, group_key, rid, state, keys, tmp_path)
                )
            # A revocation the API answered is durable: revoke one issued certificate, kill.
            issued = [s for s in assigned.values() if s.get("issuedCertificateChain")]
            if not issued:
                continue
            leaf = x509.load_der_x509_certificate(
                base64.b64decode(issued[0]["issuedCertificateChain"][0])  # type: ignore[index]
            )
            serial = pki.certificate_serial_hex(leaf)
            api.request(
                "POST", f"/certificates/{serial}/revoke", json_body={"reason": "keyCompromise"}
            )
            hub.kill()
        with ServeProcess.start(init.data_dir, env=HUB_ENV) as hub:
            api = hub.api_client(init.token)
            record = api.request("GET", f"/certificates/{serial}")
            assert record["revocationReason"] == "keyCompromise", SEED
            rid = str(issued[0]["registrationId"])
            with pytest.raises(ConnectRefused):
                asyncio.run(
                    _check_device(hub, init.hostname, group_key, rid, issued[0], keys, tmp_path)
                )
