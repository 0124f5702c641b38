"""Fixtures for the operator API and CLI tests: a real API server over TLS on a loopback port.

The server runs in its own thread with its own event loop (uvicorn + SQLite storage + registry
+ tokens + message log, wired by hand into ``Services``), so that tests can drive it with
blocking clients (``http.client``, ``click.testing.CliRunner``) exactly as operators do.
Coroutines that must run next to the services (appending to the log, reading state) go
through :meth:`APIHub.call`.

Every fixture here is prefixed ``api_`` so that it cannot clash with the lead's fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import uvicorn

from ironhub import pki
from ironhub.access.tokens import TokenService
from ironhub.api import close_streams, create_app
from ironhub.clock import FakeClock
from ironhub.config import HubConfig, LimitsConfig
from ironhub.metrics import Metrics
from ironhub.registry.sealing import generate_kek
from ironhub.registry.service import Registry
from ironhub.services import ConnectionInfo, Services
from ironhub.storage.interfaces import LogEntry, Stream
from ironhub.storage.sqlite import SQLiteStorage
from ironhub.streams.log import MessageLog

if TYPE_CHECKING:
    from pathlib import Path

T = TypeVar("T")

API_HOSTNAME = "hub.example.test"


@dataclass(frozen=True)
class APIPKI:
    """A hub CA and a server certificate for 127.0.0.1 / localhost, as files."""

    ca_path: Path
    cert_path: Path
    key_path: Path
    ca_key: Any
    ca_cert: Any


@pytest.fixture(scope="session")
def api_pki(tmp_path_factory: pytest.TempPathFactory) -> APIPKI:
    directory = tmp_path_factory.mktemp("api-pki")
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = pki.create_ca("ironhub test CA", now=now)
    key, cert = pki.issue_server_certificate(
        ca_key, ca_cert, ("localhost", "127.0.0.1", API_HOSTNAME), now=now
    )
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(pki.certificate_pem(ca_cert))
    cert_path = directory / "server.pem"
    cert_path.write_bytes(pki.certificate_pem(cert) + pki.certificate_pem(ca_cert))
    key_path = directory / "server.key"
    key_path.write_bytes(pki.private_key_pem(key))
    key_path.chmod(0o600)
    return APIPKI(ca_path, cert_path, key_path, ca_key, ca_cert)


class FakeEndpoint:
    """A device endpoint stand-in that reports whatever connections a test sets."""

    def __init__(self) -> None:
        self.live: list[ConnectionInfo] = []

    def connections(self) -> list[ConnectionInfo]:
        return list(self.live)


@dataclass
class APIResponse:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> str:
        return str(self.json()["error"]["code"])


_DEFAULT = object()


@dataclass
class APIHub:
    """A running API server and the services behind it."""

    host: str
    port: int
    pki: APIPKI
    token: str
    services: Services
    clock: FakeClock
    endpoint: FakeEndpoint
    app: Any
    loop: asyncio.AbstractEventLoop
    data_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        """Run ``coro`` on the server's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, func: Callable[[], T]) -> T:
        """Run a plain function on the server's event loop thread."""

        async def wrapper() -> T:
            return func()

        return self.call(wrapper())

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki.ca_path))

    def connection(self, timeout: float = 20.0) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, timeout=timeout, context=self.ssl_context()
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        token: Any = _DEFAULT,
        headers: dict[str, str] | None = None,
    ) -> APIResponse:
        """One request on a fresh TLS connection; ``token=None`` sends no Authorization."""
        all_headers: dict[str, str] = {}
        if token is _DEFAULT:
            token = self.token
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            return APIResponse(response.status, response.headers, response.read())
        finally:
            conn.close()

    def append(
        self,
        payload: bytes,
        *,
        device_id: str | None = "dev1",
        stream: Stream = Stream.TELEMETRY,
        properties: tuple[tuple[str, str], ...] = (),
    ) -> int:
        """Append a message to the log and wait for its commit; returns its seq."""
        entry = LogEntry(
            stream=stream,
            device_id=device_id,
            enqueued_at=self.clock.time(),
            payload=payload,
            properties=properties,
        )

        async def append() -> int:
            return await self.services.log.append(entry)

        return self.call(append())

    def security_events(self, event: str | None = None) -> list[dict[str, str]]:
        """Property bags of the security stream, optionally only one event kind."""

        async def query() -> list[dict[str, str]]:
            messages = await self.services.log.query(stream=Stream.SECURITY, limit=1000)
            return [dict(m.properties) for m in messages]

        events = self.call(query())
        return [e for e in events if event is None or e.get("event") == event]

    def tail_count(self) -> int:
        return self.run(lambda: self.app.state.ironhub_api.tails.active)


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def _serve_api(
    data_dir: Path,
    api_pki: APIPKI,
    *,
    limits: LimitsConfig,
    max_tail_clients: int,
    max_body_bytes: int,
    heartbeat_seconds: float,
    body_timeout_seconds: float,
) -> Iterator[APIHub]:
    """Start the API in a thread; stop it, and close storage, on exit."""
    ready = threading.Event()
    stop: dict[str, Callable[[], None]] = {}
    holder: dict[str, Any] = {}
    failure: list[BaseException] = []

    async def main() -> None:
        clock = FakeClock()
        metrics = Metrics()
        base = HubConfig(data_dir=data_dir, hostnames=(API_HOSTNAME,))
        config = replace(
            base,
            limits=limits,
            api=replace(base.api, max_tail_clients=max_tail_clients, max_body_bytes=max_body_bytes),
        )
        storage = SQLiteStorage(data_dir / "hub.db", config.storage, clock, metrics)
        await storage.open()
        log = MessageLog(storage, clock, metrics)
        await log.start()
        endpoint = FakeEndpoint()
        services = Services(
            config=config,
            clock=clock,
            metrics=metrics,
            storage=storage,
            registry=Registry(storage, generate_kek(), clock),
            tokens=TokenService(storage, clock),
            log=log,
            endpoint=endpoint,
        )
        secret, _ = await services.tokens.create("test-admin", ttl_seconds=3600)
        app = create_app(
            services,
            tail_heartbeat_seconds=heartbeat_seconds,
            body_timeout_seconds=body_timeout_seconds,
        )
        sock = _free_socket()
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                ssl_certfile=str(api_pki.cert_path),
                ssl_keyfile=str(api_pki.key_path),
                lifespan="off",
                log_level="warning",
                access_log=False,
                ws="none",
                timeout_graceful_shutdown=5,
            )
        )
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        stop["stop"] = lambda: loop.call_soon_threadsafe(stopped.set)
        holder["hub"] = APIHub(
            host="127.0.0.1",
            port=sock.getsockname()[1],
            pki=api_pki,
            token=secret,
            services=services,
            clock=clock,
            endpoint=endpoint,
            app=app,
            loop=loop,
            data_dir=data_dir,
        )
        ready.set()
        try:
            await stopped.wait()
        finally:
            close_streams(app)
            server.should_exit = True
            await task
            sock.close()
            await log.close()
            await storage.close()

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test thread
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=thread_main, name="api-test-server", daemon=True)
    thread.start()
    ready.wait(30)
    if failure:
        raise failure[0]
    try:
        yield holder["hub"]
    finally:
        stop["stop"]()
        thread.join(30)
        if failure:
            raise failure[0]


APIHubFactory = Callable[..., APIHub]


@pytest.fixture
def api_hub_factory(tmp_path: Path, api_pki: APIPKI) -> Iterator[APIHubFactory]:
    """Start API servers with chosen limits; all are stopped at the end of the test."""
    with contextlib.ExitStack() as stack:
        counter = iter(range(100))

        def start(
            *,
            auth_failures_per_minute: int = 1000,
            max_tail_clients: int = 4,
            max_body_bytes: int = 64 * 1024,
            heartbeat_seconds: float = 0.2,
            body_timeout_seconds: float = 10.0,
        ) -> APIHub:
            data_dir = tmp_path / f"hub{next(counter)}"
            data_dir.mkdir()
            limits = LimitsConfig(auth_failures_per_source_per_minute=auth_failures_per_minute)
            return stack.enter_context(
                _serve_api(
                    data_dir,
                    api_pki,
                    limits=limits,
                    max_tail_clients=max_tail_clients,
                    max_body_bytes=max_body_bytes,
                    heartbeat_seconds=heartbeat_seconds,
                    body_timeout_seconds=body_timeout_seconds,
                )
            )

        yield start


@pytest.fixture
def api_hub(api_hub_factory: APIHubFactory) -> APIHub:
    """A running API server with generous auth-failure limits."""
    return api_hub_factory()
