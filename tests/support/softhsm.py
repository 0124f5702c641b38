"""A throwaway SoftHSM2 token per test, in its own token directory.

SoftHSM2 reads its configuration file from ``SOFTHSM2_CONF`` when the module is initialised
(``C_Initialize``) and enumerates its tokens only then. Each test therefore gets a config
file and a token directory under its ``tmp_path``, pointed to by ``SOFTHSM2_CONF``; the key
custody finalises the module when its last session closes, so the next test's
initialisation reads the next test's file. :func:`make_token` checks at teardown that no
session was left open (a leak would make the next test see this test's tokens).

Tests needing SoftHSM2 call :func:`require_softhsm`: it skips, naming the missing piece, or
fails when ``IRONHUB_REQUIRE_SERVICES=1`` (CI). Debian/Ubuntu: ``apt-get install softhsm2``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pytest

from ironhub import custody
from ironhub.config import KeysConfig
from tests.support.services import require_service

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN_LABEL = "ironhub-test"
USER_PIN = "4711-user"
SO_PIN = "0815-so-pin"


def require_softhsm() -> None:
    """Skip (or, under IRONHUB_REQUIRE_SERVICES=1, fail) unless SoftHSM2 is installed."""
    if not SOFTHSM_MODULE.is_file():
        require_service(
            "SoftHSM2", False, f"{SOFTHSM_MODULE} is missing (apt-get install softhsm2)"
        )
    if shutil.which("softhsm2-util") is None:
        require_service(
            "SoftHSM2", False, "softhsm2-util is not on PATH (apt-get install softhsm2)"
        )


@dataclass(frozen=True)
class SoftHSMToken:
    """An initialised token in a private SoftHSM2 token directory."""

    conf: Path
    label: str
    pin: str
    pin_file: Path
    module: Path = SOFTHSM_MODULE

    def keys_config(self, **changes: str) -> KeysConfig:
        """The ``[keys]`` section that uses this token (PIN from the 0600 file)."""
        values = {
            "backend": "pkcs11",
            "pkcs11_module": str(self.module),
            "pkcs11_token_label": self.label,
            "pkcs11_pin_file": str(self.pin_file),
            "pkcs11_pin_env": "",
        }
        values.update(changes)
        return KeysConfig(**values)

    def toml(self) -> str:
        """The same as an ``ironhub.toml`` section."""
        return (
            "[keys]\n"
            'backend = "pkcs11"\n'
            f'pkcs11_module = "{self.module}"\n'
            f'pkcs11_token_label = "{self.label}"\n'
            f'pkcs11_pin_file = "{self.pin_file}"\n'
        )

    @contextlib.contextmanager
    def session(self) -> Iterator[pkcs11.Session]:
        """A logged-in read-write session for a test to inspect or damage the token.

        PKCS#11 logs in per process, so this must not overlap an open key custody session;
        the module is finalised afterwards so the custody starts from a clean state.
        """
        assert not custody._LINKS, "close the key material before opening a test session"
        lib = pkcs11.lib(str(self.module))
        try:
            with lib.get_token(token_label=self.label).open(rw=True, user_pin=self.pin) as session:
                yield session
        finally:
            lib.finalize()

    def labels(self) -> set[tuple[str, str]]:
        """(object class, label) of every object in the token."""
        with self.session() as session:
            return {
                (obj[pkcs11.Attribute.CLASS].name, obj[pkcs11.Attribute.LABEL])
                for obj in session.get_objects()
            }

    def destroy(self, label: str) -> None:
        """Delete every object labelled ``label`` (key loss, as an operator error would cause)."""
        with self.session() as session:
            for obj in list(session.get_objects({pkcs11.Attribute.LABEL: label})):
                obj.destroy()


def init_token(conf: Path, label: str, pin: str = USER_PIN, so_pin: str = SO_PIN) -> None:
    """Initialise a further token (next free slot) in the SoftHSM2 configuration ``conf``."""
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            so_pin,
        ],
        check=True,
        capture_output=True,
        env={"SOFTHSM2_CONF": str(conf), "PATH": "/usr/bin:/bin"},
        timeout=30,
    )


@contextlib.contextmanager
def make_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftHSMToken]:
    """Create a SoftHSM2 configuration and one token under ``tmp_path``; yield it.

    Raises:
        AssertionError: at teardown, if a key custody session was left open.
    """
    require_softhsm()
    root = tmp_path / "softhsm"
    tokens = root / "tokens"
    tokens.mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    init_token(conf, TOKEN_LABEL)
    pin_file = root / "pin"
    pin_file.write_text(USER_PIN + "\n")
    pin_file.chmod(0o600)
    yield SoftHSMToken(conf=conf, label=TOKEN_LABEL, pin=USER_PIN, pin_file=pin_file)
    leaked = list(custody._LINKS)
    if leaked:
        for link in list(custody._LINKS.values()):
            while link.holders:
                custody._Lease(link).release()
        pytest.fail(f"a key custody session was left open: {leaked}")
