"""``ironhub keys``: the custody of the CA keys and the key-encryption key (local commands).

Entry points only: the rules are :mod:`ironhub.custody`. These commands work on the data
directory and its configured key source (files or a PKCS#11 token), not through the API, so
they run on the hub's host with access to its data directory and PIN. They never print a
secret: no key, no PIN, no KEK.

Exit codes follow :mod:`ironhub.cli.main`: ``keys status`` exits 0 when the keys open (the
hub could start on them) and 2 when they do not (the problem is printed); ``keys init-token``
exits 2 when the configuration or token is unusable.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.text import Text

from ironhub.cli.main import Output, _data_option, _fail, _json_option, cli, safe
from ironhub.errors import ConfigError

if TYPE_CHECKING:
    from ironhub.custody import CertificateSummary

__all__ = ["keys"]


@cli.group()
def keys() -> None:
    """Custody of the CA keys and the key-encryption key (files or a PKCS#11 token)."""


def _certificate(summary: CertificateSummary | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    return {
        "subject": summary.subject,
        "not_after": summary.not_after.isoformat(),
        "sha256_fingerprint": summary.sha256_fingerprint,
        "expired": summary.expired,
    }


@keys.command("status")
@_data_option
@_json_option
def keys_status(data_dir: Path, as_json: bool) -> None:
    """Show where the keys are, which exist, and whether the hub could open them."""
    # Imported here: client commands must not pay for (or depend on) the PKCS#11 module.
    from ironhub.config import load_config  # noqa: PLC0415
    from ironhub.custody import describe_key_material  # noqa: PLC0415

    out = Output(as_json=as_json)
    try:
        status = describe_key_material(load_config(data_dir))
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    result = {
        "backend": status.backend,
        "data_dir": str(status.data_dir),
        "files": dict(status.files),
        "hub_ca": _certificate(status.hub_ca),
        "device_ca": _certificate(status.device_ca),
        "token_label": status.token_label,
        "token_keys": dict(status.token_keys) if status.token_keys is not None else None,
        "ready": status.ready,
        "problem": status.problem,
    }
    if as_json:
        out.json(result)
    else:
        _print_status(out, result)
    if not status.ready:
        raise click.exceptions.Exit(2)


def _print_status(out: Output, result: dict[str, Any]) -> None:
    pairs: list[tuple[str, object]] = [
        ("Backend", result["backend"]),
        ("Data directory", result["data_dir"]),
    ]
    if result["token_label"] is not None:
        pairs.append(("Token", result["token_label"]))
    for name, what in (("hub_ca", "Hub CA"), ("device_ca", "Device CA")):
        cert = result[name]
        if cert is None:
            pairs.append((what, "-"))
        else:
            state = " (EXPIRED)" if cert["expired"] else ""
            pairs.append((what, f"{cert['subject']}, expires {cert['not_after']}{state}"))
            pairs.append((f"{what} SHA-256", cert["sha256_fingerprint"]))
    out.fields(pairs)
    rows: list[tuple[object, ...]] = [
        (name, "file", "present" if present else "-") for name, present in result["files"].items()
    ]
    token_keys = result["token_keys"]
    if token_keys is not None:
        rows.extend(
            (label, "token key", "present" if present else "-")
            for label, present in token_keys.items()
        )
    out.text("")
    out.table(("NAME", "KIND", "STATE"), rows)
    out.text("")
    if result["ready"]:
        out.text(Text("Ready: the hub can open its keys.", style="green"))
    else:
        out.text(Text("NOT READY: ", style="bold red"), safe(result["problem"]))


@keys.command("init-token")
@_data_option
@_json_option
def keys_init_token(data_dir: Path, as_json: bool) -> None:
    """Create the hub's keys in the configured PKCS#11 token before the first start.

    Creates ironhub-ca and ironhub-device-ca (EC P-256) and ironhub-kek (AES-256), all
    sensitive and non-extractable, unless they exist. The first `ironhub init` or `serve`
    certifies them. A key the data directory already uses is never re-made.
    """
    from ironhub.config import load_config  # noqa: PLC0415 - see keys_status
    from ironhub.custody import (  # noqa: PLC0415
        CA_KEY_LABEL,
        DEVICE_CA_KEY_LABEL,
        KEK_KEY_LABEL,
        prepare_token,
    )

    out = Output(as_json=as_json)
    try:
        config = load_config(data_dir)
        created = prepare_token(config)
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    labels = (CA_KEY_LABEL, DEVICE_CA_KEY_LABEL, KEK_KEY_LABEL)
    if as_json:
        out.json(
            {
                "token_label": config.keys.pkcs11_token_label,
                "created": list(created),
                "present": [label for label in labels if label not in created],
            }
        )
        return
    out.table(
        ("KEY", "STATE"),
        [(label, "created" if label in created else "already present") for label in labels],
    )
    out.text(f"Token {safe(config.keys.pkcs11_token_label)} is ready for `ironhub init`.")
