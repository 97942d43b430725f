"""Conversation: follow-up questions answered with the earlier turns, without a language model.

Peers rewrite a follow-up with an LLM ("Where will they build it?" -> "Where will OpenAI and
Foxconn build the AI hardware?"). qa has no LLM; it decides from the question whether the turn
leans on the earlier ones, carries their topic into the searched text, and shows exactly what
it searched for (``Answer.query``).

A turn *depends* on the conversation when it has few words of its own (at most
``MAX_OWN_TERMS`` terms) and a word pointing back ("they", "it", "there", "these"), or starts as
an ellipsis ("and in 1990?", "what about ..."), or has at most ``SHORT_TERMS`` terms. A
question with more words of its own keeps them: measured on follow-up conversations made
from SQuAD, adding the topic helped questions of up to four terms and cost recall on longer
ones (0.760 vs 0.729 follow-up recall@1; docs/tuning.md section 12). A question of up to
``MAX_REPLACE_TERMS`` terms with a pronoun it does not resolve itself only gets that pronoun
replaced by a sure topic name (0.774), and a change of topic is rarely touched (2% of them).

The *topic* is the name the earlier searches share (named in the most of them, then the most
common in the index): it takes the place of the question's pronoun when it is clearly the
topic ("Which network broadcasted it?" -> "Which network broadcasted Super Bowl 50?"), and is
added after the question otherwise. A question with almost no words of its own (at most
``FEW_TERMS``, like "Where will they build it?") also gets the last answer's phrase and the
rarest words of the previous search. The text searched is then ranked like any question.
Which words are a name matters as much: a capitalised word that only opens a question is not
one ("Upon", "Scientists"), a shorter name inside a longer one named as often is the longer
one ("Super Bowl 50", not "the Super Bowl"), and "he" for "Nikola Tesla Museum" is Nikola
Tesla. Tried and dropped, because they did not pay on those conversations: names of the last answer
for every question, fusing the question as asked with the rewritten one, a bonus for the
documents quoted in the previous turn, choosing the name by the question's own passages or by
how often the earlier quotes name it, and common nouns ("teacher") as topics.

Non-goals: coreference resolution, rewriting the question's other words, remembering across
sessions.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qa import phrases
from qa.answering import Answer

if TYPE_CHECKING:
    from qa.index import Index

# Words that point back to something the question does not name itself.
_POINTERS = re.compile(
    r"\b(?:it|its|itself|they|them|their|theirs|themselves|he|him|his|himself|she|her|hers|herself|"
    r"these|those|there|this(?=\s+(?:is|was|has|had|one|company|person|man|woman|place|city|"
    r"country|year|event|thing|group|team|project|product|device|book|work|law|war|period)\b|\s*\?))\b",
    re.IGNORECASE,
)
_ELLIPSIS = re.compile(
    r"^\W*(?:and|but|also|or|what about|how about|and what about|what else|same for|and then|then)\b",
    re.IGNORECASE,
)
SHORT_TERMS = 1  # a question with at most this many content terms is read with its history
MAX_OWN_TERMS = 4  # a question with more terms of its own stands alone (docs/tuning.md section 12)
TOPIC_NAMES = 1  # names carried forward (one more for a question with few words of its own)
FEW_TERMS = 2  # a question with at most this many content terms carries more of the topic
TOPIC_TERMS = 3  # rare terms carried forward when the earlier turns named nothing
MAX_REPLACE_TERMS = 8  # longer questions: only a pronoun is replaced, by a clear topic name


def depends(question: str, terms: list[str]) -> bool:
    """Whether ``question`` (with BM25 ``terms``) leans on earlier turns: at most
    ``MAX_OWN_TERMS`` terms and a word pointing back ("they", "it", "there", "these"), an
    ellipsis ("and in 1990?", "what about ...") or at most ``SHORT_TERMS`` terms.

    Examples: "Where will they build it?" -> True; "And in 1990?" -> True; "What is the
    capital of Peru?" -> False; "When did Tesla sell his patents to Westinghouse?" -> False
    (seven terms of its own: it stands alone).
    """
    if len(terms) > MAX_OWN_TERMS:
        return False
    return bool(_ELLIPSIS.search(question) or len(terms) <= SHORT_TERMS or _POINTERS.search(question))


# A topic name is singular ("Super Bowl 50", "Nikola Tesla"): singular pronouns are replaced
# before plural ones.
_PRONOUNS = [
    (re.compile(r"\b(?:it|he|she|him)\b", re.IGNORECASE), ""),
    (re.compile(r"\b(?:its|his)\b", re.IGNORECASE), "'s"),
    (re.compile(r"\b(?:they|them)\b", re.IGNORECASE), ""),
    (re.compile(r"\b(?:their)\b", re.IGNORECASE), "'s"),
]


_OBJECT_PRONOUN = re.compile(r"(?:him|them|it)\b", re.IGNORECASE)


def search_text(
    question: str, terms: list[str], history: list[tuple[str, Answer]], idf_of: Callable[[str], float]
) -> str:
    """What to search for ``question`` (with BM25 ``terms``) after ``history`` (oldest first).

    A question that ``depends`` on the earlier turns is searched with their topic (``rewrite``).
    A longer one (up to ``MAX_REPLACE_TERMS`` terms) keeps its own words, except that a
    pronoun the question itself does not resolve (``unresolved_pronoun``) takes the topic's
    name when the topic is clear: "What coach left the Broncos after the season prior to him?"
    after two turns about Super Bowl 50 -> "... prior to Super Bowl 50?". Anything else is
    searched as asked.
    """
    if not history:
        return question
    if depends(question, terms):
        return rewrite(question, topic(history, question, len(terms), idf_of))
    if len(terms) <= MAX_REPLACE_TERMS and unresolved_pronoun(question):
        found = topic(history, question, len(terms), idf_of)
        if found.names:
            return rewrite(question, Topic(found.names[:1]))
    return question


def unresolved_pronoun(question: str) -> bool:
    """Whether ``question`` has a pronoun that must refer to an earlier turn.

    A possessive or subject pronoun after a name of the question refers to that name ("How did
    Luther describe his time?", "What did Tesla do after he left Edison?": no). "him" and "them"
    cannot refer to a name of their own clause ("Which NFL team represented the NFC at him?":
    yes), and a question that has just said a name rarely calls it "it": these always point back
    (measured: docs/tuning.md section 12).
    """
    hits = [m.start() for p, _ in _PRONOUNS if (m := p.search(question)) is not None]
    if not hits:
        return False
    first = min(hits)
    if _OBJECT_PRONOUN.match(question, first):
        return True
    return not any(c.kind == "name" and c.end <= first for c in phrases.candidates(question))


def rewrite(question: str, found: Topic) -> str:
    """The text to search for ``question`` with its topic: the first pronoun is replaced by the
    topic's first name, as a person would have written the question alone, and the other names
    and words follow. Example: "Which network broadcasted it in the U.S.?" with the topic
    "Super Bowl 50" -> "Which network broadcasted Super Bowl 50 in the U.S.?". Words that are
    not names (the rarest words of the last search) never replace a pronoun."""
    if found.names:
        first, rest = found.names[0], [*found.names[1:], *found.words]
        for pattern, suffix in _PRONOUNS:
            match = pattern.search(question)
            if match is not None:
                name = _person_in(first) if _PERSONAL.fullmatch(match.group(0)) else first
                text = question[: match.start()] + name + suffix + question[match.end() :]
                return " ".join([text, *rest])
    return " ".join([question, *found.names, *found.words])


_PERSONAL = re.compile(r"he|she|him|his|her", re.IGNORECASE)
# Last words that make a name a place or an institution, not a person ("Nikola Tesla Museum").
_NOT_PERSON = re.compile(
    r"\s+(?:Museum|University|College|Institute|School|Academy|Stadium|Arena|Church|Cathedral|"
    r"Hospital|Company|Corporation|Airport|Station|Street|Avenue|Square|Park|Bridge|Prize|Award|"
    r"Foundation|Society|Centre|Center|Library|Hall|Building|Tower|Theatre|Theater|House|Memorial)$"
)


def _person_in(name: str) -> str:
    """The person a "he" or "she" can mean in ``name``: "Nikola Tesla" in "Nikola Tesla Museum";
    ``name`` itself when it is not named after someone that way."""
    head = _NOT_PERSON.search(name)
    return name[: head.start()] if head is not None and head.start() > 0 else name


def _names(name: str, text: str) -> bool:
    """Whether ``text`` names ``name`` as whole words ("AI" is not named by "OpenAI")."""
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) is not None


def _topic_names(text: str, searches: list[str]) -> list[str]:
    """The names of ``text`` that can be a conversation's topic. A capitalised word that starts
    the question is part of a name only when a search also writes it capitalised elsewhere:
    "Upon", "Scientists" or "Photosynthesis" open questions without naming anything, and
    "Following the French Revolution, ..." names "French Revolution"."""
    lead = len(text) - len(text.lstrip())
    names = []
    for c in phrases.candidates(text):
        if c.kind != "name":
            continue
        name = text[c.start : c.end]
        if c.start == lead:
            first = name.split()[0]
            elsewhere = re.compile(rf"(?<=[\w,;:] ){re.escape(first)}(?!\w)")
            if not any(elsewhere.search(t) for t in searches):
                if " " not in name:
                    continue
                rest = _JOINED.match(name, len(first))
                if rest is not None:  # "Acessing the Amazon" -> "Amazon"; "Nikola Tesla" stays
                    name = name[rest.end() :]
        names.append(name)
    return names


_JOINED = re.compile(r"(?:\s+" + phrases.NAME_JOINERS + r")+\s+")


@dataclass(frozen=True)
class Topic:
    """What a dependent question is searched with: ``names`` (the first one takes the place of
    the question's pronoun) and other ``words`` added after it."""

    names: tuple[str, ...] = ()
    words: tuple[str, ...] = ()


def topic(
    history: list[tuple[str, Answer]], question: str, own_terms: int, idf_of: Callable[[str], float]
) -> Topic:
    """The topic of ``history`` (oldest first) for a dependent ``question`` with ``own_terms``
    content terms.

    The topic is a name of the earlier searches (their questions, or the text searched when it
    carried a topic itself): the name found in the most of them (also inside a longer name,
    "Nikola Tesla" in "Nikola Tesla Museum"), the most common one in the index (lowest
    ``idf_of``) among equals. "Super Bowl 50" is named in turn 1 and carried in turn 2's search,
    so it wins over "Sun Life Stadium", named once. A question with almost no words of its own
    ("Where will they build it?", at most ``FEW_TERMS``) gets more: a second name, the last
    answer's phrase, and the rarest words of the previous search ("manufacture", "hardware"),
    as does any question when the earlier turns named nothing. Words the question already has
    are skipped.
    """
    if not history:
        return Topic()
    asked = phrases.words_of(question)
    few = own_terms <= FEW_TERMS
    searches = [past_answer.query or past_question for past_question, past_answer in history]
    found = {name for text in searches for name in _topic_names(text, searches)}
    seen = {n: sum(_names(n, text) for text in searches) for n in found if not phrases.words_of(n) <= asked}
    # a name inside a longer one named as often is that one, said shorter ("the Super Bowl",
    # then "Super Bowl 50"): the longer, more specific name stands for both
    seen = {n: c for n, c in seen.items() if not any(m != n and seen[m] == c and _names(n, m) for m in seen)}
    names = sorted(seen, key=lambda n: (-seen[n], idf_of(n), n))[: TOPIC_NAMES + few]
    # the name takes the pronoun's place only when it is clearly the topic: named in more
    # searches than any other, or the only name there is; otherwise it is searched beside
    runner_up = max((seen[n] for n in seen if names and n != names[0]), default=0)
    sure = bool(names) and seen[names[0]] > runner_up
    if names and not few:
        return Topic(tuple(names)) if sure else Topic((), tuple(names))
    last_question, last = history[-1]
    if few and last.found and last.phrase is not None and last.phrase.text not in names:
        names.append(last.phrase.text)
    searched = last.query or last_question
    taken = set().union(*(phrases.words_of(n) for n in names)) if names else set()
    words = [w.strip("?.,;:!\"'()") for w in searched.split()]
    words = [
        w
        for w in dict.fromkeys(words)
        if len(w) > 2 and w.lower() not in asked | taken | phrases.COMMON_WORDS and idf_of(w) > 0
    ]
    rarest = tuple(sorted(words, key=lambda w: -idf_of(w))[:TOPIC_TERMS])
    return Topic(tuple(names), rarest) if sure else Topic((), (*names, *rarest))


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation: what was asked and what came back."""

    question: str
    answer: Answer


class Conversation:
    """A chat with an Index: follow-up questions are searched with the earlier turns' topic.

    Cheap (a few strings per turn); keeps the last ``max_turns`` turns. Safe to use from one
    thread while the index reloads in another: each ``ask`` answers from one generation.
    Create with ``Index.conversation()``.
    """

    def __init__(self, index: Index, max_turns: int = 8) -> None:
        self.index = index
        self._turns: deque[Turn] = deque(maxlen=max_turns)
        self._lock = threading.Lock()

    @property
    def turns(self) -> tuple[Turn, ...]:
        """The remembered turns, oldest first."""
        with self._lock:
            return tuple(self._turns)

    def reset(self) -> None:
        """Start over: forget every turn."""
        with self._lock:
            self._turns.clear()

    def ask(self, question: str, k: int | None = None, *, use_history: bool = True) -> Answer:
        """Answer ``question`` in the light of the earlier turns (``use_history=False``: alone).

        The Answer's ``query`` is the text searched and ``used_history`` says whether the
        earlier turns changed it. The turn is remembered either way.

        Raises:
            InvalidQuestionError: as ``Index.ask``.
        """
        with self._lock:
            history = [(t.question, t.answer) for t in self._turns]
        answer = self.index.ask(question, k, history=history if use_history else None)
        with self._lock:
            self._turns.append(Turn(answer.question, answer))
        return answer
