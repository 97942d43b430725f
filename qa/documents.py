"""Loading documents: find files in a corpus folder and turn each into text plus a location map.

A ``Document`` keeps the exact text that every offset in qa refers to: a quote is always
``document.text[start:end]``. Plain text and Markdown keep their source text (newlines
normalised to ``\\n``); HTML, PDF and DOCX keep the text their parser extracts.

Non-goals: OCR of scanned PDFs, layout analysis, tables as structure.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import os
import stat
import unicodedata
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

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
    """A candidate file found in the corpus, before parsing.

    ``dev``/``ino`` identify the file as it was listed and ``real`` is its corpus-relative
    path (a symlink's target for a followed symlink): reads open ``root/real`` without
    following any link and refuse a file that is not the one listed (see ``open_source``).
    """

    id: str
    path: Path
    size: int
    dev: int | None = None
    ino: int | None = None
    root: Path | None = None  # the resolved corpus folder; None: the file's own folder
    real: str | None = None  # path under ``root``; None: ``id``


def file_hash(data: bytes) -> str:
    """Content hash used to detect changed documents."""
    return hashlib.sha256(data).hexdigest()


def _unsafe_name(name: str) -> bool:
    # Control and format characters (newlines, NUL, bidi overrides...) and undecodable bytes
    # (surrogate escapes) make ids ambiguous or misleading in reports and logs.
    return any(unicodedata.category(ch).startswith("C") for ch in name) or name in ("..", ".")


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in PurePosixPath(rel).parts)


def _symlink_target(path: Path, root: Path) -> tuple[str | None, str | None]:
    """(corpus-relative target, None) when the symlink ``path`` may be followed, else
    (None, why it is not followed)."""
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        return None, "broken symlink (its target does not exist): not followed"
    except (OSError, RuntimeError):  # RuntimeError: symlink loop (Python < 3.13)
        return None, "symlink loop or unreadable symlink: not followed"
    if not target.is_relative_to(root):
        return None, "symlink pointing outside the corpus: not followed"
    rel = target.relative_to(root).as_posix()
    if _hidden(rel):  # hidden files are ignored, whichever name reaches them
        return None, "symlink into a hidden file or folder: not followed"
    return rel, None


# Open flags of every read of a corpus file: never follow a symlink (a file swapped for a link
# after listing must not be read through it), never block (a FIFO would hang the build while
# it holds the build lock), and never leak the descriptor into the parser process.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_no_follow(root: Path, rel: str) -> int:
    """A read-only descriptor of ``root/rel``, opened folder by folder from ``root`` without
    following any symlink below it (so the file opened lies inside ``root``).

    Raises:
        OSError: as ``os.open`` (ELOOP or ENOTDIR where a symlink stands on the path).
        ValueError: ``rel`` is not a plain relative path.
    """
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or any(p in (".", "..") for p in parts):
        raise ValueError(f"not a corpus-relative path: {rel!r}")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
        return os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)


def open_source(source: SourceFile) -> int:
    """Open a listed corpus file for reading; return the descriptor (the caller closes it).

    The file is opened without following symlinks and without blocking, and ``fstat`` on the
    descriptor must show a regular file with the device and inode ``discover`` recorded.

    Raises:
        DocumentError: the file is gone, unreadable, or no longer the regular file listed
            (replaced by a symlink, a FIFO, a device or another file).
    """
    root = source.root if source.root is not None else source.path.parent
    rel = source.real if source.real is not None else (source.id if source.root else source.path.name)
    try:
        fd = open_no_follow(root, rel)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise DocumentError("replaced by a symlink since it was listed: not followed") from exc
        raise DocumentError(f"cannot read: {exc.strerror}") from exc
    except ValueError as exc:
        raise DocumentError(str(exc)) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DocumentError("not a regular file (a FIFO, device or folder): not read")
        if source.ino is not None and (st.st_dev, st.st_ino) != (source.dev, source.ino):
            raise DocumentError("replaced by another file since it was listed: build again")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_source(source: SourceFile) -> bytes:
    """Read a file's bytes (through ``open_source``), never more than the size ``discover``
    saw (and checked).

    Raises:
        DocumentError: the file cannot be read, is no longer the regular file listed, or grew
            since it was listed (it is being written: build again when it is complete).
    """
    fd = open_source(source)
    try:
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(source.size + 1)
    except OSError as exc:
        raise DocumentError(f"cannot read: {exc.strerror}") from exc
    if len(data) > source.size:
        raise DocumentError("the file grew while the index was being built: build again when it is complete")
    return data


# Folders deeper than this below the corpus folder are not entered (QA_MAX_DEPTH).
DEFAULT_MAX_DEPTH = 64


@dataclass(frozen=True)
class Entry:
    """One non-hidden entry found by ``walk``.

    ``kind`` is "file" (anything that is neither a folder nor a symlink; ``st`` is its
    ``lstat``), "link" (a symlink to something other than a folder) or "skip" (a symlinked or
    unreadable folder, or one nested too deep: ``problem`` says why).
    """

    rel: str
    kind: str
    problem: str = ""
    st: os.stat_result | None = None


def walk(root: Path, max_depth: int = DEFAULT_MAX_DEPTH) -> Iterator[Entry]:
    """Every non-hidden entry below ``root`` in a stable order (a folder's entries sorted,
    then its subfolders, depth first).

    Iterative, with at most ``max_depth + 1`` folders open at a time: each folder is opened
    from its parent's descriptor without following links, so neither nesting depth nor path
    length can exhaust the stack or ``PATH_MAX``. Folders deeper than ``max_depth`` are
    reported once, as skipped, and not entered.
    """
    try:
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        yield Entry(".", "skip", f"cannot read folder: {exc.strerror}")
        return
    stack: list[tuple[int, str, int, Iterator[str]]] = [(top, "", 0, iter(()))]
    try:
        subdirs = yield from _scan(top, "", root)
        stack[-1] = (top, "", 0, iter(subdirs))
        while stack:
            fd, rel, depth, pending = stack[-1]
            name = next(pending, None)
            if name is None:
                os.close(fd)
                stack.pop()
                continue
            child_rel = f"{rel}/{name}" if rel else name
            if depth + 1 > max_depth:
                yield Entry(
                    child_rel,
                    "skip",
                    f"folder nested more than {max_depth} levels deep: not entered "
                    "(raise QA_MAX_DEPTH to index it)",
                )
                continue
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                yield Entry(child_rel, "skip", f"cannot read folder: {exc.strerror}")
                continue
            stack.append((child, child_rel, depth + 1, iter(())))
            try:
                subdirs = yield from _scan(child, child_rel, root)
            except OSError as exc:
                yield Entry(child_rel, "skip", f"cannot read folder: {exc.strerror}")
                subdirs = []
            stack[-1] = (child, child_rel, depth + 1, iter(subdirs))
    finally:
        for fd, *_ in stack:
            os.close(fd)


def _scan(fd: int, rel: str, root: Path) -> Generator[Entry, None, list[str]]:
    """Yield the entries of the open folder ``fd`` (symlinked folders first, then files, each
    sorted by name) and return the names of its real subfolders, sorted."""
    with os.scandir(fd) as it:
        items = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    subdirs: list[str] = []
    linked_dirs: list[Entry] = []
    files: list[Entry] = []
    for e in items:
        path_rel = f"{rel}/{e.name}" if rel else e.name
        try:
            if e.is_symlink():
                if _points_to_folder(e):  # a link to a folder is never entered
                    why = _symlink_target(root / path_rel, root)[1] or "symlinked folder: not followed"
                    linked_dirs.append(Entry(path_rel, "skip", why))
                else:
                    files.append(Entry(path_rel, "link"))
            elif e.is_dir(follow_symlinks=False):
                subdirs.append(e.name)
            else:
                files.append(Entry(path_rel, "file", st=e.stat(follow_symlinks=False)))
        except OSError as exc:
            files.append(Entry(path_rel, "skip", f"cannot read: {exc.strerror}"))
    yield from linked_dirs
    yield from files
    return subdirs


def _points_to_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a loop: reported with the symlink's reason
        return False


def list_files(corpus: Path, max_depth: int = DEFAULT_MAX_DEPTH) -> list[tuple[str, int | None]]:
    """(corpus-relative id, size or None) of every non-hidden file and file symlink under
    ``corpus``; the size is the ``lstat`` size of regular files (symlinks are not followed)."""
    if not corpus.is_dir():
        return []
    out: list[tuple[str, int | None]] = []
    for e in walk(corpus.resolve(), max_depth):
        if e.kind == "file" and e.st is not None:
            out.append((e.rel, e.st.st_size if stat.S_ISREG(e.st.st_mode) else None))
        elif e.kind == "link":
            out.append((e.rel, None))
    return out


def discover(
    corpus: Path, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[list[SourceFile], list[Skipped]]:
    """List the indexable files under ``corpus``, recursively, in a stable order.

    Hidden files and folders (name starting with ``.``) are ignored. Symlinked files are
    followed only when they resolve inside the corpus and not into a hidden file or folder;
    symlinked folders are never entered, nor folders deeper than ``max_depth``. Unsupported
    types, oversized files, unsafe names, unreadable or too deep folders and symlinks not
    followed are returned as skipped with a reason. Each file's device and inode are recorded
    so reads refuse a file swapped after listing (``open_source``).

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
    for entry in walk(root, max_depth):
        rel = entry.rel
        path = root / rel
        if any(_unsafe_name(part) for part in PurePosixPath(rel).parts):
            skipped.append(
                Skipped(repr(rel), "unsafe file name (control characters or undecodable bytes): rename it")
            )
            continue
        if entry.kind == "skip":
            skipped.append(Skipped(rel, entry.problem))
            continue
        real: str | None = rel
        if entry.kind == "link":
            real, why = _symlink_target(path, root)
            if why is not None:
                skipped.append(Skipped(rel, why))
                continue
        fmt = FORMATS.get(PurePosixPath(rel).suffix.lower())
        if fmt is None:
            skipped.append(Skipped(rel, f"unsupported file type {PurePosixPath(rel).suffix or '(none)'!r}"))
            continue
        st = entry.st
        if real is not None and entry.kind == "link":
            try:
                fd = open_no_follow(root, real)
                try:
                    st = os.fstat(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                skipped.append(Skipped(rel, f"cannot read: {exc.strerror}"))
                continue
        if st is None or not stat.S_ISREG(st.st_mode):
            skipped.append(Skipped(rel, "not a regular file"))
            continue
        if st.st_size > max_bytes:
            skipped.append(
                Skipped(
                    rel,
                    f"file too large: {parsing.human_size(st.st_size)} is over the "
                    f"{parsing.human_size(max_bytes)} limit (raise QA_MAX_FILE_MB to index it)",
                )
            )
            continue
        found.append(SourceFile(rel, path, st.st_size, st.st_dev, st.st_ino, root, real))
    return found, skipped


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
