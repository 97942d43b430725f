"""The Index: a loaded, verified generation that answers questions and follows rebuilds.

``Index.ask`` takes one generation snapshot per question, so an answer is always consistent
with a single generation even while ``reload()`` swaps in a new one from another thread.
"""

from __future__ import annotations

import dataclasses
import numbers
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qa import answering, conversation, retrieval, store, verification
from qa.answering import Answer
from qa.conversation import Conversation
from qa.embedding import Embedder, get_query_embedder
from qa.errors import InvalidQuestionError
from qa.sanitize import clean_question
from qa.settings import Settings


class Index:
    """A built index opened for questions. Thread-safe.

    Use ``Index.load(path)``; ``ask(question)`` answers; ``reload()`` picks up a new
    generation after a rebuild (the web app calls it; CLI users rarely need it).
    """

    def __init__(
        self, root: Path, gen: store.Generation, embedder: Embedder, settings: Settings, warnings: list[str]
    ) -> None:
        self.root = root
        self._gen = gen
        self.embedder = embedder
        self.settings = settings
        self.warnings = warnings
        self._reload_lock = threading.Lock()
        # (CURRENT, generation folders) when the loaded generation was chosen: while both stay
        # the same, reload() has nothing new to verify (a missing CURRENT included).
        self._chosen_from: tuple[str | None, tuple[str, ...]] | None = None
        self.scoring = answering.Scoring(
            depth=settings.rerank_depth,
            min_score=settings.min_score,
            min_confidence=settings.min_confidence,
            support_ratio=settings.support_ratio,
        )
        self.verifier = (
            verification.load(settings.verifier) if settings.verifier else answering.default_verifier()
        )

    @classmethod
    def load(
        cls,
        path: Path | str | None = None,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
    ) -> Index:
        """Open the live generation of the index at ``path`` (default ``settings.index``).

        Falls back to the previous good generation when the live one fails verification
        (``warnings`` says so).

        Raises:
            IndexNotFoundError: nothing built at ``path``.
            IndexCorruptError: no generation passes verification.
            ModelMismatchError: the index was built with another model.
        """
        settings = settings or Settings()
        root = Path(path) if path is not None else settings.index
        embedder = embedder or get_query_embedder(settings)  # numpy when it can: no torch import
        state = store.read_pointer(root), tuple(store.generation_names(root))
        gen, warnings = store.open_live(root, embedder.fingerprint)
        import faiss

        # One OpenMP thread: single queries measured fastest that way on a busy 2-core machine.
        faiss.omp_set_num_threads(settings.threads)
        index = cls(root, gen, embedder, settings, warnings)
        index._chosen_from = state
        return index

    @property
    def generation(self) -> store.Generation:
        """The generation answering questions now."""
        return self._gen

    @property
    def manifest(self) -> dict[str, Any]:
        return self._gen.manifest

    def reload(self) -> bool:
        """Switch to the live generation if it changed; return whether it did.

        The old generation is not closed: questions already running on it finish on it.
        """
        with self._reload_lock:
            state = self._folder_state()
            if state[0] == self._gen.name or state == self._chosen_from:
                return False
            self._chosen_from = state  # also when the load below fails: not retried per question
            gen, warnings = store.open_live(self.root, self.embedder.fingerprint)
            if gen.name == self._gen.name:
                gen.close()
                return False
            self._gen, self.warnings = gen, warnings
            return True

    def _folder_state(self) -> tuple[str | None, tuple[str, ...]]:
        return store.read_pointer(self.root), tuple(store.generation_names(self.root))

    def conversation(self, max_turns: int = 8) -> Conversation:
        """A new conversation: follow-up questions are searched with the earlier turns' topic
        (see ``qa.conversation``)."""
        return Conversation(self, max_turns)

    def ask(
        self, question: str, k: int | None = None, history: Sequence[tuple[str, Answer]] | None = None
    ) -> Answer:
        """Answer ``question`` with up to ``k`` verbatim quotes (default ``settings.top_k``).

        ``history`` holds the earlier turns of a conversation, oldest first, as (question,
        answer) pairs; ``Index.conversation()`` keeps it for you. When the question leans on
        them ("Where will they build it?") the topic of those turns is searched too and
        ``Answer.query`` says what was searched. Undecodable input (surrogate code points,
        e.g. from undecodable command-line bytes) is replaced with U+FFFD first
        (``qa.sanitize.clean_question``), for every caller.

        Raises:
            InvalidQuestionError: empty or longer than ``settings.max_question_chars``, or
                ``k`` is not a whole number between 1 and 100.
        """
        q = " ".join(clean_question(question).split()) if isinstance(question, str) else ""
        if not q:
            raise InvalidQuestionError("the question is empty: type a question")
        if len(q) > self.settings.max_question_chars:
            raise InvalidQuestionError(
                f"the question has {len(q)} characters; the limit is "
                f"{self.settings.max_question_chars} (QA_MAX_QUESTION_CHARS)"
            )
        k = self.settings.top_k if k is None else k
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):  # 2.7 or True is not a count
            raise InvalidQuestionError(f"k must be a whole number between 1 and 100, not {type(k).__name__}")
        if not 1 <= k <= 100:
            raise InvalidQuestionError(f"k must be between 1 and 100, got {k}")
        gen = self._gen  # one snapshot for the whole question
        t0 = time.perf_counter()
        terms = retrieval.tokenize([q])[0]
        query = conversation.search_text(q, terms, list(history or ()), lambda t: self._idf_of(gen, t))
        vector = self.embedder.encode([query])[0]
        t1 = time.perf_counter()
        hits = retrieval.search(
            gen,
            vector,
            terms if query == q else retrieval.tokenize([query])[0],
            max(self.settings.candidates, k),
            self.settings.dense_weight,
            self.settings.rrf_k,
        )
        t2 = time.perf_counter()
        result = answering.answer(q, gen, hits, vector, k, self.scoring, self.verifier, query)
        t3 = time.perf_counter()
        result = dataclasses.replace(result, query=query, used_history=query != q)
        result.timings.update({"embed": t1 - t0, "search": t2 - t1, "answer": t3 - t2})
        return result

    @staticmethod
    def _idf_of(gen: store.Generation, text: str) -> float:
        """Mean IDF in ``gen`` of the BM25 terms of ``text`` (0 when it has none)."""
        idf = answering.idf_weights(gen)
        terms = retrieval.tokenize([text])[0]
        return sum(idf.get(t, idf.top) for t in terms) / len(terms) if terms else 0.0


def ask(
    question: str, index: Path | str | None = None, k: int | None = None, settings: Settings | None = None
) -> Answer:
    """One-shot convenience: load the index at ``index`` and answer ``question``."""
    return Index.load(index, settings).ask(question, k)
