"""Reading the corpus safely (issue 14, items 1-3 and the hidden-symlink case of item 9).

- A file swapped after listing (the window is the model load, seconds long) for a symlink to a
  file outside the corpus, for a symlinked folder, for a hard link to an outside file or for a
  FIFO is never read: the build reports it, finishes, and nothing outside the corpus is
  indexed or quoted. A FIFO never blocks the build (which holds the build lock meanwhile).
- 1,500 nested folders: the walk is iterative, the folder past ``QA_MAX_DEPTH`` is reported,
  and ``qa index`` and the web app's documents table work.
- A symlink into a hidden folder is not followed (hidden files are ignored by any name).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import qa
from qa import building
from qa.documents import DEFAULT_MAX_DEPTH, SourceFile, discover, list_files, read_source
from qa.errors import DocumentError
from qa.service import QAService
from tests.conftest import FakeEmbedder

SECRET = "The vault combination is PINEAPPLE-4471."
NOTES = "Otters hold hands while they sleep so they do not drift apart."


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text(NOTES + "\n")
    (root / "sub" / "badgers.txt").write_text("Badgers dig large burrows called setts.\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text(SECRET + "\n")
    (tmp_path / "outside" / "badgers.txt").write_text(SECRET + "\n")
    return root


def _swap_after_listing(monkeypatch: pytest.MonkeyPatch, swap: Callable[[], None]) -> None:
    """Run ``swap`` right after the build has listed the corpus (where the model loads)."""
    real = building.discover

    def discover_then_swap(*args: object, **kwargs: object) -> object:
        listed = real(*args, **kwargs)  # type: ignore[arg-type]
        swap()
        return listed

    monkeypatch.setattr(building, "discover", discover_then_swap)


def _build(corpus: Path, tmp_path: Path) -> tuple[qa.BuildReport, qa.Index]:
    settings = qa.Settings(corpus=corpus, index=tmp_path / "index", min_score=0.3, parse_timeout=30)
    fake = FakeEmbedder()
    report = qa.build_index(settings=settings, embedder=fake)
    return report, qa.Index.load(settings.index, settings, embedder=fake)


def _stored_texts(index: qa.Index) -> str:
    gen = index.generation
    return "\n".join(gen.document(info.row).text for info in gen.documents)


def test_file_swapped_for_an_outside_symlink_after_listing_is_not_read(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def swap() -> None:
        (corpus / "notes.txt").unlink()
        (corpus / "notes.txt").symlink_to(tmp_path / "outside" / "secret.txt")

    _swap_after_listing(monkeypatch, swap)
    report, index = _build(corpus, tmp_path)
    failed = {s.id: s.reason for s in report.failed}
    assert failed["notes.txt"] == "replaced by a symlink since it was listed: not followed"
    assert report.added == ["sub/badgers.txt"]
    assert "PINEAPPLE" not in _stored_texts(index)
    answer = index.ask("What is the vault combination?")
    assert all("PINEAPPLE" not in q.text for q in answer.quotes)


def test_folder_swapped_for_an_outside_symlink_after_listing_is_not_read(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def swap() -> None:
        (corpus / "sub").rename(tmp_path / "sub-moved")
        (corpus / "sub").symlink_to(tmp_path / "outside", target_is_directory=True)

    _swap_after_listing(monkeypatch, swap)
    report, index = _build(corpus, tmp_path)
    failed = {s.id: s.reason for s in report.failed}
    assert failed["sub/badgers.txt"] == "replaced by a symlink since it was listed: not followed"
    assert "PINEAPPLE" not in _stored_texts(index)


def test_file_swapped_for_a_hard_link_after_listing_is_not_read(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a symlink, so only the device and inode recorded at listing tell it apart."""

    def swap() -> None:
        (corpus / "notes.txt").unlink()
        os.link(tmp_path / "outside" / "secret.txt", corpus / "notes.txt")

    _swap_after_listing(monkeypatch, swap)
    report, index = _build(corpus, tmp_path)
    failed = {s.id: s.reason for s in report.failed}
    assert failed["notes.txt"] == "replaced by another file since it was listed: build again"
    assert "PINEAPPLE" not in _stored_texts(index)


def test_file_swapped_for_a_fifo_after_listing_does_not_hang_the_build(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = corpus / "notes.txt"

    def swap() -> None:
        fifo.unlink()
        os.mkfifo(fifo)

    _swap_after_listing(monkeypatch, swap)
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(_build(corpus, tmp_path)), daemon=True)
    worker.start()
    worker.join(60)
    hung = worker.is_alive()
    if hung:  # release a build blocked in open() so the test run can go on
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(30)
    assert not hung, "the build blocked on a FIFO"
    report, _ = result[0]  # type: ignore[misc]
    failed = {s.id: s.reason for s in report.failed}
    assert failed["notes.txt"] == "not a regular file (a FIFO, device or folder): not read"
    assert report.added == ["sub/badgers.txt"]


def test_read_source_refuses_swaps(corpus: Path, tmp_path: Path) -> None:
    found, _ = discover(corpus, 2**20)
    notes = next(f for f in found if f.id == "notes.txt")
    st = os.stat(corpus / "notes.txt")
    assert (notes.dev, notes.ino) == (st.st_dev, st.st_ino)
    assert read_source(notes) == (NOTES + "\n").encode()
    (corpus / "notes.txt").unlink()
    os.mkfifo(corpus / "notes.txt")
    with pytest.raises(DocumentError, match="not a regular file"):
        read_source(notes)
    (corpus / "notes.txt").unlink()
    (corpus / "notes.txt").mkdir()
    with pytest.raises(DocumentError, match="not a regular file"):
        read_source(notes)


def test_followed_symlink_is_read_through_its_target_only(corpus: Path, tmp_path: Path) -> None:
    """A symlink inside the corpus is read by opening its target without following links:
    re-pointing the link after listing changes nothing, replacing the target is refused."""
    (corpus / "alias.txt").symlink_to(corpus / "sub" / "badgers.txt")
    found, _ = discover(corpus, 2**20)
    alias = next(f for f in found if f.id == "alias.txt")
    assert alias.real == "sub/badgers.txt"
    (corpus / "alias.txt").unlink()
    (corpus / "alias.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    assert read_source(alias) == b"Badgers dig large burrows called setts.\n"
    (corpus / "sub" / "badgers.txt").unlink()
    (corpus / "sub" / "badgers.txt").symlink_to(tmp_path / "outside" / "badgers.txt")
    with pytest.raises(DocumentError, match="replaced by a symlink"):
        read_source(alias)


def test_source_file_made_by_hand_is_read_without_following_links(tmp_path: Path) -> None:
    target = tmp_path / "real.txt"
    target.write_text("real")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    assert read_source(SourceFile("real.txt", target, 4)) == b"real"
    with pytest.raises(DocumentError, match="symlink"):
        read_source(SourceFile("link.txt", link, 4))


def test_symlink_into_a_hidden_folder_is_not_followed(corpus: Path) -> None:
    (corpus / ".private").mkdir()
    (corpus / ".private" / "diary.txt").write_text("Hidden diary.")
    (corpus / ".hidden.txt").write_text("Hidden file.")
    (corpus / "diary.txt").symlink_to(corpus / ".private" / "diary.txt")
    (corpus / "shown.txt").symlink_to(".hidden.txt")
    found, skipped = discover(corpus, 2**20)
    assert [f.id for f in found] == ["notes.txt", "sub/badgers.txt"]
    reasons = {s.id: s.reason for s in skipped}
    assert reasons == {
        "diary.txt": "symlink into a hidden file or folder: not followed",
        "shown.txt": "symlink into a hidden file or folder: not followed",
    }


# ------------------------------------------------------------------------------ deep folders


@pytest.fixture
def deep_corpus(tmp_path: Path) -> Iterator[Path]:
    """1,500 nested folders (one letter each) with a file at depth 2 and at the bottom."""
    root = tmp_path / "deep"
    root.mkdir()
    (root / "top.txt").write_text("Herons stand still in shallow water.\n")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1500):  # by descriptor, one level at a time
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.close(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    (root / "d" / "d" / "two.txt").write_text("Egrets nest in colonies.\n")
    yield root
    # pytest's own clean-up (shutil.rmtree) recurses once per level: remove the chain here.
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.unlink("/".join(["d"] * 1500) + "/bottom.txt", dir_fd=top)
        os.unlink("d/d/two.txt", dir_fd=top)
        for depth in range(1500, 0, -1):
            os.rmdir("/".join(["d"] * depth), dir_fd=top)
    finally:
        os.close(top)


def test_deeply_nested_folders_are_walked_without_recursion(deep_corpus: Path, tmp_path: Path) -> None:
    found, skipped = discover(deep_corpus, 2**20)
    assert [f.id for f in found] == ["top.txt", "d/d/two.txt"]
    too_deep = "/".join(["d"] * (DEFAULT_MAX_DEPTH + 1))
    assert [(s.id, s.reason) for s in skipped] == [
        (
            too_deep,
            f"folder nested more than {DEFAULT_MAX_DEPTH} levels deep: not entered "
            "(raise QA_MAX_DEPTH to index it)",
        )
    ]
    found, skipped = discover(deep_corpus, 2**20, max_depth=1)
    assert [f.id for f in found] == ["top.txt"] and skipped[0].id == "d/d"
    assert [rel for rel, _ in list_files(deep_corpus)] == ["top.txt", "d/d/two.txt"]
    # The build and the web app's documents table (what `qa serve` shows first) work too.
    settings = qa.Settings(corpus=deep_corpus, index=tmp_path / "index", min_score=0.3)
    fake = FakeEmbedder()
    report = qa.build_index(settings=settings, embedder=fake)
    assert report.added == ["top.txt", "d/d/two.txt"]
    assert [s.id for s in report.failed] == [too_deep]
    rows = {r.id: r for r in QAService(settings, fake).documents()}
    assert rows["top.txt"].status == "indexed" and rows[too_deep].status == "skipped"


def test_qa_index_cli_on_deep_folders(
    deep_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from qa import cli

    monkeypatch.setattr(building, "build_embedder", lambda *a, **k: FakeEmbedder())
    monkeypatch.setenv("QA_MAX_DEPTH", "3")
    result = CliRunner().invoke(
        cli.main, ["index", "--corpus", str(deep_corpus), "--index", str(tmp_path / "i")]
    )
    assert result.exit_code == 0, result.output
    assert "2 added" in result.output and "failed d/d/d/d: folder nested more than 3 levels" in result.output
