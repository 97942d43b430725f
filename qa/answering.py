"""Answering: turn retrieved chunks into verbatim quotes with the answering sentence highlighted.

Each candidate chunk's sentence units are scored against the question:
``score = cosine(question, sentence) + LEXICAL_WEIGHT * overlap`` where ``overlap`` is the
share of the question's BM25 terms found in the sentence. A quote's score is its best
sentence's; quotes are ordered by it. When the best sentence's cosine is under
``min_score`` the answer says the documents do not contain one and the quotes are
returned as "nearest passages" (``found=False``). Weights and threshold: docs/tuning.md.

Quotes are verbatim by construction (slices of the stored document text) and checked.
Non-goals: generating text; every word shown comes from a document.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qa.embedding import Embedder
from qa.errors import IndexCorruptError
from qa.retrieval import Hit, tokenize
from qa.store import Generation

LEXICAL_WEIGHT = 0.3


@dataclass(frozen=True)
class Quote:
    """A verbatim passage: ``text == document.text[start:end]``; ``highlight`` is the
    answering sentence's [start, end) in document offsets, inside [start, end)."""

    doc: str
    location: str
    start: int
    end: int
    text: str
    score: float
    highlight: tuple[int, int]
    highlight_location: str = ""

    @property
    def highlight_text(self) -> str:
        a, b = self.highlight
        return self.text[a - self.start : b - self.start]


@dataclass(frozen=True)
class Answer:
    """The result of a question: ``found`` says whether the documents answer it; ``answer``
    is the answering sentence (empty when not found); ``quotes`` are best first (the
    nearest passages when not found)."""

    question: str
    found: bool
    answer: str
    quotes: tuple[Quote, ...]
    generation: str = ""
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``qa ask --json``."""
        return {
            "question": self.question,
            "found": self.found,
            "answer": self.answer,
            "message": self.message,
            "generation": self.generation,
            "quotes": [
                {
                    "doc": q.doc,
                    "location": q.location,
                    "start": q.start,
                    "end": q.end,
                    "text": q.text,
                    "score": round(q.score, 4),
                    "highlight": list(q.highlight),
                }
                for q in self.quotes
            ],
        }


class SentenceCache:
    """LRU of sentence vectors keyed by (generation, doc row, start, end)."""

    def __init__(self, size: int = 20000) -> None:
        self._data: OrderedDict[tuple[str, int, int, int], np.ndarray] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def vectors(self, gen: Generation, embedder: Embedder, units: np.ndarray) -> np.ndarray:
        keys = [(gen.name, int(d), int(s), int(e)) for d, s, e in units]
        with self._lock:
            found = {k: self._data[k] for k in keys if k in self._data}
            for k in found:
                self._data.move_to_end(k)
        todo = [k for k in dict.fromkeys(keys) if k not in found]
        if todo:
            texts = [gen.text(d)[s:e] for _, d, s, e in todo]
            new = embedder.encode(texts)
            with self._lock:
                for k, v in zip(todo, new, strict=True):
                    self._data[k] = found[k] = v
                while len(self._data) > self._size:
                    self._data.popitem(last=False)
        return np.vstack([found[k] for k in keys]) if keys else np.zeros((0, 1), np.float32)


def _overlap(query_terms: set[str], sentence_terms: Sequence[str]) -> float:
    if not query_terms:
        return 0.0
    return len(query_terms.intersection(sentence_terms)) / len(query_terms)


def answer(
    question: str,
    gen: Generation,
    hits: Sequence[Hit],
    query_vec: np.ndarray,
    embedder: Embedder,
    cache: SentenceCache,
    top_k: int,
    min_score: float,
) -> Answer:
    """Build the Answer from fused hits (best first)."""
    chosen = list(hits[:top_k])
    if not chosen:
        return Answer(
            question,
            False,
            "",
            (),
            gen.name,
            "The documents do not contain an answer (the index is empty)."
            if len(gen.chunks) == 0
            else "The documents do not contain an answer.",
        )
    unit_lists = [gen.units_in(h.row) for h in chosen]
    all_units = np.vstack(unit_lists) if any(len(u) for u in unit_lists) else np.zeros((0, 3), np.int64)
    vecs = cache.vectors(gen, embedder, all_units)
    cosines = vecs @ query_vec.reshape(-1) if len(all_units) else np.zeros(0)
    texts = [gen.text(int(d))[int(s) : int(e)] for d, s, e in all_units]
    q_terms = set(tokenize([question])[0])
    s_terms = tokenize(texts) if texts else []
    combined = [
        float(c) + LEXICAL_WEIGHT * _overlap(q_terms, t)
        for c, t in zip(cosines.tolist(), s_terms, strict=True)
    ]
    quotes: list[tuple[float, float, Quote]] = []
    offset = 0
    for hit, units in zip(chosen, unit_lists, strict=True):
        doc_row, start, end = (int(x) for x in gen.chunks[hit.row])
        doc = gen.document(doc_row)
        text = doc.text[start:end]
        if len(units):
            local = combined[offset : offset + len(units)]
            best = int(np.argmax(local))
            hl = (int(units[best][1]), int(units[best][2]))
            score, cos = local[best], float(cosines[offset + best])
        else:  # a chunk without units cannot happen in a sound index; highlight it whole
            hl, score, cos = (start, end), hit.score, hit.dense
        offset += len(units)
        if doc.text[start:end] != text or not (start <= hl[0] < hl[1] <= end):
            raise IndexCorruptError(f"{gen.dir}: chunk {hit.row} offsets do not match its document")
        quotes.append(
            (
                score,
                cos,
                Quote(doc.id, doc.location_at(start), start, end, text, score, hl, doc.location_at(hl[0])),
            )
        )
    quotes.sort(key=lambda t: -t[0])
    best_cos = quotes[0][1]
    found = best_cos >= min_score
    ordered = tuple(q for _, _, q in quotes)
    if found:
        return Answer(question, True, ordered[0].highlight_text, ordered, gen.name)
    return Answer(
        question,
        False,
        "",
        ordered,
        gen.name,
        "The documents do not seem to contain an answer; these are the nearest passages.",
    )
