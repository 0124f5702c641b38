"""Load the hostile-input vectors kept as JSON in this directory (format: README.md here).

Importable as ``tests.vectors.load`` (the repository root is on ``sys.path`` under pytest), or
from any script after putting the repository root on ``sys.path``. Standard library only, so the
live-socket tests, the fuzz harness and external tools can all use it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["VECTORS_DIR", "expected_connack_code", "load_vectors", "vector_bytes"]

VECTORS_DIR = Path(__file__).resolve().parent

_REQUIRED = {"name", "hex", "expect", "ref"}
_OPTIONAL = {"note", "accept_connect", "count"}
_EXPECT = re.compile(r"close|packets|connack:[1-5]")


def load_vectors(name: str) -> list[dict[str, Any]]:
    """Return the vectors of ``<name>.json`` in this directory, checked against the format.

    Raises:
        ValueError: the file breaks the format described in README.md.
    """
    path = VECTORS_DIR / (name if name.endswith(".json") else f"{name}.json")
    vectors = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(vectors, list):
        raise ValueError(f"{path.name}: the top level must be a list")
    names: set[str] = set()
    for vector in vectors:
        _check(path.name, vector, names)
    return vectors


def _check(file_name: str, vector: Any, names: set[str]) -> None:
    if not isinstance(vector, dict):
        raise ValueError(f"{file_name}: every vector must be an object")
    label = f"{file_name}: {vector.get('name')!r}"
    keys = set(vector)
    if not keys >= _REQUIRED or not keys <= _REQUIRED | _OPTIONAL:
        raise ValueError(
            f"{label}: keys must be {sorted(_REQUIRED)} plus any of {sorted(_OPTIONAL)}"
        )
    if vector["name"] in names:
        raise ValueError(f"{label}: duplicate name")
    names.add(vector["name"])
    if not _EXPECT.fullmatch(vector["expect"]):
        raise ValueError(f"{label}: expect must be close, packets or connack:1..5")
    bytes.fromhex(vector["hex"])
    if ("count" in vector) != (vector["expect"] == "packets"):
        raise ValueError(f"{label}: count is required with expect=packets, and only then")
    if not isinstance(vector.get("accept_connect", False), bool):
        raise ValueError(f"{label}: accept_connect must be a boolean")


def vector_bytes(vector: dict[str, Any]) -> bytes:
    """Return the bytes a vector sends (its ``hex``; whitespace is ignored)."""
    return bytes.fromhex(vector["hex"])


def expected_connack_code(vector: dict[str, Any]) -> int | None:
    """Return N for ``expect == "connack:N"``, else ``None``."""
    expect: str = vector["expect"]
    return int(expect.partition(":")[2]) if expect.startswith("connack:") else None
