"""The web app's service: the loaded index, the corpus folder, uploads, deletes and rebuilds.

Shared by every browser session and thread-safe; no gradio here, so it is tested directly.
Uploads keep only a sanitised base name, must have an allowed extension and size, and are
written inside the corpus folder only. One rebuild at a time per app (and per index, through
the build lock shared with ``qa index``); questions keep using the previous generation until
``Index.reload`` switches to the new one.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qa.answering import Answer, Quote
from qa.building import BuildReport, build_index
from qa.documents import list_files
from qa.embedding import Embedder
from qa.errors import BuildLockedError, InvalidQuestionError, QAError
from qa.index import Index
from qa.pageview import PageRenderer, page_view
from qa.rendering import DocRow, _format, friendly, human_size, render_source, render_source_message
from qa.settings import Settings
from qa.trash import TrashEntry, list_trash, move_to_trash, purge, restore

log = logging.getLogger(__name__)

MAX_HISTORY = 8  # earlier turns a conversation keeps (and an API client may send)
UPLOAD_TYPES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")
MAX_NAME_CHARS = 120
STAGE_UNITS = {"parsing": "files", "embedding": "chunks", "writing": "steps"}


class UploadRefusedError(QAError):
    """An uploaded file was refused (type, size or name)."""


class DeleteRefusedError(QAError):
    """A delete request named no document of the corpus."""


# ---------------------------------------------------------------------------------------------


_NAME_BAD = re.compile(r"[^\w.\-+,() ]")


def safe_upload_name(name: str) -> str:
    """The corpus file name for an upload called ``name``.

    Keeps the base name only (any folder part, ``/`` or ``\\``, is dropped), removes control
    characters, replaces anything but letters, digits and ``._-+,() `` with ``_``, strips
    leading dots and spaces (no hidden files, no ``..``) and lower-cases the extension.

    Raises:
        UploadRefusedError: no usable name is left or the extension is not allowed.
    """
    base = unicodedata.normalize("NFC", name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if not unicodedata.category(ch).startswith("C"))
    base = _NAME_BAD.sub("_", base).strip(" .")
    stem, ext = os.path.splitext(base)
    ext = ext.lower()
    if ext not in UPLOAD_TYPES:
        raise UploadRefusedError(
            f"{name!r}: file type {ext or '(none)'!r} is not accepted; allowed: {', '.join(UPLOAD_TYPES)}"
        )
    stem = stem.strip(" .")[:MAX_NAME_CHARS]
    if not stem:
        raise UploadRefusedError(f"{name!r}: no usable file name")
    return stem + ext


@dataclass
class BuildStatus:
    """What the background build is doing (a copy is handed out)."""

    run: int = 0
    running: bool = False
    stage: str = ""
    done: int = 0
    total: int = 0
    report: BuildReport | None = None
    error: str = ""
    locked: bool = False  # refused: another process holds the build lock
    started: float = 0.0
    finished: float = 0.0

    def describe(self) -> str:
        unit = STAGE_UNITS.get(self.stage, "")
        if self.stage == "writing":
            return "writing the index"
        if self.stage == "loading model":
            return "loading the embedding model"
        if not self.stage:
            return "starting"
        if self.stage == "parsing" and self.done >= self.total:
            return f"parsed {self.total}/{self.total} files; embedding new chunks"
        return f"{self.stage} {self.done}/{self.total} {unit}"


@dataclass
class QAService:
    """Owns the loaded Index, the corpus folder and the rebuild thread. Thread-safe."""

    settings: Settings
    embedder: Embedder
    # Builds embed with their own model instance so questions never wait for a build's batch.
    build_embedder: Embedder | None = None
    _index: Index | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _status: BuildStatus = field(default_factory=BuildStatus, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _pages: PageRenderer = field(default_factory=PageRenderer, init=False)  # PDF page views

    @property
    def corpus(self) -> Path:
        return self.settings.corpus

    # -- questions ---------------------------------------------------------------------------

    def index(self) -> Index:
        """The loaded index, following rebuilds made here or by ``qa index``.

        Raises:
            IndexNotFoundError (and the other load errors of ``Index.load``).
        """
        with self._lock:
            idx = self._index
        if idx is None:
            idx = Index.load(self.settings.index, self.settings, embedder=self.embedder)
            with self._lock:
                if self._index is None:
                    self._index = idx
                idx = self._index
        else:
            try:
                idx.reload()
            except QAError as exc:  # a bad new generation: keep answering from the loaded one
                log.warning("reload failed, still serving %s: %s", idx.generation.name, exc)
        return idx

    def ask(
        self, question: str, k: int | None = None, history: Sequence[tuple[str, Answer]] | None = None
    ) -> Answer:
        """Answer ``question`` with ``k`` quotes, in the light of ``history`` (earlier turns of
        the conversation, oldest first). Raises QAError subclasses."""
        return self.index().ask(question, k, history=history)

    def replay(self, questions: Sequence[str], k: int | None = None) -> list[tuple[str, Answer]]:
        """The history an API client means by a list of earlier questions: each asked in turn,
        in the light of those before it (at most ``MAX_HISTORY`` of the latest).

        Raises:
            InvalidQuestionError: ``questions`` is not a list of strings.
        """
        if not isinstance(questions, list | tuple) or not all(isinstance(q, str) for q in questions):
            raise InvalidQuestionError("history must be a list of earlier questions (strings)")
        history: list[tuple[str, Answer]] = []
        for q in list(questions)[-MAX_HISTORY:]:
            if q.strip():
                history.append((q, self.ask(q, k, history)))
        return history

    def source(self, q: Quote) -> str:
        """The source-view HTML of quote ``q`` in the live generation."""
        try:
            gen = self.index().generation
        except QAError as exc:
            return render_source_message(friendly(exc))
        for info in gen.documents:
            if info.id == q.doc:
                doc = gen.document(info.row)
                if doc.text[q.start : q.end] != q.text:
                    break
                page = ""
                if info.format == "pdf":  # the quote on its rendered page, above the text view
                    where = (self.corpus / info.id, info.hash, info.id, doc.text, doc.locations)
                    page = page_view(self._pages, *where, q.start, q.end, q.highlight)
                return page + render_source(doc.text, q)
        return render_source_message(
            f"{q.doc} changed or was removed since this answer; ask again to quote the current version."
        )

    def info(self) -> str:
        """One line about the live index."""
        try:
            idx = self.index()
        except QAError as exc:
            return friendly(exc)
        m = idx.generation.meta
        c = m.counts
        return (
            f"Index {idx.generation.name}: {c.documents} documents, {c.chunks} chunks, "
            f"{c.skipped} skipped · model {m.model.name} · built {m.created}"
        )

    # -- corpus ------------------------------------------------------------------------------

    def corpus_files(self) -> list[str]:
        """Corpus-relative POSIX ids of the non-hidden files in the corpus folder."""
        return [rel for rel, _ in list_files(self.corpus, self.settings.max_depth)]

    def documents(self) -> list[DocRow]:
        """Rows for the documents table: the live manifest merged with the corpus folder."""
        sizes = dict(list_files(self.corpus, self.settings.max_depth))
        on_disk = set(sizes)
        rows: list[DocRow] = []
        seen: set[str] = set()
        try:
            meta = self.index().generation.meta
            documents, skipped = meta.documents, meta.skipped
        except QAError:
            documents, skipped = [], []
        for d in documents:
            seen.add(d.id)
            if d.id in on_disk:
                rows.append(DocRow(d.id, d.format, d.size, d.chunks, "indexed", d.note))
            else:
                rows.append(DocRow(d.id, d.format, d.size, d.chunks, "deleted", "dropped at next rebuild"))
        for s in skipped:
            seen.add(s.id)
            rows.append(DocRow(s.id, _format(s.id), None, None, "skipped", s.reason))
        for doc_id in sorted(on_disk - seen):
            size = sizes[doc_id]
            rows.append(DocRow(doc_id, _format(doc_id), size, None, "new", "indexed at next rebuild"))
        return sorted(rows, key=lambda r: r.id)

    def save_upload(self, path: Path | str, name: str | None = None) -> str:
        """Copy an uploaded file into the corpus folder; return its corpus id.

        ``name`` is the name the browser gave (default: ``path``'s base name). An existing
        file of the same name is replaced (the next rebuild re-indexes it).

        Raises:
            UploadRefusedError: bad type, too large, unusable name or unreadable.
        """
        src = Path(path)
        target_name = safe_upload_name(name if name is not None else src.name)
        limit = int(self.settings.max_file_mb * 2**20)
        try:
            size = src.stat().st_size
        except OSError as exc:
            raise UploadRefusedError(f"{target_name}: cannot read the upload ({exc.strerror})") from exc
        if size > limit:
            raise UploadRefusedError(
                f"{target_name}: {human_size(size)} is over the {self.settings.max_file_mb:g} MiB limit"
            )
        if size == 0:
            raise UploadRefusedError(f"{target_name}: the file is empty")
        root = self.corpus
        root.mkdir(parents=True, exist_ok=True)
        target = root / target_name
        if target.resolve().parent != root.resolve() or (target.exists() and not target.is_file()):
            raise UploadRefusedError(f"{target_name}: cannot be written inside the corpus folder")
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=root)  # hidden: builds ignore it
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                copied = 0
                while chunk := inp.read(1 << 20):
                    copied += len(chunk)
                    if copied > limit:
                        raise UploadRefusedError(
                            f"{target_name}: over the {self.settings.max_file_mb:g} MiB limit"
                        )
                    out.write(chunk)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except OSError as exc:
            raise UploadRefusedError(f"{target_name}: could not be saved ({exc.strerror})") from exc
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target_name

    def delete(self, doc_id: str) -> TrashEntry:
        """Move the file ``doc_id`` (a corpus-relative id) from the corpus folder to the trash
        (``qa.trash``: restorable for ``settings.trash_hours``).

        Raises:
            DeleteRefusedError: ``doc_id`` names nothing deletable inside the corpus.
        """
        parts = Path(doc_id or "").parts
        if (
            not doc_id
            or Path(doc_id).is_absolute()
            or any(p in ("..", ".") for p in parts)
            or any(unicodedata.category(ch).startswith("C") for ch in doc_id)
        ):
            raise DeleteRefusedError(f"{doc_id!r} is not a document of the corpus")
        root = self.corpus.resolve()
        path = self.corpus / doc_id
        if not path.parent.resolve().is_relative_to(root) or doc_id not in self.corpus_files():
            raise DeleteRefusedError(f"{doc_id!r} is not a document of the corpus")
        try:
            return move_to_trash(self.corpus, self.settings.index, doc_id)
        except QAError as exc:
            raise DeleteRefusedError(str(exc)) from exc

    def trash(self) -> list[TrashEntry]:
        """Deleted documents still restorable, newest first (expired ones are removed)."""
        if self.settings.trash_hours > 0:  # 0 = kept until the next rebuild empties it
            purge(self.settings.index, self.settings.trash_hours)
        return list_trash(self.settings.index)

    def restore(self, key: str) -> str:
        """Put trash entry ``key`` back in the corpus; return its document id.

        Raises:
            TrashError: no such entry, or a file of that name is in the corpus again.
        """
        return restore(self.corpus, self.settings.index, key)

    # -- rebuilds ----------------------------------------------------------------------------

    def status(self) -> BuildStatus:
        with self._lock:
            return BuildStatus(**vars(self._status))

    def start_rebuild(self, full: bool = False) -> int | None:
        """Start an incremental (or ``full``) build in a background thread.

        Returns the run number, or None when a build started here is still running.
        """
        with self._lock:
            if self._status.running:
                return None
            run = self._status.run + 1
            self._status = BuildStatus(run=run, running=True, started=time.time())
            self._thread = threading.Thread(
                target=self._build, args=(full,), name=f"qa-build-{run}", daemon=True
            )
            self._thread.start()
            return run

    def wait_build(self, timeout: float | None = None) -> BuildStatus:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.status()

    def _progress(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            self._status.stage, self._status.done, self._status.total = stage, done, total

    def _build(self, full: bool) -> None:
        report: BuildReport | None = None
        error = ""
        locked = False
        try:
            purge(self.settings.index, self.settings.trash_hours)
            report = build_index(
                self.settings,
                full=full,
                embedder=self.build_embedder or self.embedder,
                progress=self._progress,
            )
            with self._lock:
                idx = self._index
            if idx is None:
                self.index()
            else:
                idx.reload()
        except QAError as exc:
            error, locked = friendly(exc), isinstance(exc, BuildLockedError)
        except Exception as exc:  # never let the thread die silently
            log.exception("rebuild failed")
            error = friendly(exc)
        with self._lock:
            self._status.running = False
            self._status.report = report
            self._status.error = error
            self._status.locked = locked
            self._status.finished = time.time()
