"""The monitor service: the message log in, alerts and responses out (issue 6).

It is a consumer of the message log (ARCHITECTURE.md: endpoint → router → log → consumers):

1. It follows every committed message from a stored cursor (catching up after a restart, then
   live through a log subscription; a lag cut-off falls back to catching up).
2. Each message becomes security events (:mod:`ironhub.monitor.events`): a device's security
   message is parsed (malformed and unknown ones are kept, flagged), the hub's own security and
   lifecycle records become hub events, telemetry becomes a size observation.
3. The detectors (:mod:`ironhub.monitor.detectors`, pure state machines) turn events into
   findings; a timer wakes the time-driven ones. Reports a device profile judges carry the
   device's assigned profile (its twin tag, read per message), and each device's latest
   inventory, anti-malware and ports report is kept for the posture report
   (:mod:`ironhub.monitor.posture_service`); new advisories re-check the kept inventories.
4. Findings become alerts by the rules of :mod:`ironhub.monitor.alerts` (merge, suppress, new).
5. A new alert runs its playbook: quarantine, disable, revoke, notify. Every action is recorded
   in the audit log, and every one is reversible by an operator (release, enable, new keys).

The detectors' state and the cursor are saved together every few seconds and at stop, so a
restarted hub continues where it stopped; events between the last save and a crash are
processed again, which can at most repeat a finding that de-duplication then merges.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import http.client
import json
import logging
import secrets
import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ironhub.errors import (
    ConfigError,
    ConflictError,
    IronhubError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from ironhub.monitor import events as parse
from ironhub.monitor.alerts import (
    AlertPolicy,
    Decision,
    decide,
    merge_finding,
    new_alert,
    parse_playbooks,
)
from ironhub.monitor.detectors import AdvisoryDetector, DetectorSet, all_detectors
from ironhub.monitor.model import Finding, SecurityEvent, Severity
from ironhub.registry.service import KEY_SLOTS
from ironhub.storage.interfaces import (
    AlertRecord,
    AlertState,
    AuthKind,
    DeviceState,
    PostureRecord,
    Stream,
)
from ironhub.streams.log import SubscriberLagged

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ironhub.audit.service import AuditLog
    from ironhub.clock import Clock
    from ironhub.config import MonitorConfig
    from ironhub.monitor.advisories import AdvisoryIndex
    from ironhub.monitor.fleet import FleetFinding
    from ironhub.monitor.posture_service import PostureService
    from ironhub.provisioning.authority import DeviceAuthority
    from ironhub.registry.service import Registry
    from ironhub.storage.interfaces import DeviceRecord, Storage, StoredMessage
    from ironhub.streams.log import MessageLog

__all__ = ["MAX_MAINTENANCE_SECONDS", "MonitorService", "MonitorStatistics"]

logger = logging.getLogger(__name__)

_STATE_NAME: Final = "detectors"
_CATCH_UP_PAGE: Final = 1000
_SUBSCRIPTION_QUEUE: Final = 20_000
#: The longest maintenance window an operator may open (a week).
MAX_MAINTENANCE_SECONDS: Final = 7 * 86400.0
#: Attempts of an alert update that keeps losing to a concurrent change (an operator's ack).
_UPDATE_ATTEMPTS: Final = 3
#: Device report kinds judged against the device's profile: the profile is looked up for them.
_PROFILED_KINDS: Final = frozenset({"inventory", "antimalware", "ports", "usb", "login"})
#: Device report kinds whose latest copy is kept per device for the posture report.
_POSTURE_KINDS: Final = frozenset({"inventory", "antimalware", "ports"})


@dataclass(frozen=True, slots=True)
class MonitorStatistics:
    """Counters for tests and ``/metrics``."""

    cursor: int
    events: int
    findings: int
    alerts_opened: int
    suppressed: int


class MonitorService:
    """Follows the message log, runs the detectors, keeps the alerts, runs the playbooks."""

    def __init__(
        self,
        storage: Storage,
        log: MessageLog,
        registry: Registry,
        clock: Clock,
        config: MonitorConfig,
        *,
        audit: AuditLog | None = None,
        authority: DeviceAuthority | None = None,
        detectors: DetectorSet | None = None,
        posture: PostureService | None = None,
    ) -> None:
        self._storage = storage
        self._log = log
        self._registry = registry
        self._clock = clock
        self._config = config
        self._audit = audit
        self._authority = authority
        self._posture = posture
        if detectors is None:
            detectors = DetectorSet(
                all_detectors()
                if posture is None
                else all_detectors(profiles=posture.book, advisories=posture.index)
            )
        self._detectors = detectors
        self._policy = AlertPolicy(suppression_seconds=config.suppression_seconds)
        try:
            self._playbooks = parse_playbooks(config.playbooks)
        except ValidationError as exc:
            raise ConfigError(f"monitor.playbooks: {exc}") from None
        self._webhook_key = self._load_webhook_key()
        self._webhook_tls = (
            ssl.create_default_context(cafile=config.webhook_ca_file or None)
            if self._webhook_key is not None
            else None
        )
        self._cursor = 0
        self._events = 0
        self._findings = 0
        self._opened = 0
        self._suppressed = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._notify_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
        self._lock = asyncio.Lock()
        self._processed = asyncio.Condition()

    def _load_webhook_key(self) -> bytes | None:
        if not self._config.webhook_url:
            return None
        if not self._config.webhook_url.startswith("https://"):
            raise ConfigError("monitor.webhook_url: only https:// webhooks are allowed")
        if not self._config.webhook_secret_file:
            raise ConfigError("monitor.webhook_url needs monitor.webhook_secret_file (HMAC key)")
        from ironhub.custody import read_secret_file  # noqa: PLC0415 - only with a webhook

        key = read_secret_file(Path(self._config.webhook_secret_file)).strip()
        if len(key) < 16:
            raise ConfigError("monitor.webhook_secret_file: the key must be at least 16 bytes")
        return key

    # --- life cycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Restore the saved state and start following the log.

        Raises:
            StorageError: the saved state cannot be read.
        """
        saved = await self._storage.get_monitor_state(_STATE_NAME)
        if saved is not None:
            try:
                state = json.loads(saved)
                self._cursor = int(state.get("cursor", 0))
                self._detectors.restore(state.get("detectors", {}))
            except (ValueError, TypeError, AttributeError):
                # Corrupt state: start the detectors afresh from the saved cursor, loudly.
                logger.exception("monitor state unreadable; detectors start afresh")
        if self._posture is not None:
            self._posture.add_advisory_listener(self._advisories_changed)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follow(), name="monitor-follow"),
            loop.create_task(self._every(self._config.tick_interval_seconds, self._tick)),
            loop.create_task(self._every(self._config.snapshot_interval_seconds, self._save)),
            loop.create_task(self._notifier(), name="monitor-notify"),
        ]

    def schedule_fleet_audit(
        self, run: Callable[[], Awaitable[Sequence[FleetFinding]]], seconds: float
    ) -> None:
        """Run the fleet audit every ``seconds`` (the first run after one interval).

        Its high and critical findings become alerts of type ``fleet-<check>`` (one open
        alert per check; its summary names the latest subject), so a risky configuration
        reaches an operator like any other alert and is notified by the same playbook rules.
        """
        if seconds <= 0:
            return
        self._tasks.append(
            asyncio.get_running_loop().create_task(
                self._every(seconds, lambda: self._fleet_audit(run)), name="monitor-fleet"
            )
        )

    async def _fleet_audit(self, run: Callable[[], Awaitable[Sequence[FleetFinding]]]) -> None:
        now = self._clock.time()
        for found in await run():
            if found.severity not in (Severity.HIGH, Severity.CRITICAL):
                continue
            await self._handle(
                Finding(
                    detector="fleet-audit",
                    alert_type=f"fleet-{found.check}",
                    severity=found.severity,
                    device_id=None,
                    summary=f"{found.subject}: {found.problem}"[:500],
                    time=now,
                    details={"subject": found.subject[:256], "fix": found.fix[:500]},
                )
            )

    async def stop(self) -> None:
        """Stop following and save the state (nothing to save if it never started)."""
        if not self._tasks:
            return
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # a task that died must not cost the saved state
                logger.exception("monitor task %s had failed", task.get_name())
        self._tasks = []
        with contextlib.suppress(StorageError):
            await self._save()

    def statistics(self) -> MonitorStatistics:
        """Counters: the cursor and what went through."""
        return MonitorStatistics(
            cursor=self._cursor,
            events=self._events,
            findings=self._findings,
            alerts_opened=self._opened,
            suppressed=self._suppressed,
        )

    async def wait_for(self, seq: int, seconds: float = 5.0) -> bool:
        """Wait up to ``seconds`` until every message up to ``seq`` was processed."""
        async with self._processed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._processed.wait_for(lambda: self._cursor >= seq), seconds
                )
        return self._cursor >= seq

    async def _every(self, seconds: float, job: Any) -> None:  # noqa: ANN401 - a coroutine fn
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except IronhubError:
                logger.exception("monitor job failed; it runs again")

    async def _save(self) -> None:
        async with self._lock:
            state = {"cursor": self._cursor, "detectors": self._detectors.snapshot()}
        await self._storage.put_monitor_state(_STATE_NAME, json.dumps(state))

    async def _tick(self) -> None:
        async with self._lock:
            findings = self._detectors.tick(self._clock.time())
        for finding in findings:
            await self._handle(finding)

    # --- following the log ----------------------------------------------------------------------
    async def _follow(self) -> None:
        while True:
            subscription = None
            try:
                subscription = self._log.subscribe(max_queue=_SUBSCRIPTION_QUEUE)
                await self._catch_up()
                async for message in subscription:
                    if message.seq > self._cursor:
                        await self._process(message)
            except SubscriberLagged:
                logger.warning("monitor fell behind the log; catching up cursor=%d", self._cursor)
            except StorageError:
                logger.exception("monitor cannot read the log; retrying")
                await asyncio.sleep(1.0)
            finally:
                if subscription is not None:
                    subscription.close()

    async def _catch_up(self) -> None:
        while True:
            page = await self._log.query(after_seq=self._cursor, limit=_CATCH_UP_PAGE)
            if not page:
                return
            for message in page:
                await self._process(message)

    def _events_of(self, message: StoredMessage) -> list[SecurityEvent]:
        if message.stream is Stream.SECURITY and message.payload:
            # A device's own security message (the hub's records carry no payload).
            return parse.parse_security_message(
                device_id=message.device_id or "",
                payload=message.payload,
                received_at=message.enqueued_at,
                seq=message.seq,
            )
        if message.stream in (Stream.SECURITY, Stream.LIFECYCLE):
            event = parse.hub_event(
                stream=message.stream.value,
                device_id=message.device_id,
                properties=message.properties,
                received_at=message.enqueued_at,
                seq=message.seq,
            )
            return [event] if event is not None else []
        if message.stream is Stream.TELEMETRY and message.device_id:
            return [
                parse.message_event(
                    device_id=message.device_id,
                    size=len(message.payload),
                    received_at=message.enqueued_at,
                    seq=message.seq,
                )
            ]
        return []

    async def _profiled(self, events: list[SecurityEvent]) -> list[SecurityEvent]:
        """Events with the device's assigned profile filled in, for the kinds it judges.

        The profile is the device twin's tag at the time the report is processed (one lookup
        per message); reports of other kinds pass unchanged.
        """
        if self._posture is None:
            return events
        profile: str | None = None
        looked_up = False
        out = []
        for event in events:
            if event.kind in _PROFILED_KINDS and event.device_id:
                if not looked_up:
                    profile = await self._posture.assigned_profile(event.device_id)
                    looked_up = True
                event = dataclasses.replace(event, profile=profile)  # noqa: PLW2901
            out.append(event)
        return out

    async def _keep_posture(self, events: list[SecurityEvent]) -> None:
        """Keep each device's latest inventory, anti-malware and ports report."""
        for event in events:
            if event.kind in _POSTURE_KINDS and event.device_id and event.seq is not None:
                await self._storage.put_posture(
                    PostureRecord(
                        device_id=event.device_id,
                        kind=event.kind,
                        seq=event.seq,
                        received_at=event.time,
                        document=json.dumps(dict(event.fields), separators=(",", ":")),
                    )
                )

    async def _process(self, message: StoredMessage) -> None:
        findings: list[Finding] = []
        events = await self._profiled(self._events_of(message))
        await self._keep_posture(events)
        async with self._lock:
            for event in events:
                self._events += 1
                findings.extend(self._detectors.observe(event))
        for finding in findings:
            await self._handle(finding)
        async with self._processed:
            self._cursor = max(self._cursor, message.seq)
            self._processed.notify_all()

    async def _advisories_changed(self, index: AdvisoryIndex) -> None:
        """New advisories: put them in force and re-check every device's latest inventory.

        A device running a package that an advisory imported today covers is alerted now,
        not at its next inventory report.
        """
        targets = [d for d in self._detectors.detectors if isinstance(d, AdvisoryDetector)]
        if not targets:
            return
        async with self._lock:
            for detector in targets:
                detector.set_index(index)
        after = ""
        while page := await self._storage.list_posture("inventory", after=after, limit=1000):
            for record in page:
                try:
                    fields = json.loads(record.document)
                except ValueError:
                    continue
                event = SecurityEvent(
                    kind="inventory",
                    device_id=record.device_id,
                    time=self._clock.time(),
                    fields=fields if isinstance(fields, dict) else {},
                    seq=record.seq,
                )
                async with self._lock:
                    findings = [f for d in targets for f in d.observe(event)]
                for finding in findings:
                    await self._handle(finding)
            after = page[-1].device_id

    # --- alerts -------------------------------------------------------------------------------
    async def _handle(self, finding: Finding) -> None:
        self._findings += 1
        for _ in range(_UPDATE_ATTEMPTS):
            existing = await self._storage.find_alert(finding.alert_type, finding.device_id)
            decision = decide(existing, finding, self._policy)
            try:
                if decision is Decision.SUPPRESS:
                    self._suppressed += 1
                    return
                if decision is Decision.MERGE:
                    assert existing is not None
                    merged = merge_finding(existing, finding, self._policy)
                    await self._storage.update_alert(
                        _next_version(merged), expected_version=existing.version
                    )
                    return
                alert = new_alert(finding, _alert_id(finding.time), self._policy)
                await self._storage.insert_alert(alert)
            except ConflictError:
                continue  # an operator changed it meanwhile, or an id collided: look again
            self._opened += 1
            logger.warning(
                "alert opened id=%s type=%s severity=%s device_id=%s",
                alert.alert_id,
                alert.alert_type,
                alert.severity,
                alert.device_id,
            )
            await self._audit_record(
                "alert-opened",
                target=alert.device_id or "-",
                reason=f"{alert.alert_id} {alert.alert_type} {alert.severity}",
            )
            await self._respond(alert)
            return
        logger.error(
            "alert kept changing concurrently; finding dropped type=%s", finding.alert_type
        )

    async def _respond(self, alert: AlertRecord) -> None:
        """Run the alert's playbook; record each action on the alert and in the audit log."""
        done: list[str] = []
        for action in self._playbooks.get(alert.alert_type, ("notify",)):
            try:
                if await self._act(action, alert):
                    done.append(action)
            except (IronhubError, OSError):
                logger.exception(
                    "playbook action failed action=%s alert=%s", action, alert.alert_id
                )
                await self._audit_record(
                    f"playbook-{action}",
                    target=alert.device_id or "-",
                    outcome="failed",
                    reason=alert.alert_id,
                )
        if done:
            for _ in range(_UPDATE_ATTEMPTS):
                current = await self._storage.get_alert(alert.alert_id)
                if current is None:
                    return
                try:
                    await self._storage.update_alert(
                        _next_version(_replace(current, actions=(*current.actions, *done))),
                        expected_version=current.version,
                    )
                except ConflictError:
                    continue
                return
            logger.error(
                "alert kept changing; actions %s not recorded on alert %s (they are audited)",
                ",".join(done),
                alert.alert_id,
            )

    async def _act(self, action: str, alert: AlertRecord) -> bool:
        device_id = alert.device_id
        if action == "notify":
            self._notify(alert)
            return True
        if device_id is None:
            return False
        try:
            record = await self._registry.get_device(device_id)
        except NotFoundError:
            return False
        if action == "quarantine":
            if record.state is not DeviceState.ENABLED:
                return False
            await self._registry.set_state(device_id, DeviceState.QUARANTINED)
        elif action == "disable":
            if record.state is DeviceState.DISABLED:
                return False
            await self._registry.set_state(device_id, DeviceState.DISABLED)
        else:  # revoke
            await self._revoke(record)
        await self._audit_record(f"playbook-{action}", target=device_id, reason=alert.alert_id)
        return True

    async def _revoke(self, record: DeviceRecord) -> None:
        """Take the identity's credentials away: certificates revoked, SAS keys replaced."""
        if self._authority is not None:
            await self._authority.revoke_device(record.device_id, "keyCompromise")
        if record.auth_kind is AuthKind.SAS:
            # New random keys nobody learns: an operator rotates again to hand out a new key.
            for slot in KEY_SLOTS:
                await self._registry.rotate_key(record.device_id, slot)

    async def _audit_record(
        self, action: str, *, target: str, reason: str, outcome: str = "ok"
    ) -> None:
        if self._audit is None:
            return
        try:
            await self._audit.record(
                actor_kind="hub",
                actor="monitor",
                action=action,
                target=target,
                outcome=outcome,
                reason=reason,
            )
        except (StorageError, ValidationError):
            logger.exception("could not audit %s target=%s", action, target)

    # --- notification sinks -------------------------------------------------------------------
    def _notify(self, alert: AlertRecord) -> None:
        document = alert_document(alert)
        if self._config.alert_file:
            try:
                path = Path(self._config.alert_file)
                with path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(document, sort_keys=True) + "\n")
            except OSError:
                logger.exception("cannot append the alert to %s", self._config.alert_file)
        if self._webhook_key is not None:
            try:
                self._notify_queue.put_nowait(document)
            except asyncio.QueueFull:
                logger.error(  # noqa: TRY400 - a full queue, not an error of ours
                    "webhook queue full; alert %s not sent", alert.alert_id
                )

    async def _notifier(self) -> None:
        while True:
            document = await self._notify_queue.get()
            body = json.dumps(document, sort_keys=True).encode()
            delay = 1.0
            for attempt in range(1, self._config.webhook_attempts + 1):
                try:
                    await asyncio.to_thread(self._post, body)
                    break
                except (OSError, http.client.HTTPException) as exc:
                    # HTTPException: a receiver that answers something that is not HTTP
                    # (BadStatusLine) must not end notification for good.
                    logger.warning("webhook attempt %d failed: %s", attempt, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60.0)
            else:
                logger.error("webhook gave up on alert %s", document.get("alertId"))

    def _post(self, body: bytes) -> None:
        assert self._webhook_key is not None
        signature = hmac.new(self._webhook_key, body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(  # noqa: S310 - https only, checked at start
            self._config.webhook_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Ironhub-Signature": f"sha256={signature}",
            },
        )
        with _urlopen(request, timeout=10, context=self._webhook_tls) as response:
            if response.status >= 300:
                raise OSError(f"webhook answered {response.status}")

    # --- operators ----------------------------------------------------------------------------
    async def list_alerts(
        self,
        *,
        device_id: str | None = None,
        state: AlertState | None = None,
        after: str = "",
        limit: int = 100,
    ) -> list[AlertRecord]:
        """Alerts, oldest first.

        Raises:
            StorageError: storage failed.
        """
        return await self._storage.list_alerts(
            device_id=device_id, state=state, after=after, limit=limit
        )

    async def get_alert(self, alert_id: str) -> AlertRecord:
        """One alert.

        Raises:
            NotFoundError: no such alert.
            StorageError: storage failed.
        """
        alert = await self._storage.get_alert(alert_id)
        if alert is None:
            raise NotFoundError(f"alert {alert_id!r} does not exist")
        return alert

    async def set_state(self, alert_id: str, state: AlertState, *, actor: str) -> AlertRecord:
        """Acknowledge or resolve an alert.

        Resolving an acknowledged one is allowed; nothing goes back to open (a new finding
        after the suppression window opens a new alert).

        Raises:
            ValidationError: the change is not allowed (a resolved alert, or back to open).
            NotFoundError: no such alert.
            ConflictError: it kept changing concurrently.
            StorageError: storage failed.
        """
        if state is AlertState.OPEN:
            raise ValidationError("an alert cannot be reopened")
        for _ in range(_UPDATE_ATTEMPTS):
            alert = await self.get_alert(alert_id)
            if alert.state is AlertState.RESOLVED:
                raise ValidationError("the alert is resolved already")
            if alert.state is state:
                return alert
            now = self._clock.time()
            changed = _replace(
                alert,
                state=state,
                updated_at=now,
                acknowledged_by=actor
                if state is AlertState.ACKNOWLEDGED
                else alert.acknowledged_by,
                resolved_by=actor if state is AlertState.RESOLVED else alert.resolved_by,
            )
            try:
                await self._storage.update_alert(
                    _next_version(changed), expected_version=alert.version
                )
            except ConflictError:
                continue
            return _next_version(changed)
        raise ConflictError(f"alert {alert_id!r} keeps changing; try again")

    async def open_maintenance_window(
        self, device_id: str, *, starts_at: float, ends_at: float
    ) -> None:
        """Let USB devices and console logins on ``device_id`` pass unalerted in a window.

        The window is part of the detectors' saved state (it survives a restart) and is saved
        at once.

        Raises:
            ValidationError: the window is empty, longer than :data:`MAX_MAINTENANCE_SECONDS`,
                or ends in the past.
            NotFoundError: no such device.
            LookupError: the monitor runs no physical-access detector (a custom detector set).
            StorageError: storage failed.
        """
        if not starts_at < ends_at or ends_at - starts_at > MAX_MAINTENANCE_SECONDS:
            raise ValidationError(
                f"a maintenance window lasts more than 0 and at most {MAX_MAINTENANCE_SECONDS:g} s"
            )
        if ends_at <= self._clock.time():
            raise ValidationError("the maintenance window ends in the past")
        await self._registry.get_device(device_id)
        async with self._lock:
            self._detectors.set_maintenance_window(device_id, starts_at, ends_at)
        await self._save()

    async def release(self, device_id: str) -> DeviceRecord:
        """End a device's quarantine (its telemetry is accepted again at once).

        Raises:
            ValidationError: the device is not quarantined.
            NotFoundError: no such device.
            StorageError: storage failed.
        """
        record = await self._registry.get_device(device_id)
        if record.state is not DeviceState.QUARANTINED:
            raise ValidationError(f"device {device_id!r} is not quarantined")
        return await self._registry.set_state(device_id, DeviceState.ENABLED)


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Follows no redirect.

    urllib would re-send the POST as a bodiless GET, to any scheme (``http://`` too), and
    count that answer as the delivery.
    """

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401, ARG002
        """None: urllib then raises ``HTTPError`` (an ``OSError``), retried, then given up."""
        return


def _urlopen(
    request: urllib.request.Request, *, timeout: float, context: ssl.SSLContext | None
) -> Any:  # noqa: ANN401 - urllib's response object
    """``urllib.request.urlopen`` for the webhook: TLS as configured, redirects refused."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context), _RefuseRedirects()
    )
    return opener.open(request, timeout=timeout)


def alert_document(alert: AlertRecord) -> dict[str, Any]:
    """The JSON form of an alert for the sinks (the API's view, camelCase)."""
    try:
        details = json.loads(alert.details)
    except ValueError:
        details = {}
    return {
        "alertId": alert.alert_id,
        "alertType": alert.alert_type,
        "severity": alert.severity,
        "deviceId": alert.device_id,
        "detector": alert.detector,
        "summary": alert.summary,
        "state": alert.state.value,
        "createdAt": alert.created_at,
        "lastSeenAt": alert.last_seen_at,
        "count": alert.count,
        "evidence": list(alert.evidence),
        "details": details,
        "actions": list(alert.actions),
    }


def _alert_id(now: float) -> str:
    # Sorts by creation time (list order), unique by its random tail.
    return f"al_{int(now * 1000):014d}_{secrets.token_hex(4)}"


def _replace(alert: AlertRecord, **changes: Any) -> AlertRecord:  # noqa: ANN401
    return dataclasses.replace(alert, **changes)


def _next_version(alert: AlertRecord) -> AlertRecord:
    return _replace(alert, version=alert.version + 1)
