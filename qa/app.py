"""The web app: chat answered with quotes, a source view, document management, rebuilds.

``create_app(settings, embedder)`` returns a ``gr.Blocks`` that can be launched (``launch``,
what ``qa serve`` does) or mounted in another FastAPI app. Only this module imports gradio.

Safety: every piece of document text, file name and message is passed through
``html.escape`` before it goes into HTML that this module builds, and nothing is rendered as
Markdown, so a document holding ``<script>``, ``<img onerror=...>`` or ``![x](http://...)``
shows as plain text and makes no request. Uploads keep only a sanitised base name, must have
an allowed extension and size, and are written inside the corpus folder only.

Concurrency: questions run on the queue (``DEFAULT_CONCURRENCY`` at once); a rebuild runs in
its own thread while questions keep using the previous generation, and ``Index.reload``
switches to the new one when it is live. One rebuild at a time per app (and per index, through
the build lock shared with ``qa index``).
"""

from __future__ import annotations

import html
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
from typing import Any

import gradio as gr

from qa.answering import Answer, Quote
from qa.building import BuildReport, build_index
from qa.documents import FORMATS
from qa.embedding import Embedder, get_embedder
from qa.errors import (
    BuildLockedError,
    IndexNotFoundError,
    InvalidQuestionError,
    ModelMismatchError,
    QAError,
)
from qa.index import Index
from qa.settings import Settings

log = logging.getLogger(__name__)

UPLOAD_TYPES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")
DEFAULT_CONCURRENCY = 4
QUEUE_SIZE = 64
SOURCE_CONTEXT = 800  # characters of document shown on each side of a quote in the source view
MAX_NAME_CHARS = 120
DEFAULT_DOC = "openai-foxconn-ai-hardware.txt"
DEFAULT_EXAMPLES = [
    "Who is OpenAI partnering with to manufacture AI hardware?",
    "What kinds of devices will the collaboration produce?",
    "Why is Foxconn interested in AI servers?",
    "What is the capital of Australia?",
]
STAGE_UNITS = {"parsing": "files", "embedding": "chunks", "writing": "steps"}


class UploadRefusedError(QAError):
    """An uploaded file was refused (type, size or name)."""


class DeleteRefusedError(QAError):
    """A delete request named no document of the corpus."""


# ---------------------------------------------------------------------------------------------
# Pure helpers: names and HTML. Everything that reaches the page goes through ``esc``.
# ---------------------------------------------------------------------------------------------


def esc(text: object) -> str:
    """HTML-escape ``text`` (quotes too, so it is safe inside attributes)."""
    return html.escape(str(text), quote=True)


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


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 2**20:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 2**20:.1f} MiB"


def _cite_label(q: Quote) -> str:
    return q.doc + (f", {q.location}" if q.location else "")


def render_quote_text(q: Quote) -> str:
    """The quote's text, escaped, with the answering sentence in ``<mark>``."""
    a = max(0, min(len(q.text), q.highlight[0] - q.start))
    b = max(a, min(len(q.text), q.highlight[1] - q.start))
    return f"{esc(q.text[:a])}<mark>{esc(q.text[a:b])}</mark>{esc(q.text[b:])}"


def render_answer(answer: Answer, turn: int) -> str:
    """One answer: the answering sentence (or a not-found notice) and the quoted passages."""
    parts: list[str] = []
    if answer.found:
        parts.append(
            f'<div class="qa-found"><span class="qa-label">Answer</span> <q>{esc(answer.answer)}</q></div>'
        )
    else:
        parts.append(
            '<div class="qa-notfound"><strong>Not found in the documents.</strong> '
            f"{esc(answer.message)}</div>"
        )
    if answer.quotes:
        title = "Quoted passages" if answer.found else "Nearest passages (they do not answer the question)"
        parts.append(f'<div class="qa-quotes-title">{esc(title)}</div><ol class="qa-quotes">')
        for i, q in enumerate(answer.quotes):
            where = f"chars {q.start}–{q.end}"
            parts.append(
                '<li class="qa-quote">'
                f'<div class="qa-cite-head"><button type="button" class="qa-cite" data-cite="{turn}:{i}" '
                f'title="Open this passage in its document">[{i + 1}] {esc(_cite_label(q))}</button> '
                f'<span class="qa-meta">{esc(where)} · score {q.score:.2f}</span></div>'
                f'<blockquote class="qa-text">{render_quote_text(q)}</blockquote></li>'
            )
        parts.append("</ol>")
    return "".join(parts)


@dataclass(frozen=True)
class Turn:
    """One question of the session and what came back."""

    question: str
    answer: Answer | None = None
    error: str = ""
    seconds: float = 0.0


def render_transcript(history: Sequence[Turn]) -> str:
    """The whole session as HTML (question bubbles, answers, errors)."""
    if not history:
        return (
            '<div class="qa-empty">Ask a question about your documents. Every answer is a verbatim '
            "quote: the answering sentence is <mark>highlighted</mark>; click a citation to see it "
            "in its document.</div>"
        )
    out = ['<div class="qa-chat">']
    for t, turn in enumerate(history):
        out.append(f'<div class="qa-turn"><div class="qa-question">{esc(turn.question)}</div>')
        out.append('<div class="qa-reply">')
        if turn.answer is not None:
            out.append(render_answer(turn.answer, t))
            out.append(f'<div class="qa-time">answered in {turn.seconds:.2f} s</div>')
        else:
            out.append(f'<div class="qa-error">{esc(turn.error)}</div>')
        out.append("</div></div>")
    out.append("</div>")
    return "".join(out)


def render_source(doc_text: str, q: Quote, context: int = SOURCE_CONTEXT) -> str:
    """The document around quote ``q``: the quote outlined, its answering sentence marked,
    and where it sits (document, location, character offsets)."""
    n = len(doc_text)
    lo, hi = max(0, q.start - context), min(n, q.end + context)
    # Start and end on a line or word boundary when one is near.
    if lo > 0:
        cut = doc_text.find("\n", lo, q.start)
        cut = cut if cut != -1 else doc_text.find(" ", lo, q.start)
        lo = cut + 1 if cut != -1 else lo
    if hi < n:
        cut = doc_text.rfind("\n", q.end, hi)
        cut = cut if cut != -1 else doc_text.rfind(" ", q.end, hi)
        hi = cut if cut != -1 else hi
    a, b = q.highlight
    head = (
        f'<div class="qa-source-head"><strong>{esc(q.doc)}</strong>'
        + (f" · {esc(q.location)}" if q.location else "")
        + f' · <span class="qa-offsets">chars {q.start}–{q.end} of {n}</span>'
        + (
            f" · answering sentence at {esc(q.highlight_location)}"
            if q.highlight_location and q.highlight_location != q.location
            else ""
        )
        + "</div>"
    )
    body = (
        ("…" if lo > 0 else "")
        + esc(doc_text[lo : q.start])
        + '<span class="qa-passage">'
        + esc(doc_text[q.start : a])
        + "<mark>"
        + esc(doc_text[a:b])
        + "</mark>"
        + esc(doc_text[b : q.end])
        + "</span>"
        + esc(doc_text[q.end : hi])
        + ("…" if hi < n else "")
    )
    return f'<div class="qa-source">{head}<div class="qa-source-text">{body}</div></div>'


def render_source_message(message: str) -> str:
    return f'<div class="qa-source"><div class="qa-source-empty">{esc(message)}</div></div>'


SOURCE_PLACEHOLDER = "Click a citation ([1], [2]...) of an answer to see the passage in its document."


@dataclass(frozen=True)
class DocRow:
    """A row of the documents table."""

    id: str
    format: str
    size: int | None
    chunks: int | None
    status: str  # indexed | skipped | new | deleted
    detail: str = ""


def render_documents(rows: Sequence[DocRow], info: str = "") -> str:
    """The documents table (every cell escaped)."""
    top = f'<div class="qa-docs"><p class="qa-docs-info">{esc(info)}</p>' if info else '<div class="qa-docs">'
    if not rows:
        return top + "<p>The corpus folder is empty: add documents below, then rebuild the index.</p></div>"
    out = [
        top + '<table class="qa-doc-table">',
        "<thead><tr><th>Document</th><th>Format</th><th>Size</th><th>Chunks</th><th>Status</th></tr></thead>",
        "<tbody>",
    ]
    for r in rows:
        status = esc(r.status) + (f' <span class="qa-detail">— {esc(r.detail)}</span>' if r.detail else "")
        out.append(
            f'<tr class="qa-status-{esc(r.status)}"><td>{esc(r.id)}</td><td>{esc(r.format)}</td>'
            f"<td>{esc(human_size(r.size)) if r.size is not None else ''}</td>"
            f"<td>{r.chunks if r.chunks is not None else ''}</td><td>{status}</td></tr>"
        )
    out.append("</tbody></table></div>")
    return "".join(out)


def _format(doc_id: str) -> str:
    suffix = Path(doc_id).suffix.lower()
    return FORMATS.get(suffix, suffix.lstrip("."))


def friendly(exc: BaseException) -> str:
    """A one-line message for the page."""
    if isinstance(exc, IndexNotFoundError):
        return "There is no index yet: add documents in the Documents tab and click “Rebuild index”."
    if isinstance(exc, BuildLockedError):
        return "Another build is running on this index (perhaps `qa index`); try again when it finishes."
    if isinstance(exc, ModelMismatchError):
        return f"{exc}. Click “Rebuild index” in the Documents tab to rebuild it with this model."
    if isinstance(exc, InvalidQuestionError):
        msg = str(exc)
        return msg[:1].upper() + msg[1:] + "."
    if isinstance(exc, QAError):
        return str(exc)
    return f"Unexpected error ({type(exc).__name__}); see the server log."


# ---------------------------------------------------------------------------------------------
# The service: index, corpus and rebuilds, shared by every browser session. No gradio here.
# ---------------------------------------------------------------------------------------------


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
    started: float = 0.0
    finished: float = 0.0

    def describe(self) -> str:
        unit = STAGE_UNITS.get(self.stage, "")
        if self.stage == "writing":
            return "writing the index"
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

    def ask(self, question: str, k: int | None = None) -> Answer:
        """Answer ``question`` with ``k`` quotes. Raises QAError subclasses."""
        return self.index().ask(question, k)

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
                return render_source(doc.text, q)
        return render_source_message(
            f"{q.doc} changed or was removed since this answer; ask again to quote the current version."
        )

    def info(self) -> str:
        """One line about the live index."""
        try:
            idx = self.index()
        except QAError as exc:
            return friendly(exc)
        m = idx.manifest
        c = m["counts"]
        return (
            f"Index {idx.generation.name}: {c['documents']} documents, {c['chunks']} chunks, "
            f"{c['skipped']} skipped · model {m['model']['name']} · built {m['created']}"
        )

    # -- corpus ------------------------------------------------------------------------------

    def corpus_files(self) -> list[str]:
        """Corpus-relative POSIX ids of the non-hidden files in the corpus folder."""
        root = self.corpus
        if not root.is_dir():
            return []
        found = []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith("."):
                    found.append((Path(dirpath) / name).relative_to(root).as_posix())
        return found

    def documents(self) -> list[DocRow]:
        """Rows for the documents table: the live manifest merged with the corpus folder."""
        on_disk = set(self.corpus_files())
        rows: list[DocRow] = []
        seen: set[str] = set()
        try:
            manifest = self.index().manifest
        except QAError:
            manifest = {"documents": [], "skipped": []}
        for d in manifest["documents"]:
            seen.add(d["id"])
            if d["id"] in on_disk:
                rows.append(
                    DocRow(d["id"], d["format"], d["size"], d["chunks"], "indexed", d.get("note") or "")
                )
            else:
                rows.append(
                    DocRow(d["id"], d["format"], d["size"], d["chunks"], "deleted", "dropped at next rebuild")
                )
        for s in manifest["skipped"]:
            seen.add(s["id"])
            rows.append(DocRow(s["id"], _format(s["id"]), None, None, "skipped", s["reason"]))
        for doc_id in sorted(on_disk - seen):
            path = self.corpus / doc_id
            try:
                size: int | None = path.stat().st_size
            except OSError:
                size = None
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

    def delete(self, doc_id: str) -> None:
        """Remove the file ``doc_id`` (a corpus-relative id) from the corpus folder.

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
            path.unlink()
        except OSError as exc:
            raise DeleteRefusedError(f"{doc_id}: could not be deleted ({exc.strerror})") from exc

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
        try:
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
            error = friendly(exc)
        except Exception as exc:  # never let the thread die silently
            log.exception("rebuild failed")
            error = friendly(exc)
        with self._lock:
            self._status.running = False
            self._status.report = report
            self._status.error = error
            self._status.finished = time.time()


def render_build_status(status: BuildStatus) -> str:
    if status.running:
        return f'<div class="qa-build">Rebuilding: {esc(status.describe())}…</div>'
    if status.error:
        return f'<div class="qa-build qa-build-error">Rebuild failed: {esc(status.error)}</div>'
    if status.report is not None:
        secs = status.finished - status.started
        return (
            f'<div class="qa-build">Rebuild finished in {secs:.1f} s; chat now answers from '
            f"{esc(status.report.generation)}.<pre>{esc(status.report.summary())}</pre></div>"
        )
    return ""


# ---------------------------------------------------------------------------------------------
# The Blocks.
# ---------------------------------------------------------------------------------------------

_CHAT_JS = """
element.addEventListener('click', function (e) {
  var b = e.target && e.target.closest ? e.target.closest('[data-cite]') : null;
  if (b) { e.preventDefault(); trigger('click', {cite: b.getAttribute('data-cite')}); }
});
"""

_MARK_CSS = """
mark { background: #fde68a; color: #1f2937; padding: 0 0.1em; border-radius: 2px; }
"""

_CHAT_CSS = (
    _MARK_CSS
    + """
.qa-empty { color: var(--body-text-color-subdued); padding: 1em; }
.qa-turn { margin: 0 0 1.4em 0; }
.qa-question { margin: 0 0 0.6em 20%; padding: 0.5em 0.9em; border-radius: 10px;
  background: var(--color-accent-soft); white-space: pre-wrap; }
.qa-reply { padding: 0.2em 0.2em; }
.qa-found { font-size: 1.05em; margin-bottom: 0.4em; }
.qa-label { font-weight: 600; color: var(--color-accent); margin-right: 0.3em; }
.qa-notfound { padding: 0.5em 0.8em; border-radius: 8px; margin-bottom: 0.4em;
  background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary); }
.qa-error { padding: 0.5em 0.8em; border-radius: 8px; color: var(--error-text-color);
  background: var(--error-background-fill); border: 1px solid var(--error-border-color); }
.qa-quotes-title { font-size: 0.85em; color: var(--body-text-color-subdued); margin: 0.4em 0 0.2em 0; }
ol.qa-quotes { list-style: none; padding: 0; margin: 0; }
li.qa-quote { margin: 0 0 0.7em 0; padding: 0; }
.qa-cite-head { font-size: 0.85em; }
button.qa-cite { cursor: pointer; border: none; background: none; padding: 0; font: inherit;
  color: var(--link-text-color); text-decoration: underline; }
.qa-meta { color: var(--body-text-color-subdued); margin-left: 0.4em; }
blockquote.qa-text { white-space: pre-wrap; margin: 0.25em 0 0 0; padding: 0.4em 0.8em;
  border-left: 3px solid var(--color-accent); background: var(--background-fill-secondary);
  font-style: normal; quotes: none; }
.qa-time { font-size: 0.75em; color: var(--body-text-color-subdued); }
"""
)

_SOURCE_CSS = (
    _MARK_CSS
    + """
.qa-source-head { font-size: 0.9em; margin-bottom: 0.5em; }
.qa-offsets { color: var(--body-text-color-subdued); }
.qa-source-text { white-space: pre-wrap; font-size: 0.92em; line-height: 1.5; }
.qa-passage { background: var(--color-accent-soft); box-decoration-break: clone;
  -webkit-box-decoration-break: clone; }
.qa-source-empty { color: var(--body-text-color-subdued); }
"""
)

_DOCS_CSS = """
table.qa-doc-table { width: 100%; border-collapse: collapse; font-size: 0.92em; }
table.qa-doc-table th, table.qa-doc-table td { text-align: left; padding: 0.3em 0.6em;
  border-bottom: 1px solid var(--border-color-primary); word-break: break-word; }
.qa-detail { color: var(--body-text-color-subdued); }
tr.qa-status-skipped td, tr.qa-status-deleted td { color: var(--body-text-color-subdued); }
.qa-docs-info { font-size: 0.9em; color: var(--body-text-color-subdued); }
.qa-build pre { white-space: pre-wrap; font-size: 0.85em; }
.qa-build-error { color: var(--error-text-color); }
"""


def _citation_choices(history: Sequence[Turn]) -> list[tuple[str, str]]:
    """Dropdown choices for the citations of the last answer."""
    for t in range(len(history) - 1, -1, -1):
        ans = history[t].answer
        if ans is not None:
            return [
                (f"[{i + 1}] {_cite_label(q)} · score {q.score:.2f}", f"{t}:{i}")
                for i, q in enumerate(ans.quotes)
            ]
    return []


def _quote_at(history: Sequence[Turn], cite: str | None) -> Quote | None:
    try:
        t, i = (int(x) for x in str(cite).split(":"))
        ans = history[t].answer
        return ans.quotes[i] if ans is not None and t >= 0 and i >= 0 else None
    except (ValueError, IndexError):
        return None


def build_ui(service: QAService) -> gr.Blocks:
    """The Blocks for ``service`` (``create_app`` is the usual entry point)."""
    settings = service.settings
    examples = DEFAULT_EXAMPLES if (service.corpus / DEFAULT_DOC).is_file() else []

    def ask_turn(question: str, k: float, history: list[Turn] | None) -> tuple[list[Turn], Turn | None]:
        history = list(history or [])
        q = " ".join((question or "").split())
        if not q:
            return history, None
        t0 = time.perf_counter()
        try:
            turn = Turn(q, service.ask(q, int(k)), seconds=time.perf_counter() - t0)
        except QAError as exc:
            turn = Turn(q, error=friendly(exc))
        except Exception as exc:
            log.exception("question failed")
            turn = Turn(q, error=friendly(exc))
        history.append(turn)
        return history, turn

    def on_ask(question: str, k: float, history: list[Turn] | None) -> tuple[Any, ...]:
        history, turn = ask_turn(question, k, history)
        if turn is None:
            gr.Warning("Type a question first.")
            return (gr.skip(), history, gr.skip(), gr.skip())
        return (
            render_transcript(history),
            history,
            "",
            gr.update(choices=_citation_choices(history), value=None),
        )

    def on_clear() -> tuple[Any, ...]:
        return (
            render_transcript([]),
            [],
            gr.update(choices=[], value=None),
            render_source_message(SOURCE_PLACEHOLDER),
        )

    def on_cite(history: list[Turn] | None, evt: gr.EventData) -> str | Any:
        data = getattr(evt, "_data", None) or {}
        cite = data.get("cite") if isinstance(data, dict) else None
        if cite is None:
            return gr.skip()
        q = _quote_at(history or [], cite)
        return service.source(q) if q is not None else render_source_message(SOURCE_PLACEHOLDER)

    def on_pick(cite: str | None, history: list[Turn] | None) -> str:
        q = _quote_at(history or [], cite)
        return service.source(q) if q is not None else render_source_message(SOURCE_PLACEHOLDER)

    def refresh_docs() -> tuple[Any, ...]:
        return (
            render_documents(service.documents()),
            gr.update(choices=service.corpus_files(), value=None),
            esc(service.info()),
        )

    def on_upload(files: list[str] | str | None) -> tuple[Any, ...]:
        paths = [files] if isinstance(files, str) else list(files or [])
        saved, refused = [], []
        for p in paths:
            try:
                saved.append(service.save_upload(p))
            except UploadRefusedError as exc:
                refused.append(str(exc))
        lines = []
        if saved:
            lines.append(
                f"Added {', '.join(saved)}. Click “Rebuild index” to make "
                + ("them" if len(saved) > 1 else "it")
                + " searchable."
            )
        lines += [f"Refused {r}" for r in refused]
        msg = "".join(
            f'<div class="{"qa-build-error" if line.startswith("Refused") else "qa-build"}">{esc(line)}</div>'
            for line in lines
        )
        return (msg, None, *refresh_docs())

    def on_delete(doc_id: str | None) -> tuple[Any, ...]:
        try:
            service.delete(doc_id or "")
            msg = (
                f'<div class="qa-build">Deleted {esc(doc_id)} from the corpus; '
                "it leaves the index at the next rebuild.</div>"
            )
        except DeleteRefusedError as exc:
            msg = f'<div class="qa-build-error">{esc(exc)}</div>'
        return (msg, *refresh_docs())

    def on_rebuild(progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        run = service.start_rebuild()
        if run is None:
            msg = '<div class="qa-build-error">A rebuild is already running; wait for it to finish.</div>'
            return (msg, *refresh_docs())
        progress(0.0, desc="starting")
        while True:
            st = service.status()
            if not st.running:
                break
            waiting_embed = st.stage == "parsing" and st.done >= st.total  # first batch not done yet
            frac = st.done / st.total if st.total and not waiting_embed else 0.0
            progress(frac, desc=f"Rebuilding: {st.describe()}")
            time.sleep(0.15)
        return (render_build_status(st), *refresh_docs())

    def api_ask(question: str, k: int = settings.top_k) -> dict[str, Any]:
        """Answer a question from the indexed documents: returns the Answer as JSON
        (question, found, answer, message, generation, quotes[doc, location, start, end, text,
        score, highlight])."""
        try:
            return service.ask(question, int(k)).to_dict()
        except QAError as exc:
            raise gr.Error(friendly(exc), print_exception=False) from None

    with gr.Blocks(
        title="qa — answers quoted from your documents",
        analytics_enabled=False,
        delete_cache=(3600, 3600),  # uploaded temp copies: the corpus keeps its own
    ) as demo:
        history = gr.State([])
        gr.HTML(
            "<h2 style='margin:0.2em 0'>qa — answers quoted from your documents</h2>"
            "<p style='margin:0'>Every answer is a verbatim passage from your files, with the answering "
            "sentence highlighted. Nothing leaves this machine.</p>",
            js_on_load=None,
        )
        info = gr.HTML(esc(service.info()), js_on_load=None, elem_id="qa-info")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"), gr.Row(equal_height=False):
                with gr.Column(scale=3):
                    transcript = gr.HTML(
                        render_transcript([]),
                        js_on_load=_CHAT_JS,
                        css_template=_CHAT_CSS,
                        elem_id="qa-transcript",
                        max_height=640,
                        autoscroll=True,
                        container=True,
                        padding=True,
                    )
                    with gr.Row():
                        question = gr.Textbox(
                            placeholder="Ask a question about your documents…",
                            show_label=False,
                            lines=1,
                            max_lines=4,
                            max_length=settings.max_question_chars,
                            scale=5,
                            elem_id="qa-question",
                            autofocus=True,
                        )
                        ask_btn = gr.Button("Ask", variant="primary", scale=1, elem_id="qa-ask")
                    with gr.Row():
                        k = gr.Slider(
                            1,
                            10,
                            value=min(settings.top_k, 10),
                            step=1,
                            label="Passages to show",
                            elem_id="qa-k",
                            scale=3,
                        )
                        clear_btn = gr.Button("Clear chat", size="sm", scale=1)
                    if examples:
                        gr.Examples(examples=examples, inputs=question, label="Example questions")
                with gr.Column(scale=2):
                    cite_pick = gr.Dropdown(
                        choices=[],
                        value=None,
                        label="Source view — citations of the last answer",
                        interactive=True,
                        elem_id="qa-cite-pick",
                    )
                    source = gr.HTML(
                        render_source_message(SOURCE_PLACEHOLDER),
                        js_on_load=None,
                        css_template=_SOURCE_CSS,
                        elem_id="qa-source",
                        max_height=640,
                        container=True,
                        padding=True,
                    )
            with gr.Tab("Documents", id="documents"):
                docs_table = gr.HTML(
                    render_documents(service.documents()),
                    js_on_load=None,
                    css_template=_DOCS_CSS,
                    elem_id="qa-docs",
                )
                with gr.Row():
                    rebuild_btn = gr.Button("Rebuild index", variant="primary", elem_id="qa-rebuild")
                    refresh_btn = gr.Button("Refresh", size="sm")
                build_out = gr.HTML(
                    "", js_on_load=None, css_template=_DOCS_CSS, elem_id="qa-build", min_height=70
                )
                with gr.Row():
                    with gr.Column():
                        upload = gr.File(
                            label=f"Add documents ({' '.join(UPLOAD_TYPES)}; "
                            f"up to {settings.max_file_mb:g} MiB each)",
                            file_count="multiple",
                            file_types=list(UPLOAD_TYPES),
                            type="filepath",
                            elem_id="qa-upload",
                        )
                    with gr.Column():
                        delete_pick = gr.Dropdown(
                            choices=service.corpus_files(),
                            value=None,
                            label="Delete a document from the corpus",
                            elem_id="qa-delete-pick",
                        )
                        delete_btn = gr.Button("Delete", variant="stop", elem_id="qa-delete")
                upload_out = gr.HTML("", js_on_load=None, css_template=_DOCS_CSS, elem_id="qa-upload-out")

        private: dict[str, Any] = {"api_visibility": "private"}
        ask_outputs = [transcript, history, question, cite_pick]
        ask_btn.click(on_ask, [question, k, history], ask_outputs, **private)
        question.submit(on_ask, [question, k, history], ask_outputs, **private)
        clear_btn.click(on_clear, None, [transcript, history, cite_pick, source], **private)
        transcript.click(on_cite, [history], source, show_progress="hidden", **private)
        cite_pick.input(on_pick, [cite_pick, history], source, show_progress="hidden", **private)
        doc_outputs = [docs_table, delete_pick, info]
        upload.upload(on_upload, upload, [upload_out, upload, *doc_outputs], **private)
        delete_btn.click(on_delete, delete_pick, [upload_out, *doc_outputs], **private)
        rebuild_btn.click(on_rebuild, None, [build_out, *doc_outputs], show_progress_on=build_out, **private)
        refresh_btn.click(refresh_docs, None, doc_outputs, **private)
        demo.load(refresh_docs, None, doc_outputs, show_progress="hidden", **private)
        gr.api(api_ask, api_name="ask")
    demo.queue(default_concurrency_limit=DEFAULT_CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


def create_app(settings: Settings | None = None, embedder: Embedder | None = None) -> gr.Blocks:
    """The web app for ``settings`` (default ``Settings()``), not launched.

    ``embedder`` replaces the configured model (tests pass a fake). If no index exists yet the
    app still starts; the Documents tab's “Rebuild index” builds one.
    """
    settings = settings or Settings()
    if embedder is not None:
        return build_ui(QAService(settings, embedder, embedder))
    query = get_embedder(settings.model, settings.threads, settings.batch_size)
    build = get_embedder(settings.model, settings.threads, settings.batch_size, role="build")
    return build_ui(QAService(settings, query, build))


def launch(
    app: gr.Blocks,
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
) -> Any:
    """Serve ``app`` on ``host:port`` with qa's limits (upload size from ``max_file_mb``).

    Never shares through a public tunnel. Returns what ``Blocks.launch`` returns.
    """
    return app.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        max_file_size=int(settings.max_file_mb * 2**20),
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        show_error=True,
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
    )
