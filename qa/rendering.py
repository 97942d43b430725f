"""Rendering: answers, quotes, sources and document lists as HTML for the web app.

Safety: every piece of document text, file name and message goes through ``esc``
(``html.escape``) before it is put into HTML, and nothing is rendered as Markdown, so a
document holding ``<script>``, ``<img onerror=...>`` or ``![x](http://...)`` shows as plain
text and makes no request. Pure functions: no gradio, no I/O.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qa.answering import Answer, Phrase, Quote
from qa.documents import FORMATS
from qa.errors import (
    BuildLockedError,
    IndexNotFoundError,
    InvalidQuestionError,
    ModelMismatchError,
    QAError,
)

SOURCE_CONTEXT = 800  # characters of document shown on each side of a quote in the source view


def esc(text: object) -> str:
    """HTML-escape ``text`` (quotes too, so it is safe inside attributes)."""
    return html.escape(str(text), quote=True)


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 2**20:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 2**20:.1f} MiB"


def _cite_label(q: Quote) -> str:
    return q.doc + (f", {q.location}" if q.location else "")


def render_quote_text(q: Quote, phrase: Phrase | None = None, highlight: bool = True) -> str:
    """The quote's text, escaped, with the answer in ``<mark>`` and the answer phrase (when it
    lies inside the mark) in ``<strong>``; ``highlight=False`` renders it plain (a nearest
    passage, or one that does not support the answer)."""
    if not highlight:
        return esc(q.text)
    a = max(0, min(len(q.text), q.highlight[0] - q.start))
    b = max(a, min(len(q.text), q.highlight[1] - q.start))
    inner = esc(q.text[a:b])
    if phrase is not None and q.highlight[0] <= phrase.start < phrase.end <= q.highlight[1]:
        pa, pb = phrase.start - q.start, phrase.end - q.start
        inner = (
            f'{esc(q.text[a:pa])}<strong class="qa-phrase">{esc(q.text[pa:pb])}</strong>{esc(q.text[pb:b])}'
        )
    return f"{esc(q.text[:a])}<mark>{inner}</mark>{esc(q.text[b:])}"


def _render_quote(q: Quote, turn: int, i: int, phrase: Phrase | None, highlight: bool) -> str:
    where = f"chars {q.start}–{q.end}"
    css = "qa-quote" if highlight else "qa-quote qa-nearest"
    return (
        f'<li class="{css}">'
        f'<div class="qa-cite-head"><button type="button" class="qa-cite" data-cite="{turn}:{i}" '
        f'title="Open this passage in its document">[{i + 1}] {esc(_cite_label(q))}</button> '
        f'<span class="qa-meta">{esc(where)} · score {q.score:.2f}</span></div>'
        f'<blockquote class="qa-text">{render_quote_text(q, phrase, highlight)}</blockquote></li>'
    )


def render_answer(answer: Answer, turn: int) -> str:
    """One answer: the phrase and answer sentence(s) with the confidence (or a not-found
    notice), the supporting quotes highlighted, the other passages collapsed under "More
    passages", and nearest passages (not found) in a neutral style, never highlighted."""
    parts: list[str] = []
    if answer.found:
        said = (
            f'<strong class="qa-phrase">{esc(answer.phrase.text)}</strong> — '
            if answer.phrase is not None
            else ""
        )
        parts.append(
            f'<div class="qa-found"><span class="qa-label">Answer</span> {said}<q>{esc(answer.answer)}</q> '
            f'<span class="qa-confidence">confidence {answer.confidence:.2f}</span></div>'
        )
    else:
        parts.append(
            '<div class="qa-notfound"><strong>Not found in the documents.</strong> '
            f"{esc(answer.message)} "
            f'<span class="qa-confidence">confidence {answer.confidence:.2f}</span></div>'
        )
    supporting = [i for i, q in enumerate(answer.quotes) if answer.found and q.supports]
    others = [i for i in range(len(answer.quotes)) if i not in supporting]
    if supporting:
        parts.append('<div class="qa-quotes-title">Quoted passages</div><ol class="qa-quotes">')
        for i in supporting:
            phrase = answer.phrase if i == 0 else None
            parts.append(_render_quote(answer.quotes[i], turn, i, phrase, True))
        parts.append("</ol>")
    if others and answer.found:
        parts.append(
            f'<details class="qa-more"><summary>More passages ({len(others)})</summary><ol class="qa-quotes">'
        )
        parts.extend(_render_quote(answer.quotes[i], turn, i, None, False) for i in others)
        parts.append("</ol></details>")
    elif others:
        title = "Nearest passages (they do not answer the question)"
        parts.append(f'<div class="qa-quotes-title">{esc(title)}</div><ol class="qa-quotes">')
        parts.extend(_render_quote(answer.quotes[i], turn, i, None, False) for i in others)
        parts.append("</ol>")
    return "".join(parts)


@dataclass(frozen=True)
class Turn:
    """One question of the session and what came back."""

    question: str
    answer: Answer | None = None
    error: str = ""
    seconds: float = 0.0


def conversation_of(history: Sequence[Turn], turns: int) -> list[tuple[str, Answer]]:
    """The last ``turns`` answered turns as (question, answer), oldest first: what a follow-up
    question is read with."""
    answered = [(t.question, t.answer) for t in history if t.answer is not None]
    return answered[-turns:] if turns else []


def render_searched(answer: Answer, turn: int) -> str:
    """Under an answer that used the conversation: what was searched, and a button to ask the
    same question on its own."""
    if not answer.used_history:
        return ""
    return (
        f'<div class="qa-searched">Searched for: <q>{esc(answer.query)}</q> '
        f'<button type="button" class="qa-alone" data-alone="{turn}" '
        'title="Ask this question again on its own, without the earlier turns">'
        "Ask without history</button></div>"
    )


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
            out.append(render_searched(turn.answer, t))
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
        + ("<mark>" if q.supports else "")  # a nearest passage is outlined, never marked as an answer
        + esc(doc_text[a:b])
        + ("</mark>" if q.supports else "")
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
        # classes and labels let a phone show each row as a card (CSS in qa.ui_documents)
        size = esc(human_size(r.size)) if r.size is not None else ""
        out.append(
            f'<tr class="qa-status-{esc(r.status)}">'
            f'<td class="qa-doc-name" data-label="Document">{esc(r.id)}</td>'
            f'<td class="qa-doc-format" data-label="Format">{esc(r.format)}</td>'
            f'<td class="qa-doc-size" data-label="Size">{size}</td>'
            f'<td class="qa-doc-chunks" data-label="Chunks">{r.chunks if r.chunks is not None else ""}</td>'
            f'<td class="qa-doc-status" data-label="Status">{status}</td></tr>'
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
