"""Device twins: the operator's and the device's sides of the twin, over storage.

The rules (JSON shapes, limits, merge patch, ``$version``) are pure, in
:mod:`ironhub.registry.twin` and :mod:`ironhub.registry.query`; this service orders reads and
writes. Every change is a read-modify-write of one twin under a per-identity lock and an
optimistic-concurrency check in storage (the twin's ``version``), so two writers never lose
each other's update, even across processes sharing a store.

* Device side (azure-iot-mqtt.md §3, T5): ``GET`` answers the whole twin (desired and reported
  with ``$version``); a reported ``PATCH`` is merged (``null`` deletes) and answered with the
  new reported ``$version``.
* Operator side: get, patch desired and tags (``if_version`` = expected ``version``, the etag),
  and query by a filter. A desired change is dispatched as a command, so the endpoint notifies
  the session subscribed to desired patches.
* Twin operations are rate-limited per identity (status 429 for the device, 429 for the API).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from ironhub.codec import azure
from ironhub.errors import PreconditionFailedError, ValidationError
from ironhub.hub.commands import DesiredPropertiesChanged
from ironhub.hub.ratelimit import KeyedTokenBuckets
from ironhub.registry.query import parse_query
from ironhub.registry.twin import (
    Twin,
    TwinLimits,
    check_patch,
    desired_notification,
    parse_patch,
    patch_desired,
    patch_reported,
    patch_tags,
)

if TYPE_CHECKING:
    from ironhub.clock import Clock
    from ironhub.config import LimitsConfig
    from ironhub.hub.commands import CommandBus
    from ironhub.metrics import Metrics
    from ironhub.registry.service import Registry
    from ironhub.storage.interfaces import Storage

__all__ = ["MAX_QUERY_SCAN", "TwinService"]

logger = logging.getLogger(__name__)

#: Most twins one query examines (the embedded store scans; bound the work per request).
MAX_QUERY_SCAN: Final = 100_000
_QUERY_PAGE: Final = 500


class TwinService:
    """Reads and changes twins for the device endpoint and the operator API."""

    def __init__(
        self,
        storage: Storage,
        registry: Registry,
        bus: CommandBus,
        clock: Clock,
        *,
        limits: LimitsConfig,
        twin_limits: TwinLimits | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._storage = storage
        self._registry = registry
        self._bus = bus
        self._clock = clock
        self._limits = twin_limits or TwinLimits()
        # Two budgets per identity, so a device polling its twin cannot lock the operator out
        # of it (a buggy SDK resubmits failed GETs forever), nor the other way round.
        self._device_rate = KeyedTokenBuckets(
            limits.twin_operations_per_second, limits.twin_operation_burst
        )
        self._operator_rate = KeyedTokenBuckets(
            limits.twin_operations_per_second, limits.twin_operation_burst
        )
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, identity: str) -> asyncio.Lock:
        lock = self._locks.get(identity)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[identity] = lock
        return lock

    def check_rate(self, identity: str) -> None:
        """Take one device-side twin operation from the identity's budget.

        Raises:
            ThrottledError: over the identity's twin operation rate.
        """
        self._device_rate.check(identity, self._clock.monotonic())

    async def _load(self, identity: str) -> tuple[Twin, int | None]:
        """The twin and the version to expect when storing it (``None``: not stored yet)."""
        record = await self._storage.get_twin(identity)
        if record is None:
            return Twin.new(identity, self._clock.time()), None
        return Twin.from_record(record), record.version

    # --- operator side ----------------------------------------------------------------------
    async def get(self, identity: str) -> Twin:
        """The twin of a registered device or module.

        Raises:
            ValidationError: a malformed identity.
            NotFoundError: no such identity.
        """
        azure.split_identity(identity)
        await self._registry.get_device(identity)
        twin, _ = await self._load(identity)
        return twin

    async def update(
        self,
        identity: str,
        *,
        desired: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        if_version: int | None = None,
    ) -> Twin:
        """Patch the desired properties and/or the tags (JSON merge patches).

        Raises:
            ValidationError: a patch breaks the twin rules, or there is nothing to patch.
            NotFoundError: no such identity.
            PreconditionFailedError: ``if_version`` is not the twin's current version.
            ThrottledError: over the identity's twin operation rate.
        """
        azure.split_identity(identity)
        if desired is None and tags is None:
            raise ValidationError("nothing to patch: give desired properties and/or tags")
        desired_patch = check_patch(desired, limits=self._limits) if desired is not None else None
        tags_patch = check_patch(tags, limits=self._limits) if tags is not None else None
        await self._registry.get_device(identity)
        self._operator_rate.check(identity, self._clock.monotonic())
        async with self._lock(identity):
            twin, stored_version = await self._load(identity)
            if if_version is not None and if_version != twin.version:
                msg = f"the twin is at version {twin.version}, not {if_version}"
                raise PreconditionFailedError(msg)
            now = self._clock.time()
            updated = twin
            if desired_patch is not None:
                updated = patch_desired(updated, desired_patch, limits=self._limits, now=now)
            if tags_patch is not None:
                updated = patch_tags(updated, tags_patch, limits=self._limits, now=now)
            # One operator update is one new version (the etag), whatever it touched.
            updated = dataclasses.replace(updated, version=twin.version + 1)
            await self._storage.put_twin(updated.to_record(), expected_version=stored_version)
        self._count("operator")
        if desired_patch is not None:
            body = desired_notification(desired_patch, updated.desired_version)
            self._bus.dispatch(DesiredPropertiesChanged(identity, updated.desired_version, body))
        logger.info(
            "twin updated identity=%s version=%d desired_version=%d",
            identity,
            updated.version,
            updated.desired_version,
        )
        return updated

    async def provision(
        self,
        identity: str,
        *,
        tags: Mapping[str, Any],
        desired: Mapping[str, Any],
        reset: bool,
    ) -> Twin:
        """Apply an enrollment's initial twin to a provisioned device.

        With ``reset`` the twin's tags, desired and reported sections are replaced (Azure's
        "reprovision and reset": the device starts over from the enrollment's initial twin);
        without it the initial tags and desired properties are merged in, which is what a
        first registration does to the empty twin. Every ``$version`` only grows, so a device
        that saw version n earlier never mistakes the new state for an old one.

        Raises:
            ValidationError: the initial twin breaks the twin rules.
            NotFoundError: no such identity.
        """
        tags_patch = check_patch(tags, limits=self._limits)
        desired_patch = check_patch(desired, limits=self._limits)
        await self._registry.get_device(identity)
        async with self._lock(identity):
            twin, stored_version = await self._load(identity)
            now = self._clock.time()
            start = twin
            if reset:
                start = dataclasses.replace(
                    twin,
                    tags={},
                    desired={},
                    reported={},
                    reported_version=twin.reported_version + 1,
                )
            updated = patch_desired(start, desired_patch, limits=self._limits, now=now)
            updated = patch_tags(updated, tags_patch, limits=self._limits, now=now)
            updated = dataclasses.replace(updated, version=twin.version + 1)
            await self._storage.put_twin(updated.to_record(), expected_version=stored_version)
        if desired_patch or reset:
            body = desired_notification(dict(updated.desired), updated.desired_version)
            self._bus.dispatch(DesiredPropertiesChanged(identity, updated.desired_version, body))
        return updated

    async def query(self, where: str, *, after: str = "", limit: int = 100) -> list[Twin]:
        """Twins matching the filter ``where`` (:mod:`ironhub.registry.query`), by identity.

        Identities whose twin was never written match as empty twins.

        Raises:
            ValidationError: the filter is malformed, or ``limit`` is outside 1 to 1000.
        """
        query = parse_query(where)
        if not 1 <= limit <= 1000:
            raise ValidationError("limit must be 1 to 1000")
        found: list[Twin] = []
        scanned = 0
        cursor = after
        while len(found) < limit and scanned < MAX_QUERY_SCAN:
            records = await self._storage.list_twins(after=cursor, limit=_QUERY_PAGE)
            if not records:
                break
            for record in records:
                twin = Twin.from_record(record)
                if query.matches(twin.operator_document()):
                    found.append(twin)
                    if len(found) >= limit:
                        break
            scanned += len(records)
            cursor = records[-1].identity
        return found

    # --- device side ------------------------------------------------------------------------
    async def device_get(self, identity: str, *, rate_limited: bool = True) -> Twin:
        """The twin for the device's own ``GET`` (the identity is authenticated).

        ``rate_limited=False`` is for the hub's own reads on the device's behalf (session
        bookkeeping), which must not eat the device's budget.

        Raises:
            ThrottledError: over the identity's twin operation rate.
        """
        if rate_limited:
            self.check_rate(identity)
        twin, _ = await self._load(identity)
        return twin

    async def device_patch_reported(self, identity: str, body: bytes) -> Twin:
        """Merge the device's reported-properties patch.

        Raises:
            ValidationError: the body is not a valid patch, or the section would exceed its
                limits (the device gets 400).
            ThrottledError: over the identity's twin operation rate (429).
        """
        self.check_rate(identity)
        patch = parse_patch(body, limits=self._limits)
        async with self._lock(identity):
            twin, stored_version = await self._load(identity)
            updated = patch_reported(twin, patch, limits=self._limits, now=self._clock.time())
            await self._storage.put_twin(updated.to_record(), expected_version=stored_version)
        self._count("device")
        return updated

    def _count(self, source: str) -> None:
        if self._metrics is not None:
            self._metrics.twin_updates_total.labels(source).inc()
