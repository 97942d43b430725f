"""qa: answers from your documents as verbatim, checkable quotes.

    >>> import qa
    >>> qa.build_index(corpus="corpus", index="index")      # doctest: +SKIP
    >>> answer = qa.Index.load("index").ask("Who is OpenAI partnering with?")  # doctest: +SKIP
    >>> answer.quotes[0].text                                # doctest: +SKIP

Importing qa loads no model: the embedding model is loaded on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from pathlib import Path

from qa.answering import Answer, Phrase, Quote
from qa.building import BuildReport
from qa.building import build_index as _build_index
from qa.conversation import Conversation
from qa.errors import QAError
from qa.index import Index, ask
from qa.settings import Settings

__all__ = [
    "Answer",
    "BuildReport",
    "Conversation",
    "Index",
    "Phrase",
    "QAError",
    "Quote",
    "Settings",
    "__version__",
    "ask",
    "build_index",
]


def build_index(
    corpus: Path | str | None = None,
    index: Path | str | None = None,
    *,
    full: bool = False,
    settings: Settings | None = None,
    **kwargs: object,
) -> BuildReport:
    """Build or update the index of ``corpus`` in ``index`` (defaults from Settings).

    Only new and changed documents are parsed, and only chunks whose text has no stored
    vector are embedded; ``full=True`` redoes everything. See ``qa.building.build_index``
    for ``embedder`` and ``progress``.

    Raises:
        CorpusError, BuildLockedError, BuildError (all subclasses of QAError).
    """
    return _build_index(
        settings,
        corpus=Path(corpus) if corpus is not None else None,
        index=Path(index) if index is not None else None,
        full=full,
        **kwargs,  # type: ignore[arg-type]
    )
