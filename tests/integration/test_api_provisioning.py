"""The operator API of provisioning: enrollments, groups, claim tokens, registrations,
issued certificates, and the public CRL and device CA.

A whole hub runs in-process (``hub`` fixture) and the API is called over real TLS sockets;
blocking requests run in worker threads so the hub keeps serving. Certificates to revoke are
issued straight from the device authority with a CSR made here (the device side of a
registration is tested end to end elsewhere); registration states are written to storage the
way the assignment writes them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from tests.integration.conftest import APIResponse
from tests.integration.test_api import ca_pem, self_signed_pem

from ironhub.storage.interfaces import ClaimTokenRecord, RegistrationRecord, Stream

if TYPE_CHECKING:
    from ironhub.server import RunningHub

pytestmark = pytest.mark.asyncio

_DEFAULT: Any = object()


@dataclass
class ProvisioningAPI:
    """Blocking HTTPS requests to a hub's API, run off the event loop."""

    hub: RunningHub
    token: str

    def _request(
        self, method: str, path: str, body: bytes | None, token: str | None
    ) -> APIResponse:
        url = urllib.parse.urlsplit(self.hub.info.api_url)
        context = ssl.create_default_context(cafile=str(self.hub.info.ca_path))
        conn = http.client.HTTPSConnection(
            url.hostname or "127.0.0.1", url.port, timeout=30, context=context
        )
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=body, headers=headers)
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
    ) -> APIResponse:
        if json_body is not None:
            body = json.dumps(json_body).encode()
        chosen = self.token if token is _DEFAULT else token
        return await asyncio.to_thread(self._request, method, path, body, chosen)

    async def ok(
        self, method: str, path: str, json_body: Any = None, *, status: int = 200, **kw: Any
    ) -> Any:
        response = await self.request(method, path, json_body, **kw)
        assert response.status == status, (method, path, response.status, response.body[:500])
        return response.json() if response.body else None

    async def token_for(self, *roles: str) -> str:
        created = await self.ok(
            "POST", "/tokens", {"name": "-".join(roles), "roles": list(roles)}, status=201
        )
        return str(created["token"])


@pytest.fixture
def api(hub: RunningHub) -> ProvisioningAPI:
    token = hub.info.first_admin_token
    assert token is not None
    return ProvisioningAPI(hub, token)


def assert_error(response: APIResponse, status: int, code: str | None = None) -> str:
    """Our JSON error body with ``status`` (and ``code``); returns the message."""
    assert response.status == status, (response.status, response.body[:500])
    body = response.json()
    assert set(body) == {"error"}
    assert "Traceback" not in response.body.decode()
    if code is not None:
        assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


def make_csr(common_name: str) -> str:
    """A device's CSR: a fresh EC P-256 key, CN = the device id."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(Encoding.PEM).decode("ascii")


async def issue_certificate(hub: RunningHub, device_id: str) -> str:
    """Issue a device certificate as a CSR registration would; its serial."""
    provisioning = hub.services.provisioning
    assert provisioning is not None
    issued = await provisioning.authority.issue(
        make_csr(device_id), device_id=device_id, registration_id=device_id
    )
    return issued.record.serial


async def put_registration(
    hub: RunningHub, registration_id: str, enrollment_id: str, *, group: bool, **extra: Any
) -> RegistrationRecord:
    """Store a registration state the way a completed assignment does."""
    now = hub.services.clock.time()
    record = RegistrationRecord(
        registration_id=registration_id,
        enrollment_id=enrollment_id,
        group=group,
        device_id=extra.pop("device_id", registration_id),
        status="assigned",
        substatus="initialAssignment",
        created_at=now,
        updated_at=now,
        **extra,
    )
    await hub.services.storage.put_registration(record)
    return record


async def audit_bodies(hub: RunningHub) -> list[dict[str, Any]]:
    audit = hub.services.audit
    assert audit is not None
    return [json.loads(body) for _, body in await audit.read(limit=10_000)]


async def recorded_text(hub: RunningHub) -> str:
    """Everything the hub recorded: audit records and the security stream, as one text."""
    audit = hub.services.audit
    assert audit is not None
    lines = [body.decode() for _, body in await audit.read(limit=10_000)]
    messages = await hub.services.log.query(stream=Stream.SECURITY, limit=10_000)
    lines += [json.dumps(dict(m.properties)) + m.payload.decode() for m in messages]
    return "\n".join(lines)


# --- provisioning info and the public PKI documents ---------------------------------------------


async def test_info_names_the_scope_host_and_device_ca(api: ProvisioningAPI) -> None:
    viewer = await api.token_for("viewer")
    info = await api.ok("GET", "/provisioning", token=viewer)
    assert set(info) == {
        "idScope",
        "provisioningHost",
        "port",
        "assignedHub",
        "enabled",
        "deviceCaPem",
    }
    assert info["idScope"].startswith("0ne")
    assert info["enabled"] is True
    # The port the endpoint really listens on (the test hub binds an ephemeral one).
    assert info["port"] == api.hub.endpoint.address[1]
    assert info["provisioningHost"] == info["assignedHub"] == api.hub.services.config.hostname
    ca = x509.load_pem_x509_certificate(info["deviceCaPem"].encode())
    public = await api.request("GET", "/pki/device-ca", token=None)
    assert public.status == 200
    assert public.headers["content-type"].startswith("application/x-pem-file")
    assert x509.load_pem_x509_certificate(public.body) == ca


async def test_crl_is_public_der_or_pem_and_signed_by_the_device_ca(api: ProvisioningAPI) -> None:
    ca = x509.load_pem_x509_certificate(
        (await api.request("GET", "/pki/device-ca", token=None)).body
    )
    der = await api.request("GET", "/pki/crl", token=None)
    assert der.status == 200
    assert der.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(der.body)
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert crl.issuer == ca.subject
    assert len(crl) == 0
    pem = await api.request("GET", "/pki/crl?format=pem", token=None)
    assert pem.headers["content-type"].startswith("application/x-pem-file")
    assert x509.load_pem_x509_crl(pem.body) == crl
    assert_error(await api.request("GET", "/pki/crl?format=xml", token=None), 400, "invalid-query")
    assert_error(await api.request("GET", "/pki/crl?x=1", token=None), 400, "invalid-query")
    # A public route ignores a token rather than refusing it, even a bogus one.
    assert (await api.request("GET", "/pki/crl", token="ihk_nonsense")).status == 200
    # Fetching public documents is no operator action: nothing is recorded.
    assert not any(r["action"] == "operator-request" for r in await audit_bodies(api.hub))


# --- individual enrollments ---------------------------------------------------------------------


async def test_symmetric_enrollment_keys_appear_only_in_the_creation_answer(
    api: ProvisioningAPI,
) -> None:
    created = await api.ok(
        "POST",
        "/provisioning/enrollments",
        {"registrationId": "sensor-1", "attestation": "symmetric"},
        status=201,
    )
    assert set(created) == {"enrollment", "primaryKey", "secondaryKey"}
    keys = (created["primaryKey"], created["secondaryKey"])
    assert all(len(base64.b64decode(k, validate=True)) == 32 for k in keys)
    assert keys[0] != keys[1]
    enrollment = created["enrollment"]
    assert enrollment["registrationId"] == "sensor-1"
    assert enrollment["attestation"] == "symmetric"
    assert enrollment["enabled"] is True
    assert enrollment["deviceId"] is None
    assert enrollment["reprovision"] == "keep-twin"
    assert enrollment["initialTwin"] == {"tags": {}, "properties": {"desired": {}}}
    assert enrollment["certificates"] == []
    listed = await api.request("GET", "/provisioning/enrollments")
    shown = await api.request("GET", "/provisioning/enrollments/sensor-1")
    for answer in (listed, shown):
        assert answer.status == 200
        text = answer.body.decode()
        assert "Key" not in text
        assert "sealed" not in text
        assert not any(k in text for k in keys)
    assert shown.json() == enrollment
    assert listed.json() == {"enrollments": [enrollment], "nextAfter": None}
    recorded = await recorded_text(api.hub)
    assert not any(k in recorded for k in keys)
    actions = [(r["action"], r["target"]) for r in await audit_bodies(api.hub)]
    # Recorded before it ran (the route table), and as done (the handler).
    assert ("operator-request", "createEnrollment") in actions
    assert ("enrollment-create", "sensor-1") in actions
    assert actions.index(("operator-request", "createEnrollment")) < actions.index(
        ("enrollment-create", "sensor-1")
    )


async def test_x509_enrollment_with_every_option(api: ProvisioningAPI) -> None:
    pem = self_signed_pem("cam-7")
    body = {
        "registrationId": "cam-7",
        "attestation": "x509",
        "certificates": [pem],
        "deviceId": "camera-seven",
        "initialTwin": {"tags": {"site": "north"}, "properties": {"desired": {"fps": 25}}},
        "allocationPayload": {"shelf": 3},
        "reprovision": "reset-twin",
        "enabled": False,
    }
    created = await api.ok("POST", "/provisioning/enrollments", body, status=201)
    assert set(created) == {"enrollment"}  # no keys for x509
    e = created["enrollment"]
    assert e["deviceId"] == "camera-seven"
    assert e["initialTwin"] == body["initialTwin"]
    assert e["allocationPayload"] == {"shelf": 3}
    assert e["reprovision"] == "reset-twin"
    assert e["enabled"] is False
    assert len(e["certificates"]) == 1
    assert x509.load_pem_x509_certificate(e["certificates"][0].encode()) == (
        x509.load_pem_x509_certificate(pem.encode())
    )


async def test_enable_disable_delete_and_the_devices_an_enrollment_provisioned(
    api: ProvisioningAPI,
) -> None:
    await api.ok(
        "POST",
        "/provisioning/enrollments",
        {"registrationId": "pump-1", "attestation": "symmetric"},
        status=201,
    )
    await api.ok("POST", "/devices", {"device_id": "pump-1"}, status=201)
    await put_registration(api.hub, "pump-1", "pump-1", group=False)
    disabled = await api.ok("PATCH", "/provisioning/enrollments/pump-1", {"enabled": False})
    assert disabled["enrollment"]["enabled"] is False
    assert disabled["enrollment"]["version"] == 2
    assert disabled["disabledDevices"] == ["pump-1"]
    assert (await api.ok("GET", "/devices/pump-1"))["state"] == "disabled"
    enabled = await api.ok("PATCH", "/provisioning/enrollments/pump-1", {"enabled": True})
    assert enabled["enrollment"]["enabled"] is True
    assert enabled["disabledDevices"] == []
    # Enabling the enrollment is no decision about the device.
    assert (await api.ok("GET", "/devices/pump-1"))["state"] == "disabled"
    assert (await api.request("DELETE", "/provisioning/enrollments/pump-1")).status == 204
    assert_error(await api.request("GET", "/provisioning/enrollments/pump-1"), 404, "not-found")
    assert (await api.ok("GET", "/devices/pump-1"))["device_id"] == "pump-1"
    actions = [(r["action"], r["target"]) for r in await audit_bodies(api.hub)]
    for action in (
        "enrollment-disable",
        "device-disable",
        "enrollment-enable",
        "enrollment-delete",
    ):
        assert (action, "pump-1") in actions
    assert actions.index(("enrollment-disable", "pump-1")) < actions.index(
        ("device-disable", "pump-1")
    )
    for operation in ("updateEnrollment", "deleteEnrollment"):
        assert ("operator-request", operation) in actions


async def test_enrollments_are_paged_by_id(api: ProvisioningAPI) -> None:
    for name in ("c-3", "a-1", "b-2"):
        await api.ok(
            "POST",
            "/provisioning/enrollments",
            {"registrationId": name, "attestation": "symmetric"},
            status=201,
        )
    first = await api.ok("GET", "/provisioning/enrollments?limit=2")
    assert [e["registrationId"] for e in first["enrollments"]] == ["a-1", "b-2"]
    assert first["nextAfter"] == "b-2"
    rest = await api.ok("GET", "/provisioning/enrollments?after=b-2&limit=2")
    assert [e["registrationId"] for e in rest["enrollments"]] == ["c-3"]
    assert rest["nextAfter"] is None
    assert_error(await api.request("GET", "/provisioning/enrollments?limit=0"), 400)
    assert_error(await api.request("GET", "/provisioning/enrollments?limit=1001"), 400)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"registrationId": "x", "attestation": "tpm"}, "attestation"),
        ({"registrationId": "x"}, "attestation"),
        ({"registrationId": "x", "attestation": "symmetric", "keys": "k"}, "unknown field"),
        ({"registrationId": "bad id!", "attestation": "symmetric"}, "registration id"),
        ({"registrationId": "x", "attestation": "symmetric", "certificates": ["-"]}, "no certif"),
        ({"registrationId": "x", "attestation": "x509"}, "one or two device certificates"),
        ({"registrationId": "x", "attestation": "x509", "certificates": ["junk"]}, "refused"),
        ({"registrationId": "x", "attestation": "symmetric", "initialTwin": {"a": 1}}, "tags"),
        (
            {"registrationId": "x", "attestation": "symmetric", "reprovision": "wipe"},
            "reprovision",
        ),
        ({"registrationId": "x", "attestation": "symmetric", "deviceId": "a b"}, "device"),
    ],
)
async def test_enrollment_creation_refusals_are_400_with_a_reason(
    api: ProvisioningAPI, body: dict[str, Any], fragment: str
) -> None:
    message = assert_error(await api.request("POST", "/provisioning/enrollments", body), 400)
    assert fragment in message, message
    listed = await api.ok("GET", "/provisioning/enrollments")
    assert listed["enrollments"] == []


async def test_nesting_and_conflicts(api: ProvisioningAPI) -> None:
    deep: Any = 1
    for _ in range(20):
        deep = {"d": [deep]}  # objects and arrays both count
    body = {"registrationId": "x", "attestation": "symmetric", "allocationPayload": deep}
    assert_error(await api.request("POST", "/provisioning/enrollments", body), 400, "too-deep")
    ok = {"registrationId": "x", "attestation": "symmetric"}
    await api.ok("POST", "/provisioning/enrollments", ok, status=201)
    message = assert_error(await api.request("POST", "/provisioning/enrollments", ok), 409)
    assert message == "enrollment 'x' already exists"
    # Individual enrollments and groups are separate namespaces.
    await api.ok("POST", "/provisioning/groups", {"groupId": "x", "attestation": "symmetric"},
                 status=201)  # fmt: skip
    message = assert_error(
        await api.request(
            "POST", "/provisioning/groups", {"groupId": "x", "attestation": "symmetric"}
        ),
        409,
    )
    assert message == "enrollment group 'x' already exists"


async def test_unknown_objects_are_404_with_their_name(api: ProvisioningAPI) -> None:
    cases = [
        ("GET", "/provisioning/enrollments/nope", None, "enrollment 'nope' does not exist"),
        ("DELETE", "/provisioning/enrollments/nope", None, "enrollment 'nope' does not exist"),
        ("PATCH", "/provisioning/enrollments/nope", {"enabled": False}, "does not exist"),
        ("GET", "/provisioning/groups/nope", None, "enrollment group 'nope' does not exist"),
        ("DELETE", "/provisioning/groups/nope", None, "enrollment group 'nope' does not exist"),
        ("PATCH", "/provisioning/groups/nope", {"enabled": True}, "does not exist"),
        ("POST", "/provisioning/groups/nope/device-key", {"registrationId": "r"}, "nope"),
        ("POST", "/provisioning/groups/nope/claim-tokens", {}, "enrollment group 'nope'"),
        ("DELETE", "/provisioning/claim-tokens/ct_nope", None, "claim token 'ct_nope'"),
        ("GET", "/provisioning/registrations/nope", None, "registration 'nope' does not exist"),
        ("DELETE", "/provisioning/registrations/nope", None, "registration 'nope'"),
        ("GET", "/certificates/ABCDEF", None, "no certificate with serial ABCDEF"),
        ("POST", "/certificates/ABCDEF/revoke", {}, "no certificate with serial ABCDEF"),
        ("POST", "/devices/ghost/certificates/revoke", {}, "no device 'ghost'"),
    ]
    for method, path, body, fragment in cases:
        message = assert_error(await api.request(method, path, body), 404, "not-found")
        assert fragment in message, (path, message)


async def test_patch_needs_a_boolean(api: ProvisioningAPI) -> None:
    await api.ok(
        "POST",
        "/provisioning/enrollments",
        {"registrationId": "r1", "attestation": "symmetric"},
        status=201,
    )
    for body in ({}, {"enabled": "no"}, {"enabled": True, "state": "x"}):
        assert_error(await api.request("PATCH", "/provisioning/enrollments/r1", body), 400)
    response = await api.request("PATCH", "/provisioning/enrollments/r1", body=b"enabled=0")
    assert_error(response, 400, "malformed-json")


# --- enrollment groups --------------------------------------------------------------------------


async def test_symmetric_group_and_its_derived_device_keys(api: ProvisioningAPI) -> None:
    created = await api.ok(
        "POST",
        "/provisioning/groups",
        {"groupId": "fleet", "attestation": "symmetric", "initialTwin": {"tags": {"f": 1}}},
        status=201,
    )
    assert set(created) == {"group", "primaryKey", "secondaryKey"}
    group = created["group"]
    assert group["groupId"] == "fleet"
    assert "deviceId" not in group
    primary = created["primaryKey"]
    answer = await api.ok(
        "POST", "/provisioning/groups/fleet/device-key", {"registrationId": "dev-42"}
    )
    expected = base64.b64encode(
        hmac.new(base64.b64decode(primary), b"dev-42", hashlib.sha256).digest()
    ).decode()
    assert answer == {"registrationId": "dev-42", "deviceKey": expected}
    for path in ("/provisioning/groups", "/provisioning/groups/fleet"):
        text = (await api.request("GET", path)).body.decode()
        assert primary not in text
        assert created["secondaryKey"] not in text
    recorded = await recorded_text(api.hub)
    assert primary not in recorded
    assert expected not in recorded
    actions = [(r["action"], r["target"]) for r in await audit_bodies(api.hub)]
    assert ("enrollment-group-device-key-disclose", "fleet/dev-42") in actions
    listed = await api.ok("GET", "/provisioning/groups")
    assert listed == {"groups": [group], "nextAfter": None}
    state = await api.ok("PATCH", "/provisioning/groups/fleet", {"enabled": False})
    assert state == {"group": {**group, "enabled": False, "version": 2,
                               "updatedAt": state["group"]["updatedAt"]},
                     "disabledDevices": []}  # fmt: skip
    assert (await api.request("DELETE", "/provisioning/groups/fleet")).status == 204
    assert_error(await api.request("GET", "/provisioning/groups/fleet"), 404)


async def test_device_key_refusals(api: ProvisioningAPI) -> None:
    await api.ok(
        "POST",
        "/provisioning/groups",
        {"groupId": "cams", "attestation": "x509", "certificates": [ca_pem("Cam CA")]},
        status=201,
    )
    message = assert_error(
        await api.request(
            "POST", "/provisioning/groups/cams/device-key", {"registrationId": "cam-1"}
        ),
        400,
    )
    assert "x509" in message
    await api.ok("POST", "/provisioning/groups", {"groupId": "g", "attestation": "symmetric"},
                 status=201)  # fmt: skip
    for body in ({"registrationId": "bad id"}, {}, {"registrationId": ""}):
        assert_error(await api.request("POST", "/provisioning/groups/g/device-key", body), 400)


async def test_x509_group_keeps_its_cas(api: ProvisioningAPI) -> None:
    cas = [ca_pem("Root A"), ca_pem("Root B")]
    created = await api.ok(
        "POST",
        "/provisioning/groups",
        {"groupId": "plant", "attestation": "x509", "certificates": cas},
        status=201,
    )
    assert set(created) == {"group"}
    assert len(created["group"]["certificates"]) == 2
    message = assert_error(
        await api.request(
            "POST",
            "/provisioning/groups",
            {"groupId": "p2", "attestation": "x509", "certificates": [self_signed_pem("leaf")]},
        ),
        400,
    )
    assert "CA certificate refused" in message


async def test_disabling_a_group_disables_its_devices(api: ProvisioningAPI) -> None:
    await api.ok("POST", "/provisioning/groups", {"groupId": "g", "attestation": "symmetric"},
                 status=201)  # fmt: skip
    for device in ("d1", "d2"):
        await api.ok("POST", "/devices", {"device_id": device}, status=201)
        await put_registration(api.hub, device, "g", group=True)
    # A registration of another group with the same id is not touched.
    await api.ok("POST", "/devices", {"device_id": "other"}, status=201)
    await put_registration(api.hub, "other", "g", group=False)
    state = await api.ok("PATCH", "/provisioning/groups/g", {"enabled": False})
    assert state["disabledDevices"] == ["d1", "d2"]
    assert (await api.ok("GET", "/devices/other"))["state"] == "enabled"


# --- claim tokens -------------------------------------------------------------------------------


async def test_claim_token_secret_is_shown_once(api: ProvisioningAPI) -> None:
    await api.ok("POST", "/provisioning/groups", {"groupId": "g", "attestation": "x509",
                 "certificates": [ca_pem()]}, status=201)  # fmt: skip
    created = await api.ok(
        "POST",
        "/provisioning/groups/g/claim-tokens",
        {"uses": 5, "expiresInSeconds": 3600},
        status=201,
    )
    secret = created["token"]
    assert secret.startswith("ihc_")
    assert created["groupId"] == "g"
    assert created["maxUses"] == 5
    assert created["uses"] == 0
    assert created["state"] == "active"
    assert created["createdBy"] == "bootstrap-admin" or created["createdBy"]
    assert created["expiresAt"] - created["createdAt"] == pytest.approx(3600)
    default = await api.ok("POST", "/provisioning/groups/g/claim-tokens", {}, status=201)
    assert default["maxUses"] == 1
    assert default["expiresAt"] - default["createdAt"] == pytest.approx(86400)
    listed = await api.request("GET", "/provisioning/claim-tokens")
    text = listed.body.decode()
    assert secret not in text
    assert default["token"] not in text
    assert "hash" not in text.lower()
    tokens = listed.json()["claimTokens"]
    assert [t["tokenId"] for t in tokens] == [created["tokenId"], default["tokenId"]]
    assert tokens[0] == {k: v for k, v in created.items() if k != "token"}
    assert secret not in await recorded_text(api.hub)
    actions = [(r["action"], r["target"]) for r in await audit_bodies(api.hub)]
    assert ("claim-token-create", f"g/{created['tokenId']}") in actions
    # Revoke: the listing says so; filtering by group.
    path = f"/provisioning/claim-tokens/{created['tokenId']}"
    assert (await api.request("DELETE", path)).status == 204
    revoked = await api.ok("GET", "/provisioning/claim-tokens?group=g")
    assert [t["state"] for t in revoked["claimTokens"]] == ["revoked", "active"]
    assert (await api.ok("GET", "/provisioning/claim-tokens?group=h")) == {"claimTokens": []}
    assert ("claim-token-revoke", created["tokenId"]) in [
        (r["action"], r["target"]) for r in await audit_bodies(api.hub)
    ]


async def test_claim_token_states(api: ProvisioningAPI) -> None:
    await api.ok("POST", "/provisioning/groups", {"groupId": "g", "attestation": "symmetric"},
                 status=201)  # fmt: skip
    once = await api.ok("POST", "/provisioning/groups/g/claim-tokens", {}, status=201)
    # Spend its only use as a registration does.
    storage = api.hub.services.storage
    digest = hashlib.sha256(once["token"].encode()).digest()
    await storage.consume_claim_token(digest, api.hub.services.clock.time())
    # One that expired (written below the service, which refuses a past expiry).
    now = api.hub.services.clock.time()
    await storage.insert_claim_token(
        ClaimTokenRecord(
            token_id="ct_old",
            group_id="g",
            token_hash=b"\x00" * 32,
            max_uses=1,
            uses=0,
            created_at=now - 7200,
            expires_at=now - 3600,
            created_by="someone",
        )
    )
    listed = await api.ok("GET", "/provisioning/claim-tokens")
    states = {t["tokenId"]: (t["state"], t["uses"]) for t in listed["claimTokens"]}
    assert states == {"ct_old": ("expired", 0), once["tokenId"]: ("exhausted", 1)}


async def test_claim_token_creator_is_the_caller(api: ProvisioningAPI) -> None:
    await api.ok("POST", "/provisioning/groups", {"groupId": "g", "attestation": "symmetric"},
                 status=201)  # fmt: skip
    registry_write = await api.token_for("registry-write")
    created = await api.ok(
        "POST", "/provisioning/groups/g/claim-tokens", {}, token=registry_write, status=201
    )
    assert created["createdBy"] == "registry-write"  # the token's name is its actor


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"uses": 0}, "uses"),
        ({"uses": 10_001}, "uses must be between 1 and 10000"),
        ({"expiresInSeconds": 0}, "expiresInSeconds"),
        ({"expiresInSeconds": 31 * 86400}, "at most 30 days"),
        ({"uses": "many"}, "uses"),
        ({"secret": "mine"}, "unknown field"),
    ],
)
async def test_claim_token_bounds(
    api: ProvisioningAPI, body: dict[str, Any], fragment: str
) -> None:
    await api.ok("POST", "/provisioning/groups", {"groupId": "g", "attestation": "symmetric"},
                 status=201)  # fmt: skip
    response = await api.request("POST", "/provisioning/groups/g/claim-tokens", body)
    assert fragment in assert_error(response, 400)


# --- registrations ------------------------------------------------------------------------------


async def test_registrations_list_filter_show_delete(api: ProvisioningAPI) -> None:
    await put_registration(api.hub, "r-1", "r-1", group=False, certificate_serial="0A")
    await put_registration(api.hub, "r-2", "fleet", group=True)
    await put_registration(api.hub, "r-3", "fleet", group=True, device_id="renamed")
    everything = await api.ok("GET", "/provisioning/registrations")
    assert [r["registrationId"] for r in everything["registrations"]] == ["r-1", "r-2", "r-3"]
    assert everything["nextAfter"] is None
    first = everything["registrations"][0]
    assert first == {
        "registrationId": "r-1",
        "enrollmentId": "r-1",
        "group": False,
        "deviceId": "r-1",
        "status": "assigned",
        "substatus": "initialAssignment",
        "version": 1,
        "createdAt": first["createdAt"],
        "updatedAt": first["updatedAt"],
        "errorCode": None,
        "errorMessage": None,
        "certificateSerial": "0A",
    }
    by_group = await api.ok("GET", "/provisioning/registrations?group=fleet")
    assert [r["registrationId"] for r in by_group["registrations"]] == ["r-2", "r-3"]
    by_enrollment = await api.ok("GET", "/provisioning/registrations?enrollment=r-1")
    assert [r["registrationId"] for r in by_enrollment["registrations"]] == ["r-1"]
    # "fleet" is a group, not an individual enrollment.
    none = await api.ok("GET", "/provisioning/registrations?enrollment=fleet")
    assert none["registrations"] == []
    paged = await api.ok("GET", "/provisioning/registrations?limit=2")
    assert paged["nextAfter"] == "r-2"
    message = assert_error(
        await api.request("GET", "/provisioning/registrations?enrollment=a&group=b"), 400
    )
    assert "at most one" in message
    shown = await api.ok("GET", "/provisioning/registrations/r-3")
    assert shown["deviceId"] == "renamed"
    assert (await api.request("DELETE", "/provisioning/registrations/r-3")).status == 204
    assert_error(await api.request("GET", "/provisioning/registrations/r-3"), 404)
    actions = [(r["action"], r["target"]) for r in await audit_bodies(api.hub)]
    assert ("registration-delete", "r-3") in actions


# --- issued certificates, revocation and the CRL ------------------------------------------------


async def test_revoke_a_certificate_and_the_crl_lists_it(api: ProvisioningAPI) -> None:
    await api.ok("POST", "/devices", {"device_id": "dev1", "auth": "x509-ca"}, status=201)
    serial = await issue_certificate(api.hub, "dev1")
    other = await issue_certificate(api.hub, "dev1")
    listed = await api.ok("GET", "/certificates?device=dev1")
    assert sorted(c["serial"] for c in listed["certificates"]) == sorted([serial, other])
    assert all("pem" not in c for c in listed["certificates"])
    shown = await api.ok("GET", f"/certificates/{serial}")
    certificate = x509.load_pem_x509_certificate(shown["pem"].encode())
    assert format(certificate.serial_number, "X") == serial
    assert shown["deviceId"] == "dev1"
    assert shown["revoked"] is False
    assert shown["thumbprint"] == certificate.fingerprint(hashes.SHA256()).hex().upper()
    # Serials are accepted in lower case and with colons, as printed by other tools.
    padded = serial.lower().zfill(len(serial) + len(serial) % 2)
    colons = ":".join(padded[i : i + 2] for i in range(0, len(padded), 2))
    assert (await api.ok("GET", f"/certificates/{colons}"))["serial"] == serial

    operator = await api.token_for("operator")
    revoked = await api.ok(
        "POST", f"/certificates/{serial}/revoke", {"reason": "keyCompromise"}, token=operator
    )
    assert revoked["revoked"] is True
    assert revoked["revocationReason"] == "keyCompromise"
    assert revoked["revokedAt"] is not None
    # Again: nothing changes, the first reason stays.
    again = await api.ok(
        "POST", f"/certificates/{serial}/revoke", {"reason": "superseded"}, token=operator
    )
    assert again == revoked

    ca = x509.load_pem_x509_certificate(
        (await api.request("GET", "/pki/device-ca", token=None)).body
    )
    crl = x509.load_der_x509_crl((await api.request("GET", "/pki/crl", token=None)).body)
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(int(other, 16)) is None

    only_revoked = await api.ok("GET", "/certificates?revoked=true")
    assert [c["serial"] for c in only_revoked["certificates"]] == [serial]
    unrevoked = await api.ok("GET", "/certificates?revoked=false")
    assert [c["serial"] for c in unrevoked["certificates"]] == [other]
    assert_error(await api.request("GET", "/certificates?revoked=yes"), 400, "invalid-query")
    actions = [(r["action"], r["target"]) for r in await audit_bodies(api.hub)]
    assert ("operator-request", "revokeCertificate") in actions
    assert ("certificate-revoke", serial) in actions


async def test_revoke_every_certificate_of_a_device(api: ProvisioningAPI) -> None:
    await api.ok("POST", "/devices", {"device_id": "dev2", "auth": "x509-ca"}, status=201)
    serials = {await issue_certificate(api.hub, "dev2") for _ in range(3)}
    keep = await issue_certificate(api.hub, "bystander")
    answer = await api.ok(
        "POST", "/devices/dev2/certificates/revoke", {"reason": "cessationOfOperation"}
    )
    assert set(answer["revoked"]) == serials
    assert (await api.ok("POST", "/devices/dev2/certificates/revoke", {})) == {"revoked": []}
    crl = x509.load_der_x509_crl((await api.request("GET", "/pki/crl", token=None)).body)
    assert {format(e.serial_number, "X") for e in crl} == serials
    assert (await api.ok("GET", f"/certificates/{keep}"))["revoked"] is False
    # A device deleted from the registry can still have its certificates revoked.
    await issue_certificate(api.hub, "gone")
    answer = await api.ok("POST", "/devices/gone/certificates/revoke", {})
    assert len(answer["revoked"]) == 1
    # A device that exists but holds no certificate: nothing to revoke, no error.
    await api.ok("POST", "/devices", {"device_id": "plain"}, status=201)
    assert (await api.ok("POST", "/devices/plain/certificates/revoke", {})) == {"revoked": []}
    actions = [(r["action"], r["target"]) for r in await audit_bodies(api.hub)]
    assert ("device-certificates-revoke", "dev2") in actions


async def test_revocation_refusals(api: ProvisioningAPI) -> None:
    serial = await issue_certificate(api.hub, "dev3")
    message = assert_error(
        await api.request("POST", f"/certificates/{serial}/revoke", {"reason": "boredom"}), 400
    )
    assert "keyCompromise" in message
    message = assert_error(
        await api.request("POST", f"/certificates/{serial}/revoke", {"reason": "certificateHold"}),
        400,
    )
    assert "holds are not supported" in message
    message = assert_error(await api.request("POST", "/certificates/XYZ/revoke", {}), 400)
    assert "hexadecimal" in message
    assert_error(await api.request("GET", "/certificates/not-hex"), 400)
    # The body is required (an empty object is fine), and JSON only.
    assert_error(await api.request("POST", f"/certificates/{serial}/revoke"), 415)
    assert_error(
        await api.request("POST", "/devices/dev3/certificates/revoke", {"reason": "nope"}), 400
    )
    assert_error(await api.request("POST", "/devices/a%20b/certificates/revoke", {}), 400)
    assert (await api.ok("GET", f"/certificates/{serial}"))["revoked"] is False


# --- the role matrix ----------------------------------------------------------------------------


async def test_roles_on_provisioning_routes(api: ProvisioningAPI) -> None:
    await api.ok("POST", "/provisioning/groups", {"groupId": "g", "attestation": "symmetric"},
                 status=201)  # fmt: skip
    serial = await issue_certificate(api.hub, "dev9")
    viewer = await api.token_for("viewer")
    operator = await api.token_for("operator")
    security = await api.token_for("security-admin")
    registry_write = await api.token_for("registry-write")
    reads = [
        "/provisioning",
        "/provisioning/enrollments",
        "/provisioning/groups",
        "/provisioning/groups/g",
        "/provisioning/claim-tokens",
        "/provisioning/registrations",
        "/certificates",
        f"/certificates/{serial}",
    ]
    for token in (viewer, operator, security):
        for path in reads:
            assert (await api.request("GET", path, token=token)).status == 200, path
    assert (await api.request("GET", "/certificates", token=registry_write)).status == 200

    create = {"registrationId": "r", "attestation": "symmetric"}
    for token in (viewer, operator, security):
        for method, path, body in (
            ("POST", "/provisioning/enrollments", create),
            ("POST", "/provisioning/groups/g/claim-tokens", {}),
            ("PATCH", "/provisioning/groups/g", {"enabled": False}),
            ("DELETE", "/provisioning/groups/g", None),
        ):
            message = assert_error(await api.request(method, path, body, token=token), 403)
            assert message == "permission 'provisioning:write' is required"
    message = assert_error(
        await api.request("POST", f"/certificates/{serial}/revoke", {}, token=viewer), 403
    )
    assert message == "permission 'certificates:revoke' is required"
    await api.ok("POST", "/provisioning/enrollments", create, token=registry_write, status=201)
    await api.ok("POST", f"/certificates/{serial}/revoke", {}, token=security)
    await api.ok("POST", "/devices/dev9/certificates/revoke", {}, token=operator)

    # A derived key is a device credential: keys:disclose, which neither role holds.
    body = {"registrationId": "dev-1"}
    for token in (viewer, operator, security):
        message = assert_error(
            await api.request("POST", "/provisioning/groups/g/device-key", body, token=token), 403
        )
        assert message == "permission 'keys:disclose' is required"
    await api.ok("POST", "/provisioning/groups/g/device-key", body)
    forbidden = [r for r in await audit_bodies(api.hub) if r["action"] == "operator-forbidden"]
    assert len(forbidden) == 12 + 1 + 3


async def test_every_route_needs_a_token_except_the_pki_documents(api: ProvisioningAPI) -> None:
    for method, path in (
        ("GET", "/provisioning"),
        ("GET", "/provisioning/enrollments"),
        ("POST", "/provisioning/groups"),
        ("GET", "/provisioning/claim-tokens"),
        ("GET", "/provisioning/registrations"),
        ("GET", "/certificates"),
        ("POST", "/devices/d/certificates/revoke"),
    ):
        assert_error(await api.request(method, path, token=None), 401, "unauthorized")
    for path in ("/pki/crl", "/pki/device-ca"):
        assert (await api.request("GET", path, token=None)).status == 200
