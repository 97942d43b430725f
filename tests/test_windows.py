"""Answer windows (qa.windows): each rule on a hand-made case, and the widened quote end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import qa
from qa import windows
from qa.chunking import split_sentences
from qa.windows import Unit, WindowRules
from tests.conftest import FakeEmbedder

NO_VEC = np.zeros(1, dtype=np.float32)


def units_of(text: str) -> list[Unit]:
    return [Unit(a, b, NO_VEC, 0) for a, b in split_sentences(text)]


def window_text(text: str, units: list[Unit], lo: int, hi: int) -> str:
    return text[units[lo].start : units[hi - 1].end]


DEVICES = (
    "Foxconn will bring design and manufacturing expertise. "
    "The collaboration is expected to produce several categories of devices. "
    "These include data center racks, AI acceleration modules and compact edge devices. "
    "OpenAI has indicated that safety is a core priority."
)


def test_a_sentence_that_announces_a_list_takes_the_list() -> None:
    units = units_of(DEVICES)
    assert len(units) == 4
    q = "What kinds of devices will the collaboration produce?"
    lo, hi = windows.choose(DEVICES, units, 1, [0.1, 0.9, 0.5, 0.1], q, [0.0, 0.0, 0.1, 0.0])
    assert window_text(DEVICES, units, lo, hi) == (
        "The collaboration is expected to produce several categories of devices. "
        "These include data center racks, AI acceleration modules and compact edge devices."
    )


def test_a_next_sentence_that_points_back_and_announces_joins_with_its_items() -> None:
    text = (
        "The facilities block was rebuilt in 2022. It has the following:\n\u2022 six hot showers\n"
        "\u2022 a laundry\n\u2022 a drying room\nMilk is sold at the farmhouse."
    )
    units = units_of(text)
    q = "What does the facilities block have?"
    best = 0
    scores = [0.9] + [0.1] * (len(units) - 1)
    lo, hi = windows.choose(text, units, best, scores, q, [0.0] * len(units))
    shown = window_text(text, units, lo, hi)
    assert shown.startswith("The facilities block was rebuilt in 2022. It has the following:")
    assert "six hot showers" in shown and hi - lo == 3
    # a next sentence that announces but does not point back is another subject: it stays out
    other = text.replace("It has the following:", "Campers bring the following:")
    units = units_of(other)
    assert windows.choose(other, units, 0, [0.9] + [0.1] * (len(units) - 1), q, [0.0] * len(units)) == (0, 1)


def test_under_a_heading_a_measure_is_looked_for_past_a_bare_number() -> None:
    """An FAQ: the heading repeats the question (it scores highest), the line under it has a
    bare "two", the measure is one sentence further."""
    text = (
        "### How far can the outdoor unit be from the console?\n\nThe two talk by radio. The range is "
        "up to 150 metres in open ground. Batteries last a year."
    )
    units = units_of(text)
    q = "How far can the outdoor unit be from the console?"
    scores = [1.2, 0.3, 0.7, 0.1]
    lo, hi = windows.choose(text, units, 0, scores, q, [0.0] * 4)
    assert window_text(text, units, lo, hi).endswith("The range is up to 150 metres in open ground.")
    # a count is answered by a bare number: "How many units talk by radio?" stops at "two"
    assert windows.choose(text, units, 0, scores, "How many units talk by radio?", [0.0] * 4) == (0, 2)


def test_a_colon_takes_the_next_line() -> None:
    text = "The kit contains the following:\n- a hammer\n- a saw\nNothing else."
    units = units_of(text)
    lo, hi = windows.choose(
        text, units, 0, [0.9] + [0.1] * (len(units) - 1), "What does the kit contain?", [0] * len(units)
    )
    assert window_text(text, units, lo, hi) == "The kit contains the following:\n- a hammer\n- a saw"


def test_a_table_label_takes_its_value() -> None:
    text = "Ship data\nFuel reserve\n1,200 litres\nCrew\n12"
    units = units_of(text)
    best = next(i for i, u in enumerate(units) if text[u.start : u.end] == "Fuel reserve")
    lo, hi = windows.choose(
        text, units, best, [0.2] * len(units), "How much fuel is in reserve?", [0] * len(units)
    )
    assert window_text(text, units, lo, hi) == "Fuel reserve\n1,200 litres"


def test_a_table_row_is_a_whole_record_shown_under_its_header() -> None:
    text = (
        "Cheeses\n\nCheese | Weight | Chamber\nHolloway Blue | 2.5 kg | Back\n"
        "Little Brack | 350 g | Front\n\n"
        "Site\n\nCheck-in | 2 pm to 8 pm\nCheck-out | by 11 am\nQuiet hours | 10.30 pm to 7 am\n\nEnd."
    )
    units = units_of(text)

    def window(row: str, q: str) -> str:
        best = next(i for i, u in enumerate(units) if text[u.start : u.end] == row)
        lo, hi = windows.choose(text, units, best, [0.5] * len(units), q, [0] * len(units))
        return window_text(text, units, lo, hi)

    # the next row is another record, not this row's value; the header above names the columns
    assert window("Holloway Blue | 2.5 kg | Back", "In which chamber does Holloway Blue ripen?") == (
        "Cheese | Weight | Chamber\nHolloway Blue | 2.5 kg | Back"
    )
    assert window("Check-out | by 11 am", "What time is check-out?") == "Check-out | by 11 am"


def test_a_list_item_is_not_widened_with_the_next_item() -> None:
    text = "Ingredients\n- 1.2 kg wholemeal spelt flour\n- 24 g fine sea salt\n- 10 g fresh yeast\n\nEnd."
    units = units_of(text)
    best = next(i for i, u in enumerate(units) if text[u.start : u.end] == "- 24 g fine sea salt")
    lo, hi = windows.choose(
        text, units, best, [0.5] * len(units), "How much salt is in the loaf?", [0] * len(units)
    )
    assert window_text(text, units, lo, hi) == "- 24 g fine sea salt"


def test_a_heading_takes_the_line_it_labels() -> None:
    text = "Recipes\n\nRye bread\nBake it for 50 minutes at 220 degrees.\n\nScones\nBake them for 12 minutes."
    units = units_of(text)
    best = next(i for i, u in enumerate(units) if text[u.start : u.end] == "Rye bread")
    lo, hi = windows.choose(
        text, units, best, [0.5] * len(units), "How long is rye bread baked?", [0] * len(units)
    )
    assert window_text(text, units, lo, hi) == "Rye bread\nBake it for 50 minutes at 220 degrees."


def test_a_neighbour_with_the_asked_type_joins() -> None:
    text = "The Kestrel Point Lighthouse was built in 1874. It stands 43 metres tall. Tours start at noon."
    units = units_of(text)
    q = "How tall is the Kestrel Point Lighthouse?"
    lo, hi = windows.choose(text, units, 0, [0.8, 0.6, 0.1], q, [0.0, 0.0, 0.0])
    assert window_text(text, units, lo, hi) == (
        "The Kestrel Point Lighthouse was built in 1874. It stands 43 metres tall."
    )
    # too far behind: the type rule does not reach it
    lo, hi = windows.choose(text, units, 0, [0.8, 0.2, 0.1], q, [0.0, 0.0, 0.0])
    assert (lo, hi) == (0, 1)


def test_a_neighbour_holding_the_missing_terms_joins() -> None:
    text = "The Kestrel Point Lighthouse guards the bay. It was restored by volunteers. Tours start at noon."
    units = units_of(text)
    q = "Who restored the Kestrel Point Lighthouse?"
    # the best sentence lacks "Kestrel Point Lighthouse": the previous one has it and scores close
    lo, hi = windows.choose(text, units, 1, [0.6, 0.7, 0.1], q, [0.6, 0.0, 0.0])
    assert window_text(text, units, lo, hi).startswith("The Kestrel Point Lighthouse guards the bay. It was")
    # a neighbour without the missing terms, or far behind, stays out
    q = "What was done to the lighthouse on the point?"  # no name, no type: only rule 4 applies
    assert windows.choose(text, units, 1, [0.6, 0.7, 0.1], q, [0.0, 0.0, 0.0]) == (1, 2)
    assert windows.choose(text, units, 1, [0.1, 0.7, 0.1], q, [0.6, 0.0, 0.0]) == (1, 2)


def test_a_neighbour_holding_the_questions_name_or_year_joins() -> None:
    text = (
        "Total income for 2023 was £418,300. The largest source of income was a grant from Kilverne "
        "County Council. Ticket sales brought in £92,000. In 2022 the museum opened."
    )
    units = units_of(text)
    q = "Which council gave the observatory a grant in 2023?"
    # the year is only in the sentence before: it joins, however low its score
    lo, hi = windows.choose(text, units, 1, [0.1, 0.8, 0.2, 0.0], q, [0.0] * 4)
    assert window_text(text, units, lo, hi) == (
        "Total income for 2023 was £418,300. The largest source of income was a grant from Kilverne "
        "County Council."
    )
    # already in the window, or in no neighbour: nothing joins
    assert windows.choose(text, units, 0, [0.8, 0.1, 0.2, 0.0], q, [0.0] * 4) == (0, 1)
    assert windows.choose(
        text, units, 1, [0.1, 0.8, 0.2, 0.0], "Which council gave a grant in 2021?", [0.0] * 4
    ) == (
        1,
        2,
    )
    # whole words only: "202" is not in "2023"
    assert windows.choose(text, units, 1, [0.1, 0.8, 0.2, 0.0], "Who gave grant 202?", [0.0] * 4) == (1, 2)
    # a name works the same way, after the sentence as well as before
    q = "How much did ticket sales bring to Kilverne County Council?"
    lo, hi = windows.choose(text, units, 2, [0.0, 0.1, 0.8, 0.0], q, [0.0] * 4)
    assert (lo, hi) == (1, 3)


def test_a_plain_answer_stays_one_sentence_and_windows_are_capped() -> None:
    text = "Zebras have stripes. Lions have manes. Bears sleep in winter."
    units = units_of(text)
    assert windows.choose(text, units, 1, [0.1, 0.9, 0.1], "Which animal has manes?", [0, 0, 0]) == (1, 2)
    long_list = "Parts:\n- one\n- two\n- three\n- four\n- five"
    units = units_of(long_list)
    lo, hi = windows.choose(long_list, units, 0, [0.9] * len(units), "What are the parts?", [0] * len(units))
    assert hi - lo == WindowRules().max_sentences


@hsettings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(["Alpha rose 12%.", "These include x:", "Total\n", "- item\n", "It was 1990. "]),
        min_size=1,
        max_size=8,
    ),
    st.data(),
)
def test_window_always_holds_the_best_unit_and_at_most_three(parts: list[str], data: st.DataObject) -> None:
    text = " ".join(parts)
    units = units_of(text)
    if not units:
        return
    best = data.draw(st.integers(0, len(units) - 1))
    scores = data.draw(st.lists(st.floats(0, 1), min_size=len(units), max_size=len(units)))
    missing = data.draw(st.lists(st.floats(0, 1), min_size=len(units), max_size=len(units)))
    lo, hi = windows.choose(text, units, best, scores, "How much did Alpha rise in 1990?", missing)
    assert lo <= best < hi and 1 <= hi - lo <= 3


def test_the_top_quote_is_widened_across_a_chunk_boundary(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    filler = " ".join(f"Sentence {i} is about factories and supply." for i in range(8))
    text = f"{filler} {DEVICES} {filler}\n"
    (corpus / "devices.txt").write_text(text, encoding="utf-8")
    fake = FakeEmbedder()
    s = qa.Settings(corpus=corpus, index=tmp_path / "index", chunk_tokens=20, chunk_overlap=0)
    qa.build_index(settings=s, embedder=fake)
    index = qa.Index.load(s.index, s, embedder=fake)
    chunks = [(a, b) for _, a, b in index.generation.chunks.tolist()]
    announce = text.index("The collaboration is expected")
    listing = text.index("These include")
    # the announcing sentence and the list are in different chunks
    assert not any(a <= announce and listing < b for a, b in chunks)
    answer = index.ask("What categories of devices will the collaboration produce?")
    top = answer.quotes[0]
    assert "These include data center racks" in top.highlight_text
    assert top.highlight_text.startswith("The collaboration is expected")
    assert (
        text[top.start : top.end] == top.text and top.start <= top.highlight[0] < top.highlight[1] <= top.end
    )
