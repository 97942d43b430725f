"""The trash: documents deleted from the web app are moved here, restorable for a while.

Layout, inside the index folder (hidden: builds never see it, index loading never opens it)::

    index/.trash/
      1764523384123-9f2c41d0/     one entry: deletion time in ms, random suffix
        entry.json                {"doc_id": "reports/q3.pdf", "deleted": 1764523384.12}
        file                      the document's bytes

Entries older than ``Settings.trash_hours`` are removed when the trash is listed or a rebuild
starts; ``trash_hours = 0`` empties it at each rebuild. Restoring puts the file back under its
corpus id, never over an existing file. Entry keys are checked against a strict pattern
before any path is built from them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from qa.errors import QAError

TRASH = ".trash"
_KEY = re.compile(r"\d{13,}-[0-9a-f]{8}")


class TrashError(QAError):
    """A trash entry could not be created or restored (the message says why)."""


@dataclass(frozen=True)
class TrashEntry:
    """A deleted document waiting in the trash."""

    key: str
    doc_id: str
    deleted: float  # epoch seconds
    size: int


def trash_dir(index: Path) -> Path:
    return Path(index) / TRASH


def _move(src: Path, dst: Path) -> None:
    """Rename, or copy and delete when corpus and index are on different file systems."""
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != 18:  # EXDEV
            raise
        shutil.copy2(src, dst)
        src.unlink()


def move_to_trash(corpus: Path, index: Path, doc_id: str) -> TrashEntry:
    """Move ``corpus/doc_id`` into the trash (the caller has checked ``doc_id``).

    Raises:
        TrashError: the file cannot be moved (permissions, missing).
    """
    now = time.time()
    key = f"{int(now * 1000):013d}-{secrets.token_hex(4)}"
    entry = trash_dir(index) / key
    src = Path(corpus) / doc_id
    try:
        size = src.stat().st_size
        entry.mkdir(parents=True)
        (entry / "entry.json").write_text(json.dumps({"doc_id": doc_id, "deleted": now}), encoding="utf-8")
        _move(src, entry / "file")
    except OSError as exc:
        shutil.rmtree(entry, ignore_errors=True)
        raise TrashError(f"{doc_id}: could not be moved to the trash ({exc.strerror or exc})") from exc
    return TrashEntry(key, doc_id, now, size)


def list_trash(index: Path) -> list[TrashEntry]:
    """Entries in the trash, newest first (incomplete entries are skipped)."""
    root = trash_dir(index)
    entries = []
    for d in root.iterdir() if root.is_dir() else []:
        if not _KEY.fullmatch(d.name):
            continue
        try:
            meta = json.loads((d / "entry.json").read_text(encoding="utf-8"))
            size = (d / "file").stat().st_size
            entries.append(TrashEntry(d.name, str(meta["doc_id"]), float(meta["deleted"]), size))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a delete interrupted half-way: nothing to restore
    return sorted(entries, key=lambda e: e.key, reverse=True)


def restore(corpus: Path, index: Path, key: str) -> str:
    """Put the trashed document ``key`` back in the corpus; return its id.

    Raises:
        TrashError: no such entry, or a file of that name is in the corpus again.
    """
    if not _KEY.fullmatch(key or ""):
        raise TrashError(f"{key!r} is not an entry of the trash")
    found = [e for e in list_trash(index) if e.key == key]
    if not found:
        raise TrashError("that document is no longer in the trash (emptied after its time ran out?)")
    entry = found[0]
    root = Path(corpus).resolve()
    target = Path(corpus) / entry.doc_id
    parts = Path(entry.doc_id).parts
    if not parts or Path(entry.doc_id).is_absolute() or any(p in ("..", ".") for p in parts):
        raise TrashError(f"{entry.doc_id!r}: cannot be restored inside the corpus folder")
    if target.exists() or target.is_symlink():
        raise TrashError(
            f"{entry.doc_id} exists in the corpus again: rename or delete that file, then restore"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.parent.resolve().is_relative_to(root):
            raise TrashError(f"{entry.doc_id}: cannot be restored inside the corpus folder")
        _move(trash_dir(index) / key / "file", target)
    except OSError as exc:
        raise TrashError(f"{entry.doc_id}: could not be restored ({exc.strerror or exc})") from exc
    shutil.rmtree(trash_dir(index) / key, ignore_errors=True)
    return entry.doc_id


def purge(index: Path, keep_hours: float, now: float | None = None) -> list[TrashEntry]:
    """Remove entries older than ``keep_hours`` (all of them when it is 0); return them."""
    now = time.time() if now is None else now
    gone = [e for e in list_trash(index) if keep_hours <= 0 or now - e.deleted > keep_hours * 3600]
    for e in gone:
        shutil.rmtree(trash_dir(index) / e.key, ignore_errors=True)
    root = trash_dir(index)
    with contextlib.suppress(OSError):
        for d in root.iterdir() if root.is_dir() else []:
            # leftovers of an interrupted delete (no file, or no entry.json) older than a day
            if _KEY.fullmatch(d.name) and not (d / "file").exists() and now - d.stat().st_mtime > 86400:
                shutil.rmtree(d, ignore_errors=True)
    return gone
