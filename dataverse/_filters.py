"""Build OData ``$filter`` expressions from values, never from raw text.

Every value goes through :func:`literal`, which quotes strings with single
quotes doubled; column names must be plain identifiers. The client URL-encodes
the whole query (so ``+`` travels as ``%2B``). Inside ``contains``,
``startswith`` and ``endswith`` Dataverse treats ``%``, ``_`` and ``[`` as SQL
wildcards, so those helpers escape them too.

Compare GUID columns (primary keys, ``_<lookup>_value``) with a ``uuid.UUID``: it becomes an
unquoted GUID literal. A GUID in a ``str`` is an ``Edm.String`` and Dataverse refuses the
comparison ("incompatible types"). ``in_`` is the exception: the ``In`` function takes its
values as strings, so every value is sent quoted.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime

__all__ = [
    "Filter",
    "and_",
    "column",
    "contains",
    "endswith",
    "eq",
    "ge",
    "gt",
    "in_",
    "le",
    "literal",
    "lt",
    "ne",
    "not_",
    "or_",
    "startswith",
]

Value = str | int | float | bool | None | uuid.UUID | datetime | date
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)?$")


class Filter(str):
    """A ``$filter`` expression built by this module (a ``str`` subclass, so it prints as itself)."""


def column(name: str) -> str:
    """Return ``name`` if it is a plain logical column name, else raise ``ValueError``."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"not a Dataverse column name: {name!r}")
    return name


def literal(value: Value) -> str:
    """The OData literal for a Python value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("NaN and infinity have no OData literal")
        return repr(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("datetimes sent to Dataverse must be timezone-aware")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no OData literal for {type(value).__name__}")


def _compare(op: str, name: str, value: Value) -> Filter:
    return Filter(f"{column(name)} {op} {literal(value)}")


def eq(name: str, value: Value) -> Filter:
    return _compare("eq", name, value)


def ne(name: str, value: Value) -> Filter:
    return _compare("ne", name, value)


def gt(name: str, value: Value) -> Filter:
    return _compare("gt", name, value)


def ge(name: str, value: Value) -> Filter:
    return _compare("ge", name, value)


def lt(name: str, value: Value) -> Filter:
    return _compare("lt", name, value)


def le(name: str, value: Value) -> Filter:
    return _compare("le", name, value)


def in_(name: str, values: Iterable[Value]) -> Filter:
    """``Microsoft.Dynamics.CRM.In``: one condition for many values (at least one).

    ``PropertyValues`` is a ``Collection(Edm.String)``, so numbers and GUIDs go quoted too."""
    items = [literal(_in_value(v)) for v in values]
    if not items:
        raise ValueError("in_() needs at least one value")
    return Filter(f"Microsoft.Dynamics.CRM.In(PropertyName={literal(column(name))},PropertyValues=[{','.join(items)}])")


def _in_value(value: Value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, uuid.UUID) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    raise TypeError(f"In() takes strings, integers or GUIDs, not {type(value).__name__}")


def _join(op: str, parts: Iterable[Filter]) -> Filter:
    items = [p for p in parts]
    for part in items:
        if not isinstance(part, Filter):
            raise TypeError("combine only Filter values built by this module")
    if not items:
        raise ValueError(f"{op}_() needs at least one condition")
    if len(items) == 1:
        return items[0]
    return Filter("(" + f" {op} ".join(items) + ")")


def and_(*parts: Filter) -> Filter:
    return _join("and", parts)


def or_(*parts: Filter) -> Filter:
    return _join("or", parts)


def not_(part: Filter) -> Filter:
    if not isinstance(part, Filter):
        raise TypeError("negate only a Filter built by this module")
    return Filter(f"not ({part})")


def _like_escape(text: str) -> str:
    return re.sub(r"([%_\[])", r"[\1]", text)


def _like(function: str, name: str, text: str) -> Filter:
    if not isinstance(text, str):
        raise TypeError(f"{function}() takes a string")
    return Filter(f"{function}({column(name)},{literal(_like_escape(text))})")


def contains(name: str, text: str) -> Filter:
    """Substring match. Forces a table scan on Dataverse: keep it off hot paths."""
    return _like("contains", name, text)


def startswith(name: str, text: str) -> Filter:
    return _like("startswith", name, text)


def endswith(name: str, text: str) -> Filter:
    """Suffix match. Forces a table scan on Dataverse: keep it off hot paths."""
    return _like("endswith", name, text)
