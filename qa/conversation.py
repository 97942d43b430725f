"""Conversation: follow-up questions answered with the earlier turns, without a language model.

Peers rewrite a follow-up with an LLM ("Where will they build it?" -> "Where will OpenAI and
Foxconn build the AI hardware?"). qa has no LLM; it decides from the question itself whether
the turn leans on the earlier ones, carries their topic forward as search terms, and shows
exactly what it searched for (``Answer.query``).

A turn *depends* on the conversation when it has a pronoun or determiner with nothing in the
question to refer to ("they", "it", "there", "these"), starts as an ellipsis ("and in 1990?",
"what about ...") or has at most ``SHORT_TERMS`` content terms of its own. A question that
names its own subject and has none of these stands alone: history is not used, so a change of
topic is never spoiled.

For a dependent turn the *topic* comes from the previous turns, newest first: the names in
their questions ("OpenAI", "Nikola Tesla"), then the names of the last answer, then the rarest
terms of the previous question when it named nothing. The searched text is the question plus
the topic; the question as asked is searched too, and both rankings are fused (reciprocal
ranks), so a topic word that misleads costs little. Passages of the documents quoted in the
previous answer get a small bonus in that fusion. Rules and weights were chosen on follow-up
conversations made from SQuAD articles (``qa eval followups``; docs/tuning.md section 12).

Non-goals: coreference resolution, rewriting the question's words, remembering across
sessions.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qa import phrases
from qa.answering import Answer
from qa.retrieval import Hit
from qa.store import Generation

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
TOPIC_QUESTION_NAMES = 3  # names of earlier questions carried forward (at least; a question may have more)
TOPIC_NAMES = 4  # names carried forward in all, with those of the last answer
TOPIC_TERMS = 3  # rare terms carried forward when the earlier turns named nothing
ASKED_WEIGHT = 0.5  # weight of the question as asked beside the question with its topic
PREVIOUS_DOCUMENT_BONUS = 0.002  # fused-score bonus of passages from the last answer's documents


def prefer_documents(gen: Generation, hits: list[Hit], last: Answer) -> list[Hit]:
    """``hits`` re-sorted after adding ``PREVIOUS_DOCUMENT_BONUS`` to the passages of the
    documents the last answer quoted (its supporting quotes; all of them when nothing was
    found). Reciprocal-rank scores of neighbouring ranks differ by about 0.0003-0.0005, so the
    bonus moves a passage up a few places, not from the bottom to the top."""
    quoted = {q.doc for q in last.quotes if q.supports or not last.found}
    if not quoted:
        return hits
    rows = {info.row for info in gen.documents if info.id in quoted}
    boosted = [
        dataclasses.replace(h, score=h.score + PREVIOUS_DOCUMENT_BONUS)
        if int(gen.chunks[h.row][0]) in rows
        else h
        for h in hits
    ]
    return sorted(boosted, key=lambda h: (-h.score, h.row))


def depends(question: str, terms: list[str]) -> bool:
    """Whether ``question`` (with BM25 ``terms``) leans on earlier turns.

    Examples: "Where will they build it?" -> True; "And in 1990?" -> True; "What is the
    capital of Peru?" -> False; "When did Tesla sell his patents?" -> False (the pronoun
    follows a name of the question's own).
    """
    if _ELLIPSIS.search(question) or len(terms) <= SHORT_TERMS:
        return True
    pointer = _POINTERS.search(question)
    if pointer is None:
        return False
    names = [c for c in phrases.candidates(question) if c.kind == "name"]
    # "When did Tesla sell his patents?": the pronoun refers to a name the question gives itself.
    return not any(c.end <= pointer.start() for c in names)


def topic(
    history: list[tuple[str, Answer]], question: str, rare_words: Callable[[str], list[str]]
) -> list[str]:
    """Words to add to a dependent ``question``, from ``history`` (oldest first).

    Names of the earlier questions (newest first), then the last answer's phrase and names;
    rare terms of the previous question only when no name was found. Words already in the
    question are skipped.
    """
    asked = phrases.words_of(question)
    picked: list[str] = []

    def add(name: str) -> None:
        if not phrases.words_of(name) <= asked and name not in picked:
            picked.append(name)

    for past_question, past_answer in reversed(history):
        searched = past_answer.query or past_question
        for c in phrases.candidates(searched):
            if c.kind == "name":
                add(searched[c.start : c.end])
        if len(picked) >= TOPIC_QUESTION_NAMES:
            break
    if history and history[-1][1].found:
        last = history[-1][1]
        if last.phrase is not None:  # what the last answer said: "Foxconn"
            add(last.phrase.text)
        for c in phrases.candidates(last.answer):
            if c.kind == "name" and len(picked) < TOPIC_NAMES:
                add(last.answer[c.start : c.end])
    if not picked and history:
        past = history[-1][1].query or history[-1][0]
        for word in rare_words(past)[:TOPIC_TERMS]:
            add(word)
    return picked


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
