"""The exposure and compliance reports in the CLI: ``ironhub report exposure|compliance``.

An entry point only: the rules are :mod:`ironhub.monitor.compliance`'s, run by the hub behind
``GET /reports/exposure`` and ``GET /reports/compliance``. ``report compliance`` exits with
:data:`~ironhub.cli.fleet.EXIT_FINDINGS` (5) when any provision fails, so it can gate a cron job
or a CI step; ``report exposure`` only describes and exits 0.

Other report commands (``report vulnerable``) join the :data:`report` group from their own
modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import click

from ironhub.cli.fleet import EXIT_FINDINGS
from ironhub.cli.main import Output, _client_options, _when, cli

if TYPE_CHECKING:
    from ironhub.cli.client import HubClient

__all__ = ["compliance", "exposure", "report"]

_EXPOSURE_COLUMNS: Final = ("KIND", "NAME", "WHERE", "AUTHENTICATION", "NOTES")
_COMPLIANCE_COLUMNS: Final = ("FRAMEWORK", "REF", "STATUS", "TITLE", "EVIDENCE", "FIX")


@cli.group()
def report() -> None:
    """Reports on the hub: what it exposes, and how it measures up to ETSI and NIST."""


@report.command("exposure")
@_client_options
def exposure(*, client: HubClient, out: Output) -> None:
    """Every enabled listener, protocol and API route, with what authenticates it."""
    answer = client.request("GET", "/reports/exposure")
    if out.as_json:
        out.json(answer)
        return
    entries: list[dict[str, Any]] = answer["entries"]
    out.table(
        _EXPOSURE_COLUMNS,
        [(e["kind"], e["name"], e["where"], e["authentication"], e["notes"]) for e in entries],
    )
    public = sum(1 for e in entries if e["kind"] == "route" and e["authentication"] == "none")
    out.text(
        f"{len(entries)} entries ({public} public routes) at {_when(answer['checkedAt'])} UTC."
    )


@report.command("compliance")
@_client_options
def compliance(*, client: HubClient, out: Output) -> None:
    """ETSI EN 303 645 and NISTIR 8259A against the live configuration, with evidence.

    Exits with 5 when any provision or capability fails (0 when all pass).
    """
    answer = client.request("GET", "/reports/compliance")
    provisions: list[dict[str, Any]] = answer["provisions"]
    if out.as_json:
        out.json(answer)
    else:
        out.table(
            _COMPLIANCE_COLUMNS,
            [
                (
                    p["framework"],
                    p["ref"],
                    p["status"].upper(),
                    p["title"],
                    "; ".join(p["evidence"]),
                    p["fix"] or "-",
                )
                for p in provisions
            ],
        )
        failing = ", ".join(
            f"{'ETSI' if p['framework'].startswith('ETSI') else 'NIST'} {p['ref']}"
            for p in provisions
            if p["status"] == "fail"
        )
        out.text(
            f"{answer['passed']} of {len(provisions)} pass"
            + (f"; failing: {failing}" if failing else "")
            + f" (checked at {_when(answer['checkedAt'])} UTC)."
        )
    if answer["failed"]:
        raise click.exceptions.Exit(EXIT_FINDINGS)
