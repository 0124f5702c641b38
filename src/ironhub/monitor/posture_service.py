"""Device posture: profiles, advisories and the outdated/vulnerable-device report (issue 6).

The rules are pure and live elsewhere: :mod:`ironhub.monitor.profiles` (what a profile may say,
drift, baselines) and :mod:`ironhub.monitor.advisories` (OSV parsing, version orders, matching).
This service keeps them in force and answers operators:

* **Profiles** are stored (``profiles`` table) and held in a :class:`ProfileBook` that the
  monitor's detectors share, so a change applies to the next report. A device's profile is the
  twin tag ``ironhub.profile`` (set here through the twin service, so a tag change is an
  ordinary, versioned twin update); the monitor reads the tag for each report it judges.
* **Advisories** are imported offline from an OSV file (one advisory, a JSON list, or OSV's
  per-ecosystem ``all.zip``): each is checked, a stored copy is replaced only by a newer
  ``modified``, withdrawn ones are removed, the index is rebuilt and listeners (the monitor)
  told, which re-check every stored inventory at once.
* **The report** judges each device's latest stored inventory, anti-malware and ports reports
  (kept by the monitor in ``device_posture``) against its profile and the advisories.

The API records every change in the audit log (``operator-action``, with the caller); a
failure to store anything leaves the profiles and advisories in force unchanged (storage
first, memory second).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ironhub.errors import ConflictError, NotFoundError, ValidationError
from ironhub.monitor.advisories import (
    Advisory,
    AdvisoryError,
    AdvisoryIndex,
    advisory_from_json,
    advisory_to_json,
    match_inventory,
    parse_feed,
)
from ironhub.monitor.compliance import PostureFacts
from ironhub.monitor.profiles import (
    PROFILE_TAG,
    ProfileBook,
    ProfileError,
    hardware_drift,
    parse_profile,
    profile_document,
    profile_name_of_tags,
    validate_profile_name,
)
from ironhub.storage.interfaces import AdvisoryRecord, ProfileRecord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping

    from ironhub.clock import Clock
    from ironhub.hub.twins import TwinService
    from ironhub.monitor.advisories import Match
    from ironhub.monitor.profiles import DeviceProfile
    from ironhub.registry.service import Registry
    from ironhub.storage.interfaces import PostureRecord, Storage

__all__ = [
    "DevicePosture",
    "ImportSummary",
    "PostureReport",
    "PostureService",
]

logger = logging.getLogger(__name__)

#: Profiles a hub keeps (each is judged per report; a fleet has a handful of models).
MAX_PROFILES: Final = 1000
#: Devices one assign request may name.
MAX_ASSIGN: Final = 1000
#: Refused entries an import answer lists (all are counted).
MAX_REFUSED_LISTED: Final = 100
#: Rows read per storage call.
PAGE: Final = 1000
#: The monitor_state entry describing the last import.
_IMPORT_STATE: Final = "advisories-import"
#: Anti-malware definitions older than this are stale when no profile says otherwise (the
#: anti-malware detector's default).
_DEFAULT_MAX_DEFINITIONS_HOURS: Final = 72.0


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an advisory import did."""

    source: str
    added: int
    updated: int
    unchanged: int
    withdrawn: int
    refused: int
    refused_listed: list[tuple[str, str]]
    total: int
    imported_at: float


@dataclass(frozen=True, slots=True)
class DevicePosture:
    """One device's standing in the report: every problem found (empty lists: none)."""

    device_id: str
    profile: str | None
    profile_missing: bool
    inventory_at: float | None
    below_baseline: list[str] = field(default_factory=list)
    vulnerabilities: list[Match] = field(default_factory=list)
    antimalware: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)

    @property
    def outdated(self) -> bool:
        """Below its baseline, or with stale or disabled anti-malware."""
        return bool(self.below_baseline or self.antimalware)

    @property
    def vulnerable(self) -> bool:
        """Running a package an advisory covers."""
        return bool(self.vulnerabilities)

    @property
    def problems(self) -> bool:
        """Anything to report at all."""
        return self.outdated or self.vulnerable or bool(self.drift) or self.profile_missing


@dataclass(frozen=True, slots=True)
class PostureReport:
    """The outdated/vulnerable-device report: devices with a problem, worst first."""

    devices: list[DevicePosture]
    checked: int
    advisories: int
    checked_at: float


def profile_of_twin_tags(tags_json: str) -> str | None:
    """The profile a stored twin's tags (compact JSON) assign, or ``None``."""
    try:
        tags = json.loads(tags_json)
    except ValueError:
        return None
    return profile_name_of_tags(tags)


def _device_part(identity: str) -> str:
    # A module is judged by its device's profile: the hardware is the device's.
    return identity.split("/", 1)[0]


class PostureService:
    """Profiles, advisories and the posture report (module docstring)."""

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        registry: Registry,
        *,
        twins: TwinService | None = None,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._registry = registry
        self._twins = twins
        self._book = ProfileBook()
        self._index = AdvisoryIndex(())
        self._listeners: list[Callable[[AdvisoryIndex], Awaitable[None]]] = []
        self._import_lock = asyncio.Lock()

    @property
    def book(self) -> ProfileBook:
        """The profiles in force (shared with the detectors)."""
        return self._book

    @property
    def index(self) -> AdvisoryIndex:
        """The advisories in force."""
        return self._index

    def add_advisory_listener(self, callback: Callable[[AdvisoryIndex], Awaitable[None]]) -> None:
        """Call ``callback`` with the new index after every import that changed something."""
        self._listeners.append(callback)

    async def load(self) -> None:
        """Read the stored profiles and advisories into memory (at start).

        A stored profile or advisory that no longer parses (written by a later release, or
        damaged) is left out and logged, not fatal: the rest stay in force.

        Raises:
            StorageError: storage failed.
        """
        for record in await self._storage.list_profiles():
            try:
                self._book.put(parse_profile(record.name, json.loads(record.document)))
            except (ValueError, ProfileError):
                logger.exception("stored profile %r unreadable; left out", record.name)
        advisories = []
        after = ""
        while page := await self._storage.list_advisories(after=after, limit=PAGE):
            for stored in page:
                try:
                    advisories.append(advisory_from_json(json.loads(stored.document)))
                except (ValueError, AdvisoryError):
                    logger.exception("stored advisory %r unreadable; left out", stored.advisory_id)
            after = page[-1].advisory_id
        self._index = AdvisoryIndex(advisories)
        logger.info("posture loaded profiles=%d advisories=%d", len(self._book), len(advisories))

    # --- profiles -----------------------------------------------------------------------------
    async def list_profiles(self) -> list[ProfileRecord]:
        """Every stored profile, by name.

        Raises:
            StorageError: storage failed.
        """
        return await self._storage.list_profiles()

    async def get_profile(self, name: str) -> ProfileRecord:
        """One stored profile.

        Raises:
            NotFoundError: there is none of that name.
            StorageError: storage failed.
        """
        record = await self._storage.get_profile(name)
        if record is None:
            raise NotFoundError(f"profile {name!r} does not exist")
        return record

    async def put_profile(self, name: str, document: object, *, create: bool) -> ProfileRecord:
        """Create (``create``) or replace a profile from its JSON document.

        Raises:
            ValidationError: the document or name is not a valid profile (the message says
                which member), or the hub holds :data:`MAX_PROFILES` already.
            ConflictError: creating a profile that exists.
            NotFoundError: replacing a profile that does not exist.
            StorageError: storage failed.
        """
        try:
            profile = parse_profile(name, document)
        except ProfileError as exc:
            raise ValidationError(str(exc)) from None
        compact = json.dumps(profile_document(profile), separators=(",", ":"), sort_keys=True)
        now = self._clock.time()
        if create:
            if len(self._book) >= MAX_PROFILES:
                raise ValidationError(f"a hub holds at most {MAX_PROFILES} profiles")
            record = ProfileRecord(name, compact, now, now, 1)
            await self._storage.put_profile(record, expected_version=None)
        else:
            current = await self.get_profile(name)
            record = ProfileRecord(name, compact, current.created_at, now, current.version + 1)
            await self._storage.put_profile(record, expected_version=current.version)
        self._book.put(profile)
        return record

    async def delete_profile(self, name: str) -> None:
        """Delete a profile that no device is assigned.

        Raises:
            NotFoundError: there is none of that name.
            ConflictError: devices are assigned to it (they are named, up to ten).
            StorageError: storage failed.
        """
        await self.get_profile(name)
        assigned = await self.assigned_devices(name, limit=10)
        if assigned:
            raise ConflictError(
                f"profile {name!r} is assigned to {', '.join(assigned)}"
                f"{' and more' if len(assigned) == 10 else ''}; unassign it first"
            )
        await self._storage.delete_profile(name)
        self._book.remove(name)

    async def assigned_devices(self, name: str, *, limit: int = 1_000_000) -> list[str]:
        """Devices whose twin tag assigns profile ``name`` (a scan of the twins, in id order).

        Raises:
            StorageError: storage failed.
        """
        found: list[str] = []
        after = ""
        while len(found) < limit and (page := await self._storage.list_twins(after=after)):
            found += [t.identity for t in page if profile_of_twin_tags(t.tags) == name]
            after = page[-1].identity
        return found[:limit]

    async def assigned_profile(self, identity: str) -> str | None:
        """The profile name the twin of ``identity``'s device assigns, or ``None``.

        Raises:
            StorageError: storage failed.
        """
        twin = await self._storage.get_twin(_device_part(identity))
        return None if twin is None else profile_of_twin_tags(twin.tags)

    async def assign(self, name: str | None, device_ids: list[str]) -> None:
        """Assign profile ``name`` to devices (``None``: remove their assignment).

        Each device's twin gets the tag ``ironhub.profile`` (a twin update like any other,
        with its own version); devices are done in order and the first failure stops the rest.

        Raises:
            ValidationError: no device, more than :data:`MAX_ASSIGN`, a module id, or no
                twin service.
            NotFoundError: the profile or a device does not exist.
            ThrottledError: a device's twin is being changed too fast.
            StorageError: storage failed.
        """
        if not device_ids or len(device_ids) > MAX_ASSIGN:
            raise ValidationError(f"name 1 to {MAX_ASSIGN} devices")
        if any("/" in device_id for device_id in device_ids):
            raise ValidationError("profiles are assigned to devices; a module shares its device's")
        if name is not None:
            validate_profile_name(name)
            await self.get_profile(name)
        if self._twins is None:
            raise ValidationError("this hub runs no twin service")
        for device_id in device_ids:
            await self._registry.get_device(device_id)
        value: dict[str, Any] = {PROFILE_TAG[0]: {PROFILE_TAG[1]: name}}
        for device_id in device_ids:
            await self._twins.update(device_id, tags=value)

    # --- advisories ---------------------------------------------------------------------------
    async def import_advisories(self, data: bytes, *, source: str) -> ImportSummary:
        """Import an OSV file: one advisory, a JSON list, or a ZIP of ``*.json`` advisories.

        A stored advisory is replaced only by a copy with a later ``modified``; a withdrawn
        one is deleted. Imports run one at a time.

        Raises:
            ValidationError: the file as a whole cannot be read (not JSON, a damaged or
                oversized archive); single bad advisories are counted as refused instead.
            StorageError: storage failed (advisories are stored 1,000 per transaction: those
                stored before the failure stay stored, the ones in force in memory do not
                change until the file is imported again or the hub restarts).
        """
        async with self._import_lock:
            try:
                batch = await asyncio.to_thread(parse_feed, data, name=source)
            except AdvisoryError as exc:
                raise ValidationError(f"advisory file refused: {exc}") from None
            plan = _plan_import(batch.advisories, await self._stored_modified(), self._clock.time())
            changed, delete = plan.records, plan.delete
            for start in range(0, max(len(changed), len(delete)), PAGE):
                await self._storage.put_advisories(
                    changed[start : start + PAGE], delete=delete[start : start + PAGE]
                )
            now = plan.now
            summary = ImportSummary(
                source=source,
                added=plan.added,
                updated=plan.updated,
                unchanged=plan.unchanged,
                withdrawn=len(delete),
                refused=len(batch.refused),
                refused_listed=list(batch.refused[:MAX_REFUSED_LISTED]),
                total=await self._storage.count_advisories(),
                imported_at=now,
            )
            await self._storage.put_monitor_state(
                _IMPORT_STATE, json.dumps({"at": now, "source": source[:256]})
            )
            if changed or delete:
                # Memory follows storage only once every page is stored (a failure part-way
                # leaves the earlier pages stored; importing the file again completes it).
                for advisory in plan.accepted:
                    self._index.add(advisory)
                for advisory_id in delete:
                    self._index.remove(advisory_id)
                for callback in tuple(self._listeners):
                    await callback(self._index)
            return summary

    async def _stored_modified(self) -> dict[str, str]:
        found: dict[str, str] = {}
        after = ""
        while page := await self._storage.list_advisories(after=after, limit=PAGE * 10):
            found.update((r.advisory_id, r.modified) for r in page)
            after = page[-1].advisory_id
        return found

    async def list_advisories(self, *, after: str = "", limit: int = 100) -> list[Advisory]:
        """Stored advisories in id order.

        Raises:
            StorageError: storage failed.
        """
        advisories = []
        for record in await self._storage.list_advisories(after=after, limit=limit):
            try:
                advisories.append(advisory_from_json(json.loads(record.document)))
            except (ValueError, AdvisoryError):
                logger.exception("stored advisory %r unreadable", record.advisory_id)
        return advisories

    async def last_import(self) -> float | None:
        """When advisories were last imported, or ``None``.

        Raises:
            StorageError: storage failed.
        """
        saved = await self._storage.get_monitor_state(_IMPORT_STATE)
        try:
            at = json.loads(saved)["at"] if saved else None
        except (ValueError, TypeError, KeyError):
            return None
        return float(at) if isinstance(at, int | float) else None

    # --- the report ---------------------------------------------------------------------------
    async def report(self, *, device_id: str | None = None) -> PostureReport:
        """Judge every device's latest reports (or one device's): the devices with a problem.

        Raises:
            StorageError: storage failed.
        """
        now = self._clock.time()
        devices: list[DevicePosture] = []
        checked = 0
        async for identity in self._reporting_devices(device_id):
            # Reports of a deleted identity can outlive it (the monitor may store one it
            # processes after the deletion): only registered identities are judged.
            try:
                await self._registry.get_device(identity)
            except NotFoundError:
                continue
            checked += 1
            posture = await self._judge(identity, now)
            if posture.problems:
                devices.append(posture)
        devices.sort(key=_rank)
        return PostureReport(devices, checked, len(self._index), now)

    async def _reporting_devices(self, only: str | None) -> AsyncIterator[str]:
        """Identities with any stored report, in id order (each once)."""
        if only is not None:
            for kind in ("inventory", "antimalware", "ports"):
                if await self._storage.get_posture(only, kind) is not None:
                    yield only
                    return
            return
        seen: set[str] = set()
        for kind in ("inventory", "antimalware", "ports"):
            after = ""
            while page := await self._storage.list_posture(kind, after=after, limit=PAGE):
                for record in page:
                    if record.device_id not in seen:
                        seen.add(record.device_id)
                        yield record.device_id
                after = page[-1].device_id

    async def _judge(self, identity: str, now: float) -> DevicePosture:
        assigned = await self.assigned_profile(identity)
        profile = self._book.resolve(assigned)
        missing = assigned is not None and profile is None
        inventory = await self._storage.get_posture(identity, "inventory")
        antimalware = await self._storage.get_posture(identity, "antimalware")
        ports = await self._storage.get_posture(identity, "ports")
        below: list[str] = []
        vulnerabilities: list[Match] = []
        if inventory is not None:
            fields = _fields(inventory)
            if profile is not None and profile.baseline is not None:
                below = profile.baseline.gaps(fields)
            packages = fields.get("packages")
            if isinstance(packages, list):
                vulnerabilities = match_inventory(self._index, packages)
        return DevicePosture(
            device_id=identity,
            profile=profile.name if profile is not None else assigned,
            profile_missing=missing,
            inventory_at=None if inventory is None else inventory.received_at,
            below_baseline=below,
            vulnerabilities=vulnerabilities,
            antimalware=_antimalware_problems(antimalware, profile, now),
            drift=_drift(ports, profile),
        )

    async def facts(self) -> PostureFacts:
        """What the compliance report needs to know of the fleet (a full report is computed).

        Raises:
            StorageError: storage failed.
        """
        report = await self.report()
        with_inventory = 0
        after = ""
        while page := await self._storage.list_posture("inventory", after=after, limit=PAGE):
            with_inventory += len(page)
            after = page[-1].device_id
        devices = 0
        after = ""
        while records := await self._registry.list_devices(after=after, limit=PAGE):
            devices += len(records)
            after = records[-1].device_id
        # A twin is stored at its first change, so a device without one has no tag.
        with_profile = 0
        after = ""
        while twins := await self._storage.list_twins(after=after):
            with_profile += sum(
                "/" not in t.identity and profile_of_twin_tags(t.tags) is not None for t in twins
            )
            after = twins[-1].identity
        return PostureFacts(
            profiles=len(self._book),
            devices=devices,
            devices_with_profile=with_profile,
            devices_with_inventory=with_inventory,
            advisories=len(self._index),
            advisories_imported_at=await self.last_import(),
            vulnerable_devices=sum(d.vulnerable for d in report.devices),
            outdated_devices=sum(d.outdated for d in report.devices),
        )


@dataclass(slots=True)
class _ImportPlan:
    """What an import changes: records to store, ids to delete, and the counts."""

    now: float
    records: list[AdvisoryRecord] = field(default_factory=list)
    accepted: list[Advisory] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    added: int = 0
    updated: int = 0
    unchanged: int = 0


def _plan_import(
    advisories: Iterable[Advisory], stored: Mapping[str, str], now: float
) -> _ImportPlan:
    """Compare a batch with the stored ``modified`` times: only later copies replace."""
    plan = _ImportPlan(now)
    for advisory in advisories:
        previous = stored.get(advisory.id)
        if advisory.withdrawn:
            if previous is not None:
                plan.delete.append(advisory.id)
            continue
        if previous is not None and previous >= advisory.modified:
            plan.unchanged += 1
            continue
        document = json.dumps(advisory_to_json(advisory), separators=(",", ":"))
        plan.records.append(AdvisoryRecord(advisory.id, advisory.modified, document, now))
        plan.accepted.append(advisory)
        if previous is None:
            plan.added += 1
        else:
            plan.updated += 1
    return plan


def _fields(record: PostureRecord) -> dict[str, Any]:
    try:
        fields = json.loads(record.document)
    except ValueError:
        return {}
    return fields if isinstance(fields, dict) else {}


def _antimalware_problems(
    record: PostureRecord | None, profile: DeviceProfile | None, now: float
) -> list[str]:
    if record is None:
        return []
    fields = _fields(record)
    problems = []
    if fields.get("enabled") is False:
        problems.append(f"anti-malware {fields.get('engine', '?')!s:.32} is disabled")
    limit = _DEFAULT_MAX_DEFINITIONS_HOURS
    if profile is not None and profile.baseline is not None:
        limit = profile.baseline.max_definitions_age_hours or limit
    age = fields.get("definitions_age_hours")
    if isinstance(age, int | float) and not isinstance(age, bool):
        # The age was computed when the report arrived; it has grown since.
        age_now = age + max(0.0, now - record.received_at) / 3600
        if age_now > limit:
            problems.append(f"definitions are {age_now:.0f} h old (maximum {limit:g})")
    detections = fields.get("detections")
    if isinstance(detections, list) and detections:
        problems.append(f"{len(detections)} detection(s) in the last report")
    return problems


def _drift(record: PostureRecord | None, profile: DeviceProfile | None) -> list[str]:
    if record is None or profile is None or profile.hardware is None:
        return []
    return hardware_drift(profile.hardware, "ports", _fields(record))


_SEVERITY_RANK: Final = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def _rank(device: DevicePosture) -> tuple[int, int, str]:
    worst = min((_SEVERITY_RANK.get(m.severity, 2) for m in device.vulnerabilities), default=4)
    return worst, -len(device.vulnerabilities) - len(device.below_baseline), device.device_id
