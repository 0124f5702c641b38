"""Operator access over the live API: roles on every permission, escalation, logins, tokens.

A whole hub runs in-process on a :class:`~ironhub.clock.FakeClock` (wall time starts now, so
that the TLS certificates are valid), with small lockout values from ``IRONHUB_ACCESS_*``.
Requests are blocking HTTPS calls run in worker threads, from 127.0.0.1 unless a test picks
another loopback source address (127.0.1.1 is another /24: a "new source").
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import ssl
import stat
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyotp
import pytest
import pytest_asyncio
from click.testing import CliRunner

from ironhub.access.roles import ROLE_PERMISSIONS, Permission, Role
from ironhub.cli.main import cli
from ironhub.clock import FakeClock
from ironhub.config import load_config
from ironhub.server import RunningHub, start_hub
from ironhub.storage.interfaces import Stream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.asyncio

P = Permission
DAY = 86400.0
UNAUTHORIZED = "a valid bearer token is required (missing, malformed, unknown, expired or revoked)"
LOGIN_REFUSED = "the name, password or code is wrong"
GOOD_PASSWORD = "violet tractor harbour 42"
OTHER_PASSWORD = "quiet lantern meadow 77"


@dataclass
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def message(self) -> str:
        return str(self.json()["error"]["message"])


@dataclass
class AccessHub:
    hub: RunningHub
    clock: FakeClock
    admin_token: str
    admin_password: str

    def _request(self, method: str, path: str, body: Any, token: str | None, source: str) -> Answer:
        url = urllib.parse.urlsplit(self.hub.info.api_url)
        context = ssl.create_default_context(cafile=str(self.hub.info.ca_path))
        conn = http.client.HTTPSConnection(
            url.hostname or "127.0.0.1",
            url.port,
            timeout=30,
            context=context,
            source_address=(source, 0),
        )
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return Answer(response.status, response.read())
        finally:
            conn.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None,
        source: str = "127.0.0.1",
    ) -> Answer:
        return await asyncio.to_thread(self._request, method, path, body, token, source)

    async def ok(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None,
        status: int = 200,
        source: str = "127.0.0.1",
    ) -> Any:
        answer = await self.request(method, path, body, token=token, source=source)
        assert answer.status == status, (method, path, answer.status, answer.body[:300])
        return answer.json()

    async def login(
        self, name: str, password: str, totp: str | None = None, *, source: str = "127.0.0.1"
    ) -> Answer:
        body: dict[str, Any] = {"name": name, "password": password}
        if totp is not None:
            body["totp"] = totp
        return await self.request("POST", "/login", body, token=None, source=source)

    async def token_for(self, *roles: str) -> str:
        created = await self.ok(
            "POST",
            "/tokens",
            {"name": "-".join(roles), "roles": list(roles), "ttl_days": 30},
            token=self.admin_token,
            status=201,
        )
        return str(created["token"])

    async def security_events(self, event: str) -> list[dict[str, str]]:
        messages = await self.hub.services.log.query(stream=Stream.SECURITY, limit=5000)
        events = [dict(m.properties) for m in messages]
        return [e for e in events if e.get("event") == event]

    async def audit_export(self) -> bytes:
        answer = await self.request("GET", "/audit/export", token=self.admin_token)
        assert answer.status == 200
        return answer.body

    async def audit_records(self) -> list[dict[str, Any]]:
        records = []
        for line in (await self.audit_export()).splitlines():
            entry = json.loads(line)
            if "record" in entry:
                records.append(entry["record"])
        return records


ENV = {
    "IRONHUB_ACCESS_LOCKOUT_FAILURES_PER_ACCOUNT": "3",
    "IRONHUB_ACCESS_LOCKOUT_FAILURES_PER_SOURCE": "50",
    "IRONHUB_ACCESS_LOCKOUT_WINDOW_SECONDS": "60",
    "IRONHUB_ACCESS_LOCKOUT_SECONDS": "120",
}


@pytest_asyncio.fixture
async def access(tmp_path: Path) -> AsyncIterator[AccessHub]:
    clock = FakeClock(wall=time.time(), mono=time.monotonic())
    config = load_config(
        tmp_path / "data",
        environ=ENV,
        mqtt_bind="127.0.0.1:0",
        api_bind="127.0.0.1:0",
    )
    hub = await start_hub(config, clock=clock)
    try:
        token = hub.info.first_admin_token
        password = hub.info.first_admin_password
        assert token is not None
        assert password is not None
        yield AccessHub(hub, clock, token, password)
    finally:
        await hub.stop()


async def rotated_admin(access: AccessHub) -> str:
    """Log in as ``admin`` with the one-time password, change it; a fresh full session."""
    first = await access.login("admin", access.admin_password)
    assert first.status == 201, first.body
    session = first.json()["token"]
    await access.ok(
        "POST",
        "/operators/me/password",
        {"old_password": access.admin_password, "new_password": GOOD_PASSWORD},
        token=session,
    )
    again = await access.login("admin", GOOD_PASSWORD)
    assert again.status == 201
    assert again.json()["must_rotate"] is False
    return str(again.json()["token"])


# --- the role matrix ----------------------------------------------------------------------------

# One representative route per permission: (method, path, body). Allowed means "not 401/403"
# (the route may still refuse the request itself: an offline device, a malformed CA).
REPRESENTATIVE: dict[Permission, tuple[str, str, Any]] = {
    P.DEVICES_READ: ("GET", "/devices", None),
    P.DEVICES_WRITE: ("POST", "/devices/dev1/modules", {"module_id": "m-{role}"}),
    P.DEVICES_STATE: ("POST", "/devices/dev1/enable", None),
    P.KEYS_DISCLOSE: ("GET", "/devices/dev1/connection-string", None),
    P.TWINS_READ: ("GET", "/devices/dev1/twin", None),
    P.TWINS_WRITE: ("PATCH", "/devices/dev1/twin", {"desired": {"a": 1}}),
    P.METHODS_INVOKE: ("POST", "/devices/dev1/methods/reboot", {}),
    P.C2D_SEND: ("POST", "/devices/dev1/messages/cloud", {"body": "x"}),
    P.MESSAGES_READ: ("GET", "/messages", None),
    P.CAS_READ: ("GET", "/cas", None),
    P.CAS_MANAGE: ("POST", "/cas", {"pem": "not a certificate"}),
    P.AUDIT_READ: ("GET", "/audit/public-key", None),
    P.AUDIT_EXPORT: ("GET", "/audit/export", None),
    P.OPERATORS_MANAGE: ("GET", "/operators", None),
    P.TOKENS_MANAGE: ("GET", "/tokens", None),
    P.METRICS_READ: ("GET", "/metrics", None),
    P.PROVISIONING_READ: ("GET", "/provisioning/enrollments", None),
    P.PROVISIONING_WRITE: ("DELETE", "/provisioning/claim-tokens/ct_none", None),
    P.CERTIFICATES_REVOKE: ("POST", "/certificates/ABC/revoke", {}),
    P.ALERTS_READ: ("GET", "/alerts", None),
    P.ALERTS_MANAGE: ("POST", "/alerts/al_none/ack", {}),
    P.POSTURE_READ: ("GET", "/profiles", None),
    P.POSTURE_MANAGE: ("DELETE", "/profiles/none", None),
    P.ACCOUNT_SELF: ("POST", "/logout", None),
}
HUMAN_ROLES = (Role.VIEWER, Role.OPERATOR, Role.SECURITY_ADMIN, Role.ADMIN)


async def test_every_role_gets_exactly_its_permissions_over_the_api(access: AccessHub) -> None:
    await access.ok("POST", "/devices", {"device_id": "dev1"}, token=access.admin_token, status=201)
    refused = 0
    for role in HUMAN_ROLES:
        token = await access.token_for(role.value)
        for permission, (method, path, body) in REPRESENTATIVE.items():
            if permission is P.ACCOUNT_SELF:
                continue  # an automation token has no account: checked below
            payload = body
            if isinstance(body, dict) and "module_id" in body:
                payload = {"module_id": f"m-{role.value.replace('-', '')}"}
            answer = await access.request(method, path, payload, token=token)
            if permission in ROLE_PERMISSIONS[role]:
                assert answer.status not in (401, 403), (role, permission, answer.body[:200])
            else:
                refused += 1
                assert answer.status == 403, (role, permission, answer.status)
                assert answer.message == f"permission {permission.value!r} is required"
        # The routes for one's own account need an operator session.
        answer = await access.request("POST", "/logout", token=token)
        assert answer.status == 403
        assert "operator session" in answer.message
        refused += 1
    forbidden = await access.security_events("operator-forbidden")
    assert len(forbidden) == refused
    audited = [r for r in await access.audit_records() if r["action"] == "operator-forbidden"]
    assert len(audited) == refused
    assert {r["outcome"] for r in audited} == {"refused"}


async def test_every_permission_has_a_representative_route() -> None:
    # service:connect and device:connect are for the device-facing and service endpoints.
    assert set(Permission) - set(REPRESENTATIVE) == {P.SERVICE_CONNECT, P.DEVICE_CONNECT}


# --- escalation, revoked, expired, forged -------------------------------------------------------


async def test_privilege_escalation_is_refused_and_recorded(access: AccessHub) -> None:
    security = await access.token_for("security-admin")
    viewer = await access.token_for("viewer")
    # A token cannot hand out more than it holds.
    for roles in (["admin"], ["operator"], ["viewer", "registry-write"]):
        answer = await access.request(
            "POST", "/tokens", {"name": "x", "roles": roles}, token=security
        )
        assert answer.status == 403, roles
        assert answer.message.startswith("granting role")
    await access.ok(
        "POST", "/tokens", {"name": "ok", "roles": ["viewer"]}, token=security, status=201
    )
    assert (await access.request("POST", "/tokens", {"name": "x", "roles": ["viewer"]},
                                 token=viewer)).status == 403  # fmt: skip
    answer = await access.request(
        "POST", "/operators", {"name": "eve", "roles": ["admin"]}, token=security
    )
    assert answer.status == 403
    # Nor weaken an account above it: the admin's MFA and account are out of its reach.
    for action in ("reset-mfa", "disable"):
        answer = await access.request("POST", f"/operators/admin/{action}", token=security)
        assert answer.status == 403, action
    # A longer lifetime than the cap is refused.
    answer = await access.request(
        "POST",
        "/tokens",
        {"name": "x", "roles": ["viewer"], "ttl_days": 91},
        token=access.admin_token,
    )
    assert answer.status == 400
    forbidden = await access.security_events("operator-forbidden")
    assert len(forbidden) == 7
    assert all(e["reason"] for e in forbidden)


async def test_revoked_expired_and_forged_tokens_get_401(access: AccessHub) -> None:
    created = await access.ok(
        "POST",
        "/tokens",
        {"name": "short", "roles": ["viewer"], "ttl_days": 1},
        token=access.admin_token,
        status=201,
    )
    short = created["token"]
    doomed = await access.token_for("viewer")
    listed = await access.ok("GET", "/tokens", token=access.admin_token)
    doomed_id = next(t["token_id"] for t in listed["tokens"] if t["name"] == "viewer" and
                     not t["revoked"])  # fmt: skip
    assert "token_hash" not in json.dumps(listed)
    assert doomed not in json.dumps(listed)
    await access.ok("DELETE", f"/tokens/{doomed_id}", token=access.admin_token)
    forged = "ihk_" + "A" * 43
    assert (await access.request("GET", "/devices", token=short)).status == 200
    access.clock.advance(DAY)
    for token in (short, doomed, forged, "not-a-token"):
        answer = await access.request("GET", "/devices", token=token)
        assert answer.status == 401
        assert answer.message == UNAUTHORIZED
    reasons = [e["reason"] for e in await access.security_events("operator-auth-failed")]
    assert reasons == ["expired", "revoked", "unknown", "malformed"]


# --- logins -------------------------------------------------------------------------------------


async def test_one_time_password_forces_rotation_then_mfa_then_replay_refused(
    access: AccessHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first = await access.login("admin", access.admin_password)
    assert first.status == 201
    session = first.json()
    assert session["must_rotate"] is True
    assert session["operator"] == "admin"
    # Nothing else works before the password is changed.
    for method, path in (("GET", "/devices"), ("POST", "/operators/me/mfa"), ("GET", "/tokens")):
        answer = await access.request(method, path, token=session["token"])
        assert answer.status == 403, path
        assert answer.message == "password change required"
    # The policy applies to the new password, and the old one is required.
    weak = await access.request(
        "POST",
        "/operators/me/password",
        {"old_password": access.admin_password, "new_password": "password123"},
        token=session["token"],
    )
    assert weak.status == 400
    wrong = await access.request(
        "POST",
        "/operators/me/password",
        {"old_password": "not it at all", "new_password": GOOD_PASSWORD},
        token=session["token"],
    )
    assert wrong.status == 401
    await access.ok(
        "POST",
        "/operators/me/password",
        {"old_password": access.admin_password, "new_password": GOOD_PASSWORD},
        token=session["token"],
    )
    # The change ended the session; the one-time password is gone.
    assert (await access.request("GET", "/devices", token=session["token"])).status == 401
    assert (await access.login("admin", access.admin_password)).status == 401
    full = (await access.login("admin", GOOD_PASSWORD)).json()
    assert full["must_rotate"] is False
    token = full["token"]
    assert (await access.request("GET", "/devices", token=token)).status == 200

    # MFA: enrol, confirm with a first code, then every login needs a fresh code.
    enrolment = await access.ok("POST", "/operators/me/mfa", token=token, status=201)
    secret = enrolment["secret"]
    assert enrolment["uri"].startswith("otpauth://totp/")
    totp = pyotp.TOTP(secret)
    bad = await access.request("POST", "/operators/me/mfa/confirm", {"totp": "000000"}, token=token)
    assert bad.status == 400 or totp.at(access.clock.time()) == "000000"
    await access.ok(
        "POST", "/operators/me/mfa/confirm", {"totp": totp.at(access.clock.time())}, token=token
    )
    assert (await access.request("POST", "/operators/me/mfa", token=token)).status == 409
    access.clock.advance(30)
    assert (await access.login("admin", GOOD_PASSWORD)).status == 401  # no code
    code = totp.at(access.clock.time())
    with_code = await access.login("admin", GOOD_PASSWORD, code)
    assert with_code.status == 201
    replay = await access.login("admin", GOOD_PASSWORD, code)
    assert replay.status == 401
    assert replay.message == LOGIN_REFUSED
    access.clock.advance(30)
    assert (await access.login("admin", GOOD_PASSWORD, totp.at(access.clock.time()))).status == 201

    records = await access.audit_records()
    logins = [(r["outcome"], r["reason"]) for r in records if r["action"] == "login"]
    assert ("ok", "must-rotate") in logins
    assert ("refused", "totp-replayed") in logins
    assert ("refused", "totp-malformed") in logins
    assert ("refused", "bad-password") in logins
    # No secret anywhere: not in the audit log, not in the logs.
    export = await access.audit_export()
    logs = caplog.text
    for secret_text in (
        access.admin_password,
        GOOD_PASSWORD,
        secret,
        token,
        session["token"],
        access.admin_token,
    ):
        assert secret_text.encode() not in export
        assert secret_text not in logs
    # Nor in what the API shows about accounts.
    listed = await access.ok("GET", "/operators", token=with_code.json()["token"])
    assert listed["operators"][0]["mfa"] is True
    assert secret not in json.dumps(listed)
    assert "$argon2" not in json.dumps(listed)


async def test_expired_password_forces_rotation(access: AccessHub) -> None:
    await rotated_admin(access)
    access.clock.advance(90 * DAY)
    session = (await access.login("admin", GOOD_PASSWORD)).json()
    assert session["must_rotate"] is True
    answer = await access.request("GET", "/operators", token=session["token"])
    assert answer.status == 403
    assert answer.message == "password change required"
    # The last passwords cannot come back.
    reuse = await access.request(
        "POST",
        "/operators/me/password",
        {"old_password": GOOD_PASSWORD, "new_password": access.admin_password},
        token=session["token"],
    )
    assert reuse.status == 400
    assert "differ from the last" in reuse.message
    await access.ok(
        "POST",
        "/operators/me/password",
        {"old_password": GOOD_PASSWORD, "new_password": OTHER_PASSWORD},
        token=session["token"],
    )
    assert (await access.login("admin", OTHER_PASSWORD)).json()["must_rotate"] is False


async def test_lockout_engages_at_the_limit_and_releases_after_the_lockout(
    access: AccessHub,
) -> None:
    await rotated_admin(access)
    for _ in range(3):
        assert (await access.login("admin", "wrong password here")).status == 401
    locked = await access.login("admin", GOOD_PASSWORD)
    assert locked.status == 429
    assert "locked" in locked.message
    # An unknown account behaves the same: same answer, same lock.
    for _ in range(3):
        answer = await access.login("nobody", "wrong password here")
        assert answer.status == 401
        assert answer.message == LOGIN_REFUSED
    assert (await access.login("nobody", "wrong password here")).status == 429
    access.clock.advance(119)
    assert (await access.login("admin", GOOD_PASSWORD)).status == 429
    access.clock.advance(2)
    assert (await access.login("admin", GOOD_PASSWORD)).status == 201
    records = await access.audit_records()
    lockouts = [r for r in records if r["action"] == "login-lockout"]
    assert [r["actor"] for r in lockouts] == ["admin", "(unknown)"]
    # The name tried for a missing account is never recorded (it may be a mistyped password).
    assert not any("nobody" in json.dumps(r) for r in records)


async def test_disabled_account_and_allow_list(access: AccessHub) -> None:
    admin = await rotated_admin(access)
    created = await access.ok(
        "POST",
        "/operators",
        {"name": "bob", "roles": ["viewer"], "allow_list": ["10.0.0.0/8"]},
        token=admin,
        status=201,
    )
    assert created["operator"]["one_time_password"] is True
    password = created["password"]
    # Not from an address outside the allow-list, even with the right password.
    assert (await access.login("bob", password)).status == 401
    bob2 = await access.ok(
        "POST", "/operators", {"name": "bob2", "roles": ["viewer"]}, token=admin, status=201
    )
    first = await access.login("bob2", bob2["password"])
    assert first.status == 201
    await access.ok("POST", "/operators/bob2/disable", token=admin)
    assert (await access.request("GET", "/devices", token=first.json()["token"])).status == 401
    assert (await access.login("bob2", bob2["password"])).status == 401
    reasons = [r["reason"] for r in await access.audit_records() if r["action"] == "login"]
    assert "source-not-allowed" in reasons
    assert "disabled" in reasons


async def test_a_new_source_network_is_a_security_event(access: AccessHub) -> None:
    await rotated_admin(access)
    assert await access.security_events("login-new-source") == []
    moved = await access.login("admin", GOOD_PASSWORD, source="127.0.1.1")
    assert moved.status == 201
    events = await access.security_events("login-new-source")
    assert [e["actor"] for e in events] == ["admin"]
    assert events[0]["peer"].startswith("127.0.1.1:")
    records = [r for r in await access.audit_records() if r["action"] == "login-new-source"]
    assert [r["source"] for r in records] == ["127.0.1.1"]
    # Known from now on.
    assert (await access.login("admin", GOOD_PASSWORD, source="127.0.1.1")).status == 201
    assert len(await access.security_events("login-new-source")) == 1


# --- the CLI ------------------------------------------------------------------------------------


async def test_cli_login_tokens_operators_logout(access: AccessHub, tmp_path: Path) -> None:
    runner = CliRunner()
    session = tmp_path / "cfg" / "session"
    env = {
        "IRONHUB_API": access.hub.info.api_url,
        "IRONHUB_CA": str(access.hub.info.ca_path),
        "IRONHUB_SESSION_FILE": str(session),
        "IRONHUB_TOKEN": "",
        "IRONHUB_TOKEN_FILE": "",
        "IRONHUB_PASSWORD": access.admin_password,
        "IRONHUB_NEW_PASSWORD": GOOD_PASSWORD,
    }

    async def run(*args: str, **extra: str) -> Any:
        return await asyncio.to_thread(
            runner.invoke, cli, list(args), env={**env, **extra}, catch_exceptions=False
        )

    result = await run("login", "--name", "admin", "--json")
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    assert json.loads(result.output)["must_rotate"] is True
    assert "ihk_" not in result.output
    refused = await run("token", "list")
    assert refused.exit_code == 3
    assert "password change required" in refused.output
    assert (await run("operator", "rotate-password")).exit_code == 0
    assert not session.exists()
    result = await run("login", "--name", "admin", "--json", IRONHUB_PASSWORD=GOOD_PASSWORD)
    assert result.exit_code == 0, result.output

    created = await run("token", "create", "ci", "--role", "viewer", "--days", "7", "--json")
    assert created.exit_code == 0, created.output
    info = json.loads(created.output)
    assert info["token"].startswith("ihk_")
    assert info["info"]["roles"] == ["viewer"]
    assert info["info"]["operator"] == "admin"
    assert info["info"]["kind"] == "automation"
    listed = json.loads((await run("token", "list", "--json")).output)
    kinds = {t["name"]: t["kind"] for t in listed["tokens"]}
    assert kinds["ci"] == "automation"
    assert kinds["session:admin"] == "session"
    assert info["token"] not in json.dumps(listed)
    assert (await run("token", "revoke", info["info"]["token_id"])).exit_code == 0
    table = await run("token", "list")
    assert "revoked" in table.output

    added = await run("operator", "add", "carol", "--role", "operator", "--json")
    assert added.exit_code == 0, added.output
    assert len(json.loads(added.output)["password"]) >= 20
    listed_ops = await run("operator", "list")
    assert "carol" in listed_ops.output
    assert "one-time" in listed_ops.output
    assert (await run("operator", "reset-mfa", "carol")).exit_code == 0
    assert (await run("operator", "disable", "carol", "--json")).exit_code == 0
    assert json.loads((await run("operator", "list", "--json")).output)["operators"][1]["disabled"]
    human = await run("operator", "add", "dave", "--role", "viewer")
    assert human.exit_code == 0, human.output
    assert "One-time password" in human.output
    human = await run("token", "create", "ci2", "--role", "viewer")
    assert human.exit_code == 0, human.output
    assert "ihk_" in human.output
    assert "Disabled operator dave" in (await run("operator", "disable", "dave")).output
    assert "MFA reset" in (await run("operator", "reset-mfa", "dave")).output
    enrol = await run("operator", "mfa-enrol", "--json")
    assert enrol.exit_code == 0, enrol.output
    code = pyotp.TOTP(json.loads(enrol.output)["secret"]).at(access.clock.time())
    confirmed = await run("operator", "mfa-confirm", code)
    assert confirmed.exit_code == 0, confirmed.output
    assert "MFA enabled" in confirmed.output
    wrong = await run("login", "--name", "admin", IRONHUB_PASSWORD="not the password")
    assert wrong.exit_code == 3
    assert "login refused" in wrong.output
    access.clock.advance(30)
    again = await run(
        "login",
        "--name",
        "admin",
        "--totp",
        pyotp.TOTP(json.loads(enrol.output)["secret"]).at(access.clock.time()),
        IRONHUB_PASSWORD=GOOD_PASSWORD,
    )
    assert again.exit_code == 0, again.output
    assert "Logged in as admin" in again.output
    escalate = await run("token", "create", "x", "--role", "superuser")
    assert escalate.exit_code == 1
    assert (await run("logout")).exit_code == 0
    assert not session.exists()
    assert (await run("token", "list")).exit_code == 3
