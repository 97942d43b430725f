"""The index store: verification, fallback to the previous generation, refusals, the lock."""

from __future__ import annotations

import builtins
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import qa
from qa import store
from qa.errors import BuildLockedError, IndexCorruptError, ModelMismatchError
from tests.conftest import FakeEmbedder


def two_generations(settings: qa.Settings, fake: FakeEmbedder) -> tuple[str, str]:
    first = qa.build_index(settings=settings, embedder=fake).generation
    (settings.corpus / "extra.txt").write_text("Walruses live in the Arctic and eat clams.")
    second = qa.build_index(settings=settings, embedder=fake).generation
    return first, second


FILES = [
    "manifest.json",
    "documents.sqlite",
    "chunks.npy",
    "chunk_keys.npy",
    "unit_ptr.npy",
    "units.npy",
    "unit_vectors.npy",
    "vectors.npy",
    "bm25/params.index.json",
    "bm25/data.csc.index.npy",
    "bm25/vocab.index.json",
]


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "bitflip":
        i = len(data) // 2
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :])
    else:
        cut = {"zero": 0, "eight": 8, "half": len(data) // 2, "minus1": len(data) - 1}[how]
        path.write_bytes(data[:cut])


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("how", ["zero", "eight", "half", "minus1", "bitflip"])
def test_damaged_file_falls_back(settings: qa.Settings, fake: FakeEmbedder, name: str, how: str) -> None:
    first, second = two_generations(settings, fake)
    _damage(settings.index / second / name, how)
    index = qa.Index.load(settings.index, settings, embedder=fake)
    assert index.generation.name == first
    assert any(second in w and (name.split("/")[-1] in w or "manifest" in w) for w in index.warnings), (
        index.warnings
    )
    assert "Foxconn" in index.ask("OpenAI Foxconn partnership").quotes[0].text


@pytest.mark.parametrize("how", ["half", "bitflip"])
def test_checksum_checked_before_faiss_reads(
    settings: qa.Settings, fake: FakeEmbedder, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    settings = settings.model_copy(update={"dense_index": "ivf"})
    first, second = two_generations(settings, fake)
    _damage(settings.index / second / "dense.faiss", how)
    import faiss

    read: list[str] = []
    real = faiss.read_index
    monkeypatch.setattr(faiss, "read_index", lambda p, *a: read.append(p) or real(p, *a))
    index = qa.Index.load(settings.index, settings, embedder=fake)
    assert index.generation.name == first and index.generation.dense.params.type == "ivf"
    assert read and all(second not in p for p in read)
    assert any("dense.faiss" in w for w in index.warnings), index.warnings


def test_all_generations_broken(settings: qa.Settings, fake: FakeEmbedder) -> None:
    first, second = two_generations(settings, fake)
    for gen in (first, second):
        _damage(settings.index / gen / "chunks.npy", "half")
    with pytest.raises(IndexCorruptError, match=r"chunks\.npy"):
        qa.Index.load(settings.index, settings, embedder=fake)


def _rewrite_manifest(gen_dir: Path, change: dict) -> None:
    body = json.loads((gen_dir / "manifest.json").read_text())
    for dotted, value in change.items():
        target = body
        *path, last = dotted.split(".")
        for p in path:
            target = target[p]
        target[last] = value
    body["checksum"] = store._manifest_checksum(body)
    (gen_dir / "manifest.json").write_text(json.dumps(body))


def test_count_mismatch_refused(settings: qa.Settings, fake: FakeEmbedder) -> None:
    gen = qa.build_index(settings=settings, embedder=fake).generation
    _rewrite_manifest(settings.index / gen, {"counts.chunks": 999})
    with pytest.raises(IndexCorruptError, match="999 chunks in the manifest"):
        qa.Index.load(settings.index, settings, embedder=fake)


def test_manifest_from_another_generation_refused(settings: qa.Settings, fake: FakeEmbedder) -> None:
    first, second = two_generations(settings, fake)
    (settings.index / second / "manifest.json").write_bytes(
        (settings.index / first / "manifest.json").read_bytes()
    )
    index = qa.Index.load(settings.index, settings, embedder=fake)
    assert index.generation.name == first
    assert any("belongs to generation" in w for w in index.warnings)


def test_other_model_refused(settings: qa.Settings, fake: FakeEmbedder) -> None:
    qa.build_index(settings=settings, embedder=fake)
    with pytest.raises(ModelMismatchError, match="was built with model 'fake-bow-1024'"):
        qa.Index.load(settings.index, settings, embedder=FakeEmbedder(fingerprint="other"))


def test_newer_format_refused(settings: qa.Settings, fake: FakeEmbedder) -> None:
    gen = qa.build_index(settings=settings, embedder=fake).generation
    _rewrite_manifest(settings.index / gen, {"format_version": store.FORMAT_VERSION + 1})
    with pytest.raises(IndexCorruptError, match="qa index --full"):
        qa.Index.load(settings.index, settings, embedder=fake)


def test_planted_files_never_opened(
    settings: qa.Settings, fake: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = qa.build_index(settings=settings, embedder=fake).generation
    for name in ("evil.pkl", "bm25/evil.pkl", "vectors.pickle"):
        (settings.index / gen / name).write_bytes(b"\x80\x04cos\nsystem\n.")
    opened: list[str] = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    index = qa.Index.load(settings.index, settings, embedder=fake)
    assert index.ask("Foxconn manufacturing").quotes
    assert not [p for p in opened if "pkl" in p or "pickle" in p]


def test_pointer_missing_uses_newest_good(settings: qa.Settings, fake: FakeEmbedder) -> None:
    _, second = two_generations(settings, fake)
    (settings.index / store.POINTER).unlink()
    index = qa.Index.load(settings.index, settings, embedder=fake)
    assert index.generation.name == second and index.warnings


def test_second_build_refused_while_locked(settings: qa.Settings, fake: FakeEmbedder) -> None:
    with store.build_lock(settings.index), pytest.raises(BuildLockedError, match="another build"):
        qa.build_index(settings=settings, embedder=fake)


def test_stale_lock_of_killed_process_recovered(settings: qa.Settings, fake: FakeEmbedder) -> None:
    code = (
        "import sys, time; from pathlib import Path; from qa import store\n"
        "with store.build_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(settings.index)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(BuildLockedError):
            qa.build_index(settings=settings, embedder=fake)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    assert (settings.index / store.LOCK).exists()
    assert qa.build_index(settings=settings, embedder=fake).chunks > 0


def test_leftover_temp_folders_cleaned(settings: qa.Settings, fake: FakeEmbedder) -> None:
    qa.build_index(settings=settings, embedder=fake)
    (settings.index / ".tmp-gen-000009-123").mkdir()
    (settings.index / ".CURRENT.123.tmp").write_text("gen-000009")
    qa.build_index(settings=settings, embedder=fake)
    assert not [p for p in settings.index.iterdir() if p.name.startswith(".tmp") or p.name.endswith(".tmp")]
