"""The twin query filter: tokenizer, parser, limits and evaluation semantics."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironhub.errors import ValidationError
from ironhub.registry import query as query_module
from ironhub.registry.query import (
    MAX_QUERY_CHARS,
    MAX_QUERY_NESTING,
    MAX_QUERY_NODES,
    TwinQuery,
    parse_query,
)
from ironhub.registry.twin import Twin, patch_desired, patch_reported, patch_tags

DEVICE: dict[str, Any] = {
    "deviceId": "dev1",
    "version": 7,
    "tags": {
        "site": "north",
        "floor": 3,
        "ratio": 0.5,
        "active": True,
        "off": False,
        "nothing": None,
        "list": [1, 2],
        "obj": {"x": 1},
        "quote": "it's",
        "dq": 'say "hi"',
        "neg": -2,
    },
    "properties": {
        "desired": {"interval": 5, "$version": 2},
        "reported": {"fw": {"version": "1.2.0"}, "battery": 80, "$version": 4},
    },
}
MODULE: dict[str, Any] = {**DEVICE, "moduleId": "mod1"}


def matches(text: str, document: dict[str, Any] = DEVICE) -> bool:
    return parse_query(text).matches(document)


def test_public_surface() -> None:
    assert sorted(query_module.__all__) == sorted(
        ["MAX_QUERY_CHARS", "MAX_QUERY_NESTING", "MAX_QUERY_NODES", "TwinQuery", "parse_query"]
    )
    assert (MAX_QUERY_CHARS, MAX_QUERY_NODES, MAX_QUERY_NESTING) == (2048, 256, 32)


def test_twin_query_is_a_value() -> None:
    query = parse_query("version = 1")
    assert query == TwinQuery("version = 1")
    assert hash(query) == hash(TwinQuery("version = 1"))
    assert query.text == "version = 1"
    assert repr(query) == "TwinQuery(text='version = 1')"
    with pytest.raises(AttributeError):
        query.text = "x"  # type: ignore[misc]


# --- evaluation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Strings.
        ("deviceId = 'dev1'", True),
        ('deviceId = "dev1"', True),
        ("deviceId = 'DEV1'", False),
        ("deviceId != 'dev2'", True),
        ("deviceId <> 'dev1'", False),
        ("tags.site < 'south'", True),
        ("tags.site <= 'north'", True),
        ("tags.site > 'north'", False),
        ("tags.site >= 'nort'", True),
        ("tags.quote = 'it''s'", True),
        ('tags.dq = "say ""hi"""', True),
        ("tags.quote = ''", False),
        # Numbers.
        ("version = 7", True),
        ("version = 7.0", True),
        ("version = 7e0", True),
        ("version != 7", False),
        ("version < 8", True),
        ("version <= 7", True),
        ("version > 7", False),
        ("version >= 6.5", True),
        ("tags.ratio = 0.5", True),
        ("tags.ratio < 1", True),
        ("tags.neg = -2", True),
        ("tags.neg > -3", True),
        ("tags.floor = 3", True),
        ("properties.reported.battery >= 80", True),
        ("properties.reported.fw.version = '1.2.0'", True),
        # Booleans: equal or not, never ordered, never numbers.
        ("tags.active = true", True),
        ("tags.active = TRUE", True),
        ("tags.active != false", True),
        ("tags.off = false", True),
        ("tags.active = 1", False),
        ("tags.active != 1", False),
        ("tags.active > false", False),
        ("tags.floor = true", False),
        # Null.
        ("tags.nothing = null", True),
        ("tags.nothing != null", False),
        ("tags.nothing < null", False),
        ("tags.site = null", False),
        ("tags.site != null", False),
        ("tags.missing = null", False),
        # Type mismatches are false for every operator.
        ("version = '7'", False),
        ("version != '7'", False),
        ("version < 'a'", False),
        ("tags.site > 1", False),
        # Objects and arrays never compare.
        ("tags.obj = 1", False),
        ("tags.obj != 1", False),
        ("tags.list = 1", False),
        ("tags.list > 0", False),
        # Missing paths: every comparison is false, NOT makes it true.
        ("tags.missing = 1", False),
        ("tags.missing != 1", False),
        ("NOT tags.missing = 1", True),
        ("tags.site.deeper = 1", False),
        ("tags.list.x = 1", False),
        ("moduleId = 'mod1'", False),
        # IS_DEFINED.
        ("IS_DEFINED(tags.site)", True),
        ("is_defined(tags.nothing)", True),
        ("IS_DEFINED(tags.obj)", True),
        ("IS_DEFINED(tags.missing)", False),
        ("IS_DEFINED(moduleId)", False),
        ("NOT IS_DEFINED(tags.missing)", True),
        # Boolean structure.
        ("version = 7 AND tags.site = 'north'", True),
        ("version = 7 AND tags.site = 'south'", False),
        ("version = 1 OR tags.site = 'north'", True),
        ("version = 1 OR tags.site = 'south'", False),
        ("version = 1 or version = 2 or version = 7", True),
        ("version = 7 and version = 7 and version = 1", False),
        ("NOT version = 7", False),
        ("NOT NOT version = 7", True),
        ("not (version = 1 or version = 2)", True),
        ("version = 1 AND version = 2 OR version = 7", True),  # AND binds tighter
        ("version = 7 OR version = 1 AND version = 2", True),
        ("(version = 7 OR version = 1) AND version = 2", False),
        ("((((version = 7))))", True),
        # Spacing.
        ("version=7", True),
        ("version>=7AND version<=7", True),  # `7AND` is a number, then a keyword
        (" \t\r\nversion\n=\n7\n", True),
        # The prefix.
        ("SELECT * FROM devices WHERE version = 7", True),
        ("select * from DEVICES where version = 7", True),
        ("SELECT * FROM devices.modules WHERE version = 7", False),
    ],
)
def test_evaluation(text: str, expected: bool) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "device", "module"),
    [
        ("version = 7", True, True),
        ("SELECT * FROM devices WHERE version = 7", True, False),
        ("SELECT * FROM devices.modules WHERE version = 7", False, True),
        ("SELECT * FROM Devices.Modules WHERE moduleId = 'mod1'", False, True),
        ("moduleId = 'mod1'", False, True),
    ],
)
def test_scope(text: str, device: bool, module: bool) -> None:
    assert matches(text, DEVICE) is device
    assert matches(text, MODULE) is module


def test_over_real_twin_documents() -> None:
    twin = Twin.new("dev1/mod1", 0.0)
    twin = patch_tags(twin, {"site": "north"}, now=1.0)
    twin = patch_desired(twin, {"interval": 5}, now=2.0)
    twin = patch_reported(twin, {"fw": {"version": "1.2.0"}}, now=3.0)
    document = twin.operator_document()
    assert matches("SELECT * FROM devices.modules WHERE tags.site = 'north'", document)
    assert matches("properties.desired.interval = 5 AND version = 4", document)
    assert matches("properties.reported.fw.version >= '1.1'", document)
    assert not matches("SELECT * FROM devices WHERE deviceId = 'dev1'", document)


def test_nan_and_large_numbers_never_raise() -> None:
    document = {"tags": {"nan": float("nan"), "big": 10**30}}
    assert not matches("tags.nan = 1", document)
    assert not matches("tags.nan < 1", document)
    assert matches("tags.nan != 1", document)
    assert matches("tags.big > 1e29", document)
    assert matches("tags.big = 1000000000000000000000000000000", document)


def test_non_json_values_compare_false() -> None:
    document = {"tags": {"odd": object(), "t": (1,)}}
    assert not matches("tags.odd = 1", document)
    assert not matches("tags.t != 1", document)
    assert matches("IS_DEFINED(tags.odd)", document)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty condition at position 0"),
        ("   ", "empty condition at position 3"),
        ("SELECT * FROM devices WHERE", "empty condition at position 27"),
        ("SELECT * FROM devices WHERE  ", "empty condition at position 29"),
        ("SELECT", "unexpected end of query at position 6"),
        ("SELECT version = 1", "unexpected token at position 7"),
        ("SELECT * version = 1", "unexpected token at position 9"),
        ("SELECT * FROM", "unknown collection at position 13"),
        ("SELECT * FROM twins WHERE version = 1", "unknown collection at position 14"),
        ("SELECT * FROM 'devices' WHERE version = 1", "unknown collection at position 14"),
        ("SELECT * FROM devices.jobs WHERE version = 1", "unknown collection at position 14"),
        ("SELECT * FROM devices version = 1", "unexpected token at position 22"),
        ("SELECT * FROM devices", "unexpected end of query at position 21"),
        ("version", "unexpected end of query at position 7"),
        ("version 7", "unexpected token at position 8"),
        ("version =", "unexpected end of query at position 9"),
        ("version = AND", "unexpected token at position 10"),
        ("version = version", "unexpected token at position 10"),
        ("version = (", "unexpected token at position 10"),
        ("version = 1 version = 2", "unexpected token at position 12"),
        ("version = 1 )", "unexpected token at position 12"),
        ("version = 1 AND", "unexpected end of query at position 15"),
        ("version = 1 OR OR version = 2", "unexpected token at position 15"),
        ("(version = 1", "unexpected end of query at position 12"),
        ("()", "unexpected token at position 1"),
        ("NOT", "unexpected end of query at position 3"),
        ("IS_DEFINED tags.a", "unexpected token at position 11"),
        ("IS_DEFINED(tags.a", "unexpected end of query at position 17"),
        ("IS_DEFINED(1)", "unexpected token at position 11"),
        ("IS_DEFINED(foo)", "unknown path root at position 11"),
        ("x = 1", "unknown path root at position 0"),
        ("DeviceId = 'a'", "unknown path root at position 0"),
        ("version.x.y.z = 1 AND devices.x = 1", "unknown path root at position 22"),
        ("1 = version", "unexpected token at position 0"),
        ("'a' = 'a'", "unexpected token at position 0"),
        ("= 1", "unexpected token at position 0"),
        ("true", "unexpected token at position 0"),
        ("version = 'abc", "unterminated string at position 10"),
        ('version = "abc', "unterminated string at position 10"),
        ("version = 'it''s", "unterminated string at position 10"),
        ("version = 'abc\"", "unterminated string at position 10"),
        ("version = 1e999", "number out of range at position 10"),
        ("version = -1e999", "number out of range at position 10"),
        ("version = -", "unexpected character at position 10"),
        ("version = .5", "unexpected character at position 10"),
        ("version = 1.", "unexpected character at position 11"),
        ("version == 1", "unexpected token at position 9"),
        ("version ! 1", "unexpected character at position 8"),
        ("version = 1;", "unexpected character at position 11"),
        ("tags. = 1", "unexpected character at position 4"),
        ("tags.a.$b = 1", "unexpected character at position 6"),
        ("properties.desired.$version = 2", "unexpected character at position 18"),
        ("tags.a\u00a0= 1", "unexpected character at position 6"),
        ("version = \u0661", "unexpected character at position 10"),
        ("tags.é = 1", "unexpected character at position 4"),
        ("version = 1 -- comment", "unexpected character at position 12"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=f"^{re.escape(message)}$"):
        parse_query(text)


def test_text_too_long() -> None:
    text = "version = " + "1" * (MAX_QUERY_CHARS - 10)
    assert len(text) == MAX_QUERY_CHARS
    assert parse_query(text).matches({"version": int("1" * (MAX_QUERY_CHARS - 10))})
    with pytest.raises(ValidationError, match=r"^query exceeds 2048 characters at position 2048$"):
        parse_query(text + "1")


def test_token_budget() -> None:
    # "version = 1" is 3 tokens, " OR " one more: 64 comparisons make 255 tokens.
    text = " OR ".join(["version = 1"] * 64)
    assert len(text) == 956
    assert parse_query(text).matches({"version": 1})
    # 256 tokens are within budget: the parser runs and finds the condition unfinished.
    with pytest.raises(ValidationError, match=r"^unexpected end of query at position 959$"):
        parse_query(text + " OR")
    # The 257th token ("version", at 960) is refused before the parser ever runs.
    with pytest.raises(ValidationError, match=r"^query has more than 256 tokens at position 960$"):
        parse_query(text + " OR version = 2")


def test_nesting_limit_of_parentheses() -> None:
    ok = "(" * MAX_QUERY_NESTING + "version = 1" + ")" * MAX_QUERY_NESTING
    assert parse_query(ok).matches({"version": 1})
    deep = "(" * (MAX_QUERY_NESTING + 1) + "version = 1" + ")" * (MAX_QUERY_NESTING + 1)
    with pytest.raises(ValidationError, match=r"^query nesting exceeds depth 32 at position 32$"):
        parse_query(deep)


def test_nesting_limit_of_not() -> None:
    ok = "NOT " * MAX_QUERY_NESTING + "version = 1"
    assert parse_query(ok).matches({"version": 1})
    with pytest.raises(ValidationError, match=r"^query nesting exceeds depth 32 at position 128$"):
        parse_query("NOT " * (MAX_QUERY_NESTING + 1) + "version = 1")


def test_nesting_counts_parentheses_and_not_together() -> None:
    text = "NOT (" * 16 + "version = 1" + ")" * 16
    assert parse_query(text).matches({"version": 1})
    with pytest.raises(ValidationError, match=r"^query nesting exceeds depth 32"):
        parse_query("NOT (" * 16 + "NOT version = 1" + ")" * 16)


def test_nesting_resets_between_siblings() -> None:
    group = "(" * 20 + "version = 1" + ")" * 20
    assert parse_query(f"{group} AND {group}").matches({"version": 1})


def test_bomb_of_parentheses_is_refused_without_recursion_error() -> None:
    with pytest.raises(ValidationError):
        parse_query("(" * MAX_QUERY_CHARS)
    with pytest.raises(ValidationError):
        parse_query("NOT " * 512)


# --- fuzzing -----------------------------------------------------------------------------------

QUERY_ALPHABET = st.sampled_from(
    [
        "(", ")", "'", '"', "=", "!=", "<>", "<", ">", "<=", ">=", " ", ".", "*", "-", "1", "2.5",
        "1e999", "AND", "or", "NOT", "IS_DEFINED", "true", "null", "version", "tags", "tags.a",
        "properties.reported.x", "SELECT", "FROM", "devices", "devices.modules", "WHERE", "x",
        "é", "\u0661", "\x00",
    ]
)  # fmt: skip


def _check_arbitrary(text: str) -> None:
    try:
        query = parse_query(text)
    except ValidationError as error:
        problem = str(error)
    else:
        assert isinstance(query, TwinQuery)
        assert query.matches(DEVICE) in {True, False}
        assert query.matches(MODULE) in {True, False}
        assert query.matches({}) in {True, False}
        return
    assert " at position " in problem


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_parses_or_raises_validation_error(text: str) -> None:
    _check_arbitrary(text)


@settings(max_examples=1000, deadline=None)
@given(pieces=st.lists(QUERY_ALPHABET, max_size=40))
def test_token_soup_parses_or_raises_validation_error(pieces: list[str]) -> None:
    _check_arbitrary(" ".join(pieces))
    _check_arbitrary("".join(pieces))
