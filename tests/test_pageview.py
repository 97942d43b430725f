"""PDF page views: a quote's offsets (from pypdf's text) land on the right printed characters
(pdfium's), the page renders in the isolated worker once per (document, page), and the
source view shows it inline, escaped, without any route that reads files."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest

import qa
from qa.pageview import MAX_PX, PageRenderer, align, page_of
from qa.service import QAService
from tests.conftest import FakeEmbedder
from tests.helpers import pdfs


@pytest.mark.parametrize("layout", ["two columns", "rotated 90"])
def test_boxes_lie_over_the_quoted_sentences(layout: str) -> None:
    checks = pdfs.sentence_checks(pdfs.LAYOUTS[layout]())
    misses = [s for ok, _, s in checks if not ok]
    assert len(checks) > 100
    assert not misses, f"{len(misses)} of {len(checks)} sentences boxed wrongly: {misses[:3]}"


def test_boxes_of_lines_drawn_at_known_places() -> None:
    ious = pdfs.known_line_ious()
    assert len(ious) == 30 and min(ious) >= 0.5, ious


def test_align_survives_reordered_lines_spacing_and_odd_glyphs() -> None:
    text = "First line of the page.\nSecond line here, ﬁnal words.\nThird and last line."
    # pdfium: lines in another order, other spacing and line ends, the ligature decoded apart
    chars = "Third  and last line.\r\nFirst line of the page.\r\nSecond line here,  final words."
    mapping = align(text, chars)
    for word in ["First", "Second", "Third", "words", "last"]:
        i = text.index(word)
        j = mapping[i]
        assert chars[j : j + len(word)] == word, word
    lig = text.index("ﬁ")
    assert chars[mapping[lig]] == "f"
    assert all(mapping[i] == -1 for i, ch in enumerate(text) if ch.isspace())


def test_page_of_finds_the_page_and_its_span() -> None:
    text = "page one text\n\npage two text\n\n\n\npage four"
    locations = ((0, "page 1"), (15, "page 2"), (30, "page 3"), (32, "page 4"))
    assert page_of(locations, len(text), 3) == (1, 0, 13)
    assert page_of(locations, len(text), 20) == (2, 15, 28)
    assert page_of(locations, len(text), 33) == (4, 32, len(text))
    assert page_of((), len(text), 3) is None


def test_renderer_caches_by_document_and_page_and_limits_size() -> None:
    pdf = pdfs.single_column()
    digest = hashlib.sha256(pdf).hexdigest()
    loads: list[int] = []

    def load() -> bytes:
        loads.append(1)
        return pdf

    renderer = PageRenderer()
    try:
        first = renderer.page(digest, 2, load)
        assert renderer.page(digest, 2, load) is first and len(loads) == 1
        assert max(first.width, first.height) == MAX_PX and first.pages >= 3
        assert first.png.startswith(b"\x89PNG") and len(first.png) < 200_000
        with pytest.raises(ValueError, match=r"has \d+ pages, not 9"):
            renderer.page(digest, 9, load)
        with pytest.raises(ValueError, match="changed since it was indexed"):
            renderer.page("0" * 64, 1, load)
        broken = b"%PDF-1.4\n" + b"garbage" * 100
        with pytest.raises(ValueError):
            renderer.page(hashlib.sha256(broken).hexdigest(), 1, lambda: broken)
        assert renderer.page(digest, 1, load).pages == first.pages  # the worker survived
    finally:
        renderer.close()


@pytest.fixture
def pdf_service(tmp_path: Path) -> QAService:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / 'survey <img src=x onerror="window.__xss=1">.pdf').write_bytes(pdfs.two_columns())
    settings = qa.Settings(corpus=corpus, index=tmp_path / "index", min_score=0.3)
    qa.build_index(settings=settings, embedder=FakeEmbedder())
    return QAService(settings, FakeEmbedder())


def test_source_view_of_a_pdf_quote_shows_its_page_with_boxes(pdf_service: QAService) -> None:
    answer = pdf_service.ask("Which heron guards the hollow badger near the salt marsh?")
    q = answer.quotes[0]
    out = pdf_service.source(q)
    page = int(q.highlight_location.split()[1])  # the page of the answering sentence
    assert f"page {page} of " in out
    img = re.search(r'<img class="qa-page-img" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', out)
    assert img is not None and base64.b64decode(img.group(1)).startswith(b"\x89PNG")
    assert out.count("qa-box-answer") >= 1 and out.count("qa-box-passage") >= 1
    box = r"left:([\d.]+)%;top:([\d.]+)%;width:([\d.]+)%;height:([\d.]+)%"
    for left, top, width, height in re.findall(box, out):
        assert 0 <= float(left) <= 100 and 0 <= float(top) <= 100 and float(width) > 0 and float(height) > 0
    assert "<img src=x" not in out and "&lt;img src=x onerror=" in out  # the name is escaped
    assert "qa-source-text" in out  # the text view stays below


def test_page_view_says_when_the_pdf_changed(pdf_service: QAService) -> None:
    q = pdf_service.ask("Which heron guards the hollow badger near the salt marsh?").quotes[0]
    path = next(pdf_service.corpus.glob("*.pdf"))
    path.write_bytes(pdfs.single_column())
    out = pdf_service.source(q)
    assert "page view unavailable" in out and "changed since it was indexed" in out
    assert "<img" not in out and "qa-source-text" in out


def test_text_documents_keep_the_text_view(settings: qa.Settings, fake: FakeEmbedder) -> None:
    qa.build_index(settings=settings, embedder=fake)
    service = QAService(settings, fake)
    out = service.source(service.ask("Who is OpenAI partnering with to manufacture AI hardware?").quotes[0])
    assert "<img" not in out and "qa-page" not in out and "<mark>" in out
