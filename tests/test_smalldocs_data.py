"""The small-document evaluation set (tests/data/smalldocs) is well formed and verbatim.

Every answerable question's ``answer`` and ``sentence`` must be found in the text qa's own
parser extracts from its document, so an evaluation can locate them by substring search; the
near-miss and off-topic questions must name no document. Fast: parsing only, no model.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from qa.documents import FORMATS
from qa.parsing import parse

SET = Path(__file__).resolve().parent / "data" / "smalldocs"
CORPUS = SET / "corpus"
KINDS = {"answerable", "near-miss", "off-topic"}
TYPES = {"person", "date", "number", "place", "name", "other"}
REQUIRED = {
    "answerable": {"id", "question", "kind", "doc", "answer", "sentence", "type"},
    "near-miss": {"id", "question", "kind", "type", "note"},
    "off-topic": {"id", "question", "kind", "type"},
}
OPTIONAL = {"note"}
# A sentence starts where a sentence can start: at the start of the text or of a line, or
# after the space that follows closing punctuation. It ends at closing punctuation or a line end.
_START_AFTER = re.compile(r"(?:^|\n|[.!?:;]\s)$")
_END_AT = re.compile(r"[.!?:;]$")


@pytest.fixture(scope="module")
def questions() -> list[dict[str, Any]]:
    rows = []
    with open(SET / "questions.jsonl", encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            assert line.strip(), f"questions.jsonl line {number} is blank"
            row = json.loads(line)
            assert isinstance(row, dict), f"questions.jsonl line {number} is not a JSON object"
            rows.append(row)
    return rows


@pytest.fixture(scope="module")
def documents() -> dict[str, tuple[str, list[tuple[int, str]]]]:
    """Document id -> (text, locations), parsed exactly as qa parses it for the index."""
    parsed = {}
    for path in sorted(CORPUS.iterdir()):
        fmt = FORMATS.get(path.suffix.lower())
        assert fmt is not None, f"{path.name}: the corpus folder holds only documents qa indexes"
        text, locations, note = parse(fmt, path.read_bytes())
        assert not note, f"{path.name}: parsed with a note ({note}); the set should be clean UTF-8"
        parsed[path.name] = (text, locations)
    return parsed


def test_fields_and_counts(questions: list[dict[str, Any]]) -> None:
    ids = [q.get("id") for q in questions]
    assert len(ids) == len(set(ids)), f"duplicate ids: {[i for i, n in Counter(ids).items() if n > 1]}"
    for q in questions:
        assert q.get("kind") in KINDS, f"{q.get('id')}: kind {q.get('kind')!r} not one of {sorted(KINDS)}"
        keys = set(q)
        missing = REQUIRED[q["kind"]] - keys
        extra = keys - REQUIRED[q["kind"]] - OPTIONAL
        assert not missing, f"{q['id']}: missing {sorted(missing)}"
        assert not extra, f"{q['id']}: {q['kind']} questions have no {sorted(extra)}"
        assert re.fullmatch(r"[a-z]{3}-(?:\d{2}|nm\d)", q["id"]), f"{q['id']}: id pattern"
        for key in keys:
            assert isinstance(q[key], str) and q[key].strip() == q[key] and q[key], f"{q['id']}: {key}"
        assert q["question"].endswith("?"), f"{q['id']}: a question ends with '?'"
        assert q["type"] in TYPES, f"{q['id']}: type {q['type']!r} not one of {sorted(TYPES)}"
    kinds = Counter(q["kind"] for q in questions)
    assert len(questions) >= 72, len(questions)
    assert kinds["answerable"] >= 40, kinds
    assert kinds["near-miss"] >= 20, kinds
    assert kinds["off-topic"] >= 12, kinds


def test_answers_are_verbatim(
    questions: list[dict[str, Any]], documents: dict[str, tuple[str, list[tuple[int, str]]]]
) -> None:
    for q in questions:
        if q["kind"] != "answerable":
            continue
        assert q["doc"] in documents, f"{q['id']}: no document {q['doc']!r} in {CORPUS.name}/"
        text, _ = documents[q["doc"]]
        sentence, answer = q["sentence"], q["answer"]
        count = text.count(sentence)
        assert count == 1, f"{q['id']}: sentence found {count} times in {q['doc']}: {sentence!r}"
        assert answer in sentence, f"{q['id']}: answer {answer!r} is not inside its sentence"
        start = text.index(sentence)
        end = start + len(sentence)
        before = text[max(0, start - 2) : start]
        assert _START_AFTER.search(before), f"{q['id']}: sentence starts mid-sentence after {before!r}"
        assert _END_AT.search(sentence) or end == len(text) or text[end] == "\n", (
            f"{q['id']}: sentence ends mid-sentence: {sentence[-30:]!r}"
        )


def test_coverage(
    questions: list[dict[str, Any]], documents: dict[str, tuple[str, list[tuple[int, str]]]]
) -> None:
    """The set keeps what it is for: every format, every answer type, the hard cases."""
    answerable = [q for q in questions if q["kind"] == "answerable"]
    assert {FORMATS[Path(q["doc"]).suffix] for q in answerable} == set(FORMATS.values())
    assert {q["type"] for q in answerable} == TYPES
    assert {q["doc"] for q in answerable} == set(documents), "every document has questions"

    def location(q: dict[str, Any]) -> str:
        text, locations = documents[q["doc"]]
        start = text.index(q["sentence"])
        return max(((o, label) for o, label in locations if o <= start), default=(0, ""))[1]

    pages = {location(q) for q in answerable if q["doc"].endswith(".pdf")}
    assert pages - {"page 1"}, "a fact on PDF page 2 or later"
    for ext in (".docx", ".md"):  # a fact under a sub-heading ("Daily routine > Turning and brushing")
        assert any(" > " in location(q) for q in answerable if q["doc"].endswith(ext)), ext
    # Table rows: DOCX rows are "a | b" lines, HTML cells one per line.
    assert any(" | " in q["sentence"] for q in answerable if q["doc"].endswith(".docx"))
    assert any("\n" in q["sentence"] for q in answerable if q["doc"].endswith(".html"))
    # A list announced by the sentence before it ("... comes in several versions. These include ...").
    assert sum(bool(re.search(r"\b(several|following)\b", q["sentence"])) for q in answerable) >= 2
    for q in questions:
        if q["kind"] != "answerable":
            assert "doc" not in q and "answer" not in q and "sentence" not in q, q["id"]


def _make_binaries() -> ModuleType:
    spec = importlib.util.spec_from_file_location("smalldocs_make_binaries", SET / "make_binaries.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def test_binaries_match_their_sources(documents: dict[str, tuple[str, list[tuple[int, str]]]]) -> None:
    """The committed PDF/DOCX hold the text of sources/*.txt (compared as parsed text, since
    the bytes depend on the reportlab, python-docx and zlib versions)."""
    pytest.importorskip("reportlab")
    make = _make_binaries()
    for name, ext in make.TARGETS.items():
        target = CORPUS / f"{name}.{ext}"
        assert target.stat().st_size < 100_000, f"{target.name} should stay small"
        rebuilt = parse(FORMATS[f".{ext}"], make.build(name))[:2]
        assert rebuilt == documents[target.name], (
            f"{target.name} differs from sources/{name}.txt: run python tests/data/smalldocs/make_binaries.py"
        )
