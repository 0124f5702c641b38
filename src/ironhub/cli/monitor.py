"""Security alerts and maintenance windows in the CLI (issue 6).

``ironhub alerts list|show|ack|resolve`` and ``ironhub maintenance open ID --for DURATION``.

Entry points only: the rules are the hub's (:mod:`ironhub.monitor`), the HTTP calls
:class:`~ironhub.cli.client.HubClient`'s. Ending a device's quarantine is ``ironhub device
release ID``, with the other device state commands (:mod:`ironhub.cli.main`).

Alert summaries and details come from what devices sent; they are printed through
:func:`~ironhub.cli.main.safe` like every other device-controlled text.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from ironhub.cli.main import Output, _client_options, _when, cli, safe
from ironhub.cli.provisioning import _DURATION_TYPE, _after_option, _limit_option, _pages, _quote

if TYPE_CHECKING:
    from ironhub.cli.client import HubClient

__all__ = ["alerts", "maintenance"]

_STATES = ("open", "acknowledged", "resolved")
_ALERT_COLUMNS = (
    "ALERT",
    "SEVERITY",
    "STATE",
    "TYPE",
    "DEVICE",
    "COUNT",
    "LAST SEEN (UTC)",
    "SUMMARY",
)


def _alert_path(alert_id: str, *rest: str) -> str:
    return "/".join(("/alerts", _quote(alert_id, "alert id"), *rest))


def _alert_rows(items: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    return [
        (
            a["alertId"],
            a["severity"],
            a["state"],
            a["alertType"],
            a["deviceId"] or "-",
            a["count"],
            _when(a["lastSeenAt"]),
            a["summary"],
        )
        for a in items
    ]


def _show_alert(out: Output, a: dict[str, Any]) -> None:
    pairs: list[tuple[str, object]] = [
        ("Alert", a["alertId"]),
        ("Type", a["alertType"]),
        ("Severity", a["severity"]),
        ("State", a["state"]),
        ("Device", a["deviceId"] or "- (not about one device)"),
        ("Detector", a["detector"]),
        ("Summary", a["summary"]),
        ("Findings", a["count"]),
        ("Created (UTC)", _when(a["createdAt"])),
        ("Last seen (UTC)", _when(a["lastSeenAt"])),
        ("Updated (UTC)", _when(a["updatedAt"])),
        ("Acknowledged by", a["acknowledgedBy"] or "-"),
        ("Resolved by", a["resolvedBy"] or "-"),
        ("Actions taken", ", ".join(a["actions"]) or "-"),
        # Message-log sequence numbers: `ironhub messages list --after SEQ-1 --limit 1`.
        ("Evidence (seq)", ", ".join(str(seq) for seq in a["evidence"]) or "-"),
        ("Details", json.dumps(a["details"], sort_keys=True, ensure_ascii=True)),
    ]
    out.fields(pairs)


@cli.group()
def alerts() -> None:
    """Security alerts raised by the hub's monitor: list, show, acknowledge, resolve."""


@alerts.command("list")
@click.option("--device", "device_id", default=None, help="Only this device's (or DEVICE/MODULE).")
@click.option("--state", type=click.Choice(_STATES), default=None, help="Only this state.")
@_after_option
@_limit_option
@_client_options
def alerts_list(
    *,
    client: HubClient,
    out: Output,
    device_id: str | None,
    state: str | None,
    after: str | None,
    limit: int | None,
) -> None:
    """List alerts, oldest first."""
    items, cursor = _pages(
        client,
        "/alerts",
        "alerts",
        query={"device": device_id, "state": state},
        after=after,
        limit=limit,
    )
    if out.as_json:
        out.json({"alerts": items, "nextAfter": cursor})
    elif not items:
        out.text("No alerts.")
    else:
        out.table(_ALERT_COLUMNS, _alert_rows(items))


@alerts.command("show")
@click.argument("alert_id")
@_client_options
def alerts_show(client: HubClient, out: Output, alert_id: str) -> None:
    """Show an alert: its evidence, details and the actions taken."""
    answer = client.request("GET", _alert_path(alert_id))
    if out.as_json:
        out.json(answer)
    else:
        _show_alert(out, answer)


def _change(client: HubClient, out: Output, alert_id: str, action: str) -> None:
    answer = client.request("POST", _alert_path(alert_id, action), json_body={})
    if out.as_json:
        out.json(answer)
        return
    out.text(f"Alert {safe(answer['alertId'])} is now {safe(answer['state'])}.")
    if answer["state"] == "resolved" and "quarantine" in answer["actions"] and answer["deviceId"]:
        out.text(
            f"A quarantine it caused stays until `ironhub device release "
            f"{safe(answer['deviceId'])}`."
        )


@alerts.command("ack")
@click.argument("alert_id")
@_client_options
def alerts_ack(client: HubClient, out: Output, alert_id: str) -> None:
    """Acknowledge an alert (recorded with your name)."""
    _change(client, out, alert_id, "ack")


@alerts.command("resolve")
@click.argument("alert_id")
@_client_options
def alerts_resolve(client: HubClient, out: Output, alert_id: str) -> None:
    """Resolve an alert (final); a quarantine it caused stays until released."""
    _change(client, out, alert_id, "resolve")


@cli.group()
def maintenance() -> None:
    """Maintenance windows: planned physical work that raises no USB or console-login alert."""


@maintenance.command("open")
@click.argument("device_id", metavar="ID")
@click.option(
    "--for",
    "duration",
    type=_DURATION_TYPE,
    required=True,
    help="How long the window stays open, e.g. 30m, 2h (at most 7d).",
)
@_client_options
def maintenance_open(client: HubClient, out: Output, device_id: str, duration: int) -> None:
    """Open a maintenance window on a device, starting now."""
    answer = client.request(
        "POST",
        f"/devices/{_quote(device_id, 'device id')}/maintenance",
        json_body={"durationSeconds": duration},
    )
    if out.as_json:
        out.json(answer)
        return
    out.fields(
        [
            ("Device", safe(answer["deviceId"])),
            ("From (UTC)", _when(answer["startsAt"])),
            ("Until (UTC)", _when(answer["endsAt"])),
        ]
    )
