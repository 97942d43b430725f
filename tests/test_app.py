"""The web app with the fake embedder: rendering is escaped, uploads and deletes stay inside the
corpus, rebuilds run in the background (one at a time) while questions keep being answered, and
the ``ask`` API endpoint answers through the queue (gradio_client against a live server)."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import qa
from qa import store
from qa.answering import Answer, Quote
from qa.app import create_app, launch
from qa.errors import IndexNotFoundError
from qa.rendering import (
    DocRow,
    Turn,
    render_answer,
    render_documents,
    render_quote_text,
    render_source,
    render_transcript,
)
from qa.service import UPLOAD_TYPES, DeleteRefusedError, QAService, UploadRefusedError, safe_upload_name
from tests.conftest import FakeEmbedder
from tests.helpers.serving import free_port

QUESTION = "Who is OpenAI partnering with to manufacture AI hardware?"
XSS = '<script>alert(1)</script> <img src=x onerror="window.__xss=1"> ![x](http://127.0.0.2:9/x.png)'
TAG = re.compile(r"<[^>]*>")


def _quote(text: str, doc: str = "doc.txt", start: int = 10, hl: tuple[int, int] | None = None) -> Quote:
    hl = hl or (start, start + len(text))
    return Quote(doc, "line 1", start, start + len(text), text, 0.5, hl, "line 1")


def _visible(markup: str) -> str:
    """The text a browser shows for ``markup`` (tags dropped, entities decoded)."""
    return html.unescape(TAG.sub("", markup))


def _assert_inert(markup: str) -> None:
    tags = re.findall(r"<\s*([a-zA-Z]+)", markup)
    assert not {t.lower() for t in tags} & {"script", "img", "iframe", "a", "style", "svg"}, tags
    for tag in TAG.findall(markup):
        assert "onerror" not in tag and "src=" not in tag and "href=" not in tag, tag


@pytest.fixture
def built(settings: qa.Settings, fake: FakeEmbedder) -> QAService:
    qa.build_index(settings=settings, embedder=fake)
    return QAService(settings, fake)


# ------------------------------------------------------------------------------ rendering


def test_render_answer_escapes_document_text_and_marks_sentence() -> None:
    text = "Intro. " + XSS + " Tail."
    a = 10 + len("Intro. ")
    q = _quote(text, doc='<b onmouseover="x()">evil</b>.md', hl=(a, a + len(XSS)))
    answer = Answer("q <script>", True, q.highlight_text, (q,), "gen-000001")
    out = render_answer(answer, 0)
    _assert_inert(out)
    assert "<script" not in out and "&lt;script&gt;" in out
    assert out.count("<mark>") == 1
    marked = re.search(r"<mark>(.*?)</mark>", out, re.S)
    assert marked is not None and html.unescape(marked.group(1)) == XSS
    assert XSS in _visible(out)  # shown literally, Markdown image included
    assert "<b " not in out and "&lt;b onmouseover=&quot;x()&quot;&gt;" in out


def test_not_found_answer_is_said_and_passages_are_labelled_nearest() -> None:
    q = _quote("Nothing relevant here.")
    answer = Answer("capital of Mars?", False, "", (q,), "gen-000001", "The documents do not contain it.")
    out = render_answer(answer, 3)
    assert "Not found in the documents." in out
    assert "Nearest passages" in out and 'data-cite="3:0"' in out


def test_transcript_escapes_questions_and_errors() -> None:
    out = render_transcript([Turn(XSS, error="bad <img src=x>"), Turn("fine", error="x")])
    _assert_inert(out)
    assert XSS in _visible(out) and "bad <img src=x>" in _visible(out)
    assert "Ask a question" in render_transcript([])


def test_render_source_shows_context_offsets_and_mark() -> None:
    doc = "A" * 2000 + " The answer <script>x</script> is here. " + "B" * 2000
    start = 2001
    end = start + len("The answer <script>x</script> is here.")
    q = Quote("d.txt", "line 1", start, end, doc[start:end], 0.9, (start + 4, end), "line 1")
    out = render_source(doc, q, context=50)
    _assert_inert(out)
    assert f"chars {start}–{end} of {len(doc)}" in out
    assert "<mark>answer &lt;script&gt;x&lt;/script&gt; is here.</mark>" in out
    assert out.count("…") == 2  # cut on both sides
    assert len(_visible(out)) < 400


def test_render_documents_escapes_names_and_reasons() -> None:
    rows = [
        DocRow("<img src=x onerror=alert(1)>.txt", "text", 10, 1, "indexed"),
        DocRow("s.exe", "exe", None, None, "skipped", "unsupported <b>type</b>"),
    ]
    out = render_documents(rows, "info <script>")
    _assert_inert(out)
    assert "<img src=x onerror=alert(1)>.txt" in _visible(out)
    assert "unsupported <b>type</b>" in _visible(out)


@hsettings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=60), st.data())
def test_quote_rendering_round_trips_any_text(text: str, data: st.DataObject) -> None:
    a = data.draw(st.integers(0, len(text) - 1))
    b = data.draw(st.integers(a + 1, len(text)))
    q = _quote(text, start=5, hl=(5 + a, 5 + b))
    out = render_quote_text(q)
    assert "<" not in out.replace("<mark>", "").replace("</mark>", "")
    assert html.unescape(out.replace("<mark>", "").replace("</mark>", "")) == text
    assert html.unescape(re.search(r"<mark>(.*)</mark>", out, re.S).group(1)) == text[a:b]  # type: ignore[union-attr]


# ------------------------------------------------------------------------------ upload names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("notes.txt", "notes.txt"),
        ("Report FINAL.PDF", "Report FINAL.pdf"),
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\evil.md", "evil.md"),
        ("/abs/path/doc.html", "doc.html"),
        (".hidden.txt", "hidden.txt"),
        ("a\x00b\nc\x1b.txt", "abc.txt"),
        ("<img src=x onerror=alert(1)>.htm", "_img src_x onerror_alert(1)_.htm"),
        ("Überblick é.markdown", "Überblick é.markdown"),
    ],
)
def test_safe_upload_name(name: str, expected: str) -> None:
    assert safe_upload_name(name) == expected


@pytest.mark.parametrize("name", ["evil.exe", "noext", "..", ".txt", "..txt", "x.txt/..", "", "a.pdf.sh"])
def test_safe_upload_name_refuses(name: str) -> None:
    with pytest.raises(UploadRefusedError):
        safe_upload_name(name)


@hsettings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.sampled_from([*UPLOAD_TYPES, ".exe", ""]))
def test_safe_upload_name_never_escapes(stem: str, ext: str) -> None:
    try:
        name = safe_upload_name(stem + ext)
    except UploadRefusedError:
        return
    assert "/" not in name and "\\" not in name and not name.startswith(".")
    assert name not in (".", "..") and Path(name).name == name
    assert Path(name).suffix in UPLOAD_TYPES
    assert all(ch.isprintable() for ch in name)


# ------------------------------------------------------------------------------ corpus edits


def test_upload_saves_inside_corpus_and_refuses_bad_files(tmp_path: Path, built: QAService) -> None:
    corpus = built.corpus
    src = tmp_path / "upload.bin"
    src.write_text("Zebras have black and white stripes.")
    assert built.save_upload(src, "../../outside.txt") == "outside.txt"
    assert (corpus / "outside.txt").read_text() == "Zebras have black and white stripes."
    assert not (tmp_path / "outside.txt").exists() and not (corpus.parent / "outside.txt").exists()
    with pytest.raises(UploadRefusedError, match="not accepted"):
        built.save_upload(src, "run.sh")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(UploadRefusedError, match="empty"):
        built.save_upload(empty)
    small = QAService(built.settings.model_copy(update={"max_file_mb": 0.001}), built.embedder)
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * 2000)
    with pytest.raises(UploadRefusedError, match="limit"):
        small.save_upload(big)
    assert not (corpus / "big.txt").exists()
    assert not [p for p in corpus.iterdir() if p.name.startswith(".upload-")]
    rows = {r.id: r for r in built.documents()}
    assert rows["outside.txt"].status == "new"
    assert rows["openai-foxconn-ai-hardware.txt"].status == "indexed"


def test_delete_removes_only_corpus_files(tmp_path: Path, built: QAService) -> None:
    corpus = built.corpus
    outside = tmp_path / "keep.txt"
    outside.write_text("keep me")
    (corpus / "sub").mkdir()
    (corpus / "sub" / "b.md").write_text("# B\n\nBee text.")
    for bad in ["../keep.txt", str(outside), "", "missing.txt", "sub", "sub/../../keep.txt", "a\x00.txt"]:
        with pytest.raises(DeleteRefusedError):
            built.delete(bad)
    assert outside.exists()
    built.delete("sub/b.md")
    assert not (corpus / "sub" / "b.md").exists()
    built.delete("openai-foxconn-ai-hardware.txt")
    rows = {r.id: r for r in built.documents()}
    assert rows["openai-foxconn-ai-hardware.txt"].status == "deleted"
    built.start_rebuild()
    status = built.wait_build(60)
    assert status.report is not None and status.report.removed == ["openai-foxconn-ai-hardware.txt"]
    assert built.documents() == []


def test_documents_lists_skipped_with_reason(built: QAService) -> None:
    (built.corpus / "prog.exe").write_bytes(b"MZ")
    built.start_rebuild()
    assert built.wait_build(60).error == ""
    rows = {r.id: r for r in built.documents()}
    assert rows["prog.exe"].status == "skipped" and "unsupported" in rows["prog.exe"].detail
    assert rows["openai-foxconn-ai-hardware.txt"].chunks


# ------------------------------------------------------------------------------ rebuilds


class GatedEmbedder(FakeEmbedder):
    """A fake embedder whose build-time encoding waits for ``gate`` (queries pass through)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def encode(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        if progress is not None:  # the build passes a progress callback; questions do not
            self.waiting.set()
            assert self.gate.wait(60)
        return super().encode(texts, progress)


def test_rebuild_in_background_one_at_a_time_chat_keeps_answering(settings: qa.Settings) -> None:
    emb = GatedEmbedder()
    emb.gate.set()
    qa.build_index(settings=settings, embedder=emb)
    service = QAService(settings, emb)
    old = service.ask(QUESTION).generation
    (settings.corpus / "zebra.md").write_text("# Zebras\n\nZebras have black and white stripes.\n")
    emb.gate.clear()
    emb.waiting.clear()
    run = service.start_rebuild()
    assert run == 1
    assert emb.waiting.wait(30)
    st_ = service.status()
    assert st_.running and (st_.stage, st_.done, st_.total) == ("embedding", 0, 1)  # files parsed
    assert st_.describe() == "embedding 0/1 chunks"
    assert service.start_rebuild() is None  # refused while running
    during = service.ask(QUESTION)
    assert during.found and during.generation == old  # previous generation keeps answering
    emb.gate.set()
    done = service.wait_build(60)
    assert not done.running and done.error == "" and done.report is not None
    assert done.report.added == ["zebra.md"]
    after = service.ask("What stripes do zebras have?")
    assert after.generation == done.report.generation != old
    assert after.quotes[0].doc == "zebra.md"
    assert service.start_rebuild() == 2
    assert service.wait_build(60).error == ""


def test_rebuild_refused_when_another_process_builds(built: QAService) -> None:
    with store.build_lock(built.settings.index):
        built.start_rebuild()
        status = built.wait_build(60)
    assert status.report is None and "Another build" in status.error


def test_no_index_yet_then_first_build(settings: qa.Settings, fake: FakeEmbedder) -> None:
    service = QAService(settings, fake)
    with pytest.raises(IndexNotFoundError):
        service.ask(QUESTION)
    assert "no index yet" in service.info().lower()
    assert service.documents()[0].status == "new"
    create_app(settings, fake)  # the app starts without an index
    service.start_rebuild()
    assert service.wait_build(60).error == ""
    assert service.ask(QUESTION).found


def test_source_view_of_quote_and_of_changed_document(built: QAService) -> None:
    answer = built.ask(QUESTION)
    q = answer.quotes[0]
    out = built.source(q)
    assert f"chars {q.start}–{q.end} of " in out and "<mark>" in out
    stale = Quote(q.doc, q.location, q.start, q.end, q.text + "x", q.score, q.highlight)
    assert "changed or was removed" in built.source(stale)


# ------------------------------------------------------------------------------ live server


@pytest.fixture
def server(settings: qa.Settings, fake: FakeEmbedder) -> Iterator[str]:
    qa.build_index(settings=settings, embedder=fake)
    small = settings.model_copy(update={"max_file_mb": 0.01})
    app = create_app(small, fake)
    port = free_port()
    launch(app, small, port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


def test_api_endpoint_through_queue(server: str) -> None:
    import httpx
    from gradio_client import Client

    client = Client(server, verbose=False)
    assert list(client.view_api(return_format="dict")["named_endpoints"]) == ["/ask"]
    res = client.predict(QUESTION, 3, api_name="/ask")
    assert res["found"] is True and len(res["quotes"]) == 3
    assert any("Foxconn" in q["text"] for q in res["quotes"])
    assert set(res["quotes"][0]) >= {"doc", "location", "start", "end", "text", "score", "highlight"}
    assert {"confidence", "phrase", "query", "used_history"} <= set(res)
    with pytest.raises(Exception, match="question is empty"):
        client.predict("   ", 3, api_name="/ask")
    # a conversation through the API: the earlier questions are sent along
    follow = client.predict("What will they make?", 3, [QUESTION], api_name="/ask")
    assert follow["used_history"] and follow["query"] != follow["question"] and "OpenAI" in follow["query"]
    alone = client.predict("What will they make?", 3, api_name="/ask")
    assert not alone["used_history"] and alone["query"] == alone["question"]
    with pytest.raises(Exception, match="History must be a list"):
        client.predict("What will they make?", 3, [1, 2], api_name="/ask")
    # the server enforces the upload limit (10 KiB here) before any handler runs
    big = httpx.post(server + "gradio_api/upload", files={"files": ("big.txt", b"x" * 20_000)}, timeout=30)
    assert big.status_code == 413
    ok = httpx.post(server + "gradio_api/upload", files={"files": ("ok.txt", b"x" * 100)}, timeout=30)
    assert ok.status_code == 200


def test_import_qa_does_not_import_gradio() -> None:
    import subprocess
    import sys

    code = "import sys, qa, qa.cli; sys.exit('gradio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
