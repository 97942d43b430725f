"""The dense seam (qa/vectors.py): choosing a type by size, building, memory-mapped opening,
exact scores whatever the structure, and QA_DENSE_INDEX end to end with the fake embedder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import qa
from qa import vectors
from qa.errors import ConfigError, IndexCorruptError
from tests.conftest import FakeEmbedder

QUESTION = "Who is OpenAI partnering with to manufacture AI hardware?"


def unit_vectors(n: int, d: int = 64, seed: int = 0) -> np.ndarray:
    """Normalised vectors around 40 topics, as text embeddings cluster (the same topics for
    every seed, so queries made with another seed fall among the vectors)."""
    topics = np.random.default_rng(99).normal(size=(40, d))
    rng = np.random.default_rng(seed)
    x = (topics[rng.integers(0, 40, n)] + 0.6 * rng.normal(size=(n, d))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_choose_by_size() -> None:
    assert vectors.choose(10, 384).type == "flat"
    assert vectors.choose(vectors.FLAT_MAX, 384).type == "flat"
    ivf = vectors.choose(vectors.FLAT_MAX + 1, 384)
    assert ivf.type == "ivf" and ivf.nlist == 512 and ivf.nprobe == vectors.NPROBE_MIN
    assert vectors.choose(1_000_000, 384).nlist == 1024
    pq = vectors.choose(10_000_000, 384)
    assert (pq.type, pq.nlist, pq.pq_bits, pq.refine) == ("ivfpq", 4096, 8, vectors.REFINE)
    assert pq.pq_m == 384 // vectors.PQ_DIMS
    tiny = vectors.choose(13, 1024, "ivfpq")  # forced on a tiny collection: still valid parameters
    assert tiny.nlist == 1 and tiny.nprobe == 1 and 1024 % tiny.pq_m == 0 and 1 <= tiny.pq_bits < 8
    with pytest.raises(ConfigError, match="QA_DENSE_INDEX must be one of"):
        vectors.choose(10, 384, "hnsw")


@pytest.mark.parametrize("kind", ["flat", "ivf", "ivfpq"])
def test_search_returns_exact_cosines(tmp_path: Path, kind: str) -> None:
    x = unit_vectors(5000)
    q = unit_vectors(20, seed=1)
    params = vectors.choose(len(x), x.shape[1], kind)
    index, params = vectors.build(x, params)
    path = None
    if index is not None:
        path = tmp_path / vectors.FILE
        vectors.write(index, path)
        assert params.trained_on == len(vectors.train_sample(len(x), params)) > 0
    np.save(tmp_path / "v.npy", x)
    dense = vectors.DenseIndex(params, np.load(tmp_path / "v.npy", mmap_mode="r"), path)
    hits = 0
    for qi in q:
        rows, scores = dense.search(qi, 10)
        assert len(rows) == 10 and np.all(np.diff(scores) <= 1e-6)  # best first
        assert np.allclose(scores, x[rows] @ qi, atol=1e-5)  # exact cosines, whatever found them
        hits += len(set(rows.tolist()) & set(np.argsort(-(x @ qi))[:10].tolist()))
    assert hits / 200 >= {"flat": 1.0, "ivf": 0.9, "ivfpq": 0.7}[kind], hits / 200
    rows, _ = dense.search(q[0], 10_000)  # more than there are: every row once, no FAISS -1 padding
    assert sorted(rows.tolist()) == list(range(len(x))) or kind != "flat"
    assert rows.min() >= 0 and len(set(rows.tolist())) == len(rows)


def test_faiss_file_is_memory_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    x = unit_vectors(2000)
    index, params = vectors.build(x, vectors.choose(len(x), 64, "ivf"))
    vectors.write(index, tmp_path / vectors.FILE)
    flags: list[int] = []
    real = faiss.read_index
    monkeypatch.setattr(faiss, "read_index", lambda p, f=0: flags.append(f) or real(p, f))
    vectors.DenseIndex(params, x, tmp_path / vectors.FILE)
    assert flags == [faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY]


def test_faiss_file_of_other_vectors_is_refused(tmp_path: Path) -> None:
    x = unit_vectors(2000)
    index, params = vectors.build(x, vectors.choose(len(x), 64, "ivf"))
    vectors.write(index, tmp_path / vectors.FILE)
    with pytest.raises(IndexCorruptError, match=r"1999 of dimension 64 in vectors\.npy"):
        vectors.DenseIndex(params, x[:-1], tmp_path / vectors.FILE)


def test_training_is_seeded(tmp_path: Path) -> None:
    x = unit_vectors(3000)
    params = vectors.choose(len(x), 64, "ivfpq")
    for name in ("a", "b"):
        vectors.write(vectors.build(x, params)[0], tmp_path / name)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


@pytest.mark.parametrize("kind", ["ivf", "ivfpq"])
def test_dense_index_setting_end_to_end(settings: qa.Settings, fake: FakeEmbedder, kind: str) -> None:
    flat = qa.build_index(settings=settings, embedder=fake)
    expected = qa.Index.load(settings.index, settings, embedder=fake).ask(QUESTION)
    s = settings.model_copy(update={"dense_index": kind, "index": settings.index.parent / kind})
    report = qa.build_index(settings=s, embedder=fake)
    assert report.dense == kind and report.chunks == flat.chunks
    manifest = json.loads((s.index / report.generation / "manifest.json").read_text())
    assert manifest["dense"]["type"] == kind and manifest["dense"]["file"] == vectors.FILE
    assert manifest["dense"]["trained_on"] == report.chunks and vectors.FILE in manifest["files"]
    answer = qa.Index.load(s.index, s, embedder=fake).ask(QUESTION)
    assert answer.answer == expected.answer
    assert [(q.start, q.end) for q in answer.quotes] == [(q.start, q.end) for q in expected.quotes]
    # switching back to flat reuses every vector: they live in vectors.npy, not in FAISS
    fake.encoded.clear()
    back = qa.build_index(settings=s.model_copy(update={"dense_index": "flat"}), embedder=fake)
    assert back.dense == "flat" and back.chunks_embedded == 0 and fake.encoded == []


def test_bad_dense_index_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("QA_DENSE_INDEX", "hnsw")
    with pytest.raises(ValidationError, match="dense_index"):
        qa.Settings()
