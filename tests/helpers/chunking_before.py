"""The chunker as it was before streaming and the character cap (commit 598abc0), kept as the
oracle: on ordinary text the new chunker must give exactly its chunks, units and counts."""

# ruff: noqa
from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import numpy as np

Span = tuple[int, int]
_BLOCK_START = re.compile(r"[ \t]*(?:#{1,6}\s|[-*+]\s|\d{1,3}[.)]\s|>|\|)")
_HEADING = re.compile(r"[ \t]{0,3}#{1,6}(?:[ \t]|$)")
MAX_SPLIT_CHARS = 50_000
_TERMINAL = tuple(".!?:;,\u3002\uff01\uff1f\"'\u201d\u2019)")


def _strip(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _is_label(line: str) -> bool:
    """A short line without closing punctuation ("Results", "Chapter 2"): a heading-like label."""
    return len(line) < 60 and not line.endswith(_TERMINAL)


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
            or _HEADING.match(prev_line) is not None
            or _is_label(stripped_prev)
        )
        if pos > start and breaks:
            blocks.append((start, pos))
            start = pos
        pos += len(line)
        prev_line = line
    if pos > start:
        blocks.append((start, pos))
    return blocks


def _windows(text: str, blocks: list[Span]) -> Iterator[Span]:
    """The blocks, with any block longer than ``MAX_SPLIT_CHARS`` cut into consecutive windows.

    blingfire allocates about 20 bytes per input byte and its Python wrapper loops over every
    byte: a single 20 MB block (text without blank lines) took 1 GB. Windows end at the last
    line break, else the last whitespace, else after ``MAX_SPLIT_CHARS`` characters.
    """
    size = MAX_SPLIT_CHARS
    for start, end in blocks:
        while end - start > size:
            limit = start + size
            cut = text.rfind("\n", start + 1, limit)
            if cut < 0:
                cut = next((i for i in range(limit - 1, start, -1) if text[i].isspace()), limit)
            yield start, cut
            start = cut
        yield start, end


def split_sentences(text: str) -> list[Span]:
    """Sentence spans (whitespace-trimmed) that together cover every non-blank character.

    Boundaries come from blingfire within each block; only its sentence *starts* are used and
    each sentence runs to the next start, so coverage holds whatever the splitter returns.
    """
    import blingfire

    spans: list[Span] = []
    for b_start, b_end in _windows(text, _blocks(text)):
        block = text[b_start:b_end]
        if not block.strip():
            continue
        try:
            _, offsets = blingfire.text_to_sentences_and_offsets(block)
            cuts = {s for s, _ in offsets if 0 < s < len(block)}
        except Exception:  # unencodable text, or blingfire's own assertions: one sentence
            cuts = set()
        bounds = [0, *sorted(cuts), len(block)]
        for a, b in itertools.pairwise(bounds):
            span = _strip(text, b_start + a, b_start + b)
            if span:
                spans.append(span)
    return spans


def _count(token_starts: np.ndarray, start: int, end: int) -> int:
    """Tokens starting in [start, end)."""
    lo, hi = np.searchsorted(token_starts, [start, end])
    return int(hi - lo)


def _cut(text: str, token_starts: np.ndarray, start: int, end: int, max_tokens: int) -> int:
    """Where to end a piece of [start, end) that must hold at most ``max_tokens`` tokens.

    Called only when [start, end) holds more. The piece ends at a token start; the latest one
    that follows whitespace is preferred when the piece keeps at least half of
    ``max_tokens``, so pieces end between words rather than inside one.
    """
    lo = int(np.searchsorted(token_starts, start))
    # Tokens i < lo + max_tokens fit; tokens sharing the offset of token lo + max_tokens all
    # start at the cut, so they go to the next piece together.
    for k in range(lo + max_tokens, lo + max(1, max_tokens // 2) - 1, -1):
        pos = int(token_starts[k])
        if pos > start and text[pos - 1].isspace():
            return pos
    limit = int(token_starts[lo + max_tokens])
    if limit > start:
        return limit
    # More than max_tokens tokens start at ``start`` itself: they cannot be separated.
    nxt = int(np.searchsorted(token_starts, start, side="right"))
    return int(token_starts[nxt]) if nxt < len(token_starts) and token_starts[nxt] < end else end


def _units(
    text: str, sentences: list[Span], token_starts: np.ndarray, max_tokens: int
) -> tuple[list[Span], list[int]]:
    """Cut sentences longer than ``max_tokens`` at token starts; return units and token counts."""
    units: list[Span] = []
    counts: list[int] = []
    for s, e in sentences:
        pos = s
        while pos < e:
            if _count(token_starts, pos, e) <= max_tokens:
                cut = e
            else:
                cut = _cut(text, token_starts, pos, e, max_tokens)
            span = _strip(text, pos, cut)
            if span:
                units.append(span)
                counts.append(_count(token_starts, *span))
            pos = cut
    return units, counts


def chunk_text(
    text: str, token_starts: np.ndarray, max_tokens: int, overlap: int
) -> tuple[list[Span], list[Span], list[int]]:
    """Chunk one document.

    Args:
        text: the document text all spans refer to.
        token_starts: sorted character offsets where the model's tokens start.
        max_tokens: most tokens per chunk (excluding the model's special tokens).
        overlap: at most this many whole units repeated at the start of the next chunk.

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
        # Repeat up to ``overlap`` units, but never so many that unit j no longer fits: every
        # chunk must bring a new unit, or it would be a sub-span of the previous one.
        i = max(i + 1, j - overlap)
        while i < j and sum(counts[i : j + 1]) > max_tokens:
            i += 1
    return chunks, units, tokens
