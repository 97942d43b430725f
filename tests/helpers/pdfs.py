"""Generated PDFs for the page view (tests/test_pageview.py, benchmarks/pageboxes.py): several
layouts made with reportlab, and a page of lines drawn at known positions (ground truth).

Sentences are made from a fixed vocabulary with a seeded random generator, so every run
produces the same files and each sentence is unique enough to be found again.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from typing import Any

ADJ = ["amber", "brisk", "calm", "dusty", "eager", "faint", "gentle", "hollow", "icy", "jolly", "keen"]
NOUN = ["heron", "otter", "falcon", "badger", "lantern", "harbour", "orchard", "quarry", "meadow", "glacier"]
VERB = ["guards", "follows", "shelters", "crosses", "measures", "paints", "repairs", "circles", "watches"]
PLACE = ["northern ridge", "old mill", "river mouth", "salt marsh", "stone bridge", "upper field"]


def sentences(n: int, seed: int = 0) -> list[str]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        out.append(
            f"The {rnd.choice(ADJ)} {rnd.choice(NOUN)} {rnd.choice(VERB)} the {rnd.choice(ADJ)} "
            f"{rnd.choice(NOUN)} near the {rnd.choice(PLACE)} number {i}."
        )
    return out


def _paragraphs(n: int, per: int, seed: int) -> list[str]:
    s = sentences(n * per, seed)
    return [" ".join(s[i * per : (i + 1) * per]) for i in range(n)]


def single_column() -> bytes:
    """Helvetica 10 pt body text, left aligned, about three pages."""
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    buf = io.BytesIO()
    styles = getSampleStyleSheet()
    story = [Paragraph("Field notes of the survey", styles["Title"])]
    story += [Paragraph(p, styles["BodyText"]) for p in _paragraphs(40, 4, 1)]
    SimpleDocTemplate(buf).build(story)
    return buf.getvalue()


def justified() -> bytes:
    """Times 11.5 pt, justified (word spacing stretched), narrow margins."""
    from reportlab.lib.enums import TA_JUSTIFY
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    buf = io.BytesIO()
    style = ParagraphStyle("j", fontName="Times-Roman", fontSize=11.5, leading=14, alignment=TA_JUSTIFY)
    story = [Paragraph(p, style) for p in _paragraphs(30, 5, 2)]
    SimpleDocTemplate(buf, leftMargin=40, rightMargin=40).build(story)
    return buf.getvalue()


def two_columns() -> bytes:
    """Two text columns per page (a journal layout)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate, Paragraph

    buf = io.BytesIO()
    width, height = A4
    doc = BaseDocTemplate(buf, pagesize=A4)
    col = (width - 2 * 50 - 20) / 2
    frames = [
        Frame(50, 50, col, height - 100, id="left"),
        Frame(50 + col + 20, 50, col, height - 100, id="right"),
    ]
    doc.addPageTemplates([PageTemplate(id="two", frames=frames)])
    styles = getSampleStyleSheet()
    doc.build([Paragraph(p, styles["BodyText"]) for p in _paragraphs(36, 4, 3)])
    return buf.getvalue()


def mixed() -> bytes:
    """Headings, large and small type, a bulleted list and a table."""
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import ListFlowable, ListItem, Paragraph, SimpleDocTemplate, Table

    buf = io.BytesIO()
    styles = getSampleStyleSheet()
    story: list[object] = []
    paras = _paragraphs(24, 3, 4)
    for i, p in enumerate(paras):
        if i % 6 == 0:
            story.append(Paragraph(f"Chapter {i // 6 + 1}: the survey", styles["Heading1"]))
        if i % 6 == 3:
            items = [ListItem(Paragraph(s, styles["BodyText"])) for s in sentences(3, 100 + i)]
            story.append(ListFlowable(items, bulletType="bullet"))
        style = styles["BodyText"] if i % 2 else styles["Italic"]
        story.append(Paragraph(p, style))
        if i % 8 == 5:
            story.append(Table([["site", "count"], ["ridge", "12"], ["marsh", "7"]]))
    SimpleDocTemplate(buf).build(story)
    return buf.getvalue()


def rotated() -> bytes:
    """The single-column PDF with every page turned a quarter (/Rotate 90), as scanners and
    landscape exports leave them: boxes must follow the page's rotation."""
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=io.BytesIO(single_column()))
    for page in writer.pages:
        page.rotate(90)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


LAYOUTS: dict[str, Callable[[], bytes]] = {
    "single column": single_column,
    "justified": justified,
    "two columns": two_columns,
    "mixed": mixed,
    "rotated 90": rotated,
}


def known_lines() -> tuple[bytes, list[tuple[int, str, tuple[float, float, float, float]]]]:
    """A two-page PDF of single lines drawn at known positions in several fonts and sizes.

    Returns the PDF and, per line, (page, text, (left, bottom, right, top) in points), the
    box from the baseline to the font's ascent, as wide as reportlab measures the string.
    """
    from reportlab.pdfbase.pdfmetrics import getAscentDescent, stringWidth
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    truth = []
    lines = sentences(30, 5)
    fonts = [("Helvetica", 11), ("Times-Roman", 14), ("Courier", 9), ("Helvetica-Bold", 18)]
    y, page = 780.0, 1
    for i, text in enumerate(lines):
        font, size = fonts[i % len(fonts)]
        text = text[: 60 if size < 12 else 44]  # stays inside the page
        if y < 80:
            c.showPage()
            y, page = 780.0, page + 1
        x = 50 + (i % 3) * 20
        c.setFont(font, size)
        c.drawString(x, y, text)
        ascent, _ = getAscentDescent(font, size)
        truth.append((page, text, (x, y, x + stringWidth(text, font, size), y + ascent)))
        y -= size * 2.2
    c.save()
    return buf.getvalue(), truth


# ---------------------------------------------------------------------------------------------
# Measuring qa's boxes (shared by tests/test_pageview.py and benchmarks/pageboxes.py).


def _fold(text: str) -> str:
    from qa.pageview import _folded

    return _folded(text)[0]


def _page(pdf: bytes, page_no: int) -> tuple[Any, float, float, float]:
    """(PageImage, pixels per point across, down, page height in points) of a rendered page."""
    from array import array

    from qa.pageview import MAX_PX, PageImage, render_page

    header, blobs = render_page(pdf, page_no, MAX_PX)
    flat = array("f")
    flat.frombytes(blobs[2])
    boxes = [(flat[i], flat[i + 1], flat[i + 2], flat[i + 3]) for i in range(0, len(flat), 4)]
    image = PageImage(
        blobs[0],
        header["pages"],
        header["image_width"],
        header["image_height"],
        blobs[1].decode(),
        boxes,
        tuple(header["matrix"]),
    )
    return (
        image,
        header["image_width"] / header["page_width"],
        header["image_height"] / header["page_height"],
        header["page_height"],
    )


def under(image: Any, rect: tuple[float, float, float, float]) -> str:
    """pdfium's characters whose box centre lies inside ``rect`` (image pixels), in order."""
    a, b, c, d, e, f = image.matrix
    det = a * d - b * c
    out = []
    for ch, (left, bottom, right, top) in zip(image.chars, image.boxes, strict=True):
        if right <= left:
            continue
        x, y = (left + right) / 2, (bottom + top) / 2
        px, py = a * x + c * y + e, b * x + d * y + f
        if det and rect[0] <= px <= rect[2] and rect[1] <= py <= rect[3]:
            out.append(ch)
    return "".join(out)


def sentence_checks(pdf: bytes) -> list[tuple[bool, float, str]]:
    """For every generated sentence wholly on one page: whether the printed characters under
    qa's boxes are that sentence (spaces and case aside), their similarity, and the sentence.

    qa's offsets come from its own parser (pypdf), as in a real index; "under a box" is
    decided from pdfium's character geometry alone, whichever characters the alignment
    picked. Lines may come in any order (a rotated page lists them bottom up).
    """
    import difflib
    import itertools
    import re

    from qa.pageview import align, page_of, span_boxes
    from qa.parsing import parse_pdf

    text, locations, _ = parse_pdf(pdf)
    out = []
    for offset, _label in locations:
        where = page_of(tuple(locations), len(text), offset)
        assert where is not None
        page_no, start, end = where
        image = _page(pdf, page_no)[0]
        mapping = align(text[start:end], image.chars)
        for m in re.finditer(r"The [^.]*?number \d+\.", text[start:end]):
            want = _fold(m.group())
            parts = [_fold(under(image, r)) for r in span_boxes(mapping, image, m.start(), m.end())]
            orders = itertools.permutations(parts) if len(parts) <= 4 else [parts]
            tries = ["".join(p) for p in orders]
            best = max(tries, key=lambda got: difflib.SequenceMatcher(None, want, got).ratio())
            out.append((want == best, difflib.SequenceMatcher(None, want, best).ratio(), m.group()))
    return out


def known_line_ious() -> list[float]:
    """Intersection over union of qa's box and the drawn box, for each line of ``known_lines``."""
    from qa.pageview import align, page_of, span_boxes
    from qa.parsing import parse_pdf

    pdf, truth = known_lines()
    text, locations, _ = parse_pdf(pdf)
    pages = {}
    out = []
    for page_no, line, (left, bottom, right, top) in truth:
        if page_no not in pages:
            image, sx, sy, height = _page(pdf, page_no)
            first = next(o for o, lab in locations if lab == f"page {page_no}")
            where = page_of(tuple(locations), len(text), first)
            assert where is not None
            pages[page_no] = (image, sx, sy, height, where[1], align(text[where[1] : where[2]], image.chars))
        image, sx, sy, height, start, mapping = pages[page_no]
        at = text.index(line, start) - start
        boxes = span_boxes(mapping, image, at, at + len(line))
        if not boxes:
            out.append(0.0)
            continue
        # qa's union box, in points (y up)
        qa_box = (
            min(b[0] for b in boxes) / sx,
            height - max(b[3] for b in boxes) / sy,
            max(b[2] for b in boxes) / sx,
            height - min(b[1] for b in boxes) / sy,
        )
        ix = max(0.0, min(qa_box[2], right) - max(qa_box[0], left))
        iy = max(0.0, min(qa_box[3], top) - max(qa_box[1], bottom))
        inter = ix * iy
        union = (qa_box[2] - qa_box[0]) * (qa_box[3] - qa_box[1]) + (right - left) * (top - bottom) - inter
        out.append(inter / union if union > 0 else 0.0)
    return out


def sentence_lines(n: int = 14) -> tuple[bytes, list[tuple[str, tuple[float, float, float, float]]]]:
    """One page of short complete sentences, one per line, drawn at known positions (Helvetica
    12 pt): the PDF and, per sentence, (text, (left, bottom, right, top) in points)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase.pdfmetrics import getAscentDescent, stringWidth
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    c.setFont("Helvetica", 12)
    ascent, _ = getAscentDescent("Helvetica", 12)
    truth = []
    for i, text in enumerate(sentences(n, 7)):
        x, y = 60.0 + (i % 2) * 30, 760.0 - i * 40
        c.drawString(x, y, text)
        truth.append((text, (x, y, x + stringWidth(text, "Helvetica", 12), y + ascent)))
    c.save()
    return buf.getvalue(), truth
