"""Helpers to drive a hub started in-process: create devices, connect test devices."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ironhub.server import RunningHub
from tests.support.mqtt_client import SasCredentials, TestDevice, client_tls_context

HubFactory = Callable[..., Awaitable[RunningHub]]


class DeviceKit:
    """Creates devices in a hub's registry and connects test devices to it."""

    def __init__(self, hub: RunningHub) -> None:
        self.hub = hub
        self.host, self.port = hub.endpoint.address
        self.ctx = client_tls_context(hub.info.ca_path)

    async def create_sas(self, device_id: str) -> SasCredentials:
        created = await self.hub.services.registry.create_device(device_id)
        assert created.primary_key is not None
        return SasCredentials(self.hub.services.config.hostname, device_id, created.primary_key)

    async def create_module_sas(self, device_id: str, module_id: str) -> SasCredentials:
        """A module identity ``device_id/module_id`` (its credentials use the ClientId form)."""
        created = await self.hub.services.registry.create_module(device_id, module_id)
        assert created.primary_key is not None
        return SasCredentials(
            self.hub.services.config.hostname, f"{device_id}/{module_id}", created.primary_key
        )

    async def connect(self, creds: SasCredentials, **kwargs: object) -> TestDevice:
        return await TestDevice.connect(
            self.host,
            self.port,
            self.ctx,
            client_id=creds.device_id,
            username=creds.username(),
            password=creds.password(),
            **kwargs,  # type: ignore[arg-type]
        )
