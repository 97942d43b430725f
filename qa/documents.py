"""Loading documents: find files in a corpus folder and turn each into text plus a location map.

A ``Document`` keeps the exact text that every offset in qa refers to: a quote is always
``document.text[start:end]``. Plain text and Markdown keep their source text (newlines
normalised to ``\\n``); HTML, PDF and DOCX keep the text their parser extracts.

Non-goals: OCR of scanned PDFs, layout analysis, tables as structure.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import stat
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from qa import parsing
from qa.errors import CorpusError, DocumentError

# Extension -> format name. Anything else is reported as unsupported.
FORMATS = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}


@dataclass(frozen=True)
class Document:
    """One parsed file: ``id`` is its path relative to the corpus root, in POSIX form."""

    id: str
    hash: str
    text: str
    format: str
    size: int
    # (offset, label) pairs sorted by offset: the label holds from that offset on.
    locations: tuple[tuple[int, str], ...] = field(default=())
    # How the bytes were decoded, when that was not plain UTF-8 (reported by builds).
    note: str = ""

    def location_at(self, offset: int) -> str:
        """The page or heading at ``offset``, or a line number when the format has neither."""
        if self.locations:
            starts = [start for start, _ in self.locations]
            i = bisect.bisect_right(starts, offset) - 1
            if i >= 0:
                return self.locations[i][1]
        if self.format in ("text", "markdown"):
            return f"line {self.text.count(chr(10), 0, offset) + 1}"
        return ""


@dataclass(frozen=True)
class Skipped:
    """A file that was not indexed, and why."""

    id: str
    reason: str


@dataclass(frozen=True)
class SourceFile:
    """A candidate file found in the corpus, before parsing."""

    id: str
    path: Path
    size: int


def file_hash(data: bytes) -> str:
    """Content hash used to detect changed documents."""
    return hashlib.sha256(data).hexdigest()


def _unsafe_name(name: str) -> bool:
    # Control and format characters (newlines, NUL, bidi overrides...) and undecodable bytes
    # (surrogate escapes) make ids ambiguous or misleading in reports and logs.
    return any(unicodedata.category(ch).startswith("C") for ch in name) or name in ("..", ".")


def _symlink_problem(path: Path, root: Path) -> str | None:
    """Why the symlink ``path`` is not followed, or None when it resolves inside the corpus."""
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        return "broken symlink (its target does not exist): not followed"
    except (OSError, RuntimeError):  # RuntimeError: symlink loop (Python < 3.13)
        return "symlink loop or unreadable symlink: not followed"
    if not target.is_relative_to(root):
        return "symlink pointing outside the corpus: not followed"
    return None


def discover(corpus: Path, max_bytes: int) -> tuple[list[SourceFile], list[Skipped]]:
    """List the indexable files under ``corpus``, recursively, in a stable order.

    Hidden files and folders (name starting with ``.``) are ignored. Symlinked files are
    followed only when they resolve inside the corpus; symlinked folders are never entered.
    Unsupported types, oversized files, unsafe names, unreadable folders and symlinks not
    followed are returned as skipped with a reason.

    Raises:
        CorpusError: ``corpus`` does not exist or is not a folder.
    """
    if not corpus.exists():
        raise CorpusError(f"corpus folder {corpus} does not exist: create it or pass --corpus DIR")
    if not corpus.is_dir():
        raise CorpusError(f"corpus path {corpus} is not a folder: pass --corpus DIR")
    root = corpus.resolve()
    found: list[SourceFile] = []
    skipped: list[Skipped] = []
    for rel, path, problem in _walk(root):
        name = path.name
        if any(_unsafe_name(part) for part in Path(rel).parts):
            skipped.append(
                Skipped(repr(rel), "unsafe file name (control characters or undecodable bytes): rename it")
            )
            continue
        if problem:
            skipped.append(Skipped(rel, problem))
            continue
        if path.is_symlink():
            why = _symlink_problem(path, root)
            if why is not None:
                skipped.append(Skipped(rel, why))
                continue
        fmt = FORMATS.get(Path(name).suffix.lower())
        if fmt is None:
            skipped.append(Skipped(rel, f"unsupported file type {Path(name).suffix or '(none)'!r}"))
            continue
        try:
            size = path.stat().st_size
        except OSError as exc:
            skipped.append(Skipped(rel, f"cannot read: {exc.strerror}"))
            continue
        if not path.is_file():
            skipped.append(Skipped(rel, "not a regular file"))
            continue
        if size > max_bytes:
            skipped.append(
                Skipped(
                    rel,
                    f"file too large: {parsing.human_size(size)} is over the "
                    f"{parsing.human_size(max_bytes)} limit (raise QA_MAX_FILE_MB to index it)",
                )
            )
            continue
        found.append(SourceFile(rel, path, size))
    return found, skipped


def _walk(root: Path) -> Iterator[tuple[str, Path, str]]:
    """Yield (relative POSIX path, path, problem) for every non-hidden entry, in a stable order.

    ``problem`` is empty for files to consider; symlinked folders (never entered) and folders
    that cannot be listed come with the reason they are skipped.
    """
    errors: list[OSError] = []

    def unreadable() -> Iterator[tuple[str, Path, str]]:
        for err in errors:
            bad = Path(os.fsdecode(err.filename)) if err.filename is not None else root
            rel = bad.relative_to(root).as_posix() if bad.is_relative_to(root) else str(bad)
            yield rel, bad, f"cannot read folder: {err.strerror}"
        errors.clear()

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=errors.append):
        yield from unreadable()
        base = Path(dirpath)
        subdirs = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            if (base / d).is_symlink():
                why = _symlink_problem(base / d, root) or "symlinked folder: not followed"
                yield (base / d).relative_to(root).as_posix(), base / d, why
            else:
                subdirs.append(d)
        dirnames[:] = subdirs
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = base / name
            yield path.relative_to(root).as_posix(), path, ""
    yield from unreadable()


def read_source(source: SourceFile) -> bytes:
    """Read a file's bytes, never more than the size ``discover`` saw (and checked).

    Raises:
        DocumentError: the file cannot be read, is no longer a regular file, or grew since it
            was listed (it is being written: build again when it is complete).
    """
    try:
        with open(source.path, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise DocumentError("not a regular file")
            data = fh.read(source.size + 1)
    except OSError as exc:
        raise DocumentError(f"cannot read: {exc.strerror}") from exc
    if len(data) > source.size:
        raise DocumentError("the file grew while the index was being built: build again when it is complete")
    return data


def parse_document(
    source: SourceFile, data: bytes, parse: Callable[[str, bytes], parsing.Parsed] = parsing.parse
) -> Document:
    """Turn a file's bytes into a Document; ``parse`` may be an ``IsolatedParser.parse``.

    Raises:
        DocumentError: the file is empty, binary, corrupt, encrypted or has no text.
    """
    fmt = FORMATS[Path(source.path.name).suffix.lower()]
    if not data:
        raise DocumentError("empty file (0 bytes)")
    text, locations, note = parse(fmt, data)
    if not text.strip():
        raise DocumentError("no text found in the file (only whitespace or markup)")
    return Document(
        id=source.id,
        hash=file_hash(data),
        text=text,
        format=fmt,
        size=len(data),
        locations=tuple(locations),
        note=note,
    )
