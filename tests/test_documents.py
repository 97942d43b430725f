"""Document loading and parsing: every bad-file class is skipped with a specific reason, a
build over all of them still answers from the good file, and each format parses with
locations that lie inside its text.

Fixtures are generated in code (reportlab, pypdf, python-docx, zipfile, hand-written PDF
bytes); nothing binary is committed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import os
import re
import signal
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import qa
from qa import parsing
from qa.documents import Document, SourceFile, discover, parse_document, read_source
from qa.errors import DocumentError
from qa.parsing import IsolatedParser
from tests.conftest import FakeEmbedder

GOOD_TEXT = (
    "The lighthouse keeper on Skerry Island feeds seventeen cats every morning.\n\n"
    "Supplies arrive by boat on Thursdays when the sea is calm.\n"
)
QUESTION = "How many cats does the lighthouse keeper feed every morning?"
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
)


# ---------------------------------------------------------------------------- fixture makers


def make_pdf(pages: list[str]) -> bytes:
    """A real PDF with one line of text per page (reportlab)."""
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    for text in pages:
        c.drawString(72, 720, text)
        c.showPage()
    c.save()
    return buf.getvalue()


def raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF written by hand: objects numbered from 1 (1 is the catalog), correct xref."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _stream(content: bytes, extra: bytes = b"") -> bytes:
    return b"<< %s /Length %d >>\nstream\n%s\nendstream" % (extra, len(content), content)


def page_loop_pdf() -> bytes:
    """A /Pages node whose /Kids lists itself (and a real page)."""
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            _stream(b"BT /F1 12 Tf 72 720 Td (Looping text) Tj ET"),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def surrogate_pdf() -> bytes:
    """A PDF whose ToUnicode map sends 'A' to a lone UTF-16 surrogate (pypdf returns it as is)."""
    cmap = (
        b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /X def "
        b"1 begincodespacerange <00> <FF> endcodespacerange 1 beginbfchar <41> <D800> endbfchar "
        b"endcmap CMapName currentdict /CMap defineresource pop end end"
    )
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            _stream(b"BT /F1 12 Tf 72 720 Td (A walrus) Tj ET"),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
            _stream(cmap),
        ]
    )


def encrypted_pdf(algorithm: str | None = None) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=io.BytesIO(make_pdf(["Secret page about otters."])))
    if algorithm is None:
        writer.encrypt("secret")
    else:
        writer.encrypt("secret", algorithm=algorithm)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    i = j = 0
    out = bytearray()
    for b in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(b ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def aes_pdf() -> bytes:
    """An AES-128 (V4/R4) encrypted PDF with an empty user password, written by hand
    (PDF 1.7 algorithms 2, 3 and 5), so no crypto package is needed to make it."""
    n, p, doc_id = 16, -4, b"0123456789abcdef"
    okey = hashlib.md5(b"owner" + _PAD[:27]).digest()
    for _ in range(50):
        okey = hashlib.md5(okey).digest()
    o = _rc4(okey, _PAD)
    for i in range(1, 20):
        o = _rc4(bytes(k ^ i for k in okey), o)
    key = hashlib.md5(_PAD + o + p.to_bytes(4, "little", signed=True) + doc_id).digest()
    for _ in range(50):
        key = hashlib.md5(key[:n]).digest()
    key = key[:n]
    u = _rc4(key, hashlib.md5(_PAD + doc_id).digest())
    for i in range(1, 20):
        u = _rc4(bytes(k ^ i for k in key), u)
    encrypt = (
        b"<< /Filter /Standard /V 4 /R 4 /Length 128 /CF << /StdCF << /CFM /AESV2 /AuthEvent /DocOpen "
        b"/Length 16 >> >> /StmF /StdCF /StrF /StdCF /O <%s> /U <%s> /P %d >>"
        % (o.hex().encode(), (u + bytes(16)).hex().encode(), p)
    )
    pdf = raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            _stream(bytes(32)),
            encrypt,
        ]
    )
    ids = b"/ID [<%s> <%s>]" % (doc_id.hex().encode(), doc_id.hex().encode())
    return pdf.replace(b"/Root 1 0 R >>", b"/Root 1 0 R /Encrypt 5 0 R " + ids + b" >>")


def make_docx() -> bytes:
    """Headings, paragraphs and a table with a horizontally merged cell."""
    import docx

    d = docx.Document()
    d.add_heading("Chapter One", 1)
    d.add_paragraph("Llamas live in the Andes.")
    d.add_heading("Section A", 2)
    d.add_paragraph("Alpacas are smaller than llamas.")
    table = d.add_table(rows=3, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Animal", "Weight"
    table.cell(1, 0).text, table.cell(1, 1).text = "Llama", "150 kg"
    table.cell(2, 0).merge(table.cell(2, 1)).text = "Merged note"
    d.add_heading("Chapter Two", 1)
    d.add_paragraph("Vicuñas are wild.")
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def declared_bomb_docx(declared: int = 0xFFFFFFF0) -> bytes:
    """A small zip whose headers declare ``declared`` uncompressed bytes (a lying zip bomb)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", "<w:document/>")
    data = bytearray(buf.getvalue())
    for sig, field in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        for m in re.finditer(re.escape(sig), bytes(data)):
            data[m.start() + field : m.start() + field + 4] = declared.to_bytes(4, "little")
    return bytes(data)


def zeros_docx(megabytes: int) -> bytes:
    """A zip with a real, highly compressible member streamed in (about 1000:1)."""
    buf = io.BytesIO()
    block = b"\0" * 2**20
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        with zf.open("word/document.xml", "w", force_zip64=True) as fh:
            for _ in range(megabytes):
                fh.write(block)
    return buf.getvalue()


def deep_html(depth: int = 10_000) -> bytes:
    return b"<html><body>" + b"<div>" * depth + b"Deep nested words" + b"</div>" * depth + b"</body></html>"


def assert_locations_valid(doc: Document | tuple[str, list[tuple[int, str]], str]) -> None:
    """Location offsets are inside the text, sorted, and labelled."""
    text, locations = (doc.text, list(doc.locations)) if isinstance(doc, Document) else doc[:2]
    offsets = [off for off, _ in locations]
    assert offsets == sorted(offsets)
    for off, label in locations:
        assert 0 <= off < len(text), (off, len(text), label)
        assert label


def source(tmp_path: Path, name: str, data: bytes) -> tuple[SourceFile, bytes]:
    path = tmp_path / name
    path.write_bytes(data)
    return SourceFile(name, path, len(data)), data


# ------------------------------------------------------------------ the build over bad files

LATIN1 = "Café crème brûlée, à la façon d'un garçon naïf.\n"
UTF16 = "Grüße aus Köln: UTF-16 with a byte order mark.\n"
GREEK_BAD = "Ελληνικό κείμενο με ένα ".encode() + b"\xff" + " χαλασμένο byte.\n".encode()

# file name -> regex the skip reason must match
EXPECTED_SKIPS = {
    "empty.txt": r"^empty file \(0 bytes\)$",
    "blank.txt": r"^no text found in the file",
    "header.pdf": r"^truncated or corrupt PDF \(no %%EOF end marker; .*\): download or export",
    "half.pdf": r"^truncated or corrupt PDF \(no %%EOF end marker",
    "encrypted.pdf": r"^encrypted PDF \(password needed\): remove the password",
    "aes.pdf": r"^(encrypted PDF \(AES\) cannot be decrypted without|PDF has no extractable text)",
    "loop.pdf": r"^unreadable PDF \(PdfReadError: Detected cyclic page references.*\): repair",
    "notzip.docx": r"^not a valid \.docx \(not a zip archive\)",
    "olecrypt.docx": r"^not a \.docx: an encrypted \(password-protected\) or legacy Word file",
    "bomb.docx": r"^refused as a possible zip bomb: declares 8 GiB uncompressed from \d+ bytes \(limits",
    "zeros.docx": r"^refused as a possible zip bomb: declares 129 MiB for the XML part "
    r"word/document\.xml from \d+(\.\d)? KiB \(limits: 512 MiB in all, 128 MiB per XML part\)$",
    "image.txt": r"^looks like a PNG image, not text: give the file its real extension$",
    "big.txt": r"^file too large: 1\.5 MiB is over the 1 MiB limit \(raise QA_MAX_FILE_MB",
    "outside-link.txt": r"^symlink pointing outside the corpus: not followed$",
    "loop-link.txt": r"^symlink loop or unreadable symlink: not followed$",
    "dangling-link.txt": r"^broken symlink",
    "outside-dir": r"^symlink pointing outside the corpus: not followed$",
    "picture.png": r"^unsupported file type '\.png'$",
    "'bad\\nname.txt'": r"^unsafe file name \(control characters",
}
# file name -> regex of the build note saying how it was decoded
EXPECTED_NOTES = {
    "latin1.txt": r"^not valid UTF-8: decoded as cp1252 \(Western European text\)$",
    "utf16.txt": r"^decoded as UTF-16 \(byte order mark\)$",
    "invalid.txt": r"^invalid UTF-8: 1 undecodable byte sequence\(s\) replaced with U\+FFFD$",
    "utf16-nobom.txt": r"^no byte order mark: decoded as UTF-16-LE",
}


def make_bad_corpus(root: Path, outside: Path) -> None:
    """One file per bad-file class, plus files that must parse and one good file."""
    root.mkdir()
    pdf = make_pdf(["First page of a report.", "Second page of a report."])
    files: dict[str, bytes] = {
        "good.txt": GOOD_TEXT.encode(),
        "empty.txt": b"",
        "blank.txt": b"  \n\t\n   \r\n",
        "header.pdf": b"%PDF-",
        "half.pdf": pdf[: len(pdf) // 2],
        "encrypted.pdf": encrypted_pdf(),
        "aes.pdf": aes_pdf(),
        "loop.pdf": page_loop_pdf(),
        "surrogate.pdf": surrogate_pdf(),
        "notzip.docx": b"This is plain text pretending to be a docx.",
        "olecrypt.docx": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504,
        "bomb.docx": declared_bomb_docx(),
        "zeros.docx": zeros_docx(129),
        "deep.html": deep_html(),
        "latin1.txt": LATIN1.encode("latin-1"),
        "utf16.txt": UTF16.encode("utf-16"),
        "utf16-nobom.txt": "No byte order mark but UTF-16 anyway.\n".encode("utf-16-le"),
        "invalid.txt": GREEK_BAD,
        "image.txt": PNG,
        "picture.png": PNG,
        "big.txt": b"x" * (3 * 2**19),  # 1.5 MiB
        "bad\nname.txt": b"a file name with a newline",
        ".hidden.txt": b"hidden files are ignored",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / ".git").mkdir()
    (root / ".git" / "notes.txt").write_text("hidden folders are ignored")
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the corpus")
    (root / "outside-link.txt").symlink_to(outside / "secret.txt")
    (root / "outside-dir").symlink_to(outside)
    (root / "loop-link.txt").symlink_to(root / "loop-link.txt")
    (root / "dangling-link.txt").symlink_to(root / "missing.txt")


@pytest.fixture(scope="module")
def bad_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[qa.BuildReport, qa.Index, Path]:
    """One build over the whole bad corpus, shared by the tests below (it is the slow part)."""
    tmp = tmp_path_factory.mktemp("bad")
    corpus = tmp / "corpus"
    make_bad_corpus(corpus, tmp / "outside")
    settings = qa.Settings(corpus=corpus, index=tmp / "index", min_score=0.3, parse_timeout=30, max_file_mb=1)
    fake = FakeEmbedder()
    report = qa.build_index(settings=settings, embedder=fake)
    return report, qa.Index.load(settings.index, settings, embedder=fake), corpus


def test_every_bad_file_is_skipped_with_a_specific_reason(
    bad_build: tuple[qa.BuildReport, qa.Index, Path],
) -> None:
    report, _, _ = bad_build
    failed = {s.id: s.reason for s in report.failed}
    for name, pattern in EXPECTED_SKIPS.items():
        assert name in failed, f"{name!r} was not reported as skipped; failed={failed}"
        assert re.search(pattern, failed[name]), f"{name}: {failed[name]!r} !~ {pattern!r}"
    unexpected = set(failed) - set(EXPECTED_SKIPS)
    assert not unexpected, {k: failed[k] for k in unexpected}


def test_bad_corpus_build_indexes_the_rest_and_answers(
    bad_build: tuple[qa.BuildReport, qa.Index, Path],
) -> None:
    report, index, _ = bad_build
    indexed = {"good.txt", "deep.html", "surrogate.pdf", *EXPECTED_NOTES}
    assert set(report.added) == indexed
    ids = set(report.added) | {s.id for s in report.failed}
    assert not any("hidden" in i or ".git" in i for i in ids), "hidden files must be ignored"
    answer = index.ask(QUESTION)
    assert answer.found
    assert answer.quotes[0].doc == "good.txt"
    assert "seventeen cats" in answer.answer


def test_decoding_is_noted_and_exact(bad_build: tuple[qa.BuildReport, qa.Index, Path]) -> None:
    report, index, _ = bad_build
    notes = {s.id: s.reason for s in report.notes}
    for name, pattern in EXPECTED_NOTES.items():
        assert re.search(pattern, notes.get(name, "")), (name, notes.get(name))
    gen = index.generation
    texts = {info.id: gen.document(info.row).text for info in gen.documents}
    assert texts["latin1.txt"] == LATIN1
    assert texts["utf16.txt"] == UTF16
    assert texts["utf16-nobom.txt"] == "No byte order mark but UTF-16 anyway.\n"
    assert texts["invalid.txt"] == GREEK_BAD.decode("utf-8", "replace")
    assert "Deep nested words" in texts["deep.html"]
    # a lone surrogate from the PDF's font map would make the index unwritable: replaced
    assert texts["surrogate.pdf"] == "\ufffd walrus"


def test_every_indexed_document_has_valid_locations(
    bad_build: tuple[qa.BuildReport, qa.Index, Path],
) -> None:
    gen = bad_build[1].generation
    for info in gen.documents:
        assert_locations_valid(gen.document(info.row))


@pytest.mark.parametrize(
    "data",
    [
        LATIN1.encode("latin-1"),
        "café".encode("latin-1"),
        UTF16.encode("utf-16"),
        GREEK_BAD,
        b"Mostly ASCII \xff\xfe\xfd with stray bytes \xc3\x28 here.\n",
        "中文文本，这是一个测试。".encode("gbk"),
    ],
)
def test_decoding_is_deterministic(data: bytes) -> None:
    first = parsing.decode_text(data)
    assert parsing.decode_text(data) == first
    assert first[1], "a non-UTF-8 file must come with a note"


@pytest.mark.parametrize(
    ("text", "encoding", "note"),
    [
        ("café", "latin-1", "cp1252"),  # the detector alone said UTF-16-BE, then Urdu
        ("ação e coração", "latin-1", "cp1252"),  # ... and Big5 for "ação"
        ("Ça s'écrit «très» bien, où êtes-vous? Cœur.", "cp1252", "cp1252"),  # ... and cp1250
        ("Zażółć gęślą jaźń", "cp1250", "cp1250"),
        ("Привет мир, это текст.", "cp1251", "cp1251"),
        ("Ελληνικό κείμενο εδώ.", "cp1253", "cp1253"),
        ("中文文本，这是一个测试。", "gbk", "gb18030"),
        ("日本語のテキストです。", "shift_jis", "cp932"),
    ],
)
def test_legacy_encodings_decode_correctly(text: str, encoding: str, note: str) -> None:
    decoded, how = parsing.decode_text(text.encode(encoding))
    assert decoded == text
    assert f"decoded as {note} " in how


def test_stray_bytes_in_utf8_keep_the_utf8() -> None:
    data = "Ελληνικά and café in UTF-8, ".encode() + "café".encode("latin-1")
    text, note = parsing.decode_text(data)
    assert text == "Ελληνικά and café in UTF-8, caf\ufffd"
    assert note.startswith("invalid UTF-8: 1 undecodable")


def test_decode_refuses_binary() -> None:
    with pytest.raises(DocumentError, match="binary content"):
        parsing.decode_text(bytes(range(32)) * 100)
    with pytest.raises(DocumentError, match="looks like a PDF"):
        parsing.decode_text(b"%PDF-1.7\n...")


def test_oversized_file_uses_the_documented_limit(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "small.txt").write_text("Small enough.")
    (corpus / "large.txt").write_bytes(b"x" * 20_000)
    settings = qa.Settings(max_file_mb=0.01)
    found, skipped = discover(corpus, int(settings.max_file_mb * 2**20))
    assert [f.id for f in found] == ["small.txt"]
    assert skipped[0].id == "large.txt"
    assert skipped[0].reason == (
        "file too large: 19.5 KiB is over the 10.2 KiB limit (raise QA_MAX_FILE_MB to index it)"
    )


def test_symlinks_inside_the_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "sub" / "real.txt").write_text("Real file.")
    (corpus / "alias.txt").symlink_to(corpus / "sub" / "real.txt")
    (corpus / "subalias").symlink_to(corpus / "sub")
    found, skipped = discover(corpus, 2**20)
    assert [f.id for f in found] == ["alias.txt", "sub/real.txt"]
    assert [(s.id, s.reason) for s in skipped] == [("subalias", "symlinked folder: not followed")]


def test_read_source_refuses_a_file_that_grew(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("short")
    src = SourceFile("a.txt", path, 5)
    assert read_source(src) == b"short"
    path.write_text("much longer now")
    with pytest.raises(DocumentError, match="grew while the index was being built"):
        read_source(src)


def test_deep_html_parses_in_bounded_time_without_recursion() -> None:
    t0 = time.perf_counter()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(300)  # a recursive walk over 10,000 levels would fail loudly
    try:
        text, _, _ = parsing.parse("html", deep_html())
    finally:
        sys.setrecursionlimit(limit)
    assert text.strip() == "Deep nested words"
    assert time.perf_counter() - t0 < 10


def test_docx_bomb_is_refused_before_python_docx_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import docx

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("python-docx opened a zip bomb")

    monkeypatch.setattr(docx, "Document", must_not_run)
    for data in (declared_bomb_docx(), zeros_docx(129)):
        with pytest.raises(DocumentError, match="zip bomb"):
            parsing.parse_docx(data)


def test_aes_encrypted_pdf_is_skipped() -> None:
    pytest.importorskip("cryptography")
    with pytest.raises(DocumentError, match="encrypted PDF"):
        parsing.parse("pdf", encrypted_pdf("AES-256"))


def test_aes_pdf_without_crypto_package_says_so() -> None:
    """pypdf "reads" an AES PDF without a crypto package as pages with no text; the reason
    must name the missing package, not blame a scan."""
    if importlib.util.find_spec("cryptography") or importlib.util.find_spec("Crypto"):
        with pytest.raises(DocumentError):  # decrypts; the hand-made content is no text
            parsing.parse("pdf", aes_pdf())
    else:
        with pytest.raises(DocumentError, match="without the 'cryptography' package: install it"):
            parsing.parse("pdf", aes_pdf())


def test_owner_password_only_pdf_is_read() -> None:
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=io.BytesIO(make_pdf(["Readable without a password."])))
    writer.encrypt("", owner_password="owner")
    buf = io.BytesIO()
    writer.write(buf)
    text, _, _ = parsing.parse("pdf", buf.getvalue())
    assert "Readable without a password." in text


# ------------------------------------------------------------------------- good files, per format


def test_good_txt(tmp_path: Path) -> None:
    src, data = source(tmp_path, "a.txt", b"Line one.\r\nLine two.\rLine three.\n")
    doc = parse_document(src, data)
    assert doc.text == "Line one.\nLine two.\nLine three.\n"
    assert doc.format == "text" and doc.note == "" and doc.locations == ()
    assert doc.location_at(doc.text.index("three")) == "line 3"


def test_good_markdown_headings(tmp_path: Path) -> None:
    md = (
        "# Animals\n\nIntro text.\n\n## Birds\n\nParrots talk.\n\n```\n# not a heading\n```\n\n"
        "### Owls\n\nOwls hoot.\n\n# Plants\n\nFerns grow.\n"
    )
    src, data = source(tmp_path, "a.md", md.encode())
    doc = parse_document(src, data)
    assert doc.text == md
    assert_locations_valid(doc)
    assert doc.location_at(md.index("Intro")) == "Animals"
    assert doc.location_at(md.index("Parrots")) == "Animals > Birds"
    assert doc.location_at(md.index("# not")) == "Animals > Birds"
    assert doc.location_at(md.index("Owls hoot")) == "Animals > Birds > Owls"
    assert doc.location_at(md.index("Ferns")) == "Plants"


def test_good_html(tmp_path: Path) -> None:
    html = (
        "<!DOCTYPE html><html><head><title>Fish guide</title><style>p { color: red }</style>"
        "<script>var hidden = 1;</script></head><body>"
        "<h1>Sea fish</h1><script></script><p>Cod &amp; haddock &lt;3 cold water&nbsp;&eacute;t&eacute;.</p>"
        "<iframe></iframe><noscript>no script text</noscript>"
        "<h2>Flatfish</h2><p>Plaice   lie\n on the <b>sea</b> floor.</p>"
        "<!-- a comment --><h1>River fish</h1><ul><li>Trout</li><li>Pike</li></ul></body></html>"
    )
    src, data = source(tmp_path, "a.html", html.encode())
    doc = parse_document(src, data)
    assert_locations_valid(doc)
    for dropped in ("hidden", "color", "no script", "comment"):
        assert dropped not in doc.text
    assert "Cod & haddock <3 cold water été." in doc.text
    assert "Plaice lie on the sea floor." in doc.text
    assert doc.text.startswith("Fish guide\n")
    assert doc.location_at(doc.text.index("Cod")) == "Sea fish"
    assert doc.location_at(doc.text.index("Plaice")) == "Sea fish > Flatfish"
    assert doc.location_at(doc.text.index("Trout")) == "River fish"
    assert "\u2022 Trout\n\u2022 Pike" in doc.text, "list items read as the browser shows them"


def test_html_list_items_are_marked_and_numbered() -> None:
    """A short list item is a statement, not a heading: it is marked as a browser shows it."""
    html = (
        b"<p>It has the following:</p><ul><li>six showers</li><li>a <b>laundry</b></li></ul>"
        b"<ol start=3><li>Mix</li><li>Bake<ul><li>hot</li></ul></li></ol><ol><li>Cool</li></ol>"
        b"<ol start='x'><li>Serve</li></ol>"
    )
    text, _, _ = parsing.parse("html", html)
    assert text == (
        "It has the following:\n\u2022 six showers\n\u2022 a laundry\n3. Mix\n4. Bake\n\u2022 hot\n"
        "1. Cool\n1. Serve"
    )
    # the marker goes before the item's first text, whatever block holds it; an empty item
    # leaves nothing behind; a heading in an item stays a heading
    html = (
        b"<ul><li><p>First para</p><p>second</p></li><li><div>Div item</div></li>"
        b"<li>\n  <a href=x>Link</a> text</li><li></li><li><h3>Head item</h3></li></ul><p>after</p>"
    )
    text, locations, _ = parsing.parse("html", html)
    assert text == "\u2022 First para\nsecond\n\u2022 Div item\n\u2022 Link text\nHead item\nafter"
    assert locations == [(text.index("Head item"), "Head item")]


def test_docx_list_paragraphs_are_marked_and_numbered() -> None:
    import docx

    d = docx.Document()
    d.add_heading("Steps", 1)
    d.add_paragraph("The kit contains:")
    d.add_paragraph("a tent", style="List Bullet")
    for item in ("Pitch", "Peg"):
        d.add_paragraph(item, style="List Number")
    d.add_paragraph("", style="List Number")  # an empty item is skipped, not numbered
    d.add_paragraph("Enjoy", style="List Number")
    d.add_paragraph("Plain text.")
    buf = io.BytesIO()
    d.save(buf)
    text, locations, _ = parsing.parse("docx", buf.getvalue())
    items = "\u2022 a tent\n\n1. Pitch\n\n2. Peg\n\n3. Enjoy"
    assert text == f"Steps\n\nThe kit contains:\n\n{items}\n\nPlain text."
    assert locations == [(0, "Steps")]


def test_pdf_running_headers_and_page_numbers_are_dropped(tmp_path: Path) -> None:
    """A header with the page number goes from every page, a repeated footer stays once, and
    the sentence that runs across the page break is whole again."""
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    bodies = [["Opening remarks.", "The survey ran from"], ["March to May.", "Table 2 shows it."], ["Done."]]
    for number, lines in enumerate(bodies, start=1):
        c.drawString(72, 800, f"Annual Report 2023 | page {number}")
        for row, line in enumerate(lines):
            c.drawString(72, 700 - 14 * row, line)
        c.drawString(72, 40, "Caldermoor Astronomical Trust")
        c.showPage()
    c.save()
    text, locations, _ = parsing.parse("pdf", buf.getvalue())
    assert "page 1" not in text and "page 3" not in text and "Annual Report" not in text
    assert text.count("Caldermoor Astronomical Trust") == 1
    assert "Table 2 shows it." in text, "a number that does not follow the pages is content"
    assert [label for _, label in locations] == ["page 1", "page 2", "page 3"]
    assert text.index("March") >= locations[1][0] > text.index("ran from")


def test_running_lines_rules() -> None:
    one = ["Header | page 1\nonly page"]
    assert parsing.drop_running_lines(one) == one, "one page: nothing to compare"
    pages = ["Report | 1\nAlpha.\n- 1 -", "Report | 2\nBeta.\n- 2 -", "Report | 3\nGamma.\n- 3 -"]
    assert parsing.drop_running_lines(pages) == ["Alpha.\n", "Beta.\n", "Gamma.\n"]
    table = ["Name | Kg\nAda | 3", "Name | Kg\nBo | 4"]
    assert parsing.drop_running_lines(table) == ["Name | Kg\nAda | 3", "Bo | 4"]
    chapters = ["Chapter 7\nText.", "Chapter 2\nMore.", "Chapter 9\nEnd."]
    assert parsing.drop_running_lines(chapters) == chapters, "numbers not following the pages"
    rare = ["Intro\nA.", "Body\nB.", "Body\nC.", "Notes\nD.", "Refs\nE."]
    assert parsing.drop_running_lines(rare) == rare, "on fewer than half of the pages"


_LINES = st.lists(
    st.sampled_from(["Report | page 1", "Report | page 2", "Footer", "7", "Alpha.", "Beta gamma.", "", " "])
    | st.text(alphabet="ab1 |.", max_size=12),
    max_size=9,
)


def _deletes_only(lines: list[str], kept: list[str], deletable: set[int]) -> bool:
    """Whether ``kept`` is ``lines`` with some of the lines at ``deletable`` indexes taken out
    (lines may repeat, so every way of matching them is tried)."""

    @functools.cache
    def fits(i: int, j: int) -> bool:
        if j == len(kept):
            return all(k in deletable for k in range(i, len(lines)))
        if i == len(lines):
            return False
        return (lines[i] == kept[j] and fits(i + 1, j + 1)) or (i in deletable and fits(i + 1, j))

    return fits(0, 0)


@given(st.lists(_LINES, max_size=6))
@example([["Report | page 1"], ["Report | page 1"] * 6 + ["Footer"]])  # repeated lines, once mis-read
def test_running_lines_only_ever_remove_whole_edge_lines(pages: list[list[str]]) -> None:
    """Whatever the pages: each comes back as its own lines minus some of its first or last
    three non-blank lines, in order; the middle of a page is never touched."""
    texts = ["\n".join(lines) for lines in pages]
    out = parsing.drop_running_lines(texts)
    assert len(out) == len(texts)
    for before, after in zip(texts, out, strict=True):
        lines = before.splitlines(keepends=True)
        nonblank = [i for i, line in enumerate(lines) if line.strip()]
        edges = set(nonblank[:3] + nonblank[-3:])
        kept = [line.rstrip("\n") for line in after.splitlines(keepends=True)]
        plain = [line.rstrip("\n") for line in lines]

        # the kept lines are the page's lines with some edge lines taken out, in order
        assert _deletes_only(plain, kept, edges), (lines, kept)
        assert len(after) <= len(before)


def test_html_block_ends_pre_and_heading_labels() -> None:
    html = (
        b"<h2>Sub <small>title</small></h2>Loose text<p>Para.</p>After para"
        b"<pre>line 1\n    indented\n\nline 3</pre><p>x   y</p>"
    )
    text, locations, _ = parsing.parse("html", html)
    assert text == "Sub title\nLoose text\nPara.\nAfter para\nline 1\n    indented\n\nline 3\nx y"
    assert locations == [(0, "Sub title")]


@pytest.mark.parametrize("unit", [b"<h1>x", b"<h1>", b"<pre>", b"<svg>", b"<div>x", b"<p>x</p>"])
def test_deeply_nested_html_is_linear(unit: bytes) -> None:
    """10,000 nested headings took 19 s (each label walked its whole subtree)."""
    t0 = time.perf_counter()
    text, locations, _ = parsing.parse("html", unit * 10_000 + b"end")
    assert time.perf_counter() - t0 < 5
    assert_locations_valid((text, locations, ""))
    assert all(len(label) <= parsing.LABEL_CHARS for _, label in locations)


def test_good_pdf(tmp_path: Path) -> None:
    src, data = source(tmp_path, "a.pdf", make_pdf(["Page one talks about herons.", "Page two: egrets."]))
    doc = parse_document(src, data)
    assert_locations_valid(doc)
    assert doc.note == ""
    assert doc.location_at(doc.text.index("herons")) == "page 1"
    assert doc.location_at(doc.text.index("egrets")) == "page 2"


def test_good_docx(tmp_path: Path) -> None:
    src, data = source(tmp_path, "a.docx", make_docx())
    doc = parse_document(src, data)
    assert_locations_valid(doc)
    assert doc.location_at(doc.text.index("Andes")) == "Chapter One"
    assert doc.location_at(doc.text.index("Alpacas")) == "Chapter One > Section A"
    assert "Animal | Weight\nLlama | 150 kg\nMerged note" in doc.text
    assert doc.text.count("Merged note") == 1, "a merged cell is written once"
    assert doc.location_at(doc.text.index("Vicuñas")) == "Chapter Two"


def test_docx_content_controls_are_read(tmp_path: Path) -> None:
    """Paragraphs inside content controls (w:sdt) are text too; python-docx skips them."""
    import docx
    from docx.oxml import OxmlElement

    d = docx.Document()
    d.add_heading("Form", 1)
    para = d.add_paragraph("Answer typed into a content control.")
    sdt, content = OxmlElement("w:sdt"), OxmlElement("w:sdtContent")
    sdt.append(content)
    para._p.addprevious(sdt)
    content.append(para._p)
    d.add_paragraph("After the control.")
    buf = io.BytesIO()
    d.save(buf)
    text, locations, _ = parsing.parse("docx", buf.getvalue())
    assert text == "Form\n\nAnswer typed into a content control.\n\nAfter the control."
    assert locations == [(0, "Form")]


def test_heading_labels_are_one_line() -> None:
    _, locations, _ = parsing.parse("markdown", b"Setext\nheading\n===\n\ntext\n")
    assert locations == [(0, "Setext heading")]
    _, locations, _ = parsing.parse("html", b"<h1>Two\nlines</h1><p>text</p>")
    assert locations == [(0, "Two lines")]


def test_markdown_stays_linear_on_pathological_inline_markup() -> None:
    t0 = time.perf_counter()
    text, _, _ = parsing.parse("markdown", b"# T\n\n" + b"*a [" * 50_000)
    assert time.perf_counter() - t0 < 5
    assert text.startswith("# T")


def test_parser_exceptions_become_document_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: bytes) -> parsing.Parsed:
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(parsing._PARSERS, "html", broken)
    with pytest.raises(DocumentError, match=r"unreadable html file \(ZeroDivisionError: boom\)"):
        parsing.parse("html", b"<p>x</p>")


# ------------------------------------------------------------------------------ isolated parser


def test_isolated_parser_time_limit_then_next_file_parses() -> None:
    slow = make_pdf([f"Page {i} of a long report." for i in range(300)])
    with IsolatedParser(timeout=0.001) as parser:
        with pytest.raises(DocumentError, match=r"did not finish within the 0\.001 s time limit"):
            parser.parse("pdf", slow)
        parser.timeout = 30
        text, locations, _ = parser.parse("pdf", make_pdf(["Next file parses."]))
    assert "Next file parses." in text and locations == [(0, "page 1")]


def test_build_reports_timeouts_and_continues(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "slow.pdf").write_bytes(make_pdf([f"Page {i}." for i in range(300)]))
    (corpus / "fast.txt").write_text(GOOD_TEXT)
    settings = qa.Settings(corpus=corpus, index=tmp_path / "i", parse_timeout=0.001, min_score=0.3)
    report = qa.build_index(settings=settings, embedder=FakeEmbedder())
    assert report.added == ["fast.txt"]
    assert [s.id for s in report.failed] == ["slow.pdf"]
    assert "time limit" in report.failed[0].reason and "QA_PARSE_TIMEOUT" in report.failed[0].reason


def test_isolated_parser_memory_limit() -> None:
    """A parse that outgrows the worker's memory limit is skipped at once, not after the
    time limit, and the next file gets a fresh worker."""
    # The worker idles at ~170 MB of address space; 100k nested divs take it to ~290 MB.
    with IsolatedParser(timeout=20, memory_bytes=224 * 2**20) as parser:
        t0 = time.perf_counter()
        with pytest.raises(DocumentError, match=r"crashed on this file|too much memory"):
            parser.parse("html", b"<div>x" * 100_000)
        assert time.perf_counter() - t0 < 30
        assert parser.parse("html", b"<p>after</p>")[0] == "after"


def test_isolated_parser_reports_a_crash_at_once() -> None:
    with IsolatedParser(timeout=60) as parser:
        parser.parse("html", b"<p>warm up</p>")
        pid = parser.pid
        assert pid is not None
        killer = threading.Timer(0.3, lambda: os.kill(pid, signal.SIGKILL))
        killer.start()
        t0 = time.perf_counter()
        with pytest.raises(DocumentError, match=r"parser crashed on this file \(killed by signal 9"):
            parser.parse("html", b"<div>" * 1_000_000)
        killer.join()
        assert time.perf_counter() - t0 < 30
        assert parser.parse("html", b"<p>after</p>")[0] == "after"
