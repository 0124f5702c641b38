"""SIGKILL (and SIGTERM) of ``ironhub serve`` under QoS 1 load: no acknowledged message is lost.

SECURITY-TESTS.md §3.11 item 47 and §4 (RPO 0), end to end: the real ``ironhub serve`` process,
real TLS devices on ironhub's own codec, the real SQLite file. ``test_log_sigkill`` proves the
same property for the storage layer alone; this test adds everything between the socket and the
commit (endpoint, message log, PUBACK ordering) and the restart path (trust material, WAL
recovery, registry).

One cycle: four SAS devices publish QoS 1 with up to ``WINDOW`` publishes in flight each, every
payload unique (``device:n``). The test's ledger holds every payload written to a socket and
every payload whose PUBACK *arrived*. After a random delay the hub gets SIGKILL; the devices see
their connections drop. A new ``ironhub serve`` on the same data directory must come up, still
know the devices, and its log (read through ``GET /messages``) must hold every acknowledged
payload exactly once, and nothing that was never sent, nor anything twice. Payloads sent but not
acknowledged may be present (committed, PUBACK lost with the process) or absent; the test never
re-sends, so no DUP de-duplication is involved. The restarted hub is the next cycle's victim.

``IRONHUB_FAULT_CYCLES`` (default 3) sets the number of kill cycles, so a soak can reuse this
test; ``IRONHUB_FAULT_SEED`` replays the kill delays of a failed run (the seed is in every
failure message).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import os
import random
import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tests.support.mqtt_client import SasCredentials, TestDevice, client_tls_context
from tests.support.serve_process import (
    FAST_LOAD_ENV,
    HubInit,
    ServeProcess,
    create_sas_devices,
    init_data_dir,
)

from ironhub import pki
from ironhub.cli.client import HubClient
from ironhub.codec.mqtt import PubAck, Publish

DEVICE_IDS = [f"fault-dev-{i}" for i in range(4)]
TOPIC = "devices/{}/messages/events/"
#: QoS 1 publishes in flight per device (well below the hub's max_inflight_messages).
WINDOW = 32
CYCLES = int(os.environ.get("IRONHUB_FAULT_CYCLES", "3"))
#: The hub is killed this long after the load started (seconds), a different point each cycle.
KILL_DELAY = (0.3, 1.5)
#: A graceful stop must finish within this many seconds.
STOP_TIMEOUT = 5.0
#: Bound on any single wait for the hub during the load (a PUBACK, the drop after a kill).
IO_TIMEOUT = 10.0
#: Publishes per device that must be acknowledged after a restart.
AFTER_RESTART = 50
#: Up to this many stored messages every check re-reads the whole log (see ``_LogCheck``).
FULL_READ_LIMIT = 200_000


class LoadFailed(AssertionError):
    """A device's load ended in a way a kill does not explain."""


@dataclass
class Ledger:
    """What the devices sent and what the hub acknowledged, per device."""

    sent: dict[str, set[bytes]] = field(default_factory=lambda: collections.defaultdict(set))
    acked: dict[str, list[bytes]] = field(default_factory=lambda: collections.defaultdict(list))
    next_n: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))

    def acked_total(self) -> int:
        return sum(len(v) for v in self.acked.values())

    def sent_total(self) -> int:
        return sum(len(v) for v in self.sent.values())


# --- load ---------------------------------------------------------------------------------------

#: How a connection ends when the hub process dies or closes it (TimeoutError is not among
#: them: a hub that stops answering while alive is a failure).
_CUT = (ConnectionError, EOFError, asyncio.IncompleteReadError, ssl.SSLError, OSError)


async def _connect_all(hub: ServeProcess, creds: dict[str, SasCredentials]) -> list[TestDevice]:
    ctx = client_tls_context(hub.ca_path)
    host, port = hub.mqtt
    return list(
        await asyncio.gather(
            *(
                TestDevice.connect(
                    host,
                    port,
                    ctx,
                    client_id=c.device_id,
                    username=c.username(),
                    password=c.password(),
                )
                for c in creds.values()
            )
        )
    )


async def _publish(
    dev: TestDevice, device_id: str, ledger: Ledger, *, count: int | None = None
) -> None:
    """Publish QoS 1 with ``WINDOW`` in flight until ``count`` are acknowledged or the link drops.

    Raises:
        whatever ended the connection (see ``_CUT``), or AssertionError for a protocol fault.
    """
    topic = TOPIC.format(device_id)
    inflight: collections.deque[tuple[int, bytes]] = collections.deque()
    window = asyncio.Semaphore(WINDOW)

    async def send() -> None:
        sent = 0
        while count is None or sent < count:
            await window.acquire()
            n = ledger.next_n[device_id]
            ledger.next_n[device_id] = n + 1
            payload = f"{device_id}:{n}".encode()
            packet_id = dev.packet_id()
            inflight.append((packet_id, payload))
            ledger.sent[device_id].add(payload)
            dev.send(Publish(topic=topic, payload=payload, qos=1, packet_id=packet_id))
            await dev.writer.drain()
            sent += 1

    async def receive() -> None:
        received = 0
        while count is None or received < count:
            ack = await dev.recv(PubAck, timeout=IO_TIMEOUT)
            assert isinstance(ack, PubAck)
            assert inflight, f"{device_id}: PUBACK {ack.packet_id} for nothing in flight"
            packet_id, payload = inflight.popleft()
            # PUBACKs come in the order of the PUBLISHes [MQTT-4.6.0-2].
            assert ack.packet_id == packet_id, (
                f"{device_id}: PUBACK {ack.packet_id} out of order, expected {packet_id}"
            )
            ledger.acked[device_id].append(payload)
            received += 1
            window.release()

    async with asyncio.TaskGroup() as group:
        group.create_task(send())
        group.create_task(receive())


def _only_cuts(exc: BaseException) -> bool:
    """Whether ``exc`` (possibly a group) is nothing but connections cut by the hub."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cuts(e) for e in exc.exceptions)
    return isinstance(exc, _CUT) and not isinstance(exc, TimeoutError)


async def _load_then(
    hub: ServeProcess,
    creds: dict[str, SasCredentials],
    ledger: Ledger,
    delay: float,
    strike: Callable[[], None],
) -> None:
    """Run the load on every device, call ``strike`` after ``delay`` s, wait for every cut."""
    devices = await _connect_all(hub, creds)
    struck = False
    try:
        tasks = {
            asyncio.create_task(_publish(dev, device_id, ledger)): device_id
            for dev, device_id in zip(devices, creds, strict=True)
        }
        done, _ = await asyncio.wait(tasks, timeout=delay)
        for task in done:  # ended before the strike: nothing explains that
            raise LoadFailed(f"{tasks[task]}: load ended before the signal") from task.exception()
        assert hub.alive(), "the hub died during the load, before the signal"
        strike()
        struck = True
        done, pending = await asyncio.wait(tasks, timeout=IO_TIMEOUT)
        if pending:
            names = sorted(tasks[t] for t in pending)
            raise LoadFailed(f"connections of {names} still open {IO_TIMEOUT} s after the signal")
        for task in done:
            exc = task.exception()
            if exc is not None and not _only_cuts(exc):
                raise LoadFailed(f"{tasks[task]}: load failed after the signal") from exc
    finally:
        for dev in devices:
            if not struck:
                await dev.close()
            else:
                dev.writer.transport.abort()


async def _publish_after_restart(
    hub: ServeProcess, creds: dict[str, SasCredentials], ledger: Ledger
) -> None:
    """Every device reconnects and gets ``AFTER_RESTART`` publishes acknowledged."""
    devices = await _connect_all(hub, creds)
    try:
        async with asyncio.timeout(IO_TIMEOUT * 2):
            await asyncio.gather(
                *(
                    _publish(dev, device_id, ledger, count=AFTER_RESTART)
                    for dev, device_id in zip(devices, creds, strict=True)
                )
            )
    finally:
        for dev in devices:
            await dev.close()


# --- checks -------------------------------------------------------------------------------------


def _read_payloads(api: HubClient, device_id: str, after: int) -> tuple[list[bytes], int]:
    """The device's telemetry payloads with ``seq > after`` in log order, and the last seq."""
    payloads: list[bytes] = []
    while True:
        page = api.request(
            "GET",
            "/messages",
            query={"device": device_id, "stream": "telemetry", "after": after, "limit": 1000},
        )
        if not page["messages"]:
            return payloads, after
        payloads.extend(base64.b64decode(m["payload_base64"]) for m in page["messages"])
        after = page["next_after"]


def _device_registry(api: HubClient) -> dict[str, tuple[object, ...]]:
    devices = api.request("GET", "/devices", query={"limit": 1000})["devices"]
    return {d["device_id"]: (d["auth"], d["state"], d["version"], d["created_at"]) for d in devices}


@dataclass
class _LogCheck:
    """Checks the RPO 0 property against the ledger, reading the log through the API.

    Each check re-reads the whole log while it is small, so a restart that damaged older
    messages is caught. Beyond ``FULL_READ_LIMIT`` stored messages (long soaks) a check reads
    only what is new since the previous one, and ``full=True`` forces a complete re-read.
    """

    ledger: Ledger
    counts: dict[str, collections.Counter[bytes]] = field(default_factory=dict)
    cursors: dict[str, int] = field(default_factory=dict)

    def stored(self) -> int:
        return sum(c.total() for c in self.counts.values())

    def __call__(self, api: HubClient, why: Callable[[], str], *, full: bool = False) -> int:
        """Assert every acknowledged payload is stored once; return the number stored."""
        if full or self.stored() <= FULL_READ_LIMIT:
            self.counts.clear()
            self.cursors.clear()
        for device_id in DEVICE_IDS:
            counts = self.counts.setdefault(device_id, collections.Counter())
            new, self.cursors[device_id] = _read_payloads(
                api, device_id, self.cursors.get(device_id, 0)
            )
            counts.update(new)
            twice = sorted(p for p, c in counts.items() if c > 1)
            assert not twice, f"{device_id}: {len(twice)} payloads stored twice: {twice[:5]}{why()}"
            unknown = sorted(set(counts) - self.ledger.sent[device_id])
            assert not unknown, f"{device_id}: never sent but stored: {unknown[:5]}{why()}"
            missing = [p for p in self.ledger.acked[device_id] if p not in counts]
            assert not missing, (
                f"{device_id}: {len(missing)} of {len(self.ledger.acked[device_id])} "
                f"acknowledged payloads lost, first {missing[:5]}{why()}"
            )
        return self.stored()


@dataclass
class _Run:
    """The servers of one test, for failure messages."""

    seed: int
    #: The newest two: the victim and its successor (older ones are closed, for long soaks).
    servers: list[ServeProcess] = field(default_factory=list)
    started: int = 0
    log: list[str] = field(default_factory=list)

    def why(self) -> str:
        lines = [f"\nseed IRONHUB_FAULT_SEED={self.seed}", *self.log[-12:]]
        lines.extend(s.diagnostics() for s in self.servers)
        return "\n".join(lines)

    def start(self, init: HubInit) -> ServeProcess:
        for old in self.servers[:-1]:
            old.close()
        self.servers = self.servers[-1:]
        began = time.monotonic()
        hub = ServeProcess.start(init.data_dir, env=FAST_LOAD_ENV)
        self.servers.append(hub)
        self.started += 1
        self.log.append(
            f"hub {self.started} pid={hub.pid} ready in {time.monotonic() - began:.2f} s"
        )
        return hub

    def run(self, load: Coroutine[Any, Any, None]) -> None:
        """Run a load phase; a failure carries the hubs' stderr and the seed."""
        try:
            asyncio.run(load)
        except Exception as exc:
            raise AssertionError(f"{type(exc).__name__}: {exc}{self.why()}") from exc

    def close(self) -> None:
        for hub in self.servers:
            hub.close()


def _seed() -> int:
    text = os.environ.get("IRONHUB_FAULT_SEED")
    return int(text) if text else random.SystemRandom().randrange(2**32)


def _kill_delays(rng: random.Random, cycles: int) -> list[float]:
    """One delay per cycle, each from its own slice of ``KILL_DELAY``: different kill points."""
    low, high = KILL_DELAY
    step = (high - low) / cycles
    delays = [low + step * (i + rng.random()) for i in range(cycles)]
    rng.shuffle(delays)
    return delays


def _setup(tmp_path: Path, run: _Run) -> tuple[HubInit, ServeProcess, dict[str, SasCredentials]]:
    init = init_data_dir(tmp_path / "data")
    hub = run.start(init)
    creds = create_sas_devices(hub.api_client(init.token), init.hostname, DEVICE_IDS)
    return init, hub, creds


# --- tests --------------------------------------------------------------------------------------


@pytest.mark.timeout(max(120, 60 + 30 * CYCLES))
def test_acknowledged_messages_survive_sigkill_of_serve(tmp_path: Path) -> None:
    assert CYCLES >= 1, "IRONHUB_FAULT_CYCLES must be at least 1"
    run = _Run(seed=_seed())
    rng = random.Random(run.seed)
    ledger = Ledger()
    check = _LogCheck(ledger)
    try:
        init, hub, creds = _setup(tmp_path, run)
        registry = _device_registry(hub.api_client(init.token))
        assert sorted(registry) == DEVICE_IDS

        for cycle, delay in enumerate(_kill_delays(rng, CYCLES)):
            acked_before, sent_before = ledger.acked_total(), ledger.sent_total()
            victim = hub
            kill = functools.partial(os.kill, victim.pid, signal.SIGKILL)
            run.run(_load_then(victim, creds, ledger, delay, kill))
            returncode = victim.kill()
            acked = ledger.acked_total() - acked_before
            run.log.append(
                f"cycle {cycle}: SIGKILL after {delay:.2f} s, "
                f"{ledger.sent_total() - sent_before} sent, {acked} acknowledged"
            )
            assert returncode == -signal.SIGKILL, f"hub ended by itself: {returncode}{run.why()}"
            assert acked > 0, f"cycle {cycle}: nothing acknowledged before the kill{run.why()}"

            hub = run.start(init)  # restart on the same data directory
            api = hub.api_client(init.token)
            assert _device_registry(api) == registry, f"registry changed by the kill{run.why()}"
            stored = check(api, run.why)
            run.log.append(f"cycle {cycle}: {stored} stored after restart")

        # The devices carry on after the last restart, and the log is still exact.
        run.run(_publish_after_restart(hub, creds, ledger))
        check(hub.api_client(init.token), run.why, full=True)
        stopped = hub.terminate(timeout=STOP_TIMEOUT)
        assert stopped == 0, f"graceful stop after the kills: {stopped}{run.why()}"
    finally:
        print("\n".join(run.log[-40:]))  # shown by pytest -rP, and on failure
        run.close()


def test_acknowledged_messages_survive_sigterm_of_serve(tmp_path: Path) -> None:
    run = _Run(seed=_seed())
    rng = random.Random(run.seed)
    ledger = Ledger()
    try:
        init, hub, creds = _setup(tmp_path, run)
        registry = _device_registry(hub.api_client(init.token))
        delay = _kill_delays(rng, 1)[0]
        victim = hub
        signalled: list[float] = []

        def stop() -> None:
            signalled.append(time.monotonic())
            os.kill(victim.pid, signal.SIGTERM)

        run.run(_load_then(victim, creds, ledger, delay, stop))
        try:
            returncode: int | None = victim.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            returncode = None
        run.log.append(
            f"SIGTERM after {delay:.2f} s: {ledger.sent_total()} sent, "
            f"{ledger.acked_total()} acknowledged, exit {returncode} "
            f"{time.monotonic() - signalled[0]:.2f} s after the signal"
        )
        assert returncode == 0, f"SIGTERM did not stop the hub cleanly{run.why()}"
        assert ledger.acked_total() > 0, f"nothing acknowledged before SIGTERM{run.why()}"

        hub = run.start(init)
        api = hub.api_client(init.token)
        assert _device_registry(api) == registry, f"registry changed by the stop{run.why()}"
        check = _LogCheck(ledger)
        check(api, run.why)
        run.run(_publish_after_restart(hub, creds, ledger))
        check(api, run.why, full=True)
    finally:
        print("\n".join(run.log[-40:]))  # shown by pytest -rP, and on failure
        run.close()


def _new_server_key_old_certificate(data_dir: Path) -> None:
    # As after SIGKILL between writing the new server.key and replacing server.pem.
    (data_dir / "server.key").unlink()
    fd = os.open(data_dir / "server.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pki.private_key_pem(ec.generate_private_key(ec.SECP256R1())))


def _empty_server_key(data_dir: Path) -> None:
    # As after SIGKILL between creating server.key (O_EXCL) and writing it.
    (data_dir / "server.key").write_bytes(b"")


def _no_server_key(data_dir: Path) -> None:
    # As after SIGKILL between unlinking the old server.key and creating the new one.
    (data_dir / "server.key").unlink()


@pytest.mark.parametrize(
    "leave", [_new_server_key_old_certificate, _empty_server_key, _no_server_key]
)
def test_serve_restarts_after_sigkill_during_certificate_renewal(
    tmp_path: Path, leave: Callable[[Path], None]
) -> None:
    # The server certificate is re-issued at start (first start, new host name, expiry within
    # 30 days) by writing server.key, then server.pem. No timing lets a random SIGKILL land
    # between those writes reliably, so the states a kill leaves there are made directly.
    run = _Run(seed=0)
    try:
        init, hub, _ = _setup(tmp_path, run)
        registry = _device_registry(hub.api_client(init.token))
        assert hub.kill() == -signal.SIGKILL
        leave(init.data_dir)
        hub = run.start(init)  # raises, with the hub's stderr, if it refuses to start
        assert _device_registry(hub.api_client(init.token)) == registry, run.why()
    finally:
        run.close()
