"""The web app: chat answered with quotes, a source view, document management, rebuilds.

``create_app(settings, embedder)`` returns a ``gr.Blocks`` that can be launched (``launch``,
what ``qa serve`` does) or mounted in another FastAPI app. Only this module and
``qa.ui_documents`` (the Documents tab) import gradio; the HTML comes from ``qa.rendering``
and ``qa.pageview`` (everything escaped) and the state from ``qa.service``.

Concurrency: questions run on the queue (``DEFAULT_CONCURRENCY`` at once); a rebuild runs in
its own thread while questions keep using the previous generation, and ``Index.reload``
switches to the new one when it is live. One rebuild at a time per app (and per index, through
the build lock shared with ``qa index``).
"""

from __future__ import annotations

import inspect
import json
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
    conversation_of,
    esc,
    friendly,
    render_source_message,
    render_transcript,
)
from qa.service import MAX_HISTORY, QAService
from qa.settings import Settings
from qa.ui_documents import documents_tab
from qa.watching import Watcher, watch_service

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


# ---------------------------------------------------------------------------------------------
# The Blocks.
# ---------------------------------------------------------------------------------------------

# Scroll ``target`` into view inside its nearest scrolling box only (not the whole page).
_SCROLL_JS = """
function qaScrollInside(target, where) {
  var box = target.parentElement;
  while (box && box !== document.body) {
    var st = getComputedStyle(box);
    if (/(auto|scroll)/.test(st.overflowY) && box.scrollHeight > box.clientHeight) { break; }
    box = box.parentElement;
  }
  if (!box || box === document.body) { return; }
  var off = target.getBoundingClientRect().top - box.getBoundingClientRect().top + box.scrollTop;
  box.scrollTop = where === 'center' ? off - (box.clientHeight - target.offsetHeight) / 2 : off - 8;
}
"""

_CHAT_JS = (
    """
element.addEventListener('click', function (e) {
  var b = e.target && e.target.closest ? e.target.closest('[data-cite]') : null;
  if (b) {
    e.preventDefault();
    window.__qaCite = Date.now();
    trigger('click', {cite: b.getAttribute('data-cite')});
  }
  var a = e.target && e.target.closest ? e.target.closest('[data-alone]') : null;
  if (a) { e.preventDefault(); trigger('click', {alone: a.getAttribute('data-alone')}); }
});
"""
    + _SCROLL_JS
    + """
// The newest turn comes into view when it is added, and stays there while it renders
// (the box keeps its scroll position otherwise: a third answer sat ~3,300 px below).
var seen = 0;
function showNewest() {
  var turns = element.querySelectorAll('.qa-turn');
  if (turns.length === 0) { seen = 0; return; }
  if (turns.length > seen) {
    var last = turns[turns.length - 1];
    qaScrollInside(last, 'start');
    var r = last.getBoundingClientRect();
    if (r.top < 0 || r.top > window.innerHeight - 80) { last.scrollIntoView({block: 'nearest'}); }
    if (!last.querySelector('.qa-reply') || last.querySelector('.qa-quote, .qa-error, .qa-notfound')) {
      seen = turns.length;
    }
  }
}
watch('value', function () { seen = Math.min(seen, element.querySelectorAll('.qa-turn').length - 1);
  showNewest(); requestAnimationFrame(showNewest); setTimeout(showNewest, 300); });
"""
)

# The source view opens where the person is looking: after a citation is opened, the view is
# brought on screen (on a phone it sits ~1,400 px below the chat) and its highlight inside it.
_SOURCE_JS = (
    _SCROLL_JS
    + """
watch('value', function () {
  if (!window.__qaCite || Date.now() - window.__qaCite > 30000) { return; }
  window.__qaCite = 0;
  function show() {
    var r = element.getBoundingClientRect();
    if (r.top < 0 || r.top > window.innerHeight * 0.6) { element.scrollIntoView({block: 'start'}); }
    var t = element.querySelector('.qa-box-answer, .qa-box-passage, mark, .qa-passage');
    if (t) { qaScrollInside(t, 'center'); }
  }
  show();
  var img = element.querySelector('img.qa-page-img');
  if (img && !img.complete) { img.addEventListener('load', show, {once: true}); }
});
"""
)

# A paste longer than the question limit is cut by the browser (maxlength): say so.
_PASTE_JS = """
var note = element.querySelector('.qa-paste-note');
var limit = parseInt((note && note.getAttribute('data-limit')) || '0', 10);
document.addEventListener('paste', function (e) {
  var ta = e.target && e.target.closest ? e.target.closest('#qa-question textarea') : null;
  if (!ta || !limit) { return; }
  var pasted = (e.clipboardData || window.clipboardData).getData('text') || '';
  var room = limit - (ta.value.length - (ta.selectionEnd - ta.selectionStart));
  var box = element.querySelector('.qa-paste-note');
  if (pasted.length > room && box) {
    box.textContent = 'Your paste has ' + pasted.length.toLocaleString('en') + ' characters; questions ' +
      'are limited to ' + limit.toLocaleString('en') + ', so it was cut to ' +
      Math.max(room, 0).toLocaleString('en') + '. Shorten it, or ask about one part at a time.';
    box.style.display = 'block';
  }
}, true);
document.addEventListener('input', function (e) {
  var ta = e.target && e.target.closest ? e.target.closest('#qa-question textarea') : null;
  var box = element.querySelector('.qa-paste-note');
  if (ta && box && ta.value.length < limit) { box.style.display = 'none'; }
}, true);
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
li.qa-nearest blockquote.qa-text { border-left-color: var(--border-color-primary);
  color: var(--body-text-color-subdued); }
mark strong.qa-phrase { font-weight: 700; }
.qa-found strong.qa-phrase { font-size: 1.1em; }
.qa-confidence { font-size: 0.8em; color: var(--body-text-color-subdued); margin-left: 0.4em; }
details.qa-more summary { cursor: pointer; font-size: 0.85em; color: var(--body-text-color-subdued);
  margin: 0.4em 0; }
.qa-time { font-size: 0.75em; color: var(--body-text-color-subdued); }
.qa-searched { font-size: 0.85em; color: var(--body-text-color-subdued); margin: 0 0 0.3em 0; }
button.qa-alone { cursor: pointer; border: 1px solid var(--border-color-primary); border-radius: 6px;
  background: none; padding: 0 0.4em; margin-left: 0.4em; font: inherit; color: var(--link-text-color); }
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
.qa-page-head { font-size: 0.85em; color: var(--body-text-color-subdued); margin: 0 0 0.3em 0; }
.qa-page { position: relative; margin: 0 0 0.8em 0; border: 1px solid var(--border-color-primary); }
img.qa-page-img { display: block; width: 100%; height: auto; }
.qa-box { position: absolute; pointer-events: none; }
.qa-box-passage { background: rgba(59, 130, 246, 0.13); }
.qa-box-answer { background: rgba(250, 204, 21, 0.5); outline: 2px solid #d97706; mix-blend-mode: multiply; }
"""
)

_NOTE_CSS = """
.qa-paste-note { display: none; font-size: 0.85em; padding: 0.3em 0.6em; border-radius: 6px;
  color: var(--error-text-color); background: var(--error-background-fill); }
.qa-watch { font-size: 0.85em; color: var(--body-text-color-subdued); }
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


def build_ui(service: QAService, watcher: Watcher | None = None, read_only: bool = False) -> gr.Blocks:
    """The Blocks for ``service`` (``create_app`` is the usual entry point); with a running
    ``watcher`` the page says what it is doing and when the index last changed.

    ``read_only`` serves the chat alone: the Documents tab is not built and its upload, delete
    and rebuild events are not registered, so no API call can reach them either.
    """
    settings = service.settings
    examples = DEFAULT_EXAMPLES if (service.corpus / DEFAULT_DOC).is_file() else []

    def ask_turn(
        question: str, k: float, history: list[Turn] | None, use_history: bool = True
    ) -> tuple[list[Turn], Turn | None]:
        history = list(history or [])
        q = " ".join((question or "").split())
        if not q:
            return history, None
        t0 = time.perf_counter()
        earlier = conversation_of(history, MAX_HISTORY) if use_history else []
        try:
            turn = Turn(q, service.ask(q, int(k), earlier), seconds=time.perf_counter() - t0)
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

    def on_click(history: list[Turn] | None, k: float, evt: gr.EventData) -> tuple[Any, ...]:
        """A click in the transcript: a citation opens the source view; "Ask without history"
        asks that turn's question again on its own."""
        data = getattr(evt, "_data", None) or {}
        data = data if isinstance(data, dict) else {}
        if data.get("cite") is not None:
            q = _quote_at(history or [], data["cite"])
            shown = service.source(q) if q is not None else render_source_message(SOURCE_PLACEHOLDER)
            return (gr.skip(), gr.skip(), gr.skip(), shown)
        try:
            turn = (history or [])[int(str(data.get("alone")))]
        except (TypeError, ValueError, IndexError):
            return (gr.skip(), gr.skip(), gr.skip(), gr.skip())
        history, _ = ask_turn(turn.question, k, history, use_history=False)
        choices = gr.update(choices=_citation_choices(history), value=None)
        return (render_transcript(history), history, choices, gr.skip())

    def on_pick(cite: str | None, history: list[Turn] | None) -> str:
        q = _quote_at(history or [], cite)
        return service.source(q) if q is not None else render_source_message(SOURCE_PLACEHOLDER)

    def api_ask(question: str, k: int = settings.top_k, history: list[str] | None = None) -> dict[str, Any]:
        """Answer a question from the indexed documents: returns the Answer as JSON
        (question, found, confidence, answer, phrase, query, used_history, message, generation,
        quotes[doc, location, start, end, text, score, highlight, supports]). ``history``: the
        conversation's earlier questions, oldest first, to answer a follow-up ("Where will they
        build it?") as in the chat."""
        if isinstance(k, bool) or not isinstance(k, int):  # API callers can send anything
            msg = f"K must be a whole number between 1 and 100, got {_as_json(k)}."
            raise gr.Error(msg, print_exception=False)
        try:
            earlier = service.replay(history, k) if history else []
            return service.ask(question, k, earlier).to_dict()
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
        watch_line = gr.HTML(
            _watch_line(watcher, service), js_on_load=None, css_template=_NOTE_CSS, elem_id="qa-watch"
        )
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"), gr.Row(equal_height=False):
                with gr.Column(scale=3):
                    transcript = gr.HTML(
                        render_transcript([]),
                        js_on_load=_CHAT_JS,
                        css_template=_CHAT_CSS,
                        elem_id="qa-transcript",
                        max_height=640,
                        autoscroll=False,  # the newest turn is scrolled to its start instead (_CHAT_JS)
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
                    limit = settings.max_question_chars
                    gr.HTML(
                        f'<div class="qa-paste-note" role="status" data-limit="{limit}"></div>',
                        js_on_load=_PASTE_JS,
                        css_template=_NOTE_CSS,
                        elem_id="qa-paste",
                    )
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
                        clear_btn = gr.Button("New conversation", size="sm", scale=1, elem_id="qa-new")
                    example_box = (
                        gr.Examples(
                            examples=examples,
                            inputs=question,
                            label="Example questions (click one to ask it)",
                            api_visibility="private",
                        )
                        if examples
                        else None
                    )
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
                        js_on_load=_SOURCE_JS,
                        css_template=_SOURCE_CSS,
                        elem_id="qa-source",
                        max_height=640,
                        container=True,
                        padding=True,
                    )
            private: dict[str, Any] = {"api_visibility": "private"}
            docs = None
            if not read_only:  # read-only: no tab, no events, nothing of the corpus in the config
                with gr.Tab("Documents", id="documents"):
                    docs = documents_tab(service, info, private)

        ask_outputs = [transcript, history, question, cite_pick]
        ask_btn.click(on_ask, [question, k, history], ask_outputs, **private)
        question.submit(on_ask, [question, k, history], ask_outputs, **private)
        clear_btn.click(on_clear, None, [transcript, history, cite_pick, source], **private)
        transcript.click(
            on_click,
            [history, k],
            [transcript, history, cite_pick, source],
            show_progress="hidden",
            **private,
        )
        cite_pick.input(on_pick, [cite_pick, history], source, show_progress="hidden", **private)
        if example_box is not None:  # an example asks at once, like typing it and pressing Ask
            example_box.load_input_event.then(on_ask, [question, k, history], ask_outputs, **private)
        if docs is not None:
            demo.load(docs.refresh, None, docs.outputs, show_progress="hidden", **private)
        if watcher is not None:
            seen = gr.State("")  # the generation this page last showed
            doc_outputs = docs.outputs if docs is not None else []

            def on_tick(shown: str) -> tuple[Any, ...]:
                line = _watch_line(watcher, service)
                gen = watcher.status().generation
                if gen == shown or docs is None:
                    return (line, gen, *(gr.skip() for _ in doc_outputs))
                return (line, gen, *docs.update())

            timer = gr.Timer(2.0)
            # outside the queue: many open pages ticking must not take the questions' places
            outputs = [watch_line, seen, *doc_outputs]
            timer.tick(on_tick, seen, outputs, show_progress="hidden", queue=False, **private)
        gr.api(api_ask, api_name="ask")
    demo.queue(default_concurrency_limit=DEFAULT_CONCURRENCY, max_size=QUEUE_SIZE)
    _refuse_short_calls(demo)
    return demo


def _as_json(value: Any, limit: int = 20) -> str:
    """A value an API caller sent, as JSON (not a Python repr), cut to ``limit`` characters."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = "a value of another type"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _refuse_short_calls(demo: gr.Blocks) -> None:
    """Answer an API call that sends too few values with a clear message.

    Gradio raises a ValueError listing Python reprs of its components, which the queue logs
    with a traceback and sends to the caller; this says which values the endpoint takes.
    """
    check = demo.validate_inputs

    def validate(block_fn: Any, inputs: list[Any]) -> None:
        wanted = len(block_fn.inputs)
        try:
            params = list(inspect.signature(block_fn.fn).parameters.values())[:wanted]
        except (TypeError, ValueError):
            params = []
        optional = [p.default for p in params if p.default is not inspect.Parameter.empty]
        required = wanted - len(optional) if len(params) == wanted else wanted
        if len(inputs) < required:
            names = [p.name for p in params]
            takes = f" [{', '.join(names)}]" if len(names) == wanted else ""
            count = f"{required} to {wanted}" if required < wanted else f"{wanted}"
            raise gr.Error(
                f"This endpoint takes {count} values{takes}, got {len(inputs)}.", print_exception=False
            )
        # optional values left out (``history`` of /ask): their defaults, as a Python call would
        inputs.extend(optional[len(inputs) - required :] if len(inputs) < wanted else [])
        check(block_fn, inputs)

    setattr(demo, "validate_inputs", validate)  # noqa: B010  (an instance override, not a method)


def create_app(
    settings: Settings | None = None,
    embedder: Embedder | None = None,
    *,
    watch: bool = False,
    read_only: bool = False,
) -> gr.Blocks:
    """The web app for ``settings`` (default ``Settings()``), not launched.

    ``embedder`` replaces the configured model (tests pass a fake). If no index exists yet the
    app still starts; the Documents tab's “Rebuild index” builds one. ``watch`` starts a
    ``qa.watching.Watcher`` on the corpus: changes are indexed in the background (threads
    end with the process). ``read_only`` serves the chat alone (no upload, delete or
    rebuild).
    """
    settings = settings or Settings()
    if embedder is not None:
        service = QAService(settings, embedder, embedder)
    else:
        query = get_query_embedder(settings)
        build = build_embedder(settings, threads=settings.threads)
        service = QAService(settings, query, build)
    watcher = watch_service(service).start() if watch else None
    return build_ui(service, watcher, read_only)


def _watch_line(watcher: Watcher | None, service: QAService) -> str:
    """The watch status line (empty without a watcher)."""
    if watcher is None:
        return ""
    st = service.status()
    line = watcher.status().describe(st.describe() if st.running else "")
    return f'<div class="qa-watch">{esc(line)}</div>'


def launch(
    app: gr.Blocks,
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
    auth: list[tuple[str, str]] | None = None,
) -> Any:
    """Serve ``app`` on ``host:port`` with qa's limits (upload size from ``max_file_mb``).

    ``auth`` (user, password) pairs require a login for the page and every API route
    (``qa.access`` decides when). Never shares through a public tunnel. Returns what
    ``Blocks.launch`` returns.
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
        auth=auth,
    )
