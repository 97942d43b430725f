"""Building: corpus folder -> a new index generation, in five stages, reusing what did not change.

    plan      list the corpus, hash every file, compare with the live generation: unchanged
              documents keep their text, chunks and vectors; the rest become prepare tasks
              (``qa.planning``)
    prepare   per file to redo: read, parse, chunk, key (``qa.preparing.prepare``, pure)
    embed     vectors for the chunk keys no generation holds yet, in batches
    assemble  rows, keys, sentence units, vectors, BM25 and the dense index (``qa.vectors``)
    commit    write the generation, verify it, swap CURRENT, prune old generations
              (both in ``qa.assembling``)

A mapper runs prepare and embed: ``LocalMapper`` in this process (the default), or
``qa.distributed.RayMapper`` on a Ray cluster. The driver alone plans, assembles and commits,
so the guarantees are the same either way: the live generation serves throughout, and a
failed build (a dead worker, a full disk) changes nothing.

Example: 100 documents, one edited. 99 keep their chunks as they are; the edited one is
re-chunked, and of its 12 chunks the 10 whose text is unchanged reuse their vectors, so 2
chunks are embedded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from qa import __version__, chunking, store
from qa import vectors as dense_vectors
from qa.assembling import Assembled, assemble, commit
from qa.documents import Document, Skipped, discover
from qa.embedding import Embedder, get_embedder
from qa.errors import BuildError
from qa.parsing import PARSER_VERSION, IsolatedParser
from qa.planning import Plan, Previous, load_previous, plan
from qa.preparing import Chunk, PrepareConfig, Prepared, PrepareTask, chunk_key, prepare
from qa.retrieval import BM25_PARAMS
from qa.settings import Settings

__all__ = [
    "Assembled",
    "BuildReport",
    "LocalMapper",
    "Mapper",
    "Plan",
    "Previous",
    "assemble",
    "build_embedder",
    "build_index",
    "chunk_key",
    "commit",
    "load_previous",
    "plan",
]

log = logging.getLogger(__name__)

# progress(stage, done, total): stages are "loading model", "parsing", "embedding" (once per
# model batch), "writing".
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
    engine: str = "local"
    dense: str = "flat"
    committed: bool = True  # False: nothing had changed, the live generation stays as it was

    def summary(self) -> str:
        """A few human lines (the CLI and UI show this)."""
        live = "" if self.committed else " (nothing changed: still live, no new generation)"
        lines = [
            f"generation {self.generation}{live}: {len(self.added)} added, {len(self.changed)} changed, "
            f"{len(self.removed)} removed, {len(self.unchanged)} unchanged, "
            f"{len(self.failed)} failed",
            f"chunks: {self.chunks} total, {self.chunks_embedded} embedded, {self.chunks_reused} reused"
            f" (on {self.engine}; dense index {self.dense})",
            "time: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items()),
        ]
        lines += [f"  failed {s.id}: {s.reason}" for s in self.failed]
        lines += [f"  note {s.id}: {s.reason}" for s in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class EmbedItem:
    """A chunk to embed: its key, its text and its sentence units (offsets within the text)."""

    key: bytes
    text: str
    units: tuple[tuple[int, int], ...]


# One embedded batch: keys, chunk vectors (k, d) float32, and per chunk its unit vectors (m_i, d).
Embedded = tuple[list[bytes], np.ndarray, list[np.ndarray]]


class Mapper(Protocol):
    """Runs the prepare and embed stages, here or on a cluster; results may come in any order."""

    name: str

    def prepare(
        self, tasks: Sequence[PrepareTask], config: PrepareConfig, embedder: Embedder
    ) -> Iterator[Prepared]: ...

    def embed(
        self, items: Sequence[EmbedItem], embedder: Embedder, progress: Callable[[int, int], None]
    ) -> Iterator[Embedded]: ...


class LocalMapper:
    """Prepare and embed in this process: risky formats parse in an ``IsolatedParser`` child."""

    name = "local"

    def prepare(
        self, tasks: Sequence[PrepareTask], config: PrepareConfig, embedder: Embedder
    ) -> Iterator[Prepared]:
        with IsolatedParser(config.parse_timeout) as parser:
            for task in tasks:
                yield prepare(task, config, parser.parse, embedder.token_starts)

    def embed(
        self, items: Sequence[EmbedItem], embedder: Embedder, progress: Callable[[int, int], None]
    ) -> Iterator[Embedded]:
        vecs, units = embedder.encode_chunks([i.text for i in items], [i.units for i in items], progress)
        yield [i.key for i in items], vecs, units


# ------------------------------------------------------------------------------------ the build


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
    mapper: Mapper | None = None,
) -> BuildReport:
    """Build or update the index of a corpus folder.

    Args:
        settings: tunables (default: ``Settings()``, i.e. environment overrides applied).
        corpus: folder of documents (default ``settings.corpus``).
        index: index folder (default ``settings.index``).
        full: re-parse and re-embed everything instead of reusing unchanged work.
        embedder: a model to use instead of ``settings.model`` (tests pass a fake one).
        progress: called as ``progress(stage, done, total)``.
        mapper: where prepare and embed run (default ``LocalMapper()``; see qa.distributed).

    Returns:
        A BuildReport; the new generation is live when this returns.

    Raises:
        CorpusError: the corpus folder is missing.
        BuildLockedError: another build is running on this index.
        BuildError: writing the index failed (disk full, read-only...) or the cluster failed;
            the previous generation keeps serving.
        ConfigError: ``settings.dense_index`` names no index type.
    """
    settings = settings or Settings()
    corpus = corpus or settings.corpus
    root = index or settings.index
    embedder = embedder or build_embedder(settings)
    mapper = mapper or LocalMapper()
    report = progress or (lambda stage, done, total: None)
    config = PrepareConfig(
        min(settings.chunk_tokens, embedder.max_tokens), settings.chunk_overlap, settings.parse_timeout
    )
    chunking_params = {
        "max_tokens": config.max_tokens,
        "overlap_sentences": config.overlap,
        "splitter": "blingfire",
        "parser_version": PARSER_VERSION,
        "max_chars": chunking.MAX_CHUNK_CHARS,
    }
    dense_vectors.choose(0, embedder.dimension, settings.dense_index)  # a bad QA_DENSE_INDEX fails first
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    sources, skipped = discover(corpus, int(settings.max_file_mb * 2**20), settings.max_depth)
    notes: list[Skipped] = []
    if not sources:  # say so: an empty index built without a word looks like a bug
        what = "has no supported documents" if skipped else "is empty"
        notes.append(
            Skipped(
                "corpus", f"the corpus folder {corpus.resolve()} {what}: add .txt .md .html .pdf .docx files"
            )
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"cannot create index folder {root}: {exc.strerror}") from exc
    with store.build_lock(root):
        store.clean_leftovers(root)
        previous = load_previous(root, embedder.fingerprint, chunking_params, full)
        try:
            todo_plan = plan(sources, skipped, previous, report)
            timings["scan"] = time.perf_counter() - t0
            return _build(settings, todo_plan, root, full, embedder, mapper, report, config,
                          chunking_params, previous, timings, t0, notes)  # fmt: skip
        finally:
            previous.close()


def _build(
    settings: Settings,
    todo_plan: Plan,
    root: Path,
    full: bool,
    embedder: Embedder,
    mapper: Mapper,
    report: BuildProgress,
    config: PrepareConfig,
    chunking_params: dict[str, Any],
    previous: Previous,
    timings: dict[str, float],
    t0: float,
    notes: list[Skipped],
) -> BuildReport:
    """prepare, embed, assemble, commit (``build_index`` planned and holds the lock)."""
    skipped = todo_plan.skipped
    t = time.perf_counter()
    if todo_plan.tasks and isinstance(mapper, LocalMapper):  # load the tokenizer once, timed on its own
        report("loading model", 0, 1)  # seconds without progress otherwise
        embedder.token_starts("")
        report("loading model", 1, 1)
        timings["model"] = time.perf_counter() - t
        t = time.perf_counter()
    prepared: dict[str, Prepared] = {}
    for result in mapper.prepare(todo_plan.tasks, config, embedder):
        prepared[result.id] = result
        report("parsing", todo_plan.done + len(prepared), todo_plan.files)
    missing = [t_.id for t_ in todo_plan.tasks if t_.id not in prepared]
    if missing:
        raise BuildError(f"the {mapper.name} mapper returned no result for {missing[0]}")
    report("parsing", todo_plan.files, todo_plan.files)
    docs: list[tuple[Document, list[Chunk], list[bytes]]] = []
    added: list[str] = []
    changed: list[str] = []
    unchanged: list[str] = []
    notes = [*notes, *(Skipped("index", w) for w in previous.warnings)]
    for doc_id in todo_plan.order:
        if doc_id in todo_plan.reused:
            doc, chunks = todo_plan.reused[doc_id]
            docs.append((doc, chunks, [c.key(doc.text) for c in chunks]))
            unchanged.append(doc_id)
            continue
        result = prepared[doc_id]
        if result.document is None:
            skipped.append(Skipped(doc_id, result.error))
            continue
        doc = result.document
        docs.append((doc, list(result.chunks), list(result.keys)))
        before = previous.hashes.get(doc_id)
        (added if before is None else unchanged if before == doc.hash else changed).append(doc_id)
        if doc.note:
            notes.append(Skipped(doc_id, doc.note))
    removed = sorted(set(previous.hashes) - {d.id for d, _, _ in docs})
    timings["parse"] = time.perf_counter() - t
    if previous.gen is not None and _same_as_live(previous, todo_plan, removed, docs, skipped, settings,
                                                  embedder, chunking_params):  # fmt: skip
        timings["total"] = time.perf_counter() - t0
        n = sum(len(chunks) for _, chunks, _ in docs)
        return BuildReport(
            generation=previous.gen.name,
            added=[],
            changed=[],
            removed=[],
            unchanged=unchanged,
            failed=skipped,
            notes=notes,
            chunks=n,
            chunks_embedded=0,
            chunks_reused=n,
            seconds=timings,
            engine=mapper.name,
            dense=previous.gen.manifest.get("dense", {}).get("type", "flat"),
            committed=False,
        )

    t = time.perf_counter()
    todo: dict[bytes, EmbedItem] = {}
    for doc, chunks, keys in docs:
        for c, key in zip(chunks, keys, strict=True):
            if key not in previous.rows and key not in todo:
                todo[key] = EmbedItem(key, doc.text[c.start : c.end], tuple(c.relative_units()))
    fresh: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    report("embedding", 0, len(todo))
    if todo:

        def embedded(done: int, total: int) -> None:
            report("embedding", done, total)

        for keys_, vecs, units in mapper.embed(list(todo.values()), embedder, embedded):
            fresh.update(zip(keys_, zip(vecs, units, strict=True), strict=True))
        if len(fresh) != len(todo) or not fresh.keys() >= todo.keys():
            raise BuildError(f"the {mapper.name} mapper returned {len(fresh)} of {len(todo)} chunk vectors")
    report("embedding", len(todo), len(todo))
    timings["embed"] = time.perf_counter() - t

    t = time.perf_counter()
    report("writing", 0, 1)
    built = assemble(docs, fresh, previous, embedder.dimension, settings.dense_index, settings.build_threads)
    if built.dense is not None:
        timings["dense"] = time.perf_counter() - t
    manifest = _manifest(embedder, chunking_params, built, docs, skipped)
    name = commit(root, built, manifest, embedder.fingerprint, settings.keep_generations)
    report("writing", 1, 1)
    timings["write"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    n = len(built.chunks)
    return BuildReport(
        generation=name,
        added=added,
        changed=changed,
        removed=removed,
        unchanged=unchanged,
        failed=skipped,
        notes=notes,
        chunks=n,
        chunks_embedded=len(todo),
        chunks_reused=n - sum(1 for k in built.keys if k.tobytes() in todo),
        seconds=timings,
        full=full,
        engine=mapper.name,
        dense=built.dense_params.type,
    )


def _same_as_live(
    previous: Previous,
    todo_plan: Plan,
    removed: list[str],
    docs: list[tuple[Document, list[Chunk], list[bytes]]],
    skipped: list[Skipped],
    settings: Settings,
    embedder: Embedder,
    chunking_params: dict[str, Any],
) -> bool:
    """Whether a new generation would say exactly what the live one says: no file to parse
    (none new, changed or failed before), none removed, the same skipped files for the same
    reasons, and the same model, chunking, BM25 and dense settings. Then the build commits
    nothing, and a server has nothing to reload."""
    live = previous.gen
    if live is None or previous.warnings or todo_plan.tasks or removed:
        return False
    m = live.manifest
    n = sum(len(chunks) for _, chunks, _ in docs)
    return (
        m.get("qa_version") == __version__
        and m.get("model") == _model_entry(embedder)
        and m.get("chunking") == chunking_params
        and m.get("bm25") == _BM25_ENTRY
        and dense_vectors.DenseParams.from_manifest(m.get("dense"))
        == dense_vectors.choose(n, embedder.dimension, settings.dense_index)
        and [(d["id"], d["hash"]) for d in m.get("documents", [])] == [(d.id, d.hash) for d, _, _ in docs]
        and [(x["id"], x["reason"]) for x in m.get("skipped", [])] == [(x.id, x.reason) for x in skipped]
    )


_BM25_ENTRY = {**BM25_PARAMS, "stemmer": "snowball-english", "stopwords": "en"}


def _model_entry(embedder: Embedder) -> dict[str, Any]:
    return {
        "name": embedder.name,
        "fingerprint": embedder.fingerprint,
        "dimension": embedder.dimension,
        "max_tokens": embedder.max_tokens,
        "precision": embedder.precision,
    }


def _manifest(
    embedder: Embedder,
    chunking_params: dict[str, Any],
    built: Assembled,
    docs: list[tuple[Document, list[Chunk], list[bytes]]],
    skipped: list[Skipped],
) -> dict[str, Any]:
    return {
        "qa_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": _model_entry(embedder),
        "chunking": chunking_params,
        "bm25": _BM25_ENTRY,
        "dense": built.dense_params.to_manifest(),
        "counts": {
            "documents": len(docs),
            "chunks": len(built.chunks),
            "units": len(built.units),
            "skipped": len(skipped),
        },
        "documents": [
            {"id": d.id, "hash": d.hash, "format": d.format, "size": d.size, "chunks": len(c), "note": d.note}
            for d, c, _ in docs
        ],
        "skipped": [{"id": s.id, "reason": s.reason} for s in skipped],
    }
