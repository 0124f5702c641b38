"""The operator side of device provisioning, in the CLI.

Commands: ``ironhub provisioning info``, ``enrollment``, ``enrollment-group``, ``claim-token``,
``registration``, ``cert`` and ``crl``.

Entry points only: the rules are the hub's (:mod:`ironhub.provisioning`), the HTTP calls
:class:`~ironhub.cli.client.HubClient`'s. Secrets (a symmetric enrollment's or group's keys,
a derived device key, a claim token) are printed once, by the command that creates them, with
a reminder that they cannot be shown again; listings never carry them.

``ironhub crl`` needs no token: the CRL is public (relying parties fetch it without an
account), but it still takes ``--api`` and ``--ca`` to reach the hub over verified TLS.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import os
import re
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from rich.text import Text

from ironhub.cli.access import _public_client_options
from ironhub.cli.client import APIError, ClientUsageError
from ironhub.cli.main import (
    _JSON_OBJECT,
    Output,
    _client_options,
    _confirm,
    _data_option,
    _errors,
    _json_option,
    _make_client,
    _read_text_file,
    _when,
    api_option,
    cli,
    safe,
    with_options,
)
from ironhub.pki import REVOCATION_REASONS

if TYPE_CHECKING:
    from collections.abc import Callable

    from ironhub.cli.client import HubClient

__all__ = [
    "DurationType",
    "JSONOrFileType",
    "cert",
    "claim_token",
    "crl",
    "enrollment",
    "enrollment_group",
    "provisioning",
    "registration",
]

_ATTESTATIONS = ("symmetric", "x509")
_REPROVISION = ("keep-twin", "reset-twin")
_PAGE = 1000
_ONCE = "The keys are shown only once; store them now."


# --- parameter types --------------------------------------------------------------------------


class JSONOrFileType(click.ParamType[Any]):
    """A JSON object given inline, or ``@FILE`` to read it from a file (usage error if bad).

    As for every JSON option of the CLI, an error never repeats the text: it may hold a secret.
    """

    name = "JSON|@FILE"

    def convert(
        self,
        value: Any,  # noqa: ANN401 - click passes the raw text (or a default)
        param: click.Parameter | None,
        ctx: click.Context | None,
    ) -> Any:  # noqa: ANN401 - a JSON object
        """Read ``@FILE`` if given, then decode a JSON object.

        Raises:
            click.BadParameter: the file cannot be read, or it is not a JSON object.
        """
        if isinstance(value, str) and value.startswith("@"):
            path = Path(value[1:])
            try:
                value = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                self.fail(f"cannot read {path}: {reason}", param, ctx)
        return _JSON_OBJECT.convert(value, param, ctx)


_DURATION = re.compile(r"^([0-9]{1,9})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class DurationType(click.ParamType[int]):
    """A duration such as ``90s``, ``30m``, ``12h`` or ``7d``, converted to whole seconds.

    A unit is required: a bare ``7`` could mean seconds or days, and a claim token that lives
    a week instead of seven seconds (or the reverse) is a mistake nobody notices at once.
    """

    name = "DURATION"

    def convert(
        self,
        value: Any,  # noqa: ANN401 - click passes the raw text (or a default)
        param: click.Parameter | None,
        ctx: click.Context | None,
    ) -> int:
        """Parse ``value`` into seconds.

        Raises:
            click.BadParameter: not a positive number followed by s, m, h or d.
        """
        if isinstance(value, int):
            return value
        match = _DURATION.match(str(value).strip())
        if match is None or int(match.group(1)) == 0:
            self.fail("expected a duration like 90s, 30m, 12h or 7d", param, ctx)
        return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


_JSON_OR_FILE = JSONOrFileType()
_DURATION_TYPE = DurationType()


# --- helpers ----------------------------------------------------------------------------------


def _quote(name: str, what: str) -> str:
    """One path segment, percent-encoded (ids may hold ``%``, ``?``, ``#``).

    Raises:
        ClientUsageError: the id is empty.
    """
    if not name:
        raise ClientUsageError(f"the {what} is empty")
    return urllib.parse.quote(name, safe="")


def _pages(
    client: HubClient,
    path: str,
    key: str,
    *,
    query: dict[str, str | int | None],
    after: str | None,
    limit: int | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Every item of a paged listing from ``after`` on (at most ``limit``), and the cursor."""
    items: list[dict[str, Any]] = []
    cursor = after
    while True:
        size = _PAGE if limit is None else limit - len(items)
        page = client.request("GET", path, query={**query, "after": cursor, "limit": size})
        items += page[key]
        cursor = page["nextAfter"]
        if cursor is None or (limit is not None and len(items) >= limit):
            return items, cursor


_after_option = click.option("--after", default=None, help="Start after this id.")
_limit_option = click.option(
    "--limit", type=click.IntRange(1, 1000), default=None, help="At most this many (default: all)."
)
_yes_option = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")


def _group_client_options(func: Callable[..., None]) -> Callable[..., None]:
    """:func:`~ironhub.cli.main._client_options` without ``--ca``, for ``enrollment-group create``.

    There ``--ca FILE`` names the group's CA certificates (the command line the issue fixed),
    so the hub's CA for the connection comes from ``IRONHUB_CA`` or ``<data dir>/ca.pem``.
    """

    @functools.wraps(func)
    def wrapper(
        *,
        api: str,
        token_file: Path | None,
        data_dir: Path,
        as_json: bool,
        **kwargs: Any,  # noqa: ANN401 - the command's own options
    ) -> None:
        out = Output(as_json=as_json)
        with _errors():
            env_ca = os.environ.get("IRONHUB_CA")
            client = _make_client(
                api=api,
                ca=Path(env_ca) if env_ca else None,
                token_file=token_file,
                data_dir=data_dir,
            )
            func(client=client, out=out, **kwargs)

    options = (
        api_option,
        click.option(
            "--token-file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Read the API token from this file (mode 0600). Else env IRONHUB_TOKEN, "
            "then IRONHUB_TOKEN_FILE.",
        ),
        _data_option,
        _json_option,
    )
    return with_options(wrapper, options)


def _certificate_lines(pems: list[str]) -> list[tuple[str, object]]:
    """``Certificate N: subject (SHA-256 thumbprint)`` for each PEM, parsed locally."""
    lines: list[tuple[str, object]] = []
    for index, pem in enumerate(pems, start=1):
        try:
            certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
        except ValueError:  # pragma: no cover - the hub stores only certificates it parsed
            lines.append((f"Certificate {index}", "(cannot be parsed)"))
            continue
        thumbprint = certificate.fingerprint(hashes.SHA256()).hex().upper()
        subject = certificate.subject.rfc4514_string()
        lines.append((f"Certificate {index}", f"{subject} (SHA-256 {thumbprint})"))
    return lines


def _state(enabled: object) -> str:
    return "enabled" if enabled else "disabled"


def _print_keys(out: Output, answer: dict[str, Any]) -> None:
    if answer.get("primaryKey"):
        out.fields(
            [("Primary key", answer["primaryKey"]), ("Secondary key", answer["secondaryKey"])]
        )
        out.text(Text(_ONCE, style="yellow"))


# --- provisioning info ------------------------------------------------------------------------


@cli.group()
def provisioning() -> None:
    """The provisioning service: the ID scope and where devices provision themselves."""


@provisioning.command("info")
@_client_options
def provisioning_info(client: HubClient, out: Output) -> None:
    """Show the ID scope, the provisioning host and port, and the device CA."""
    answer = client.request("GET", "/provisioning")
    if out.as_json:
        out.json(answer)
        return
    out.fields(
        [
            ("ID scope", answer["idScope"]),
            ("Provisioning host", answer["provisioningHost"]),
            ("Port", answer["port"]),
            ("Assigned hub", answer["assignedHub"]),
            ("Device provisioning", _state(answer["enabled"])),
        ]
    )
    out.text("Device CA certificate:")
    out.text(safe(answer["deviceCaPem"].rstrip("\n")))


# --- enrollments and groups (shared) ----------------------------------------------------------

_ENROLLMENTS = "/provisioning/enrollments"
_GROUPS = "/provisioning/groups"


def _creation_body(
    *,
    attestation: str,
    pems: list[str],
    initial_twin: dict[str, Any] | None,
    payload: dict[str, Any] | None,
    reprovision: str | None,
    disabled: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {"attestation": attestation, "enabled": not disabled}
    if pems:
        body["certificates"] = pems
    if initial_twin is not None:
        body["initialTwin"] = initial_twin
    if payload is not None:
        body["allocationPayload"] = payload
    if reprovision is not None:
        body["reprovision"] = reprovision
    return body


def _show_enrollment(out: Output, e: dict[str, Any], *, group: bool) -> None:
    pairs: list[tuple[str, object]] = []
    if group:
        pairs.append(("Group", e["groupId"]))
    else:
        pairs.append(("Registration id", e["registrationId"]))
    pairs += [("Attestation", e["attestation"]), ("State", _state(e["enabled"]))]
    if not group:
        pairs.append(("Device id", e["deviceId"] or f"{e['registrationId']} (the registration id)"))
    pairs += [
        ("Reprovision", e["reprovision"]),
        ("Version", e["version"]),
        ("Created (UTC)", _when(e["createdAt"])),
        ("Updated (UTC)", _when(e["updatedAt"])),
        ("Initial twin", json.dumps(e["initialTwin"], sort_keys=True, ensure_ascii=True)),
    ]
    if e["allocationPayload"] is not None:
        pairs.append(("Allocation payload", json.dumps(e["allocationPayload"], ensure_ascii=True)))
    pairs += _certificate_lines(e["certificates"])
    out.fields(pairs)


def _enrollment_rows(items: list[dict[str, Any]], id_key: str) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for e in items:
        row: tuple[object, ...] = (e[id_key], e["attestation"], _state(e["enabled"]))
        if id_key == "registrationId":
            row += (e["deviceId"] or e["registrationId"],)
        rows.append((*row, e["reprovision"], _when(e["updatedAt"])))
    return rows


_GROUP_COLUMNS = ("GROUP", "ATTESTATION", "STATE", "REPROVISION", "UPDATED (UTC)")
_ENROLLMENT_COLUMNS = (
    "REGISTRATION ID",
    "ATTESTATION",
    "STATE",
    "DEVICE",
    "REPROVISION",
    "UPDATED (UTC)",
)


def _list(
    client: HubClient, out: Output, *, group: bool, after: str | None, limit: int | None
) -> None:
    key = "groups" if group else "enrollments"
    items, cursor = _pages(
        client, _GROUPS if group else _ENROLLMENTS, key, query={}, after=after, limit=limit
    )
    if out.as_json:
        out.json({key: items, "nextAfter": cursor})
    elif not items:
        out.text("No enrollment groups." if group else "No enrollments.")
    elif group:
        out.table(_GROUP_COLUMNS, _enrollment_rows(items, "groupId"))
    else:
        out.table(_ENROLLMENT_COLUMNS, _enrollment_rows(items, "registrationId"))


def _show(client: HubClient, out: Output, name: str, *, group: bool) -> None:
    base = _GROUPS if group else _ENROLLMENTS
    answer = client.request("GET", f"{base}/{_quote(name, 'id')}")
    if out.as_json:
        out.json(answer)
    else:
        _show_enrollment(out, answer, group=group)


def _set_enabled(client: HubClient, out: Output, name: str, *, group: bool, enabled: bool) -> None:
    base = _GROUPS if group else _ENROLLMENTS
    answer = client.request("PATCH", f"{base}/{_quote(name, 'id')}", json_body={"enabled": enabled})
    if out.as_json:
        out.json(answer)
        return
    kind = "Enrollment group" if group else "Enrollment"
    out.text(f"{kind} {safe(name)} is now {_state(enabled)}.")
    disabled = answer["disabledDevices"]
    if disabled:
        out.text(f"Disabled {len(disabled)} device(s) it provisioned: {safe(', '.join(disabled))}")
    elif enabled:
        out.text("Devices it provisioned and that were disabled stay disabled; enable each one.")


def _delete(client: HubClient, out: Output, name: str, *, group: bool, yes: bool) -> None:
    kind = "enrollment group" if group else "enrollment"
    _confirm(yes, f"Delete {kind} {safe(name)}?", "delete")
    base = _GROUPS if group else _ENROLLMENTS
    client.request("DELETE", f"{base}/{_quote(name, 'id')}")
    if out.as_json:
        out.json({"deleted": name})
    else:
        out.text(f"Deleted {kind} {safe(name)}; the devices it provisioned stay registered.")


_attestation_option = click.option(
    "--attestation",
    type=click.Choice(_ATTESTATIONS),
    required=True,
    help="symmetric: keys generated by the hub; x509: certificates.",
)
_twin_option = click.option(
    "--initial-twin",
    "initial_twin",
    type=_JSON_OR_FILE,
    default=None,
    help='Initial twin, JSON or @FILE: {"tags": {...}, "properties": {"desired": {...}}}.',
)
_payload_option = click.option(
    "--payload",
    type=_JSON_OR_FILE,
    default=None,
    help="Allocation payload handed to the device at registration, a JSON object or @FILE.",
)
_reprovision_option = click.option(
    "--reprovision",
    type=click.Choice(_REPROVISION),
    default=None,
    help="What a later registration does to the twin (default keep-twin).",
)
_disabled_option = click.option(
    "--disabled", is_flag=True, help="Create it disabled (it admits no device until enabled)."
)


# --- enrollment -------------------------------------------------------------------------------


@cli.group()
def enrollment() -> None:
    """Individual enrollments: one registration id each (symmetric keys or x509)."""


@enrollment.command("create")
@click.argument("registration_id", metavar="REG_ID")
@_attestation_option
@click.option(
    "--cert",
    "certs",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="x509: the device's self-signed certificate (PEM), primary then optional secondary.",
)
@click.option("--device-id", default=None, help="Device id to assign (default: REG_ID).")
@_twin_option
@_payload_option
@_reprovision_option
@_disabled_option
@_client_options
def enrollment_create(
    *,
    client: HubClient,
    out: Output,
    registration_id: str,
    attestation: str,
    certs: tuple[Path, ...],
    device_id: str | None,
    initial_twin: dict[str, Any] | None,
    payload: dict[str, Any] | None,
    reprovision: str | None,
    disabled: bool,
) -> None:
    """Create an enrollment; symmetric keys are shown this once."""
    body = _creation_body(
        attestation=attestation,
        pems=[_read_text_file(p, "certificate") for p in certs],
        initial_twin=initial_twin,
        payload=payload,
        reprovision=reprovision,
        disabled=disabled,
    )
    body["registrationId"] = registration_id
    if device_id is not None:
        body["deviceId"] = device_id
    answer = client.request("POST", _ENROLLMENTS, json_body=body)
    if out.as_json:
        out.json(answer)
        return
    e = answer["enrollment"]
    out.text(
        f"Created enrollment {safe(e['registrationId'])} ({e['attestation']}, "
        f"{_state(e['enabled'])})."
    )
    _print_keys(out, answer)


@enrollment.command("list")
@_after_option
@_limit_option
@_client_options
def enrollment_list(client: HubClient, out: Output, after: str | None, limit: int | None) -> None:
    """List enrollments by registration id (never keys)."""
    _list(client, out, group=False, after=after, limit=limit)


@enrollment.command("show")
@click.argument("registration_id", metavar="REG_ID")
@_client_options
def enrollment_show(client: HubClient, out: Output, registration_id: str) -> None:
    """Show an enrollment (never its keys)."""
    _show(client, out, registration_id, group=False)


@enrollment.command("delete")
@click.argument("registration_id", metavar="REG_ID")
@_yes_option
@_client_options
def enrollment_delete(client: HubClient, out: Output, registration_id: str, yes: bool) -> None:
    """Delete an enrollment; the device it provisioned stays registered."""
    _delete(client, out, registration_id, group=False, yes=yes)


@enrollment.command("enable")
@click.argument("registration_id", metavar="REG_ID")
@_client_options
def enrollment_enable(client: HubClient, out: Output, registration_id: str) -> None:
    """Let the enrollment admit its device again."""
    _set_enabled(client, out, registration_id, group=False, enabled=True)


@enrollment.command("disable")
@click.argument("registration_id", metavar="REG_ID")
@_client_options
def enrollment_disable(client: HubClient, out: Output, registration_id: str) -> None:
    """Refuse the enrollment's registrations and disable the device it provisioned."""
    _set_enabled(client, out, registration_id, group=False, enabled=False)


# --- enrollment groups ------------------------------------------------------------------------


@cli.group("enrollment-group")
def enrollment_group() -> None:
    """Enrollment groups: many devices under one group key or CA."""


@enrollment_group.command("create")
@click.argument("group_id", metavar="GROUP")
@_attestation_option
@click.option(
    "--ca",
    "cas",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="x509: a CA certificate (PEM) the devices' certificates chain to (repeatable). "
    "The hub's own CA for the connection comes from IRONHUB_CA or <data dir>/ca.pem here.",
)
@_twin_option
@_payload_option
@_reprovision_option
@_disabled_option
@_group_client_options
def enrollment_group_create(
    *,
    client: HubClient,
    out: Output,
    group_id: str,
    attestation: str,
    cas: tuple[Path, ...],
    initial_twin: dict[str, Any] | None,
    payload: dict[str, Any] | None,
    reprovision: str | None,
    disabled: bool,
) -> None:
    """Create an enrollment group; symmetric group keys are shown this once."""
    pems = [_read_text_file(p, "CA certificate") for p in cas]
    _refuse_the_hub_ca(client, pems)
    body = _creation_body(
        attestation=attestation,
        pems=pems,
        initial_twin=initial_twin,
        payload=payload,
        reprovision=reprovision,
        disabled=disabled,
    )
    body["groupId"] = group_id
    answer = client.request("POST", _GROUPS, json_body=body)
    if out.as_json:
        out.json(answer)
        return
    g = answer["group"]
    out.text(
        f"Created enrollment group {safe(g['groupId'])} ({g['attestation']}, "
        f"{_state(g['enabled'])})."
    )
    _print_keys(out, answer)
    if answer.get("primaryKey"):
        out.text(
            f"Device keys: ironhub enrollment-group compute-device-key {safe(group_id)} REG_ID"
        )


def _refuse_the_hub_ca(client: HubClient, pems: list[str]) -> None:
    """Refuse the hub's own CA as a group CA: ``--ca`` means the connection's CA elsewhere.

    An operator used to ``--ca hub-ca.pem`` on every other command would otherwise make the
    hub's TLS CA a trust anchor for device certificates without noticing.

    Raises:
        ClientUsageError: one of ``pems`` is the connection's CA certificate.
    """
    if client.ca_file is None:
        return
    hub_ca = _read_text_file(client.ca_file, "hub CA certificate").strip()
    if any(pem.strip() == hub_ca for pem in pems):
        raise ClientUsageError(
            f"--ca names the group's CA certificates here, and {client.ca_file} is the hub's "
            "own CA (the connection's); give the CA that signs the devices' certificates"
        )


@enrollment_group.command("list")
@_after_option
@_limit_option
@_client_options
def enrollment_group_list(
    client: HubClient, out: Output, after: str | None, limit: int | None
) -> None:
    """List enrollment groups by id (never keys)."""
    _list(client, out, group=True, after=after, limit=limit)


@enrollment_group.command("show")
@click.argument("group_id", metavar="GROUP")
@_client_options
def enrollment_group_show(client: HubClient, out: Output, group_id: str) -> None:
    """Show an enrollment group (never its keys)."""
    _show(client, out, group_id, group=True)


@enrollment_group.command("delete")
@click.argument("group_id", metavar="GROUP")
@_yes_option
@_client_options
def enrollment_group_delete(client: HubClient, out: Output, group_id: str, yes: bool) -> None:
    """Delete a group and its claim tokens; the devices it provisioned stay registered."""
    _delete(client, out, group_id, group=True, yes=yes)


@enrollment_group.command("enable")
@click.argument("group_id", metavar="GROUP")
@_client_options
def enrollment_group_enable(client: HubClient, out: Output, group_id: str) -> None:
    """Let the group admit devices again."""
    _set_enabled(client, out, group_id, group=True, enabled=True)


@enrollment_group.command("disable")
@click.argument("group_id", metavar="GROUP")
@_client_options
def enrollment_group_disable(client: HubClient, out: Output, group_id: str) -> None:
    """Refuse the group's registrations and disable every device it provisioned."""
    _set_enabled(client, out, group_id, group=True, enabled=False)


@enrollment_group.command("compute-device-key")
@click.argument("group_id", metavar="GROUP")
@click.argument("registration_id", metavar="REG_ID")
@_client_options
def enrollment_group_compute_device_key(
    client: HubClient, out: Output, group_id: str, registration_id: str
) -> None:
    """Print the key a symmetric group gives REG_ID (recorded by the hub as a key disclosure)."""
    answer = client.request(
        "POST",
        f"{_GROUPS}/{_quote(group_id, 'group id')}/device-key",
        json_body={"registrationId": registration_id},
    )
    if out.as_json:
        out.json(answer)
    else:
        click.echo(safe(answer["deviceKey"]))


# --- claim tokens -----------------------------------------------------------------------------


@cli.group("claim-token")
def claim_token() -> None:
    """Claim tokens: let devices without credentials register through a group with a CSR."""


@claim_token.command("create")
@click.argument("group_id", metavar="GROUP")
@click.option(
    "--uses",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many devices may register with it.",
)
@click.option(
    "--expires",
    "expires_in",
    type=_DURATION_TYPE,
    default="24h",
    show_default=True,
    help="Lifetime: 90s, 30m, 12h, 7d (the hub caps it, 30 days by default).",
)
@_client_options
def claim_token_create(
    client: HubClient, out: Output, group_id: str, uses: int, expires_in: int
) -> None:
    """Create a claim token for GROUP; its secret is shown this once."""
    answer = client.request(
        "POST",
        f"{_GROUPS}/{_quote(group_id, 'group id')}/claim-tokens",
        json_body={"uses": uses, "expiresInSeconds": expires_in},
    )
    if out.as_json:
        out.json(answer)
        return
    out.text(
        f"Created claim token {safe(answer['tokenId'])} for group {safe(answer['groupId'])}: "
        f"{answer['maxUses']} use(s), expires {_when(answer['expiresAt'])} UTC."
    )
    out.text("Token (shown once, store it now):")
    out.text(answer["token"])


@claim_token.command("list")
@click.option("--group", "group_id", default=None, help="Only this group's tokens.")
@_client_options
def claim_token_list(client: HubClient, out: Output, group_id: str | None) -> None:
    """List claim tokens, oldest first (never a secret)."""
    answer = client.request("GET", "/provisioning/claim-tokens", query={"group": group_id})
    if out.as_json:
        out.json(answer)
        return
    tokens = answer["claimTokens"]
    if not tokens:
        out.text("No claim tokens.")
        return
    rows = [
        (
            t["tokenId"],
            t["groupId"],
            t["state"],
            f"{t['uses']}/{t['maxUses']}",
            _when(t["expiresAt"]),
            t["createdBy"],
        )
        for t in tokens
    ]
    out.table(("ID", "GROUP", "STATE", "USES", "EXPIRES (UTC)", "CREATED BY"), rows)


@claim_token.command("revoke")
@click.argument("token_id")
@_client_options
def claim_token_revoke(client: HubClient, out: Output, token_id: str) -> None:
    """Revoke a claim token; devices it already admitted stay registered."""
    client.request("DELETE", f"/provisioning/claim-tokens/{_quote(token_id, 'token id')}")
    if out.as_json:
        out.json({"revoked": token_id})
    else:
        out.text(f"Revoked claim token {safe(token_id)}.")


# --- registrations ----------------------------------------------------------------------------

_REGISTRATIONS = "/provisioning/registrations"


@cli.group()
def registration() -> None:
    """Registration states: the outcome of each registration id's last registration."""


@registration.command("list")
@click.option("--enrollment", "enrollment_id", default=None, help="Only this enrollment's.")
@click.option("--group", "group_id", default=None, help="Only this enrollment group's.")
@_after_option
@_limit_option
@_client_options
def registration_list(
    *,
    client: HubClient,
    out: Output,
    enrollment_id: str | None,
    group_id: str | None,
    after: str | None,
    limit: int | None,
) -> None:
    """List registration states by registration id."""
    if enrollment_id is not None and group_id is not None:
        raise click.UsageError("give at most one of --enrollment and --group")
    items, cursor = _pages(
        client,
        _REGISTRATIONS,
        "registrations",
        query={"enrollment": enrollment_id, "group": group_id},
        after=after,
        limit=limit,
    )
    if out.as_json:
        out.json({"registrations": items, "nextAfter": cursor})
        return
    if not items:
        out.text("No registrations.")
        return
    rows = [
        (
            r["registrationId"],
            r["deviceId"],
            f"{'group' if r['group'] else 'enrollment'} {r['enrollmentId']}",
            r["status"],
            r["substatus"],
            r["certificateSerial"] or "-",
            _when(r["updatedAt"]),
        )
        for r in items
    ]
    columns = (
        "REGISTRATION ID",
        "DEVICE",
        "VIA",
        "STATUS",
        "SUBSTATUS",
        "CERTIFICATE",
        "UPDATED (UTC)",
    )
    out.table(columns, rows)


@registration.command("show")
@click.argument("registration_id", metavar="REG_ID")
@_client_options
def registration_show(client: HubClient, out: Output, registration_id: str) -> None:
    """Show the registration state of REG_ID."""
    r = client.request("GET", f"{_REGISTRATIONS}/{_quote(registration_id, 'registration id')}")
    if out.as_json:
        out.json(r)
        return
    pairs: list[tuple[str, object]] = [
        ("Registration id", r["registrationId"]),
        ("Device", r["deviceId"]),
        ("Enrollment group" if r["group"] else "Enrollment", r["enrollmentId"]),
        ("Status", r["status"]),
        ("Substatus", r["substatus"]),
        ("Version", r["version"]),
        ("Created (UTC)", _when(r["createdAt"])),
        ("Updated (UTC)", _when(r["updatedAt"])),
    ]
    if r["certificateSerial"]:
        pairs.append(("Certificate serial", r["certificateSerial"]))
    if r["errorCode"] is not None:
        pairs.append(("Error", f"{r['errorCode']} {r['errorMessage'] or ''}".strip()))
    out.fields(pairs)


@registration.command("delete")
@click.argument("registration_id", metavar="REG_ID")
@_yes_option
@_client_options
def registration_delete(client: HubClient, out: Output, registration_id: str, yes: bool) -> None:
    """Forget a registration state; the device stays (and cannot re-register while it exists)."""
    _confirm(yes, f"Forget registration {safe(registration_id)}?", "delete")
    client.request("DELETE", f"{_REGISTRATIONS}/{_quote(registration_id, 'registration id')}")
    if out.as_json:
        out.json({"deleted": registration_id})
    else:
        out.text(f"Forgot registration {safe(registration_id)}.")


# --- issued certificates ----------------------------------------------------------------------

_reason_option = click.option(
    "--reason",
    type=click.Choice(list(REVOCATION_REASONS), case_sensitive=False),
    default="unspecified",
    show_default=True,
    help="RFC 5280 revocation reason (written into the CRL).",
)


def _certificate_state(c: dict[str, Any], now: float) -> str:
    if c["revoked"]:
        return f"revoked ({c['revocationReason'] or 'unspecified'})"
    return "expired" if c["notAfter"] <= now else "valid"


@cli.group()
def cert() -> None:
    """Device certificates issued by the hub's device CA: list, show, revoke."""


@cert.command("list")
@click.option("--device", "device_id", default=None, help="Only this device's certificates.")
@click.option("--revoked", is_flag=True, help="Only revoked certificates.")
@_after_option
@_limit_option
@_client_options
def cert_list(
    *,
    client: HubClient,
    out: Output,
    device_id: str | None,
    revoked: bool,
    after: str | None,
    limit: int | None,
) -> None:
    """List issued certificates by serial."""
    items, cursor = _pages(
        client,
        "/certificates",
        "certificates",
        query={"device": device_id, "revoked": "true" if revoked else None},
        after=after,
        limit=limit,
    )
    if out.as_json:
        out.json({"certificates": items, "nextAfter": cursor})
        return
    if not items:
        out.text("No certificates.")
        return
    now = dt.datetime.now(dt.UTC).timestamp()
    rows = [
        (
            c["serial"],
            c["deviceId"],
            _certificate_state(c, now),
            _when(c["issuedAt"]),
            _when(c["notAfter"]),
        )
        for c in items
    ]
    out.table(("SERIAL", "DEVICE", "STATE", "ISSUED (UTC)", "NOT AFTER (UTC)"), rows)


@cert.command("show")
@click.argument("serial")
@_client_options
def cert_show(client: HubClient, out: Output, serial: str) -> None:
    """Show an issued certificate and its PEM."""
    c = client.request("GET", f"/certificates/{_quote(serial, 'serial')}")
    if out.as_json:
        out.json(c)
        return
    now = dt.datetime.now(dt.UTC).timestamp()
    pairs: list[tuple[str, object]] = [
        ("Serial", c["serial"]),
        ("Device", c["deviceId"]),
        ("Registration id", c["registrationId"]),
        ("State", _certificate_state(c, now)),
        ("SHA-256 thumbprint", c["thumbprint"]),
        ("Issued (UTC)", _when(c["issuedAt"])),
        ("Not before (UTC)", _when(c["notBefore"])),
        ("Not after (UTC)", _when(c["notAfter"])),
    ]
    if c["revoked"]:
        pairs.append(("Revoked (UTC)", _when(c["revokedAt"])))
    out.fields(pairs)
    out.text(safe(c["pem"].rstrip("\n")))


@cert.command("revoke")
@click.argument("serial")
@_reason_option
@_client_options
def cert_revoke(client: HubClient, out: Output, serial: str, reason: str) -> None:
    """Revoke a certificate (final): its sessions close and the CRL is re-signed."""
    c = client.request(
        "POST", f"/certificates/{_quote(serial, 'serial')}/revoke", json_body={"reason": reason}
    )
    if out.as_json:
        out.json(c)
    else:
        out.text(
            f"Certificate {safe(c['serial'])} of device {safe(c['deviceId'])} is revoked "
            f"({safe(c['revocationReason'])})."
        )


@cert.command("revoke-device")
@click.argument("device_id")
@_reason_option
@_client_options
def cert_revoke_device(client: HubClient, out: Output, device_id: str, reason: str) -> None:
    """Revoke every unrevoked certificate issued to DEVICE_ID."""
    answer = client.request(
        "POST",
        f"/devices/{_quote(device_id, 'device id')}/certificates/revoke",
        json_body={"reason": reason},
    )
    if out.as_json:
        out.json(answer)
        return
    serials = answer["revoked"]
    if serials:
        out.text(f"Revoked {len(serials)} certificate(s) of device {safe(device_id)}:")
        for serial in serials:
            out.text(f"  {safe(serial)}")
    else:
        out.text(f"Device {safe(device_id)} has no unrevoked certificate.")


# --- the CRL ----------------------------------------------------------------------------------


def _reason(entry: x509.RevokedCertificate) -> str:
    try:
        flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        # RFC 5280 §5.3.1: the hub omits the reason code for "unspecified", as it SHOULD.
        return "unspecified"
    return str(flag.value)


def _crl_summary(crl: x509.CertificateRevocationList) -> dict[str, Any]:
    """What a relying party checks in a CRL, as plain values.

    Raises:
        x509.ExtensionNotFound: the CRL has no number (every CRL of the hub has one).
    """
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    revoked = [
        {
            "serial": format(entry.serial_number, "X"),
            "revoked_at": entry.revocation_date_utc.timestamp(),
            "reason": _reason(entry),
        }
        for entry in crl
    ]
    next_update = crl.next_update_utc
    return {
        "issuer": crl.issuer.rfc4514_string(),
        "number": number,
        "this_update": crl.last_update_utc.timestamp(),
        "next_update": next_update.timestamp() if next_update is not None else None,
        "revoked": revoked,
    }


@cli.command("crl")
@click.option("--pem", "as_pem", is_flag=True, help="PEM instead of DER.")
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False, writable=True),
    default=None,
    help="Write the CRL to this file (DER, or PEM with --pem).",
)
@_public_client_options
def crl(client: HubClient, out: Output, as_pem: bool, out_path: Path | None) -> None:
    """Fetch the device CA's CRL (public: no token needed).

    Without --out it prints a summary (with --pem: the PEM text).
    """
    buffer = io.BytesIO()
    client.download("/pki/crl", buffer, timeout_seconds=client.timeout_seconds)
    try:
        parsed = x509.load_der_x509_crl(buffer.getvalue())
        summary = _crl_summary(parsed)
    except (ValueError, x509.ExtensionNotFound):
        raise APIError(
            200, "bad-answer", "the hub's answer is not a CRL of its device CA"
        ) from None
    data = parsed.public_bytes(Encoding.PEM) if as_pem else buffer.getvalue()
    if out_path is not None:
        partial = out_path.with_name(out_path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(out_path)
    summary |= {"format": "pem" if as_pem else "der", "path": str(out_path) if out_path else None}
    if out.as_json:
        if as_pem and out_path is None:
            summary["pem"] = data.decode("ascii")
        out.json(summary)
    elif out_path is not None:
        out.text(
            f"Wrote CRL number {summary['number']} ({len(summary['revoked'])} revoked) to "
            f"{safe(str(out_path))}."
        )
    elif as_pem:
        click.echo(data.decode("ascii"), nl=False)
    else:
        _print_crl(out, summary)


def _print_crl(out: Output, summary: dict[str, Any]) -> None:
    out.fields(
        [
            ("Issuer", summary["issuer"]),
            ("CRL number", summary["number"]),
            ("This update (UTC)", _when(summary["this_update"])),
            ("Next update (UTC)", _when(summary["next_update"])),
            ("Revoked", len(summary["revoked"])),
        ]
    )
    if summary["revoked"]:
        rows = [(r["serial"], _when(r["revoked_at"]), r["reason"]) for r in summary["revoked"]]
        out.table(("SERIAL", "REVOKED (UTC)", "REASON"), rows)
