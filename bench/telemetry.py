# Copyright 2026 the ironhub authors. SPDX-License-Identifier: Apache-2.0
"""Telemetry benchmark: ironhub against Mosquitto, same load, same machine, one run.

N devices connect over TLS and publish fixed-size QoS 1 messages, pipelined (a window of W
PUBLISHes in flight per connection), for D seconds after a warm-up. The load generator runs in
several processes, uses pre-encoded packets (only the 2-byte packet id is patched per message),
raw asyncio protocols over ``ssl`` with TCP_NODELAY and its own tiny PUBACK parser, so it does not
depend on ironhub's codec. Per target it reports sustained PUBACKed messages/s, PUBACK latency
(write of the PUBLISH to receipt of its PUBACK, per message), server CPU seconds per message
(``/proc/<pid>/stat`` utime+stime over the measured window, summed over the server's session),
server RSS, the generator processes' own CPU, and the ratios ironhub/Mosquitto.

Run: ``make bench`` or ``.venv/bin/python bench/telemetry.py --help``. Everything listens on
127.0.0.1 only; every child process is killed at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import gc
import hashlib
import hmac
import ipaddress
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
MOSQUITTO = "/usr/sbin/mosquitto"
IRONHUB = REPO / ".venv" / "bin" / "ironhub"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
API_VERSION = "2019-10-01"

# ---------------------------------------------------------------------------------------------
# MQTT 3.1.1 encoding: just what the generator needs, built once per connection.
# ---------------------------------------------------------------------------------------------

#: The 2-byte big-endian packet ids, pre-built so the hot path only indexes a list.
PACKET_IDS = [i.to_bytes(2, "big") for i in range(65536)]
DISCONNECT = b"\xe0\x00"
#: Packet ids of a buffer of whole PUBACKs (0x40 0x02 id-hi id-lo), decoded in C.
_PUBACK_IDS = struct.Struct(">2xH").iter_unpack


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _mqtt_str(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def encode_connect(
    client_id: str, username: str | None, password: str | None, keepalive: int, *, clean: bool
) -> bytes:
    """A CONNECT packet (MQTT 3.1.1, protocol level 4)."""
    flags = 0x02 if clean else 0x00
    payload = _mqtt_str(client_id.encode())
    if username is not None:
        flags |= 0x80
        payload += _mqtt_str(username.encode())
    if password is not None:
        flags |= 0x40
        payload += _mqtt_str(password.encode())
    body = _mqtt_str(b"MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big") + payload
    return b"\x10" + _varint(len(body)) + body


def publish_prefix(topic: str, payload_len: int) -> bytes:
    """Fixed header and topic of a QoS 1 PUBLISH; the packet id and payload follow it."""
    t = topic.encode()
    remaining = 2 + len(t) + 2 + payload_len
    return b"\x32" + _varint(remaining) + _mqtt_str(t)


def sas_token(hostname: str, device_id: str, key_b64: str, ttl_seconds: int = 3600) -> str:
    """An Azure IoT Hub device SAS token, as the device SDKs compute it."""
    sr = quote(f"{hostname}/devices/{device_id}", safe="")
    se = int(time.time()) + ttl_seconds
    digest = hmac.new(base64.b64decode(key_b64), f"{sr}\n{se}".encode(), hashlib.sha256).digest()
    sig = base64.b64encode(digest).decode()
    return f"SharedAccessSignature sr={sr}&sig={quote(sig, safe='')}&se={se}"


@dataclass(frozen=True)
class DeviceSpec:
    """What one generator connection needs to connect and publish."""

    client_id: str
    username: str | None
    password: str | None
    topic: str


# ---------------------------------------------------------------------------------------------
# Load generator (runs in worker processes).
# ---------------------------------------------------------------------------------------------


class BenchConnection(asyncio.Protocol):
    """One device: CONNECT, then keep ``window`` QoS 1 PUBLISHes in flight until told to stop."""

    def __init__(self, spec: DeviceSpec, cfg: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        self.spec = spec
        self.window: int = cfg["window"]
        self.payload: bytes = os.urandom(cfg["payload_bytes"])
        prefix = publish_prefix(spec.topic, len(self.payload))
        # A ring of pre-encoded PUBLISH packets with ids 1..ring_size, back to back: sending k
        # packets is one slice of it. ring_size > window, so ids in flight are unique.
        self.ring_size = min(65535, max(1024, 4 * self.window))
        self.packet_len = len(prefix) + 2 + len(self.payload)
        self.ring = b"".join(
            prefix + PACKET_IDS[pid] + self.payload for pid in range(1, self.ring_size + 1)
        )
        self.connect_packet = encode_connect(
            spec.client_id, spec.username, spec.password, cfg["keepalive"], clean=cfg["clean"]
        )
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[int] = loop.create_future()
        self.drained: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.buf = b""
        self.sent_at = [0.0] * (self.ring_size + 1)
        self.unexpected_acks = 0
        self.next_pid = 1
        self.inflight = 0
        self.running = False
        # Measurement window, in time.monotonic() (== loop.time()) seconds; set by start().
        self.m_start = 0.0
        self.m_end = 0.0
        self.send_end = 0.0
        self.sent_total = 0
        self.acked_total = 0
        self.acked_window = 0
        self.latencies = array("d")
        self.per_second = [0] * max(1, int(cfg["seconds"]) + 1)
        self.error: str | None = None
        self.tls_version: str | None = None
        self.cipher: str | None = None

    # asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            self.tls_version = sslobj.version()
            cipher = sslobj.cipher()
            self.cipher = cipher[0] if cipher else None
        transport.write(self.connect_packet)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.running and self.error is None and not self.drained.done():
            self.error = f"connection lost during the run: {exc!r}"
        if not self.connack.done():
            self.connack.set_exception(ConnectionError(f"connection lost before CONNACK: {exc!r}"))
        if not self.drained.done():
            self.drained.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        in_window = self.m_start <= now < self.m_end
        sent_at = self.sent_at
        acks = 0
        n = len(data)
        if (
            not self.buf
            and n % 4 == 0
            and not data[0::4].strip(b"\x40")
            and not data[1::4].strip(b"\x02")
        ):
            # Fast path: the chunk is whole PUBACKs only (the common case).
            append = self.latencies.append
            for (pid,) in _PUBACK_IDS(data):
                t = sent_at[pid] if pid < len(sent_at) else 0.0
                if t:
                    sent_at[pid] = 0.0
                    acks += 1
                    if in_window:
                        append(now - t)
                else:
                    self.unexpected_acks += 1
            self._acked(acks, now, in_window=in_window)
            return
        buf = self.buf + data if self.buf else data
        n = len(buf)
        i = 0
        while n - i >= 2:
            if buf[i] == 0x40 and buf[i + 1] == 0x02:  # PUBACK, the hot case
                if n - i < 4:
                    break
                pid = (buf[i + 2] << 8) | buf[i + 3]
                t = sent_at[pid] if pid < len(sent_at) else 0.0
                if t:
                    sent_at[pid] = 0.0
                    acks += 1
                    if in_window:
                        self.latencies.append(now - t)
                else:
                    self.unexpected_acks += 1
                i += 4
                continue
            # Any other packet: decode the remaining length generically.
            rl = 0
            mult = 1
            j = i + 1
            while True:
                if j >= n:
                    rl = -1
                    break
                b = buf[j]
                rl += (b & 0x7F) * mult
                j += 1
                if not b & 0x80:
                    break
                mult *= 128
                if j - i > 5:
                    self._fail("malformed remaining length from server")
                    return
            if rl < 0 or j + rl > n:
                break
            ptype = buf[i] >> 4
            if ptype == 2:  # CONNACK
                if not self.connack.done():
                    self.connack.set_result(buf[j + 1] if rl >= 2 else 255)
            elif ptype == 13:  # PINGRESP
                pass
            elif ptype == 4:
                self._fail(f"malformed PUBACK {bytes(buf[i : j + rl]).hex()}")
                return
            else:
                self._fail(f"unexpected packet type {ptype} from server")
                return
            i = j + rl
        self.buf = buf[i:]
        self._acked(acks, now, in_window=in_window)

    def _acked(self, acks: int, now: float, *, in_window: bool) -> None:
        if acks:
            self.inflight -= acks
            self.acked_total += acks
            if in_window:
                self.acked_window += acks
                k = int(now - self.m_start)
                if k < len(self.per_second):
                    self.per_second[k] += acks
            self._fill()

    # sending ----------------------------------------------------------------------------------

    def _fill(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if time.monotonic() >= self.send_end:
            self.running = False
            if self.inflight <= 0 and not self.drained.done():
                self.drained.set_result(None)
            return
        k = self.window - self.inflight
        if k <= 0:
            return
        ring, size, plen = self.ring, self.ring_size, self.packet_len
        pid = self.next_pid
        first = min(k, size + 1 - pid)  # packets before the ring wraps
        rest = k - first
        data = ring[(pid - 1) * plen : (pid - 1 + first) * plen]
        if rest:
            data += ring[: rest * plen]
        t = time.monotonic()
        transport.write(data)
        sent_at = self.sent_at
        sent_at[pid : pid + first] = [t] * first
        if rest:
            sent_at[1 : 1 + rest] = [t] * rest
            self.next_pid = 1 + rest
        else:
            self.next_pid = pid + first if pid + first <= size else 1
        self.inflight += k
        self.sent_total += k

    def start(self, m_start: float, m_end: float) -> None:
        self.m_start = m_start
        self.m_end = m_end
        self.send_end = m_end
        self.running = True
        self._fill()

    def _fail(self, why: str) -> None:
        if self.error is None:
            self.error = why
        if self.transport is not None:
            self.transport.abort()


async def _connect_one(
    spec: DeviceSpec, cfg: dict[str, Any], ctx: ssl.SSLContext
) -> BenchConnection:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(
        lambda: BenchConnection(spec, cfg),
        cfg["host"],
        cfg["port"],
        ssl=ctx,
        server_hostname=cfg["server_hostname"],
        ssl_handshake_timeout=10,
    )
    assert isinstance(proto, BenchConnection)
    rc = await asyncio.wait_for(proto.connack, 10)
    if rc != 0:
        raise ConnectionError(f"{spec.client_id}: CONNACK return code {rc}")
    return proto


def _client_context(cfg: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cfg["ca"])
    if cfg["tls"] == "1.2":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif cfg["tls"] == "1.3":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return ctx


async def _worker_async(conn: Any, cfg: dict[str, Any], specs: list[DeviceSpec]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    ctx = _client_context(cfg)
    protos = list(await asyncio.gather(*(_connect_one(s, cfg, ctx) for s in specs)))
    conn.send(("ready", {"tls": sorted({p.tls_version or "?" for p in protos})}))
    # The parent answers with a common start time (CLOCK_MONOTONIC is system-wide).
    if not await loop.run_in_executor(None, conn.poll, 60):
        raise TimeoutError("no start signal from the parent")
    msg = conn.recv()
    if msg[0] != "start":
        raise RuntimeError("aborted by the parent")
    t0, m_start, m_end = msg[1], msg[2], msg[3]
    await asyncio.sleep(max(0.0, t0 - time.monotonic()))
    for p in protos:
        p.start(m_start, m_end)
    await asyncio.sleep(max(0.0, m_end - time.monotonic()))
    for p in protos:
        p._fill()  # noqa: SLF001 - marks connections without pending acks as drained
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(p.drained for p in protos)), cfg["drain_timeout"])
    for p in protos:
        if p.transport is not None and not p.transport.is_closing():
            p.transport.write(DISCONNECT)
            p.transport.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(p.closed for p in protos)), 2)
    latencies = array("d")
    for p in protos:
        latencies.extend(p.latencies)
    per_second = [sum(col) for col in zip(*(p.per_second for p in protos), strict=True)]
    return {
        "devices": len(protos),
        "sent_total": sum(p.sent_total for p in protos),
        "acked_total": sum(p.acked_total for p in protos),
        "acked_window": sum(p.acked_window for p in protos),
        "unacked_at_end": sum(max(0, p.inflight) for p in protos),
        "unexpected_acks": sum(p.unexpected_acks for p in protos),
        "per_second": per_second,
        "latencies": latencies.tobytes(),
        "tls": sorted({p.tls_version or "?" for p in protos}),
        "ciphers": sorted({p.cipher or "?" for p in protos}),
        "errors": [f"{p.spec.client_id}: {p.error}" for p in protos if p.error],
    }


def worker_main(conn: Any, cfg: dict[str, Any], specs: list[DeviceSpec]) -> None:
    """Entry point of a generator process: run the load and send the result to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends us
    gc.disable()
    try:
        result = asyncio.run(_worker_async(conn, cfg, specs))
        conn.send(("result", result))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# /proc sampling (the parent).
# ---------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def session_pids(sid: int) -> list[int]:
    """Live processes in session ``sid`` (the server and anything it spawned)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """Sum of utime+stime (all threads) of ``pids``, in seconds."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def memory_kib(pids: list[int]) -> tuple[int, int]:
    """(VmRSS, VmHWM) summed over ``pids``, in KiB."""
    rss = hwm = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
    return rss, hwm


def machine_cpu_seconds() -> dict[str, float]:
    """Busy, total and irq+softirq CPU seconds of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return {
        "busy": (total - idle) / CLK_TCK,
        "total": total / CLK_TCK,
        "irq": (fields[5] + fields[6]) / CLK_TCK,
    }


def kernel_thread_seconds() -> float:
    """CPU seconds of kernel threads (children of kthreadd: I/O, journal, workqueues)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[1] == "2":
                total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def fs_type(path: Path) -> str:
    """File-system type of the mount that holds ``path`` (fsync costs depend on it)."""
    best, kind = "", "?"
    resolved = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) < 3 or len(parts[1]) < len(best):
            continue
        if resolved == parts[1] or resolved.startswith(parts[1].rstrip("/") + "/"):
            best, kind = parts[1], parts[2]
    return f"{kind} ({best})"


# ---------------------------------------------------------------------------------------------
# Servers.
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (there is a small race; the servers fail loudly if lost)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    """Wait until ``port`` accepts connections, or fail if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} is not listening on {HOST}:{port} after {timeout:.0f} s")


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 5.0) -> None:
    """SIGTERM the process group of ``proc`` (started with start_new_session), then SIGKILL."""
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    # Anything left in the group (also children of an already-exited leader) is killed.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(2)


def make_test_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost: (ca, cert, key) paths."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ironhub bench throwaway CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


@dataclass
class Target:
    """A running server under test."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    ca: Path
    server_hostname: str
    devices: list[DeviceSpec]
    persistence: str
    version: str
    log: Path
    #: Returns the server's Prometheus text (ironhub only), for commit statistics.
    scrape: Any = None


def mosquitto_version() -> str:
    """``mosquitto version X`` from ``mosquitto -h``."""
    try:
        out = subprocess.run(
            [MOSQUITTO, "-h"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.splitlines()[0].strip() if out else "?"


def start_mosquitto(workdir: Path, n_devices: int) -> Target:
    """Debian's mosquitto on a free loopback port, TLS listener, persistence on."""
    if not Path(MOSQUITTO).exists():
        raise RuntimeError(f"{MOSQUITTO} not found (apt-get install mosquitto)")
    d = workdir / "mosquitto"
    (d / "persist").mkdir(parents=True)
    ca, cert, key = make_test_pki(d)
    port = free_port()
    log = d / "mosquitto.log"
    user = "root" if os.geteuid() == 0 else None
    conf = d / "mosquitto.conf"
    lines = [
        "per_listener_settings false",
        # Anonymous only because the listener is bound to loopback for this benchmark.
        "allow_anonymous true",
        "persistence true",
        f"persistence_location {d / 'persist'}/",
        # Defaults, stated: snapshots every 1800 s, not per message.
        "autosave_interval 1800",
        "autosave_on_changes false",
        "max_inflight_messages 0",
        "max_queued_messages 1000000",
        "max_inflight_bytes 0",
        "max_queued_bytes 0",
        "max_keepalive 65535",
        f"log_dest file {log}",
        "log_type error",
        "log_type warning",
        "connection_messages false",
        f"listener {port} {HOST}",
        f"cafile {ca}",
        f"certfile {cert}",
        f"keyfile {key}",
        "require_certificate false",
    ]
    if user:
        lines.insert(0, f"user {user}")
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(d / "stderr.log").open("wb"),
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc, 10, "mosquitto")
    except BaseException:
        stop_process(proc)
        raise
    devices = [
        DeviceSpec(
            client_id=f"bench-{i}",
            username=f"localhost/bench-{i}/?api-version={API_VERSION}",
            password="unused",  # anonymous listener; the same CONNECT shape as for ironhub
            topic=f"devices/bench-{i}/messages/events/",
        )
        for i in range(n_devices)
    ]
    return Target(
        name="mosquitto",
        proc=proc,
        port=port,
        ca=ca,
        server_hostname=HOST,
        devices=devices,
        persistence=(
            f"persistence true (snapshot file in {fs_type(d)}; autosave_interval 1800 s): "
            "periodic snapshots, no per-message fsync; with no subscriber nothing is stored "
            "per message"
        ),
        version=mosquitto_version(),
        log=log,
    )


def _api_request(
    method: str, url: str, token: str, ctx: ssl.SSLContext, body: dict[str, Any] | None = None
) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, context=ctx, timeout=15) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def _api_text(url: str, token: str, ctx: ssl.SSLContext) -> str:
    req = urllib.request.Request(url)
    req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, context=ctx, timeout=15) as resp:
        return resp.read().decode()


def prometheus_values(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Unlabelled samples ``names`` from a Prometheus text exposition."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            with contextlib.suppress(ValueError):
                out[name] = float(value.split()[0])
    return out


COMMIT_SAMPLES = (
    "ironhub_commit_batch_size_sum",
    "ironhub_commit_batch_size_count",
    "ironhub_commit_seconds_sum",
    "ironhub_commit_seconds_count",
)


def _scrape(target: Target) -> dict[str, float] | None:
    if target.scrape is None:
        return None
    try:
        return prometheus_values(target.scrape(), COMMIT_SAMPLES)
    except Exception as exc:
        print(f"[{target.name}] /metrics not readable: {exc}", file=sys.stderr)
        return None


def commit_stats(
    before: dict[str, float] | None, after: dict[str, float] | None, wall: float
) -> dict[str, float] | None:
    """Group commits in the window: rate, mean batch, mean duration, writer duty cycle."""
    if not before or not after or len(before) < 4 or len(after) < 4:
        return None
    d = {k: after[k] - before[k] for k in COMMIT_SAMPLES}
    commits = d["ironhub_commit_seconds_count"]
    if commits <= 0 or wall <= 0:
        return None
    return {
        "commits_per_second": commits / wall,
        "mean_batch": d["ironhub_commit_batch_size_sum"] / d["ironhub_commit_batch_size_count"],
        "mean_commit_ms": d["ironhub_commit_seconds_sum"] / commits * 1e3,
        "writer_busy_fraction": d["ironhub_commit_seconds_sum"] / wall,
    }


def _ironhub_persistence(data: Path, env: dict[str, str]) -> str:
    try:
        from ironhub.config import load_config  # noqa: PLC0415 - optional at import

        st = load_config(data, environ=env).storage
        return (
            f"SQLite WAL message log in {fs_type(data)}, synchronous={st.synchronous}, group "
            f"commit (max batch {st.max_commit_batch}); PUBACK only after commit + fsync"
        )
    except Exception as exc:
        return f"SQLite WAL message log in {fs_type(data)} (config not readable: {exc})"


def start_ironhub(workdir: Path, n_devices: int, hostname: str) -> Target:
    """``ironhub init`` + ``serve`` on free loopback ports, then N SAS devices via the API."""
    if not IRONHUB.exists():
        raise RuntimeError(f"{IRONHUB} not found (make bench installs it)")
    data = workdir / "ironhub-data"
    log = workdir / "ironhub.log"
    env = dict(os.environ)
    env.update(
        {
            "IRONHUB_LIMITS_DEVICE_MESSAGES_PER_SECOND": "1000000000",
            "IRONHUB_LIMITS_DEVICE_MESSAGE_BURST": "1000000000",
            "IRONHUB_HOSTNAMES": hostname,
        }
    )
    init = subprocess.run(
        [str(IRONHUB), "init", "--data", str(data), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        start_new_session=True,
    )
    if init.returncode != 0:
        raise RuntimeError(
            f"ironhub init failed ({init.returncode}): {init.stderr.strip()[-2000:]}"
        )
    info = json.loads(init.stdout)
    token = info["first_admin_token"]
    ca = Path(info.get("ca_path") or data / "ca.pem")
    mqtt_port, api_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            str(IRONHUB),
            "serve",
            "--data",
            str(data),
            "--mqtt",
            f"{HOST}:{mqtt_port}",
            "--api",
            f"{HOST}:{api_port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        wait_for_port(api_port, proc, 60, "ironhub serve (API)")
        wait_for_port(mqtt_port, proc, 60, "ironhub serve (MQTT)")
        ctx = ssl.create_default_context(cafile=str(ca))
        base = f"https://{HOST}:{api_port}"
        devices = []
        for i in range(n_devices):
            device_id = f"bench-{i}"
            created = _api_request(
                "POST", f"{base}/devices", token, ctx, {"device_id": device_id, "auth": "sas"}
            )
            key = created.get("primary_key") or created.get("keys", {}).get("primary")
            if not key:
                raise RuntimeError(f"POST /devices answered without primary_key: {created!r}")
            devices.append(
                DeviceSpec(
                    client_id=device_id,
                    username=f"{hostname}/{device_id}/?api-version={API_VERSION}",
                    password=sas_token(hostname, device_id, key),
                    topic=f"devices/{device_id}/messages/events/",
                )
            )
    except BaseException:
        stop_process(proc)
        raise
    from ironhub import __version__  # noqa: PLC0415 - optional at import

    return Target(
        name="ironhub",
        proc=proc,
        port=mqtt_port,
        ca=ca,
        server_hostname=HOST,
        devices=devices,
        persistence=_ironhub_persistence(data, env),
        version=f"ironhub {__version__} ({git_revision()})",
        log=log,
        scrape=lambda: _api_text(f"{base}/metrics", token, ctx),
    )


def git_revision() -> str:
    """Short commit of the working tree (and whether it has local changes)."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return f"{rev or '?'}{'+local changes' if dirty else ''}"


# ---------------------------------------------------------------------------------------------
# One measured run against one target.
# ---------------------------------------------------------------------------------------------


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


def run_load(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    """Drive ``target`` with the configured load and measure it."""
    cfg = {
        "host": HOST,
        "port": target.port,
        "server_hostname": target.server_hostname,
        "ca": str(target.ca),
        "tls": args.tls,
        "window": args.window,
        "payload_bytes": args.payload_bytes,
        "seconds": args.seconds,
        "keepalive": 60,
        "clean": False,  # as the Azure device SDKs connect
        "drain_timeout": 5.0,
    }
    n_procs = max(1, min(args.procs, len(target.devices)))
    chunks = [target.devices[i::n_procs] for i in range(n_procs)]
    ctx = mp.get_context("spawn")
    workers: list[tuple[Any, Any]] = []
    try:
        for chunk in chunks:
            parent_end, child_end = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(child_end, cfg, chunk), daemon=True)
            p.start()
            child_end.close()
            workers.append((p, parent_end))
        tls: set[str] = set()
        for p, pipe in workers:
            if not pipe.poll(60):
                raise TimeoutError(f"generator {p.pid} did not connect within 60 s")
            kind, payload = pipe.recv()
            if kind != "ready":
                raise RuntimeError(f"{target.name}: generator failed: {payload}")
            tls.update(payload["tls"])

        server_pids = session_pids(target.proc.pid)
        worker_pids = [p.pid for p, _ in workers]
        t0 = time.monotonic() + 0.3
        m_start = t0 + args.warmup_seconds
        m_end = m_start + args.seconds
        for _, pipe in workers:
            pipe.send(("start", t0, m_start, m_end))

        time.sleep(max(0.0, m_start - time.monotonic()))
        server_pids = session_pids(target.proc.pid)
        metrics0 = _scrape(target)
        s_cpu0 = cpu_seconds(server_pids)
        w_cpu0 = [cpu_seconds([pid]) for pid in worker_pids]
        m0 = machine_cpu_seconds()
        k0 = kernel_thread_seconds()
        t_a = time.monotonic()
        # Sample RSS a few times during the window (its maximum is reported).
        rss_max = 0
        while (left := m_end - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            if time.monotonic() < m_end - 0.05:
                rss_max = max(rss_max, memory_kib(server_pids)[0])
        s_cpu1 = cpu_seconds(server_pids)
        w_cpu1 = [cpu_seconds([pid]) for pid in worker_pids]
        m1 = machine_cpu_seconds()
        k1 = kernel_thread_seconds()
        t_b = time.monotonic()
        rss_end, hwm = memory_kib(server_pids)
        rss_max = max(rss_max, rss_end)
        metrics1 = _scrape(target)

        results = []
        deadline = time.monotonic() + cfg["drain_timeout"] + 30
        for p, pipe in workers:
            if not pipe.poll(max(0.1, deadline - time.monotonic())):
                raise TimeoutError(f"generator {p.pid} sent no result")
            kind, payload = pipe.recv()
            if kind != "result":
                raise RuntimeError(f"{target.name}: generator failed: {payload}")
            results.append(payload)
        for p, _ in workers:
            p.join(5)
    finally:
        for p, pipe in workers:
            if p.is_alive():
                with contextlib.suppress(Exception):
                    pipe.send(("abort",))
                p.terminate()
                p.join(2)
                if p.is_alive():
                    p.kill()
                    p.join(2)
            pipe.close()

    wall = t_b - t_a
    latencies: list[float] = []
    for r in results:
        a = array("d")
        a.frombytes(r["latencies"])
        latencies.extend(a)
    latencies.sort()
    acked = sum(r["acked_window"] for r in results)
    per_second = [sum(col) for col in zip(*(r["per_second"] for r in results), strict=True)]
    per_second = per_second[: int(args.seconds)] or per_second
    server_cpu = s_cpu1 - s_cpu0
    nan = float("nan")
    machine_cores = (m1["busy"] - m0["busy"]) / wall if wall > 0 else nan
    total_cores = (m1["total"] - m0["total"]) / wall if wall > 0 else nan
    gen_cores = [(b - a) / wall if wall > 0 else nan for a, b in zip(w_cpu0, w_cpu1, strict=True)]
    server_cores = server_cpu / wall if wall > 0 else nan
    kthread_cores = (k1 - k0) / wall if wall > 0 else nan
    irq_cores = (m1["irq"] - m0["irq"]) / wall if wall > 0 else nan
    return {
        "target": target.name,
        "version": target.version,
        "tls": sorted(tls | {v for r in results for v in r["tls"]}),
        "ciphers": sorted({c for r in results for c in r["ciphers"]}),
        "persistence": target.persistence,
        "messages_per_second": acked / args.seconds,
        "acked_in_window": acked,
        "sent_total": sum(r["sent_total"] for r in results),
        "acked_total": sum(r["acked_total"] for r in results),
        "unacked_at_end": sum(r["unacked_at_end"] for r in results),
        "unexpected_acks": sum(r["unexpected_acks"] for r in results),
        "per_second_min": min(per_second) if per_second else 0,
        "per_second_max": max(per_second) if per_second else 0,
        "per_second": per_second,
        "latency_ms": {
            "p50": _percentile(latencies, 0.50) * 1e3,
            "p90": _percentile(latencies, 0.90) * 1e3,
            "p99": _percentile(latencies, 0.99) * 1e3,
            "p999": _percentile(latencies, 0.999) * 1e3,
            "max": (latencies[-1] * 1e3) if latencies else float("nan"),
            "samples": len(latencies),
        },
        "server_cpu_seconds": server_cpu,
        "server_cpu_cores": server_cores,
        "server_cpu_us_per_message": (server_cpu / acked * 1e6) if acked else float("nan"),
        "server_processes": len(server_pids),
        "server_rss_mib": rss_max / 1024,
        "server_rss_end_mib": rss_end / 1024,
        "server_rss_peak_hwm_mib": hwm / 1024,
        "generator_cpu_cores": gen_cores,
        "generator_cpu_us_per_message": (
            sum(b - a for a, b in zip(w_cpu0, w_cpu1, strict=True)) / acked * 1e6 if acked else nan
        ),
        "machine_busy_cores": machine_cores,
        "machine_cores": total_cores,
        "kernel_threads_cores": kthread_cores,
        "irq_softirq_cores": irq_cores,
        "other_processes_cores": machine_cores
        - server_cores
        - sum(gen_cores)
        - kthread_cores
        - irq_cores,
        "commits": commit_stats(metrics0, metrics1, wall),
        "errors": [e for r in results for e in r["errors"]],
    }


# ---------------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------------


def combine_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several rounds: the median of every figure (lists from the median round)."""
    if len(rounds) == 1:
        return {**rounds[0], "rounds": 1}
    by_tput = sorted(rounds, key=lambda r: r["messages_per_second"])
    out = dict(by_tput[len(by_tput) // 2])

    def med(values: list[Any]) -> Any:
        nums = [v for v in values if isinstance(v, (int, float)) and v == v]
        return statistics.median(nums) if nums else float("nan")

    for key, value in out.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = med([r[key] for r in rounds])
        elif isinstance(value, dict) and key in ("latency_ms", "commits"):
            out[key] = {k: med([(r[key] or {}).get(k) for r in rounds]) for k in value}
    out["generator_cpu_cores"] = [
        med(list(col)) for col in zip(*(r["generator_cpu_cores"] for r in rounds), strict=True)
    ]
    out["errors"] = [e for r in rounds for e in r["errors"]]
    out["rounds"] = len(rounds)
    out["per_round"] = [
        {
            "messages_per_second": r["messages_per_second"],
            "p50_ms": r["latency_ms"]["p50"],
            "p99_ms": r["latency_ms"]["p99"],
            "server_cpu_us_per_message": r["server_cpu_us_per_message"],
            "other_processes_cores": r["other_processes_cores"],
        }
        for r in rounds
    ]
    return out


def _fmt(v: float, spec: str) -> str:
    return "n/a" if v != v else format(v, spec)


def _ratio(a: float, b: float) -> float:
    return a / b if b and a == a and b == b else float("nan")


def report(summary: dict[str, Any]) -> str:
    """The human-readable result: load, per-target figures and ratios."""
    load = summary["load"]
    mach = summary["machine"]
    res = summary["results"]
    names = [n for n in ("ironhub", "mosquitto") if n in res]
    lines = [
        f"ironhub telemetry benchmark  {summary['timestamp']}",
        (
            f"load: {load['devices']} devices x window {load['window']} in flight, "
            f"{load['payload_bytes']}-byte payload, QoS 1, clean_session 0, "
            f"{load['seconds']:g} s measured after {load['warmup_seconds']:g} s warm-up, "
            f"{load['procs']} generator processes, TLS requested: {load['tls']}"
            + (
                f", {load['rounds']} rounds in alternating order (medians shown)"
                if load["rounds"] > 1
                else ""
            )
        ),
        (
            f"machine: nproc={mach['nproc']}, {mach['cpu']}, {mach['kernel']}, "
            f"Python {mach['python']}, OpenSSL {mach['openssl']}"
        ),
        "",
    ]
    col = 24
    header = f"{'':34}" + "".join(f"{n:>{col}}" for n in names)
    if len(names) == 2:
        header += f"{'ironhub/mosquitto':>{col}}"
    lines.append(header)

    def row(label: str, key: Any, spec: str, *, ratio: bool = False) -> None:
        vals = [key(res[n]) for n in names]
        text = f"{label:34}" + "".join(
            f"{v:>{col}}" if isinstance(v, str) else f"{_fmt(v, spec):>{col}}" for v in vals
        )
        if ratio and len(names) == 2:
            text += f"{_fmt(_ratio(vals[0], vals[1]), '.2f'):>{col}}"
        lines.append(text)

    row("TLS negotiated", lambda r: ",".join(r["tls"]), "")
    row("TLS cipher", lambda r: ",".join(r["ciphers"]), "")
    row("throughput (PUBACKed msg/s)", lambda r: r["messages_per_second"], ",.0f", ratio=True)
    row(
        "  slowest / fastest second",
        lambda r: f"{r['per_second_min']:,.0f}/{r['per_second_max']:,.0f}",
        "",
    )
    row("PUBACK latency p50 (ms)", lambda r: r["latency_ms"]["p50"], ".2f", ratio=True)
    row("PUBACK latency p99 (ms)", lambda r: r["latency_ms"]["p99"], ".2f", ratio=True)
    row(
        "PUBACK latency p99.9 / max (ms)",
        lambda r: f"{r['latency_ms']['p999']:.1f}/{r['latency_ms']['max']:.1f}",
        "",
    )
    row("server CPU per message (us)", lambda r: r["server_cpu_us_per_message"], ".1f", ratio=True)
    row("server CPU (cores busy)", lambda r: r["server_cpu_cores"], ".2f")
    row("server RSS (MiB, max in window)", lambda r: r["server_rss_mib"], ".1f", ratio=True)
    row(
        "generator CPU (cores, per proc)",
        lambda r: " ".join(f"{c:.2f}" for c in r["generator_cpu_cores"]),
        "",
    )
    row("generator CPU per message (us)", lambda r: r["generator_cpu_us_per_message"], ".1f")
    row("machine busy (cores of nproc)", lambda r: r["machine_busy_cores"], ".2f")
    row(
        "  kthreads / irq / other procs",
        lambda r: (
            f"{r['kernel_threads_cores']:.2f}/{r['irq_softirq_cores']:.2f}"
            f"/{r['other_processes_cores']:.2f}"
        ),
        "",
    )
    lines.append("")
    for n in names:
        r = res[n]
        lines.append(f"{n}: {r['version']}")
        lines.append(f"  persistence: {r['persistence']}")
        if r["errors"]:
            lines.append(f"  ERRORS: {'; '.join(r['errors'][:5])}")
        if r["unexpected_acks"]:
            lines.append(f"  {r['unexpected_acks']} PUBACKs for packet ids not in flight")
        if r["unacked_at_end"]:
            lines.append(f"  {r['unacked_at_end']} publishes unacknowledged 5 s after the run")
        if r.get("commits"):
            c = r["commits"]
            lines.append(
                f"  group commits: {c['commits_per_second']:,.0f}/s, mean batch "
                f"{c['mean_batch']:,.1f} messages, mean commit {c['mean_commit_ms']:.2f} ms, "
                f"writer thread committing {c['writer_busy_fraction']:.0%} of the time"
            )
        lines.append(f"  bottleneck: {bottleneck(r)}")
    ratios = summary.get("ratios_ironhub_over_mosquitto", {})
    if len(ratios.get("throughput_per_round", [])) > 1:
        per = " ".join(_fmt(x, ".2f") for x in ratios["throughput_per_round"])
        lines.append(f"throughput ratio ironhub/mosquitto per round: {per}")
    lines.append(
        "note: Mosquitto acknowledges QoS 1 from memory and persists by periodic snapshots (no "
        "per-message fsync; with no subscriber it stores nothing per message), while ironhub "
        "acknowledges only after the message is committed and fsynced to its log (group "
        "commit): the comparison favours Mosquitto."
    )
    lines.append(f"json: {summary['json_path']}")
    return "\n".join(lines)


def bottleneck(r: dict[str, Any]) -> str:
    """A one-line reading of the CPU figures: who limited the throughput."""
    gen = r["generator_cpu_cores"]
    busy, cores = r["machine_busy_cores"], r["machine_cores"]
    if max(gen, default=0.0) >= 0.9:
        return (
            "a generator process used >= 0.9 of a core: the generator may have limited this "
            "target; rerun with more --procs or fewer devices per process"
        )
    if r["server_cpu_cores"] >= 0.9:
        return (
            f"the server used {r['server_cpu_cores']:.2f} cores (one core is the limit of a "
            "single-threaded event loop); the generators had the rest"
        )
    if busy >= 0.95 * cores:
        return (
            f"all {cores:.0f} cores busy: server {r['server_cpu_cores']:.2f}, generators "
            f"{sum(gen):.2f}, kernel threads {r['kernel_threads_cores']:.2f}, irq/softirq "
            f"{r['irq_softirq_cores']:.2f}, other processes {r['other_processes_cores']:.2f} "
            "(the server got less than a core)"
        )
    return (
        f"neither CPU-bound (server {r['server_cpu_cores']:.2f} cores, machine {busy:.2f} of "
        f"{cores:.0f}): latency-bound (window too small?) or waiting on I/O (fsync)"
    )


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(
        description=(
            "Telemetry benchmark: N TLS devices publish pipelined QoS 1 messages to ironhub "
            "and to Mosquitto (started here on loopback ports); prints throughput, PUBACK "
            "latency, server CPU/message, RSS and the ratios ironhub/Mosquitto."
        )
    )
    p.add_argument("--devices", type=int, default=8, help="device connections (default 8)")
    p.add_argument("--window", type=int, default=64, help="QoS 1 publishes in flight per device")
    p.add_argument("--payload-bytes", type=int, default=256, help="payload size (default 256)")
    p.add_argument("--seconds", type=float, default=10.0, help="measured duration (default 10)")
    p.add_argument("--warmup-seconds", type=float, default=3.0, help="warm-up (default 3)")
    p.add_argument("--procs", type=int, default=2, help="generator processes (default 2)")
    p.add_argument("--target", choices=("both", "ironhub", "mosquitto"), default="both")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each target this many times, alternating the order; medians are reported",
    )
    p.add_argument("--tls", choices=("auto", "1.2", "1.3"), default="auto", help="TLS version")
    p.add_argument(
        "--hostname", default="localhost", help="hub host name used in SAS tokens (ironhub)"
    )
    p.add_argument(
        "--json-out", type=Path, default=None, help="result file (default bench/results/...)"
    )
    p.add_argument(
        "--workdir", type=Path, default=None, help="parent of the temp dirs (default $TMPDIR)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    args = p.parse_args(argv)
    if not 1 <= args.window <= 65000:
        p.error("--window must be between 1 and 65000")
    if args.devices < 1 or args.procs < 1 or args.payload_bytes < 0:
        p.error("--devices and --procs must be >= 1, --payload-bytes >= 0")
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    if args.seconds <= 0 or args.warmup_seconds < 0:
        p.error("--seconds must be > 0 and --warmup-seconds >= 0")
    return args


def _on_sigterm(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 if a target failed."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Also when started from a non-interactive shell, where SIGINT may be inherited as ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stamp = dt.datetime.now(dt.UTC)
    json_path = args.json_out or RESULTS_DIR / f"telemetry-{stamp:%Y%m%dT%H%M%SZ}.json"
    workdir = Path(tempfile.mkdtemp(prefix="ironhub-bench-", dir=args.workdir))
    order = {"both": ["mosquitto", "ironhub"], "ironhub": ["ironhub"], "mosquitto": ["mosquitto"]}
    summary: dict[str, Any] = {
        "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load": {
            "devices": args.devices,
            "window": args.window,
            "payload_bytes": args.payload_bytes,
            "qos": 1,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup_seconds,
            "procs": max(1, min(args.procs, args.devices)),
            "tls": args.tls,
            "order": order[args.target],
            "rounds": args.rounds,
        },
        "machine": {
            "nproc": len(os.sched_getaffinity(0)),
            "cpu": _cpu_model(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "openssl": ssl.OPENSSL_VERSION.replace("OpenSSL ", ""),
            "workdir_fs": fs_type(workdir),
        },
        "results": {},
        "failures": {},
        "json_path": str(json_path),
    }
    status = 0
    targets: dict[str, Target] = {}
    per_round: dict[str, list[dict[str, Any]]] = {}
    try:
        for name in order[args.target]:
            try:
                print(f"[{name}] starting ...", file=sys.stderr, flush=True)
                if name == "mosquitto":
                    targets[name] = start_mosquitto(workdir, args.devices)
                else:
                    targets[name] = start_ironhub(workdir, args.devices, args.hostname)
                per_round[name] = []
            except (Exception, urllib.error.URLError) as exc:
                status = 1
                summary["failures"][name] = f"{type(exc).__name__}: {exc}"
                print(f"[{name}] FAILED to start: {type(exc).__name__}: {exc}", file=sys.stderr)
        for rnd in range(args.rounds):
            # Alternate the order (A B, B A, ...) so drift on a noisy machine hits both.
            names = [n for n in order[args.target] if n in targets]
            for name in names if rnd % 2 == 0 else names[::-1]:
                if name in summary["failures"]:
                    continue
                target = targets[name]
                print(
                    f"[{name}] round {rnd + 1}/{args.rounds}: pid {target.proc.pid} on "
                    f"{HOST}:{target.port}; {args.warmup_seconds:g} s warm-up + "
                    f"{args.seconds:g} s measured ...",
                    file=sys.stderr,
                    flush=True,
                )
                try:
                    per_round[name].append(run_load(target, args))
                    if target.proc.poll() is not None:
                        raise RuntimeError(f"{name} exited with code {target.proc.returncode}")
                except (Exception, urllib.error.URLError) as exc:
                    status = 1
                    summary["failures"][name] = f"{type(exc).__name__}: {exc}"
                    print(f"[{name}] FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
                    if target.log.exists():
                        tail = target.log.read_text(errors="replace")[-2000:]
                        print(f"[{name}] log tail ({target.log}):\n{tail}", file=sys.stderr)
        for name, rounds in per_round.items():
            if rounds and name not in summary["failures"]:
                summary["results"][name] = combine_rounds(rounds)
        res = summary["results"]
        if "ironhub" in res and "mosquitto" in res:
            i, m = res["ironhub"], res["mosquitto"]
            summary["ratios_ironhub_over_mosquitto"] = {
                "throughput": _ratio(i["messages_per_second"], m["messages_per_second"]),
                "latency_p50": _ratio(i["latency_ms"]["p50"], m["latency_ms"]["p50"]),
                "latency_p99": _ratio(i["latency_ms"]["p99"], m["latency_ms"]["p99"]),
                "cpu_per_message": _ratio(
                    i["server_cpu_us_per_message"], m["server_cpu_us_per_message"]
                ),
                "rss": _ratio(i["server_rss_mib"], m["server_rss_mib"]),
                "throughput_per_round": [
                    _ratio(a["messages_per_second"], b["messages_per_second"])
                    for a, b in zip(per_round["ironhub"], per_round["mosquitto"], strict=False)
                ],
            }
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(summary, indent=2) + "\n")
        if res:
            print(report(summary))
        for name, why in summary["failures"].items():
            print(f"{name}: FAILED: {why}")
    finally:
        for target in targets.values():
            stop_process(target.proc)
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers and generators stopped", file=sys.stderr)
        sys.exit(130)
