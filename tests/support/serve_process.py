"""Run the real ``ironhub`` command line as subprocesses: ``init``, then ``serve`` to kill.

For tests that need a whole hub process (signals, crashes, restarts), not a hub started
in-process. Typical use::

    init = init_data_dir(tmp_path / "data")
    with ServeProcess.start(init.data_dir, env=FAST_LOAD_ENV) as hub:
        api = hub.api_client(init.token)
        ...
        hub.kill()                    # SIGKILL, reaped

Every wait is bounded. ``serve`` binds port 0 on loopback (the kernel picks a free port, so
there is no race between choosing a port and binding it) and the real addresses are taken from
the JSON line it prints once it accepts connections. stdout and stderr go to files, never to
pipes (a chatty hub can never block on a full pipe); :meth:`ServeProcess.diagnostics` returns
them for assertion messages. Leaving the ``with`` block kills a process that is still running.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from ironhub.cli.client import HubClient
from tests.support.mqtt_client import SasCredentials, client_tls_context

__all__ = [
    "FAST_LOAD_ENV",
    "HubInit",
    "ServeProcess",
    "child_environment",
    "create_sas_devices",
    "free_port",
    "hub_command",
    "init_data_dir",
]

#: Environment for a hub under load tests: the per-device rate limiter never slows the load.
FAST_LOAD_ENV = {
    "IRONHUB_LIMITS_DEVICE_MESSAGES_PER_SECOND": "100000",
    "IRONHUB_LIMITS_DEVICE_MESSAGE_BURST": "100000",
}


def hub_command(*args: str) -> list[str]:
    """``ironhub ARGS...`` run by this interpreter (no dependence on ``PATH``)."""
    return [sys.executable, "-m", "ironhub.cli", *args]


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``IRONHUB_*`` variable, plus ``extra``.

    A developer's ``IRONHUB_MQTT_PORT`` or ``IRONHUB_TOKEN`` must not leak into a test hub.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRONHUB_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` right now (prefer binding port 0 where the program allows it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class HubInit:
    """What ``ironhub init --json`` reported."""

    data_dir: Path
    hostname: str
    ca_path: Path
    token: str


def init_data_dir(data_dir: Path, *, timeout: float = 30.0) -> HubInit:
    """Run ``ironhub init --data DATA_DIR --json`` on a new directory.

    Raises:
        AssertionError: the command failed, or printed no first admin token.
    """
    done = subprocess.run(
        hub_command("init", "--data", str(data_dir), "--json"),
        capture_output=True,
        env=child_environment(),
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, (
        f"ironhub init exited {done.returncode}:\n{done.stderr.decode(errors='replace')}"
    )
    answer = json.loads(done.stdout)
    assert answer["first_admin_token"], f"init printed no first admin token: {answer}"
    return HubInit(
        data_dir=Path(answer["data_dir"]),
        hostname=answer["hostname"],
        ca_path=Path(answer["ca_path"]),
        token=answer["first_admin_token"],
    )


def create_sas_devices(
    api: HubClient, hostname: str, device_ids: list[str]
) -> dict[str, SasCredentials]:
    """Create SAS devices through the API; their credentials by device id."""
    creds = {}
    for device_id in device_ids:
        answer = api.request("POST", "/devices", json_body={"device_id": device_id, "auth": "sas"})
        creds[device_id] = SasCredentials(hostname, device_id, answer["primary_key"])
    return creds


def _split_host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class ServeProcess:
    """One ``ironhub serve --json`` subprocess; use :meth:`start`, preferably in ``with``."""

    def __init__(
        self, process: subprocess.Popen[bytes], stdout: IO[bytes], stderr: IO[bytes]
    ) -> None:
        self.process = process
        self._stdout = stdout
        self._stderr = stderr
        self.info: dict[str, Any] = {}
        self.mqtt: tuple[str, int] = ("", 0)
        self.api_url = ""
        self.ca_path = Path()

    # --- life cycle -----------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        data_dir: Path,
        *,
        env: dict[str, str] | None = None,
        mqtt: str = "127.0.0.1:0",
        api: str = "127.0.0.1:0",
        extra_args: Sequence[str] = (),
        ready_timeout: float = 20.0,
    ) -> ServeProcess:
        """Start ``ironhub serve`` and return once its MQTT port completes a TLS handshake.

        ``env`` is added to a clean environment (see :func:`child_environment`); ``extra_args``
        go to ``serve`` (for example ``("--hostname", "hub.example")``).

        Raises:
            AssertionError: the process exited or was not ready in time (it is killed; the
                message holds its stderr).
        """
        stdout = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        try:
            process = subprocess.Popen(
                hub_command(
                    "serve",
                    "--data",
                    str(data_dir),
                    "--mqtt",
                    mqtt,
                    "--api",
                    api,
                    "--json",
                    *extra_args,
                ),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=child_environment(env),
            )
        except BaseException:
            stdout.close()
            stderr.close()
            raise
        hub = cls(process, stdout, stderr)
        try:
            hub._await_ready(ready_timeout)
        except BaseException:
            hub.close()
            raise
        return hub

    def _await_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while b"\n" not in (out := self._read(self._stdout)):
            if self.process.poll() is not None:
                raise AssertionError(f"ironhub serve exited before ready{self.diagnostics()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"ironhub serve not ready in {timeout} s{self.diagnostics()}")
            time.sleep(0.02)
        line = out.partition(b"\n")[0]
        self.info = json.loads(line)
        self.mqtt = _split_host_port(self.info["mqtt"])
        self.api_url = self.info["api_url"]
        self.ca_path = Path(self.info["ca_path"])
        self.wait_mqtt_tls(max(0.5, deadline - time.monotonic()))

    def wait_mqtt_tls(self, timeout: float = 10.0) -> None:
        """Wait until the MQTT port completes a TLS handshake with the hub's CA.

        Raises:
            AssertionError: not within ``timeout``, or the process exited.
        """
        ctx = client_tls_context(self.ca_path)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with (
                    socket.create_connection(self.mqtt, timeout=2) as raw,
                    ctx.wrap_socket(raw, server_hostname="localhost"),
                ):
                    return
            except (OSError, ssl.SSLError) as exc:
                last = exc
                time.sleep(0.05)
        raise AssertionError(
            f"MQTT port {self.mqtt} never accepted TLS (last error {last!r}){self.diagnostics()}"
        )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def kill(self, *, timeout: float = 10.0) -> int:
        """SIGKILL the process and reap it; its return code (``-SIGKILL`` unless it had ended)."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout)

    def terminate(self, *, timeout: float = 10.0) -> int | None:
        """SIGTERM the process and wait up to ``timeout``; its return code, ``None`` if running."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Kill the process if it still runs, reap it and close its output files."""
        try:
            if self.alive():
                self.process.kill()
            self.process.wait(10)
        finally:
            self._stdout.close()
            self._stderr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- access ---------------------------------------------------------------------------
    def api_client(self, token: str, *, timeout: float = 10.0) -> HubClient:
        """An operator API client of this process."""
        return HubClient(self.api_url, token, self.ca_path, timeout_seconds=timeout)

    def cli_environment(self, token: str) -> dict[str, str]:
        """The environment for ``ironhub`` client commands (``device create``...) to this hub."""
        return child_environment(
            {"IRONHUB_API": self.api_url, "IRONHUB_TOKEN": token, "IRONHUB_CA": str(self.ca_path)}
        )

    @staticmethod
    def _read(file: IO[bytes]) -> bytes:
        if file.closed:
            return b""
        # pread, not seek + read: the child shares this file description, and moving its
        # offset would make the child overwrite what it wrote before.
        fd = file.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0)

    def stderr_text(self) -> str:
        """Everything the process wrote to stderr so far."""
        return self._read(self._stderr).decode(errors="replace")

    def diagnostics(self, *, max_chars: int = 8000) -> str:
        """Return code and the tail of stderr, for assertion messages."""
        err = self.stderr_text()
        if len(err) > max_chars:
            err = "...\n" + err[-max_chars:]
        return (
            f"\n--- ironhub serve pid={self.pid} returncode={self.process.returncode} ---\n"
            f"--- stderr ---\n{err or '(empty)'}"
        )
