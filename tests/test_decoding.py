"""Decoding and DOCX cases of issue 14 (item 8 and the parsing cases of item 9).

- UTF-16 without a byte order mark in Cyrillic and Chinese (few or no zero bytes) was skipped
  as "binary content": it is detected from the script and indexed, little- and big-endian.
- ASCII text with one invalid UTF-8 sequence came back as cp932/cp857/cp1250, eating or
  changing characters: it is UTF-8 with one replacement character now.
- Text after an unresolved XML entity in a DOCX run was dropped.
- A DOCX with a large, highly compressible image was refused as a "possible zip bomb" by its
  compression ratio alone; absolute limits decide now (a real bomb is still refused).
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest

import qa
from qa import parsing
from qa.errors import DocumentError
from tests.conftest import FakeEmbedder

# Real prose (written for these tests), long enough to look like a document.
RUSSIAN = (
    "Байкал — самое глубокое озеро на планете. Его глубина достигает одной тысячи шестисот "
    "сорока двух метров, а вода настолько прозрачна, что камни видны на глубине сорока метров.\n\n"
    "Зимой озеро замерзает, и по льду прокладывают дороги между посёлками. Весной лёд "
    "трескается с громким гулом, который слышно за много километров.\n"
)
CHINESE = (
    "长城是中国古代的军事防御工程，修建的历史可以上溯到西周时期。"
    "明长城东起鸭绿江，西至嘉峪关，全长八千八百多公里。\n\n"
    "今天，长城已经成为中华民族的象征，每年吸引数以千万计的游客前来参观。\n"
)
ASCII = "This is an ordinary English sentence in plain ASCII text. " * 20


@pytest.mark.parametrize("text", [RUSSIAN, CHINESE], ids=["russian", "chinese"])
@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_in_cyrillic_and_chinese(text: str, encoding: str) -> None:
    data = text.encode(encoding)
    assert not data.startswith((b"\xff\xfe", b"\xfe\xff"))
    decoded, note = parsing.decode_text(data)
    assert decoded == text
    assert note == f"no byte order mark: decoded as {encoding.upper()} (detected from the script)"


def test_utf16_without_bom_is_indexed_and_answers(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "baikal.txt").write_bytes(RUSSIAN.encode("utf-16-le"))
    (corpus / "greatwall.txt").write_bytes(CHINESE.encode("utf-16-be"))
    settings = qa.Settings(corpus=corpus, index=tmp_path / "i", min_score=0.3)
    fake = FakeEmbedder()
    report = qa.build_index(settings=settings, embedder=fake)
    assert sorted(report.added) == ["baikal.txt", "greatwall.txt"], report.summary()
    answer = qa.Index.load(settings.index, settings, embedder=fake).ask("Зимой озеро замерзает")
    assert answer.quotes[0].doc == "baikal.txt" and "замерзает" in answer.quotes[0].text


@pytest.mark.parametrize(
    ("text", "encoding", "note"),
    [
        (RUSSIAN, "cp1251", "cp1251"),
        (RUSSIAN.replace("—", "-"), "koi8_r", "koi8_r"),
        (CHINESE, "gbk", "gb18030"),
        ("Ça s'écrit «très» bien, où êtes-vous? Cœur. " * 20, "cp1252", "cp1252"),
    ],
)
def test_legacy_encodings_are_not_taken_for_utf16(text: str, encoding: str, note: str) -> None:
    data = text.encode(encoding)
    for sample in (data, data + b"x"):  # even and odd lengths
        decoded, how = parsing.decode_text(sample)
        assert "UTF-16" not in how
    decoded, how = parsing.decode_text(data)
    assert decoded == text and f"decoded as {note} " in how


@pytest.mark.parametrize("bad", [b"\x81", b"\x9d", b"\xf0\x9f\x98", b"\x8f\x90"])
def test_ascii_with_one_invalid_sequence_stays_utf8(bad: bytes) -> None:
    text, note = parsing.decode_text(ASCII.encode() + bad + ASCII.encode())
    assert text == ASCII + "\ufffd" * text.count("\ufffd") + ASCII
    assert 1 <= text.count("\ufffd") <= len(bad)
    assert note.startswith("invalid UTF-8: ")


def test_ascii_with_one_western_letter_stays_cp1252() -> None:
    """The Western European rule comes first: "café" in an English cp1252 file keeps its é."""
    text, note = parsing.decode_text(ASCII.encode() + "café ’".encode("cp1252") + ASCII.encode())
    assert text == ASCII + "café ’" + ASCII and "cp1252" in note


# ------------------------------------------------------------------------------ DOCX


def _edit_docx(data: bytes, member: str, edit: dict[bytes, bytes]) -> bytes:
    """Rewrite one member of a zip, replacing byte strings."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            body = zin.read(info.filename)
            if info.filename == member:
                for old, new in edit.items():
                    assert old in body, old
                    body = body.replace(old, new, 1)
            zout.writestr(info, body)
    return out.getvalue()


def _docx(*paragraphs: str) -> bytes:
    import docx

    d = docx.Document()
    for p in paragraphs:
        d.add_paragraph(p)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    "declaration",
    [
        b'<!DOCTYPE w:document [<!ENTITY name "internal text">]>',
        b'<!DOCTYPE w:document [<!ENTITY name SYSTEM "file:///etc/hostname">]>',
    ],
    ids=["internal", "external"],
)
def test_text_after_an_unresolved_docx_entity_is_kept(declaration: bytes) -> None:
    data = _edit_docx(
        _docx("Before the entity AFTERWORDS in the same run.", "Next paragraph."),
        "word/document.xml",
        {b"the entity AFTERWORDS": b"the entity &name; AFTERWORDS", b"?>\n": b"?>\n" + declaration + b"\n"},
    )
    text, _, _ = parsing.parse("docx", data)
    assert text == "Before the entity &name; AFTERWORDS in the same run.\n\nNext paragraph."
    hostname = Path("/etc/hostname")
    if hostname.exists() and hostname.read_text().strip():
        assert hostname.read_text().strip() not in text  # entities are still never resolved


def _bmp(width: int, height: int) -> bytes:
    """An uncompressed 24-bit BMP of one colour (black): compresses about 1000:1."""
    row = (width * 3 + 3) // 4 * 4
    pixels = bytes(row * height)
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


def test_docx_with_a_large_compressible_image_is_read() -> None:
    import docx

    d = docx.Document()
    d.add_heading("Survey photos", 1)
    d.add_paragraph("The night sky photo below is entirely black.")
    d.add_picture(io.BytesIO(_bmp(2400, 2400)))  # 17 MB of pixels
    d.add_paragraph("Text after the picture is indexed too.")
    buf = io.BytesIO()
    d.save(buf)
    data = buf.getvalue()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
    ratio = sum(i.file_size for i in infos) / sum(i.compress_size for i in infos)
    assert ratio > 200, ratio  # the ratio rule alone refused this
    with parsing.IsolatedParser(timeout=60) as parser:  # in the worker, under its memory cap
        text, locations, _ = parser.parse("docx", data)
    assert "entirely black" in text and text.endswith("Text after the picture is indexed too.")
    assert locations == [(0, "Survey photos")]


def test_docx_with_an_oversized_xml_part_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing, "DOCX_MAX_XML_PART", 2**20)
    data = _edit_docx(_docx("x"), "word/document.xml", {b"<w:body>": b"<w:body>" + b" " * (2**20 + 1)})
    with pytest.raises(DocumentError, match=r"XML part word/document\.xml"):
        parsing.parse_docx(data)
