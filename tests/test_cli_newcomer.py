"""The command line as a newcomer meets it: a port already in use is one line, `qa index`
shows its progress (plain lines when stderr is not a terminal, a live bar when it is, nothing
with --quiet), and an empty corpus is said to be empty, with its path."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import qa
from qa.cli import main
from qa.progress import ProgressTracker, cli_progress, human_seconds
from tests.conftest import FakeEmbedder


@pytest.fixture
def fake_builds(monkeypatch: pytest.MonkeyPatch) -> FakeEmbedder:
    """`qa index` builds with the fake embedder (the CLI has no other way to take one)."""
    fake = FakeEmbedder()
    monkeypatch.setattr("qa.building.build_embedder", lambda settings, threads=None: fake)
    return fake


def test_port_in_use_is_one_line_and_status_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
        done = subprocess.run(
            [
                *[sys.executable, "-m", "qa.cli", "serve", "--port", str(port)],
                *["--corpus", str(tmp_path / "c"), "--index", str(tmp_path / "i")],
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr == f"error: port {port} is in use; pass --port N\n"
    assert done.stdout == "" and "Serving on" not in done.stderr
    assert not (tmp_path / "i").exists(), "nothing was built before the port was checked"


def test_port_taken_between_check_and_launch_is_the_same_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_builds: FakeEmbedder
) -> None:
    """The race: the check passes, then Gradio cannot bind. Still one line, never 'Serving on'."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Herons nest in tall trees.")
    monkeypatch.setattr("qa.serving.check_port", lambda host, port: None)
    monkeypatch.setattr("qa.embedding.get_embedder", lambda *a, **k: fake_builds)
    monkeypatch.setattr("qa.embedding.get_query_embedder", lambda *a, **k: fake_builds)
    monkeypatch.setattr("qa.app.get_query_embedder", lambda *a, **k: fake_builds)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        res = CliRunner().invoke(
            main, ["serve", "--port", str(port), "--corpus", str(corpus), "--index", str(tmp_path / "i")]
        )
    assert res.exit_code == 1, res.output
    assert res.stderr.strip().splitlines()[-1] == f"error: port {port} is in use; pass --port N"
    assert "Serving on" not in res.output and "Traceback" not in res.output


def test_index_prints_progress_lines_when_not_a_terminal(tmp_path: Path, fake_builds: FakeEmbedder) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"d{i}.md").write_text(f"# Doc {i}\n\nOtters number {i} swim in the river.\n")
    res = CliRunner().invoke(main, ["index", "--corpus", str(corpus), "--index", str(tmp_path / "i")])
    assert res.exit_code == 0, res.output
    lines = res.stderr.splitlines()
    assert "loading the embedding model" in lines
    assert "parsing 0/3 files (0%)" in lines and "parsing 3/3 files (100%)" in lines
    assert any(line.startswith("embedding 0/3 chunks (0%)") for line in lines)
    assert "embedding 3/3 chunks (100%)" in lines and "writing the index" in lines
    assert "\r" not in res.stderr  # plain lines for a log, no bar redrawing
    assert res.stdout.startswith("generation gen-000001: 3 added")
    quiet = CliRunner().invoke(
        main, ["index", "--quiet", "--corpus", str(corpus), "--index", str(tmp_path / "i")]
    )
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert quiet.stdout.startswith(
        "generation gen-000001 (nothing changed: still live, no new generation): 0 added, 0 changed, "
        "0 removed, 3 unchanged"
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_a_live_bar_with_time_left() -> None:
    out = _Terminal()
    progress = cli_progress(out)
    progress("loading model", 0, 1)
    for done in range(0, 101, 20):
        progress("embedding", done, 100)
    text = out.getvalue()
    assert text.startswith("loading the embedding model…\n")
    assert "\r" in text and "embedding" in text and "100/100" in text
    assert "chunks" in text


def test_plain_lines_are_rate_limited_but_keep_first_and_last() -> None:
    out = io.StringIO()
    progress = cli_progress(out, interval=3600)
    for done in range(0, 1001):
        progress("embedding", done, 1000)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("embedding 0/1000 chunks (0%)")
    assert lines[-1] == "embedding 1000/1000 chunks (100%)"
    assert len(lines) == 2


def test_tracker_estimates_time_left_from_the_stage_rate() -> None:
    now = [100.0]
    t = ProgressTracker(clock=lambda: now[0])
    t.update("embedding", 0, 155)
    assert t.describe() == "embedding 0/155 chunks (0%), estimating the time left"
    now[0] = 108.0
    t.update("embedding", 64, 155)
    assert t.eta() == pytest.approx((155 - 64) / 8)
    assert t.describe() == "embedding 64/155 chunks (41%), about 11 s left"
    t.update("writing", 0, 1)
    assert t.describe() == "writing the index" and t.eta() is None
    assert human_seconds(125) == "2 min 05 s" and human_seconds(3720) == "1 h 02 min"


@pytest.mark.parametrize("content", [None, "notes.exe"])
def test_empty_corpus_says_so_and_where(tmp_path: Path, content: str | None) -> None:
    corpus = tmp_path / "empty"
    corpus.mkdir()
    if content:
        (corpus / content).write_bytes(b"MZ")
    report = qa.build_index(corpus, tmp_path / "i", embedder=FakeEmbedder())
    words = "has no supported documents" if content else "is empty"
    assert f"note corpus: the corpus folder {corpus.resolve()} {words}" in report.summary()
    full = qa.build_index(tmp_path / "empty", tmp_path / "i", embedder=FakeEmbedder())
    assert any(n.id == "corpus" for n in full.notes)


@pytest.mark.model
def test_real_model_reports_progress_per_batch() -> None:
    """One progress call per model batch (it was one per 4 batches: 18 s at 0% on 155 chunks)."""
    from qa.embedding import get_embedder

    emb = get_embedder(batch_size=8)
    texts = [f"Sentence number {i} about herons and otters." for i in range(20)]
    calls: list[tuple[int, int]] = []
    spans = [[(0, len(t))] for t in texts]
    vectors, units = emb.encode_chunks(texts, spans, lambda d, n: calls.append((d, n)))
    assert calls == [(8, 20), (16, 20), (20, 20)]
    assert vectors.shape == (20, emb.dimension) and len(units) == 20


def test_no_repeated_lines_no_empty_bars_and_sizeless_ptys_get_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    progress = cli_progress(out)
    for call in [("embedding", 0, 0), ("embedding", 0, 0), ("writing", 0, 1), ("writing", 1, 1)]:
        progress(*call)
    assert out.getvalue() == "embedding 0/0 chunks\nwriting the index\n"
    term = _Terminal()
    bars = cli_progress(term)
    bars("embedding", 0, 0)
    bars("embedding", 0, 0)
    assert term.getvalue() == "embedding: 0 chunks\n"
    monkeypatch.setattr("qa.progress._columns", lambda out: 0)  # `script` without a size: 0 columns
    sizeless = _Terminal()
    cli_progress(sizeless)("parsing", 0, 2)
    assert sizeless.getvalue() == "parsing 0/2 files (0%)\n"
