"""Chunking in bounded memory, and chunks capped in characters (issue 14, items 4 and 9).

- ``chunk_stream`` tokenizes one segment at a time and gives exactly what tokenizing the whole
  text gives (hypothesis, with tiny segments so every text is cut into many).
- On ordinary text the chunks, units and counts are those of the chunker before this change
  (``tests/helpers/chunking_before.py``, the oracle).
- Zalgo text, deep indentation, a 200,000-letter word, long whitespace: no chunk or unit over
  ``MAX_CHUNK_CHARS`` characters, and the chunk invariants hold.
- The real tokenizer over 8 MiB of "a " (a child process, measured from /proc): the old way
  (whole text at once) took ~1.2 GB per 4 MB; streaming stays under 400 MB more than the model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa import chunking
from qa.chunking import MAX_CHUNK_CHARS, chunk_stream, chunk_text
from tests.conftest import ROOT, FakeEmbedder
from tests.helpers import chunking_before
from tests.test_chunking import check_invariants, params, texts

FAKE = FakeEmbedder()

# Ordinary text: words, sentences, paragraphs, Markdown, non-Latin scripts; no huge tokens.
_WORDS = st.sampled_from(
    [
        "the",
        "cat",
        "sat",
        "Dr.",
        "Smith",
        "2024",
        "e.g.",
        "naïve",
        "日本語の文です。",
        "Привет",
        "—",
        "(see",
        "it)",
    ]
)
_SENTENCE = st.lists(_WORDS, min_size=1, max_size=30).map(" ".join).map(lambda s: s + ".")
_PARAGRAPH = st.lists(_SENTENCE, min_size=1, max_size=8).map(" ".join)
_LINE = st.one_of(
    _PARAGRAPH, st.sampled_from(["# Title", "## Section two", "- item one", "| a | b |", "Results", ""])
)
ordinary = st.lists(_LINE, max_size=30).map("\n".join)


@pytest.fixture
def tiny_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunking, "SEGMENT_CHARS", 23)
    monkeypatch.setattr(chunking, "MAX_SPLIT_CHARS", 41)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts, p=params)
def test_stream_equals_whole_text_tokenization(tiny_segments: None, text: str, p: tuple[int, int]) -> None:
    max_tokens, overlap = p
    seen: list[int] = []

    def tokenize(part: str) -> np.ndarray:
        seen.append(len(part))
        return FAKE.token_starts(part)

    streamed = chunk_stream(text, tokenize, max_tokens, overlap)
    whole = chunk_text(text, FAKE.token_starts(text), max_tokens, overlap)
    assert streamed == whole
    check_invariants(text, FAKE.token_starts(text), max_tokens, overlap, streamed)
    assert sum(seen) == len(text)  # each character tokenized once


@pytest.mark.parametrize(
    ("text", "longest"),
    [
        ("A line of prose that ends here.\n" * 40_000, chunking.SEGMENT_CHARS + chunking.MAX_SPLIT_CHARS),
        ("a " * 600_000, chunking.SEGMENT_CHARS + chunking.MAX_SPLIT_CHARS),
        ("x" * 1_500_000, 2**20 + chunking.MAX_SPLIT_CHARS),  # no separator anywhere: the hard cap
    ],
    ids=["lines", "one line", "no separator"],
)
def test_tokenizer_sees_bounded_segments(text: str, longest: int) -> None:
    seen: list[int] = []

    def tokenize(part: str) -> np.ndarray:
        seen.append(len(part))
        return FAKE.token_starts(part)

    chunk_stream(text, tokenize, 200, 1)
    assert sum(seen) == len(text) and max(seen) <= longest and len(seen) > 1


@settings(max_examples=200, deadline=None)
@given(text=ordinary, p=params)
def test_ordinary_text_chunks_as_before(text: str, p: tuple[int, int]) -> None:
    max_tokens, overlap = p
    starts = FAKE.token_starts(text)
    new = chunk_text(text, starts, max_tokens, overlap)
    assert (new.chunks, new.units, new.tokens) == chunking_before.chunk_text(
        text, starts, max_tokens, overlap
    )
    assert chunk_stream(text, FAKE.token_starts, max_tokens, overlap) == new


def _pathological() -> dict[str, str]:
    zalgo_word = "".join(ch + "\u0301\u0316\u0338" * 17 for ch in "hello")
    return {
        "zalgo": " ".join([zalgo_word] * 400),
        "zalgo without spaces": zalgo_word * 400,
        "deep indentation": "".join(" " * 3000 + f"x{i}\n" for i in range(60)),
        "one 200k-letter word": "x" * 200_000,
        "whitespace inside a sentence": "start" + " " * 100_000 + "end.",
        "one unpunctuated line": "word " * 60_000,
        "combining marks only": "a" + "\u0301" * 20_000,
    }


@pytest.mark.parametrize("name", list(_pathological()))
def test_chunks_and_units_are_capped_in_characters(name: str) -> None:
    text = _pathological()[name]
    starts = FAKE.token_starts(text)
    out = chunk_stream(text, FAKE.token_starts, 200, 1)
    check_invariants(text, starts, 200, 1, out)
    assert max(e - s for s, e in out.chunks + out.units) <= MAX_CHUNK_CHARS
    assert out == chunk_text(text, starts, 200, 1)


def test_old_chunker_made_huge_chunks() -> None:
    """What the cap fixes: one 200,000-character chunk from a single long token."""
    text = "x" * 200_000
    chunks, _, _ = chunking_before.chunk_text(text, FAKE.token_starts(text), 200, 1)
    assert max(e - s for s, e in chunks) == 200_000
    assert max(e - s for s, e in chunk_text(text, FAKE.token_starts(text), 200, 1).chunks) <= MAX_CHUNK_CHARS


def test_char_cut_prefers_word_starts_then_keeps_marks_together() -> None:
    text = "aaaa bbbb cccc dddd"
    # no tokens given: cut at the last word start in the second half
    assert chunking._char_cut(text, np.array([], np.int64), 0, 12) == 10
    zalgo = "e" + "\u0301" * 9 + "f" + "\u0301" * 9
    assert chunking._char_cut(zalgo, np.array([], np.int64), 0, 15) == 10  # before "f", its marks follow


_PROBE = """
import json, sys
from pathlib import Path
from qa import chunking
from qa.embedding import get_embedder

def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

emb = get_embedder()
emb.token_starts("warm up")  # loads the tokenizer (and the model it comes from)
text = "a " * (4 * 2**20)  # 8 MiB: 4 M tokens
base = hwm()
out = chunking.chunk_stream(text, emb.token_starts, 200, 1)
print(json.dumps({"base": base, "peak": hwm(), "chunks": len(out.chunks)}))
"""


@pytest.mark.model
def test_real_tokenizer_streams_in_bounded_memory() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["chunks"] >= 4 * 2**20 // 200
    grew = probe["peak"] - probe["base"]
    assert grew < 400, f"chunking 8 MiB raised the peak RSS by {grew:.0f} MiB"


@pytest.mark.parametrize("sizes", [[3, 1, 2], [], [0, 2]])
def test_unit_vectors_are_written_without_stacking(tmp_path: Path, sizes: list[int]) -> None:
    """store writes the per-chunk unit vectors one after the other: the same bytes as
    ``np.save`` of the stacked float16 matrix, which a large file never has to hold."""
    from qa.store import _save_stacked

    rng = np.random.default_rng(0)
    parts = [rng.normal(size=(n, 8)).astype(np.float32 if i % 2 else np.float16) for i, n in enumerate(sizes)]
    folder = tmp_path
    _save_stacked(folder / "parts.npy", parts, np.dtype(np.float16), 8)
    stacked = np.vstack(parts).astype(np.float16) if parts else np.zeros((0, 8), np.float16)
    np.save(folder / "whole.npy", stacked, allow_pickle=False)
    assert (folder / "parts.npy").read_bytes() == (folder / "whole.npy").read_bytes()


def test_quotes_of_pathological_documents_are_capped(tmp_path: Path) -> None:
    import qa

    corpus = tmp_path / "c"
    corpus.mkdir()
    for i, text in enumerate(_pathological().values()):
        (corpus / f"doc{i}.txt").write_text(text + "\nThe heron waits in the reeds.\n")
    settings = qa.Settings(corpus=corpus, index=tmp_path / "i", min_score=0.3)
    report = qa.build_index(settings=settings, embedder=FAKE)
    assert not report.failed, report.summary()
    index = qa.Index.load(settings.index, settings, embedder=FAKE)
    gen = index.generation
    lengths = [int(e - s) for _, s, e in gen.chunks]
    assert max(lengths) <= MAX_CHUNK_CHARS
    texts = {info.id: gen.document(info.row).text for info in gen.documents}
    for question in ("heron reeds", "xxxxxxxx", "word word", "start end"):
        for q in index.ask(question, k=10).quotes:
            assert len(q.text) <= MAX_CHUNK_CHARS and texts[q.doc][q.start : q.end] == q.text
