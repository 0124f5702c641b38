"""Twins, direct methods, cloud-to-device messages, sessions and modules with the unmodified SDK.

azure-iot-device 2.14.0 runs in its own interpreter (`.venv-sdk`) as a long-lived subprocess
(tests/interop/sdk_device.py, ``"mode": "cloud"``): it sets the SDK's handlers, prints one JSON
line per event and takes commands on stdin. The hub runs in-process, on its own loopback
address and port 8883 (the SDK hard-codes the port); the operator acts through the services.
The same features with a hand-written MQTT client: tests/integration/test_cloud_to_device.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from tests.support.hubkit import HubFactory
from tests.support.sdk import SDK_DEVICE_SCRIPT, next_address, sdk_python

from ironhub.errors import DeviceUnavailableError
from ironhub.hub.methods import MethodResult
from ironhub.server import RunningHub
from ironhub.storage.interfaces import Stream

pytestmark = [pytest.mark.asyncio, pytest.mark.sdk]

Event = dict[str, object]
#: Generous: the CI machine has two noisy cores and each SDK process starts its own pipeline.
WAIT = 45.0
#: How often the SDK retries a dropped connection when a scenario lets it reconnect.
RETRY_INTERVAL = 1


class CloudDevice:
    """One SDK process in cloud mode: its events as they come, commands on its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[Event] = []
        self.stderr = bytearray()
        self._changed = asyncio.Event()
        self._ended = False
        self._tasks = [
            asyncio.create_task(self._read_events()),
            asyncio.create_task(self._read_stderr()),
        ]

    async def _read_events(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.events.append(json.loads(line))
            self._changed.set()
        self._ended = True
        self._changed.set()

    async def _read_stderr(self) -> None:
        # Drained all along: the SDK logs warnings while the hub is away, a full pipe would
        # block it.
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self.stderr += chunk
            del self.stderr[:-20000]

    def mark(self) -> int:
        """A position in the event list: ``wait(..., after=mark)`` ignores what came before."""
        return len(self.events)

    def _failure(self, why: str) -> AssertionError:
        tail = self.stderr.decode(errors="replace")[-3000:]
        return AssertionError(f"{why}\nevents: {self.events}\nSDK stderr: {tail}")

    async def wait(
        self,
        name: str,
        match: Callable[[Event], bool] = lambda _: True,
        *,
        after: int = 0,
        timeout: float = WAIT,
    ) -> Event:
        """The first event ``name`` (from position ``after``) that ``match`` accepts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for event in self.events[after:]:
                if event["event"] == "error":
                    raise self._failure(f"the SDK reported an error while waiting for {name}")
                if event["event"] == name and match(event):
                    return event
            if self._ended:
                raise self._failure(f"the SDK process ended before {name}")
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise self._failure(f"no {name} event within {timeout:g} s")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

    async def command(self, op: str, **fields: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}).encode() + b"\n")
        await self.proc.stdin.drain()

    async def stop(self) -> None:
        """End the SDK cleanly (it shuts its client down) and check it reported no error."""
        assert self.proc.stdin is not None
        if not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        await self.wait("done")
        assert await asyncio.wait_for(self.proc.wait(), WAIT) == 0

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        for task in self._tasks:
            task.cancel()


@pytest_asyncio.fixture
async def start_sdk(hub_factory: HubFactory) -> AsyncIterator[object]:
    # Depends on hub_factory so the SDK processes end before the hubs stop.
    python = sdk_python()
    devices: list[CloudDevice] = []

    async def start(hub: RunningHub, identity: str, key: str, **scenario: object) -> CloudDevice:
        device_id, _, module_id = identity.partition("/")
        conn = f"HostName={hub.services.config.hostname};DeviceId={device_id}"
        if module_id:
            conn += f";ModuleId={module_id}"
        full = {
            "mode": "cloud",
            "auth": "sas",
            "ca_file": str(hub.info.ca_path),
            "connection_string": f"{conn};SharedAccessKey={key}",
            "module": bool(module_id),
            "run_seconds": 240,
            **scenario,
        }
        proc = await asyncio.create_subprocess_exec(
            str(python),
            str(SDK_DEVICE_SCRIPT),
            json.dumps(full),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        device = CloudDevice(proc)
        devices.append(device)
        await device.wait("ready")
        return device

    yield start
    for device in devices:
        await device.kill()


async def start_hub_at(hub_factory: HubFactory, address: str, data: Path) -> RunningHub:
    return await hub_factory(data_dir=data, mqtt=f"{address}:8883", hostnames=(address,))


@pytest_asyncio.fixture
async def sdk_hub(hub_factory: HubFactory) -> RunningHub:
    address = next_address()
    return await hub_factory(mqtt=f"{address}:8883", hostnames=(address,))


async def create_device(hub: RunningHub, device_id: str) -> str:
    created = await hub.services.registry.create_device(device_id)
    assert created.primary_key
    return created.primary_key


def version_is(version: int) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        patch = event["patch"]
        assert isinstance(patch, dict)
        return patch.get("$version") == version

    return match


async def eventually(predicate, timeout: float = WAIT) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def connections_of(hub: RunningHub, identity: str) -> list[dict[str, str]]:
    """The identity's "connected" lifecycle events, oldest first."""
    lifecycle = await hub.services.log.query(
        device_id=identity, stream=Stream.LIFECYCLE, limit=1000
    )
    events = [dict(m.properties) for m in lifecycle]
    return [e for e in events if e.get("event") == "connected"]


def is_connected(hub: RunningHub, identity: str) -> bool:
    return any(c.device_id == identity for c in hub.endpoint.connections())


# --- twins ---------------------------------------------------------------------------------
async def test_get_twin_and_reported_patch(sdk_hub: RunningHub, start_sdk) -> None:
    key = await create_device(sdk_hub, "sdk-twin")
    twins = sdk_hub.services.twins
    assert twins is not None
    await twins.update("sdk-twin", desired={"interval": 5})
    dev = await start_sdk(sdk_hub, "sdk-twin", key)

    await dev.command("get_twin")
    twin = (await dev.wait("twin"))["twin"]
    assert twin == {"desired": {"interval": 5, "$version": 2}, "reported": {"$version": 1}}

    await dev.command("patch_reported", patch={"fw": {"version": "1.2.3"}, "temp": 21.5})
    await dev.wait("patched")
    seen = await twins.get("sdk-twin")
    assert dict(seen.reported) == {"fw": {"version": "1.2.3"}, "temp": 21.5}
    assert seen.reported_version == 2

    mark = dev.mark()
    await dev.command("patch_reported", patch={"temp": None})
    await dev.wait("patched", after=mark)
    await dev.command("get_twin")
    twin = (await dev.wait("twin", after=mark))["twin"]
    assert twin["reported"] == {"fw": {"version": "1.2.3"}, "$version": 3}
    await dev.stop()


async def test_desired_patch_reaches_the_handler(sdk_hub: RunningHub, start_sdk) -> None:
    key = await create_device(sdk_hub, "sdk-desired")
    dev = await start_sdk(sdk_hub, "sdk-desired", key, handlers=["desired"])
    twins = sdk_hub.services.twins
    assert twins is not None
    updated = await twins.update("sdk-desired", desired={"interval": 7, "mode": {"eco": True}})
    event = await dev.wait("desired", version_is(updated.desired_version))
    assert event["patch"] == {
        "interval": 7,
        "mode": {"eco": True},
        "$version": updated.desired_version,
    }
    # A second patch carries only the change.
    updated = await twins.update("sdk-desired", desired={"interval": None})
    event = await dev.wait("desired", version_is(updated.desired_version))
    assert event["patch"] == {"interval": None, "$version": updated.desired_version}
    await dev.stop()


async def test_desired_patch_made_while_offline_reaches_the_handler(
    hub_factory: HubFactory, start_sdk, tmp_path: Path
) -> None:
    address, data = next_address(), tmp_path / "offline"
    hub = await start_hub_at(hub_factory, address, data)
    key = await create_device(hub, "sdk-away")
    dev = await start_sdk(
        hub,
        "sdk-away",
        key,
        handlers=["desired"],
        connection_retry=True,
        connection_retry_interval=RETRY_INTERVAL,
        trace_twin_sync=True,
    )
    # Like the SDK samples: read the twin once (this also subscribes to the twin responses,
    # which the SDK's own GET after each reconnect needs).
    await dev.command("get_twin")
    assert (await dev.wait("twin"))["twin"]["desired"] == {"$version": 1}

    mark = dev.mark()
    await hub.stop()
    await dev.wait("state", lambda e: e["connected"] is False, after=mark)
    # The operator patches while the device cannot reach the hub: the same data directory,
    # served on another address the SDK does not dial.
    aside = await hub_factory(data_dir=data, hostnames=(address,))
    assert aside.services.twins is not None
    updated = await aside.services.twins.update("sdk-away", desired={"mode": "eco"})
    assert updated.desired_version == 2
    await aside.stop()

    hub = await start_hub_at(hub_factory, address, data)
    # The SDK reconnects by itself (no new SUBSCRIBE) and sends its twin GET; the hub's
    # restored session also sends the missed versions as one notification carrying the whole
    # desired section. Whichever comes first reaches the handler (a GET answer with a version
    # the SDK has not seen becomes a synthetic patch of the whole desired section); the other
    # then finds version 2 already seen, or repeats the same patch.
    assert (await dev.wait("state", lambda e: e["connected"] is True, after=mark))["connected"]
    event = await dev.wait("desired", version_is(2), after=mark)
    assert event["patch"] == {"mode": "eco", "$version": 2}
    # The SDK's reconnect GET was answered (through the restored `$iothub/twin/res/#`
    # subscription) and agrees: version 2.
    await dev.wait(
        "sdk_log", lambda e: "Twin GET response received" in str(e["message"]), after=mark
    )
    checked = await dev.wait("sdk_log", lambda e: "new version = " in str(e["message"]), after=mark)
    assert str(checked["message"]).endswith("new version = 2")
    assert all(e == event for e in dev.events[mark:] if e["event"] == "desired")
    await dev.stop()


# --- direct methods ------------------------------------------------------------------------
async def test_method_handler_answers_the_operator(sdk_hub: RunningHub, start_sdk) -> None:
    key = await create_device(sdk_hub, "sdk-method")
    dev = await start_sdk(sdk_hub, "sdk-method", key, handlers=["methods"], method_status=201)
    methods = sdk_hub.services.methods
    assert methods is not None
    result = await methods.invoke(
        "sdk-method", "reboot", {"delay": 1, "why": "upgrade"}, timeout_seconds=30
    )
    assert result == MethodResult(201, {"method": "reboot", "echo": {"delay": 1, "why": "upgrade"}})
    event = await dev.wait("method")
    assert event["name"] == "reboot"
    assert event["payload"] == {"delay": 1, "why": "upgrade"}
    # No payload at all is JSON null for the SDK.
    result = await methods.invoke("sdk-method", "ping", None, timeout_seconds=30)
    assert result == MethodResult(201, {"method": "ping", "echo": None})
    await dev.stop()


# --- cloud-to-device messages ----------------------------------------------------------------
async def test_c2d_message_with_properties(sdk_hub: RunningHub, start_sdk) -> None:
    key = await create_device(sdk_hub, "sdk-c2d")
    dev = await start_sdk(sdk_hub, "sdk-c2d", key, handlers=["messages"])
    c2d = sdk_hub.services.c2d
    assert c2d is not None
    await c2d.send(
        "sdk-c2d",
        b"hello device",
        properties=[("color", "blue green"), ("k", "a&b=c"), ("unit", "°C")],
        message_id="mid-1",
        correlation_id="corr-7",
        content_type="application/json",
    )
    event = await dev.wait("message")
    assert event["data"] == "hello device"
    assert event["message_id"] == "mid-1"
    assert event["correlation_id"] == "corr-7"
    assert event["content_type"] == "application/json"
    assert event["input_name"] is None
    assert event["expiry_time_utc"]
    assert event["custom_properties"] == {"color": "blue green", "k": "a&b=c", "unit": "°C"}

    async def completed() -> bool:
        return not await c2d.list("sdk-c2d")

    await eventually(completed)  # the SDK's PUBACK completed it
    await dev.stop()


# --- modules ---------------------------------------------------------------------------------
async def test_module_output_and_input(sdk_hub: RunningHub, start_sdk) -> None:
    await create_device(sdk_hub, "sdk-edge")
    created = await sdk_hub.services.registry.create_module("sdk-edge", "filter")
    assert created.primary_key
    mod = await start_sdk(sdk_hub, "sdk-edge/filter", created.primary_key, handlers=["messages"])

    await mod.command("send_output", output="alerts", data="hot", properties={"level": "high"})
    sent = await mod.wait("sent_output")
    stored = await sdk_hub.services.storage.query_messages(
        device_id="sdk-edge/filter", stream=Stream.TELEMETRY
    )
    assert len(stored) == 1
    assert stored[0].payload == b"hot"
    props = dict(stored[0].properties)
    assert props["$.on"] == "alerts"
    assert props["$.mid"] == sent["message_id"]
    assert props["level"] == "high"
    assert not await sdk_hub.services.storage.query_messages(
        device_id="sdk-edge", stream=Stream.TELEMETRY
    )

    c2d = sdk_hub.services.c2d
    assert c2d is not None
    await c2d.send("sdk-edge/filter", b"input data", input_name="input1", properties=[("a", "1")])
    event = await mod.wait("message")
    assert event["input_name"] == "input1"
    assert event["data"] == "input data"
    assert event["custom_properties"] == {"a": "1"}
    await mod.stop()


# --- sessions --------------------------------------------------------------------------------
async def test_sas_renewal_keeps_every_subscription(sdk_hub: RunningHub, start_sdk) -> None:
    key = await create_device(sdk_hub, "sdk-renew2")
    # The SDK renews 120 s before expiry: a 125 s token is renewed every ~5 s, each time by
    # DISCONNECT + CONNECT without SUBSCRIBE.
    dev = await start_sdk(
        sdk_hub,
        "sdk-renew2",
        key,
        handlers=["methods", "messages", "desired"],
        sastoken_ttl=125,
    )

    async def renewed() -> bool:
        return len(await connections_of(sdk_hub, "sdk-renew2")) >= 2

    await eventually(renewed)
    first, second = (await connections_of(sdk_hub, "sdk-renew2"))[:2]
    # A new connection that resumed the stored session (the SDK sent no SUBSCRIBE since).
    assert first["session_present"] == "false"
    assert second["session_present"] == "true"
    assert second["peer"] != first["peer"]
    assert is_connected(sdk_hub, "sdk-renew2")

    services = sdk_hub.services
    assert services.c2d is not None and services.twins is not None
    assert services.methods is not None
    await services.c2d.send("sdk-renew2", b"after renewal", properties=[("p", "1")])
    updated = await services.twins.update("sdk-renew2", desired={"after": "renewal"})
    result = None
    for _ in range(5):
        try:
            result = await services.methods.invoke(
                "sdk-renew2", "check", {"n": 1}, timeout_seconds=30
            )
            break
        except DeviceUnavailableError:
            # Only if the call fell into the few milliseconds of a later renewal's reconnect;
            # a lost subscription would fail every attempt.
            await asyncio.sleep(0.5)
    assert result == MethodResult(200, {"method": "check", "echo": {"n": 1}})
    message = await dev.wait("message")
    assert message["data"] == "after renewal"
    assert message["custom_properties"] == {"p": "1"}
    patch = await dev.wait("desired", version_is(updated.desired_version))
    assert patch["patch"] == {"after": "renewal", "$version": updated.desired_version}
    await dev.stop()


async def test_hub_restart_between_subscribe_and_delivery(
    hub_factory: HubFactory, start_sdk, tmp_path: Path
) -> None:
    address, data = next_address(), tmp_path / "restart"
    hub = await start_hub_at(hub_factory, address, data)
    key = await create_device(hub, "sdk-survivor")
    dev = await start_sdk(
        hub,
        "sdk-survivor",
        key,
        handlers=["messages", "desired"],
        connection_retry=True,
        connection_retry_interval=RETRY_INTERVAL,
    )
    mark = dev.mark()
    await hub.stop()
    await dev.wait("state", lambda e: e["connected"] is False, after=mark)

    hub = await start_hub_at(hub_factory, address, data)
    services = hub.services
    assert services.c2d is not None and services.twins is not None
    # Sent before the SDK is back (it waits in the queue) ...
    await services.c2d.send("sdk-survivor", b"queued after restart", message_id="early")

    async def back() -> bool:
        return is_connected(hub, "sdk-survivor")

    await eventually(back)
    # ... and after it reconnected, without subscribing again: only the stored session routes it.
    await services.c2d.send("sdk-survivor", b"live after restart", message_id="late")
    updated = await services.twins.update("sdk-survivor", desired={"after": "restart"})

    early = await dev.wait("message", lambda e: e["message_id"] == "early", after=mark)
    assert early["data"] == "queued after restart"
    late = await dev.wait("message", lambda e: e["message_id"] == "late", after=mark)
    assert late["data"] == "live after restart"
    patch = await dev.wait("desired", version_is(updated.desired_version), after=mark)
    assert patch["patch"] == {"after": "restart", "$version": updated.desired_version}
    await dev.stop()
