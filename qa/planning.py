"""Planning: the first stage of a build. List and hash the corpus, compare with the live
generation, and decide per file: reuse it as it is, prepare it again, or skip it.

Reuse is by content: a document whose id and SHA-256 are unchanged keeps its text and chunks;
any chunk, new or old, whose key (a hash of its text and sentence offsets) has a stored vector
keeps that vector (``Previous.rows``), so an edited document re-embeds only its edited chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa import store
from qa.documents import Document, Skipped, SourceFile, file_hash, read_source
from qa.errors import DocumentError, IndexNotFoundError, QAError
from qa.preparing import Chunk, PrepareTask

# progress(stage, done, total), as in qa.building
BuildProgress = Callable[[str, int, int], None]


@dataclass
class Previous:
    """What the live generation offers: reusable documents, and vector rows by chunk key."""

    gen: store.Generation | None = None
    docs: dict[str, tuple[Document, list[Chunk]]] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    rows: dict[bytes, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def close(self) -> None:
        if self.gen is not None:
            self.gen.close()


def load_previous(root: Path, fingerprint: str, chunking: dict[str, Any], full: bool) -> Previous:
    """The live generation's reusable work (nothing for ``full`` or an unusable index)."""
    if full:
        return Previous()
    try:
        gen, warnings = store.open_live(root, fingerprint)
    except IndexNotFoundError:
        return Previous()
    except QAError as exc:  # corrupt or another model: build from scratch
        return Previous(warnings=[f"previous index not reused: {exc}"])
    prev = Previous(gen, hashes={info.id: info.hash for info in gen.documents}, warnings=warnings)
    prev.rows = {key.tobytes(): row for row, key in enumerate(gen.chunk_keys)}
    if gen.manifest["format_version"] != store.FORMAT_VERSION:
        prev.warnings.append(
            f"index format {gen.manifest['format_version']} upgraded to {store.FORMAT_VERSION} "
            "(stored vectors reused)"
        )
    if gen.manifest.get("chunking") != chunking:
        # Parser or chunking changed: every document is parsed and chunked again, but a
        # chunk whose text and sentences come out the same still reuses its vectors.
        prev.warnings.append("parser or chunking settings changed: every document is re-parsed")
        return prev
    per_doc: dict[int, list[Chunk]] = {}
    for row, (doc_row, start, end) in enumerate(gen.chunks.tolist()):
        spans = gen.units[int(gen.unit_ptr[row]) : int(gen.unit_ptr[row + 1])]
        per_doc.setdefault(doc_row, []).append(Chunk(start, end, tuple(map(tuple, spans.tolist()))))
    prev.docs = {info.id: (gen.document(info.row), per_doc.get(info.row, [])) for info in gen.documents}
    return prev


@dataclass
class Plan:
    """The plan stage's result: per corpus file, reuse it, prepare it, or skip it."""

    order: list[str]  # readable files, corpus order
    reused: dict[str, tuple[Document, list[Chunk]]]
    tasks: list[PrepareTask]
    skipped: list[Skipped]
    files: int  # files found (the "parsing" progress total)
    done: int  # files settled by the plan: reused, or unreadable


def plan(
    sources: list[SourceFile], skipped: list[Skipped], previous: Previous, progress: BuildProgress
) -> Plan:
    """Hash every file found; unchanged documents (same id and hash) are reused as they are."""
    result = Plan([], {}, [], skipped, len(sources), 0)
    progress("parsing", 0, len(sources))
    for src in sources:
        try:
            digest = file_hash(read_source(src))
        except DocumentError as exc:
            skipped.append(Skipped(src.id, str(exc)))
            result.done += 1
            continue
        result.order.append(src.id)
        old = previous.docs.get(src.id)
        if old is not None and old[0].hash == digest:
            result.reused[src.id] = old
            result.done += 1
            progress("parsing", result.done, len(sources))
        else:
            result.tasks.append(PrepareTask(src.id, str(src.path), src.size))
    return result
