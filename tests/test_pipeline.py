"""End-to-end with the fake embedder: build, ask, incremental updates, save/load round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import qa
import qa.preparing
from qa import store
from qa.errors import CorpusError, IndexNotFoundError, InvalidQuestionError
from tests.conftest import FakeEmbedder

QUESTION = "Who is OpenAI partnering with to manufacture AI hardware?"


def build(settings: qa.Settings, fake: FakeEmbedder, **kw: object) -> qa.BuildReport:
    return qa.build_index(settings=settings, embedder=fake, **kw)


def test_build_and_ask_default_corpus(settings: qa.Settings, fake: FakeEmbedder) -> None:
    report = build(settings, fake)
    assert report.added == ["openai-foxconn-ai-hardware.txt"]
    assert report.chunks > 1 and report.chunks_embedded == report.chunks
    index = qa.Index.load(settings.index, settings, embedder=fake)
    answer = index.ask(QUESTION)
    assert answer.found
    assert any("Foxconn" in q.text for q in answer.quotes)
    doc = index.generation.document(0)
    for q in answer.quotes:
        assert doc.text[q.start : q.end] == q.text
        assert q.start <= q.highlight[0] < q.highlight[1] <= q.end
    assert answer.answer == answer.quotes[0].highlight_text


def test_incremental_add_modify_delete(settings: qa.Settings, fake: FakeEmbedder) -> None:
    first = build(settings, fake)
    # unchanged corpus: nothing embedded again
    fake.encoded.clear()
    again = build(settings, fake)
    assert again.unchanged == ["openai-foxconn-ai-hardware.txt"]
    assert again.chunks_embedded == 0 and fake.encoded == []
    assert again.chunks == first.chunks == again.chunks_reused
    # add one document: only its chunks are embedded
    (settings.corpus / "new.md").write_text("# Zebras\n\nZebras have black and white stripes.\n")
    added = build(settings, fake)
    assert added.added == ["new.md"] and added.chunks_embedded == 1
    assert fake.encoded == ["# Zebras\n\nZebras have black and white stripes."]
    # modify a sentence at the end of the seed article: only chunks whose text changed
    path = settings.corpus / "openai-foxconn-ai-hardware.txt"
    path.write_text(path.read_text() + " A closing sentence about penguins.")
    fake.encoded.clear()
    changed = build(settings, fake)
    assert changed.changed == ["openai-foxconn-ai-hardware.txt"]
    assert 1 <= changed.chunks_embedded < changed.chunks
    assert all("penguins" in t for t in fake.encoded)
    # delete
    (settings.corpus / "new.md").unlink()
    removed = build(settings, fake)
    assert removed.removed == ["new.md"] and removed.chunks_embedded == 0
    # --full re-embeds everything
    fake.encoded.clear()
    full = build(settings, fake, full=True)
    assert full.chunks_embedded == full.chunks and full.chunks_reused == 0


def test_a_rebuild_with_nothing_changed_keeps_the_live_generation(
    settings: qa.Settings, fake: FakeEmbedder
) -> None:
    (settings.corpus / "notes.xyz").write_text("an unsupported file, skipped with a reason")
    first = build(settings, fake)
    assert first.committed and first.generation == "gen-000001"
    # same files (one only touched), same settings: no new generation, nothing to reload
    (settings.corpus / "openai-foxconn-ai-hardware.txt").touch()
    index = qa.Index.load(settings.index, settings, embedder=fake)
    again = build(settings, fake)
    assert not again.committed and again.generation == "gen-000001"
    assert again.unchanged == ["openai-foxconn-ai-hardware.txt"] and again.chunks == first.chunks
    assert [f.id for f in again.failed] == ["notes.xyz"]  # still reported
    assert "nothing changed" in again.summary().splitlines()[0]
    assert store.generation_names(settings.index) == ["gen-000001"] and not index.reload()
    # anything a new generation would record differently makes one
    (settings.corpus / "notes.xyz").unlink()  # the skipped list changes
    assert build(settings, fake).generation == "gen-000002"
    ivf = settings.model_copy(update={"dense_index": "ivf"})  # another dense structure
    assert build(ivf, fake).generation == "gen-000003"
    assert build(settings, fake, full=True).generation == "gen-000004"  # asked for in full
    path = settings.corpus / "openai-foxconn-ai-hardware.txt"
    path.write_text(path.read_text() + " One more sentence.")
    assert build(settings, fake).generation == "gen-000005"


def test_round_trip_manifest_and_files(settings: qa.Settings, fake: FakeEmbedder) -> None:
    report = build(settings, fake)
    root = settings.index
    assert store.read_pointer(root) == report.generation
    manifest = json.loads((root / report.generation / "manifest.json").read_text())
    assert manifest["format_version"] == store.FORMAT_VERSION
    assert manifest["model"]["name"] == "fake-bow-1024" and manifest["model"]["dimension"] == 1024
    assert manifest["counts"]["chunks"] == report.chunks
    assert set(manifest["files"]) >= {"documents.sqlite", "chunks.npy", "vectors.npy", "units.npy"}
    assert manifest["dense"]["type"] == "flat" and "dense.faiss" not in manifest["files"]
    assert not any(name.endswith((".pkl", ".pickle")) for name in manifest["files"])
    index = qa.Index.load(root, settings, embedder=fake)
    gen = index.generation
    assert gen.dense.ntotal == len(gen.vectors) == len(gen.chunks) == report.chunks
    doc = gen.document(0)
    assert doc.text == (settings.corpus / doc.id).read_text()


def test_generations_pruned_and_reload(settings: qa.Settings, fake: FakeEmbedder) -> None:
    build(settings, fake)
    index = qa.Index.load(settings.index, settings, embedder=fake)
    assert not index.reload()
    for i in range(3):
        (settings.corpus / f"n{i}.txt").write_text(f"Document number {i} mentions walruses.")
        build(settings, fake)
    assert len(store.generation_names(settings.index)) == settings.keep_generations
    assert index.reload()
    assert "walruses" in index.ask("Which document mentions walruses?").quotes[0].text


def test_errors_are_specific(tmp_path: Path, settings: qa.Settings, fake: FakeEmbedder) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        qa.build_index(tmp_path / "nope", tmp_path / "idx", settings=settings, embedder=fake)
    with pytest.raises(IndexNotFoundError, match="qa index"):
        qa.Index.load(tmp_path / "empty", settings, embedder=fake)
    build(settings, fake)
    index = qa.Index.load(settings.index, settings, embedder=fake)
    for bad in ["", "   \n\t", "x" * (settings.max_question_chars + 1)]:
        with pytest.raises(InvalidQuestionError):
            index.ask(bad)


def test_not_found_lists_nearest(settings: qa.Settings, fake: FakeEmbedder) -> None:
    build(settings, fake)
    index = qa.Index.load(settings.index, settings, embedder=fake)
    answer = index.ask("Recipe for sourdough bread with rye flour")
    assert not answer.found and answer.answer == "" and "not" in answer.message
    assert answer.quotes  # nearest passages still listed


def test_empty_corpus_builds_empty_index(tmp_path: Path, settings: qa.Settings, fake: FakeEmbedder) -> None:
    empty = tmp_path / "empty-corpus"
    empty.mkdir()
    (empty / "blank.txt").write_text("   \n")
    report = qa.build_index(empty, tmp_path / "idx", settings=settings, embedder=fake)
    assert report.chunks == 0 and report.failed[0].id == "blank.txt"
    answer = qa.Index.load(tmp_path / "idx", settings, embedder=fake).ask("anything?")
    assert not answer.found and answer.quotes == ()


def test_parser_change_reparses_but_reuses_vectors(
    settings: qa.Settings, fake: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build(settings, fake)
    monkeypatch.setattr("qa.building.PARSER_VERSION", 999)
    fake.encoded.clear()
    again = build(settings, fake)
    assert again.unchanged == ["openai-foxconn-ai-hardware.txt"] and again.changed == again.added == []
    assert again.chunks_embedded == 0 and again.chunks_reused == first.chunks
    assert any("re-parsed" in n.reason for n in again.notes)


def test_chunking_bug_on_one_document_is_reported(
    settings: qa.Settings, fake: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    (settings.corpus / "bad.txt").write_text("This one breaks the chunker.")
    real = qa.preparing.chunks_of

    def flaky(text: str, *args: object) -> object:
        if "breaks" in text:
            raise ValueError("boom")
        return real(text, *args)  # type: ignore[arg-type]

    monkeypatch.setattr("qa.preparing.chunks_of", flaky)
    report = build(settings, fake)
    assert report.added == ["openai-foxconn-ai-hardware.txt"]
    assert [(s.id, s.reason) for s in report.failed] == [
        ("bad.txt", "could not be chunked (ValueError: boom)")
    ]


def test_chunk_keys_ending_in_nul_bytes_are_reused(
    settings: qa.Settings, fake: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # numpy's fixed-width bytes type drops trailing NULs: keys must survive a round trip as-is
    real = qa.preparing.chunk_key
    monkeypatch.setattr("qa.preparing.chunk_key", lambda text, units: real(text, units)[:14] + b"\x00\x00")
    first = build(settings, fake)
    again = build(settings, fake)
    assert again.chunks_embedded == 0 and again.chunks_reused == first.chunks
