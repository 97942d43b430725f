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

from qa import phrases, verification, windows
from qa.chunking import is_heading, key_value, table_cell, table_header
from qa.errors import IndexCorruptError
from qa.retrieval import Hit, tokenize
from qa.store import Generation
from qa.verification import Evidence, Verifier, features


@dataclass(frozen=True)
class Phrase:
    """The words that answer, inside the highlighted answer: ``text == document.text[start:end]``."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Quote:
    """A verbatim passage: ``text == document.text[start:end]``; ``highlight`` is the
    answer's [start, end) in document offsets (one to three whole sentences), inside
    [start, end). ``supports`` says whether the passage backs a found answer (False: one of the
    "more passages", or a nearest passage when nothing was found)."""

    doc: str
    location: str
    start: int
    end: int
    text: str
    score: float
    highlight: tuple[int, int]
    highlight_location: str = ""
    supports: bool = True

    @property
    def highlight_text(self) -> str:
        a, b = self.highlight
        return self.text[a - self.start : b - self.start]


@dataclass(frozen=True)
class Answer:
    """The result of a question: ``found`` says whether the documents answer it; ``answer``
    is the answering sentence(s) (empty when not found); ``phrase`` the words that answer
    inside it, when the question asks for a name, date, number or place; ``confidence`` the
    verifier's probability that the shown answer answers the question; ``quotes`` are best
    first (the nearest passages when not found). ``query`` is the text that was searched
    (it differs from ``question`` when a conversation's history was used)."""

    question: str
    found: bool
    answer: str
    quotes: tuple[Quote, ...]
    generation: str = ""
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    confidence: float = 0.0
    phrase: Phrase | None = None
    query: str = ""
    used_history: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``qa ask --json``."""
        return {
            "question": self.question,
            "found": self.found,
            "confidence": round(self.confidence, 4),
            "answer": self.answer,
            "phrase": (
                None
                if self.phrase is None
                else {"text": self.phrase.text, "start": self.phrase.start, "end": self.phrase.end}
            ),
            "message": self.message,
            "generation": self.generation,
            "query": self.query or self.question,
            "used_history": self.used_history,
            "quotes": [
                {
                    "doc": q.doc,
                    "location": q.location,
                    "start": q.start,
                    "end": q.end,
                    "text": q.text,
                    "score": round(q.score, 4),
                    "highlight": list(q.highlight),
                    "supports": q.supports,
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
    picks the ``depth`` candidates; the order comes from their sentences and the chunk.
    Whether the best answer is *found* is the verifier's decision (``qa.verification``)."""

    lexical_weight: float = 0.45  # IDF-weighted question-term overlap of a sentence
    bigram_weight: float = 0.4  # share of the question's term bigrams found in a sentence
    chunk_weight: float = 0.5  # IDF-weighted question-term overlap of the whole chunk
    dense_weight: float = 0.5  # cosine of the whole chunk
    highlight_lexical_weight: float = 0.6  # term overlap weight when picking the highlight
    heading_margin: float = 0.2  # a title/heading must beat the best sentence by this to be the highlight
    type_weight: float = 0.1  # highlight bonus of a sentence with a phrase of the asked type
    depth: int = 40  # fused hits re-scored
    min_score: float = 0.0  # answer sentence's cosine below this: never "found", whatever the verifier says
    min_confidence: float | None = None  # "found" from this probability on (None: the verifier's threshold)
    support_ratio: float = 0.9  # quotes scoring this share of the best quote or more support a found answer
    window: windows.WindowRules = field(default_factory=windows.WindowRules)

    def threshold(self, verifier: Verifier) -> float:
        return verifier.threshold if self.min_confidence is None else self.min_confidence


_DEFAULT_VERIFIER: list[Verifier] = []


def default_verifier() -> Verifier:
    """The verifier shipped with qa (``qa/models/verifier.json``), read once."""
    if not _DEFAULT_VERIFIER:
        _DEFAULT_VERIFIER.append(verification.load())
    return _DEFAULT_VERIFIER[0]


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
    title_terms = dict(zip(titles, all_terms[len(texts) :], strict=True))
    out = []
    start = 0
    for hit, doc, (spans, vecs) in zip(hits, docs, units, strict=True):
        terms = all_terms[start : start + len(spans)]
        heading = np.array(headings[start : start + len(spans)])
        start += len(spans)
        if doc in titles:
            vecs, terms = _with_subject(
                gen.text(doc),
                spans.tolist(),
                vecs,
                terms,
                titles[doc],
                title_terms[doc],
                query_vec.reshape(-1),
                q_terms,
            )
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


def _with_subject(
    text: str,
    spans: list[list[int]] | list[tuple[int, int]],
    vecs: np.ndarray,
    terms: list[list[str]],
    title: tuple[int, int, np.ndarray],
    title_terms: list[str],
    query: np.ndarray,
    q_terms: list[str],
) -> tuple[np.ndarray, list[list[str]]]:
    """Key/value rows read with their subject, the document's title: "Passengers | 250" in
    "MV Maren Skye: technical sheet" says how many passengers the ship carries, so the row is
    matched with the title's words too, and with the mean of both vectors when that is closer
    to the question ``query`` than the row alone, as a data row is read with its header. Only
    a row that shares a word with the question (``q_terms``) itself is read so: otherwise a
    question naming the subject ("Who is the master of MV Maren Skye?") would find it in
    every row. Other sentences are unchanged."""
    rows = [i for i, (a, b) in enumerate(spans) if (a, b) != title[:2] and key_value(text, a, b) is not None]
    if not rows:
        return vecs, terms
    vecs, terms = vecs.astype(np.float32), list(terms)
    subject = title[2].astype(np.float32)
    asked = set(q_terms)
    for i in rows:
        if asked.isdisjoint(terms[i]):
            continue  # the row's own words say nothing the question asks: no subject lends them
        both = vecs[i] + subject
        both /= np.linalg.norm(both) or 1.0
        # read with or without its subject, whichever fits the question better
        if float(both @ query) > float(vecs[i] @ query):
            vecs[i] = both
        terms[i] = [*terms[i], *title_terms]
    return vecs, terms


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


NOT_FOUND = "The documents do not seem to contain an answer; these are the nearest passages."


@dataclass(frozen=True)
class Window:
    """The answer window of the best passage and what the verifier reads about it."""

    span: tuple[int, int]  # document offsets of the 1-3 answer sentences
    best: tuple[int, int]  # the best sentence inside it
    evidence: Evidence


def _answer_window(
    question: str,
    q_terms: list[str],
    gen: Generation,
    ranked: Sequence[tuple[float, float, tuple[int, int], Hit]],
    query_vec: np.ndarray,
    idf: IdfTable,
    scoring: Scoring,
    fused_rank: int,
) -> Window:
    """Grow the best sentence of the best passage into its answer window (``qa.windows``)."""
    final, _, _, hit = ranked[0]
    units, first, last = windows.neighbourhood(gen, hit.row)
    doc = int(gen.chunks[hit.row][0])
    text = gen.text(doc)
    texts = [text[u.start : u.end] for u in units]
    terms = tokenize(texts)
    vecs = np.vstack([u.vector for u in units]).astype(np.float32)
    title = document_title(gen, doc)
    if title is not None:
        spans = [(u.start, u.end) for u in units]
        title_terms = tokenize([text[title[0] : title[1]]])[0]
        vecs, terms = _with_subject(
            text, spans, vecs, terms, title, title_terms, query_vec.reshape(-1), q_terms
        )
    cosines = vecs @ query_vec.reshape(-1)
    overlap = np.array([weighted_overlap(q_terms, t, idf) for t in terms])
    heading = np.array([is_heading(text, u.start, u.end) for u in units])
    # A sentence holding a phrase of the asked type ("43 metres" for "How tall...?") is
    # preferred a little (docs/tuning.md section 11): the best sentence is picked again here.
    typed = np.array([windows.has_type(text, u, question) for u in units], dtype=float)
    scores = (
        cosines
        + scoring.highlight_lexical_weight * overlap
        - scoring.heading_margin * heading
        + scoring.type_weight * typed
    )
    inside_chunk = [i for i, u in enumerate(units) if u.row == hit.row]
    best = max(inside_chunk, key=lambda i: scores[i])
    weight = {t: idf.get(t, idf.top) for t in set(q_terms)}
    total = sum(weight.values()) or 1.0
    best_terms = set(terms[best])
    missing = [sum(weight[t] for t in set(ts) if t in weight and t not in best_terms) / total for ts in terms]
    lo, hi = windows.choose(text, units, best, scores.tolist(), question, missing, scoring.window)
    q_bigrams = _bigrams(q_terms)
    c_start, c_end = int(gen.chunks[hit.row][1]), int(gen.chunks[hit.row][2])
    # a table's data row is read with its header ("Holloway Blue | 2.5 kg | Back" under
    # "Cheese | Weight | Chamber" answers "In which chamber...?"): the evidence is both
    sentence_terms, sentence_cos = list(terms[best]), float(cosines[best])
    header = table_header(text, units[best].start, units[best].end)
    if header is not None:
        sentence_terms += tokenize([text[header[0] : header[1]]])[0]
        at = next((i for i, u in enumerate(units) if (u.start, u.end) == header), None)
        if at is not None:
            both = vecs[best] + vecs[at]
            sentence_cos = float(both @ query_vec.reshape(-1) / (np.linalg.norm(both) or 1.0))
    inside = [
        i for i in range(len(units)) if (c_start <= units[i].start and units[i].end <= c_end) or lo <= i < hi
    ]
    evidence = Evidence(
        question=question,
        q_terms=q_terms,
        idf=idf,
        top_idf=idf.top,
        sentence=texts[best],
        window=text[units[lo].start : units[hi - 1].end],
        passage=text[min(c_start, units[lo].start) : max(c_end, units[hi - 1].end)],
        sentence_terms=frozenset(sentence_terms),
        window_terms=frozenset(t for i in range(lo, hi) for t in terms[i]),
        passage_terms=frozenset(t for i in inside for t in terms[i]),
        sentence_cos=sentence_cos,
        passage_cos=float(hit.dense),
        score=final,
        next_score=ranked[1][0] if len(ranked) > 1 else 0.0,
        sentence_overlap=weighted_overlap(q_terms, sentence_terms, idf) if header else float(overlap[best]),
        sentence_bigram=len(q_bigrams & _bigrams(terms[best])) / max(1, len(q_bigrams)),
        dense_rank=hit.dense_rank,
        bm25_rank=hit.bm25_rank,
        fused_rank=fused_rank,
        heading=bool(heading[best]),
    )
    del first, last  # the window may reach into the neighbouring chunks
    # the phrase is looked for first in the sentence that states the answer, not in a heading above it
    focus = best + 1 if heading[best] and best + 1 < hi else best
    return Window((units[lo].start, units[hi - 1].end), (units[focus].start, units[focus].end), evidence)


def analyse(
    question: str,
    gen: Generation,
    chosen: Sequence[Hit],
    query_vec: np.ndarray,
    scoring: Scoring,
    query: str | None = None,
) -> tuple[list[tuple[float, float, tuple[int, int], Hit]], Window]:
    """Rank the re-scored hits and build the best passage's answer window and evidence.

    ``query`` is the text searched (``question`` plus a conversation's topic); its terms score
    the passages, while the question as asked decides what kind of answer is wanted.
    ``answer`` uses it; ``benchmarks/train_verifier.py`` calls it to collect the verifier's
    training data through the very same code.
    """
    q_terms = tokenize([query or question])[0]
    idf = idf_weights(gen)
    rescored = _rescore(q_terms, gen, chosen, query_vec, idf, scoring)
    ranked = sorted(
        ((r[0], r[1], r[2], hit) for r, hit in zip(rescored, chosen, strict=True)),
        key=lambda t: -t[0],
    )
    fused_rank = next(i for i, h in enumerate(chosen) if h is ranked[0][3])
    # the margin feature compares with the runner-up passage, not the best one's overlapping twin
    window = _answer_window(
        question, q_terms, gen, _distinct(gen, ranked), query_vec, idf, scoring, fused_rank
    )
    return ranked, window


def answer(
    question: str,
    gen: Generation,
    hits: Sequence[Hit],
    query_vec: np.ndarray,
    top_k: int,
    scoring: Scoring,
    verifier: Verifier | None = None,
    query: str | None = None,
) -> Answer:
    """Build the Answer from fused hits (best first); ``query`` as in ``analyse``.

    Re-scores the first ``scoring.depth`` hits by their sentences; grows the best sentence of
    the best passage into its answer window; asks ``verifier`` (default: the shipped one) how
    likely that window answers the question; marks the answer phrase; keeps ``top_k``
    non-overlapping quotes, those scoring at least ``scoring.support_ratio`` of the best one
    marked as supporting a found answer.
    """
    chosen = list(hits[: max(top_k, scoring.depth)])
    if not chosen:
        msg = "The documents do not contain an answer" + (
            " (the index is empty)." if len(gen.chunks) == 0 else "."
        )
        return Answer(question, False, "", (), gen.name, msg)
    verifier = verifier or default_verifier()
    ranked, window = analyse(question, gen, chosen, query_vec, scoring, query)
    evidence = window.evidence
    confidence = verifier.probability(features(evidence))
    found = confidence >= scoring.threshold(verifier) and evidence.sentence_cos >= scoring.min_score
    top_score = ranked[0][0]
    quotes: list[Quote] = []
    shown: list[tuple[int, int, int]] = []  # (document, start, end) of the quotes kept
    for final, _, span, hit in ranked:
        if len(quotes) == top_k:
            break
        doc_row, start, end = (int(x) for x in gen.chunks[hit.row])
        if not quotes:  # the best passage, widened so that its whole answer window is inside
            span = window.span
            start, end = min(start, span[0]), max(end, span[1])
        if any(d == doc_row and a < end and start < b for d, a, b in shown):
            continue  # overlaps a better quote (chunks share a sentence): never repeat text
        shown.append((doc_row, start, end))
        doc = gen.document(doc_row)
        if not (0 <= start < end <= len(doc.text) and start <= span[0] < span[1] <= end):
            raise IndexCorruptError(f"{gen.dir}: chunk {hit.row} offsets do not fit its document")
        where = doc.location_at(span[0])
        supports = found and final >= scoring.support_ratio * top_score
        quotes.append(Quote(doc.id, where, start, end, doc.text[start:end], final, span, where, supports))
    if not found:
        return Answer(question, False, "", tuple(quotes), gen.name, NOT_FOUND, confidence=confidence)
    top = quotes[0]
    text = gen.text(int(gen.chunks[ranked[0][3].row][0]))
    # words of the question and of the topic searched with it are not the answer ("Foxconn")
    focus = window.best
    header = table_header(text, *focus)
    pair = key_value(text, *focus)
    if pair is not None:  # "Crew | 8": the value is what the row says
        focus = pair[1]
    elif header is not None:  # a table row: the cell of the column the question names
        focus = table_cell(text, header, focus, _terms(question), _terms) or focus
    picked = phrases.pick(text, window.span, focus, phrases.answer_type(question), query or question)
    if picked is not None:
        phrase: Phrase | None = Phrase(text[picked.start : picked.end], picked.start, picked.end)
    elif pair is not None:  # no phrase of the asked type: the whole value ("Aldhaven Shipyard, Dunmarren")
        phrase = Phrase(text[pair[1][0] : pair[1][1]], *pair[1])
    else:
        phrase = None
    return Answer(
        question, True, top.highlight_text, tuple(quotes), gen.name, confidence=confidence, phrase=phrase
    )


def _terms(text: str) -> set[str]:
    return set(tokenize([text])[0])


def _distinct(
    gen: Generation, ranked: Sequence[tuple[float, float, tuple[int, int], Hit]]
) -> list[tuple[float, float, tuple[int, int], Hit]]:
    """``ranked`` without the passages that overlap the first one (its neighbours share a
    sentence with it), so that ``[1]`` is the runner-up passage."""
    doc, start, end = (int(x) for x in gen.chunks[ranked[0][3].row])
    rest = [
        r
        for r in ranked[1:]
        if not (
            int(gen.chunks[r[3].row][0]) == doc
            and int(gen.chunks[r[3].row][1]) < end
            and start < int(gen.chunks[r[3].row][2])
        )
    ]
    return [ranked[0], *rest]
