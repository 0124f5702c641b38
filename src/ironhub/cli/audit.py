"""``ironhub audit``: export, verify (offline, with only the public key) and tail the audit log.

Entry points only: the verification rules are :mod:`ironhub.audit` (pure), the HTTP calls are
:class:`~ironhub.cli.client.HubClient`'s.
"""

from __future__ import annotations

import base64
import binascii
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ironhub.audit import verify_export
from ironhub.cli.client import APIError
from ironhub.cli.main import Output, _client_options, _json_option, cli, safe

if TYPE_CHECKING:
    from ironhub.cli.client import HubClient

__all__ = ["audit"]

#: Exit status of ``audit verify`` when the log is not intact.
EXIT_NOT_INTACT = 3


@cli.group()
def audit() -> None:
    """The tamper-evident audit log: export, verify, tail."""


@audit.command("export")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, writable=True),
    help="The file to write (JSON lines with signed checkpoints).",
)
@_client_options
def audit_export(client: HubClient, out: Output, out_path: Path) -> None:
    """Write the whole audit log to a portable file (recorded in the log itself)."""
    partial = out_path.with_name(out_path.name + ".partial")
    with partial.open("wb") as handle:
        size = client.download("/audit/export", handle)
    partial.replace(out_path)
    lines = out_path.read_bytes().count(b"\n")
    if out.as_json:
        out.json({"path": str(out_path), "bytes": size, "lines": lines})
    else:
        out.text(f"Wrote {lines} lines ({size} bytes) to {safe(str(out_path))}.")


def _load_public_key(path: Path) -> Ed25519PublicKey:
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        key = load_pem_public_key(data)
    else:
        try:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(data.strip(), validate=True))
        except (binascii.Error, ValueError):
            raise click.BadParameter("not a PEM or base64 Ed25519 public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise click.BadParameter("the public key is not an Ed25519 key")
    return key


@audit.command("verify")
@click.argument("export_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--public-key",
    "key_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The hub's audit.pub (PEM) or raw key in base64. Without it, the key written in the "
    "export is used, which proves integrity only against accidents, not against forgery.",
)
@_json_option
def audit_verify(export_file: Path, key_path: Path | None, as_json: bool) -> None:
    """Verify an export offline; exit 0 when intact, 3 with the first bad position if not."""
    out = Output(as_json=as_json)
    key = _load_public_key(key_path) if key_path is not None else None
    started = time.perf_counter()
    with export_file.open("rb") as handle:
        report = verify_export(handle, key)
    seconds = time.perf_counter() - started
    result = {
        "intact": report.intact,
        "records": report.records,
        "checkpoints": report.checkpoints,
        "first_bad_position": report.first_bad_position,
        "line": report.line,
        "problem": report.problem,
        "root": report.root.hex() if report.root is not None else None,
        "public_key": "given" if key is not None else "from the export (self-asserted)",
        "key_id": report.key_id,
        "seconds": round(seconds, 3),
    }
    if as_json:
        out.json(result)
    elif report.intact:
        out.text(
            f"Intact: {report.records} records, {report.checkpoints} signed checkpoint(s), "
            f"root {result['root']} (public key: {result['public_key']})."
        )
    else:
        where = (
            f"record position {report.first_bad_position} (line {report.line})"
            if report.first_bad_position is not None
            else f"line {report.line}"
        )
        out.text(f"NOT INTACT at {where}: {safe(report.problem or '')}")
    if not report.intact:
        raise click.exceptions.Exit(EXIT_NOT_INTACT)


@audit.command("tail")
@click.option("--start", type=click.IntRange(min=0), default=None, help="First position.")
@click.option("--follow/--no-follow", default=True, show_default=True)
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True)
@_client_options
def audit_tail(
    client: HubClient, out: Output, start: int | None, follow: bool, interval: float
) -> None:
    """Print audit records as they are committed (the last 20 first, unless --start)."""
    position = _tail_start(client) if start is None else start
    while True:
        page = client.request("GET", "/audit/records", query={"start": position, "limit": 500})
        for record in page["records"]:
            if out.as_json:
                out.json_line(record)
            else:
                r = record["record"]
                out.text(
                    f"{r['seq']:>8} {r['actor_kind']}:{safe(r['actor'])} {safe(r['action'])} "
                    f"{safe(r['target'])} {r['outcome']} from {safe(r['source'])} "
                    f"({safe(r['reason'])})"
                )
        position = page["next_start"]
        if not follow:
            return
        if not page["records"]:
            time.sleep(interval)


def _tail_start(client: HubClient) -> int:
    # The last 20 records of the log as it is now (the checkpoint endpoint signs one if needed).
    try:
        size = int(client.request("GET", "/audit/checkpoint")["tree_size"])
    except APIError as exc:
        if exc.status == 404:  # an empty log has no checkpoint yet
            return 0
        raise
    return max(0, size - 20)
