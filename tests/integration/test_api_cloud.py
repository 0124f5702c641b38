"""The operator API for module identities, twins, direct methods and cloud-to-device messages.

A whole hub runs in-process (``hub`` fixture: SQLite, registry, twin, method and C2D services,
the device endpoint and the API under uvicorn over TLS). The test coroutines share the hub's
event loop, so every blocking HTTP request runs in a worker thread
(:meth:`HubAPI.request`).

Method calls meet an offline device first, then (at the end) a connected test device that
answers, answers with junk (502) or never answers (504).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import secrets
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from tests.integration.conftest import APIResponse

from ironhub.storage.interfaces import Stream, TokenRecord

if TYPE_CHECKING:
    from ironhub.server import RunningHub

pytestmark = pytest.mark.asyncio

_DEFAULT: Any = object()


@dataclass
class HubAPI:
    """Blocking HTTPS requests to a hub's API, run off the event loop."""

    hub: RunningHub
    token: str

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        token: str | None,
        headers: dict[str, str],
    ) -> APIResponse:
        url = urllib.parse.urlsplit(self.hub.info.api_url)
        context = ssl.create_default_context(cafile=str(self.hub.info.ca_path))
        conn = http.client.HTTPSConnection(
            url.hostname or "127.0.0.1", url.port, timeout=30, context=context
        )
        all_headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers)
        try:
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            return APIResponse(response.status, response.headers, response.read())
        finally:
            conn.close()

    async def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        *,
        body: bytes | None = None,
        token: Any = _DEFAULT,
        headers: dict[str, str] | None = None,
    ) -> APIResponse:
        if json_body is not None:
            body = json.dumps(json_body).encode()
        return await asyncio.to_thread(
            self._request,
            method,
            path,
            body,
            self.token if token is _DEFAULT else token,
            headers or {},
        )

    async def ok(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        *,
        status: int = 200,
        **kwargs: Any,
    ) -> Any:
        response = await self.request(method, path, json_body, **kwargs)
        assert response.status == status, (method, path, response.status, response.body[:500])
        return response.json() if response.body else None

    async def operator_actions(self) -> list[tuple[str, str]]:
        messages = await self.hub.services.log.query(stream=Stream.SECURITY, limit=1000)
        events = [dict(m.properties) for m in messages]
        return [(e["action"], e["target"]) for e in events if e.get("event") == "operator-action"]


@pytest.fixture
def api(hub: RunningHub) -> HubAPI:
    token = hub.info.first_admin_token
    assert token is not None
    return HubAPI(hub, token)


def assert_error(response: APIResponse, status: int, code: str | None = None) -> str:
    """Our JSON error body with ``status`` (and ``code``); returns the message."""
    assert response.status == status, (response.status, response.body[:500])
    body = response.json()
    assert set(body) == {"error"}
    assert "Traceback" not in response.body.decode()
    if code is not None:
        assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


async def create_device(api: HubAPI, device_id: str = "dev1", **extra: Any) -> dict[str, Any]:
    created: dict[str, Any] = await api.ok(
        "POST", "/devices", {"device_id": device_id, **extra}, status=201
    )
    return created


async def create_module(
    api: HubAPI,
    device_id: str = "dev1",
    module_id: str = "mod1",
    **extra: Any,
) -> dict[str, Any]:
    created: dict[str, Any] = await api.ok(
        "POST", f"/devices/{device_id}/modules", {"module_id": module_id, **extra}, status=201
    )
    return created


async def insert_token(hub: RunningHub, role: str) -> str:
    """A token with any role, stored below the token service (which issues admins only)."""
    secret = "ihk_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    record = TokenRecord(
        token_id=secrets.token_hex(8),
        name=f"{role}-token",
        token_hash=hashlib.sha256(secret.encode()).digest(),
        roles=(role,),
        created_at=hub.services.clock.time(),
    )
    await hub.services.storage.insert_token(record)
    return secret


def unsealed(record_keys: tuple[bytes, ...]) -> tuple[str, ...]:
    return tuple(base64.b64encode(k).decode() for k in record_keys)


# --- modules -----------------------------------------------------------------------------------


async def test_module_crud_and_connection_string(api: HubAPI, hub: RunningHub) -> None:
    await create_device(api, "dev1")
    created = await create_module(api, "dev1", "mod1")
    assert set(created) == {"module", "primary_key", "secondary_key", "connection_string"}
    module = created["module"]
    assert (module["device_id"], module["module_id"]) == ("dev1", "mod1")
    assert (module["auth"], module["state"], module["connected"]) == ("sas", "enabled", False)
    record = await hub.services.registry.get_device("dev1/mod1")
    keys = unsealed(hub.services.registry.unseal_keys(record))
    assert keys == (created["primary_key"], created["secondary_key"])
    assert created["connection_string"] == (
        f"HostName=localhost;DeviceId=dev1;ModuleId=mod1;SharedAccessKey={keys[0]}"
    )

    listed = await api.ok("GET", "/devices/dev1/modules")
    assert [m["module_id"] for m in listed["modules"]] == ["mod1"]
    shown = await api.ok("GET", "/devices/dev1/modules/mod1")
    assert shown == module
    assert created["primary_key"] not in json.dumps(shown)
    # Modules are not devices.
    devices = await api.ok("GET", "/devices")
    assert [d["device_id"] for d in devices["devices"]] == ["dev1"]

    cs = await api.ok(
        "GET", "/devices/dev1/modules/mod1/connection-string?key=secondary&gateway=edge.local"
    )
    assert cs["connection_string"] == (
        f"HostName=localhost;DeviceId=dev1;ModuleId=mod1;SharedAccessKey={keys[1]};"
        "GatewayHostName=edge.local"
    )
    smuggled = await api.request(
        "GET", "/devices/dev1/modules/mod1/connection-string?gateway=x%3BSharedAccessKey%3Dy"
    )
    assert_error(smuggled, 400, "invalid")

    assert_error(await api.request("POST", "/devices/dev1/modules", {"module_id": "mod1"}), 409)
    assert_error(
        await api.request("POST", "/devices/dev1/modules", {"module_id": "m!"}), 400, "invalid"
    )
    assert_error(
        await api.request("POST", "/devices/ghost/modules", {"module_id": "m"}), 404, "not-found"
    )
    assert_error(await api.request("GET", "/devices/ghost/modules"), 404, "not-found")
    assert_error(await api.request("GET", "/devices/dev1/modules/ghost"), 404, "not-found")

    deleted = await api.request("DELETE", "/devices/dev1/modules/mod1")
    assert deleted.status == 204
    assert_error(await api.request("GET", "/devices/dev1/modules/mod1"), 404)
    assert (await api.ok("GET", "/devices/dev1/modules")) == {"modules": []}
    assert_error(await api.request("DELETE", "/devices/dev1/modules/mod1"), 404)
    assert await api.operator_actions() == [
        ("device-create", "dev1"),
        ("module-create", "dev1/mod1"),
        ("connection-string-disclose", "dev1/mod1/secondary"),
        ("module-delete", "dev1/mod1"),
    ]


async def test_x509_module_connection_string(api: HubAPI) -> None:
    await create_device(api, "dev1")
    created = await create_module(api, "dev1", "cam", auth="x509-ca")
    assert "primary_key" not in created
    assert created["connection_string"] == "HostName=localhost;DeviceId=dev1;ModuleId=cam;x509=true"
    cs = await api.ok("GET", "/devices/dev1/modules/cam/connection-string")
    assert cs["connection_string"].endswith(";ModuleId=cam;x509=true")


async def test_deleting_a_device_deletes_its_modules(api: HubAPI) -> None:
    await create_device(api, "dev1")
    await create_module(api, "dev1", "mod1")
    assert (await api.request("DELETE", "/devices/dev1")).status == 204
    assert_error(await api.request("GET", "/devices/dev1/modules/mod1"), 404)
    assert_error(await api.request("GET", "/devices/dev1/modules/mod1/twin"), 404)


# --- twins -------------------------------------------------------------------------------------


async def test_twin_get_and_conditional_patch(api: HubAPI) -> None:
    await create_device(api, "dev1")
    response = await api.request("GET", "/devices/dev1/twin")
    assert response.status == 200
    twin = response.json()
    assert set(twin) == {"deviceId", "version", "tags", "properties"}
    assert twin["deviceId"] == "dev1"
    assert response.headers["etag"] == f'"{twin["version"]}"'
    desired_version = twin["properties"]["desired"]["$version"]

    patched = await api.request(
        "PATCH",
        "/devices/dev1/twin",
        {"desired": {"fan": {"speed": 3}}},
        headers={"If-Match": response.headers["etag"]},
    )
    assert patched.status == 200, patched.body
    after = patched.json()
    assert after["version"] == twin["version"] + 1
    assert patched.headers["etag"] == f'"{after["version"]}"'
    assert after["properties"]["desired"] == {"fan": {"speed": 3}, "$version": desired_version + 1}
    assert after == await api.ok("GET", "/devices/dev1/twin")

    # A stale version is refused, by header or by body, and changes nothing.
    stale = await api.request(
        "PATCH", "/devices/dev1/twin", {"desired": {"fan": None}}, headers={"If-Match": '"1"'}
    )
    assert_error(stale, 412, "precondition-failed")
    stale_body = await api.request(
        "PATCH", "/devices/dev1/twin", {"desired": {"fan": None}, "version": twin["version"]}
    )
    assert_error(stale_body, 412, "precondition-failed")
    assert (await api.ok("GET", "/devices/dev1/twin")) == after

    # The body's version works as If-Match does; If-Match: * is no condition.
    by_body = await api.ok(
        "PATCH", "/devices/dev1/twin", {"tags": {"site": "lab"}, "version": after["version"]}
    )
    assert by_body["tags"] == {"site": "lab"}
    assert by_body["properties"]["desired"]["fan"] == {"speed": 3}
    star = await api.ok(
        "PATCH", "/devices/dev1/twin", {"desired": {"fan": None}}, headers={"If-Match": "*"}
    )
    assert "fan" not in star["properties"]["desired"]
    assert star["tags"] == {"site": "lab"}

    for if_match in ('W/"3"', "3", '"3", "4"', '"abc"'):
        bad = await api.request(
            "PATCH", "/devices/dev1/twin", {"tags": {"a": 1}}, headers={"If-Match": if_match}
        )
        assert_error(bad, 400, "invalid-if-match")
    disagree = await api.request(
        "PATCH",
        "/devices/dev1/twin",
        {"tags": {"a": 1}, "version": star["version"]},
        headers={"If-Match": f'"{star["version"] + 1}"'},
    )
    assert_error(disagree, 400, "invalid-if-match")
    assert await api.operator_actions() == [
        ("device-create", "dev1"),
        ("twin-update", "dev1"),
        ("twin-update", "dev1"),
        ("twin-update", "dev1"),
    ]


async def test_module_twin(api: HubAPI) -> None:
    await create_device(api, "dev1")
    await create_module(api, "dev1", "mod1")
    response = await api.request("GET", "/devices/dev1/modules/mod1/twin")
    assert response.status == 200
    twin = response.json()
    assert (twin["deviceId"], twin["moduleId"]) == ("dev1", "mod1")
    patched = await api.ok(
        "PATCH",
        "/devices/dev1/modules/mod1/twin",
        {"desired": {"threshold": 7}},
        headers={"If-Match": response.headers["etag"]},
    )
    assert patched["properties"]["desired"]["threshold"] == 7
    # The device's own twin is another twin.
    device_twin = await api.ok("GET", "/devices/dev1/twin")
    assert "threshold" not in device_twin["properties"]["desired"]
    assert ("twin-update", "dev1/mod1") in await api.operator_actions()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"desired": {"a.b": 1}}, "invalid"),
        ({"desired": {"$version": 9}}, "invalid"),
        ({"desired": {"with space": 1}}, "invalid"),
        ({"desired": {"big": "x" * 5000}}, "invalid"),
        ({"tags": {"deep": json.loads('{"a":' * 12 + "1" + "}" * 12)}}, "invalid"),
        ({"desired": json.loads('{"a":' * 40 + "1" + "}" * 40)}, "too-deep"),
        ({}, "invalid-body"),
        ({"desired": 5}, "invalid-body"),
        ({"desired": {"a": 1}, "reported": {"b": 2}}, "invalid-body"),
        ({"desired": {"a": 1}, "version": 0}, "invalid-body"),
    ],
)
async def test_invalid_twin_patches_are_400(api: HubAPI, body: dict[str, Any], code: str) -> None:
    await create_device(api, "dev1")
    response = await api.request("PATCH", "/devices/dev1/twin", body)
    message = assert_error(response, 400, code)
    assert "x" * 100 not in message
    assert ("twin-update", "dev1") not in await api.operator_actions()


async def test_a_recursion_bomb_in_a_patch_is_400(api: HubAPI) -> None:
    await create_device(api, "dev1")
    bomb = b'{"desired": {"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}"
    assert_error(await api.request("PATCH", "/devices/dev1/twin", body=bomb), 400, "too-deep")


async def test_twin_of_unknown_identities(api: HubAPI) -> None:
    assert_error(await api.request("GET", "/devices/ghost/twin"), 404, "not-found")
    patch = await api.request("PATCH", "/devices/ghost/twin", {"desired": {"a": 1}})
    assert_error(patch, 404, "not-found")
    await create_device(api, "dev1")
    assert_error(await api.request("GET", "/devices/dev1/modules/ghost/twin"), 404)
    assert_error(await api.request("GET", "/devices/bad!id/twin"), 400, "invalid")


async def test_twin_query(api: HubAPI) -> None:
    for name in ("a", "b", "c"):
        await create_device(api, name)
    await create_module(api, "b", "m")
    for identity in ("a", "c", "b/modules/m"):
        path = f"/devices/{identity}/twin"
        await api.ok("PATCH", path, {"tags": {"site": "lab"}})
    found = await api.ok("POST", "/twins/query", {"where": "tags.site = 'lab'"})
    identities = [(t["deviceId"], t.get("moduleId")) for t in found["twins"]]
    assert identities == [("a", None), ("b", "m"), ("c", None)]
    assert found["next_after"] is None
    devices_only = await api.ok(
        "POST", "/twins/query", {"where": "SELECT * FROM devices WHERE tags.site = 'lab'"}
    )
    assert [t["deviceId"] for t in devices_only["twins"]] == ["a", "c"]
    first = await api.ok("POST", "/twins/query", {"where": "tags.site = 'lab'", "limit": 1})
    assert [t["deviceId"] for t in first["twins"]] == ["a"]
    assert first["next_after"] == "a"
    rest = await api.ok(
        "POST", "/twins/query", {"where": "tags.site = 'lab'", "after": "a", "limit": 10}
    )
    assert [t["deviceId"] for t in rest["twins"]] == ["b", "c"]
    assert_error(await api.request("POST", "/twins/query", {"where": "tags.site = "}), 400)
    assert_error(
        await api.request("POST", "/twins/query", {"where": "x", "limit": 0}), 400, "invalid-body"
    )
    too_long = {"where": "tags.a = '" + "x" * 5000 + "'"}
    assert_error(await api.request("POST", "/twins/query", too_long), 400, "invalid-body")


# --- direct methods ----------------------------------------------------------------------------


async def test_method_on_an_offline_device_is_404(api: HubAPI) -> None:
    await create_device(api, "dev1")
    response = await api.request(
        "POST", "/devices/dev1/methods/reboot", {"payload": {"delay": 5}, "timeout_seconds": 5}
    )
    message = assert_error(response, 404, "device-unavailable")
    assert "not connected" in message
    # The attempt is on record: it was made before the hub knew the device was away.
    assert ("method-invoke", "dev1/methods/reboot") in await api.operator_actions()
    await create_module(api, "dev1", "mod1")
    module = await api.request("POST", "/devices/dev1/modules/mod1/methods/reboot", {})
    assert_error(module, 404, "device-unavailable")
    unknown = await api.request("POST", "/devices/ghost/methods/reboot", {})
    assert_error(unknown, 404, "not-found")


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/devices/dev1/methods/re+boot", {}, "invalid"),
        ("/devices/dev1/methods/re%25boot", {}, "invalid"),
        ("/devices/dev1/methods/" + "m" * 129, {}, "invalid"),
        ("/devices/dev1/methods/reboot", {"timeout_seconds": 0}, "invalid-body"),
        ("/devices/dev1/methods/reboot", {"timeout_seconds": 301}, "invalid-body"),
        ("/devices/dev1/methods/reboot", {"timeout_seconds": "soon"}, "invalid-body"),
        ("/devices/dev1/methods/reboot", {"payload": 1, "extra": 2}, "invalid-body"),
        ("/devices/dev1/methods/reboot", {"payload": json.loads("[" * 40 + "]" * 40)}, "too-deep"),
    ],
)
async def test_invalid_method_calls_are_400_and_not_recorded(
    api: HubAPI, path: str, body: dict[str, Any], code: str
) -> None:
    await create_device(api, "dev1")
    assert_error(await api.request("POST", path, body), 400, code)
    actions = [action for action, _ in await api.operator_actions()]
    assert "method-invoke" not in actions


async def test_method_payload_over_128_kib_is_refused(api: HubAPI) -> None:
    await create_device(api, "dev1")
    # The API's body limit (1 MiB by default) is above the method limit: the service refuses.
    assert api.hub.services.config.api.max_body_bytes > 129 * 1024
    body = {"payload": "x" * (128 * 1024)}
    message = assert_error(
        await api.request("POST", "/devices/dev1/methods/reboot", body), 400, "invalid"
    )
    assert "128" in message or "131072" in message


# --- cloud-to-device messages ------------------------------------------------------------------


async def test_c2d_send_list_purge(api: HubAPI) -> None:
    await create_device(api, "dev1")
    sent = await api.ok(
        "POST",
        "/devices/dev1/messages/cloud",
        {"body": "hello", "properties": {"color": "blue"}, "ttl_seconds": 60, "message_id": "m1"},
        status=201,
    )
    assert sent["device_id"] == "dev1"
    assert sent["module_id"] is None
    assert sent["input_name"] is None
    assert sent["message_id"] == "m1"
    assert sent["size"] == 5
    assert sent["expires_at"] == pytest.approx(sent["enqueued_at"] + 60)
    assert sent["properties"]["color"] == "blue"
    assert sent["properties"]["$.mid"] == "m1"
    assert sent["delivery_count"] == 0
    assert "payload_base64" not in sent
    assert "hello" not in json.dumps(sent)
    binary = await api.ok(
        "POST",
        "/devices/dev1/messages/cloud",
        {"body_base64": base64.b64encode(b"\xff\x00").decode()},
        status=201,
    )
    assert binary["message_id"]
    assert binary["expires_at"] == pytest.approx(binary["enqueued_at"] + 3600)

    listed = (await api.ok("GET", "/devices/dev1/messages/cloud"))["messages"]
    assert [m["seq"] for m in listed] == [sent["seq"], binary["seq"]]
    assert listed[0]["payload_text"] == "hello"
    assert base64.b64decode(listed[0]["payload_base64"]) == b"hello"
    assert listed[1]["payload_text"] is None
    assert base64.b64decode(listed[1]["payload_base64"]) == b"\xff\x00"

    assert (await api.ok("DELETE", "/devices/dev1/messages/cloud")) == {"purged": 2}
    assert (await api.ok("GET", "/devices/dev1/messages/cloud")) == {"messages": []}
    assert (await api.ok("DELETE", "/devices/dev1/messages/cloud")) == {"purged": 0}
    assert await api.operator_actions() == [
        ("device-create", "dev1"),
        ("c2d-send", "dev1"),
        ("c2d-send", "dev1"),
        ("c2d-purge", "dev1"),
        ("c2d-purge", "dev1"),
    ]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid-body"),
        ({"body": "a", "body_base64": "YQ=="}, "invalid-body"),
        ({"body_base64": "not base64!"}, "invalid-body"),
        ({"body": "x" * (64 * 1024 + 1)}, "invalid"),
        ({"body": "a", "ttl_seconds": 0}, "invalid"),
        ({"body": "a", "ttl_seconds": 172_801}, "invalid"),
        ({"body": "a", "properties": {"$.mid": "spoof"}}, "invalid"),
        ({"body": "a", "properties": {"k": 1}}, "invalid-body"),
        ({"body": "a", "message_id": ""}, "invalid"),
        ({"body": "a", "input_name": "in1"}, "invalid-body"),
    ],
)
async def test_invalid_c2d_messages_are_400(api: HubAPI, body: dict[str, Any], code: str) -> None:
    await create_device(api, "dev1")
    assert_error(await api.request("POST", "/devices/dev1/messages/cloud", body), 400, code)
    assert (await api.ok("GET", "/devices/dev1/messages/cloud")) == {"messages": []}


async def test_c2d_queue_holds_50_messages(api: HubAPI) -> None:
    await create_device(api, "dev1")
    for i in range(50):
        await api.ok("POST", "/devices/dev1/messages/cloud", {"body": f"m{i}"}, status=201)
    full = await api.request("POST", "/devices/dev1/messages/cloud", {"body": "one too many"})
    assert_error(full, 429, "throttled")
    assert int(full.headers["retry-after"]) >= 1
    assert len((await api.ok("GET", "/devices/dev1/messages/cloud"))["messages"]) == 50
    assert (await api.ok("DELETE", "/devices/dev1/messages/cloud")) == {"purged": 50}
    await api.ok("POST", "/devices/dev1/messages/cloud", {"body": "room again"}, status=201)


async def test_c2d_to_unknown_device_is_404(api: HubAPI) -> None:
    for method in ("GET", "DELETE"):
        assert_error(await api.request(method, "/devices/ghost/messages/cloud"), 404)
    send = await api.request("POST", "/devices/ghost/messages/cloud", {"body": "x"})
    assert_error(send, 404, "not-found")


async def test_module_input_messages(api: HubAPI) -> None:
    await create_device(api, "dev1")
    await create_module(api, "dev1", "mod1")
    sent = await api.ok(
        "POST",
        "/devices/dev1/modules/mod1/inputs/input1/messages",
        {"body": '{"t": 1}', "properties": {"k": "v"}},
        status=201,
    )
    assert (sent["device_id"], sent["module_id"], sent["input_name"]) == ("dev1", "mod1", "input1")
    queued = (await api.ok("GET", "/devices/dev1/modules/mod1/messages/cloud"))["messages"]
    assert [(m["input_name"], m["payload_text"]) for m in queued] == [("input1", '{"t": 1}')]
    # The device's own queue is another queue.
    assert (await api.ok("GET", "/devices/dev1/messages/cloud")) == {"messages": []}
    bad_input = await api.request(
        "POST", "/devices/dev1/modules/mod1/inputs/bad!input/messages", {"body": "x"}
    )
    assert_error(bad_input, 400, "invalid")
    assert (await api.ok("DELETE", "/devices/dev1/modules/mod1/messages/cloud")) == {"purged": 1}
    actions = await api.operator_actions()
    assert ("c2d-send", "dev1/mod1/inputs/input1") in actions
    assert ("c2d-purge", "dev1/mod1") in actions


# --- roles -------------------------------------------------------------------------------------


async def test_a_reader_token_reads_but_changes_nothing(api: HubAPI, hub: RunningHub) -> None:
    await create_device(api, "dev1")
    await create_module(api, "dev1", "mod1")
    await api.ok("POST", "/devices/dev1/messages/cloud", {"body": "queued"}, status=201)
    reader = await insert_token(hub, "viewer")
    for path in (
        "/devices/dev1/twin",
        "/devices/dev1/modules/mod1/twin",
        "/devices/dev1/modules",
        "/devices/dev1/modules/mod1",
        "/devices/dev1/messages/cloud",
        "/devices/dev1/modules/mod1/messages/cloud",
    ):
        assert (await api.request("GET", path, token=reader)).status == 200, path
    query = await api.request("POST", "/twins/query", {"where": "version > 0"}, token=reader)
    assert query.status == 200
    refused = [
        ("PATCH", "/devices/dev1/twin", {"desired": {"a": 1}}),
        ("PATCH", "/devices/dev1/modules/mod1/twin", {"desired": {"a": 1}}),
        ("POST", "/devices/dev1/methods/reboot", {}),
        ("POST", "/devices/dev1/modules/mod1/methods/reboot", {}),
        ("POST", "/devices/dev1/messages/cloud", {"body": "x"}),
        ("DELETE", "/devices/dev1/messages/cloud", None),
        ("POST", "/devices/dev1/modules/mod1/inputs/in1/messages", {"body": "x"}),
        ("DELETE", "/devices/dev1/modules/mod1/messages/cloud", None),
        ("POST", "/devices/dev1/modules", {"module_id": "mod2"}),
        ("DELETE", "/devices/dev1/modules/mod1", None),
        ("GET", "/devices/dev1/modules/mod1/connection-string", None),
    ]
    for method, path, body in refused:
        assert_error(await api.request(method, path, body, token=reader), 403, "forbidden")
    # Nothing changed.
    assert len((await api.ok("GET", "/devices/dev1/messages/cloud"))["messages"]) == 1
    assert "a" not in (await api.ok("GET", "/devices/dev1/twin"))["properties"]["desired"]
    assert [m["module_id"] for m in (await api.ok("GET", "/devices/dev1/modules"))["modules"]] == [
        "mod1"
    ]
    actions = [a for a, _ in await api.operator_actions()]
    assert actions == ["device-create", "module-create", "c2d-send"]


# --- edges -------------------------------------------------------------------------------------


def _repeated_if_match(api: HubAPI) -> int:
    url = urllib.parse.urlsplit(api.hub.info.api_url)
    context = ssl.create_default_context(cafile=str(api.hub.info.ca_path))
    conn = http.client.HTTPSConnection("127.0.0.1", url.port, timeout=30, context=context)
    try:
        body = json.dumps({"tags": {"a": 1}}).encode()
        conn.putrequest("PATCH", "/devices/dev1/twin")
        conn.putheader("Authorization", f"Bearer {api.token}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("If-Match", '"1"')
        conn.putheader("If-Match", '"2"')
        conn.endheaders(body)
        response = conn.getresponse()
        assert json.loads(response.read())["error"]["code"] == "invalid-if-match"
        return response.status
    finally:
        conn.close()


async def test_repeated_if_match_is_refused(api: HubAPI) -> None:
    await create_device(api, "dev1")
    assert await asyncio.to_thread(_repeated_if_match, api) == 400


@pytest.mark.parametrize(
    ("service", "method", "path", "body"),
    [
        ("twins", "GET", "/devices/dev1/twin", None),
        ("methods", "POST", "/devices/dev1/methods/reboot", {}),
        ("c2d", "GET", "/devices/dev1/messages/cloud", None),
    ],
)
async def test_a_service_that_is_not_running_is_503(
    api: HubAPI,
    hub: RunningHub,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    await create_device(api, "dev1")
    monkeypatch.setattr(hub.services, service, None)
    response = await api.request(method, path, body)
    assert_error(response, 503, "storage-unavailable")
    assert response.headers["retry-after"] == "1"


async def _answering_device(hub: RunningHub, api: HubAPI, device_id: str) -> Any:
    from tests.support.hubkit import DeviceKit
    from tests.support.mqtt_client import SasCredentials

    created = await create_device(api, device_id)
    kit = DeviceKit(hub)
    creds = SasCredentials(hub.services.config.hostname, device_id, created["primary_key"])
    dev = await kit.connect(creds)
    await dev.subscribe("$iothub/methods/POST/#")
    return dev


async def _answer_next_request(dev: Any, status: int, body: bytes) -> str:
    from ironhub.codec.mqtt import PubAck, Publish

    request = await dev.recv(Publish, timeout=20)
    dev.send(PubAck(request.packet_id))
    rid = dict(urllib.parse.parse_qsl(request.topic.partition("?")[2]))["$rid"]
    await dev.publish(f"$iothub/methods/res/{status}/?$rid={rid}", body)
    return str(request.topic)


async def test_method_answered_by_a_connected_device(api: HubAPI, hub: RunningHub) -> None:
    dev = await _answering_device(hub, api, "answers")
    call = asyncio.create_task(
        api.request(
            "POST",
            "/devices/answers/methods/reboot",
            {"payload": {"delay": 1}, "timeout_seconds": 10},
        )
    )
    topic = await _answer_next_request(dev, 200, b'{"result": "rebooting"}')
    assert topic.startswith("$iothub/methods/POST/reboot/?$rid=")
    response = await call
    assert response.status == 200, response.body
    assert response.json() == {"status": 200, "payload": {"result": "rebooting"}}
    await dev.close()


async def test_malformed_method_answer_is_502(api: HubAPI, hub: RunningHub) -> None:
    dev = await _answering_device(hub, api, "garbles")
    call = asyncio.create_task(
        api.request("POST", "/devices/garbles/methods/ping", {"timeout_seconds": 10})
    )
    await _answer_next_request(dev, 200, b"{not json")
    assert_error(await call, 502, "bad-device-response")
    await dev.close()


async def test_unanswered_method_is_504(api: HubAPI, hub: RunningHub) -> None:
    dev = await _answering_device(hub, api, "mute")
    response = await api.request("POST", "/devices/mute/methods/ping", {"timeout_seconds": 1})
    assert "did not answer" in assert_error(response, 504, "device-timeout")
    await dev.close()


async def test_rotating_a_module_key_drops_its_connection(api: HubAPI, hub: RunningHub) -> None:
    from tests.support.hubkit import DeviceKit
    from tests.support.mqtt_client import SasCredentials

    await create_device(api, "rotor")
    created = await create_module(api, "rotor", "m")
    kit = DeviceKit(hub)
    hostname = hub.services.config.hostname
    mod = await kit.connect(SasCredentials(hostname, "rotor/m", created["primary_key"]))
    rotated = await api.ok("POST", "/devices/rotor/modules/m/keys/primary/rotate")
    assert rotated["connection_string"].startswith(
        f"HostName={hostname};DeviceId=rotor;ModuleId=m;"
    )
    assert await mod.wait_closed()
    assert ("module-rotate-key", "rotor/m/primary") in await api.operator_actions()
    again = await kit.connect(SasCredentials(hostname, "rotor/m", rotated["key"]))
    await again.close()
