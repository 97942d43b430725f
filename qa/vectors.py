"""Dense search behind one seam: exact (flat), IVF and IVF-PQ, chosen by the number of chunks.

Chunk vectors are stored once, in ``vectors.npy`` (float32, L2-normalised, row i = chunk i),
and opened memory-mapped. A FAISS file is only a search structure over them, so the same
vectors serve any index type, a rebuild can switch types without re-embedding, and every
score this module returns is the exact cosine (inner product of normalised vectors) read
from ``vectors.npy``, whatever structure found the row.

- ``flat``: exact search straight over the memory-mapped vectors (``faiss.knn``); no FAISS
  file at all.
- ``ivf``: ``IndexIVFFlat``, inner product, ``nlist`` lists, ``nprobe`` searched.
- ``ivfpq``: ``IndexIVFPQ`` (``pq_m`` sub-quantizers of ``pq_bits`` bits); its approximate
  distances only pick ``refine`` x the requested candidates, which are then re-scored exactly
  from ``vectors.npy``: the PQ codes stay small in memory and the ranking stays exact.

FAISS files are opened with ``IO_FLAG_MMAP | IO_FLAG_READ_ONLY``: the inverted lists are
mapped, not copied into RAM, so opening a large index takes milliseconds.

Sizes (``choose``) come from measurements on this project's machine, see
``benchmarks/scale.py`` and its results in ``benchmarks/results/scale.json``.

Non-goals: GPUs, HNSW (it reached only 0.917 recall@10 at 1M, benchmarks/README.md), on-line
updates of a FAISS index (each generation is built whole).
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.errors import ConfigError, IndexCorruptError

TYPES = ("flat", "ivf", "ivfpq")
CHOICES = ("auto", *TYPES)
FILE = "dense.faiss"
# Thresholds of QA_DENSE_INDEX=auto, from benchmarks/scale.py (results/scale.json; CPU time of
# one thread, x 384 dimensions): exact search costs 0.15 ms per 1,000 vectors (p95 16.7 ms at
# 100k, 30.7 at 200k), so it is kept while it takes at most half of ask()'s 50 ms budget:
# up to 150k. IVF answers 1M in 4.3 ms at recall@10 0.976 (nprobe 16). IVF-Flat stores every
# vector a second time in its lists (1.5 kB each: 1.5 GB at 1M); past 2M chunks IVF-PQ keeps
# 104 bytes per chunk (96 of code, 8 of id) and still ranks exactly (see REFINE).
FLAT_MAX = 150_000
IVFPQ_MIN = 2_000_000
# Searched lists per question: at 1M with nlist 1024, nprobe 8 gives recall@10 0.956, 16 gives 0.976.
NPROBE_MIN = 16
# IVF-PQ: dimensions per sub-quantizer (384 / 4 = 96 bytes per vector), and candidates taken
# from the PQ ranking per result wanted, then re-scored exactly from vectors.npy. At 1M,
# nprobe 16: 96-byte codes keep recall@10 0.945 (48-byte codes: 0.779), and qa's 100
# candidates (400 from PQ) hold 0.976 of the exact top 10 (48 bytes: 0.969).
PQ_DIMS = 4
REFINE = 4
# k-means samples at most this many vectors per list (FAISS warns below 39, caps at 256).
TRAIN_PER_LIST = 64
SEED = 1234


@dataclass(frozen=True)
class DenseParams:
    """What the manifest records under ``"dense"``: the structure and how it was trained."""

    type: str = "flat"
    nlist: int | None = None
    nprobe: int | None = None
    pq_m: int | None = None
    pq_bits: int | None = None
    refine: int | None = None
    trained_on: int | None = None  # vectors in the k-means training sample (seeded)

    def to_manifest(self) -> dict[str, Any]:
        return {**asdict(self), "file": FILE if self.type != "flat" else None}

    @classmethod
    def from_manifest(cls, body: dict[str, Any] | None) -> DenseParams:
        """Parameters from a manifest's ``"dense"`` entry (absent: flat, as format 2 was).

        Raises:
            IndexCorruptError: an unknown type or malformed entry.
        """
        if body is None:
            return cls()
        fields: dict[str, Any] = {k: body.get(k) for k in cls.__dataclass_fields__}
        try:
            params = cls(**fields)
        except TypeError as exc:
            raise IndexCorruptError(f"malformed dense index entry in the manifest: {body}") from exc
        if params.type not in TYPES:
            raise IndexCorruptError(f"unknown dense index type {params.type!r} in the manifest")
        return params


def _pow2(x: float) -> int:
    return 1 << max(0, round(math.log2(max(1.0, x))))


def choose(n: int, dim: int, requested: str = "auto") -> DenseParams:
    """The dense structure for ``n`` vectors of ``dim`` dimensions.

    ``requested`` is ``auto`` (by size: flat up to ``FLAT_MAX``, IVF up to ``IVFPQ_MIN``,
    IVF-PQ above) or a type to force. IVF uses about sqrt(n) lists (a power of two, at least
    39 training vectors each so k-means is sound) and searches ``NPROBE_MIN`` of them, or all
    when there are fewer. IVF-PQ codes each vector in ``dim / PQ_DIMS`` bytes (one 8-bit code
    per ``PQ_DIMS`` dimensions), with fewer bits on tiny collections.

    Raises:
        ConfigError: ``requested`` is not one of ``CHOICES``.
    """
    if requested not in CHOICES:
        raise ConfigError(f"QA_DENSE_INDEX must be one of {', '.join(CHOICES)}, not {requested!r}")
    kind = requested
    if kind == "auto":
        kind = "flat" if n <= FLAT_MAX else "ivf" if n < IVFPQ_MIN else "ivfpq"
    if kind == "flat":
        return DenseParams()
    nlist = max(1, min(_pow2(math.sqrt(n)), n // 39 or 1))
    nprobe = min(nlist, NPROBE_MIN)
    if kind == "ivf":
        return DenseParams("ivf", nlist, nprobe)
    pq_m: int = next(m for m in range(max(1, dim // PQ_DIMS), 0, -1) if dim % m == 0)
    pq_bits = max(1, min(8, int(math.log2(max(2, n // 39)))))
    return DenseParams("ivfpq", nlist, nprobe, pq_m, pq_bits, REFINE)


def train_sample(n: int, params: DenseParams) -> np.ndarray:
    """Rows of the seeded k-means training sample (sorted), the same for the same ``n``."""
    nlist = params.nlist or 1
    size = min(n, max(nlist * TRAIN_PER_LIST, 2 ** (params.pq_bits or 0) * TRAIN_PER_LIST))
    rng = np.random.default_rng(SEED)
    return np.sort(rng.choice(n, size, replace=False)) if size < n else np.arange(n)


def build(vectors: np.ndarray, params: DenseParams, threads: int = 2) -> tuple[Any, DenseParams]:
    """Train and fill the FAISS structure of ``params`` over ``vectors`` (None for flat).

    ``vectors`` may be memory-mapped: they are added in blocks, never copied whole.
    Returns the index and the parameters with ``trained_on`` filled in.
    """
    if params.type == "flat":
        return None, params
    import faiss

    n, dim = vectors.shape
    faiss.omp_set_num_threads(threads)
    quantizer = faiss.IndexFlatIP(dim)
    assert params.nlist is not None and params.nprobe is not None, params
    index: Any
    if params.type == "ivf":
        index = faiss.IndexIVFFlat(quantizer, dim, params.nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        assert params.pq_m is not None and params.pq_bits is not None, params
        index = faiss.IndexIVFPQ(
            quantizer, dim, params.nlist, params.pq_m, params.pq_bits, faiss.METRIC_INNER_PRODUCT
        )
        index.pq.cp.min_points_per_centroid = 1  # tiny collections: no warning spam, see choose()
        index.pq.cp.seed = SEED
    index.cp.min_points_per_centroid = 1
    index.cp.seed = SEED  # the same vectors give the same lists, build after build
    if n:
        rows = train_sample(n, params)
        index.train(np.ascontiguousarray(vectors[rows], dtype=np.float32))
        for lo in range(0, n, 100_000):
            block = np.ascontiguousarray(vectors[lo : lo + 100_000], dtype=np.float32)
            index.add_with_ids(block, np.arange(lo, lo + len(block), dtype=np.int64))
        trained = len(rows)
    else:
        trained = 0
    index.nprobe = params.nprobe
    return index, DenseParams(**{**asdict(params), "trained_on": trained})


def write(index: Any, path: Path) -> None:
    """Write a FAISS structure built by ``build`` (flat has none)."""
    import faiss

    faiss.write_index(index, str(path))


class DenseIndex:
    """The search side: rows and exact cosines of the nearest chunks to a question vector.

    Thread-safe: FAISS searches of a read-only index run concurrently; ``nprobe`` is set once.
    """

    def __init__(self, params: DenseParams, vectors: np.ndarray, path: Path | None = None) -> None:
        self.params = params
        self.vectors = vectors
        self.ntotal = len(vectors)
        self.d = int(vectors.shape[1]) if vectors.ndim == 2 else 0
        self._faiss: Any = None
        self._lock = threading.Lock()
        if params.type != "flat":
            if path is None:
                raise IndexCorruptError(f"dense index of type {params.type} has no FAISS file")
            import faiss

            # Mapped, not read: the lists stay in the page cache, shared and reclaimable.
            self._faiss = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            self._faiss.nprobe = params.nprobe
            if self._faiss.ntotal != self.ntotal or self._faiss.d != self.d:
                raise IndexCorruptError(
                    f"{path}: {self._faiss.ntotal} vectors of dimension {self._faiss.d} in FAISS, "
                    f"{self.ntotal} of dimension {self.d} in vectors.npy"
                )

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` rows by cosine and their exact cosines, best first (fewer if fewer exist)."""
        n = min(n, self.ntotal)
        if n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if self._faiss is None:
            import faiss

            scores, ids = faiss.knn(q, self.vectors, n, metric=faiss.METRIC_INNER_PRODUCT)
        else:
            want = n * (self.params.refine or 1)
            scores, ids = self._faiss.search(q, min(want, self.ntotal))
        rows = ids[0][(ids[0] >= 0) & (ids[0] < self.ntotal)]  # FAISS pads missing results with -1
        if self.params.type == "ivfpq":  # PQ distances are approximate: re-score exactly
            exact = self.cosines(rows, q[0])
            order = np.argsort(-exact, kind="stable")[:n]
            return rows[order].astype(np.int64), exact[order]
        keep = (ids[0] >= 0) & (ids[0] < self.ntotal)
        return rows[:n].astype(np.int64), scores[0][keep][:n].astype(np.float32)

    def cosines(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Exact cosine of ``rows`` to ``query`` (read from the stored vectors)."""
        if len(rows) == 0:
            return np.zeros(0, np.float32)
        order = np.argsort(rows)  # sorted reads of a memory-mapped file
        out = np.empty(len(rows), np.float32)
        out[order] = np.asarray(self.vectors[np.asarray(rows)[order]], np.float32) @ query.reshape(-1)
        return out
