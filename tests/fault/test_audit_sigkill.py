"""SIGKILL of ``ironhub serve`` under audit load: the chain verifies after restart (issue 4).

"Kill during append": the real ``ironhub serve`` process, the real SQLite file, real TLS
devices on ironhub's own codec and real HTTPS operator clients. Several sources append audit
records at once, through both ways the hub appends:

* operator API calls, recorded before they are answered (``await AuditLog.record``): device
  creates and disable/enable toggles (``operator-request`` before the handler runs, then the
  action with the device as target) and forged tokens (``operator-auth-failed``);
* device connection churn over MQTT/TLS and wrong-key connects, recorded without the connection
  waiting for the commit (``append_nowait``: ``connected``, ``disconnected``, ``auth-failed``).

Checkpoints are signed every few dozen records and every 0.2 s, and appended to a witness file,
so a kill can also land among checkpoint writes. After SIGKILL at a
random moment a new ``ironhub serve`` must start on the same data directory (it re-verifies
every stored record and checkpoint, and refuses a log that does not verify), and then:

1. ``GET /audit/export`` verifies intact offline (:func:`ironhub.audit.verify_export`, with the
   key from ``<data>/audit.pub``), positions are 0..n-1, and the export extends the previous
   one line for line (a restart never rewrites history);
2. every request answered before the kill (2xx, or 401 for a forged token) has its records,
   and each operator connection's records are exactly those of its answered requests in order,
   plus at most a prefix of those of its one unanswered request;
3. no created device lacks even the ``operator-request`` record of its creation (a privileged
   action never runs unrecorded), and every answered or recorded create made its device;
4. a device event the client saw answered before it sent an answered API request is in the log
   (records are committed as a prefix: a durable record makes every earlier one durable);
5. the hub records are ``hub-init``, then one ``hub-start`` per process, ``hub-stop`` only for a
   graceful stop: none for a killed process;
6. every line of the witness file is a signed checkpoint of the exported log.

A last cycle stops the hub with SIGTERM under the same load: it must exit 0 within
``STOP_TIMEOUT``, its last record must be ``hub-stop``, and a checkpoint (stored and witnessed)
must cover exactly every record up to it. At the end ``/audit/records`` must serve exactly the
exported records and ``/audit/checkpoint`` a checkpoint signed by the audit key.

``IRONHUB_FAULT_CYCLES`` (default 1) sets the number of SIGKILL cycles; ``IRONHUB_FAULT_SEED``
replays the signal delays of a failed run (the seed is in every failure message).
"""

from __future__ import annotations

import asyncio
import collections
import http.client
import io
import itertools
import json
import os
import random
import secrets
import signal
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from tests.support.mqtt_client import (
    SasCredentials,
    TestDevice,
    client_tls_context,
)
from tests.support.serve_process import (
    FAST_LOAD_ENV,
    HubInit,
    ServeProcess,
    create_sas_devices,
    init_data_dir,
)

from ironhub.audit import Checkpoint, parse_checkpoint_line, verify_checkpoint, verify_export
from ironhub.cli.client import HubClient
from ironhub.codec.mqtt import ConnAck, Connect, ConnectReturnCode

CYCLES = int(os.environ.get("IRONHUB_FAULT_CYCLES", "1"))
#: The signal comes this long after the load started (seconds), a different point each cycle.
KILL_DELAY = (0.3, 1.5)
#: Bound on any single wait for the hub (an answer, the drop after a signal).
IO_TIMEOUT = 10.0
#: A graceful stop must finish within this many seconds.
STOP_TIMEOUT = 5.0
#: Generous bound on a restart, spawn to the MQTT port accepting TLS (it verifies the log).
RESTART_BOUND = 30.0
#: Requests per operator connection and cycle, at most (the signal comes first).
MAX_REQUESTS = 5000

#: Limits out of the way (the load authenticates wrongly on purpose, from few addresses), and
#: checkpoints often, so that kills land among checkpoint writes too.
HUB_ENV = {
    **FAST_LOAD_ENV,
    "IRONHUB_LIMITS_AUTH_FAILURES_PER_SOURCE_PER_MINUTE": "1000000",
    "IRONHUB_LIMITS_AUTH_FAILURES_PER_IDENTITY_PER_MINUTE": "1000000",
    "IRONHUB_LIMITS_CONNECTIONS_PER_SOURCE_PER_SECOND": "0",
    "IRONHUB_AUDIT_CHECKPOINT_INTERVAL_RECORDS": "48",
    "IRONHUB_AUDIT_CHECKPOINT_INTERVAL_SECONDS": "0.2",
}

#: Devices that connect and disconnect in a loop, one connection at a time each.
CHURN_DEVICES = [f"churn-{i}" for i in range(3)]
#: The device whose identity wrong-key connects claim.
INTRUDED = "intruded"
#: Devices the operator disables and enables in turn.
TOGGLED = ["toggled-0", "toggled-1"]
#: Operator connections creating devices.
CREATORS = 2

#: ``(actor_kind, actor, action, target, outcome)`` of an audit record.
Fields = tuple[str, str, str, str, str]

#: The CONNACK codes that refuse a wrong key.
_WRONG_KEY = (ConnectReturnCode.BAD_USERNAME_OR_PASSWORD, ConnectReturnCode.NOT_AUTHORIZED)
#: How a connection ends when the hub process dies or stops.
_CUT = (ConnectionError, EOFError, asyncio.IncompleteReadError, ssl.SSLError, OSError)


def _fields(record: dict[str, Any]) -> Fields:
    return (
        record["actor_kind"],
        record["actor"],
        record["action"],
        record["target"],
        record["outcome"],
    )


# --- ledger -------------------------------------------------------------------------------------


@dataclass
class _Request:
    """One operator request: the records it must leave, and its answer (``None``: none)."""

    peer: str
    what: str
    expect: tuple[Fields, ...]
    ok: int
    sent_at: float
    #: The device a create makes.
    creates: str | None = None
    status: int | None = None
    #: How many of ``expect`` the exported log holds (set by the checks).
    stored: int = 0

    @property
    def answered(self) -> bool:
        return self.status == self.ok


@dataclass(frozen=True)
class _Seen:
    """A device event whose record the hub appended before the device got its CONNACK."""

    seen_at: float
    action: str
    actor: str
    source: str


@dataclass
class _Phase:
    """The load on one hub process, from its first load record to its end."""

    serve_run: int
    ending: str  # "killed" or "stopped"
    load_from: int
    requests: list[_Request] = field(default_factory=list)
    seen: list[_Seen] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: _Request) -> None:
        with self.lock:
            self.requests.append(request)

    def fail(self, text: str) -> None:
        with self.lock:
            self.failures.append(text)

    def summary(self) -> str:
        # Answered requests by their last record's action.
        answered = collections.Counter(r.expect[-1][2] for r in self.requests if r.answered)
        seen = collections.Counter(s.action for s in self.seen)
        return (
            f"{len(self.requests)} requests sent, answered {dict(sorted(answered.items()))}; "
            f"device events seen {dict(sorted(seen.items()))}"
        )


# --- hubs ---------------------------------------------------------------------------------------


@dataclass
class _Run:
    """The hub processes of the test, the signal delays, and a log for failure messages."""

    seed: int
    init: HubInit
    witness: Path
    #: The newest two: the victim and its successor (older ones are closed, for long soaks).
    servers: list[ServeProcess] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)

    def why(self) -> str:
        lines = [f"\nseed IRONHUB_FAULT_SEED={self.seed}", *self.log[-16:]]
        lines.extend(s.diagnostics() for s in self.servers)
        return "\n".join(lines)

    def delays(self, cycles: int) -> list[float]:
        """One delay per cycle, each from its own slice of ``KILL_DELAY``."""
        rng = random.Random(self.seed)
        low, high = KILL_DELAY
        step = (high - low) / cycles
        delays = [low + step * (i + rng.random()) for i in range(cycles)]
        rng.shuffle(delays)
        return delays

    def start(self) -> ServeProcess:
        """Start a hub on the data directory (it raises, with stderr, if the hub refuses)."""
        for old in self.servers[:-1]:
            old.close()
        self.servers = self.servers[-1:]
        began = time.monotonic()
        env = {**HUB_ENV, "IRONHUB_AUDIT_WITNESS_PATH": str(self.witness)}
        hub = ServeProcess.start(self.init.data_dir, env=env, ready_timeout=RESTART_BOUND)
        took = time.monotonic() - began
        self.servers.append(hub)
        self.restarts.append(took)
        self.log.append(f"hub {len(self.restarts)} pid={hub.pid} ready in {took:.2f} s")
        return hub

    def api(self, hub: ServeProcess) -> HubClient:
        return hub.api_client(self.init.token, timeout=IO_TIMEOUT)

    def run(self, coro: Any) -> Any:
        """Run an async phase; a failure carries the hubs' stderr and the seed."""
        try:
            return asyncio.run(coro)
        except AssertionError as exc:
            raise AssertionError(f"{exc}{self.why()}") from exc
        except Exception as exc:
            raise AssertionError(f"{type(exc).__name__}: {exc}{self.why()}") from exc

    def close(self) -> None:
        if self.restarts:
            self.log.append(
                f"hub starts: {len(self.restarts)}, spawn to ready max "
                f"{max(self.restarts):.2f} s, mean {sum(self.restarts) / len(self.restarts):.2f} s"
            )
        print("\n".join(self.log[-60:]))  # shown by pytest -rP, and on failure
        for hub in self.servers:
            hub.close()


# --- operator load ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    method: str
    path: str
    body: dict[str, str] | None
    token: str
    ok: int
    expect: tuple[Fields, ...]
    what: str
    creates: str | None = None


def _creates(token: str, admin: str, serve_run: int, worker: int) -> Iterator[_Job]:
    for n in itertools.count():
        device_id = f"op-{serve_run}-{worker}-{n}"
        yield _Job(
            "POST",
            "/devices",
            {"device_id": device_id, "auth": "sas"},
            token,
            201,
            (
                ("operator", admin, "operator-request", "createDevice", "ok"),
                ("operator", admin, "device-create", device_id, "ok"),
            ),
            f"create {device_id}",
            device_id,
        )


def _toggles(token: str, admin: str) -> Iterator[_Job]:
    for n in itertools.count():
        device_id = TOGGLED[(n // 2) % len(TOGGLED)]
        verb = "disable" if n % 2 == 0 else "enable"
        yield _Job(
            "POST",
            f"/devices/{device_id}/{verb}",
            None,
            token,
            200,
            (
                ("operator", admin, "operator-request", f"{verb}Device", "ok"),
                ("operator", admin, f"device-{verb}", device_id, "ok"),
            ),
            f"{verb} {device_id} (#{n})",
        )


def _forgeries() -> Iterator[_Job]:
    for n in itertools.count():
        yield _Job(
            "GET",
            "/devices",
            None,
            "ihk_" + secrets.token_urlsafe(32),  # the shape of a token, never issued
            401,
            (("operator", "-", "operator-auth-failed", "/devices", "refused"),),
            f"forged token (#{n})",
        )


class _Operator:
    """One keep-alive HTTPS connection; its local address is the records' ``source``."""

    def __init__(self, hub: ServeProcess) -> None:
        url = urllib.parse.urlsplit(hub.api_url)
        assert url.hostname is not None
        assert url.port is not None
        ctx = ssl.create_default_context(cafile=str(hub.ca_path))
        self._conn = http.client.HTTPSConnection(
            url.hostname, url.port, timeout=IO_TIMEOUT, context=ctx
        )
        self.peer = ""

    def send(self, phase: _Phase, job: _Job) -> _Request:
        if self._conn.sock is None:  # first request, or the hub closed the connection
            self._conn.connect()
            sock = self._conn.sock
            assert sock is not None
            host, port = sock.getsockname()[:2]
            self.peer = f"{host}:{port}"
        headers = {"Authorization": f"Bearer {job.token}", "Accept": "application/json"}
        body = None
        if job.body is not None:
            body = json.dumps(job.body).encode()
            headers["Content-Type"] = "application/json"
        request = _Request(
            self.peer, job.what, job.expect, job.ok, time.monotonic(), creates=job.creates
        )
        phase.add(request)
        self._conn.request(job.method, job.path, body=body, headers=headers)
        response = self._conn.getresponse()
        response.read()
        request.status = response.status
        return request

    def close(self) -> None:
        self._conn.close()


def _operate(
    hub: ServeProcess, phase: _Phase, jobs: Iterator[_Job], signalled: threading.Event
) -> None:
    """Send the jobs one after the other on one connection until one is not answered."""
    operator = _Operator(hub)
    try:
        for job in itertools.islice(jobs, MAX_REQUESTS):
            try:
                request = operator.send(phase, job)
            except (OSError, http.client.HTTPException) as exc:
                if not signalled.is_set():
                    phase.fail(f"{job.what}: no answer before the signal: {exc!r}")
                return
            if not request.answered:
                if not signalled.is_set():  # a stopping hub may refuse (503)
                    phase.fail(f"{job.what}: answered {request.status}, expected {job.ok}")
                return
    except Exception as exc:  # reported by the test, not lost with this thread
        phase.fail(f"operator thread: {type(exc).__name__}: {exc}")
    finally:
        operator.close()


# --- device load --------------------------------------------------------------------------------


async def _connect(
    hub: ServeProcess,
    ctx: ssl.SSLContext,
    creds: SasCredentials,
    local_addr: tuple[str, int] | None = None,
) -> tuple[TestDevice, str, ConnectReturnCode]:
    """Open a connection and send CONNECT; the device, its local ``host:port``, the CONNACK code.

    The local address is read before the CONNACK: a hub may close the connection right after
    it (a graceful stop), and a closed transport no longer knows its address.
    """
    dev = await TestDevice.open(*hub.mqtt, ctx, local_addr=local_addr)
    try:
        sockname = dev.writer.get_extra_info("sockname")
        if sockname is None:  # the transport is closed already
            raise ConnectionResetError("closed by the hub after the TLS handshake")
        host, port = sockname[:2]
        dev.send(
            Connect(
                client_id=creds.device_id,
                keep_alive_seconds=60,
                clean_session=True,
                username=creds.username(),
                password=creds.password(),
            )
        )
        ack = await dev.recv(ConnAck, timeout=IO_TIMEOUT)
    except BaseException:
        dev.writer.transport.abort()
        raise
    assert isinstance(ack, ConnAck)
    return dev, f"{host}:{port}", ack.return_code


async def _churn(
    hub: ServeProcess, creds: SasCredentials, phase: _Phase, signalled: threading.Event
) -> None:
    """Connect, note the CONNACK, disconnect; again, until the hub goes away."""
    ctx = client_tls_context(hub.ca_path)
    while True:
        try:
            dev, source, code = await _connect(hub, ctx, creds)
        except (*_CUT, TimeoutError) as exc:
            if not signalled.is_set():
                phase.fail(f"{creds.device_id}: connect failed before the signal: {exc!r}")
            return
        seen_at = time.monotonic()
        await dev.close()
        if code != ConnectReturnCode.ACCEPTED:
            if not signalled.is_set():  # a stopping hub may refuse (server unavailable)
                phase.fail(f"{creds.device_id}: CONNACK {code!r} before the signal")
            return
        # The hub appended "connected" right after writing the CONNACK, in the same callback.
        phase.seen.append(_Seen(seen_at, "connected", creds.device_id, source))


async def _intrude(
    hub: ServeProcess,
    wrong: SasCredentials,
    phase: _Phase,
    signalled: threading.Event,
    sources: Iterator[str],
) -> None:
    """Connect with a wrong key, each time from a new loopback address, until the hub goes away.

    A new address each time keeps the hub's per-source limit on recorded security events
    (a burst of 20) out of the way, and names the attempt's record exactly.
    """
    ctx = client_tls_context(hub.ca_path)
    while True:
        source = next(sources)
        try:
            dev, _, code = await _connect(hub, ctx, wrong, (source, 0))
        except (*_CUT, TimeoutError) as exc:
            if not signalled.is_set():
                phase.fail(f"wrong-key connect from {source} failed before the signal: {exc!r}")
            return
        seen_at = time.monotonic()
        await dev.close()
        if code not in _WRONG_KEY:
            if code == ConnectReturnCode.ACCEPTED or not signalled.is_set():
                phase.fail(f"a wrong key from {source} got CONNACK {code!r}")
            return
        # The hub appended "auth-failed" before writing the refusing CONNACK.
        phase.seen.append(_Seen(seen_at, "auth-failed", wrong.device_id, source))


def _loopback_sources() -> Iterator[str]:
    """Distinct loopback addresses (127.1.0.1, 127.1.0.2, ...), never the same twice."""
    for n in itertools.count():
        yield f"127.1.{n // 250}.{n % 250 + 1}"


async def _load_then_signal(
    hub: ServeProcess,
    phase: _Phase,
    jobs: list[Iterator[_Job]],
    creds: dict[str, SasCredentials],
    sources: Iterator[str],
    delay: float,
    signum: int,
) -> None:
    """Run every source of records, send ``signum`` after ``delay`` s, wait for every cut."""
    signalled = threading.Event()
    threads = [
        threading.Thread(
            target=_operate, args=(hub, phase, j, signalled), name=f"operator-{i}", daemon=True
        )
        for i, j in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    wrong = SasCredentials(creds[INTRUDED].hostname, INTRUDED, "A" * 43 + "=")
    tasks = [asyncio.create_task(_churn(hub, creds[d], phase, signalled)) for d in CHURN_DEVICES]
    tasks.append(asyncio.create_task(_intrude(hub, wrong, phase, signalled, sources)))
    try:
        await asyncio.sleep(delay)
        ended = [t.name for t in threads if not t.is_alive()] + [
            f"device task {i}" for i, t in enumerate(tasks) if t.done()
        ]
        assert not ended, f"{ended} ended before the signal: {phase.failures[:5]}"
        assert hub.alive(), "the hub died during the load, before the signal"
        signalled.set()
        os.kill(hub.pid, signum)
        _, pending = await asyncio.wait(tasks, timeout=IO_TIMEOUT)
        assert not pending, f"device tasks still running {IO_TIMEOUT} s after the signal"
        for task in tasks:
            task.result()  # a bug of the test itself
        deadline = time.monotonic() + IO_TIMEOUT
        for thread in threads:
            await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        assert not stuck, f"{stuck} still waiting {IO_TIMEOUT} s after the signal"
    finally:
        signalled.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert not phase.failures, f"load failures: {phase.failures[:5]}"


# --- checks -------------------------------------------------------------------------------------


@dataclass
class _Log:
    """What the checks remember between restarts."""

    key: Ed25519PublicKey
    admin: str = ""
    records: list[bytes] = field(default_factory=list)
    #: What ended each hub process before the current one: "killed" or "stopped".
    endings: list[str] = field(default_factory=list)


def _export(api: HubClient) -> list[bytes]:
    out = io.BytesIO()
    api.download("/audit/export", out, timeout_seconds=IO_TIMEOUT * 3)
    data = out.getvalue()
    assert data.endswith(b"\n"), "the export does not end with a newline"
    return data.splitlines(keepends=True)


def _check_requests(
    phase: _Phase, records: list[dict[str, Any]], lo: int, hi: int, why: str
) -> None:
    """Each connection's operator records in ``lo:hi`` are exactly those its answers promise."""
    by_source: dict[str, list[Fields]] = collections.defaultdict(list)
    for record in records[lo:hi]:
        if record["actor_kind"] == "operator":
            by_source[record["source"]].append(_fields(record))
    by_peer: dict[str, list[_Request]] = collections.defaultdict(list)
    for request in phase.requests:
        by_peer[request.peer].append(request)
    for peer, requests in by_peer.items():
        got = by_source.get(peer, [])
        at = 0
        for n, request in enumerate(requests):
            want = list(request.expect)
            if request.answered:
                assert got[at : at + len(want)] == want, (
                    f"{request.what} (from {peer}) was answered {request.status}, but its "
                    f"records are not in the log: want {want}, the connection's records from "
                    f"its #{at} are {got[at : at + len(want) + 2]}{why}"
                )
                at += len(want)
                request.stored = len(want)
                continue
            # Not answered (the signal came first): the connection's last request; a prefix of
            # its records may have been committed.
            assert n == len(requests) - 1, f"{request.what}: unanswered, yet not the last{why}"
            while want and at < len(got) and got[at] == want[0]:
                at += 1
                want.pop(0)
                request.stored += 1
        assert at == len(got), (
            f"records from {peer} that no request of it explains: {got[at : at + 5]}{why}"
        )


def _check_registry(run: _Run, hub: ServeProcess, phase: _Phase, why: str) -> str:
    """No device was created unrecorded, and every recorded or answered create happened.

    Needs :func:`_check_requests` first (it counts the stored records of each request).
    Returns a summary: a create the signal cut short may have happened with only its
    ``operator-request`` record (the action's own record was not committed yet).
    """
    api = run.api(hub)
    existing: set[str] = set()
    after = ""
    while True:
        page = api.request("GET", "/devices", query={"after": after, "limit": 1000})
        existing.update(d["device_id"] for d in page["devices"])
        if page["next_after"] is None:
            break
        after = page["next_after"]
    creates = [r for r in phase.requests if r.creates is not None]
    mine = {d for d in existing if d.startswith(f"op-{phase.serve_run}-")}
    unknown = sorted(mine - {r.creates for r in creates})
    assert not unknown, f"devices no request created: {unknown[:5]}{why}"
    for request in creates:
        there = request.creates in existing
        assert there or not request.answered, f"{request.what}: answered, device missing{why}"
        assert there or request.stored < 2, f"{request.what}: recorded, device missing{why}"
        assert request.stored >= 1 or not there, (
            f"{request.what}: the device exists, but not even the operator-request record of "
            f"its creation is in the log (an unrecorded privileged action){why}"
        )
    cut = [r for r in creates if r.creates in existing and not r.answered]
    return (
        f"{len(mine)} devices created ({len(cut)} unanswered, "
        f"{sum(r.stored < 2 for r in cut)} of them without their device-create record)"
    )


def _check_seen(
    phase: _Phase, records: list[dict[str, Any]], lo: int, hi: int, why: str
) -> tuple[int, int]:
    """Device events seen before an answered request was sent are in the log."""
    bound = max((r.sent_at for r in phase.requests if r.answered), default=float("-inf"))
    stored = collections.Counter(
        (r["action"], r["actor"], r["source"])
        for r in records[lo:hi]
        if r["actor_kind"] == "device"
    )
    required = collections.Counter(
        (s.action, s.actor, s.source) for s in phase.seen if s.seen_at < bound
    )
    lost = sorted(k for k, n in required.items() if stored[k] < n)
    assert not lost, (
        f"{len(lost)} device events seen before an answered API request are missing from the "
        f"log, first {lost[:5]}{why}"
    )
    return required.total(), stored.total()


def _check_log(run: _Run, hub: ServeProcess, log: _Log, phase: _Phase) -> int:
    """Check the exported log after a restart; the number of records it holds.

    ``phase`` is the load on the previous hub process, the one the signal ended.
    """
    why = run.why()
    lines = _export(run.api(hub))
    report = verify_export(lines, log.key)
    assert report.intact, (
        f"the export does not verify: {report.problem} (position "
        f"{report.first_bad_position}, line {report.line}){why}"
    )
    size = report.records
    record_lines = lines[1 : 1 + size]
    records = [json.loads(line)["record"] for line in record_lines]
    checkpoints = [parse_checkpoint_line(line[:-1]) for line in lines[1 + size :]]
    assert len(checkpoints) == report.checkpoints >= 1, why
    assert [r["seq"] for r in records] == list(range(size)), f"positions not 0..{size - 1}{why}"
    old = len(log.records)
    assert size >= old, f"the log shrank from {old} to {size} records{why}"
    changed = [
        i for i, (a, b) in enumerate(zip(record_lines[:old], log.records, strict=True)) if a != b
    ]
    assert not changed, f"the log before the restart changed at positions {changed[:5]}{why}"
    log.records = record_lines

    # One hub-start per process, a hub-stop only for a graceful stop (the monitor, also a hub
    # actor, records its alerts and playbook actions beside them: the load's forged logins
    # raise brute-force alerts).
    hub_actions = [
        (r["seq"], r["action"]) for r in records if r["actor_kind"] == "hub" and r["actor"] == "hub"
    ]
    expected = ["hub-init"]
    for ending in log.endings:
        expected += ["hub-start", "hub-stop"] if ending == "stopped" else ["hub-start"]
    expected.append("hub-start")
    assert [a for _, a in hub_actions] == expected, (
        f"hub records {hub_actions}, expected {expected}{why}"
    )
    assert all(r["actor"] in ("hub", "monitor") for r in records if r["actor_kind"] == "hub"), why
    starts = [seq for seq, action in hub_actions if action == "hub-start"]
    assert len(starts) == len(log.endings) + 1, why

    covered = {c.tree_size: c for c in checkpoints}
    witnessed = _check_witness(run.witness, log.key, covered, why)
    lo, hi = phase.load_from, starts[phase.serve_run + 1]
    assert starts[phase.serve_run] < lo <= hi, f"load window {lo}..{hi}, starts {starts}{why}"
    _check_requests(phase, records, lo, hi, why)
    created = _check_registry(run, hub, phase, why)
    required, stored = _check_seen(phase, records, lo, hi, why)
    if phase.ending == "stopped":
        last = records[hi - 1]
        assert last["action"] == "hub-stop", (
            f"the last record of the stopped hub is {_fields(last)}, not hub-stop{why}"
        )
        assert hi in covered, (
            f"no checkpoint covers the {hi} records up to hub-stop; checkpoints "
            f"{sorted(covered)[-5:]}{why}"
        )
        assert hi in witnessed, f"the final checkpoint ({hi}) is not witnessed{why}"
    summary = (
        f"{size} records, {len(checkpoints)} checkpoints, {len(witnessed)} witnessed; "
        f"run {phase.serve_run}: {hi - lo} records under load, {created}, "
        f"{stored} device records, {required} seen device events required"
    )
    run.log.append(f"log after hub {len(run.restarts)} started: {summary}")
    return size


def _check_witness(
    witness: Path, key: Ed25519PublicKey, covered: dict[int, Checkpoint], why: str
) -> set[int]:
    """Every witnessed checkpoint is signed and names the root of the exported log's prefix."""
    sizes = set()
    data = witness.read_bytes() if witness.exists() else b""
    assert not data or data.endswith(b"\n"), f"torn witness line {data[-200:]!r}{why}"
    for line in data.splitlines():
        checkpoint = parse_checkpoint_line(line)
        verify_checkpoint(checkpoint, key)
        stored = covered.get(checkpoint.tree_size)
        assert stored is not None and stored.root == checkpoint.root, (
            f"witnessed checkpoint of size {checkpoint.tree_size} is not in the export{why}"
        )
        sizes.add(checkpoint.tree_size)
    return sizes


def _check_reads(run: _Run, hub: ServeProcess, log: _Log) -> None:
    """``/audit/records`` serves the exported records; ``/audit/checkpoint`` a signed one."""
    api = run.api(hub)
    start = 0
    while start < len(log.records):
        page = api.request("GET", "/audit/records", query={"start": start, "limit": 1000})
        assert page["records"], f"/audit/records ends at {start} of {len(log.records)}"
        for offset, view in enumerate(page["records"]):
            exported = json.loads(log.records[start + offset])
            assert (view["hash"], view["record"]) == (exported["hash"], exported["record"]), (
                f"/audit/records at {start + offset} differs from the export{run.why()}"
            )
        start = page["next_start"]
    view = api.request("GET", "/audit/checkpoint")
    checkpoint = Checkpoint(**view)
    verify_checkpoint(checkpoint, log.key)
    assert checkpoint.tree_size >= len(log.records), run.why()


def _admin_name(api: HubClient) -> str:
    """The actor the hub records for the first admin token (from its own records)."""
    page = api.request("GET", "/audit/records", query={"start": 0, "limit": 1000})
    for view in page["records"]:
        record = view["record"]
        if record["action"] == "device-create" and record["target"] == CHURN_DEVICES[0]:
            return str(record["actor"])
    raise AssertionError(f"no device-create record for {CHURN_DEVICES[0]}: {page}")


def _log_size(api: HubClient) -> int:
    """How many records the log holds (read through ``/audit/records``)."""
    start = 0
    while True:
        page = api.request("GET", "/audit/records", query={"start": start, "limit": 1000})
        if not page["records"]:
            return start
        start = page["next_start"]


# --- the test -----------------------------------------------------------------------------------


def _new_phase(
    log: _Log, ending: str, load_from: int, admin_token: str
) -> tuple[_Phase, list[Iterator[_Job]]]:
    """The ledger of the next load, and the jobs of its operator connections."""
    serve_run = len(log.endings)
    phase = _Phase(serve_run=serve_run, ending=ending, load_from=load_from)
    jobs = [_creates(admin_token, log.admin, serve_run, w) for w in range(CREATORS)]
    jobs += [_toggles(admin_token, log.admin), _forgeries()]
    return phase, jobs


@pytest.mark.timeout(max(120, 60 + 20 * CYCLES))
def test_audit_chain_verifies_after_sigkill_under_load(tmp_path: Path) -> None:
    assert CYCLES >= 1, "IRONHUB_FAULT_CYCLES must be at least 1"
    text = os.environ.get("IRONHUB_FAULT_SEED")
    seed = int(text) if text else random.SystemRandom().randrange(2**32)
    run = _Run(seed=seed, init=init_data_dir(tmp_path / "data"), witness=tmp_path / "witness")
    delays = run.delays(CYCLES + 1)  # the last one for SIGTERM
    sources = _loopback_sources()
    token = run.init.token
    try:
        hub = run.start()
        key = load_pem_public_key((run.init.data_dir / "audit.pub").read_bytes())
        assert isinstance(key, Ed25519PublicKey)
        log = _Log(key=key)
        api = run.api(hub)
        creds = create_sas_devices(api, run.init.hostname, [*CHURN_DEVICES, INTRUDED, *TOGGLED])
        log.admin = _admin_name(api)
        load_from = _log_size(api)

        for cycle, delay in enumerate(delays):
            ending = "stopped" if cycle == CYCLES else "killed"
            signum = signal.SIGTERM if ending == "stopped" else signal.SIGKILL
            phase, jobs = _new_phase(log, ending, load_from, token)
            victim = hub
            began = time.monotonic()
            run.run(_load_then_signal(victim, phase, jobs, creds, sources, delay, signum))
            if ending == "killed":
                returncode: int | None = victim.kill()
                assert returncode == -signal.SIGKILL, (
                    f"hub ended by itself: {returncode}{run.why()}"
                )
            else:
                try:
                    returncode = victim.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    returncode = None
                assert returncode == 0, f"SIGTERM did not stop the hub cleanly{run.why()}"
            run.log.append(
                f"cycle {cycle}: {signal.Signals(signum).name} after {delay:.2f} s, load over "
                f"{time.monotonic() - began - delay:.2f} s after it; {phase.summary()}"
            )
            assert any(r.answered for r in phase.requests), (
                f"cycle {cycle}: no request answered before the signal{run.why()}"
            )
            log.endings.append(ending)
            hub = run.start()  # the stored chain and checkpoints verified, or this raises
            load_from = _check_log(run, hub, log, phase)

        _check_reads(run, hub, log)
        assert hub.terminate(timeout=STOP_TIMEOUT) == 0, f"final graceful stop{run.why()}"
    finally:
        run.close()
