"""Chunking: split a document into sentence-aware spans sized in the model's own tokens.

A chunk is a (start, end) character span of one document; its text is always
``text[start:end]``, so a quote built from it is verbatim by construction.

Worked example, with ``max_tokens=200`` and ``overlap=1``: sentences of 90, 80, 70 and
60 tokens give chunk A = s1+s2 (170 tokens; adding s3 would make 240) and chunk B = s2+s3+s4
(s2 repeated as overlap, 210 > 200, so B = s2+s3 = 150) and chunk C = s3+s4 (130).
A sentence longer than ``max_tokens`` is cut at token boundaries into pieces that fit.

Invariant (property-tested): every non-blank character belongs to at least one chunk.
Non-goals: semantic chunking, layout-aware chunking of tables.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

Span = tuple[int, int]

# A line that starts a new block even without a blank line before it: Markdown headings,
# list items, quotes and table rows.
_BLOCK_START = re.compile(r"[ \t]*(?:#{1,6}\s|[-*+]\s|\d{1,3}[.)]\s|>|\|)")
_TERMINAL = tuple(".!?:;,\u3002\uff01\uff1f\"'\u201d\u2019)")


@dataclass(frozen=True)
class Chunked:
    """Chunks of one document and the sentence units (highlightable spans) they are made of."""

    chunks: list[Span]
    units: list[Span]
    tokens: list[int]  # token count of each chunk


def _strip(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _blocks(text: str) -> list[Span]:
    """Paragraph-like blocks: split at blank lines, Markdown block starts and heading-like lines."""
    blocks: list[Span] = []
    start = 0
    pos = 0
    prev_line = ""
    for line in text.splitlines(keepends=True):
        stripped_prev = prev_line.strip()
        breaks = (
            not stripped_prev
            or _BLOCK_START.match(line) is not None
            or (len(stripped_prev) < 60 and not stripped_prev.endswith(_TERMINAL))
        )
        if pos > start and breaks:
            blocks.append((start, pos))
            start = pos
        pos += len(line)
        prev_line = line
    if pos > start:
        blocks.append((start, pos))
    return blocks


def split_sentences(text: str) -> list[Span]:
    """Sentence spans (whitespace-trimmed) that together cover every non-blank character.

    Boundaries come from blingfire within each block; only its sentence *starts* are used and
    each sentence runs to the next start, so coverage holds whatever the splitter returns.
    """
    import blingfire

    spans: list[Span] = []
    for b_start, b_end in _blocks(text):
        block = text[b_start:b_end]
        if not block.strip():
            continue
        try:
            _, offsets = blingfire.text_to_sentences_and_offsets(block)
            cuts = {s for s, _ in offsets if 0 < s < len(block)}
        except (UnicodeError, ValueError):  # unencodable text: keep the block as one sentence
            cuts = set()
        bounds = [0, *sorted(cuts), len(block)]
        for a, b in itertools.pairwise(bounds):
            span = _strip(text, b_start + a, b_start + b)
            if span:
                spans.append(span)
    return spans


def _units(
    text: str, sentences: list[Span], token_starts: np.ndarray, max_tokens: int
) -> tuple[list[Span], list[int]]:
    """Cut sentences longer than ``max_tokens`` at token starts; return units and token counts."""
    units: list[Span] = []
    counts: list[int] = []
    for s, e in sentences:
        lo, hi = np.searchsorted(token_starts, [s, e])
        n = int(hi - lo)
        if n <= max_tokens:
            units.append((s, e))
            counts.append(n)
            continue
        cut_points = [int(token_starts[i]) for i in range(lo + max_tokens, hi, max_tokens)]
        bounds = [s, *cut_points, e]
        for a, b in itertools.pairwise(bounds):
            span = _strip(text, a, b)
            if span:
                units.append(span)
                x, y = np.searchsorted(token_starts, [span[0], span[1]])
                counts.append(int(y - x))
    return units, counts


def chunk_text(text: str, token_starts: np.ndarray, max_tokens: int, overlap: int) -> Chunked:
    """Chunk one document.

    Args:
        text: the document text all spans refer to.
        token_starts: sorted character offsets where the model's tokens start.
        max_tokens: most tokens per chunk (excluding the model's special tokens).
        overlap: whole units repeated at the start of the next chunk.

    Returns:
        The chunks, the units (sentences or sentence pieces) and token counts per chunk.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    units, counts = _units(text, split_sentences(text), token_starts, max_tokens)
    chunks: list[Span] = []
    tokens: list[int] = []
    i = 0
    while i < len(units):
        j, total = i, 0
        while j < len(units) and (j == i or total + counts[j] <= max_tokens):
            total += counts[j]
            j += 1
        chunks.append((units[i][0], units[j - 1][1]))
        tokens.append(total)
        if j >= len(units):
            break
        i = max(i + 1, j - overlap)  # always advance, even when overlap >= units in chunk
    return Chunked(chunks=chunks, units=units, tokens=tokens)
