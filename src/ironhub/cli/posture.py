"""Device profiles and advisories in the CLI (issue 6).

``ironhub profile create|update|show|list|delete|assign|unassign|devices`` and
``ironhub advisories import FILE|list``. The outdated/vulnerable-device report is
``ironhub report vulnerable`` (with the other reports, :mod:`ironhub.cli.reports`).

Entry points only: the rules are the hub's (:mod:`ironhub.monitor.profiles`,
:mod:`ironhub.monitor.advisories`), the HTTP calls :class:`~ironhub.cli.client.HubClient`'s.
A profile document is given inline or as ``@FILE`` (JSON), like enrollment twins.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from ironhub.cli.fleet import EXIT_FINDINGS
from ironhub.cli.main import Output, _client_options, _when, cli, safe
from ironhub.cli.provisioning import _JSON_OR_FILE, _quote
from ironhub.cli.reports import report

if TYPE_CHECKING:
    from ironhub.cli.client import HubClient

__all__ = ["advisories", "profile", "report_vulnerable"]

#: Read timeout for an import: the hub parses and stores the whole file before answering.
_IMPORT_TIMEOUT_SECONDS: Final = 600.0
_ZIP_MAGIC: Final = b"PK\x03\x04"


def _profile_path(name: str, *rest: str) -> str:
    return "/".join(("/profiles", _quote(name, "profile name"), *rest))


def _show_profile(out: Output, answer: dict[str, Any]) -> None:
    out.fields(
        [
            ("Profile", answer["name"]),
            ("Version", answer["version"]),
            ("Created (UTC)", _when(answer["createdAt"])),
            ("Updated (UTC)", _when(answer["updatedAt"])),
        ]
    )
    out.text(json.dumps(answer["profile"], indent=2, sort_keys=True, ensure_ascii=True))


@cli.group()
def profile() -> None:
    """Device profiles: the hardware a model may expose and the versions it must run."""


@profile.command("create")
@click.argument("name")
@click.argument("document", type=_JSON_OR_FILE)
@_client_options
def profile_create(client: HubClient, out: Output, name: str, document: dict[str, Any]) -> None:
    """Create profile NAME from DOCUMENT (JSON, or @FILE).

    The document has optional sections "hardware" (interfaces, listening, usb, consoles) and
    "baseline" (os, kernel, drivers, packages, maxDefinitionsAgeHours); the README shows one.
    """
    answer = client.request("POST", "/profiles", json_body={"name": name, "profile": document})
    if out.as_json:
        out.json(answer)
    else:
        out.text(f"Profile {safe(answer['name'])} created (version {answer['version']}).")


@profile.command("update")
@click.argument("name")
@click.argument("document", type=_JSON_OR_FILE)
@_client_options
def profile_update(client: HubClient, out: Output, name: str, document: dict[str, Any]) -> None:
    """Replace profile NAME's document (JSON, or @FILE); the next reports are judged by it."""
    answer = client.request("PUT", _profile_path(name), json_body={"profile": document})
    if out.as_json:
        out.json(answer)
    else:
        out.text(f"Profile {safe(answer['name'])} updated (version {answer['version']}).")


@profile.command("show")
@click.argument("name")
@_client_options
def profile_show(client: HubClient, out: Output, name: str) -> None:
    """Show profile NAME."""
    answer = client.request("GET", _profile_path(name))
    if out.as_json:
        out.json(answer)
    else:
        _show_profile(out, answer)


@profile.command("list")
@_client_options
def profile_list(client: HubClient, out: Output) -> None:
    """List the profiles."""
    answer = client.request("GET", "/profiles")
    if out.as_json:
        out.json(answer)
    elif not answer["profiles"]:
        out.text("No profiles.")
    else:
        out.table(
            ("PROFILE", "VERSION", "HARDWARE", "BASELINE", "UPDATED (UTC)", "DESCRIPTION"),
            [
                (
                    p["name"],
                    p["version"],
                    "yes" if "hardware" in p["profile"] else "-",
                    "yes" if "baseline" in p["profile"] else "-",
                    _when(p["updatedAt"]),
                    p["profile"].get("description", ""),
                )
                for p in answer["profiles"]
            ],
        )


@profile.command("delete")
@click.argument("name")
@_client_options
def profile_delete(client: HubClient, out: Output, name: str) -> None:
    """Delete profile NAME (refused while devices are assigned to it)."""
    client.request("DELETE", _profile_path(name))
    if out.as_json:
        out.json({"deleted": name})
    else:
        out.text(f"Profile {safe(name)} deleted.")


@profile.command("assign")
@click.argument("name")
@click.argument("device_ids", nargs=-1, required=True)
@_client_options
def profile_assign(client: HubClient, out: Output, name: str, device_ids: tuple[str, ...]) -> None:
    """Assign profile NAME to devices (sets their twin tag ironhub.profile)."""
    answer = client.request(
        "POST", _profile_path(name, "assign"), json_body={"deviceIds": list(device_ids)}
    )
    if out.as_json:
        out.json(answer)
    else:
        out.text(f"Profile {safe(name)} assigned to {len(answer['deviceIds'])} device(s).")


@profile.command("unassign")
@click.argument("device_ids", nargs=-1, required=True)
@_client_options
def profile_unassign(client: HubClient, out: Output, device_ids: tuple[str, ...]) -> None:
    """Remove the devices' profile assignment (they fall back to the profile 'default')."""
    for device_id in device_ids:
        client.request("DELETE", f"/devices/{_quote(device_id, 'device id')}/profile")
    if out.as_json:
        out.json({"unassigned": list(device_ids)})
    else:
        out.text(f"{len(device_ids)} device(s) unassigned.")


@profile.command("devices")
@click.argument("name")
@_client_options
def profile_devices(client: HubClient, out: Output, name: str) -> None:
    """List the devices assigned to profile NAME."""
    answer = client.request("GET", _profile_path(name, "devices"))
    if out.as_json:
        out.json(answer)
    elif not answer["deviceIds"]:
        out.text(f"No device is assigned to {safe(name)}.")
    else:
        for device_id in answer["deviceIds"]:
            out.text(safe(device_id))


@cli.group()
def advisories() -> None:
    """Security advisories (OSV format), imported offline and matched against inventories."""


@advisories.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_client_options
def advisories_import(client: HubClient, out: Output, file: Path) -> None:
    """Import an OSV file: one advisory, a JSON list, or OSV's per-ecosystem all.zip.

    Newer copies replace older ones (by "modified"), withdrawn advisories are removed, and
    every device's latest inventory is checked against the result at once.
    """
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {file}: {exc.strerror}") from None
    kind = "application/zip" if data.startswith(_ZIP_MAGIC) else "application/json"
    answer = client.request(
        "POST",
        "/advisories/import",
        query={"source": file.name},
        raw_body=data,
        content_type=kind,
        timeout_seconds=_IMPORT_TIMEOUT_SECONDS,
    )
    if out.as_json:
        out.json(answer)
        return
    out.text(
        f"Imported {safe(answer['source'])}: {answer['added']} added, {answer['updated']} "
        f"updated, {answer['unchanged']} unchanged, {answer['withdrawn']} withdrawn, "
        f"{answer['refused']} refused; {answer['total']} advisories in force."
    )
    if answer["refusedEntries"]:
        out.table(
            ("REFUSED", "REASON"), [(r["entry"], r["reason"]) for r in answer["refusedEntries"]]
        )


@advisories.command("list")
@click.option("--after", default=None, help="Start after this advisory id.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@_client_options
def advisories_list(client: HubClient, out: Output, after: str | None, limit: int) -> None:
    """List imported advisories in id order."""
    answer = client.request("GET", "/advisories", query={"after": after, "limit": limit})
    if out.as_json:
        out.json(answer)
        return
    if not answer["advisories"]:
        out.text("No advisories imported." if answer["total"] == 0 else "No more advisories.")
        return
    out.table(
        ("ADVISORY", "SEVERITY", "PACKAGES", "SUMMARY"),
        [
            (
                a["id"],
                a["severity"],
                ", ".join(f"{p['ecosystem']}/{p['name']}" for p in a["packages"][:3]),
                a["summary"],
            )
            for a in answer["advisories"]
        ],
    )
    out.text(f"{answer['total']} advisories; last import {_when(answer['importedAt'])} UTC.")


def _problems(device: dict[str, Any]) -> str:
    parts = [
        *(
            f"{v['advisoryId']} {v['package']} {v['installedVersion']}"
            + (f" (fixed in {v['fixed']})" if v["fixed"] else "")
            for v in device["vulnerabilities"][:3]
        ),
        *device["belowBaseline"][:3],
        *device["antimalware"][:2],
        *device["drift"][:2],
    ]
    if device["profileMissing"]:
        parts.append(f"assigned profile {device['profile']} does not exist")
    return "; ".join(parts)


@report.command("vulnerable")
@click.option("--device", "device_id", default=None, help="Only this device.")
@_client_options
def report_vulnerable(client: HubClient, out: Output, device_id: str | None) -> None:
    """Outdated and vulnerable devices: below baseline, covered by an advisory, drifted.

    Judged now, from each device's latest inventory, anti-malware and ports reports against
    its profile and the imported advisories. Exits with 5 when any device is listed.
    """
    answer = client.request("GET", "/posture/report", query={"device": device_id})
    devices: list[dict[str, Any]] = answer["devices"]
    if out.as_json:
        out.json(answer)
    elif not devices:
        out.text(
            f"No outdated or vulnerable device ({answer['checked']} with reports checked "
            f"against {answer['advisories']} advisories)."
        )
    else:
        out.table(
            ("DEVICE", "PROFILE", "VULNERABLE", "OUTDATED", "DRIFT", "INVENTORY (UTC)", "FOUND"),
            [
                (
                    d["deviceId"],
                    d["profile"] or "-",
                    len(d["vulnerabilities"]) or "-",
                    "yes" if d["outdated"] else "-",
                    len(d["drift"]) or "-",
                    _when(d["inventoryAt"]),
                    _problems(d),
                )
                for d in devices
            ],
        )
        out.text(
            f"{len(devices)} of {answer['checked']} device(s) with reports need attention "
            f"({answer['advisories']} advisories in force)."
        )
    if devices:
        raise click.exceptions.Exit(EXIT_FINDINGS)
