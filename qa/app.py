"""The web app: chat answered with quotes, a source view, document management, rebuilds.

``create_app(settings, embedder)`` returns a ``gr.Blocks`` that can be launched (``launch``,
what ``qa serve`` does) or mounted in another FastAPI app. Only this module imports gradio;
the HTML comes from ``qa.rendering`` (everything escaped) and the state from ``qa.service``.

Concurrency: questions run on the queue (``DEFAULT_CONCURRENCY`` at once); a rebuild runs in
its own thread while questions keep using the previous generation, and ``Index.reload``
switches to the new one when it is live. One rebuild at a time per app (and per index, through
the build lock shared with ``qa index``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import gradio as gr

from qa.answering import Quote
from qa.building import build_embedder
from qa.embedding import Embedder, get_query_embedder
from qa.errors import (
    QAError,
)
from qa.rendering import (
    SOURCE_PLACEHOLDER,
    Turn,
    _cite_label,
    esc,
    friendly,
    render_documents,
    render_source_message,
    render_transcript,
)
from qa.service import UPLOAD_TYPES, BuildStatus, DeleteRefusedError, QAService, UploadRefusedError
from qa.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4
QUEUE_SIZE = 64
DEFAULT_DOC = "openai-foxconn-ai-hardware.txt"
DEFAULT_EXAMPLES = [
    "Who is OpenAI partnering with to manufacture AI hardware?",
    "What kinds of devices will the collaboration produce?",
    "Why is Foxconn interested in AI servers?",
    "What is the capital of Australia?",
]


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
            n = int(k)
        except (TypeError, ValueError, OverflowError):  # API callers can send anything
            msg = f"K must be a whole number between 1 and 100, got {str(k)[:20]!r}."
            raise gr.Error(msg, print_exception=False) from None
        try:
            return service.ask(question, n).to_dict()
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
    query = get_query_embedder(settings)
    build = build_embedder(settings, threads=settings.threads)
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
