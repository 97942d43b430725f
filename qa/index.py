"""The Index: a loaded, verified generation that answers questions and follows rebuilds.

``Index.ask`` takes one generation snapshot per question, so an answer is always consistent
with a single generation even while ``reload()`` swaps in a new one from another thread.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from qa import answering, retrieval, store
from qa.answering import Answer
from qa.embedding import Embedder, get_query_embedder
from qa.errors import InvalidQuestionError
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
        self.scoring = answering.Scoring(depth=settings.rerank_depth, min_score=settings.min_score)

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
        gen, warnings = store.open_live(root, embedder.fingerprint)
        import faiss

        # One OpenMP thread: single queries measured fastest that way on a busy 2-core machine.
        faiss.omp_set_num_threads(settings.threads)
        return cls(root, gen, embedder, settings, warnings)

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
            if store.read_pointer(self.root) == self._gen.name:
                return False
            gen, warnings = store.open_live(self.root, self.embedder.fingerprint)
            if gen.name == self._gen.name:
                gen.close()
                return False
            self._gen, self.warnings = gen, warnings
            return True

    def ask(self, question: str, k: int | None = None) -> Answer:
        """Answer ``question`` with up to ``k`` verbatim quotes (default ``settings.top_k``).

        Raises:
            InvalidQuestionError: empty or longer than ``settings.max_question_chars``.
        """
        q = " ".join(question.split()) if isinstance(question, str) else ""
        if not q:
            raise InvalidQuestionError("the question is empty: type a question")
        if len(q) > self.settings.max_question_chars:
            raise InvalidQuestionError(
                f"the question has {len(q)} characters; the limit is "
                f"{self.settings.max_question_chars} (QA_MAX_QUESTION_CHARS)"
            )
        k = self.settings.top_k if k is None else k
        if not 1 <= k <= 100:
            raise InvalidQuestionError(f"k must be between 1 and 100, got {k}")
        gen = self._gen  # one snapshot for the whole question
        t0 = time.perf_counter()
        query_vec = self.embedder.encode([q])[0]
        t1 = time.perf_counter()
        hits = retrieval.search(
            gen,
            query_vec,
            retrieval.tokenize([q])[0],
            max(self.settings.candidates, k),
            self.settings.dense_weight,
            self.settings.rrf_k,
        )
        t2 = time.perf_counter()
        result = answering.answer(q, gen, hits, query_vec, k, self.scoring)
        t3 = time.perf_counter()
        result.timings.update({"embed": t1 - t0, "search": t2 - t1, "answer": t3 - t2})
        return result


def ask(
    question: str, index: Path | str | None = None, k: int | None = None, settings: Settings | None = None
) -> Answer:
    """One-shot convenience: load the index at ``index`` and answer ``question``."""
    return Index.load(index, settings).ask(question, k)
