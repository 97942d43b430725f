"""A full disk or a read-only index folder during a build: a clear error, the live generation
untouched. Uses a real tmpfs (needs root, as in CI); skipped with the reason otherwise."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import qa
from qa.errors import BuildError
from tests.conftest import FakeEmbedder


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "fs"
    mount.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if ok.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {ok.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _live_answers(index_dir: Path, fake: FakeEmbedder, generation: str) -> None:
    index = qa.Index.load(index_dir, qa.Settings(min_score=0.3), embedder=fake)
    assert index.generation.name == generation
    assert "Foxconn" in index.ask("OpenAI Foxconn partnership").quotes[0].text


def test_disk_full_keeps_live_generation(small_fs: Path, corpus: Path, fake: FakeEmbedder) -> None:
    index_dir = small_fs / "index"
    first = qa.build_index(corpus, index_dir, embedder=fake).generation
    # a document whose chunks, vectors and text cannot fit in what is left of 2 MiB
    words = " ".join(f"word{i} appears in sentence number {i}." for i in range(40_000))
    (corpus / "huge.txt").write_text(words)
    with pytest.raises(BuildError, match=r"failed \(([Nn]o space left on device|database or disk is full)"):
        qa.build_index(corpus, index_dir, embedder=fake)
    _live_answers(index_dir, fake, first)
    assert not [p for p in index_dir.iterdir() if p.name.startswith(".tmp")]
    # after freeing space the next build succeeds
    (corpus / "huge.txt").unlink()
    (corpus / "small.txt").write_text("Walruses haul out onto sea ice.")
    assert qa.build_index(corpus, index_dir, embedder=fake).added == ["small.txt"]


def test_read_only_index_folder(small_fs: Path, corpus: Path, fake: FakeEmbedder) -> None:
    index_dir = small_fs / "index"
    first = qa.build_index(corpus, index_dir, embedder=fake).generation
    (corpus / "new.txt").write_text("Otters hold hands while they sleep.")
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    with pytest.raises(BuildError, match="Read-only file system"):
        qa.build_index(corpus, index_dir, embedder=fake)
    _live_answers(index_dir, fake, first)
