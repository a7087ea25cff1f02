"""Parse and evaluate the OData ``$filter`` subset Dataverse supports, the way Dataverse does.

Supported: ``eq ne gt ge lt le``, ``and or not``, parentheses, ``contains``/``startswith``/
``endswith`` (SQL LIKE semantics: ``%``, ``_`` and ``[...]`` are wildcards, matching is
case-insensitive), ``Microsoft.Dynamics.CRM.In(PropertyName='c',PropertyValues=[...])``,
string/number/bool/null/GUID/datetime literals. String comparison is case-insensitive,
as with Dataverse's default collation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["FilterSyntaxError", "UnknownColumn", "compile_filter"]

Predicate = Callable[[dict[str, Any]], bool]


class FilterSyntaxError(ValueError):
    pass


class UnknownColumn(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))
  | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*(?:/[A-Za-z_][A-Za-z0-9_]*)?)
  | (?P<punct>[(),=\[\]])
    """,
    re.VERBOSE,
)


@dataclass
class _Tok:
    kind: str
    text: str


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise FilterSyntaxError(f"Syntax error at position {position} in '{text}'.")
        position = match.end()
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, match.group(0)))
    return tokens


def _like_regex(pattern: str, anchor_start: bool, anchor_end: bool) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        elif char == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end]
                negate = body.startswith("^") and len(body) > 1
                chars = body[1:] if negate else body
                out.append("[" + ("^" if negate else "") + "".join(re.escape(c) for c in chars) + "]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    regex = ("^" if anchor_start else "") + "".join(out) + ("$" if anchor_end else "")
    return re.compile(regex, re.IGNORECASE | re.DOTALL)


def _norm(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


_OPERATOR_KINDS = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}


class _Parser:
    def __init__(
        self, text: str, has_column: Callable[[str], bool], is_guid: Callable[[str], bool] | None = None
    ) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.has_column = has_column
        self.is_guid = is_guid

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str | None = None, text: str | None = None) -> _Tok:
        token = self.peek()
        if token is None or (kind and token.kind != kind) or (text and token.text.lower() != text):
            found = token.text if token else "end of input"
            raise FilterSyntaxError(f"Syntax error: expected {text or kind} but found '{found}' in '{self.text}'.")
        self.i += 1
        return token

    def at(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token.kind in ("name", "punct") and token.text.lower() == text

    def parse(self) -> Predicate:
        predicate = self.or_expr()
        if self.peek() is not None:
            raise FilterSyntaxError(f"Syntax error at '{self.peek().text}' in '{self.text}'.")  # type: ignore[union-attr]
        return predicate

    def or_expr(self) -> Predicate:
        left = self.and_expr()
        while self.at("or"):
            self.take()
            right = self.and_expr()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def and_expr(self) -> Predicate:
        left = self.unary()
        while self.at("and"):
            self.take()
            right = self.unary()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def unary(self) -> Predicate:
        if self.at("not"):
            self.take()
            inner = self.unary()
            return lambda r: not inner(r)
        if self.at("("):
            self.take()
            inner = self.or_expr()
            self.take("punct", ")")
            return inner
        return self.comparison()

    def column(self) -> str:
        name = self.take("name").text
        if not self.has_column(name):
            raise UnknownColumn(name)
        return name

    def literal(self) -> Any:
        token = self.take()
        if token.kind == "string":
            return token.text[1:-1].replace("''", "'")
        if token.kind == "number":
            return float(token.text) if "." in token.text else int(token.text)
        if token.kind == "guid":
            return token.text.lower()
        if token.kind == "datetime":
            return token.text
        if token.kind == "name" and token.text.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token.text.lower()]
        raise FilterSyntaxError(f"Syntax error: '{token.text}' is not a literal in '{self.text}'.")

    def _in_value(self) -> Any:
        """In()'s PropertyValues is a Collection(Edm.String): numbers and GUIDs go quoted."""
        token = self.peek()
        if self.is_guid is not None and (token is None or token.kind != "string"):
            raise FilterSyntaxError(f"PropertyValues of In() must be string literals in '{self.text}'.")
        return self.literal()

    def comparison(self) -> Predicate:
        token = self.peek()
        if token is None:
            raise FilterSyntaxError(f"Syntax error: unexpected end of '{self.text}'.")
        lowered = token.text.lower()
        if token.kind == "name" and lowered in ("contains", "startswith", "endswith"):
            self.take()
            self.take("punct", "(")
            name = self.column()
            self.take("punct", ",")
            pattern = self.literal()
            self.take("punct", ")")
            if not isinstance(pattern, str):
                raise FilterSyntaxError(f"{lowered} takes a string in '{self.text}'.")
            regex = _like_regex(pattern, lowered == "startswith", lowered == "endswith")
            return lambda r: isinstance(r.get(name), str) and regex.search(r[name]) is not None
        if token.kind == "name" and lowered == "microsoft.dynamics.crm.in":
            self.take()
            self.take("punct", "(")
            self.take("name", "propertyname")
            self.take("punct", "=")
            name = self.literal()
            if not isinstance(name, str) or not self.has_column(name):
                raise UnknownColumn(str(name))
            self.take("punct", ",")
            self.take("name", "propertyvalues")
            self.take("punct", "=")
            self.take("punct", "[")
            values = [self._in_value()]
            while self.at(","):
                self.take()
                values.append(self._in_value())
            self.take("punct", "]")
            self.take("punct", ")")
            wanted = {_norm(v) for v in values}
            return lambda r: _norm(r.get(name)) in wanted
        if token.kind == "name" and lowered.startswith("microsoft.dynamics.crm."):
            raise FilterSyntaxError(f"The function {token.text} is not emulated.")
        name = self.column()
        op = self.take("name").text.lower()
        token = self.peek()
        if self.is_guid is not None and token is not None and token.kind in ("string", "guid"):
            # As the OData parser does: no promotion between Edm.Guid and Edm.String.
            column_type = "Edm.Guid" if self.is_guid(name) else "Edm.String"
            literal_type = "Edm.Guid" if token.kind == "guid" else "Edm.String"
            if column_type != literal_type:
                raise FilterSyntaxError(
                    "A binary operator with incompatible types was detected. Found operand types "
                    f"'{column_type}' and '{literal_type}' for operator kind '{_OPERATOR_KINDS.get(op, op)}'."
                )
        value = _norm(self.literal())
        compare: dict[str, Callable[[Any, Any], bool]] = {
            "eq": lambda a, b: a == b,
            "ne": lambda a, b: a != b,
            "gt": lambda a, b: a is not None and b is not None and a > b,
            "ge": lambda a, b: a is not None and b is not None and a >= b,
            "lt": lambda a, b: a is not None and b is not None and a < b,
            "le": lambda a, b: a is not None and b is not None and a <= b,
        }
        if op not in compare:
            raise FilterSyntaxError(f"Syntax error: unknown operator '{op}' in '{self.text}'.")
        function = compare[op]
        return lambda r: function(_norm(r.get(name)), value)


def compile_filter(
    text: str, has_column: Callable[[str], bool], is_guid: Callable[[str], bool] | None = None
) -> Predicate:
    """Compile ``text`` into a predicate over records; raise on bad syntax or unknown columns, and
    (given ``is_guid``) on a GUID column compared with a quoted string or a text column with a GUID."""
    return _Parser(text, has_column, is_guid).parse()
