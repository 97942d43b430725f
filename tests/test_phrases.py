"""Answer types of questions and typed phrases of passages (qa.phrases), on hand-made cases."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qa import phrases

SEED = (
    "OpenAI has announced a new partnership with Hon Hai Precision Industry Company, better known as "
    "Foxconn, to develop and manufacture a range of artificial intelligence hardware in the United States."
)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Who is OpenAI partnering with to manufacture AI hardware?", phrases.PERSON),
        ("Whose idea was it?", phrases.PERSON),
        ("When was the lighthouse built?", phrases.DATE),
        ("In what year did Louis XIV die?", phrases.DATE),
        ("What century saw the change?", phrases.DATE),
        ("How many people work at the observatory?", phrases.NUMBER),
        ("How tall is the Kestrel Point Lighthouse?", phrases.NUMBER),
        ("How much fuel is in reserve?", phrases.NUMBER),
        ("What percentage of voters agreed?", phrases.NUMBER),
        ("Where will they build it?", phrases.PLACE),
        ("In which country is the plant?", phrases.PLACE),
        ("Which river flows through the city?", phrases.NAME),
        ("What company makes the chips?", phrases.PERSON),
        ("Why is Foxconn interested in AI servers?", phrases.OTHER),
        ("How does the engine work?", phrases.OTHER),
        ("What is the capital of Peru?", phrases.OTHER),
    ],
)
def test_answer_type(question: str, kind: str) -> None:
    assert phrases.answer_type(question) == kind


def test_candidates_of_each_kind() -> None:
    text = (
        "The lighthouse was built in 1874 and stands 43 metres tall. It cost $1.2 million; "
        "14,300 visitors came in March 2019, 45% of them in the 16th century exhibition hall "
        "of the University of Chicago at 10:30 pm."
    )
    found = {text[c.start : c.end]: c.kind for c in phrases.candidates(text)}
    assert found["1874"] == phrases.DATE
    assert found["43 metres"] == phrases.NUMBER
    assert found["$1.2 million"] == phrases.NUMBER
    assert found["14,300"] == phrases.NUMBER
    assert found["March 2019"] == phrases.DATE
    assert found["45%"] == phrases.NUMBER
    assert found["16th century"] == phrases.DATE
    assert found["University of Chicago"] == "name"
    assert found["10:30 pm"] == phrases.DATE
    # a sentence-initial common word is not a name
    assert "The" not in found and "It" not in found


@pytest.mark.parametrize(
    ("text", "time"),
    [
        ("Check-out | by 11 am", "11 am"),
        ("Quiet hours | 10.30 pm to 7 am", "10.30 pm"),
        ("The shop opens at 7pm daily.", "7pm"),
        ("Doors open at 9 a.m. sharp.", "9 a.m"),
        ("Boarding closes at 10 AM.", "10 AM"),
    ],
)
def test_clock_times_are_times(text: str, time: str) -> None:
    found = {text[c.start : c.end]: c.kind for c in phrases.candidates(text)}
    assert found.get(time) == phrases.DATE  # "What time is check-out?" asks for one


@pytest.mark.parametrize("quantity", ["500 ml", "75 cl", "250 millilitres", "1.05 litres"])
def test_volumes_are_quantities(quantity: str) -> None:
    text = f"- {quantity} whole milk, warmed"
    found = {text[c.start : c.end]: c.kind for c in phrases.candidates(text)}
    assert found.get(quantity) == phrases.NUMBER  # "How much milk...?" is answered with the unit


def test_temperatures_are_quantities_with_their_unit() -> None:
    text = "The back chamber is kept at 12 °C (54°F). Vitamin C and Plan B were adopted; P is a class."
    found = {text[c.start : c.end]: c.kind for c in phrases.candidates(text)}
    assert found.get("12 °C") == phrases.NUMBER and found.get("54°F") == phrases.NUMBER
    assert "F" not in found, "the F of a temperature was taken as a name"
    assert found.get("Vitamin C") == "name" and found.get("Plan B") == "name"
    assert found.get("P") == "name", "a letter can be a name: the complexity class P"


def test_am_after_a_number_of_things_is_not_a_time() -> None:
    text = "We keep 2 ampoules and 3 ampm adapters cold."
    assert all(c.kind != phrases.DATE for c in phrases.candidates(text))


def test_candidates_offsets_are_exact_in_a_larger_text() -> None:
    text = "Intro line.\n" + SEED
    start = text.index("OpenAI")
    for c in phrases.candidates(text, start, len(text)):
        assert start <= c.start < c.end <= len(text)
    names = [text[c.start : c.end] for c in phrases.candidates(text, start) if c.kind == "name"]
    assert names == ["OpenAI", "Hon Hai Precision Industry Company", "Foxconn", "United States"]


def test_pick_skips_names_the_question_already_has_and_prefers_the_alias() -> None:
    q = "Who is OpenAI partnering with to manufacture AI hardware?"
    c = phrases.pick(SEED, (0, len(SEED)), (0, len(SEED)), phrases.answer_type(q), q)
    assert c is not None and SEED[c.start : c.end] == "Foxconn"


def test_pick_by_type_and_nearness() -> None:
    text = "It was built in 1874. It stands 43 metres tall and has 120 steps."
    q = "How tall is the lighthouse?"
    c = phrases.pick(text, (0, len(text)), (22, len(text)), phrases.answer_type(q), q)
    assert c is not None and text[c.start : c.end] == "43 metres"
    q = "When was the lighthouse built?"
    c = phrases.pick(text, (0, len(text)), (0, 21), phrases.answer_type(q), q)
    assert c is not None and text[c.start : c.end] == "1874"


def test_pick_measures_nearness_wherever_the_window_starts() -> None:
    """The question's words were placed at their offset plus the window's start, so deep in a
    document the candidate nearest to the window's end won ("92 per cent" for a temperature)."""
    sentence = "The front chamber is kept at 10 °C and 92 per cent relative humidity."
    q = "What temperature is the front chamber kept at?"
    for before in ("", "Cheeses ripen in two rooms under the hill. " * 40):
        text = before + sentence + " Nothing else."
        span = (len(before), len(before) + len(sentence))
        c = phrases.pick(text, span, span, phrases.answer_type(q), q)
        assert c is not None and text[c.start : c.end] == "10 °C", (len(before), text[c.start : c.end])


def test_pick_is_near_the_questions_content_words_not_its_function_words() -> None:
    text = "### How much does it cost?\n\nPrices: £89 for the Basic, £129 for the Garden, £179 for the Pro."
    q = "How much does the Pro weather station cost?"
    focus = (text.index("Prices"), len(text))
    c = phrases.pick(text, (0, len(text)), focus, phrases.answer_type(q), q)
    assert c is not None and text[c.start : c.end] == "£179", "'much' and 'does' pulled it to £89"
    text = "The crossing is 11 nautical miles long and takes 55 minutes."
    found = {text[c.start : c.end] for c in phrases.candidates(text)}
    assert {"11 nautical miles", "55 minutes"} <= found


def test_an_irregular_plural_of_the_question_finds_its_singular() -> None:
    text = "Lifejackets | 290 adult, 30 child, 10 infant"
    for q, want in [
        ("How many lifejackets are there for children?", "30"),
        ("How many lifejackets are there for adults?", "290"),
    ]:
        c = phrases.pick(text, (0, len(text)), (0, len(text)), phrases.answer_type(q), q)
        assert c is not None and text[c.start : c.end] == want, q


def test_a_temperature_is_in_degrees() -> None:
    # "Temperature" in the next sentence is nearer to "95 per cent" than to "12 °C"
    text = (
        "The back chamber is kept a little warmer, at 12 °C and 95 per cent relative humidity.\n\n"
        "Temperature and humidity are logged every 15 minutes."
    )
    focus = (0, text.index("\n"))
    for q in ("What temperature is the back chamber?", "How warm is the back chamber?"):
        c = phrases.pick(text, (0, len(text)), focus, phrases.answer_type(q), q)
        assert c is not None and text[c.start : c.end] == "12 °C", q
    # other measures keep any unit
    q = "How humid is the back chamber, in per cent?"
    assert phrases.fits(text, phrases.candidates(text)[1], "number", phrases.words_of(q), True)


def test_a_measure_question_wants_a_unit() -> None:
    text = "The two talk by radio; the range is up to 150 metres, and 3 of them fit in a box."
    for q, expected in [
        ("How far can the unit be from the console?", "150 metres"),
        ("How many units fit in a box?", "3"),
    ]:
        c = phrases.pick(text, (0, len(text)), (0, len(text)), phrases.answer_type(q), q)
        assert c is not None and text[c.start : c.end] == expected, q
    text = "The first thing out of the oven every morning, baked at 230 °C on the 2nd shelf."
    q = "What temperature is the oven for the spelt loaf?"
    c = phrases.pick(text, (0, len(text)), (0, len(text)), phrases.answer_type(q), q)
    assert c is not None and text[c.start : c.end] == "230 °C", "an ordinal is no measure"
    assert phrases.measure_question("What temperature is the cave?")
    assert not phrases.measure_question("How many cheeses are there?")
    bare = [c for c in phrases.candidates("two and 1,104 and 150 metres and £5 and 12 °C")]
    q_words: set[str] = set()
    assert [
        phrases.fits("two and 1,104 and 150 metres and £5 and 12 °C", c, phrases.NUMBER, q_words, True)
        for c in bare
    ] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_pick_returns_none_without_a_candidate_or_for_why_questions() -> None:
    text = "The observatory welcomed many visitors this year."
    assert phrases.pick(text, (0, len(text)), (0, len(text)), phrases.DATE, "When did it open?") is None
    assert phrases.pick(text, (0, len(text)), (0, len(text)), phrases.OTHER, "Why?") is None


@given(st.text(max_size=300))
def test_candidates_are_verbatim_spans_of_any_text(text: str) -> None:
    previous_end = 0
    for c in phrases.candidates(text):
        assert 0 <= c.start < c.end <= len(text)
        assert c.start >= previous_end  # sorted and disjoint
        previous_end = c.end
        assert text[c.start : c.end].strip() == text[c.start : c.end]
