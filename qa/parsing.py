"""Parsing: bytes of one file -> (text, locations), one function per format.

Plain text is decoded with a detected encoding; Markdown keeps its source text and maps
headings with markdown-it-py; HTML goes through BeautifulSoup; PDF through pypdf (a location
per page); DOCX through python-docx (a location per heading). PDF, DOCX, HTML and Markdown run
in a separate process with a time and memory limit (``IsolatedParser``), because a hostile file
can make a parser loop or allocate without bound; plain text is only decoded, in-process.

``parse`` cleans whatever a parser returns: lone surrogates (which the index cannot store)
become U+FFFD, one character for one so offsets hold, and locations are sorted and kept inside
the text. Any exception a parser raises becomes a ``DocumentError`` naming the problem.

Non-goals: OCR, tables as structure, legacy .doc files.
"""

from __future__ import annotations

import codecs
import io
import re
import threading
import unicodedata
import zipfile
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from qa.errors import DocumentError
from qa.isolation import IsolatedWorker, WorkerCrashError, WorkerStartError, WorkerTimeoutError

Locations = list[tuple[int, str]]
# (text, locations, note): the note says how the bytes were decoded when it matters.
Parsed = tuple[str, Locations, str]

# OLE2 compound file: legacy .doc/.xls, and also any password-protected Office file.
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Magic numbers of binary formats a user may have renamed to .txt by mistake.
_MAGIC = {
    b"\x89PNG": "PNG image",
    b"%PDF-": "PDF",
    b"PK\x03\x04": "zip archive (docx, xlsx...)",
    b"\xff\xd8\xff": "JPEG image",
    b"GIF87a": "GIF image",
    b"GIF89a": "GIF image",
    b"\x7fELF": "executable",
    b"\x1f\x8b": "gzip archive",
    _OLE_MAGIC: "legacy Office document (.doc/.xls) or encrypted Office file",
}
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Without a byte order mark, UTF-16/32 is recognised from its zero bytes (see _guess_utf16),
# never guessed by the detector: on short Latin-1 text it "finds" UTF-16 and returns garbage.
_NO_BOM_GUESS = ["utf_16", "utf_16_be", "utf_16_le", "utf_32", "utf_32_be", "utf_32_le", "utf_7"]
# A docx is a zip: refuse archives that declare more than this uncompressed in all, or an XML
# part (parsed into a tree, several times its size in memory) larger than this, before
# python-docx reads a byte of them. Absolute limits, not a compression ratio: a large image
# of one colour compresses 1000:1 and is harmless (zipfile never inflates past the declared size).
DOCX_MAX_UNCOMPRESSED = 512 * 2**20
DOCX_MAX_XML_PART = 128 * 2**20
ISOLATED_FORMATS = frozenset({"pdf", "docx", "html", "markdown"})
# Bump when a parser's output changes: indexes built before re-parse every document once
# (vectors of unchanged chunks are still reused).
PARSER_VERSION = 4  # 4: PDF running headers/footers dropped; HTML and DOCX list items marked
WORKER_MEMORY_BYTES = 3 * 2**30
# Location labels are cut to this many characters (a "heading" can be a whole page of text).
LABEL_CHARS = 200
_SURROGATE = re.compile("[\ud800-\udfff]")


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes of a text file; return (text, note). The note says how it was decoded
    when that was not plain UTF-8. The same bytes always give the same text.

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
            bad = text.count("\ufffd")
            if bad:
                note += f"; {bad} undecodable sequence(s) replaced with U+FFFD"
            break
    else:
        utf16 = _guess_utf16(data)
        if utf16 is not None:  # checked first: ASCII text in UTF-16 is also valid UTF-8
            text = data[: len(data) // 2 * 2].decode(utf16, errors="replace")
            note = f"no byte order mark: decoded as {utf16.upper()} (detected from zero bytes)"
        else:
            try:
                utf8: str | None = data.decode("utf-8")
            except UnicodeDecodeError:
                utf8 = None
            # Cyrillic or CJK in UTF-16 has few zero bytes; Cyrillic's bytes are even valid
            # UTF-8 (full of control characters). Either way the UTF-16 reads as one script.
            if utf8 is None or _control_ratio(utf8) > 0.05:
                utf16 = _utf16_by_script(data)
            if utf16 is not None:
                text = data.decode(utf16, errors="replace")
                note = f"no byte order mark: decoded as {utf16.upper()} (detected from the script)"
            elif utf8 is not None:
                text = utf8
            else:
                text, note = _decode_guess(data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _control_ratio(text) > 0.05:
        raise DocumentError("binary content (many control characters), not text")
    return text, note


def _guess_utf16(data: bytes) -> str | None:
    """``utf-16-le``/``utf-16-be`` when the bytes look like BOM-less UTF-16 text, else None.

    UTF-16 text in Latin scripts has a zero in most odd (LE) or even (BE) bytes and almost
    none at the other parity; 8-bit encodings have no zero bytes at all.
    """
    sample = data[:4096]
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even = sample[0 : 2 * pairs : 2].count(0) / pairs
    odd = sample[1 : 2 * pairs : 2].count(0) / pairs
    if odd > 0.3 and even < 0.05:
        return "utf-16-le"
    if even > 0.3 and odd < 0.05:
        return "utf-16-be"
    return None


# Characters that make a decoding implausible: controls (but line breaks and tabs), format
# characters, unassigned and private-use code points, lone surrogates.
_IMPLAUSIBLE = frozenset({"Cc", "Cf", "Cn", "Co", "Cs"})


def _script_key(ch: str) -> int:
    """A bucket for "the same script": CJK ideographs (with extension A) and Hangul syllables
    are one bucket each, anything else its 128-code-point block."""
    code = ord(ch)
    if 0x3400 <= code <= 0x9FFF:
        return 0x4E00
    if 0xAC00 <= code <= 0xD7AF:
        return 0xAC00
    return code >> 7


def _utf16_by_script(data: bytes) -> str | None:
    """``utf-16-le``/``utf-16-be`` when BOM-less bytes read as UTF-16 text in one or two
    scripts (Cyrillic, Greek, CJK, Hangul... plus ASCII), else None.

    Plausible means: an even length; in the first 16 KiB, no control (but line breaks and
    tabs), format, unassigned, private-use or unpaired surrogate code point; at least 16
    letters, 90% of them from the two most common script buckets. Single-byte and multibyte
    legacy encodings read as UTF-16 give private-use, unassigned or surrogate code points, and
    Latin text gives U+20xx format characters (a letter before a space).
    """
    if len(data) < 8 or len(data) % 2:
        return None
    sample = data[: 16 * 1024]
    for encoding in ("utf-16-le", "utf-16-be"):
        text = sample.decode(encoding, errors="surrogatepass")
        if text and 0xD800 <= ord(text[-1]) <= 0xDBFF:
            text = text[:-1]  # the sample cut a surrogate pair in two
        buckets: dict[int, int] = {}
        letters = 0
        for ch in text:
            category = unicodedata.category(ch)
            if category in _IMPLAUSIBLE and ch not in "\n\r\t":
                break
            if category[0] == "L":
                letters += 1
                key = _script_key(ch)
                buckets[key] = buckets.get(key, 0) + 1
        else:
            top_two = sum(sorted(buckets.values(), reverse=True)[:2])
            if letters >= 16 and top_two >= 0.9 * letters:
                return encoding
    return None


# Three non-ASCII bytes in a row do not happen in Western European text in a single-byte
# code page (accents sit inside ASCII words); they do in Cyrillic, Greek, CJK...
_HIGH_RUN = re.compile(rb"[\x80-\xff]{3}")
# Windows-1252 = Latin-1 except 0x80-0x9F, where it has printable characters (but 5 holes).
_CP1252_C1 = {
    i: bytes([i]).decode("cp1252") for i in range(0x80, 0xA0) if i not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)
}
_CP1252_SYMBOLS = frozenset("€‚„…†‡‰‹›‘’“”•–—˜™\xa0¡¢£¤¥¦§¨©ª«¬\xad®¯°±²³´µ¶·¸¹º»¼½¾¿×÷")


def _western(data: bytes) -> str | None:
    """The bytes as Windows-1252 when that reads as Western European text, else None.

    Plausible means: no run of three non-ASCII bytes, and every non-ASCII character is a
    Latin letter or common punctuation (bytes 1252 leaves undefined fail this).
    """
    if _HIGH_RUN.search(data) is not None or b"\x00" in data:
        return None
    text = data.decode("latin-1").translate(_CP1252_C1)
    for ch in {c for c in text if ord(c) >= 0x80}:
        if ch in _CP1252_SYMBOLS:
            continue
        if not (unicodedata.category(ch).startswith("L") and "LATIN" in unicodedata.name(ch, "")):
            return None
    return text


def _decode_guess(data: bytes) -> tuple[str, str]:
    """Decode bytes that are not valid UTF-8, deterministically, and say how.

    In order: UTF-8 with replacement characters when at least half the non-ASCII sequences
    are valid UTF-8 (a few stray bytes in a UTF-8 file); Windows-1252 when it reads as Western
    European text (detectors guess wildly on short Western text: "café" came back as Urdu
    or UTF-16, French as Central European); UTF-8 with replacement characters again when at
    most 1% of the characters would be replaced (ASCII text with one bad byte came back as
    cp932 or cp857, eating the character after it); charset-normalizer's best guess otherwise
    (Cyrillic, Greek, CJK...); and UTF-8 with replacement characters as the last resort.
    """
    as_utf8 = data.decode("utf-8", errors="replace")
    bad = as_utf8.count("\ufffd") - data.count("\ufffd".encode())
    good = sum(1 for ch in as_utf8 if ord(ch) >= 0x80) - bad
    replaced = f"invalid UTF-8: {bad} undecodable byte sequence(s) replaced with U+FFFD"
    if good >= bad and good:
        return as_utf8, replaced
    western = _western(data)
    if western is not None:
        return western, "not valid UTF-8: decoded as cp1252 (Western European text)"
    if bad * 100 <= len(as_utf8):
        return as_utf8, replaced
    if b"\x00" not in data:
        from charset_normalizer import from_bytes

        best = from_bytes(data, cp_exclusion=_NO_BOM_GUESS).best()
        if best is not None and best.encoding not in ("utf_8", "ascii"):
            try:
                return data.decode(best.encoding), f"not valid UTF-8: decoded as {best.encoding} (detected)"
            except (UnicodeDecodeError, LookupError):
                pass  # the detector only sampled the bytes: fall back to UTF-8 with replacement
    return as_utf8, replaced


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
    """Markdown: the source text itself, with a location at each heading ("A > B").

    Only the block structure is parsed (inline markup is never needed for headings), which
    keeps the time linear in the file size.
    """
    from markdown_it import MarkdownIt

    text, note = decode_text(data)
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    md = MarkdownIt("commonmark").disable(["inline", "text_join"])
    tokens = md.parse(text)
    path: list[tuple[int, str]] = []
    locations: Locations = []
    for i, tok in enumerate(tokens):
        if tok.type != "heading_open" or tok.map is None:
            continue
        level = int(tok.tag[1])
        title = tokens[i + 1].content.strip() if i + 1 < len(tokens) else ""
        path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
        label = " > ".join(t for _, t in path if t)
        if label and tok.map[0] < len(line_starts):
            locations.append((line_starts[tok.map[0]], label))
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
        "tr",
        "ul",
        "title",
    ]
)
_SKIP_TAGS = frozenset(["script", "style", "noscript", "template", "head", "iframe", "object", "svg"])


def parse_html(data: bytes) -> Parsed:
    """HTML: visible text with blocks separated by newlines and a location at each heading.

    One iterative pass over the parse tree keeps the stack of open elements (the current
    node's ancestors), so each element is opened and closed exactly once: deep nesting can
    neither exhaust the stack nor take quadratic time, and a block's end is known (text after
    ``</p>`` or ``</h2>`` starts a new line). A heading's label is its own text.
    """
    from bs4 import BeautifulSoup, NavigableString, Tag

    raw, note = decode_text(data)
    soup = BeautifulSoup(raw, "html.parser")
    parts: list[str] = []
    length = 0
    locations: Locations = []
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    headings: list[tuple[int, str]] = []
    heading: Any = None  # the open heading element
    heading_at = 0  # its index in ``locations``
    heading_text: list[str] = []
    skipping: Any = None  # the open element whose content is not text (script, style...)
    in_pre = 0  # open <pre> elements: whitespace is kept inside them
    stack: list[Any] = []  # open elements, outermost first
    item_numbers: dict[int, int] = {}  # id of an open <ol> -> number of its last item
    marker = ""  # the marker of a list item, written before the item's first text

    def emit(s: str) -> None:
        nonlocal length
        parts.append(s)
        length += len(s)
        if heading is not None and sum(map(len, heading_text)) < LABEL_CHARS:
            heading_text.append(s)

    def block_break() -> None:
        if parts and not parts[-1].endswith("\n"):
            emit("\n")

    def close_heading() -> None:
        nonlocal heading, headings
        if heading is None:
            return
        level = int(heading.name[1])
        name = " ".join("".join(heading_text).split())[:LABEL_CHARS]
        headings = [(lvl, t) for lvl, t in headings if lvl < level] + [(level, name)]
        locations[heading_at] = (locations[heading_at][0], " > ".join(t for _, t in headings if t))
        heading = None
        heading_text.clear()

    def close(tag: Any) -> None:
        nonlocal skipping, in_pre, marker
        if tag.name == "li":
            marker = ""  # an empty item: its marker is not carried to the next text
        if tag is skipping:
            skipping = None
        elif skipping is None:
            if tag is heading:
                close_heading()
            if tag.name in _BLOCK_TAGS:
                block_break()
            if tag.name == "pre":
                in_pre -= 1

    if title:
        emit(title + "\n\n")
        locations.append((0, title))
    for el in soup.descendants:  # iterative walk: deep nesting cannot exhaust the stack
        while stack and stack[-1] is not el.parent:
            close(stack.pop())
        if isinstance(el, Tag):
            stack.append(el)
            if skipping is not None:
                continue
            if el.name in _SKIP_TAGS or el.name == "title":
                skipping = el
                continue
            if el.name in _BLOCK_TAGS:
                block_break()
                # a list item reads as the browser shows it, "• " or "3. " before its first text
                marker = _item_marker(el, item_numbers) if el.name == "li" else marker
            elif el.name in ("td", "th") and parts and not parts[-1].endswith("\n"):
                emit("| " if parts[-1].endswith(" ") else " | ")  # a table row stays one line
            if el.name == "pre":
                in_pre += 1
            if el.name in ("h1", "h2", "h3", "h4", "h5", "h6"):
                marker = ""  # a heading inside a list item stays a heading
                close_heading()
                heading, heading_at = el, len(locations)
                locations.append((length, ""))
        elif skipping is None and type(el) is NavigableString:
            if in_pre:  # preformatted: lines and spacing are the content
                s = str(el)
            else:
                s = re.sub(r"\s+", " ", str(el))
                if not parts or parts[-1].endswith(("\n", " ")):
                    s = s.lstrip()
            if s:
                emit(marker + s)
                marker = ""
    while stack:
        close(stack.pop())
    return "".join(parts).rstrip("\n"), locations, note


def _item_marker(li: Any, numbers: dict[int, int]) -> str:
    """The marker of an HTML list item: its number in an ``<ol>``, else a bullet."""
    parent = li.parent
    if parent is None or parent.name != "ol":
        return "\u2022 "
    key = id(parent)
    if key not in numbers:
        start = str(parent.get("start", "1")).strip()
        numbers[key] = (int(start) if start.isdigit() and len(start) < 7 else 1) - 1
    numbers[key] += 1
    return f"{numbers[key]}. "


def parse_pdf(data: bytes) -> Parsed:
    """PDF: text of each page, pages separated by blank lines, a location per page.

    A PDF without its ``%%EOF`` end marker was cut short: when pypdf still recovers text the
    note says it may be incomplete; when it cannot, the reason says the file is truncated.
    """
    from pypdf import PdfReader

    truncated = b"%%EOF" not in data[-2048:]
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            if _uses_aes(reader) and not _aes_available():
                # pypdf would "read" it as pages without text, hiding the real problem
                raise DocumentError(
                    "encrypted PDF (AES) cannot be decrypted without the 'cryptography' package: "
                    "install it (pip install cryptography) or remove the password"
                )
            try:
                opened = reader.decrypt("")
            except Exception as exc:  # e.g. AES without the cryptography package
                raise DocumentError(
                    f"encrypted PDF that cannot be opened ({type(exc).__name__}: {_short(exc)}): "
                    "remove the password and add it again"
                ) from exc
            if not opened:
                raise DocumentError("encrypted PDF (password needed): remove the password and add it again")
        parts: list[str] = []
        locations: Locations = []
        length = 0
        pages = [(p.extract_text() or "").replace("\r\n", "\n").replace("\r", "\n") for p in reader.pages]
        for number, page_text in enumerate(drop_running_lines(pages), start=1):
            if parts:
                parts.append("\n\n")
                length += 2
            locations.append((length, f"page {number}"))
            parts.append(page_text)
            length += len(page_text)
    except DocumentError:
        raise
    except Exception as exc:  # pypdf raises many types on malformed files
        if truncated:
            raise DocumentError(
                f"truncated or corrupt PDF (no %%EOF end marker; {type(exc).__name__}: {_short(exc)}): "
                "download or export the file again"
            ) from exc
        raise DocumentError(
            f"unreadable PDF ({type(exc).__name__}: {_short(exc)}): repair or re-export the file"
        ) from exc
    text = "".join(parts)
    if not text.strip():
        raise DocumentError("PDF has no extractable text (scanned? OCR is not supported)")
    note = "PDF has no %%EOF end marker (truncated?): its text may be incomplete" if truncated else ""
    return text, locations, note


_EDGE_LINES = 3  # running headers and footers are among the first or last lines of a page
_RUNNING_MAX_CHARS = 150  # a longer line is content, not a header
_NUMBER = re.compile(r"\d+")
_LINE = re.compile(r"[^\n]*(?:\n|$)")


def drop_running_lines(pages: list[str]) -> list[str]:
    """Page texts without their running headers and footers.

    A report's "Caldermoor Observatory | Annual Report 2023 | page 2" or "Page 2 of 9" sits
    among a page's first or last lines on every page; in the text it splits the sentence that
    runs across the page break and it is matched by questions about the document's subject.
    A line is running when the same line, numbers aside, is among the first or last
    ``_EDGE_LINES`` lines of at least half of the pages (and of two). One that carries the page
    number (a number rising with the page) is dropped on every page; an identical line is kept
    where it first appears and dropped where it repeats (a table header printed again on each
    page keeps its first occurrence). A one-page document is left as it is.
    """
    if len(pages) < 2:
        return pages
    seen: dict[str, list[tuple[int, int, int, tuple[int, ...]]]] = {}
    for page_no, text in enumerate(pages):
        lines = [(m.start(), m.end()) for m in _LINE.finditer(text) if m.group().strip()]
        for start, end in dict.fromkeys(lines[:_EDGE_LINES] + lines[-_EDGE_LINES:]):
            line = " ".join(text[start:end].split())
            if len(line) > _RUNNING_MAX_CHARS:
                continue
            key = _NUMBER.sub("#", line).casefold()
            numbers = tuple(int(n) for n in _NUMBER.findall(line)[:8])
            seen.setdefault(key, []).append((page_no, start, end, numbers))
    need = max(2, (len(pages) + 1) // 2)
    drops: dict[int, list[tuple[int, int]]] = {}
    for hits in seen.values():
        if len({page_no for page_no, *_ in hits}) < need:
            continue
        if len({numbers for *_, numbers in hits}) == 1:
            hits = hits[1:]  # the same line on every page: keep its first occurrence
        elif not _counts_pages(hits):
            continue  # numbers that differ but do not follow the pages ("Table 3"): content
        for page_no, start, end, _ in hits:
            drops.setdefault(page_no, []).append((start, end))
    out = []
    for page_no, text in enumerate(pages):
        kept, at = [], 0
        for start, end in sorted(drops.get(page_no, [])):
            kept.append(text[at:start])
            at = max(at, end)
        kept.append(text[at:])
        out.append("".join(kept))
    return out


def _counts_pages(hits: list[tuple[int, int, int, tuple[int, ...]]]) -> bool:
    """Whether one of the numbers of these lines is the page number (plus a fixed offset)."""
    width = min(len(numbers) for *_, numbers in hits)
    return any(len({numbers[i] - page_no for page_no, _, _, numbers in hits}) == 1 for i in range(width))


def _uses_aes(reader: Any) -> bool:
    """Whether an encrypted PDF's security handler uses AES (V5, or an AESV2/AESV3 filter)."""
    try:
        enc = reader.trailer["/Encrypt"].get_object()
        if int(enc.get("/V", 0)) >= 5:
            return True
        filters = enc.get("/CF", {})
        return any(str(f.get_object().get("/CFM", "")) in ("/AESV2", "/AESV3") for f in filters.values())
    except Exception:  # a malformed dictionary: let pypdf report it
        return False


def _aes_available() -> bool:
    """pypdf decrypts AES with ``cryptography`` or, failing that, ``pycryptodome``."""
    import importlib.util

    return any(importlib.util.find_spec(name) is not None for name in ("cryptography", "Crypto"))


def parse_docx(data: bytes) -> Parsed:
    """DOCX: paragraphs and table rows in order, a location at each heading.

    The zip's declared sizes are checked before python-docx reads anything, so a zip bomb is
    refused without being inflated (zipfile never inflates a member past its declared size).
    """
    if data.startswith(_OLE_MAGIC):
        raise DocumentError(
            "not a .docx: an encrypted (password-protected) or legacy Word file; "
            "remove the password or save it as .docx"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise DocumentError("not a valid .docx (not a zip archive): save it again as .docx") from exc
    declared = sum(i.file_size for i in infos)
    packed = max(1, sum(i.compress_size for i in infos))
    xml = max(
        (i for i in infos if i.filename.endswith((".xml", ".rels"))), key=lambda i: i.file_size, default=None
    )
    if declared > DOCX_MAX_UNCOMPRESSED or (xml is not None and xml.file_size > DOCX_MAX_XML_PART):
        what = f"declares {human_size(declared)} uncompressed"
        if declared <= DOCX_MAX_UNCOMPRESSED and xml is not None:
            what = f"declares {human_size(xml.file_size)} for the XML part {xml.filename}"
        raise DocumentError(
            f"refused as a possible zip bomb: {what} from {human_size(packed)} "
            f"(limits: {human_size(DOCX_MAX_UNCOMPRESSED)} in all, "
            f"{human_size(DOCX_MAX_XML_PART)} per XML part)"
        )
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        _keep_entity_references(document.element)
        parts: list[str] = []
        locations: Locations = []
        headings: list[tuple[int, str]] = []
        length = 0
        lists = _DocxLists(document)
        for block in _docx_blocks(document):
            if isinstance(block, Table):
                piece = _table_text(block)
            else:
                piece = block.text
                style = (block.style.name if block.style is not None else "") or ""
                level = _heading_level(style)
                if piece.strip() and not level:  # a numbered heading stays a heading
                    piece = lists.marker(block) + piece
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
        raise DocumentError(
            f"unreadable .docx ({type(exc).__name__}: {_short(exc)}): open and save it again in Word"
        ) from exc
    return "".join(parts), locations, ""


def _keep_entity_references(root: Any) -> None:
    """Fold unresolved entity references (``&name;``) into the text around them, as written.

    python-docx parses without resolving entities (no XXE, no billion laughs), which leaves
    each reference as a node; a run's text stops at it and the rest of the run, in the node's
    tail, was dropped. Now "a &x; b" reads "a &x; b".
    """
    from lxml import etree

    for ref in list(root.iter(etree.Entity)):
        parent = ref.getparent()
        if parent is None:
            continue
        literal = (ref.text or "") + (ref.tail or "")
        before = ref.getprevious()
        if before is not None:
            before.tail = (before.tail or "") + literal
        else:
            parent.text = (parent.text or "") + literal
        parent.remove(ref)


def _docx_blocks(document: Any) -> Iterator[Any]:
    """Body paragraphs and tables in order, including those inside content controls
    (``w:sdt``), which python-docx's ``iter_inner_content`` skips. Iterative: nesting depth
    cannot exhaust the stack."""
    from docx.oxml.ns import qn
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    parent = document._body
    p_tag, tbl_tag, sdt_tag, content_tag = qn("w:p"), qn("w:tbl"), qn("w:sdt"), qn("w:sdtContent")
    stack = [iter(document.element.body)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
        elif child.tag == p_tag:
            yield Paragraph(child, parent)
        elif child.tag == tbl_tag:
            yield Table(child, parent)
        elif child.tag == sdt_tag:
            content = child.find(content_tag)
            if content is not None:
                stack.append(iter(content))


class _DocxLists:
    """Markers of list paragraphs as Word shows them: "• " for a bullet, "3. " for the third
    item of a numbered list (counted per list and level; a deeper level restarts)."""

    def __init__(self, document: Any) -> None:
        self._formats: dict[tuple[str, int], tuple[str, int]] = {}  # (numId, level) -> (format, start)
        self._counts: dict[str, list[int]] = {}
        try:
            root = document.part.numbering_part.element
        except (KeyError, NotImplementedError, AttributeError):  # no numbering part: no lists
            return
        w = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
        abstract: dict[str, dict[int, tuple[str, int]]] = {}
        for node in root.iterfind(f"{w}abstractNum"):
            levels = abstract.setdefault(node.get(f"{w}abstractNumId", ""), {})
            for lvl in node.iterfind(f"{w}lvl"):
                fmt, start = lvl.find(f"{w}numFmt"), lvl.find(f"{w}start")
                levels[_int(lvl.get(f"{w}ilvl"), 0)] = (
                    fmt.get(f"{w}val", "decimal") if fmt is not None else "decimal",
                    _int(start.get(f"{w}val") if start is not None else None, 1),
                )
        for num in root.iterfind(f"{w}num"):
            ref = num.find(f"{w}abstractNumId")
            levels = abstract.get(ref.get(f"{w}val", "") if ref is not None else "", {})
            for level, spec in levels.items():
                self._formats[(num.get(f"{w}numId", ""), level)] = spec

    def marker(self, paragraph: Any) -> str:
        numbering = _num_pr(paragraph._p.pPr)
        style = paragraph.style
        while numbering is None and style is not None:  # a list style ("List Number") numbers it
            numbering = _num_pr(style.element.pPr)
            style = style.base_style
        if numbering is None:
            return ""
        num_id = str(numbering.numId.val) if numbering.numId is not None else ""
        level = int(numbering.ilvl.val) if numbering.ilvl is not None else 0
        if num_id in ("", "0"):  # numId 0: numbering switched off for this paragraph
            return ""
        fmt, start = self._formats.get((num_id, level), ("bullet", 1))
        if fmt in ("bullet", "none"):
            return "\u2022 "
        counts = self._counts.setdefault(num_id, [])
        counts[level + 1 :] = []
        counts.extend([0] * (level + 1 - len(counts)))
        counts[level] = counts[level] + 1 if counts[level] else start
        n = counts[level]
        if fmt in ("lowerLetter", "upperLetter") and 1 <= n <= 26:
            letter = chr(ord("a") + n - 1)
            return f"{letter.upper() if fmt == 'upperLetter' else letter}) "
        return f"{n}. "


def _num_pr(ppr: Any) -> Any:
    return None if ppr is None else ppr.numPr


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _table_text(table: Any) -> str:
    """Rows as ``a | b | c`` lines; a merged cell (one cell spanning columns) is written once."""
    rows = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(cell.text.strip())
        line = " | ".join(cells)
        if line.strip(" |"):
            rows.append(line)
    return "\n".join(rows)


def _heading_level(style: str) -> int:
    if style == "Title":
        return 1
    m = re.fullmatch(r"Heading (\d)", style)
    return int(m.group(1)) if m else 0


def human_size(n: float) -> str:
    """A byte count for people: ``512 bytes``, ``10.2 KiB``, ``64 MiB``."""
    if n < 1024:
        return f"{n:.0f} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            break
    return f"{n:.1f} {unit}".replace(".0 ", " ")


def _short(exc: BaseException, limit: int = 200) -> str:
    """An exception message cut to ``limit`` characters (some embed whole file fragments)."""
    msg = " ".join(str(exc).split())
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


_PARSERS = {
    "text": parse_text,
    "markdown": parse_markdown,
    "html": parse_html,
    "pdf": parse_pdf,
    "docx": parse_docx,
}


def _clean(text: str, locations: Locations, note: str) -> Parsed:
    """Lone surrogates -> U+FFFD (same length); locations sorted, inside the text, labelled
    with one-line labels (a Setext heading or an HTML heading may span lines)."""
    if _SURROGATE.search(text):
        text = _SURROGATE.sub("\ufffd", text)
    labels = ((int(off), " ".join(str(label).split())[:LABEL_CHARS]) for off, label in locations)
    kept = sorted(
        ((off, label) for off, label in labels if 0 <= off < len(text) and label), key=lambda x: x[0]
    )
    return text, kept, note


def parse(fmt: str, data: bytes) -> Parsed:
    """Parse ``data`` as ``fmt`` in this process.

    Raises:
        DocumentError: the file cannot be turned into text (any parser failure ends here).
    """
    try:
        text, locations, note = _PARSERS[fmt](data)
    except DocumentError:
        raise
    except RecursionError as exc:
        raise DocumentError("document nested too deeply to parse") from exc
    except MemoryError as exc:
        raise DocumentError("document needs too much memory to parse") from exc
    except Exception as exc:  # a parser bug or an unforeseen malformed input: skip the file
        raise DocumentError(f"unreadable {fmt} file ({type(exc).__name__}: {_short(exc)})") from exc
    return _clean(text, locations, note)


class IsolatedParser:
    """Parses risky formats in a child process with a time and memory limit.

    Use as a context manager around a build; plain text is parsed in-process. One worker
    process (``python -m qa.parse_worker``, see ``qa.isolation``) serves file after file; a
    worker that runs out of time is killed, one that crashes is noticed at once, and either
    way the next file gets a fresh worker.
    """

    def __init__(self, timeout: float, memory_bytes: int = WORKER_MEMORY_BYTES) -> None:
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self._worker = IsolatedWorker(memory_bytes)
        self._lock = threading.Lock()

    def __enter__(self) -> IsolatedParser:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """Process id of the running worker, if one is running."""
        return self._worker.pid

    def close(self) -> None:
        """Stop the worker process, if any."""
        with self._lock:
            self._worker.close()

    def parse(self, fmt: str, data: bytes) -> Parsed:
        """Parse like ``parse`` but in the worker for risky formats.

        Raises:
            DocumentError: unreadable, or the parser ran out of time or memory or crashed.
        """
        if fmt not in ISOLATED_FORMATS:
            return parse(fmt, data)
        with self._lock:
            self._worker.memory_bytes = self.memory_bytes
            try:
                reply, blobs = self._worker.call({"op": "parse", "fmt": fmt}, [data], self.timeout)
            except WorkerStartError as exc:
                raise DocumentError(f"the parser process could not start ({exc}): is memory short?") from None
            except WorkerCrashError as exc:
                raise DocumentError(
                    f"parser crashed on this file ({exc.how}; out of memory?): skipped"
                ) from None
            except WorkerTimeoutError:
                raise DocumentError(
                    f"parser did not finish within the {self.timeout:g} s time limit (looping or too "
                    "large): skipped; raise QA_PARSE_TIMEOUT to allow more time"
                ) from None
        if reply.get("status") != "ok" or len(blobs) != 1:
            raise DocumentError(str(reply.get("reason") or "the parser process sent no text"))
        text = blobs[0].decode("utf-8", "surrogatepass")
        return text, [(int(a), str(b)) for a, b in reply["locations"]], str(reply.get("note") or "")
