"""Page views: a PDF quote shown on its rendered page, the passage and the answering sentence
boxed where they are printed.

qa's PDF text comes from pypdf (``parsing.parse_pdf``); the page image and the position of
each printed character come from pdfium (pypdfium2, a wheel: no external binaries). The two
extract the same glyphs but may differ in spacing, line breaks, ligatures (``ﬁ`` vs ``fi``)
or order, so quote offsets are mapped to pdfium characters by aligning the two texts: the
non-space characters of both, NFKC-normalised and case-folded, are matched with difflib, and
each character of the quote takes the box of the pdfium character it matched. Boxes of one
printed line are merged into one rectangle. Measured on generated PDFs (reportlab: single and
two columns, justified paragraphs, several fonts and sizes; ``benchmarks/pageboxes.py``).

Rendering runs in the isolated worker (``qa.parse_worker``, op "page"), with a time limit,
so a hostile PDF cannot hang or crash the web server. Images are at most ``MAX_PX`` pixels
on their long side, rendered when a citation is opened, and cached by (document hash, page).
The HTML embeds the PNG as a ``data:`` URI: no route serves files, so the app's
path-traversal protections are unchanged.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import itertools
import re
import threading
import unicodedata
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.isolation import IsolatedWorker, WorkerError
from qa.rendering import esc

MAX_PX = 1100  # long side of a page image: sharp on a laptop, ~100-250 KB of PNG for text
PAGE_TIMEOUT = 30.0
CACHE_PAGES = 16
WORKER_MEMORY = 2 * 2**30
_PAGE_LABEL = re.compile(r"page (\d+)")
Box = tuple[float, float, float, float]  # pdfium: left, bottom, right, top in PDF points
Rect = tuple[float, float, float, float]  # left, top, right, bottom in image pixels


# ---------------------------------------------------------------------------------------------
# In the worker process.


def render_page(pdf: bytes, page_no: int, max_px: int) -> tuple[dict[str, Any], list[bytes]]:
    """Render page ``page_no`` (1-based) and list its characters with their boxes.

    Returns the worker's reply: a header (pages, image size, the page-to-pixel ``matrix``)
    and blobs [PNG, text as UTF-8 with one character per pdfium character, boxes as float32
    (left, bottom, right, top) in PDF points].
    """
    import ctypes
    import io

    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    doc = pdfium.PdfDocument(pdf)
    try:
        pages = len(doc)
        if not 1 <= page_no <= pages:
            return {"status": "error", "reason": f"the PDF has {pages} pages, not {page_no}"}, []
        page = doc[page_no - 1]
        width, height = page.get_size()
        scale = max_px / max(width, height, 1.0)
        image = page.render(scale=scale).to_pil()
        png = io.BytesIO()
        # 256 colours: a text page's PNG shrinks ~15x (247 -> 14 KB at 778x1100), still sharp
        image.convert("RGB").quantize(256).save(png, "PNG", optimize=True)
        size_x, size_y = image.size
        textpage = page.get_textpage()
        chars: list[str] = []
        boxes = array("f")
        for i in range(textpage.count_chars()):
            code = raw.FPDFText_GetUnicode(textpage.raw, i)
            chars.append(chr(code) if 0 < code < 0x110000 and not 0xD800 <= code < 0xE000 else " ")
            boxes.extend(textpage.get_charbox(i))  # left, bottom, right, top in PDF points
        dx, dy = ctypes.c_int(), ctypes.c_int()

        def device(x: float, y: float) -> tuple[int, int]:
            # the page -> pixel transform of rendering (cropbox origin, /Rotate included)
            raw.FPDF_PageToDevice(page.raw, 0, 0, size_x, size_y, 0, x, y, ctypes.byref(dx), ctypes.byref(dy))
            return dx.value, dy.value

        # affine: pixel = (a x + c y + e, b x + d y + f), from three points 1000 pt apart
        (e, f), (x1, y1), (x2, y2) = device(0, 0), device(1000, 0), device(0, 1000)
        matrix = [(x1 - e) / 1000, (y1 - f) / 1000, (x2 - e) / 1000, (y2 - f) / 1000, e, f]
        header = {
            "status": "ok",
            "pages": pages,
            "image_width": size_x,
            "image_height": size_y,
            "page_width": width,
            "page_height": height,
            "matrix": matrix,
        }
        return header, [png.getvalue(), "".join(chars).encode("utf-8"), boxes.tobytes()]
    finally:
        doc.close()


# ---------------------------------------------------------------------------------------------
# In the server: rendering through the worker, a cache, and the mapping of offsets to boxes.


@dataclass(frozen=True)
class PageImage:
    """A rendered page and pdfium's characters on it."""

    png: bytes
    pages: int
    width: int
    height: int
    chars: str
    boxes: list[Box]
    matrix: tuple[float, float, float, float, float, float]  # points -> pixels (a, b, c, d, e, f)

    def to_pixels(self, box: Box) -> Rect:
        """A box in points as the rectangle it covers on the image."""
        a, b, c, d, e, f = self.matrix
        xs, ys = [], []
        for x, y in ((box[0], box[1]), (box[2], box[3]), (box[0], box[3]), (box[2], box[1])):
            xs.append(a * x + c * y + e)
            ys.append(b * x + d * y + f)
        return min(xs), min(ys), max(xs), max(ys)


class PageRenderer:
    """Renders PDF pages in an isolated worker, caching the last ``cache`` pages. Thread-safe."""

    def __init__(self, timeout: float = PAGE_TIMEOUT, max_px: int = MAX_PX, cache: int = CACHE_PAGES) -> None:
        self.timeout = timeout
        self.max_px = max_px
        self.cache = cache
        self._worker = IsolatedWorker(WORKER_MEMORY)
        self._lock = threading.Lock()
        self._pages: OrderedDict[tuple[str, int], PageImage] = OrderedDict()

    def page(self, doc_hash: str, page_no: int, load: Callable[[], bytes]) -> PageImage:
        """Page ``page_no`` (1-based) of the PDF whose SHA-256 is ``doc_hash``, rendered once
        per (hash, page); ``load()`` returns the PDF's bytes when it must be rendered.

        Raises:
            ValueError: the page cannot be rendered (the message says why).
        """
        key = (doc_hash, page_no)
        with self._lock:
            if key in self._pages:
                self._pages.move_to_end(key)
                return self._pages[key]
            pdf = load()
            if hashlib.sha256(pdf).hexdigest() != doc_hash:
                raise ValueError("the file changed since it was indexed (rebuild the index)")
            try:
                header, blobs = self._worker.call(
                    {"op": "page", "page": page_no, "max_px": self.max_px}, [pdf], self.timeout
                )
            except WorkerError as exc:
                raise ValueError(f"the page could not be rendered ({type(exc).__name__})") from exc
            if header.get("status") != "ok" or len(blobs) != 3:
                raise ValueError(str(header.get("reason") or "the page could not be rendered"))
            flat = array("f")
            flat.frombytes(blobs[2])
            boxes = [(flat[i], flat[i + 1], flat[i + 2], flat[i + 3]) for i in range(0, len(flat), 4)]
            image = PageImage(
                blobs[0],
                int(header["pages"]),
                int(header["image_width"]),
                int(header["image_height"]),
                blobs[1].decode("utf-8"),
                boxes,
                tuple(float(v) for v in header["matrix"]),  # type: ignore[arg-type]
            )
            self._pages[key] = image
            while len(self._pages) > self.cache:
                self._pages.popitem(last=False)
            return image

    def close(self) -> None:
        with self._lock:
            self._worker.close()


def _folded(text: str) -> tuple[str, list[int]]:
    """Non-space characters of ``text``, NFKC-normalised and case-folded, with the index of
    the character each came from (a ligature ``ﬁ`` gives ``f`` and ``i``, both at its index)."""
    out: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        if ch.isspace():
            continue
        for c in unicodedata.normalize("NFKC", ch).casefold():
            if not c.isspace():
                out.append(c)
                where.append(i)
    return "".join(out), where


_MIN_RUN = 6  # shorter matches ("the", "of a") could be anywhere: they are not trusted alone


def align(text: str, chars: str) -> list[int]:
    """For each character of ``text`` (qa's page text), the index of the pdfium character it
    matches in ``chars``, or -1 (spaces, and characters pdfium has not got).

    Four passes over the non-space characters: (1) each line of ``text`` found exactly once
    in pdfium's text (the libraries may order lines differently, on rotated pages or in
    columns, but a line is an exact run in both); (2) order-preserving matches of at least
    ``_MIN_RUN`` characters in what is left (difflib); (3) each stretch of a line still
    unmatched, looked up anywhere in what pdfium has left, halved until found; (4) a short
    gap between two matched characters takes the pdfium characters between their matches
    (a glyph the two decode differently: ``■`` for ``ﬁ``).
    """
    a, a_at = _folded(text)
    b, b_at = _folded(chars)
    matched = [-1] * len(a)  # folded a index -> folded b index
    used = bytearray(len(b))

    def take(i: int, j: int, n: int) -> None:
        for k in range(n):
            matched[i + k] = j + k
            used[j + k] = 1

    lines = list(itertools.accumulate(int(ch == "\n") for ch in text))
    line_of = [lines[i] for i in a_at]
    for lo, hi in _unmatched_runs(matched, line_of):
        line = a[lo:hi]
        if hi - lo >= _MIN_RUN and a.count(line) == 1 and b.count(line) == 1:
            take(lo, b.index(line), hi - lo)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for block in matcher.get_matching_blocks():
        run = 0  # take the parts of the block whose both sides are still free
        for k in range(block.size + 1):
            free = k < block.size and matched[block.a + k] < 0 and not used[block.b + k]
            if free:
                run += 1
                continue
            if run >= _MIN_RUN:
                take(block.a + k - run, block.b + k - run, run)
            run = 0
    for lo, hi in reversed(_unmatched_runs(matched, line_of)):
        stack = [(lo, hi)]
        while stack:
            lo, hi = stack.pop()
            if hi - lo < _MIN_RUN:
                continue
            at = _find_unused(b, a[lo:hi], used)
            if at >= 0:
                take(lo, at, hi - lo)
            else:
                mid = (lo + hi) // 2
                stack += [(lo, mid), (mid, hi)]
    for lo, hi in _unmatched_runs(matched, [0] * len(a)):
        if lo == 0 or hi == len(a):
            continue
        left, right = matched[lo - 1], matched[hi]
        gap = right - left - 1
        if 0 < gap <= 2 * (hi - lo) + 2 and not any(used[left + 1 : right]):
            for k in range(hi - lo):
                matched[lo + k] = left + 1 + k * gap // (hi - lo)
    mapping = [-1] * len(text)
    for i, j in enumerate(matched):
        if j >= 0 and mapping[a_at[i]] < 0:
            mapping[a_at[i]] = b_at[j]
    return mapping


def _unmatched_runs(matched: list[int], line_of: list[int]) -> list[tuple[int, int]]:
    """Maximal runs of unmatched positions, cut where the source line changes."""
    runs = []
    i = 0
    while i < len(matched):
        if matched[i] >= 0:
            i += 1
            continue
        j = i + 1
        while j < len(matched) and matched[j] < 0 and line_of[j] == line_of[i]:
            j += 1
        runs.append((i, j))
        i = j
    return runs


def _find_unused(haystack: str, needle: str, used: bytearray) -> int:
    """First position of ``needle`` in ``haystack`` none of whose characters is used, or -1."""
    at = haystack.find(needle)
    while at >= 0:
        if not any(used[at : at + len(needle)]):
            return at
        at = haystack.find(needle, at + 1)
    return -1


def line_boxes(indices: list[int], boxes: list[Box]) -> list[Box]:
    """Merge the boxes of pdfium characters ``indices`` into one box per printed line.

    In page space (points, y up) a line runs left to right: a character continues the
    current box when it overlaps most of its height and follows it without a wide gap; a new
    line or column starts a new box.
    """
    out: list[list[float]] = []
    for j in sorted(set(indices)):
        left, bottom, right, top = boxes[j]
        if right <= left or top <= bottom:
            continue  # generated or invisible characters have no extent
        if out:
            cur = out[-1]
            height = min(cur[3] - cur[1], top - bottom)
            overlap = min(cur[3], top) - max(cur[1], bottom)
            if overlap > 0.5 * height and cur[0] - height < left < cur[2] + 3 * height:
                cur[:] = [min(cur[0], left), min(cur[1], bottom), max(cur[2], right), max(cur[3], top)]
                continue
        out.append([left, bottom, right, top])
    return [(a, b, c, d) for a, b, c, d in out]


def span_boxes(mapping: list[int], image: PageImage, start: int, end: int) -> list[Rect]:
    """Rectangles on the image, one per line, covering characters ``start:end`` of the page
    text (``mapping`` from ``align``)."""
    indices = [j for j in mapping[max(0, start) : max(0, end)] if j >= 0]
    return [image.to_pixels(box) for box in line_boxes(indices, image.boxes)]


def page_of(
    locations: tuple[tuple[int, str], ...], text_len: int, offset: int
) -> tuple[int, int, int] | None:
    """(page number, start, end) in the document text of the page holding ``offset``.

    PDF documents have a location "page N" at the start of each page's text; pages are
    separated by a blank line.
    """
    pages = [(off, int(m.group(1))) for off, label in locations if (m := _PAGE_LABEL.fullmatch(label))]
    current = None
    for k, (off, number) in enumerate(pages):
        if off > offset:
            break
        end = pages[k + 1][0] - 2 if k + 1 < len(pages) else text_len
        current = (number, off, max(off, end))
    return current


def render_page_view(
    doc_id: str, image: PageImage, page_no: int, quote: list[Rect], answer: list[Rect], note: str = ""
) -> str:
    """The page image with boxes over the passage and the answering sentence (HTML)."""

    def boxes(items: list[Rect], cls: str) -> str:
        return "".join(
            f'<div class="qa-box {cls}" style="left:{100 * a / image.width:.3f}%;'
            f"top:{100 * b / image.height:.3f}%;width:{100 * (c - a) / image.width:.3f}%;"
            f'height:{100 * (d - b) / image.height:.3f}%"></div>'
            for a, b, c, d in items
        )

    src = "data:image/png;base64," + base64.b64encode(image.png).decode("ascii")
    head = (
        f'<div class="qa-page-head">page {page_no} of {image.pages} · the passage is shaded, '
        "the answering sentence <mark>highlighted</mark>" + (f" · {esc(note)}" if note else "") + "</div>"
    )
    return (
        f'{head}<div class="qa-page" data-page="{page_no}">'
        f'<img class="qa-page-img" src="{src}" width="{image.width}" height="{image.height}" '
        f'alt="page {page_no} of {esc(doc_id)}">'
        + boxes(quote, "qa-box-passage")
        + boxes(answer, "qa-box-answer")
        + "</div>"
    )


def page_view(
    renderer: PageRenderer,
    pdf_path: Path,
    doc_hash: str,
    doc_id: str,
    text: str,
    locations: tuple[tuple[int, str], ...],
    start: int,
    end: int,
    highlight: tuple[int, int],
) -> str:
    """The page view of a quote ``text[start:end]`` with its answering sentence ``highlight``.

    Returns "" with nothing to show, or a short notice when the page cannot be shown (file
    changed since it was indexed, unreadable); the caller keeps the text view either way.
    """
    where = page_of(locations, len(text), highlight[0] if highlight[1] > highlight[0] else start)
    if where is None:
        return ""
    page_no, page_start, page_end = where
    try:
        image = renderer.page(doc_hash, page_no, pdf_path.read_bytes)
    except OSError as exc:
        return _notice(f"page view unavailable: {doc_id} cannot be read ({exc.strerror})")
    except ValueError as exc:
        return _notice(f"page view unavailable: {exc}")
    mapping = align(text[page_start:page_end], image.chars)
    quote = span_boxes(mapping, image, start - page_start, end - page_start)
    answer = span_boxes(mapping, image, highlight[0] - page_start, highlight[1] - page_start)
    note = ""
    if start < page_start or end > page_end:
        note = "the passage runs onto the " + ("previous" if start < page_start else "next") + " page"
    return render_page_view(doc_id, image, page_no, quote, answer, note)


def _notice(message: str) -> str:
    return f'<div class="qa-page-head qa-page-note">{esc(message)}</div>'
