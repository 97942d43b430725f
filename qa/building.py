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
import logging
import shutil
import sqlite3
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
from qa.parsing import PARSER_VERSION, IsolatedParser
from qa.retrieval import BM25_PARAMS, build_bm25
from qa.settings import Settings

log = logging.getLogger(__name__)

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


def chunk_key(text: str, units: list[tuple[int, int]]) -> bytes:
    """16-byte key of a chunk's text and its units (relative offsets): equal keys share vectors."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16)
    digest.update(repr(units).encode())
    return digest.digest()


@dataclass(frozen=True, slots=True)  # slots: a 64 MB file has 100k+ chunks
class _Chunk:
    """A chunk of one document: its span and its units' spans, in document offsets."""

    start: int
    end: int
    units: tuple[tuple[int, int], ...]

    def key(self, text: str) -> bytes:
        return chunk_key(
            text[self.start : self.end], [(a - self.start, b - self.start) for a, b in self.units]
        )


# id -> (document, its chunks); key -> (chunk vector, unit vectors)
_Docs = dict[str, tuple[Document, list[_Chunk]]]
_Vectors = dict[bytes, tuple[np.ndarray, np.ndarray]]


def _chunks_of(text: str, embedder: Embedder, max_tokens: int, overlap: int) -> list[_Chunk]:
    # Tokenized one segment at a time: the whole text's tokens with offsets took ~600 bytes per token.
    chunked = chunking.chunk_stream(text, embedder.token_starts, max_tokens, overlap)
    units = chunked.units
    out, first = [], 0
    for start, end in chunked.chunks:
        while units[first][0] < start:
            first += 1  # units are sorted and disjoint; each chunk starts at a unit
        k = first
        while k < len(units) and units[k][1] <= end:
            k += 1
        out.append(_Chunk(start, end, tuple(units[first:k])))
    return out


def _load_previous(
    root: Path, embedder: Embedder, manifest_chunking: dict[str, Any], full: bool
) -> tuple[_Docs, _Vectors, list[str], dict[str, str]]:
    """Reusable documents, vectors by chunk key, warnings, and the previous content hashes."""
    if full:
        return {}, {}, [], {}
    try:
        gen, warnings = store.open_live(root, embedder.fingerprint)
    except IndexNotFoundError:
        return {}, {}, [], {}
    except QAError as exc:  # corrupt or another model: build from scratch
        return {}, {}, [f"previous index not reused: {exc}"], {}
    try:
        import faiss

        n = gen.index.ntotal
        flat = faiss.downcast_index(gen.index.index)  # type: ignore[attr-defined]  # IDMap2 -> FlatIP
        vecs = flat.reconstruct_n(0, n) if n else np.zeros((0, gen.index.d), np.float32)
        per_doc: dict[int, list[_Chunk]] = {}
        vectors: _Vectors = {}
        hashes = {info.id: info.hash for info in gen.documents}
        for row, (doc_row, start, end) in enumerate(gen.chunks.tolist()):
            spans, unit_vecs = gen.units_in(row)
            per_doc.setdefault(doc_row, []).append(_Chunk(start, end, tuple(map(tuple, spans.tolist()))))
            vectors[gen.chunk_keys[row].tobytes()] = (vecs[row], np.asarray(unit_vecs))
        if gen.manifest.get("chunking") != manifest_chunking:
            # Parser or chunking changed: every document is parsed and chunked again, but a
            # chunk whose text and sentences come out the same still reuses its vectors.
            note = "parser or chunking settings changed: every document is re-parsed"
            return {}, vectors, [*warnings, note], hashes
        docs = {info.id: (gen.document(info.row), per_doc.get(info.row, [])) for info in gen.documents}
        return docs, vectors, warnings, hashes
    finally:
        gen.close()


def build_embedder(settings: Settings, threads: int | None = None) -> Embedder:
    """The model instance builds embed with: role "build", ``settings.build_precision``, and
    ``threads`` (default ``settings.build_threads``; the web app passes ``settings.threads``
    so questions keep a core during a background rebuild)."""
    return get_embedder(
        settings.model,
        threads or settings.build_threads,
        settings.batch_size,
        role="build",
        precision=settings.build_precision,
    )


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
    embedder = embedder or build_embedder(settings)
    report = progress or (lambda stage, done, total: None)
    max_tokens = min(settings.chunk_tokens, embedder.max_tokens)
    chunking_params = {
        "max_tokens": max_tokens,
        "overlap_sentences": settings.chunk_overlap,
        "splitter": "blingfire",
        "parser_version": PARSER_VERSION,
        "max_chars": chunking.MAX_CHUNK_CHARS,
    }
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    sources, skipped = discover(corpus, int(settings.max_file_mb * 2**20), settings.max_depth)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"cannot create index folder {root}: {exc.strerror}") from exc
    with store.build_lock(root):
        store.clean_leftovers(root)
        prev_docs, prev_vectors, warnings, prev_hashes = _load_previous(root, embedder, chunking_params, full)
        timings["scan"] = time.perf_counter() - t0

        t = time.perf_counter()
        docs: list[tuple[Document, list[_Chunk]]] = []
        added: list[str] = []
        changed: list[str] = []
        unchanged: list[str] = []
        notes = [Skipped("index", w) for w in warnings]
        with IsolatedParser(settings.parse_timeout) as parser:
            for i, src in enumerate(sources):
                report("parsing", i, len(sources))
                try:
                    data = read_source(src)
                    digest = file_hash(data)
                    old = prev_docs.get(src.id)
                    if old is not None and old[0].hash == digest:
                        docs.append(old)
                        unchanged.append(src.id)
                        continue
                    doc = parse_document(src, data, parser.parse)
                    if "model" not in timings:  # load the tokenizer/model once, timed on its own
                        t_model = time.perf_counter()
                        embedder.token_starts("")
                        timings["model"] = time.perf_counter() - t_model
                    chunks = _chunks_of(doc.text, embedder, max_tokens, settings.chunk_overlap)
                except DocumentError as exc:
                    skipped.append(Skipped(src.id, str(exc)))
                    continue
                except Exception as exc:  # a bug on one document must not stop the build: report it
                    log.exception("chunking %s failed", src.id)
                    skipped.append(Skipped(src.id, f"could not be chunked ({type(exc).__name__}: {exc})"))
                    continue
                docs.append((doc, chunks))
                before = prev_hashes.get(src.id)
                (added if before is None else unchanged if before == digest else changed).append(src.id)
                if doc.note:
                    notes.append(Skipped(doc.id, doc.note))
        report("parsing", len(sources), len(sources))
        present = {d.id for d, _ in docs}
        removed = sorted(set(prev_hashes) - present)
        timings["parse"] = time.perf_counter() - t - timings.get("model", 0.0)

        t = time.perf_counter()
        rows: list[tuple[int, int, int]] = []
        texts: list[str] = []
        keys: list[bytes] = []
        todo: dict[bytes, tuple[str, list[tuple[int, int]]]] = {}
        unit_ptr: list[int] = [0]
        unit_spans: list[tuple[int, int]] = []
        for row, (doc, chunks) in enumerate(docs):
            for c in chunks:
                rows.append((row, c.start, c.end))
                texts.append(doc.text[c.start : c.end])
                keys.append(c.key(doc.text))
                unit_spans.extend(c.units)
                unit_ptr.append(len(unit_spans))
                if keys[-1] not in prev_vectors and keys[-1] not in todo:
                    todo[keys[-1]] = (texts[-1], [(a - c.start, b - c.start) for a, b in c.units])
        known = dict(prev_vectors)
        report("embedding", 0, len(todo))
        if todo:
            fresh, fresh_units = embedder.encode_chunks(
                [t_ for t_, _ in todo.values()],
                [u for _, u in todo.values()],
                lambda d, n: report("embedding", d, n),
            )
            # Unit vectors are stored as float16: never stack them all in float32 first
            # (650k sentences of a 64 MB file: 1 GB, then a 0.5 GB copy).
            half = [np.asarray(u, np.float16) for u in fresh_units]
            known.update(zip(todo, zip(fresh, half, strict=True), strict=True))
        dim = embedder.dimension
        vectors = np.vstack([known[k][0] for k in keys]) if keys else np.zeros((0, dim), np.float32)
        unit_vectors = [known[k][1] for k in keys]
        units = np.asarray(unit_spans, np.int64).reshape(-1, 2)
        report("embedding", len(todo), len(todo))
        timings["embed"] = time.perf_counter() - t

        t = time.perf_counter()
        report("writing", 0, 1)
        bm25 = build_bm25(texts)
        manifest = {
            "qa_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "model": {
                "name": embedder.name,
                "fingerprint": embedder.fingerprint,
                "dimension": embedder.dimension,
                "max_tokens": embedder.max_tokens,
                "precision": embedder.precision,
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
                for d, c in docs
            ],
            "skipped": [{"id": s.id, "reason": s.reason} for s in skipped],
        }
        try:
            name = store.write_generation(
                root,
                [d for d, _ in docs],
                np.asarray(rows, np.int64).reshape(-1, 3),
                np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 16),
                np.asarray(unit_ptr, np.int64),
                units,
                unit_vectors,  # written chunk by chunk, never stacked (hundreds of MB for a large file)
                vectors,
                bm25,
                manifest,
            )
            store.set_live(root, name)
        except (OSError, sqlite3.Error, RuntimeError) as exc:  # faiss raises RuntimeError on I/O
            reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[-1]
            if "space" not in reason.lower() and shutil.disk_usage(root).free < 2**20:
                reason = f"no space left on device: {reason}"
            store.clean_leftovers(root)
            raise BuildError(
                f"writing the index to {root} failed ({reason}); the previous index is still live"
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
