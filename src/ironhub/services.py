"""The running services of one hub process, handed to the API and the endpoint.

This is the composition seam: :mod:`ironhub.server` builds one :class:`Services`, the MQTT
endpoint and the operator API both receive it. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ironhub.access.operators import OperatorService
    from ironhub.access.tokens import TokenService
    from ironhub.audit.service import AuditLog
    from ironhub.clock import Clock
    from ironhub.config import HubConfig
    from ironhub.custody import KeyMaterial
    from ironhub.hub.c2d import CloudToDevice
    from ironhub.hub.commands import CommandBus
    from ironhub.hub.methods import MethodService
    from ironhub.hub.twins import TwinService
    from ironhub.metrics import Metrics
    from ironhub.monitor.posture_service import PostureService
    from ironhub.monitor.service import MonitorService
    from ironhub.provisioning.service import ProvisioningService
    from ironhub.registry.service import Registry
    from ironhub.storage.interfaces import Storage
    from ironhub.streams.log import MessageLog

__all__ = ["ConnectionInfo", "EndpointView", "Services"]


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One live, authenticated device connection."""

    device_id: str
    peer: str
    auth_kind: str
    connected_at: float
    keep_alive_seconds: int


class EndpointView(Protocol):
    """What the API may ask of the device endpoint (read-only)."""

    def connections(self) -> list[ConnectionInfo]:
        """The live authenticated connections."""
        ...


@dataclass(slots=True)
class Services:
    """Everything one hub process runs, wired together by :mod:`ironhub.server`."""

    config: HubConfig
    clock: Clock
    metrics: Metrics
    storage: Storage
    registry: Registry
    tokens: TokenService
    log: MessageLog
    endpoint: EndpointView | None = None
    audit: AuditLog | None = None
    commands: CommandBus | None = None
    twins: TwinService | None = None
    methods: MethodService | None = None
    c2d: CloudToDevice | None = None
    operators: OperatorService | None = None
    provisioning: ProvisioningService | None = None
    monitor: MonitorService | None = None
    #: Device profiles, advisories and the posture report (also when the monitor is off).
    posture: PostureService | None = None
    #: The key custody (file or PKCS#11 token), closed with the services.
    keys: KeyMaterial | None = None
