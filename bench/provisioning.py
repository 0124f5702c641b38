# Copyright 2026 the ironhub authors. SPDX-License-Identifier: Apache-2.0
"""Provisioning benchmark: device registrations per second, symmetric group and CSR issuance.

Two measurements, both printed with the load that produced them:

* ``wire``: a hub runs in its own process (one core); a load process (the other core) runs C
  concurrent simulated devices, each doing what a real device does once: TLS handshake,
  CONNECT with the DPS username and its derived SAS token (HMAC-SHA256 of the group key over
  its registration id), SUBSCRIBE, register, status polls until assigned, DISCONNECT. With
  ``--csr`` each device also sends a fresh EC P-256 CSR (made before the clock starts) and
  the hub issues and stores its certificate. Every registration creates a device, its twin,
  its registration record and audit records in SQLite (``synchronous=FULL``).
* ``service``: the same registrations through the provisioning service in-process, without
  sockets or TLS (attest, begin, wait for the assignment): the ceiling of the service itself.

* ``mosquitto``: the same conversation on the wire against Debian's Mosquitto (TLS listener on
  loopback, as in bench/telemetry.py): TLS handshake, CONNECT, SUBSCRIBE, two QoS 1 requests
  each answered by one message (Mosquitto echoes them to the device's own subscription),
  DISCONNECT. A broker has no provisioning, so it stores nothing per conversation; the ratio
  shows what the transport alone costs in C against what ironhub does in Python.

The reference figure is Azure DPS's documented quota of 1,000 registrations per minute per
service. The issue's goal is >= 1,000 registrations/s on this machine.

Run: ``.venv/bin/python bench/provisioning.py [--devices N] [--concurrency C] [--csr]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import platform
import ssl
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ironhub.codec import dps, sas
from ironhub.codec.mqtt import (
    ConnAck,
    Connect,
    Disconnect,
    MQTTConnection,
    PubAck,
    Publish,
    Role,
    SubAck,
    Subscribe,
)
from ironhub.config import load_config
from ironhub.server import start_hub
from ironhub.storage.interfaces import Attestation

GROUP = "bench-group"


def _csrs(n: int, prefix: str) -> list[str]:
    key = ec.generate_private_key(ec.SECP256R1())  # one key: CSR signing time is the device's
    out = []
    for i in range(n):
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{prefix}{i}")]))
            .sign(key, hashes.SHA256())
        )
        out.append(base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode())
    return out


async def _hub_main(data_dir: Path, conn: Any) -> None:
    config = load_config(
        data_dir,
        environ={
            "IRONHUB_PROVISIONING_MAX_POLLS_PER_WINDOW": "1000000",
            "IRONHUB_MQTT_MAX_PREAUTH_CONNECTIONS_PER_SOURCE": "100000",
            "IRONHUB_MQTT_MAX_PREAUTH_CONNECTIONS": "100000",
            "IRONHUB_LIMITS_CONNECTIONS_PER_SOURCE_PER_SECOND": "1000000",
            "IRONHUB_LIMITS_AUTH_FAILURES_PER_SOURCE_PER_MINUTE": "1000000",
        },
        mqtt_bind="127.0.0.1:0",
        api_bind="127.0.0.1:0",
    )
    hub = await start_hub(config)
    assert hub.services.provisioning is not None
    group = await hub.services.provisioning.create_enrollment(
        GROUP, Attestation.SYMMETRIC, group=True
    )
    await asyncio.sleep(0.2)
    conn.send(
        {
            "address": hub.endpoint.address,
            "id_scope": hub.services.provisioning.id_scope,
            "group_key": group.primary_key,
            "ca": str(hub.info.ca_path),
        }
    )
    loop = asyncio.get_running_loop()
    cpu_started = time.process_time()
    await loop.run_in_executor(None, conn.recv)  # the load is done
    cpu = time.process_time() - cpu_started
    conn.send(
        {
            "hub_cpu_seconds": cpu,
            "devices": len(await hub.services.registry.list_devices(limit=1_000_000)),
            "certificates": len(
                await hub.services.provisioning.authority.list_certificates(limit=1_000_000)
            ),
        }
    )
    await hub.stop()


def hub_process(data_dir: str, conn: Any) -> None:
    asyncio.run(_hub_main(Path(data_dir), conn))


class _Device(asyncio.Protocol):
    """One simulated device's provisioning conversation, on ironhub's codec (client role)."""

    def __init__(self, rid: str, cfg: dict[str, Any], csr: str | None, done: asyncio.Future[bool]):
        self.rid = rid
        self.cfg = cfg
        self.csr = csr
        self.done = done
        self.codec = MQTTConnection(Role.CLIENT)
        self.transport: asyncio.Transport | None = None
        self.op: str | None = None
        self.echoes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.cfg.get("mosquitto"):
            transport.write(
                self.codec.send(
                    Connect(
                        client_id=self.rid,
                        keep_alive_seconds=60,
                        clean_session=True,
                        username=f"scope/registrations/{self.rid}/api-version=2019-03-31",
                        password=b"unused",
                    )
                )
            )
            return
        key = dps.derive_device_key(base64.b64decode(self.cfg["group_key"]), self.rid)
        uri = dps.dps_resource_uri(self.cfg["id_scope"], self.rid)
        token = sas.generate_sas_token(uri, key, int(time.time()) + 3600)
        transport.write(
            self.codec.send(
                Connect(
                    client_id=self.rid,
                    keep_alive_seconds=60,
                    clean_session=True,
                    username=f"{self.cfg['id_scope']}/registrations/{self.rid}/api-version=2019-03-31",
                    password=token.encode(),
                )
            )
        )

    def _send(self, packet: Any) -> None:
        assert self.transport is not None
        self.transport.write(self.codec.send(packet))

    def data_received(self, data: bytes) -> None:
        if self.cfg.get("mosquitto"):
            self._echo_conversation(data)
            return
        for packet in self.codec.receive_data(data):
            if isinstance(packet, ConnAck):
                if packet.return_code != 0:
                    self._finish(False)
                    return
                self._send(Subscribe(1, ((dps.RESPONSE_FILTER, 1),)))
            elif isinstance(packet, SubAck):
                body = dps.register_body(self.rid, None, csr=self.csr)
                self._send(Publish(dps.register_topic(str(uuid.uuid4())), body, qos=1, packet_id=2))
            elif isinstance(packet, PubAck):
                continue
            elif isinstance(packet, Publish):
                status, _, _ = dps.parse_response_topic(packet.topic)
                answer = json.loads(packet.payload)
                if status == 202:
                    self.op = answer.get("operationId", self.op)
                    assert self.op is not None
                    topic = dps.status_topic(str(uuid.uuid4()), self.op)
                    self._send(Publish(topic, b" ", qos=0))
                elif status == 429:
                    assert self.op is not None
                    asyncio.get_running_loop().call_later(
                        0.05,
                        self._send,
                        Publish(dps.status_topic(str(uuid.uuid4()), self.op), b" "),
                    )
                else:
                    self._finish(status == 200 and answer.get("status") == "assigned")

    def _echo_conversation(self, data: bytes) -> None:
        """The same packets against a broker: two requests, each echoed back as the answer."""
        for packet in self.codec.receive_data(data):
            if isinstance(packet, ConnAck):
                self._send(Subscribe(1, ((f"reg/{self.rid}/#", 1),)))
            elif isinstance(packet, SubAck):
                body = dps.register_body(self.rid, None, csr=self.csr)
                self._send(Publish(f"reg/{self.rid}/register", body, qos=1, packet_id=2))
            elif isinstance(packet, Publish):
                if packet.packet_id is not None:
                    self._send(PubAck(packet.packet_id))
                self.echoes += 1
                if self.echoes == 1:
                    self._send(Publish(f"reg/{self.rid}/status", b" ", qos=1, packet_id=3))
                else:
                    self._finish(True)

    def _finish(self, ok: bool) -> None:
        if not self.done.done():
            self.done.set_result(ok)
        if self.transport is not None:
            if ok:
                self._send(Disconnect())
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - protocol API
        if not self.done.done():
            self.done.set_result(False)


async def _load(
    cfg: dict[str, Any], ids: list[str], csrs: list[str] | None, concurrency: int
) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=cfg["ca"])
    loop = asyncio.get_running_loop()
    host, port = cfg["address"]
    queue = list(enumerate(ids))
    ok = failed = 0
    latencies: list[float] = []

    async def worker() -> None:
        nonlocal ok, failed
        while queue:
            index, rid = queue.pop()
            done: asyncio.Future[bool] = loop.create_future()
            started = time.perf_counter()
            try:
                csr = csrs[index] if csrs else None
                await loop.create_connection(
                    lambda rid=rid, csr=csr, done=done: _Device(rid, cfg, csr, done),
                    host,
                    port,
                    ssl=ctx,
                    server_hostname=cfg.get("server_hostname", "localhost"),
                )
                success = await asyncio.wait_for(done, 30)
            except (OSError, TimeoutError):
                success = False
            latencies.append(time.perf_counter() - started)
            ok += success
            failed += not success

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "ok": ok,
        "failed": failed,
        "seconds": elapsed,
        "rate": ok / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def run_wire(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ironhub-prov-bench-") as tmp:
        parent, child = mp.Pipe()
        proc = mp.get_context("spawn").Process(target=hub_process, args=(tmp, child))
        proc.start()
        try:
            cfg = parent.recv()
            ids = [f"bench-{'c' if args.csr else 's'}-{i}" for i in range(args.devices)]
            csrs = _csrs(args.devices, "bench-c-") if args.csr else None
            result = asyncio.run(_load(cfg, ids, csrs, args.concurrency))
            parent.send("done")
            result |= parent.recv()
        finally:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    return result


async def _service(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ironhub-prov-svc-") as tmp:
        config = load_config(Path(tmp), mqtt_bind="127.0.0.1:0", api_bind="127.0.0.1:0", environ={})
        hub = await start_hub(config)
        provisioning = hub.services.provisioning
        assert provisioning is not None
        group = await provisioning.create_enrollment(GROUP, Attestation.SYMMETRIC, group=True)
        assert group.primary_key is not None
        group_key = base64.b64decode(group.primary_key)
        ids = [f"svc-{i}" for i in range(args.devices)]
        csrs = _csrs(args.devices, "svc-") if args.csr else None
        tokens = []
        for rid in ids:
            key = dps.derive_device_key(group_key, rid)
            uri = dps.dps_resource_uri(provisioning.id_scope, rid)
            tokens.append(sas.generate_sas_token(uri, key, int(time.time()) + 3600).encode())
        semaphore = asyncio.Semaphore(args.concurrency)

        async def one(index: int, rid: str) -> bool:
            async with semaphore:
                username = dps.DpsUsername(provisioning.id_scope, rid, dps.DPS_API_VERSION)
                attested = await provisioning.attest(
                    username, password=tokens[index], certificate_der=None
                )
                body = dps.RegisterBody(rid, None, csrs[index] if csrs else None, None)
                operation = provisioning.begin(attested, body, source="127.0.0.1")
                await operation.done.wait()
                return operation.status == "assigned"

        started = time.perf_counter()
        results = await asyncio.gather(*(one(i, rid) for i, rid in enumerate(ids)))
        elapsed = time.perf_counter() - started
        await hub.stop()
    return {
        "ok": sum(results),
        "failed": len(results) - sum(results),
        "seconds": elapsed,
        "rate": sum(results) / elapsed,
    }


def run_mosquitto(args: argparse.Namespace) -> dict[str, Any]:
    """The same conversations against Mosquitto (bench/telemetry.py starts it)."""
    import telemetry  # noqa: PLC0415 - bench/ is the script's directory

    with tempfile.TemporaryDirectory(prefix="ironhub-prov-mosq-") as tmp:
        target = telemetry.start_mosquitto(Path(tmp), 1)
        try:
            cfg = {
                "address": (telemetry.HOST, target.port),
                "ca": str(target.ca),
                "mosquitto": True,
                "server_hostname": target.server_hostname,
            }
            ids = [f"bench-m-{i}" for i in range(args.devices)]
            csrs = _csrs(args.devices, "bench-m-") if args.csr else None
            before = telemetry.cpu_seconds([target.proc.pid])
            result = asyncio.run(_load(cfg, ids, csrs, args.concurrency))
            result["hub_cpu_seconds"] = telemetry.cpu_seconds([target.proc.pid]) - before
            result["version"] = target.version
        finally:
            telemetry.stop_process(target.proc)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=2000, help="registrations per run")
    parser.add_argument("--concurrency", type=int, default=64, help="devices in flight at once")
    parser.add_argument("--csr", action="store_true", help="each device sends a CSR (issuance)")
    parser.add_argument("--mode", choices=("wire", "service", "mosquitto", "all"), default="all")
    args = parser.parse_args()
    print(
        f"load: {args.devices} registrations, {args.concurrency} concurrent, symmetric group"
        f"{' + CSR issuance (EC P-256)' if args.csr else ''}; python {platform.python_version()}, "
        f"{os.cpu_count()} cores, {platform.machine()}"
    )
    wire: dict[str, Any] | None = None
    if args.mode in ("wire", "all"):
        wire = run_wire(args)
        print(
            f"wire (TLS 1.3 + MQTT + DPS, hub process on its own core): {wire['rate']:.0f} "
            f"registrations/s ({wire['ok']} ok, {wire['failed']} failed "
            f"in {wire['seconds']:.2f} s; "
            f"p50 {wire['p50_ms']:.0f} ms, p99 {wire['p99_ms']:.0f} ms per device; "
            f"hub holds {wire['devices']} devices, {wire['certificates']} issued certificates)"
        )
        per = wire["hub_cpu_seconds"] / max(1, wire["ok"])
        print(
            f"  hub CPU {per * 1000:.2f} ms per registration -> {1 / per:.0f} registrations per "
            "hub core-second (the load generator shares this 2-core machine)"
        )
    if args.mode in ("mosquitto", "all"):
        mosq = run_mosquitto(args)
        per = mosq["hub_cpu_seconds"] / max(1, mosq["ok"])
        print(
            f"mosquitto ({mosq['version']}), the same conversation, nothing stored: "
            f"{mosq['rate']:.0f} conversations/s ({mosq['ok']} ok, {mosq['failed']} failed; "
            f"p50 {mosq['p50_ms']:.0f} ms, p99 {mosq['p99_ms']:.0f} ms); broker CPU "
            f"{per * 1000:.2f} ms per conversation"
        )
        if wire is not None:
            print(
                f"  ratio ironhub/mosquitto: throughput {wire['rate'] / mosq['rate']:.2f}x, "
                f"server CPU per conversation "
                f"{(wire['hub_cpu_seconds'] / wire['ok']) / max(per, 1e-9):.1f}x"
            )
    if args.mode in ("service", "all"):
        service = asyncio.run(_service(args))
        print(
            f"service (in-process, no sockets): {service['rate']:.0f} registrations/s "
            f"({service['ok']} ok, {service['failed']} failed in {service['seconds']:.2f} s)"
        )
    print("reference: Azure DPS allows 1,000 registrations per minute per service (16.7/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
