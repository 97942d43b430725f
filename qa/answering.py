"""Answering: turn retrieved chunks into verbatim quotes with the answering sentence highlighted.

The first ``depth`` fused hits are re-scored by their sentence units (vectors pooled at
build time): ``sentence = cosine + 0.45 * overlap + 0.4 * bigrams`` where ``overlap`` is the
IDF-weighted share of the question's BM25 terms in the unit and ``bigrams`` the share of its
term bigrams; ``quote = best sentence + 0.5 * overlap of the whole chunk + 0.5 * chunk cosine``.
Example: sentence cosine 0.62, overlap 0.75, one of two bigrams, chunk overlap 0.9, chunk cosine
0.5: 0.62 + 0.3375 + 0.2 + 0.45 + 0.25 = 1.86.
A document's title (its first line, when it reads as a heading: ``chunking.is_heading``) counts
as a sentence of every chunk of that document, so a question that matches the title quotes the
chunk with the best evidence, not merely the title's chunk.
Quotes never overlap: a chunk sharing text with a better quote of the same document is
skipped (chunks overlap by a sentence), so the k quotes are k different passages.
The highlight is the unit with the best ``cosine + 0.6 * overlap``, where titles and headings
must win by 0.2 (they label an answer, they rarely state it); the top quote's highlight
is the answer. When the highlighted sentence's cosine is under ``min_score``
the answer says the documents do not contain one, and the quotes are returned as "nearest
passages" (``found=False``). Weights and threshold: docs/tuning.md.

Quotes are verbatim by construction (slices of the stored document text) and checked.
Non-goals: generating text; every word shown comes from a document.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qa.chunking import is_heading
from qa.errors import IndexCorruptError
from qa.retrieval import Hit, tokenize
from qa.store import Generation


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


class IdfTable(dict[str, float]):
    """Term -> BM25 inverse document frequency; ``top`` (the largest) weighs unseen terms."""

    top: float = 1.0


def idf_weights(gen: Generation) -> IdfTable:
    """BM25 inverse document frequency of every indexed term (cached on the generation)."""
    cached = getattr(gen, "_idf", None)
    if cached is None:
        n = max(len(gen.chunks), 1)
        df = np.diff(np.asarray(gen.bm25.scores["indptr"]))
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        cached = IdfTable((t, float(idf[i])) for t, i in gen.bm25.vocab_dict.items() if i < len(idf))
        cached.top = max(cached.values(), default=1.0)
        gen._idf = cached  # type: ignore[attr-defined]
    return cached


def weighted_overlap(
    query_terms: Sequence[str], sentence_terms: Sequence[str], idf: dict[str, float]
) -> float:
    """IDF-weighted share of the question's terms found in a sentence (0..1).

    Example: question terms {openai: 2.0, partner: 1.0, hardwar: 1.0}; a sentence with
    "openai" and "hardware" scores (2.0 + 1.0) / 4.0 = 0.75. Unknown terms weigh the most.
    """
    terms = set(query_terms)
    if not terms:
        return 0.0
    top = idf.top if isinstance(idf, IdfTable) else max(idf.values(), default=1.0)
    weights = {t: idf.get(t, top) for t in terms}
    present = terms.intersection(sentence_terms)
    return sum(weights[t] for t in present) / (sum(weights.values()) or 1.0)


@dataclass(frozen=True)
class Scoring:
    """Weights of the answer stage, chosen jointly on SQuAD articles 1-12 and SciFact train
    queries, confirmed on SQuAD 13-24 and SciFact test (docs/tuning.md): fused retrieval
    picks the ``depth`` candidates; the order comes from their sentences and the chunk."""

    lexical_weight: float = 0.45  # IDF-weighted question-term overlap of a sentence
    bigram_weight: float = 0.4  # share of the question's term bigrams found in a sentence
    chunk_weight: float = 0.5  # IDF-weighted question-term overlap of the whole chunk
    dense_weight: float = 0.5  # cosine of the whole chunk
    highlight_lexical_weight: float = 0.6  # term overlap weight when picking the highlight
    heading_margin: float = 0.2  # a title/heading must beat the best sentence by this to be the highlight
    depth: int = 40  # fused hits re-scored
    min_score: float = 0.45  # highlighted sentence's cosine below this: "not found"


def _bigrams(terms: Sequence[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(terms))


def _rescore(
    q_terms: list[str],
    gen: Generation,
    hits: Sequence[Hit],
    query_vec: np.ndarray,
    idf: dict[str, float],
    scoring: Scoring,
) -> list[tuple[float, float, tuple[int, int]]]:
    """Per hit: (quote score, cosine of the highlighted sentence, highlight span) of its chunk.

    The sentences of all hits are tokenized in one call (one call per chunk was most of the
    answer stage's time)."""
    units = [gen.units_in(hit.row) for hit in hits]
    docs = [int(gen.chunks[hit.row][0]) for hit in hits]
    texts: list[str] = []
    headings: list[bool] = []
    for hit, doc, (spans, _) in zip(hits, docs, units, strict=True):
        if not len(spans):  # cannot happen in a sound index: every chunk has units
            raise IndexCorruptError(f"{gen.dir}: chunk {hit.row} has no sentence units")
        text = gen.text(doc)
        texts.extend(text[a:b] for a, b in spans.tolist())
        headings.extend(is_heading(text, a, b) for a, b in spans.tolist())
    titles: dict[int, tuple[int, int, np.ndarray]] = {}
    for doc in dict.fromkeys(docs):
        title = document_title(gen, doc)
        if title is not None:
            titles[doc] = title
    all_terms = tokenize(texts + [gen.text(d)[a:b] for d, (a, b, _) in titles.items()])
    q_bigrams = _bigrams(q_terms)

    def sentence_scores(cos: np.ndarray, terms: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        overlap = np.array([weighted_overlap(q_terms, t, idf) for t in terms])
        bigram = np.array([len(q_bigrams & _bigrams(t)) / max(1, len(q_bigrams)) for t in terms])
        return cos + scoring.lexical_weight * overlap + scoring.bigram_weight * bigram, overlap

    title_cos = np.array([float(v.astype(np.float32) @ query_vec.reshape(-1)) for _, _, v in titles.values()])
    title_score = dict(
        zip(titles, sentence_scores(title_cos, all_terms[len(texts) :])[0].tolist(), strict=True)
    )
    out = []
    start = 0
    for hit, doc, (spans, vecs) in zip(hits, docs, units, strict=True):
        terms = all_terms[start : start + len(spans)]
        heading = np.array(headings[start : start + len(spans)])
        start += len(spans)
        cos = vecs.astype(np.float32) @ query_vec.reshape(-1)
        sentence, overlap = sentence_scores(cos, terms)
        whole = weighted_overlap(q_terms, [w for t in terms for w in t], idf)
        # A heading is the answer only when it beats every sentence of the chunk by the margin.
        pickable = cos + scoring.highlight_lexical_weight * overlap - scoring.heading_margin * heading
        pick = int(np.argmax(pickable))
        span = (int(spans[pick][0]), int(spans[pick][1]))
        # The document's title counts as a sentence of each of its chunks (the first chunk
        # has it anyway): the chunk that best matches after the title is the one quoted.
        best = max(sentence.max(), title_score.get(doc, -np.inf))
        score = best + scoring.chunk_weight * whole + scoring.dense_weight * hit.dense
        out.append((float(score), float(cos[pick]), span))
    return out


def first_chunks(gen: Generation) -> np.ndarray:
    """Row of each document's first chunk (-1 for a document without chunks); cached."""
    cached = getattr(gen, "_first_chunks", None)
    if cached is None:
        cached = np.full(len(gen.documents), -1, dtype=np.int64)
        docs = gen.chunks[:, 0] if len(gen.chunks) else np.zeros(0, np.int64)
        order = np.lexsort((gen.chunks[:, 1], docs)) if len(docs) else np.zeros(0, np.int64)
        uniq, first = np.unique(docs[order], return_index=True)
        cached[uniq.astype(np.int64)] = order[first]
        gen._first_chunks = cached  # type: ignore[attr-defined]
    return cached


def document_title(gen: Generation, doc: int) -> tuple[int, int, np.ndarray] | None:
    """The document's title, (start, end, pooled vector), when its first unit is a heading."""
    row = int(first_chunks(gen)[doc])
    if row < 0:
        return None
    spans, vecs = gen.units_in(row)
    if not len(spans):
        return None
    a, b = int(spans[0][0]), int(spans[0][1])  # the document's first unit
    return (a, b, vecs[0]) if is_heading(gen.text(doc), a, b) else None


def answer(
    question: str, gen: Generation, hits: Sequence[Hit], query_vec: np.ndarray, top_k: int, scoring: Scoring
) -> Answer:
    """Build the Answer from fused hits (best first): re-score the first ``scoring.depth`` hits
    by their sentences, keep ``top_k``."""
    chosen = list(hits[: max(top_k, scoring.depth)])
    if not chosen:
        msg = "The documents do not contain an answer" + (
            " (the index is empty)." if len(gen.chunks) == 0 else "."
        )
        return Answer(question, False, "", (), gen.name, msg)
    q_terms = tokenize([question])[0]
    idf = idf_weights(gen)
    rescored = _rescore(q_terms, gen, chosen, query_vec, idf, scoring)
    scored = [(*r, hit.row) for r, hit in zip(rescored, chosen, strict=True)]
    scored.sort(key=lambda t: -t[0])
    quotes: list[Quote] = []
    shown: list[tuple[int, int, int]] = []  # (document, start, end) of the quotes kept
    for final, _, span, row in scored:
        if len(quotes) == top_k:
            break
        doc_row, start, end = (int(x) for x in gen.chunks[row])
        if any(d == doc_row and a < end and start < b for d, a, b in shown):
            continue  # overlaps a better quote (chunks share a sentence): never repeat text
        shown.append((doc_row, start, end))
        doc = gen.document(doc_row)
        text = doc.text[start:end]
        if not (0 <= start < end <= len(doc.text) and start <= span[0] < span[1] <= end):
            raise IndexCorruptError(f"{gen.dir}: chunk {row} offsets do not fit its document")
        quotes.append(
            Quote(doc.id, doc.location_at(start), start, end, text, final, span, doc.location_at(span[0]))
        )
    best_cos = scored[0][1]
    if best_cos >= scoring.min_score:
        return Answer(question, True, quotes[0].highlight_text, tuple(quotes), gen.name)
    return Answer(
        question,
        False,
        "",
        tuple(quotes),
        gen.name,
        "The documents do not seem to contain an answer; these are the nearest passages.",
    )
