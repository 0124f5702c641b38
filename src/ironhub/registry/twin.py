"""Device and module twins: the documents, the patch rules, and the answers built from them.

A twin has three sections, each a JSON object: ``tags`` (operator only), ``desired`` (written
by the operator, read by the device) and ``reported`` (written by the device). ``desired`` and
``reported`` carry a ``$version`` that grows by one on every change of that section; the twin as
a whole carries ``version``, the operator's etag, which grows on every change of any section.
This module holds the rules as pure functions over values: the services hand it bytes or
decoded dicts and store the :class:`Twin` it returns (azure-iot-mqtt.md §3.3, §9).

Rules (Azure IoT Hub, "Understand and use device twins", *Tags and properties format* and
*Device twin size*; the same numbers as Microsoft's own IoT Edge hub validator,
``ReportedPropertiesValidator.cs``):

* A patch is a JSON object, merged into its section by RFC 7396 JSON merge patch: ``null``
  deletes a member, an object merges recursively, anything else replaces.
* Property names are non-empty, at most 1 KB of UTF-8, and contain no control character (Azure
  excludes the Unicode C0 *and* C1 segments, so U+0000-U+001F, U+007F and U+0080-U+009F are all
  refused), no ``.``, no ``$`` and no space. ``$version``, ``$metadata`` and friends are
  therefore refused when a device or an operator sends them; the hub alone writes them.
* Values are booleans, numbers, strings, objects and arrays. Integers lie in
  [-2^52, 2^52 - 1] (the Azure range; a JSON consumer using doubles reads them exactly); floats
  are finite; strings are at most 4 KB of UTF-8 and hold no lone surrogate.
* ``null`` is a member value only, where it means "delete". Arrays may not hold ``null``: Azure
  documents no meaning for it and the IoT Edge hub refuses it ("Arrays cannot contain 'null'").
  Objects inside arrays follow the same name and value rules; an array replaces the whole
  previous value (RFC 7396 does not merge arrays).
* Depth: Azure allows objects nested 10 deep *below* the section root; its documented valid
  example is ``{"one": {"two": ... {"ten": {"property": "value"}}}}`` inside ``tags``, and the
  IoT Edge validator accepts exactly that. We count the section root as level 0 and every
  container below it (object *or* array) as one level more than the container holding it;
  ``max_depth`` bounds that level. Arrays count as a level (Azure says nothing about them) so
  that the check on raw bytes and the check on decoded values agree, and ``[[[[`` cannot slip
  past a rule that only counts objects.
* Before ``json.loads`` sees a body, its bracket depth is measured on the raw bytes (brackets
  inside strings ignored), so a 64 KB ``[[[[...`` bomb is refused without recursing;
  ``RecursionError`` is still caught as a second line.
* After a merge, the section's compact UTF-8 JSON text (without ``$version``) must fit in 32 KB
  (``desired``, ``reported``) or 8 KB (``tags``). Azure counts a little differently (the sum of
  key and value lengths, numbers as 8 bytes); the JSON text is what we store and send, so that
  is what we bound. The check runs on the merged result, so a patch that deletes may always
  shrink an oversize section.
* An empty patch ``{}`` is accepted and still bumps the versions, as Azure does.

Every refusal is a :class:`~ironhub.errors.ValidationError` whose message names the rule and
never the property name, the value or any payload byte; foreign exceptions (whose messages or
attributes can carry the payload, like ``UnicodeDecodeError`` and ``JSONDecodeError.doc``) are
dropped with ``from None``.

Twins are immutable values. Each :class:`Twin` owns private plain-dict copies of its sections,
made when it is built, so no two twins (and no caller) share mutable structure; the functions
here build new twins and never change one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from ironhub.errors import ValidationError
from ironhub.storage.interfaces import TwinRecord

__all__ = [
    "Twin",
    "TwinLimits",
    "check_patch",
    "desired_notification",
    "merge_patch",
    "parse_patch",
    "patch_desired",
    "patch_reported",
    "patch_tags",
]

#: The Azure integer range for twin values: [-2^52, 2^52 - 1] (the IoT Edge hub uses the same).
_MIN_INTEGER: Final = -(2**52)
_MAX_INTEGER: Final = 2**52 - 1

#: Longest integer literal (sign included) worth converting; anything longer is out of range.
#: Checked before ``int()`` so a 60 000-digit literal costs nothing and never hits the
#: interpreter's 4300-digit conversion limit.
_MAX_INTEGER_CHARS: Final = 20

#: Control characters (C0, DEL, C1) in a property name.
_NAME_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

#: The printable characters Azure reserves in a property name.
_NAME_RESERVED = re.compile("[.$ ]")

#: The bytes that matter to the raw depth scan: brackets, quotes and backslashes.
_STRUCTURAL = re.compile(rb'[\[\]{}"\\]')

_OPEN: Final = frozenset(b"[{")
_CLOSE: Final = frozenset(b"]}")
_QUOTE: Final = ord('"')
_BACKSLASH: Final = ord("\\")

_COMPACT: Final = (",", ":")


@dataclass(frozen=True, slots=True)
class TwinLimits:
    """The size and shape limits of twin documents. Defaults are Azure IoT Hub's (§9).

    Attributes:
        max_section_bytes: largest compact UTF-8 JSON text of ``desired`` or ``reported``
            (without ``$version``), checked after every merge. Azure: 32 KB.
        max_tags_bytes: the same bound for ``tags``. Azure: 8 KB.
        max_value_bytes: largest string value, in UTF-8 bytes. Azure: 4 KB.
        max_key_bytes: largest property name, in UTF-8 bytes. Azure: 1 KB.
        max_depth: deepest container level below the section root (which is level 0); an
            object or array directly in the section is level 1. Azure: 10.
        max_patch_bytes: largest raw patch body :func:`parse_patch` looks at, checked before
            anything else. Twice the section limit, so that a patch that rewrites a full
            section (with ``null`` deletions beside it) still fits.
    """

    max_section_bytes: int = 32 * 1024
    max_tags_bytes: int = 8 * 1024
    max_value_bytes: int = 4 * 1024
    max_key_bytes: int = 1024
    max_depth: int = 10
    max_patch_bytes: int = 64 * 1024


_DEFAULT_LIMITS: Final = TwinLimits()


@dataclass(frozen=True, slots=True)
class Twin:
    """The twin of one identity, as an immutable value.

    The sections are plain dicts *without* ``$version``; the versions sit beside them. The
    twin copies whatever mappings it is given into private dicts when it is built, so callers
    may keep using their own; treat the sections of a twin as read-only.

    Attributes:
        identity: ``"device"`` or ``"device/module"``.
        tags: the operator's tags.
        desired: the desired properties, without ``$version``.
        desired_version: the desired ``$version``; +1 on every desired patch.
        reported: the reported properties, without ``$version``.
        reported_version: the reported ``$version``; +1 on every reported patch.
        version: the operator's etag; +1 on every change of any section.
        updated_at: when the twin last changed (seconds since the epoch, from the caller).
    """

    identity: str
    tags: Mapping[str, Any]
    desired: Mapping[str, Any]
    desired_version: int
    reported: Mapping[str, Any]
    reported_version: int
    version: int
    updated_at: float

    def __post_init__(self) -> None:
        # Frozen guards the attributes, not the dicts behind them: own private copies, so no
        # two twins (an old one and its patched successor) ever share a mutable object.
        object.__setattr__(self, "tags", _plain_object(self.tags))
        object.__setattr__(self, "desired", _plain_object(self.desired))
        object.__setattr__(self, "reported", _plain_object(self.reported))

    @classmethod
    def new(cls, identity: str, now: float) -> Twin:
        """The twin every identity gets at creation: empty sections, all versions 1.

        Args:
            identity: ``"device"`` or ``"device/module"``.
            now: the creation time.

        Returns:
            The new twin.

        Raises:
            Nothing; the arguments are taken as given.
        """
        return cls(
            identity=identity,
            tags={},
            desired={},
            desired_version=1,
            reported={},
            reported_version=1,
            version=1,
            updated_at=now,
        )

    @classmethod
    def from_record(cls, record: TwinRecord) -> Twin:
        """Rebuild a twin from its stored form.

        Args:
            record: the stored twin; its sections are JSON object texts.

        Returns:
            The twin.

        Raises:
            ValidationError: a stored section is not a JSON object text.
        """
        return cls(
            identity=record.identity,
            tags=_load_stored_section(record.tags, "tags"),
            desired=_load_stored_section(record.desired, "desired"),
            desired_version=record.desired_version,
            reported=_load_stored_section(record.reported, "reported"),
            reported_version=record.reported_version,
            version=record.version,
            updated_at=record.updated_at,
        )

    def to_record(self) -> TwinRecord:
        """The stored form: compact JSON texts, members in insertion order.

        Returns:
            The record to hand to storage.

        Raises:
            ValueError: a section holds a non-finite float, which only a twin built around
                the validation of this module can (a bug on our side).
        """
        return TwinRecord(
            identity=self.identity,
            tags=_dumps(self.tags),
            desired=_dumps(self.desired),
            desired_version=self.desired_version,
            reported=_dumps(self.reported),
            reported_version=self.reported_version,
            version=self.version,
            updated_at=self.updated_at,
        )

    def device_document(self) -> bytes:
        """The body of the answer to a device's ``$iothub/twin/GET``.

        ``{"desired": {..., "$version": n}, "reported": {..., "$version": m}}`` as compact
        UTF-8 JSON. The SDK reads ``desired.$version`` unconditionally (azure-iot-mqtt.md
        §3.3), so it is always present. Tags are not visible to devices.

        Returns:
            The JSON body.

        Raises:
            ValueError: as :meth:`to_record`.
        """
        document = {
            "desired": {**self.desired, "$version": self.desired_version},
            "reported": {**self.reported, "$version": self.reported_version},
        }
        return _dumps(document).encode("utf-8")

    def operator_document(self) -> dict[str, Any]:
        """The twin as the operator API shows it (and as :mod:`ironhub.registry.query` reads it).

        ``{"deviceId": d, "moduleId": m, "version": v, "tags": {...}, "properties":
        {"desired": {..., "$version": n}, "reported": {..., "$version": m}}}``; ``moduleId``
        is present only for a module twin. The result is a fresh copy the caller may change.

        Returns:
            The document.

        Raises:
            Nothing.
        """
        device_id, slash, module_id = self.identity.partition("/")
        document: dict[str, Any] = {"deviceId": device_id}
        if slash:
            document["moduleId"] = module_id
        document["version"] = self.version
        document["tags"] = _plain_object(self.tags)
        document["properties"] = {
            "desired": {**_plain_object(self.desired), "$version": self.desired_version},
            "reported": {**_plain_object(self.reported), "$version": self.reported_version},
        }
        return document


def parse_patch(body: bytes, *, limits: TwinLimits = _DEFAULT_LIMITS) -> dict[str, Any]:
    """Decode a patch body strictly and check it (a device's reported-properties PATCH).

    In order: the size, the UTF-8 encoding, the bracket depth on the raw bytes, the JSON
    syntax (duplicate names, ``NaN`` and ``Infinity`` refused while decoding), then
    :func:`check_patch`.

    Args:
        body: the raw body, e.g. of ``$iothub/twin/PATCH/properties/reported/``.
        limits: the twin limits.

    Returns:
        The decoded patch.

    Raises:
        ValidationError: the body breaks one of the rules in the module docstring.
    """
    if len(body) > limits.max_patch_bytes:
        raise ValidationError(f"patch exceeds {limits.max_patch_bytes} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # The foreign message quotes the offending byte: drop it.
        raise ValidationError("patch is not valid UTF-8") from None
    _check_raw_depth(body, limits.max_depth)
    try:
        decoded = json.loads(
            text,
            object_pairs_hook=_unique_object,
            parse_int=_parse_int,
            parse_constant=_refuse_constant,
        )
    except RecursionError:
        # Unreachable with the raw depth check in place; kept as a second line of defence.
        raise ValidationError(f"patch nesting exceeds depth {limits.max_depth}") from None
    except ValueError:
        # JSONDecodeError keeps the whole document in ``.doc``: never chain it.
        raise ValidationError("patch is not valid JSON") from None
    return check_patch(decoded, limits=limits)


def check_patch(patch: object, *, limits: TwinLimits = _DEFAULT_LIMITS) -> dict[str, Any]:
    """Check an already-decoded patch (the operator API's dicts, or :func:`parse_patch`'s).

    Args:
        patch: the decoded patch; must be a mapping of property names to JSON values.
        limits: the twin limits.

    Returns:
        A plain-dict copy of the patch (so later changes by the caller cannot reach a twin).

    Raises:
        ValidationError: the patch breaks one of the rules in the module docstring.
    """
    if not isinstance(patch, Mapping):
        raise ValidationError("patch must be a JSON object")
    try:
        return _check_object(patch, 0, limits)
    except RecursionError:
        # Only reachable when the caller raised max_depth beyond the interpreter's stack.
        raise ValidationError(f"patch nesting exceeds depth {limits.max_depth}") from None


def patch_reported(
    twin: Twin, patch: Mapping[str, Any], *, limits: TwinLimits = _DEFAULT_LIMITS, now: float
) -> Twin:
    """Apply a device's reported-properties patch.

    Args:
        twin: the current twin.
        patch: the patch (checked again here).
        limits: the twin limits.
        now: the time of the change.

    Returns:
        A new twin: reported merged, ``reported_version`` and ``version`` + 1.

    Raises:
        ValidationError: the patch is invalid, or the merged section exceeds
            ``max_section_bytes``; ``twin`` is unchanged either way.
    """
    reported = _merge_checked(twin.reported, patch, limits, limits.max_section_bytes, "reported")
    return replace(
        twin,
        reported=reported,
        reported_version=twin.reported_version + 1,
        version=twin.version + 1,
        updated_at=now,
    )


def patch_desired(
    twin: Twin, patch: Mapping[str, Any], *, limits: TwinLimits = _DEFAULT_LIMITS, now: float
) -> Twin:
    """Apply an operator's desired-properties patch.

    Send the device :func:`desired_notification` of the same patch with the new
    ``desired_version``.

    Args:
        twin: the current twin.
        patch: the patch (checked again here).
        limits: the twin limits.
        now: the time of the change.

    Returns:
        A new twin: desired merged, ``desired_version`` and ``version`` + 1.

    Raises:
        ValidationError: the patch is invalid, or the merged section exceeds
            ``max_section_bytes``; ``twin`` is unchanged either way.
    """
    desired = _merge_checked(twin.desired, patch, limits, limits.max_section_bytes, "desired")
    return replace(
        twin,
        desired=desired,
        desired_version=twin.desired_version + 1,
        version=twin.version + 1,
        updated_at=now,
    )


def patch_tags(
    twin: Twin, patch: Mapping[str, Any], *, limits: TwinLimits = _DEFAULT_LIMITS, now: float
) -> Twin:
    """Apply an operator's tags patch.

    Args:
        twin: the current twin.
        patch: the patch (checked again here).
        limits: the twin limits.
        now: the time of the change.

    Returns:
        A new twin: tags merged, ``version`` + 1 (tags have no ``$version``).

    Raises:
        ValidationError: the patch is invalid, or the merged tags exceed ``max_tags_bytes``;
            ``twin`` is unchanged either way.
    """
    tags = _merge_checked(twin.tags, patch, limits, limits.max_tags_bytes, "tags")
    return replace(twin, tags=tags, version=twin.version + 1, updated_at=now)


def desired_notification(patch: Mapping[str, Any], version: int) -> bytes:
    """The body of ``$iothub/twin/PATCH/properties/desired/?$version=n``.

    The patch as applied (``null`` members included: they tell the device what was deleted)
    plus ``"$version"``, which the SDK requires in the body (azure-iot-mqtt.md §3.3).

    Args:
        patch: the checked desired patch.
        version: the ``desired_version`` of the twin after the patch.

    Returns:
        Compact UTF-8 JSON.

    Raises:
        ValueError: the patch holds a non-finite float (it was not checked).
    """
    return _dumps({**_plain_object(patch), "$version": version}).encode("utf-8")


def merge_patch(section: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7396 JSON merge patch of an object, into a new object.

    ``null`` deletes a member (absent or not), an object merges recursively into the member
    (replacing a non-object member), anything else (arrays included) replaces. Existing
    members keep their order and new ones follow in patch order. Neither input is changed
    and the result shares no mutable object with them.

    Args:
        section: the object to patch.
        patch: the patch.

    Returns:
        The patched copy.

    Raises:
        Nothing for JSON values.
    """
    result: dict[str, Any] = {}
    for name, value in section.items():
        if name not in patch:
            result[name] = _plain(value)
            continue
        change = patch[name]
        if change is None:
            continue
        if isinstance(change, Mapping):
            result[name] = merge_patch(value if isinstance(value, Mapping) else {}, change)
        else:
            result[name] = _plain(change)
    for name, change in patch.items():
        if name in section or change is None:
            continue
        result[name] = merge_patch({}, change) if isinstance(change, Mapping) else _plain(change)
    return result


# --- helpers -----------------------------------------------------------------------------------


def _merge_checked(
    section: Mapping[str, Any],
    patch: Mapping[str, Any],
    limits: TwinLimits,
    max_bytes: int,
    what: str,
) -> dict[str, Any]:
    merged = merge_patch(section, check_patch(patch, limits=limits))
    if len(_dumps(merged).encode("utf-8")) > max_bytes:
        raise ValidationError(f"{what} section would exceed {max_bytes} bytes")
    return merged


def _check_raw_depth(body: bytes, max_depth: int) -> None:
    """Refuse a body whose brackets nest deeper than the section root plus ``max_depth``.

    A small state machine over the bytes that matter (brackets, quotes, backslashes), so
    brackets inside strings do not count. Where the body is not valid JSON the scan may count
    differently from the decoder, but only after the decoder's first error, which the decoder
    never passes: the scan can refuse too much, never let too deep a body through.
    """
    allowed = max_depth + 1  # the patch object itself is the section root
    depth = 0
    in_string = False
    escaped_at = -1
    for match in _STRUCTURAL.finditer(body):
        index = match.start()
        byte = body[index]
        if in_string:
            if index == escaped_at:
                continue
            if byte == _BACKSLASH:
                escaped_at = index + 1
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            if depth > allowed:
                raise ValidationError(f"patch nesting exceeds depth {max_depth}")
        elif byte in _CLOSE:
            depth -= 1
        # A backslash outside a string is a syntax error the decoder reports.


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValidationError("patch contains a duplicate property name")
    return result


def _parse_int(literal: str) -> int:
    if len(literal) > _MAX_INTEGER_CHARS:
        raise ValidationError(_integer_range_message())
    return int(literal)


def _refuse_constant(_constant: str) -> object:
    raise ValidationError("property value must be a finite number")


def _integer_range_message() -> str:
    return "integer property value out of range [-2^52, 2^52-1]"


def _check_object(obj: Mapping[Any, Any], level: int, limits: TwinLimits) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in obj.items():
        _check_name(name, limits)
        result[name] = None if value is None else _check_value(value, level, limits)
    return result


def _check_name(name: object, limits: TwinLimits) -> None:
    if not isinstance(name, str) or not name:
        raise ValidationError("property name must be a non-empty string")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError("property name is not valid Unicode") from None
    if size > limits.max_key_bytes:
        raise ValidationError(f"property name exceeds {limits.max_key_bytes} bytes")
    if _NAME_CONTROL.search(name):
        raise ValidationError("property name may not contain control characters")
    if _NAME_RESERVED.search(name):
        raise ValidationError("property name may not contain '.', '$' or space")


def _check_value(value: object, level: int, limits: TwinLimits) -> Any:  # noqa: ANN401
    """Check a non-null value found at container ``level``; return a plain copy."""
    if isinstance(value, (Mapping, list)):
        # The depth check comes before the descent, so even a self-referencing dict from a
        # caller ends here instead of recursing without end.
        if level + 1 > limits.max_depth:
            raise ValidationError(f"patch nesting exceeds depth {limits.max_depth}")
        if isinstance(value, list):
            return [_check_element(element, level + 1, limits) for element in value]
        return _check_object(value, level + 1, limits)
    _check_scalar(value, limits)
    return value


def _check_scalar(value: object, limits: TwinLimits) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not _MIN_INTEGER <= value <= _MAX_INTEGER:
            raise ValidationError(_integer_range_message())
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError("property value must be a finite number")
    elif isinstance(value, str):
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValidationError("property value is not valid Unicode") from None
        if size > limits.max_value_bytes:
            raise ValidationError(f"property value exceeds {limits.max_value_bytes} bytes")
    else:
        raise ValidationError("unsupported property value type")


def _check_element(element: object, level: int, limits: TwinLimits) -> Any:  # noqa: ANN401
    if element is None:
        raise ValidationError("arrays may not contain null")
    return _check_value(element, level, limits)


def _load_stored_section(text: str, what: str) -> dict[str, Any]:
    try:
        section = json.loads(text)
    except (ValueError, RecursionError):
        raise ValidationError(f"stored twin {what} is not a JSON object") from None
    if not isinstance(section, dict):
        raise ValidationError(f"stored twin {what} is not a JSON object")
    return section


def _dumps(value: object) -> str:
    return json.dumps(value, separators=_COMPACT, ensure_ascii=False, allow_nan=False)


def _plain_object(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _plain(value) for name, value in mapping.items()}


def _plain(value: object) -> Any:  # noqa: ANN401
    """A deep copy of a JSON value made of fresh dicts and lists (scalars are immutable)."""
    if isinstance(value, Mapping):
        return _plain_object(value)
    if isinstance(value, list):
        return [_plain(element) for element in value]
    return value
