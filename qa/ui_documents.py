"""The web app's Documents tab: the documents table, uploads, delete with a confirmation and a
trash to restore from, and "Rebuild index" with a progress bar that moves.

``documents_tab(service, info)`` builds the components inside the caller's ``gr.Blocks`` and
wires their events; it returns what other parts of the page refresh (``DocumentsTab``).
Everything shown is escaped (``qa.rendering.esc``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import gradio as gr

from qa.progress import ProgressTracker
from qa.rendering import esc, human_size, render_documents
from qa.service import UPLOAD_TYPES, BuildStatus, DeleteRefusedError, QAService, UploadRefusedError
from qa.trash import TrashError

# Responsive table: on a phone each row becomes a small card of "label value" lines, so no
# word is broken mid-word ("inde xed"); long file names wrap only where they must.
DOCS_CSS = """
table.qa-doc-table { width: 100%; border-collapse: collapse; font-size: 0.92em; }
table.qa-doc-table th, table.qa-doc-table td { text-align: left; padding: 0.3em 0.6em;
  border-bottom: 1px solid var(--border-color-primary); vertical-align: top; }
table.qa-doc-table th { white-space: nowrap; }
table.qa-doc-table td.qa-doc-name { overflow-wrap: anywhere; }
table.qa-doc-table td.qa-doc-format, table.qa-doc-table td.qa-doc-size,
table.qa-doc-table td.qa-doc-chunks { white-space: nowrap; }
.qa-detail { color: var(--body-text-color-subdued); }
tr.qa-status-skipped td, tr.qa-status-deleted td { color: var(--body-text-color-subdued); }
.qa-docs-info { font-size: 0.9em; color: var(--body-text-color-subdued); }
.qa-build pre { white-space: pre-wrap; font-size: 0.85em; }
.qa-build-error { color: var(--error-text-color); }
.qa-confirm { padding: 0.5em 0.8em; border-radius: 8px; border: 1px solid var(--error-border-color);
  background: var(--error-background-fill); }
@media (max-width: 640px) {
  table.qa-doc-table thead { display: none; }
  table.qa-doc-table tr { display: block; padding: 0.4em 0;
    border-bottom: 1px solid var(--border-color-primary); }
  table.qa-doc-table td { display: block; border: none; padding: 0.05em 0.2em; }
  table.qa-doc-table td::before { content: attr(data-label) ": "; font-weight: 600; }
  table.qa-doc-table td.qa-doc-name::before { content: ""; }
  table.qa-doc-table td.qa-doc-name { font-weight: 600; }
}
"""


def render_build_status(status: BuildStatus, tracker: ProgressTracker | None = None) -> str:
    """The rebuild box: progress while running, then the report or the error."""
    if status.running:
        words = tracker.describe() if tracker is not None else status.describe()
        return f'<div class="qa-build">Rebuilding: {esc(words)}…</div>'
    if status.error:
        return f'<div class="qa-build qa-build-error">Rebuild failed: {esc(status.error)}</div>'
    if status.report is not None:
        secs = status.finished - status.started
        return (
            f'<div class="qa-build">Rebuild finished in {secs:.1f} s; chat now answers from '
            f"{esc(status.report.generation)}.<pre>{esc(status.report.summary())}</pre></div>"
        )
    return ""


def _note(text: str, error: bool = False) -> str:
    return f'<div class="{"qa-build-error" if error else "qa-build"}">{esc(text)}</div>'


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def trash_choices(service: QAService) -> list[tuple[str, str]]:
    """Dropdown choices of the trash: "name · 2.1 KiB · deleted 12:03:04"."""
    return [
        (f"{e.doc_id} · {human_size(e.size)} · deleted {_clock(e.deleted)}", e.key) for e in service.trash()
    ]


@dataclass
class DocumentsTab:
    """What the rest of the page refreshes after a rebuild (e.g. one started by the watcher)."""

    refresh: Callable[[], tuple[Any, ...]]
    outputs: list[Any]
    # the same without clearing what the person picked in the dropdowns (timer refreshes)
    update: Callable[[], tuple[Any, ...]]


def documents_tab(service: QAService, info: Any, private: dict[str, Any]) -> DocumentsTab:
    """Build the Documents tab's components (call inside ``gr.Tab``) and wire their events."""
    settings = service.settings
    keep = f"for {settings.trash_hours:g} hours" if settings.trash_hours > 0 else "until the next rebuild"
    docs_table = gr.HTML(
        render_documents(service.documents()), js_on_load=None, css_template=DOCS_CSS, elem_id="qa-docs"
    )
    with gr.Row():
        rebuild_btn = gr.Button("Rebuild index", variant="primary", elem_id="qa-rebuild")
        refresh_btn = gr.Button("Refresh", size="sm")
    rebuild_note = gr.HTML("", js_on_load=None, css_template=DOCS_CSS, elem_id="qa-rebuild-note")
    build_out = gr.HTML("", js_on_load=None, css_template=DOCS_CSS, elem_id="qa-build", min_height=70)
    with gr.Row():
        with gr.Column():
            upload = gr.File(
                label=f"Add documents ({' '.join(UPLOAD_TYPES)}; up to {settings.max_file_mb:g} MiB each)",
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
            delete_btn = gr.Button("Delete…", variant="stop", elem_id="qa-delete")
            pending = gr.State("")  # the document the confirmation names
            with gr.Group(visible=False, elem_id="qa-confirm") as confirm_box:
                confirm_text = gr.HTML("", js_on_load=None, css_template=DOCS_CSS, elem_id="qa-confirm-text")
                with gr.Row():
                    confirm_btn = gr.Button("Delete", variant="stop", elem_id="qa-confirm-delete")
                    cancel_btn = gr.Button("Cancel", elem_id="qa-confirm-cancel")
            trash_pick = gr.Dropdown(
                choices=trash_choices(service),
                value=None,
                label=f"Trash: deleted documents, restorable {keep}",
                elem_id="qa-trash-pick",
            )
            restore_btn = gr.Button("Restore", size="sm", elem_id="qa-restore")
    upload_out = gr.HTML("", js_on_load=None, css_template=DOCS_CSS, elem_id="qa-upload-out")

    def refresh() -> tuple[Any, ...]:
        return (
            render_documents(service.documents()),
            gr.update(choices=service.corpus_files(), value=None),
            gr.update(choices=trash_choices(service), value=None),
            esc(service.info()),
        )

    outputs = [docs_table, delete_pick, trash_pick, info]

    def update() -> tuple[Any, ...]:
        return (
            render_documents(service.documents()),
            gr.update(choices=service.corpus_files()),
            gr.update(choices=trash_choices(service)),
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
                _note(
                    f"Added {', '.join(saved)}. Click “Rebuild index” to make "
                    + ("them" if len(saved) > 1 else "it")
                    + " searchable."
                )
            )
        lines += [_note(f"Refused {r}", error=True) for r in refused]
        return ("".join(lines), None, *refresh())

    def on_delete_ask(doc_id: str | None) -> tuple[Any, ...]:
        if not doc_id:
            pick = _note("Pick a document to delete first.", error=True)
            return ("", gr.update(visible=False), "", gr.update(), pick)
        text = (
            f'<div class="qa-confirm">Delete <strong>{esc(doc_id)}</strong>? It moves to the trash '
            f"(restorable {esc(keep)}) and leaves the index at the next rebuild.</div>"
        )
        return (doc_id, gr.update(visible=True), text, gr.update(value=f"Delete {doc_id}"), "")

    def on_delete_confirm(doc_id: str) -> tuple[Any, ...]:
        try:
            entry = service.delete(doc_id or "")
            msg = _note(
                f"Moved {entry.doc_id} to the trash; it leaves the index at the next rebuild. "
                f"Restore it from the trash below ({keep})."
            )
        except DeleteRefusedError as exc:
            msg = _note(str(exc), error=True)
        return ("", gr.update(visible=False), msg, *refresh())

    def on_cancel() -> tuple[Any, ...]:
        return ("", gr.update(visible=False), _note("Nothing deleted."))

    def on_restore(key: str | None) -> tuple[Any, ...]:
        if not key:
            return (_note("Pick a document in the trash first.", error=True), *refresh())
        try:
            doc_id = service.restore(key)
            msg = _note(f"Restored {doc_id} to the corpus. Click “Rebuild index” to make it searchable.")
        except TrashError as exc:
            msg = _note(str(exc), error=True)
        return (msg, *refresh())

    def on_rebuild(progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        run = service.start_rebuild()
        if run is None:
            st = service.status()
            note = _note(
                f"Rebuild refused: one is already running (started {_clock(st.started)}; "
                f"{st.describe()}). Its result will show below.",
                error=True,
            )
            gr.Warning("A rebuild is already running: this click was ignored.")
            return (note, gr.skip(), *(gr.skip() for _ in outputs))
        tracker = ProgressTracker()
        progress(0.0, desc="starting")
        while True:
            st = service.status()
            if not st.running:
                break
            if st.stage:
                tracker.update(st.stage, st.done, st.total)
            progress(tracker.fraction(), desc=f"Rebuilding: {tracker.describe(percent=False)}")
            time.sleep(0.15)
        return ("", render_build_status(st), *refresh())

    # The button is disabled in the browser at once, so a double click cannot queue a second
    # rebuild; clicks from other pages (or while the watcher rebuilds) get a visible refusal.
    disable = "() => { const b = document.querySelector('#qa-rebuild'); if (b) b.disabled = true; }"
    enable = "() => { const b = document.querySelector('#qa-rebuild'); if (b) b.disabled = false; }"
    upload.upload(on_upload, upload, [upload_out, upload, *outputs], **private)
    delete_btn.click(
        on_delete_ask, delete_pick, [pending, confirm_box, confirm_text, confirm_btn, upload_out], **private
    )
    confirm_btn.click(on_delete_confirm, pending, [pending, confirm_box, upload_out, *outputs], **private)
    cancel_btn.click(on_cancel, None, [pending, confirm_box, upload_out], **private)
    restore_btn.click(on_restore, trash_pick, [upload_out, *outputs], **private)
    rebuild_btn.click(
        on_rebuild,
        None,
        [rebuild_note, build_out, *outputs],
        show_progress_on=build_out,
        js=disable,
        trigger_mode="multiple",
        **private,
    ).then(None, js=enable, **private)
    refresh_btn.click(refresh, None, outputs, **private)
    return DocumentsTab(refresh, outputs, update)
