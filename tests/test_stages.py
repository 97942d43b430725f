"""The build's stages one by one (plan, prepare, embed, assemble, commit), the mapper seam, and
opening / upgrading an index written in format 2."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

import qa
from qa import building, store
from qa.documents import discover
from qa.errors import BuildError, IndexCorruptError
from qa.parsing import parse
from qa.preparing import PrepareConfig, Prepared, PrepareTask, prepare
from tests.conftest import DATA, FakeEmbedder

FORMAT2 = DATA / "format2"
CONFIG = PrepareConfig(max_tokens=60, overlap=1)


def _task(path: Path, root: Path) -> PrepareTask:
    return PrepareTask(path.relative_to(root).as_posix(), str(path), path.stat().st_size)


def test_prepare_is_a_pure_picklable_function(corpus: Path, fake: FakeEmbedder) -> None:
    path = corpus / "openai-foxconn-ai-hardware.txt"
    task = _task(path, corpus)
    first = prepare(task, CONFIG, parse, fake.token_starts)
    again = prepare(pickle.loads(pickle.dumps(task)), CONFIG, parse, fake.token_starts)
    assert first == again and pickle.loads(pickle.dumps(first)) == first  # shipped between processes
    elsewhere = f"/not/on/this/node/{path.name}"  # the workers may not see the corpus folder
    shipped = prepare(PrepareTask(task.id, elsewhere, task.size, path.read_bytes()), CONFIG, parse,
                      fake.token_starts)  # fmt: skip
    assert shipped == first  # bytes shipped or read from the path: the same result
    doc = first.document
    assert doc is not None and first.error == "" and len(first.chunks) == len(first.keys) > 1
    for c, key in zip(first.chunks, first.keys, strict=True):
        assert c.key(doc.text) == key and all(c.start <= a < b <= c.end for a, b in c.units)


def test_prepare_reports_bad_files(
    tmp_path: Path, fake: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "ok.txt").write_text("Fine text here.")
    empty = prepare(_task(tmp_path / "empty.txt", tmp_path), CONFIG, parse, fake.token_starts)
    assert empty.document is None and empty.error == "empty file (0 bytes)"
    monkeypatch.setattr("qa.preparing.chunks_of", lambda *a: 1 / 0)
    bug = prepare(_task(tmp_path / "ok.txt", tmp_path), CONFIG, parse, fake.token_starts)
    assert bug.error == "could not be chunked (ZeroDivisionError: division by zero)"
    gone = prepare(PrepareTask("gone.txt", str(tmp_path / "gone.txt"), 3), CONFIG, parse, fake.token_starts)
    assert gone.error.startswith("cannot read")


def test_plan_reuses_unchanged_documents(settings: qa.Settings, fake: FakeEmbedder) -> None:
    qa.build_index(settings=settings, embedder=fake)
    (settings.corpus / "new.txt").write_text("A new document about walruses.")
    chunking = store.open_live(settings.index, None)[0].manifest["chunking"]
    previous = building.load_previous(settings.index, fake.fingerprint, chunking, full=False)
    calls: list[tuple[str, int, int]] = []
    try:
        sources, skipped = discover(settings.corpus, 2**20)
        plan = building.plan(sources, skipped, previous, lambda *a: calls.append(a))
    finally:
        previous.close()
    assert list(plan.reused) == ["openai-foxconn-ai-hardware.txt"] and plan.order[0] == "new.txt"
    assert [t.id for t in plan.tasks] == ["new.txt"] and (plan.files, plan.done) == (2, 1)
    assert calls == [("parsing", 0, 2), ("parsing", 1, 2)]
    # --full: nothing is reused
    full = building.plan(sources, [], building.Previous(), lambda *a: None)
    assert full.reused == {} and len(full.tasks) == 2


def test_previous_vectors_found_by_key(settings: qa.Settings, fake: FakeEmbedder) -> None:
    qa.build_index(settings=settings, embedder=fake)
    gen, _ = store.open_live(settings.index, None)
    chunking = gen.manifest["chunking"]
    gen.close()
    previous = building.load_previous(settings.index, fake.fingerprint, chunking, full=False)
    try:
        assert previous.gen is not None and len(previous.rows) == len(previous.gen.chunks)
        for key, row in previous.rows.items():
            assert previous.gen.chunk_keys[row].tobytes() == key
        other = {**chunking, "max_tokens": 1}
        changed = building.load_previous(settings.index, fake.fingerprint, other, False)
        assert changed.docs == {} and changed.rows == previous.rows  # re-parse, keep vectors
        assert any("re-parsed" in w for w in changed.warnings)
        changed.close()
    finally:
        previous.close()


def test_assemble_takes_fresh_and_reused_vectors(settings: qa.Settings, fake: FakeEmbedder) -> None:
    qa.build_index(settings=settings, embedder=fake)
    gen, _ = store.open_live(settings.index, None)
    chunking = gen.manifest["chunking"]
    gen.close()
    previous = building.load_previous(settings.index, fake.fingerprint, chunking, full=False)
    try:
        doc, chunks = previous.docs["openai-foxconn-ai-hardware.txt"]
        keys = [c.key(doc.text) for c in chunks]
        fresh_vec = np.ones(fake.dimension, np.float32) / np.sqrt(fake.dimension)
        fresh = {keys[0]: (fresh_vec, np.zeros((len(chunks[0].units), fake.dimension), np.float32))}
        built = building.assemble([(doc, chunks, keys)], fresh, previous, fake.dimension, "auto", 1)
        assert previous.gen is not None
        assert np.array_equal(built.vectors[0], fresh_vec)
        assert np.array_equal(built.vectors[1:], previous.gen.vectors[1:])
        assert built.unit_ptr[-1] == len(built.units) == sum(len(u) for u in built.unit_vectors)
        assert len(built.unit_vectors) == len(built.chunks)  # one float16 array per chunk, never stacked
        assert not built.unit_vectors[0].any()
        assert built.dense is None and built.dense_params.type == "flat"
    finally:
        previous.close()


class _Broken:
    """A mapper that loses results: the build must notice, not write a short generation."""

    name = "broken"

    def prepare(
        self, tasks: Sequence[PrepareTask], config: PrepareConfig, embedder: object
    ) -> Iterator[Prepared]:
        yield from ()

    def embed(
        self, items: Sequence[building.EmbedItem], embedder: object, progress: object
    ) -> Iterator[object]:
        yield from ()


def test_a_mapper_that_loses_results_fails_the_build(settings: qa.Settings, fake: FakeEmbedder) -> None:
    with pytest.raises(BuildError, match="broken mapper returned no result for openai-foxconn"):
        qa.build_index(settings=settings, embedder=fake, mapper=_Broken())  # type: ignore[arg-type]
    assert not store.generation_names(settings.index)


def test_commit_verifies_before_the_swap(
    settings: qa.Settings, fake: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = qa.build_index(settings=settings, embedder=fake).generation
    (settings.corpus / "new.txt").write_text("Another document.")

    def bad_verify(gen_dir: Path, fingerprint: str | None) -> dict[str, object]:
        raise IndexCorruptError(f"{gen_dir}: checksum mismatch")

    monkeypatch.setattr(store, "verify", bad_verify)
    with pytest.raises(BuildError, match=r"failed verification .*the previous index is still live"):
        qa.build_index(settings=settings, embedder=fake)
    monkeypatch.undo()
    assert store.read_pointer(settings.index) == first and store.generation_names(settings.index) == [first]


def test_format2_index_opens_and_is_upgraded_without_re_embedding(tmp_path: Path, fake: FakeEmbedder) -> None:
    index = tmp_path / "index"
    shutil.copytree(FORMAT2 / "index", index)
    settings = qa.Settings(corpus=FORMAT2 / "corpus", index=index, min_score=0.3)
    old = qa.Index.load(index, settings, embedder=fake)
    assert old.manifest["format_version"] == 2 and old.generation.dense.params.type == "flat"
    answer = old.ask("What do walruses haul out onto?")
    assert "sea ice" in answer.quotes[0].text
    report = qa.build_index(settings=settings, embedder=fake)
    assert report.chunks_embedded == 0 and report.chunks_reused == report.chunks == 2
    assert report.unchanged == ["foxconn.md", "walrus.txt"]
    assert any("format 2 upgraded to 3" in n.reason for n in report.notes)
    new = qa.Index.load(index, settings, embedder=fake)
    assert new.manifest["format_version"] == store.FORMAT_VERSION
    assert np.allclose(np.asarray(new.generation.vectors), np.asarray(old.generation.vectors))
    assert new.ask("What do walruses haul out onto?").quotes[0].text == answer.quotes[0].text


def test_local_embed_stage(fake: FakeEmbedder) -> None:
    items = [
        building.EmbedItem(b"k" * 16, "Walruses haul out on ice. They eat clams.", ((0, 25), (26, 41))),
        building.EmbedItem(b"j" * 16, "Trout live in rivers.", ((0, 21),)),
    ]
    calls: list[tuple[int, int]] = []
    [(keys, vecs, units)] = list(building.LocalMapper().embed(items, fake, lambda d, n: calls.append((d, n))))
    expected, expected_units = FakeEmbedder().encode_chunks([i.text for i in items], [i.units for i in items])
    assert keys == [i.key for i in items] and np.array_equal(vecs, expected)
    assert all(np.array_equal(a, b) for a, b in zip(units, expected_units, strict=True))
    assert [u.shape[0] for u in units] == [2, 1] and calls[-1] == (2, 2)
