"""MonitorService on its own: the log in, alerts and playbook actions out (issue 6).

The collaborators are real where they are cheap (SQLite storage in ``tmp_path``, the
:class:`MessageLog`, the :class:`Registry`, the detectors) and small fakes where they are not:
an audit log and a device authority that record their calls, a storage wrapper that injects
conflicts and failures, a log wrapper whose subscriptions replay a script, and a stand-in for
the webhook's ``_urlopen``. Time comes from a :class:`FakeClock`; the background jobs run at
intervals of an hour so that they never fire by themselves, and the tests call them directly
(only the scheduled fleet audit runs at a 1 ms interval). Messages reach the service through the
real log and are awaited with ``wait_for``; the tests themselves never sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import shutil
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Self

import pytest
import pytest_asyncio

from ironhub.clock import FakeClock
from ironhub.config import MonitorConfig, StorageConfig
from ironhub.errors import (
    ConfigError,
    ConflictError,
    IronhubError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from ironhub.monitor.advisories import AdvisoryIndex, parse_advisory
from ironhub.monitor.detectors import DetectorSet, SilenceDetector
from ironhub.monitor.fleet import FleetFinding
from ironhub.monitor.model import Finding, SecurityEvent, Severity
from ironhub.monitor.profiles import ProfileBook
from ironhub.monitor.service import (
    MAX_MAINTENANCE_SECONDS,
    MonitorService,
    MonitorStatistics,
    alert_document,
)
from ironhub.registry.sealing import generate_kek
from ironhub.registry.service import Registry
from ironhub.storage.interfaces import (
    AlertRecord,
    AlertState,
    AuthKind,
    DeviceState,
    LogEntry,
    PostureRecord,
    StoredMessage,
    Stream,
)
from ironhub.storage.sqlite import SQLiteStorage
from ironhub.streams.log import MessageLog, SubscriberLagged

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from ironhub.monitor.detectors import Detector

pytestmark = pytest.mark.asyncio

#: The property that marks a device's own security message (docs/security-events.md).
SECURITY_MARKER = (("ironhub-stream", "security"),)
#: Background jobs at this interval never fire during a test.
QUIET_SECONDS = 3600.0
WEBHOOK_URL = "https://hooks.example.test/ironhub"
WEBHOOK_KEY = b"0123456789abcdef0123456789abcdef"


def security_body(event: str, **fields: Any) -> bytes:
    return json.dumps({"event": event, "time": "2026-01-01T00:00:00Z", **fields}).encode()


TAMPER = security_body("tamper", sensor="lid", state="opened")
USB = security_body("usb", action="attached", vendor="0781", product="5567")
OPENSSL_ADVISORY = parse_advisory(
    {
        "id": "OSV-2026-0001",
        "modified": "2026-01-01T00:00:00Z",
        "summary": "openssl is broken",
        "affected": [
            {"package": {"ecosystem": "Debian", "name": "openssl"}, "versions": ["3.0.1"]}
        ],
        "database_specific": {"severity": "HIGH"},
    }
)


def inventory(package: str = "openssl", version: str = "3.0.1") -> bytes:
    return security_body(
        "inventory", packages=[{"name": package, "version": version, "ecosystem": "Debian"}]
    )


# --- fakes --------------------------------------------------------------------------------------


class RecordingAudit:
    """An audit log that keeps what it is given (or fails, like a broken store)."""

    def __init__(self) -> None:
        self.records: list[dict[str, str]] = []
        self.failure: IronhubError | None = None

    async def record(self, **fields: str) -> int:
        if self.failure is not None:
            raise self.failure
        self.records.append(fields)
        return len(self.records)

    def actions(self) -> list[tuple[str, str, str]]:
        return [(r["action"], r["target"], r["outcome"]) for r in self.records]


class RecordingAuthority:
    """A device authority that notes revocations (and fails when told to)."""

    def __init__(self) -> None:
        self.revoked: list[tuple[str, str]] = []
        self.failure: IronhubError | None = None

    async def revoke_device(self, device_id: str, reason: str = "unspecified") -> list[str]:
        if self.failure is not None:
            raise self.failure
        self.revoked.append((device_id, reason))
        return []


_ANSWER_NONE = object()


class FaultyStorage:
    """The real storage, except that chosen calls fail (or answer ``None``) a few times."""

    _FAULTABLE = frozenset(
        {"get_monitor_state", "put_monitor_state", "insert_alert", "update_alert", "get_alert"}
    )

    def __init__(self, inner: SQLiteStorage) -> None:
        self._inner = inner
        self._faults: dict[str, list[object]] = {}

    def fail_next(self, method: str, fault: object, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` raise ``fault`` (or answer ``None``)."""
        assert method in self._FAULTABLE
        self._faults.setdefault(method, []).extend([fault] * times)

    def pending(self, method: str) -> int:
        return len(self._faults.get(method, []))

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name not in self._FAULTABLE:
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            pending = self._faults.get(name)
            if pending:
                fault = pending.pop(0)
                if fault is _ANSWER_NONE:
                    return None
                assert isinstance(fault, BaseException)
                raise fault
            return await target(*args, **kwargs)

        return call


class ScriptedSubscription:
    """A subscription that yields scripted messages, raises scripted errors, then ends."""

    def __init__(self, script: list[StoredMessage | Exception]) -> None:
        self._script = list(script)
        self.closed = asyncio.Event()

    def __aiter__(self) -> ScriptedSubscription:
        return self

    async def __anext__(self) -> StoredMessage:
        if self.closed.is_set() or not self._script:
            raise StopAsyncIteration
        item = self._script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self.closed.set()


class ScriptedLog:
    """The real log, but the first subscriptions replay scripts and queries can fail."""

    def __init__(self, inner: MessageLog, *scripts: list[StoredMessage | Exception]) -> None:
        self._inner = inner
        self._scripts = list(scripts)
        self.subscriptions: list[ScriptedSubscription] = []
        self.query_failures = 0

    def subscribe(self, *, max_queue: int) -> Any:
        if not self._scripts:
            return self._inner.subscribe(max_queue=max_queue)
        subscription = ScriptedSubscription(self._scripts.pop(0))
        self.subscriptions.append(subscription)
        return subscription

    async def query(self, **kwargs: Any) -> list[StoredMessage]:
        if self.query_failures:
            self.query_failures -= 1
            raise StorageError("injected read failure")
        return await self._inner.query(**kwargs)


class FakeResponse:
    def __init__(self, status: int) -> None:
        self.status = status

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


class FakeWebhook:
    """Stands in for the webhook's ``_urlopen``: records requests, answers from a script.

    An answer is an HTTP status or an ``OSError`` to raise; past the script it answers 204.
    ``arrived`` is set (thread-safely, on ``loop``) once ``expect`` requests were made.
    """

    def __init__(
        self, answers: list[int | OSError], *, loop: asyncio.AbstractEventLoop, expect: int
    ) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[Any, float, ssl.SSLContext | None]] = []
        self.arrived = asyncio.Event()
        self._loop = loop
        self._expect = expect

    def __call__(
        self, request: Any, *, timeout: float, context: ssl.SSLContext | None
    ) -> FakeResponse:
        self.requests.append((request, timeout, context))
        if len(self.requests) >= self._expect:
            self._loop.call_soon_threadsafe(self.arrived.set)
        answer = self.answers.pop(0) if self.answers else 204
        if isinstance(answer, OSError):
            raise answer
        return FakeResponse(answer)


class UnrelatedDetector:
    """A detector that is not a physical-access detector (a set without maintenance windows)."""

    name = "unrelated"
    kinds: frozenset[str] = frozenset({"usb"})

    def observe(self, event: Any) -> list[Finding]:
        return []

    def tick(self, now: float) -> list[Finding]:
        return []

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: Any) -> None:
        return None


class FakePosture:
    """The posture service as the monitor sees it: profiles, advisories, assignments."""

    def __init__(
        self, index: AdvisoryIndex | None = None, assignments: dict[str, str] | None = None
    ) -> None:
        self.book = ProfileBook()
        self.index = index or AdvisoryIndex(())
        self.assignments = dict(assignments or {})
        self.lookups: list[str] = []
        self.listeners: list[Callable[[AdvisoryIndex], Awaitable[None]]] = []

    async def assigned_profile(self, identity: str) -> str | None:
        self.lookups.append(identity)
        return self.assignments.get(identity)

    def add_advisory_listener(self, callback: Callable[[AdvisoryIndex], Awaitable[None]]) -> None:
        self.listeners.append(callback)


class RecordingDetector:
    """A detector that sees every event (it declares no kinds) and finds nothing."""

    name = "recorder"

    def __init__(self) -> None:
        self.events: list[SecurityEvent] = []

    def observe(self, event: SecurityEvent) -> list[Finding]:
        self.events.append(event)
        return []

    def tick(self, now: float) -> list[Finding]:
        return []

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: Any) -> None:
        return None


# --- the harness ----------------------------------------------------------------------------------


@dataclass
class MonitorKit:
    """Real storage, log and registry around the service, with fakes for the rest."""

    clock: FakeClock
    storage: SQLiteStorage
    faulty: FaultyStorage
    log: MessageLog
    registry: Registry
    audit: RecordingAudit
    authority: RecordingAuthority
    tmp_path: Path
    monitors: list[MonitorService] = field(default_factory=list)

    def monitor(
        self,
        *,
        log: Any = None,
        audit: Any = "default",
        authority: Any = "default",
        detectors: DetectorSet | None = None,
        posture: FakePosture | None = None,
        **settings: Any,
    ) -> MonitorService:
        settings.setdefault("tick_interval_seconds", QUIET_SECONDS)
        settings.setdefault("snapshot_interval_seconds", QUIET_SECONDS)
        monitor = MonitorService(
            self.faulty,  # type: ignore[arg-type]
            log or self.log,
            self.registry,
            self.clock,
            MonitorConfig(**settings),
            audit=self.audit if audit == "default" else audit,
            authority=self.authority if authority == "default" else authority,
            detectors=detectors,
            posture=posture,  # type: ignore[arg-type]
        )
        self.monitors.append(monitor)
        return monitor

    async def started(self, **kwargs: Any) -> MonitorService:
        monitor = self.monitor(**kwargs)
        await monitor.start()
        return monitor

    async def append(
        self,
        stream: Stream,
        payload: bytes = b"",
        *,
        device_id: str | None = "dev1",
        properties: tuple[tuple[str, str], ...] = (),
    ) -> int:
        entry = LogEntry(
            stream=stream,
            device_id=device_id,
            enqueued_at=self.clock.time(),
            payload=payload,
            properties=properties,
        )
        return await self.log.append(entry)

    async def send(
        self,
        monitor: MonitorService,
        payload: bytes,
        *,
        device_id: str = "dev1",
    ) -> int:
        """A device's security message, processed by ``monitor`` before this returns."""
        seq = await self.append(
            Stream.SECURITY, payload, device_id=device_id, properties=SECURITY_MARKER
        )
        assert await monitor.wait_for(seq)
        return seq

    async def auth_failure(self, monitor: MonitorService, client_id: str) -> int:
        """The hub's record of a refused CONNECT, processed by ``monitor``."""
        seq = await self.append(
            Stream.SECURITY,
            device_id=None,
            properties=(
                ("event", "auth-failed"),
                ("client_id", client_id),
                ("peer", "10.0.0.7:4000"),
            ),
        )
        assert await monitor.wait_for(seq)
        return seq

    async def alerts(self, device_id: str | None = "dev1") -> list[AlertRecord]:
        every = await self.storage.list_alerts(device_id=None, state=None, after="", limit=1000)
        return [a for a in every if a.device_id == device_id]

    async def only_alert(self, device_id: str | None = "dev1") -> AlertRecord:
        [alert] = await self.alerts(device_id)
        return alert

    async def saved_state(self) -> dict[str, Any]:
        saved = await self.storage.get_monitor_state("detectors")
        assert saved is not None
        state: dict[str, Any] = json.loads(saved)
        return state

    def webhook_settings(self, key: bytes = WEBHOOK_KEY) -> dict[str, str]:
        secret = self.tmp_path / "webhook.key"
        secret.write_bytes(key)
        secret.chmod(0o600)
        return {"webhook_url": WEBHOOK_URL, "webhook_secret_file": str(secret)}


@pytest.fixture(scope="session")
def empty_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new database, copied for each test: creating the schema costs ~75 ms, a copy ~2 ms."""
    path = tmp_path_factory.mktemp("monitor-template") / "hub.db"

    async def create() -> None:
        storage = SQLiteStorage(path, StorageConfig(), FakeClock())
        await storage.open()
        await storage.close()

    asyncio.run(create())
    return path


@pytest_asyncio.fixture
async def kit(tmp_path: Path, empty_database: Path) -> AsyncIterator[MonitorKit]:
    clock = FakeClock()
    shutil.copyfile(empty_database, tmp_path / "hub.db")
    storage = SQLiteStorage(tmp_path / "hub.db", StorageConfig(synchronous="NORMAL"), clock)
    await storage.open()
    log = MessageLog(storage, clock)
    await log.start()
    built = MonitorKit(
        clock=clock,
        storage=storage,
        faulty=FaultyStorage(storage),
        log=log,
        registry=Registry(storage, generate_kek(), clock),
        audit=RecordingAudit(),
        authority=RecordingAuthority(),
        tmp_path=tmp_path,
    )
    yield built
    for monitor in built.monitors:
        await monitor.stop()
    await log.close()
    await storage.close()


def finding(
    alert_type: str = "tamper",
    device_id: str | None = "dev1",
    *,
    time: float,
    severity: Severity = Severity.HIGH,
) -> Finding:
    return Finding(
        detector="test",
        alert_type=alert_type,
        severity=severity,
        device_id=device_id,
        summary=f"{alert_type} on {device_id}",
        time=time,
        evidence=(1,),
    )


# --- life cycle -----------------------------------------------------------------------------------


async def test_start_without_saved_state_catches_up_then_follows_live(kit: MonitorKit) -> None:
    before = await kit.append(Stream.TELEMETRY, b"early")
    monitor = await kit.started()
    assert await monitor.wait_for(before)
    after = await kit.append(Stream.TELEMETRY, b"live")
    assert await monitor.wait_for(after)
    assert monitor.statistics() == MonitorStatistics(
        cursor=after, events=2, findings=0, alerts_opened=0, suppressed=0
    )


async def test_stop_saves_the_cursor_and_the_detector_state(kit: MonitorKit) -> None:
    monitor = await kit.started()
    seq = await kit.auth_failure(monitor, "lock-9")
    await monitor.stop()
    state = await kit.saved_state()
    assert state["cursor"] == seq
    assert "lock-9" in json.dumps(state["detectors"]["brute-force"])


async def test_a_restart_continues_the_cursor_and_the_brute_force_count(kit: MonitorKit) -> None:
    first = await kit.started()
    for _ in range(6):
        last = await kit.auth_failure(first, "lock-9")
    await first.stop()
    assert await kit.alerts("lock-9") == []

    second = await kit.started()
    assert second.statistics().cursor == last  # restored, not read from the start again
    for _ in range(4):  # 6 + 4 = the threshold of 10 within 5 minutes
        await kit.auth_failure(second, "lock-9")
    assert second.statistics().events == 4
    alert = await kit.only_alert("lock-9")
    assert alert.alert_type == "brute-force"


@pytest.mark.parametrize(
    "saved",
    ["{not json", "[1, 2]", '{"cursor": "seven"}', '{"cursor": null}'],
    ids=["not-json", "not-an-object", "cursor-not-a-number", "cursor-null"],
)
async def test_unreadable_saved_state_starts_afresh(
    kit: MonitorKit, saved: str, caplog: pytest.LogCaptureFixture
) -> None:
    await kit.registry.create_device("dev1")
    await kit.storage.put_monitor_state("detectors", saved)
    monitor = await kit.started()  # does not raise
    assert "monitor state unreadable" in caplog.text
    await kit.send(monitor, TAMPER)
    assert (await kit.only_alert()).alert_type == "tamper"


async def test_saved_state_without_detectors_keeps_the_cursor(kit: MonitorKit) -> None:
    seq = await kit.append(Stream.TELEMETRY, b"old")
    await kit.storage.put_monitor_state("detectors", json.dumps({"cursor": seq}))
    monitor = await kit.started()
    assert monitor.statistics().cursor == seq
    newer = await kit.append(Stream.TELEMETRY, b"new")
    assert await monitor.wait_for(newer)
    assert monitor.statistics().events == 1  # the old message was not read again


async def test_stop_survives_a_storage_failure_while_saving(kit: MonitorKit) -> None:
    monitor = await kit.started()
    kit.faulty.fail_next("put_monitor_state", StorageError("disk full"))
    await monitor.stop()
    assert kit.faulty.pending("put_monitor_state") == 0
    assert await kit.storage.get_monitor_state("detectors") is None


async def test_wait_for_times_out_with_false_then_answers_true(kit: MonitorKit) -> None:
    monitor = await kit.started()
    assert await monitor.wait_for(1, seconds=0.05) is False
    seq = await kit.append(Stream.TELEMETRY, b"x")
    assert await monitor.wait_for(seq, seconds=5.0) is True
    assert await monitor.wait_for(seq, seconds=0.0) is True


# --- following the log ----------------------------------------------------------------------------


async def _follow(monitor: MonitorService) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(monitor._follow())


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_lagging_subscription_falls_back_to_catching_up(
    kit: MonitorKit, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    early = await kit.append(Stream.TELEMETRY, b"a")
    log = ScriptedLog(kit.log, [SubscriberLagged(early)])
    monitor = kit.monitor(log=log)
    task = await _follow(monitor)
    try:
        assert await monitor.wait_for(early)
        await asyncio.wait_for(log.subscriptions[0].closed.wait(), 5.0)
        assert "monitor fell behind the log; catching up cursor=1" in caplog.text
        late = await kit.append(Stream.TELEMETRY, b"b")
        assert await monitor.wait_for(late)  # through a new, real subscription
    finally:
        await _cancel(task)


async def test_live_messages_already_caught_up_are_skipped(kit: MonitorKit) -> None:
    seq = await kit.append(Stream.TELEMETRY, b"a")
    [stored] = await kit.log.query(limit=10)
    log = ScriptedLog(kit.log, [stored])  # delivered live after the catch-up read it
    monitor = kit.monitor(log=log)
    task = await _follow(monitor)
    try:
        assert await monitor.wait_for(seq)
        await asyncio.wait_for(log.subscriptions[0].closed.wait(), 5.0)
        late = await kit.append(Stream.TELEMETRY, b"b")
        assert await monitor.wait_for(late)
    finally:
        await _cancel(task)
    assert monitor.statistics().events == 2  # not 3


async def test_a_read_failure_is_retried_after_a_second(
    kit: MonitorKit, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seq = await kit.append(Stream.TELEMETRY, b"a")
    log = ScriptedLog(kit.log)
    log.query_failures = 1
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        await real_sleep(0)

    monitor = kit.monitor(log=log)
    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    task = await _follow(monitor)
    try:
        assert await monitor.wait_for(seq)
    finally:
        await _cancel(task)
    assert delays == [1.0]
    assert "monitor cannot read the log; retrying" in caplog.text


async def test_a_failing_job_runs_again(kit: MonitorKit, caplog: pytest.LogCaptureFixture) -> None:
    monitor = kit.monitor()
    calls: list[int] = []

    async def job() -> None:
        calls.append(len(calls))
        if len(calls) < 3:
            raise StorageError("not now")
        raise asyncio.CancelledError  # ends the loop like stop() does

    with pytest.raises(asyncio.CancelledError):
        await monitor._every(0.0, job)
    assert calls == [0, 1, 2]
    assert caplog.text.count("monitor job failed; it runs again") == 2


async def test_a_tick_turns_a_silent_security_stream_into_an_alert(kit: MonitorKit) -> None:
    monitor = await kit.started()
    await kit.send(monitor, security_body("usb", action="removed"))
    await monitor._tick()
    assert await kit.alerts() == []
    kit.clock.advance(25 * 3600)
    await monitor._tick()
    alert = await kit.only_alert()
    assert alert.alert_type == "security-stream-silent"
    assert alert.actions == ("notify",)  # the default playbook of an unlisted type


# --- messages to events ---------------------------------------------------------------------------


def _stored(
    stream: Stream,
    payload: bytes = b"",
    *,
    device_id: str | None = "dev1",
    properties: tuple[tuple[str, str], ...] = (),
) -> StoredMessage:
    return StoredMessage(
        seq=42,
        stream=stream,
        device_id=device_id,
        enqueued_at=1_767_225_600.0,
        payload=payload,
        properties=properties,
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(
            _stored(Stream.SECURITY, TAMPER, properties=SECURITY_MARKER),
            [("tamper", "dev1", None)],
            id="device-security-message",
        ),
        pytest.param(
            _stored(
                Stream.SECURITY,
                b"[" + USB + b"," + TAMPER + b"]",
                properties=(("$.ifid", "urn:azureiot:Security:SecurityAgent:1"),),
            ),
            [("usb", "dev1", None), ("tamper", "dev1", None)],
            id="device-security-list",
        ),
        pytest.param(
            _stored(Stream.SECURITY, b"{oops", properties=SECURITY_MARKER),
            [("unknown", "dev1", None)],
            id="device-security-malformed",
        ),
        pytest.param(
            _stored(
                Stream.SECURITY,
                device_id=None,
                properties=(
                    ("event", "auth-failed"),
                    ("client_id", "lock-9"),
                    ("peer", "10.0.0.7:4000"),
                ),
            ),
            [("auth-failed", "lock-9", "10.0.0.7:4000")],
            id="hub-security-record",
        ),
        pytest.param(
            _stored(Stream.SECURITY, properties=(("event", "quarantine-refused"),)),
            [],
            id="hub-security-record-of-no-interest",
        ),
        pytest.param(
            _stored(
                Stream.SECURITY,
                properties=(*SECURITY_MARKER, ("event", "auth-failed"), ("client_id", "x")),
            ),
            [],
            id="device-forging-a-hub-record",
        ),
        pytest.param(
            _stored(
                Stream.LIFECYCLE, properties=(("event", "connected"), ("peer", "10.0.0.7:4000"))
            ),
            [("connected", "dev1", "10.0.0.7")],
            id="lifecycle",
        ),
        pytest.param(
            _stored(Stream.LIFECYCLE, properties=(("event", "twin-updated"),)),
            [],
            id="lifecycle-of-no-interest",
        ),
        pytest.param(
            _stored(Stream.TELEMETRY, b"12345"),
            [("message", "dev1", None)],
            id="telemetry",
        ),
        pytest.param(_stored(Stream.TELEMETRY, b"x", device_id=None), [], id="telemetry-no-device"),
        pytest.param(_stored(Stream.FEEDBACK, b"{}"), [], id="feedback"),
    ],
)
async def test_events_of_a_message(
    kit: MonitorKit,
    message: StoredMessage,
    expected: list[tuple[str, str | None, str | None]],
) -> None:
    events = kit.monitor()._events_of(message)
    assert [(e.kind, e.device_id, e.source) for e in events] == expected
    for event in events:
        assert event.seq == 42
        assert event.time == 1_767_225_600.0


async def test_a_telemetry_event_carries_the_size(kit: MonitorKit) -> None:
    [event] = kit.monitor()._events_of(_stored(Stream.TELEMETRY, b"12345"))
    assert dict(event.fields) == {"bytes": 5}


# --- alerts -------------------------------------------------------------------------------------


async def test_a_new_finding_opens_an_alert(kit: MonitorKit) -> None:
    await kit.registry.create_device("dev1")
    monitor = await kit.started(playbooks="tamper:notify")
    seq = await kit.send(monitor, TAMPER)
    alert = await kit.only_alert()
    assert (alert.alert_type, alert.severity, alert.state) == (
        "tamper",
        "critical",
        AlertState.OPEN,
    )
    assert alert.evidence == (seq,)
    assert alert.alert_id.startswith(f"al_{int(kit.clock.time() * 1000):014d}_")
    assert monitor.statistics() == MonitorStatistics(
        cursor=seq, events=1, findings=1, alerts_opened=1, suppressed=0
    )
    assert ("alert-opened", "dev1", "ok") in kit.audit.actions()
    [opened] = [r for r in kit.audit.records if r["action"] == "alert-opened"]
    assert opened["reason"] == f"{alert.alert_id} tamper critical"
    assert (opened["actor_kind"], opened["actor"]) == ("hub", "monitor")


async def test_the_same_type_and_device_merge_into_one_alert(kit: MonitorKit) -> None:
    monitor = await kit.started(playbooks="tamper:notify")
    first = await kit.send(monitor, TAMPER)
    kit.clock.advance(5)
    second = await kit.send(monitor, TAMPER)
    alert = await kit.only_alert()
    assert alert.count == 2
    assert alert.evidence == (first, second)
    assert alert.last_seen_at == kit.clock.time()
    assert monitor.statistics().alerts_opened == 1
    assert monitor.statistics().findings == 2
    # A different device is a different alert.
    await kit.send(monitor, TAMPER, device_id="dev2")
    assert monitor.statistics().alerts_opened == 2


async def test_a_resolved_alert_suppresses_then_a_new_one_opens(kit: MonitorKit) -> None:
    monitor = await kit.started(playbooks="tamper:notify", suppression_seconds=600.0)
    await kit.send(monitor, TAMPER)
    resolved = await kit.only_alert()
    await monitor.set_state(resolved.alert_id, AlertState.RESOLVED, actor="alice")

    kit.clock.advance(599)
    await kit.send(monitor, TAMPER)
    assert monitor.statistics().suppressed == 1
    assert monitor.statistics().alerts_opened == 1

    kit.clock.advance(2)
    await kit.send(monitor, TAMPER)
    assert monitor.statistics().alerts_opened == 2
    alerts = await kit.alerts()
    assert [a.state for a in alerts] == [AlertState.RESOLVED, AlertState.OPEN]
    assert alerts[0].count == 1  # the suppressed finding went nowhere


async def test_a_merge_that_loses_to_a_concurrent_change_is_retried(kit: MonitorKit) -> None:
    monitor = await kit.started(playbooks="tamper:notify")
    await kit.send(monitor, TAMPER)
    kit.faulty.fail_next("update_alert", ConflictError("version moved"))
    await kit.send(monitor, TAMPER)
    assert kit.faulty.pending("update_alert") == 0
    assert (await kit.only_alert()).count == 2


async def test_an_alert_id_collision_is_retried(kit: MonitorKit) -> None:
    monitor = await kit.started(playbooks="tamper:notify")
    kit.faulty.fail_next("insert_alert", ConflictError("duplicate id"))
    await kit.send(monitor, TAMPER)
    assert kit.faulty.pending("insert_alert") == 0
    assert (await kit.only_alert()).count == 1
    assert monitor.statistics().alerts_opened == 1


async def test_a_finding_that_keeps_conflicting_is_dropped_loudly(
    kit: MonitorKit, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = kit.monitor(playbooks="tamper:notify")
    kit.faulty.fail_next("insert_alert", ConflictError("duplicate id"), times=3)
    await monitor._handle(finding(time=kit.clock.time()))
    assert await kit.alerts() == []
    assert monitor.statistics().alerts_opened == 0
    assert monitor.statistics().findings == 1
    assert "finding dropped type=tamper" in caplog.text


async def test_without_an_audit_log_alerts_still_open(kit: MonitorKit) -> None:
    await kit.registry.create_device("dev1")
    monitor = await kit.started(audit=None)
    await kit.send(monitor, TAMPER)
    assert (await kit.only_alert()).actions == ("quarantine", "notify")


async def test_an_audit_failure_is_logged_and_does_not_stop_the_response(
    kit: MonitorKit, caplog: pytest.LogCaptureFixture
) -> None:
    await kit.registry.create_device("dev1")
    kit.audit.failure = StorageError("audit store down")
    monitor = await kit.started()
    await kit.send(monitor, TAMPER)
    assert (await kit.only_alert()).actions == ("quarantine", "notify")
    assert "could not audit alert-opened target=dev1" in caplog.text
    assert "could not audit playbook-quarantine target=dev1" in caplog.text


# --- playbooks ----------------------------------------------------------------------------------


async def test_quarantine_an_enabled_device(kit: MonitorKit) -> None:
    await kit.registry.create_device("dev1")
    monitor = await kit.started()  # default playbook: tamper:quarantine,notify
    await kit.send(monitor, TAMPER)
    assert (await kit.registry.get_device("dev1")).state is DeviceState.QUARANTINED
    alert = await kit.only_alert()
    assert alert.actions == ("quarantine", "notify")
    assert alert.version == 2  # the actions were recorded in one update
    assert kit.audit.actions() == [
        ("alert-opened", "dev1", "ok"),
        ("playbook-quarantine", "dev1", "ok"),
    ]
    assert kit.audit.records[1]["reason"] == alert.alert_id


async def test_quarantine_of_a_quarantined_device_records_no_action(kit: MonitorKit) -> None:
    await kit.registry.create_device("dev1")
    await kit.registry.set_state("dev1", DeviceState.QUARANTINED)
    monitor = await kit.started()
    await kit.send(monitor, TAMPER)
    assert (await kit.only_alert()).actions == ("notify",)
    assert [a for a, _, _ in kit.audit.actions()] == ["alert-opened"]


async def test_disable_an_enabled_device(kit: MonitorKit) -> None:
    await kit.registry.create_device("dev1")
    monitor = await kit.started(playbooks="tamper:disable")
    await kit.send(monitor, TAMPER)
    assert (await kit.registry.get_device("dev1")).state is DeviceState.DISABLED
    assert (await kit.only_alert()).actions == ("disable",)
    assert ("playbook-disable", "dev1", "ok") in kit.audit.actions()


async def test_disable_of_a_disabled_device_records_no_action(kit: MonitorKit) -> None:
    await kit.registry.create_device("dev1")
    await kit.registry.set_state("dev1", DeviceState.DISABLED)
    monitor = await kit.started(playbooks="tamper:disable")
    await kit.send(monitor, TAMPER)
    alert = await kit.only_alert()
    assert alert.actions == ()
    assert alert.version == 1  # nothing done, nothing recorded
    assert [a for a, _, _ in kit.audit.actions()] == ["alert-opened"]


async def test_revoke_replaces_sas_keys_and_revokes_certificates(kit: MonitorKit) -> None:
    before = (await kit.registry.create_device("dev1")).record
    monitor = await kit.started(playbooks="tamper:revoke")
    await kit.send(monitor, TAMPER)
    after = await kit.registry.get_device("dev1")
    assert after.primary_key_sealed != before.primary_key_sealed
    assert after.secondary_key_sealed != before.secondary_key_sealed
    assert after.state is DeviceState.ENABLED
    assert kit.authority.revoked == [("dev1", "keyCompromise")]
    assert (await kit.only_alert()).actions == ("revoke",)
    assert ("playbook-revoke", "dev1", "ok") in kit.audit.actions()


async def test_revoke_of_a_certificate_device_leaves_keys_alone(kit: MonitorKit) -> None:
    await kit.registry.create_device("cam-1", AuthKind.X509_CA)
    monitor = await kit.started(playbooks="tamper:revoke")
    await kit.send(monitor, TAMPER, device_id="cam-1")
    assert kit.authority.revoked == [("cam-1", "keyCompromise")]
    assert (await kit.only_alert("cam-1")).actions == ("revoke",)


async def test_revoke_without_an_authority_still_replaces_keys(kit: MonitorKit) -> None:
    before = (await kit.registry.create_device("dev1")).record
    monitor = await kit.started(playbooks="tamper:revoke", authority=None)
    await kit.send(monitor, TAMPER)
    after = await kit.registry.get_device("dev1")
    assert after.primary_key_sealed != before.primary_key_sealed
    assert (await kit.only_alert()).actions == ("revoke",)


async def test_notify_appends_the_alert_document_to_the_alert_file(kit: MonitorKit) -> None:
    sink = kit.tmp_path / "alerts.jsonl"
    monitor = await kit.started(playbooks="tamper:notify", alert_file=str(sink))
    seq = await kit.send(monitor, TAMPER)
    await kit.send(monitor, TAMPER, device_id="dev2")
    lines = sink.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    document = json.loads(lines[0])
    alert = await kit.only_alert()
    assert document == {
        "alertId": alert.alert_id,
        "alertType": "tamper",
        "severity": "critical",
        "deviceId": "dev1",
        "detector": alert.detector,
        "summary": alert.summary,
        "state": "open",
        "createdAt": alert.created_at,
        "lastSeenAt": alert.last_seen_at,
        "count": 1,
        "evidence": [seq],
        "details": json.loads(alert.details),
        "actions": [],
    }
    assert lines[0] == json.dumps(document, sort_keys=True)
    assert json.loads(lines[1])["deviceId"] == "dev2"


async def test_an_unwritable_alert_file_is_logged(
    kit: MonitorKit, caplog: pytest.LogCaptureFixture
) -> None:
    sink = kit.tmp_path / "missing-dir" / "alerts.jsonl"
    monitor = await kit.started(playbooks="tamper:notify", alert_file=str(sink))
    await kit.send(monitor, TAMPER)
    assert "cannot append the alert to" in caplog.text
    assert (await kit.only_alert()).actions == ("notify",)


async def test_a_failing_action_is_audited_and_the_others_still_run(
    kit: MonitorKit, caplog: pytest.LogCaptureFixture
) -> None:
    await kit.registry.create_device("dev1")
    kit.authority.failure = StorageError("CRL store down")
    monitor = await kit.started(playbooks="tamper:revoke,quarantine,notify")
    await kit.send(monitor, TAMPER)
    alert = await kit.only_alert()
    assert alert.actions == ("quarantine", "notify")
    assert (await kit.registry.get_device("dev1")).state is DeviceState.QUARANTINED
    assert kit.audit.actions() == [
        ("alert-opened", "dev1", "ok"),
        ("playbook-revoke", "dev1", "failed"),
        ("playbook-quarantine", "dev1", "ok"),
    ]
    assert kit.audit.records[1]["reason"] == alert.alert_id
    assert "playbook action failed action=revoke" in caplog.text


async def test_an_unknown_device_gets_only_the_notification(kit: MonitorKit) -> None:
    monitor = await kit.started()  # tamper:quarantine,notify, but no such device
    await kit.send(monitor, TAMPER, device_id="ghost")
    assert (await kit.only_alert("ghost")).actions == ("notify",)


async def test_device_actions_on_an_alert_about_no_device_do_nothing(kit: MonitorKit) -> None:
    monitor = kit.monitor(playbooks="fleet-x:quarantine,disable,revoke")
    await monitor._handle(finding("fleet-x", None, time=kit.clock.time()))
    alert = await kit.only_alert(None)
    assert alert.actions == ()
    assert alert.version == 1
    assert kit.authority.revoked == []


async def test_actions_are_recorded_after_a_concurrent_change(kit: MonitorKit) -> None:
    await kit.registry.create_device("dev1")
    monitor = await kit.started()
    kit.faulty.fail_next("update_alert", ConflictError("acknowledged meanwhile"))
    await kit.send(monitor, TAMPER)
    assert kit.faulty.pending("update_alert") == 0
    assert (await kit.only_alert()).actions == ("quarantine", "notify")


async def test_actions_of_an_alert_that_vanished_are_not_recorded(kit: MonitorKit) -> None:
    await kit.registry.create_device("dev1")
    monitor = await kit.started()
    kit.faulty.fail_next("get_alert", _ANSWER_NONE)
    await kit.send(monitor, TAMPER)
    assert kit.faulty.pending("get_alert") == 0
    assert (await kit.only_alert()).actions == ()
    assert (await kit.registry.get_device("dev1")).state is DeviceState.QUARANTINED


async def test_actions_keep_being_taken_when_recording_them_keeps_conflicting(
    kit: MonitorKit,
) -> None:
    await kit.registry.create_device("dev1")
    monitor = await kit.started()
    kit.faulty.fail_next("update_alert", ConflictError("busy"), times=3)
    await kit.send(monitor, TAMPER)  # does not raise
    assert kit.faulty.pending("update_alert") == 0
    assert (await kit.registry.get_device("dev1")).state is DeviceState.QUARANTINED
    assert ("playbook-quarantine", "dev1", "ok") in kit.audit.actions()


# --- the fleet audit ----------------------------------------------------------------------------


def _fleet(check: str, severity: Severity, subject: str = "dev1") -> FleetFinding:
    return FleetFinding(
        check=check, severity=severity, subject=subject, problem="is risky", fix="fix it"
    )


async def test_only_high_and_critical_fleet_findings_become_alerts(kit: MonitorKit) -> None:
    monitor = kit.monitor()
    found = [
        _fleet("weak-keys", Severity.LOW),
        _fleet("stale-certs", Severity.MEDIUM),
        _fleet("shared-keys", Severity.HIGH, subject="dev1, dev2"),
        _fleet("open-api", Severity.CRITICAL, subject="api.host"),
    ]

    async def run() -> list[FleetFinding]:
        return found

    await monitor._fleet_audit(run)
    alerts = await kit.alerts(None)
    assert sorted((a.alert_type, a.severity) for a in alerts) == [
        ("fleet-open-api", "critical"),
        ("fleet-shared-keys", "high"),
    ]
    shared = next(a for a in alerts if a.alert_type == "fleet-shared-keys")
    assert shared.detector == "fleet-audit"
    assert shared.summary == "dev1, dev2: is risky"
    assert json.loads(shared.details) == {"subject": "dev1, dev2", "fix": "fix it"}
    assert shared.actions == ("notify",)
    assert monitor.statistics().findings == 2


async def test_the_scheduled_fleet_audit_runs_and_merges(kit: MonitorKit) -> None:
    monitor = kit.monitor()
    runs: list[int] = []
    again = asyncio.Event()

    async def run() -> list[FleetFinding]:
        runs.append(len(runs))
        if len(runs) == 2:
            again.set()  # the first run's alerts are stored by now
        return [_fleet("open-api", Severity.CRITICAL)]

    monitor.schedule_fleet_audit(run, 0.0)  # off: nothing scheduled
    monitor.schedule_fleet_audit(run, -1.0)
    assert monitor._tasks == []
    monitor.schedule_fleet_audit(run, 0.001)
    await asyncio.wait_for(again.wait(), 5.0)
    await monitor.stop()
    assert (await kit.only_alert(None)).alert_type == "fleet-open-api"


# --- operators ----------------------------------------------------------------------------------


async def _open_alert(kit: MonitorKit, monitor: MonitorService) -> AlertRecord:
    await monitor._handle(finding(time=kit.clock.time()))
    return await kit.only_alert()


async def test_get_and_list_alerts(kit: MonitorKit) -> None:
    monitor = kit.monitor(playbooks="tamper:notify")
    alert = await _open_alert(kit, monitor)
    assert await monitor.get_alert(alert.alert_id) == alert
    assert await monitor.list_alerts(device_id="dev1") == [alert]
    assert await monitor.list_alerts(state=AlertState.RESOLVED) == []
    assert await monitor.list_alerts(after=alert.alert_id) == []
    with pytest.raises(NotFoundError, match="does not exist"):
        await monitor.get_alert("al_00000000000000_deadbeef")


async def test_acknowledge_then_resolve(kit: MonitorKit) -> None:
    monitor = kit.monitor(playbooks="tamper:notify")
    alert = await _open_alert(kit, monitor)
    kit.clock.advance(10)
    acked = await monitor.set_state(alert.alert_id, AlertState.ACKNOWLEDGED, actor="alice")
    assert (acked.state, acked.acknowledged_by, acked.resolved_by) == (
        AlertState.ACKNOWLEDGED,
        "alice",
        None,
    )
    assert acked.updated_at == kit.clock.time()
    assert acked.version == alert.version + 1
    assert await monitor.get_alert(alert.alert_id) == acked

    same = await monitor.set_state(alert.alert_id, AlertState.ACKNOWLEDGED, actor="bob")
    assert same == acked  # idempotent: no new version, the first operator stays

    resolved = await monitor.set_state(alert.alert_id, AlertState.RESOLVED, actor="bob")
    assert (resolved.state, resolved.acknowledged_by, resolved.resolved_by) == (
        AlertState.RESOLVED,
        "alice",
        "bob",
    )
    assert await monitor.get_alert(alert.alert_id) == resolved


async def test_an_open_alert_can_be_resolved_directly(kit: MonitorKit) -> None:
    monitor = kit.monitor(playbooks="tamper:notify")
    alert = await _open_alert(kit, monitor)
    resolved = await monitor.set_state(alert.alert_id, AlertState.RESOLVED, actor="carol")
    assert (resolved.acknowledged_by, resolved.resolved_by) == (None, "carol")


async def test_refused_state_changes(kit: MonitorKit) -> None:
    monitor = kit.monitor(playbooks="tamper:notify")
    alert = await _open_alert(kit, monitor)
    with pytest.raises(ValidationError, match="cannot be reopened"):
        await monitor.set_state(alert.alert_id, AlertState.OPEN, actor="alice")
    await monitor.set_state(alert.alert_id, AlertState.RESOLVED, actor="alice")
    for state in (AlertState.ACKNOWLEDGED, AlertState.RESOLVED):
        with pytest.raises(ValidationError, match="resolved already"):
            await monitor.set_state(alert.alert_id, state, actor="alice")
    with pytest.raises(NotFoundError):
        await monitor.set_state("al_missing", AlertState.RESOLVED, actor="alice")


async def test_a_state_change_that_loses_a_race_is_retried(kit: MonitorKit) -> None:
    monitor = kit.monitor(playbooks="tamper:notify")
    alert = await _open_alert(kit, monitor)
    kit.faulty.fail_next("update_alert", ConflictError("version moved"))
    acked = await monitor.set_state(alert.alert_id, AlertState.ACKNOWLEDGED, actor="alice")
    assert acked.state is AlertState.ACKNOWLEDGED
    assert kit.faulty.pending("update_alert") == 0


async def test_a_state_change_that_keeps_losing_gives_up(kit: MonitorKit) -> None:
    monitor = kit.monitor(playbooks="tamper:notify")
    alert = await _open_alert(kit, monitor)
    kit.faulty.fail_next("update_alert", ConflictError("version moved"), times=3)
    with pytest.raises(ConflictError, match="keeps changing"):
        await monitor.set_state(alert.alert_id, AlertState.ACKNOWLEDGED, actor="alice")
    assert (await monitor.get_alert(alert.alert_id)).state is AlertState.OPEN


async def test_release_ends_a_quarantine(kit: MonitorKit) -> None:
    await kit.registry.create_device("dev1")
    monitor = kit.monitor()
    with pytest.raises(ValidationError, match="not quarantined"):
        await monitor.release("dev1")
    with pytest.raises(NotFoundError):
        await monitor.release("ghost")
    await kit.registry.set_state("dev1", DeviceState.QUARANTINED)
    released = await monitor.release("dev1")
    assert released.state is DeviceState.ENABLED
    assert (await kit.registry.get_device("dev1")).state is DeviceState.ENABLED


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        pytest.param(10.0, 10.0, "lasts more than 0", id="empty"),
        pytest.param(10.0, 5.0, "lasts more than 0", id="backwards"),
        pytest.param(0.0, MAX_MAINTENANCE_SECONDS + 1, "at most", id="longer-than-a-week"),
        pytest.param(-100.0, -1.0, "ends in the past", id="in-the-past"),
        pytest.param(-100.0, 0.0, "ends in the past", id="ends-now"),
    ],
)
async def test_a_bad_maintenance_window_is_refused(
    kit: MonitorKit, start: float, end: float, message: str
) -> None:
    await kit.registry.create_device("dev1")
    monitor = kit.monitor()
    now = kit.clock.time()
    with pytest.raises(ValidationError, match=message):
        await monitor.open_maintenance_window("dev1", starts_at=now + start, ends_at=now + end)
    assert await kit.storage.get_monitor_state("detectors") is None


async def test_a_maintenance_window_for_an_unknown_device_is_refused(kit: MonitorKit) -> None:
    monitor = kit.monitor()
    now = kit.clock.time()
    with pytest.raises(NotFoundError):
        await monitor.open_maintenance_window("ghost", starts_at=now, ends_at=now + 600)


async def test_a_maintenance_window_lets_planned_usb_work_pass(kit: MonitorKit) -> None:
    await kit.registry.create_device("dev1")
    await kit.registry.create_device("dev2")
    monitor = await kit.started(playbooks="usb-outside-maintenance:notify")
    now = kit.clock.time()
    await monitor.open_maintenance_window(
        "dev1", starts_at=now, ends_at=now + MAX_MAINTENANCE_SECONDS
    )
    # Saved at once, so it survives a crash before the next snapshot.
    assert "dev1" in (await kit.saved_state())["detectors"]["physical-access"]["windows"]
    await kit.send(monitor, USB, device_id="dev1")
    await kit.send(monitor, USB, device_id="dev2")
    assert await kit.alerts("dev1") == []
    assert (await kit.only_alert("dev2")).alert_type == "usb-outside-maintenance"
    # After the window, the same work is an alert again.
    kit.clock.advance(MAX_MAINTENANCE_SECONDS)
    await kit.send(monitor, USB, device_id="dev1")
    assert (await kit.only_alert("dev1")).alert_type == "usb-outside-maintenance"


async def test_a_maintenance_window_needs_a_physical_access_detector(kit: MonitorKit) -> None:
    await kit.registry.create_device("dev1")
    detectors: list[Detector] = [UnrelatedDetector()]
    monitor = kit.monitor(detectors=DetectorSet(detectors))
    now = kit.clock.time()
    # LookupError is not among the errors open_maintenance_window documents.
    with pytest.raises(LookupError):
        await monitor.open_maintenance_window("dev1", starts_at=now, ends_at=now + 60)


async def test_injected_detectors_are_used(kit: MonitorKit) -> None:
    silence = SilenceDetector()
    monitor = await kit.started(detectors=DetectorSet([silence]))
    await kit.send(monitor, TAMPER)
    assert await kit.alerts() == []  # no tamper detector in this set
    assert "dev1" in json.dumps(silence.snapshot())


# --- device profiles and posture ---------------------------------------------------------------


async def test_reports_are_judged_with_the_device_profile(kit: MonitorKit) -> None:
    posture = FakePosture(assignments={"dev1": "kiosk"})
    recorder = RecordingDetector()
    monitor = await kit.started(posture=posture, detectors=DetectorSet([recorder]))
    body = b"[" + b",".join([inventory(), USB, TAMPER]) + b"]"
    await kit.send(monitor, body)
    assert [(e.kind, e.profile) for e in recorder.events] == [
        ("inventory", "kiosk"),
        ("usb", "kiosk"),
        ("tamper", None),  # not a kind a profile judges
    ]
    assert posture.lookups == ["dev1"]  # one lookup per message
    await kit.send(monitor, TAMPER)
    await kit.send(monitor, USB, device_id="dev2")
    assert posture.lookups == ["dev1", "dev2"]
    assert recorder.events[-1].profile is None  # dev2 has no profile


async def test_without_a_posture_service_reports_carry_no_profile(kit: MonitorKit) -> None:
    recorder = RecordingDetector()
    monitor = await kit.started(detectors=DetectorSet([recorder]))
    await kit.send(monitor, inventory())
    [event] = recorder.events
    assert (event.kind, event.profile) == ("inventory", None)


async def test_the_latest_posture_reports_are_kept(kit: MonitorKit) -> None:
    monitor = await kit.started()
    await kit.send(monitor, inventory(version="3.0.0"))
    newest = await kit.send(monitor, inventory(version="3.0.2"))
    antimalware = await kit.send(monitor, security_body("antimalware", engine="clam", enabled=True))
    await kit.send(monitor, USB)
    stored = await kit.storage.get_posture("dev1", "inventory")
    assert stored is not None
    assert stored.seq == newest
    assert stored.received_at == kit.clock.time()
    assert json.loads(stored.document)["packages"][0]["version"] == "3.0.2"
    kept = await kit.storage.get_posture("dev1", "antimalware")
    assert kept is not None
    assert kept.seq == antimalware
    assert await kit.storage.get_posture("dev1", "usb") is None


async def test_the_default_detectors_use_the_posture_advisories(kit: MonitorKit) -> None:
    posture = FakePosture(index=AdvisoryIndex([OPENSSL_ADVISORY]))
    monitor = await kit.started(posture=posture)
    seq = await kit.send(monitor, inventory())
    alert = await kit.only_alert()
    assert (alert.alert_type, alert.severity, alert.evidence) == (
        "vulnerable-package",
        "high",
        (seq,),
    )
    assert "OSV-2026-0001" in alert.details


async def test_new_advisories_recheck_the_stored_inventories(kit: MonitorKit) -> None:
    posture = FakePosture()
    monitor = await kit.started(posture=posture)
    assert posture.listeners == [monitor._advisories_changed]
    vulnerable = await kit.send(monitor, inventory(), device_id="dev1")
    await kit.send(monitor, inventory(version="3.0.9"), device_id="dev2")
    for device_id, document in (("dev3", "{damaged"), ("dev4", "[1, 2]")):
        await kit.storage.put_posture(
            PostureRecord(device_id, "inventory", seq=1, received_at=0.0, document=document)
        )
    assert await kit.alerts() == []

    kit.clock.advance(60)
    await posture.listeners[0](AdvisoryIndex([OPENSSL_ADVISORY]))
    alert = await kit.only_alert("dev1")
    assert alert.alert_type == "vulnerable-package"
    assert alert.evidence == (vulnerable,)
    assert alert.created_at == kit.clock.time()  # found now, not when the report came
    for other in ("dev2", "dev3", "dev4"):
        assert await kit.alerts(other) == []
    # The new index is in force for new reports too.
    await kit.send(monitor, inventory(), device_id="dev5")
    assert (await kit.only_alert("dev5")).alert_type == "vulnerable-package"


async def test_new_advisories_without_an_advisory_detector_change_nothing(
    kit: MonitorKit,
) -> None:
    monitor = await kit.started(posture=FakePosture(), detectors=DetectorSet([SilenceDetector()]))
    await kit.send(monitor, inventory())
    await monitor._advisories_changed(AdvisoryIndex([OPENSSL_ADVISORY]))
    assert await kit.alerts() == []


# --- notification sinks: the webhook ------------------------------------------------------------


async def test_a_webhook_must_use_https(kit: MonitorKit) -> None:
    settings = kit.webhook_settings() | {"webhook_url": "http://hooks.example.test/x"}
    with pytest.raises(ConfigError, match="only https://"):
        kit.monitor(**settings)


async def test_a_webhook_needs_a_secret_file(kit: MonitorKit) -> None:
    with pytest.raises(ConfigError, match="webhook_secret_file"):
        kit.monitor(webhook_url=WEBHOOK_URL)


async def test_a_missing_webhook_secret_file_is_refused(kit: MonitorKit) -> None:
    missing = kit.tmp_path / "nowhere.key"
    with pytest.raises(ConfigError, match="cannot be read"):
        kit.monitor(webhook_url=WEBHOOK_URL, webhook_secret_file=str(missing))


async def test_a_readable_by_others_webhook_secret_file_is_refused(kit: MonitorKit) -> None:
    settings = kit.webhook_settings()
    (kit.tmp_path / "webhook.key").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        kit.monitor(**settings)


@pytest.mark.parametrize("key", [b"", b"short", b"  0123456789abcde \n"], ids=["empty", "5", "15"])
async def test_a_short_webhook_key_is_refused(kit: MonitorKit, key: bytes) -> None:
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        kit.monitor(**kit.webhook_settings(key))


async def test_bad_playbooks_are_a_config_error(kit: MonitorKit) -> None:
    with pytest.raises(ConfigError, match=r"monitor\.playbooks: unknown playbook action"):
        kit.monitor(playbooks="tamper:explode")


async def test_post_signs_the_body(kit: MonitorKit, monkeypatch: pytest.MonkeyPatch) -> None:
    monitor = kit.monitor(**kit.webhook_settings())
    hook = FakeWebhook([204], loop=asyncio.get_running_loop(), expect=1)
    monkeypatch.setattr("ironhub.monitor.service._urlopen", hook)
    body = b'{"alertId":"al_1"}'
    monitor._post(body)
    [(request, timeout, context)] = hook.requests
    assert request.full_url == WEBHOOK_URL
    assert request.get_method() == "POST"
    assert request.data == body
    assert request.get_header("Content-type") == "application/json"
    expected = hmac.new(WEBHOOK_KEY, body, hashlib.sha256).hexdigest()
    assert request.get_header("X-ironhub-signature") == f"sha256={expected}"
    assert timeout == 10
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED


async def test_the_key_file_is_stripped_of_surrounding_space(
    kit: MonitorKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monitor = kit.monitor(**kit.webhook_settings(WEBHOOK_KEY + b"\n"))
    hook = FakeWebhook([204], loop=asyncio.get_running_loop(), expect=1)
    monkeypatch.setattr("ironhub.monitor.service._urlopen", hook)
    monitor._post(b"{}")
    expected = hmac.new(WEBHOOK_KEY, b"{}", hashlib.sha256).hexdigest()
    assert hook.requests[0][0].get_header("X-ironhub-signature") == f"sha256={expected}"


@pytest.mark.parametrize("status", [300, 404, 500])
async def test_post_refuses_a_non_success_answer(
    kit: MonitorKit, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    monitor = kit.monitor(**kit.webhook_settings())
    hook = FakeWebhook([status], loop=asyncio.get_running_loop(), expect=1)
    monkeypatch.setattr("ironhub.monitor.service._urlopen", hook)
    with pytest.raises(OSError, match=f"webhook answered {status}"):
        monitor._post(b"{}")


async def _run_notifier(
    monitor: MonitorService,
    monkeypatch: pytest.MonkeyPatch,
    hook: FakeWebhook,
    documents: list[dict[str, Any]],
) -> list[float]:
    """Feed ``documents`` to the notifier until ``hook`` saw what it expects; the delays."""
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr("ironhub.monitor.service._urlopen", hook)
    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    for document in documents:
        monitor._notify_queue.put_nowait(document)
    task = asyncio.get_running_loop().create_task(monitor._notifier())
    try:
        await asyncio.wait_for(hook.arrived.wait(), 10.0)
    finally:
        await _cancel(task)
    return delays


async def test_the_webhook_is_retried_with_backoff(
    kit: MonitorKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monitor = kit.monitor(**kit.webhook_settings())
    hook = FakeWebhook(
        [urllib.error.URLError("refused"), 503, 204], loop=asyncio.get_running_loop(), expect=3
    )
    delays = await _run_notifier(monitor, monkeypatch, hook, [{"alertId": "al_1", "b": 1}])
    assert delays == [1.0, 2.0]
    bodies = [request.data for request, _, _ in hook.requests]
    assert bodies == [b'{"alertId": "al_1", "b": 1}'] * 3  # the same signed body each time


async def test_the_webhook_gives_up_after_its_attempts(
    kit: MonitorKit, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = kit.monitor(**kit.webhook_settings(), webhook_attempts=8)
    hook = FakeWebhook([500] * 8, loop=asyncio.get_running_loop(), expect=9)
    delays = await _run_notifier(
        monitor, monkeypatch, hook, [{"alertId": "al_lost"}, {"alertId": "al_next"}]
    )
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]  # capped at a minute
    assert "webhook gave up on alert al_lost" in caplog.text
    assert json.loads(hook.requests[-1][0].data) == {"alertId": "al_next"}


async def test_notify_queues_the_alert_for_the_webhook(kit: MonitorKit) -> None:
    monitor = kit.monitor(playbooks="tamper:notify", **kit.webhook_settings())
    await monitor._handle(finding(time=kit.clock.time()))
    alert = await kit.only_alert()
    # The document is taken when the alert opens, before its actions are recorded.
    assert monitor._notify_queue.get_nowait() == alert_document(replace(alert, actions=()))


async def test_a_full_webhook_queue_drops_the_alert_loudly(
    kit: MonitorKit, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = kit.monitor(playbooks="tamper:notify", **kit.webhook_settings())
    monitor._notify_queue = asyncio.Queue(maxsize=1)
    monitor._notify_queue.put_nowait({"alertId": "older"})
    await monitor._handle(finding(time=kit.clock.time()))
    alert = await kit.only_alert()
    assert f"webhook queue full; alert {alert.alert_id} not sent" in caplog.text
    assert alert.actions == ("notify",)


async def test_the_alert_document_of_unreadable_details(kit: MonitorKit) -> None:
    monitor = kit.monitor(playbooks="tamper:notify")
    alert = await _open_alert(kit, monitor)
    document = alert_document(replace(alert, details="{broken", actions=("notify",)))
    assert document["details"] == {}
    assert document["actions"] == ["notify"]


# --- sanity of the fakes --------------------------------------------------------------------------


async def test_the_faulty_storage_passes_everything_else_through(kit: MonitorKit) -> None:
    await kit.faulty.put_monitor_state("x", "1")
    assert await kit.faulty.get_monitor_state("x") == "1"
    kit.faulty.fail_next("get_monitor_state", StorageError("boom"))
    with pytest.raises(StorageError):
        await kit.faulty.get_monitor_state("x")
    assert await kit.faulty.last_seq() == 0


async def test_the_webhook_follows_no_redirect() -> None:
    # urllib would re-send the POST as a bodiless GET (to any scheme) and count it delivered.
    from ironhub.monitor import service as service_module

    handler = service_module._RefuseRedirects()
    request = urllib.request.Request(WEBHOOK_URL, data=b"{}", method="POST")
    assert handler.redirect_request(request, None, 302, "Found", {}, "http://x/") is None
    opener_handlers = []
    real_build = urllib.request.build_opener

    def spy(*handlers: Any) -> urllib.request.OpenerDirector:
        opener_handlers.extend(handlers)
        return real_build(*handlers)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(urllib.request, "build_opener", spy)
        with pytest.raises(OSError):
            service_module._urlopen(request, timeout=0.01, context=None)
    assert any(isinstance(h, service_module._RefuseRedirects) for h in opener_handlers)
