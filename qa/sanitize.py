"""Text that crosses an edge: questions coming in, and what the CLI prints going out.

Questions: a question may hold code points no encoder accepts, such as lone surrogates
(``qa ask $'\\xff'`` reaches Python as ``'\\udcff'``; JSON can carry ``"\\ud800"``). The one
rule, applied by ``Index.ask`` for every caller (CLI, Python API, web app): each surrogate
becomes U+FFFD, the replacement character, as a UTF-8 decoder would have done.

Terminal output: document text, file names and error messages are data, and a document can
hold escape sequences (clear the screen, set the window title, print a fake "Answer:" in
green) or bidirectional overrides that reorder what is shown. ``printable`` writes every
control character except newline and tab, every bidi control and every surrogate as a
visible escape (``\\x1b``, ``\\u202e``), so the terminal shows them instead of obeying them;
``printable_json`` does the same to the characters ``json.dumps(ensure_ascii=False)`` leaves
raw (DEL, the C1 controls, bidi controls, surrogates), keeping the JSON valid and equal.
Non-goal: HTML escaping (``qa.rendering.esc`` does that for the web app).
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATES = re.compile("[\ud800-\udfff]")
# Bidirectional formatting characters: embeddings, overrides, isolates and marks.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# C0 controls but newline and tab, DEL, C1 controls, bidi controls, surrogates.
_UNPRINTABLE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}\ud800-\udfff]")
# What json.dumps(ensure_ascii=False) leaves unescaped among those (it escapes C0 itself).
_JSON_RAW = re.compile(f"[\x7f-\x9f{_BIDI}\ud800-\udfff]")


def clean_question(text: str) -> str:
    """``text`` with every surrogate code point replaced by U+FFFD (same length)."""
    return _SURROGATES.sub("\ufffd", text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``str(text)`` safe to write to a terminal: control characters (but newline and tab),
    bidi controls and surrogates are shown as ``\\xNN`` / ``\\uNNNN`` escapes.

    Example: ``printable("a\\x1b[2Jb")`` is ``"a\\\\x1b[2Jb"``: the screen is not cleared.
    """
    return _UNPRINTABLE.sub(_escape, str(text))


def printable_json(value: Any, **dumps: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, **dumps)`` with the characters it leaves raw
    that a terminal would obey written as ``\\uNNNN`` escapes (the JSON decodes the same)."""
    text = json.dumps(value, ensure_ascii=False, **dumps)
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
