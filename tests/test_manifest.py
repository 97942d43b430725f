"""A manifest that is valid JSON with a correct checksum but wrong (issue 14, item 5): every
case falls back to the previous good generation with a warning, in the library, ``qa ask``,
``qa info``, ``qa index`` and the web app's service; never a KeyError/TypeError traceback.
Also: a missing CURRENT does not make every question re-verify every file (item 9)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import qa
from qa import cli, embedding, store
from qa import index as index_module
from qa.errors import IndexCorruptError
from qa.manifest import REQUIRED_FILES, Manifest
from qa.service import QAService
from tests.conftest import FakeEmbedder

DELETE = object()


def two_generations(settings: qa.Settings, fake: FakeEmbedder) -> tuple[str, str]:
    first = qa.build_index(settings=settings, embedder=fake).generation
    (settings.corpus / "extra.txt").write_text("Walruses live in the Arctic and eat clams.")
    second = qa.build_index(settings=settings, embedder=fake).generation
    return first, second


def rewrite(gen_dir: Path, change: dict[str, Any]) -> None:
    """Edit manifest fields (paths separated by ">"; DELETE removes) and recompute its checksum."""
    body = json.loads((gen_dir / "manifest.json").read_text())
    for where, value in change.items():
        target = body
        *path, last = where.split(">")
        for p in path:
            target = target[p]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    body["checksum"] = store._manifest_checksum(body)
    (gen_dir / "manifest.json").write_text(json.dumps(body))


BAD_MANIFESTS: dict[str, dict[str, Any]] = {
    "counts missing": {"counts": DELETE},
    "model missing": {"model": DELETE},
    "chunking missing": {"chunking": DELETE},
    "model null": {"model": None},
    "files a list": {"files": []},
    "files empty": {"files": {}},
    "files without vectors.npy": {"files>vectors.npy": DELETE},
    "file outside the folder": {"files": {"../../../etc/passwd": {"sha256": "0" * 64, "bytes": 1}}},
    "file entry without sha256": {"files>chunks.npy": {"bytes": 10}},
    "chunk count a word": {"counts>chunks": "many"},
    "chunk count a bool": {"counts>chunks": True},
    "chunk count negative": {"counts>chunks": -1},
    "dimension a string": {"model>dimension": "1024"},
    "dimension zero": {"model>dimension": 0},
    "documents a string": {"documents": "all of them"},
    "document id a number": {"documents": [{"id": 5}]},
    "skipped entry without reason": {"skipped": [{"id": "x.txt"}]},
    "unknown key in counts": {"counts>extra": 1},
    "generation a list": {"generation": ["gen-000002"]},
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_wrong_manifest_falls_back_with_a_warning(
    settings: qa.Settings, fake: FakeEmbedder, case: str
) -> None:
    first, second = two_generations(settings, fake)
    rewrite(settings.index / second, BAD_MANIFESTS[case])
    index = qa.Index.load(settings.index, settings, embedder=fake)
    assert index.generation.name == first
    assert any(second in w and "manifest" in w for w in index.warnings), index.warnings
    assert "Foxconn" in index.ask("OpenAI Foxconn partnership").quotes[0].text
    # the service (web app) and a rebuild use the good generation too
    service = QAService(settings, fake)
    assert service.info().startswith(f"Index {first}:")
    assert {r.id for r in service.documents()} >= {"openai-foxconn-ai-hardware.txt", "extra.txt"}
    report = qa.build_index(settings=settings, embedder=fake)
    assert report.added == ["extra.txt"] and report.unchanged == ["openai-foxconn-ai-hardware.txt"]
    assert any("manifest" in n.reason for n in report.notes)


def test_vectors_of_another_index_are_not_loaded_unchecked(
    settings: qa.Settings, fake: FakeEmbedder, tmp_path: Path
) -> None:
    """The README promises every file is checked: with ``files: {}`` nothing was."""
    first, second = two_generations(settings, fake)
    other = tmp_path / "other-corpus"
    other.mkdir()
    (other / "x.txt").write_text("Entirely different text about volcanoes erupting lava.")
    built = qa.build_index(other, tmp_path / "other-index", embedder=fake)
    shutil.copy(tmp_path / "other-index" / built.generation / "vectors.npy", settings.index / second)
    rewrite(settings.index / second, {"files": {}})
    index = qa.Index.load(settings.index, settings, embedder=fake)
    assert index.generation.name == first
    assert any("required files not listed" in w for w in index.warnings), index.warnings


def test_all_generations_wrong_is_an_error_not_a_traceback(
    settings: qa.Settings, fake: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = two_generations(settings, fake)
    rewrite(settings.index / first, {"counts>chunks": "many"})
    rewrite(settings.index / second, {"model": DELETE})
    with pytest.raises(IndexCorruptError, match="invalid manifest"):
        qa.Index.load(settings.index, settings, embedder=fake)
    monkeypatch.setattr(index_module, "get_query_embedder", lambda *a, **k: fake)
    monkeypatch.setattr(embedding, "get_embedder", lambda *a, **k: fake)
    monkeypatch.setattr(embedding, "get_query_embedder", lambda *a, **k: fake)
    for args in (
        ["ask", "--index", str(settings.index), "Foxconn"],
        ["info", "--index", str(settings.index)],
    ):
        result = CliRunner().invoke(cli.main, args)
        assert result.exit_code == 1, result.output
        assert result.output.startswith("error: no usable generation") and "invalid manifest" in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cli_ask_and_info_use_the_good_generation(
    settings: qa.Settings, fake: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = two_generations(settings, fake)
    rewrite(settings.index / second, {"counts": DELETE})
    monkeypatch.setattr(index_module, "get_query_embedder", lambda *a, **k: fake)
    monkeypatch.setattr(embedding, "get_embedder", lambda *a, **k: fake)
    monkeypatch.setattr(embedding, "get_query_embedder", lambda *a, **k: fake)
    ask = CliRunner().invoke(cli.main, ["ask", "--index", str(settings.index), "--json", "Foxconn"])
    assert ask.exit_code == 0, ask.output
    assert json.loads(ask.stdout)["generation"] == first
    assert f"warning: skipping generation {second}" in ask.stderr
    info = CliRunner().invoke(cli.main, ["info", "--index", str(settings.index)])
    assert info.exit_code == 0, info.output
    assert f"generation {first}" in info.stdout and "1 documents, " in info.stdout


def test_a_written_manifest_matches_the_schema(settings: qa.Settings, fake: FakeEmbedder) -> None:
    gen = qa.build_index(settings=settings, embedder=fake).generation
    body = json.loads((settings.index / gen / "manifest.json").read_text())
    meta = Manifest.model_validate(body)
    assert meta.format_version == 3 and set(meta.files) >= REQUIRED_FILES[3]
    # every file a generation holds is listed (so checked), nothing more
    on_disk = {
        p.relative_to(settings.index / gen).as_posix()
        for p in (settings.index / gen).rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert set(meta.files) == on_disk == REQUIRED_FILES[3]  # exact search: no dense.faiss


def test_missing_pointer_does_not_reverify_on_every_question(
    settings: qa.Settings, fake: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = two_generations(settings, fake)
    (settings.index / store.POINTER).unlink()
    service = QAService(settings, fake)
    assert service.ask("Foxconn").generation == second
    hashed: list[Path] = []
    real = store.sha256_file
    monkeypatch.setattr(store, "sha256_file", lambda p: hashed.append(p) or real(p))
    for _ in range(3):
        assert service.ask("Foxconn").generation == second
    assert hashed == [], f"{len(hashed)} files re-hashed for 3 questions"
    # a damaged newest generation, still no pointer: the fallback is not re-verified either
    rewrite(settings.index / second, {"counts": DELETE})
    service = QAService(settings, fake)
    assert service.ask("Foxconn").generation == first
    hashed.clear()
    for _ in range(3):
        assert service.ask("Foxconn").generation == first
    assert hashed == []
    # a new build is still picked up
    (settings.corpus / "more.txt").write_text("Narwhals have a long tusk.")
    new = qa.build_index(settings=settings, embedder=fake).generation
    assert service.ask("narwhal tusk").generation == new
