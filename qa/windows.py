"""Answer windows: the smallest run of whole sentences (one to three) that answers.

The answer stage picks the best sentence of the best passage. This module decides whether a
neighbouring sentence belongs to the answer too, across chunk boundaries (the neighbour's
vector comes from its own chunk), with four rules:

1. **announces**: the sentence ends with ":" or promises what follows ("several categories of
   devices.", "the following", "as follows"), so the next sentence is the content. Example:
   "The collaboration is expected to produce several categories of devices." + "These include
   data center racks, ..." is the answer to "What kinds of devices will it produce?". The
   same when the sentence after the best one points back to it and announces ("The facilities
   block was rebuilt in 2022." + "It has the following:" + the items).
2. **label**: the sentence is a heading ("### How far can the unit be?") or a short line
   without closing punctuation (a table cell, a "Fuel reserve" label) and the next line holds
   its content or value. A table's data row ("Check-out | by 11 am") is a whole record: it is
   no label, and it is shown under its table's header when the header is the line above it
   ("Cheese | Weight | Chamber" over "Holloway Blue | 2.5 kg | Back").
3. **type**: the question asks for a date, number or name, the window has none of that type
   and the sentence just before or after it does, scoring within ``type_margin`` of the best
   sentence (of the sentences under it when the best is a heading, which scores high by
   repeating the question). A measure ("How far...?") takes a quantity with its unit, not a
   bare "two". Example: "How tall is the lighthouse?" -> "It was built in 1874." + "It stands
   43 metres tall."
4. **missing terms**: a neighbour scores within ``term_margin`` and holds question terms the
   sentence lacks, worth at least ``term_share`` of the question's IDF weight (a pronoun
   sentence whose subject is named in the sentence before).
5. **anchor**: a name, date or number of the question is nowhere in the window and stands in
   the sentence just before or after it. Example: "Which council gave the observatory a grant
   in 2023?" -> "Total income for 2023 was £418,300." + "The largest single source of income
   was a grant of £180,000 from Kilverne County Council."

Each rule adds one sentence; the window never exceeds ``max_sentences``. Margins were chosen
on SQuAD articles (docs/tuning.md section 11).

Non-goals: reordering sentences, windows across documents.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qa import phrases
from qa.chunking import MAX_CHUNK_CHARS, is_data_row, is_heading, is_label, is_list_item, table_header
from qa.store import Generation


@dataclass(frozen=True)
class Unit:
    """A sentence unit of a document: [start, end) offsets and its vector (from chunk ``row``)."""

    start: int
    end: int
    vector: np.ndarray
    row: int


def neighbourhood(gen: Generation, row: int, radius: int = 1) -> tuple[list[Unit], int, int]:
    """The sentence units of chunk ``row`` and of up to ``radius`` chunks on each side in the
    same document, sorted, without duplicates (chunks overlap by a sentence; the unit of
    ``row`` itself is kept). Returns (units, first, last): ``units[first:last]`` are the
    units of ``row``."""
    doc = int(gen.chunks[row][0])
    found: dict[tuple[int, int], Unit] = {}
    for r in range(row - radius, row + radius + 1):
        if r < 0 or r >= len(gen.chunks) or int(gen.chunks[r][0]) != doc:
            continue
        spans, vecs = gen.units_in(r)
        for (a, b), v in zip(spans.tolist(), vecs, strict=True):
            if (a, b) not in found or r == row:
                found[(a, b)] = Unit(a, b, v, r)
    units = sorted(found.values(), key=lambda u: u.start)
    inside = [i for i, u in enumerate(units) if u.row == row]
    return units, inside[0], inside[-1] + 1


@dataclass(frozen=True)
class WindowRules:
    """Margins of the neighbour rules (scores are the highlight scores of the answer stage)."""

    max_sentences: int = 3
    max_chars: int = MAX_CHUNK_CHARS  # an answer is never longer than a chunk may be
    type_margin: float = 0.35
    term_margin: float = 0.25
    term_share: float = 0.2


_ANNOUNCE = re.compile(
    r"(?::\s*$|\b(?:the following|as follows|below|following (?:\w+ ){0,2}(?:are|were|is|was|include[sd]?))\b"
    r"|\b(?:several|various|a number of|a range of|a variety of|many|multiple|numerous|two|three|four|five|"
    r"six|seven|eight|nine|ten|\d+)\s+(?:[\w-]+\s+){0,3}[\w-]+s\b[^.!?]*[.!?]?\s*$)",
    re.I,
)
_POINTS_BACK = re.compile(r"\s*(?:it|its|they|their|these|this|those|he|his|she|her)\b", re.I)
_CONTINUES = re.compile(
    r"^\s*(?:these|they|those|this|such|it|its|their|the following|examples|among them|"
    r"[-*\u2022]|\d{1,2}[.)])",
    re.I,
)


def announces(sentence: str, following: str) -> bool:
    """Whether ``sentence`` promises what ``following`` delivers ("...several categories of
    devices." + "These include ...", or a line ending with a colon)."""
    if sentence.rstrip().endswith(":"):
        return True
    return _ANNOUNCE.search(sentence) is not None and _CONTINUES.match(following) is not None


def _has_type(text: str, unit: Unit, wanted: str, question_words: set[str], measure: bool) -> bool:
    return any(
        phrases.fits(text, c, wanted, question_words, measure)
        for c in phrases.candidates(text, unit.start, unit.end)
    )


def has_type(text: str, unit: Unit, question: str) -> bool:
    """Whether ``unit`` holds a phrase of the type ``question`` asks for, other than the
    question's own words (False for why/how questions)."""
    wanted = phrases.answer_type(question)
    return wanted != phrases.OTHER and _has_type(
        text, unit, wanted, phrases.words_of(question), phrases.measure_question(question)
    )


def choose(
    text: str,
    units: Sequence[Unit],
    best: int,
    scores: Sequence[float],
    question: str,
    missing_weight: Sequence[float],
    rules: WindowRules = WindowRules(),
) -> tuple[int, int]:
    """The window ``units[lo:hi]`` around ``units[best]``.

    Args:
        text: the document text the units index.
        units: sentence units in document order.
        best: index of the best sentence.
        scores: highlight score of each unit.
        question: the question as asked.
        missing_weight: per unit, the share of the question's IDF weight it holds that
            ``units[best]`` lacks (0 for the best unit itself).
        rules: the margins.

    Returns:
        (lo, hi) with lo <= best < hi and hi - lo <= rules.max_sentences.
    """
    lo, hi = best, best + 1
    # 0: a table's data row is shown under its header when the header is the line above it.
    header = table_header(text, units[best].start, units[best].end)
    if header is not None and best > 0 and (units[best - 1].start, units[best - 1].end) == header:
        lo = best - 1

    def room() -> bool:
        return hi - lo < rules.max_sentences

    def fits(a: int, b: int) -> bool:  # units[a:b] as one answer: short enough to read
        return units[b - 1].end - units[a].start <= rules.max_chars

    # 1: the sentence after the best one points back to it and announces a list ("The
    # facilities block was rebuilt in 2022." + "It has the following:"): it joins, and the
    # loop below takes what it announces.
    if room() and hi + 1 < len(units) and fits(lo, hi + 1):
        after = text[units[hi].start : units[hi].end]
        if _POINTS_BACK.match(after) and announces(after, text[units[hi + 1].start : units[hi + 1].end]):
            hi += 1
    # 1-2: a sentence that announces a list, or a label whose value is on the next line.
    while room() and hi < len(units):
        last = units[hi - 1]
        nxt = units[hi]
        line = text[last.start : last.end]
        label = (
            "\n" in text[last.end : nxt.start]
            and "\n" not in line
            and (is_label(line.strip()) or is_heading(text, last.start, last.end))
            # the answer is a table row or a list item: a whole record, no label for the next
            # one ("Check-out | by 11 am", "- 24 g fine sea salt"); after an announcing
            # sentence ("The kit contains:") the items still follow one another
            and not (hi - 1 == best and (is_data_row(text, last.start, last.end) or is_list_item(line)))
        )
        if (announces(line, text[nxt.start : nxt.end]) or label) and fits(lo, hi + 1):
            hi += 1
            if not text[last.start : last.end].rstrip().endswith(":") or not _CONTINUES.match(
                text[units[hi - 1].start : units[hi - 1].end]
            ):
                break
        else:
            break
    wanted = phrases.answer_type(question)
    q_words = phrases.words_of(question)
    measure = phrases.measure_question(question)
    neighbours = [i for i in (lo - 1, hi) if 0 <= i < len(units)]
    # a heading scores high by repeating the question: a neighbour is compared with the
    # sentences it labels
    ref = scores[best]
    if is_heading(text, units[best].start, units[best].end) and hi - lo > 1:
        ref = max(scores[i] for i in range(lo, hi) if i != best)
    # 3: the question's answer type is missing from the window and a close neighbour has it.
    if (
        wanted != phrases.OTHER
        and room()
        and not any(_has_type(text, units[i], wanted, q_words, measure) for i in range(lo, hi))
    ):
        typed = [
            i
            for i in neighbours
            if scores[i] >= ref - rules.type_margin
            and fits(min(lo, i), max(hi, i + 1))
            and _has_type(text, units[i], wanted, q_words, measure)
        ]
        if typed:
            pick = max(typed, key=lambda i: scores[i])
            lo, hi = min(lo, pick), max(hi, pick + 1)
    # 4: a close neighbour holds question terms the best sentence lacks.
    for i in sorted(neighbours, key=lambda i: -scores[i]):
        if not room() or lo <= i < hi or not (i == lo - 1 or i == hi):
            continue
        wider = min(lo, i), max(hi, i + 1)
        if scores[i] >= ref - rules.term_margin and missing_weight[i] >= rules.term_share and fits(*wider):
            lo, hi = wider
    # 5: a name, date or number of the question missing from the window stands in the sentence
    # just before or after it: that sentence sets the answer in its context.
    lacking = [a for a in _anchors(question) if not a.search(text, units[lo].start, units[hi - 1].end)]
    for i in (lo - 1, hi) if lacking else ():
        if (
            0 <= i < len(units)
            and room()
            and fits(min(lo, i), max(hi, i + 1))
            and any(a.search(text, units[i].start, units[i].end) for a in lacking)
        ):
            lo, hi = min(lo, i), max(hi, i + 1)
            break
    return lo, hi


def _anchors(question: str) -> list[re.Pattern[str]]:
    """The names, dates and numbers of the question as whole-word, case-blind patterns."""
    return [
        re.compile(rf"(?<!\w){re.escape(question[c.start : c.end])}(?!\w)", re.I)
        for c in phrases.candidates(question)
        if c.kind in ("name", phrases.DATE, phrases.NUMBER)
    ]
