"""``ironhub login|logout``, ``ironhub operator ...`` and ``ironhub token ...``.

Entry points only: the rules are the hub's (:mod:`ironhub.access`), the HTTP calls
:class:`~ironhub.cli.client.HubClient`'s.

``ironhub login`` asks for the name, the password and the TOTP code (or takes them from
``--name``/``IRONHUB_OPERATOR``, ``IRONHUB_PASSWORD`` and ``--totp``/``IRONHUB_TOTP``; a
password is never an option, so it never lands in the shell history or ``ps``), and writes the
session token to a file only its owner can read: ``$IRONHUB_SESSION_FILE``, else
``$XDG_CONFIG_HOME/ironhub/session`` (``~/.config/ironhub/session``). Every other command uses
that session when neither ``--token-file``, ``IRONHUB_TOKEN`` nor ``IRONHUB_TOKEN_FILE`` is set.
"""

from __future__ import annotations

import functools
import os
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ironhub.cli.client import ClientAuthError, ClientUsageError, HubClient
from ironhub.cli.main import (
    Output,
    _client_options,
    _data_option,
    _errors,
    _json_option,
    api_option,
    ca_option,
    cli,
    safe,
    session_file,
    with_options,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["login", "logout", "operator", "token"]

_ROLE_HELP = (
    "Role to grant (repeatable): viewer, operator, security-admin, admin, registry-read, "
    "registry-write, service-connect, device-connect."
)


def _write_session(path: Path, secret: str) -> None:
    """Write the session token to ``path`` with mode 0600 from the start, atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    partial.replace(path)


def _public_client_options(func: Callable[..., None]) -> Callable[..., None]:
    """``--api``, ``--ca``, ``--data``, ``--json`` for a command that needs no token."""

    @functools.wraps(func)
    def wrapper(
        *,
        api: str,
        ca: Path | None,
        data_dir: Path,
        as_json: bool,
        **kwargs: Any,  # noqa: ANN401 - the command's own options
    ) -> None:
        out = Output(as_json=as_json)
        with _errors():
            if ca is None:
                default_ca = data_dir / "ca.pem"
                ca = default_ca if default_ca.is_file() else None
            func(client=HubClient(api, None, ca_file=ca), out=out, **kwargs)

    return with_options(wrapper, (api_option, ca_option, _data_option, _json_option))


def _secret_input(env: str, prompt: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    text: str = click.prompt(prompt, hide_input=True, err=True)
    return text


# --- login / logout ---------------------------------------------------------------------------


@cli.command()
@click.option("--name", envvar="IRONHUB_OPERATOR", help="Account name (env IRONHUB_OPERATOR).")
@click.option(
    "--totp",
    envvar="IRONHUB_TOTP",
    help="The current TOTP code (env IRONHUB_TOTP); asked for when MFA is enrolled.",
)
@_public_client_options
def login(client: HubClient, out: Output, name: str | None, totp: str | None) -> None:
    """Log in (password + TOTP) and keep a short-lived session token in a 0600 file."""
    if not name:
        name = str(click.prompt("Name", err=True))
    password = _secret_input("IRONHUB_PASSWORD", "Password")
    if totp is None and not os.environ.get("IRONHUB_PASSWORD"):
        totp = str(click.prompt("TOTP code (empty if MFA is not enrolled)", default="", err=True))
    body: dict[str, Any] = {"name": name, "password": password}
    if totp:
        body["totp"] = totp
    try:
        answer = client.request("POST", "/login", json_body=body)
    except ClientAuthError:
        raise ClientAuthError("login refused: wrong name, password or code") from None
    path = session_file()
    _write_session(path, answer["token"])
    if out.as_json:
        out.json({k: v for k, v in answer.items() if k != "token"} | {"session_file": str(path)})
        return
    out.text(f"Logged in as {safe(answer['operator'])}; session saved to {safe(str(path))}.")
    if answer["must_rotate"]:
        out.text("Your password must be changed first: ironhub operator rotate-password")


@cli.command()
@_client_options
def logout(client: HubClient, out: Output) -> None:
    """End the current session and remove the session file."""
    client.request("POST", "/logout")
    session_file().unlink(missing_ok=True)
    if out.as_json:
        out.json({"status": "logged-out"})
    else:
        out.text("Logged out.")


# --- operators --------------------------------------------------------------------------------


@cli.group()
def operator() -> None:
    """Operator accounts: add, list, disable, reset MFA, change your password, enrol MFA."""


def _operator_rows(operators: list[dict[str, Any]]) -> list[list[object]]:
    return [
        [
            safe(o["name"]),
            ",".join(o["roles"]),
            "disabled" if o["disabled"] else "enabled",
            "yes" if o["mfa"] else "no",
            "one-time" if o["one_time_password"] else "set",
        ]
        for o in operators
    ]


@operator.command("add")
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True, help=_ROLE_HELP)
@click.option(
    "--allow", "allow_list", multiple=True, help="Allowed source network, CIDR (repeatable)."
)
@_client_options
def operator_add(
    client: HubClient,
    out: Output,
    name: str,
    roles: tuple[str, ...],
    allow_list: tuple[str, ...],
) -> None:
    """Create an account; its one-time password is shown once."""
    answer = client.request(
        "POST",
        "/operators",
        json_body={"name": name, "roles": list(roles), "allow_list": list(allow_list)},
    )
    if out.as_json:
        out.json(answer)
        return
    out.text(f"Created operator {safe(name)}.")
    out.text("One-time password (shown once; it must be changed at the first login):")
    out.text(answer["password"])


@operator.command("list")
@_client_options
def operator_list(client: HubClient, out: Output) -> None:
    """List accounts (never a password or secret)."""
    answer = client.request("GET", "/operators")
    if out.as_json:
        out.json(answer)
        return
    out.table(("NAME", "ROLES", "STATE", "MFA", "PASSWORD"), _operator_rows(answer["operators"]))


@operator.command("disable")
@click.argument("name")
@_client_options
def operator_disable(client: HubClient, out: Output, name: str) -> None:
    """Disable an account and end its sessions."""
    answer = client.request("POST", _path("operators", name, "disable"))
    if out.as_json:
        out.json(answer)
    else:
        out.text(f"Disabled operator {safe(name)}.")


@operator.command("reset-mfa")
@click.argument("name")
@_client_options
def operator_reset_mfa(client: HubClient, out: Output, name: str) -> None:
    """Remove an account's TOTP enrolment (a lost phone) and end its sessions."""
    answer = client.request("POST", _path("operators", name, "reset-mfa"))
    if out.as_json:
        out.json(answer)
    else:
        out.text(f"MFA reset for operator {safe(name)}; it can enrol again after logging in.")


@operator.command("rotate-password")
@_client_options
def operator_rotate_password(client: HubClient, out: Output) -> None:
    """Change your password (env IRONHUB_PASSWORD / IRONHUB_NEW_PASSWORD, else prompts)."""
    old = _secret_input("IRONHUB_PASSWORD", "Current password")
    new = os.environ.get("IRONHUB_NEW_PASSWORD") or str(
        click.prompt("New password", hide_input=True, confirmation_prompt=True, err=True)
    )
    client.request(
        "POST", "/operators/me/password", json_body={"old_password": old, "new_password": new}
    )
    # Every session of the account ended with the change.
    session_file().unlink(missing_ok=True)
    if out.as_json:
        out.json({"status": "password-changed"})
    else:
        out.text("Password changed. Log in again: ironhub login")


@operator.command("mfa-enrol")
@_client_options
def operator_mfa_enrol(client: HubClient, out: Output) -> None:
    """Start TOTP enrolment: add the secret to an authenticator, then run mfa-confirm."""
    answer = client.request("POST", "/operators/me/mfa")
    if out.as_json:
        out.json(answer)
        return
    out.text("TOTP secret (shown once; add it to your authenticator app):")
    out.text(answer["secret"])
    out.text(answer["uri"])
    out.text("Then: ironhub operator mfa-confirm CODE")


@operator.command("mfa-confirm")
@click.argument("code")
@_client_options
def operator_mfa_confirm(client: HubClient, out: Output, code: str) -> None:
    """Enable TOTP with a first code from the authenticator."""
    answer = client.request("POST", "/operators/me/mfa/confirm", json_body={"totp": code})
    if out.as_json:
        out.json(answer)
    else:
        out.text("MFA enabled: every login now asks for a code.")


def _path(collection: str, name: str, *rest: str) -> str:
    """``/collection/<name, quoted>/rest...``.

    Raises:
        ClientUsageError: the name is empty.
    """
    if not name:
        raise ClientUsageError(f"the {collection[:-1]} name is empty")
    return "/".join(("", collection, urllib.parse.quote(name, safe=""), *rest))


# --- tokens -----------------------------------------------------------------------------------


@cli.group()
def token() -> None:
    """API tokens for automation: create, list, revoke."""


@token.command("create")
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True, help=_ROLE_HELP)
@click.option(
    "--days",
    type=click.IntRange(1, 90),
    default=90,
    show_default=True,
    help="Lifetime in days (at most 90).",
)
@_client_options
def token_create(
    client: HubClient, out: Output, name: str, roles: tuple[str, ...], days: int
) -> None:
    """Create an automation token; its secret is shown once."""
    answer = client.request(
        "POST", "/tokens", json_body={"name": name, "roles": list(roles), "ttl_days": days}
    )
    if out.as_json:
        out.json(answer)
        return
    out.text(f"Created token {safe(answer['info']['token_id'])} ({safe(name)}).")
    out.text("Secret (shown once, store it now):")
    out.text(answer["token"])


@token.command("list")
@_client_options
def token_list(client: HubClient, out: Output) -> None:
    """List tokens (never a secret)."""
    answer = client.request("GET", "/tokens")
    if out.as_json:
        out.json(answer)
        return
    rows = [
        [
            t["token_id"],
            safe(t["name"]),
            t["kind"],
            ",".join(t["roles"]),
            safe(t["operator"] or "-"),
            "revoked" if t["revoked"] else "active",
        ]
        for t in answer["tokens"]
    ]
    out.table(("ID", "NAME", "KIND", "ROLES", "OWNER", "STATE"), rows)


@token.command("revoke")
@click.argument("token_id")
@_client_options
def token_revoke(client: HubClient, out: Output, token_id: str) -> None:
    """Revoke a token; it stops working at once."""
    answer = client.request("DELETE", _path("tokens", token_id))
    if out.as_json:
        out.json(answer)
    else:
        out.text(f"Revoked token {safe(token_id)}.")
