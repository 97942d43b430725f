"""Building: corpus folder -> a new index generation, reusing what did not change.

Steps: discover files -> hash bytes -> reuse unchanged documents (same id and content hash)
from the live generation, parse the rest -> chunk -> embed only chunks whose text has no
stored vector (keyed by a hash of the text) -> BM25 over all chunks -> write a generation ->
swap CURRENT. The live generation serves throughout; a failed build changes nothing.

Example: 100 documents, one edited. 99 keep their chunks as they are; the edited one is
re-chunked, and of its 12 chunks the 10 whose text is unchanged reuse their vectors, so 2
chunks are embedded.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from qa import __version__, chunking, store
from qa.documents import Document, Skipped, discover, file_hash, parse_document, read_source
from qa.embedding import Embedder, get_embedder
from qa.errors import BuildError, DocumentError, IndexNotFoundError, QAError
from qa.parsing import IsolatedParser
from qa.retrieval import BM25_PARAMS, build_bm25
from qa.settings import Settings

# progress(stage, done, total): stages are "parsing", "embedding", "writing".
BuildProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BuildReport:
    """What a build did. Document lists hold corpus-relative ids."""

    generation: str
    added: list[str]
    changed: list[str]
    removed: list[str]
    unchanged: list[str]
    failed: list[Skipped]
    notes: list[Skipped]
    chunks: int
    chunks_embedded: int
    chunks_reused: int
    seconds: dict[str, float] = field(default_factory=dict)
    full: bool = False

    def summary(self) -> str:
        """A few human lines (the CLI and UI show this)."""
        lines = [
            f"generation {self.generation}: {len(self.added)} added, {len(self.changed)} changed, "
            f"{len(self.removed)} removed, {len(self.unchanged)} unchanged, "
            f"{len(self.failed)} failed",
            f"chunks: {self.chunks} total, {self.chunks_embedded} embedded, {self.chunks_reused} reused",
            "time: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items()),
        ]
        lines += [f"  failed {s.id}: {s.reason}" for s in self.failed]
        lines += [f"  note {s.id}: {s.reason}" for s in self.notes]
        return "\n".join(lines)


def chunk_key(text: str) -> bytes:
    """16-byte key of a chunk's text: equal keys share one vector."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@dataclass
class _Previous:
    """What a build may reuse from the live generation."""

    docs: dict[str, tuple[Document, np.ndarray, np.ndarray]]  # id -> doc, chunks, units
    vectors: dict[bytes, np.ndarray]


def _load_previous(
    root: Path, embedder: Embedder, manifest_chunking: dict[str, Any], full: bool
) -> tuple[_Previous, list[str]]:
    empty = _Previous({}, {})
    if full:
        return empty, []
    try:
        gen, warnings = store.open_live(root, embedder.fingerprint)
    except IndexNotFoundError:
        return empty, []
    except QAError as exc:  # corrupt or another model: build from scratch
        return empty, [f"previous index not reused: {exc}"]
    try:
        if gen.manifest.get("chunking") != manifest_chunking:
            return empty, [*warnings, "chunking settings changed: every document is re-chunked"]
        docs = {}
        doc_col = gen.chunks[:, 0]
        unit_col = gen.units[:, 0]
        for info in gen.documents:
            c = gen.chunks[doc_col == info.row][:, 1:]
            u = gen.units[unit_col == info.row][:, 1:]
            docs[info.id] = (gen.document(info.row), c, u)
        flat = gen.index.index if hasattr(gen.index, "index") else gen.index
        import faiss

        vecs = faiss.downcast_index(flat).reconstruct_n(0, gen.index.ntotal) if gen.index.ntotal else []
        vectors = {bytes(k): vecs[i] for i, k in enumerate(gen.chunk_keys)}
        return _Previous(docs, vectors), warnings
    finally:
        gen.close()


def build_index(
    settings: Settings | None = None,
    *,
    corpus: Path | None = None,
    index: Path | None = None,
    full: bool = False,
    embedder: Embedder | None = None,
    progress: BuildProgress | None = None,
) -> BuildReport:
    """Build or update the index of a corpus folder.

    Args:
        settings: tunables (default: ``Settings()``, i.e. environment overrides applied).
        corpus: folder of documents (default ``settings.corpus``).
        index: index folder (default ``settings.index``).
        full: re-parse and re-embed everything instead of reusing unchanged work.
        embedder: a model to use instead of ``settings.model`` (tests pass a fake one).
        progress: called as ``progress(stage, done, total)``.

    Returns:
        A BuildReport; the new generation is live when this returns.

    Raises:
        CorpusError: the corpus folder is missing.
        BuildLockedError: another build is running on this index.
        BuildError: writing the index failed (disk full, read-only...); the previous
            generation keeps serving.
    """
    settings = settings or Settings()
    corpus = corpus or settings.corpus
    root = index or settings.index
    embedder = embedder or get_embedder(settings.model, settings.threads, settings.batch_size)
    report = progress or (lambda stage, done, total: None)
    max_tokens = min(settings.chunk_tokens, embedder.max_tokens)
    chunking_params = {
        "max_tokens": max_tokens,
        "overlap_sentences": settings.chunk_overlap,
        "splitter": "blingfire",
    }
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    sources, skipped = discover(corpus, int(settings.max_file_mb * 2**20))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"cannot create index folder {root}: {exc.strerror}") from exc
    with store.build_lock(root):
        store.clean_leftovers(root)
        prev, warnings = _load_previous(root, embedder, chunking_params, full)
        timings["scan"] = time.perf_counter() - t0

        t = time.perf_counter()
        docs: list[tuple[Document, np.ndarray, np.ndarray]] = []
        added: list[str] = []
        changed: list[str] = []
        unchanged: list[str] = []
        notes = [Skipped("index", w) for w in warnings]
        with IsolatedParser(settings.parse_timeout) as parser:
            for i, src in enumerate(sources):
                report("parsing", i, len(sources))
                try:
                    data = read_source(src)
                    old = prev.docs.get(src.id)
                    if old is not None and old[0].hash == file_hash(data):
                        docs.append(old)
                        unchanged.append(src.id)
                        continue
                    doc = parse_document(src, data, parser.parse)
                except DocumentError as exc:
                    skipped.append(Skipped(src.id, str(exc)))
                    continue
                chunked = chunking.chunk_text(
                    doc.text, embedder.token_starts(doc.text), max_tokens, settings.chunk_overlap
                )
                docs.append(
                    (
                        doc,
                        np.asarray(chunked.chunks, np.int64).reshape(-1, 2),
                        np.asarray(chunked.units, np.int64).reshape(-1, 2),
                    )
                )
                (changed if old is not None else added).append(src.id)
                if doc.note:
                    notes.append(Skipped(doc.id, doc.note))
        report("parsing", len(sources), len(sources))
        present = {d.id for d, _, _ in docs}
        removed = sorted(set(prev.docs) - present)
        timings["parse"] = time.perf_counter() - t

        t = time.perf_counter()
        rows, texts, unit_rows = [], [], []
        for row, (doc, c, u) in enumerate(docs):
            rows += [(row, int(s), int(e)) for s, e in c]
            texts += [doc.text[int(s) : int(e)] for s, e in c]
            unit_rows += [(row, int(s), int(e)) for s, e in u]
        keys = [chunk_key(t_) for t_ in texts]
        todo: dict[bytes, str] = {}
        for k, text in zip(keys, texts, strict=True):
            if k not in prev.vectors and k not in todo:
                todo[k] = text
        fresh = (
            embedder.encode(list(todo.values()), lambda d, n: report("embedding", d, n))
            if todo
            else np.zeros((0, embedder.dimension), np.float32)
        )
        known = dict(prev.vectors)
        known.update(zip(todo.keys(), fresh, strict=True))
        vectors = (
            np.vstack([known[k] for k in keys]) if keys else np.zeros((0, embedder.dimension), np.float32)
        )
        report("embedding", len(todo), len(todo))
        timings["embed"] = time.perf_counter() - t

        t = time.perf_counter()
        report("writing", 0, 1)
        bm25 = build_bm25(texts)
        units = np.asarray(unit_rows, np.int64).reshape(-1, 3)
        units = units[np.lexsort((units[:, 1], units[:, 0]))]
        manifest = {
            "qa_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "model": {
                "name": embedder.name,
                "fingerprint": embedder.fingerprint,
                "dimension": embedder.dimension,
                "max_tokens": embedder.max_tokens,
            },
            "chunking": chunking_params,
            "bm25": {**BM25_PARAMS, "stemmer": "snowball-english", "stopwords": "en"},
            "counts": {
                "documents": len(docs),
                "chunks": len(rows),
                "units": len(units),
                "skipped": len(skipped),
            },
            "documents": [
                {
                    "id": d.id,
                    "hash": d.hash,
                    "format": d.format,
                    "size": d.size,
                    "chunks": len(c),
                    "note": d.note,
                }
                for d, c, _ in docs
            ],
            "skipped": [{"id": s.id, "reason": s.reason} for s in skipped],
        }
        try:
            name = store.write_generation(
                root,
                [d for d, _, _ in docs],
                np.asarray(rows, np.int64).reshape(-1, 3),
                np.asarray(keys, dtype="S16") if keys else np.zeros(0, "S16"),
                units,
                vectors,
                bm25,
                manifest,
            )
            store.set_live(root, name)
        except OSError as exc:
            store.clean_leftovers(root)
            raise BuildError(
                f"writing the index to {root} failed ({exc.strerror or exc}); "
                "the previous index is still live"
            ) from exc
        store.prune(root, settings.keep_generations)
        report("writing", 1, 1)
        timings["write"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return BuildReport(
        generation=name,
        added=added,
        changed=changed,
        removed=removed,
        unchanged=unchanged,
        failed=skipped,
        notes=notes,
        chunks=len(rows),
        chunks_embedded=len(todo),
        chunks_reused=len(rows) - sum(1 for k in keys if k in todo),
        seconds=timings,
        full=full,
    )
