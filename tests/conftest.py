"""Shared fixtures: a real hub started in-process on loopback, and test devices."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from ironhub.config import load_config
from ironhub.server import RunningHub, start_hub
from tests.support.hubkit import DeviceKit, HubFactory


@pytest_asyncio.fixture
async def hub_factory(tmp_path: Path) -> AsyncIterator[HubFactory]:
    hubs: list[RunningHub] = []

    async def make(
        *,
        data_dir: Path | None = None,
        mqtt: str = "127.0.0.1:0",
        hostnames: tuple[str, ...] = (),
        **env: str,
    ) -> RunningHub:
        environ = {f"IRONHUB_{k.upper()}": str(v) for k, v in env.items()}
        config = load_config(
            data_dir or tmp_path / f"data{len(hubs)}",
            environ=environ,
            hostnames=hostnames,
            mqtt_bind=mqtt,
            api_bind="127.0.0.1:0",
        )
        hub = await start_hub(config)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        await hub.stop()


@pytest_asyncio.fixture
async def hub(hub_factory: HubFactory) -> RunningHub:
    return await hub_factory()


@pytest_asyncio.fixture
async def kit(hub: RunningHub) -> DeviceKit:
    return DeviceKit(hub)
