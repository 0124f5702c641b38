"""The composition root: creates the data directory's trust material and runs one hub process.

Data directory layout (created on first start, directory 0700, secrets 0600)::

    ca.pem                   the hub CA certificate (EC P-256); its key signs the server cert
    device-ca.pem            the device CA certificate; its key signs device certs and the CRL
    ca.key, device-ca.key,   with ``keys.backend = "file"``: the two CA private keys and the
    kek.key                  key-encryption key sealing every device key at rest (AES-GCM)
    kek.wrapped              with ``keys.backend = "pkcs11"``: the key-encryption key encrypted
                             by the token; the CA private keys stay inside the token
    server.key / server.pem  the TLS server certificate (SANs: host names, localhost, 127.0.0.1)
                             followed by the CA certificate (the chain the listeners present)
    audit.key / audit.pub    the Ed25519 key that signs audit checkpoints, and its public half
    ironhub.db               SQLite (WAL): registry, operator tokens, message log
    ironhub.toml             optional configuration (see :mod:`ironhub.config`)

Where the CA keys and the KEK live, and every rule about opening them, is
:mod:`ironhub.custody`. A half-made directory (some of these files missing) is refused rather
than silently completed: missing trust material must never be replaced by new keys behind the
operator's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import signal
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from starlette.applications import Starlette

from ironhub import pki
from ironhub.access.operators import FIRST_ADMIN, OperatorService
from ironhub.access.policy import LockoutPolicy, PasswordPolicy, SessionPolicy
from ironhub.access.tokens import TokenService
from ironhub.api import close_streams
from ironhub.api.app import create_app
from ironhub.audit.service import AuditLog
from ironhub.clock import SYSTEM_CLOCK, Clock
from ironhub.config import AccessConfig, HubConfig, load_config
from ironhub.custody import (
    DataFiles,
    ensure_key_material,
    open_key_material,
    read_secret_file,
    write_public_file,
    write_secret_file,
)
from ironhub.errors import ConfigError, IronhubError, TrustError, ValidationError
from ironhub.hub.c2d import CloudToDevice
from ironhub.hub.commands import CommandBus
from ironhub.hub.endpoint import DeviceEndpoint
from ironhub.hub.methods import MethodService
from ironhub.hub.tls import ServerTLSFiles, build_server_context
from ironhub.hub.twins import TwinService
from ironhub.metrics import Metrics
from ironhub.monitor.fleet import FleetFinding
from ironhub.monitor.fleet_service import FleetAuditor
from ironhub.monitor.posture_service import PostureService
from ironhub.monitor.service import MonitorService
from ironhub.provisioning.authority import DeviceAuthority
from ironhub.provisioning.service import ProvisioningService
from ironhub.registry.service import Registry
from ironhub.services import Services
from ironhub.storage.interfaces import AuthKind
from ironhub.storage.sqlite import SQLiteStorage
from ironhub.streams.log import MessageLog

__all__ = ["DataFiles", "InitResult", "RunningHub", "ServeInfo", "init_hub", "serve", "start_hub"]

logger = logging.getLogger(__name__)

#: The server certificate is re-issued when it expires within this many days.
_SERVER_CERT_RENEW_DAYS = 30


@dataclass(frozen=True, slots=True)
class InitResult:
    """What ``ironhub init`` reports."""

    created: bool
    data_dir: Path
    hostname: str
    ca_path: Path
    first_admin_token: str | None
    mqtt: str
    api_url: str
    #: The one-time password of the ``admin`` operator account, on the run that creates it.
    first_admin_password: str | None = None


@dataclass(frozen=True, slots=True)
class ServeInfo:
    """What ``ironhub serve`` prints once the hub accepts connections."""

    hostname: str
    ca_path: Path
    mqtt: str
    api_url: str
    first_admin_token: str | None
    first_admin_password: str | None = None
    #: The provisioning ID scope (devices register on the same host and port), if enabled.
    id_scope: str | None = None


def _url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def _server_cert_covers(
    cert: x509.Certificate, hostnames: tuple[str, ...], now: dt.datetime
) -> bool:
    if cert.not_valid_after_utc - now < dt.timedelta(days=_SERVER_CERT_RENEW_DAYS):
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    names = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    names |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return all(h.lower() in names for h in hostnames)


def _server_key_matches(cert: x509.Certificate, key_pem: bytes) -> bool:
    """Whether ``key_pem`` is a readable private key belonging to ``cert``.

    The renewal in :func:`ensure_trust_material` writes server.key, then server.pem. A SIGKILL
    between the two leaves an empty key file or a new key beside the old certificate, and the
    TLS listener then refused every later start (tests/fault/test_serve_sigkill.py). Such a
    pair is re-issued from the CA like an expiring one; no trust is created or loosened.
    """
    try:
        key = pki.load_private_key_pem(key_pem)
    except TrustError:
        return False
    return key.public_key() == cert.public_key()


def ensure_trust_material(
    config: HubConfig | Path,
    hostnames: tuple[str, ...] = (),
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> bool:
    """Create the CAs, KEK and audit key on first start; renew the server certificate.

    The CA keys and the KEK are made and opened by the configured custody backend
    (:func:`ironhub.custody.ensure_key_material`): files, or a PKCS#11 token. The server
    certificate is signed by the hub CA key wherever it lives; its own key is a 0600 file with
    either backend, as the TLS listeners load it from disk.

    Args:
        config: the hub configuration. A bare data directory is the form from before key
            custody, kept for existing callers: the configuration is then loaded from it
            (``ironhub.toml`` and ``IRONHUB_*``, :func:`~ironhub.config.load_config`), so its
            ``[keys]`` backend is honoured rather than silently replaced by the default.
        hostnames: with a bare data directory only: the names the server certificate covers
            (default: the configured ones).
        clock: the issuing time of new certificates.

    Returns:
        ``True`` if the directory was new.

    Raises:
        ConfigError: the directory is half-made, its secrets are readable by others, or the
            key source is unavailable (see :func:`ironhub.custody.open_key_material`).
    """
    if not isinstance(config, HubConfig):
        config = load_config(config, hostnames=hostnames)
    files = DataFiles(config.data_dir)
    now = dt.datetime.fromtimestamp(clock.time(), tz=dt.UTC)
    created = ensure_key_material(config, clock=clock)
    _ensure_audit_key(files)
    with open_key_material(config, clock=clock) as keys:
        renew = True
        if files.server_cert.exists() and files.server_key.exists():
            server_key_pem = read_secret_file(files.server_key)
            current = pki.parse_certificate_pem(
                files.server_cert.read_text().split("-----END CERTIFICATE-----")[0]
                + "-----END CERTIFICATE-----\n"
            )
            renew = not _server_cert_covers(
                current, config.hostnames, now
            ) or not _server_key_matches(current, server_key_pem)
        if renew:
            key, cert = pki.issue_server_certificate(
                keys.ca_key, keys.ca_cert, config.hostnames, now=now
            )
            files.server_key.unlink(missing_ok=True)
            write_secret_file(files.server_key, pki.private_key_pem(key))
            write_public_file(
                files.server_cert, pki.certificate_pem(cert) + pki.certificate_pem(keys.ca_cert)
            )
            logger.info("issued server certificate hostnames=%s", ",".join(config.hostnames))
    return created


def _ensure_audit_key(files: DataFiles) -> None:
    """Create the audit key on first start, or when a data dir from before the audit log gets it.

    Raises:
        ConfigError: the private key is missing while its public key exists (a silent new
            key would make the existing checkpoints unverifiable).
    """
    if not files.audit_key.exists():
        if files.audit_public_key.exists():
            raise ConfigError(
                f"{files.audit_key} is missing but its public key exists; refusing to create a "
                "new audit key (the existing checkpoints would no longer verify)"
            )
        key = Ed25519PrivateKey.generate()
        write_secret_file(
            files.audit_key,
            key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
        )
        write_public_file(
            files.audit_public_key,
            key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        )
        logger.info("created the audit signing key path=%s", files.audit_key)


def _load_audit_key(files: DataFiles) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(read_secret_file(files.audit_key), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{files.audit_key}: not an Ed25519 private key")
    return key


async def _open_services(config: HubConfig, clock: Clock) -> Services:
    password_policy, lockout_policy, session_policy = access_policies(config.access)
    files = DataFiles(config.data_dir)
    metrics = Metrics()
    # Refuses to start if the key source (files or PKCS#11 token) is unavailable: there is
    # never a fallback key (SECURITY-TESTS §3.7 item 32).
    keys = open_key_material(config, clock=clock)
    storage = SQLiteStorage(files.database, config.storage, clock, metrics)
    try:
        await storage.open()
    except BaseException:
        keys.close()
        raise
    kek = keys.kek
    registry = Registry(storage, kek, clock)
    tokens = TokenService(storage, clock, session_policy)
    log = MessageLog(storage, clock, metrics)
    await log.start()
    audit = AuditLog(
        storage,
        clock,
        signing_key=_load_audit_key(files),
        origin=f"ironhub-audit/{config.hostname}",
        checkpoint_records=config.audit.checkpoint_interval_records,
        checkpoint_seconds=config.audit.checkpoint_interval_seconds,
        witness_path=Path(config.audit.witness_path) if config.audit.witness_path else None,
        metrics=metrics,
    )
    authority = DeviceAuthority(
        storage,
        key=keys.device_ca_key,
        certificate=keys.device_ca_cert,
        clock=clock,
        config=config.provisioning,
    )
    commands = CommandBus()
    twins = TwinService(storage, registry, commands, clock, limits=config.limits, metrics=metrics)
    posture = PostureService(storage, clock, registry, twins=twins)
    try:
        # Refuses a log that does not verify: the hub does not start on it (fail closed).
        await audit.open()
        await authority.open()
        await posture.load()
        # Built here: a bad playbook or webhook setting refuses the start (ConfigError).
        monitor = (
            MonitorService(
                storage,
                log,
                registry,
                clock,
                config.monitor,
                audit=audit,
                authority=authority,
                posture=posture,
            )
            if config.monitor.enabled
            else None
        )
    except BaseException:
        await log.close()
        await storage.close()
        keys.close()
        raise
    return Services(
        config=config,
        clock=clock,
        metrics=metrics,
        storage=storage,
        registry=registry,
        tokens=tokens,
        log=log,
        audit=audit,
        commands=commands,
        operators=OperatorService(
            storage,
            tokens,
            kek,
            clock,
            audit,
            password_policy=password_policy,
            lockout_policy=lockout_policy,
            inactive_after_seconds=config.access.inactive_after_days * 86400.0,
            max_concurrent_hashes=config.access.max_concurrent_hashes,
        ),
        twins=twins,
        methods=MethodService(registry, commands, clock, config.limits, metrics=metrics),
        c2d=CloudToDevice(
            storage,
            registry,
            log,
            bus=commands,
            clock=clock,
            limits=config.limits,
            metrics=metrics,
        ),
        provisioning=ProvisioningService(
            storage,
            registry,
            twins,
            authority,
            kek=kek,
            clock=clock,
            config=config,
            audit=audit,
        ),
        keys=keys,
        monitor=monitor,
        posture=posture,
    )


def access_policies(config: AccessConfig) -> tuple[PasswordPolicy, LockoutPolicy, SessionPolicy]:
    """The access rules the configuration asks for.

    Raises:
        ConfigError: the values are inconsistent (a limit of 0, an idle timeout longer than
            the session).
    """
    try:
        max_age = config.password_max_age_days * 86400.0
        return (
            PasswordPolicy(
                max_age_seconds=max_age if max_age > 0 else None,
                history=config.password_history,
            ),
            LockoutPolicy(
                max_failures_per_account=config.lockout_failures_per_account,
                max_failures_per_source=config.lockout_failures_per_source,
                window_seconds=config.lockout_window_seconds,
                lockout_seconds=config.lockout_seconds,
            ),
            SessionPolicy(
                absolute_lifetime_seconds=config.session_lifetime_seconds,
                idle_timeout_seconds=config.session_idle_seconds,
            ),
        )
    except ValidationError as exc:
        raise ConfigError(f"access: {exc}") from None


async def _bootstrap(services: Services) -> tuple[str | None, str | None]:
    """On first start: the bootstrap admin token, ``hub-init``, the ``admin`` operator account.

    Returns:
        The token secret and the account's one-time password, each shown once; ``(None,
        None)`` on every later start.
    """
    token = await services.tokens.bootstrap_admin()
    if token is None:
        return None, None
    await _audit_hub_event(services, "hub-init")
    if services.operators is None:  # pragma: no cover - every hub has operator accounts
        return token, None
    if await services.storage.get_operator(FIRST_ADMIN) is not None:
        return token, None
    password, _ = await services.operators.add(FIRST_ADMIN, ("admin",))
    return token, password


async def _init_async(data_dir: Path, hostnames: tuple[str, ...]) -> InitResult:
    from ironhub.config import load_config  # noqa: PLC0415 - avoid a cycle at import

    config = load_config(data_dir, hostnames=hostnames)
    created = ensure_trust_material(config)
    services = await _open_services(config, SYSTEM_CLOCK)
    try:
        token, password = await _bootstrap(services)
    finally:
        await _close_services(services)
    return InitResult(
        created=created,
        data_dir=data_dir,
        hostname=config.hostname,
        ca_path=DataFiles(data_dir).ca_cert,
        first_admin_token=token,
        mqtt=f"{config.mqtt.host}:{config.mqtt.port}",
        api_url=f"https://{_url_host(config.api.host)}:{config.api.port}",
        first_admin_password=password,
    )


def init_hub(data_dir: Path, hostnames: tuple[str, ...] = ()) -> InitResult:
    """Create the data directory (trust material, database) and the first admin token.

    The first admin token is returned exactly once, on the run that creates it.

    Raises:
        ConfigError: the configuration or data directory is invalid.
        IronhubError: storage cannot be opened.
    """
    return asyncio.run(_init_async(data_dir, hostnames))


class _TrustStore:
    """The TLS context for new device connections, rebuilt when client trust changes."""

    def __init__(self, files: ServerTLSFiles, services: Services) -> None:
        self._files = files
        self._services = services
        self._context = build_server_context(files, "")
        self._refresh: asyncio.Task[None] | None = None
        self._dirty = False

    def current(self) -> ssl.SSLContext:
        return self._context

    async def rebuild(self) -> None:
        pems = [ca.pem for ca in await self._services.registry.list_cas()]
        after = ""
        while True:
            page = await self._services.registry.list_devices(
                after=after, limit=500, include_modules=True
            )
            if not page:
                break
            pems.extend(
                pem
                for device in page
                if device.auth_kind is AuthKind.X509_THUMBPRINT
                for pem in device.certificates_pem
            )
            after = page[-1].device_id
        if self._services.provisioning is not None:
            # The device CA, and what provisioning clients may present (docs/adr/0012).
            pems.extend(await self._services.provisioning.trust_pems())
        self._context = build_server_context(self._files, "\n".join(pems))

    def on_change(self) -> None:
        # Coalesce bursts of changes into one rebuild.
        if self._refresh is not None and not self._refresh.done():
            self._dirty = True
            return
        self._refresh = asyncio.get_running_loop().create_task(self._rebuild_loop())

    async def _rebuild_loop(self) -> None:
        while True:
            self._dirty = False
            try:
                await self.rebuild()
            except (IronhubError, ssl.SSLError, OSError):
                # Keep the old context: a failed reload never loosens or drops trust.
                logger.exception("could not rebuild the TLS trust store; keeping the old one")
            if not self._dirty:
                return


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn inside our event loop; the hub owns signal handling."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(slots=True)
class RunningHub:
    """A started hub (for ``serve`` and for tests that run a hub in-process)."""

    services: Services
    endpoint: DeviceEndpoint
    app: Starlette
    api: _EmbeddedUvicorn
    api_task: asyncio.Task[None]
    info: ServeInfo

    async def stop(self) -> None:
        """Stop the listeners, flush the log and close storage."""
        # Live SSE tails would otherwise keep uvicorn waiting for them to end.
        close_streams(self.app)
        self.api.should_exit = True
        await self.endpoint.stop()
        if self.services.c2d is not None:
            await self.services.c2d.stop()
        if self.services.monitor is not None:
            await self.services.monitor.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.api_task, timeout=10)
        with contextlib.suppress(IronhubError):
            await _audit_hub_event(self.services, "hub-stop")
        await _close_services(self.services)


async def _fleet_findings(auditor: FleetAuditor) -> list[FleetFinding]:
    return (await auditor.audit()).findings


async def _audit_hub_event(services: Services, action: str) -> None:
    if services.audit is not None:
        await services.audit.record(actor_kind="hub", actor="hub", action=action)


async def _close_services(services: Services) -> None:
    if services.provisioning is not None:
        await services.provisioning.close()
    if services.audit is not None:
        await services.audit.close()
    await services.log.close()
    await services.storage.close()
    if services.keys is not None:
        services.keys.close()


async def start_hub(config: HubConfig, *, clock: Clock = SYSTEM_CLOCK) -> RunningHub:
    """Create what is missing in the data directory and start the endpoint and the API.

    Raises:
        ConfigError: the configuration or data directory is invalid.
        IronhubError: storage cannot be opened.
        OSError: a listener cannot bind.
    """
    files = DataFiles(config.data_dir)
    ensure_trust_material(config, clock=clock)
    services = await _open_services(config, clock)
    token, password = await _bootstrap(services)
    if token is None:
        await _audit_hub_event(services, "hub-start")
    tls_files = ServerTLSFiles(files.server_cert, files.server_key)
    trust = _TrustStore(tls_files, services)
    await trust.rebuild()
    services.registry.add_trust_listener(trust.on_change)
    if services.provisioning is not None:
        services.provisioning.add_trust_listener(trust.on_change)
    endpoint = DeviceEndpoint(services, ssl_context=trust.current)
    services.endpoint = endpoint
    await endpoint.start()
    if services.c2d is not None:
        services.c2d.start()
    if services.monitor is not None:
        await services.monitor.start()
        auditor = FleetAuditor(services)
        services.monitor.schedule_fleet_audit(
            lambda: _fleet_findings(auditor), config.monitor.fleet_audit_interval_seconds
        )

    app = create_app(services)
    api_config = uvicorn.Config(
        app,
        host=config.api.host,
        port=config.api.port,
        ssl_certfile=str(files.server_cert),
        ssl_keyfile=str(files.server_key),
        log_level="warning",
        lifespan="off",
        access_log=False,
        server_header=False,
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=16 * 1024,
    )
    api = _EmbeddedUvicorn(api_config)
    api_task = asyncio.get_running_loop().create_task(api.serve())
    while not api.started:
        if api_task.done():
            await endpoint.stop()
            if services.c2d is not None:
                await services.c2d.stop()
            if services.monitor is not None:
                await services.monitor.stop()
            await _close_services(services)
            api_task.result()
            raise ConfigError(f"the API could not listen on {config.api.host}:{config.api.port}")
        await asyncio.sleep(0.01)
    host, port = endpoint.address
    if services.provisioning is not None:
        services.provisioning.port = port
    api_port = api.servers[0].sockets[0].getsockname()[1] if api.servers else config.api.port
    info = ServeInfo(
        hostname=config.hostname,
        ca_path=files.ca_cert,
        mqtt=f"{host}:{port}",
        api_url=f"https://{_url_host(config.api.host)}:{api_port}",
        first_admin_token=token,
        first_admin_password=password,
        id_scope=(
            services.provisioning.id_scope
            if services.provisioning is not None and services.provisioning.enabled
            else None
        ),
    )
    return RunningHub(services, endpoint, app, api, api_task, info)


async def _serve_async(config: HubConfig, on_ready: Callable[[ServeInfo], None] | None) -> None:
    hub = await start_hub(config)
    logger.info("configuration %s", config.redacted())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready(hub.info)
    try:
        waiter = loop.create_task(stop.wait())
        await asyncio.wait({waiter, hub.api_task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        await hub.stop()


def serve(config: HubConfig, on_ready: Callable[[ServeInfo], None] | None = None) -> None:
    """Run the hub until SIGINT or SIGTERM.

    Raises:
        ConfigError: the configuration or data directory is invalid.
        IronhubError: storage cannot be opened.
        OSError: a listener cannot bind.
    """
    asyncio.run(_serve_async(config, on_ready))
