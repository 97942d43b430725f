"""Quote fidelity end to end: build random documents, ask with their own words, and check
that every quote is a verbatim slice of the stored text and of the decoded file.

The fake embedder keeps this fast; hypothesis keeps the example count small.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import qa
from tests.conftest import FakeEmbedder
from tests.test_documents import make_docx, make_pdf

# Words people write, in several scripts, so questions can match; random unicode around them.
_WORDS = [
    "walrus",
    "tusk",
    "Ice",
    "harbour",
    "café",
    "naïve",
    "東京",
    "駅",
    "مرحبا",
    "كتاب",
    "नमस्ते",
    "किताब",
    "Ελλάδα",
    "Москва",
    "e\u0301te\u0301",
    "🐋",
    "x" * 80,
]
_CHARS = st.characters(exclude_categories=("Cs", "Cc"), include_characters="\n\t\r")
_WORDS += ["Foxconn", "1874", "43 metres", "March 2019", "several categories of", "These include", ":"]
_sentence = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=30).map(" ".join).map(lambda s: s + ".")
_paragraph = st.one_of(
    st.lists(_sentence, min_size=1, max_size=6).map(" ".join),
    st.text(_CHARS, min_size=1, max_size=120),
    st.lists(st.one_of(_sentence, st.text(_CHARS, max_size=20)), max_size=8).map("".join),
)
_document = st.lists(_paragraph, min_size=1, max_size=6).flatmap(
    lambda ps: st.sampled_from(["\n\n", "\n", "\r\n\r\n", " "]).map(lambda sep: sep.join(ps))
)


def _decoded(raw: bytes) -> str:
    """What a .txt file's text is: UTF-8 (a leading BOM dropped), newlines normalised."""
    return raw.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")


def _check_quotes(index: qa.Index, answer: qa.Answer, files: dict[str, str]) -> None:
    gen = index.generation
    rows = {info.id: info.row for info in gen.documents}
    for q in answer.quotes:
        doc_text = gen.document(rows[q.doc]).text
        assert doc_text[q.start : q.end] == q.text
        assert q.start <= q.highlight[0] < q.highlight[1] <= q.end
        assert q.highlight_text == doc_text[q.highlight[0] : q.highlight[1]]
        assert q.text.strip() == q.text and q.text
        if q.doc in files:
            assert files[q.doc][q.start : q.end] == q.text
    if answer.found:  # the answer is the top quote's highlight; its phrase lies inside it
        top = answer.quotes[0]
        assert answer.answer == top.highlight_text
        if answer.phrase is not None:
            doc_text = gen.document(rows[top.doc]).text
            assert doc_text[answer.phrase.start : answer.phrase.end] == answer.phrase.text
            assert top.highlight[0] <= answer.phrase.start < answer.phrase.end <= top.highlight[1]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(_document, min_size=1, max_size=3), data=st.data())
def test_quotes_are_verbatim_slices(docs: list[str], data: st.DataObject) -> None:
    assume(any(d.strip() for d in docs))
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        files = {}
        for i, text in enumerate(docs):
            raw = text.encode("utf-8")
            (corpus / f"d{i}.txt").write_bytes(raw)
            files[f"d{i}.txt"] = _decoded(raw)
        # a low bar for "found", so that answer windows and phrases are exercised too
        s = qa.Settings(corpus=corpus, index=Path(tmp) / "index", min_confidence=0.001, chunk_tokens=24)
        fake = FakeEmbedder()
        report = qa.build_index(settings=s, embedder=fake)
        for skipped in report.failed:  # only blank or binary-looking random text may be skipped
            assert skipped.reason.startswith(
                ("empty file", "no text found", "binary content", "looks like")
            ), skipped
        index = qa.Index.load(s.index, s, embedder=fake)
        gen = index.generation
        for info in gen.documents:  # the stored text is the decoded file, exactly
            assert gen.document(info.row).text == files[info.id]
        words = sorted({w for d in docs for w in re.findall(r"\w{2,}", d)})
        assume(words)
        start = data.draw(st.sampled_from(["", "Who ", "When ", "How many ", "Where ", "Which "]))
        question = start + " ".join(data.draw(st.lists(st.sampled_from(words), min_size=1, max_size=5)))
        answer = index.ask(question)
        assert answer.quotes or not gen.documents
        _check_quotes(index, answer, files)


def test_quotes_are_verbatim_in_every_format(tmp_path: Path) -> None:
    """One build over md, html, pdf and docx: quotes slice the stored text; md keeps its source."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    md = (
        "# Walruses\r\n\r\nWalruses haul out onto sea ice.\r\n\r\n"
        "## Tusks\r\n\r\nTusks help walruses climb.\r\n"
    )
    (corpus / "a.md").write_bytes(md.encode())
    (corpus / "b.html").write_text(
        "<h1>Walrus diet</h1><script></script><p>Walruses eat clams &amp; mussels.</p>", encoding="utf-8"
    )
    (corpus / "c.pdf").write_bytes(make_pdf(["Walrus page one.", "Walruses dive deep on page two."]))
    (corpus / "d.docx").write_bytes(make_docx())
    s = qa.Settings(corpus=corpus, index=tmp_path / "index", min_score=0.3)
    fake = FakeEmbedder()
    report = qa.build_index(settings=s, embedder=fake)
    assert sorted(report.added) == ["a.md", "b.html", "c.pdf", "d.docx"], report.failed
    index = qa.Index.load(s.index, s, embedder=fake)
    for question in ["What do walruses eat?", "Where do walruses haul out?", "Where do llamas live?"]:
        answer = index.ask(question, k=10)
        assert answer.quotes
        _check_quotes(index, answer, {"a.md": _decoded(md.encode())})
    assert index.ask("What do walruses eat?").quotes[0].location == "Walrus diet"
    tusks = index.ask("Tusks help walruses climb").quotes[0]
    assert tusks.doc == "a.md" and tusks.highlight_location == "Walruses > Tusks"
