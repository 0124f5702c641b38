"""Pure packages never import I/O, clocks, threads or asyncio (STYLE.md, ARCHITECTURE.md).

The protocol and security rules live in pure code that only ever receives values: the codecs,
the PKI policy, key sealing and the audit chain. The services wire them to sockets, files and
clocks. This test reads the pure modules' source with ``ast`` (nothing is imported, so a module
cannot hide an import behind a side effect) and fails on any import of a forbidden module,
including imports under ``if TYPE_CHECKING``, inside functions, and through ``__import__`` or
``importlib``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "ironhub"

PURE = (
    *sorted((SRC / "codec").rglob("*.py")),
    *sorted((SRC / "pki").rglob("*.py")),
    *sorted((SRC / "audit").glob("_*.py")),  # the audit chain; its service is not pure
    SRC / "registry" / "sealing.py",
    SRC / "registry" / "twin.py",
    SRC / "registry" / "query.py",
    SRC / "hub" / "outbound.py",
    SRC / "hub" / "ratelimit.py",
    SRC / "access" / "policy.py",
    SRC / "access" / "roles.py",
    SRC / "access" / "_common_passwords.py",
    SRC / "monitor" / "alerts.py",
    SRC / "monitor" / "detectors.py",
    SRC / "monitor" / "events.py",
    SRC / "monitor" / "model.py",
    SRC / "monitor" / "fleet.py",
    SRC / "monitor" / "profiles.py",
    SRC / "monitor" / "advisories.py",
    SRC / "monitor" / "compliance.py",
)

# Each entry forbids the module and its submodules.
FORBIDDEN = frozenset(
    {
        # event loops and concurrency
        "asyncio", "threading", "multiprocessing", "concurrent", "signal",
        # the network
        "socket", "socketserver", "ssl", "select", "selectors", "http", "urllib.request",
        # processes, files and storage ("os" covers files and the environment)
        "os", "subprocess", "pathlib", "shutil", "tempfile", "sqlite3",
        # clocks: time comes in as a value
        "time",
        # dynamic imports would dodge this very test
        "importlib",
    }
)  # fmt: skip


def _is_forbidden(module: str) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in FORBIDDEN)


def forbidden_imports(source: str) -> list[str]:
    """Return ``line: module`` for every forbidden import in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "__import__":
            found.append(f"{node.lineno}: __import__")
            continue
        else:
            continue
        found += [f"{node.lineno}: {module}" for module in modules if _is_forbidden(module)]
    return found


def test_there_are_pure_modules_to_check() -> None:
    assert any(path.name == "_decoder.py" for path in PURE)


@pytest.mark.parametrize("path", PURE, ids=lambda path: str(path.relative_to(SRC)))
def test_pure_module_imports_nothing_impure(path: Path) -> None:
    assert forbidden_imports(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import os.path",
        "from os import path",
        "from time import monotonic",
        "import socket as s",
        "from urllib import request",
        "from concurrent.futures import ThreadPoolExecutor",
        "def f():\n    import ssl",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asyncio",
        "__import__('socket')",
        "import importlib\nimportlib.import_module('socket')",
    ],
)
def test_the_scanner_catches_impure_imports(source: str) -> None:
    assert forbidden_imports(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "import re",
        "import datetime as dt",
        "from urllib.parse import quote",
        "import timeit_like_name_is_not_time",
        "from . import sibling",
        "from ironhub.errors import RemoteProtocolError",
        "import secrets",
    ],
)
def test_the_scanner_allows_pure_imports(source: str) -> None:
    assert forbidden_imports(source) == []
