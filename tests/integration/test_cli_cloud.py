"""The ``ironhub`` CLI for modules, twins, direct methods and cloud-to-device messages.

A whole hub runs in-process (``hub`` fixture) on the test's event loop; each CLI invocation
runs through ``click.testing.CliRunner`` in a worker thread, with the environment an operator
sets (``IRONHUB_API``, ``IRONHUB_TOKEN``, ``IRONHUB_CA``), so the hub keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result

from ironhub.cli.main import cli

if TYPE_CHECKING:
    from tests.support.hubkit import DeviceKit

    from ironhub.server import RunningHub

pytestmark = pytest.mark.asyncio

_CLEAR = ("IRONHUB_TOKEN_FILE", "IRONHUB_DATA", "IRONHUB_API", "IRONHUB_TOKEN", "IRONHUB_CA")
METHODS = "$iothub/methods/POST/#"


def _invoke(hub: RunningHub, args: tuple[str, ...]) -> Result:
    environment: dict[str, str | None] = dict.fromkeys(_CLEAR)
    environment |= {
        "IRONHUB_API": hub.info.api_url,
        "IRONHUB_TOKEN": hub.info.first_admin_token,
        "IRONHUB_CA": str(hub.info.ca_path),
    }
    return CliRunner().invoke(cli, list(args), env=environment, catch_exceptions=False)


async def run(hub: RunningHub, *args: str) -> Result:
    """``ironhub ARGS`` against ``hub``, off the event loop the hub runs on."""
    return await asyncio.to_thread(_invoke, hub, args)


async def run_json(hub: RunningHub, *args: str) -> Any:
    result = await run(hub, *args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def assert_one_line_error(result: Result, exit_code: int, *fragments: str) -> str:
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def assert_usage_error(result: Result, *fragments: str) -> None:
    """Exit 2 from click's own argument checks: a message, never a traceback."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


# --- modules -----------------------------------------------------------------------------------


async def test_module_commands(hub: RunningHub) -> None:
    await run_json(hub, "device", "create", "dev1")
    created = await run_json(hub, "module", "create", "dev1", "mod1")
    assert set(created) == {"module", "primary_key", "secondary_key", "connection_string"}
    assert created["connection_string"] == (
        f"HostName=localhost;DeviceId=dev1;ModuleId=mod1;SharedAccessKey={created['primary_key']}"
    )
    listed = await run_json(hub, "module", "list", "dev1")
    assert [m["module_id"] for m in listed["modules"]] == ["mod1"]
    shown = await run_json(hub, "module", "show", "dev1", "mod1")
    assert (shown["device_id"], shown["module_id"], shown["state"]) == ("dev1", "mod1", "enabled")
    cs = await run_json(
        hub, "module", "connection-string", "dev1", "mod1", "--key", "secondary", "--gateway", "gw"
    )
    assert cs["connection_string"] == (
        f"HostName=localhost;DeviceId=dev1;ModuleId=mod1;"
        f"SharedAccessKey={created['secondary_key']};GatewayHostName=gw"
    )
    # Modules are not listed as devices.
    devices = await run_json(hub, "device", "list")
    assert [d["device_id"] for d in devices["devices"]] == ["dev1"]

    human = await run(hub, "module", "create", "dev1", "mod2")
    assert human.exit_code == 0, human.stderr
    assert "Created module mod2 of device dev1 (sas)." in human.stdout
    assert "shown only once" in human.stdout
    table = await run(hub, "module", "list", "dev1")
    assert "MODULE" in table.stdout
    assert "mod1" in table.stdout
    assert "mod2" in table.stdout
    shown_text = (await run(hub, "module", "show", "dev1", "mod2")).stdout
    assert re.search(r"Device:\s+dev1\nModule:\s+mod2\n", shown_text), shown_text
    plain_cs = await run(hub, "module", "connection-string", "dev1", "mod2")
    assert plain_cs.stdout.startswith("HostName=localhost;DeviceId=dev1;ModuleId=mod2;")
    rotated = await run_json(hub, "module", "rotate-key", "dev1", "mod1", "--key", "secondary")
    assert rotated["key"] != created["secondary_key"]
    assert rotated["connection_string"].endswith(f"SharedAccessKey={rotated['key']}")
    rotated_text = await run(hub, "module", "rotate-key", "dev1", "mod2")
    assert "New primary key" in rotated_text.stdout

    assert_one_line_error(await run(hub, "module", "delete", "dev1", "mod1"), 2, "--yes")
    deleted = await run_json(hub, "module", "delete", "dev1", "mod1", "--yes")
    assert deleted == {"deleted": "dev1/mod1"}
    gone = await run(hub, "module", "delete", "dev1", "mod2", "--yes")
    assert gone.stdout == "Deleted module mod2 of device dev1.\n"
    assert (await run(hub, "module", "list", "dev1")).stdout == "Device dev1 has no modules.\n"
    assert_one_line_error(await run(hub, "module", "show", "dev1", "mod1"), 1, "does not exist")
    assert_one_line_error(await run(hub, "module", "list", "ghost"), 1, "does not exist")


# --- twins -------------------------------------------------------------------------------------


async def test_twin_commands(hub: RunningHub) -> None:
    await run_json(hub, "device", "create", "dev1")
    twin = await run_json(hub, "twin", "show", "dev1")
    assert twin["deviceId"] == "dev1"
    version = twin["version"]
    patched = await run_json(
        hub,
        "twin",
        "patch",
        "dev1",
        "--desired",
        '{"fan": {"speed": 3}}',
        "--tags",
        '{"site": "lab"}',
        "--if-version",
        str(version),
    )
    assert patched["version"] == version + 1
    assert patched["properties"]["desired"]["fan"] == {"speed": 3}
    assert patched["tags"] == {"site": "lab"}
    stale = await run(hub, "twin", "patch", "dev1", "--desired", "{}", "--if-version", str(version))
    assert_one_line_error(stale, 1, "version")

    human = await run(hub, "twin", "show", "dev1")
    assert human.exit_code == 0, human.stderr
    assert "Twin:" in human.stdout
    assert "dev1" in human.stdout
    assert f"Desired ($version {patched['properties']['desired']['$version']}):" in human.stdout
    assert '"speed": 3' in human.stdout
    said = await run(hub, "twin", "patch", "dev1", "--tags", '{"site": null}')
    assert said.stdout == f"Twin dev1 is now at version {version + 2}.\n"

    found = await run_json(hub, "twin", "query", "properties.desired.fan.speed = 3")
    assert [t["deviceId"] for t in found["twins"]] == ["dev1"]
    none = await run(hub, "twin", "query", "tags.site = 'lab'")
    assert none.stdout == "No matching twins.\n"
    table = await run(hub, "twin", "query", "version > 0")
    assert "IDENTITY" in table.stdout
    assert "dev1" in table.stdout
    assert_one_line_error(await run(hub, "twin", "query", "tags.site ="), 1)


async def test_module_twin_by_identity(hub: RunningHub) -> None:
    await run_json(hub, "device", "create", "dev1")
    await run_json(hub, "module", "create", "dev1", "mod1")
    patched = await run_json(hub, "twin", "patch", "dev1/mod1", "--desired", '{"level": 2}')
    assert (patched["deviceId"], patched["moduleId"]) == ("dev1", "mod1")
    shown = await run_json(hub, "twin", "show", "dev1/mod1")
    assert shown["properties"]["desired"]["level"] == 2
    device = await run_json(hub, "twin", "show", "dev1")
    assert "level" not in device["properties"]["desired"]
    assert_one_line_error(await run(hub, "twin", "show", "dev1/mod1/x"), 2, "one '/'")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--desired", "{not json"), "not valid JSON"),
        (("--desired", "[1, 2]"), "JSON object"),
        (("--desired", '{"a": NaN}'), "not valid JSON"),
        (("--tags", "{"), "not valid JSON"),
        (("--desired", "[" * 5000 + "]" * 5000), "JSON"),
        (("--if-version", "0", "--desired", "{}"), "--if-version"),
    ],
)
async def test_twin_patch_usage_errors(
    hub: RunningHub, args: tuple[str, ...], fragment: str
) -> None:
    assert_usage_error(await run(hub, "twin", "patch", "dev1", *args), fragment)


async def test_twin_patch_needs_something(hub: RunningHub) -> None:
    assert_one_line_error(await run(hub, "twin", "patch", "dev1"), 2, "--desired")


async def test_twin_patch_refused_by_the_hub(hub: RunningHub) -> None:
    await run_json(hub, "device", "create", "dev1")
    refused = await run(hub, "twin", "patch", "dev1", "--desired", '{"a.b": 1}')
    assert_one_line_error(refused, 1)


# --- direct methods ----------------------------------------------------------------------------


async def test_invoke_on_an_offline_device_exits_4(hub: RunningHub) -> None:
    await run_json(hub, "device", "create", "dev1")
    result = await run(hub, "device", "invoke", "dev1", "reboot", "--payload", '{"delay": 1}')
    assert_one_line_error(result, 4, "not connected", "dev1")
    as_json = await run(hub, "device", "invoke", "dev1", "reboot", "--json")
    assert_one_line_error(as_json, 4)
    assert as_json.stdout == ""
    await run_json(hub, "module", "create", "dev1", "mod1")
    assert_one_line_error(await run(hub, "device", "invoke", "dev1/mod1", "reboot"), 4)
    assert_one_line_error(await run(hub, "device", "invoke", "ghost", "reboot"), 1, "ghost")
    bad_name = await run(hub, "device", "invoke", "dev1", "re+boot")
    assert_one_line_error(bad_name, 1, "method name")
    too_long = await run(hub, "device", "invoke", "dev1", "reboot", "--timeout", "301")
    assert_one_line_error(too_long, 1)


async def test_invoke_that_times_out_exits_5(hub: RunningHub, kit: DeviceKit) -> None:
    dev = await kit.connect(await kit.create_sas("silent"))
    await dev.subscribe(METHODS)
    result = await run(hub, "device", "invoke", "silent", "ping", "--timeout", "1")
    assert_one_line_error(result, 5, "did not answer", "silent")
    await dev.close()


async def test_invoke_usage_errors(hub: RunningHub) -> None:
    assert_usage_error(
        await run(hub, "device", "invoke", "dev1", "m", "--payload", "{oops"), "not valid JSON"
    )
    assert_usage_error(await run(hub, "device", "invoke", "dev1", "m", "--timeout", "0"))
    assert_usage_error(await run(hub, "device", "invoke", "dev1"), "METHOD")
    helped = await run(hub, "device", "invoke", "--help")
    assert helped.exit_code == 0
    text = " ".join(helped.stdout.split())
    assert "4 when the device is offline" in text
    assert "5 when it did not answer" in text


# --- cloud-to-device messages ------------------------------------------------------------------


async def test_c2d_commands(hub: RunningHub) -> None:
    await run_json(hub, "device", "create", "dev1")
    sent = await run_json(
        hub,
        "c2d",
        "send",
        "dev1",
        "--body",
        "hello",
        "--property",
        "color=blue green",
        "--property",
        "empty=",
        "--ttl",
        "60",
        "--message-id",
        "m1",
        "--correlation-id",
        "c1",
        "--content-type",
        "text/plain",
    )
    assert sent["message_id"] == "m1"
    assert sent["properties"]["$.cid"] == "c1"
    assert sent["properties"]["$.ct"] == "text/plain"
    assert sent["properties"]["color"] == "blue green"
    assert sent["properties"]["empty"] == ""
    assert sent["expires_at"] == pytest.approx(sent["enqueued_at"] + 60)
    human = await run(hub, "c2d", "send", "dev1", "--body", "second")
    assert human.exit_code == 0, human.stderr
    assert human.stdout.startswith("Queued message ")
    assert "for dev1 (seq " in human.stdout

    listed = await run_json(hub, "c2d", "list", "dev1")
    assert [m["payload_text"] for m in listed["messages"]] == ["hello", "second"]
    table = await run(hub, "c2d", "list", "dev1")
    assert "MESSAGE ID" in table.stdout
    assert "color=blue green" in table.stdout
    assert "$.mid" not in table.stdout
    assert "hello" in table.stdout

    assert_one_line_error(await run(hub, "c2d", "purge", "dev1"), 2, "--yes")
    assert await run_json(hub, "c2d", "purge", "dev1", "--yes") == {"purged": 2}
    assert (await run(hub, "c2d", "list", "dev1")).stdout == "No queued messages.\n"
    purged = await run(hub, "c2d", "purge", "dev1", "--yes")
    assert purged.stdout == "Dropped 0 queued message(s) of dev1.\n"

    too_big = await run(hub, "c2d", "send", "dev1", "--body", "x" * (64 * 1024 + 1))
    assert_one_line_error(too_big, 1, "exceeds")
    assert_one_line_error(await run(hub, "c2d", "send", "ghost", "--body", "x"), 1, "ghost")


async def test_c2d_queue_full_is_an_error(hub: RunningHub) -> None:
    await run_json(hub, "device", "create", "dev1")
    c2d = hub.services.c2d
    assert c2d is not None
    for i in range(50):
        await c2d.send("dev1", f"m{i}".encode())
    assert_one_line_error(await run(hub, "c2d", "send", "dev1", "--body", "51st"), 1)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--body", "x", "--property", "novalue"), "K=V"),
        (("--body", "x", "--property", "=v"), "K=V"),
        (("--body", "x", "--property", "k=1", "--property", "k=2"), "twice"),
        (("--body", "x", "--ttl", "0"), "--ttl"),
        ((), "--body"),
    ],
)
async def test_c2d_send_usage_errors(hub: RunningHub, args: tuple[str, ...], fragment: str) -> None:
    assert_usage_error(await run(hub, "c2d", "send", "dev1", *args), fragment)


async def test_module_input_messages(hub: RunningHub) -> None:
    await run_json(hub, "device", "create", "dev1")
    await run_json(hub, "module", "create", "dev1", "mod1")
    sent = await run_json(
        hub, "module", "send-input", "dev1", "mod1", "input1", "--body", "{}", "--property", "k=v"
    )
    assert (sent["module_id"], sent["input_name"]) == ("mod1", "input1")
    listed = await run_json(hub, "c2d", "list", "dev1/mod1")
    assert [(m["input_name"], m["properties"]["k"]) for m in listed["messages"]] == [
        ("input1", "v")
    ]
    human = await run(hub, "module", "send-input", "dev1", "mod1", "input2", "--body", "x")
    assert "for dev1/mod1 input input2" in human.stdout
    # A module's queue is filled through its inputs only.
    assert_one_line_error(
        await run(hub, "c2d", "send", "dev1/mod1", "--body", "x"), 2, "send-input"
    )
    assert await run_json(hub, "c2d", "purge", "dev1/mod1", "--yes") == {"purged": 2}


async def test_malformed_identities_are_usage_errors(hub: RunningHub) -> None:
    for identity in ("/mod1", "dev1/", "a/b/c"):
        assert_one_line_error(await run(hub, "twin", "show", identity), 2)
