"""Text from a request made safe to log: no character that could end a log line, forge one, or
break an encoder.

Control characters (``\\n``, ``\\r``, NUL, ...), the Unicode line and paragraph separators, format
characters (bidirectional overrides) and lone surrogates are written as ``\\uXXXX`` escapes;
everything else is kept. Long values are cut. Used by ``core.telemetry.log_event`` for every
string it logs, and by anything that puts request text into a plain log message.
"""

from __future__ import annotations

import unicodedata
from typing import Any

__all__ = ["safe_text", "shape"]

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"})


def _escape(character: str) -> str:
    code = ord(character)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def safe_text(value: object, limit: int = 1000) -> str:
    """``value`` as text with every unsafe character escaped, at most ``limit`` characters (then ``…``)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable() and text.isascii():
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _UNSAFE_CATEGORIES or c == "\x85" else c for c in text)


def shape(value: Any, *, depth: int = 4, width: int = 40) -> Any:
    """The shape of a JSON value without its values: field names (made safe) and value types
    (``str``, ``int``, ``float``, ``bool``, ``null``, ``[shape of the first item]``), ``depth``
    levels deep and ``width`` fields wide."""
    if isinstance(value, dict):
        if depth <= 0:
            return "object"
        items = list(value.items())[:width]
        return {safe_text(k, 60): shape(v, depth=depth - 1, width=width) for k, v in items}
    if isinstance(value, list):
        if depth <= 0 or not value:
            return "list"
        return [shape(value[0], depth=depth - 1, width=width)]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str" if isinstance(value, str) else type(value).__name__
