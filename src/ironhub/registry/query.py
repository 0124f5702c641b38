"""A small, safe filter language over twin documents (the operator's twin query).

The language is a subset of the IoT Hub query language's ``WHERE`` clause, evaluated in Python
over :meth:`ironhub.registry.twin.Twin.operator_document` values. Nothing is ever turned into
SQL or code: the text is tokenized, parsed by recursive descent into an immutable tree, and the
tree is walked. Work is bounded by the text length (:data:`MAX_QUERY_CHARS`), the number of
tokens (:data:`MAX_QUERY_NODES`, which also bounds the tree) and the nesting of parentheses and
``NOT`` (:data:`MAX_QUERY_NESTING`), so neither parsing nor evaluation can run deep or long.

Grammar (keywords case-insensitive, property paths case-sensitive)::

    query      := [ "SELECT" "*" "FROM" ( "devices" | "devices.modules" ) "WHERE" ] condition
    condition  := or
    or         := and ( "OR" and )*
    and        := not ( "AND" not )*
    not        := "NOT" not | primary
    primary    := "(" or ")" | "IS_DEFINED" "(" path ")" | path op literal
    op         := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    path       := ident ( "." ident )*      ident = [A-Za-z_][A-Za-z0-9_-]*
    literal    := 'single' | "double" | number | true | false | null

A path starts with ``deviceId``, ``moduleId``, ``tags``, ``properties`` or ``version``. In a
string literal the quote character is escaped by doubling it (``'it''s'``); there are no
backslash escapes. Numbers are ``-?[0-9]+(.[0-9]+)?([eE][+-]?[0-9]+)?`` and must be finite.

Semantics (following the IoT Hub query language where it is defined):

* The path is looked up member by member; a missing member, or a step into a non-object,
  leaves it *undefined*. Every comparison with an undefined value is false, and so is
  ``IS_DEFINED``.
* A comparison holds only between values of the same JSON type: numbers (``bool`` is not a
  number; ``1 = 1.0`` holds, ``true = 1`` does not), strings, booleans or nulls. Across types,
  or with an object or array value, ``=``, ``!=`` and the orderings are all false; so
  ``= null`` holds only for a present JSON ``null`` and ``!= null`` never holds.
* ``<``, ``<=``, ``>``, ``>=`` order numbers, and strings by code point; other types are false.
* With the ``FROM devices`` prefix only device twins match, with ``FROM devices.modules`` only
  module twins (documents with a ``moduleId``), as in IoT Hub; without a prefix, both.

Errors are :class:`~ironhub.errors.ValidationError` naming the problem and the 0-based
character position, e.g. ``"unterminated string at position 4"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, TypeAlias

from ironhub.errors import ValidationError

__all__ = [
    "MAX_QUERY_CHARS",
    "MAX_QUERY_NESTING",
    "MAX_QUERY_NODES",
    "TwinQuery",
    "parse_query",
]

#: The longest query text accepted.
MAX_QUERY_CHARS: Final = 2048

#: The most tokens a query may have; the syntax tree never has more nodes than tokens.
MAX_QUERY_NODES: Final = 256

#: The deepest nesting of parentheses and ``NOT``.
MAX_QUERY_NESTING: Final = 32

_PATH_ROOTS: Final = frozenset({"deviceId", "moduleId", "tags", "properties", "version"})

_KEYWORDS: Final = frozenset(
    {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IS_DEFINED", "TRUE", "FALSE", "NULL"}
)

# ASCII only: ``\d`` and ``\s`` would accept other scripts' digits and spaces.
_SPACE = re.compile(r"[ \t\r\n]+")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_OPERATORS: Final = ("<=", ">=", "<>", "!=", "=", "<", ">")
_PUNCTUATION: Final = frozenset("()*")
_KEYWORD_LITERALS: Final[dict[str, bool | None]] = {"TRUE": True, "FALSE": False, "NULL": None}


class _Kind(Enum):
    KEYWORD = "keyword"  # text is upper-cased
    WORD = "word"  # a path, or the FROM target
    OPERATOR = "operator"
    PUNCTUATION = "punctuation"
    STRING = "string"
    NUMBER = "number"
    END = "end"


#: The Python value of a literal (and, for keywords, the upper-cased keyword).
_Literal: TypeAlias = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str
    position: int
    value: _Literal = None


# --- the syntax tree ---------------------------------------------------------------------------


class _Scope(Enum):
    ANY = "any"
    DEVICES = "devices"
    MODULES = "devices.modules"


@dataclass(frozen=True, slots=True)
class _Or:
    operands: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _And:
    operands: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Not:
    operand: _Node


@dataclass(frozen=True, slots=True)
class _IsDefined:
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Compare:
    path: tuple[str, ...]
    operator: str
    literal: _Literal


_Node: TypeAlias = _Or | _And | _Not | _IsDefined | _Compare


@dataclass(frozen=True)
class TwinQuery:
    """A parsed twin filter. Build one with :func:`parse_query` (or ``TwinQuery(text)``).

    Attributes:
        text: the query text as given.
    """

    text: str
    _scope: _Scope = field(init=False, repr=False, compare=False)
    _root: _Node = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        scope, root = _Parser(self.text).parse()
        object.__setattr__(self, "_scope", scope)
        object.__setattr__(self, "_root", root)

    def matches(self, document: Mapping[str, Any]) -> bool:
        """Whether a twin document satisfies the query.

        Args:
            document: a twin as :meth:`~ironhub.registry.twin.Twin.operator_document` builds it.

        Returns:
            ``True`` if it matches. Never raises for JSON-like documents: a missing path or a
            type mismatch makes a comparison false.

        Raises:
            Nothing for JSON-like documents.
        """
        if self._scope is _Scope.DEVICES and "moduleId" in document:
            return False
        if self._scope is _Scope.MODULES and "moduleId" not in document:
            return False
        return _evaluate(self._root, document)


def parse_query(text: str) -> TwinQuery:
    """Parse a twin query.

    Args:
        text: the query, with or without the ``SELECT * FROM devices WHERE`` prefix.

    Returns:
        The parsed query.

    Raises:
        ValidationError: the text is too long, too complex or malformed; the message names
            the problem and its position.
    """
    return TwinQuery(text)


# --- tokenizer ---------------------------------------------------------------------------------


def _error(problem: str, position: int) -> ValidationError:
    return ValidationError(f"{problem} at position {position}")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while True:
        space = _SPACE.match(text, position)
        if space:
            position = space.end()
        if position == len(text):
            tokens.append(_Token(_Kind.END, "", position))
            return tokens
        if len(tokens) == MAX_QUERY_NODES:
            raise _error(f"query has more than {MAX_QUERY_NODES} tokens", position)
        token = _next_token(text, position)
        tokens.append(token)
        position += len(token.text)


def _next_token(text: str, position: int) -> _Token:
    char = text[position]
    if char in "'\"":
        return _string_token(text, position)
    if word := _WORD.match(text, position):
        upper = word.group().upper()
        if upper in _KEYWORDS:
            return _Token(_Kind.KEYWORD, word.group(), position, upper)
        return _Token(_Kind.WORD, word.group(), position)
    if number := _NUMBER.match(text, position):
        return _number_token(number.group(), position)
    for operator in _OPERATORS:
        if text.startswith(operator, position):
            return _Token(_Kind.OPERATOR, operator, position)
    if char in _PUNCTUATION:
        return _Token(_Kind.PUNCTUATION, char, position)
    raise _error("unexpected character", position)


def _string_token(text: str, start: int) -> _Token:
    quote = text[start]
    pieces: list[str] = []
    position = start + 1
    while True:
        end = text.find(quote, position)
        if end < 0:
            raise _error("unterminated string", start)
        pieces.append(text[position:end])
        if text.startswith(quote, end + 1):  # a doubled quote stands for one quote
            pieces.append(quote)
            position = end + 2
            continue
        return _Token(_Kind.STRING, text[start : end + 1], start, "".join(pieces))


def _number_token(literal: str, position: int) -> _Token:
    value: int | float
    if any(char in literal for char in ".eE"):
        value = float(literal)
        if not math.isfinite(value):
            raise _error("number out of range", position)
    else:
        # At most MAX_QUERY_CHARS digits, well under the interpreter's 4300-digit limit.
        value = int(literal)
    return _Token(_Kind.NUMBER, literal, position, value)


# --- parser ------------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, text: str) -> None:
        if len(text) > MAX_QUERY_CHARS:
            raise _error(f"query exceeds {MAX_QUERY_CHARS} characters", MAX_QUERY_CHARS)
        self._tokens = _tokenize(text)
        self._index = 0
        self._nesting = 0

    def parse(self) -> tuple[_Scope, _Node]:
        scope = self._prefix()
        if self._peek().kind is _Kind.END:
            raise _error("empty condition", self._peek().position)
        root = self._or()
        if self._peek().kind is not _Kind.END:
            raise self._unexpected()
        return scope, root

    # Token helpers.

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _advance(self) -> None:
        # Every caller has looked at the current token first, and END is never consumed.
        self._index += 1

    def _at_keyword(self, keyword: str) -> bool:
        token = self._peek()
        return token.kind is _Kind.KEYWORD and token.value == keyword

    def _at_punctuation(self, char: str) -> bool:
        token = self._peek()
        return token.kind is _Kind.PUNCTUATION and token.text == char

    def _unexpected(self) -> ValidationError:
        token = self._peek()
        if token.kind is _Kind.END:
            return _error("unexpected end of query", token.position)
        return _error("unexpected token", token.position)

    def _expect_keyword(self, keyword: str) -> None:
        if not self._at_keyword(keyword):
            raise self._unexpected()
        self._advance()

    def _expect_punctuation(self, char: str) -> None:
        if not self._at_punctuation(char):
            raise self._unexpected()
        self._advance()

    # Grammar rules.

    def _prefix(self) -> _Scope:
        if not self._at_keyword("SELECT"):
            return _Scope.ANY
        self._advance()
        self._expect_punctuation("*")
        self._expect_keyword("FROM")
        target = self._peek()
        collection = target.text.lower() if target.kind is _Kind.WORD else ""
        if collection not in {"devices", "devices.modules"}:
            raise _error("unknown collection", target.position)
        self._advance()
        self._expect_keyword("WHERE")
        return _Scope(collection)

    def _or(self) -> _Node:
        operands = [self._and()]
        while self._at_keyword("OR"):
            self._advance()
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else _Or(tuple(operands))

    def _and(self) -> _Node:
        operands = [self._not()]
        while self._at_keyword("AND"):
            self._advance()
            operands.append(self._not())
        return operands[0] if len(operands) == 1 else _And(tuple(operands))

    def _not(self) -> _Node:
        if not self._at_keyword("NOT"):
            return self._primary()
        self._enter()
        self._advance()
        node = _Not(self._not())
        self._nesting -= 1
        return node

    def _primary(self) -> _Node:
        if self._at_punctuation("("):
            self._enter()
            self._advance()
            node = self._or()
            self._expect_punctuation(")")
            self._nesting -= 1
            return node
        if self._at_keyword("IS_DEFINED"):
            self._advance()
            self._expect_punctuation("(")
            path = self._path()
            self._expect_punctuation(")")
            return _IsDefined(path)
        path = self._path()
        operator = self._peek()
        if operator.kind is not _Kind.OPERATOR:
            raise self._unexpected()
        self._advance()
        return _Compare(path, "!=" if operator.text == "<>" else operator.text, self._literal())

    def _enter(self) -> None:
        self._nesting += 1
        if self._nesting > MAX_QUERY_NESTING:
            raise _error(f"query nesting exceeds depth {MAX_QUERY_NESTING}", self._peek().position)

    def _path(self) -> tuple[str, ...]:
        token = self._peek()
        if token.kind is not _Kind.WORD:
            raise self._unexpected()
        path = tuple(token.text.split("."))
        if path[0] not in _PATH_ROOTS:
            raise _error("unknown path root", token.position)
        self._advance()
        return path

    def _literal(self) -> _Literal:
        token = self._peek()
        if token.kind in {_Kind.STRING, _Kind.NUMBER}:
            self._advance()
            return token.value
        if token.kind is _Kind.KEYWORD and token.value in _KEYWORD_LITERALS:
            self._advance()
            return _KEYWORD_LITERALS[str(token.value)]
        raise self._unexpected()


# --- evaluation --------------------------------------------------------------------------------

_UNDEFINED: Final = object()

_ORDERINGS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": lambda left, right: left < right,
    "<=": lambda left, right: left <= right,
    ">": lambda left, right: left > right,
    ">=": lambda left, right: left >= right,
}


def _evaluate(node: _Node, document: Mapping[str, Any]) -> bool:
    if isinstance(node, _Or):
        return any(_evaluate(operand, document) for operand in node.operands)
    if isinstance(node, _And):
        return all(_evaluate(operand, document) for operand in node.operands)
    if isinstance(node, _Not):
        return not _evaluate(node.operand, document)
    value = _resolve(document, node.path)
    if isinstance(node, _IsDefined):
        return value is not _UNDEFINED
    return _compare(value, node.operator, node.literal)


def _resolve(document: Mapping[str, Any], path: tuple[str, ...]) -> object:
    current: object = document
    for member in path:
        if not isinstance(current, Mapping) or member not in current:
            return _UNDEFINED
        current = current[member]
    return current


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"  # objects, arrays, undefined


def _compare(value: object, operator: str, literal: _Literal) -> bool:
    kind = _json_type(value)
    if kind == "other" or kind != _json_type(literal):
        return False
    if operator == "=":
        return value == literal
    if operator == "!=":
        return value != literal
    if kind not in {"number", "string"}:
        return False
    return _ORDERINGS[operator](value, literal)
