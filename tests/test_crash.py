"""Kill a rebuild with SIGKILL at every file-system step: the index must always load and answer
from exactly one generation (the previous or the new one), and the next build cleans up."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import qa
from qa import store
from tests.conftest import ROOT, FakeEmbedder


def _run(corpus: Path, index: Path, n: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.helpers.kill_build", str(corpus), str(index), str(n)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow  # ~4 minutes: one child build per write step; in `make test`, not `make unit`
def test_sigkill_at_every_write_step(tmp_path: Path, corpus: Path) -> None:
    settings = qa.Settings(min_score=0.3)
    fake = FakeEmbedder()
    template = tmp_path / "template"
    old = qa.build_index(corpus, template, embedder=fake, settings=settings).generation
    (corpus / "walrus.txt").write_text("Walruses use their tusks to haul out onto sea ice.")
    # a dry run counts the steps of a complete update
    dry = tmp_path / "dry"
    shutil.copytree(template, dry)
    done = _run(corpus, dry, 10**9)
    assert done.returncode == 0, done.stderr
    total = int(done.stdout.split()[1])
    assert total > 20
    seen = set()
    for n in range(1, total + 1):
        index_dir = tmp_path / f"kill-{n}"
        shutil.copytree(template, index_dir)
        result = _run(corpus, index_dir, n)
        assert result.returncode == -9, (n, result.returncode, result.stderr[-2000:])
        index = qa.Index.load(index_dir, settings, embedder=fake)
        name = index.generation.name
        seen.add(name)
        ids = {d.id for d in index.generation.documents}
        if name == old:
            assert ids == {"openai-foxconn-ai-hardware.txt"}, n
        else:
            assert ids == {"openai-foxconn-ai-hardware.txt", "walrus.txt"}, n
            assert "walrus" in index.ask("What do walruses haul out onto?").quotes[0].text.lower()
        assert "Foxconn" in index.ask("OpenAI Foxconn partnership").quotes[0].text
        # the next build completes and leaves no temporary files behind
        again = qa.build_index(corpus, index_dir, embedder=fake, settings=settings)
        assert store.read_pointer(index_dir) == again.generation
        leftovers = [
            p.name for p in index_dir.iterdir() if p.name.startswith(".tmp") or p.name.endswith(".tmp")
        ]
        assert leftovers == [], (n, leftovers)
        shutil.rmtree(index_dir)
    assert seen == {old, "gen-000002"}, seen


@pytest.mark.parametrize("k", [1, 5, 100])
def test_faiss_padding_never_maps_to_a_chunk(tmp_path: Path, fake: FakeEmbedder, k: int) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "one.txt").write_text("Only one short sentence lives here.")
    qa.build_index(corpus, tmp_path / "i", embedder=fake)
    index = qa.Index.load(tmp_path / "i", qa.Settings(min_score=0.3), embedder=fake)
    answer = index.ask("short sentence", k=k)
    assert len(answer.quotes) == 1 and answer.quotes[0].text == "Only one short sentence lives here."
