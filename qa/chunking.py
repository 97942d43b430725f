"""Chunking: split a document into sentence-aware spans sized in the model's own tokens.

A chunk is a (start, end) character span of one document; its text is always
``text[start:end]``, so a quote built from it is verbatim by construction.

Worked example, with ``max_tokens=200`` and ``overlap=1``: sentences of 90, 80, 70 and
60 tokens give chunk A = s1+s2 (170 tokens; adding s3 would make 240) and chunk B = s2+s3+s4
(s2 repeated as overlap, 210 > 200, so B = s2+s3 = 150) and chunk C = s3+s4 (130).
Fewer units are repeated when the overlap and the next new sentence would not fit together,
so every chunk brings new text. A sentence longer than ``max_tokens`` is cut at token
boundaries (between words when possible) into pieces that fit. Chunks are capped in characters
too (``MAX_CHUNK_CHARS``, about 3x the longest chunk of ordinary text): a token can be long
(a 10,000-letter "word" is one unknown token, a letter with 50 combining marks one token,
indentation is no token at all), so a sentence is also cut where it outgrows the cap.

Memory: ``chunk_stream`` never tokenizes the whole text. It walks the text block by block and
tokenizes one segment (``SEGMENT_CHARS``, whole blocks, cut only where whitespace separates
tokens) at a time, so a 64 MB file costs the tokenizer about 60 MB at a time instead of
hundreds of bytes per token of the whole file. The chunks are the same as tokenizing the whole
text at once: a token never spans whitespace.

Invariants (property-tested): every non-blank character belongs to at least one chunk;
chunks and units are trimmed, non-empty spans; units are sorted, disjoint and each inside a
chunk; a chunk holds at most ``max_tokens`` token starts (unless more than that many tokens
start at one offset) and at most ``max_chars`` characters; chunk starts and ends strictly
increase; consecutive chunks share at most ``overlap`` units.
Non-goals: semantic chunking, layout-aware chunking of tables.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

Span = tuple[int, int]

# A line that starts a new block even without a blank line before it: Markdown headings,
# list items, quotes and table rows.
_BLOCK_START = re.compile(r"[ \t]*(?:#{1,6}\s|[-*+]\s|\d{1,3}[.)]\s|>|\|)")
# A Markdown ATX heading line: the block always ends after it, however long it is.
_HEADING = re.compile(r"[ \t]{0,3}#{1,6}(?:[ \t]|$)")
# Longest stretch of text handed to blingfire at once (see _windows).
MAX_SPLIT_CHARS = 50_000
# Longest chunk (and sentence unit) in characters. Ordinary text stays far below it (SQuAD,
# SciFact, this README: 1,230 at most with 200 MiniLM tokens), so only pathological text is cut.
MAX_CHUNK_CHARS = 4000
# Text tokenized at once by chunk_stream; longer only where no safe cut exists (up to 1 MiB).
SEGMENT_CHARS = 65_536
_SEGMENT_HARD_CAP = 2**20
# Line boundaries of str.splitlines, found without splitting the whole text into lines.
_LINE_BREAK = re.compile("\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
# Characters that separate tokens for every tokenizer qa uses: WordPiece's normaliser deletes
# other control characters (so "a\fb" is one word to it) but turns these into spaces.
_SEPARATORS = frozenset(" \t\n\r\u2028\u2029")
# Where to cut inside an over-long sentence (``_char_cut``): start of a word, then anywhere.
_WORD_START = re.compile(r"(?<=\s)\S")
TokenStarts = Callable[[int, int], np.ndarray]  # (start, end) -> sorted token starts in [start, end)
_TERMINAL = tuple(".!?:;,\u3002\uff01\uff1f\"'\u201d\u2019)")
# A table row as the parsers write it ("Check-out | by 11 am") or as Markdown has it ("| a | b |").
_TABLE_ROW = re.compile(r"^[ \t]*\||\S \| \S", re.MULTILINE)
_MAX_TABLE_ROWS = 500  # rows looked through for a table's header
_BAR = re.compile(r"\|")
_MAX_ROW_CHARS = 2000  # a longer line is no table row (and the search for its ends stops there)
_DIGIT = re.compile(r"\d")
# A list item: "- 24 g fine sea salt", "* item", "• item", "3. Bake", "b) item".
_LIST_ITEM = re.compile(r"[ \t]*(?:[-*+\u2022\u2023\u25e6\u2043]|\d{1,3}[.)]|[a-z][)])[ \t]")


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


def is_label(line: str) -> bool:
    """A short line without closing punctuation ("Results", "Chapter 2"): a heading-like label."""
    return len(line) < 60 and not line.endswith(_TERMINAL)


def _lines(text: str) -> Iterator[Span]:
    """The spans of ``text.splitlines(keepends=True)``, one at a time."""
    pos = 0
    for m in _LINE_BREAK.finditer(text):
        yield pos, m.end()
        pos = m.end()
    if pos < len(text):
        yield pos, len(text)


def _blank_or_label(text: str, start: int, end: int) -> bool:
    """``not s or is_label(s)`` for ``s = text[start:end].strip()``, without copying a long line."""
    first = _NON_SPACE.search(text, start, end)
    if first is None:
        return True
    if _NON_SPACE.search(text, first.start() + 60, end) is not None:
        return False  # over 60 characters once stripped
    return is_label(text[first.start() : min(end, first.start() + 60)].rstrip())


def _blocks(text: str) -> Iterator[Span]:
    """Paragraph-like blocks: split at blank lines, Markdown block starts and heading-like lines.

    Lazy, and lines are matched in place: a 50 MB one-line file is never copied.
    """
    start = 0
    pos = 0
    prev: Span | None = None
    for line_start, line_end in _lines(text):
        breaks = prev is not None and (
            _BLOCK_START.match(text, line_start, line_end) is not None
            or _HEADING.match(text, prev[0], prev[1]) is not None
            or _blank_or_label(text, *prev)
        )
        if pos > start and breaks:
            yield start, pos
            start = pos
        pos = line_end
        prev = (line_start, line_end)
    if pos > start:
        yield start, pos


# A first line this long or longer is body text, not a title.
TITLE_CHARS = 300
_LINE_END = re.compile(r"[ \t]*\n")
_NON_SPACE = re.compile(r"\S")


def is_heading(text: str, start: int, end: int) -> bool:
    """Whether the unit ``text[start:end]`` is a heading rather than a statement.

    A heading is a whole line that is a Markdown ATX heading (``# Results``), or a short line
    without closing punctuation that starts a block (the rule ``_blocks`` splits at) and is not
    a data row of a table (rows hold answers, "Check-out | by 11 am"; a table's first row, when
    it has no digit, is its header and counts as a heading) nor a list item ("- 24 g fine sea
    salt"), or the document's title: its first line when a blank line and more text follow and it is under
    ``TITLE_CHARS`` characters. Headings are quoted and searched like any text but are not
    offered as the answering sentence: they label an answer, they rarely state it. Cost:
    independent of the document's length.

    Example: in "Trial results\n\nThe drug cut deaths by 20%." the first line is a heading.
    """
    if start > 0 and text[start - 1] != "\n":
        return False
    line = text[start:end]
    after = _LINE_END.match(text, end)
    if "\n" in line or after is None:
        return False  # not a whole line, or the last line of the document
    if _HEADING.match(line):
        return True
    if _NON_SPACE.search(text, after.end()) is None:
        return False  # nothing follows: a closing line, not a heading
    row = _table_row(text, start, end)
    if row is not None:
        return row == "header"  # the header row labels; data rows answer
    if is_list_item(line):
        return False  # a list item states something ("- 24 g fine sea salt"), it labels nothing
    if is_label(line):
        return True
    first = _NON_SPACE.search(text)  # the document's first visible character
    blank_after = text.startswith("\n", after.end())
    return len(line) < TITLE_CHARS and first is not None and first.start() == start and blank_after


def _table_row(text: str, start: int, end: int) -> str | None:
    """ "header" or "data" for a whole line ``text[start:end]`` that is a row of a table (a line
    with cells, beside another such line), else None. A lone line with a bar (a page title,
    "Fellgate Farm | Prices 2025") is no table. The header is the first row, without digits."""
    if (start > 0 and text[start - 1] != "\n") or _TABLE_ROW.search(text, start, end) is None:
        return None
    above = _line_above(text, start)
    above_row = above is not None and _is_row(text, above)
    after = _LINE_END.match(text, end)
    below_row = after is not None and _is_row(text, (after.end(), _line_end(text, after.end())))
    if not above_row and not below_row:
        return None
    return "header" if not above_row and not _DIGIT.search(text, start, end) else "data"


def is_list_item(line: str) -> bool:
    """Whether ``line`` is an item of a bulleted or numbered list ("- 24 g fine sea salt")."""
    return _LIST_ITEM.match(line) is not None


def is_data_row(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is a data row of a table ("Check-out | by 11 am"): a whole
    record, which answers on its own and is not a label for the line after it."""
    return _table_row(text, start, end) == "data"


def table_header(text: str, start: int, end: int) -> Span | None:
    """The header row of the table whose data row is ``text[start:end]``, or None (not a data
    row, or a table without a header). A row is read with its header: "Holloway Blue | 2.5 kg
    | 10 weeks | Back" answers "In which chamber...?" because the header says "... | Chamber".
    Looks up through at most ``_MAX_TABLE_ROWS`` rows."""
    if not is_data_row(text, start, end):
        return None
    row: Span = (start, end)
    for _ in range(_MAX_TABLE_ROWS):
        above = _line_above(text, row[0])
        if above is None or not _is_row(text, above):
            break
        row = above
    else:
        return None
    return row if _table_row(text, *row) == "header" else None


def key_value(text: str, start: int, end: int) -> tuple[Span, Span] | None:
    """(key, value) cells of a two-column data row ("Launched | 2 November 2017" in a ship's
    technical sheet), or None. Such a row leaves its subject unsaid: it is the document's."""
    if not is_data_row(text, start, end):
        return None
    cells = _cells(text, (start, end))
    if len(cells) != 2 or any(b <= a for a, b in cells):
        return None
    return cells[0], cells[1]


def table_cell(
    text: str, header: Span, row: Span, question_terms: set[str], terms_of: Callable[[str], set[str]]
) -> Span | None:
    """The cell of data ``row`` in the column the question names: "How much is a tent pitch in
    low season?" under "Pitch | Low season | High season" -> the "£16" of "Small tent | £16 |
    £22". The column is the one (after the first, which names the row) whose header shares the
    most ``question_terms`` (``terms_of`` tokenizes a header cell); None when the table has
    fewer than three columns, header and row differ in cells, or no single column is named."""
    heads, cells = _cells(text, header), _cells(text, row)
    if len(heads) != len(cells) or len(cells) < 3:
        return None
    shared = [len(terms_of(text[a:b]) & question_terms) for a, b in heads]
    best = max(range(1, len(heads)), key=lambda i: shared[i])
    if shared[best] == 0 or shared[1:].count(shared[best]) > 1:
        return None
    start, end = cells[best]
    return (start, end) if end > start else None


def _cells(text: str, line: Span) -> list[Span]:
    """The cells of a table row, stripped, in document offsets (a Markdown row's outer bars
    open and close no cell)."""
    a, b = line
    bars = [a - 1, *(m.start() for m in _BAR.finditer(text, a, b)), b]
    spans = []
    for left, right in itertools.pairwise(bars):
        start, end = left + 1, right
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        spans.append((start, end))
    if len(spans) > 1 and spans[0][0] == spans[0][1] and text[a:b].lstrip().startswith("|"):
        spans = spans[1:]
    if len(spans) > 1 and spans[-1][0] == spans[-1][1] and text[a:b].rstrip().endswith("|"):
        spans = spans[:-1]
    return spans


def _is_row(text: str, line: Span) -> bool:
    return line[1] - line[0] <= _MAX_ROW_CHARS and _TABLE_ROW.search(text, *line) is not None


def _line_above(text: str, start: int) -> Span | None:
    """The line before the one that starts at ``start`` (None at the top of the text); a line
    longer than ``_MAX_ROW_CHARS`` comes back as a longer span without being read whole."""
    if start == 0:
        return None
    floor = max(0, start - 2 - _MAX_ROW_CHARS)
    return (text.rfind("\n", floor, start - 1) + 1 or floor), start - 1


def _line_end(text: str, start: int) -> int:
    """End of the line that starts at ``start`` (before its line break), looked for over at
    most ``_MAX_ROW_CHARS`` + 1 characters (a longer line ends "after" them)."""
    limit = min(len(text), start + _MAX_ROW_CHARS + 1)
    m = _LINE_BREAK.search(text, start, limit)
    return limit if m is None else m.start()


def _windows(text: str, blocks: Iterable[Span]) -> Iterator[Span]:
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
    spans: list[Span] = []
    for b_start, b_end in _windows(text, _blocks(text)):
        spans.extend(_sentences(text, b_start, b_end))
    return spans


def _sentences(text: str, b_start: int, b_end: int) -> list[Span]:
    """The sentences of one window (see ``split_sentences``)."""
    import blingfire

    block = text[b_start:b_end]
    if not block.strip():
        return []
    try:
        _, offsets = blingfire.text_to_sentences_and_offsets(block)
        cuts = {s for s, _ in offsets if 0 < s < len(block)}
    except Exception:  # unencodable text, or blingfire's own assertions: one sentence
        cuts = set()
    bounds = [0, *sorted(cuts), len(block)]
    spans = []
    for a, b in itertools.pairwise(bounds):
        span = _strip(text, b_start + a, b_start + b)
        if span:
            spans.append(span)
    return spans


def _segments(text: str) -> Iterator[tuple[int, int, list[Span]]]:
    """(start, end, windows): consecutive windows grouped into stretches of about
    ``SEGMENT_CHARS`` that end where a separator stands, so tokenizing each stretch on its own
    gives the token starts of the whole text."""
    start = 0
    windows: list[Span] = []
    for w_start, w_end in _windows(text, _blocks(text)):
        size = w_start - start
        safe = w_start == 0 or text[w_start - 1] in _SEPARATORS or text[w_start] in _SEPARATORS
        if windows and ((safe and size + (w_end - w_start) > SEGMENT_CHARS) or size > _SEGMENT_HARD_CAP):
            yield start, w_start, windows
            start, windows = w_start, []
        windows.append((w_start, w_end))
    if windows:
        yield start, windows[-1][1], windows


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


def _char_cut(text: str, token_starts: np.ndarray, start: int, limit: int) -> int:
    """Where to end a piece of a sentence that must end by ``limit`` (``MAX_CHUNK_CHARS``).

    In the second half of [start, limit]: the last token start that begins a word, else the
    last token start, else the last word start, else ``limit`` itself (one huge token, or a
    run of combining marks: still a verbatim slice).
    """
    half = start + (limit - start) // 2
    lo, hi = np.searchsorted(token_starts, [half, limit], side="right")
    for k in range(int(hi) - 1, int(lo) - 1, -1):
        pos = int(token_starts[k])
        if pos > start and text[pos - 1].isspace():
            return pos
    if hi > lo and int(token_starts[hi - 1]) > start:
        return int(token_starts[hi - 1])
    words = [m.start() for m in _WORD_START.finditer(text, half, limit)]
    if words and words[-1] > start:
        return words[-1]
    cut = limit
    while cut > half and cut < len(text) and unicodedata.combining(text[cut]):
        cut -= 1  # keep a letter with its combining marks when the half allows it
    return cut if cut > start else limit


def _units(
    text: str, sentences: list[Span], token_starts: np.ndarray, max_tokens: int, max_chars: int
) -> tuple[list[Span], list[int]]:
    """Cut sentences longer than ``max_tokens`` at token starts, and pieces longer than
    ``max_chars`` characters again; return units and token counts."""
    units: list[Span] = []
    counts: list[int] = []
    for s, e in sentences:
        pos = s
        while pos < e:
            if _count(token_starts, pos, e) <= max_tokens:
                cut = e
            else:
                cut = _cut(text, token_starts, pos, e, max_tokens)
            if cut - pos > max_chars:
                cut = _char_cut(text, token_starts, pos, pos + max_chars)
            span = _strip(text, pos, cut)
            if span:
                units.append(span)
                counts.append(_count(token_starts, *span))
            pos = cut
    return units, counts


def chunk_text(
    text: str, token_starts: np.ndarray, max_tokens: int, overlap: int, max_chars: int = MAX_CHUNK_CHARS
) -> Chunked:
    """Chunk one document whose token starts are known (``chunk_stream`` tokenizes as it goes).

    Args:
        text: the document text all spans refer to.
        token_starts: sorted character offsets where the model's tokens start.
        max_tokens: most tokens per chunk (excluding the model's special tokens).
        overlap: at most this many whole units repeated at the start of the next chunk.
        max_chars: most characters per chunk.

    Returns:
        The chunks, the units (sentences or sentence pieces) and token counts per chunk.

    Raises:
        ValueError: ``max_tokens`` or ``max_chars`` is below 1.
    """

    def within(start: int, end: int) -> np.ndarray:
        lo, hi = np.searchsorted(token_starts, [start, end])
        return token_starts[lo:hi]

    return _chunk(text, within, max_tokens, overlap, max_chars)


def chunk_stream(
    text: str,
    tokenize: Callable[[str], np.ndarray],
    max_tokens: int,
    overlap: int,
    max_chars: int = MAX_CHUNK_CHARS,
) -> Chunked:
    """Chunk one document, tokenizing it one segment at a time (bounded memory).

    Args:
        text: the document text all spans refer to.
        tokenize: token start offsets of a string (``Embedder.token_starts``).
        max_tokens, overlap, max_chars: as for ``chunk_text``.

    Returns:
        The same ``Chunked`` as ``chunk_text(text, tokenize(text), ...)``.

    Raises:
        ValueError: ``max_tokens`` or ``max_chars`` is below 1.
    """
    return _chunk(
        text, lambda a, b: np.asarray(tokenize(text[a:b]), np.int64) + a, max_tokens, overlap, max_chars
    )


def _chunk(text: str, tokens_in: TokenStarts, max_tokens: int, overlap: int, max_chars: int) -> Chunked:
    if max_tokens < 1 or max_chars < 1:
        raise ValueError(f"max_tokens and max_chars must be >= 1, got {max_tokens} and {max_chars}")
    units: list[Span] = []
    counts: list[int] = []
    for start, end, windows in _segments(text):
        token_starts = tokens_in(start, end)
        for w_start, w_end in windows:
            more, n = _units(text, _sentences(text, w_start, w_end), token_starts, max_tokens, max_chars)
            units += more
            counts += n
    return _pack(units, counts, max_tokens, overlap, max_chars)


def _pack(units: list[Span], counts: list[int], max_tokens: int, overlap: int, max_chars: int) -> Chunked:
    """Pack consecutive units into chunks of at most ``max_tokens`` tokens and ``max_chars``
    characters, repeating up to ``overlap`` units (see the module's worked example)."""
    chunks: list[Span] = []
    tokens: list[int] = []
    i = 0
    while i < len(units):
        j, total = i, 0
        while j < len(units) and (
            j == i or (total + counts[j] <= max_tokens and units[j][1] - units[i][0] <= max_chars)
        ):
            total += counts[j]
            j += 1
        chunks.append((units[i][0], units[j - 1][1]))
        tokens.append(total)
        if j >= len(units):
            break
        # Repeat up to ``overlap`` units, but never so many that unit j no longer fits: every
        # chunk must bring a new unit, or it would be a sub-span of the previous one.
        i = max(i + 1, j - overlap)
        while i < j and (sum(counts[i : j + 1]) > max_tokens or units[j][1] - units[i][0] > max_chars):
            i += 1
    return Chunked(chunks=chunks, units=units, tokens=tokens)
