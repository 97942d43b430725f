"""Deletes go to a trash inside the index folder: nothing is lost by one click, a deleted
document is restorable until its time runs out (or the next rebuild with trash_hours = 0),
restore never overwrites a file, and builds never see the trash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import qa
from qa import trash
from qa.service import DeleteRefusedError, QAService
from qa.trash import TrashError
from tests.conftest import FakeEmbedder

DOC = "openai-foxconn-ai-hardware.txt"


@pytest.fixture
def built(settings: qa.Settings, fake: FakeEmbedder) -> QAService:
    qa.build_index(settings=settings, embedder=fake)
    return QAService(settings, fake)


def test_delete_moves_to_trash_and_restore_brings_it_back(built: QAService) -> None:
    original = (built.corpus / DOC).read_bytes()
    entry = built.delete(DOC)
    assert not (built.corpus / DOC).exists()
    assert entry.doc_id == DOC and entry.size == len(original)
    assert [e.key for e in built.trash()] == [entry.key]
    stored = built.settings.index / ".trash" / entry.key
    assert (stored / "file").read_bytes() == original
    assert json.loads((stored / "entry.json").read_text())["doc_id"] == DOC
    assert built.restore(entry.key) == DOC
    assert (built.corpus / DOC).read_bytes() == original
    assert built.trash() == [] and not stored.exists()


def test_deleted_document_leaves_the_index_at_rebuild_and_comes_back_after_restore(built: QAService) -> None:
    entry = built.delete(DOC)
    built.start_rebuild()
    status = built.wait_build(60)
    assert status.report is not None and status.report.removed == [DOC]
    assert [e.doc_id for e in built.trash()] == [DOC], "a rebuild keeps the trash (trash_hours > 0)"
    built.restore(entry.key)
    built.start_rebuild()
    again = built.wait_build(60)
    assert again.report is not None and again.report.added == [DOC]
    assert built.ask("Who is OpenAI partnering with to manufacture AI hardware?").found


def test_restore_never_overwrites_and_refuses_unknown_keys(built: QAService) -> None:
    entry = built.delete(DOC)
    (built.corpus / DOC).write_text("a new file of the same name")
    with pytest.raises(TrashError, match="exists in the corpus again"):
        built.restore(entry.key)
    assert (built.corpus / DOC).read_text() == "a new file of the same name"
    for bad in ["../../etc", "", "1764523384123-zzzzzzzz", "0000000000001-00000000"]:
        with pytest.raises(TrashError):
            built.restore(bad)


def test_delete_in_a_subfolder_restores_into_it(built: QAService) -> None:
    sub = built.corpus / "notes" / "2026"
    sub.mkdir(parents=True)
    (sub / "otters.md").write_text("# Otters\n\nOtters hold hands while sleeping.\n")
    entry = built.delete("notes/2026/otters.md")
    (sub / "otters.md").parent.rmdir()  # the folder may be gone by the time of the restore
    assert built.restore(entry.key) == "notes/2026/otters.md"
    assert (sub / "otters.md").read_text().startswith("# Otters")


def test_nothing_selected_or_outside_is_refused(built: QAService, tmp_path: Path) -> None:
    for bad in ["", "../x.txt", str(tmp_path / "x.txt"), "missing.txt"]:
        with pytest.raises(DeleteRefusedError):
            built.delete(bad)
    assert not (built.settings.index / ".trash").exists()


def test_expired_entries_are_purged_and_zero_hours_means_until_the_next_rebuild(
    settings: qa.Settings, fake: FakeEmbedder
) -> None:
    qa.build_index(settings=settings, embedder=fake)
    service = QAService(settings, fake)
    entry = service.delete(DOC)
    assert trash.purge(settings.index, 24, now=entry.deleted + 23 * 3600) == []
    assert [e.key for e in trash.purge(settings.index, 24, now=entry.deleted + 25 * 3600)] == [entry.key]
    assert service.trash() == []

    (settings.corpus / "b.txt").write_text("Badgers dig setts.")
    zero = QAService(settings.model_copy(update={"trash_hours": 0}), fake)
    kept = zero.delete("b.txt")
    assert [e.key for e in zero.trash()] == [kept.key], "listing does not empty it"
    zero.start_rebuild()
    assert zero.wait_build(60).error == ""
    assert zero.trash() == []


def test_builds_never_see_the_trash_even_with_the_index_inside_the_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Herons stand still in shallow water.")
    (corpus / "b.txt").write_text("Otters float on their backs.")
    settings = qa.Settings(corpus=corpus, index=corpus / "idx", min_score=0.3)
    fake = FakeEmbedder()
    qa.build_index(settings=settings, embedder=fake)
    service = QAService(settings, fake)
    service.delete("b.txt")
    report = qa.build_index(settings=settings, embedder=fake)
    assert report.removed == ["b.txt"]
    assert not any(".trash" in s.id for s in report.failed)
    assert all(".trash" not in d for d in report.added + report.unchanged)
