"""Watch mode: files created, modified, renamed and deleted in a watched corpus end up in the
index after they settle; editors' temp-file-and-rename, bursts of hundreds of files and a
half-written file all end in a correct index; the chat answers from the old generation until
the swap; a build lock held elsewhere is waited out. Every wait is bounded (``wait_for``)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import qa
from qa import store
from qa.building import BuildReport
from qa.service import QAService
from qa.watching import Watcher, corpus_signature, watch_index, watch_service
from tests.conftest import FakeEmbedder
from tests.test_app import GatedEmbedder

QUESTION = "Who is OpenAI partnering with to manufacture AI hardware?"
SETTLE = 0.3


def wait_for(what: str, check: Callable[[], object], timeout: float = 60.0) -> object:
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def indexed(service: QAService) -> dict[str, str]:
    """Document id -> content hash in the live generation."""
    return {d["id"]: d["hash"] for d in service.index().manifest["documents"]}


@pytest.fixture
def watched(settings: qa.Settings, fake: FakeEmbedder) -> Iterator[tuple[QAService, Watcher]]:
    qa.build_index(settings=settings, embedder=fake)
    service = QAService(settings, fake)
    watcher = watch_service(service, settle=SETTLE).start()
    wait_for("the catch-up rebuild", lambda: watcher.status().rebuilds >= 1)
    try:
        yield service, watcher
    finally:
        watcher.stop()


def test_create_modify_rename_delete(watched: tuple[QAService, Watcher]) -> None:
    service, watcher = watched
    corpus = service.corpus
    (corpus / "otters.md").write_text("# Otters\n\nOtters hold hands while they sleep.\n")
    wait_for("otters.md indexed", lambda: watcher.status().added == ("otters.md",))
    assert "otters.md" in indexed(service)
    assert "1 added (otters.md)" in watcher.status().describe()
    before = indexed(service)["otters.md"]

    (corpus / "otters.md").write_text("# Otters\n\nSea otters use rocks to open shellfish.\n")
    wait_for("the new otters.md", lambda: watcher.status().changed == ("otters.md",))
    assert indexed(service)["otters.md"] != before
    answer = service.ask("What do sea otters use rocks for?")
    assert answer.quotes[0].doc == "otters.md" and "rocks" in answer.quotes[0].text

    os.rename(corpus / "otters.md", corpus / "sea-otters.md")
    wait_for("the rename", lambda: watcher.status().removed == ("otters.md",))
    assert watcher.status().added == ("sea-otters.md",)
    assert "sea-otters.md" in indexed(service) and "otters.md" not in indexed(service)

    (corpus / "sea-otters.md").unlink()
    wait_for("the delete", lambda: watcher.status().removed == ("sea-otters.md",))
    assert set(indexed(service)) == {"openai-foxconn-ai-hardware.txt"}


def test_editor_writes_a_temp_file_and_renames_it_over(watched: tuple[QAService, Watcher]) -> None:
    service, watcher = watched
    corpus = service.corpus
    target = corpus / "openai-foxconn-ai-hardware.txt"
    text = target.read_text() + "\nThe plant in Ohio will also build robots for herons.\n"
    # vim/emacs style: a backup, a hidden swap/temp file, then an atomic rename over the original
    (corpus / "openai-foxconn-ai-hardware.txt~").write_bytes(target.read_bytes())
    tmp = corpus / ".openai-foxconn-ai-hardware.txt.tmp1234"
    tmp.write_text(text)
    os.replace(tmp, target)
    (corpus / "openai-foxconn-ai-hardware.txt~").unlink()
    wait_for("the edit", lambda: watcher.status().changed == ("openai-foxconn-ai-hardware.txt",))
    wait_for("an idle watcher", lambda: watcher.status().state == "idle")
    docs = service.index().manifest
    assert [d["id"] for d in docs["documents"]] == ["openai-foxconn-ai-hardware.txt"]
    assert all("~" not in s["id"] and ".tmp" not in s["id"] for s in docs["skipped"])
    assert "robots for herons" in service.ask("What will the plant in Ohio build for herons?").quotes[0].text


def test_a_burst_of_hundreds_of_files_is_debounced(watched: tuple[QAService, Watcher]) -> None:
    service, watcher = watched
    rebuilds = watcher.status().rebuilds
    folder = service.corpus / "burst"
    folder.mkdir()
    for i in range(300):
        (folder / f"note-{i:03d}.txt").write_text(f"Note {i}: the beacon number {i} is lit at dusk.")
    wait_for("300 notes indexed", lambda: sum(d.startswith("burst/") for d in indexed(service)) == 300, 180)

    def settled() -> bool:
        st = watcher.status()
        return st.state == "idle" and st.rebuilds > rebuilds

    wait_for("the watcher idle", settled)
    done = watcher.status().rebuilds - rebuilds
    assert 1 <= done <= 5, f"{done} rebuilds for one burst"
    assert service.ask("Which beacon number 217 is lit?").quotes[0].doc == "burst/note-217.txt"


def test_a_half_written_file_ends_complete(watched: tuple[QAService, Watcher]) -> None:
    service, _ = watched
    path = service.corpus / "report.md"
    first = "# Report\n\nThe first half says the quarry opened in spring.\n"
    second = "The second half says the quarry closed in autumn after the flood.\n"
    with open(path, "w") as fh:
        fh.write(first)
        fh.flush()
        wait_for("the half-written file indexed", lambda: "report.md" in indexed(service))
        fh.write(second)
    full = qa.documents.file_hash((first + second).encode())
    wait_for("the complete file indexed", lambda: indexed(service).get("report.md") == full)
    assert "autumn" in service.ask("When did the quarry close after the flood?").quotes[0].text


def test_chat_answers_from_the_old_generation_until_the_swap(settings: qa.Settings) -> None:
    emb = GatedEmbedder()
    emb.gate.set()
    qa.build_index(settings=settings, embedder=emb)
    service = QAService(settings, emb)
    watcher = watch_service(service, settle=SETTLE).start()
    try:
        wait_for("the catch-up rebuild", lambda: watcher.status().rebuilds >= 1)
        old = service.ask(QUESTION).generation
        emb.gate.clear()
        emb.waiting.clear()
        (settings.corpus / "zebra.md").write_text("# Zebras\n\nZebras have black and white stripes.\n")
        assert emb.waiting.wait(60), "the watcher's rebuild did not start embedding"
        assert watcher.status().state == "rebuilding"
        during = service.ask(QUESTION)
        assert during.found and during.generation == old
        assert "Updating the index in the background" in watcher.status().describe("embedding 0/1 chunks")
        emb.gate.set()
        wait_for("the swap", lambda: service.ask(QUESTION).generation != old)
        assert service.ask("What stripes do zebras have?").quotes[0].doc == "zebra.md"
    finally:
        emb.gate.set()
        watcher.stop()


def test_a_build_lock_held_elsewhere_is_waited_out(settings: qa.Settings, fake: FakeEmbedder) -> None:
    qa.build_index(settings=settings, embedder=fake)
    service = QAService(settings, fake)
    built: list[BuildReport] = []

    def rebuild() -> BuildReport:
        report = qa.build_index(settings=settings, embedder=fake)
        built.append(report)
        return report

    watcher = Watcher(settings.corpus, rebuild, settle=SETTLE, retry=0.2, catch_up=False).start()
    try:
        with store.build_lock(settings.index):  # e.g. `qa index` in another terminal
            (settings.corpus / "heron.txt").write_text("Herons stand still in shallow water.")
            wait_for("the watcher waiting for the lock", lambda: watcher.status().state == "waiting")
            assert "another build" in watcher.status().describe()
        wait_for("heron.txt indexed", lambda: "heron.txt" in indexed(service))
        assert built[-1].added == ["heron.txt"]
    finally:
        watcher.stop()


def test_nothing_left_changed_means_no_rebuild(watched: tuple[QAService, Watcher]) -> None:
    service, watcher = watched
    status = watcher.status()
    gen = service.index().generation.name
    tmp = service.corpus / "scratch.txt"
    tmp.write_text("a file that comes and goes")
    tmp.unlink()
    wait_for("the burst handled", lambda: watcher.status().bursts > status.bursts)
    assert watcher.status().rebuilds == status.rebuilds
    assert store.read_pointer(service.settings.index) == gen


def test_index_kept_inside_the_corpus_does_not_trigger_rebuilds(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    watcher = Watcher(corpus, lambda: None, ignore=[corpus / "idx"], catch_up=False)
    root = corpus.resolve()
    assert watcher._keep(None, str(root / "a.txt"))
    assert not watcher._keep(None, str(root / "idx" / "gen-000001" / "manifest.json"))
    assert not watcher._keep(None, str(root / ".hidden" / "a.txt"))
    assert not watcher._keep(None, str(root / ".a.txt.swp"))
    assert corpus_signature(corpus) == frozenset()


def test_qa_index_watch_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``qa index --watch``'s loop: a first build, then one per settled change, until stopped."""
    fake = FakeEmbedder()
    monkeypatch.setattr("qa.building.build_embedder", lambda settings, threads=None: fake)
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Herons stand still in shallow water.")
    settings = qa.Settings(corpus=corpus, index=tmp_path / "i", watch_settle=SETTLE)
    reports: list[BuildReport] = []
    said: list[str] = []
    stop = threading.Event()
    loop = threading.Thread(
        target=watch_index,
        kwargs={
            "settings": settings,
            "full": False,
            "progress": lambda *a: None,
            "emit": reports.append,
            "say": said.append,
            "stop": stop,
        },
    )
    loop.start()
    try:
        wait_for("the first build", lambda: reports)
        assert reports[0].added == ["a.txt"]
        wait_for("watching", lambda: any(s.startswith("watching") for s in said))
        (corpus / "b.txt").write_text("Badgers dig setts.")
        wait_for("the rebuild for b.txt", lambda: len(reports) >= 2 and reports[-1].added == ["b.txt"])
    finally:
        stop.set()
        loop.join(30)
    assert not loop.is_alive()


@pytest.mark.model
def test_qa_index_watch_command(tmp_path: Path) -> None:
    """The real command with the real model: a change is indexed, Ctrl+C stops it cleanly."""
    import signal

    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Herons stand still in shallow water.")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env["QA_WATCH_SETTLE"] = "0.5"
    index = tmp_path / "i"
    proc = subprocess.Popen(
        [sys.executable, "-m", "qa.cli", "index", "--watch", "--corpus", str(corpus), "--index", str(index)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # Ctrl+C as in a terminal, even when this run inherited SIGINT ignored (a shell starts
        # background jobs so: `make test &` would otherwise fail here)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: queue.Queue[str] = queue.Queue()
    for stream in (proc.stdout, proc.stderr):
        threading.Thread(target=lambda s=stream: [lines.put(line) for line in s], daemon=True).start()
    seen: list[str] = []

    def saw(text: str) -> bool:
        while not lines.empty():
            seen.append(lines.get())
        return any(text in line for line in seen)

    try:
        wait_for("the first build", lambda: saw("watching "), 300)
        assert saw("1 added")
        (corpus / "b.txt").write_text("Badgers dig setts at the edge of woods.")
        wait_for("the rebuild", lambda: saw("1 added, 0 changed, 0 removed, 1 unchanged"), 120)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        wait_for("the goodbye", lambda: saw("stopped watching"), 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
