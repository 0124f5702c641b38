"""The fleet audit in the CLI: ``ironhub audit-fleet`` (issue 6).

An entry point only: the checks are :mod:`ironhub.monitor.fleet`'s, run by the hub behind
``GET /fleet/audit``. The exit code makes it usable from cron or CI: 0 when nothing at or
above ``--min-severity`` (default ``high``) was found, :data:`EXIT_FINDINGS` (5) otherwise.
Every finding is printed whatever its severity; ``--min-severity`` only decides the exit code.

Subjects name identities, which devices chose at provisioning: they are printed through
:func:`~ironhub.cli.main.safe` like every other device-controlled text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import click

from ironhub.cli.main import Output, _client_options, _when, cli

if TYPE_CHECKING:
    from ironhub.cli.client import HubClient

__all__ = ["EXIT_FINDINGS", "audit_fleet"]

#: The exit code when a finding at or above ``--min-severity`` exists.
EXIT_FINDINGS: Final = 5
_SEVERITIES: Final = ("low", "medium", "high", "critical")
_COLUMNS: Final = ("SEVERITY", "CHECK", "SUBJECT", "PROBLEM", "FIX")


def _rank(severity: str) -> int:
    return _SEVERITIES.index(severity)


def _rows(findings: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    return [(f["severity"], f["check"], f["subject"], f["problem"], f["fix"]) for f in findings]


@cli.command("audit-fleet")
@click.option(
    "--min-severity",
    type=click.Choice(_SEVERITIES),
    default="high",
    show_default=True,
    help="Exit with 5 when a finding at or above this severity exists.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=30,
    show_default=True,
    help="Report certificates that expire within this many days.",
)
@_client_options
def audit_fleet(*, client: HubClient, out: Output, min_severity: str, days: int) -> None:
    """Audit the fleet and the hub for risky configuration, with the fix for each finding."""
    answer = client.request("GET", "/fleet/audit", query={"days": days})
    findings: list[dict[str, Any]] = answer["findings"]
    if out.as_json:
        out.json(answer)
    elif not findings:
        out.text(f"No findings ({answer['devices']} identities checked).")
    else:
        out.table(_COLUMNS, _rows(findings))
        out.text(
            f"{len(findings)} finding(s), {answer['devices']} identities checked at "
            f"{_when(answer['checkedAt'])} UTC."
        )
    if any(_rank(f["severity"]) >= _rank(min_severity) for f in findings):
        raise click.exceptions.Exit(EXIT_FINDINGS)
