"""Retrieval's BM25 tokenizer: the same tokens as bm25s.tokenize, with stems cached by word."""

from __future__ import annotations

import json
from pathlib import Path

import bm25s
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa import retrieval

ROOT = Path(__file__).resolve().parent.parent


def reference(texts: list[str]) -> list[list[str]]:
    """bm25s's own tokenizer, as qa used it before (and as BM25 indexes were built)."""
    out = bm25s.tokenize(
        texts, stopwords="en", stemmer=retrieval._stemmer().stemWords, return_ids=False, show_progress=False
    )
    return [list(t) for t in out]


SAMPLES = [
    "",
    "   ",
    "Who is OpenAI partnering with to manufacture AI hardware?",
    "The RUNNING runners ran; running's fine — isn't it? A I am an it.",
    "Naïve café résumé ŒUVRE straße İstanbul ǅemal",
    "数据 中心 机架 AI-hardware 2026-11-30 3.14 x86_64 __init__ 12 1",
    "Привет мир, это тест. مرحبا بالعالم",
    "emoji 🚀🚀 rocket-ship x\u0301 e\u0301te\u0301",
    "Tab\tand\nnew\r\nlines\x00null",
]


def test_same_tokens_as_bm25s_on_varied_text() -> None:
    assert retrieval.tokenize(SAMPLES) == reference(SAMPLES)
    # one at a time (a warm cache) gives the same as all at once
    assert [retrieval.tokenize([t])[0] for t in SAMPLES] == reference(SAMPLES)


def test_same_tokens_as_bm25s_on_the_default_corpus_and_readme() -> None:
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpus").glob("*"))]
    texts.append((ROOT / "README.md").read_text(encoding="utf-8"))
    lines = (ROOT / "tests" / "data" / "smalldocs" / "questions.jsonl").read_text(encoding="utf-8")
    texts += [json.loads(line)["question"] for line in lines.splitlines() if line.strip()]
    assert retrieval.tokenize(texts) == reference(texts)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=80), max_size=4))
def test_same_tokens_as_bm25s_on_any_text(texts: list[str]) -> None:
    assert retrieval.tokenize(texts) == reference(texts)


def test_the_stem_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrieval, "_MAX_STEMS", 3)
    retrieval._STEMS.clear()
    first = retrieval.tokenize(["alpha betas gammas deltas epsilons"])
    assert len(retrieval._STEMS) == 5
    again = retrieval.tokenize(["zetas etas"])  # over the bound: cleared, then filled
    assert len(retrieval._STEMS) == 2
    assert first == reference(["alpha betas gammas deltas epsilons"]) and again == reference(["zetas etas"])


def _top_rows_by_sorting(scores: np.ndarray, n: int) -> np.ndarray:
    positive = np.flatnonzero(scores > 0)
    return positive[np.argsort(-scores[positive], kind="stable")[:n]]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, -1.0, 0.5, 1.0, 1.5, 2.0, 3.25]), max_size=60),
    st.integers(min_value=0, max_value=70),
)
def test_top_rows_equal_a_full_stable_sort_ties_by_row(values: list[float], n: int) -> None:
    scores = np.asarray(values, dtype=np.float32)
    assert retrieval.top_rows(scores, n).tolist() == _top_rows_by_sorting(scores, n).tolist()


def test_top_rows_at_scale() -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(100_000).astype(np.float32) * 50, 1) * (rng.random(100_000) > 0.4)
    for n in (1, 40, 5000):
        assert retrieval.top_rows(scores, n).tolist() == _top_rows_by_sorting(scores, n).tolist()
