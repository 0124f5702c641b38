"""The ``ironhub`` command: ``init`` and ``serve`` run a hub, every other command calls its API.

No logic lives here beyond input and output (ARCHITECTURE.md): ``init`` and ``serve`` call
:mod:`ironhub.server`, the other commands call the operator API through
:class:`~ironhub.cli.client.HubClient`. Output is a rich table or text for humans, or plain
JSON with ``--json`` (``messages tail --json`` writes one JSON object per line).

Exit codes: 0 success, 1 API or network error, 2 usage error (including local files that are
missing or unusable, and malformed JSON arguments), 3 authentication error (no token, token
refused, role insufficient), 4 the device is offline or does not listen for direct methods,
5 the device did not answer a direct method in time (for ``audit-fleet``: findings at or above
``--min-severity``), 3 also for ``audit verify`` when the log does not verify. Errors are one
line on stderr,
``error: ...``, never a traceback.

Identities: ``twin``, ``device invoke``, ``device release`` and ``c2d list``/``purge`` take
``DEVICE`` or ``DEVICE/MODULE``.

Where the client commands get their settings, first match wins:

* API URL: ``--api``, ``IRONHUB_API``, ``https://127.0.0.1:8443``;
* token: ``--token-file``, ``IRONHUB_TOKEN``, ``IRONHUB_TOKEN_FILE``, then the session file
  written by ``ironhub login`` (:func:`session_file`); a token file must not be accessible by
  group or others;
* CA certificate: ``--ca``, ``IRONHUB_CA``, ``<data dir>/ca.pem`` (data dir: ``--data``,
  ``IRONHUB_DATA``, ``./ironhub-data``), else the system trust store.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import unicodedata
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ironhub import __version__
from ironhub.cli.client import (
    DEFAULT_API_URL,
    ClientAuthError,
    ClientError,
    ClientUsageError,
    DeviceOfflineError,
    DeviceTimeoutError,
    HubClient,
    identity_path,
    read_token_file,
)
from ironhub.errors import ConfigError, IronhubError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from ironhub.server import ServeInfo

__all__ = ["cli", "main"]

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "ironhub-data"
_AUTH_KINDS = ("sas", "x509-ca", "x509-thumbprint")
_KEY_SLOTS = ("primary", "secondary")
_STREAMS = ("telemetry", "security", "lifecycle", "feedback")
_PAYLOAD_PREVIEW_CHARS = 60
_PIPE_WIDTH = 1000


# --- output ------------------------------------------------------------------------------------


def safe(value: object) -> str:
    """``value`` as text with control and format characters escaped.

    Device ids, property bags and payloads come from devices; printed raw they could move the
    cursor, rewrite earlier lines or hide text (ANSI escapes, bidi overrides). JSON output is
    escaped by the encoder instead.
    """
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable() or char == " ":
            out.append(char)
        elif unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def _when(timestamp: object) -> str:
    if not isinstance(timestamp, int | float):
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


class Output:
    """Where a command writes: JSON for machines, rich for humans."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        # soft_wrap keeps long connection strings and keys on one line, copy-pasteable; when
        # the output is not a terminal (a pipe, a file), tables are as wide as their content
        # instead of being cut at 80 columns, so ids and fingerprints survive ``grep``.
        self.console = Console(highlight=False, soft_wrap=True)
        if not self.console.is_terminal:
            self.console = Console(highlight=False, soft_wrap=True, width=_PIPE_WIDTH)

    def json(self, value: object) -> None:
        """Print ``value`` as indented JSON."""
        click.echo(json.dumps(value, indent=2, sort_keys=True))

    def json_line(self, value: object) -> None:
        """Print ``value`` as one line of JSON (JSON Lines)."""
        click.echo(json.dumps(value, sort_keys=True))

    def text(self, *parts: str | Text) -> None:
        """Print a line; ``str`` parts are taken literally (no rich markup)."""
        line = Text()
        for part in parts:
            line.append(part if isinstance(part, Text) else Text(part))
        self.console.print(line)

    def table(self, columns: tuple[str, ...], rows: Sequence[Sequence[object]]) -> None:
        """Print a table whose cells are taken literally."""
        table = Table(show_edge=False, box=None, pad_edge=False)
        for column in columns:
            # Fold rather than truncate: an id cut with "…" cannot be pasted back.
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(Text(safe(cell)) for cell in row))
        self.console.print(table)

    def fields(self, pairs: list[tuple[str, object]]) -> None:
        """Print ``name: value`` lines, aligned."""
        width = max(len(name) for name, _ in pairs)
        for name, value in pairs:
            self.text(Text(f"{name + ':':<{width + 1}} ", style="bold"), safe(value))


def _fail(message: str, code: int) -> click.exceptions.Exit:
    click.echo(f"error: {safe(message)}", err=True)
    return click.exceptions.Exit(code)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn expected failures into one line on stderr and an exit code."""
    try:
        yield
    except ClientError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None


# --- shared options ----------------------------------------------------------------------------


def _refuse_constant(name: str) -> object:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


class JSONArgument(click.ParamType[Any]):
    """A JSON text given on the command line, decoded; malformed JSON is a usage error (2).

    The error never repeats the text (it may hold a secret) nor a traceback.
    """

    name = "JSON"

    def __init__(self, *, object_only: bool) -> None:
        self.object_only = object_only

    def convert(
        self,
        value: Any,  # noqa: ANN401 - click passes the raw text (or a default)
        param: click.Parameter | None,
        ctx: click.Context | None,
    ) -> Any:  # noqa: ANN401 - any JSON value
        """Decode ``value``.

        Raises:
            click.BadParameter: not JSON, or not an object when one is required.
        """
        if not isinstance(value, str):
            return value
        try:
            decoded = json.loads(value, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            self.fail(f"not valid JSON ({exc.msg} at character {exc.pos})", param, ctx)
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            self.fail(f"not valid JSON ({reason})", param, ctx)
        if self.object_only and not isinstance(decoded, dict):
            self.fail('must be a JSON object, like \'{"name": "value"}\'', param, ctx)
        return decoded


_JSON_OBJECT = JSONArgument(object_only=True)
_JSON_VALUE = JSONArgument(object_only=False)


def _properties(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    """``--property K=V`` options as a dict.

    Raises:
        click.BadParameter: an item without ``=`` or with an empty key, or a repeated key.
    """
    properties: dict[str, str] = {}
    for item in values:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise click.BadParameter("expected K=V")
        if key in properties:
            raise click.BadParameter(f"property {safe(key)!r} is given twice")
        properties[key] = value
    return properties


def with_options(
    func: Callable[..., None], options: tuple[Callable[[Any], Any], ...]
) -> Callable[..., None]:
    """Apply click options to ``func`` so that ``--help`` lists them in the given order."""
    command = func
    for option in reversed(options):
        command = option(command)
    return command


def _message_options(func: Callable[..., None]) -> Callable[..., None]:
    """``--body``, ``--property``, ``--ttl`` and the system properties of a message to send."""
    options = (
        click.option("--body", required=True, help="Message body (sent as UTF-8 text)."),
        click.option(
            "--property",
            "properties",
            multiple=True,
            metavar="K=V",
            callback=_properties,
            help="Application property (repeatable).",
        ),
        click.option(
            "--ttl",
            "ttl_seconds",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="Time to live in seconds (default: the hub's, 3600).",
        ),
        click.option("--message-id", default=None, help="Message id (default: a random one)."),
        click.option("--correlation-id", default=None, help="Correlation id ($.cid)."),
        click.option("--content-type", default=None, help="Content type ($.ct)."),
        click.option("--content-encoding", default=None, help="Content encoding ($.ce)."),
    )
    return with_options(func, options)


def _confirm(yes: bool, question: str, action: str) -> None:
    """Ask ``question`` unless ``--yes``; refuse without a terminal to ask on.

    Raises:
        ClientUsageError: no ``--yes`` and stdin is not a terminal.
        click.Abort: the operator said no.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise ClientUsageError(f"refusing to {action} without --yes (no terminal to ask)")
    click.confirm(question, abort=True)


_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables."
)
_data_option = click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="IRONHUB_DATA",
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Hub data directory (env IRONHUB_DATA).",
)


#: The API address and its CA, shared by every client command (token or not).
api_option = click.option(
    "--api",
    envvar="IRONHUB_API",
    default=DEFAULT_API_URL,
    show_default=True,
    help="Operator API URL (env IRONHUB_API).",
)
ca_option = click.option(
    "--ca",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="IRONHUB_CA",
    help="Hub CA certificate (env IRONHUB_CA; default <data dir>/ca.pem).",
)


def _client_options(func: Callable[..., None]) -> Callable[..., None]:
    """Add ``--api``, ``--ca``, ``--token-file``, ``--data`` and ``--json`` to a client command.

    The command receives ``client: HubClient`` and ``out: Output`` instead of those options,
    and runs inside :func:`_errors`.
    """

    @functools.wraps(func)
    def wrapper(
        *,
        api: str,
        ca: Path | None,
        token_file: Path | None,
        data_dir: Path,
        as_json: bool,
        **kwargs: Any,  # noqa: ANN401 - the command's own options
    ) -> None:
        out = Output(as_json=as_json)
        with _errors():
            client = _make_client(api=api, ca=ca, token_file=token_file, data_dir=data_dir)
            func(client=client, out=out, **kwargs)

    options = (
        api_option,
        ca_option,
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


def session_file() -> Path:
    """Where ``ironhub login`` keeps the session token.

    ``$IRONHUB_SESSION_FILE``, else ``$XDG_CONFIG_HOME/ironhub/session``, else
    ``~/.config/ironhub/session``.
    """
    explicit = os.environ.get("IRONHUB_SESSION_FILE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ironhub" / "session"


def _make_client(
    *, api: str, ca: Path | None, token_file: Path | None, data_dir: Path
) -> HubClient:
    """Resolve token and CA as the module docstring says.

    Raises:
        ClientAuthError: no token is configured, or the token file is unusable.
        ClientUsageError: the URL or the CA file is unusable.
    """
    token: str | None
    if token_file is not None:
        token = read_token_file(token_file)
    elif os.environ.get("IRONHUB_TOKEN"):
        token = os.environ["IRONHUB_TOKEN"].strip()
    elif os.environ.get("IRONHUB_TOKEN_FILE"):
        token = read_token_file(Path(os.environ["IRONHUB_TOKEN_FILE"]))
    elif session_file().exists():
        token = read_token_file(session_file())
    else:
        raise ClientAuthError(
            "no API token: run `ironhub login`, set IRONHUB_TOKEN or pass --token-file "
            "(the first admin token is printed by `ironhub init`)"
        )
    if ca is None:
        default_ca = data_dir / "ca.pem"
        ca = default_ca if default_ca.is_file() else None
    return HubClient(api, token, ca_file=ca)


# --- the command group -------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ironhub")
def cli() -> None:
    """Ironhub: a security-first IoT hub for unmodified Azure IoT device SDKs."""


def main() -> None:
    """Entry point of the ``ironhub`` console script."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cli(prog_name="ironhub")


# --- init and serve ----------------------------------------------------------------------------


def _hostnames_option(func: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--hostname",
        "hostnames",
        multiple=True,
        help="Host name the server certificate covers (repeatable; the first is the HostName "
        "of connection strings).",
    )(func)


@cli.command()
@_data_option
@_hostnames_option
@_json_option
def init(data_dir: Path, hostnames: tuple[str, ...], as_json: bool) -> None:
    """Create the data directory: CA, server certificate, key-encryption key, database.

    The first admin API token is printed once, here; store it.
    """
    # Imported here: client commands must not pay for (or depend on) the whole hub.
    from ironhub.server import init_hub  # noqa: PLC0415

    out = Output(as_json=as_json)
    try:
        result = init_hub(data_dir, hostnames)
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    except (IronhubError, OSError) as exc:
        raise _fail(str(exc), 1) from None
    if as_json:
        out.json(
            {
                "created": result.created,
                "data_dir": str(result.data_dir),
                "hostname": result.hostname,
                "ca_path": str(result.ca_path),
                "first_admin_token": result.first_admin_token,
                "first_admin_password": result.first_admin_password,
                "mqtt": result.mqtt,
                "api_url": result.api_url,
            }
        )
        return
    verb = "Initialised" if result.created else "Already initialised:"
    out.text(f"{verb} hub data in {result.data_dir}")
    out.fields(
        [
            ("Host name", result.hostname),
            ("CA certificate", result.ca_path),
            ("MQTT", result.mqtt),
            ("API", result.api_url),
        ]
    )
    if result.first_admin_token is not None:
        out.text("")
        out.text(Text("First admin token (shown once, store it now):", style="bold yellow"))
        out.text(result.first_admin_token)
    _first_admin_password(out, result.first_admin_password)


def _first_admin_password(out: Output, password: str | None) -> None:
    if password is None:
        return
    out.text("")
    out.text(
        Text(
            "Operator 'admin', one-time password (shown once; change it at the first login):",
            style="bold yellow",
        )
    )
    out.text(password)
    out.text("  ironhub login --name admin   then   ironhub operator rotate-password")


def _banner(out: Output, info: ServeInfo) -> None:
    """The start-up banner: where the hub is, and what to type next."""
    out.text(Text("ironhub is running", style="bold green"))
    out.fields(
        [
            ("Host name", info.hostname),
            ("CA certificate", info.ca_path),
            ("MQTT (devices)", info.mqtt),
            ("API (operators)", info.api_url),
            *(
                [("Provisioning (DPS)", f"{info.hostname}, ID scope {info.id_scope}")]
                if info.id_scope
                else []
            ),
        ]
    )
    token = info.first_admin_token
    if token is not None:
        out.text("")
        out.text(Text("First admin token (shown once, store it now):", style="bold yellow"))
        out.text(token)
    _first_admin_password(out, info.first_admin_password)
    out.text("")
    out.text(Text("Next, in another shell:", style="bold"))
    out.text(f"  export IRONHUB_TOKEN={token if token is not None else '<your admin token>'}")
    out.text(f"  export IRONHUB_API={info.api_url}")
    out.text(f"  export IRONHUB_CA={info.ca_path}")
    out.text("  ironhub device create dev1")
    out.text("")
    out.text(Text("Then connect it with the unmodified Azure IoT device SDK:", style="bold"))
    for line in (
        "from azure.iot.device import IoTHubDeviceClient, Message",
        'cs = "<connection string printed by: ironhub device create dev1>"',
        (
            "client = IoTHubDeviceClient.create_from_connection_string("
            f'cs, server_verification_cert=open("{info.ca_path}").read())'
        ),
        "client.connect()",
        'client.send_message(Message("hello"))',
        "client.shutdown()",
    ):
        out.text(f"  {line}")
    out.text("")
    out.text("Watch its messages: ironhub messages tail")


@cli.command()
@_data_option
@click.option("--mqtt", "mqtt_bind", metavar="HOST:PORT", help="Device endpoint address.")
@click.option("--api", "api_bind", metavar="HOST:PORT", help="Operator API address.")
@_hostnames_option
@_json_option
def serve(
    data_dir: Path,
    mqtt_bind: str | None,
    api_bind: str | None,
    hostnames: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run the hub (initialising the data directory first if it is new)."""
    from ironhub.config import load_config  # noqa: PLC0415 - see init
    from ironhub.server import serve as serve_hub  # noqa: PLC0415

    out = Output(as_json=as_json)
    try:
        config = load_config(data_dir, hostnames=hostnames, mqtt_bind=mqtt_bind, api_bind=api_bind)
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None

    def on_ready(info: ServeInfo) -> None:
        if as_json:
            out.json_line(
                {
                    "hostname": info.hostname,
                    "ca_path": str(info.ca_path),
                    "mqtt": info.mqtt,
                    "api_url": info.api_url,
                    "first_admin_token": info.first_admin_token,
                    "first_admin_password": info.first_admin_password,
                    "id_scope": info.id_scope,
                }
            )
        else:
            _banner(out, info)
        sys.stdout.flush()

    try:
        serve_hub(config, on_ready=on_ready)
    except KeyboardInterrupt:
        return
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    except (IronhubError, OSError) as exc:
        raise _fail(str(exc), 1) from None


# --- devices -----------------------------------------------------------------------------------


@cli.group()
def device() -> None:
    """Device identities: create, list, show, rotate keys, enable, disable, release, delete."""


def _device_rows(devices: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    def connected(value: object) -> str:
        return "-" if value is None else ("yes" if value else "no")

    return [
        (
            d["device_id"],
            d["auth"],
            d["state"],
            connected(d.get("connected")),
            d["version"],
            _when(d["updated_at"]),
        )
        for d in devices
    ]


_DEVICE_COLUMNS = ("DEVICE", "AUTH", "STATE", "CONNECTED", "VERSION", "UPDATED (UTC)")


def _show_device(out: Output, d: dict[str, Any]) -> None:
    pairs: list[tuple[str, object]] = [("Device", d["device_id"])]
    if d.get("module_id"):
        pairs.append(("Module", d["module_id"]))
    pairs += [
        ("Auth", d["auth"]),
        ("State", d["state"]),
        ("Connected", {None: "unknown", True: "yes", False: "no"}[d.get("connected")]),
        ("Version", d["version"]),
        ("Created (UTC)", _when(d["created_at"])),
        ("Updated (UTC)", _when(d["updated_at"])),
    ]
    if d.get("primary_thumbprint"):
        pairs.append(("Primary thumbprint", d["primary_thumbprint"]))
    if d.get("secondary_thumbprint"):
        pairs.append(("Secondary thumbprint", d["secondary_thumbprint"]))
    out.fields(pairs)


def _read_text_file(path: Path, what: str) -> str:
    """Read a PEM file given on the command line.

    Raises:
        ClientUsageError: the file cannot be read as text.
    """
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientUsageError(f"cannot read {what} {path}: {exc}") from None


def _device_path(device_id: str, *rest: str) -> str:
    # Device ids may contain characters that are special in URLs (``%``, ``?``, ``#``).
    return "/".join(("/devices", urllib.parse.quote(device_id, safe=""), *rest))


@device.command("create")
@click.argument("device_id")
@click.option("--auth", type=click.Choice(_AUTH_KINDS), default="sas", show_default=True)
@click.option(
    "--cert",
    "certs",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Certificate (PEM) of an x509-thumbprint device: primary, then optional secondary.",
)
@_client_options
def device_create(
    client: HubClient, out: Output, device_id: str, auth: str, certs: tuple[Path, ...]
) -> None:
    """Create a device; SAS keys and the connection string are shown this once."""
    pems = [_read_text_file(p, "certificate") for p in certs]
    answer = client.request(
        "POST",
        "/devices",
        json_body={"device_id": device_id, "auth": auth, "certificates_pem": pems},
    )
    if out.as_json:
        out.json(answer)
        return
    d = answer["device"]
    out.text(f"Created device {safe(d['device_id'])} ({safe(d['auth'])}).")
    if answer.get("primary_key"):
        out.fields(
            [("Primary key", answer["primary_key"]), ("Secondary key", answer["secondary_key"])]
        )
    for name in ("primary_thumbprint", "secondary_thumbprint"):
        if d.get(name):
            out.fields([(name.replace("_", " ").capitalize(), d[name])])
    if answer.get("connection_string"):
        out.text("Connection string:")
        out.text(safe(answer["connection_string"]))
    if answer.get("primary_key"):
        out.text(Text("The keys are shown only once; store them now.", style="yellow"))


@device.command("list")
@click.option("--after", default=None, help="Start after this device id.")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=None, help="At most this many (default: all)."
)
@_client_options
def device_list(client: HubClient, out: Output, after: str | None, limit: int | None) -> None:
    """List devices ordered by id."""
    devices: list[dict[str, Any]] = []
    cursor = after
    while True:
        page_size = 1000 if limit is None else limit - len(devices)
        page = client.request("GET", "/devices", query={"after": cursor, "limit": page_size})
        devices += page["devices"]
        cursor = page["next_after"]
        if cursor is None or (limit is not None and len(devices) >= limit):
            break
    if out.as_json:
        out.json({"devices": devices, "next_after": cursor})
        return
    if not devices:
        out.text("No devices.")
        return
    out.table(_DEVICE_COLUMNS, _device_rows(devices))


@device.command("show")
@click.argument("device_id")
@_client_options
def device_show(client: HubClient, out: Output, device_id: str) -> None:
    """Show a device (never its keys)."""
    answer = client.request("GET", _device_path(device_id))
    if out.as_json:
        out.json(answer)
    else:
        _show_device(out, answer)


@device.command("rotate-key")
@click.argument("device_id")
@click.option("--key", "slot", type=click.Choice(_KEY_SLOTS), default="primary", show_default=True)
@_client_options
def device_rotate_key(client: HubClient, out: Output, device_id: str, slot: str) -> None:
    """Regenerate one SAS key; the other key keeps working meanwhile."""
    _rotate_key(client, out, _device_path(device_id, "keys", slot, "rotate"), slot)


def _rotate_key(client: HubClient, out: Output, path: str, slot: str) -> None:
    answer = client.request("POST", path)
    if out.as_json:
        out.json(answer)
        return
    out.fields([(f"New {slot} key", answer["key"])])
    out.text("Connection string:")
    out.text(safe(answer["connection_string"]))


def _set_state(client: HubClient, out: Output, device_id: str, action: str) -> None:
    answer = client.request("POST", _device_path(device_id, action))
    if out.as_json:
        out.json(answer)
    else:
        out.text(f"Device {safe(answer['device_id'])} is now {safe(answer['state'])}.")


@device.command("enable")
@click.argument("device_id")
@_client_options
def device_enable(client: HubClient, out: Output, device_id: str) -> None:
    """Allow a device to connect again."""
    _set_state(client, out, device_id, "enable")


@device.command("disable")
@click.argument("device_id")
@_client_options
def device_disable(client: HubClient, out: Output, device_id: str) -> None:
    """Refuse a device; its live connection is dropped."""
    _set_state(client, out, device_id, "disable")


@device.command("release")
@click.argument("identity", metavar="ID")
@_client_options
def device_release(client: HubClient, out: Output, identity: str) -> None:
    """End a quarantine (ID: DEVICE or DEVICE/MODULE); its telemetry is accepted again."""
    answer = client.request("POST", identity_path(identity, "release"))
    if out.as_json:
        out.json(answer)
    elif answer.get("module_id"):
        name = f"{answer['device_id']}/{answer['module_id']}"
        out.text(f"Module {safe(name)} is now {safe(answer['state'])}.")
    else:
        out.text(f"Device {safe(answer['device_id'])} is now {safe(answer['state'])}.")


@device.command("delete")
@click.argument("device_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_client_options
def device_delete(client: HubClient, out: Output, device_id: str, yes: bool) -> None:
    """Delete a device; its live connection is dropped."""
    if not yes:
        if not sys.stdin.isatty():
            raise ClientUsageError("refusing to delete without --yes (no terminal to ask)")
        click.confirm(f"Delete device {safe(device_id)}?", abort=True)
    client.request("DELETE", _device_path(device_id))
    if out.as_json:
        out.json({"deleted": device_id})
    else:
        out.text(f"Deleted device {safe(device_id)}.")


@device.command("connection-string")
@click.argument("device_id")
@click.option("--gateway", metavar="HOST", help="Add GatewayHostName=HOST (the host to dial).")
@click.option("--key", "slot", type=click.Choice(_KEY_SLOTS), default="primary", show_default=True)
@_client_options
def device_connection_string(
    client: HubClient, out: Output, device_id: str, gateway: str | None, slot: str
) -> None:
    """Print the device's connection string (recorded by the hub as a key disclosure)."""
    answer = client.request(
        "GET",
        _device_path(device_id, "connection-string"),
        query={"gateway": gateway, "key": slot},
    )
    if out.as_json:
        out.json(answer)
    else:
        click.echo(safe(answer["connection_string"]))


_INVOKE_EPILOG = (
    "Exit status: 0 when the device answered (whatever status it chose; see the output), "
    "4 when the device is offline or does not listen for direct methods, "
    "5 when it did not answer within --timeout, "
    "1 for other API or network errors, 2 for usage errors (including malformed --payload), "
    "3 for authentication errors."
)


@device.command("invoke", epilog=_INVOKE_EPILOG)
@click.argument("identity", metavar="ID")
@click.argument("method_name", metavar="METHOD")
@click.option(
    "--payload",
    type=_JSON_VALUE,
    default=None,
    help="The method's payload, any JSON value (default: null).",
)
@click.option(
    "--timeout",
    "timeout_seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the answer (the hub allows 1 to 300).",
)
@_client_options
def device_invoke(
    *,
    client: HubClient,
    out: Output,
    identity: str,
    method_name: str,
    payload: Any,  # noqa: ANN401 - any JSON value
    timeout_seconds: float,
) -> None:
    """Invoke direct method METHOD on device ID (or module DEVICE/MODULE) and print its answer.

    Exit status 4: the device is offline or not listening; 5: it did not answer in time.
    """
    try:
        answer = client.invoke_method(
            identity, method_name, payload, timeout_seconds=timeout_seconds
        )
    except DeviceOfflineError as exc:
        raise _fail(f"{exc} (device {identity})", exc.exit_code) from None
    except DeviceTimeoutError as exc:
        raise _fail(f"{exc} (device {identity}, method {method_name})", exc.exit_code) from None
    if out.as_json:
        out.json(answer)
        return
    out.fields([("Status", answer["status"])])
    out.text("Payload:")
    out.text(_pretty(answer["payload"]))


# --- twins -------------------------------------------------------------------------------------


def _pretty(value: object) -> str:
    """Indented JSON for humans; ``ensure_ascii`` escapes every control and bidi character."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=True)


def _twin_identity(document: dict[str, Any]) -> str:
    module = document.get("moduleId")
    return f"{document['deviceId']}/{module}" if module else str(document["deviceId"])


def _show_twin(out: Output, document: dict[str, Any]) -> None:
    properties = document["properties"]
    out.fields([("Twin", _twin_identity(document)), ("Version", document["version"])])
    out.text(Text("Tags:", style="bold"))
    out.text(_pretty(document["tags"]))
    for name in ("desired", "reported"):
        section = dict(properties[name])
        version = section.pop("$version", None)
        out.text(Text(f"{name.capitalize()} ($version {version}):", style="bold"))
        out.text(_pretty(section))


@cli.group()
def twin() -> None:
    """Device and module twins: show, change desired properties and tags, query."""


@twin.command("show")
@click.argument("identity", metavar="ID")
@_client_options
def twin_show(client: HubClient, out: Output, identity: str) -> None:
    """Show the twin of device ID (or module DEVICE/MODULE)."""
    answer = client.get_twin(identity)
    if out.as_json:
        out.json(answer)
    else:
        _show_twin(out, answer)


@twin.command("patch")
@click.argument("identity", metavar="ID")
@click.option(
    "--desired",
    type=_JSON_OBJECT,
    default=None,
    help="Desired-properties patch, a JSON object (JSON merge patch: null deletes), "
    'e.g. \'{"fan": {"speed": 3}}\'.',
)
@click.option("--tags", type=_JSON_OBJECT, default=None, help="Tags patch, a JSON object.")
@click.option(
    "--if-version",
    type=click.IntRange(min=1),
    default=None,
    help="Apply only if the twin is at this version (else the hub refuses: 412).",
)
@_client_options
def twin_patch(
    *,
    client: HubClient,
    out: Output,
    identity: str,
    desired: dict[str, Any] | None,
    tags: dict[str, Any] | None,
    if_version: int | None,
) -> None:
    """Change the desired properties and/or tags of device ID (or module DEVICE/MODULE)."""
    if desired is None and tags is None:
        raise ClientUsageError("nothing to patch: give --desired, --tags or both")
    answer = client.patch_twin(identity, desired=desired, tags=tags, if_version=if_version)
    if out.as_json:
        out.json(answer)
    else:
        out.text(f"Twin {safe(_twin_identity(answer))} is now at version {answer['version']}.")


@twin.command("query")
@click.argument("where")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--after", default="", help="Continue after this identity (a page's next_after).")
@_client_options
def twin_query(client: HubClient, out: Output, where: str, limit: int, after: str) -> None:
    """List twins matching WHERE, e.g. "properties.reported.fw = '1.2'" or "tags.site = 'lab'"."""
    answer = client.query_twins(where, after=after, limit=limit)
    if out.as_json:
        out.json(answer)
        return
    if not answer["twins"]:
        out.text("No matching twins.")
        return
    rows = [
        (
            _twin_identity(t),
            t["version"],
            t["properties"]["desired"].get("$version"),
            t["properties"]["reported"].get("$version"),
            json.dumps(t["tags"], sort_keys=True),
        )
        for t in answer["twins"]
    ]
    out.table(("IDENTITY", "VERSION", "DESIRED $V", "REPORTED $V", "TAGS"), rows)
    if answer.get("next_after"):
        out.text(f"More: --after {safe(answer['next_after'])}")


# --- cloud-to-device messages ------------------------------------------------------------------


def _show_queued(out: Output, answer: dict[str, Any]) -> None:
    target = answer["device_id"]
    if answer.get("module_id"):
        target += f"/{answer['module_id']} input {answer['input_name']}"
    out.text(
        f"Queued message {safe(answer['message_id'])} for {safe(target)} "
        f"(seq {answer['seq']}, {answer['size']} bytes, expires {_when(answer['expires_at'])} UTC)."
    )


@cli.group()
def c2d() -> None:
    """Cloud-to-device messages: queue, list and purge a device's (or module's) messages."""


@c2d.command("send")
@click.argument("identity", metavar="ID")
@_message_options
@_client_options
def c2d_send(
    *,
    client: HubClient,
    out: Output,
    identity: str,
    **message: Any,  # noqa: ANN401 - the options of _message_options
) -> None:
    """Queue a cloud-to-device message for device ID (delivered when it is connected)."""
    _send_message(client, out, identity, input_name=None, message=message)


def _send_message(
    client: HubClient,
    out: Output,
    identity: str,
    *,
    input_name: str | None,
    message: dict[str, Any],
) -> None:
    """Send what :func:`_message_options` collected; show the queued message."""
    system = {k: message.pop(k) for k in ("correlation_id", "content_type", "content_encoding")}
    answer = client.send_cloud_message(
        identity,
        message.pop("body"),
        input_name=input_name,
        system=system,
        **message,
    )
    if out.as_json:
        out.json(answer)
    else:
        _show_queued(out, answer)


@c2d.command("list")
@click.argument("identity", metavar="ID")
@_client_options
def c2d_list(client: HubClient, out: Output, identity: str) -> None:
    """List the messages queued for device ID (or module DEVICE/MODULE), oldest first."""
    answer = client.list_cloud_messages(identity)
    if out.as_json:
        out.json(answer)
        return
    if not answer["messages"]:
        out.text("No queued messages.")
        return
    rows = [
        (
            m["seq"],
            m["message_id"] or "-",
            m["input_name"] or "-",
            _when(m["enqueued_at"]),
            _when(m["expires_at"]),
            m["delivery_count"],
            # System properties ($.mid, $.exp) have their own columns.
            " ".join(f"{k}={v}" for k, v in sorted(m["properties"].items()) if k[:2] != "$."),
            _payload_preview(m),
        )
        for m in answer["messages"]
    ]
    columns = ("SEQ", "MESSAGE ID", "INPUT", "QUEUED (UTC)", "EXPIRES (UTC)", "SENT", "PROPERTIES")
    out.table((*columns, "PAYLOAD"), rows)


@c2d.command("purge")
@click.argument("identity", metavar="ID")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_client_options
def c2d_purge(client: HubClient, out: Output, identity: str, yes: bool) -> None:
    """Drop every message queued for device ID (or module DEVICE/MODULE)."""
    _confirm(yes, f"Drop every message queued for {safe(identity)}?", "purge")
    answer = client.purge_cloud_messages(identity)
    if out.as_json:
        out.json(answer)
    else:
        out.text(f"Dropped {answer['purged']} queued message(s) of {safe(identity)}.")


# --- modules -----------------------------------------------------------------------------------


def _module_rows(modules: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    return [
        (m["module_id"], *row[1:]) for m, row in zip(modules, _device_rows(modules), strict=True)
    ]


@cli.group()
def module() -> None:
    """Module identities of a device: create, list, show, delete, connection string, inputs."""


@module.command("create")
@click.argument("device_id", metavar="DEVICE")
@click.argument("module_id", metavar="MODULE")
@click.option("--auth", type=click.Choice(_AUTH_KINDS), default="sas", show_default=True)
@click.option(
    "--cert",
    "certs",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Certificate (PEM) of an x509-thumbprint module: primary, then optional secondary.",
)
@_client_options
def module_create(
    *,
    client: HubClient,
    out: Output,
    device_id: str,
    module_id: str,
    auth: str,
    certs: tuple[Path, ...],
) -> None:
    """Create module MODULE of DEVICE; SAS keys and the connection string are shown this once."""
    pems = [_read_text_file(p, "certificate") for p in certs]
    answer = client.create_module(device_id, module_id, auth=auth, certificates_pem=pems)
    if out.as_json:
        out.json(answer)
        return
    m = answer["module"]
    out.text(
        f"Created module {safe(m['module_id'])} of device {safe(m['device_id'])} "
        f"({safe(m['auth'])})."
    )
    if answer.get("primary_key"):
        out.fields(
            [("Primary key", answer["primary_key"]), ("Secondary key", answer["secondary_key"])]
        )
    if answer.get("connection_string"):
        out.text("Connection string:")
        out.text(safe(answer["connection_string"]))
    if answer.get("primary_key"):
        out.text(Text("The keys are shown only once; store them now.", style="yellow"))


@module.command("list")
@click.argument("device_id", metavar="DEVICE")
@_client_options
def module_list(client: HubClient, out: Output, device_id: str) -> None:
    """List the modules of DEVICE."""
    answer = client.list_modules(device_id)
    if out.as_json:
        out.json(answer)
    elif not answer["modules"]:
        out.text(f"Device {safe(device_id)} has no modules.")
    else:
        columns = ("MODULE", *_DEVICE_COLUMNS[1:])
        out.table(columns, _module_rows(answer["modules"]))


@module.command("show")
@click.argument("device_id", metavar="DEVICE")
@click.argument("module_id", metavar="MODULE")
@_client_options
def module_show(client: HubClient, out: Output, device_id: str, module_id: str) -> None:
    """Show a module (never its keys)."""
    answer = client.get_module(device_id, module_id)
    if out.as_json:
        out.json(answer)
        return
    _show_device(out, answer)


@module.command("delete")
@click.argument("device_id", metavar="DEVICE")
@click.argument("module_id", metavar="MODULE")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_client_options
def module_delete(
    client: HubClient, out: Output, device_id: str, module_id: str, yes: bool
) -> None:
    """Delete a module, its twin and its queue; its live connection is dropped."""
    _confirm(yes, f"Delete module {safe(module_id)} of device {safe(device_id)}?", "delete")
    client.delete_module(device_id, module_id)
    if out.as_json:
        out.json({"deleted": f"{device_id}/{module_id}"})
    else:
        out.text(f"Deleted module {safe(module_id)} of device {safe(device_id)}.")


@module.command("rotate-key")
@click.argument("device_id", metavar="DEVICE")
@click.argument("module_id", metavar="MODULE")
@click.option("--key", "slot", type=click.Choice(_KEY_SLOTS), default="primary", show_default=True)
@_client_options
def module_rotate_key(
    client: HubClient, out: Output, device_id: str, module_id: str, slot: str
) -> None:
    """Regenerate one SAS key of a module; the other key keeps working meanwhile."""
    module = urllib.parse.quote(module_id, safe="")
    _rotate_key(
        client, out, _device_path(device_id, "modules", module, "keys", slot, "rotate"), slot
    )


@module.command("connection-string")
@click.argument("device_id", metavar="DEVICE")
@click.argument("module_id", metavar="MODULE")
@click.option("--gateway", metavar="HOST", help="Add GatewayHostName=HOST (the host to dial).")
@click.option("--key", "slot", type=click.Choice(_KEY_SLOTS), default="primary", show_default=True)
@_client_options
def module_connection_string(
    *,
    client: HubClient,
    out: Output,
    device_id: str,
    module_id: str,
    gateway: str | None,
    slot: str,
) -> None:
    """Print the module's connection string (recorded by the hub as a key disclosure)."""
    answer = client.module_connection_string(device_id, module_id, gateway=gateway, key=slot)
    if out.as_json:
        out.json(answer)
    else:
        click.echo(safe(answer["connection_string"]))


@module.command("send-input")
@click.argument("device_id", metavar="DEVICE")
@click.argument("module_id", metavar="MODULE")
@click.argument("input_name", metavar="INPUT")
@_message_options
@_client_options
def module_send_input(
    *,
    client: HubClient,
    out: Output,
    device_id: str,
    module_id: str,
    input_name: str,
    **message: Any,  # noqa: ANN401 - the options of _message_options
) -> None:
    """Queue a message for input INPUT of module MODULE of DEVICE."""
    _send_message(client, out, f"{device_id}/{module_id}", input_name=input_name, message=message)


# --- certificate authorities -------------------------------------------------------------------


@cli.group()
def ca() -> None:
    """CA certificates that sign x509-ca devices."""


@ca.command("add")
@click.argument("pem_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_client_options
def ca_add(client: HubClient, out: Output, pem_file: Path) -> None:
    """Register the CA certificate in PEM_FILE."""
    answer = client.request(
        "POST", "/cas", json_body={"pem": _read_text_file(pem_file, "CA certificate")}
    )
    if out.as_json:
        out.json(answer)
    else:
        out.text(f"Registered CA {safe(answer['subject'])}")
        out.fields([("Fingerprint", answer["fingerprint"])])


@ca.command("list")
@_client_options
def ca_list(client: HubClient, out: Output) -> None:
    """List registered CA certificates."""
    answer = client.request("GET", "/cas")
    if out.as_json:
        out.json(answer)
    elif not answer["cas"]:
        out.text("No CA certificates registered.")
    else:
        rows = [(c["fingerprint"], c["subject"], _when(c["created_at"])) for c in answer["cas"]]
        out.table(("FINGERPRINT", "SUBJECT", "ADDED (UTC)"), rows)


@ca.command("remove")
@click.argument("fingerprint")
@_client_options
def ca_remove(client: HubClient, out: Output, fingerprint: str) -> None:
    """Unregister a CA certificate."""
    client.request("DELETE", "/cas/" + urllib.parse.quote(fingerprint, safe=""))
    if out.as_json:
        out.json({"removed": fingerprint})
    else:
        out.text(f"Removed CA {safe(fingerprint)}.")


# --- messages and connections ------------------------------------------------------------------


@cli.group()
def messages() -> None:
    """Messages committed to the hub's log."""


def _payload_preview(message: dict[str, Any]) -> str:
    text = message.get("payload_text")
    preview = str(text) if text is not None else "base64:" + str(message["payload_base64"])
    if len(preview) > _PAYLOAD_PREVIEW_CHARS:
        preview = preview[: _PAYLOAD_PREVIEW_CHARS - 1] + "…"
    return preview


def _properties_preview(message: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(message["properties"].items()))


def _message_row(m: dict[str, Any]) -> tuple[object, ...]:
    return (
        m["seq"],
        _when(m["enqueued_at"]),
        m["stream"],
        m["device_id"] or "-",
        _properties_preview(m),
        _payload_preview(m),
    )


_MESSAGE_COLUMNS = ("SEQ", "TIME (UTC)", "STREAM", "DEVICE", "PROPERTIES", "PAYLOAD")


@messages.command("list")
@click.option("--device", "device_id", default=None, help="Only this device.")
@click.option("--stream", type=click.Choice(_STREAMS), default=None, help="Only this stream.")
@click.option("--after", type=click.IntRange(min=0), default=0, help="After this sequence number.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option(
    "--since", default=None, help="Enqueued at or after (ISO 8601 with offset, or epoch)."
)
@click.option("--until", default=None, help="Enqueued before (ISO 8601 with offset, or epoch).")
@_client_options
def messages_list(
    *,
    client: HubClient,
    out: Output,
    device_id: str | None,
    stream: str | None,
    after: int,
    limit: int,
    since: str | None,
    until: str | None,
) -> None:
    """List committed messages after a sequence number (optionally within a time range)."""
    answer = client.request(
        "GET",
        "/messages",
        query={
            "device": device_id,
            "stream": stream,
            "after": after,
            "limit": limit,
            "since": since,
            "until": until,
        },
    )
    if out.as_json:
        out.json(answer)
    elif not answer["messages"]:
        out.text("No messages.")
    else:
        out.table(_MESSAGE_COLUMNS, [_message_row(m) for m in answer["messages"]])


@messages.command("tail")
@click.option("--device", "device_id", default=None, help="Only this device.")
@click.option("--stream", type=click.Choice(_STREAMS), default=None, help="Only this stream.")
@click.option(
    "--count", type=click.IntRange(min=1), default=None, help="Exit after this many messages."
)
@_client_options
def messages_tail(
    *,
    client: HubClient,
    out: Output,
    device_id: str | None,
    stream: str | None,
    count: int | None,
) -> None:
    """Follow messages as they are committed (Ctrl-C to stop)."""
    seen = 0
    events = client.events("/messages/tail", query={"device": device_id, "stream": stream})
    try:
        for event in events:
            if event.event == "lagged":
                raise ClientError(
                    "the tail fell behind and the hub closed it; continue with "
                    "`ironhub messages list --after N` from the last sequence number shown"
                )
            if event.event == "closed":
                raise ClientError("the hub closed the tail (shutting down)")
            if event.event != "message":
                continue
            message = json.loads(event.data)
            if out.as_json:
                out.json_line(message)
            else:
                seq, when, stream_name, device, props, payload = _message_row(message)
                out.text(
                    Text(f"#{seq} ", style="bold"),
                    f"{when} {stream_name} {safe(device)} ",
                    Text(safe(props), style="cyan"),
                    " ",
                    safe(payload),
                )
            sys.stdout.flush()
            seen += 1
            if count is not None and seen >= count:
                return
    finally:
        events.close()
    raise ClientError("the hub ended the tail")


@cli.command()
@_client_options
def connections(client: HubClient, out: Output) -> None:
    """List live device connections."""
    answer = client.request("GET", "/connections")
    if out.as_json:
        out.json(answer)
    elif not answer["connections"]:
        out.text("No live connections.")
    else:
        rows = [
            (
                c["device_id"],
                c["peer"],
                c["auth_kind"],
                _when(c["connected_at"]),
                c["keep_alive_seconds"],
            )
            for c in answer["connections"]
        ]
        out.table(("DEVICE", "PEER", "AUTH", "SINCE (UTC)", "KEEP-ALIVE (S)"), rows)


# Command groups that live in their own modules register themselves on ``cli`` when imported.
from ironhub.cli import access as _access_commands  # noqa: E402, F401
from ironhub.cli import audit as _audit_commands  # noqa: E402, F401
from ironhub.cli import custody as _custody_commands  # noqa: E402, F401
from ironhub.cli import fleet as _fleet_commands  # noqa: E402, F401
from ironhub.cli import monitor as _monitor_commands  # noqa: E402, F401
from ironhub.cli import posture as _posture_commands  # noqa: E402, F401
from ironhub.cli import provisioning as _provisioning_commands  # noqa: E402, F401
from ironhub.cli import reports as _report_commands  # noqa: E402, F401
