"""Parsing: bytes of one file -> (text, locations), one function per format.

Plain text is decoded with a detected encoding; Markdown keeps its source text and maps
headings with markdown-it-py; HTML goes through BeautifulSoup; PDF through pypdf (a location
per page); DOCX through python-docx (a location per heading). PDF, DOCX and HTML run in a
separate process with a time and memory limit (``IsolatedParser``), because a hostile file can
make a parser loop or allocate without bound.

Non-goals: OCR, tables as structure, legacy .doc files.
"""

from __future__ import annotations

import codecs
import io
import multiprocessing
import multiprocessing.pool
import re
import unicodedata
import zipfile
from types import TracebackType
from typing import Any

from qa.errors import DocumentError

Locations = list[tuple[int, str]]
# (text, locations, note): the note says how the bytes were decoded when it matters.
Parsed = tuple[str, Locations, str]

# Magic numbers of binary formats a user may have renamed to .txt by mistake.
_MAGIC = {
    b"\x89PNG": "PNG image",
    b"%PDF-": "PDF",
    b"PK\x03\x04": "zip archive (docx, xlsx...)",
    b"\xff\xd8\xff": "JPEG image",
    b"GIF8": "GIF image",
    b"\x7fELF": "executable",
    b"\x1f\x8b": "gzip archive",
}
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# A docx is a zip: refuse archives that declare more than this uncompressed, or compress
# better than this ratio (a zip bomb does both), before python-docx reads a byte of them.
DOCX_MAX_UNCOMPRESSED = 512 * 2**20
DOCX_MAX_RATIO = 200
ISOLATED_FORMATS = frozenset({"pdf", "docx", "html"})
WORKER_MEMORY_BYTES = 3 * 2**30


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes of a text file; return (text, note). The note says how it was decoded
    when that was not plain UTF-8.

    Raises:
        DocumentError: the bytes are a known binary format or not text in any encoding.
    """
    for magic, kind in _MAGIC.items():
        if data.startswith(magic):
            raise DocumentError(f"looks like a {kind}, not text: give the file its real extension")
    note = ""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = data.decode(encoding, errors="replace")
            note = f"decoded as {encoding.upper()} (byte order mark)"
            break
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text, note = _decode_guess(data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _control_ratio(text) > 0.05:
        raise DocumentError("binary content (many control characters), not text")
    return text, note


def _decode_guess(data: bytes) -> tuple[str, str]:
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is not None and best.encoding not in ("utf_8",):
        return str(best), f"not valid UTF-8: decoded as {best.encoding} (detected)"
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    return text, f"invalid UTF-8: {bad} undecodable byte sequence(s) replaced with U+FFFD"


def _control_ratio(text: str) -> float:
    sample = text[:65536]
    if not sample:
        return 0.0
    bad = sum(1 for ch in sample if ch not in "\n\t\f\v" and unicodedata.category(ch) == "Cc")
    return bad / len(sample)


def parse_text(data: bytes) -> Parsed:
    """Plain text: decoded source, no locations (line numbers are derived on demand)."""
    text, note = decode_text(data)
    return text, [], note


def parse_markdown(data: bytes) -> Parsed:
    """Markdown: the source text itself, with a location at each heading ("A > B")."""
    from markdown_it import MarkdownIt

    text, note = decode_text(data)
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    tokens = MarkdownIt("commonmark").parse(text)
    path: list[tuple[int, str]] = []
    locations: Locations = []
    for i, tok in enumerate(tokens):
        if tok.type != "heading_open" or tok.map is None:
            continue
        level = int(tok.tag[1])
        title = tokens[i + 1].content.strip() if i + 1 < len(tokens) else ""
        path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
        locations.append((line_starts[tok.map[0]], " > ".join(t for _, t in path if t)))
    return text, locations, note


_BLOCK_TAGS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "td",
        "th",
        "tr",
        "ul",
        "title",
    ]
)
_SKIP_TAGS = frozenset(["script", "style", "noscript", "template", "head", "iframe", "object", "svg"])


def parse_html(data: bytes) -> Parsed:
    """HTML: visible text with blocks separated by newlines and a location at each heading."""
    from bs4 import BeautifulSoup, NavigableString, Tag

    raw, note = decode_text(data)
    soup = BeautifulSoup(raw, "html.parser")
    parts: list[str] = []
    length = 0
    locations: Locations = []
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    headings: list[tuple[int, str]] = []
    skip_until: Any = None  # element after which skipping ends

    def emit(s: str) -> None:
        nonlocal length
        parts.append(s)
        length += len(s)

    def ends_with_break() -> bool:
        return not parts or parts[-1].endswith("\n")

    if title:
        emit(title + "\n\n")
        locations.append((0, title))
    for el in soup.descendants:  # iterative walk: deep nesting cannot exhaust the stack
        if skip_until is not None:
            if el is skip_until:
                skip_until = None
            continue
        if isinstance(el, Tag):
            if el.name in _SKIP_TAGS or el.name == "title":
                skip_until = _last_descendant(el)
                continue
            if el.name in _BLOCK_TAGS and not ends_with_break():
                emit("\n")
            if el.name in ("h1", "h2", "h3", "h4", "h5", "h6"):
                level = int(el.name[1])
                name = el.get_text(" ", strip=True)
                headings = [(lvl, t) for lvl, t in headings if lvl < level] + [(level, name)]
                if not ends_with_break():
                    emit("\n")
                locations.append((length, " > ".join(t for _, t in headings if t)))
        elif type(el) is NavigableString:
            s = re.sub(r"\s+", " ", str(el))
            if ends_with_break() or (parts and parts[-1].endswith(" ")):
                s = s.lstrip()
            if s:
                emit(s)
    return "".join(parts), locations, note


def _last_descendant(tag: Any) -> Any:
    last = tag
    while getattr(last, "contents", None):
        last = last.contents[-1]
    return last


def parse_pdf(data: bytes) -> Parsed:
    """PDF: text of each page, pages separated by blank lines, a location per page."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError("encrypted PDF: remove the password and add it again")
        parts: list[str] = []
        locations: Locations = []
        length = 0
        for number, page in enumerate(reader.pages, start=1):
            page_text = (page.extract_text() or "").replace("\r\n", "\n").replace("\r", "\n")
            if parts:
                parts.append("\n\n")
                length += 2
            locations.append((length, f"page {number}"))
            parts.append(page_text)
            length += len(page_text)
    except DocumentError:
        raise
    except (
        PdfReadError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        RecursionError,
        OSError,
        IndexError,
        NotImplementedError,
    ) as exc:
        raise DocumentError(f"unreadable PDF ({type(exc).__name__}: {exc})") from exc
    text = "".join(parts)
    if not text.strip():
        raise DocumentError("PDF has no extractable text (scanned? OCR is not supported)")
    return text, locations, ""


def parse_docx(data: bytes) -> Parsed:
    """DOCX: paragraphs and table rows in order, a location at each heading."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DocumentError("not a valid .docx (not a zip archive)") from exc
    declared = sum(i.file_size for i in infos)
    packed = max(1, sum(i.compress_size for i in infos))
    if declared > DOCX_MAX_UNCOMPRESSED or declared / packed > DOCX_MAX_RATIO:
        raise DocumentError(
            f"refused: declares {declared / 2**20:.0f} MiB uncompressed from "
            f"{packed / 2**20:.1f} MiB (zip bomb?)"
        )
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        parts: list[str] = []
        locations: Locations = []
        headings: list[tuple[int, str]] = []
        length = 0
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                rows = [" | ".join(c.text.strip() for c in row.cells) for row in block.rows]
                piece = "\n".join(r for r in rows if r.strip(" |"))
            else:
                piece = block.text
                style = (block.style.name if block.style is not None else "") or ""
                level = _heading_level(style)
                if level and piece.strip():
                    headings = [(lvl, t) for lvl, t in headings if lvl < level]
                    headings.append((level, piece.strip()))
                    sep = 2 if parts else 0
                    locations.append((length + sep, " > ".join(t for _, t in headings)))
            if not piece.strip():
                continue
            if parts:
                parts.append("\n\n")
                length += 2
            parts.append(piece)
            length += len(piece)
    except DocumentError:
        raise
    except Exception as exc:  # python-docx raises many types on malformed XML/parts
        raise DocumentError(f"unreadable .docx ({type(exc).__name__}: {exc})") from exc
    return "".join(parts), locations, ""


def _heading_level(style: str) -> int:
    if style == "Title":
        return 1
    m = re.fullmatch(r"Heading (\d)", style)
    return int(m.group(1)) if m else 0


_PARSERS = {
    "text": parse_text,
    "markdown": parse_markdown,
    "html": parse_html,
    "pdf": parse_pdf,
    "docx": parse_docx,
}


def parse(fmt: str, data: bytes) -> Parsed:
    """Parse ``data`` as ``fmt`` in this process.

    Raises:
        DocumentError: the file cannot be turned into text.
    """
    try:
        return _PARSERS[fmt](data)
    except RecursionError as exc:
        raise DocumentError("document nested too deeply to parse") from exc
    except MemoryError as exc:
        raise DocumentError("document needs too much memory to parse") from exc


def _worker_init() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))


def _worker_parse(fmt: str, data: bytes) -> tuple[str, Any, Any, str]:
    try:
        return ("ok", *parse(fmt, data))
    except DocumentError as exc:
        return ("error", str(exc), None, "")


class IsolatedParser:
    """Parses risky formats in a child process with a time and memory limit.

    Use as a context manager around a build; plain text and Markdown are parsed in-process.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._pool: multiprocessing.pool.Pool | None = None

    def __enter__(self) -> IsolatedParser:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _get_pool(self) -> multiprocessing.pool.Pool:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")  # fork is unsafe in a threaded server
            self._pool = ctx.Pool(1, initializer=_worker_init, maxtasksperchild=500)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def parse(self, fmt: str, data: bytes) -> Parsed:
        """Parse like ``parse`` but in the worker for risky formats.

        Raises:
            DocumentError: unreadable, or the parser ran out of time or memory.
        """
        if fmt not in ISOLATED_FORMATS:
            return parse(fmt, data)
        result = self._get_pool().apply_async(_worker_parse, (fmt, data))
        try:
            status, text, locations, note = result.get(self.timeout)
        except multiprocessing.TimeoutError:
            self.close()  # the stuck worker is killed; the next file gets a fresh one
            raise DocumentError(
                f"parser did not finish within {self.timeout:g} s (crashed, looping or too "
                "large): skipped; raise QA_PARSE_TIMEOUT to allow more time"
            ) from None
        if status != "ok":
            raise DocumentError(text)
        return text, [(int(a), str(b)) for a, b in locations], note
