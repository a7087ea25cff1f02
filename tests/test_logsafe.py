"""Request text is made safe before it is logged (issue 21, log injection): ``core.logsafe`` and
``core.telemetry.log_event``, which every structured line goes through."""

from __future__ import annotations

import io
import json
import logging
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.logsafe import safe_text, shape
from core.telemetry import log_event

LINE_BREAKERS = ("\n", "\r", "\x00", "\x0b", "\x0c", "\x1b", "\x85", "\u2028", "\u2029", "\ud800", "\udfff", "\u202e")


@pytest.mark.parametrize("bad", LINE_BREAKERS)
def test_unsafe_characters_are_escaped(bad):
    text = safe_text(f"before{bad}after")
    assert bad not in text and text.startswith("before\\") and text.endswith("after")


def test_plain_text_is_kept_and_long_text_cut():
    assert safe_text("Aino Äijälä +358 50 123") == "Aino Äijälä +358 50 123"
    assert safe_text("x" * 50, limit=10) == "x" * 10 + "…"


@given(st.text())
def test_no_text_can_break_a_line(text):
    safe = safe_text(text, limit=10_000)
    assert not [c for c in safe if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn")]
    assert len(safe.splitlines()) <= 1  # nothing str.splitlines (or a log viewer) takes for a line break
    safe.encode("utf-8")  # no lone surrogate left to break an encoder


def test_shape_names_types_never_values():
    assert shape({"a\nb": [1], "c": {"d": None, "e": 1.5, "f": True}, "g": "secret"}) == {
        "a\\u000ab": ["int"],
        "c": {"d": "null", "e": "float", "f": "bool"},
        "g": "str",
    }


def test_log_event_writes_one_line_whatever_the_fields_hold():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("bridge.events")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        forged = "x\n2026-12-06 07:00:00 ERROR forged\u2028\x00\ud800"
        log_event("test_event", reason=forged, **{forged: "value"}, nested={forged: [forged]})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    output = stream.getvalue()
    assert output.count("\n") == 1 and output.endswith("\n")
    for bad in ("\u2028", "\x00", "\ud800"):
        assert bad not in output
    line = json.loads(output)
    assert line["event"] == "test_event" and "forged" in line["reason"]
