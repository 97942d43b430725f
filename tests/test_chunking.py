"""Chunking: property tests of the span invariants over arbitrary text, plus sentence examples.

Token counts come from the fake embedder's ``token_starts`` (words and punctuation marks), so
"tokens in a span" is the number of token starts inside it.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qa import chunking
from qa.chunking import Chunked, chunk_text, split_sentences
from tests.conftest import FakeEmbedder

FAKE = FakeEmbedder()

# Pieces that stress sentence splitting and token counting, joined in random order.
_FRAGMENTS = [
    "",
    " ",
    "\n",
    "\n\n\n",
    "\t",
    "The cat sat on the mat. ",
    "Dr. Smith went to Washington D.C. on Jan. 5. ",
    "Is it? Yes! ",
    "😀🎉 emoji 👩‍👩‍👧 family ",
    "日本語の文です。二番目の文です。",
    "中文句子，没有空格。",
    "مرحبا بالعالم. هذه جملة ثانية. ",
    "नमस्ते दुनिया। यह दूसरा वाक्य है। ",
    "e\u0301 a\u0300\u0301 combining marks n\u0303o ",
    "# Heading\n",
    "## A much longer heading line that keeps going well beyond sixty characters\n",
    "- list item\n",
    "| a | b |\n",
    " ".join(["word"] * 120),
    "x" * 300,
    "\u2028line separator\u2029para sep\x0bvt\x0cff\x85nel\x1crs ",
]
texts = st.one_of(
    st.text(max_size=400),
    st.lists(
        st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=40)),
        max_size=25,
    ).map("".join),
)
params = st.tuples(st.sampled_from([1, 2, 3, 7, 16, 50]), st.sampled_from([0, 1, 2, 3]))


def _count(starts: np.ndarray, a: int, b: int) -> int:
    lo, hi = np.searchsorted(starts, [a, b])
    return int(hi - lo)


def check_invariants(text: str, starts: np.ndarray, max_tokens: int, overlap: int, out: Chunked) -> None:
    """Invariants (a)-(e) of the brief; raises AssertionError naming the broken one."""
    chunks, units = out.chunks, out.units
    # (a) valid, non-empty spans, trimmed of whitespace at both ends
    for s, e in chunks + units:
        assert 0 <= s < e <= len(text), ("span out of range", s, e)
        assert not text[s].isspace() and not text[e - 1].isspace(), ("untrimmed span", text[s:e])
    # (b) coverage of every non-whitespace character
    covered = np.zeros(len(text) + 1, dtype=np.int64)
    for s, e in chunks:
        covered[s] += 1
        covered[e] -= 1
    inside = np.cumsum(covered)[: len(text)] > 0
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not inside[i]]
    assert not missing, ("uncovered characters", [text[i] for i in missing[:10]])
    # (c) units sorted, disjoint, each inside a chunk
    for (s1, e1), (s2, e2) in itertools.pairwise(units):
        assert e1 <= s2, ("units overlap or are unsorted", (s1, e1), (s2, e2))
    for u in units:
        assert any(s <= u[0] and u[1] <= e for s, e in chunks), ("unit outside every chunk", u)
    # (d) token budget, and the reported counts are the real counts
    assert len(out.tokens) == len(chunks)
    for (s, e), n in zip(chunks, out.tokens, strict=True):
        assert _count(starts, s, e) == n, ("token count misreported", s, e)
        assert n <= max_tokens, ("chunk over max_tokens", n, max_tokens, text[s:e])
    # (e) order, strict progress, overlap of at most ``overlap`` units
    for (s1, e1), (s2, e2) in itertools.pairwise(chunks):
        assert s1 < s2 and e1 < e2, ("no strict progress", (s1, e1), (s2, e2))
        shared = sum(1 for a, b in units if s2 <= a and b <= e1)
        assert shared <= overlap, ("overlap too large", shared, overlap)
    # chunks are whole units: every chunk starts at a unit start and ends at a unit end
    starts_u = {a for a, _ in units}
    ends_u = {b for _, b in units}
    assert all(s in starts_u and e in ends_u for s, e in chunks)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, p=params)
@example(text="", p=(16, 1))
@example(text=" \n\t \u3000 ", p=(16, 1))
@example(text="a", p=(1, 3))
def test_chunk_invariants(text: str, p: tuple[int, int]) -> None:
    max_tokens, overlap = p
    starts = FAKE.token_starts(text)
    check_invariants(text, starts, max_tokens, overlap, chunk_text(text, starts, max_tokens, overlap))


@settings(max_examples=60, deadline=None)
@given(text=texts, p=params)
def test_chunk_invariants_with_duplicate_token_starts(text: str, p: tuple[int, int]) -> None:
    """Real tokenizers can give several tokens one start offset; counts must still hold."""
    max_tokens, overlap = p
    max_tokens = max(2, max_tokens)
    starts = np.repeat(FAKE.token_starts(text), 2)
    check_invariants(text, starts, max_tokens, overlap, chunk_text(text, starts, max_tokens, overlap))


@settings(max_examples=100, deadline=None)
@given(text=texts)
def test_sentences_cover_and_are_trimmed(text: str) -> None:
    spans = split_sentences(text)
    covered: set[int] = set()
    for (_, e1), (s2, _) in itertools.pairwise(spans):
        assert e1 <= s2
    for s, e in spans:
        assert 0 <= s < e <= len(text)
        assert not text[s].isspace() and not text[e - 1].isspace()
        covered.update(range(s, e))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


@settings(max_examples=60, deadline=None)
@given(text=texts, p=params)
def test_chunk_invariants_with_small_split_windows(text: str, p: tuple[int, int]) -> None:
    """Long blocks go to the sentence splitter in windows (memory bound); with 37-character
    windows every block is windowed, and the invariants must still hold."""
    max_tokens, overlap = p
    starts = FAKE.token_starts(text)
    original = chunking.MAX_SPLIT_CHARS
    chunking.MAX_SPLIT_CHARS = 37
    try:
        out = chunk_text(text, starts, max_tokens, overlap)
    finally:
        chunking.MAX_SPLIT_CHARS = original
    check_invariants(text, starts, max_tokens, overlap, out)


def test_huge_block_is_split_in_windows_with_bounded_memory() -> None:
    """200k characters without a blank line: sentences are still found, window by window."""
    text = "A line of hard-wrapped prose that ends with a full stop here.\n" * 3300
    assert len(text) > 4 * chunking.MAX_SPLIT_CHARS
    spans = split_sentences(text)
    assert len(spans) == 3300
    assert all(text[s:e].endswith("here.") for s, e in spans)


def _sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


def test_abbreviations_do_not_split() -> None:
    text = "Dr. Smith went to Washington D.C. on Jan. 5. He said hi."
    assert _sentences(text) == ["Dr. Smith went to Washington D.C. on Jan. 5.", "He said hi."]


def test_markdown_headings_are_their_own_sentence() -> None:
    long_heading = "## A heading that is long enough to pass the sixty character rule easily"
    text = f"# Title\nFirst sentence here. Second one.\n{long_heading}\nBody text follows."
    got = _sentences(text)
    assert got[0] == "# Title"
    assert long_heading in got
    assert got[-1] == "Body text follows."


def test_non_latin_sentences() -> None:
    assert _sentences("日本語の文です。二番目の文です。") == ["日本語の文です。", "二番目の文です。"]
    assert len(_sentences("Ça va? Très bien. Ünïcödé text here!")) == 3


def test_long_unpunctuated_sentence_is_cut_between_words() -> None:
    words = [f"w{i}" for i in range(1000)]
    text = " ".join(words)
    starts = FAKE.token_starts(text)
    out = chunk_text(text, starts, 50, 1)
    check_invariants(text, starts, 50, 1, out)
    assert len(out.units) >= 20
    for s, e in out.units:
        assert _count(starts, s, e) <= 50
        assert s == 0 or text[s - 1] == " ", "a piece starts inside a word"
    assert " ".join(text[s:e] for s, e in out.units) == text


def test_overlap_never_makes_a_chunk_inside_the_previous_one() -> None:
    """Sentences of 5, 12 and 15 tokens, budget 20, overlap 1: the second sentence cannot be
    repeated before the third (12 + 15 > 20), so no chunk may be a sub-span of the previous."""
    s1 = "One two three four."  # 5 tokens
    s2 = "Alpha " + " ".join(["alpha"] * 10) + "."  # 12
    s3 = "Beta " + " ".join(["beta"] * 13) + "."  # 15
    text = f"{s1} {s2} {s3}"
    starts = FAKE.token_starts(text)
    out = chunk_text(text, starts, 20, 1)
    assert [text[s:e] for s, e in out.chunks] == [f"{s1} {s2}", s3]
    check_invariants(text, starts, 20, 1, out)


def test_docstring_example_overlap() -> None:
    """The worked example in chunking's docstring: 90, 80, 70, 60 tokens, budget 200."""
    sentences = ["W " + " ".join(["w"] * (n - 2)) + "." for n in (90, 80, 70, 60)]
    text = " ".join(sentences)
    starts = FAKE.token_starts(text)
    out = chunk_text(text, starts, 200, 1)
    assert out.tokens == [170, 150, 130]


@pytest.mark.parametrize("bad", [0, -1])
def test_max_tokens_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_text("Some text.", FAKE.token_starts("Some text."), bad, 0)


def test_chunk_text_matches_on_many_newlines() -> None:
    text = "\n" * 50 + "Alone." + "\n" * 50 + "Another line." + "\n" * 3
    starts = FAKE.token_starts(text)
    out = chunk_text(text, starts, 16, 1)
    check_invariants(text, starts, 16, 1, out)
    assert [text[s:e] for s, e in out.units] == ["Alone.", "Another line."]


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("Trial results\n\nThe drug cut deaths by 20%.", "Trial results", True),  # short, no stop
        (
            "Intro.\n\n## Methods and materials used in the study\nWe did x.",
            "## Methods and materials used in the study",
            True,
        ),
        (
            "Statins lower LDL cholesterol in adults.\n\nWe pooled 12 trials.",
            "Statins lower LDL cholesterol in adults.",
            True,
        ),  # title
        (
            "Body text first.\n\nStatins lower LDL cholesterol in adults.\n\nMore.",
            "Statins lower LDL cholesterol in adults.",
            False,
        ),  # not first
        ("One paragraph. It has two sentences and no line breaks.", "One paragraph.", False),
        ("Title without anything after it", "Title without anything after it", False),  # nothing follows
        ("A first line.\nThe same paragraph goes on.", "A first line.", False),  # no blank line after
        ("x" * 400 + "\n\nBody.", "x" * 400, False),  # too long for a title
        ("Results\nWe found that it works.", "We found that it works.", False),
    ],
)
def test_is_heading(text: str, unit: str, expected: bool) -> None:
    start = text.index(unit)
    assert chunking.is_heading(text, start, start + len(unit)) is expected


CAMPSITE = (
    "Fellgate Farm Campsite | Prices and information 2025\n\n"
    "The site at a glance\n"
    "Pitches | 42, of which 12 have electric hook-up\n"
    "Check-in | 2 pm to 8 pm\n"
    "Check-out | by 11 am\n"
    "Quiet hours | late\n\n"
    "Cheeses\n\n"
    "Cheese | Weight | Chamber\n"
    "Holloway Blue | 2.5 kg | Back\n"
    "Little Brack | small | Front\n\n"
    "| Name | Role |\n| --- | --- |\n| Ann | chair |\n\nThe end."
)


@pytest.mark.parametrize(
    ("unit", "heading", "header"),
    [
        ("Fellgate Farm Campsite | Prices and information 2025", True, None),  # a lone line with a bar
        ("The site at a glance", True, None),
        ("Pitches | 42, of which 12 have electric hook-up", False, None),  # first row, with digits: data
        ("Check-out | by 11 am", False, None),  # a data row answers; this table has no header
        ("Quiet hours | late", False, None),  # short, no digit, but not the first row
        ("Cheese | Weight | Chamber", True, None),  # the header row labels its table
        ("Holloway Blue | 2.5 kg | Back", False, "Cheese | Weight | Chamber"),
        ("Little Brack | small | Front", False, "Cheese | Weight | Chamber"),
        ("| Name | Role |", True, None),  # Markdown table
        ("| Ann | chair |", False, "| Name | Role |"),
    ],
)
def test_table_rows_hold_answers_and_their_header_labels_them(
    unit: str, heading: bool, header: str | None
) -> None:
    start = CAMPSITE.index(unit)
    assert chunking.is_heading(CAMPSITE, start, start + len(unit)) is heading
    found = chunking.table_header(CAMPSITE, start, start + len(unit))
    assert (None if found is None else CAMPSITE[found[0] : found[1]]) == header


def test_table_header_looks_up_a_bounded_number_of_rows() -> None:
    rows = "\n".join(f"Row {i} | value {i}" for i in range(2000))
    text = f"Name | Value\n{rows}\n\nEnd."
    last = text.index("Row 1999")
    assert chunking.table_header(text, last, text.index("\n", last)) is None  # too far up: no guess
    near = text.index("Row 3 ")
    assert chunking.table_header(text, near, text.index("\n", near)) == (0, len("Name | Value"))


@pytest.mark.parametrize(
    ("unit", "heading"),
    [
        ("Ingredients", True),
        ("- 24 g fine sea salt", False),  # a list item states something; it labels nothing
        ("* 10 g fresh yeast", False),
        ("\u2022 a drying room for boots", False),
        ("3. Bake for 40 minutes", False),
        ("b) the second option", False),
        ("Method", True),
    ],
)
def test_list_items_are_not_headings(unit: str, heading: bool) -> None:
    text = (
        "Seeded spelt loaf\n\nIngredients\n- 24 g fine sea salt\n* 10 g fresh yeast\n"
        "\u2022 a drying room for boots\n3. Bake for 40 minutes\nb) the second option\n\n"
        "Method\nMix everything and leave it overnight.\n"
    )
    start = text.index(unit)
    assert chunking.is_heading(text, start, start + len(unit)) is heading
    assert chunking.is_list_item(unit) is not heading


def test_table_rows_beside_huge_lines() -> None:
    text = "x | " + "y" * 3_000_000 + "\nName | Role\nAnn | chair\n" + "z | " * 1_000_000 + "\nEnd."
    name, ann = text.index("Name | Role"), text.index("Ann | chair")
    assert chunking.is_heading(text, name, name + len("Name | Role"))  # the huge lines are no rows
    assert chunking.table_header(text, ann, ann + len("Ann | chair")) == (name, name + len("Name | Role"))


def test_is_heading_on_one_huge_line() -> None:
    text = "A" * 5_000_000  # one line, no newline: every check must stop early
    start = len(text) - 10
    assert not chunking.is_heading(text, start, len(text))
    assert not chunking.is_heading(text, 0, 10)


def _words(s: str) -> set[str]:
    return {w.lower() for w in s.replace("|", " ").split()}


def test_table_cell_is_the_column_the_question_names() -> None:
    text = "Pitch | Low season | High season\nSmall tent, 1 or 2 people | £16 | £22\nCampervan | £32 | £41\n"
    header = (0, text.index("\n"))
    row_start = text.index("Small")
    row = (row_start, text.index("\n", row_start))
    cell = chunking.table_cell(text, header, row, {"low", "season", "tent"}, _words)
    assert cell is not None and text[cell[0] : cell[1]] == "£16"
    cell = chunking.table_cell(text, header, row, {"high", "season"}, _words)
    assert cell is not None and text[cell[0] : cell[1]] == "£22"
    # "season" alone names both columns; "pitch" names the first, which labels the row
    assert chunking.table_cell(text, header, row, {"season"}, _words) is None
    assert chunking.table_cell(text, header, row, {"pitch"}, _words) is None
    # a Markdown row: its outer bars open and close no cell
    md = "| Cheese | Weight | Chamber |\n|---|---|---|\n| Holloway Blue | 2.5 kg | Back |\n"
    row_start = md.index("| Holloway")
    cell = chunking.table_cell(
        md, (0, md.index("\n")), (row_start, md.index("\n", row_start)), {"chamber"}, _words
    )
    assert cell is not None and md[cell[0] : cell[1]] == "Back"
    # two columns (label | value): the whole row answers; unequal rows: no column
    two = "Item | Value\nCheck-out | by 11 am\n"
    assert chunking.table_cell(two, (0, 12), (13, len(two) - 1), {"value"}, _words) is None
    assert chunking.table_cell(text, header, (0, 5), {"low"}, _words) is None


def test_key_value_rows() -> None:
    text = "Sheet\nLength overall | 52.4 m\nCrew | 8\nA | B | C\nX | 1 | 2\nFellgate | Prices\n\nLone | 5\n"

    def line(s: str) -> tuple[int, int]:
        a = text.index(s)
        return a, a + len(s)

    key, value = chunking.key_value(text, *line("Length overall | 52.4 m")) or ((0, 0), (0, 0))
    assert text[key[0] : key[1]] == "Length overall" and text[value[0] : value[1]] == "52.4 m"
    assert chunking.key_value(text, *line("Crew | 8")) is not None
    for not_a_pair in ("Sheet", "X | 1 | 2", "Lone | 5"):  # no bar, three cells, no table
        assert chunking.key_value(text, *line(not_a_pair)) is None, not_a_pair
