"""The operator API over real TLS sockets: every route, every error mapping, auth and audit.

The server is the real Starlette application under uvicorn, with SQLite storage, the registry,
the token service and the message log wired by hand (see conftest.py).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import secrets
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any, Self

import pytest
from tests.integration.conftest import API_HOSTNAME, APIHub, APIHubFactory, APIResponse

from ironhub import pki
from ironhub.api import close_streams
from ironhub.api._handlers import OPERATIONS
from ironhub.errors import StorageError
from ironhub.services import ConnectionInfo
from ironhub.storage.interfaces import LogEntry, Stream, TokenRecord

if TYPE_CHECKING:
    from collections.abc import Iterator

# --- helpers -----------------------------------------------------------------------------------


def assert_error(response: APIResponse, status: int, code: str | None = None) -> dict[str, Any]:
    """The answer is our JSON error body, with no traceback in it."""
    assert response.status == status, (response.status, response.body[:500])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert "Traceback" not in response.body.decode()
    assert 'File "' not in response.body.decode()
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def create_device(hub: APIHub, device_id: str = "dev1", **extra: Any) -> dict[str, Any]:
    response = hub.request("POST", "/devices", json_body={"device_id": device_id, **extra})
    assert response.status == 201, response.body
    return response.json()


def self_signed_pem(device_id: str) -> str:
    _, cert = pki.create_self_signed_device_certificate(device_id, now=dt.datetime.now(dt.UTC))
    return pki.certificate_pem(cert).decode()


def ca_pem(name: str = "Fleet CA") -> str:
    _, cert = pki.create_ca(name, now=dt.datetime.now(dt.UTC))
    return pki.certificate_pem(cert).decode()


def unsealed_keys(hub: APIHub, device_id: str) -> tuple[str, ...]:
    async def keys() -> tuple[str, ...]:
        record = await hub.services.registry.get_device(device_id)
        raw = hub.services.registry.unseal_keys(record)
        return tuple(base64.b64encode(k).decode() for k in raw)

    return hub.call(keys())


def random_token() -> str:
    return "ihk_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def insert_token(hub: APIHub, role: str) -> str:
    """A token with any role, inserted below the token service (which only issues admin)."""
    secret = random_token()
    record = TokenRecord(
        token_id=secrets.token_hex(8),
        name=f"{role}-token",
        token_hash=hashlib.sha256(secret.encode()).digest(),
        roles=(role,),
        created_at=hub.clock.time(),
    )
    hub.call(hub.services.storage.insert_token(record))
    return secret


def concrete_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


# --- public routes and headers -----------------------------------------------------------------


def test_healthz_is_public_and_has_security_headers(api_hub: APIHub) -> None:
    response = api_hub.request("GET", "/healthz", token=None)
    assert response.status == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"


def test_openapi_document_describes_every_route(api_hub: APIHub) -> None:
    response = api_hub.request("GET", "/openapi.json", token=None)
    assert response.status == 200
    doc = response.json()
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    described = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    declared = {(op.path, op.method) for op in OPERATIONS}
    assert described == declared
    for op in OPERATIONS:
        operation = doc["paths"][op.path][op.method.lower()]
        assert operation["operationId"] == op.operation_id
        permission = None if op.permission is None else op.permission.value
        assert operation["x-ironhub-permission"] == permission
        if op.permission is None:
            assert operation["security"] == []
        else:
            assert operation["security"] == [{"bearerAuth": []}]
            assert "401" in operation["responses"]
        assert str(op.status) in operation["responses"]
    # Every $ref resolves to a component generated from the msgspec types.
    refs = set(re.findall(r'"\$ref":\s*"#/components/schemas/([^"]+)"', response.body.decode()))
    assert refs
    assert refs <= set(doc["components"]["schemas"])
    create = doc["components"]["schemas"]["CreateDeviceRequest"]
    assert create["additionalProperties"] is False
    assert create["properties"]["auth"]["enum"] == ["sas", "x509-ca", "x509-thumbprint"]


def test_every_served_route_is_declared_with_its_access(api_hub: APIHub) -> None:
    declared = {(op.path, op.method): op for op in OPERATIONS}
    served = set()
    for route in api_hub.app.routes:
        for method in route.methods - {"HEAD"}:
            served.add((route.path, method))
            op = declared.get((route.path, method))
            assert op is not None, f"route {method} {route.path} is not in the declared table"
            assert op.permission is None or op.operation_id not in {"healthz", "openapi"}
    assert served == set(declared)


def test_every_protected_route_refuses_a_missing_token(api_hub: APIHub) -> None:
    for op in OPERATIONS:
        response = api_hub.request(op.method, concrete_path(op.path), token=None)
        if op.permission is None:
            # Public: answered without a token (the login route wants a JSON body; this
            # hand-wired hub runs no provisioning service, so the PKI documents are 503).
            expected = 415 if op.request is not None else 200
            if op.path.startswith("/pki/"):
                expected = 503
            assert response.status == expected, op.operation_id
        else:
            assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_unknown_route_and_wrong_method_are_json_errors(api_hub: APIHub) -> None:
    assert_error(api_hub.request("GET", "/nope"), 404, "not-found")
    response = api_hub.request("PUT", "/devices")
    assert_error(response, 405, "method-not-allowed")
    assert "GET" in response.headers["allow"]


def test_metrics_need_a_token_and_expose_prometheus_text(api_hub: APIHub) -> None:
    assert_error(api_hub.request("GET", "/metrics", token=None), 401)
    response = api_hub.request("GET", "/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert b"ironhub_connections" in response.body
    assert b"ironhub_auth_failures" in response.body


# --- devices -----------------------------------------------------------------------------------


def test_create_sas_device_shows_keys_once(api_hub: APIHub) -> None:
    response = api_hub.request("POST", "/devices", json_body={"device_id": "dev1"})
    assert response.status == 201
    assert response.headers["cache-control"] == "no-store"
    created = response.json()
    assert created["device"]["device_id"] == "dev1"
    assert created["device"]["auth"] == "sas"
    assert created["device"]["state"] == "enabled"
    assert created["device"]["connected"] is False
    primary, secondary = created["primary_key"], created["secondary_key"]
    assert len(base64.b64decode(primary)) == 32
    assert (primary, secondary) == unsealed_keys(api_hub, "dev1")
    assert created["connection_string"] == (
        f"HostName={API_HOSTNAME};DeviceId=dev1;SharedAccessKey={primary}"
    )
    # Never again: not in show, not in list.
    for path in ("/devices/dev1", "/devices"):
        body = api_hub.request("GET", path).body.decode()
        assert primary not in body
        assert secondary not in body
        assert "sealed" not in body
        assert "key" not in json.dumps(json.loads(body)).lower().replace("keep", "")
    events = api_hub.security_events("operator-action")
    assert events == [
        {
            "event": "operator-action",
            "action": "device-create",
            "target": "dev1",
            "actor": "test-admin",
            "actor_id": events[0]["actor_id"],
            "peer": events[0]["peer"],
        }
    ]
    assert events[0]["peer"].startswith("127.0.0.1:")


def test_create_thumbprint_device(api_hub: APIHub) -> None:
    pem = self_signed_pem("cam1")
    created = create_device(api_hub, "cam1", auth="x509-thumbprint", certificates_pem=[pem])
    assert "primary_key" not in created
    assert "secondary_key" not in created
    device = created["device"]
    assert device["auth"] == "x509-thumbprint"
    assert re.fullmatch(r"[0-9A-F]{64}", device["primary_thumbprint"])
    assert device["secondary_thumbprint"] is None
    assert created["connection_string"] == f"HostName={API_HOSTNAME};DeviceId=cam1;x509=true"
    shown = api_hub.request("GET", "/devices/cam1").json()
    assert shown["primary_thumbprint"] == device["primary_thumbprint"]


def test_create_ca_signed_device(api_hub: APIHub) -> None:
    created = create_device(api_hub, "ca-dev", auth="x509-ca")
    assert created["device"]["auth"] == "x509-ca"
    assert created["connection_string"].endswith(";x509=true")


def test_create_device_errors(api_hub: APIHub) -> None:
    create_device(api_hub, "dev1")
    assert_error(
        api_hub.request("POST", "/devices", json_body={"device_id": "dev1"}), 409, "conflict"
    )
    assert_error(
        api_hub.request("POST", "/devices", json_body={"device_id": "bad/id"}), 400, "invalid"
    )
    assert_error(
        api_hub.request("POST", "/devices", json_body={"device_id": ""}), 400, "invalid-body"
    )
    assert_error(
        api_hub.request("POST", "/devices", json_body={"device_id": "d2", "auth": "password"}),
        400,
        "invalid-body",
    )
    # Certificates for a kind that takes none; a thumbprint device without one.
    assert_error(
        api_hub.request(
            "POST",
            "/devices",
            json_body={"device_id": "d3", "certificates_pem": [self_signed_pem("d3")]},
        ),
        400,
        "invalid",
    )
    assert_error(
        api_hub.request(
            "POST", "/devices", json_body={"device_id": "d4", "auth": "x509-thumbprint"}
        ),
        400,
        "invalid",
    )
    assert_error(
        api_hub.request(
            "POST",
            "/devices",
            json_body={"device_id": "d5", "auth": "x509-thumbprint", "certificates_pem": ["x"]},
        ),
        400,
        "invalid",
    )
    # Refused requests leave no operator-action record.
    assert [e["target"] for e in api_hub.security_events("operator-action")] == ["dev1"]


def test_list_devices_pages(api_hub: APIHub) -> None:
    for name in ("c", "a", "b"):
        create_device(api_hub, name)
    api_hub.endpoint.live = [ConnectionInfo("b", "10.0.0.2:5000", "sas", 1.0, 60)]
    first = api_hub.request("GET", "/devices?limit=2").json()
    assert [d["device_id"] for d in first["devices"]] == ["a", "b"]
    assert [d["connected"] for d in first["devices"]] == [False, True]
    assert first["next_after"] == "b"
    rest = api_hub.request("GET", "/devices?after=b&limit=2").json()
    assert [d["device_id"] for d in rest["devices"]] == ["c"]
    assert rest["next_after"] is None
    assert_error(api_hub.request("GET", "/devices?limit=0"), 400, "invalid-query")
    assert_error(api_hub.request("GET", "/devices?limit=1001"), 400, "invalid-query")
    assert_error(api_hub.request("GET", "/devices?limit=abc"), 400, "invalid-query")


def test_show_device(api_hub: APIHub) -> None:
    create_device(api_hub, "dev1")
    shown = api_hub.request("GET", "/devices/dev1").json()
    assert set(shown) == {
        "device_id",
        "auth",
        "state",
        "version",
        "created_at",
        "updated_at",
        "primary_thumbprint",
        "secondary_thumbprint",
        "connected",
    }
    assert shown["version"] == 1
    assert shown["created_at"] == api_hub.clock.time()
    api_hub.endpoint.live = [ConnectionInfo("dev1", "127.0.0.1:4000", "sas", 5.0, 60)]
    assert api_hub.request("GET", "/devices/dev1").json()["connected"] is True
    assert_error(api_hub.request("GET", "/devices/ghost"), 404, "not-found")


def test_enable_disable_delete(api_hub: APIHub) -> None:
    create_device(api_hub, "dev1")
    disabled = api_hub.request("POST", "/devices/dev1/disable")
    assert disabled.status == 200
    assert disabled.json()["state"] == "disabled"
    assert disabled.json()["version"] == 2
    enabled = api_hub.request("POST", "/devices/dev1/enable").json()
    assert enabled["state"] == "enabled"
    assert enabled["version"] == 3
    deleted = api_hub.request("DELETE", "/devices/dev1")
    assert deleted.status == 204
    assert deleted.body == b""
    assert_error(api_hub.request("GET", "/devices/dev1"), 404)
    assert_error(api_hub.request("DELETE", "/devices/dev1"), 404, "not-found")
    assert_error(api_hub.request("POST", "/devices/dev1/enable"), 404, "not-found")
    actions = [(e["action"], e["target"]) for e in api_hub.security_events("operator-action")]
    assert actions == [
        ("device-create", "dev1"),
        ("device-disable", "dev1"),
        ("device-enable", "dev1"),
        ("device-delete", "dev1"),
    ]


def test_rotate_key_keeps_the_other_key(api_hub: APIHub) -> None:
    created = create_device(api_hub, "dev1")
    response = api_hub.request("POST", "/devices/dev1/keys/primary/rotate")
    assert response.status == 200
    assert response.headers["cache-control"] == "no-store"
    rotated = response.json()
    assert rotated["key"] != created["primary_key"]
    assert unsealed_keys(api_hub, "dev1") == (rotated["key"], created["secondary_key"])
    assert rotated["connection_string"].endswith(f";SharedAccessKey={rotated['key']}")
    secondary = api_hub.request("POST", "/devices/dev1/keys/secondary/rotate").json()
    assert unsealed_keys(api_hub, "dev1") == (rotated["key"], secondary["key"])
    assert_error(api_hub.request("POST", "/devices/dev1/keys/tertiary/rotate"), 400)
    assert_error(api_hub.request("POST", "/devices/ghost/keys/primary/rotate"), 404)
    create_device(api_hub, "ca-dev", auth="x509-ca")
    assert_error(api_hub.request("POST", "/devices/ca-dev/keys/primary/rotate"), 400, "invalid")
    targets = [e["target"] for e in api_hub.security_events("operator-action")]
    assert targets == ["dev1", "dev1/primary", "dev1/secondary", "ca-dev"]


def test_connection_string_disclosure_is_recorded(api_hub: APIHub) -> None:
    created = create_device(api_hub, "dev1")
    response = api_hub.request("GET", "/devices/dev1/connection-string")
    assert response.status == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "connection_string": (
            f"HostName={API_HOSTNAME};DeviceId=dev1;SharedAccessKey={created['primary_key']}"
        )
    }
    secondary = api_hub.request(
        "GET", "/devices/dev1/connection-string?key=secondary&gateway=edge.local"
    ).json()["connection_string"]
    assert secondary == (
        f"HostName={API_HOSTNAME};DeviceId=dev1;"
        f"SharedAccessKey={created['secondary_key']};GatewayHostName=edge.local"
    )
    disclosures = [
        e["target"]
        for e in api_hub.security_events("operator-action")
        if e["action"] == "connection-string-disclose"
    ]
    assert disclosures == ["dev1/primary", "dev1/secondary"]
    # A gateway that would smuggle a field into the string is refused, and nothing is disclosed.
    bad = api_hub.request("GET", "/devices/dev1/connection-string?gateway=x%3BSharedAccessKey%3Dy")
    assert_error(bad, 400, "invalid")
    assert_error(api_hub.request("GET", "/devices/dev1/connection-string?key=third"), 400)
    assert_error(api_hub.request("GET", "/devices/ghost/connection-string"), 404)
    assert len(api_hub.security_events("operator-action")) == 3
    create_device(api_hub, "ca-dev", auth="x509-ca")
    x509 = api_hub.request("GET", "/devices/ca-dev/connection-string?gateway=10.0.0.1").json()
    assert x509["connection_string"] == (
        f"HostName={API_HOSTNAME};DeviceId=ca-dev;x509=true;GatewayHostName=10.0.0.1"
    )


# --- certificate authorities -------------------------------------------------------------------


def test_ca_add_list_remove(api_hub: APIHub) -> None:
    pem = ca_pem()
    response = api_hub.request("POST", "/cas", json_body={"pem": pem})
    assert response.status == 201
    record = response.json()
    assert re.fullmatch(r"[0-9A-F]{64}", record["fingerprint"])
    assert "Fleet CA" in record["subject"]
    assert "PRIVATE" not in record["pem"]
    assert_error(api_hub.request("POST", "/cas", json_body={"pem": pem}), 409, "conflict")
    assert_error(api_hub.request("POST", "/cas", json_body={"pem": "garbage"}), 400, "invalid")
    assert_error(api_hub.request("POST", "/cas", json_body={"pem": self_signed_pem("leaf")}), 400)
    listed = api_hub.request("GET", "/cas").json()
    assert [c["fingerprint"] for c in listed["cas"]] == [record["fingerprint"]]
    assert api_hub.request("DELETE", f"/cas/{record['fingerprint']}").status == 204
    assert api_hub.request("GET", "/cas").json() == {"cas": []}
    assert_error(api_hub.request("DELETE", f"/cas/{record['fingerprint']}"), 404, "not-found")
    actions = [(e["action"], e["target"]) for e in api_hub.security_events("operator-action")]
    assert actions == [("ca-add", record["fingerprint"]), ("ca-remove", record["fingerprint"])]


# --- messages ----------------------------------------------------------------------------------


def test_messages_query(api_hub: APIHub) -> None:
    s1 = api_hub.append(b'{"t": 21.5}', properties=(("$.ct", "application/json"), ("k", "v")))
    s2 = api_hub.append(b"\xff\xfe binary", device_id="dev2")
    s3 = api_hub.append(b"alert", stream=Stream.SECURITY, device_id="dev1")
    page = api_hub.request("GET", "/messages").json()
    assert [m["seq"] for m in page["messages"]] == [s1, s2, s3]
    assert page["next_after"] == s3
    first = page["messages"][0]
    assert first == {
        "seq": s1,
        "stream": "telemetry",
        "device_id": "dev1",
        "enqueued_at": api_hub.clock.time(),
        "properties": {"$.ct": "application/json", "k": "v"},
        "payload_base64": base64.b64encode(b'{"t": 21.5}').decode(),
        "payload_text": '{"t": 21.5}',
    }
    binary = page["messages"][1]
    assert binary["payload_text"] is None
    assert base64.b64decode(binary["payload_base64"]) == b"\xff\xfe binary"
    dev1 = api_hub.request("GET", "/messages?device=dev1").json()["messages"]
    assert [m["seq"] for m in dev1] == [s1, s3]
    security = api_hub.request("GET", "/messages?stream=security").json()["messages"]
    assert [m["seq"] for m in security] == [s3]
    after = api_hub.request("GET", f"/messages?after={s1}&limit=1").json()
    assert [m["seq"] for m in after["messages"]] == [s2]
    assert after["next_after"] == s2
    empty = api_hub.request("GET", f"/messages?after={s3 + 100}").json()
    assert empty == {"messages": [], "next_after": s3 + 100}


@pytest.mark.parametrize(
    "query",
    [
        "limit=1001",
        "limit=0",
        "limit=-1",
        "after=-1",
        "after=1e3",
        "after=99999999999999999999999",
        "stream=audit",
        "device=",
        "devcie=dev1",
        "limit=1&limit=2",
    ],
)
def test_messages_query_is_validated(api_hub: APIHub, query: str) -> None:
    assert_error(api_hub.request("GET", f"/messages?{query}"), 400, "invalid-query")


# --- live tail (SSE) ---------------------------------------------------------------------------


class SSEReader:
    """Reads a tail over a raw TLS connection, keeping comments visible."""

    def __init__(self, hub: APIHub, query: str = "", token: str | None = None) -> None:
        self.conn = hub.connection(timeout=10)
        headers = {"Authorization": f"Bearer {token or hub.token}"}
        self.conn.request("GET", f"/messages/tail{query}", headers=headers)
        self.response = self.conn.getresponse()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def lines(self) -> Iterator[str]:
        while True:
            line = self.response.readline()
            if not line:
                return
            yield line.decode().rstrip("\n")

    def next_event(self) -> dict[str, str]:
        """The next event (fields), skipping comments."""
        fields: dict[str, str] = {}
        for line in self.lines():
            if line.startswith(":"):
                continue
            if not line:
                if fields:
                    return fields
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        raise EOFError


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_tail_streams_messages_committed_after_subscribing(api_hub: APIHub) -> None:
    api_hub.append(b"before")
    with SSEReader(api_hub, "?device=dev1") as tail:
        assert tail.response.status == 200
        assert tail.response.headers["content-type"].startswith("text/event-stream")
        assert tail.response.headers["cache-control"] == "no-store"
        lines = tail.lines()
        assert next(lines) == ": tail open"
        assert api_hub.tail_count() == 1
        api_hub.append(b"other device", device_id="dev2")
        seq = api_hub.append(b"hello", properties=(("k", "v"),))
        event = tail.next_event()
        assert event["id"] == str(seq)
        assert "event" not in event
        data = json.loads(event["data"])
        assert data["payload_text"] == "hello"
        assert data["properties"] == {"k": "v"}
        assert data["device_id"] == "dev1"
        # Heartbeats flow while nothing happens (0.2 s in these tests).
        assert next(tail.lines()) in (": heartbeat", "")
    # Closing the client closes the subscription and frees the slot.
    wait_for(lambda: api_hub.tail_count() == 0)
    wait_for(lambda: api_hub.run(lambda: api_hub.services.log.statistics().subscribers) == 0)


def test_tail_filters_by_stream(api_hub: APIHub) -> None:
    with SSEReader(api_hub, "?stream=security") as tail:
        next(tail.lines())
        api_hub.append(b"telemetry")
        seq = api_hub.append(b"alarm", stream=Stream.SECURITY)
        assert tail.next_event()["id"] == str(seq)


def test_tail_concurrency_is_capped(api_hub_factory: APIHubFactory) -> None:
    hub = api_hub_factory(max_tail_clients=2)
    readers = [SSEReader(hub), SSEReader(hub)]
    try:
        for reader in readers:
            assert reader.response.status == 200
        third = hub.request("GET", "/messages/tail")
        assert_error(third, 429, "throttled")
        assert int(third.headers["retry-after"]) >= 1
    finally:
        for reader in readers:
            reader.close()
    wait_for(lambda: hub.tail_count() == 0)
    with SSEReader(hub) as again:
        assert again.response.status == 200


def test_tail_reports_lag_and_ends(api_hub: APIHub) -> None:
    with SSEReader(api_hub) as tail:
        next(tail.lines())

        async def flood() -> int:
            # Thousands of commits reach the subscriber in a few callbacks, faster than the
            # stream can drain its queue of 1000: it is cut off.
            futures = [
                api_hub.services.log.append(
                    LogEntry(
                        stream=Stream.TELEMETRY, device_id="dev1", enqueued_at=0.0, payload=b"x"
                    )
                )
                for _ in range(5000)
            ]
            seqs = [await f for f in futures]
            return seqs[-1]

        api_hub.call(flood(), timeout=60)
        delivered = 0
        while True:
            event = tail.next_event()
            if event.get("event") == "lagged":
                break
            delivered += 1
        lagged = json.loads(event["data"])
        assert lagged["reason"] == "subscriber-lagged"
        assert 0 < delivered < 5000
        assert lagged["last_seq"] == delivered
        with pytest.raises(EOFError):
            tail.next_event()
    wait_for(lambda: api_hub.tail_count() == 0)


def test_tail_ends_when_the_hub_closes_streams(api_hub: APIHub) -> None:
    with SSEReader(api_hub) as tail:
        next(tail.lines())
        api_hub.run(lambda: close_streams(api_hub.app))
        assert tail.next_event()["event"] == "closed"
    wait_for(lambda: api_hub.tail_count() == 0)
    assert_error(api_hub.request("GET", "/messages/tail"), 429)


def test_head_requests(api_hub: APIHub) -> None:
    head = api_hub.request("HEAD", "/devices")
    assert head.status == 200
    assert head.body == b""
    tail = api_hub.request("HEAD", "/messages/tail")
    assert tail.status == 200
    assert tail.headers["content-type"].startswith("text/event-stream")
    assert api_hub.tail_count() == 0
    assert_error(api_hub.request("GET", "/devices", token=None), 401)


def test_tail_query_is_validated(api_hub: APIHub) -> None:
    assert_error(api_hub.request("GET", "/messages/tail?stream=nope"), 400, "invalid-query")
    assert_error(api_hub.request("GET", "/messages/tail?after=3"), 400, "invalid-query")
    assert api_hub.tail_count() == 0


# --- connections -------------------------------------------------------------------------------


def test_connections(api_hub: APIHub) -> None:
    assert api_hub.request("GET", "/connections").json() == {"connections": []}
    api_hub.endpoint.live = [
        ConnectionInfo("zeta", "127.0.0.1:5001", "x509-ca", 10.0, 60),
        ConnectionInfo("alpha", "127.0.0.1:5000", "sas", 5.0, 240),
    ]
    listed = api_hub.request("GET", "/connections").json()["connections"]
    assert [c["device_id"] for c in listed] == ["alpha", "zeta"]
    assert listed[0] == {
        "device_id": "alpha",
        "peer": "127.0.0.1:5000",
        "auth_kind": "sas",
        "connected_at": 5.0,
        "keep_alive_seconds": 240,
    }


# --- authentication, authorisation, throttling -------------------------------------------------


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing-token"),
        ("Basic dXNlcjpwYXNz", "malformed-header"),
        ("Bearer", "malformed-header"),
        ("Bearer not-a-token", "malformed"),
        ("Bearer " + "ihk_" + "A" * 300, "malformed-token"),
        ("FORGED", "unknown"),
    ],
)
def test_refused_tokens_are_401_and_recorded(
    api_hub: APIHub, header: str | None, reason: str
) -> None:
    forged = random_token()
    headers = {}
    if header is not None:
        headers["Authorization"] = header.replace("FORGED", f"Bearer {forged}")
    response = api_hub.request("GET", "/devices", token=None, headers=headers)
    error = assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert forged not in response.body.decode()
    assert "not-a-token" not in error["message"]
    events = api_hub.security_events("operator-auth-failed")
    assert len(events) == 1
    assert events[0]["reason"] == reason
    assert events[0]["peer"].startswith("127.0.0.1:")
    assert events[0]["path"] == "/devices"
    assert forged not in json.dumps(events)
    assert "not-a-token" not in json.dumps(events)


def test_repeated_authorization_header_is_refused(api_hub: APIHub) -> None:
    conn = api_hub.connection()
    try:
        conn.putrequest("GET", "/devices")
        conn.putheader("Authorization", f"Bearer {api_hub.token}")
        conn.putheader("Authorization", f"Bearer {random_token()}")
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 401
        response.read()
    finally:
        conn.close()
    assert api_hub.security_events("operator-auth-failed")[0]["reason"] == "repeated-header"


def test_expired_and_revoked_tokens_are_refused(api_hub: APIHub) -> None:
    short, _ = api_hub.call(api_hub.services.tokens.create("short", ttl_seconds=60))
    doomed, record = api_hub.call(api_hub.services.tokens.create("doomed"))
    assert api_hub.request("GET", "/devices", token=short).status == 200
    assert api_hub.request("GET", "/devices", token=doomed).status == 200
    api_hub.clock.advance(61)
    assert_error(api_hub.request("GET", "/devices", token=short), 401)
    api_hub.call(api_hub.services.tokens.revoke(record.token_id))
    assert_error(api_hub.request("GET", "/devices", token=doomed), 401)
    reasons = [e["reason"] for e in api_hub.security_events("operator-auth-failed")]
    assert reasons == ["expired", "revoked"]
    assert api_hub.request("GET", "/devices").status == 200


def test_roles_are_enforced(api_hub: APIHub) -> None:
    reader = insert_token(api_hub, "viewer")
    stranger = insert_token(api_hub, "auditor")
    create_device(api_hub, "dev1")
    assert api_hub.request("GET", "/devices/dev1", token=reader).status == 200
    assert api_hub.request("GET", "/metrics", token=reader).status == 200
    assert_error(
        api_hub.request("GET", "/devices/dev1/connection-string", token=reader), 403, "forbidden"
    )
    assert_error(api_hub.request("POST", "/devices/dev1/disable", token=reader), 403)
    assert_error(api_hub.request("GET", "/devices", token=stranger), 403, "forbidden")
    assert api_hub.request("GET", "/devices/dev1").json()["state"] == "enabled"
    events = api_hub.security_events("operator-forbidden")
    assert [(e["actor"], e["operation"]) for e in events] == [
        ("viewer-token", "deviceConnectionString"),
        ("viewer-token", "disableDevice"),
        ("auditor-token", "listDevices"),
    ]
    disclosures = [
        e for e in api_hub.security_events("operator-action") if "disclose" in e["action"]
    ]
    assert disclosures == []


def test_repeated_failures_are_throttled_before_the_token_is_checked(
    api_hub_factory: APIHubFactory,
) -> None:
    hub = api_hub_factory(auth_failures_per_minute=3)
    for _ in range(3):
        assert_error(hub.request("GET", "/devices", token=random_token()), 401)
    throttled = hub.request("GET", "/devices")  # even a valid token: the address is throttled
    assert_error(throttled, 429, "throttled")
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    assert len(hub.security_events("operator-auth-failed")) == 3
    assert len(hub.security_events("operator-auth-throttled")) == 1
    assert hub.request("GET", "/healthz", token=None).status == 200
    hub.clock.advance(61)
    assert hub.request("GET", "/devices").status == 200


# --- hostile bodies ----------------------------------------------------------------------------


def test_oversized_body_is_413(api_hub: APIHub) -> None:
    big = json.dumps({"pem": "A" * (70 * 1024)}).encode()
    assert_error(api_hub.request("POST", "/cas", body=big), 413, "body-too-large")


def test_oversized_chunked_body_is_413(api_hub: APIHub) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"pem": "'
        for _ in range(100):
            yield b"A" * 1024
        yield b'"}'

    conn = api_hub.connection()
    try:
        conn.request(
            "POST",
            "/cas",
            body=chunks(),
            headers={
                "Authorization": f"Bearer {api_hub.token}",
                "Content-Type": "application/json",
            },
            encode_chunked=True,
        )
        response = conn.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "body-too-large"
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        pass  # the server may close the connection before the whole body is sent
    finally:
        conn.close()


def test_slow_body_times_out(api_hub_factory: APIHubFactory) -> None:
    hub = api_hub_factory(body_timeout_seconds=0.3)
    context = hub.ssl_context()
    with (
        socket.create_connection((hub.host, hub.port)) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.settimeout(10)
        tls.sendall(
            b"POST /devices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + hub.token.encode() + b"\r\n"
            b'Content-Length: 100\r\n\r\n{"device_id"'
        )
        answer = b""
        while b"request-timeout" not in answer:
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408")
    assert b'"request-timeout"' in answer


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"device_id": "dev1"', "malformed-json"),
        (b"{bad json}", "malformed-json"),
        (b"", "malformed-json"),
        (b'{"device_id": "dev1"} trailing', "malformed-json"),
        (b'{"device_id": "dev1", "admin": true}', "invalid-body"),
        (b'{"device_id": 7}', "invalid-body"),
        (b"[]", "invalid-body"),
        (b"null", "invalid-body"),
        (b'{"device_id": "dev1", "device_id": "dev2"}', "duplicate-key"),
        (b'{"device_id": "d\xff"}', "invalid-utf8"),
        (b'{"device_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "body-too-large"),
        (b'{"device_id": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "invalid-body"),
        (b'{"x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "invalid-body"),
    ],
)
def test_malformed_bodies_are_400(api_hub: APIHub, body: bytes, code: str) -> None:
    response = api_hub.request("POST", "/devices", body=body)
    error = assert_error(response, 413 if code == "body-too-large" else 400, code)
    assert len(error["message"]) <= 300
    assert api_hub.request("GET", "/devices").json()["devices"] == []


def test_error_messages_do_not_echo_values(api_hub: APIHub) -> None:
    secret_like = "SharedAccessKey-" + secrets.token_hex(16)
    response = api_hub.request(
        "POST", "/devices", json_body={"device_id": "dev1", "auth": secret_like}
    )
    assert_error(response, 400, "invalid-body")
    assert secret_like not in response.body.decode()


def test_body_needs_json_media_type(api_hub: APIHub) -> None:
    response = api_hub.request(
        "POST",
        "/devices",
        body=b'{"device_id": "dev1"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(response, 415, "unsupported-media-type")
    ok = api_hub.request(
        "POST",
        "/devices",
        body=b'{"device_id": "dev1"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert ok.status == 201


# --- failures of the services ------------------------------------------------------------------


def test_storage_failure_is_503_without_details(
    api_hub: APIHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: object, **_kwargs: object) -> None:
        raise StorageError("disk I/O error in /var/lib/secret-place/hub.db")

    monkeypatch.setattr(api_hub.services.registry, "list_devices", broken)
    response = api_hub.request("GET", "/devices")
    error = assert_error(response, 503, "storage-unavailable")
    assert "secret-place" not in error["message"]
    assert response.headers["retry-after"] == "1"
    # Authentication fails closed when the token store is down.
    monkeypatch.setattr(api_hub.services.storage, "find_token", broken)
    assert_error(api_hub.request("GET", "/cas"), 503, "storage-unavailable")


def test_unexpected_errors_are_500_without_traceback(
    api_hub: APIHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def bug(*_args: object, **_kwargs: object) -> None:
        raise ZeroDivisionError("internal detail")

    monkeypatch.setattr(api_hub.services.registry, "list_cas", bug)
    response = api_hub.request("GET", "/cas")
    error = assert_error(response, 500, "internal")
    assert "internal detail" not in error["message"]
