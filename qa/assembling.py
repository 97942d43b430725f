"""Assembling and committing: the last two stages of a build.

``assemble`` lays out the new generation in corpus order (chunk rows, keys, sentence units,
every chunk's vectors from this build's embeddings or the previous generation's, and the dense
search structure ``qa.vectors`` chooses for the size); ``commit`` writes it, verifies what was
written, and only then swaps it in. A failure in either leaves the live generation serving.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa import store
from qa import vectors as dense_vectors
from qa.documents import Document
from qa.errors import BuildError, QAError
from qa.planning import Previous
from qa.preparing import Chunk
from qa.retrieval import build_bm25


@dataclass
class Assembled:
    """Everything a generation holds, ready to write."""

    documents: list[Document]
    chunks: np.ndarray
    keys: np.ndarray
    unit_ptr: np.ndarray
    units: np.ndarray
    unit_vectors: list[np.ndarray]  # float16, one array per chunk
    vectors: np.ndarray
    texts: list[str]
    dense: Any
    dense_params: dense_vectors.DenseParams


def assemble(
    docs: list[tuple[Document, list[Chunk], list[bytes]]],
    fresh: dict[bytes, tuple[np.ndarray, np.ndarray]],
    previous: Previous,
    dim: int,
    dense_type: str,
    threads: int,
) -> Assembled:
    """Rows in corpus order, each chunk's vectors from ``fresh`` or the previous generation."""
    n = sum(len(c) for _, c, _ in docs)
    rows = np.zeros((n, 3), np.int64)
    matrix = np.zeros((n, dim), np.float32)
    unit_ptr = np.zeros(n + 1, np.int64)
    spans: list[tuple[int, int]] = []
    unit_parts: list[np.ndarray] = []
    keys: list[bytes] = []
    texts: list[str] = []
    gen = previous.gen
    i = 0
    for doc_row, (doc, chunks, chunk_keys) in enumerate(docs):
        for c, key in zip(chunks, chunk_keys, strict=True):
            rows[i] = (doc_row, c.start, c.end)
            texts.append(doc.text[c.start : c.end])
            keys.append(key)
            spans.extend(c.units)
            unit_ptr[i + 1] = len(spans)
            if key in fresh:
                matrix[i], units = fresh[key]
            else:
                assert gen is not None, "a reused vector needs the previous generation"
                row = previous.rows[key]
                matrix[i] = gen.vectors[row]
                units = gen.unit_vectors[int(gen.unit_ptr[row]) : int(gen.unit_ptr[row + 1])]
            unit_parts.append(np.asarray(units, np.float16))
            i += 1
    params = dense_vectors.choose(n, dim, dense_type)
    index, params = dense_vectors.build(matrix, params, threads)
    return Assembled(
        [d for d, _, _ in docs],
        rows,
        np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 16),
        unit_ptr,
        np.asarray(spans, np.int64).reshape(-1, 2),
        unit_parts,  # written chunk by chunk, never stacked (hundreds of MB for a large file)
        matrix,
        texts,
        index,
        params,
    )


def commit(root: Path, built: Assembled, manifest: dict[str, Any], fingerprint: str, keep: int) -> str:
    """Write, verify and swap in a generation; return its name.

    Raises:
        BuildError: writing or verifying failed; nothing was swapped, the previous generation
            keeps serving.
    """
    try:
        name = store.write_generation(
            root,
            built.documents,
            built.chunks,
            built.keys,
            built.unit_ptr,
            built.units,
            built.unit_vectors,
            built.vectors,
            build_bm25(built.texts),
            manifest,
            built.dense,
        )
    except (OSError, sqlite3.Error, RuntimeError) as exc:  # faiss raises RuntimeError on I/O
        reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[-1]
        if "space" not in reason.lower() and shutil.disk_usage(root).free < 2**20:
            reason = f"no space left on device: {reason}"
        store.clean_leftovers(root)
        raise BuildError(
            f"writing the index to {root} failed ({reason}); the previous index is still live"
        ) from exc
    try:
        store.verify(root / name, fingerprint)
    except QAError as exc:  # never swap in what cannot be read back
        shutil.rmtree(root / name, ignore_errors=True)
        raise BuildError(
            f"the new generation failed verification ({exc}); the previous index is still live"
        ) from exc
    try:
        store.set_live(root, name)
    except OSError as exc:
        store.clean_leftovers(root)
        raise BuildError(
            f"swapping in the new index at {root} failed ({exc.strerror}); the previous index is still live"
        ) from exc
    store.prune(root, keep)
    return name
