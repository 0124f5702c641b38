"""Configuration: frozen dataclasses, one loader (TOML file + ``IRONHUB_*`` environment).

Every limit carries its unit in its name. Defaults are secure: listeners bind to loopback,
nothing is anonymous. Unknown keys are errors, and a configuration that cannot be loaded makes
the process refuse to start (:class:`~ironhub.errors.ConfigError`) rather than fall back to
defaults (SECURITY-TESTS.md §2, CVE-2017-7652 class).

Sources, later ones win:

1. the defaults below;
2. ``<data_dir>/ironhub.toml`` if it exists (sections ``[mqtt]``, ``[api]``, ``[limits]``,
   ``[storage]`` and top-level ``hostnames``);
3. environment variables ``IRONHUB_<SECTION>_<KEY>`` (for example ``IRONHUB_MQTT_PORT=8883``,
   ``IRONHUB_LIMITS_DEVICE_MESSAGES_PER_SECOND=500``) and ``IRONHUB_HOSTNAMES`` (comma list);
4. explicit overrides passed by the CLI (``--mqtt HOST:PORT``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ironhub.errors import ConfigError

__all__ = [
    "APIConfig",
    "AccessConfig",
    "AuditConfig",
    "HubConfig",
    "KeysConfig",
    "LimitsConfig",
    "MQTTConfig",
    "MonitorConfig",
    "ProvisioningConfig",
    "StorageConfig",
    "load_config",
    "parse_host_port",
]

logger = logging.getLogger(__name__)

#: Azure's limit for a device-to-cloud message, payload plus properties (azure-iot-mqtt.md §9).
AZURE_MAX_MESSAGE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class MQTTConfig:
    """The device endpoint (MQTT 3.1.1 over TLS)."""

    host: str = "127.0.0.1"
    port: int = 8883
    #: Time from TCP accept to a complete TLS handshake.
    tls_handshake_timeout_seconds: float = 10.0
    #: Time from TCP accept to a CONNECT packet (SlowITe, CVE-2020-13849).
    connect_timeout_seconds: float = 10.0
    #: Keep-alive values above this are clamped; idle connections close at 1.5x the effective
    #: value. 1177 s is Azure's largest useful value (1767 s idle cap / 1.5).
    max_keepalive_seconds: int = 1177
    #: A CONNECT larger than this is refused before allocation (CVE-2017-7651 class).
    max_connect_packet_bytes: int = 4096
    #: Largest packet after CONNECT: a maximal message plus room for topic and property bag.
    max_packet_bytes: int = AZURE_MAX_MESSAGE_BYTES + 16 * 1024
    #: Largest telemetry message (payload + property bag), as in Azure.
    max_message_bytes: int = AZURE_MAX_MESSAGE_BYTES
    #: Connections that have not finished authentication, in total and per source address.
    max_preauth_connections: int = 1000
    max_preauth_connections_per_source: int = 64
    #: Authenticated connections in total.
    max_connections: int = 50_000
    #: QoS 1 publishes awaiting their commit before the hub stops reading that socket.
    max_inflight_messages: int = 256
    #: Bytes queued for a slow reader before it is disconnected.
    max_outbound_buffer_bytes: int = 1024 * 1024
    #: Hub-to-device QoS 1 publishes awaiting the device's PUBACK (the in-flight window).
    max_outbound_inflight: int = 16
    #: Hub-to-device publishes waiting for room in the window (twin answers, method
    #: requests, desired notifications); a device that lets more pile up is disconnected.
    max_outbound_queue: int = 256
    #: Concurrent subscriptions per connection (Azure allows 5 topics per device).
    max_subscriptions: int = 5


@dataclass(frozen=True, slots=True)
class APIConfig:
    """The operator HTTPS API."""

    host: str = "127.0.0.1"
    port: int = 8443
    max_body_bytes: int = 1024 * 1024
    #: Live SSE tails per process.
    max_tail_clients: int = 64


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Per-device and per-source rate limits."""

    #: Sustained telemetry rate per device and its burst (token bucket).
    device_messages_per_second: float = 100.0
    device_message_burst: int = 200
    #: Authentication failures tolerated per minute before further attempts are refused
    #: without checking the credential (evaluated before any expensive work).
    auth_failures_per_source_per_minute: int = 20
    auth_failures_per_identity_per_minute: int = 10
    #: New connections per second from one source address (token bucket; 0 disables).
    connections_per_source_per_second: float = 200.0
    #: Twin operations per identity, with one budget for the device (GET, reported PATCH) and
    #: one for operators (patches): sustained rate and burst. Over it, status 429 (Azure
    #: throttles twin reads at 100/s and updates at 50/s per hub; per device we allow less).
    twin_operations_per_second: float = 10.0
    twin_operation_burst: int = 20
    #: Direct-method invocations per device: sustained rate and burst (429 beyond).
    method_calls_per_second: float = 5.0
    method_call_burst: int = 10
    #: Cloud-to-device messages: pending per identity (Azure: 50) and the sweep interval of
    #: expired ones.
    max_pending_cloud_messages: int = 50
    cloud_message_expiry_sweep_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """The embedded SQLite store."""

    #: Largest number of messages committed in one transaction (group commit).
    max_commit_batch: int = 4096
    #: ``synchronous`` pragma: FULL fsyncs the WAL on every commit (acknowledged = durable).
    synchronous: str = "FULL"


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """The tamper-evident audit log (docs/adr/0010)."""

    #: Sign a checkpoint after this many new records, or this long after a new record.
    checkpoint_interval_records: int = 1000
    checkpoint_interval_seconds: float = 60.0
    #: A file outside the data directory to which every signed checkpoint is appended (the
    #: operator's witness: truncating the whole tail of the log then shows). Empty: none.
    witness_path: str = ""


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """Operator accounts, logins and sessions (docs/adr/0011; defaults in access/policy.py).

    Lockout defaults follow :class:`~ironhub.access.policy.LockoutPolicy`, session limits
    :class:`~ironhub.access.policy.SessionPolicy`, password age and reuse
    :class:`~ironhub.access.policy.PasswordPolicy`.
    """

    #: Failed logins within the window that lock an account, or a source address.
    lockout_failures_per_account: int = 5
    lockout_failures_per_source: int = 20
    lockout_window_seconds: float = 900.0
    #: How long a lock lasts.
    lockout_seconds: float = 900.0
    #: Session lifetime from login, and its idle timeout.
    session_lifetime_seconds: float = 8 * 3600.0
    session_idle_seconds: float = 1800.0
    #: A password older than this must be changed at the next login (0: never expires).
    password_max_age_days: float = 90.0
    #: Previous passwords a new one must differ from.
    password_history: int = 5
    #: An account unused this long makes its next login a security event.
    inactive_after_days: float = 30.0
    #: Password hashes (argon2id, 128 MiB each) computed at once; more logins wait.
    max_concurrent_hashes: int = 2


@dataclass(frozen=True, slots=True)
class ProvisioningConfig:
    """The DPS-compatible provisioning service and the device CA (docs/adr/0012).

    Devices reach provisioning on the hub's own TLS listener with the DPS username shape
    (azure-iot-mqtt.md §5); the provisioning host name is the hub's primary host name.
    """

    #: Whether DPS-shaped connections are served at all.
    enabled: bool = True
    #: The ID scope devices are configured with (``{idScope}/registrations/...``). Empty: one
    #: derived from the hub's primary host name (``0ne`` and 8 hex digits).
    id_scope: str = ""
    #: ``retry-after`` given to the device while an operation is assigning, in seconds (Azure
    #: documents a budget of 5 polls per 10 s, so at least 2).
    poll_interval_seconds: int = 2
    #: Status polls allowed per registration within ``poll_window_seconds``; more get 429.
    max_polls_per_window: int = 5
    poll_window_seconds: float = 10.0
    #: How long after its register request an operation can still be polled.
    operation_ttl_seconds: float = 300.0
    #: Validity of a certificate issued from a CSR, and of the device CA itself.
    certificate_validity_days: int = 30
    device_ca_validity_days: int = 3650
    #: A provisioning connection is closed this long after CONNACK whatever it does.
    max_connection_seconds: float = 120.0
    #: Claim tokens: the longest lifetime an operator may give one, and the most uses.
    claim_token_max_lifetime_days: float = 30.0
    claim_token_max_uses: int = 10000
    #: The CRL's nextUpdate lies this far after its thisUpdate; it is re-signed before then.
    crl_validity_hours: float = 24.0


@dataclass(frozen=True, slots=True)
class KeysConfig:
    """Where the CA keys and the key-encryption key are held (docs/adr/0012).

    ``file`` (the default): 0600 files in the data directory. ``pkcs11``: keys inside a
    PKCS#11 token (an HSM, or SoftHSM2); the private CA keys never leave it, the KEK is kept
    wrapped under a token AES key. If the configured source is unavailable the hub refuses to
    start: there is never a fallback key.
    """

    backend: str = "file"
    #: The PKCS#11 module (``.so``) to load, e.g. ``/usr/lib/softhsm/libsofthsm2.so``.
    pkcs11_module: str = ""
    #: The token's label.
    pkcs11_token_label: str = ""
    #: A file holding the user PIN (0600), or the name of an environment variable holding it.
    pkcs11_pin_file: str = ""
    pkcs11_pin_env: str = ""


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Security monitoring and response (issue 6; docs/security-events.md)."""

    #: Whether the monitor runs at all.
    enabled: bool = True
    #: Alert type to response actions: ``"type:action,action; ..."`` with actions
    #: ``quarantine``, ``disable``, ``revoke``, ``notify`` (see ironhub.monitor.alerts).
    playbooks: str = (
        "tamper:quarantine,notify; malware-detected:quarantine,notify; masquerade:quarantine,notify"
    )
    #: After an alert is resolved, the same type and device stay quiet this long.
    suppression_seconds: float = 600.0
    #: Alerts are appended here as JSON lines (``notify``); empty: no file.
    alert_file: str = ""
    #: Alerts are POSTed here as JSON (``notify``), signed with HMAC-SHA256 of the body under
    #: the key in ``webhook_secret_file`` (header ``X-Ironhub-Signature: sha256=<hex>``) and
    #: retried with exponential backoff. Empty: no webhook.
    webhook_url: str = ""
    webhook_secret_file: str = ""
    #: A CA bundle (PEM) to trust for the webhook's server certificate instead of the
    #: system's (a private receiver); empty: the system trust store.
    webhook_ca_file: str = ""
    webhook_attempts: int = 5
    #: Detector state is saved this often (and at stop), so a restart continues from it.
    snapshot_interval_seconds: float = 5.0
    #: Time-driven detectors (a silent security stream) are woken this often.
    tick_interval_seconds: float = 1.0
    #: The fleet audit (ironhub audit-fleet) also runs on its own this often; its high and
    #: critical findings become alerts (``fleet-<check>``). 0: only on demand.
    fleet_audit_interval_seconds: float = 86400.0
    #: The largest advisory file ``ironhub advisories import`` may send (OSV's per-ecosystem
    #: ``all.zip`` for Debian is about 100 MB; the file is held in memory while it is read).
    max_advisory_import_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class HubConfig:
    """Everything one hub process needs to know."""

    data_dir: Path
    #: Host names the server certificate covers (``localhost`` and ``127.0.0.1`` always are).
    #: The first one is the hub's HostName in connection strings.
    hostnames: tuple[str, ...] = ("localhost",)
    mqtt: MQTTConfig = field(default_factory=MQTTConfig)
    api: APIConfig = field(default_factory=APIConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    provisioning: ProvisioningConfig = field(default_factory=ProvisioningConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    @property
    def hostname(self) -> str:
        """The hub's primary host name (``HostName`` in connection strings)."""
        return self.hostnames[0]

    def redacted(self) -> dict[str, Any]:
        """The effective configuration for the start-up log (holds no secrets by design)."""
        data = dataclasses.asdict(self)
        data["data_dir"] = str(self.data_dir)
        return data


_SECTIONS: dict[str, type[Any]] = {
    "mqtt": MQTTConfig,
    "api": APIConfig,
    "limits": LimitsConfig,
    "audit": AuditConfig,
    "storage": StorageConfig,
    "access": AccessConfig,
    "provisioning": ProvisioningConfig,
    "keys": KeysConfig,
    "monitor": MonitorConfig,
}


def parse_host_port(text: str, *, what: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[v6]:PORT`` for IPv6); port 0 asks the OS for a free port.

    Raises:
        ConfigError: the text is not a host and a port in 1..65535.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(f"{what}: expected HOST:PORT, got {text!r}")
    port = int(port_text)
    if not 0 <= port < 65536:
        raise ConfigError(f"{what}: port {port} is out of range")
    return host.strip("[]"), port


_BOOL_WORDS: dict[str, bool] = {
    "1": True,
    "true": True,
    "yes": True,
    "0": False,
    "false": False,
    "no": False,
}


def _coerce_bool(value: Any) -> bool:  # noqa: ANN401 - TOML or environment value
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.lower()]
    raise TypeError


def _coerce(value: Any, target: Any, where: str) -> Any:  # noqa: ANN401 - typed by dataclass field
    """Convert a TOML or environment value to the field's declared type."""
    try:
        if target in ("bool", bool):
            return _coerce_bool(value)
        if target in ("int", int):
            if isinstance(value, bool):
                raise TypeError
            return int(value)
        if target in ("float", float):
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if target in ("str", str):
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a valid {target}") from None
    raise ConfigError(f"{where}: unsupported type {target}")  # pragma: no cover


def _build_section(cls: type[Any], values: Mapping[str, Any], where: str) -> Any:  # noqa: ANN401
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    kwargs = {k: _coerce(v, fields[k].type, f"{where}.{k}") for k, v in values.items()}
    instance = cls(**kwargs)
    for name, f in fields.items():
        value = getattr(instance, name)
        if f.type in ("int", "float") and value < 0:
            raise ConfigError(f"{where}.{name}: must not be negative")
    return instance


def _check_bind(host: str, where: str, *, allow_public: bool) -> None:
    """Refuse non-loopback binds unless the operator said so explicitly (secure by default)."""
    if allow_public:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError(
            f"{where}: {host} is not a loopback address; set IRONHUB_ALLOW_PUBLIC_BIND=1 "
            "(or allow_public_bind = true) to listen beyond this machine",
        )


def load_config(  # noqa: C901, PLR0912 - one linear pass over the sources
    data_dir: Path,
    *,
    environ: Mapping[str, str] | None = None,
    hostnames: tuple[str, ...] = (),
    mqtt_bind: str | None = None,
    api_bind: str | None = None,
) -> HubConfig:
    """Load the configuration for the hub whose data lives in ``data_dir``.

    Raises:
        ConfigError: the file is unreadable or malformed, a key is unknown, a value has the
            wrong type, or a listener would bind beyond loopback without explicit consent.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    path = data_dir / "ironhub.toml"
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot be loaded: {exc}") from None
    top_known = {"hostnames", "allow_public_bind", *_SECTIONS}
    unknown = sorted(set(raw) - top_known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")

    sections: dict[str, dict[str, Any]] = {}
    for name in _SECTIONS:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
        sections[name] = dict(value)

    for key, value in env.items():
        if not key.startswith("IRONHUB_"):
            continue
        rest = key[len("IRONHUB_") :].lower()
        section, _, option = rest.partition("_")
        if section in _SECTIONS and option:
            sections[section][option] = value

    names: tuple[str, ...]
    if hostnames:
        names = hostnames
    elif env.get("IRONHUB_HOSTNAMES"):
        names = tuple(h.strip() for h in env["IRONHUB_HOSTNAMES"].split(",") if h.strip())
    else:
        listed = raw.get("hostnames", ["localhost"])
        if not isinstance(listed, list) or not all(isinstance(h, str) and h for h in listed):
            raise ConfigError(f"{path}: hostnames must be a list of non-empty strings")
        names = tuple(listed)
    if not names:
        raise ConfigError("hostnames: at least one host name is required")

    if mqtt_bind:
        sections["mqtt"]["host"], sections["mqtt"]["port"] = parse_host_port(
            mqtt_bind, what="--mqtt"
        )
    if api_bind:
        sections["api"]["host"], sections["api"]["port"] = parse_host_port(api_bind, what="--api")

    built = {n: _build_section(cls, sections[n], n) for n, cls in _SECTIONS.items()}
    allow_public = bool(raw.get("allow_public_bind", False)) or env.get(
        "IRONHUB_ALLOW_PUBLIC_BIND", ""
    ) in ("1", "true", "yes")
    _check_bind(built["mqtt"].host, "mqtt.host", allow_public=allow_public)
    _check_bind(built["api"].host, "api.host", allow_public=allow_public)
    if built["storage"].synchronous not in ("FULL", "NORMAL", "EXTRA"):
        raise ConfigError("storage.synchronous: must be FULL, EXTRA or NORMAL")
    if built["keys"].backend not in ("file", "pkcs11"):
        raise ConfigError("keys.backend: must be file or pkcs11")
    if built["provisioning"].poll_interval_seconds < 1:
        raise ConfigError("provisioning.poll_interval_seconds: must be at least 1")
    return HubConfig(data_dir=data_dir, hostnames=names, **built)
