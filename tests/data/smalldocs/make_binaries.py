"""Write the PDF and DOCX documents of the small-document set from their text sources.

Usage (from the repository root, with the test extra installed)::

    python tests/data/smalldocs/make_binaries.py           # write corpus/*.pdf and corpus/*.docx
    python tests/data/smalldocs/make_binaries.py --check   # exit 1 if a committed file differs

Each ``sources/NAME.txt`` becomes ``corpus/NAME.pdf`` or ``corpus/NAME.docx`` (see ``TARGETS``).
The sources use a small line-based markup, one block per line or paragraph:

    @meta title: ...          document metadata (title, author, subject)
    @footer text {page}       PDF only: a footer on every page, ``{page}`` = the page number
    @title ... / @subtitle ... the title block (Word styles Title and Subtitle)
    # Heading / ## Heading    Heading 1 / Heading 2
    | a | b | c               a table row; consecutive rows form one table, the first is its header
    @pagebreak                a new page
    anything else             body text; lines up to the next blank line form one paragraph

The output is deterministic: the PDF is written in reportlab's invariant mode (fixed creation
date and document id) and the DOCX has fixed core properties and zip timestamps, so running
the script again gives the same bytes with the same reportlab, python-docx and zlib versions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources"
CORPUS = HERE / "corpus"
TARGETS = {"observatory-report": "pdf", "cheese-cave-handbook": "docx"}
# Fixed dates so that regenerating gives the same bytes (and plausible metadata).
CREATED = dt.datetime(2024, 4, 18, 9, 30, 0)
ZIP_TIME = (2024, 4, 18, 9, 30, 0)


@dataclass
class Source:
    """A parsed source: metadata, optional PDF footer and the blocks in order."""

    meta: dict[str, str] = field(default_factory=dict)
    footer: str = ""
    # (kind, payload): kind is title, subtitle, h1, h2, p, table or pagebreak.
    blocks: list[tuple[str, object]] = field(default_factory=list)


def read_source(path: Path) -> Source:
    """Parse one source file written in the markup described in the module docstring."""
    src = Source()
    paragraph: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if paragraph:
            src.blocks.append(("p", " ".join(paragraph)))
            paragraph.clear()
        if table:
            src.blocks.append(("table", [row[:] for row in table]))
            table.clear()

    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("| "):
            if paragraph:
                flush()
            table.append([cell.strip() for cell in line[2:].split(" | ")])
            continue
        if not line or line.startswith(("@", "#")):
            flush()
        if not line:
            continue
        if line.startswith("@meta "):
            key, _, value = line[len("@meta ") :].partition(":")
            src.meta[key.strip()] = value.strip()
        elif line.startswith("@footer "):
            src.footer = line[len("@footer ") :]
        elif line.startswith("@title "):
            src.blocks.append(("title", line[len("@title ") :]))
        elif line.startswith("@subtitle "):
            src.blocks.append(("subtitle", line[len("@subtitle ") :]))
        elif line == "@pagebreak":
            src.blocks.append(("pagebreak", None))
        elif line.startswith("## "):
            src.blocks.append(("h2", line[3:]))
        elif line.startswith("# "):
            src.blocks.append(("h1", line[2:]))
        else:
            paragraph.append(line)
    flush()
    return src


def build_pdf(src: Source) -> bytes:
    """The source as an A4 PDF with headings, body text, tables and a page footer."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    style = {
        "title": styles["Title"],
        "subtitle": styles["Heading2"],
        "h1": styles["Heading1"],
        "h2": styles["Heading2"],
        "p": styles["BodyText"],
    }
    story: list[object] = []
    for kind, payload in src.blocks:
        if kind == "pagebreak":
            story.append(PageBreak())
        elif kind == "table":
            rows = [list(row) for row in payload]  # type: ignore[attr-defined]
            tbl = Table(rows, hAlign="LEFT")
            tbl.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.grey)]))
            story += [tbl, Spacer(1, 4 * mm)]
        else:
            story.append(Paragraph(_escape(str(payload)), style[kind]))

    def footer(canvas: object, doc: object) -> None:
        if src.footer:
            text = src.footer.replace("{page}", str(canvas.getPageNumber()))  # type: ignore[attr-defined]
            canvas.setFont("Helvetica", 8)  # type: ignore[attr-defined]
            canvas.drawString(20 * mm, 12 * mm, text)  # type: ignore[attr-defined]

    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        invariant=True,  # fixed creation date and document id: same input, same bytes
        title=src.meta.get("title", ""),
        author=src.meta.get("author", ""),
        subject=src.meta.get("subject", ""),
        creator="make_binaries.py",
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=20 * mm,
        bottomMargin=22 * mm,
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()


def _escape(text: str) -> str:
    """reportlab's Paragraph reads a little XML: escape the three characters it cares about."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_docx(src: Source) -> bytes:
    """The source as a Word document with Title/Heading styles and tables (Table Grid)."""
    import docx

    document = docx.Document()
    props = document.core_properties
    props.title = src.meta.get("title", "")
    props.author = src.meta.get("author", "")
    props.subject = src.meta.get("subject", "")
    props.comments = ""  # python-docx's template says "generated by python-docx"
    props.last_modified_by = src.meta.get("author", "")
    props.created = CREATED
    props.modified = CREATED
    props.revision = 4
    for kind, payload in src.blocks:
        if kind == "title":
            document.add_heading(str(payload), level=0)
        elif kind == "subtitle":
            document.add_paragraph(str(payload), style="Subtitle")
        elif kind in ("h1", "h2"):
            document.add_heading(str(payload), level=int(kind[1]))
        elif kind == "table":
            rows = [list(row) for row in payload]  # type: ignore[attr-defined]
            table = document.add_table(rows=len(rows), cols=len(rows[0]), style="Table Grid")
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    cell = table.cell(r, c)
                    cell.text = value
                    if r == 0:
                        for run in cell.paragraphs[0].runs:
                            run.bold = True
        elif kind == "pagebreak":
            document.add_page_break()
        else:
            document.add_paragraph(str(payload))
    out = io.BytesIO()
    document.save(out)
    return _fixed_zip(out.getvalue())


def _fixed_zip(data: bytes) -> bytes:
    """The same zip with every member's timestamp fixed (python-docx stamps the current time)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=ZIP_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


def build(name: str) -> bytes:
    """The bytes of ``corpus/<name>.<ext>`` built from ``sources/<name>.txt``."""
    src = read_source(SOURCES / f"{name}.txt")
    return build_pdf(src) if TARGETS[name] == "pdf" else build_docx(src)


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) every target; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed files, write nothing"
    )
    args = parser.parse_args(argv)
    status = 0
    for name, ext in TARGETS.items():
        target = CORPUS / f"{name}.{ext}"
        data = build(name)
        if args.check:
            same = target.exists() and target.read_bytes() == data
            print(f"{target.name}: {'same bytes' if same else 'DIFFERS'}")
            status |= not same
        else:
            target.write_bytes(data)
            print(f"wrote {target.relative_to(HERE)} ({len(data):,} bytes)")
    return status


if __name__ == "__main__":
    sys.exit(main())
