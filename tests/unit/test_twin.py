"""Device twins: the patch rules, merge patch, versions, documents and immutability."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.test_purity import forbidden_imports

from ironhub.errors import ValidationError
from ironhub.registry import twin as twin_module
from ironhub.registry.twin import (
    Twin,
    TwinLimits,
    check_patch,
    desired_notification,
    merge_patch,
    parse_patch,
    patch_desired,
    patch_reported,
    patch_tags,
)
from ironhub.storage.interfaces import TwinRecord

SRC = Path(__file__).resolve().parents[2] / "src" / "ironhub" / "registry"

# A marker that must never show up in an error message (names, values, payload bytes).
SECRET = "s3cr3t"


def nested(depth: int, leaf: Any = 1) -> dict[str, Any]:
    """``{"k1": {"k2": ... {"kN": {"leaf": leaf}}}}``: ``depth`` objects below the root."""
    value: Any = {"leaf": leaf}
    for level in range(depth, 1, -1):
        value = {f"k{level}": value}
    return {"k1": value} if depth else {"leaf": leaf}


def nested_arrays(depth: int) -> dict[str, Any]:
    """``{"a": [[...[1]...]]}``: ``depth`` arrays below the root."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return {"a": value}


def encode(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- the public surface and purity -------------------------------------------------------------


def test_public_surface() -> None:
    assert sorted(twin_module.__all__) == sorted(
        [
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
    )


@pytest.mark.parametrize("name", ["twin.py", "query.py"])
def test_modules_are_pure(name: str) -> None:
    assert forbidden_imports((SRC / name).read_text(encoding="utf-8")) == []


def test_default_limits_are_azure_quotas() -> None:
    limits = TwinLimits()
    assert limits.max_section_bytes == 32 * 1024
    assert limits.max_tags_bytes == 8 * 1024
    assert limits.max_value_bytes == 4 * 1024
    assert limits.max_key_bytes == 1024
    assert limits.max_depth == 10
    assert limits.max_patch_bytes == 64 * 1024


# --- accepted patches --------------------------------------------------------------------------

ACCEPTED: list[tuple[str, bytes]] = [
    ("empty", b"{}"),
    ("whitespace around", b' \n{ "a" : 1 }\t'),
    ("scalars", b'{"b":true,"f":false,"i":-42,"x":1.5,"e":1e3,"s":"text","n":null}'),
    ("unicode names and values", encode({"température": "élevée", "名前": "値", "😀": "😀"})),
    ("hash and other punctuation in names", encode({"a#b": 1, "a-b_c:d/e@f": 2})),
    ("escaped control character in a value", b'{"a":"line\\nbreak\\u0000"}'),
    ("brackets and quotes inside strings", encode({"a": '[[[{{{"\\]]]', "b": "\\"})),
    ("value of exactly 4096 bytes", encode({"a": "x" * 4096})),
    ("value of 4096 bytes in 2-byte characters", encode({"a": "é" * 2048})),
    ("name of exactly 1024 bytes", encode({"n" * 1024: 1})),
    ("integer bounds", encode({"min": -(2**52), "max": 2**52 - 1})),
    ("large float", b'{"a":1.7976931348623157e308}'),
    ("Azure's documented depth-10 example", encode(nested(10))),
    ("depth 10 of arrays", encode(nested_arrays(10))),
    ("array of scalars", encode({"a": [1, "two", 3.0, True, False]})),
    ("empty array and object", encode({"a": [], "b": {}})),
    ("array of objects", encode({"a": [{"x": 1}, {"y": [2]}]})),
    ("null deletes nested", encode({"a": {"b": None}})),
]


@pytest.mark.parametrize(("body"), [body for _, body in ACCEPTED], ids=[n for n, _ in ACCEPTED])
def test_accepted_patches(body: bytes) -> None:
    assert parse_patch(body) == json.loads(body)


def test_parse_patch_keeps_member_order() -> None:
    assert list(parse_patch(b'{"z":1,"a":2,"m":3}')) == ["z", "a", "m"]


# --- refused patches ---------------------------------------------------------------------------

REFUSED: list[tuple[str, bytes, str]] = [
    # The body itself.
    ("not UTF-8", b'{"a":"\xff"}', "patch is not valid UTF-8"),
    ("UTF-8 encoded surrogate", b'{"a":"\xed\xa0\x80"}', "patch is not valid UTF-8"),
    ("UTF-16", '{"a":1}'.encode("utf-16"), "patch is not valid UTF-8"),
    ("UTF-8 byte order mark", b'\xef\xbb\xbf{"a":1}', "patch is not valid JSON"),
    ("empty body", b"", "patch is not valid JSON"),
    ("a single space (the GET body)", b" ", "patch is not valid JSON"),
    ("truncated", b'{"a":', "patch is not valid JSON"),
    ("trailing garbage", b'{"a":1} x', "patch is not valid JSON"),
    ("backslash outside a string", b'{"a":1}\\', "patch is not valid JSON"),
    ("raw control character in a string", b'{"a":"x\x01"}', "patch is not valid JSON"),
    ("single quotes", b"{'a':1}", "patch is not valid JSON"),
    ("duplicate names", b'{"a":1,"a":2}', "patch contains a duplicate property name"),
    ("nested duplicate names", b'{"o":{"a":1,"a":1}}', "patch contains a duplicate property name"),
    ("NaN", b'{"a":NaN}', "property value must be a finite number"),
    ("Infinity", b'{"a":Infinity}', "property value must be a finite number"),
    ("-Infinity", b'{"a":-Infinity}', "property value must be a finite number"),
    ("float overflow", b'{"a":1e400}', "property value must be a finite number"),
    ("integer above 2^52-1", encode({"a": 2**52}), "integer property value out of range"),
    ("integer below -2^52", encode({"a": -(2**52) - 1}), "integer property value out of range"),
    ("21-digit integer", b'{"a":123456789012345678901}', "integer property value out of range"),
    ("5000-digit integer", b'{"a":' + b"9" * 5000 + b"}", "integer property value out of range"),
    # Not an object.
    ("array", b"[1,2]", "patch must be a JSON object"),
    ("string", b'"a"', "patch must be a JSON object"),
    ("null", b"null", "patch must be a JSON object"),
    ("number", b"1", "patch must be a JSON object"),
    # Names.
    ("empty name", b'{"":1}', "property name must be a non-empty string"),
    ("dot in name", encode({f"{SECRET}.x": 1}), "property name may not contain '.', '$' or space"),
    ("$version", encode({"$version": 3}), "property name may not contain '.', '$' or space"),
    ("$metadata", encode({"$metadata": {}}), "property name may not contain '.', '$' or space"),
    (
        "space in name",
        encode({f"{SECRET} x": 1}),
        "property name may not contain '.', '$' or space",
    ),
    ("NUL in name", encode({"a\x00b": 1}), "property name may not contain control characters"),
    ("tab in name", encode({"a\tb": 1}), "property name may not contain control characters"),
    ("US in name", encode({"a\x1f": 1}), "property name may not contain control characters"),
    ("DEL in name", encode({"a\x7f": 1}), "property name may not contain control characters"),
    ("C1 (NEL) in name", encode({"a\x85": 1}), "property name may not contain control characters"),
    ("C1 end in name", encode({"a\x9f": 1}), "property name may not contain control characters"),
    ("nested bad name", encode({"o": {"a.b": 1}}), "property name may not contain"),
    ("bad name in array", encode({"a": [{"$x": 1}]}), "property name may not contain"),
    ("name of 1025 bytes", encode({"n" * 1025: 1}), "property name exceeds 1024 bytes"),
    ("lone surrogate name", b'{"\\ud800":1}', "property name is not valid Unicode"),
    # Values.
    (
        "value of 4097 bytes",
        encode({"a": SECRET + "x" * 4091}),
        "property value exceeds 4096 bytes",
    ),
    ("4097 bytes, multibyte", encode({"a": "é" * 2048 + "x"}), "property value exceeds 4096 bytes"),
    ("long value in array", encode({"a": ["x" * 4097]}), "property value exceeds 4096 bytes"),
    ("lone surrogate value", b'{"a":"\\udfff"}', "property value is not valid Unicode"),
    ("null in array", b'{"a":[1,null]}', "arrays may not contain null"),
    ("null in nested array", b'{"a":[[null]]}', "arrays may not contain null"),
    # Depth.
    ("depth 11 of objects", encode(nested(11)), "patch nesting exceeds depth 10"),
    ("depth 11 of arrays", encode(nested_arrays(11)), "patch nesting exceeds depth 10"),
    ("depth 11 mixed", encode(nested(10, [1])), "patch nesting exceeds depth 10"),
    ("[[[ bomb", b'{"a":' + b"[" * 60000, "patch nesting exceeds depth 10"),
    ("{{{ bomb", b'{"a":' + b'{"a":' * 10000, "patch nesting exceeds depth 10"),
    ("bare [[[ bomb", b"[" * 65536, "patch nesting exceeds depth 10"),
    (
        "bomb after a string with escapes",
        b'{"a\\"[":"\\\\",' + b"[" * 30000,
        "patch nesting exceeds depth 10",
    ),
    # Size.
    ("body of 64 KB + 1", b'{"a":"' + b"x" * (65536 - 7) + b'"}', "patch exceeds 65536 bytes"),
]


@pytest.mark.parametrize(
    ("body", "message"), [(b, m) for _, b, m in REFUSED], ids=[n for n, _, _ in REFUSED]
)
def test_refused_patches(body: bytes, message: str) -> None:
    with pytest.raises(ValidationError, match=f"^{re.escape(message)}") as caught:
        parse_patch(body)
    text = str(caught.value)
    assert SECRET not in text
    assert "\\" not in text
    # Foreign exceptions (which carry payload bytes) are never chained.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ or caught.value.__context__ is None


def test_the_raw_depth_scan_ignores_brackets_inside_strings() -> None:
    body = encode({"a": "[" * 50, "b": "]" * 50 + "{" * 50, "c": '\\"[[[[[[[[[[[['})
    assert parse_patch(body) == json.loads(body)


def test_recursion_error_while_decoding_is_refused() -> None:
    # The raw scan normally stops bombs; with it disabled by absurd limits the decoder
    # recurses until RecursionError, which must still come out as a ValidationError.
    limits = TwinLimits(max_depth=10**7, max_patch_bytes=10**7)
    with pytest.raises(ValidationError, match=r"^patch nesting exceeds depth 10000000$"):
        parse_patch(b'{"a":' + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}", limits=limits)


def test_recursion_error_while_checking_is_refused() -> None:
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(100_000):
        cursor["a"] = {}
        cursor = cursor["a"]
    with pytest.raises(ValidationError, match=r"^patch nesting exceeds depth 1000000$"):
        check_patch(deep, limits=TwinLimits(max_depth=1_000_000))


def test_limits_are_configurable() -> None:
    limits = TwinLimits(max_value_bytes=3, max_key_bytes=2, max_depth=1, max_patch_bytes=20)
    assert parse_patch(b'{"ab":"abc","c":[1]}', limits=limits) == {"ab": "abc", "c": [1]}
    with pytest.raises(ValidationError, match=r"^property value exceeds 3 bytes$"):
        parse_patch(b'{"a":"abcd"}', limits=limits)
    with pytest.raises(ValidationError, match=r"^property name exceeds 2 bytes$"):
        parse_patch(b'{"abc":1}', limits=limits)
    with pytest.raises(ValidationError, match=r"^patch nesting exceeds depth 1$"):
        parse_patch(b'{"a":[[1]]}', limits=limits)
    with pytest.raises(ValidationError, match=r"^patch exceeds 20 bytes$"):
        parse_patch(b'{"a":"abc","b":"abcd"}', limits=limits)


# --- check_patch (the operator API's decoded dicts) --------------------------------------------


class Unknown:
    pass


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (None, "patch must be a JSON object"),
        ([("a", 1)], "patch must be a JSON object"),
        ("{}", "patch must be a JSON object"),
        ({1: "a"}, "property name must be a non-empty string"),
        ({None: "a"}, "property name must be a non-empty string"),
        ({"a": (1, 2)}, "unsupported property value type"),
        ({"a": {1, 2}}, "unsupported property value type"),
        ({"a": b"bytes"}, "unsupported property value type"),
        ({"a": Unknown()}, "unsupported property value type"),
        ({"a": [Unknown()]}, "unsupported property value type"),
        ({"a": math.nan}, "property value must be a finite number"),
        ({"a": -math.inf}, "property value must be a finite number"),
        ({"a": 10**5000}, "integer property value out of range"),
        ({"a": "\ud800"}, "property value is not valid Unicode"),
        ({"\udc00": 1}, "property name is not valid Unicode"),
        (nested(11), "patch nesting exceeds depth 10"),
        (nested_arrays(11), "patch nesting exceeds depth 10"),
    ],
)
def test_check_patch_refuses(patch: object, message: str) -> None:
    with pytest.raises(ValidationError, match=f"^{re.escape(message)}"):
        check_patch(patch)


def test_check_patch_refuses_self_referencing_dicts_without_recursing() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValidationError, match=r"^patch nesting exceeds depth 10$"):
        check_patch(loop)


def test_check_patch_returns_a_plain_copy() -> None:
    inner = {"b": [1, {"c": 2}]}
    patch = MappingProxyType({"a": MappingProxyType(inner), "d": None})
    checked = check_patch(patch)
    assert checked == {"a": {"b": [1, {"c": 2}]}, "d": None}
    assert type(checked) is dict
    assert type(checked["a"]) is dict
    inner["b"][1]["c"] = 3  # type: ignore[index]
    assert checked["a"]["b"][1]["c"] == 2


def test_bool_is_not_range_checked_as_int() -> None:
    assert check_patch({"t": True, "f": False}) == {"t": True, "f": False}


# --- merge_patch (RFC 7396) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "patch", "expected"),
    [
        # RFC 7396 Appendix A, restricted to object targets and patches.
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
        # The other branches.
        ({"a": 1}, {}, {"a": 1}),
        ({}, {"gone": None}, {}),
        ({"a": 1}, {"a": {"b": 2, "c": None}}, {"a": {"b": 2}}),
        ({"a": {"x": 1, "y": 2}}, {"a": {"x": None}}, {"a": {"y": 2}}),
        ({"a": {"x": 1}}, {"a": {"x": {"y": {"z": 1}}}}, {"a": {"x": {"y": {"z": 1}}}}),
    ],
)
def test_merge_patch(
    section: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert merge_patch(section, patch) == expected


def test_merge_patch_keeps_order_and_appends_new_members() -> None:
    merged = merge_patch({"z": 1, "a": 2, "m": 3}, {"new": 0, "a": 9, "z": None})
    assert list(merged.items()) == [("a", 9), ("m", 3), ("new", 0)]


def test_merge_patch_shares_nothing_with_its_inputs() -> None:
    section = {"keep": {"x": [1, {"y": 2}]}, "deep": {"a": {"b": 1}}}
    patch = {"new": [{"z": 1}], "deep": {"a": {"c": 2}}, "obj": {"k": [3]}}
    merged = merge_patch(section, patch)
    merged["keep"]["x"][1]["y"] = 99
    merged["new"][0]["z"] = 99
    merged["deep"]["a"]["b"] = 99
    merged["obj"]["k"].append(4)
    assert section == {"keep": {"x": [1, {"y": 2}]}, "deep": {"a": {"b": 1}}}
    assert patch == {"new": [{"z": 1}], "deep": {"a": {"c": 2}}, "obj": {"k": [3]}}


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**52), max_value=2**52 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
NAMES = st.text(alphabet="abcxyz", min_size=1, max_size=3)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(NAMES, children, max_size=4),
    max_leaves=20,
)
JSON_OBJECTS = st.dictionaries(NAMES, JSON_VALUES, max_size=5)


@settings(max_examples=300, deadline=None)
@given(section=JSON_OBJECTS, patch=JSON_OBJECTS)
def test_merge_patch_never_mutates_its_inputs(
    section: dict[str, Any], patch: dict[str, Any]
) -> None:
    section_before = copy.deepcopy(section)
    patch_before = copy.deepcopy(patch)
    merged = merge_patch(section, patch)
    assert section == section_before
    assert patch == patch_before
    # RFC 7396 patches are idempotent, and the result holds no null member from the patch.
    assert merge_patch(merged, patch) == merged
    for name, value in patch.items():
        if value is None:
            assert name not in merged
    # No mutable object of the result is one of the inputs'.
    inputs = {id(node) for node in _containers(section)} | {id(n) for n in _containers(patch)}
    assert all(id(node) not in inputs for node in _containers(merged))


def _containers(value: object) -> list[object]:
    found: list[object] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            found.append(node)
            stack.extend(node)
    return found


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=64) | JSON_OBJECTS.map(encode))
def test_parse_patch_returns_a_dict_or_raises_validation_error(body: bytes) -> None:
    try:
        result = parse_patch(body)
    except ValidationError:
        return
    assert isinstance(result, dict)


# --- twins: creation, versions, sizes ----------------------------------------------------------


def test_new_twin() -> None:
    twin = Twin.new("dev1", 5.0)
    assert twin == Twin("dev1", {}, {}, 1, {}, 1, 1, 5.0)


def test_patch_reported_bumps_reported_and_twin_versions() -> None:
    twin = Twin.new("dev1", 1.0)
    after = patch_reported(twin, parse_patch(b'{"fw":{"version":"1.2"}}'), now=2.0)
    assert after.reported == {"fw": {"version": "1.2"}}
    assert (after.reported_version, after.desired_version, after.version) == (2, 1, 2)
    assert after.updated_at == 2.0
    assert twin == Twin.new("dev1", 1.0)


def test_patch_desired_bumps_desired_and_twin_versions() -> None:
    twin = Twin.new("dev1", 1.0)
    after = patch_desired(twin, {"interval": 5}, now=3.0)
    assert after.desired == {"interval": 5}
    assert (after.reported_version, after.desired_version, after.version) == (1, 2, 2)
    assert after.updated_at == 3.0


def test_patch_tags_bumps_only_the_twin_version() -> None:
    twin = Twin.new("dev1", 1.0)
    after = patch_tags(twin, {"site": {"building": 43}}, now=4.0)
    assert after.tags == {"site": {"building": 43}}
    assert (after.reported_version, after.desired_version, after.version) == (1, 1, 2)
    assert after.updated_at == 4.0


@pytest.mark.parametrize("apply", [patch_reported, patch_desired, patch_tags])
def test_an_empty_patch_still_bumps_versions(apply: Any) -> None:
    twin = Twin.new("dev1", 1.0)
    after = apply(twin, {}, now=2.0)
    assert after.version == 2
    assert after.updated_at == 2.0
    assert (after.tags, after.desired, after.reported) == ({}, {}, {})


def test_versions_keep_growing_and_null_deletes_nested() -> None:
    twin = Twin.new("dev1", 0.0)
    twin = patch_reported(twin, {"a": {"b": 1, "c": {"d": 2}}, "e": 3}, now=1.0)
    twin = patch_reported(twin, {"a": {"c": {"d": None}}, "e": None}, now=2.0)
    twin = patch_desired(twin, {"x": 1}, now=3.0)
    assert twin.reported == {"a": {"b": 1, "c": {}}}
    assert (twin.reported_version, twin.desired_version, twin.version) == (3, 2, 4)


@pytest.mark.parametrize(
    ("apply", "section", "limit"),
    [
        (patch_reported, "reported", 32 * 1024),
        (patch_desired, "desired", 32 * 1024),
        (patch_tags, "tags", 8 * 1024),
    ],
)
def test_oversize_section_after_merge_is_refused(apply: Any, section: str, limit: int) -> None:
    twin = Twin.new("dev1", 1.0)
    # Each value fits; their sum does not. Fill to exactly the limit first.
    filler = "x" * 4000
    count = 0
    while len(encode({f"k{i}": filler for i in range(count + 1)})) <= limit:
        count += 1
    exact = {f"k{i}": filler for i in range(count)}
    exact["pad"] = "y" * (limit - len(encode(exact)) - len(b',"pad":""'))
    assert len(encode(exact)) == limit
    full = apply(twin, exact, now=2.0)
    with pytest.raises(ValidationError, match=f"^{section} section would exceed {limit} bytes$"):
        apply(full, {"one": 1}, now=3.0)
    # A patch that deletes and adds in one go is judged on the result.
    smaller = apply(full, {"k0": None, "one": 1}, now=4.0)
    assert "k0" not in getattr(smaller, section)
    assert full.version == 2


def test_patch_functions_check_the_patch_again() -> None:
    twin = Twin.new("dev1", 1.0)
    for apply in (patch_reported, patch_desired, patch_tags):
        with pytest.raises(ValidationError, match="may not contain"):
            apply(twin, {"$version": 9}, now=2.0)


def test_patch_functions_take_limits() -> None:
    twin = Twin.new("dev1", 1.0)
    limits = TwinLimits(max_section_bytes=10, max_tags_bytes=5)
    assert patch_reported(twin, {"a": 1}, limits=limits, now=2.0).reported == {"a": 1}
    with pytest.raises(ValidationError, match=r"^reported section would exceed 10 bytes$"):
        patch_reported(twin, {"abc": 12345}, limits=limits, now=2.0)
    with pytest.raises(ValidationError, match=r"^tags section would exceed 5 bytes$"):
        patch_tags(twin, {"a": 1}, limits=limits, now=2.0)


# --- documents ---------------------------------------------------------------------------------


def sample_twin(identity: str = "dev1") -> Twin:
    twin = Twin.new(identity, 1.0)
    twin = patch_tags(twin, {"site": "north"}, now=2.0)
    twin = patch_desired(twin, {"interval": 5, "mode": {"eco": True}}, now=3.0)
    return patch_reported(twin, {"fw": "1.0", "température": "élevée"}, now=4.0)


def test_device_document_contains_both_versions_and_no_tags() -> None:
    twin = sample_twin()
    body = twin.device_document()
    assert (
        body
        == (
            '{"desired":{"interval":5,"mode":{"eco":true},"$version":2},'
            '"reported":{"fw":"1.0","température":"élevée","$version":2}}'
        ).encode()
    )
    document = json.loads(body)
    assert document["desired"]["$version"] == twin.desired_version
    assert document["reported"]["$version"] == twin.reported_version
    assert "tags" not in document


def test_device_document_of_a_new_twin() -> None:
    assert Twin.new("dev1", 0.0).device_document() == (
        b'{"desired":{"$version":1},"reported":{"$version":1}}'
    )


def test_operator_document_of_a_device() -> None:
    assert sample_twin().operator_document() == {
        "deviceId": "dev1",
        "version": 4,
        "tags": {"site": "north"},
        "properties": {
            "desired": {"interval": 5, "mode": {"eco": True}, "$version": 2},
            "reported": {"fw": "1.0", "température": "élevée", "$version": 2},
        },
    }


def test_operator_document_of_a_module() -> None:
    document = sample_twin("dev1/mod1").operator_document()
    assert list(document)[:3] == ["deviceId", "moduleId", "version"]
    assert document["deviceId"] == "dev1"
    assert document["moduleId"] == "mod1"


def test_operator_document_is_a_copy() -> None:
    twin = sample_twin()
    document = twin.operator_document()
    document["tags"]["site"] = "south"
    document["properties"]["desired"]["mode"]["eco"] = False
    assert twin.tags == {"site": "north"}
    assert twin.desired["mode"] == {"eco": True}


def test_desired_notification() -> None:
    patch = check_patch({"interval": 10, "old": None})
    assert desired_notification(patch, 7) == b'{"interval":10,"old":null,"$version":7}'
    assert patch == {"interval": 10, "old": None}


def test_desired_notification_of_an_empty_patch() -> None:
    assert json.loads(desired_notification({}, 3)) == {"$version": 3}


# --- storage round trip ------------------------------------------------------------------------


def test_record_round_trip() -> None:
    twin = sample_twin("dev1/mod1")
    record = twin.to_record()
    assert record == TwinRecord(
        identity="dev1/mod1",
        tags='{"site":"north"}',
        desired='{"interval":5,"mode":{"eco":true}}',
        desired_version=2,
        reported='{"fw":"1.0","température":"élevée"}',
        reported_version=2,
        version=4,
        updated_at=4.0,
    )
    assert Twin.from_record(record) == twin


def test_record_of_a_new_twin() -> None:
    record = Twin.new("dev1", 9.0).to_record()
    assert (record.tags, record.desired, record.reported) == ("{}", "{}", "{}")
    assert (record.desired_version, record.reported_version, record.version) == (1, 1, 1)


def test_record_keeps_member_order() -> None:
    twin = patch_reported(Twin.new("d", 0.0), {"z": 1, "a": 2}, now=1.0)
    twin = Twin.from_record(twin.to_record())
    assert list(twin.reported) == ["z", "a"]


@pytest.mark.parametrize("section", ["tags", "desired", "reported"])
@pytest.mark.parametrize("text", ["[]", "1", "null", '"{}"', "{", "", "[" * 100_000])
def test_from_record_refuses_a_section_that_is_not_an_object(section: str, text: str) -> None:
    fields: dict[str, Any] = {"tags": "{}", "desired": "{}", "reported": "{}", section: text}
    record = TwinRecord(
        identity="d",
        desired_version=1,
        reported_version=1,
        version=1,
        updated_at=0.0,
        **fields,
    )
    with pytest.raises(ValidationError, match=f"^stored twin {section} is not a JSON object$"):
        Twin.from_record(record)


# --- immutability ------------------------------------------------------------------------------


def test_twin_is_frozen() -> None:
    twin = Twin.new("dev1", 1.0)
    with pytest.raises(AttributeError):
        twin.version = 2  # type: ignore[misc]


def test_twin_copies_what_it_is_given() -> None:
    tags = {"site": {"floor": 1}}
    twin = Twin("d", MappingProxyType(tags), {"a": [1]}, 1, {}, 1, 1, 0.0)
    tags["site"]["floor"] = 2
    assert twin.tags == {"site": {"floor": 1}}
    assert type(twin.tags) is dict


def test_patched_twins_share_no_mutable_structure() -> None:
    before = sample_twin()
    after = patch_reported(before, {"new": 1}, now=9.0)
    for name in ("tags", "desired", "reported"):
        old, new = getattr(before, name), getattr(after, name)
        old_ids = {id(node) for node in _containers(old)}
        assert all(id(node) not in old_ids for node in _containers(new))
    assert before.reported == {"fw": "1.0", "température": "élevée"}


def test_a_refused_patch_leaves_the_twin_unchanged() -> None:
    twin = sample_twin()
    snapshot = twin.to_record()
    with pytest.raises(ValidationError):
        patch_reported(twin, {"fw": "x" * 5000}, now=9.0)
    assert twin.to_record() == snapshot


def test_patching_does_not_mutate_the_patch() -> None:
    patch = {"a": {"b": [1, {"c": 2}]}}
    before = copy.deepcopy(patch)
    twin = patch_desired(Twin.new("d", 0.0), patch, now=1.0)
    assert patch == before
    patch["a"]["b"].append(3)
    assert twin.desired == before
