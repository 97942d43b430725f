"""Follow-up questions (qa.conversation) on hand-made conversations, with the fake embedder."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

import qa
from qa import conversation
from qa.answering import Answer, Phrase, Quote
from qa.retrieval import tokenize
from tests.conftest import FakeEmbedder


@pytest.mark.parametrize(
    ("question", "depends"),
    [
        ("Where will they build it?", True),
        ("What will they make there?", True),
        ("And in 1990?", True),
        ("What about the second one?", True),
        ("When was it founded?", True),
        ("Why?", True),
        ("Who is OpenAI partnering with to manufacture AI hardware?", False),
        ("What is the capital of Peru?", False),
        ("When did Tesla sell his patents to Westinghouse?", False),  # words enough of its own
        ("How many beds does the Maria Memorial Health Institute have?", False),
    ],
)
def test_depends(question: str, depends: bool) -> None:
    assert conversation.depends(question, tokenize([question])[0]) is depends


def answered(question: str, text: str, phrase: str = "") -> Answer:
    quote = Quote("a.txt", "line 1", 0, len(text), text, 2.0, (0, len(text)))
    said = Phrase(phrase, text.index(phrase), text.index(phrase) + len(phrase)) if phrase else None
    return Answer(question, True, text, (quote,), "gen-000001", phrase=said)


def test_topic_is_the_name_the_earlier_searches_share() -> None:
    history = [
        (
            "What was the entity that kept Miami's Sun Life Stadium from hosting Super Bowl 50?",
            answered("q", "x"),
        ),
        ("Which network broadcasted it?", answered("q", "x")),
    ]
    # turn 2's search carried the topic: "Super Bowl 50" is named twice, "Sun Life Stadium" once
    history[1] = (
        history[1][0],
        dataclasses.replace(history[1][1], query="Which network broadcasted Super Bowl 50?"),
    )
    found = conversation.topic(history, "Who headlined its halftime show?", 5, lambda t: 1.0)
    assert found.names == ("Super Bowl 50",) and found.words == ()
    assert (
        conversation.rewrite("Who headlined its halftime show?", found)
        == "Who headlined Super Bowl 50's halftime show?"
    )
    # a name inside a longer one counts for both
    history = [
        ("Where is the Nikola Tesla Museum?", answered("q", "x")),
        ("When was Nikola Tesla born?", answered("q", "x")),
    ]
    assert conversation.topic(history, "What did he invent?", 3, lambda t: 1.0).names == ("Nikola Tesla",)


def test_a_capitalised_word_that_only_opens_a_question_is_no_topic() -> None:
    # "Upon" and "Scientists" are capitalised because they start the question: they name
    # nothing, so "oxygen"'s conversation has no sure name to put in place of "it"
    for opener in ("Upon combustion, what does oxygen form?", "Scientists found what in oxygen?"):
        found = conversation.topic(
            [(opener, answered("q", "x"))], "What colour is it as a liquid?", 3, lambda t: 1.0
        )
        assert found.names == (), opener
    # a name that starts the question is still a name when a search writes it elsewhere too
    history = [
        ("Warsaw has how many parks?", answered("q", "x")),
        ("What river flows through Warsaw?", answered("q", "x")),
    ]
    assert conversation.topic(history, "When was it founded?", 2, lambda t: 1.0).names[0] == "Warsaw"
    # and a name of several words is a name wherever it stands
    history = [("Nikola Tesla was born where?", answered("q", "x"))]
    assert conversation.topic(history, "What did he invent?", 3, lambda t: 1.0).names == ("Nikola Tesla",)
    # but a word that opens the question before "the"/"of" is not part of the name after it
    history = [("Following the French Revolution, who ruled?", answered("q", "x"))]
    assert conversation.topic(history, "When did it end?", 3, lambda t: 1.0).names == ("French Revolution",)


def test_a_shorter_name_inside_a_longer_one_is_the_longer_one() -> None:
    # "the Super Bowl" and "Super Bowl 50" in one question: the specific name is the topic
    history = [("Who had the fewest yards in the Super Bowl as of Super Bowl 50?", answered("q", "x"))]
    # the shorter name is the more common one in the index: without the rule it would win
    idf = {"Super Bowl": 1.0, "Super Bowl 50": 2.0}
    found = conversation.topic(history, "Where did it take place?", 3, lambda t: idf.get(t, 3.0))
    assert found.names[0] == "Super Bowl 50"
    assert conversation.rewrite("Where did it take place?", conversation.Topic(found.names[:1])) == (
        "Where did Super Bowl 50 take place?"
    )


def test_he_or_she_is_the_person_a_place_is_named_after() -> None:
    museum = conversation.Topic(("Nikola Tesla Museum",))
    assert (
        conversation.rewrite("In what year did he emigrate to the United States?", museum)
        == "In what year did Nikola Tesla emigrate to the United States?"
    )
    assert (
        conversation.rewrite("What was his first invention?", museum)
        == "What was Nikola Tesla's first invention?"
    )
    # "it" is the museum itself, and a name that is not a place stays whole
    assert conversation.rewrite("When was it built?", museum) == "When was Nikola Tesla Museum built?"
    assert conversation.rewrite("When was he born?", conversation.Topic(("Martin Luther",))) == (
        "When was Martin Luther born?"
    )
    # a place named after nobody keeps its name
    assert conversation.rewrite("Who ran it?", conversation.Topic(("Museum",))) == "Who ran Museum?"


def test_a_question_with_few_words_carries_more_of_the_topic() -> None:
    history = [
        (
            "Who is OpenAI partnering with to manufacture AI hardware?",
            answered(
                "q",
                "OpenAI has a partnership with Hon Hai Precision Industry Company, better known as Foxconn.",
                "Foxconn",
            ),
        )
    ]
    idf = {"OpenAI": 3.0, "AI": 1.0, "partnering": 4.0, "manufacture": 3.5, "hardware": 3.2}
    found = conversation.topic(history, "Where will they build it?", 1, lambda t: idf.get(t, 0.0))
    # no name is clearly the topic (each named once): none takes the pronoun's place
    assert found.names == ()
    assert found.words == ("AI", "OpenAI", "Foxconn", "partnering", "manufacture", "hardware")
    text = conversation.rewrite("Where will they build it?", found)
    assert text == "Where will they build it? AI OpenAI Foxconn partnering manufacture hardware"
    # named in both earlier searches: OpenAI is the topic and replaces "it"
    twice = [*history, ("What will OpenAI make?", answered("q", "OpenAI will make servers.", "servers"))]
    found = conversation.topic(twice, "Where will they build it?", 1, lambda t: idf.get(t, 0.0))
    assert found.names[0] == "OpenAI"
    assert conversation.rewrite("Where will they build it?", found).startswith(
        "Where will they build OpenAI?"
    )
    # names the question already has are not added again
    assert "OpenAI" not in conversation.topic(history, "Where will OpenAI build it?", 2, lambda t: 1.0).names


def test_without_names_rare_words_are_added_never_put_in_place_of_a_pronoun() -> None:
    history = [("what do penguins eat in winter?", Answer("q", False, "", (), "g"))]
    idf = {"penguins": 5.0, "winter": 3.0, "eat": 2.0}
    found = conversation.topic(history, "and in summer?", 1, lambda t: idf.get(t, 0.0))
    assert found.names == () and found.words == ("penguins", "winter", "eat")
    assert conversation.rewrite("What do they eat?", found) == "What do they eat? penguins winter eat"


@pytest.mark.parametrize(
    ("question", "unresolved"),
    [
        ("Which network broadcasted it in the U.S.?", True),
        ("How did Luther describe his time in the order?", False),  # "his" is Luther's
        ("What did Tesla do after he left Edison?", False),
        ("Which NFL team represented the NFC at him?", True),  # an object pronoun points back
        ("What is the capital of Peru?", False),
    ],
)
def test_unresolved_pronoun(question: str, unresolved: bool) -> None:
    assert conversation.unresolved_pronoun(question) is unresolved


def test_a_longer_question_only_gets_its_pronoun_replaced() -> None:
    history = [("When was Super Bowl 50 played?", answered("q", "Super Bowl 50 was played in 2016."))]
    idf = lambda t: 1.0  # noqa: E731

    def searched(question: str, past: list[tuple[str, Answer]] = history) -> str:
        return conversation.search_text(question, tokenize([question])[0], past, idf)

    # seven terms of its own: it stands alone, but "him" takes the topic's name
    assert (
        searched("What coach left the Broncos after the season prior to him?")
        == "What coach left the Broncos after the season prior to Super Bowl 50?"
    )
    # its pronoun is resolved inside the question, or it has none: searched as asked
    question = "How did Peyton Manning describe his last season with the Broncos?"
    assert searched(question) == question
    assert searched("What is the capital of Peru?") == "What is the capital of Peru?"
    # too many words of its own for history to be worth it
    long = "What coach left the Denver football team after the regular season and the playoffs before it?"
    assert searched(long) == long
    # no clear topic (two names, each named once): the pronoun stays
    unsure = [("Did Miami's Sun Life Stadium bid for Super Bowl 50?", answered("q", "x"))]
    question = "Which network broadcasted it in the United States?"
    assert searched(question, unsure) == question
    assert searched(question, []) == question


DOCS = {
    "penguins.txt": (
        "Penguins of Antarctica\n\n"
        "Emperor penguins breed on the sea ice of Antarctica during the winter. "
        "They huddle together to stay warm. "
        "They eat fish, krill and squid caught in the Southern Ocean.\n"
    ),
    "volcanoes.txt": (
        "Volcanoes of Iceland\n\n"
        "Iceland has about thirty active volcanic systems. "
        "They erupt every few years, most often under glaciers. "
        "The largest eruption in history was the Laki fissure in 1783.\n"
    ),
}


@pytest.fixture
def index(tmp_path: Path) -> qa.Index:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    fake = FakeEmbedder()
    s = qa.Settings(corpus=corpus, index=tmp_path / "index")
    qa.build_index(settings=s, embedder=fake)
    return qa.Index.load(s.index, s, embedder=fake)


def test_follow_up_uses_history_and_says_what_it_searched(index: qa.Index) -> None:
    chat = index.conversation()
    first = chat.ask("Where do Emperor penguins breed?")
    assert first.quotes[0].doc == "penguins.txt" and not first.used_history and first.query == first.question
    alone = index.ask("What do they eat?")
    follow = chat.ask("What do they eat?")
    assert follow.used_history and follow.query != follow.question
    assert follow.query == "What do Emperor eat?"  # the topic's name in place of the pronoun
    assert follow.quotes[0].doc == "penguins.txt"
    assert "krill" in follow.quotes[0].text
    assert not alone.used_history and alone.query == "What do they eat?"
    assert [t.question for t in chat.turns] == ["Where do Emperor penguins breed?", "What do they eat?"]
    # the same question without history, on demand
    plain = chat.ask("What do they eat?", use_history=False)
    assert not plain.used_history and plain.query == plain.question


def test_a_change_of_topic_is_not_spoiled(index: qa.Index) -> None:
    chat = index.conversation()
    chat.ask("Where do Emperor penguins breed?")
    switch = chat.ask("When was the largest eruption of the Laki fissure in Iceland?")
    assert not switch.used_history
    assert switch.quotes[0].doc == "volcanoes.txt"
    assert (
        switch.to_dict()
        == index.ask("When was the largest eruption of the Laki fissure in Iceland?").to_dict()
    )


def test_reset_forgets(index: qa.Index) -> None:
    chat = index.conversation()
    chat.ask("Where do Emperor penguins breed?")
    chat.reset()
    assert chat.turns == ()
    assert not chat.ask("What do they eat?").used_history


def test_turns_are_capped_and_threads_keep_their_own_conversation(index: qa.Index) -> None:
    chat = index.conversation(max_turns=2)
    for q in ("Where do Emperor penguins breed?", "What do they eat?", "How do they stay warm?"):
        chat.ask(q)
    assert [t.question for t in chat.turns] == ["What do they eat?", "How do they stay warm?"]
    errors: list[BaseException] = []

    def talk(first: str, doc: str) -> None:
        try:
            c = index.conversation()
            c.ask(first)
            for _ in range(5):
                answer = c.ask("How often do they erupt?" if doc == "volcanoes.txt" else "What do they eat?")
                assert answer.used_history
        except BaseException as exc:  # collected: assertions in threads must reach the test
            errors.append(exc)

    threads = [
        threading.Thread(target=talk, args=("Which volcanic systems does Iceland have?", "volcanoes.txt")),
        threading.Thread(target=talk, args=("Where do Emperor penguins breed?", "penguins.txt")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
