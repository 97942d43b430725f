"""A cache of model-folder fingerprints, so a cold ``qa ask`` does not re-hash 91 MB of weights.

``Index.load`` compares the SHA-256 of the model folder with the one in the index manifest
(an index built with other weights is refused). Hashing all-MiniLM-L6-v2 costs ~0.1 s of a
~1 s cold start, every process. The digest is stored in
``$XDG_CACHE_HOME/qa/model-fingerprints.json`` (default ``~/.cache/qa/``): plain JSON, one
entry per model folder, keyed by the name, size, mtime, ctime and inode of every hashed file.
Any write to a file changes its ctime (which, unlike mtime, cannot be set back by ``touch`` or
a copy tool), a replaced file changes its inode, an added or removed file changes the list:
each makes the entry miss and the folder is hashed again. Files written in the last 3 s are
not cached (timestamps are coarse: a write in the same tick would not change them). Nothing
needs managing: a missing, unreadable, corrupt or unwritable cache only means hashing as
before.

Non-goal: caching anything else; the index files themselves are always hashed in full.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

VERSION = 1
MAX_ENTRIES = 32  # model folders remembered; gone folders are dropped
RACY_NS = 3_000_000_000  # files changed this recently are hashed every time
Files = Sequence[tuple[str, Path]]


def cache_file() -> Path:
    """Where the cache lives (``$XDG_CACHE_HOME/qa`` or ``~/.cache/qa``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qa" / "model-fingerprints.json"


def stat_key(files: Files) -> list[list[Any]]:
    """What identifies the files' contents without reading them: name, size, mtime, ctime, inode."""
    key: list[list[Any]] = []
    for rel, path in files:
        st = os.stat(path)
        key.append([rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev])
    return key


def cached(root: Path, files: Files, compute: Callable[[Files], str]) -> str:
    """``compute(files)``, or the digest stored for the same ``root`` and unchanged ``files``."""
    try:
        key = stat_key(files)
    except OSError:
        return compute(files)
    path = cache_file()
    entries = _read(path)
    entry = entries.get(str(root))
    if isinstance(entry, dict) and entry.get("files") == key and isinstance(entry.get("sha256"), str):
        return str(entry["sha256"])
    digest = compute(files)
    try:
        # Remember only files unchanged while hashing and not written in the last seconds: a
        # write within the same coarse timestamp tick would keep the key ("racy git" problem).
        settled = all(time.time_ns() - k[3] > RACY_NS for k in key)
        if settled and stat_key(files) == key:
            entries.pop(str(root), None)
            entries[str(root)] = {"files": key, "sha256": digest}  # newest last
            kept = [(r, e) for r, e in entries.items() if os.path.isdir(r)][-MAX_ENTRIES:]
            _write(path, dict(kept))
    except OSError as exc:  # a read-only home only costs the hashing next time
        log.debug("model fingerprint not cached in %s: %s", path, exc)
    return digest


def _read(path: Path) -> dict[str, object]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    if (
        not isinstance(data, dict)
        or data.get("version") != VERSION
        or not isinstance(data.get("models"), dict)
    ):
        return {}
    return dict(data["models"])


def _write(path: Path, entries: dict[str, object]) -> None:
    """Atomic replace: a reader sees the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fingerprints-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"version": VERSION, "models": entries}, fh, indent=1)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
