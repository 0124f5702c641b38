"""Load the hostile-input vectors kept as JSON in this directory (format: README.md here).

Importable as ``tests.vectors.load`` (the repository root is on ``sys.path`` under pytest), or
from any script after putting the repository root on ``sys.path``. Standard library only, so the
live-socket tests, the fuzz harness and external tools can all use it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "LIVE_EVENTS",
    "PUBLISH_OUTCOMES",
    "RULE_ERRORS",
    "SUBSCRIPTION_KINDS",
    "VECTORS_DIR",
    "CloudPublishVector",
    "CloudSubscribeVector",
    "CloudVectors",
    "expand_text",
    "expected_connack_code",
    "load_cloud_vectors",
    "load_vectors",
    "vector_bytes",
]

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


# --- azure_cloud.json: device publishes and subscriptions against the hub's Azure rules --------

#: What a publish vector expects (README.md, "azure_cloud.json").
PUBLISH_OUTCOMES = frozenset({"close", "twin-400", "method-refused", "ok-200", "ok-204"})
#: The SubscriptionKind values an ``ok:<kind>`` subscription vector may name.
SUBSCRIPTION_KINDS = frozenset({"c2d", "module-inputs", "twin-responses", "desired", "methods"})
#: The exception the pure rule raises for a ``close`` vector (ironhub.errors class names).
RULE_ERRORS = frozenset({"AuthorizationError", "ValidationError"})
#: Security events a live ``close`` may record instead of the default one: ``protocol-error``
#: when the MQTT codec refuses the packet before the hub's topic rules see it.
LIVE_EVENTS = frozenset({"publish-denied", "subscribe-denied", "protocol-error"})

_CLOUD_COMMON = {"name", "kind", "identity", "expect", "ref"}
_CLOUD_PUBLISH = _CLOUD_COMMON | {"topic", "payload_hex", "payload_text"}
_CLOUD_OPTIONAL = {"note", "error", "rid", "live_event"}
_CLOUD_SUBSCRIBE = _CLOUD_COMMON | {"filter"}
_IDENTITY = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9\-._:@]{0,127}(/[A-Za-z0-9][A-Za-z0-9\-._:@]{0,127})?"
)


@dataclass(frozen=True)
class CloudPublishVector:
    """A PUBLISH from an authenticated device or module, and what the hub must do with it.

    ``expect`` is one of :data:`PUBLISH_OUTCOMES`; ``error`` the exception class name the pure
    rule raises (``close`` only); ``rid`` the decoded ``$rid`` the hub's answer or event echoes
    (every outcome but ``close``); ``live_event`` the security event of a live ``close`` when it
    is not ``publish-denied``.
    """

    name: str
    identity: str
    topic: str
    payload: bytes
    expect: str
    error: str | None
    rid: str | None
    live_event: str | None
    ref: str
    note: str

    @property
    def device_id(self) -> str:
        return self.identity.partition("/")[0]

    @property
    def module_id(self) -> str | None:
        return self.identity.partition("/")[2] or None

    @property
    def event(self) -> str | None:
        """The security event a live hub records for this publish (``None``: none at all)."""
        return {
            "close": self.live_event or "publish-denied",
            "twin-400": "twin-patch-refused",
            "method-refused": "method-response-refused",
        }.get(self.expect)


@dataclass(frozen=True)
class CloudSubscribeVector:
    """A one-filter SUBSCRIBE from an authenticated device or module.

    ``expect`` is ``ok`` (SUBACK, the filter is the subscription ``kind``) or ``close``.
    """

    name: str
    identity: str
    topic_filter: str
    expect: str
    kind: str | None
    error: str | None
    live_event: str | None
    ref: str
    note: str

    @property
    def device_id(self) -> str:
        return self.identity.partition("/")[0]

    @property
    def module_id(self) -> str | None:
        return self.identity.partition("/")[2] or None

    @property
    def event(self) -> str | None:
        """The security event a live hub records for this filter (``None``: none at all)."""
        if self.expect == "close":
            return self.live_event or "subscribe-denied"
        return None


@dataclass(frozen=True)
class CloudVectors:
    """The two halves of ``azure_cloud.json``."""

    publishes: tuple[CloudPublishVector, ...]
    subscriptions: tuple[CloudSubscribeVector, ...]


def load_cloud_vectors(name: str = "azure_cloud") -> CloudVectors:
    """Return the vectors of ``<name>.json``, checked against README.md ("azure_cloud.json").

    Raises:
        ValueError: the file breaks the format.
    """
    path = VECTORS_DIR / (name if name.endswith(".json") else f"{name}.json")
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise ValueError(f"{path.name}: the top level must be a list")
    names: set[str] = set()
    publishes: list[CloudPublishVector] = []
    subscriptions: list[CloudSubscribeVector] = []
    for vector in raw:
        if not isinstance(vector, dict):
            raise ValueError(f"{path.name}: every vector must be an object")
        label = f"{path.name}: {vector.get('name')!r}"
        if vector.get("name") in names or not isinstance(vector.get("name"), str):
            raise ValueError(f"{label}: names must be unique strings")
        names.add(vector["name"])
        if not isinstance(vector.get("identity"), str) or not _IDENTITY.fullmatch(
            vector["identity"]
        ):
            raise ValueError(f"{label}: identity must be 'device' or 'device/module'")
        kind = vector.get("kind")
        if kind == "publish":
            publishes.append(_publish_vector(label, vector))
        elif kind == "subscribe":
            subscriptions.append(_subscribe_vector(label, vector))
        else:
            raise ValueError(f"{label}: kind must be publish or subscribe")
    return CloudVectors(tuple(publishes), tuple(subscriptions))


def _check_keys(label: str, vector: dict[str, Any], allowed: set[str]) -> None:
    keys = set(vector)
    if not keys >= _CLOUD_COMMON or not keys <= allowed | _CLOUD_OPTIONAL:
        raise ValueError(
            f"{label}: keys must be {sorted(allowed)} plus any of {sorted(_CLOUD_OPTIONAL)}"
        )


def _check_close_fields(label: str, vector: dict[str, Any], closing: bool) -> None:
    if ("error" in vector) != closing:
        raise ValueError(f"{label}: error is required with expect=close, and only then")
    if closing and vector["error"] not in RULE_ERRORS:
        raise ValueError(f"{label}: error must be one of {sorted(RULE_ERRORS)}")
    if "live_event" in vector and (not closing or vector["live_event"] not in LIVE_EVENTS):
        raise ValueError(
            f"{label}: live_event goes with expect=close, one of {sorted(LIVE_EVENTS)}"
        )


def _publish_vector(label: str, vector: dict[str, Any]) -> CloudPublishVector:
    _check_keys(label, vector, _CLOUD_PUBLISH)
    if ("payload_hex" in vector) == ("payload_text" in vector):
        raise ValueError(f"{label}: exactly one of payload_hex and payload_text")
    if "payload_hex" in vector:
        payload = bytes.fromhex(vector["payload_hex"])
    else:
        payload = expand_text(vector["payload_text"], label).encode("utf-8")
    expect = vector["expect"]
    if expect not in PUBLISH_OUTCOMES:
        raise ValueError(f"{label}: expect must be one of {sorted(PUBLISH_OUTCOMES)}")
    _check_close_fields(label, vector, expect == "close")
    if ("rid" in vector) == (expect == "close"):
        raise ValueError(f"{label}: rid is required unless expect=close, and only then")
    return CloudPublishVector(
        name=vector["name"],
        identity=vector["identity"],
        topic=expand_text(vector["topic"], label),
        payload=payload,
        expect=expect,
        error=vector.get("error"),
        rid=vector.get("rid"),
        live_event=vector.get("live_event"),
        ref=vector["ref"],
        note=vector.get("note", ""),
    )


def _subscribe_vector(label: str, vector: dict[str, Any]) -> CloudSubscribeVector:
    _check_keys(label, vector, _CLOUD_SUBSCRIBE)
    if "rid" in vector:
        raise ValueError(f"{label}: subscriptions have no rid")
    expect, _, kind = vector["expect"].partition(":")
    if not (expect == "close" and not kind) and not (expect == "ok" and kind in SUBSCRIPTION_KINDS):
        raise ValueError(f"{label}: expect must be close or ok:<kind>")
    _check_close_fields(label, vector, expect == "close")
    return CloudSubscribeVector(
        name=vector["name"],
        identity=vector["identity"],
        topic_filter=expand_text(vector["filter"], label),
        expect=expect,
        kind=kind or None,
        error=vector.get("error"),
        live_event=vector.get("live_event"),
        ref=vector["ref"],
        note=vector.get("note", ""),
    )


def expand_text(value: Any, label: str = "text") -> str:
    """A text field: a string, or a list of strings and ``{"repeat": s, "times": n}`` parts."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise ValueError(f"{label}: a text field is a string or a list of parts")
    parts: list[str] = []
    for part in value:
        if isinstance(part, str):
            parts.append(part)
        elif (
            isinstance(part, dict)
            and set(part) == {"repeat", "times"}
            and isinstance(part["repeat"], str)
            and isinstance(part["times"], int)
            and not isinstance(part["times"], bool)
            and 0 <= part["times"] <= 1_000_000
        ):
            parts.append(part["repeat"] * part["times"])
        else:
            raise ValueError(f"{label}: a part is a string or {{'repeat': str, 'times': int}}")
    return "".join(parts)
