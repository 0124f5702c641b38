"""The ``ironhub`` CLI for provisioning: enrollments, groups, claim tokens, registrations,
certificates and the CRL.

A whole hub runs in-process (``hub`` fixture); each invocation runs through
``click.testing.CliRunner`` in a worker thread with the environment an operator sets
(``IRONHUB_API``, ``IRONHUB_TOKEN``, ``IRONHUB_CA``), so the hub keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

import click
import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from ironhub import pki
from ironhub.cli.main import cli
from ironhub.cli.provisioning import DurationType
from ironhub.storage.interfaces import RegistrationRecord

if TYPE_CHECKING:
    from pathlib import Path

    from ironhub.server import RunningHub

pytestmark = pytest.mark.asyncio

_CLEAR = ("IRONHUB_TOKEN_FILE", "IRONHUB_DATA", "IRONHUB_API", "IRONHUB_TOKEN", "IRONHUB_CA")


def _invoke(hub: RunningHub, args: tuple[str, ...], token: str | None) -> Result:
    environment: dict[str, str | None] = dict.fromkeys(_CLEAR)
    environment |= {
        "IRONHUB_API": hub.info.api_url,
        "IRONHUB_TOKEN": token,
        "IRONHUB_CA": str(hub.info.ca_path),
        # No stray session file of the machine running the tests.
        "IRONHUB_SESSION_FILE": "/nonexistent/ironhub-session",
    }
    return CliRunner().invoke(cli, list(args), env=environment, catch_exceptions=False)


async def run(hub: RunningHub, *args: str, token: Any = "admin") -> Result:
    """``ironhub ARGS`` against ``hub`` (as the first admin unless ``token`` says otherwise)."""
    secret = hub.info.first_admin_token if token == "admin" else token
    return await asyncio.to_thread(_invoke, hub, args, secret)


async def run_json(hub: RunningHub, *args: str, token: Any = "admin") -> Any:
    result = await run(hub, *args, "--json", token=token)
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


def self_signed_pem(device_id: str) -> str:
    _, cert = pki.create_self_signed_device_certificate(device_id, now=dt.datetime.now(dt.UTC))
    return pki.certificate_pem(cert).decode()


def ca_pem(name: str) -> str:
    _, cert = pki.create_ca(name, now=dt.datetime.now(dt.UTC))
    return pki.certificate_pem(cert).decode()


async def issue_certificate(hub: RunningHub, device_id: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    provisioning = hub.services.provisioning
    assert provisioning is not None
    issued = await provisioning.authority.issue(
        csr.public_bytes(Encoding.PEM).decode(), device_id=device_id, registration_id=device_id
    )
    return issued.record.serial


# --- provisioning info --------------------------------------------------------------------------


async def test_provisioning_info(hub: RunningHub) -> None:
    info = await run_json(hub, "provisioning", "info")
    assert info["idScope"].startswith("0ne")
    human = await run(hub, "provisioning", "info")
    assert human.exit_code == 0, human.stderr
    assert info["idScope"] in human.stdout
    assert "BEGIN CERTIFICATE" in human.stdout


# --- enrollments --------------------------------------------------------------------------------


async def test_symmetric_enrollment_round_trip(hub: RunningHub) -> None:
    created = await run_json(hub, "enrollment", "create", "sensor-1", "--attestation", "symmetric")
    keys = (created["primaryKey"], created["secondaryKey"])
    assert all(len(base64.b64decode(k)) == 32 for k in keys)
    assert created["enrollment"]["registrationId"] == "sensor-1"
    listed = await run_json(hub, "enrollment", "list")
    assert [e["registrationId"] for e in listed["enrollments"]] == ["sensor-1"]
    shown = await run_json(hub, "enrollment", "show", "sensor-1")
    assert shown == created["enrollment"]
    for command in (("enrollment", "list"), ("enrollment", "show", "sensor-1")):
        for args in (command, (*command, "--json")):
            result = await run(hub, *args)
            assert result.exit_code == 0, result.stderr
            assert not any(k in result.stdout for k in keys)
    disabled = await run_json(hub, "enrollment", "disable", "sensor-1")
    assert disabled["enrollment"]["enabled"] is False
    assert disabled["disabledDevices"] == []
    human = await run(hub, "enrollment", "enable", "sensor-1")
    assert human.exit_code == 0
    assert "is now enabled" in human.stdout
    table = await run(hub, "enrollment", "list")
    assert "sensor-1" in table.stdout
    assert "enabled" in table.stdout
    # Deleting asks first; without a terminal, --yes is required.
    refused = await run(hub, "enrollment", "delete", "sensor-1")
    assert_one_line_error(refused, 2, "--yes")
    assert await run_json(hub, "enrollment", "delete", "sensor-1", "--yes") == {
        "deleted": "sensor-1"
    }
    gone = await run(hub, "enrollment", "show", "sensor-1")
    assert_one_line_error(gone, 1, "enrollment 'sensor-1' does not exist")


async def test_keys_are_printed_once_with_a_warning(hub: RunningHub) -> None:
    result = await run(hub, "enrollment", "create", "s-2", "--attestation", "symmetric")
    assert result.exit_code == 0, result.stderr
    assert "Primary key:" in result.stdout
    assert "Secondary key:" in result.stdout
    assert "shown only once" in result.stdout
    result = await run(hub, "enrollment-group", "create", "fleet", "--attestation", "symmetric")
    assert result.exit_code == 0, result.stderr
    assert "shown only once" in result.stdout
    assert "compute-device-key fleet" in result.stdout


async def test_x509_enrollment_with_every_option(hub: RunningHub, tmp_path: Path) -> None:
    cert = tmp_path / "device.pem"
    cert.write_text(self_signed_pem("cam-7"))
    twin = tmp_path / "twin.json"
    twin.write_text(json.dumps({"tags": {"site": "north"}}))
    created = await run_json(
        hub,
        "enrollment",
        "create",
        "cam-7",
        "--attestation",
        "x509",
        "--cert",
        str(cert),
        "--device-id",
        "camera-seven",
        "--initial-twin",
        f"@{twin}",
        "--payload",
        '{"shelf": 3}',
        "--reprovision",
        "reset-twin",
        "--disabled",
    )
    assert "primaryKey" not in created
    e = created["enrollment"]
    assert e["deviceId"] == "camera-seven"
    assert e["initialTwin"]["tags"] == {"site": "north"}
    assert e["allocationPayload"] == {"shelf": 3}
    assert e["reprovision"] == "reset-twin"
    assert e["enabled"] is False
    shown = await run(hub, "enrollment", "show", "cam-7")
    assert "camera-seven" in shown.stdout
    assert "CN=cam-7" in shown.stdout
    assert "SHA-256" in shown.stdout
    result = await run(hub, "enrollment", "create", "cam-8", "--attestation", "x509")
    assert_one_line_error(result, 1, "one or two device certificates")


async def test_enrollment_usage_errors(hub: RunningHub, tmp_path: Path) -> None:
    assert_usage_error(await run(hub, "enrollment", "create", "x"), "--attestation")
    assert_usage_error(
        await run(hub, "enrollment", "create", "x", "--attestation", "tpm"), "--attestation"
    )
    result = await run(
        hub, "enrollment", "create", "x", "--attestation", "symmetric", "--payload", "{secret"
    )
    assert_usage_error(result, "not valid JSON")
    assert "{secret" not in result.stderr
    result = await run(
        hub, "enrollment", "create", "x", "--attestation", "symmetric", "--payload", "[1]"
    )
    assert_usage_error(result, "must be a JSON object")
    missing = tmp_path / "missing.json"
    result = await run(
        hub,
        "enrollment",
        "create",
        "x",
        "--attestation",
        "symmetric",
        "--initial-twin",
        f"@{missing}",
    )
    assert_usage_error(result, "cannot read")
    # Nothing was created by any of these.
    assert (await run_json(hub, "enrollment", "list"))["enrollments"] == []


# --- enrollment groups --------------------------------------------------------------------------


async def test_group_round_trip_and_device_keys(hub: RunningHub, tmp_path: Path) -> None:
    created = await run_json(
        hub, "enrollment-group", "create", "fleet", "--attestation", "symmetric"
    )
    key = await run_json(hub, "enrollment-group", "compute-device-key", "fleet", "dev-1")
    expected = base64.b64encode(
        hmac.new(base64.b64decode(created["primaryKey"]), b"dev-1", hashlib.sha256).digest()
    ).decode()
    assert key == {"registrationId": "dev-1", "deviceKey": expected}
    plain = await run(hub, "enrollment-group", "compute-device-key", "fleet", "dev-1")
    assert plain.stdout.strip() == expected
    ca = tmp_path / "ca.pem"
    ca.write_text(ca_pem("Plant CA"))
    x509_group = await run_json(
        hub, "enrollment-group", "create", "plant", "--attestation", "x509", "--ca", str(ca)
    )
    assert set(x509_group) == {"group"}
    listed = await run_json(hub, "enrollment-group", "list")
    assert [g["groupId"] for g in listed["groups"]] == ["fleet", "plant"]
    assert created["primaryKey"] not in json.dumps(listed)
    shown = await run(hub, "enrollment-group", "show", "plant")
    assert "CN=Plant CA" in shown.stdout
    assert (await run_json(hub, "enrollment-group", "disable", "plant"))["group"][
        "enabled"
    ] is False
    assert (await run_json(hub, "enrollment-group", "enable", "plant"))["group"]["enabled"] is True
    assert_one_line_error(
        await run(hub, "enrollment-group", "compute-device-key", "plant", "d"), 1, "x509"
    )
    # --ca names the group's CA here; the hub's own CA (the connection's) is refused.
    result = await run(
        hub,
        "enrollment-group",
        "create",
        "oops",
        "--attestation",
        "x509",
        "--ca",
        str(hub.info.ca_path),
    )
    assert_one_line_error(result, 2, "the hub's own CA")
    deleted = await run(hub, "enrollment-group", "delete", "plant", "--yes")
    assert deleted.exit_code == 0
    assert "Deleted enrollment group plant" in deleted.stdout


async def test_roles_reach_the_cli_as_exit_3(hub: RunningHub) -> None:
    created = await run_json(hub, "token", "create", "ops", "--role", "operator", "--days", "1")
    operator = created["token"]
    result = await run(
        hub, "enrollment", "create", "x", "--attestation", "symmetric", token=operator
    )
    assert_one_line_error(result, 3, "provisioning:write")
    await run_json(hub, "enrollment-group", "create", "g", "--attestation", "symmetric")
    result = await run(hub, "enrollment-group", "compute-device-key", "g", "d", token=operator)
    assert_one_line_error(result, 3, "keys:disclose")
    assert (await run_json(hub, "enrollment", "list", token=operator)) == {
        "enrollments": [],
        "nextAfter": None,
    }


# --- claim tokens -------------------------------------------------------------------------------


async def test_claim_token_round_trip(hub: RunningHub) -> None:
    await run_json(hub, "enrollment-group", "create", "g", "--attestation", "symmetric")
    created = await run_json(hub, "claim-token", "create", "g", "--uses", "3", "--expires", "7d")
    assert created["token"].startswith("ihc_")
    assert created["maxUses"] == 3
    assert created["expiresAt"] - created["createdAt"] == pytest.approx(7 * 86400)
    default = await run_json(hub, "claim-token", "create", "g")
    assert default["expiresAt"] - default["createdAt"] == pytest.approx(86400)
    human = await run(hub, "claim-token", "create", "g", "--expires", "30m")
    assert "shown once" in human.stdout
    listed = await run_json(hub, "claim-token", "list", "--group", "g")
    assert len(listed["claimTokens"]) == 3
    assert created["token"] not in json.dumps(listed)
    table = await run(hub, "claim-token", "list")
    assert created["tokenId"] in table.stdout
    assert created["token"] not in table.stdout
    assert "0/3" in table.stdout
    assert await run_json(hub, "claim-token", "revoke", created["tokenId"]) == {
        "revoked": created["tokenId"]
    }
    states = {t["tokenId"]: t["state"] for t in (await run_json(hub, "claim-token", "list"))[
        "claimTokens"
    ]}  # fmt: skip
    assert states[created["tokenId"]] == "revoked"
    assert_one_line_error(await run(hub, "claim-token", "revoke", "ct_nope"), 1, "does not exist")
    assert_one_line_error(
        await run(hub, "claim-token", "create", "g", "--expires", "31d"), 1, "at most 30 days"
    )


@pytest.mark.parametrize("text", ["7", "0d", "1w", "-5m", "h", "12 h", "99999999999d"])
async def test_bad_durations_are_usage_errors(hub: RunningHub, text: str) -> None:
    result = await run(hub, "claim-token", "create", "g", "--expires", text)
    assert_usage_error(result, "expected a duration like")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800)]
)
async def test_duration_parser(text: str, seconds: int) -> None:
    assert DurationType().convert(text, None, None) == seconds
    with pytest.raises(click.BadParameter):
        DurationType().convert(text.upper(), None, None)


# --- registrations ------------------------------------------------------------------------------


async def test_registration_round_trip(hub: RunningHub) -> None:
    now = hub.services.clock.time()
    for registration_id, group in (("r-1", False), ("r-2", True)):
        await hub.services.storage.put_registration(
            RegistrationRecord(
                registration_id=registration_id,
                enrollment_id="r-1" if not group else "fleet",
                group=group,
                device_id=registration_id,
                status="assigned",
                substatus="initialAssignment",
                created_at=now,
                updated_at=now,
            )
        )
    listed = await run_json(hub, "registration", "list")
    assert [r["registrationId"] for r in listed["registrations"]] == ["r-1", "r-2"]
    by_group = await run_json(hub, "registration", "list", "--group", "fleet")
    assert [r["registrationId"] for r in by_group["registrations"]] == ["r-2"]
    assert_usage_error(
        await run(hub, "registration", "list", "--group", "a", "--enrollment", "b"), "at most one"
    )
    table = await run(hub, "registration", "list")
    assert "group fleet" in table.stdout
    shown = await run(hub, "registration", "show", "r-2")
    assert "Enrollment group: fleet" in shown.stdout
    assert (await run_json(hub, "registration", "show", "r-1"))["enrollmentId"] == "r-1"
    assert await run_json(hub, "registration", "delete", "r-1", "--yes") == {"deleted": "r-1"}
    assert_one_line_error(await run(hub, "registration", "show", "r-1"), 1, "does not exist")


# --- certificates and the CRL -------------------------------------------------------------------


async def test_certificate_commands_and_the_crl(hub: RunningHub, tmp_path: Path) -> None:
    await run_json(hub, "device", "create", "dev1", "--auth", "x509-ca")
    first = await issue_certificate(hub, "dev1")
    second = await issue_certificate(hub, "dev1")
    other = await issue_certificate(hub, "dev2")
    listed = await run_json(hub, "cert", "list", "--device", "dev1")
    assert sorted(c["serial"] for c in listed["certificates"]) == sorted([first, second])
    shown = await run_json(hub, "cert", "show", first)
    assert shown["pem"].startswith("-----BEGIN CERTIFICATE-----")
    human = await run(hub, "cert", "show", first)
    assert "valid" in human.stdout
    assert "BEGIN CERTIFICATE" in human.stdout

    revoked = await run_json(hub, "cert", "revoke", first, "--reason", "keycompromise")
    assert revoked["revocationReason"] == "keyCompromise"
    assert_usage_error(await run(hub, "cert", "revoke", first, "--reason", "boredom"), "--reason")
    rest = await run_json(hub, "cert", "revoke-device", "dev1", "--reason", "superseded")
    assert rest == {"revoked": [second]}
    nothing = await run(hub, "cert", "revoke-device", "dev1")
    assert "no unrevoked certificate" in nothing.stdout
    assert_one_line_error(await run(hub, "cert", "revoke-device", "ghost"), 1, "no device")
    only_revoked = await run_json(hub, "cert", "list", "--revoked")
    assert sorted(c["serial"] for c in only_revoked["certificates"]) == sorted([first, second])
    table = await run(hub, "cert", "list")
    assert "revoked (keyCompromise)" in table.stdout
    assert other in table.stdout

    # The CRL needs no token at all.
    summary = await run_json(hub, "crl", token=None)
    assert summary["format"] == "der"
    assert summary["path"] is None
    assert summary["number"] >= 1
    reasons = {r["serial"]: r["reason"] for r in summary["revoked"]}
    assert reasons == {first: "keyCompromise", second: "superseded"}
    der_file = tmp_path / "crl.der"
    written = await run(hub, "crl", "--out", str(der_file), token=None)
    assert written.exit_code == 0, written.stderr
    assert "2 revoked" in written.stdout
    crl = x509.load_der_x509_crl(der_file.read_bytes())
    ca = x509.load_pem_x509_certificate(
        (await run_json(hub, "provisioning", "info"))["deviceCaPem"].encode()
    )
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    pem_file = tmp_path / "crl.pem"
    await run_json(hub, "crl", "--pem", "--out", str(pem_file), token=None)
    assert x509.load_pem_x509_crl(pem_file.read_bytes()) == crl
    printed = await run(hub, "crl", "--pem", token=None)
    assert x509.load_pem_x509_crl(printed.stdout.encode()) == crl
    human = await run(hub, "crl", token=None)
    assert first in human.stdout
    assert "keyCompromise" in human.stdout


# --- human output of the remaining paths --------------------------------------------------------


async def test_empty_listings_say_so(hub: RunningHub) -> None:
    for args, text in (
        (("enrollment", "list"), "No enrollments."),
        (("enrollment-group", "list"), "No enrollment groups."),
        (("claim-token", "list"), "No claim tokens."),
        (("registration", "list"), "No registrations."),
        (("cert", "list", "--device", "nobody"), "No certificates."),
    ):
        result = await run(hub, *args)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == text
    human = await run(hub, "crl", token=None)
    assert "Revoked:" in human.stdout
    assert "SERIAL" not in human.stdout
    summary = await run_json(hub, "crl", "--pem", token=None)
    assert summary["revoked"] == []
    assert (
        x509.load_pem_x509_crl(summary["pem"].encode()).issuer.rfc4514_string()
        == (summary["issuer"])
    )
    assert_one_line_error(await run(hub, "enrollment", "show", ""), 2, "the id is empty")
    assert_one_line_error(await run(hub, "claim-token", "revoke", ""), 2, "token id is empty")


async def test_human_output_of_changes(hub: RunningHub, tmp_path: Path) -> None:
    await run_json(hub, "enrollment-group", "create", "g", "--attestation", "symmetric")
    await run_json(hub, "device", "create", "d1")
    now = hub.services.clock.time()
    await hub.services.storage.put_registration(
        RegistrationRecord(
            registration_id="d1",
            enrollment_id="g",
            group=True,
            device_id="d1",
            status="assigned",
            substatus="initialAssignment",
            created_at=now,
            updated_at=now,
            certificate_serial="1F",
        )
    )
    await hub.services.storage.put_registration(
        RegistrationRecord(
            registration_id="d9",
            enrollment_id="g",
            group=True,
            device_id="d9",
            status="failed",
            substatus="initialAssignment",
            created_at=now,
            updated_at=now,
            error_code=409201,
            error_message="device 'd9' exists and was not provisioned by this service",
        )
    )
    disabled = await run(hub, "enrollment-group", "disable", "g")
    assert "Disabled 1 device(s) it provisioned: d1" in disabled.stdout
    enabled = await run(hub, "enrollment-group", "enable", "g")
    assert "stay disabled" in enabled.stdout
    table = await run(hub, "enrollment-group", "list")
    assert "GROUP" in table.stdout
    assert "symmetric" in table.stdout
    shown = await run(hub, "registration", "show", "d1")
    assert "Certificate serial: 1F" in shown.stdout
    failed = await run(hub, "registration", "show", "d9")
    assert "409201 device 'd9' exists" in failed.stdout
    forgot = await run(hub, "registration", "delete", "d9", "--yes")
    assert "Forgot registration d9." in forgot.stdout
    created = await run_json(hub, "claim-token", "create", "g")
    revoked = await run(hub, "claim-token", "revoke", created["tokenId"])
    assert f"Revoked claim token {created['tokenId']}." in revoked.stdout
    ca = tmp_path / "ca.pem"
    ca.write_text(ca_pem("Line CA"))
    x509_group = await run(
        hub, "enrollment-group", "create", "line", "--attestation", "x509", "--ca", str(ca)
    )
    assert "Created enrollment group line (x509, enabled)." in x509_group.stdout
    assert "shown only once" not in x509_group.stdout


async def test_human_output_of_revocations(hub: RunningHub) -> None:
    serial = await issue_certificate(hub, "dev5")
    more = {await issue_certificate(hub, "dev5") for _ in range(2)}
    revoked = await run(hub, "cert", "revoke", serial)
    assert f"Certificate {serial} of device dev5 is revoked (unspecified)." in revoked.stdout
    shown = await run(hub, "cert", "show", serial)
    assert "revoked (unspecified)" in shown.stdout
    assert "Revoked (UTC):" in shown.stdout
    device = await run(hub, "cert", "revoke-device", "dev5")
    assert "Revoked 2 certificate(s) of device dev5:" in device.stdout
    assert all(s in device.stdout for s in more)
    # No reason code in the CRL means "unspecified" (RFC 5280 §5.3.1).
    summary = await run_json(hub, "crl", token=None)
    assert {r["reason"] for r in summary["revoked"]} == {"unspecified"}


async def test_group_ca_and_the_connection_ca(hub: RunningHub, tmp_path: Path) -> None:
    # Without IRONHUB_CA and without a data directory holding ca.pem, the connection falls back
    # to the system trust store, which does not know the hub: a TLS error, after the checks.
    ca = tmp_path / "ca.pem"
    ca.write_text(ca_pem("Dock CA"))
    environment: dict[str, str | None] = dict.fromkeys(_CLEAR)
    environment |= {"IRONHUB_API": hub.info.api_url, "IRONHUB_TOKEN": hub.info.first_admin_token}
    args = ["enrollment-group", "create", "dock", "--attestation", "x509", "--ca", str(ca),
            "--data", str(tmp_path / "none")]  # fmt: skip
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, args, env=environment, catch_exceptions=False
    )
    assert_one_line_error(result, 1, "TLS verification")
    # With the hub's data directory, its ca.pem is the connection's CA.
    args[-1] = str(hub.info.ca_path.parent)
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, args, env=environment, catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr


async def test_duration_accepts_an_already_converted_value() -> None:
    assert DurationType().convert(600, None, None) == 600
