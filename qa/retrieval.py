"""Retrieval: dense (``qa.vectors``: exact, IVF or IVF-PQ) and lexical (BM25) search over
chunks, fused into one ranking.

Fusion is weighted reciprocal-rank fusion: a chunk at rank r_d in the dense list and r_b in
the BM25 list scores ``w / (k + r_d) + (1 - w) / (k + r_b)``. Ranks, not raw scores, because
cosine and BM25 live on unrelated scales. ``w`` and ``k`` were chosen on SQuAD and SciFact
(docs/tuning.md has the numbers).

Non-goals: query expansion, learned sparse retrieval.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qa.store import Generation

_local = threading.local()


def _stemmer() -> Any:
    # PyStemmer objects are not thread-safe: one per thread.
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        import Stemmer

        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def stem(word: str) -> str:
    """The Snowball stem of one lower-cased word, as BM25 terms are stemmed."""
    return str(_stemmer().stemWord(word.lower()))


_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # bm25s's (and scikit-learn's) token pattern
_STEMS: dict[str, str] = {}  # word -> Snowball stem, shared by all threads (dict ops are atomic)
_MAX_STEMS = 500_000  # bound the cache: cleared past this many words


@functools.lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """BM25 tokens: lower-cased words of 2+ characters, English stopwords out, Snowball-stemmed.

    The same tokens as ``bm25s.tokenize(texts, stopwords="en", stemmer=...)`` (tested), without
    its per-call overhead: stems are cached by word, so the answer stage, which tokenizes
    the 40 re-scored chunks of every question, pays for each word once.
    """
    stop = _stopwords()
    words = [[w for w in _TOKEN.findall(text.lower()) if w not in stop] for text in texts]
    stems = _STEMS
    new = list({w for ws in words for w in ws if w not in stems})
    if new:
        if len(stems) > _MAX_STEMS:
            stems.clear()
        stems.update(zip(new, _stemmer().stemWords(new), strict=True))
    return [[stems.get(w) or _stemmer().stemWord(w) for w in ws] for ws in words]


BM25_PARAMS = {"k1": 1.2, "b": 0.75, "method": "lucene"}


def build_bm25(texts: Sequence[str]) -> Any:
    """A bm25s index over ``texts`` (row i = chunk i)."""
    import bm25s

    bm25 = bm25s.BM25(**BM25_PARAMS)
    tokens = tokenize(texts)
    if not any(tokens):  # bm25s needs a vocabulary; a placeholder term matches no query
        tokens = [["\x00"]] * max(1, len(texts))
    bm25.index(tokens, show_progress=False)
    return bm25


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk: its row, fused score, and each retriever's score and rank (0 = absent)."""

    row: int
    score: float
    dense: float
    bm25: float
    dense_rank: int
    bm25_rank: int


def dense_search(gen: Generation, query_vec: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` chunk rows by cosine, and their cosines (fewer when the index has fewer)."""
    return gen.dense.search(query_vec, n)


def bm25_scores(gen: Generation, query_tokens: list[str]) -> np.ndarray:
    """BM25 score of every chunk for the query (zeros when no query term is in the vocabulary)."""
    n = len(gen.chunks)
    ids = gen.bm25.get_tokens_ids(query_tokens) if n else []
    if not ids:
        return np.zeros(n, dtype=np.float32)
    return np.asarray(gen.bm25.get_scores_from_ids(ids), dtype=np.float32)


def top_rows(scores: np.ndarray, n: int) -> np.ndarray:
    """Rows of the ``n`` highest positive scores, best first (ties by row)."""
    positive = np.flatnonzero(scores > 0)
    if n <= 0:
        return positive[:0]
    if len(positive) > n:  # only the rows at or above the n-th best score need sorting
        values = scores[positive]
        nth = np.partition(values, len(values) - n)[len(values) - n]
        positive = positive[values >= nth]
    return positive[np.argsort(-scores[positive], kind="stable")[:n]]


def search(
    gen: Generation,
    query_vec: np.ndarray,
    query_tokens: list[str],
    candidates: int,
    dense_weight: float,
    rrf_k: int,
) -> list[Hit]:
    """Fused ranking of up to ``2 * candidates`` chunks, best first."""
    d_rows, d_scores = dense_search(gen, query_vec, candidates)
    lexical = bm25_scores(gen, query_tokens)
    top = top_rows(lexical, candidates)
    fused: dict[int, list[float]] = {}
    for rank, (row, s) in enumerate(zip(d_rows.tolist(), d_scores.tolist(), strict=True), start=1):
        fused[row] = [dense_weight / (rrf_k + rank), s, float(lexical[row]), rank, 0]
    for rank, row in enumerate(top.tolist(), start=1):
        entry = fused.setdefault(row, [0.0, float("nan"), 0.0, 0, 0])
        entry[0] += (1.0 - dense_weight) / (rrf_k + rank)
        entry[2] = float(lexical[row])
        entry[4] = rank
    missing = [row for row, e in fused.items() if e[3] == 0]
    if missing:  # cosine of BM25-only hits (from vectors.npy), for the answer threshold and display
        cosines = gen.dense.cosines(np.asarray(missing, np.int64), query_vec)
        for row, cos in zip(missing, cosines.tolist(), strict=True):
            fused[row][1] = float(cos)
    hits = [Hit(row, e[0], float(e[1]), e[2], int(e[3]), int(e[4])) for row, e in fused.items()]
    hits.sort(key=lambda h: (-h.score, h.row))
    return hits
